"""Scenario kinds of a version: the same world, a drifted one, or a corrupted delivery."""
from __future__ import annotations


import numpy as np
import polars as pl

from datagen.world import AMOUNT_BUCKETS, K, Behaviour, World

SAME = {"base", "same"}
DRIFTS = {"drift_clients", "drift_behaviour", "drift_receipts"}
CORRUPTIONS = {"corrupt_missing_table", "corrupt_missing_batches", "corrupt_null_keys", "corrupt_shuffled_users",
               "corrupt_profile_flip", "corrupt_dates", "corrupt_duplicates", "corrupt_collapsed"}
ALIASES = {"corrupt_nulls": "corrupt_null_keys", "corrupt_shuffled": "corrupt_shuffled_users",
           "corrupt_missing": "corrupt_missing_table", "drift_behavior": "drift_behaviour"}
ALL = SAME | DRIFTS | CORRUPTIONS | set(ALIASES)


def canonical(name: str) -> str:
    return ALIASES.get(name, name)


def behaviour(name: str) -> Behaviour:
    """How clients behave in the version's month; drift kinds change it the way a bank might see."""
    name = canonical(name)
    if name == "drift_behaviour":
        # Spending moves online, to pricier buckets and to weekends, and gets more frequent.
        return Behaviour(online_shift=0.3, tier_shift=0.8, frequency=1.6, weekend_bias=1.5)
    if name == "drift_clients":
        # The client mix changes: a marketing campaign brings many young mass-market clients from towns
        # and villages, while the wealthier older clients go quiet.
        return Behaviour(segment_activity=np.array([0.3, 3.0, 1.0, 0.3]), tier_activity=np.array([2.5, 1.0, 0.25]),
                         newcomers=5.0, newcomer_mix={"cluster": [0.1, 0.65, 0.15, 0.1], "tier": [0.8, 0.17, 0.03],
                                                      "region_size": [0.03, 0.2, 0.42, 0.35]})
    if name == "drift_receipts":
        mix = np.zeros(K)
        mix[[1, 5]] = 0.5
        return Behaviour(receipt_mix=mix, receipt_cost_shift=0.6)
    return Behaviour()


def corrupt(name: str, tables: dict[str, pl.DataFrame], manifest: dict, world: World,
            rng: np.random.Generator) -> tuple[dict[str, pl.DataFrame], dict]:
    """Break the delivery the way the scenario says; untouched for every other kind."""
    name = canonical(name)
    if name not in CORRUPTIONS:
        return tables, manifest
    tables = dict(tables)
    tx = tables.get("transaction")
    n = tx.height if tx is not None else 0
    share = lambda p: pl.Series(rng.random(n) < p)  # noqa: E731
    if name == "corrupt_missing_table":
        tables.pop("transaction")
    elif name == "corrupt_missing_batches":
        manifest["drop_batches"] = {"transaction": [2]}
    elif name == "corrupt_null_keys":
        tables["transaction"] = tx.with_columns(pl.when(share(0.3)).then(None).otherwise(pl.col("user_id"))
                                                .alias("user_id"))
    elif name == "corrupt_shuffled_users":
        # Each column keeps its domain (plausible integer ids), but the ids no longer join to people.
        foreign = pl.Series(rng.integers(900_001, 950_000, n))
        tables["transaction"] = tx.with_columns(
            pl.when(share(0.6)).then(foreign).otherwise(pl.col("user_id").shuffle(seed=int(rng.integers(1 << 30))))
            .alias("user_id"))
    elif name == "corrupt_profile_flip":
        # Most existing clients are re-sent with another gender and age: a wholesale flip.
        era = int(manifest["version"].lstrip("v")) - 1
        known = pl.Series(world.user_ids[world.user_since < era]).implode()
        existing = world.people.filter(pl.col("user_id").is_in(known)).sample(fraction=0.8,
                                                                               seed=int(rng.integers(1 << 30)))
        flipped = existing.with_columns(
            pl.when(pl.col("gender_cd") == "M").then(pl.lit("F")).otherwise(pl.lit("M")).alias("gender_cd"),
            ((pl.col("age_bucket").cast(pl.Int64) + 25) % 70 + 15).cast(pl.Utf8).alias("age_bucket"))
        tables["people"] = pl.concat([tables["people"], flipped.select(tables["people"].columns)])
    elif name == "corrupt_dates":
        bad = pl.Series(np.where(rng.random(n) < 0.5, np.datetime64("1970-01-01"), np.datetime64("2099-12-31")),
                        dtype=pl.Date)
        tables["transaction"] = tx.with_columns(pl.when(share(0.3)).then(bad).otherwise(pl.col("event_date"))
                                                .alias("event_date"))
    elif name == "corrupt_duplicates":
        tables["transaction"] = pl.concat([tx, tx.filter(share(0.4))])
    elif name == "corrupt_collapsed":
        tables["transaction"] = tx.with_columns(pl.lit(AMOUNT_BUCKETS[0]).alias("amount_bucket"),
                                                pl.lit(int(tx["brand_dk"][0])).alias("brand_dk"))
    manifest["corruption"] = name
    return tables, manifest
