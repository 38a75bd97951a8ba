"""The hold-out evaluation, and MAP@k / precision@k defined once.

AP@k of one offer = sum over ranks i <= k of precision@i * rel(i), divided by min(k, |relevant|).
MAP@k = mean AP@k over offers with at least one relevant user. precision@k = hits in top k / k.

Every hold-out query is ranked the way serving ranks it: the users already seen converting inside the
window come first (certain new customers), then the candidates by score. The model and each baseline
(`ml.baselines`) are judged on the same queries, per kind of offer (fresh, running, far) and overall.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ml import baselines
from ml.dataset import KINDS, Plan, Query, make_plan
from ml.features import (
    History,
    State,
    encode_categoricals,
    load_history,
    non_customers,
    offer_features,
    state_at,
)
from ml.model import LookalikeModel


def average_precision_at_k(ranked: list[int] | np.ndarray, relevant: set[int] | np.ndarray, k: int = 100) -> float:
    relevant = set(np.asarray(list(relevant)).tolist()) if not isinstance(relevant, set) else relevant
    if not relevant:
        return 0.0
    hits, total = 0, 0.0
    for i, user in enumerate(list(ranked)[:k], start=1):
        if user in relevant:
            hits += 1
            total += hits / i
    return total / min(k, len(relevant))


def precision_at_k(ranked: list[int] | np.ndarray, relevant: set[int] | np.ndarray, k: int = 100) -> float:
    relevant = set(np.asarray(list(relevant)).tolist()) if not isinstance(relevant, set) else relevant
    return sum(1 for user in list(ranked)[:k] if user in relevant) / k


def top_k(scores: np.ndarray, user_ids: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k best scores, ties by user id ascending (the serving order)."""
    order = np.lexsort((user_ids, -np.asarray(scores, dtype=np.float64)))
    return order[:k]


class StateCache:
    """States by cut day, encoded with the model's categorical levels (a cut costs a pass over the data).

    Callers visit queries in cut order, so one state at a time builds each cut once (a full-scale state
    holds ~400 MB)."""

    def __init__(self, history: History, levels: dict[str, list[str]]):
        self.history = history
        self.levels = levels
        self.state: State | None = None

    def relevel(self, levels: dict[str, list[str]]) -> None:
        """Encode the cached state, and those built later, with another model's categorical levels."""
        self.levels = levels
        if self.state is not None:
            encode_categoricals(self.state, levels)

    def __call__(self, cut: int) -> State:
        if self.state is None or self.state.cut != cut:
            self.state = None
            # An offer's own exposure as known on the cut day, as serving would have seen it then.
            state = state_at(self.history, cut, exposure_as_of=cut)
            encode_categoricals(state, self.levels)
            self.state = state
        return self.state


def candidates(state: State, query: Query) -> np.ndarray:
    """Everyone with no purchase at the brand before the cut (the state knows nothing later)."""
    return non_customers(state, query.spec.brand, state.cut)


def ranked_users(query: Query, pool: np.ndarray, scores: np.ndarray, user_ids: np.ndarray, k: int) -> np.ndarray:
    """The top k as serving ranks them: certain converts (by user id), then the pool by score."""
    head = np.sort(query.certain)[:k]
    if len(head) >= k:
        return head
    return np.concatenate([head, pool[top_k(scores, user_ids[pool], k - len(head))]])


@dataclass
class HoldoutScores:
    metrics: dict[str, float]
    # AP@k of the model on each scored hold-out query, by query key (a deploy decision pairs two models
    # on the same queries).
    average_precision: dict[int, float] = field(default_factory=dict)


def score_holdout(model: LookalikeModel, plan: Plan, states: StateCache, k: int, seed: int,
                  thread_count: int | None = None, with_baselines: bool = True) -> HoldoutScores:
    """Rank every candidate of every hold-out query; the model against the baselines, per kind."""
    results: dict[str, list[float]] = {}
    context: baselines.Context | None = None
    per_query: dict[int, float] = {}

    def record(name: str, kind: str, ranked: np.ndarray, relevant: set[int]) -> float:
        ap = average_precision_at_k(ranked, relevant, k)
        for scope in ("", f"_{kind}"):
            results.setdefault(f"map_at_{k}{scope}{name}", []).append(ap)
            results.setdefault(f"precision_at_{k}{scope}{name}", []).append(precision_at_k(ranked, relevant, k))
        return ap

    for query in sorted(plan.holdout, key=lambda q: (q.cut, q.key)):
        state = states(query.cut)
        pool = candidates(state, query)
        relevant = set(query.relevant.tolist())
        if not relevant or len(pool) == 0:
            continue
        features = offer_features(state, query.spec, pool)
        scores = model.raw(features, thread_count)
        user_ids = state.user_ids
        per_query[query.key] = record("", query.kind, ranked_users(query, pool, scores, user_ids, k), relevant)
        if with_baselines:
            if context is None or context.state is not state:
                context = baselines.Context(state, seed)
            for name, ranking in baselines.BASELINES.items():
                baseline_scores = ranking(context, query.spec, pool)
                record(f"_{name}", query.kind, ranked_users(query, pool, baseline_scores, user_ids, k), relevant)
    metrics = {name: float(np.mean(values)) for name, values in sorted(results.items())}
    metrics["holdout_offers"] = float(len(per_query))
    for kind in KINDS:
        metrics[f"holdout_offers_{kind}"] = float(len(results.get(f"map_at_{k}_{kind}", [])))
    metrics["holdout_real_offers"] = float(sum(1 for q in plan.holdout if q.real))
    # The fixed names the rest of the service reads, whatever k is.
    if k != 100:
        metrics.update({name.replace(f"_at_{k}", "_at_100"): value for name, value in list(metrics.items())
                        if f"_at_{k}" in name})
    metrics.setdefault("map_at_100", 0.0)
    metrics.setdefault("precision_at_100", 0.0)
    return HoldoutScores(metrics=metrics, average_precision=per_query)


def evaluate(model_path: Path, catalog: Path, params: dict, seed: int) -> dict[str, float]:
    """Any model file on `catalog`'s hold-out (what the `evaluate` DVC stage reports)."""
    model = LookalikeModel.load(Path(model_path))
    history = load_history(Path(catalog))
    plan = make_plan(history, params)
    states = StateCache(history, model.levels)
    return score_holdout(model, plan, states, int(params.get("eval_top_k", 100)), seed,
                         int(params.get("thread_count", 4))).metrics
