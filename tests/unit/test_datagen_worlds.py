"""The generator's world knobs (visibility, targeting) and its three kinds of held-out offers, with their oracle."""
from __future__ import annotations

import datetime as dt
import hashlib
import json

import numpy as np
import polars as pl
import pytest

import datagen
from ml.evaluate import average_precision_at_k
from ml.ground_truth import offers_ground_truth

# sha256 (first 16 hex digits) of each table as CSV, written by the generator before the knobs existed
# (commit 0833ba8) for generate_series(dir, "tiny", 5, ["base", "same"]).
ORIGINAL = {
    ("v1", "transaction"): "664ce8ee2ead4d59", ("v1", "receipts"): "09f8b21bfd555748",
    ("v1", "people"): "30f9392ee2935e89", ("v1", "segments"): "7503ef522720637e",
    ("v1", "financial_account"): "7e348b014209661c", ("v1", "merchant"): "6ecb92b34fa0f57f",
    ("v1", "offer_seens"): "f3eef7898701fe9a",
    ("v2", "transaction"): "3539f3f225d8f8f5", ("v2", "receipts"): "2e65f2f1144f7bd8",
    ("v2", "people"): "be5797dfb4d730dc", ("v2", "segments"): "b611cd31e3280e12",
    ("v2", "financial_account"): "277b08cd3d00c012", ("v2", "merchant"): "297d3747a443091b",
    ("v2", "offer_seens"): "724cbe1a77a26f5f",
}


def read(version, table):
    return pl.read_parquet(version / f"{table}.parquet")


def fingerprint(frame: pl.DataFrame) -> str:
    return hashlib.sha256(frame.write_csv().encode()).hexdigest()[:16]


@pytest.fixture(scope="module")
def visible(tmp_path_factory):
    """A high-visibility world with random targeting, three versions."""
    return datagen.generate_series(tmp_path_factory.mktemp("visible"), "tiny", 1, ["base", "same", "same"],
                                   visibility=1.0, targeting=0.0)


def test_default_knobs_draw_the_original_world(tmp_path):
    versions = datagen.generate_series(tmp_path, "tiny", 5, ["base", "same"])
    for version in versions:
        for (name, table), digest in ORIGINAL.items():
            if name == version.name:
                assert fingerprint(read(version, table)) == digest, (name, table)
        manifest = json.loads((version / "manifest.json").read_text())
        assert manifest["visibility"] == 0.0 and manifest["targeting"] == 1.0


def test_same_knobs_and_seed_same_files(visible, tmp_path):
    again = datagen.generate_series(tmp_path, "tiny", 1, ["base", "same", "same"], visibility=1.0, targeting=0.0)
    for first, second in zip(visible, again):
        files = sorted(p.relative_to(first) for p in first.rglob("*.parquet"))
        assert files == sorted(p.relative_to(second) for p in second.rglob("*.parquet"))
        for name in files:
            assert pl.read_parquet(first / name).equals(pl.read_parquet(second / name)), name
    assert json.loads((visible[0] / "manifest.json").read_text())["visibility"] == 1.0


def test_knobs_outside_the_unit_interval_are_refused(tmp_path):
    with pytest.raises(ValueError):
        datagen.generate_series(tmp_path, "tiny", 1, ["base"], visibility=1.5)
    with pytest.raises(ValueError):
        datagen.generate_series(tmp_path, "tiny", 1, ["base"], targeting=-0.1)


def _oracle_scores(version: pl.DataFrame, past_versions: list) -> dict[str, tuple[list[float], list[float]]]:
    """Per kind: (oracle AP@100, random AP@100) of every held-out offer with new customers."""
    past = pl.concat([read(v, "transaction") for v in past_versions]).select("user_id", "brand_dk", "event_date")
    merchants = pl.concat([read(v, "merchant") for v in past_versions])
    offers = pl.read_parquet(version / "_holdout" / "offer.parquet")
    future = pl.read_parquet(version / "_holdout" / "transaction.parquet").select(past.columns)
    truth = offers_ground_truth(pl.concat([past, future]), offers, merchants)
    oracle = pl.read_parquet(version / "_holdout" / "oracle.parquet")
    rng = np.random.default_rng(0)
    scores: dict[str, tuple[list[float], list[float]]] = {}
    for row in offers.iter_rows(named=True):
        key = (pl.col("offer_id") == row["offer_id"]) & (pl.col("merchant_id_offer") == row["merchant_id_offer"])
        relevant = set(truth.filter(key)["user_id"].to_list())
        if not relevant:
            continue
        mine = oracle.filter(key)
        candidates = mine.filter(pl.col("probability") > 0)
        assert relevant <= set(candidates["user_id"].to_list())  # a new customer never had probability 0
        ranked = mine.sort(["probability", "user_id"], descending=[True, False])["user_id"].to_list()
        kind = scores.setdefault(row["kind"], ([], []))
        kind[0].append(average_precision_at_k(ranked, relevant))
        kind[1].append(average_precision_at_k(list(rng.permutation(candidates["user_id"].to_numpy())), relevant))
    return scores


def test_the_oracle_sees_far_more_in_a_visible_world(visible, tmp_path):
    hidden, = datagen.generate_series(tmp_path, "tiny", 1, ["base"], visibility=0.0, targeting=0.0)
    high, low = _oracle_scores(visible[0], visible[:1]), _oracle_scores(hidden, [hidden])
    oracle, random = (np.mean(values) for values in high["fresh"])
    assert oracle > 0.45 and oracle > 10 * random
    assert oracle > np.mean(low["fresh"][0]) + 0.1  # tiny scale: 12 offers, a few new customers each
    for kind in ("running", "far"):
        assert np.mean(high[kind][0]) > 5 * np.mean(high[kind][1])


def test_the_oracle_is_calibrated(visible):
    version = visible[1]
    past = pl.concat([read(v, "transaction") for v in visible[:2]]).select("user_id", "brand_dk", "event_date")
    offers = pl.read_parquet(version / "_holdout" / "offer.parquet")
    future = pl.read_parquet(version / "_holdout" / "transaction.parquet").select(past.columns)
    merchants = pl.concat([read(v, "merchant") for v in visible[:2]])
    truth = offers_ground_truth(pl.concat([past, future]), offers, merchants)
    oracle = pl.read_parquet(version / "_holdout" / "oracle.parquet")
    expected = oracle.join(offers.select("offer_id", "kind"), on="offer_id").group_by("kind").agg(
        pl.col("probability").sum())
    realised = truth.join(offers.select("offer_id", "kind"), on="offer_id").group_by("kind").len()
    both = expected.join(realised, on="kind")
    assert both.height == 3
    assert ((both["probability"] / both["len"]).is_between(0.8, 1.25)).all(), both


def test_three_kinds_of_held_out_offers(visible):
    delivered = []
    for version in visible:
        delivered.append(version)
        manifest = json.loads((version / "manifest.json").read_text())
        cut = dt.date.fromisoformat(manifest["cut_date"])
        offers = pl.read_parquet(version / "_holdout" / "offer.parquet")
        assert set(offers["kind"]) == {"fresh", "running", "far"}
        assert offers.select("offer_id", "merchant_id_offer").is_duplicated().sum() == 0
        kind = {name: offers.filter(pl.col("kind") == name) for name in ("fresh", "running", "far")}
        assert (kind["running"]["start_date"] < cut).all() and (kind["running"]["end_date"] >= cut).all()
        assert kind["fresh"]["start_date"].is_between(cut, dt.date(cut.year + (cut.month == 12), cut.month % 12 + 1, 1),
                                                      closed="left").all()
        two_months = dt.date(cut.year + (cut.month > 10), (cut.month + 1) % 12 + 1, 1)
        assert (kind["far"]["start_date"] >= two_months).all()
        # Held-out offers are in the offer table of the versions so far, their merchants too.
        known_offers = pl.concat([read(v, "offer") for v in delivered]).select("offer_id", "merchant_id_offer")
        assert offers.join(known_offers, on=["offer_id", "merchant_id_offer"], how="anti").height == 0
        merchants = pl.concat([read(v, "merchant") for v in delivered])["merchant_id_offer"]
        assert offers["merchant_id_offer"].is_in(merchants.implode()).all()
        # A version holds the activations and transactions up to its cut only.
        assert (read(version, "offer_activation")["activation_date"] < cut).all()
        future = pl.read_parquet(version / "_holdout" / "transaction.parquet")
        assert future["event_date"].min() >= cut
        assert future["event_date"].max() >= dt.date(cut.year + (cut.month > 8), (cut.month + 3) % 12 + 1, 1)
        oracle = pl.read_parquet(version / "_holdout" / "oracle.parquet")
        assert oracle.select("offer_id", "merchant_id_offer").unique().height == offers.height


def test_running_offers_know_their_converts(visible):
    version = visible[0]
    cut = dt.date.fromisoformat(json.loads((version / "manifest.json").read_text())["cut_date"])
    offers = pl.read_parquet(version / "_holdout" / "offer.parquet").filter(pl.col("kind") == "running")
    tx = read(version, "transaction")
    first = tx.group_by("user_id", "brand_dk").agg(pl.col("event_date").min().alias("first"))
    brands = offers.join(read(version, "merchant").select("merchant_id_offer", "brand_dk"), on="merchant_id_offer")
    pairs = brands.join(first, on="brand_dk")
    converts = pairs.filter(pl.col("first").is_between(pl.col("start_date"), cut, closed="left"))
    customers = pairs.filter(pl.col("first") < pl.col("start_date"))
    oracle = pl.read_parquet(version / "_holdout" / "oracle.parquet")
    assert converts.height > 0 and customers.height > 0
    on = ["offer_id", "merchant_id_offer", "user_id"]
    assert (converts.join(oracle, on=on)["probability"] == 1.0).all()
    assert (customers.join(oracle, on=on)["probability"] == 0.0).all()


def _seen_and_customers(version):
    """Per (offer, client) of offers started before the cut: seen?, customer of the brand before the start?"""
    offers = read(version, "offer").filter(pl.col("start_date") < pl.date(2025, 6, 1)).unique("offer_id")
    brands = offers.join(read(version, "merchant").select("merchant_id_offer", "brand_dk"), on="merchant_id_offer")
    first = read(version, "transaction").group_by("user_id", "brand_dk").agg(pl.col("event_date").min().alias("first"))
    seen = read(version, "offer_seens").select("user_id", "offer_id").unique().with_columns(pl.lit(True).alias("seen"))
    return (brands.join(read(version, "people").select("user_id"), how="cross")
            .join(first, on=["user_id", "brand_dk"], how="left")
            .join(seen, on=["user_id", "offer_id"], how="left")
            .select(pl.col("seen").fill_null(False), (pl.col("first") < pl.col("start_date")).fill_null(False)
                    .alias("customer")))


def test_targeting_chooses_whom_the_bank_shows_offers(visible, tmp_path):
    targeted, = datagen.generate_series(tmp_path, "tiny", 1, ["base"], visibility=1.0, targeting=1.0)
    share = {}
    for name, version in (("targeted", targeted), ("random", visible[0])):
        rows = _seen_and_customers(version)
        share[name] = rows.group_by("seen").agg(pl.col("customer").mean()).sort("seen")["customer"].to_list()
    # Likely buyers (existing customers among them) are shown offers far more often when targeted ...
    assert share["targeted"][1] > 1.8 * share["targeted"][0]
    # ... and at random otherwise.
    assert abs(share["random"][1] / share["random"][0] - 1) < 0.15


def test_exposure_lifts_purchases_when_shown_at_random(tmp_path):
    version, = datagen.generate_series(tmp_path, "tiny", 1, ["base"], visibility=0.0, targeting=0.0)
    offers = pl.read_parquet(version / "offer.parquet").filter(pl.col("start_date") < pl.date(2025, 6, 1))
    offers = offers.unique("offer_id")
    future = pl.read_parquet(version / "_holdout" / "transaction.parquet")
    everything = pl.concat([read(version, "transaction"), future])
    truth = offers_ground_truth(everything, offers, read(version, "merchant")).with_columns(pl.lit(True).alias("new"))
    brands = offers.join(read(version, "merchant").select("merchant_id_offer", "brand_dk"), on="merchant_id_offer")
    first = everything.group_by("user_id", "brand_dk").agg(pl.col("event_date").min().alias("first"))
    seen = read(version, "offer_seens").select("user_id", "offer_id").unique().with_columns(pl.lit(True).alias("seen"))
    candidates = (brands.join(read(version, "people").select("user_id"), how="cross")
                  .join(first, on=["user_id", "brand_dk"], how="left")
                  .filter(pl.col("first").is_null() | (pl.col("first") >= pl.col("start_date")))
                  .join(seen, on=["user_id", "offer_id"], how="left")
                  .join(truth, on=["offer_id", "merchant_id_offer", "user_id"], how="left")
                  .select(pl.col("seen").fill_null(False), pl.col("new").fill_null(False)))
    rate = candidates.group_by("seen").agg(pl.col("new").mean()).sort("seen")["new"].to_list()
    assert rate[1] > 1.8 * rate[0]
