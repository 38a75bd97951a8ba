"""Drift of a new version against the data the deployed model was trained on (Evidently 0.7).

What is compared: only quantities the model uses, never ids and never the mere arrival of new
entities (new offers, merchants, brands or clients alone are not drift):
  - transaction: per transaction amount bucket, online flag, weekday;
  - client:      per active client over a period, transactions per 30 days, online share, mean
                 amount-bucket rank (spend mix; bucket order learnt from the labels, e.g. "1k-5k");
  - client_mix:  who transacts: the segment code, age bucket, region size and vip status of the
                 client of each transaction (so a mix weighted by activity, as the model sees it);
  - receipt:     per receipt category and cost bucket, and receipts per 30 days per client.

Which rows: whether a version carries all data so far or only new rows, the current side is the
NEW period only: transactions (receipts) dated after the reference's last date. The reference side
is every window of the same length in the training data (up to `reference_windows`, ending at its
last date): per-client aggregates over one month are noisier than over a year, so they are only
ever compared window to window, pooled over the reference windows. The client mix is that of the
transactions of the period, so new clients count as they start transacting, and are drift only when
the mix of who transacts changes, never by merely being new.

Tests: categorical features by PSI, numeric ones by normed Wasserstein distance: effect sizes that
do not grow significant with sample size the way chi-square/KS p-values do; transaction and receipt
rows are also sampled to `sample_rows` with a fixed seed.

drift_score (0..1) = the weighted share of drifted features: each group present weighs equally and
shares its weight among its features, so 0.25 means "one aspect of four moved entirely" (or half of
two). drift_detected = drift_score > threshold (calibrated by bench/drift_calibration.py).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

os.environ.setdefault("TQDM_DISABLE", "1")

from evidently import DataDefinition, Dataset, Report  # noqa: E402
from evidently.presets import DataDriftPreset  # noqa: E402

DEFAULTS = {"threshold": 0.12, "cat_stattest": "psi", "cat_threshold": 0.1, "num_stattest": "wasserstein",
            "num_threshold": 0.1, "sample_rows": 200_000, "reference_windows": 6, "min_rows": 30, "seed": 0}


@dataclass
class DriftResult:
    drift_score: float
    drift_detected: bool
    threshold: float
    features: list[dict[str, Any]] = field(default_factory=list)
    report_html: Path | None = None
    current_period: tuple[str, str] | None = None
    reference_period: tuple[str, str] | None = None
    groups: dict[str, float] = field(default_factory=dict)
    note: str = ""

    def to_json(self) -> str:
        return json.dumps({"drift_score": self.drift_score, "drift_detected": self.drift_detected,
                           "threshold": self.threshold, "groups": self.groups, "features": self.features,
                           "current_period": self.current_period, "reference_period": self.reference_period,
                           "note": self.note, "report_html": str(self.report_html) if self.report_html else None},
                          indent=1)


def _read(directory: Path, table: str, columns: list[str] | None = None) -> pl.DataFrame | None:
    path = Path(directory) / f"{table}.parquet"
    if not path.exists():
        return None
    present = pl.read_parquet_schema(path)
    return pl.read_parquet(path, columns=[c for c in columns if c in present] if columns else None)


def _sample(frame: pl.DataFrame, rows: int, seed: int) -> pl.DataFrame:
    return frame.sample(n=rows, seed=seed) if frame.height > rows else frame


def _bucket_order(values: list[str]) -> dict[str, int]:
    """Range labels ("0-100", "1k-5k", "10k+") ordered by their lower bound; learnt, not hard-coded."""
    def lower(label: str) -> float:
        match = re.match(r"\s*([\d.]+)\s*([kKmM]?)", str(label))
        if not match:
            return float("inf")
        return float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[match.group(2).lower()]
    return {v: i for i, v in enumerate(sorted(values, key=lambda v: (lower(v), str(v))))}


def _windows(dates: pl.Series, last: dt.date, span: int, count: int) -> list[tuple[dt.date, dt.date]]:
    """Up to `count` windows of `span` days ending at `last`, going back while data covers them."""
    first = dates.min()
    windows = []
    for i in range(count):
        end = last - dt.timedelta(days=i * span)
        start = end - dt.timedelta(days=span - 1)
        if start < first:
            break
        windows.append((start, end))
    return windows or [(first, last)]


def _in(frame: pl.DataFrame, column: str, window: tuple[dt.date, dt.date]) -> pl.DataFrame:
    return frame.filter(pl.col(column).is_between(window[0], window[1]))


def _client_features(tx: pl.DataFrame, days: int, amount_rank: dict[str, int]) -> pl.DataFrame:
    return tx.group_by("user_id").agg(
        (pl.len() / days * 30).alias("transactions_per_30d"),
        (pl.col("online_transaction_flg") == "Y").mean().alias("online_share"),
        pl.col("amount_bucket").replace_strict(amount_rank, default=None, return_dtype=pl.Float64).mean()
        .alias("mean_amount_rank"),
    ).drop("user_id")


def _client_mix(active: pl.DataFrame, clients: pl.DataFrame | None) -> pl.DataFrame:
    if clients is None:
        return pl.DataFrame()
    return (active.join(clients, on="user_id", how="left")
            .select(pl.col("segment").str.extract(r"^(\S+)").fill_null("missing").alias("segment_code"),
                    pl.col("age_bucket").cast(pl.Utf8).fill_null("missing"),
                    pl.col("region_size").fill_null("missing"), pl.col("vip_status").fill_null("missing")))


def _clients(reference: Path, current: Path) -> pl.DataFrame | None:
    """People and segments of the catalog and the version, the latest row per client."""
    parts = {}
    for table, columns in (("people", ["user_id", "age_bucket"]),
                           ("segments", ["user_id", "segment", "region_size", "vip_status"])):
        frames = [f.select(pl.col(c).cast(pl.Utf8) if c != "user_id" else pl.col(c) for c in columns)
                  for f in (_read(reference, table, columns), _read(current, table, columns)) if f is not None]
        if not frames:
            return None
        parts[table] = pl.concat(frames).unique("user_id", keep="last")
    return parts["people"].join(parts["segments"], on="user_id", how="full", coalesce=True)


def _pooled(frame: pl.DataFrame, column: str, windows: list, make) -> pl.DataFrame:
    parts = [make(_in(frame, column, w), (w[1] - w[0]).days + 1) for w in windows]
    parts = [p for p in parts if p.height]
    return pl.concat(parts) if parts else pl.DataFrame()


def evaluate_drift(reference: Path, current: Path, params: dict, out_dir: Path) -> DriftResult:
    params = {**DEFAULTS, **(params or {})}
    threshold = float(params["threshold"])
    rows, seed, count = int(params["sample_rows"]), int(params["seed"]), int(params["reference_windows"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = ["user_id", "event_date", "amount_bucket", "online_transaction_flg"]
    ref_tx, cur_tx = _read(reference, "transaction", columns), _read(current, "transaction", columns)
    if ref_tx is None or cur_tx is None or ref_tx.height == 0:
        return _finish(DriftResult(0.0, False, threshold, note="no transactions to compare"), out_dir)
    ref_tx = ref_tx.filter(pl.col("event_date").is_not_null())
    last = ref_tx["event_date"].max()
    new = cur_tx.filter(pl.col("event_date") > last)
    if new.height < int(params["min_rows"]):
        return _finish(DriftResult(0.0, False, threshold,
                                   note=f"only {new.height} transactions after the reference's last date {last}"),
                       out_dir)
    span = (new["event_date"].max() - new["event_date"].min()).days + 1
    windows = _windows(ref_tx["event_date"], last, span, count)
    reference_rows = pl.concat([_in(ref_tx, "event_date", w) for w in windows])
    amount_rank = _bucket_order(ref_tx["amount_bucket"].drop_nulls().unique().to_list())

    def tx_features(tx: pl.DataFrame) -> pl.DataFrame:
        return _sample(tx, rows, seed).select(
            pl.col("amount_bucket").fill_null("missing"), pl.col("online_transaction_flg").fill_null("missing"),
            pl.col("event_date").dt.weekday().cast(pl.Utf8).alias("weekday"))

    clients = _clients(reference, current)
    # group -> (reference, current) frame pairs; a group may hold frames of different units.
    groups: dict[str, list[tuple[pl.DataFrame, pl.DataFrame]]] = {
        "transaction": [(tx_features(reference_rows), tx_features(new))],
        "client": [(_pooled(ref_tx, "event_date", windows, lambda f, d: _client_features(f, d, amount_rank)),
                    _client_features(new, span, amount_rank))],
        "client_mix": [(_client_mix(_sample(reference_rows, rows, seed).select("user_id"), clients),
                        _client_mix(_sample(new, rows, seed).select("user_id"), clients))],
    }
    receipts = _receipt_groups(reference, current, rows, seed, count)
    if receipts is not None:
        groups["receipt"] = receipts

    features: list[dict[str, Any]] = []
    snapshots = {}
    for group, pairs in groups.items():
        for index, (ref_frame, cur_frame) in enumerate(pairs):
            if ref_frame.height < int(params["min_rows"]) or cur_frame.height < int(params["min_rows"]):
                continue
            found, snapshot = _run_evidently(ref_frame, cur_frame, params)
            for feature in found:
                feature["feature"] = f"{group}.{feature['feature']}"
                feature["group"] = group
            features.extend(found)
            snapshots[group if index == 0 else f"{group}_{index}"] = snapshot
    shares = {}
    for group in dict.fromkeys(f["group"] for f in features):
        flags = [f["drifted"] for f in features if f["group"] == group]
        shares[group] = round(sum(flags) / len(flags), 4) if flags else 0.0
    score = sum(shares.values()) / len(shares) if shares else 0.0
    for feature in features:
        feature["weight"] = round(1 / len(shares) / sum(f["group"] == feature["group"] for f in features), 4)
    html = None
    for group, snapshot in snapshots.items():
        path = out_dir / f"drift_{group}.html"
        snapshot.save_html(str(path))
    if snapshots:  # the most drifted group's report is the one to show first
        top = max(shares, key=lambda g: (shares[g], g == "transaction"))
        top = top if top in snapshots else next(iter(snapshots))
        html = out_dir / "drift_report.html"
        html.write_bytes((out_dir / f"drift_{top}.html").read_bytes())
    result = DriftResult(
        drift_score=round(score, 4), drift_detected=score > threshold, threshold=threshold, features=features,
        report_html=html, groups=shares,
        current_period=(str(new["event_date"].min()), str(new["event_date"].max())),
        reference_period=(str(windows[-1][0]), str(windows[0][1])),
        note=f"new period of {span} days vs {len(windows)} reference windows of the same length",
    )
    return _finish(result, out_dir)


def _receipt_groups(reference: Path, current: Path, rows: int, seed: int, count: int):
    columns = ["user_id", "date_operated", "category_name", "items_cost"]
    ref, cur = _read(reference, "receipts", columns), _read(current, "receipts", columns)
    if ref is None or cur is None or ref.height == 0:
        return None
    ref = ref.filter(pl.col("date_operated").is_not_null())
    last = ref["date_operated"].max()
    new = cur.filter(pl.col("date_operated") > last)
    if new.height == 0:
        return None
    span = (new["date_operated"].max() - new["date_operated"].min()).days + 1
    windows = _windows(ref["date_operated"], last, span, count)
    cost_rank = _bucket_order(ref["items_cost"].drop_nulls().unique().to_list())

    def receipt_rows(frame: pl.DataFrame) -> pl.DataFrame:
        return _sample(frame, rows, seed).select(pl.col("category_name").fill_null("missing"),
                                                 pl.col("items_cost").fill_null("missing"))

    def per_client(frame: pl.DataFrame, days: int) -> pl.DataFrame:
        return frame.group_by("user_id").agg(
            (pl.len() / days * 30).alias("receipts_per_30d"),
            pl.col("items_cost").replace_strict(cost_rank, default=None, return_dtype=pl.Float64).mean()
            .alias("mean_cost_rank")).drop("user_id")

    reference_rows = pl.concat([_in(ref, "date_operated", w) for w in windows])
    return [(receipt_rows(reference_rows), receipt_rows(new)),
            (_pooled(ref, "date_operated", windows, per_client), per_client(new, span))]


def _run_evidently(ref_frame: pl.DataFrame, cur_frame: pl.DataFrame, params: dict):
    numeric = [c for c, t in ref_frame.schema.items() if t.is_numeric()]
    categorical = [c for c in ref_frame.columns if c not in numeric]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    report = Report([DataDriftPreset(cat_method=params["cat_stattest"], cat_threshold=float(params["cat_threshold"]),
                                     num_method=params["num_stattest"], num_threshold=float(params["num_threshold"]))])
    snapshot = report.run(current_data=Dataset.from_pandas(cur_frame.to_pandas(), data_definition=definition),
                          reference_data=Dataset.from_pandas(ref_frame.to_pandas(), data_definition=definition))
    features = []
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            score = float(metric["value"])
            limit = float(config.get("threshold"))
            features.append({"feature": config["column"], "stattest": config.get("method"), "score": round(score, 5),
                             "threshold": limit, "drifted": score >= limit})
    return features, snapshot


def _finish(result: DriftResult, out_dir: Path) -> DriftResult:
    (out_dir / "drift.json").write_text(result.to_json())
    return result
