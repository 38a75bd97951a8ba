"""The generator: deterministic, typed like the service's schemas, learnable, scenarios do what they say."""
from __future__ import annotations

import datetime as dt
import json

import httpx
import numpy as np
import orjson
import polars as pl
import pytest

import datagen
from datagen.send import iter_batches, send_version
from domain.tables import TABLES, parse_records
from ml.ground_truth import offers_ground_truth

# A drift persists until a `return`: the receipts drift comes after one, so it moves receipts alone.
SERIES = ["base", "same", "drift_behaviour", "corrupt_shuffled_users", "drift_clients", "return", "drift_receipts"]


def read(version, table):
    return pl.read_parquet(version / f"{table}.parquet")


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    return datagen.generate_series(tmp_path_factory.mktemp("gen"), "tiny", 5, SERIES)


@pytest.fixture(scope="module")
def full_series(tmp_path_factory):
    return datagen.generate_series(tmp_path_factory.mktemp("full"), "tiny", 5, ["base", "same", "same"], "full")


def test_same_seed_same_files(series, tmp_path):
    again = datagen.generate_series(tmp_path, "tiny", 5, SERIES)
    for first, second in zip(series, again):
        files = sorted(p.relative_to(first) for p in first.rglob("*.parquet"))
        assert files == sorted(p.relative_to(second) for p in second.rglob("*.parquet"))
        for name in files:
            assert pl.read_parquet(first / name).equals(pl.read_parquet(second / name)), name
        assert (first / "manifest.json").read_text() == (second / "manifest.json").read_text()


def test_another_seed_another_world(series, tmp_path):
    other, = datagen.generate_series(tmp_path, "tiny", 6, ["base"])
    assert not read(other, "transaction").equals(read(series[0], "transaction"))


def test_tables_have_the_service_schemas_and_manifest(series):
    for version in series:
        manifest = json.loads((version / "manifest.json").read_text())
        assert manifest["version"] == version.name and manifest["mode"] == "increment"
        for path in version.glob("*.parquet"):
            frame = pl.read_parquet(path)
            assert dict(frame.schema) == dict(TABLES[path.stem].columns), path
            assert manifest["tables"][path.stem]["rows"] == frame.height
    first = series[0]
    assert set(json.loads((first / "manifest.json").read_text())["tables"]) == set(TABLES)
    assert dict(pl.read_parquet(first / "_holdout" / "offer.parquet").schema) == {**TABLES["offer"].columns,
                                                                                   "kind": pl.Utf8}
    assert dict(pl.read_parquet(first / "_holdout" / "transaction.parquet").schema) == \
        dict(TABLES["transaction"].columns)


def test_real_value_formats(series):
    base = series[0]
    people, segments, tx = read(base, "people"), read(base, "segments"), read(base, "transaction")
    assert people["age_bucket"].cast(pl.Int64).is_between(15, 80).all()
    assert set(people["gender_cd"]) == {"M", "F"}
    assert people["region"].null_count() > 0 and people["region"].drop_nulls().str.to_uppercase().equals(
        people["region"].drop_nulls())
    assert segments["segment"].str.contains(r"^t_\d+ \(\d+\)$").all()
    assert set(segments["region_size"]) <= {"msk", "urban", "town", "rural"}
    assert set(segments["auto"].unique()) <= {0.0, 1.0} and "not_vip" in set(segments["vip_status"])
    assert set(tx["online_transaction_flg"]) == {"Y", "N"}
    assert set(tx["amount_bucket"]) <= {"0-100", "100-500", "500-1k", "1k-5k", "5k-10k", "10k+"}
    assert tx["transaction_id"].n_unique() == tx.height
    merchants = read(base, "merchant")
    assert merchants["merchant_status"].value_counts().sort("count")["merchant_status"][-1] == "ACT"
    rewards = read(base, "offer_reward")
    assert (rewards["reward_amt"] == 0.0).all() and rewards.is_duplicated().any()
    # a year of history before the cut
    assert tx["event_date"].min().isoformat() == "2024-06-01" and tx["event_date"].max().isoformat() == "2025-05-31"


def test_offer_ids_repeat_and_durations_look_real(tmp_path):
    version, = datagen.generate_series(tmp_path, "small", 3, ["base"])
    offers = read(version, "offer")
    assert offers.height > offers["offer_id"].n_unique()
    days = (offers["end_date"] - offers["start_date"]).dt.total_days()
    finite = days.filter(days < 10_000)
    assert finite.min() == 0 and finite.max() <= 186 and 20 <= finite.median() <= 35
    merchants = read(version, "merchant")
    assert merchants["brand_dk"].null_count() > 0
    assert merchants.drop_nulls("brand_dk").group_by("brand_dk").len()["len"].max() > 1


def test_held_out_offers_have_new_customers_only(series):
    for version in series[:3]:
        past = read(version, "transaction") if version == series[0] else pl.concat(
            [read(v, "transaction") for v in series[:series.index(version) + 1]])
        future = pl.read_parquet(version / "_holdout" / "transaction.parquet")
        offers = pl.read_parquet(version / "_holdout" / "offer.parquet")
        merchants = pl.concat([read(v, "merchant") for v in series[:series.index(version) + 1]])
        assert future["event_date"].min() > past["event_date"].max()
        ahead = offers.filter(pl.col("kind") != "running")
        assert ahead["start_date"].min() > past["event_date"].max()
        running = offers.filter(pl.col("kind") == "running")
        assert (running["start_date"] <= past["event_date"].max()).all()
        assert (running["end_date"] > past["event_date"].max()).all()
        everything = pl.concat([past, future])
        truth = offers_ground_truth(everything, offers, merchants)
        assert truth["offer_id"].n_unique() >= 0.6 * offers["offer_id"].n_unique()
        # nobody in the truth bought at the brand before the offer started
        brands = merchants.drop_nulls("brand_dk").unique("merchant_id_offer").select("merchant_id_offer", "brand_dk")
        before = (truth.join(offers.select("offer_id", "merchant_id_offer", "start_date").unique(), on=[
            "offer_id", "merchant_id_offer"]).join(brands, on="merchant_id_offer")
            .join(everything.select("user_id", "brand_dk", "event_date"), on=["user_id", "brand_dk"])
            .filter(pl.col("event_date") < pl.col("start_date")))
        assert before.height == 0


def _ap(ranked, relevant, k=100):
    hits, total = 0, 0.0
    for i, user in enumerate(ranked[:k]):
        if user in relevant:
            hits += 1
            total += hits / (i + 1)
    return total / min(len(relevant), k)


def test_oracle_knows_the_future_better_than_chance(series):
    base = series[0]
    past, future = read(base, "transaction"), pl.read_parquet(base / "_holdout" / "transaction.parquet")
    offers = pl.read_parquet(base / "_holdout" / "offer.parquet")
    truth = offers_ground_truth(pl.concat([past, future]), offers, read(base, "merchant"))
    oracle = pl.read_parquet(base / "_holdout" / "oracle.parquet")
    assert set(oracle.columns) == {"offer_id", "merchant_id_offer", "user_id", "probability"}
    assert oracle["probability"].is_between(0, 1).all()
    rng = np.random.default_rng(0)
    oracle_ap, random_ap = [], []
    for (offer_id, merchant), scores in oracle.partition_by(["offer_id", "merchant_id_offer"], as_dict=True).items():
        relevant = set(truth.filter((pl.col("offer_id") == offer_id)
                                    & (pl.col("merchant_id_offer") == merchant))["user_id"].to_list())
        candidates = scores.filter(pl.col("probability") > 0)
        if not relevant:
            continue
        assert relevant <= set(candidates["user_id"].to_list())  # existing customers get 0, never true ones
        oracle_ap.append(_ap(candidates.sort("probability", "user_id", descending=[True, False])["user_id"].to_list(),
                             relevant))
        random_ap.append(_ap(list(rng.permutation(candidates["user_id"].to_numpy())), relevant))
    assert len(oracle_ap) >= 5
    assert np.mean(oracle_ap) > 5 * np.mean(random_ap)
    # calibrated: expected number of new customers close to the realised number
    expected = oracle["probability"].sum()
    assert 0.5 * truth.height < expected < 2 * truth.height


def test_versions_bring_new_entities(series):
    base, same = series[0], series[1]
    assert not set(read(same, "people")["user_id"]) & set(read(base, "people")["user_id"])
    assert read(same, "people").height > 0 and read(same, "merchant").height > 0
    ahead = read(same, "offer").filter(pl.col("start_date") >= pl.date(2025, 7, 1))
    held_out = pl.read_parquet(same / "_holdout" / "offer.parquet")
    assert set(ahead["offer_id"]) == set(held_out.filter(pl.col("kind") != "running")["offer_id"])
    assert read(same, "transaction")["event_date"].min().isoformat() == "2025-06-01"
    assert json.loads((same / "manifest.json").read_text())["cut_date"] == "2025-07-01"


def test_full_mode_is_cumulative(full_series):
    v1, v2, v3 = full_series
    assert read(v2, "transaction").height > read(v1, "transaction").height
    assert set(read(v1, "transaction")["transaction_id"]) <= set(read(v3, "transaction")["transaction_id"])
    assert set(read(v1, "people")["user_id"]) < set(read(v3, "people")["user_id"])
    assert json.loads((v3 / "manifest.json").read_text())["mode"] == "full"


def _share(frame, column, value):
    return float((frame[column] == value).mean())


def test_drift_moves_what_it_says_and_same_does_not(series):
    base, same, behaviour, _, clients, _, receipts = series
    tx = {name: read(v, "transaction") for name, v in [("same", same), ("behaviour", behaviour),
                                                        ("clients", clients), ("receipts", receipts)]}
    online = {name: _share(frame, "online_transaction_flg", "Y") for name, frame in tx.items()}
    assert online["behaviour"] > online["same"] + 0.15
    assert abs(online["receipts"] - online["same"]) < 0.08
    expensive = {name: float(frame["amount_bucket"].is_in(["5k-10k", "10k+"]).mean()) for name, frame in tx.items()}
    assert expensive["behaviour"] > expensive["same"] + 0.08
    weekend = {name: float((frame["event_date"].dt.weekday() >= 6).mean()) for name, frame in tx.items()}
    assert weekend["behaviour"] > weekend["same"] + 0.1
    per_user = {name: frame.height / frame["user_id"].n_unique() for name, frame in tx.items()}
    assert per_user["behaviour"] > 1.3 * per_user["same"]
    # client mix: far more newcomers, from towns and villages, mass-market and young
    new_same, new_clients = read(same, "segments"), read(clients, "segments")
    assert new_clients.height > 3 * new_same.height
    rural = lambda s: float(s["region_size"].is_in(["town", "rural"]).mean())  # noqa: E731
    assert rural(new_clients) > rural(new_same) + 0.15
    assert _share(new_clients, "vip_status", "not_vip") > _share(new_same, "vip_status", "not_vip") + 0.15
    age = lambda v: read(v, "people")["age_bucket"].cast(pl.Int64).mean()  # noqa: E731
    assert age(clients) < age(same) - 5
    # receipts: the category mix and the cost move, transactions do not
    rc = {name: read(v, "receipts") for name, v in [("same", same), ("receipts", receipts)]}
    top = lambda frame: float(frame["category_name"].is_in(["кафе и рестораны", "красота"]).mean())  # noqa: E731
    assert top(rc["receipts"]) > top(rc["same"]) + 0.3
    assert expensive["receipts"] < expensive["same"] + 0.05


CORRUPTIONS = ["corrupt_missing_table", "corrupt_missing_batches", "corrupt_null_keys", "corrupt_shuffled_users",
               "corrupt_profile_flip", "corrupt_dates", "corrupt_duplicates", "corrupt_collapsed"]


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("corrupt")
    return {name: datagen.generate_series(out / name, "tiny", 9, ["base", name]) for name in CORRUPTIONS}


def test_each_corruption_is_really_there(corrupted):
    people_before = read(corrupted["corrupt_profile_flip"][0], "people")
    for name, (base, version) in corrupted.items():
        manifest = json.loads((version / "manifest.json").read_text())
        assert manifest["scenario"] == name and manifest["corruption"] == name
        tx = read(version, "transaction") if (version / "transaction.parquet").exists() else None
        known = pl.concat([read(base, "people"), read(version, "people")])["user_id"]
        if name == "corrupt_missing_table":
            assert tx is None and "transaction" not in manifest["tables"]
        elif name == "corrupt_missing_batches":
            assert manifest["drop_batches"] == {"transaction": [2]}
        elif name == "corrupt_null_keys":
            assert tx["user_id"].null_count() > 0.2 * tx.height
        elif name == "corrupt_shuffled_users":
            assert tx["user_id"].is_in(known.implode()).mean() < 0.5
            assert tx["user_id"].null_count() == 0
        elif name == "corrupt_profile_flip":
            again = read(version, "people").join(people_before, on="user_id", suffix="_before")
            assert again.height > 0.7 * people_before.height
            assert (again["gender_cd"] != again["gender_cd_before"]).mean() > 0.9
        elif name == "corrupt_dates":
            years = tx["event_date"].dt.year()
            assert ((years < 2000) | (years > 2030)).mean() > 0.2
        elif name == "corrupt_duplicates":
            assert tx["transaction_id"].is_duplicated().mean() > 0.3
        elif name == "corrupt_collapsed":
            assert tx["amount_bucket"].n_unique() == 1 and tx["brand_dk"].n_unique() == 1


def test_aliases_of_the_cli(tmp_path):
    _, version = datagen.generate_series(tmp_path, "tiny", 1, ["base", "corrupt_nulls"])
    assert json.loads((version / "manifest.json").read_text())["scenario"] == "corrupt_null_keys"
    with pytest.raises(ValueError):
        datagen.generate_series(tmp_path, "tiny", 1, ["base", "no_such_thing"])


def test_batches_round_trip_through_the_parser(series):
    base = series[0]
    seen: dict[str, list[int]] = {}
    for table, batch_id, total, records in iter_batches(base, batch_rows=5_000):
        seen.setdefault(table, []).append(batch_id)
        assert 1 <= batch_id <= total
        frame, report = parse_records(table, records)
        assert not report.unparseable and not report.unknown_columns and not report.missing_columns
        expected = read(base, table).slice((batch_id - 1) * 5_000, 5_000)
        assert frame.equals(expected), table
    assert set(seen) == set(TABLES)
    assert seen["transaction"] == list(range(1, len(seen["transaction"]) + 1))


def test_send_version_posts_batches_honours_drops_and_commits(corrupted):
    _, version = corrupted["corrupt_missing_batches"]
    posted: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        if request.url.path == "/data/batch":
            posted.append({k: body[k] for k in ("version", "table", "batch_id", "total_batches")})
            assert isinstance(body["records"], list) and body["records"]
            return httpx.Response(200, json={"accepted": len(body["records"])})
        assert request.url.path == "/data/commit"
        return httpx.Response(200, json={"version": body["version"], "status": "accepted"})

    client = httpx.Client(base_url="http://test", transport=httpx.MockTransport(handler))
    answer = send_version("http://test", version, batch_rows=1_000, client=client, concurrency=2)
    assert answer == {"version": "v2", "status": "accepted"}
    tx = [p for p in posted if p["table"] == "transaction"]
    assert tx and 2 not in {p["batch_id"] for p in tx} and tx[0]["total_batches"] >= 3
    assert {p["table"] for p in posted} == {p.stem for p in version.glob("*.parquet")}


def test_a_drift_persists_until_a_return(tmp_path):
    versions = datagen.generate_series(tmp_path, "tiny", 5, ["base", "same", "drift_behaviour", "same", "return"])
    online = [_share(read(v, "transaction"), "online_transaction_flg", "Y") for v in versions[1:]]
    before, drifted, stayed, back = online
    assert drifted > before + 0.15 and abs(stayed - drifted) < 0.05 and abs(back - before) < 0.05
    assert [datagen.scenarios.expected_action(["base", "same", "drift_behaviour", "same", "return"], i)
            for i in range(5)] == ["retrained", "none", "retrained", "none", "none"]


def test_confined_corruptions_break_only_a_share_of_the_new_rows(tmp_path):
    base, version = datagen.generate_series(tmp_path, "tiny", 9, ["base", "corrupt_null_keys_confined"], "full")
    manifest = json.loads((version / "manifest.json").read_text())
    tx = read(version, "transaction")
    new = tx["event_date"] >= dt.date(2025, 6, 1)
    broken = tx["user_id"].is_null()
    assert 0.10 <= manifest["corrupted_share"] <= 0.20 and not (broken & ~new).any()
    assert broken.sum() / new.sum() == pytest.approx(manifest["corrupted_share"], abs=0.002)
    assert broken.mean() < 0.02  # over everything the version carries, diluted below the null-key limit


@pytest.fixture(scope="module")
def deliveries(tmp_path_factory):
    out = tmp_path_factory.mktemp("deliveries")
    return {mode: datagen.generate_series(out / mode, "tiny", 5, ["base", "same", "corrupt_dates", "same"], mode)
            for mode in ("increment", "corrections", "mixed", "redeliver")}


def test_corrections_resend_everything_with_a_few_old_rows_changed(deliveries):
    v2 = deliveries["corrections"][1]
    increment_v1 = deliveries["increment"][0]
    old, now = read(increment_v1, "transaction"), read(v2, "transaction")
    again = now.join(old, on="transaction_id", suffix="_before")
    changed = (again["amount_bucket"] != again["amount_bucket_before"]).sum()
    assert again.height == old.height and changed == json.loads((v2 / "manifest.json").read_text())["corrected_rows"]
    assert 0 < changed < 0.01 * old.height


def test_mixed_delivery_sends_some_tables_whole_and_others_new(deliveries):
    increment, mixed = deliveries["increment"][1], deliveries["mixed"][1]
    for table in ("transaction", "people"):  # everything so far
        assert read(mixed, table).height > 5 * read(increment, table).height
    for table in ("segments", "receipts"):  # only new rows
        assert read(mixed, table).equals(read(increment, table))


def test_redelivery_resends_the_broken_month_after_it(deliveries):
    redelivered, plain = deliveries["redeliver"][3], deliveries["increment"][3]
    months = lambda v: sorted(set(read(v, "transaction")["event_date"].dt.month().to_list()))  # noqa: E731
    assert months(plain) == [8] and months(redelivered) == [7, 8]
    broken = read(deliveries["redeliver"][2], "transaction")
    clean = read(redelivered, "transaction").filter(pl.col("event_date").dt.month() == 7)
    assert clean["transaction_id"].sort().equals(broken["transaction_id"].sort())
    assert clean["event_date"].min().year == 2025
