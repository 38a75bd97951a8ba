"""`python -m datagen --scale tiny --seed 42 --out DIR --series base,same,drift_clients`."""
import argparse
import time

from datagen import SCENARIOS, generate_series
from datagen.series import MODES

parser = argparse.ArgumentParser(prog="python -m datagen")
parser.add_argument("--scale", choices=["tiny", "small", "full"], default="tiny")
parser.add_argument("--seed", type=int, default=42)
parser.add_argument("--out", required=True)
parser.add_argument("--series", default="base,same", help=f"comma-separated, from {sorted(SCENARIOS)}")
parser.add_argument("--mode", choices=MODES, default="increment")
args = parser.parse_args()
started = time.monotonic()
for path in generate_series(args.out, args.scale, args.seed, args.series.split(","), args.mode):
    print(path)
print(f"generated in {time.monotonic() - started:.1f}s")
