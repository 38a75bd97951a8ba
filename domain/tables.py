"""The ten logical tables: their columns, types and keys, and the one parser that types raw records."""
from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
import orjson
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
    # Columns that identify a row across versions (None: the whole row is its identity).
    key: tuple[str, ...] | None = None
    source_file: str = field(default="")


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
            source_file="prod_financial_transaction.csv",
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
            required=("user_id", "offer_id"), source_file="offer_activation.csv",
        ),
        TableSchema(
            "offer_reward",
            {"user_id": ID, "offer_id": ID, "event_date": DATE, "reward_amt": NUM},
            required=("user_id", "offer_id"), source_file="offer_reward.csv",
        ),
        TableSchema(
            "receipts",
            {"user_id": ID, "date_operated": DATE, "category_name": TEXT, "items_count": NUM, "items_cost": TEXT},
            required=("user_id",), source_file="receipts.csv",
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
# The exact reading decodes records to Python objects this many at a time (bounded memory).
EXACT_SLICE_RECORDS = 20_000
_RECORD_LIST = msgspec.json.Decoder(list[msgspec.Raw])
_INT64 = (-(2**63), 2**63 - 1)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_REPORTED_CHARS else text[:MAX_REPORTED_CHARS - 1] + "…"


def _text_schema(columns: list[str]) -> dict[str, pl.DataType]:
    return {name: pl.Utf8 for name in columns}


def _read_text(records_json: bytes, columns: list[str]) -> tuple[pl.DataFrame, set[str]]:
    """Every column of the schema as text, whatever JSON scalar the sender used, and the keys the
    records carry. Polars reads the JSON array straight into text columns (numbers, booleans and
    strings alike). That read ignores keys outside the schema and cannot tell an absent key from a
    null, so it is trusted only when the text holds exactly one `":` per schema column and record
    (every record carries the schema's keys, and nothing else) and no column is null throughout;
    anything else (unknown or absent keys, nested values, numbers beyond 64 bits, items that are not
    objects) is read exactly instead. A record that lacks one key and carries one unknown key passes
    the count: its value for the lacking column is null, which validation counts like any null."""
    if not records_json.lstrip().startswith(b"["):
        raise RecordsError("records: expected an array of objects")
    try:
        frame = pl.read_json(records_json, schema=_text_schema(columns))
    except pl.exceptions.PolarsError:
        return _read_text_exactly(records_json, columns)
    if frame.height == 0:
        return frame, set()
    if (records_json.count(b'":') != frame.height * len(columns)
            or any(count == frame.height for count in frame.null_count().row(0))):
        return _read_text_exactly(records_json, columns)
    return frame, set(columns)


def _scalar(value):
    """A JSON value as polars will read it into a text column: a nested value as its JSON text (no
    typed column parses it, so it is counted as unparseable), an integer beyond 64 bits as digits."""
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64[0] <= value <= _INT64[1]:
        return str(value)
    return value


def _read_text_exactly(records_json: bytes, columns: list[str]) -> tuple[pl.DataFrame, set[str]]:
    """Record by record, a slice at a time: every key seen, and the schema's values re-encoded as
    plain scalars for the same polars read (so both readings give the same text for a value)."""
    try:
        items = _RECORD_LIST.decode(records_json)
    except msgspec.DecodeError as error:
        raise RecordsError(f"records: {error}") from None
    seen: set[str] = set()
    frames = []
    for start in range(0, len(items), EXACT_SLICE_RECORDS):
        plain = []
        for index, item in enumerate(items[start:start + EXACT_SLICE_RECORDS], start):
            record = msgspec.json.decode(item)
            if not isinstance(record, dict):
                raise RecordsError(f"records[{index}]: expected an object, got {_json_type(record)}")
            if len(seen) < len(columns) + MAX_REPORTED_NAMES:
                seen.update(record)
            plain.append({name: _scalar(record.get(name)) for name in columns})
        frames.append(pl.read_json(orjson.dumps(plain), schema=_text_schema(columns)))
        del plain
    return (pl.concat(frames) if frames else pl.DataFrame(schema=_text_schema(columns))), seen


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


def parse_json_records(table: str, records_json: bytes) -> tuple[pl.DataFrame, ParseReport]:
    """Type a batch's records (the JSON text of its `records` array) by the table's schema. Never
    raises on values: unparseable ones become null and are counted, so validation can judge the
    version instead of the request crashing. Raises RecordsError when the records are not an array
    of objects."""
    schema = TABLES[table]
    names = list(schema.columns)
    text, seen = _read_text(records_json, names)
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
    unparseable = {name: typed - raw for name, typed, raw in
                   zip(names, frame.null_count().row(0), raw_frame.null_count().row(0)) if typed > raw}
    examples = {name: [_cut(value) for value in
                       raw_frame[name].filter(raw_frame[name].is_not_null() & frame[name].is_null()).head(3)]
                for name in unparseable}
    report = ParseReport(
        rows=frame.height,
        unparseable=unparseable,
        examples=examples,
        unknown_columns=[_cut(name) for name in sorted(seen - set(schema.columns))[:MAX_REPORTED_NAMES]],
        missing_columns=sorted(set(schema.columns) - seen) if frame.height else [],
    )
    return frame, report


def parse_records(table: str, records: list[dict]) -> tuple[pl.DataFrame, ParseReport]:
    """Records already decoded (tests, tools): encoded once, so they take a request's own path."""
    return parse_json_records(table, orjson.dumps(records))


def empty_frame(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=TABLES[table].columns)
