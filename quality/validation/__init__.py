"""Validation of a sealed version with Great Expectations: is it usable for the catalog and the model?

Every rate on the data is measured on the version's new part (quality/new_part.py): the rows the
catalog of the last valid version does not hold yet (the delivery checks, from the manifest, are of the
delivery as a whole). A version that re-sends everything so far is judged by what it
brings, as one that sends only new rows is: a year of clean history cannot dilute a broken month below a
threshold. The rows it re-sends are judged by how many of them changed. The report says which rows
were judged (`judged`: per table, rows, new rows, changed rows, the delivery, the new period).

Kinds of checks (each one a GE expectation, each critical or a warning; valid = every critical passes),
one module each, every check a named function:
  - delivery (delivery.py): required tables present, every batch 1..total received, values parse as their type,
    schema columns present (from the manifest the sealer writes);
  - per table (tables.py), on the new rows: keys not null, unique ids and no duplicate rows, categorical domains
    learnt from the reference (first version: only structure: low cardinality, not constant), dates in
    a plausible window (open-ended sentinels such as 5999-01-01 allowed for end dates), end >= start;
  - referential integrity (integrity.py) as rates, on the new rows: transactions/segments/receipts/... whose user is
    unknown in people of this version and the reference, offers whose merchant is unknown, activations
    of unknown offers, merchants without brand (warning);
  - against the reference (cross_version.py: the catalog of the last valid version): old transactions re-sent with other
    values, the new period's volume per day, profiles of returning clients that flip wholesale, brands
    that no longer join, shuffled ids that keep their domain but break the (user, brand) history, a
    distribution collapsing to one value.

Required tables: a first version needs all ten; a later version needs `required_tables` (params:
transaction and people), and, when it is a full snapshot (it re-sends most of the reference's
transactions), every table the reference has; any other table that disappears is a warning.

How a check runs (runner.py): GE's pandas engine costs microseconds per row per expectation and much more on wide frames
or large value sets, so each expectation sees a narrow frame (one or two columns) of at most
`ge_sample_rows` rows (a fixed-seed sample). Where GE has no fitting expectation or a sample would
hide the cause (uniqueness, membership in 50k ids, cross-version joins), polars computes a per-row
flag over the whole table and GE checks the sampled flag column; `details` always quote the
whole-table numbers with example values.
"""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # before great_expectations is first imported

import polars as pl  # noqa: E402

from domain.tables import TABLE_NAMES  # noqa: E402
from ml.catalog import table_path  # noqa: E402
from quality import new_part  # noqa: E402
from quality.validation.cross_version import check_against_catalog  # noqa: E402
from quality.validation.delivery import check_delivery  # noqa: E402
from quality.validation.integrity import TARGETS, check_integrity  # noqa: E402
from quality.validation.results import CheckResult, ValidationResult, write_report  # noqa: E402
from quality.validation.runner import Runner  # noqa: E402
from quality.validation.tables import check_table  # noqa: E402

__all__ = ["CheckResult", "ValidationResult", "validate", "write_report"]

# The offer interaction tables: most of a version's rows (26M of 38M in a full snapshot of the
# generator's full-scale v3), whose ids only the integrity checks compare.
INTERACTION_TABLES = ("offer_seens", "offer_activation", "offer_reward")
# What the checks read of them in the reference catalog: their dates (and row counts).
REFERENCE_COLUMNS = {"offer_seens": ["start_date", "end_date"], "offer_activation": ["activation_date"],
                     "offer_reward": ["event_date"]}


def _read(directory: Path | None, table: str, columns: list[str] | None = None) -> pl.DataFrame | None:
    if directory is None:
        return None
    path = Path(directory) / f"{table}.parquet"
    return pl.read_parquet(path, columns=columns) if path.exists() else None


def validate(snapshot: Path, manifest: dict, reference: Path | None, params: dict,
             today: dt.date | None = None, rejected: list[Path] | tuple[Path, ...] = ()) -> ValidationResult:
    """Validate one version's snapshot against the catalog of the last valid version (None: first).
    `rejected`: the snapshots of the versions rejected so far. The clients, merchants and offers they
    delivered count as known to the integrity checks: they were sent, only their version was refused,
    and later versions still name them (a rejected version's newcomers keep transacting, its merchants
    keep their offers); otherwise one rejected version would make orphans of every later one."""
    started = dt.datetime.now()
    runner = Runner(params)
    manifest = manifest or {}
    version = manifest.get("version", Path(snapshot).name)
    frames, parts = {}, {}
    for table in TABLE_NAMES:
        if table_path(snapshot, table).exists():
            frames[table], parts[table] = new_part.split(snapshot, reference, table, today=today)
    refs = {t: f for t in TABLE_NAMES if (f := _read(reference, t, REFERENCE_COLUMNS.get(t))) is not None and f.height}
    full = "transaction" in parts and parts["transaction"].delivery == "everything so far"
    check_delivery(runner, manifest, parts, refs, reference is None, full)
    for table, frame in frames.items():
        check_table(runner, table, frame, refs.get(table))
    check_integrity(runner, frames, refs, {table: [f for d in rejected if (f := _read(d, table, [column])) is not None]
                                           for table, column in TARGETS})
    if refs:
        # The interaction tables are checked by now and the cross-version checks do not read them
        # (~0.6 GB of a first full-scale version, at the validation's peak).
        for table in INTERACTION_TABLES:
            frames.pop(table, None)
        check_against_catalog(runner, frames, refs, parts, _read(snapshot, "people"))
    return ValidationResult(version=version, valid=all(c.passed for c in runner.checks if c.critical),
                            checks=runner.checks, judged={table: part.to_dict() for table, part in parts.items()},
                            seconds=(dt.datetime.now() - started).total_seconds(), ge_results=runner.raw)
