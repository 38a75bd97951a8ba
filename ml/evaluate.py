"""The hold-out evaluation, and MAP@k / precision@k defined once.

AP@k of one offer = sum over ranks i <= k of precision@i * rel(i), divided by min(k, |relevant|).
MAP@k = mean AP@k over offers with at least one relevant user. precision@k = hits in top k / k.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ml.dataset import Plan, Query, make_plan
from ml.features import USER_NUMERIC, History, State, encode_categoricals, load_history, offer_features, state_at
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
    """States by cut day, encoded with the model's categorical levels (a cut costs a pass over the data)."""

    def __init__(self, history: History, levels: dict[str, list[str]], keep: int = 1):
        self.history = history
        self.levels = levels
        # Callers visit queries in cut order, so one state at a time builds each cut once (a full-scale
        # state holds ~400 MB).
        self.keep = keep
        self.states: dict[int, State] = {}

    def relevel(self, levels: dict[str, list[str]]) -> None:
        """Encode the cached states, and those built later, with another model's categorical levels."""
        self.levels = levels
        for state in self.states.values():
            encode_categoricals(state, levels)

    def __call__(self, cut: int) -> State:
        if cut not in self.states:
            while len(self.states) >= self.keep:
                self.states.pop(next(iter(self.states)))
            # Interactions with the scored offer itself only from before its start: a future offer's
            # activations and rewards (which reveal in-window purchases) are not known when it is scored.
            state = state_at(self.history, cut, offer_interactions_until=cut)
            encode_categoricals(state, self.levels)
            self.states[cut] = state
        return self.states[cut]


def candidates(state: State, query: Query) -> np.ndarray:
    """Everyone who had not bought at the brand before the offer's start."""
    from ml.features import customers_before

    mask = np.ones(state.n_users, dtype=bool)
    mask[customers_before(state, query.spec.brand, query.spec.start_day)] = False
    return np.flatnonzero(mask)


def score_holdout(model: LookalikeModel, plan: Plan, states: StateCache, k: int, seed: int,
                  thread_count: int | None = None, per_offer: list[float] | None = None) -> dict[str, float]:
    """Rank every candidate of every hold-out query; the model against simple baselines. `per_offer`
    receives the model's AP@k of each scored query, in query order (the same for any model on one plan)."""
    rng = np.random.default_rng(seed)
    results: dict[str, list[float]] = {}
    activity = USER_NUMERIC.index("tx_90d")
    from ml.features import FEATURE_NAMES

    segment_lift = FEATURE_NAMES.index("segment_lift")

    def record(name: str, ranked_users: np.ndarray, relevant: set[int]) -> None:
        results.setdefault(f"map_at_{k}{name}", []).append(average_precision_at_k(ranked_users, relevant, k))
        results.setdefault(f"precision_at_{k}{name}", []).append(precision_at_k(ranked_users, relevant, k))

    for query in sorted(plan.holdout, key=lambda q: (q.cut, q.key)):
        state = states(query.cut)
        pool = candidates(state, query)
        relevant = set(query.positives.tolist())
        if not relevant or len(pool) == 0:
            continue
        features = offer_features(state, query.spec, pool)
        scores = model.raw(features, thread_count)
        record("", pool[top_k(scores, pool, k)], relevant)
        record("_random", pool[rng.permutation(len(pool))[:k]], relevant)
        record("_popularity", pool[top_k(state.user_numeric[pool, activity], pool, k)], relevant)
        record("_segment", pool[top_k(features[:, segment_lift], pool, k)], relevant)
    if per_offer is not None:
        per_offer.extend(results.get(f"map_at_{k}", []))
    metrics = {name: float(np.mean(values)) for name, values in sorted(results.items())}
    metrics["holdout_offers"] = float(len(results.get(f"map_at_{k}", [])))
    metrics["holdout_real_offers"] = float(sum(1 for q in plan.holdout if q.real))
    # The fixed names the rest of the service reads, whatever k is.
    metrics["map_at_100"] = metrics.get(f"map_at_{k}", 0.0)
    metrics["precision_at_100"] = metrics.get(f"precision_at_{k}", 0.0)
    for base in ("random", "popularity", "segment"):
        metrics[f"map_at_100_{base}"] = metrics.get(f"map_at_{k}_{base}", 0.0)
    return metrics


def evaluate(model_path: Path, catalog: Path, params: dict, seed: int) -> dict[str, float]:
    """The deployed-vs-new comparison: the same hold-out of `catalog` for any model file."""
    model = LookalikeModel.load(Path(model_path))
    history = load_history(Path(catalog))
    plan = make_plan(history, params)
    states = StateCache(history, model.levels)
    return score_holdout(model, plan, states, int(params.get("eval_top_k", 100)), seed,
                         int(params.get("thread_count", 4)))
