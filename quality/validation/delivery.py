"""Delivery checks, from the manifest the sealer writes: the tables a version must carry, every batch
1..total received, values that parse as their type, the schema's required columns sent."""
from __future__ import annotations

import great_expectations as gx
import pandas as pd

from domain.tables import TABLE_NAMES, TABLES
from quality.validation.runner import Runner


def check_delivery(runner: Runner, manifest: dict, parts: dict, refs: dict, first: bool, full: bool) -> None:
    """Required tables: a first version needs all ten; a later one `required_tables`, and, as a full
    snapshot, every table of the catalog; any other table that disappears is a warning."""
    required = set(TABLE_NAMES) if first else set(runner.params["required_tables"]) | (set(refs) if full else set())
    why = ("a first version needs all ten tables" if first else
           "a full snapshot must carry every table of the catalog" if full else
           f"every version needs {', '.join(sorted(runner.params['required_tables']))}")
    for table in TABLE_NAMES:
        if table in required or table in refs:
            table_present(runner, table, parts[table].rows if table in parts else 0, table in required, why)
    for table, meta in (manifest.get("tables") or {}).items():
        batches_received(runner, table, meta)
        values_parseable(runner, table, meta, parts)
        if table in TABLES:
            required_columns_sent(runner, table, meta)


def table_present(runner: Runner, table: str, rows: int, critical: bool, why: str) -> None:
    def describe(_: dict, ok: bool) -> str:
        if ok:
            return f"{table}: {rows:,} rows"
        return (f"table {table} is missing or empty: {rows} rows ({why})" if critical else
                f"table {table} is absent in this version (present in the catalog)")

    runner.count(f"{table}.table_present", table, "rows", rows, 1, None, critical, describe)


def batches_received(runner: Runner, table: str, meta: dict) -> None:
    """The manifest counts the missing batches and lists the first few (domain/ledger.py manifest)."""
    expected = int(meta.get("batches_expected") or 0)
    missing = [int(b) for b in meta.get("missing_batches") or []]
    count = int(meta.get("missing_batch_count", len(missing)))

    def describe(_: dict, ok: bool) -> str:
        if ok:
            return f"{table}: all {expected} batches received"
        return (f"{table}: {count} of {expected} batches never arrived (missing batch numbers: "
                f"{', '.join(map(str, missing[:10]))}{' ...' if count > 10 else ''})")

    runner.count(f"{table}.all_batches_received", table, "missing", count, None, 0, True, describe)


def values_parseable(runner: Runner, table: str, meta: dict, parts: dict) -> None:
    """Of every row the version sends: the manifest counts unparseable values per column, not per row,
    and an old row re-sent as it was (unparseable then and now) is no new damage. Unparseable values
    become nulls, which the null checks count on the new rows."""
    rows = max(1, int(meta.get("rows") or (parts[table].rows if table in parts else 0)))
    bad = meta.get("unparseable") or {}
    examples = meta.get("examples") or {}
    shares = pd.DataFrame({"column": list(bad) or ["*"], "share": [n / rows for n in bad.values()] or [0.0]})

    def describe(_: dict, ok: bool) -> str:
        if not bad:
            return "all values parse as their column's type"
        return "; ".join(f"{column}: {count:,} of {rows:,} values unparseable ({count / rows:.1%}, example: "
                         f"{', '.join(repr(x) for x in (examples.get(column) or [])[:3])})"
                         for column, count in bad.items())

    runner.expect(f"{table}.values_parseable", table, shares,
                  gx.expectations.ExpectColumnValuesToBeBetween(column="share",
                                                                max_value=runner.params["max_unparseable_rate"]),
                  True, describe)


def required_columns_sent(runner: Runner, table: str, meta: dict) -> None:
    absent = [c for c in meta.get("missing_columns") or [] if c in TABLES[table].required]
    unknown = meta.get("unknown_columns") or []

    def describe(_: dict, ok: bool) -> str:
        text = "required columns all sent" if ok else f"{table} records lack required columns: " + ", ".join(absent)
        return text + (f"; unknown columns ignored: {', '.join(unknown[:5])}" if unknown else "")

    runner.count(f"{table}.required_columns_sent", table, "absent", len(absent), None, 0, True, describe)
