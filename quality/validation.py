"""Validation of a sealed version with Great Expectations: is it usable for the catalog and model?

Checks come in kinds: completeness of the delivery (tables, batches, parseable values), keys,
uniqueness, value domains learnt from the previous good data, plausible dates, referential
integrity as rates, and cross-version sanity that formal checks miss (profiles flipping wholesale,
ids that stop joining, distributions collapsing to one value). Every check runs as a GE
expectation on a pandas frame (the table itself, or a small frame derived from it); each is
critical or a warning, and the version is valid when every critical check passes.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402
import pandas as pd  # noqa: E402
import polars as pl  # noqa: E402

from domain.tables import TABLE_NAMES, TABLES  # noqa: E402

# Categorical columns whose value domain is learnt from the reference (never hard-coded).
DOMAINS = {
    "people": ["gender_cd", "age_bucket"],
    "segments": ["region_size", "vip_status"],
    "transaction": ["amount_bucket", "online_transaction_flg"],
    "merchant": ["merchant_status"],
    "financial_account": ["product_cd", "account_status_cd"],
    "receipts": ["category_name", "items_cost"],
}
# Columns that must not collapse to a single value when they had several before.
COLLAPSE = {"transaction": ["user_id", "brand_dk", "amount_bucket", "online_transaction_flg"],
            "people": ["gender_cd", "age_bucket"], "receipts": ["category_name"]}
GE_SAMPLE_ROWS = 2_000_000  # row-level rate checks on large tables run on a fixed sample


@dataclass
class CheckResult:
    name: str
    table: str
    critical: bool
    passed: bool
    details: str


@dataclass
class ValidationResult:
    version: str
    valid: bool
    checks: list[CheckResult] = field(default_factory=list)

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
        return [{"table": c.table, "check": c.name, "details": c.details, "critical": c.critical}
                for c in self.checks if not c.passed]

    def to_json(self) -> str:
        return json.dumps({"version": self.version, "valid": self.valid, "checks_total": self.checks_total,
                           "checks_passed": self.checks_passed, "checks_failed": self.checks_failed,
                           "failed_checks": self.failed_checks, "checks": [asdict(c) for c in self.checks]},
                          indent=1, default=str)


class _Runner:
    """Runs single expectations on pandas frames through one ephemeral GE context (no network)."""

    def __init__(self) -> None:
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        asset = context.data_sources.add_pandas("lookalike").add_dataframe_asset(name="frame")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("whole")
        self.checks: list[CheckResult] = []

    def expect(self, name: str, table: str, frame: pd.DataFrame, expectation, critical: bool, describe) -> bool:
        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": frame})
        outcome = batch.validate(expectation, result_format="SUMMARY")
        result = outcome.result or {}
        passed = bool(outcome.success)
        self.checks.append(CheckResult(name=name, table=table, critical=critical, passed=passed,
                                       details=describe(result, passed)))
        return passed


def _examples(result: dict, limit: int = 3) -> str:
    values = []
    for value in result.get("partial_unexpected_list", []) or []:
        text = "null" if value is None or (isinstance(value, float) and value != value) else str(value)
        if text not in values:
            values.append(text)
        if len(values) == limit:
            break
    return ", ".join(values)


def _rate(result: dict, what: str, passed: bool) -> str:
    count, total = result.get("unexpected_count", 0) or 0, result.get("element_count", 0) or 0
    share = 100 * count / total if total else 0.0
    examples = _examples(result)
    text = f"{share:.1f}% of rows ({count} of {total}) {what}"
    return text + (f" (example: {examples})" if examples and not passed else "")


def _read(directory: Path | None, table: str) -> pl.DataFrame | None:
    if directory is None:
        return None
    path = Path(directory) / f"{table}.parquet"
    return pl.read_parquet(path) if path.exists() else None


def _pandas(frame: pl.DataFrame, columns: list[str]) -> pd.DataFrame:
    if frame.height > GE_SAMPLE_ROWS:
        frame = frame.sample(n=GE_SAMPLE_ROWS, seed=0)
    return frame.select(columns).to_pandas()


def validate(snapshot: Path, manifest: dict, reference: Path | None, params: dict) -> ValidationResult:
    """Validate one version's snapshot against the catalog of the last valid version (None: first)."""
    runner = _Runner()
    version = manifest.get("version", Path(snapshot).name)
    frames = {t: f for t in TABLE_NAMES if (f := _read(snapshot, t)) is not None}
    refs = {t: f for t in TABLE_NAMES if (f := _read(reference, t)) is not None and f.height}
    _delivery(runner, manifest, frames, refs, first=reference is None)
    for table, frame in frames.items():
        _table_checks(runner, table, frame, refs.get(table), params)
    _integrity(runner, frames, refs, params)
    _cross_version(runner, frames, refs, params)
    valid = all(c.passed for c in runner.checks if c.critical)
    return ValidationResult(version=version, valid=valid, checks=runner.checks)


def _delivery(runner: _Runner, manifest: dict, frames: dict, refs: dict, first: bool) -> None:
    """Every expected table arrived, with every batch 1..total_batches, and values of their types."""
    expected = list(TABLE_NAMES) if first else sorted(refs)
    tables = manifest.get("tables", {})
    presence = pd.DataFrame({"table": expected, "present": [t in frames for t in expected]})
    runner.expect("delivery.required_tables_present", "*", presence,
                  gx.expectations.ExpectColumnValuesToBeInSet(column="present", value_set=[True]), True,
                  lambda r, ok: "all expected tables arrived" if ok else "missing tables: " + ", ".join(
                      presence.loc[~presence.present, "table"]))
    batches = pd.DataFrame([{"table": t, "missing": len(m.get("missing_batches", [])),
                             "detail": f"{t}: batches {m.get('missing_batches')} of {m.get('batches_expected')}"}
                            for t, m in tables.items()] or [{"table": "*", "missing": 0, "detail": ""}])
    runner.expect("delivery.all_batches_received", "*", batches,
                  gx.expectations.ExpectColumnValuesToBeBetween(column="missing", max_value=0), True,
                  lambda r, ok: "every batch 1..total_batches arrived" if ok else "missing " + "; ".join(
                      batches.loc[batches.missing > 0, "detail"]))
    rows = {t: max(1, m.get("rows", 0)) for t, m in tables.items()}
    parse = pd.DataFrame([{"column": f"{t}.{c}", "share": n / rows[t], "example": (m.get("examples", {}).get(c) or [""])[0]}
                          for t, m in tables.items() for c, n in m.get("unparseable", {}).items()]
                         or [{"column": "*", "share": 0.0, "example": ""}])
    runner.expect("delivery.values_parse_as_their_type", "*", parse,
                  gx.expectations.ExpectColumnValuesToBeBetween(column="share", max_value=0.01), True,
                  lambda r, ok: "all values parse as their column's type" if ok else "; ".join(
                      f"{row.share:.1%} of {row.column} unparseable (example: {row.example!r})"
                      for row in parse.itertuples() if row.share > 0.01))


def _table_checks(runner: _Runner, table: str, frame: pl.DataFrame, ref: pl.DataFrame | None, params: dict) -> None:
    schema = TABLES[table]
    sample = _pandas(frame, list(frame.columns))
    for column in schema.required:
        runner.expect(f"{table}.{column}_not_null", table, sample,
                      gx.expectations.ExpectColumnValuesToNotBeNull(column=column,
                                                                    mostly=1 - params["max_null_key_rate"]),
                      True, lambda r, ok, c=column: _rate(r, f"with null {c}", ok))
    if table == "transaction":
        ids = frame.select("transaction_id").to_pandas()
        runner.expect("transaction.transaction_id_unique", table, ids,
                      gx.expectations.ExpectColumnValuesToBeUnique(column="transaction_id",
                                                                   mostly=1 - params["max_duplicate_rate"]),
                      True, lambda r, ok: _rate(r, "repeat a transaction_id", ok))
    if table in ("people", "segments"):
        runner.expect(f"{table}.user_id_unique", table, frame.select("user_id").to_pandas(),
                      gx.expectations.ExpectColumnValuesToBeUnique(column="user_id",
                                                                   mostly=1 - params["max_duplicate_rate"]),
                      True, lambda r, ok: _rate(r, "repeat a user_id", ok))
    for column in DOMAINS.get(table, []):
        if ref is not None:
            known = sorted(str(v) for v in ref[column].drop_nulls().unique().to_list())
            runner.expect(f"{table}.{column}_in_known_domain", table, sample,
                          # A new value may appear (a new bucket); a different vocabulary may not.
                          gx.expectations.ExpectColumnValuesToBeInSet(column=column, value_set=known, mostly=0.8),
                          True, lambda r, ok, c=column: _rate(r, f"with {c} outside the values seen before", ok))
        else:  # first version: a categorical column is low-cardinality, whatever its values are
            runner.expect(f"{table}.{column}_is_categorical", table, sample,
                          gx.expectations.ExpectColumnUniqueValueCountToBeBetween(column=column, max_value=200),
                          False, lambda r, ok, c=column: f"{r.get('observed_value')} distinct values of {c}")
    for column, dtype in schema.columns.items():
        if dtype == pl.Date and column in sample:
            _date_window(runner, table, column, frame, sample, ref, params)
    if table == "offer":
        offers = frame.select("start_date", "end_date").drop_nulls().with_columns(
            (pl.col("end_date") >= pl.col("start_date")).alias("ordered")).to_pandas()
        runner.expect("offer.end_date_not_before_start_date", table, offers,
                      gx.expectations.ExpectColumnValuesToBeInSet(column="ordered", value_set=[True], mostly=0.99),
                      True, lambda r, ok: _rate(r, "end before they start", ok))
    if table == "segments":
        for flag in ("auto", "traveler", "entrepreneur"):
            runner.expect(f"segments.{flag}_is_binary", table, sample,
                          gx.expectations.ExpectColumnValuesToBeInSet(column=flag, value_set=[0.0, 1.0], mostly=0.99),
                          False, lambda r, ok, c=flag: _rate(r, f"with {c} not 0/1", ok))
    if table == "offer_reward":
        runner.expect("offer_reward.reward_amt_not_negative", table, sample,
                      gx.expectations.ExpectColumnValuesToBeBetween(column="reward_amt", min_value=0, mostly=0.99),
                      False, lambda r, ok: _rate(r, "with a negative reward", ok))


def _date_window(runner: _Runner, table: str, column: str, frame: pl.DataFrame, sample: pd.DataFrame,
                 ref: pl.DataFrame | None, params: dict) -> None:
    """Dates in a plausible window: not before min_date, not far after the data seen so far."""
    low = dt.date.fromisoformat(params["min_date"])
    anchor = dt.date.today()
    if ref is not None and column in ref.columns and ref[column].drop_nulls().len():
        anchor = max(anchor, ref[column].max())
    high = anchor + dt.timedelta(days=int(params["max_future_days"]))
    if column == "end_date":
        high = dt.date(9999, 12, 31)  # open-ended offers carry far-future sentinels such as 5999-01-01
    values = pd.DataFrame({column: pd.to_datetime(sample[column])})
    runner.expect(f"{table}.{column}_in_plausible_window", table, values,
                  gx.expectations.ExpectColumnValuesToBeBetween(column=column, min_value=pd.Timestamp(low),
                                                                max_value=pd.Timestamp(high), mostly=0.99),
                  True, lambda r, ok: _rate(r, f"with {column} outside {low}..{high}", ok))


def _integrity(runner: _Runner, frames: dict, refs: dict, params: dict) -> None:
    """Referential integrity as rates, against this version and everything valid before it."""
    def known(table: str, column: str) -> list:
        parts = [f[column] for f in (frames.get(table), refs.get(table)) if f is not None]
        return pl.concat(parts).drop_nulls().unique().to_list() if parts else []

    limit = 1 - params["max_orphan_rate"]
    links = [("transaction", "user_id", "people", "user_id", True),
             ("offer", "merchant_id_offer", "merchant", "merchant_id_offer", False),
             ("segments", "user_id", "people", "user_id", True),
             ("offer_activation", "offer_id", "offer", "offer_id", False),
             ("offer_seens", "user_id", "people", "user_id", False),
             ("receipts", "user_id", "people", "user_id", False)]
    for table, column, target, target_column, critical in links:
        if table not in frames or frames[table].height == 0:
            continue
        values = known(target, target_column)
        sample = _pandas(frames[table].filter(pl.col(column).is_not_null()), [column])
        runner.expect(f"{table}.{column}_in_{target}", table, sample,
                      gx.expectations.ExpectColumnValuesToBeInSet(column=column, value_set=values, mostly=limit),
                      critical, lambda r, ok, c=column, t=target: _rate(r, f"have a {c} not in {t}", ok))
    if "merchant" in frames:
        runner.expect("merchant.brand_dk_present", "merchant", frames["merchant"].select("brand_dk").to_pandas(),
                      gx.expectations.ExpectColumnValuesToNotBeNull(column="brand_dk", mostly=0.9), False,
                      lambda r, ok: _rate(r, "have no brand_dk", ok))


def _cross_version(runner: _Runner, frames: dict, refs: dict, params: dict) -> None:
    """What formal checks miss: flips, ids that stop joining, collapses, vanishing volume."""
    people, ref_people = frames.get("people"), refs.get("people")
    if people is not None and ref_people is not None:
        both = people.join(ref_people, on="user_id", suffix="_before").filter(
            pl.col("gender_cd").is_not_null() & pl.col("gender_cd_before").is_not_null())
        flips = pd.DataFrame({"changed": ((both["gender_cd"] != both["gender_cd_before"])
                                          | (both["age_bucket"] != both["age_bucket_before"])).to_list() or [False]})
        runner.expect("people.profiles_stable_across_versions", "people", flips,
                      gx.expectations.ExpectColumnMeanToBeBetween(column="changed",
                                                                  max_value=params["max_profile_flip_rate"]),
                      True, lambda r, ok: f"{float(r.get('observed_value') or 0):.0%} of {both.height} returning "
                      "clients changed gender or age")
    tx, ref_tx = frames.get("transaction"), refs.get("transaction")
    if tx is not None and ref_tx is not None and tx.height:
        brands = pl.concat([ref_tx["brand_dk"], refs.get("merchant", pl.DataFrame({"brand_dk": []}))["brand_dk"]
                            .cast(pl.Int64), frames.get("merchant", pl.DataFrame({"brand_dk": []}))["brand_dk"]
                            .cast(pl.Int64)]).drop_nulls().unique().to_list()
        runner.expect("transaction.brand_dk_joins_known_brands", "transaction",
                      _pandas(tx.filter(pl.col("brand_dk").is_not_null()), ["brand_dk"]),
                      gx.expectations.ExpectColumnValuesToBeInSet(column="brand_dk", value_set=brands, mostly=0.5),
                      True, lambda r, ok: _rate(r, "carry a brand_dk never seen in transactions or merchants", ok))
        before = ref_tx.group_by("user_id").len().select(pl.col("len").median()).item()
        now = tx.group_by("user_id").len().select(pl.col("len").median()).item()
        span_before = max(1, (ref_tx["event_date"].max() - ref_tx["event_date"].min()).days)
        span_now = max(1, (tx["event_date"].drop_nulls().max() - tx["event_date"].drop_nulls().min()).days
                       if tx["event_date"].drop_nulls().len() else 1)
        ratio = pd.DataFrame({"ratio": [(now / span_now) / (before / span_before) if before else 1.0]})
        runner.expect("transaction.volume_per_client_vs_previous", "transaction", ratio,
                      gx.expectations.ExpectColumnValuesToBeBetween(column="ratio",
                                                                    min_value=1 - params["max_row_count_drop"]),
                      False, lambda r, ok: f"transactions per client per day at {ratio.ratio[0]:.0%} of before")
    for table, columns in COLLAPSE.items():
        frame, ref = frames.get(table), refs.get(table)
        if frame is None or ref is None or frame.height < 50:
            continue
        for column in columns:
            if ref[column].n_unique() < 3:
                continue
            top = frame[column].value_counts(sort=True).row(0)
            share = pd.DataFrame({"top_share": [top[1] / frame.height]})
            runner.expect(f"{table}.{column}_not_collapsed", table, share,
                          gx.expectations.ExpectColumnValuesToBeBetween(column="top_share", max_value=0.9), True,
                          lambda r, ok, c=column, t=top, s=share: f"{s.top_share[0]:.0%} of {table}.{c} is {t[0]!r}")


def write_report(result: ValidationResult, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "validation.json"
    path.write_text(result.to_json())
    return path
