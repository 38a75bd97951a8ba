"""`python -m datagen --scale tiny --seed 42 --out DIR --series base,same,drift_clients [--visibility V] [--targeting T]`.
"""
import argparse
import time

from datagen import SCENARIOS, generate_series
from datagen.series import MODES


def unit_interval(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1]")
    return value


parser = argparse.ArgumentParser(prog="python -m datagen")
parser.add_argument("--scale", choices=["tiny", "small", "full"], default="tiny")
parser.add_argument("--seed", type=int, default=42)
parser.add_argument("--out", required=True)
parser.add_argument("--series", default="base,same", help=f"comma-separated, from {sorted(SCENARIOS)}")
parser.add_argument("--mode", choices=MODES, default="increment")
parser.add_argument("--visibility", type=unit_interval, default=0.0,
                    help="how much of a first purchase the data shows: 0 the original world, 1 a ladder of visible fit")
parser.add_argument("--targeting", type=unit_interval, default=1.0,
                    help="1: offers shown mostly to likely buyers (the original world), 0: almost at random")
args = parser.parse_args()
started = time.monotonic()
for path in generate_series(args.out, args.scale, args.seed, args.series.split(","), args.mode, args.visibility,
                            args.targeting):
    print(path)
print(f"generated in {time.monotonic() - started:.1f}s")
