"""`python -m ops` against the running stack: replaying the log gives the same answers as the live
service (and a difference is caught), a sealed version exported to CSV/Parquet, and a version
re-run in a separate namespace without touching the live deployment."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from mlflow.tracking import MlflowClient

from adapters.broker import end_offset
from adapters.storage import ObjectStore
from domain import topology
from domain.layout import Layout
from domain.settings import settings
from ops.replay import READS, differences
from tests.stack import wait_idle

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def ops(*args: str, work_dir: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ops", *args], cwd=ROOT, capture_output=True, text=True,
                          check=False, timeout=900, env={**os.environ, "LAL_WORK_DIR": str(work_dir), **env})


@pytest.fixture(scope="module")
def version(api, run_id, series) -> str:
    from datagen.send import send_version

    name = f"{run_id}-ops-v1"
    send_version(str(api.base_url), series[0], version_name=name)
    wait_idle(api)
    return name


def test_differences_name_every_changed_answer():
    live = {"/status": {"model_version": "1.0", "stages_done": []}, "/experiments": {"experiments": [{"run_id": "a"}]}}
    same = json.loads(json.dumps(live))
    assert differences(live, same) == []
    other = {"/status": {"model_version": "2.0", "stages_done": []}, "/experiments": {"experiments": []}}
    found = differences(live, other)
    assert any("/status.model_version" in line and "'1.0'" in line and "'2.0'" in line for line in found)
    assert any("/experiments.experiments" in line and "live only" in line for line in found)


def test_replaying_gives_the_same_answers_as_the_live_service(api, version, tmp_path):
    done = ops("replay", work_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    replayed = json.loads(done.stdout)
    assert replayed == {path: api.get(path).json() for path in READS}
    assert replayed["/status"]["pipeline_status"] == "idle" and replayed["/experiments"]["experiments"]
    assert replayed["/monitoring/data-quality"]["version"] == version

    compared = ops("replay", "--compare", str(api.base_url), "--work-dir", str(tmp_path / "rebuilt"),
                   work_dir=tmp_path)
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert json.loads(compared.stdout) == {"compared_with": str(api.base_url), "same": True, "differences": []}
    # The rebuilt projections were written as checkpoints, offsets included.
    stored = json.loads((Layout(settings().deployment, tmp_path / "rebuilt").checkpoints() / "pipeline.json").read_text())
    assert len(stored["state"]["experiments"]["runs"]) == len(replayed["/experiments"]["experiments"])


def test_replay_compare_fails_when_the_answers_differ(api, version, run_id, tmp_path):
    # The replay of another (empty) deployment's log cannot match the live service: exit 1, named.
    compared = ops("replay", "--compare", str(api.base_url), work_dir=tmp_path, LAL_DEPLOYMENT=f"{run_id}-empty")
    assert compared.returncode == 1, compared.stdout + compared.stderr
    report = json.loads(compared.stdout)
    assert report["same"] is False
    assert any(line.startswith("/experiments.experiments") for line in report["differences"])
    assert any(line.startswith("/status.model_version") for line in report["differences"])


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_writes_every_table_of_a_sealed_version(version, series, fmt, tmp_path):
    done = ops("export", "--version", version, "--format", fmt, "--out", str(tmp_path / "out"), work_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    sent = {path.stem: pl.read_parquet(path) for path in series[0].glob("*.parquet")}
    assert set(manifest["tables"]) == set(sent)
    for table, frame in sent.items():
        read = pl.read_csv if fmt == "csv" else pl.read_parquet
        exported = read(tmp_path / "out" / f"{table}.{fmt}")
        assert exported.height == frame.height == manifest["tables"][table]["rows"], table
        assert set(frame.columns) <= set(exported.columns), table


def test_export_refuses_a_version_that_was_not_sealed(run_id, tmp_path):
    done = ops("export", "--version", f"{run_id}-never-sent", "--out", str(tmp_path / "out"), work_dir=tmp_path)
    assert done.returncode == 2 and "no sealed snapshot" in done.stderr
    assert not (tmp_path / "out").exists()


def mlflow_runs(uri: str, deployment: str) -> int:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(f"lookalike-{deployment}")
    return len(client.search_runs([experiment.experiment_id], max_results=10_000)) if experiment else 0


async def test_rerun_repeats_the_decision_in_its_own_namespace_only(api, version, run_id, mlflow_uri, tmp_path):
    namespace = f"{settings().deployment}-audit-{run_id}"
    live_end = await end_offset(settings(), topology.PIPELINE.name)
    live_runs = mlflow_runs(mlflow_uri, settings().deployment)
    before = {path: api.get(path).json() for path in READS}

    done = ops("rerun", "--version", version, "--into", namespace, work_dir=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    live, rerun = report["live"], report["rerun"]
    assert report["namespace"] == namespace
    for decision in ("valid", "checks_failed", "drift_detected", "action_taken", "model_version", "deployed"):
        assert rerun.get(decision) == live.get(decision), decision
    assert [e for e in rerun["events"] if e != "StageStarted"] == [e for e in live["events"] if e != "StageStarted"]

    # The live deployment is untouched: its log, its MLflow experiment, its answers.
    assert await end_offset(settings(), topology.PIPELINE.name) == live_end
    assert mlflow_runs(mlflow_uri, settings().deployment) == live_runs
    assert {path: api.get(path).json() for path in READS} == before
    # The rerun has everything in its own namespace: log, MLflow runs, S3 keys.
    target = dataclasses.replace(settings(), deployment=namespace)
    assert await end_offset(target, topology.PIPELINE.name) == len(rerun["events"])
    assert ObjectStore(target).list_keys(f"{namespace}/snapshots/{version}/")
    assert mlflow_runs(mlflow_uri, namespace) == rerun["events"].count("ModelTrained")
    if "run_id" in rerun:
        assert rerun["run_id"] != live["run_id"]

    again = ops("rerun", "--version", version, "--into", namespace, work_dir=tmp_path)
    assert again.returncode == 2 and "used already" in again.stderr
