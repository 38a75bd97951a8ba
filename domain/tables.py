"""The ten logical tables: their columns, types and keys, and the one parser that types raw records."""
from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

# Values that mean "missing" however the sender spelled it (the partial real files carry "nan").
MISSING_TOKENS = ["", "nan", "NaN", "None", "none", "null", "NULL", "NaT", "<NA>"]

ID = pl.Int64
DATE = pl.Date
NUM = pl.Float64
TEXT = pl.Utf8


@dataclass(frozen=True)
class TableSchema:
    name: str
    columns: dict[str, pl.DataType]
    # Columns that must be present and non-null for a row to mean anything.
    required: tuple[str, ...]
    # Columns that identify a row across versions (None: the whole row is its identity). A version's
    # row under a known key replaces the catalog's (ml/catalog.py) and is an old row, changed or not
    # (quality/new_part.py); a keyless row is old only if the catalog holds it exactly.
    key: tuple[str, ...] | None = None
    source_file: str = field(default="")
    # The date a row's event happened on: what "the period after the catalog's last date" is measured by.
    dated_by: str | None = None


TABLES: dict[str, TableSchema] = {
    schema.name: schema
    for schema in (
        TableSchema(
            "people",
            {"user_id": ID, "age_bucket": TEXT, "gender_cd": TEXT, "region": TEXT, "last_activity_day": TEXT},
            required=("user_id",), key=("user_id",), source_file="prod_clients.csv",
        ),
        TableSchema(
            "segments",
            {"user_id": ID, "segment": TEXT, "region_size": TEXT, "auto": NUM, "traveler": NUM,
             "entrepreneur": NUM, "vip_status": TEXT},
            required=("user_id",), key=("user_id",), source_file="prizm_segments.csv",
        ),
        TableSchema(
            "transaction",
            {"transaction_id": TEXT, "user_id": ID, "merchant_id_tx": ID, "event_date": DATE,
             "amount_bucket": TEXT, "online_transaction_flg": TEXT, "brand_dk": ID},
            required=("transaction_id", "user_id", "event_date", "brand_dk"), key=("transaction_id",),
            source_file="prod_financial_transaction.csv", dated_by="event_date",
        ),
        TableSchema(
            "offer",
            {"offer_id": ID, "merchant_id_offer": ID, "start_date": DATE, "end_date": DATE, "offer_text": TEXT},
            required=("offer_id", "merchant_id_offer", "start_date"), source_file="t_offer.csv",
        ),
        TableSchema(
            "merchant",
            {"merchant_id_offer": ID, "merchant_status": TEXT, "brand_dk": ID},
            required=("merchant_id_offer",), key=("merchant_id_offer",), source_file="t_merchant.csv",
        ),
        TableSchema(
            "financial_account",
            {"user_id": ID, "product_cd": TEXT, "open_month": TEXT, "close_month": TEXT, "account_status_cd": TEXT},
            required=("user_id",), source_file="financial_account.csv",
        ),
        TableSchema(
            "offer_seens",
            {"user_id": ID, "offer_id": ID, "start_date": DATE, "end_date": DATE},
            required=("user_id", "offer_id"), source_file="offer_seens.csv",
        ),
        TableSchema(
            "offer_activation",
            {"user_id": ID, "offer_id": ID, "activation_date": DATE},
            required=("user_id", "offer_id"), source_file="offer_activation.csv", dated_by="activation_date",
        ),
        TableSchema(
            "offer_reward",
            {"user_id": ID, "offer_id": ID, "event_date": DATE, "reward_amt": NUM},
            required=("user_id", "offer_id"), source_file="offer_reward.csv", dated_by="event_date",
        ),
        TableSchema(
            "receipts",
            {"user_id": ID, "date_operated": DATE, "category_name": TEXT, "items_count": NUM, "items_cost": TEXT},
            required=("user_id",), source_file="receipts.csv", dated_by="date_operated",
        ),
    )
}

TABLE_NAMES: tuple[str, ...] = tuple(TABLES)


@dataclass(frozen=True)
class ParseReport:
    """What typing a batch could not do: per column, how many values were unparseable, with examples."""

    rows: int
    unparseable: dict[str, int]
    examples: dict[str, list[str]]
    unknown_columns: list[str]
    missing_columns: list[str]


def _raw_text(records: list[dict], columns: list[str]) -> pl.DataFrame:
    """Every column of the schema as text, whatever JSON scalar the sender used. Polars builds the
    frame natively; a record with a nested value (object or list) where a scalar belongs cannot be
    read that way, so that batch is converted value by value: a nested value becomes its text, which
    no typed column parses, so it is counted as unparseable like any other bad value."""
    try:
        raw = pl.from_dicts(records, schema={name: pl.Utf8 for name in columns}, strict=False)
    except (pl.exceptions.ComputeError, TypeError, ValueError):
        raw = pl.DataFrame({name: pl.Series(name, [None if (value := record.get(name)) is None else str(value)
                                                   for record in records], dtype=pl.Utf8) for name in columns})
    # Missing however spelled is null.
    return raw.select(pl.when(pl.col(name).str.strip_chars().is_in(MISSING_TOKENS)).then(None)
                      .otherwise(pl.col(name).str.strip_chars()).alias(name) for name in columns)


def _typed(name: str, raw: pl.Series, dtype: pl.DataType) -> pl.Series:
    if dtype == TEXT:
        # Whole numbers sent as floats ('428916.0') lose the '.0', so codes compare equal however sent.
        return raw.str.replace(r"^(-?\d+)\.0+$", "${1}").alias(name)
    if dtype == ID:
        # Through Float64, so '428916.0' is the id 428916.
        return raw.cast(pl.Float64, strict=False).cast(pl.Int64, strict=False).alias(name)
    if dtype == NUM:
        return raw.cast(pl.Float64, strict=False).alias(name)
    if dtype == DATE:
        # ISO dates, optionally with a time part; anything else is unparseable.
        return raw.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False).alias(name)
    raise TypeError(f"no parser for {dtype}")


def parse_records(table: str, records: list[dict]) -> tuple[pl.DataFrame, ParseReport]:
    """Type raw JSON records by the table's schema. Never raises on values: unparseable ones become
    null and are counted, so validation can judge the version instead of the request crashing."""
    schema = TABLES[table]
    seen: set[str] = set().union(*records)
    raw_frame = _raw_text(records, list(schema.columns))
    columns, unparseable, examples = [], {}, {}
    for name, dtype in schema.columns.items():
        raw = raw_frame[name]
        typed = _typed(name, raw, dtype)
        bad = raw.is_not_null() & typed.is_null()
        count = int(bad.sum())
        if count:
            unparseable[name] = count
            examples[name] = raw.filter(bad).head(3).to_list()
        columns.append(typed)
    frame = pl.DataFrame(columns)
    report = ParseReport(
        rows=frame.height,
        unparseable=unparseable,
        examples=examples,
        unknown_columns=sorted(seen - set(schema.columns)),
        missing_columns=sorted(set(schema.columns) - seen) if records else [],
    )
    return frame, report


def empty_frame(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=TABLES[table].columns)
