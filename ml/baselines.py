"""Simple rankings of an offer's candidates: the yardsticks a look-alike model has to beat.

Every baseline has one signature, `(context, offer, pool) -> scores`: the scores of the candidate
users `pool` (indices into the serving state) for the offer, higher first; the caller ranks them the
way the model is ranked (ties by user id). They read only the serving state's purchase matrices
(`counts`, `first`), user attributes (`user_numeric`, `lift_codes`), who met the offer
(`offer_users`), and the brand lookups `brand_column` / `customers_before`.

- random: a uniform draw, seeded by the offer;
- popularity: the most active clients (transactions in the last 90 days);
- segment: the look-alike rate of the client's segment, i.e. the share of the segment that already
  buys at the brand (smoothed towards the overall share);
- item_knn: item-based collaborative filtering, the sum over the client's brands of their cosine
  similarity (over co-customers) to the offer's brand;
- als: matrix factorisation of the user x brand matrix (implicit feedback ALS, `implicit`, as
  `ml.features.embeddings` fits it for the state), the dot product of the client's and the brand's factors;
- exposure: what the offer itself shows: clients who already converted inside its window (a running
  offer), then those who activated it, then those who saw it, then the most active.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from ml.features import USER_NUMERIC, OfferSpec, State, brand_column, customers_before

ACTIVITY = "tx_90d"
SEGMENT = "segment"
SEGMENT_SMOOTHING = 20.0   # pseudo-clients at the overall rate added to each segment


@dataclass
class Context:
    """A serving state and what the baselines derive from it once (the binary purchase matrix)."""

    state: State
    seed: int
    _cache: dict = field(default_factory=dict, repr=False)

    def purchases(self) -> sparse.csr_matrix:
        """users x brands, 1 where the user bought at the brand before the state's cut."""
        if "purchases" not in self._cache:
            binary = self.state.counts.tocsr(copy=True).astype(np.float32)
            binary.data[:] = 1.0
            self._cache["purchases"] = binary
        return self._cache["purchases"]

    def factors(self) -> tuple[np.ndarray, np.ndarray]:
        """(user factors, brand factors): the state's own ALS (`ml.features.embeddings`), so the baseline
        is the factorisation the model's features are built on, read alone."""
        return self.state.user_factors, self.state.brand_factors


Baseline = Callable[[Context, OfferSpec, np.ndarray], np.ndarray]


def _known_brand(context: Context, offer: OfferSpec) -> bool:
    return 0 <= offer.brand < len(context.state.brand_ids)


def random_scores(context: Context, offer: OfferSpec, pool: np.ndarray) -> np.ndarray:
    seed = [context.seed, offer.brand + 1, offer.start_day, -1 if offer.offer_id is None else offer.offer_id]
    return np.random.default_rng([abs(part) for part in seed]).random(len(pool))


def popularity(context: Context, offer: OfferSpec, pool: np.ndarray) -> np.ndarray:
    return context.state.user_numeric[pool, USER_NUMERIC.index(ACTIVITY)].astype(np.float64)


def segment_rate(context: Context, offer: OfferSpec, pool: np.ndarray) -> np.ndarray:
    codes = context.state.lift_codes[SEGMENT]
    customers = customers_before(context.state, offer.brand, offer.start_day)
    size = np.bincount(codes, minlength=int(codes.max()) + 1).astype(np.float64)
    buyers = np.bincount(codes[customers], minlength=len(size)).astype(np.float64)
    overall = len(customers) / max(len(codes), 1)
    rate = (buyers + SEGMENT_SMOOTHING * overall) / (size + SEGMENT_SMOOTHING)
    return rate[codes[pool]]


def item_knn(context: Context, offer: OfferSpec, pool: np.ndarray) -> np.ndarray:
    if not _known_brand(context, offer):
        return np.zeros(len(pool))
    purchases = context.purchases()
    customers = customers_before(context.state, offer.brand, offer.start_day)
    if len(customers) == 0:
        return np.zeros(len(pool))
    co_customers = np.asarray(purchases[customers].sum(axis=0)).ravel()
    brand_size = np.asarray(purchases.sum(axis=0)).ravel()
    similarity = co_customers / np.sqrt(len(customers) * np.maximum(brand_size, 1.0))
    similarity[offer.brand] = 0.0  # the brand itself says nothing about a client who never bought there
    return np.asarray(purchases[pool] @ similarity).ravel()


def matrix_factorisation(context: Context, offer: OfferSpec, pool: np.ndarray) -> np.ndarray:
    if not _known_brand(context, offer):
        return np.zeros(len(pool))
    users, brands = context.factors()
    return (users[pool] @ brands[offer.brand]).astype(np.float64)


def exposure(context: Context, offer: OfferSpec, pool: np.ndarray) -> np.ndarray:
    """Tier (3 converted in the window, 2 activated, 1 seen, 0 else) plus activity scaled into [0, 1)."""
    n = context.state.n_users
    tier = np.zeros(n)
    met = context.state.offer_users.users(offer.offer_id) if offer.offer_id is not None else None
    if met is not None:
        seen, activated, _ = met
        tier[seen] = 1.0
        tier[activated] = 2.0
    users, first = brand_column(context.state, offer.brand)
    tier[users[(first >= offer.start_day) & (first <= offer.end_day)]] = 3.0
    activity = popularity(context, offer, pool)
    return tier[pool] + activity / (activity.max(initial=0.0) + 1.0)


BASELINES: dict[str, Baseline] = {
    "random": random_scores,
    "popularity": popularity,
    "segment": segment_rate,
    "item_knn": item_knn,
    "als": matrix_factorisation,
    "exposure": exposure,
}
