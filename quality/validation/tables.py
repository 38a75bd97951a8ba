"""Per-table checks, on the version's new rows: keys not null, unique ids and no duplicate rows,
categorical domains learnt from the catalog (first version: only structure: low cardinality), dates
in a plausible window, end dates not before start dates, a few value ranges."""
from __future__ import annotations

import datetime as dt

import great_expectations as gx
import polars as pl

from domain.tables import OPEN_END, TABLES
from quality.validation.runner import Runner, rate

# Categorical columns whose value domain is learnt from the reference (never hard-coded).
DOMAINS = {
    "people": ["gender_cd", "age_bucket"],
    "segments": ["region_size", "vip_status"],
    "transaction": ["amount_bucket", "online_transaction_flg"],
    "merchant": ["merchant_status"],
    "financial_account": ["product_cd", "account_status_cd"],
    "receipts": ["category_name", "items_cost"],
}
# Entity tables: a key re-sent with other values in one version is a conflict.
ENTITY_TABLES = ("people", "segments", "merchant")
SEGMENT_FLAGS = ("auto", "traveler", "entrepreneur")


def check_table(runner: Runner, table: str, frame: pl.DataFrame, ref: pl.DataFrame | None) -> None:
    """Every per-table check of `table`'s new rows `frame` (`ref`: the catalog's rows, or None)."""
    schema = TABLES[table]
    for column in schema.required:
        not_null(runner, table, column, frame)
    if table == "transaction":
        transactions_unique(runner, frame)
    if table in ENTITY_TABLES:
        entity_key_unique(runner, table, schema.key[0], frame)
    if table == "offer_reward":
        runner.flag("offer_reward.duplicate_rows_rare", table, frame.is_duplicated(), 0.2, False,
                    "are exact duplicates (the real table carries some)")
    for column in DOMAINS.get(table, []):
        in_domain(runner, table, column, frame, ref)
    for column, dtype in schema.columns.items():
        if dtype == pl.Date:
            dates_plausible(runner, table, column, frame, ref)
    if table in ("offer", "offer_seens"):
        ends_after_starts(runner, table, frame)
    if table == "segments":
        for column in SEGMENT_FLAGS:
            in_range(runner, table, column, frame, gx.expectations.ExpectColumnValuesToBeInSet(
                column=column, value_set=[0.0, 1.0], mostly=0.99), f"with {column} not 0/1", "is_binary")
    if table == "offer_reward":
        in_range(runner, table, "reward_amt", frame, gx.expectations.ExpectColumnValuesToBeBetween(
            column="reward_amt", min_value=0, mostly=0.99), "with a negative reward", "not_negative")
    if table == "receipts":
        in_range(runner, table, "items_count", frame, gx.expectations.ExpectColumnValuesToBeBetween(
            column="items_count", min_value=0, mostly=0.99), "with a negative items_count", "positive")


def not_null(runner: Runner, table: str, column: str, frame: pl.DataFrame) -> None:
    def describe(result: dict, ok: bool) -> str:
        return rate(result, f"have a null {column}", ok, frame.height)

    runner.expect(f"{table}.{column}_not_null", table, frame.select(column),
                  gx.expectations.ExpectColumnValuesToNotBeNull(column=column,
                                                                mostly=1 - runner.params["max_null_key_rate"]),
                  True, describe)


def transactions_unique(runner: Runner, frame: pl.DataFrame) -> None:
    """Transaction ids are unique, and no row is an exact copy of another."""
    limit = runner.params["max_duplicate_rate"]
    ids = frame["transaction_id"]
    repeated = ids.hash(seed=0).is_duplicated() & ids.is_not_null()  # 64-bit hashes: far faster on 10M
    runner.flag("transaction.transaction_id_unique", "transaction", repeated, limit, True,
                "share their transaction_id with another row",
                ids.filter(repeated).unique(maintain_order=True).head(3).to_list())
    # Exact copies share their id, so only rows with a repeated id can be copies.
    copies = pl.repeat(False, frame.height, dtype=pl.Boolean, eager=True)
    if repeated.any():
        index = pl.arange(0, frame.height, eager=True).filter(repeated)
        copies = copies.scatter(index, frame.filter(repeated).is_duplicated())
    runner.flag("transaction.no_duplicate_rows", "transaction", copies, limit, True,
                "are exact copies of another row", ids.filter(copies).unique(maintain_order=True).head(3).to_list())


def entity_key_unique(runner: Runner, table: str, key: str, frame: pl.DataFrame) -> None:
    """A re-sent entity with identical values is harmless; the same key with other values is not."""
    repeated = frame[key].is_duplicated() & frame[key].is_not_null()
    conflicting = repeated & ~frame.is_duplicated()
    runner.flag(f"{table}.{key}_unique", table, conflicting, runner.params["max_duplicate_rate"], True,
                f"repeat a {key} with different values",
                frame[key].filter(conflicting).unique(maintain_order=True).head(3).to_list())


def in_domain(runner: Runner, table: str, column: str, frame: pl.DataFrame, ref: pl.DataFrame | None) -> None:
    """A new value may appear (a new bucket); a different vocabulary may not. A first version: whatever
    the values are, a categorical column is low-cardinality."""
    params = runner.params
    values = runner.sample(frame.select(column)).select(pl.col(column).cast(pl.Utf8))
    if ref is not None and column in ref.columns and ref[column].drop_nulls().len():
        known = sorted(str(v) for v in ref[column].drop_nulls().cast(pl.Utf8).unique().to_list())

        def describe(result: dict, ok: bool) -> str:
            return rate(result, f"have a {column} never seen before (known: "
                        f"{', '.join(known[:8])}{' ...' if len(known) > 8 else ''})", ok, frame.height)

        runner.expect(f"{table}.{column}_in_known_domain", table, values,
                      gx.expectations.ExpectColumnValuesToBeInSet(column=column, value_set=known,
                                                                  mostly=1 - params["max_new_domain_rate"]),
                      True, describe)
        return
    limit = params["max_categories_first_version"]

    def describe_first(result: dict, ok: bool) -> str:
        return f"{result.get('observed_value')} distinct values of {column}" + (
            "" if ok else f" (limit {limit}, or none at all)")

    runner.expect(f"{table}.{column}_is_categorical", table, values,
                  gx.expectations.ExpectColumnUniqueValueCountToBeBetween(
                      column=column, min_value=1 if frame.height else 0, max_value=limit),
                  table == "transaction", describe_first)


def dates_plausible(runner: Runner, table: str, column: str, frame: pl.DataFrame, ref: pl.DataFrame | None) -> None:
    """Dates in a plausible window: not before min_date, not far after today or the data seen so far.
    Open-ended end dates (at or after OPEN_END, e.g. 5999-01-01) are not judged here; any other date
    that far ahead is."""
    params = runner.params
    judged = pl.col(column) < OPEN_END if column == "end_date" else pl.lit(True)
    low = dt.date.fromisoformat(str(params["min_date"]))
    anchor = dt.date.today()
    if ref is not None and column in ref.columns and ref[column].drop_nulls().len():
        latest = ref.filter(judged)[column].max()
        anchor = max(anchor, latest) if latest is not None else anchor
    high = anchor + dt.timedelta(days=int(params["max_future_days"]))
    dates = runner.sample(frame.select(column))
    dates = dates.select(pl.when(judged).then(pl.col(column)).alias(column))
    # As yyyymmdd integers: GE's pandas engine compares numbers many times faster than datetimes.
    dates = dates.select((pl.col(column).dt.year() * 10000 + pl.col(column).dt.month() * 100
                          + pl.col(column).dt.day()).alias(column)).to_pandas()

    def describe(result: dict, ok: bool) -> str:
        return rate(result, f"have {column} outside {low}..{high} (as yyyymmdd)", ok, frame.height)

    runner.expect(f"{table}.{column}_in_plausible_window", table, dates,
                  gx.expectations.ExpectColumnValuesToBeBetween(column=column, min_value=yyyymmdd(low),
                                                                max_value=yyyymmdd(high),
                                                                mostly=1 - params["max_bad_date_rate"]),
                  column in TABLES[table].required or table == "offer", describe)


def yyyymmdd(day: dt.date) -> int:
    return day.year * 10000 + day.month * 100 + day.day


def ends_after_starts(runner: Runner, table: str, frame: pl.DataFrame) -> None:
    pairs = frame.select("start_date", "end_date").drop_nulls()

    def describe(result: dict, ok: bool) -> str:
        return rate(result, "end before they start", ok, pairs.height)

    runner.expect(f"{table}.end_date_not_before_start_date", table, pairs,
                  gx.expectations.ExpectColumnPairValuesAToBeGreaterThanB(
                      column_A="end_date", column_B="start_date", or_equal=True, mostly=0.99),
                  table == "offer", describe)


def in_range(runner: Runner, table: str, column: str, frame: pl.DataFrame, expectation, what: str,
             suffix: str) -> None:
    """A warning when more than 1% of a column's values are outside what the column means."""
    def describe(result: dict, ok: bool) -> str:
        return rate(result, what, ok, frame.height)

    runner.expect(f"{table}.{column}_{suffix}", table, frame.select(column), expectation, False, describe)
