"""A whole version series over HTTP, twice: a long series of versions that carry only their new rows,
then one of versions that carry everything so far (tests/conftest.py SERIES: one world). Every version's
decision, model_version, trained_on, data_version and experiment count is asserted against what the
generator did (datagen.scenarios.expected_action). Along the way: idempotency, 400/404/409/503,
read-your-writes, determinism; then the official contract fuzzed with schemathesis
(../shared/contract/openapi.yml): no 5xx, ever. The fuzzing runs last, once a model is deployed: before
it, 503 is /lookalike's documented answer and schemathesis counts every 5xx as a server error."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from datagen.scenarios import expected_action
from tests.conftest import INCREMENTS, SERIES
from tests.stack import wait_idle

CONTRACT = Path(__file__).resolve().parents[2].parent / "shared" / "contract" / "openapi.yml"
pytestmark = pytest.mark.e2e


def offers_of(version_dir) -> pl.DataFrame:
    return pl.read_parquet(version_dir / "offer.parquet")


def current_customers(dirs, merchant_id: int, start) -> set[int]:
    merchants = pl.concat([pl.read_parquet(d / "merchant.parquet") for d in dirs if (d / "merchant.parquet").exists()])
    brand = merchants.filter(pl.col("merchant_id_offer") == merchant_id)["brand_dk"].drop_nulls()
    tx = pl.concat([pl.read_parquet(d / "transaction.parquet") for d in dirs if (d / "transaction.parquet").exists()])
    return set(tx.filter(pl.col("brand_dk").is_in(brand.to_list()) & (pl.col("event_date") < start))["user_id"].to_list())


def test_contract_before_any_data(api, run_id):
    # Other tests may already have fed this stack; these answers hold in every state.
    assert api.get("/ready").status_code == 200
    for path in ("/status", "/model/info", "/monitoring/drift", "/monitoring/data-quality", "/experiments"):
        assert api.get(path).status_code == 200, path
    assert api.post("/lookalike", json={"merchant_id": 1, "offer_id": 1, "top_n": 0}).status_code == 400
    assert api.post("/lookalike", json={"merchant_id": 1, "offer_id": 1}).status_code == 400
    assert api.post("/lookalike/batch", json={"requests": []}).status_code == 400
    bad = api.post("/data/batch", json={"version": f"{run_id}-x", "table": "nope", "batch_id": 1,
                                        "total_batches": 1, "records": []})
    assert bad.status_code == 400 and "table" in bad.json()["detail"]
    missing = api.post("/data/batch", json={"version": f"{run_id}-x", "table": "offer", "batch_id": 1})
    assert missing.status_code == 400 and "total_batches" in missing.json()["detail"]
    empty = api.post("/data/commit", json={"version": f"{run_id}-empty"})
    assert empty.status_code == 200 and empty.json()["tables_received"] == []
    wait_idle(api)


def judge_version(api, name: str, index: int, before: dict) -> dict:
    """Send nothing; check what the service did with SERIES[index] (just processed as `name`) against
    the state `before` it, and return the state after it."""
    expected = expected_action(SERIES, index)
    status = api.get("/status").json()
    drift = api.get("/monitoring/drift").json()
    info = api.get("/model/info").json()
    experiments = api.get("/experiments").json()["experiments"]
    where = f"{name} ({SERIES[index]}): {drift['decision']}"
    assert status["pipeline_status"] == "idle", status
    assert drift["version"] == name and drift["action_taken"] == expected, where
    assert drift["drift_detected"] is (expected == "retrained" and index > 0), where
    assert drift["first_model"] is (before["model_version"] == "none"), where
    if expected == "skipped":
        assert api.get("/monitoring/data-quality").json()["valid"] is False, where
    assert status["data_version"] == (before["data_version"] if expected == "skipped" else name), where
    if expected == "retrained":
        assert len(experiments) == before["experiments"] + 1, where
        latest = experiments[-1]
        assert latest["data_version"] == name and latest["timestamp"] > before["last_timestamp"], where
        deployed = latest["deployed"]
        assert deployed or (before["model_version"] != "none" and "kept" in latest["decision"]), latest
    else:
        assert len(experiments) == before["experiments"], where
        deployed = False
    if deployed:
        assert info["model_version"] == latest["model_version"] != before["model_version"], where
        assert info["trained_on"] == name and info["train_metrics"] == latest["metrics"], where
    else:
        assert (info["model_version"], info["trained_on"]) == (before["model_version"], before["trained_on"]), where
    assert status["model_version"] == info["model_version"], where
    return state(api)


def state(api) -> dict:
    experiments = api.get("/experiments").json()["experiments"]
    info = api.get("/model/info").json()
    return {"data_version": api.get("/status").json()["data_version"], "model_version": info["model_version"],
            "trained_on": info["trained_on"], "experiments": len(experiments),
            "last_timestamp": experiments[-1]["timestamp"] if experiments else ""}


def test_series(api, run_id, series):
    from datagen.send import send_version

    base, same, corrupt = series[:3]
    name = lambda d: f"{run_id}-{d.name}"  # noqa: E731
    fresh = len(api.get("/experiments").json()["experiments"]) == 0
    if not fresh:
        pytest.skip("the series asserts every decision from a first model: it needs a fresh stack")
    before = state(api)

    # v1: the first model.
    commit = send_version(str(api.base_url), base, version_name=name(base))
    assert set(commit["tables_received"]) == {"people", "segments", "transaction", "offer", "merchant",
                                              "financial_account", "offer_seens", "offer_activation",
                                              "offer_reward", "receipts"}
    status = wait_idle(api)
    assert status["pipeline_status"] == "idle" and status["ready"] is True
    before = judge_version(api, name(base), 0, before)
    quality = api.get("/monitoring/data-quality").json()
    assert quality["version"] == name(base) and quality["valid"] is True and quality["checks_total"] >= 20
    info = api.get("/model/info").json()
    assert info["model_version"] == "1.0" and info["train_metrics"]["map_at_100"] > 0
    first_model = info["model_version"]

    # A committed version is closed; a repeated commit changes nothing.
    again = api.post("/data/commit", json={"version": name(base)})
    assert again.status_code == 200 and again.json()["tables_received"] == commit["tables_received"]
    closed = api.post("/data/batch", json={"version": name(base), "table": "offer", "batch_id": 1,
                                           "total_batches": 1, "records": [{"offer_id": 1}]})
    assert closed.status_code == 409

    # Look-alike audiences: sorted, deterministic, never current customers, offer-specific.
    offers = offers_of(base).unique(["offer_id", "merchant_id_offer"]).sort("offer_id").head(2)
    answers = []
    for offer in offers.iter_rows(named=True):
        query = {"merchant_id": offer["merchant_id_offer"], "offer_id": offer["offer_id"], "top_n": 100}
        body = api.post("/lookalike", json=query).json()
        assert body == api.post("/lookalike", json=query).json()
        scores = [member["score"] for member in body["audience"]]
        assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
        assert body["reasons"] and body["model_version"] == first_model
        users = {member["user_id"] for member in body["audience"]}
        assert not users & current_customers([base], offer["merchant_id_offer"], offer["start_date"])
        answers.append(users)
    assert answers[0] != answers[1]
    assert api.post("/lookalike", json={"merchant_id": 999_999_999, "offer_id": 1, "top_n": 5}).status_code == 404

    # v2: same distributions, new offers: servable without retraining.
    new_offers = offers_of(same).join(offers_of(base), on=["offer_id", "merchant_id_offer"], how="anti")
    assert new_offers.height > 0
    probe = new_offers.row(0, named=True)
    query = {"merchant_id": probe["merchant_id_offer"], "offer_id": probe["offer_id"], "top_n": 10}
    assert api.post("/lookalike", json=query).status_code == 404
    send_version(str(api.base_url), same, version_name=name(same))
    wait_idle(api)
    before = judge_version(api, name(same), 1, before)
    assert api.post("/lookalike", json=query).status_code == 200

    # v3: corrupted: rejected with a named cause; nothing changes.
    send_version(str(api.base_url), corrupt, version_name=name(corrupt))
    wait_idle(api)
    quality = api.get("/monitoring/data-quality").json()
    assert quality["version"] == name(corrupt) and quality["valid"] is False
    assert any("user_id" in check["check"] for check in quality["failed_checks"]), quality["failed_checks"]
    before = judge_version(api, name(corrupt), 2, before)

    # The rest of the first part: every decision as the world says.
    for index in range(3, INCREMENTS):
        send_version(str(api.base_url), series[index], version_name=name(series[index]))
        wait_idle(api)
        before = judge_version(api, name(series[index]), index, before)


def test_long_series_of_versions_carrying_everything_so_far(api, run_id, series, everything_so_far):
    """The same world goes on, each version re-sending everything so far: the decisions are judged on
    what each version brings. (The first full version also re-delivers the month the corrupted
    version of the first part broke: it was never accepted.)"""
    from datagen.send import send_version

    name = lambda d: f"{run_id}-{d.name}"  # noqa: E731
    if api.get("/status").json()["data_version"] != name(series[INCREMENTS - 1]):
        pytest.skip("continues the first part of the series on the same stack")
    before = state(api)
    for offset, version in enumerate(everything_so_far):
        index = INCREMENTS + offset
        send_version(str(api.base_url), version, version_name=name(version))
        wait_idle(api)
        before = judge_version(api, name(version), index, before)
        if index == INCREMENTS:
            judged = api.get("/monitoring/drift").json()["judged"]["current"]
            assert judged["transaction_period"][0] > "2025-12-31", judged  # the new month, not the history


def test_no_request_gets_a_server_error(api, api_url, series, run_id):
    if not CONTRACT.exists():
        pytest.fail(f"the contract is expected at {CONTRACT}")
    if not api.get("/status").json()["ready"]:
        from datagen.send import send_version

        send_version(api_url, series[0], version_name=f"{run_id}-contract")
        assert wait_idle(api)["ready"], "no model after the first version"
    done = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", str(CONTRACT), "--url", api_url,
         "--checks", "not_a_server_error", "--max-examples", "40", "--seed", "1", "--request-timeout", "60"],
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:]
