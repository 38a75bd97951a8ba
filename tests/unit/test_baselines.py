"""The baselines on a hand-made serving state of six clients and four brands."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import sparse

from ml.baselines import (
    BASELINES,
    Context,
    exposure,
    item_knn,
    matrix_factorisation,
    popularity,
    random_scores,
    segment_rate,
)
from ml.features import (
    BRAND_STATS,
    CATEGORICAL,
    USER_NUMERIC,
    OfferSpec,
    OfferUsers,
    State,
    embeddings,
    non_customers,
    sequences,
)

START = 20_000  # the offer's first day; the state's cut is START + 10 (a running offer)
OFFER = OfferSpec(brand=0, start_day=START, end_day=START + 30, offer_id=77)


def make_state() -> State:
    """Clients 0 and 1 buy at brands 0 (the offer's) and 1 before the offer; client 2 at brand 1 only, client 3
    at brand 2 only, client 4 nowhere, client 5 bought at brand 0 for the first time inside the window.
    Segment A: clients 0, 1, 2; segment B: 3, 4, 5. Client 4 is the most active. Offer 77 was seen by
    clients 3 and 4 and activated by client 3."""
    purchases = {(0, 0): (3, START - 50), (0, 1): (2, START - 40), (1, 0): (1, START - 30), (1, 1): (4, START - 90),
                 (2, 1): (5, START - 20), (3, 2): (2, START - 10), (5, 0): (1, START + 5), (5, 3): (1, START - 70)}
    rows, cols = np.array([k[0] for k in purchases]), np.array([k[1] for k in purchases])
    n_users, n_brands = 6, 4
    counts = sparse.csr_matrix((np.array([v[0] for v in purchases.values()], np.float32), (rows, cols)),
                               shape=(n_users, n_brands))
    first = sparse.csr_matrix((np.array([v[1] for v in purchases.values()], np.int32), (rows, cols)),
                              shape=(n_users, n_brands))
    for matrix in (counts, first):
        matrix.sort_indices()
    user_numeric = np.zeros((n_users, len(USER_NUMERIC)), np.float32)
    user_numeric[:, USER_NUMERIC.index("tx_90d")] = [5, 4, 3, 2, 9, 1]
    empty = sparse.csr_matrix((n_users, n_brands), dtype=np.float32)
    user_factors, brand_factors = embeddings.fit(counts, np.arange(101, 107), np.arange(501, 505))
    return State(
        cut=START + 10, user_ids=np.arange(101, 107), brand_ids=np.arange(501, 505),
        user_raw=pl.DataFrame({name: [None] * n_users for name in CATEGORICAL},
                              schema={name: pl.Utf8 for name in CATEGORICAL}),
        user_numeric=user_numeric, counts=counts, first=first,
        brand_stats=np.zeros((n_brands, len(BRAND_STATS)), np.float32),
        category_share=np.zeros((n_users, 1), np.float32), spend_share=np.zeros((n_users, 1), np.float32), brand_seen=empty, brand_activated=empty.copy(),
        offer_users=OfferUsers(np.array([77]), np.array([0, 2, 3, 3]), np.array([3, 4, 3], np.int32)),
        offers=pl.DataFrame(), merchants=pl.DataFrame(),
        user_factors=user_factors, brand_factors=brand_factors,
        mf_top=embeddings.top_unknown(user_factors, brand_factors, counts),
        adoptions=sequences.build(rows, cols, np.array([v[1] for v in purchases.values()]), n_users, n_brands,
                                  START - 200, START + 10),
        lift_codes={"segment": np.array([0, 0, 0, 1, 1, 1], np.int32)},
    )


@pytest.fixture()
def context() -> Context:
    return Context(make_state(), seed=7)


def candidates(context: Context, offer: OfferSpec = OFFER) -> np.ndarray:
    return non_customers(context.state, offer.brand, offer.start_day)


def ranking(context: Context, baseline, offer: OfferSpec = OFFER) -> list[int]:
    pool = candidates(context, offer)
    scores = baseline(context, offer, pool)
    return pool[np.lexsort((pool, -scores))].tolist()


def test_candidates_are_the_non_customers_before_the_start(context):
    assert candidates(context).tolist() == [2, 3, 4, 5]


def test_every_baseline_scores_every_candidate(context):
    pool = candidates(context)
    for name, baseline in BASELINES.items():
        scores = baseline(context, OFFER, pool)
        assert scores.shape == (len(pool),) and np.isfinite(scores).all(), name


def test_popularity_ranks_by_recent_activity(context):
    assert ranking(context, popularity) == [4, 2, 3, 5]


def test_segment_rate_prefers_the_segment_of_the_brands_customers(context):
    scores = dict(zip(candidates(context).tolist(), segment_rate(context, OFFER, candidates(context))))
    # segment A: 2 of 3 already buy there; segment B: none (client 5 converted after the start)
    assert scores[2] > scores[3] == scores[4] == scores[5]


def test_item_knn_follows_co_customers(context):
    scores = dict(zip(candidates(context).tolist(), item_knn(context, OFFER, candidates(context))))
    # brand 1 shares both customers with brand 0: cosine 2 / sqrt(2 * 3); brand 2 none; brand 3 none before
    assert scores[2] == pytest.approx(2 / np.sqrt(2 * 3))
    assert scores[3] == 0.0 and scores[4] == 0.0


def test_exposure_puts_converts_then_activated_then_seen(context):
    assert ranking(context, exposure) == [5, 3, 4, 2]
    fresh = OfferSpec(brand=0, start_day=START + 10, end_day=START + 40, offer_id=None)
    # A fresh offer nobody met yet, whose brand client 5 already buys at: activity alone.
    assert ranking(context, exposure, fresh) == [4, 2, 3]


def test_matrix_factorisation_is_deterministic_and_uses_co_purchases(context):
    first = matrix_factorisation(context, OFFER, candidates(context))
    again = matrix_factorisation(Context(make_state(), seed=7), OFFER, candidates(context))
    np.testing.assert_array_equal(first, again)
    scores = dict(zip(candidates(context).tolist(), first))
    assert scores[2] > scores[4]  # client 2 buys where the brand's customers buy; client 4 buys nowhere


def test_random_is_seeded_by_the_offer(context):
    pool = candidates(context)
    np.testing.assert_array_equal(random_scores(context, OFFER, pool), random_scores(context, OFFER, pool))
    other = OfferSpec(brand=0, start_day=START, end_day=START + 30, offer_id=78)
    assert not np.array_equal(random_scores(context, OFFER, pool), random_scores(context, other, pool))


def test_an_unknown_brand_gives_no_brand_signal(context):
    unknown = OfferSpec(brand=-1, start_day=START, end_day=START + 30, offer_id=None)
    pool = np.arange(context.state.n_users)
    assert not item_knn(context, unknown, pool).any() and not matrix_factorisation(context, unknown, pool).any()
