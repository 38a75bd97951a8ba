"""The data catalog: the deduplicated union of all valid versions, one typed parquet file per table."""
from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

from domain.tables import TABLES, empty_frame

# Tables whose rows are entities: the last version's row for a key wins.
_LATEST_BY_KEY = {"people": ("user_id",), "segments": ("user_id",), "merchant": ("merchant_id_offer",)}


def table_path(directory: Path, table: str) -> Path:
    return Path(directory) / f"{table}.parquet"


def lazy_table(directory: Path, table: str) -> pl.LazyFrame:
    """A catalog (or snapshot) table, lazily, with exactly the schema's columns and dtypes (absent
    columns are null); an absent table is empty."""
    path = table_path(directory, table)
    if not path.exists():
        return empty_frame(table).lazy()
    present = set(pl.read_parquet_schema(path))
    return pl.scan_parquet(path).select(
        pl.col(c).cast(dtype, strict=False) if c in present else pl.lit(None, dtype=dtype).alias(c)
        for c, dtype in TABLES[table].columns.items())


def read_table(directory: Path, table: str, columns: list[str] | None = None) -> pl.DataFrame:
    """A catalog (or snapshot) table with exactly the schema's dtypes; an absent table is empty."""
    return lazy_table(directory, table).select(columns or list(TABLES[table].columns)).collect()


def _merge_table(table: str, parts: list[pl.DataFrame]) -> pl.DataFrame:
    if not parts:
        return empty_frame(table)
    rows = pl.concat(parts, how="vertical")
    columns = list(TABLES[table].columns)
    if table == "transaction":
        # A transaction id names one event: a resent or corrected row replaces the older one.
        rows = rows.filter(pl.col("transaction_id").is_not_null())
        return rows.unique("transaction_id", keep="last", maintain_order=True).sort("transaction_id")
    if table in _LATEST_BY_KEY:
        key = list(_LATEST_BY_KEY[table])
        rows = rows.filter(pl.all_horizontal(pl.col(k).is_not_null() for k in key))
        return rows.unique(key, keep="last", maintain_order=True).sort(key)
    # offers (distinct rows: a repeated offer_id with another end_date is another row), rewards (exact
    # duplicates are an artefact), and every other table: distinct rows.
    return rows.unique(maintain_order=True).sort(columns, nulls_last=True)


def merge(previous: Path | None, snapshot: Path, out: Path) -> dict[str, int]:
    """Write previous catalog ∪ snapshot into `out`; works for full snapshots and increments alike.

    Deterministic: the same inputs give byte-identical row order (sorted by key, or by all columns).
    Every table gets a file (empty with the schema when no version carried it).
    """
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    counts: dict[str, int] = {}
    for table in TABLES:
        # Eager on purpose: polars' streaming engine took more memory here (5.6 vs 4.1 GB for 12M
        # transactions), as a keyed unique and a full sort need all rows anyway.
        parts = [read_table(d, table) for d in (previous, snapshot) if d is not None and table_path(d, table).exists()]
        merged = _merge_table(table, parts)
        del parts
        merged.write_parquet(table_path(tmp, table), statistics=True)
        counts[table] = merged.height
        del merged
    if out.exists():
        # Keep anything else the caller put there (a bundle is rebuilt by its own step).
        for table in TABLES:
            table_path(out, table).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    for file in tmp.iterdir():
        file.replace(out / file.name)
    shutil.rmtree(tmp, ignore_errors=True)
    return counts
