"""Two models against each other on the same held-out offers of a kept world: per kind of offer, each
model's MAP@100, the mean per-offer difference and its paired-bootstrap interval.

    python bench/ml_quality.py --scale full --worlds high-likely --seeds 1 --no-stability --max-offers 100 \
        --keep DIR
    python bench/compare_models.py DIR/high-likely-1 CANDIDATE [--train-params FILE] [--baseline MODEL_DIR]
                                   [--max-offers 100] [--seed 1] [--level 0.9]

The world directory is what `bench/ml_quality.py --keep` left: the v1 catalog (`catalog1`), its serving
bundle (`bundle1`), the model trained there (`model1`, the baseline unless --baseline says otherwise) and
the generated version with its held-out offers. CANDIDATE is a model directory; with --train-params it is
first trained on the world's catalog with the model section of that params file (unless it holds a model
already), which is how a change of parameters is judged. Both models score the same seeded sample of
offers (`--seed` and `--max-offers` as the bench run used, so the offers are the bench's) through the
serving path, with this checkout's features: a candidate trained by another checkout must have the same
feature set.

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

from bench.ml_quality import KINDS, holdout_offers, model_audience, train_in_child  # noqa: E402
from domain.policy import bootstrap_means  # noqa: E402
from domain.settings import load_params  # noqa: E402
from ml.catalog import read_table  # noqa: E402
from ml.evaluate import average_precision_at_k  # noqa: E402
from ml.serving import Scorer  # noqa: E402


def model_file(directory: Path) -> Path:
    found = sorted(directory.glob("*.cbm"))
    if not found:
        raise SystemExit(f"{directory}: no model (*.cbm); train one with --train-params")
    return found[0]


def compare(world: Path, baseline: Path, candidate: Path, seed: int, max_offers: int, level: float,
            params: dict) -> list[dict]:
    """One row per kind: offers, MAP@100 of each model, mean difference and its interval."""
    version = sorted((world / "generated").iterdir())[0]
    k = int(params["model"].get("eval_top_k", 100))
    held_out = holdout_offers(version, world / "catalog1", read_table(world / "catalog1", "merchant"), seed, max_offers)
    scorers = [Scorer(world / "bundle1", model_file(directory)) for directory in (baseline, candidate)]
    ap: dict[str, list[list[float]]] = {kind: [[], []] for kind in KINDS}
    for kind, row, relevant in held_out:
        for scores, scorer in zip(ap[kind], scorers):
            scores.append(average_precision_at_k(model_audience(scorer, row, k), relevant, k))
    rows = []
    for kind in KINDS:
        before, after = (np.asarray(scores) for scores in ap[kind])
        if before.size == 0:
            continue
        means = bootstrap_means(after - before, int(params["deploy"]["resamples"]), int(params["seed"]))
        low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
        rows.append({"kind": kind, "offers": int(before.size), "baseline": float(before.mean()),
                     "candidate": float(after.mean()), "difference": float((after - before).mean()),
                     "low": float(low), "high": float(high)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("world", type=Path, help="a world directory kept by bench/ml_quality.py --keep")
    parser.add_argument("candidate", type=Path, help="the candidate's model directory")
    parser.add_argument("--baseline", type=Path, default=None, help="default: WORLD/model1")
    parser.add_argument("--train-params", type=Path, default=None,
                        help="params file to train the candidate with first (if it holds no model yet)")
    parser.add_argument("--seed", type=int, default=1, help="the world's seed: it draws the offers scored")
    parser.add_argument("--max-offers", type=int, default=100, help="held-out offers per kind, as the bench run")
    parser.add_argument("--level", type=float, default=0.9, help="two-sided level of the interval")
    args = parser.parse_args()
    if not 0 < args.level < 1:
        parser.error("--level in (0, 1)")
    params = load_params()
    if args.train_params and not list(args.candidate.glob("*.cbm")):
        trained = load_params(args.train_params)
        train_in_child(args.world / "catalog1", args.candidate, dict(trained["model"]), int(trained["seed"]))
    rows = compare(args.world, args.baseline or args.world / "model1", args.candidate, args.seed, args.max_offers,
                   args.level, params)
    print(f"| offers | n | baseline MAP@100 | candidate MAP@100 | mean difference | {args.level:.0%} interval |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['kind']} | {row['offers']} | {row['baseline']:.4f} | {row['candidate']:.4f} "
              f"| {row['difference']:+.4f} | {row['low']:+.4f} to {row['high']:+.4f} |")


if __name__ == "__main__":
    main()
