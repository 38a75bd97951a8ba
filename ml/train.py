"""Training: examples from past cuts, CatBoost with the better of a pointwise and a ranking loss, calibration.

`python -m ml.train --catalog DIR --out DIR` runs it with params.yaml's `model` section.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from catboost import CatBoost, Pool

from ml.dataset import Plan, make_plan
from ml.evaluate import StateCache, average_precision_at_k, candidates, score_holdout
from ml.features import FEATURE_NAMES, categorical_levels, load_history, offer_features
from ml.model import LookalikeModel


@dataclass
class TrainResult:
    model_path: Path
    metrics: dict[str, float]
    params: dict[str, str]
    feature_names: list[str] = field(default_factory=list)
    features_count: int = 0
    baseline_metrics: dict[str, float] | None = None  # the deployed model on the same hold-out
    holdout_ap: list[float] = field(default_factory=list)  # AP@k per hold-out offer, paired with:
    baseline_holdout_ap: list[float] | None = None          # the deployed model's, on the same offers


@dataclass
class Examples:
    features: np.ndarray
    labels: np.ndarray
    groups: np.ndarray        # query key per row (rows of a query are contiguous)
    weights: np.ndarray       # inverse negative sampling rate: restores the true base rate for calibration
    cuts: np.ndarray          # the query's cut per row


def build_examples(plan: Plan, states: StateCache, params: dict, seed: int) -> Examples:
    """Per query: its positives and a uniform sample of the other candidates."""
    per_positive = int(params.get("negatives_per_positive", 20))
    max_positives = int(params.get("max_positives_per_query", 300))
    max_rows = int(params.get("max_train_rows", 800_000))
    total_pos = sum(min(len(q.positives), max_positives) for q in plan.train)
    if total_pos and total_pos * (1 + per_positive) > max_rows:
        per_positive = max(2, max_rows // total_pos - 1)
    blocks, labels, groups, weights, cuts = [], [], [], [], []
    for query in sorted(plan.train, key=lambda q: (q.cut, q.key)):
        state = states(query.cut)
        rng = np.random.default_rng([seed, query.cut, query.key])
        pool = candidates(state, query)
        positives = np.intersect1d(query.positives, pool)
        if len(positives) == 0:
            continue
        if len(positives) > max_positives:
            positives = np.sort(rng.choice(positives, max_positives, replace=False))
        negatives_pool = np.setdiff1d(pool, query.positives, assume_unique=False)
        n_neg = min(len(negatives_pool), per_positive * len(positives))
        if n_neg == 0:
            continue
        negatives = np.sort(rng.choice(negatives_pool, n_neg, replace=False))
        rows = np.concatenate([positives, negatives])
        blocks.append(offer_features(state, query.spec, rows))
        labels.append(np.concatenate([np.ones(len(positives)), np.zeros(n_neg)]))
        groups.append(np.full(len(rows), query.key, dtype=np.int64))
        weights.append(np.concatenate([np.ones(len(positives)), np.full(n_neg, len(negatives_pool) / n_neg)]))
        cuts.append(np.full(len(rows), query.cut, dtype=np.int64))
    if not blocks:
        raise ValueError("no training examples: the catalog has too little transaction history")
    return Examples(np.vstack(blocks), np.concatenate(labels), np.concatenate(groups), np.concatenate(weights),
                    np.concatenate(cuts))


def _pool(examples: Examples, mask: np.ndarray) -> Pool:
    return Pool(examples.features[mask], label=examples.labels[mask], group_id=examples.groups[mask],
                feature_names=FEATURE_NAMES)


def _catboost(loss: str, params: dict, seed: int, iterations: int | None = None) -> CatBoost:
    return CatBoost({
        "loss_function": loss,
        "iterations": iterations or int(params.get("iterations", 400)),
        "learning_rate": float(params.get("learning_rate", 0.08)),
        "depth": int(params.get("depth", 6)),
        "l2_leaf_reg": float(params.get("l2_leaf_reg", 3.0)),
        "random_seed": seed,
        "thread_count": int(params.get("thread_count", 4)),
        "allow_writing_files": False,
        "verbose": False,
        "border_count": int(params.get("border_count", 128)),
    })


def _sampled_map(raw: np.ndarray, examples: Examples, mask: np.ndarray, k: int) -> float:
    """MAP@k on the validation queries' sampled candidates (comparison of losses, not the reported metric)."""
    labels, groups = examples.labels[mask], examples.groups[mask]
    values = []
    for key in np.unique(groups):
        rows = np.flatnonzero(groups == key)
        order = rows[np.argsort(-raw[rows], kind="stable")]
        values.append(average_precision_at_k(order.tolist(), set(rows[labels[rows] == 1].tolist()), k))
    return float(np.mean(values)) if values else 0.0


def _platt(raw: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(labels)) < 2:
        return 1.0, 0.0
    fit = LogisticRegression(C=1e4, max_iter=1000).fit(raw.reshape(-1, 1), labels, sample_weight=weights)
    return float(fit.coef_[0, 0]), float(fit.intercept_[0])


def train(catalog: Path, out: Path, params: dict, seed: int, baseline: Path | None = None) -> TrainResult:
    """Train on `catalog`'s history and evaluate on its hold-out; with `baseline` (the deployed model's
    file), score that model on the same hold-out too, so the deploy decision compares like with like
    without loading the catalog a second time."""
    started = time.perf_counter()
    out = Path(out)
    history = load_history(Path(catalog))
    plan = make_plan(history, params)
    levels = categorical_levels(history.profile)
    states = StateCache(history, levels)
    examples = build_examples(plan, states, params, seed)
    k = int(params.get("eval_top_k", 100))
    built = time.perf_counter()

    # Inner validation: the latest training cut (time split inside the training period).
    cuts = np.unique(examples.cuts)
    if len(cuts) >= 2:
        validation = examples.cuts == cuts[-1]
    else:
        validation = (examples.groups % 5) == 0
    fit_part = ~validation
    if not fit_part.any() or not validation.any():
        fit_part = validation = np.ones(len(examples.labels), dtype=bool)

    losses = params.get("loss_candidates") or [params.get("loss_function", "Logloss")]
    if isinstance(losses, str):
        losses = [s.strip() for s in losses.split(",")]
    trials: dict[str, dict] = {}
    for loss in losses:
        model = _catboost(loss, params, seed)
        model.fit(_pool(examples, fit_part), eval_set=_pool(examples, validation), use_best_model=True,
                  early_stopping_rounds=int(params.get("early_stopping_rounds", 60)))
        raw = model.predict(examples.features[validation], prediction_type="RawFormulaVal")
        trials[loss] = {"model": model, "map": _sampled_map(raw, examples, validation, k), "raw": raw,
                        "iterations": int(model.get_best_iteration() or 0) + 1}
    best_loss = max(losses, key=lambda name: (trials[name]["map"], -losses.index(name)))
    best = trials[best_loss]
    scale, shift = _platt(best["raw"], examples.labels[validation], examples.weights[validation])
    booster = best["model"]
    if bool(params.get("refit", True)) and fit_part.sum() < len(fit_part):
        # Same loss and tree count on every training cut, the latest included.
        refit = _catboost(best_loss, params, seed, iterations=best["iterations"])
        refit.fit(_pool(examples, np.ones(len(examples.labels), dtype=bool)))
        booster = refit
    trained = time.perf_counter()
    iterations = best["iterations"]
    validation_maps = {f"validation_map_at_{k}_{name}": float(t["map"]) for name, t in trials.items()}
    example_counts = {
        "train_rows": float(len(examples.labels)), "train_positives": float(examples.labels.sum()),
        "train_queries": float(len(np.unique(examples.groups))),
    }
    # The hold-out scoring below builds its own states: the training matrix and the trial models'
    # predictions go first (~0.6 GB at full scale).
    del examples, best
    trials.clear()

    meta = {
        "name": params.get("name", "lookalike-catboost"),
        "feature_names": FEATURE_NAMES,
        "categorical_features": [],  # categoricals are integer codes by the levels below (fast scoring)
        "categorical_levels": levels,
        "calibration": [scale, shift],
        "loss_function": best_loss,
        "iterations": iterations,
        "thread_count": int(params.get("thread_count", 4)),
        "holdout_cut": str(np.datetime64(plan.holdout_cut, "D")),
        "train_cuts": [str(np.datetime64(c, "D")) for c in plan.train_cuts],
        "seed": seed,
    }
    model = LookalikeModel(booster=booster, meta=meta)
    model_path = model.save(out)

    holdout_ap: list[float] = []
    metrics = score_holdout(model, plan, states, k, seed, int(params.get("thread_count", 4)), holdout_ap)
    metrics.update(validation_maps)
    metrics.update(example_counts)
    metrics.update({
        "train_real_offer_queries": float(sum(1 for q in plan.train if q.real)),
        "best_iterations": float(iterations),
        "examples_seconds": round(built - started, 2), "fit_seconds": round(trained - built, 2),
        "train_seconds": round(time.perf_counter() - started, 2),
    })
    importance = booster.get_feature_importance()
    meta["feature_importance"] = {name: round(float(v), 3) for name, v in
                                  sorted(zip(FEATURE_NAMES, importance), key=lambda item: -item[1])}
    meta["metrics"] = metrics
    model.save(out)
    used = {key: str(value) for key, value in params.items()}
    used.update({"loss_function": best_loss, "best_iterations": str(iterations), "seed": str(seed)})
    baseline_metrics, baseline_ap = None, None
    if baseline is not None:
        deployed = LookalikeModel.load(Path(baseline))
        states.relevel(deployed.levels)
        baseline_ap = []
        baseline_metrics = score_holdout(deployed, plan, states, k, seed, int(params.get("thread_count", 4)),
                                         baseline_ap)
    return TrainResult(model_path=model_path, metrics=metrics, params=used, feature_names=list(FEATURE_NAMES),
                       features_count=len(FEATURE_NAMES), baseline_metrics=baseline_metrics,
                       holdout_ap=holdout_ap, baseline_holdout_ap=baseline_ap)


def main() -> None:
    from domain.settings import load_params

    parser = argparse.ArgumentParser(prog="python -m ml.train")
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    params = load_params()
    result = train(args.catalog, args.out, params["model"], int(params["seed"]))
    print(json.dumps({"model_path": str(result.model_path), **result.metrics}, indent=2))


if __name__ == "__main__":
    main()
