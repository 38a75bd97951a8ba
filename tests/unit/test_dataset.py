"""Which brands train the model (ml.dataset.training_brands)."""
from __future__ import annotations

import polars as pl

from ml.dataset import training_brands


def _ranked(count: int) -> pl.DataFrame:
    """Brands 0..count-1 ranked by new customers, brand 0 the busiest."""
    return pl.DataFrame({"b": list(range(count)), "len": list(range(count * 10, 0, -10))})


def test_brands_spread_over_every_size_of_the_offered_ones():
    offered = pl.Series("b", list(range(0, 100, 2)))  # the even brands have offers
    chosen = training_brands(_ranked(100), offered, 5)
    # Evenly spaced over the 50 offered brands' ranking, the busiest and the quietest included.
    assert chosen == [0, 24, 48, 74, 98]


def test_too_few_offered_brands_are_all_taken_and_the_rest_spread_over_the_others():
    chosen = training_brands(_ranked(100), pl.Series("b", [7, 3, 500]), 5)
    assert chosen[:2] == [3, 7]
    assert chosen[2:] == [0, 50, 99]


def test_no_more_brands_than_eligible():
    assert training_brands(_ranked(4), pl.Series("b", [], dtype=pl.Int64), 10) == [0, 1, 2, 3]
    assert training_brands(_ranked(4), pl.Series("b", [1]), 0) == []
