"""Validation of a sealed version with Great Expectations: is it usable for the catalog and the model?

Every rate on the data is measured on the version's new part (quality/new_part.py): the rows the
catalog of the last valid version does not hold yet (the delivery checks, from the manifest, are of the
delivery as a whole). A version that re-sends everything so far is judged by what it
brings, as one that sends only new rows is: a year of clean history cannot dilute a broken month below a
threshold. The rows it re-sends are judged by how many of them changed. The report says which rows
were judged (`judged`: per table, rows, new rows, changed rows, the delivery, the new period).

Kinds of checks (each one a GE expectation, each critical or a warning; valid = every critical passes):
  - delivery: required tables present, every batch 1..total received, values parse as their type,
    schema columns present (from the manifest the sealer writes);
  - per table, on the new rows: keys not null, unique ids and no duplicate rows, categorical domains
    learnt from the reference (first version: only structure: low cardinality, not constant), dates in
    a plausible window (open-ended sentinels such as 5999-01-01 allowed for end dates), end >= start;
  - referential integrity as rates, on the new rows: transactions/segments/receipts/... whose user is
    unknown in people of this version and the reference, offers whose merchant is unknown, activations
    of unknown offers, merchants without brand (warning);
  - against the reference (the catalog of the last valid version): old transactions re-sent with other
    values, the new period's volume per day, profiles of returning clients that flip wholesale, brands
    that no longer join, shuffled ids that keep their domain but break the (user, brand) history, a
    distribution collapsing to one value.

Required tables: a first version needs all ten; a later version needs `required_tables` (params:
transaction and people), and, when it is a full snapshot (it re-sends most of the reference's
transactions), every table the reference has; any other table that disappears is a warning.

Speed: GE's pandas engine costs microseconds per row per expectation and much more on wide frames
or large value sets, so each expectation sees a narrow frame (one or two columns) of at most
`ge_sample_rows` rows (a fixed-seed sample). Where GE has no fitting expectation or a sample would
hide the cause (uniqueness, membership in 50k ids, cross-version joins), polars computes a per-row
flag over the whole table and GE checks the sampled flag column; `details` always quote the
whole-table numbers with example values.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx  # noqa: E402
import pandas as pd  # noqa: E402
import polars as pl  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402

from domain.tables import OPEN_END, TABLE_NAMES, TABLES  # noqa: E402
from ml.catalog import table_path  # noqa: E402
from quality import new_part  # noqa: E402

# Categorical columns whose value domain is learnt from the reference (never hard-coded).
DOMAINS = {
    "people": ["gender_cd", "age_bucket"],
    "segments": ["region_size", "vip_status"],
    "transaction": ["amount_bucket", "online_transaction_flg"],
    "merchant": ["merchant_status"],
    "financial_account": ["product_cd", "account_status_cd"],
    "receipts": ["category_name", "items_cost"],
}
# Columns that must not collapse to one value when they had several before.
COLLAPSE = {"transaction": ["user_id", "brand_dk", "amount_bucket", "online_transaction_flg"],
            "people": ["gender_cd", "age_bucket"], "segments": ["segment", "vip_status"],
            "receipts": ["category_name", "items_cost"]}
# (table, column) -> (target table, target column, critical): referential integrity as rates.
LINKS = [("transaction", "user_id", "people", "user_id", True),
         ("segments", "user_id", "people", "user_id", True),
         ("offer", "merchant_id_offer", "merchant", "merchant_id_offer", True),
         ("offer_activation", "offer_id", "offer", "offer_id", False),
         ("offer_seens", "offer_id", "offer", "offer_id", False),
         ("offer_reward", "offer_id", "offer", "offer_id", False),
         ("financial_account", "user_id", "people", "user_id", False),
         ("receipts", "user_id", "people", "user_id", False),
         ("offer_activation", "user_id", "people", "user_id", False)]
# A check's details quote values from the data; they are cut to this length, so the checks of a
# version (about a hundred, listed twice in ValidationFinished) stay well under the broker's message
# limit whatever the data holds (domain/events.py MAX_EVENT_BYTES).
MAX_DETAILS_CHARS = 300


@dataclass
class CheckResult:
    name: str
    table: str
    critical: bool
    passed: bool
    details: str
    expectation: str = ""
    # The measure and the bound it was held to, where the check has one: a rate of bad rows against
    # its maximum ("max"), or a ratio against its minimum ("min"). The margin is how far from failing.
    observed: float | None = None
    limit: float | None = None
    bound: str | None = None

    @property
    def margin(self) -> float | None:
        """limit - observed for a maximum, observed - limit for a minimum: negative when failed."""
        if self.observed is None or self.limit is None:
            return None
        return self.limit - self.observed if self.bound == "max" else self.observed - self.limit


@dataclass
class ValidationResult:
    version: str
    valid: bool
    checks: list[CheckResult] = field(default_factory=list)
    seconds: float = 0.0
    judged: dict[str, dict[str, Any]] = field(default_factory=dict)  # per table: new_part.TablePart.to_dict()

    @property
    def checks_total(self) -> int:
        return len(self.checks)

    @property
    def checks_passed(self) -> int:
        return sum(c.passed for c in self.checks)

    @property
    def checks_failed(self) -> int:
        return self.checks_total - self.checks_passed

    @property
    def failed_checks(self) -> list[dict[str, Any]]:
        """Critical failures first: they are why a version is rejected."""
        failed = sorted((c for c in self.checks if not c.passed), key=lambda c: not c.critical)
        return [{"table": c.table, "check": c.name, "details": c.details, "critical": c.critical,
                 "observed": c.observed, "limit": c.limit} for c in failed]

    def to_json(self) -> str:
        return json.dumps({"version": self.version, "valid": self.valid, "checks_total": self.checks_total,
                           "checks_passed": self.checks_passed, "checks_failed": self.checks_failed,
                           "seconds": round(self.seconds, 2), "failed_checks": self.failed_checks,
                           "judged": self.judged, "checks": [asdict(c) for c in self.checks]}, indent=1, default=str)


class _Runner:
    """Runs expectations on narrow pandas frames through one ephemeral GE context (no network)."""

    def __init__(self, params: dict) -> None:
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        asset = context.data_sources.add_pandas("lookalike").add_dataframe_asset(name="frame")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("whole")
        self.params = params
        self.checks: list[CheckResult] = []
        self.raw: list[dict] = []

    def sample(self, frame: pl.DataFrame) -> pl.DataFrame:
        rows = int(self.params["ge_sample_rows"])
        return frame.sample(n=rows, seed=int(self.params["sample_seed"])) if frame.height > rows else frame

    def expect(self, name: str, table: str, frame: pd.DataFrame | pl.DataFrame, expectation, critical: bool,
               describe: Callable[[dict, bool], str],
               measure: tuple[float, float, str] | None = None) -> bool:
        """Run one GE expectation. `measure`: (observed, limit, "max" | "min") when the caller knows them;
        else an expectation with `mostly` is measured by its share of unexpected rows."""
        if isinstance(frame, pl.DataFrame):
            frame = self.sample(frame).to_pandas()
        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": frame})
        outcome = batch.validate(expectation, result_format="SUMMARY")
        result = outcome.result or {}
        passed = bool(outcome.success)
        try:
            details = describe(result, passed)
        except Exception as error:  # a report must never hide the verdict
            details = f"(details unavailable: {error!r}) {result}"
        if len(details) > MAX_DETAILS_CHARS:  # quoted data can be long: the checks travel in one event
            details = details[:MAX_DETAILS_CHARS - 1] + "…"
        mostly = getattr(expectation, "mostly", None)  # 1.0 (every row) leaves no margin to speak of
        if measure is None and mostly is not None and mostly < 1 and result.get("unexpected_percent") is not None:
            measure = (float(result["unexpected_percent"]) / 100, round(1 - float(mostly), 6), "max")
        observed, limit, bound = measure if measure is not None else (None, None, None)
        self.checks.append(CheckResult(name=name, table=table, critical=critical, passed=passed,
                                       details=details, expectation=type(expectation).__name__,
                                       observed=None if observed is None else round(float(observed), 6),
                                       limit=limit, bound=bound))
        self.raw.append({"check": name, "result": outcome.to_json_dict()})
        return passed

    def flag(self, name: str, table: str, bad: pl.Series, max_rate: float, critical: bool, what: str,
             examples: list | None = None) -> bool:
        """A per-row 'bad' flag computed by polars over the whole table; GE expects at most max_rate
        of it (on a sample of flags); details quote whole-table counts and examples."""
        total, count = bad.len(), int(bad.sum())
        frame = pl.DataFrame({"ok": ~bad})
        shown = ", ".join(str(v) for v in (examples or [])[:3])

        def describe(_: dict, ok: bool) -> str:
            share = count / total if total else 0.0
            text = f"{share:.1%} of new {table} rows ({count:,} of {total:,}) {what}"
            if count and shown:
                text += f" (example: {shown})"
            return text + ("" if ok else f"; limit {max_rate:.1%}")

        return self.expect(name, table, frame,
                           gx.expectations.ExpectColumnValuesToBeInSet(column="ok", value_set=[True],
                                                                       mostly=max(0.0, 1 - max_rate)),
                           critical, describe, (count / total if total else 0.0, max_rate, "max"))

    def value(self, name: str, table: str, value: float, low: float | None, high: float | None, critical: bool,
              describe: Callable[[bool], str]) -> bool:
        """A whole-table measure (a ratio, a share) that GE expects within [low, high]."""
        bound = (high, "max") if high is not None else (low, "min")
        return self.expect(name, table, pd.DataFrame({"value": [float(value)]}),
                           gx.expectations.ExpectColumnValuesToBeBetween(column="value", min_value=low,
                                                                         max_value=high),
                           critical, lambda r, ok: describe(ok), (float(value), bound[0], bound[1]))


def _examples(result: dict, limit: int = 3) -> str:
    values: list[str] = []
    for value in result.get("partial_unexpected_list", []) or []:
        text = "null" if value is None or (isinstance(value, float) and value != value) else str(value)
        if text not in values:
            values.append(text)
        if len(values) == limit:
            break
    return ", ".join(values)


def _rate(result: dict, what: str, passed: bool, sampled: int | None = None) -> str:
    count, total = result.get("unexpected_count", 0) or 0, result.get("element_count", 0) or 0
    share = 100 * count / total if total else 0.0
    examples = _examples(result)
    text = f"{share:.1f}% of new rows ({count:,} of {total:,}"
    text += f" sampled from {sampled:,}) " if sampled and sampled > total else ") "
    text += what
    return text + (f" (example: {examples})" if examples and not passed else "")


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


def _values(frame: pl.DataFrame | None, column: str) -> pl.Series:
    if frame is None or column not in frame.columns:
        return pl.Series(column, [], dtype=pl.Int64)
    return frame[column].drop_nulls()


def validate(snapshot: Path, manifest: dict, reference: Path | None, params: dict,
             today: dt.date | None = None, rejected: list[Path] | tuple[Path, ...] = ()) -> ValidationResult:
    """Validate one version's snapshot against the catalog of the last valid version (None: first).
    `rejected`: the snapshots of the versions rejected so far. The clients, merchants and offers they
    delivered count as known to the integrity checks: they were sent, only their version was refused,
    and later versions still name them (a rejected version's newcomers keep transacting, its merchants
    keep their offers); otherwise one rejected version would make orphans of every later one."""
    started = dt.datetime.now()
    runner = _Runner(params)
    manifest = manifest or {}
    version = manifest.get("version", Path(snapshot).name)
    frames, parts = {}, {}
    for table in TABLE_NAMES:
        if table_path(snapshot, table).exists():
            frames[table], parts[table] = new_part.split(snapshot, reference, table, today=today)
    refs = {t: f for t in TABLE_NAMES if (f := _read(reference, t, REFERENCE_COLUMNS.get(t))) is not None and f.height}
    full = "transaction" in parts and parts["transaction"].delivery == "everything so far"
    _delivery(runner, manifest, parts, refs, reference is None, full)
    for table, frame in frames.items():
        _table_checks(runner, table, frame, refs.get(table))
    _integrity(runner, frames, refs, {t: [f for d in rejected if (f := _read(d, t, [c])) is not None]
                                      for t, c in {(target, column) for _, _, target, column, _ in LINKS}})
    if refs:
        # The interaction tables are checked by now and the cross-version checks do not read them
        # (~0.6 GB of a first full-scale version, at the validation's peak).
        for table in INTERACTION_TABLES:
            frames.pop(table, None)
        _cross_version(runner, frames, refs, parts, _read(snapshot, "people"))
    valid = all(c.passed for c in runner.checks if c.critical)
    result = ValidationResult(version=version, valid=valid, checks=runner.checks,
                              judged={table: part.to_dict() for table, part in parts.items()})
    result.seconds = (dt.datetime.now() - started).total_seconds()
    result._ge_results = runner.raw  # type: ignore[attr-defined]  # GE's own JSON, written by write_report
    return result


# ---------------------------------------------------------------- delivery (from the manifest)

def _delivery(runner: _Runner, manifest: dict, parts: dict, refs: dict, first: bool, full: bool) -> None:
    params = runner.params
    required = set(TABLE_NAMES) if first else set(params["required_tables"]) | (set(refs) if full else set())
    why = ("a first version needs all ten tables" if first else
           "a full snapshot must carry every table of the catalog" if full else
           f"every version needs {', '.join(sorted(params['required_tables']))}")
    for table in TABLE_NAMES:
        if table not in required and table not in refs:
            continue
        rows = parts[table].rows if table in parts else 0
        critical = table in required
        runner.expect(f"{table}.table_present", table, pd.DataFrame({"rows": [rows]}),
                      gx.expectations.ExpectColumnValuesToBeBetween(column="rows", min_value=1),
                      critical,
                      lambda r, ok, t=table, n=rows: f"{t}: {n:,} rows" if ok else
                      (f"table {t} is missing or empty: {n} rows ({why})" if critical else
                       f"table {t} is absent in this version (present in the catalog)"))
    for table, meta in (manifest.get("tables") or {}).items():
        # The manifest counts the missing batches and lists the first few (domain/ledger.py manifest).
        expected_n = int(meta.get("batches_expected") or 0)
        missing = [int(b) for b in meta.get("missing_batches") or []]
        missing_n = int(meta.get("missing_batch_count", len(missing)))
        runner.expect(f"{table}.all_batches_received", table, pd.DataFrame({"missing": [missing_n]}),
                      gx.expectations.ExpectColumnValuesToBeBetween(column="missing", max_value=0), True,
                      lambda r, ok, t=table, n=expected_n, k=missing_n, m=missing:
                      f"{t}: all {n} batches received" if ok else
                      f"{t}: {k} of {n} batches never arrived (missing batch numbers: "
                      f"{', '.join(map(str, m[:10]))}{' ...' if k > 10 else ''})")
        # Of every row the version sends: the manifest counts unparseable values per column, not per row,
        # and an old row re-sent as it was (unparseable then and now) is no new damage. Unparseable values
        # become nulls, which the null checks count on the new rows.
        rows = max(1, int(meta.get("rows") or (parts[table].rows if table in parts else 0)))
        bad = meta.get("unparseable") or {}
        shares = pd.DataFrame({"column": list(bad) or ["*"],
                               "share": [n / rows for n in bad.values()] or [0.0]})
        examples = meta.get("examples") or {}
        runner.expect(f"{table}.values_parseable", table, shares,
                      gx.expectations.ExpectColumnValuesToBeBetween(column="share",
                                                                    max_value=params["max_unparseable_rate"]), True,
                      lambda r, ok, t=table, b=bad, e=examples, n=rows:
                      "all values parse as their column's type" if not b else "; ".join(
                          f"{c}: {k:,} of {n:,} values unparseable ({k / n:.1%}, example: "
                          f"{', '.join(repr(x) for x in (e.get(c) or [])[:3])})" for c, k in b.items()))
        absent = [c for c in meta.get("missing_columns") or [] if c in TABLES.get(table, TABLES["people"]).required]
        if table in TABLES:
            runner.expect(f"{table}.required_columns_sent", table, pd.DataFrame({"absent": [len(absent)]}),
                          gx.expectations.ExpectColumnValuesToBeBetween(column="absent", max_value=0), True,
                          lambda r, ok, t=table, a=absent, u=meta.get("unknown_columns") or []:
                          ("required columns all sent" if ok else f"{t} records lack required columns: "
                           + ", ".join(a)) + (f"; unknown columns ignored: {', '.join(u[:5])}" if u else ""))


# ---------------------------------------------------------------- per table

def _table_checks(runner: _Runner, table: str, frame: pl.DataFrame, ref: pl.DataFrame | None) -> None:
    params = runner.params
    schema = TABLES[table]
    n = frame.height
    for column in schema.required:
        runner.expect(f"{table}.{column}_not_null", table, frame.select(column),
                      gx.expectations.ExpectColumnValuesToNotBeNull(column=column,
                                                                    mostly=1 - params["max_null_key_rate"]),
                      True, lambda r, ok, c=column: _rate(r, f"have a null {c}", ok, n))
    if table == "transaction":
        ids = frame["transaction_id"]
        repeated = ids.hash(seed=0).is_duplicated() & ids.is_not_null()  # 64-bit hashes: far faster on 10M
        runner.flag("transaction.transaction_id_unique", table, repeated, params["max_duplicate_rate"], True,
                    "share their transaction_id with another row",
                    ids.filter(repeated).unique(maintain_order=True).head(3).to_list())
        # Exact copies share their id, so only rows with a repeated id can be copies.
        copies = pl.repeat(False, frame.height, dtype=pl.Boolean, eager=True)
        if repeated.any():
            index = pl.arange(0, frame.height, eager=True).filter(repeated)
            copies = copies.scatter(index, frame.filter(repeated).is_duplicated())
        runner.flag("transaction.no_duplicate_rows", table, copies, params["max_duplicate_rate"], True,
                    "are exact copies of another row",
                    ids.filter(copies).unique(maintain_order=True).head(3).to_list())
    if table in ("people", "segments", "merchant"):
        key = schema.key[0]
        repeated = frame[key].is_duplicated() & frame[key].is_not_null()
        # A re-sent entity with identical values is harmless; the same key with other values is not.
        conflicting = repeated & ~frame.is_duplicated()
        runner.flag(f"{table}.{key}_unique", table, conflicting, params["max_duplicate_rate"], True,
                    f"repeat a {key} with different values",
                    frame[key].filter(conflicting).unique(maintain_order=True).head(3).to_list())
    if table == "offer_reward":
        runner.flag("offer_reward.duplicate_rows_rare", table, frame.is_duplicated(), 0.2, False,
                    "are exact duplicates (the real table carries some)")
    for column in DOMAINS.get(table, []):
        _domain(runner, table, column, frame, ref)
    for column, dtype in schema.columns.items():
        if dtype == pl.Date:
            _date_window(runner, table, column, frame, ref)
    if table in ("offer", "offer_seens"):
        pairs = frame.select("start_date", "end_date").drop_nulls()
        runner.expect(f"{table}.end_date_not_before_start_date", table, pairs,
                      gx.expectations.ExpectColumnPairValuesAToBeGreaterThanB(
                          column_A="end_date", column_B="start_date", or_equal=True, mostly=0.99),
                      table == "offer", lambda r, ok: _rate(r, "end before they start", ok, pairs.height))
    if table == "segments":
        for flag in ("auto", "traveler", "entrepreneur"):
            runner.expect(f"segments.{flag}_is_binary", table, frame.select(flag),
                          gx.expectations.ExpectColumnValuesToBeInSet(column=flag, value_set=[0.0, 1.0], mostly=0.99),
                          False, lambda r, ok, c=flag: _rate(r, f"with {c} not 0/1", ok, n))
    if table == "offer_reward":
        runner.expect("offer_reward.reward_amt_not_negative", table, frame.select("reward_amt"),
                      gx.expectations.ExpectColumnValuesToBeBetween(column="reward_amt", min_value=0, mostly=0.99),
                      False, lambda r, ok: _rate(r, "with a negative reward", ok, n))
    if table == "receipts":
        runner.expect("receipts.items_count_positive", table, frame.select("items_count"),
                      gx.expectations.ExpectColumnValuesToBeBetween(column="items_count", min_value=0, mostly=0.99),
                      False, lambda r, ok: _rate(r, "with a negative items_count", ok, n))


def _domain(runner: _Runner, table: str, column: str, frame: pl.DataFrame, ref: pl.DataFrame | None) -> None:
    params = runner.params
    values = runner.sample(frame.select(column)).select(pl.col(column).cast(pl.Utf8))
    if ref is not None and column in ref.columns and ref[column].drop_nulls().len():
        known = sorted(str(v) for v in ref[column].drop_nulls().cast(pl.Utf8).unique().to_list())
        # A new value may appear (a new bucket); a different vocabulary may not.
        runner.expect(f"{table}.{column}_in_known_domain", table, values,
                      gx.expectations.ExpectColumnValuesToBeInSet(column=column, value_set=known,
                                                                  mostly=1 - params["max_new_domain_rate"]),
                      True, lambda r, ok: _rate(r, f"have a {column} never seen before (known: "
                                                f"{', '.join(known[:8])}{' ...' if len(known) > 8 else ''})",
                                                ok, frame.height))
    else:  # first version: whatever the values are, a categorical column is low-cardinality
        runner.expect(f"{table}.{column}_is_categorical", table, values,
                      gx.expectations.ExpectColumnUniqueValueCountToBeBetween(
                          column=column, min_value=1 if frame.height else 0,
                          max_value=params["max_categories_first_version"]),
                      table == "transaction",
                      lambda r, ok: f"{r.get('observed_value')} distinct values of {column}"
                      + ("" if ok else f" (limit {params['max_categories_first_version']}, or none at all)"))


def _date_window(runner: _Runner, table: str, column: str, frame: pl.DataFrame, ref: pl.DataFrame | None) -> None:
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
    critical = column in TABLES[table].required or table == "offer"
    runner.expect(f"{table}.{column}_in_plausible_window", table, dates,
                  gx.expectations.ExpectColumnValuesToBeBetween(column=column, min_value=_yyyymmdd(low),
                                                                max_value=_yyyymmdd(high),
                                                                mostly=1 - params["max_bad_date_rate"]),
                  critical, lambda r, ok: _rate(r, f"have {column} outside {low}..{high} (as yyyymmdd)", ok,
                                                frame.height))


def _yyyymmdd(day: dt.date) -> int:
    return day.year * 10000 + day.month * 100 + day.day


# ---------------------------------------------------------------- referential integrity

def _integrity(runner: _Runner, frames: dict, refs: dict, delivered: dict[str, list[pl.DataFrame]]) -> None:
    """Referential integrity as rates, against this version and everything valid before it."""
    params = runner.params
    for table, column, target, target_column, critical in LINKS:
        frame = frames.get(table)
        if frame is None or frame.height == 0 or (target not in frames and target not in refs):
            continue
        known = pl.concat([_values(frames.get(target), target_column), _values(refs.get(target), target_column),
                           *(_values(frame, target_column) for frame in delivered.get(target, []))])
        values = frame[column]
        orphan = values.is_not_null() & ~values.is_in(known.unique().implode())
        runner.flag(f"{table}.{column}_in_{target}", table, orphan, params["max_orphan_rate"], critical,
                    f"have a {column} not in {target}",
                    values.filter(orphan).unique(maintain_order=True).head(3).to_list())
    if "merchant" in frames and frames["merchant"].height:
        merchants = frames["merchant"]
        missing = merchants["brand_dk"].is_null()
        runner.flag("merchant.brand_dk_present", "merchant", missing, 0.1, False, "have no brand_dk",
                    merchants["merchant_id_offer"].filter(missing).head(3).to_list())


# ---------------------------------------------------------------- against the reference

def _cross_version(runner: _Runner, frames: dict, refs: dict, parts: dict, people: pl.DataFrame | None) -> None:
    """What formal checks miss: history rewritten, flips, ids that stop joining, shuffles, collapses.
    `frames` are the new rows; `people` is every client the version carries (returning ones included)."""
    _profiles(runner, people, refs.get("people"))
    tx, ref_tx = frames.get("transaction"), refs.get("transaction")
    if "transaction" in parts and ref_tx is not None:
        _history_unchanged(runner, parts["transaction"])
    if tx is not None and ref_tx is not None and tx.height:
        _transactions_vs_reference(runner, tx, ref_tx, frames, refs, parts["transaction"])
    for table, columns in COLLAPSE.items():
        frame, ref = frames.get(table), refs.get(table)
        if frame is None or ref is None or frame.height < 50:
            continue
        for column in columns:
            _collapse(runner, table, column, frame, ref)


def _history_unchanged(runner: _Runner, part: new_part.TablePart) -> None:
    """A transaction happened once: re-sent under its id, it keeps its values. A few corrections pass;
    a rewritten history does not. (Clients, segments and merchants change legitimately: their returning
    rows are judged by the profile check; the counts are in the report's `judged`.)"""
    resent = part.resent_rows
    share = part.changed_rows / resent if resent else 0.0
    limit = runner.params["max_changed_row_rate"]
    shown = ", ".join(str(v) for v in part.changed_examples)
    runner.value("transaction.resent_rows_unchanged", "transaction", share, None, limit, True,
                 lambda ok: f"{share:.1%} of the {resent:,} transactions this version re-sends ({part.changed_rows:,}) "
                 f"carry other values than the catalog's under the same transaction_id"
                 + (f" (example: {shown})" if shown else "") + ("" if ok else f"; limit {limit:.0%}"))


def _profiles(runner: _Runner, people: pl.DataFrame | None, ref: pl.DataFrame | None) -> None:
    """Returning clients keep their gender and age: a wholesale change means shifted or mixed-up rows.
    A change is gender, or an age bucket that goes down or moves more than one bucket up."""
    if people is None or ref is None or not people.height:
        return
    order = sorted(set(_values(ref, "age_bucket").to_list()) | set(_values(people, "age_bucket").to_list()),
                   key=lambda v: (float(v) if str(v).replace(".", "", 1).isdigit() else float("inf"), str(v)))
    rank = {v: i for i, v in enumerate(order)}
    both = (people.select("user_id", "gender_cd", "age_bucket")
            .join(ref.unique("user_id", keep="last").select("user_id", "gender_cd", "age_bucket"),
                  on="user_id", suffix="_before")
            .with_columns(pl.col("age_bucket").replace_strict(rank, default=None).alias("rank"),
                          pl.col("age_bucket_before").replace_strict(rank, default=None).alias("rank_before")))
    gender = (both["gender_cd"] != both["gender_cd_before"]).fill_null(False)
    step = (both["rank"] - both["rank_before"])
    age = ((step < 0) | (step > 1)).fill_null(False)
    changed = gender | age
    examples = [f"{u}: {g0}/{a0} -> {g}/{a}" for u, g, a, g0, a0 in
                both.filter(changed).select("user_id", "gender_cd", "age_bucket", "gender_cd_before",
                                            "age_bucket_before").head(3).iter_rows()]
    share_g = float(gender.mean() or 0.0)
    share_a = float(age.mean() or 0.0)
    runner.flag("people.profiles_stable_across_versions", "people", changed, runner.params["max_profile_flip_rate"],
                True, f"re-sent for a known client with another profile (gender changed {share_g:.0%}, "
                f"age bucket moved back or by more than one bucket {share_a:.0%}, of {both.height:,} returning)",
                examples)


def _transactions_vs_reference(runner: _Runner, tx: pl.DataFrame, ref_tx: pl.DataFrame, frames: dict, refs: dict,
                               part: new_part.TablePart) -> None:
    """`tx`: the new transactions; `part`: their numbers, with the catalog's last date."""
    params = runner.params
    # Brands that no longer join: new brands arrive, but most transactions are at brands seen before.
    brands = pl.concat([_values(ref_tx, "brand_dk"), _values(refs.get("merchant"), "brand_dk"),
                        _values(frames.get("merchant"), "brand_dk")]).unique()
    unknown = tx["brand_dk"].is_not_null() & ~tx["brand_dk"].is_in(brands.implode())
    runner.flag("transaction.brand_dk_joins_known_brands", "transaction", unknown, params["max_unknown_brand_rate"],
                True, "carry a brand_dk never seen in transactions or merchants",
                tx["brand_dk"].filter(unknown).unique(maintain_order=True).head(3).to_list())
    last = dt.date.fromisoformat(part.catalog_last_date) if part.catalog_last_date else ref_tx["event_date"].max()
    # The new period; dates past any plausible horizon are the date check's to judge, not a period's.
    horizon = last + dt.timedelta(days=int(params["max_future_days"])) if last is not None else None
    new = tx.filter(pl.col("event_date").is_between(last, horizon, closed="right")) if last is not None else tx
    # Volume of the new period per day against the catalog's, whatever the delivery.
    days_new = new["event_date"].n_unique()
    if days_new:
        per_day = new.height / days_new
        before = ref_tx.height / max(1, ref_tx["event_date"].n_unique())
        runner.value("transaction.volume_per_day_vs_previous", "transaction", per_day / before,
                     1 - params["max_row_count_drop"], None, True,
                     lambda ok: f"{per_day:,.0f} transactions per day over {days_new} new days vs {before:,.0f} "
                     f"before ({per_day / before:.0%})")
    # Shuffled ids keep every column's domain but break each client's history: the share of new
    # transactions at a brand the same client already used must stay near what it was.
    known_users = ref_tx["user_id"].unique()
    current = new.filter(pl.col("user_id").is_in(known_users.implode()))
    if current.height >= 50 and days_new:
        span = dt.timedelta(days=max(1, (new["event_date"].max() - new["event_date"].min()).days + 1))
        # Streaming queries over the catalog's transactions: no filtered copies of its ~10M rows (the
        # largest step of a full-snapshot validation otherwise, +1 GB); only means are taken of them.
        ref_pairs = ref_tx.lazy().select("user_id", "brand_dk", "event_date")
        pairs = ref_pairs.select("user_id", "brand_dk").unique().collect(engine="streaming")
        base_old = (ref_pairs.filter(pl.col("event_date") <= last - span).select("user_id", "brand_dk").unique()
                    .collect(engine="streaming"))
        base_new = (ref_pairs.filter((pl.col("event_date") > last - span)
                                     & pl.col("user_id").is_in(base_old["user_id"].unique().implode()))
                    .select("user_id", "brand_dk").collect(engine="streaming"))
        if base_new.height >= 50 and base_old.height:
            def repeat_share(rows: pl.DataFrame, seen: pl.DataFrame) -> float:
                hit = rows.join(seen.with_columns(pl.lit(True).alias("hit")), on=["user_id", "brand_dk"], how="left")
                return float(hit["hit"].fill_null(False).mean() or 0.0)

            now, before = repeat_share(current, pairs), repeat_share(base_new, base_old)
            ratio = now / before if before else 1.0
            runner.value("transaction.user_brand_history_consistent", "transaction", ratio,
                         params["min_pair_repeat_ratio"], None, True,
                         lambda ok: f"{now:.0%} of new transactions of known clients are at a brand the client used "
                         f"before, vs {before:.0%} for the reference's last {span.days} days (ratio {ratio:.2f}); "
                         + ("" if ok else "user ids look shuffled or reassigned"))


def _collapse(runner: _Runner, table: str, column: str, frame: pl.DataFrame, ref: pl.DataFrame) -> None:
    """A column with several values before must not collapse to one value now."""
    if column not in ref.columns or column not in frame.columns:
        return
    ref, frame = runner.sample(ref.select(column)), runner.sample(frame.select(column))  # shares: a sample will do
    if ref[column].drop_nulls().n_unique() < 2 or frame[column].drop_nulls().len() < 50:
        return
    ref_top = ref[column].drop_nulls().value_counts(sort=True).row(0)
    ref_share = ref_top[1] / ref[column].drop_nulls().len()
    limit = max(runner.params["collapse_top_share"], min(0.99, ref_share + 0.2))
    values = frame[column].drop_nulls()
    top = values.value_counts(sort=True).row(0)
    share = top[1] / values.len()
    runner.value(f"{table}.{column}_not_collapsed", table, share, None, limit, True,
                 lambda ok: f"{share:.0%} of {table}.{column} is {top[0]!r} (before: top value {ref_top[0]!r} at "
                 f"{ref_share:.0%}; limit {limit:.0%})")


def write_report(result: ValidationResult, out_dir: Path) -> Path:
    """validation.json (summary and every check) and ge_results.json (GE's own results)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "validation.json"
    path.write_text(result.to_json())
    raw = getattr(result, "_ge_results", None)
    if raw:
        (out_dir / "ge_results.json").write_text(json.dumps(raw, default=str))
    return path
