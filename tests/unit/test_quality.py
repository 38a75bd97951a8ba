"""Validation rejects each corruption with a critical check naming it; base and same pass; drift is
found for each drift kind and not for same-distribution versions with new entities, in both modes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import datagen
from domain.settings import load_params
from ml.catalog import merge
from quality import new_part
from quality.drift import evaluate_drift
from quality.validation import validate, write_report

PARAMS = load_params()
CORRUPTIONS = {  # scenario -> the failed critical check that must name it
    "corrupt_missing_table": "transaction.table_present",
    "corrupt_missing_batches": "transaction.all_batches_received",
    "corrupt_null_keys": "transaction.user_id_not_null",
    "corrupt_shuffled_users": "transaction.user_id_in_people",
    "corrupt_profile_flip": "people.profiles_stable_across_versions",
    "corrupt_dates": "transaction.event_date_in_plausible_window",
    "corrupt_duplicates": "transaction.transaction_id_unique",
    "corrupt_collapsed": "transaction.amount_bucket_not_collapsed",
}


def sealed_manifest(version: Path) -> dict:
    """The manifest the sealer would write for this version as the sender delivers it."""
    manifest = json.loads((version / "manifest.json").read_text())
    dropped = manifest.get("drop_batches", {})
    manifest["tables"] = {t: {"rows": m["rows"], "batches_expected": 3 if t in dropped else 1,
                              "batches_received": 3 - len(dropped[t]) if t in dropped else 1,
                              "missing_batch_count": len(dropped.get(t, [])), "missing_batches": dropped.get(t, [])}
                          for t, m in manifest["tables"].items()}
    return manifest


def pair(out: Path, scenario: str, mode: str = "increment", seed: int = 11) -> tuple[Path, Path]:
    """v1 (base) merged into a catalog, and v2 of the given kind, from one generated series."""
    base, version = datagen.generate_series(out / "gen", "tiny", seed, ["base", scenario], mode)
    merge(None, base, out / "catalog")
    return out / "catalog", version


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    out = tmp_path_factory.mktemp("q")
    base, = datagen.generate_series(out / "gen", "tiny", 11, ["base"])
    return base, out


def test_first_version_is_valid_with_twenty_checks(series, tmp_path):
    base, _ = series
    result = validate(base, sealed_manifest(base), None, PARAMS["validation"])
    assert result.valid, result.failed_checks
    assert result.checks_total >= 20 and result.checks_passed + result.checks_failed == result.checks_total
    kinds = {c.name.split(".")[1].split("_")[-1] for c in result.checks}
    assert len(kinds) >= 8
    report = write_report(result, tmp_path)
    assert json.loads(report.read_text())["valid"] is True


@pytest.mark.parametrize("mode", ["increment", "full"])
def test_same_version_is_valid(tmp_path, mode):
    catalog, version = pair(tmp_path, "same", mode)
    result = validate(version, sealed_manifest(version), catalog, PARAMS["validation"])
    assert result.valid, result.failed_checks


@pytest.mark.parametrize("scenario", sorted(CORRUPTIONS))
def test_each_corruption_is_rejected_and_named(tmp_path, scenario):
    catalog, version = pair(tmp_path, scenario)
    result = validate(version, sealed_manifest(version), catalog, PARAMS["validation"])
    assert not result.valid
    names = [check["check"] for check in result.failed_checks if check["critical"]]
    assert CORRUPTIONS[scenario] in names, result.failed_checks
    failed = next(c for c in result.failed_checks if c["check"] == CORRUPTIONS[scenario])
    assert any(ch.isdigit() for ch in failed["details"]), failed  # the cause comes with numbers


def test_missing_batches_are_named_with_their_numbers(series):
    base, _ = series
    manifest = sealed_manifest(base)
    manifest["tables"]["receipts"].update(batches_expected=5, batches_received=3, missing_batch_count=2,
                                          missing_batches=[3, 5])
    result = validate(base, manifest, None, PARAMS["validation"])
    failed = {c["check"]: c["details"] for c in result.failed_checks}
    assert not result.valid and "2 of 5" in failed["receipts.all_batches_received"], failed
    assert "3, 5" in failed["receipts.all_batches_received"], failed


@pytest.mark.parametrize("mode", ["increment", "full"])
@pytest.mark.parametrize("scenario", ["same", "drift_clients", "drift_behaviour", "drift_receipts"])
def test_drift_only_where_the_world_changed(tmp_path, scenario, mode):
    catalog, version = pair(tmp_path, scenario, mode, seed=12)
    result = evaluate_drift(catalog, version, PARAMS["drift"], tmp_path / "report")
    assert result.drift_detected is (scenario != "same"), (result.drift_score, result.features)
    assert 0.0 <= result.drift_score <= 1.0
    assert not any("_id" in f["feature"] for f in result.features)
    # One HTML report per reference compared and feature group
    groups = dict.fromkeys((f["reference"], f["feature"].split(".")[0]) for f in result.features)
    assert [path.name for path in result.report_files] == [f"drift_{reference}_{group}.html"
                                                           for reference, group in groups] + ["drift.json"]
    assert all(path.exists() for path in result.report_files)
    assert json.loads((tmp_path / "report" / "drift.json").read_text())["drift_score"] == result.drift_score


def test_drift_versions_pass_validation(tmp_path):
    catalog, drifted = pair(tmp_path, "drift_behaviour")
    result = validate(drifted, sealed_manifest(drifted), catalog, PARAMS["validation"])
    assert result.valid, result.failed_checks


CONFINED = {  # corrupted in 10-20% of the new rows only (all of them for the collapse) -> the check naming it
    "corrupt_null_keys_confined": "transaction.user_id_not_null",
    "corrupt_shuffled_users_confined": "transaction.user_id_in_people",
    "corrupt_profile_flip_confined": "people.profiles_stable_across_versions",
    "corrupt_dates_confined": "transaction.event_date_in_plausible_window",
    "corrupt_duplicates_confined": "transaction.transaction_id_unique",
    "corrupt_collapsed_confined": "transaction.amount_bucket_not_collapsed",
}


@pytest.mark.parametrize("scenario", sorted(CONFINED))
def test_a_corruption_confined_to_the_new_rows_of_a_full_version_is_rejected(tmp_path, scenario):
    """A year of clean history re-sent with the version does not dilute its broken new rows."""
    catalog, version = pair(tmp_path, scenario, "full")
    result = validate(version, sealed_manifest(version), catalog, PARAMS["validation"])
    names = [check["check"] for check in result.failed_checks if check["critical"]]
    assert not result.valid and CONFINED[scenario] in names, result.failed_checks
    assert result.judged["transaction"]["delivery"] == "everything so far"
    assert result.judged["transaction"]["new_rows"] < 0.2 * result.judged["transaction"]["rows"]


@pytest.mark.parametrize("mode", ["corrections", "mixed"])
def test_deliveries_of_a_normal_version_are_valid(tmp_path, mode):
    catalog, version = pair(tmp_path, "same", mode)
    result = validate(version, sealed_manifest(version), catalog, PARAMS["validation"])
    assert result.valid, result.failed_checks
    changed = next(c for c in result.checks if c.name == "transaction.resent_rows_unchanged")
    corrected = json.loads((version / "manifest.json").read_text()).get("corrected_rows", 0)
    assert changed.observed * result.judged["transaction"]["resent_rows"] == pytest.approx(corrected, abs=0.5)


def test_a_version_after_a_rejected_one_knows_the_clients_it_delivered(tmp_path):
    """The rejected version's newcomers transact in the next one: they are known, not orphans."""
    base, same, broken, after = datagen.generate_series(tmp_path / "gen", "tiny", 11,
                                                        ["base", "same", "corrupt_null_keys", "same"])
    merge(None, base, tmp_path / "c1")
    merge(tmp_path / "c1", same, tmp_path / "c2")
    assert not validate(broken, sealed_manifest(broken), tmp_path / "c2", PARAMS["validation"]).valid
    result = validate(after, sealed_manifest(after), tmp_path / "c2", PARAMS["validation"], rejected=[broken])
    orphans = next(c for c in result.checks if c.name == "transaction.user_id_in_people")
    assert result.valid and orphans.observed == 0, result.failed_checks
    alone = validate(after, sealed_manifest(after), tmp_path / "c2", PARAMS["validation"])
    assert next(c for c in alone.checks if c.name == "transaction.user_id_in_people").observed > 0.02


def test_drift_judges_the_new_part_against_every_known_world(tmp_path):
    """A lasting drift is like the previous period; a return is like the initial world; both are no drift,
    while the drift itself is unlike both. Judged on the new month even when everything is re-sent."""
    versions = datagen.generate_series(tmp_path / "gen", "tiny", 12,
                                       ["base", "same", "drift_behaviour", "same", "return"], "full")
    catalogs = [tmp_path / f"c{i + 1}" for i in range(len(versions))]
    for i, version in enumerate(versions):
        merge(catalogs[i - 1] if i else None, version, catalogs[i])

    def judge(i: int):
        """Version i against the initial world (c1), and the period version i - 1 brought (as validation reports it)."""
        _, part = new_part.split(versions[i - 1], catalogs[i - 2], "transaction")
        period = {"version": versions[i - 1].name, "transaction": list(part.new_period)}
        return evaluate_drift(catalogs[0], versions[i], PARAMS["drift"], tmp_path / f"r{i}", catalogs[i - 1], period)

    drifted, lasting, back = judge(2), judge(3), judge(4)
    assert drifted.drift_detected and set(drifted.scores) == {"previous", "initial"}, drifted.scores
    assert not lasting.drift_detected and lasting.scores == {"previous": lasting.drift_score}, lasting.scores
    assert not back.drift_detected and back.scores["previous"] > 0.2 and back.scores["initial"] <= 0.2
    current = back.judged["current"]
    assert current["transaction_period"][0] >= json.loads((versions[3] / "manifest.json").read_text())["cut_date"]
    assert json.loads((tmp_path / "r4" / "drift.json").read_text())["judged"]["initial"]["version"] == "c1"



def test_only_an_end_date_may_be_open_ended(tmp_path):
    """5999-01-01 ends an open-ended offer; as the date of a transaction it is a broken row."""
    import datetime as dt

    import polars as pl

    catalog, version = pair(tmp_path, "same")
    offers = pl.read_parquet(version / "offer.parquet")
    offers.with_columns(pl.lit(dt.date(5999, 1, 1)).alias("end_date")).write_parquet(version / "offer.parquet")
    assert validate(version, sealed_manifest(version), catalog, PARAMS["validation"]).valid
    tx = pl.read_parquet(version / "transaction.parquet")
    broken = pl.int_range(pl.len()) % 10 == 0
    tx.with_columns(pl.when(broken).then(pl.lit(dt.date(5999, 1, 1))).otherwise(pl.col("event_date"))
                    .alias("event_date")).write_parquet(version / "transaction.parquet")
    result = validate(version, sealed_manifest(version), catalog, PARAMS["validation"])
    assert "transaction.event_date_in_plausible_window" in [c["check"] for c in result.failed_checks]


def test_online_is_one_spelling_everywhere():
    import polars as pl

    from domain.tables import online_flag

    flags = pl.DataFrame({"online_transaction_flg": ["Y", "y", "1", "true", "N", "0", None]})
    assert flags.select(online_flag())["online_transaction_flg"].to_list() == [1, 1, 1, 1, 0, 0, 0]
