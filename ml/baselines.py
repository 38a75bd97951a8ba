"""Simple rankings the model must beat, each computed by code from the same state as the model.

Every ranking has one signature: (state, offer, candidate pool, rng) -> a score per pool user (higher
ranks first; ties by user id, as serving breaks them).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ml.features import USER_INDEX, OfferSpec, State, offer_groups
from ml.features.offer import _lift
from ml.features.state import ACTIVATED, SEEN

Ranking = Callable[[State, OfferSpec, np.ndarray, np.random.Generator], np.ndarray]


def random_order(state: State, offer: OfferSpec, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.random(len(pool))


def popularity(state: State, offer: OfferSpec, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The most active non-customers (transactions in the last 90 days)."""
    return state.user_numeric[pool, USER_INDEX["tx_90d"]]


def segment_rate(state: State, offer: OfferSpec, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Users of the segments most over-represented among the brand's customers."""
    return _lift(state, "segment", offer_groups(state, offer).members)[pool]


def item_knn(state: State, offer: OfferSpec, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sum over the user's brands of their cosine similarity (co-customers) to the offer's brand."""
    derived = state.derived()
    binary, binary_t = derived["binary"], derived["binary_t"]
    if not 0 <= offer.brand < binary.shape[1]:
        return np.zeros(len(pool))
    co_buyers = np.asarray((binary_t @ binary_t[offer.brand].T).todense()).ravel()
    cosine = co_buyers / np.sqrt(max(co_buyers[offer.brand], 1.0) * np.maximum(derived["brand_nnz"], 1.0))
    cosine[offer.brand] = 0.0
    return np.asarray(binary[pool] @ cosine).ravel()


def matrix_factorisation(state: State, offer: OfferSpec, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The ALS preference of each user for the brand (implicit's ALS on BM25-weighted purchase counts)."""
    if not 0 <= offer.brand < len(state.brand_ids):
        return np.zeros(len(pool))
    return state.user_factors[pool] @ state.brand_factors[offer.brand]


def exposure(state: State, offer: OfferSpec, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Activated this offer, then seen it, then the most active (converts so far already lead the ranking)."""
    score = np.zeros(state.n_users)
    exact = state.offer_users.users(offer.offer_id) if offer.offer_id is not None else None
    if exact is not None:
        score[exact[SEEN]] = 1.0
        score[exact[ACTIVATED]] = 2.0
    activity = state.user_numeric[pool, USER_INDEX["tx_90d"]]
    return score[pool] * 1e6 + activity


RANKINGS: dict[str, Ranking] = {
    "random": random_order, "popularity": popularity, "segment": segment_rate, "item_knn": item_knn,
    "als": matrix_factorisation, "exposure": exposure,
}
