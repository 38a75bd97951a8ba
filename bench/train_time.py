"""Training time, peak memory and hold-out quality of one catalog, as the pipeline's train stage runs it.

    python bench/train_time.py --version-dir /data/full/v1 --work /tmp/train_time

Merges the version into `<work>/catalog` (once; reused when present), then trains with params.yaml's
`model` section and prints the wall time, the process's peak resident memory, and MAP@100 per kind of
hold-out offer for the model and each baseline (the metrics MLflow and /model/info show).

    python bench/train_time.py --version-dir /data/full/v1 --work /tmp/train_time --first-requests 300

With --first-requests N: no training (the model in `<work>/model` is used); the serving bundle is built
into `<work>/bundle` (once) and the audience of N offers of the catalog (a seeded sample) is computed
once each, as an offer's first /lookalike request does (`Scorer.audience`: features, the model, SHAP
reasons; no HTTP): p50, p95, p99 and max.
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
    parser.add_argument("--first-requests", type=int, default=0, help="time N offers' first request instead")
    args = parser.parse_args()
    params = load_params()
    catalog = args.work / "catalog"
    if not catalog.exists():
        started = time.monotonic()
        merge(None, args.version_dir, catalog)
        print(f"merge {time.monotonic() - started:.0f} s")
    if args.first_requests:
        first_requests(catalog, args.work, args.first_requests, int(params["seed"]))
        return
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


def first_requests(catalog: Path, work: Path, count: int, seed: int) -> None:
    import numpy as np
    import polars as pl

    from domain.layout import model_file
    from ml.catalog import read_table
    from ml.serving import Scorer, build_bundle

    bundle = work / "bundle"
    if not bundle.exists():
        started = time.monotonic()
        build_bundle(catalog, bundle)
        print(f"bundle {time.monotonic() - started:.0f} s")
    scorer = Scorer(bundle, model_file(work / "model"))
    offers = read_table(catalog, "offer").select("offer_id", "merchant_id_offer").unique().sort(pl.all())
    offers = offers.sample(min(count, offers.height), seed=seed)
    seconds = []
    for offer_id, merchant_id in offers.iter_rows():
        started = time.perf_counter()
        scorer.audience(offer_id, merchant_id, 100)
        seconds.append(time.perf_counter() - started)
    ms = np.array(seconds) * 1000
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    print(f"first requests of {len(ms)} offers: p50 {p50:.0f} ms, p95 {p95:.0f} ms, p99 {p99:.0f} ms, "
          f"max {ms.max():.0f} ms")


if __name__ == "__main__":
    main()
