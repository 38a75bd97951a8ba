"""Training time, peak memory and hold-out quality of one catalog, as the pipeline's train stage runs it.

    python bench/train_time.py --version-dir /data/full/v1 --work /tmp/train_time

Merges the version into `<work>/catalog` (once; reused when present), then trains with params.yaml's
`model` section and prints the wall time, the process's peak resident memory, and MAP@100 per kind of
hold-out offer for the model and each baseline (the metrics MLflow and /model/info show).
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml import ALLOCATOR_ENV  # noqa: E402

os.environ.update(ALLOCATOR_ENV)  # as in the pipeline's stage processes; before polars loads

from domain.settings import load_params  # noqa: E402
from ml.baselines import BASELINES  # noqa: E402
from ml.catalog import merge  # noqa: E402
from ml.dataset import KINDS  # noqa: E402
from ml.train import train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version-dir", type=Path, required=True, help="a sealed or generated version")
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args()
    params = load_params()
    catalog = args.work / "catalog"
    if not catalog.exists():
        started = time.monotonic()
        merge(None, args.version_dir, catalog)
        print(f"merge {time.monotonic() - started:.0f} s")
    started = time.monotonic()
    result = train(catalog, args.work / "model", params["model"], int(params["seed"]))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    metrics = result.metrics
    print(f"train {time.monotonic() - started:.0f} s, peak resident memory {peak_mb:,.0f} MB, "
          f"{metrics['train_rows']:,.0f} rows, examples {metrics['examples_seconds']:.0f} s, "
          f"fit {metrics['fit_seconds']:.0f} s")
    for kind in KINDS:
        print(kind, " ".join(f"{name}={metrics.get(f'map_at_100_{kind}' + suffix, float('nan')):.4f}"
                             for name, suffix in [("model", ""), *((b, f"_{b}") for b in BASELINES)]))


if __name__ == "__main__":
    main()
