"""The generator: deterministic, typed like the service's schemas, scenarios do what they say."""
from __future__ import annotations

import json

import polars as pl
import pytest

import datagen
from domain.tables import TABLES
from ml.ground_truth import offers_ground_truth


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    return datagen.generate_series(out, "tiny", 5, ["base", "same", "drift_behaviour", "corrupt_shuffled_users"])


def test_same_seed_same_files(series, tmp_path):
    again = datagen.generate_series(tmp_path, "tiny", 5, ["base", "same", "drift_behaviour", "corrupt_shuffled_users"])
    for first, second in zip(series, again):
        for path in first.glob("*.parquet"):
            assert pl.read_parquet(path).equals(pl.read_parquet(second / path.name)), path.name


def test_tables_have_the_service_schemas(series):
    for version in series:
        for path in version.glob("*.parquet"):
            assert dict(pl.read_parquet(path).schema) == dict(TABLES[path.stem].columns), path


def test_held_out_offers_have_new_customers_only(series):
    base = series[0]
    past = pl.read_parquet(base / "transaction.parquet")
    future = pl.read_parquet(base / "_holdout" / "transaction.parquet")
    offers = pl.read_parquet(base / "_holdout" / "offer.parquet")
    truth = offers_ground_truth(pl.concat([past, future]), offers, pl.read_parquet(base / "merchant.parquet"))
    assert truth["offer_id"].n_unique() >= offers["offer_id"].n_unique() // 2
    assert future["event_date"].min() > past["event_date"].max()


def test_offer_ids_repeat_like_the_real_table(series):
    offers = pl.read_parquet(series[0] / "offer.parquet")
    assert offers.height > offers["offer_id"].n_unique()


def test_drift_moves_online_share_and_corruption_breaks_joins(series):
    base, same, drifted, corrupt = (pl.read_parquet(v / "transaction.parquet") for v in series)
    online = lambda tx: (tx["online_transaction_flg"] == "Y").mean()  # noqa: E731
    assert online(drifted) > online(same) + 0.2
    people = pl.concat([pl.read_parquet(v / "people.parquet") for v in series[:4]])["user_id"]
    assert corrupt["user_id"].is_in(people.implode()).mean() < 0.5
    assert json.loads((series[3] / "manifest.json").read_text())["corruption"] == "corrupt_shuffled_users"
