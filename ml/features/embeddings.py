"""User and brand embeddings learnt from the whole purchase matrix (implicit-feedback ALS).

Why: the raw user x brand vectors are sparse (a client buys at a few dozen of thousands of brands), so
two clients with the same tastes often share no brand at all; factors learnt from everyone's purchases
place them close anyway. This is the "global embeddings" half of look-alike systems (Pinterest,
"Finding Users Who Act Alike", KDD 2019); the per-offer half is the ranker.

`implicit`'s ALS (Hu, Koren, Volinsky 2008) is a well-kept implementation of exactly this model:
deterministic for fixed starting factors, a few seconds on 50k x 6k. The matrix is BM25-weighted purchase
counts, the usual input for ALS on implicit feedback (frequent brands and heavy buyers do not drown
the rest).
"""
from __future__ import annotations

import numpy as np
from scipy import sparse
from threadpoolctl import threadpool_limits

FACTORS = 32
ITERATIONS = 15
REGULARIZATION = 0.05
INITIAL_SCALE = 0.01  # the size of the starting factors, as implicit draws them


def initial_factors(ids: np.ndarray, factors: int) -> np.ndarray:
    """Starting factors that depend on the id alone: uniform in [0, INITIAL_SCALE), a SplitMix64 hash of
    (id, factor). ALS is not convex, so where it ends depends on where it starts; a brand starts at the
    same place in every refit, and the factors of the next version's state stay close to this one's
    where the data did not move (random starts moved the audiences of unchanged offers)."""
    z = ids.astype(np.uint64)[:, None] * np.uint64(0x9E3779B97F4A7C15) + np.arange(
        1, factors + 1, dtype=np.uint64)[None, :] * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(40)).astype(np.float64) / 2**24 * INITIAL_SCALE).astype(np.float32)


def fit(counts: sparse.csr_matrix, user_ids: np.ndarray, brand_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(user factors n_users x FACTORS, brand factors n_brands x FACTORS), float32 (fewer factors for a
    catalog too small to have FACTORS; zeros when there is nothing to factorise). Rows of `counts` are
    `user_ids`, columns `brand_ids`: the factors start from `initial_factors` of those ids."""
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.nearest_neighbours import bm25_weight

    n_users, n_brands = counts.shape
    # A tiny catalog gets as many factors as it has rank for.
    factors = min(FACTORS, n_users - 1, n_brands - 1)
    if counts.nnz == 0 or factors < 1:
        return np.zeros((n_users, max(factors, 1)), np.float32), np.zeros((n_brands, max(factors, 1)), np.float32)
    weighted = bm25_weight(counts.astype(np.float32), K1=100, B=0.8).tocsr().astype(np.float32)
    # ALS parallelises over users itself; BLAS threads inside it only contend (implicit checks this
    # when the model is built).
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=factors, iterations=ITERATIONS, regularization=REGULARIZATION,
                                        calculate_training_loss=False)
        model.user_factors = initial_factors(user_ids, factors)
        model.item_factors = initial_factors(brand_ids, factors)
        model.fit(weighted, show_progress=False)
    return (np.ascontiguousarray(model.user_factors, dtype=np.float32),
            np.ascontiguousarray(model.item_factors, dtype=np.float32))


def normalised(factors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero): dot products become cosines."""
    norms = np.linalg.norm(factors, axis=1, keepdims=True)
    return np.where(norms > 0, factors / np.maximum(norms, 1e-12), 0.0).astype(np.float32)


TOP_UNKNOWN = 20     # best-scored brands a user does not buy at yet, kept per user
_CHUNK_USERS = 4096  # users scored at once against every brand (memory: chunk x n_brands floats)


def top_unknown(user_factors: np.ndarray, brand_factors: np.ndarray, counts: sparse.csr_matrix) -> np.ndarray:
    """Per user, the TOP_UNKNOWN highest ALS preferences among brands the user has not bought at,
    descending (-inf where fewer exist). Whether a brand is the user's next step depends on how it
    compares with the user's other unknown brands, not on its preference alone: a user walks to the
    best-fitting brands they do not know yet first."""
    n_users, n_brands = counts.shape
    top = np.full((n_users, TOP_UNKNOWN), -np.inf, dtype=np.float32)
    k = min(TOP_UNKNOWN, n_brands)
    if k == 0:
        return top
    for lo in range(0, n_users, _CHUNK_USERS):
        hi = min(lo + _CHUNK_USERS, n_users)
        scores = user_factors[lo:hi] @ brand_factors.T
        block = counts[lo:hi]
        scores[np.repeat(np.arange(hi - lo), np.diff(block.indptr)), block.indices] = -np.inf
        best = np.partition(scores, n_brands - k, axis=1)[:, n_brands - k:] if k < n_brands else scores
        top[lo:hi, :k] = -np.sort(-best, axis=1)
    return top
