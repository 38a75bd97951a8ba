"""Validation rejects each corruption with a check naming it; drift is found for each drift kind
and not for same-distribution versions with new entities, in both delivery modes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import datagen
from domain.settings import load_params
from ml.catalog import merge
from quality.drift import evaluate_drift
from quality.validation import validate

PARAMS = load_params()
CORRUPTIONS = {  # scenario -> a word its failed check must contain
    "corrupt_missing_table": "required_tables_present", "corrupt_missing_batches": "all_batches_received",
    "corrupt_null_keys": "user_id_not_null", "corrupt_shuffled_users": "user_id_in_people",
    "corrupt_profile_flip": "profiles_stable", "corrupt_dates": "event_date_in_plausible_window",
    "corrupt_duplicates": "transaction_id_unique", "corrupt_collapsed": "not_collapsed",
}


def sealed_manifest(version: Path) -> dict:
    """The manifest the sealer would write for this version as the sender delivers it."""
    manifest = json.loads((version / "manifest.json").read_text())
    dropped = manifest.get("drop_batches", {})
    manifest["tables"] = {t: {"rows": m["rows"], "batches_expected": 2 if t in dropped else 1,
                              "missing_batches": dropped.get(t, [])} for t, m in manifest["tables"].items()}
    return manifest


@pytest.fixture(scope="module")
def base_catalog(tmp_path_factory):
    out = tmp_path_factory.mktemp("q")
    base, = datagen.generate_series(out / "gen", "tiny", 11, ["base"])
    merge(None, base, out / "catalog")
    return base, out / "catalog", out


def test_first_version_is_valid_with_twenty_checks(base_catalog):
    base, _, _ = base_catalog
    result = validate(base, sealed_manifest(base), None, PARAMS["validation"])
    assert result.valid, result.failed_checks
    assert result.checks_total >= 20


@pytest.mark.parametrize("scenario", sorted(CORRUPTIONS))
def test_each_corruption_is_rejected_and_named(base_catalog, scenario):
    _, catalog, out = base_catalog
    _, version = datagen.generate_series(out / scenario, "tiny", 11, ["base", scenario])
    result = validate(version, sealed_manifest(version), catalog, PARAMS["validation"])
    assert not result.valid
    names = [check["check"] for check in result.failed_checks if check["critical"]]
    assert any(CORRUPTIONS[scenario] in name for name in names), names


@pytest.mark.parametrize("mode", ["increment", "full"])
@pytest.mark.parametrize("scenario", ["same", "drift_clients", "drift_behaviour", "drift_receipts"])
def test_drift_only_where_the_world_changed(tmp_path, scenario, mode):
    base, version = datagen.generate_series(tmp_path / "gen", "tiny", 12, ["base", scenario], mode)
    merge(None, base, tmp_path / "catalog")
    same_valid = validate(version, sealed_manifest(version), tmp_path / "catalog", PARAMS["validation"])
    assert same_valid.valid, same_valid.failed_checks
    result = evaluate_drift(tmp_path / "catalog", version, PARAMS["drift"], tmp_path / "report")
    assert result.drift_detected is (scenario != "same"), result.features
