"""Drift of a version's new part against what came before it (Evidently).

Only what the model uses is compared, never ids and never the arrival of new entities:
  - per transaction: amount bucket, online flag, weekday;
  - per active client over the period: transaction count, online share, share of large amounts;
  - per receipt: category and cost bucket;
  - the active client mix: segment code, age, region_size, vip status.
The current side is the version's new part in its new period (quality/new_part.py: the rows the last
valid catalog does not hold, dated after its last date), whether the version carries everything so far
or only the new rows; the report says which rows (counts and period). It is compared with the
references of domain/policy.py's rule, each scored the same way:
  - "previous": the most recently judged valid period (the last valid version's new part, as the
    catalog holds it);
  - "initial": what the first model learnt from (the first catalog a model was trained on);
  - "deployed": what the deployed model learnt from, when that is another catalog.
A reference's score = the largest share of drifted features (PSI above the per-feature threshold)
among the four groups (0..1): a shift confined to one aspect (only the client mix, only receipts)
counts as fully as one spread over all. The rule calls a version drifted only if it is unlike every
reference (drift_score = the smallest score), so they are compared in that order and the comparisons
stop as soon as one reference is like it; the report lists the scores made and the verdict.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from domain import policy
from domain.tables import online_flag
from quality import new_part

os.environ.setdefault("TQDM_DISABLE", "1")

from evidently import DataDefinition, Dataset, Report  # noqa: E402
from evidently.presets import DataDriftPreset  # noqa: E402

LARGE_AMOUNTS = ("5k-10k", "10k+")


@dataclass
class DriftResult:
    drift_score: float
    drift_detected: bool
    threshold: float
    features: list[dict[str, Any]] = field(default_factory=list)  # each with its "reference"
    report_files: list[Path] = field(default_factory=list)  # Evidently HTML per reference and group, drift.json
    scores: dict[str, float] = field(default_factory=dict)  # per reference compared
    judged: dict[str, Any] = field(default_factory=dict)    # the rows of each side: counts and periods
    rule: str = policy.DRIFT_RULE
    note: str = ""

    def to_json(self) -> str:
        return json.dumps({"drift_score": self.drift_score, "drift_detected": self.drift_detected,
                           "threshold": self.threshold, "scores": self.scores, "rule": self.rule,
                           "judged": self.judged, "features": self.features, "note": self.note,
                           "report_files": [path.name for path in self.report_files]}, indent=1, default=str)


# The transaction columns the drift features come from (ids and merchants are never compared): at full
# scale the other three are most of the table's memory.
TRANSACTION_COLUMNS = ["user_id", "event_date", "amount_bucket", "online_transaction_flg"]
RECEIPT_COLUMNS = ["date_operated", "category_name", "items_cost"]


def _read(directory: Path, table: str, columns: list[str] | None = None) -> pl.DataFrame | None:
    path = Path(directory) / f"{table}.parquet"
    return pl.read_parquet(path, columns=columns) if path.exists() else None


def _sample(frame: pl.DataFrame, rows: int, seed: int = 0) -> pl.DataFrame:
    return frame.sample(n=rows, seed=seed) if frame.height > rows else frame


def _transaction_features(tx: pl.DataFrame) -> pl.DataFrame:
    return tx.select(pl.col("amount_bucket").fill_null("missing"),
                     pl.col("online_transaction_flg").fill_null("missing"),
                     pl.col("event_date").dt.weekday().cast(pl.Utf8).alias("weekday"))


def _span(tx: pl.DataFrame) -> int:
    return (tx["event_date"].max() - tx["event_date"].min()).days + 1


def _client_features(tx: pl.DataFrame, days: int) -> pl.DataFrame:
    """Per client and window of `days` days: activity, online share, share of large amounts.
    Both sides are cut into windows of the same length, the shorter side's span (a month is compared
    with months: aggregates over a year are smoother than over a month, whatever the world does, and
    two new months with one), counted back from each side's last day; a window the side does not
    cover whole is left out (a client's rate over a few days is no monthly rate)."""
    last = tx["event_date"].max()
    window = ((pl.lit(last) - pl.col("event_date")).dt.total_days() // days).alias("window")
    whole = _span(tx) // days
    return tx.filter(window < whole).group_by("user_id", window).agg(
        (pl.len() / days * 30).alias("transactions_per_30d"),
        online_flag().mean().alias("online_share"),
        pl.col("amount_bucket").is_in(LARGE_AMOUNTS).mean().alias("large_amount_share"),
    ).drop("user_id", "window")


def _client_mix(tx: pl.DataFrame, people: pl.DataFrame, segments: pl.DataFrame) -> pl.DataFrame:
    """The profiles of the clients active in the period. A client the service holds no profile or no
    segment of (they came in a rejected version) says nothing about the mix and is left out: counted
    as "missing", a few percent of clients absent from every reference read as the whole mix drifting
    (measured: 0.75 to 1.0 on the version after a rejected one, bench/decisions.py)."""
    active = tx.select("user_id").unique()
    return (active.join(people.unique("user_id", keep="last"), on="user_id", how="inner")
            .join(segments.unique("user_id", keep="last"), on="user_id", how="inner")
            .select(pl.col("segment").str.extract(r"^(\S+)").fill_null("missing").alias("segment_code"),
                    pl.col("age_bucket").fill_null("missing"), pl.col("region_size").fill_null("missing"),
                    pl.col("vip_status").fill_null("missing")))


def _entities(*frames: pl.DataFrame | None) -> pl.DataFrame | None:
    present = [f for f in frames if f is not None]
    return pl.concat(present, how="vertical_relaxed") if present else None


def _side(tx: pl.DataFrame, receipts: pl.DataFrame | None) -> dict[str, Any]:
    """Which rows one side holds: counts and periods, for the report."""
    def period(frame: pl.DataFrame | None, column: str) -> list[str] | None:
        if frame is None or not frame.height:
            return None
        return [str(frame[column].min()), str(frame[column].max())]

    return {"transactions": tx.height, "transaction_period": period(tx, "event_date"),
            "receipts": receipts.height if receipts is not None else 0,
            "receipt_period": period(receipts, "date_operated")}


def evaluate_drift(reference: Path, current: Path, params: dict, out_dir: Path, catalog: Path | None = None,
                   previous: dict[str, Any] | None = None, deployed: Path | None = None,
                   today: dt.date | None = None) -> DriftResult:
    """The new part of `current` (a version's snapshot), measured against `catalog` (the last valid
    catalog; default `reference`), compared with: `previous` ({"version", "transaction": [first, last],
    "receipts": [...]}: that period of `catalog`), `reference` (the catalog the first model was trained
    on) and `deployed` (the catalog the deployed model was trained on, when it is another one)."""
    threshold = float(params["threshold"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reference, catalog = Path(reference), Path(catalog or reference)
    cur_tx, tx_part = new_part.split(current, catalog, "transaction", TRANSACTION_COLUMNS, today, period_only=True)
    cur_receipts = None
    if (Path(current) / "receipts.parquet").exists():
        cur_receipts, _ = new_part.split(current, catalog, "receipts", RECEIPT_COLUMNS, today, period_only=True)
    judged = {"current": {**_side(cur_tx, cur_receipts), "measured_against": catalog.name,
                          "catalog_last_date": tx_part.catalog_last_date}}
    if cur_tx.height == 0:
        verdict = policy.drift_verdict({}, threshold)
        return DriftResult(verdict.score, verdict.detected, threshold, judged=judged,
                           note="the version brings no transactions after the catalog's last date")
    # In the rule's order: the previous period first (a month: quick to compare), then the catalogs;
    # each is read only if the comparisons before it leave the version looking drifted.
    references: list[tuple[str, str | None, Any]] = []
    if previous and previous.get("transaction"):
        references.append((policy.PREVIOUS, previous.get("version"), lambda: (
            new_part.period_rows(catalog, "transaction", previous["transaction"], TRANSACTION_COLUMNS),
            new_part.period_rows(catalog, "receipts", previous["receipts"], RECEIPT_COLUMNS)
            if previous.get("receipts") else None)))
    for name, directory in ((policy.INITIAL, reference), (policy.DEPLOYED, deployed)):
        if directory is not None and (name == policy.INITIAL or Path(directory) != reference):
            references.append((name, Path(directory).name, lambda d=directory: (
                _read(d, "transaction", TRANSACTION_COLUMNS), _read(d, "receipts", RECEIPT_COLUMNS))))
    rows = int(params.get("sample_rows", 200_000))
    people = _entities(_read(catalog, "people"), _read(current, "people"))
    segments = _entities(_read(catalog, "segments"), _read(current, "segments"))
    scores: dict[str, float | None] = {}
    features: list[dict[str, Any]] = []
    report_files: list[Path] = []
    for name, version, sides in references:
        verdict = policy.drift_verdict(scores, threshold)
        if verdict.scores and not verdict.detected:
            break  # like one reference already: no comparison left can make it a drift
        ref_tx, ref_receipts = sides()
        if ref_tx is None or ref_tx.height == 0:
            scores[name] = None
            continue
        judged[name] = {**_side(ref_tx, ref_receipts), "version": version}
        groups: dict[str, tuple[pl.DataFrame, pl.DataFrame]] = {
            "transaction": (_transaction_features(_sample(ref_tx, rows)), _transaction_features(_sample(cur_tx, rows))),
            "client": (_client_features(ref_tx, days := min(_span(ref_tx), _span(cur_tx))),
                       _client_features(cur_tx, days)),
        }
        if people is not None and segments is not None:
            groups["client_mix"] = (_client_mix(ref_tx, people, segments), _client_mix(cur_tx, people, segments))
        if ref_receipts is not None and ref_receipts.height and cur_receipts is not None and cur_receipts.height:
            pick = lambda f: _sample(f, rows).select(pl.col("category_name").fill_null("missing"),  # noqa: E731
                                                     pl.col("items_cost").fill_null("missing"))
            groups["receipt"] = (pick(ref_receipts), pick(cur_receipts))
        found, files = _compare(name, groups, params, out_dir)
        features += found
        report_files += files
        by_group: dict[str, list[bool]] = {}
        for feature in found:
            by_group.setdefault(feature["feature"].split(".")[0], []).append(feature["drifted"])
        scores[name] = round(max((sum(flags) / len(flags) for flags in by_group.values()), default=0.0), 4)
    verdict = policy.drift_verdict(scores, threshold)
    result = DriftResult(drift_score=round(verdict.score, 4), drift_detected=verdict.detected, threshold=threshold,
                         features=features, report_files=report_files, scores=verdict.scores, judged=judged)
    result.report_files.append(out_dir / "drift.json")
    result.report_files[-1].write_text(result.to_json())
    return result


def _compare(reference: str, groups: dict[str, tuple[pl.DataFrame, pl.DataFrame]], params: dict,
             out_dir: Path) -> tuple[list[dict[str, Any]], list[Path]]:
    """Evidently's drift report of each feature group, reference side against the current side."""
    features: list[dict[str, Any]] = []
    report_files = []
    for group, (ref_frame, cur_frame) in groups.items():
        if ref_frame.height == 0 or cur_frame.height == 0:
            continue
        numeric = [c for c, t in ref_frame.schema.items() if t.is_numeric()]
        categorical = [c for c in ref_frame.columns if c not in numeric]
        definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
        report = Report([DataDriftPreset(method=params.get("stattest", "psi"),
                                         threshold=float(params.get("stattest_threshold", 0.2)))])
        snapshot = report.run(current_data=Dataset.from_pandas(cur_frame.to_pandas(), data_definition=definition),
                              reference_data=Dataset.from_pandas(ref_frame.to_pandas(), data_definition=definition))
        for metric in snapshot.dict()["metrics"]:
            config = metric.get("config", {})
            if config.get("type", "").endswith("ValueDrift"):
                score = float(metric["value"])
                features.append({"reference": reference, "feature": f"{group}.{config['column']}",
                                 "stattest": config.get("method"), "score": round(score, 5),
                                 "threshold": config.get("threshold"),
                                 "drifted": score >= float(config.get("threshold"))})
        path = out_dir / f"drift_{reference}_{group}.html"
        snapshot.save_html(str(path))
        report_files.append(path)
    return features, report_files
