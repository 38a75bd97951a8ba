"""The catalog loaded once for feature work: ids mapped to dense indices, only the columns features use."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from domain.tables import online_flag
from ml.catalog import lazy_table, read_table
from ml.features.parsing import OPEN_END_DAY, amount_level
from ml.ground_truth import OPEN_END

# Receipt categories kept as features (the most frequent ones; the rest count as "other").
MAX_RECEIPT_CATEGORIES = 30


@dataclass
class History:
    """The catalog loaded once, ids mapped to dense indices (users and brands sorted by id)."""

    user_ids: np.ndarray
    brand_ids: np.ndarray
    tx: pl.DataFrame            # u, b, day, amount, online
    profile: pl.DataFrame       # one row per user index: raw categoricals and static numerics
    receipts: pl.DataFrame      # u, day, category, cost
    categories: list[str]
    interactions: pl.DataFrame  # u, offer_id, b, kind (0 seen, 1 activated, 2 rewarded), day
    offers: pl.DataFrame        # offer_id, merchant_id_offer, start_day, end_day, offer_text, brand_dk, b
    merchants: pl.DataFrame     # merchant_id_offer, merchant_status, brand_dk, b
    transactions: pl.DataFrame  # user_id, brand_dk, event_date: what ground truth is computed from
    min_day: int
    max_day: int
    _first: pl.DataFrame | None = field(default=None, repr=False)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def first_purchases(self) -> pl.DataFrame:
        """(u, b, first day) of every user-brand pair, computed once."""
        if self._first is None:
            # tx is sorted by (u, b, day): a pair's first purchase is the first row of its run (a
            # filter, where a hash group_by held ~1 GB more at 12M rows).
            new_pair = (pl.col("u") != pl.col("u").shift()) | (pl.col("b") != pl.col("b").shift())
            self._first = self.tx.filter(new_pair.fill_null(True)).select("u", "b", pl.col("day").alias("first"))
        return self._first

    @property
    def n_brands(self) -> int:
        return len(self.brand_ids)


def _index(ids: pl.Series, name: str, index: str) -> pl.DataFrame:
    return pl.DataFrame({name: ids}).with_row_index(index).with_columns(pl.col(index).cast(pl.Int32))


def load_history(catalog: Path) -> History:
    catalog = Path(catalog)
    tx = read_table(catalog, "transaction", ["user_id", "brand_dk", "event_date", "amount_bucket",
                                             "online_transaction_flg"])
    tx = tx.drop_nulls(["user_id", "brand_dk", "event_date"])
    people = read_table(catalog, "people").drop_nulls("user_id").unique("user_id", keep="last").sort("user_id")
    segments = read_table(catalog, "segments").drop_nulls("user_id").unique("user_id", keep="last").sort("user_id")
    merchants = read_table(catalog, "merchant").drop_nulls("merchant_id_offer").unique(
        "merchant_id_offer", keep="last").sort("merchant_id_offer")
    offers = read_table(catalog, "offer").drop_nulls(["offer_id", "merchant_id_offer", "start_date"])

    user_ids = pl.concat([people["user_id"], segments["user_id"], tx["user_id"]]).unique().sort()
    brand_ids = pl.concat([tx["brand_dk"], merchants["brand_dk"].drop_nulls()]).unique().sort()
    users = _index(user_ids, "user_id", "u")
    brands = _index(brand_ids, "brand_dk", "b")

    tx_idx = (
        tx.join(users, on="user_id", how="left").join(brands, on="brand_dk", how="left")
        .select(
            "u", "b",
            pl.col("event_date").cast(pl.Int32).alias("day"),
            amount_level(tx["amount_bucket"]).alias("amount"),
            online_flag().alias("online"),
        )
        .sort("u", "b", "day")
    )

    accounts = read_table(catalog, "financial_account").drop_nulls("user_id")
    account_stats = accounts.group_by("user_id").agg(
        pl.len().cast(pl.Float32).alias("accounts_count"),
        pl.col("close_month").is_null().sum().cast(pl.Float32).alias("accounts_open"),
        pl.col("product_cd").n_unique().cast(pl.Float32).alias("products_distinct"),
    )
    profile = (
        users.join(people, on="user_id", how="left").join(segments, on="user_id", how="left")
        .join(account_stats, on="user_id", how="left")
        .sort("u")
        .select(
            "u", "user_id",
            pl.col("gender_cd").str.to_uppercase().alias("gender"),
            pl.col("region").str.to_uppercase(),
            pl.col("segment").str.extract(r"^\s*([^\s(]+)", 1).alias("segment"),
            pl.col("region_size").str.to_lowercase(),
            pl.col("vip_status"),
            pl.col("age_bucket").cast(pl.Float64, strict=False).cast(pl.Int64, strict=False).cast(pl.Utf8)
            .alias("age_bucket"),
            pl.col("age_bucket").cast(pl.Float32, strict=False).alias("age"),
            pl.col("segment").str.extract(r"\((\d+(?:\.\d+)?)\)", 1).cast(pl.Float32, strict=False)
            .alias("segment_number"),
            pl.col("auto").cast(pl.Float32), pl.col("traveler").cast(pl.Float32),
            pl.col("entrepreneur").cast(pl.Float32),
            pl.col("accounts_count").fill_null(0), pl.col("accounts_open").fill_null(0),
            pl.col("products_distinct").fill_null(0),
        )
    )

    receipts = read_table(catalog, "receipts").drop_nulls(["user_id", "date_operated"])
    top = (receipts.group_by("category_name").len().drop_nulls("category_name")
           .sort(["len", "category_name"], descending=[True, False]).head(MAX_RECEIPT_CATEGORIES))
    categories = top["category_name"].to_list()
    category_index = pl.DataFrame({"category_name": categories}).with_row_index("category").with_columns(
        pl.col("category").cast(pl.Int32))
    receipts_idx = (
        receipts.join(users, on="user_id", how="inner").join(category_index, on="category_name", how="left")
        .select("u", pl.col("date_operated").cast(pl.Int32).alias("day"),
                pl.col("category").fill_null(-1), amount_level(receipts["items_cost"]).alias("cost"))
    )

    merchants_idx = merchants.join(brands, on="brand_dk", how="left").with_columns(pl.col("b").fill_null(-1))
    offers_idx = (
        offers.join(merchants_idx.select("merchant_id_offer", "brand_dk", "b"), on="merchant_id_offer", how="left")
        .with_columns(
            pl.col("b").fill_null(-1),
            pl.col("start_date").cast(pl.Int32).alias("start_day"),
            pl.when(pl.col("end_date").is_null() | (pl.col("end_date") >= OPEN_END)).then(OPEN_END_DAY)
            .otherwise(pl.col("end_date").cast(pl.Int32)).cast(pl.Int32).alias("end_day"),
        )
        .sort("offer_id", "merchant_id_offer", "start_day", "end_day", "offer_text", nulls_last=True)
    )
    offer_brand = offers_idx.unique("offer_id", keep="first").select("offer_id", "b")

    # Only the columns used; the catalog's rows are already distinct, and repeats count once where
    # it matters (OfferUsers), so no sort or unique over these ~10M rows (each costs GBs).
    # Built by the streaming engine, so the three tables are never all materialised at once; row
    # order is whatever the engine gives, and nothing downstream depends on it.
    parts = [
        lazy_table(catalog, table).select("user_id", "offer_id", pl.lit(kind, dtype=pl.Int8).alias("kind"),
                                          pl.col(date_col).cast(pl.Int32).alias("day"))
        .drop_nulls(["user_id", "offer_id"])
        for kind, table, date_col in ((0, "offer_seens", "start_date"), (1, "offer_activation", "activation_date"),
                                      (2, "offer_reward", "event_date"))
    ]
    interactions = (
        pl.concat(parts).join(users.lazy(), on="user_id", how="inner")
        .join(offer_brand.lazy(), on="offer_id", how="left")
        .select("u", "offer_id", pl.col("b").fill_null(-1), "kind", "day")
        .collect(engine="streaming")
    )

    days = tx_idx["day"]
    return History(
        user_ids=users["user_id"].to_numpy(), brand_ids=brands["brand_dk"].to_numpy(),
        tx=tx_idx, profile=profile, receipts=receipts_idx, categories=categories,
        interactions=interactions, offers=offers_idx, merchants=merchants_idx,
        transactions=tx.select("user_id", "brand_dk", "event_date"),
        min_day=int(days.min()) if len(days) else 0, max_day=int(days.max()) if len(days) else 0,
    )
