"""bench/compare_models.py pairs two models' per-offer APs by offer, whichever checkout scored each."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from bench.compare_models import AP_SCHEMA, compare

PARAMS = {"seed": 3, "deploy": {"resamples": 2000}}


def aps(rows: list[tuple[str, int, float]]) -> pl.DataFrame:
    return pl.DataFrame([{"kind": kind, "offer_id": offer, "merchant_id_offer": 10 * offer, "ap": ap}
                         for kind, offer, ap in rows], schema=AP_SCHEMA)


def test_offers_are_paired_by_key_not_by_row_order():
    baseline = aps([("fresh", 1, 0.1), ("fresh", 2, 0.3), ("far", 3, 0.0), ("far", 4, 0.2)])
    # The candidate's file lists the same offers in another order, each 0.1 better on fresh ones.
    candidate = aps([("far", 4, 0.2), ("fresh", 2, 0.4), ("far", 3, 0.0), ("fresh", 1, 0.2)])
    rows = {row["kind"]: row for row in compare(baseline, candidate, 0.9, PARAMS)}
    assert set(rows) == {"fresh", "far"}  # a kind without offers has no row
    assert rows["fresh"]["offers"] == 2 and rows["fresh"]["baseline"] == pytest.approx(0.2)
    assert rows["fresh"]["difference"] == pytest.approx(0.1)
    assert rows["fresh"]["low"] == pytest.approx(0.1) and rows["fresh"]["high"] == pytest.approx(0.1)
    assert rows["far"]["difference"] == 0 and rows["far"]["low"] == 0 and rows["far"]["high"] == 0
    assert compare(baseline, candidate, 0.9, PARAMS) == compare(baseline, candidate, 0.9, PARAMS)


def test_the_interval_spans_the_differences_between_offers():
    baseline = aps([("running", offer, 0.5) for offer in range(20)])
    candidate = aps([("running", offer, 0.5 + (0.2 if offer % 2 else -0.1)) for offer in range(20)])
    (row,) = compare(baseline, candidate, 0.9, PARAMS)
    assert row["difference"] == pytest.approx(0.05)
    assert -0.1 < row["low"] < 0.05 < row["high"] < 0.2 and np.isfinite([row["low"], row["high"]]).all()


def test_models_scored_on_different_offers_are_not_compared():
    baseline = aps([("fresh", 1, 0.1), ("fresh", 2, 0.3)])
    with pytest.raises(SystemExit, match="different offers"):
        compare(baseline, aps([("fresh", 1, 0.1), ("fresh", 5, 0.3)]), 0.9, PARAMS)
