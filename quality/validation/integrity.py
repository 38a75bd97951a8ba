"""Referential integrity as rates, on the new rows: ids that name a client, merchant or offer known to
this version, the catalog, or a version rejected so far."""
from __future__ import annotations

import polars as pl

from quality.validation.runner import Runner

# (table, column) -> (target table, target column, critical).
LINKS = [("transaction", "user_id", "people", "user_id", True),
         ("segments", "user_id", "people", "user_id", True),
         ("offer", "merchant_id_offer", "merchant", "merchant_id_offer", True),
         ("offer_activation", "offer_id", "offer", "offer_id", False),
         ("offer_seens", "offer_id", "offer", "offer_id", False),
         ("offer_reward", "offer_id", "offer", "offer_id", False),
         ("financial_account", "user_id", "people", "user_id", False),
         ("receipts", "user_id", "people", "user_id", False),
         ("offer_activation", "user_id", "people", "user_id", False)]
# What the links point at: (table, column) of every target.
TARGETS = sorted({(target, column) for _, _, target, column, _ in LINKS})


def values(frame: pl.DataFrame | None, column: str) -> pl.Series:
    """A column's non-null values; empty when the frame or the column is absent."""
    if frame is None or column not in frame.columns:
        return pl.Series(column, [], dtype=pl.Int64)
    return frame[column].drop_nulls()


def check_integrity(runner: Runner, frames: dict, refs: dict, delivered: dict[str, list[pl.DataFrame]]) -> None:
    """`frames`: the new rows; `refs`: the catalog; `delivered`: per target table, what the rejected
    versions sent of it."""
    for table, column, target, target_column, critical in LINKS:
        frame = frames.get(table)
        if frame is None or frame.height == 0 or (target not in frames and target not in refs):
            continue
        known = pl.concat([values(frames.get(target), target_column), values(refs.get(target), target_column),
                           *(values(sent, target_column) for sent in delivered.get(target, []))])
        link_known(runner, table, column, target, frame[column], known, critical)
    if "merchant" in frames and frames["merchant"].height:
        merchants = frames["merchant"]
        missing = merchants["brand_dk"].is_null()
        runner.flag("merchant.brand_dk_present", "merchant", missing, 0.1, False, "have no brand_dk",
                    merchants["merchant_id_offer"].filter(missing).head(3).to_list())


def link_known(runner: Runner, table: str, column: str, target: str, ids: pl.Series, known: pl.Series,
               critical: bool) -> None:
    orphan = ids.is_not_null() & ~ids.is_in(known.unique().implode())
    runner.flag(f"{table}.{column}_in_{target}", table, orphan, runner.params["max_orphan_rate"], critical,
                f"have a {column} not in {target}", ids.filter(orphan).unique(maintain_order=True).head(3).to_list())
