"""The one definition of an offer's ground truth, used by training, evaluation, benchmarks and tests.

New customers of an offer = users who transacted at the offer's brand between start_date and
end_date (inclusive) and never at that brand before start_date. The offer's brand comes from
merchant.brand_dk of the offer's merchant_id_offer.
"""
from __future__ import annotations

import datetime as dt

import polars as pl

from domain.tables import OPEN_END


def effective_end(end_date: dt.date | None) -> dt.date:
    """Missing or far-future end dates (5999-01-01) mean an open-ended offer."""
    return OPEN_END if end_date is None or end_date >= OPEN_END else end_date


def new_customers(
    transactions: pl.LazyFrame | pl.DataFrame,
    brand_dk: int,
    start_date: dt.date,
    end_date: dt.date | None,
) -> pl.DataFrame:
    """Users whose first transaction at the brand falls in [start_date, end_date]."""
    first = (
        transactions.lazy()
        .filter(pl.col("brand_dk") == brand_dk)
        .group_by("user_id")
        .agg(pl.col("event_date").min().alias("first_date"))
        .filter(pl.col("first_date").is_between(start_date, effective_end(end_date)))
        .select("user_id")
        .sort("user_id")
    )
    return first.collect()


def offers_ground_truth(transactions: pl.LazyFrame | pl.DataFrame, offers: pl.DataFrame, merchants: pl.DataFrame) -> pl.DataFrame:
    """Ground truth of many offers at once: one row per (offer_id, merchant_id_offer, user_id).

    Offers are (offer_id, merchant_id_offer, start_date, end_date) rows; a merchant without a brand
    has no ground truth.
    """
    brands = merchants.select("merchant_id_offer", "brand_dk").drop_nulls().unique(
        "merchant_id_offer", keep="last", maintain_order=True)  # the latest row of a merchant, as in the catalog
    offer_brands = (
        offers.select("offer_id", "merchant_id_offer", "start_date", "end_date")
        .join(brands, on="merchant_id_offer", how="inner")
        .with_columns(pl.col("end_date").fill_null(OPEN_END).clip(upper_bound=OPEN_END))
    )
    first = transactions.lazy().group_by("user_id", "brand_dk").agg(pl.col("event_date").min().alias("first_date"))
    # By the streaming engine: the join pairs every offer with all its brand's customers (tens of
    # millions of rows for a training plan), and is filtered chunk by chunk instead of materialised.
    return (
        offer_brands.lazy().join(first, on="brand_dk", how="inner")
        .filter(pl.col("first_date").is_between(pl.col("start_date"), pl.col("end_date")))
        .select("offer_id", "merchant_id_offer", "user_id")
        .unique()
        .sort("offer_id", "merchant_id_offer", "user_id")
        .collect(engine="streaming")
    )
