"""The new part of a version (quality/new_part.py) for each delivery shape, on hand-made tables."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from domain.tables import TABLES
from ml.catalog import merge
from quality import new_part

TODAY = dt.date(2026, 12, 1)


def transactions(ids: range, month: int, **changes) -> pl.DataFrame:
    frame = pl.DataFrame({
        "transaction_id": [str(i) for i in ids], "user_id": [50_000 + i % 7 for i in ids],
        "merchant_id_tx": [10] * len(ids), "event_date": [dt.date(2025, month, 1 + i % 28) for i in ids],
        "amount_bucket": ["100-500"] * len(ids), "online_transaction_flg": ["N"] * len(ids),
        "brand_dk": [7] * len(ids)}, schema=TABLES["transaction"].columns)
    return frame.with_columns(**{k: pl.lit(v) for k, v in changes.items()}) if changes else frame


def people(ids: range, activity: str = "2025-01-31") -> pl.DataFrame:
    return pl.DataFrame({"user_id": list(ids), "age_bucket": ["30"] * len(ids), "gender_cd": ["F"] * len(ids),
                         "region": [None] * len(ids), "last_activity_day": [activity] * len(ids)},
                        schema=TABLES["people"].columns)


def offers(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=TABLES["offer"].columns, orient="row")


def write(directory: Path, **tables: pl.DataFrame) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.write_parquet(directory / f"{name}.parquet")
    return directory


@pytest.fixture
def catalog(tmp_path) -> Path:
    """Two months of transactions (ids 0..99 in January, 100..199 in February), seven clients, two offers."""
    first = write(tmp_path / "v1", transaction=pl.concat([transactions(range(0, 100), 1),
                                                          transactions(range(100, 200), 2)]),
                  people=people(range(50_000, 50_007)),
                  offer=offers([(1, 10, dt.date(2025, 1, 1), None, "shop"), (2, 10, dt.date(2025, 2, 1),
                                                                             dt.date(2025, 2, 28), None)]))
    merge(None, first, tmp_path / "catalog")
    return tmp_path / "catalog"


def split(snapshot, catalog, table, **kwargs):
    return new_part.split(snapshot, catalog, table, today=TODAY, **kwargs)


def test_only_new_rows(tmp_path, catalog):
    snapshot = write(tmp_path / "v2", transaction=transactions(range(200, 260), 3))
    rows, part = split(snapshot, catalog, "transaction")
    assert rows.height == part.new_rows == part.rows == 60 and part.changed_rows == 0 and part.resent_rows == 0
    assert part.catalog_rows == 200 and part.catalog_last_date == "2025-02-28" and part.delivery == "new rows"
    assert part.new_period == ("2025-03-01", "2025-03-28") and part.period_rows == 60
    assert rows.columns == list(TABLES["transaction"].columns)


def test_everything_so_far(tmp_path, catalog):
    everything = pl.concat([pl.read_parquet(catalog / "transaction.parquet"), transactions(range(200, 260), 3)])
    snapshot = write(tmp_path / "v2", transaction=everything.sample(fraction=1.0, shuffle=True, seed=1))
    rows, part = split(snapshot, catalog, "transaction")
    assert part.rows == 260 and part.new_rows == 60 and part.resent_rows == 200 and part.changed_rows == 0
    assert part.delivery == "everything so far" and set(rows["transaction_id"]) == {str(i) for i in range(200, 260)}
    assert part.new_period == ("2025-03-01", "2025-03-28")


def test_everything_so_far_with_corrections(tmp_path, catalog):
    old = pl.read_parquet(catalog / "transaction.parquet")
    corrected = old.with_columns(pl.when(pl.col("transaction_id").is_in(["3", "150"])).then(pl.lit("1k-5k"))
                                 .otherwise(pl.col("amount_bucket")).alias("amount_bucket"))
    snapshot = write(tmp_path / "v2", transaction=pl.concat([corrected, transactions(range(200, 210), 3)]))
    rows, part = split(snapshot, catalog, "transaction")
    # The corrected rows are old rows changed, not new ones.
    assert part.new_rows == 10 and part.changed_rows == 2 and sorted(part.changed_examples) == ["150", "3"]
    assert part.resent_rows == 200 and set(rows["transaction_id"]) == {str(i) for i in range(200, 210)}


def test_a_different_mode_per_table(tmp_path, catalog):
    everyone = pl.concat([people(range(50_000, 50_007), activity="2025-03-15"), people(range(60_000, 60_003))])
    snapshot = write(tmp_path / "v2", transaction=transactions(range(200, 230), 3), people=everyone)
    tx_rows, tx = split(snapshot, catalog, "transaction")
    client_rows, clients = split(snapshot, catalog, "people")
    assert (tx.delivery, tx.new_rows) == ("new rows", 30)
    # Every client re-sent, their last activity updated: changed rows; the three new clients are new.
    assert clients.delivery == "everything so far" and clients.changed_rows == 7
    assert client_rows["user_id"].to_list() == [60_000, 60_001, 60_002] and clients.new_period is None


def test_a_month_redelivered_after_a_broken_one(tmp_path, catalog):
    # March was rejected (never merged); April's version re-sends March with April.
    snapshot = write(tmp_path / "v4", transaction=pl.concat([transactions(range(200, 230), 3),
                                                            transactions(range(230, 260), 4)]))
    rows, part = split(snapshot, catalog, "transaction")
    assert part.new_rows == 60 and part.new_period == ("2025-03-01", "2025-04-28")


def test_keyless_rows_are_old_only_when_held_exactly(tmp_path, catalog):
    snapshot = write(tmp_path / "v2", offer=offers([
        (1, 10, dt.date(2025, 1, 1), None, "shop"),                          # re-sent as it was (nulls too)
        (2, 10, dt.date(2025, 2, 1), dt.date(2025, 3, 31), None),            # the same offer_id, another end
        (3, 11, dt.date(2025, 3, 1), None, "new")]))
    rows, part = split(snapshot, catalog, "offer")
    assert part.new_rows == 2 and part.resent_rows == 1 and part.changed_rows == 0
    assert rows["offer_id"].to_list() == [2, 3]


def test_the_first_version_is_all_new(tmp_path):
    snapshot = write(tmp_path / "v1", transaction=transactions(range(0, 50), 1))
    rows, part = split(snapshot, None, "transaction")
    assert part.new_rows == part.rows == rows.height == 50 and part.catalog_rows == 0 and part.delivery == "first"
    assert part.catalog_last_date is None and part.new_period == ("2025-01-01", "2025-01-28")


def test_a_stray_future_date_does_not_move_the_last_date(tmp_path, catalog):
    stray = transactions(range(300, 301), 1).with_columns(pl.lit(dt.date(2099, 12, 31)).alias("event_date"))
    merge(catalog, write(tmp_path / "v2", transaction=stray), tmp_path / "catalog2")
    snapshot = write(tmp_path / "v3", transaction=transactions(range(200, 230), 3))
    rows, part = split(snapshot, tmp_path / "catalog2", "transaction")
    assert part.catalog_last_date == "2025-02-28" and part.period_rows == 30
    assert new_part.last_date(pl.scan_parquet(tmp_path / "catalog2" / "transaction.parquet"), "event_date",
                              TODAY) == dt.date(2025, 2, 28)


def test_drift_reads_only_the_new_period(tmp_path, catalog):
    # A late row for January and a new March: drift's current side is March alone.
    late = transactions(range(400, 401), 1)
    snapshot = write(tmp_path / "v2", transaction=pl.concat([pl.read_parquet(catalog / "transaction.parquet"), late,
                                                            transactions(range(200, 240), 3)]))
    rows, part = split(snapshot, catalog, "transaction", columns=["user_id", "event_date"], period_only=True)
    assert rows.columns == ["user_id", "event_date"] and rows.height == part.period_rows == 40
    everything, whole = split(snapshot, catalog, "transaction")
    assert whole.new_rows == 41 and whole.period_rows == 40  # validation judges the late row too


def test_period_rows_and_determinism(tmp_path, catalog):
    february = new_part.period_rows(catalog, "transaction", ["2025-02-01", "2025-02-28"], ["transaction_id"])
    assert february.height == 100
    snapshot = write(tmp_path / "v2", transaction=transactions(range(200, 260), 3).reverse())
    first, _ = split(snapshot, catalog, "transaction")
    again, _ = split(snapshot, catalog, "transaction")
    assert first.equals(again) and first["transaction_id"].to_list()[0] == "259"  # the version's own order
