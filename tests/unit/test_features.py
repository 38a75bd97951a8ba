"""Features and learning problems: what a cut day may know, the three kinds of offers, the time split."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from ml.catalog import merge
from ml.dataset import KINDS, kind_of, make_plan
from ml.features import (
    ACTIVATED,
    FEATURE_INDEX,
    FEATURE_NAMES,
    SEEN,
    OfferSpec,
    brand_column,
    categorical_levels,
    encode_categoricals,
    load_history,
    offer_features,
    state_at,
)
from tests.unit.test_ml import PARAMS
from tests.unit.test_ml_fixture import make_snapshot


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    base = tmp_path_factory.mktemp("features")
    merge(None, make_snapshot(base / "v1"), base / "catalog")
    return load_history(base / "catalog")


def test_kind_of_an_offer_depends_on_where_the_cut_sits():
    offer = OfferSpec(brand=0, start_day=100, end_day=130)
    assert kind_of(offer, 101, 30) == "running"
    assert kind_of(offer, 100, 30) == "fresh" and kind_of(offer, 71, 30) == "fresh"
    assert kind_of(offer, 70, 30) == "far"


def test_exposure_known_on_a_day_is_the_launch_audience_and_earlier_answers(history):
    offers = history.interactions.filter(pl.col("kind") == ACTIVATED).group_by("offer_id").agg(
        pl.col("day").min().alias("first_activation"))
    offer_id, day = offers.sort("offer_id").row(0)
    seen_days = history.interactions.filter((pl.col("offer_id") == offer_id) & (pl.col("kind") == SEEN))["day"]
    state = state_at(history, day, exposure_as_of=day)
    seen, activated, _ = state.offer_users.users(offer_id)
    # Seen records dated up to the day are known; activations only from before it.
    assert len(seen) == history.interactions.filter(
        (pl.col("offer_id") == offer_id) & (pl.col("kind") == SEEN) & (pl.col("day") <= day))["u"].n_unique()
    assert len(activated) == 0 and seen_days.len() > 0
    later = state_at(history, day + 1, exposure_as_of=day + 1)
    assert len(later.offer_users.users(offer_id)[ACTIVATED]) > 0
    # Serving's state holds everything the catalog has.
    everything = state_at(history, day)
    assert len(everything.offer_users.users(offer_id)[ACTIVATED]) >= len(later.offer_users.users(offer_id)[ACTIVATED])


def test_plan_keeps_every_training_label_before_the_holdout(history):
    plan = make_plan(history, PARAMS)
    assert plan.train and plan.holdout
    assert all(q.label_end < plan.holdout_cut for q in plan.train)
    assert {q.kind for q in plan.train} == set(KINDS)
    assert {q.kind for q in plan.holdout} == set(KINDS)
    for query in plan.holdout:
        assert query.label_end <= history.max_day
        if query.kind == "far":
            assert query.spec.start_day >= plan.holdout_cut and query.cut < plan.holdout_cut
        else:
            assert query.cut == plan.holdout_cut
    first = history.first_purchases()
    for query in [q for q in plan.train + plan.holdout if q.kind == "running"][:20]:
        # Certain converts bought first inside the window before the cut; positives after it.
        firsts = dict(first.filter(pl.col("b") == query.spec.brand).select("u", "first").iter_rows())
        assert all(query.spec.start_day <= firsts[u] < query.cut for u in query.certain.tolist())
        assert all(query.cut <= firsts[u] <= query.label_end for u in query.positives.tolist())


def test_offer_features_say_where_the_cut_sits_and_what_the_offer_got(history):
    plan = make_plan(history, PARAMS)
    query = next(q for q in plan.holdout if q.kind == "running" and q.real)
    state = state_at(history, query.cut, exposure_as_of=query.cut)
    encode_categoricals(state, categorical_levels(history.profile))
    rows = np.arange(state.n_users)
    matrix = offer_features(state, query.spec, rows)
    assert matrix.shape == (state.n_users, len(FEATURE_NAMES))
    assert np.all(matrix[:, FEATURE_INDEX["offer_gap_days"]] == query.spec.start_day - query.cut)
    assert np.all(matrix[:, FEATURE_INDEX["offer_days_ahead"]] == query.spec.last_day - query.cut + 1)
    seen = state.offer_users.users(query.spec.offer_id)[SEEN]
    assert set(np.flatnonzero(matrix[:, FEATURE_INDEX["offer_seen"]]).tolist()) == set(seen.tolist())
    # The offer's converts so far are counted, and the users who resemble them are told apart.
    users, first = brand_column(state, query.spec.brand)
    converts = users[first >= query.spec.start_day]
    assert matrix[0, FEATURE_INDEX["offer_window_converts_log"]] == pytest.approx(np.log1p(len(converts)))
    if len(converts):
        assert matrix[:, FEATURE_INDEX["mf_window_converts_similarity"]].std() > 0


def test_the_brand_is_placed_against_each_users_latest_adoptions(history):
    state = state_at(history, history.max_day + 1)
    encode_categoricals(state, categorical_levels(history.profile))
    brand = int(np.argmax(state.derived()["brand_nnz"]))
    matrix = offer_features(state, OfferSpec(brand=brand, start_day=state.cut, end_day=state.cut + 29))
    gap, similarity = (matrix[:, FEATURE_INDEX[name]] for name in ("mf_recent_gap", "mf_recent_similarity"))
    latest = state.adoptions.recent
    adopted = np.diff(latest.indptr) > 0
    assert adopted.any() and (~adopted).any()
    # Unknown where the user adopted nothing lately; otherwise the preference minus the mean preference
    # for the latest adoptions, and a cosine.
    assert np.isnan(gap[~adopted]).all() and np.isnan(similarity[~adopted]).all()
    user = int(np.flatnonzero(adopted)[0])
    brands = latest.indices[latest.indptr[user]:latest.indptr[user + 1]]
    factors = state.user_factors[user]
    expected = factors @ state.brand_factors[brand] - np.mean(state.brand_factors[brands] @ factors)
    assert gap[user] == pytest.approx(expected, abs=1e-5)
    assert np.all(np.abs(similarity[adopted]) <= 1 + 1e-5) and similarity[adopted].std() > 0
    unknown = offer_features(state, OfferSpec(brand=-1, start_day=state.cut, end_day=state.cut + 29))
    assert np.isnan(unknown[:, FEATURE_INDEX["mf_recent_gap"]]).all()


def test_als_starts_from_factors_of_the_id_alone():
    """A brand or client starts every refit at the same place, wherever it sits in the matrix."""
    from ml.features import embeddings

    ids = np.array([7, 123456789012, -3, 42], dtype=np.int64)
    start = embeddings.initial_factors(ids, 8)
    assert start.shape == (4, 8) and start.dtype == np.float32
    assert (start >= 0).all() and (start < embeddings.INITIAL_SCALE).all() and len(np.unique(start)) == 32
    np.testing.assert_array_equal(embeddings.initial_factors(ids[::-1], 8), start[::-1])
    np.testing.assert_array_equal(embeddings.initial_factors(ids[:2], 8), start[:2])
