"""Model quality and cost: MAP@100 / precision@100 of the model against baselines on held-out offers.

    python bench/ml_quality.py --scale small|full [--out reports/ml_quality.json]

Data: the project's generator (`datagen`, first version plus its `_holdout/` offers, future transactions
and oracle) when it is installed; otherwise the synthetic fixture of the unit tests scaled up (then the
"held-out offers" are the time-split hold-out of `ml.train`, and there is no oracle).
Baselines: random candidates; popularity among non-customers (most active users in the last 90 days);
segment look-alike rate (users of the segments most over-represented among the brand's customers).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ml import ALLOCATOR_ENV  # noqa: E402

os.environ.update(ALLOCATOR_ENV)  # as in the pipeline's stage processes; before polars loads

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from domain.settings import load_params  # noqa: E402
from ml.catalog import merge, read_table  # noqa: E402
from ml.evaluate import average_precision_at_k, precision_at_k, top_k  # noqa: E402
from ml.features import EPOCH, FEATURE_NAMES, USER_NUMERIC, OfferSpec, customers_before, offer_features  # noqa: E402
from ml.ground_truth import offers_ground_truth  # noqa: E402
from ml.serving import Scorer, build_bundle  # noqa: E402

SCALES = {"small": {"users": 5000, "brands": 400, "days": 300}, "full": {"users": 50000, "brands": 3000, "days": 300}}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _version(work: Path, scale: str, seed: int) -> Path:
    try:
        import datagen  # noqa: F401
        from datagen import generate_series
    except ImportError:
        from tests.unit.test_ml_fixture import make_snapshot

        return make_snapshot(work / "v1", seed=seed, **SCALES[scale])
    versions = generate_series(work / "generated", scale=scale, seed=seed, scenarios=["base"], mode="full")
    return Path(versions[0])


def _reuse(work: Path) -> Path | None:
    """A kept work directory already holding a generated version (re-runs skip generation)."""
    for candidate in (work / "v1", *sorted((work / "generated").glob("*"))):
        if (candidate / "transaction.parquet").exists():
            return candidate
    return None


def _train_in_child(work: Path, params: dict, seed: int):
    """Train in a child process, so its peak memory is measured apart from data generation."""
    import pickle
    import subprocess

    code = ("import pickle,sys,json; from pathlib import Path; from ml.train import train; "
            "p=json.loads(sys.argv[3]); r=train(Path(sys.argv[1]), Path(sys.argv[2]), p, int(sys.argv[4])); "
            # VmHWM: this process's own peak (ru_maxrss would start from the parent's size at fork).
            "import re; status=open('/proc/self/status').read(); "
            "r.metrics['peak_memory_mb']=int(re.search(r'VmHWM:\\s+(\\d+)', status).group(1))/1024; "
            "Path(sys.argv[2],'result.pkl').write_bytes(pickle.dumps(r))")
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code, str(work / "catalog"), str(work / "model"), json.dumps(params),
                    str(seed)], check=True, cwd=root)
    return pickle.loads((work / "model" / "result.pkl").read_bytes())


def _holdout_offers(scorer: Scorer, version: Path, catalog: Path, k: int, seed: int,
                    max_offers: int = 200) -> dict[str, float] | None:
    """Score the generator's held-out offers (future windows) against their real ground truth."""
    holdout = version / "_holdout"
    if not (holdout / "offer.parquet").exists():
        return None
    offers = pl.read_parquet(holdout / "offer.parquet")
    future = pl.read_parquet(holdout / "transaction.parquet").select("user_id", "brand_dk", "event_date")
    past = read_table(catalog, "transaction", ["user_id", "brand_dk", "event_date"])
    merchants = read_table(catalog, "merchant")
    if (holdout / "merchant.parquet").exists():
        merchants = pl.concat([merchants, pl.read_parquet(holdout / "merchant.parquet").select(merchants.columns)])
    truth = offers_ground_truth(pl.concat([past, future.select(past.columns)]), offers, merchants)
    offers = offers.unique(["offer_id", "merchant_id_offer"], keep="first").sort("offer_id").head(max_offers)
    oracle = None
    if (holdout / "oracle.parquet").exists():
        # One row per (offer, active user): read only the offers scored here, grouped once.
        oracle = {key: frame for key, frame in pl.scan_parquet(holdout / "oracle.parquet").filter(
            pl.col("offer_id").is_in(offers["offer_id"].to_list())).collect().partition_by(
            ["offer_id", "merchant_id_offer"], as_dict=True).items()}
    rng = np.random.default_rng(seed)
    state = scorer.state
    activity = USER_NUMERIC.index("tx_90d")
    segment_lift = FEATURE_NAMES.index("segment_lift")
    results: dict[str, list[float]] = {}

    def record(name: str, ranked: list[int], relevant: set[int]) -> None:
        results.setdefault(f"map_at_{k}_{name}", []).append(average_precision_at_k(ranked, relevant, k))
        results.setdefault(f"precision_at_{k}_{name}", []).append(precision_at_k(ranked, relevant, k))

    latencies = []
    for row in offers.iter_rows(named=True):
        relevant = set(truth.filter((pl.col("offer_id") == row["offer_id"])
                                    & (pl.col("merchant_id_offer") == row["merchant_id_offer"]))["user_id"].to_list())
        if not relevant:
            continue
        started = time.perf_counter()
        audience = scorer.score_offer(row["offer_id"], row["merchant_id_offer"], row["start_date"], row["end_date"],
                                      row["offer_text"], k)
        latencies.append(time.perf_counter() - started)
        record("model", [u for u, _ in audience.users], relevant)
        brand_dk = merchants.filter(pl.col("merchant_id_offer") == row["merchant_id_offer"])["brand_dk"].head(1)
        known = brand_dk.len() > 0 and brand_dk.item() is not None
        position = int(np.searchsorted(state.brand_ids, brand_dk.item())) if known else -1
        brand = position if known and position < len(state.brand_ids) and \
            state.brand_ids[position] == brand_dk.item() else -1
        spec = OfferSpec(brand=brand, start_day=(row["start_date"] - EPOCH).days, end_day=10**6)
        mask = np.ones(state.n_users, dtype=bool)
        mask[customers_before(state, brand, spec.start_day)] = False
        pool = np.flatnonzero(mask)
        ids = state.user_ids[pool]
        record("random", ids[rng.permutation(len(pool))[:k]].tolist(), relevant)
        record("popularity", ids[top_k(state.user_numeric[pool, activity], ids, k)].tolist(), relevant)
        lift = offer_features(state, spec, pool)[:, segment_lift]
        record("segment", ids[top_k(lift, ids, k)].tolist(), relevant)
        mine = (oracle or {}).get((row["offer_id"], row["merchant_id_offer"]))
        if mine is not None and "probability" in mine.columns:
            # The oracle scores every active user: rank it among the same candidates (non-customers).
            mine = mine.filter(pl.col("user_id").is_in(ids.tolist()))
            ranked = mine.sort(["probability", "user_id"], descending=[True, False])["user_id"].head(k).to_list()
            record("oracle", ranked, relevant)
    metrics = {name: float(np.mean(v)) for name, v in results.items()}
    metrics["offers"] = float(len(results.get(f"map_at_{k}_model", [])))
    if latencies:
        metrics["latency_p95_ms_uncached"] = float(np.percentile(latencies, 95) * 1000)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="work directory to keep (default: a temp dir)")
    parser.add_argument("--losses", default=None,
                        help="comma-separated CatBoost losses to compare on the time split (default: params.yaml)")
    args = parser.parse_args()
    params = load_params()
    model_params, seed = params["model"], int(params["seed"])
    if args.losses:
        model_params = {**model_params, "loss_candidates": args.losses.split(",")}
    k = int(model_params.get("eval_top_k", 100))
    work = args.keep or Path(tempfile.mkdtemp(prefix="ml_quality_"))
    work.mkdir(parents=True, exist_ok=True)
    figures: dict[str, float] = {}
    try:
        t = time.perf_counter()
        version = _reuse(work) or _version(work, args.scale, seed)
        figures["generate_seconds"] = time.perf_counter() - t
        t = time.perf_counter()
        rows = merge(None, version, work / "catalog")
        figures["merge_seconds"] = time.perf_counter() - t
        figures["transactions"] = float(rows["transaction"])
        t = time.perf_counter()
        build_bundle(work / "catalog", work / "bundle")
        figures["bundle_seconds"] = time.perf_counter() - t
        figures["peak_memory_mb_data_prep"] = _peak_mb()
        t = time.perf_counter()
        result = _train_in_child(work, model_params, seed)
        figures["train_seconds"] = time.perf_counter() - t
        figures["train_peak_memory_mb"] = result.metrics["peak_memory_mb"]
        scorer = Scorer(work / "bundle", result.model_path)
        # Serving latency over the catalog's own offers: first call (uncached) and a repeat (cached).
        offers = read_table(work / "catalog", "offer").unique(["offer_id", "merchant_id_offer"]).sort("offer_id")
        cold, warm = [], []
        for row in offers.head(40).iter_rows(named=True):
            for bucket in (cold, warm):
                t = time.perf_counter()
                scorer.audience(row["offer_id"], row["merchant_id_offer"], 100)
                bucket.append(time.perf_counter() - t)
        figures["latency_p95_ms_first_call"] = float(np.percentile(cold, 95) * 1000) if cold else float("nan")
        figures["latency_p95_ms_cached"] = float(np.percentile(warm, 95) * 1000) if warm else float("nan")
        held = _holdout_offers(scorer, version, work / "catalog", k, seed)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)

    m = result.metrics
    print(f"\nml_quality --scale {args.scale}: {int(figures['transactions'])} transactions, loss "
          f"{result.params['loss_function']}, {result.features_count} features\n")
    compared = {name[len("validation_map_at_100_"):]: value for name, value in m.items()
                if name.startswith("validation_map_at_100_")}
    if len(compared) > 1:
        print("losses compared on the latest training cut (sampled candidates): "
              + ", ".join(f"{loss} MAP@100 {value:.4f}" for loss, value in compared.items()) + "\n")
    print(f"time-split hold-out of ml.train ({int(m['holdout_offers'])} offers, {int(m['holdout_real_offers'])} real)")
    print(f"{'ranking':<28}{'MAP@100':>10}{'P@100':>10}")
    for name, suffix in (("model", ""), ("random", "_random"), ("popularity (non-customers)", "_popularity"),
                         ("segment look-alike rate", "_segment")):
        print(f"{name:<28}{m['map_at_100' + suffix]:>10.4f}{m['precision_at_100' + suffix]:>10.4f}")
    if held:
        print(f"\ngenerator's held-out offers ({int(held['offers'])} offers with new customers)")
        print(f"{'ranking':<28}{'MAP@100':>10}{'P@100':>10}")
        for name in ("model", "random", "popularity", "segment", "oracle"):
            if f"map_at_{k}_{name}" in held:
                print(f"{name:<28}{held[f'map_at_{k}_{name}']:>10.4f}{held[f'precision_at_{k}_{name}']:>10.4f}")
    print()
    for name, value in figures.items():
        print(f"{name:<28}{value:>12.2f}")
    for name in ("examples_seconds", "fit_seconds", "train_rows", "best_iterations"):
        print(f"{name:<28}{m[name]:>12.2f}")
    report = {"scale": args.scale, "train_metrics": m, "holdout_offers": held, "figures": figures,
              "loss_function": result.params["loss_function"]}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
