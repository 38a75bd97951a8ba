"""Two models against each other on the same held-out offers of a kept world: per kind of offer, each
model's MAP@k (k: params' eval_top_k), the mean per-offer difference and its paired-bootstrap interval.

    python bench/ml_quality.py --scale full --worlds high-likely --seeds 1 --no-stability --max-offers 100 \
        --keep DIR
    python bench/compare_models.py DIR/high-likely-1 CANDIDATE [--train-params FILE] [--baseline MODEL_DIR]
                                   [--candidate-bundle DIR] [--save-ap FILE] [--max-offers 100] [--seed 1]
    python bench/compare_models.py DIR/high-likely-1 --candidate-ap FILE [--baseline MODEL_DIR] [--level 0.9]

The world directory is what `bench/ml_quality.py --keep` left: the v1 catalog (`catalog1`), its serving
bundle (`bundle1`), the model trained there (`model1`, the baseline unless --baseline says otherwise) and
the generated version with its held-out offers. CANDIDATE is a model directory; with --train-params it is
first trained on the world's catalog with the model section of that params file (unless it holds a model
already), which is how a change of parameters is judged. Both models score the same seeded sample of
offers (`--seed` and `--max-offers` as the bench run used, so the offers are the bench's) through the
serving path, with this checkout's features.

A change of features (or of the state they come from) is judged in two steps, each model scored by its
own checkout: the changed checkout trains and scores its candidate on its own bundle and writes the
per-offer APs (`--candidate-bundle`, built from the world's catalog if missing; `--save-ap`: the candidate
alone is scored, since the baseline's features are not that checkout's), and this checkout pairs the
baseline with that file (`--candidate-ap`):

    (changed checkout) python bench/compare_models.py DIR/high-likely-1 DIR/high-likely-1/model_new \
        --train-params params.yaml --candidate-bundle DIR/high-likely-1/bundle_new --save-ap new.parquet
    python bench/compare_models.py DIR/high-likely-1 --candidate-ap new.parquet

The interval is that of the mean difference under the paired bootstrap that deploy decisions use
(`domain/policy.py` bootstrap_means, seeded by params.yaml): an interval that excludes 0 says the gain is
not the luck of which offers were drawn. Deterministic: the same models and offers give the same table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from bench.ml_quality import KINDS, holdout_offers, model_audience, train_in_child  # noqa: E402
from domain.policy import bootstrap_means  # noqa: E402
from domain.settings import load_params  # noqa: E402
from ml.catalog import read_table  # noqa: E402
from ml.evaluate import average_precision_at_k  # noqa: E402
from ml.serving import Scorer, build_bundle  # noqa: E402

AP_KEY = ["kind", "offer_id", "merchant_id_offer"]
AP_SCHEMA = {"kind": pl.String, "offer_id": pl.Int64, "merchant_id_offer": pl.Int64, "ap": pl.Float64}


def model_file(directory: Path) -> Path:
    found = sorted(directory.glob("*.cbm"))
    if not found:
        raise SystemExit(f"{directory}: no model (*.cbm); train one with --train-params")
    return found[0]


def world_version(world: Path) -> Path:
    """The kept world's generated v1 (its held-out offers, their months and the oracle)."""
    return sorted((world / "generated").iterdir())[0]


def world_offers(world: Path, seed: int, max_offers: int) -> list[tuple[str, dict, set[int]]]:
    """The kept world's held-out offers, as the bench run drew them (`holdout_offers`)."""
    return holdout_offers(world_version(world), world / "catalog1", read_table(world / "catalog1", "merchant"), seed,
                          max_offers)


def offer_aps(held_out: list[tuple[str, dict, set[int]]], bundle: Path, model: Path, k: int) -> pl.DataFrame:
    """AP@k of one model on each held-out offer (AP_KEY, ap), scored through the serving path."""
    scorer = Scorer(bundle, model_file(model))
    return pl.DataFrame([{"kind": kind, "offer_id": row["offer_id"], "merchant_id_offer": row["merchant_id_offer"],
                          "ap": average_precision_at_k(model_audience(scorer, row, k), relevant, k)}
                         for kind, row, relevant in held_out], schema=AP_SCHEMA)


def compare(baseline: pl.DataFrame, candidate: pl.DataFrame, level: float, params: dict) -> list[dict]:
    """One row per kind: offers, MAP@k of each model, mean difference and its interval, over the offers
    both models were scored on."""
    paired = baseline.join(candidate, on=AP_KEY, how="inner", suffix="_candidate", maintain_order="left")
    if paired.height < max(baseline.height, candidate.height):
        raise SystemExit(f"the two models were scored on different offers ({baseline.height} and "
                         f"{candidate.height}, {paired.height} in common): use the same --seed and --max-offers")
    rows = []
    for kind in KINDS:
        of_kind = paired.filter(pl.col("kind") == kind)
        if of_kind.height == 0:
            continue
        before, after = of_kind["ap"].to_numpy(), of_kind["ap_candidate"].to_numpy()
        means = bootstrap_means(after - before, int(params["deploy"]["resamples"]), int(params["seed"]))
        low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
        rows.append({"kind": kind, "offers": int(before.size), "baseline": float(before.mean()),
                     "candidate": float(after.mean()), "difference": float((after - before).mean()),
                     "low": float(low), "high": float(high)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("world", type=Path, help="a world directory kept by bench/ml_quality.py --keep")
    parser.add_argument("candidate", type=Path, nargs="?", default=None,
                        help="the candidate's model directory (not with --candidate-ap)")
    parser.add_argument("--baseline", type=Path, default=None, help="default: WORLD/model1")
    parser.add_argument("--train-params", type=Path, default=None,
                        help="params file to train the candidate with first (if it holds no model yet)")
    parser.add_argument("--candidate-bundle", type=Path, default=None,
                        help="the candidate's serving bundle, built by this checkout from WORLD/catalog1 if missing "
                             "(default: WORLD/bundle1)")
    parser.add_argument("--save-ap", type=Path, default=None,
                        help="write the candidate's per-offer APs (parquet) and stop (no baseline scored)")
    parser.add_argument("--candidate-ap", type=Path, default=None,
                        help="the candidate's per-offer APs written by --save-ap (scored by another checkout)")
    parser.add_argument("--seed", type=int, default=1, help="the world's seed: it draws the offers scored")
    parser.add_argument("--max-offers", type=int, default=100, help="held-out offers per kind, as the bench run")
    parser.add_argument("--level", type=float, default=0.9, help="two-sided level of the interval")
    args = parser.parse_args()
    if not 0 < args.level < 1:
        parser.error("--level in (0, 1)")
    if (args.candidate is None) == (args.candidate_ap is None):
        parser.error("give either CANDIDATE or --candidate-ap")
    params = load_params()
    k = int(params["model"].get("eval_top_k", 100))
    held_out = world_offers(args.world, args.seed, args.max_offers)  # drawn once, scored by each model
    if args.candidate_ap is not None:
        candidate = pl.read_parquet(args.candidate_ap)
    else:
        if args.train_params and not list(args.candidate.glob("*.cbm")):
            trained = load_params(args.train_params)
            train_in_child(args.world / "catalog1", args.candidate, dict(trained["model"]), int(trained["seed"]))
        bundle = args.candidate_bundle or args.world / "bundle1"
        if not bundle.exists():
            build_bundle(args.world / "catalog1", bundle)
        candidate = offer_aps(held_out, bundle, args.candidate, k)
        if args.save_ap is not None:
            candidate.write_parquet(args.save_ap)
            for kind in KINDS:
                of_kind = candidate.filter(pl.col("kind") == kind)
                print(f"{kind}: {of_kind.height} offers, candidate MAP@{k} {of_kind['ap'].mean() or 0.0:.4f}")
            return
    baseline = offer_aps(held_out, args.world / "bundle1", args.baseline or args.world / "model1", k)
    rows = compare(baseline, candidate, args.level, params)
    print(f"| offers | n | baseline MAP@{k} | candidate MAP@{k} | mean difference | {args.level:.0%} interval |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['kind']} | {row['offers']} | {row['baseline']:.4f} | {row['candidate']:.4f} "
              f"| {row['difference']:+.4f} | {row['low']:+.4f} to {row['high']:+.4f} |")


if __name__ == "__main__":
    main()
