"""Drift of a new version against the data the deployed model learnt from (Evidently).

Only what the model uses is compared, never ids and never the arrival of new entities:
  - per transaction: amount bucket, online flag, weekday;
  - per active client over the period: transaction count, online share, share of large amounts;
  - per receipt: category and cost bucket;
  - the active client mix: segment code, age, region_size, vip status.
Whether a version carries everything so far or only the new rows, the current side is the new
period (transactions after the reference's last date); the reference side is everything the model
learnt from, so a passing anomaly that has ended does not read as a new drift once the model has
been retrained on it, and a lasting shift keeps showing until the training data holds it.
drift_score = the largest share of drifted features (PSI above the per-feature threshold) among
the four groups (0..1): a shift confined to one aspect (only the client mix, only receipts) counts
as fully as one spread over all; drift_detected = drift_score > params["threshold"].
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

os.environ.setdefault("TQDM_DISABLE", "1")

from evidently import DataDefinition, Dataset, Report  # noqa: E402
from evidently.presets import DataDriftPreset  # noqa: E402

LARGE_AMOUNTS = ("5k-10k", "10k+")


@dataclass
class DriftResult:
    drift_score: float
    drift_detected: bool
    threshold: float
    features: list[dict[str, Any]] = field(default_factory=list)
    report_files: list[Path] = field(default_factory=list)  # Evidently HTML per feature group, drift.json
    current_period: tuple[str, str] | None = None
    reference_period: tuple[str, str] | None = None
    note: str = ""

    def to_json(self) -> str:
        return json.dumps({"drift_score": self.drift_score, "drift_detected": self.drift_detected,
                           "threshold": self.threshold, "features": self.features,
                           "current_period": self.current_period, "reference_period": self.reference_period,
                           "note": self.note, "report_files": [path.name for path in self.report_files]},
                          indent=1)


# The transaction columns the drift features come from (ids and merchants are never compared): at full
# scale the other three are most of the table's memory.
TRANSACTION_COLUMNS = ["user_id", "event_date", "amount_bucket", "online_transaction_flg"]


def _read(directory: Path, table: str, columns: list[str] | None = None) -> pl.DataFrame | None:
    path = Path(directory) / f"{table}.parquet"
    return pl.read_parquet(path, columns=columns) if path.exists() else None


def _sample(frame: pl.DataFrame, rows: int, seed: int = 0) -> pl.DataFrame:
    return frame.sample(n=rows, seed=seed) if frame.height > rows else frame


def _periods(ref_tx: pl.DataFrame, cur_tx: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Everything the model learnt from, and the new rows of the current version."""
    last = ref_tx["event_date"].max()
    current = cur_tx.filter(pl.col("event_date") > last) if last is not None else cur_tx
    return ref_tx, current


def _transaction_features(tx: pl.DataFrame) -> pl.DataFrame:
    return tx.select(pl.col("amount_bucket").fill_null("missing"),
                     pl.col("online_transaction_flg").fill_null("missing"),
                     pl.col("event_date").dt.weekday().cast(pl.Utf8).alias("weekday"))


def _client_features(tx: pl.DataFrame, days: int) -> pl.DataFrame:
    """Per client and window of `days` days: activity, online share, share of large amounts.
    The reference is cut into windows as long as the new period, so a month is compared with
    months (aggregates over a year are smoother than over a month, whatever the world does)."""
    last = tx["event_date"].max()
    window = ((pl.lit(last) - pl.col("event_date")).dt.total_days() // days).alias("window")
    return tx.group_by("user_id", window).agg(
        (pl.len() / days * 30).alias("transactions_per_30d"),
        (pl.col("online_transaction_flg") == "Y").mean().alias("online_share"),
        pl.col("amount_bucket").is_in(LARGE_AMOUNTS).mean().alias("large_amount_share"),
    ).drop("user_id", "window")


def _client_mix(tx: pl.DataFrame, people: pl.DataFrame, segments: pl.DataFrame) -> pl.DataFrame:
    active = tx.select("user_id").unique()
    return (active.join(people.unique("user_id", keep="last"), on="user_id", how="left")
            .join(segments.unique("user_id", keep="last"), on="user_id", how="left")
            .select(pl.col("segment").str.extract(r"^(\S+)").fill_null("missing").alias("segment_code"),
                    pl.col("age_bucket").fill_null("missing"), pl.col("region_size").fill_null("missing"),
                    pl.col("vip_status").fill_null("missing")))


def _entities(*frames: pl.DataFrame | None) -> pl.DataFrame | None:
    present = [f for f in frames if f is not None]
    return pl.concat(present, how="vertical_relaxed") if present else None


def evaluate_drift(reference: Path, current: Path, params: dict, out_dir: Path) -> DriftResult:
    threshold = float(params["threshold"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ref_tx, cur_tx = (_read(d, "transaction", TRANSACTION_COLUMNS) for d in (reference, current))
    if ref_tx is None or cur_tx is None or cur_tx.height == 0:
        return DriftResult(0.0, False, threshold, note="no new transactions to compare")
    cur_tx = cur_tx.filter(pl.col("event_date").is_not_null())
    ref_period, cur_period = _periods(ref_tx, cur_tx)
    if cur_period.height == 0:
        return DriftResult(0.0, False, threshold, note="the version holds no transactions after the reference")
    rows = int(params.get("sample_rows", 200_000))
    span = (cur_period["event_date"].max() - cur_period["event_date"].min()).days + 1
    people = _entities(_read(reference, "people"), _read(current, "people"))
    segments = _entities(_read(reference, "segments"), _read(current, "segments"))
    groups: dict[str, tuple[pl.DataFrame, pl.DataFrame]] = {
        "transaction": (_transaction_features(_sample(ref_period, rows)), _transaction_features(_sample(cur_period, rows))),
        "client": (_client_features(ref_period, span), _client_features(cur_period, span)),
    }
    if people is not None and segments is not None:
        groups["client_mix"] = (_client_mix(ref_period, people, segments), _client_mix(cur_period, people, segments))
    ref_receipts, cur_receipts = _read(reference, "receipts"), _read(current, "receipts")
    if ref_receipts is not None and cur_receipts is not None and ref_receipts.height:
        last = ref_receipts["date_operated"].max()
        new_receipts = cur_receipts.filter(pl.col("date_operated") > last)
        if new_receipts.height:
            old = ref_receipts
            pick = lambda f: _sample(f, rows).select(pl.col("category_name").fill_null("missing"),  # noqa: E731
                                                     pl.col("items_cost").fill_null("missing"))
            groups["receipt"] = (pick(old), pick(new_receipts))

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
                features.append({"feature": f"{group}.{config['column']}", "stattest": config.get("method"),
                                 "score": round(score, 5), "threshold": config.get("threshold"),
                                 "drifted": score >= float(config.get("threshold"))})
        path = out_dir / f"drift_{group}.html"
        snapshot.save_html(str(path))
        report_files.append(path)
    by_group: dict[str, list[bool]] = {}
    for feature in features:
        by_group.setdefault(feature["feature"].split(".")[0], []).append(feature["drifted"])
    score = max((sum(flags) / len(flags) for flags in by_group.values()), default=0.0)
    result = DriftResult(
        drift_score=round(score, 4), drift_detected=score > threshold, threshold=threshold, features=features,
        report_files=report_files,
        current_period=(str(cur_period["event_date"].min()), str(cur_period["event_date"].max())),
        reference_period=(str(ref_period["event_date"].min()), str(ref_period["event_date"].max())),
    )
    result.report_files.append(out_dir / "drift.json")
    result.report_files[-1].write_text(result.to_json())
    return result

