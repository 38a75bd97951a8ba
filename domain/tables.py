"""The ten logical tables: their columns, types and keys, and the one parser that types raw records."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import msgspec
import orjson
import polars as pl

# An offer's end date at or after this is open-ended (the data writes 5999-01-01; a missing one too).
OPEN_END = dt.date(2100, 1, 1)
# Spellings of "yes" in online_transaction_flg (the real data sends Y/N; 1/true cost nothing to accept).
ONLINE_YES = ("Y", "1", "TRUE")


def online_flag(column: str = "online_transaction_flg") -> pl.Expr:
    """1 for an online transaction, 0 otherwise (missing included)."""
    return pl.col(column).str.to_uppercase().is_in(ONLINE_YES).fill_null(False).cast(pl.Int8)

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
    """What typing a batch could not do: per column, how many values were unparseable, with examples.

    Names and examples are cut to a few short strings (MAX_REPORTED_*), so what a batch says about
    itself stays small whatever it holds: it travels in BatchReceived and in the version's manifest."""

    rows: int
    unparseable: dict[str, int]
    examples: dict[str, list[str]]
    unknown_columns: list[str]
    missing_columns: list[str]


class RecordsError(ValueError):
    """The records are not a JSON array of objects; the message names the first offending item."""


MAX_REPORTED_NAMES = 20
MAX_REPORTED_CHARS = 100
# Records are read and typed this many at a time (about 17 MB of transaction JSON), so a batch's
# memory is its body and its typed columns plus one slice's text, whatever the batch's size.
SLICE_RECORDS = 100_000
_RECORD_LIST = msgspec.json.Decoder(list[msgspec.Raw])
_INT64 = (-(2**63), 2**63 - 1)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_REPORTED_CHARS else text[:MAX_REPORTED_CHARS - 1] + "…"


def _text_schema(columns: list[str]) -> dict[str, pl.DataType]:
    return {name: pl.Utf8 for name in columns}


def _read_text(items: list[msgspec.Raw], columns: list[str], first: int = 0) -> tuple[pl.DataFrame, set[str]]:
    """Every column of the schema as text, whatever JSON value the sender used, and the keys the
    records carry. Polars reads the records, one a line, straight into text columns: numbers, booleans
    and strings alike, a nested value as its JSON text (which no typed column parses). (Its reader of a
    JSON array builds the whole document as a tree first, about ten times the text at its peak.)
    That read ignores keys outside the schema and cannot tell an absent key from a null, so it is
    trusted only when the text holds exactly one `":` per schema column and record (every record
    carries the schema's keys, and nothing else) and no column is null throughout; anything else
    (unknown or absent keys, items that are not objects, numbers beyond 64 bits, records written over
    several lines) is read exactly instead. A record that lacks one key and carries one unknown key
    passes the count: its value for the lacking column is null, counted like any null. `first` is
    the index of the first item in the batch, to name an item that is not an object."""
    lines = b"\n".join(items)
    keys = lines.count(b'":')
    try:
        frame = pl.read_ndjson(lines, schema=_text_schema(columns))
    except pl.exceptions.PolarsError:
        return _read_text_exactly(items, columns, first)
    del lines
    if keys != frame.height * len(columns) or any(count == frame.height for count in frame.null_count().row(0)):
        return _read_text_exactly(items, columns, first)
    return frame, set(columns)


def _read_text_exactly(items: list[msgspec.Raw], columns: list[str], first: int = 0) -> tuple[pl.DataFrame, set[str]]:
    """Record by record: every key seen, and the schema's values written again one record a line for
    the same polars read, so both readings give the same text for a value (an integer beyond 64 bits,
    which polars cannot read, becomes its digits)."""
    seen: set[str] = set()
    lines = []
    for index, item in enumerate(items, first):
        record = msgspec.json.decode(item)
        if not isinstance(record, dict):
            raise RecordsError(f"records[{index}]: expected an object, got {_json_type(record)}")
        if len(seen) < len(columns) + MAX_REPORTED_NAMES:
            seen.update(record)
        lines.append(orjson.dumps({name: _plain(record.get(name)) for name in columns}))
    return pl.read_ndjson(b"\n".join(lines), schema=_text_schema(columns)), seen


def _plain(value):
    """Integers beyond 64 bits as their digits (neither polars nor orjson reads them); the rest as is."""
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
        return str(value)
    if isinstance(value, (dict, list)):
        return _walk(value)
    return value


def _walk(value):
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return [_plain(item) for item in value]


def _json_type(value) -> str:
    return {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "an array"}.get(type(value), type(value).__name__)


def _typed(name: str, dtype: pl.DataType) -> pl.Expr:
    raw = pl.col(name)
    if dtype == TEXT:
        # Whole numbers sent as floats ('428916.0') lose the '.0', so codes compare equal however sent.
        return raw.str.replace(r"^(-?\d+)\.0+$", "${1}")
    if dtype == ID:
        # Through Float64, so '428916.0' is the id 428916.
        return raw.cast(pl.Float64, strict=False).cast(pl.Int64, strict=False)
    if dtype == NUM:
        return raw.cast(pl.Float64, strict=False)
    if dtype == DATE:
        # ISO dates, optionally with a time part; anything else is unparseable.
        return raw.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
    raise TypeError(f"no parser for {dtype}")


def split_records(records_json: bytes | memoryview) -> list[msgspec.Raw]:
    """The records of a JSON array, one JSON text each, cut apart by msgspec without decoding them."""
    try:
        return _RECORD_LIST.decode(records_json)
    except msgspec.ValidationError:
        raise RecordsError("records: expected an array of objects") from None
    except msgspec.DecodeError as error:
        raise RecordsError(f"records: {error}") from None


def parse_json_records(table: str, records_json: bytes | memoryview) -> tuple[pl.DataFrame, ParseReport]:
    """parse_record_items of the records of a JSON array."""
    return parse_record_items(table, split_records(records_json))


def parse_record_items(table: str, items: list[msgspec.Raw]) -> tuple[pl.DataFrame, ParseReport]:
    """Type a batch's records (one JSON text each) by the table's schema, SLICE_RECORDS at a time.
    Never raises on values: unparseable ones become null and are counted, so validation can judge the
    version instead of the request crashing. Raises RecordsError when a record is not an object.
    The list is emptied as it is read."""
    schema = TABLES[table]
    names = list(schema.columns)
    frames, seen = [], set()
    unparseable: dict[str, int] = {}
    examples: dict[str, list[str]] = {}
    for start in range(0, len(items), SLICE_RECORDS):
        text, keys = _read_text(items[start:start + SLICE_RECORDS], names, start)
        seen |= keys
        frames.append(_typed_slice(schema, text, unparseable, examples))
    items.clear()
    frame = pl.concat(frames) if frames else empty_frame(table)
    # The line reader hands its columns over in pieces (one per block it read): one piece each is
    # encoded for the log at half the cost.
    frame = frame.rechunk()
    report = ParseReport(
        rows=frame.height,
        unparseable=unparseable,
        examples=examples,
        unknown_columns=[_cut(name) for name in sorted(seen - set(names))[:MAX_REPORTED_NAMES]],
        missing_columns=sorted(set(names) - seen) if frame.height else [],
    )
    return frame, report


def _typed_slice(schema: TableSchema, text: pl.DataFrame, unparseable: dict[str, int],
                 examples: dict[str, list[str]]) -> pl.DataFrame:
    """One slice of text columns typed by the schema; what could not be parsed is added to the counts
    and examples."""
    names = list(schema.columns)
    # Missing however spelled is null.
    raw_frame = (text.lazy().with_columns(pl.col(names).str.strip_chars())
                 .with_columns(pl.when(pl.col(name).is_in(MISSING_TOKENS)).then(None).otherwise(pl.col(name))
                               .alias(name) for name in names)
                 .collect())
    del text
    # The '.0' of whole numbers sent as floats is looked for only in text columns that hold a '.' at all:
    # the pattern costs more than the rest of typing such a column.
    texts = [name for name, dtype in schema.columns.items() if dtype == TEXT]
    dotted = {name for name, found in zip(texts, raw_frame.select(
        pl.col(name).str.contains(".", literal=True).any() for name in texts).row(0)) if found} if texts else set()
    frame = raw_frame.select((pl.col(name) if dtype == TEXT and name not in dotted else _typed(name, dtype))
                             .alias(name) for name, dtype in schema.columns.items())
    # A typed value is null where its text is null or could not be parsed: the difference is the latter.
    for name, typed, raw in zip(names, frame.null_count().row(0), raw_frame.null_count().row(0)):
        if typed > raw:
            unparseable[name] = unparseable.get(name, 0) + typed - raw
            if len(examples.get(name, [])) < 3:
                bad = raw_frame[name].filter(raw_frame[name].is_not_null() & frame[name].is_null()).head(3)
                examples[name] = (examples.get(name, []) + [_cut(value) for value in bad])[:3]
    return frame


def parse_records(table: str, records: list[dict]) -> tuple[pl.DataFrame, ParseReport]:
    """Records already decoded (tests, tools): encoded once, so they take a request's own path."""
    return parse_json_records(table, orjson.dumps(records))


def empty_frame(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=TABLES[table].columns)
