"""kill -9 of the API, the Faust worker and the pipeline consumer of the running local stack, each
restarted as scripts/stack.sh starts it: the same answers afterwards, and nothing done twice (no
version sealed or processed twice, no second training run, as many MLflow runs as ModelTrained)."""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from mlflow.tracking import MlflowClient

from domain import events, topology
from domain.layout import Layout
from domain.settings import settings
from ops.log import read_topic
from ops.replay import READS
from tests.stack import kill9, wait_idle

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack_dir(stack) -> Path:
    state = Path(os.environ.get("LAL_STACK_DIR", ROOT / "var" / "stack"))
    if not (state / "pids" / "api.pid").exists():
        pytest.skip(f"no local stack processes under {state} (this test restarts scripts/stack.sh's processes)")
    return state


@pytest.fixture(scope="module")
def first_version(api, run_id, series) -> str:
    from datagen.send import send_version

    name = f"{run_id}-restart-v1"
    send_version(str(api.base_url), series[0], version_name=name)
    status = wait_idle(api)
    assert status["data_version"] == name, status
    return name


def answers(api, probe: dict) -> dict:
    found = {path: api.get(path).json() for path in READS}
    found["/lookalike"] = api.post("/lookalike", json=probe).json()
    return found


def probe_query(version_dir: Path) -> dict:
    import polars as pl

    offer = pl.read_parquet(version_dir / "offer.parquet").sort("offer_id").row(0, named=True)
    return {"merchant_id": offer["merchant_id_offer"], "offer_id": offer["offer_id"], "top_n": 50}


def restart(component: str) -> None:
    subprocess.run(["bash", str(ROOT / "scripts" / "stack.sh"), "restart", component], check=True, timeout=300,
                   env={**os.environ, "VENV": sys.prefix})


def same_answers_after_restart(api, expected: dict, probe: dict, timeout: float = 120) -> dict:
    """Poll until the restarted API has loaded its model, then compare every answer exactly."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = api.get("/status").json()
        if status["ready"] and status["pipeline_status"] != "running":
            break
        time.sleep(0.5)
    found = answers(api, probe)
    assert found == expected
    return found


def checkpoint_of(stack_dir: Path) -> Path:
    return Layout(settings().deployment, stack_dir / "data" / "work" / "api").checkpoints()


async def log_end(topic: str) -> int:
    from adapters.broker import end_offset

    return await end_offset(settings(), topic)


async def test_api_kill9_resumes_from_its_checkpoint_and_answers_the_same(api, stack_dir, series, first_version):
    probe = probe_query(series[0])
    before = answers(api, probe)
    assert before["/lookalike"]["audience"], before["/lookalike"]

    # The checkpoint catches up with the log within a second or so, state and offset together.
    end = await log_end(topology.PIPELINE.name)
    stored = checkpoint_of(stack_dir) / "pipeline.json"
    deadline = time.monotonic() + 10
    while not (stored.exists() and orjson.loads(stored.read_bytes())["position"] == end):
        assert time.monotonic() < deadline, f"{stored} did not reach offset {end}"
        await asyncio.sleep(0.2)
    saved = orjson.loads(stored.read_bytes())
    assert len(saved["state"]["experiments"]["runs"]) == len(before["/experiments"]["experiments"])

    kill9(stack_dir, "api")
    restart("api")
    same_answers_after_restart(api, before, probe)
    log_text = (stack_dir / "logs" / "api.log").read_text()
    assert f"pipeline: resumed from the checkpoint at offset {end} " in log_text

    # Without any checkpoint the API folds the log from offset 0 and gives the same answers.
    kill9(stack_dir, "api")
    shutil.rmtree(checkpoint_of(stack_dir))
    restart("api")
    same_answers_after_restart(api, before, probe)


def history(found: list[tuple[int, events.Event]]) -> dict:
    return {
        "sealed": Counter(e.version for _, e in found if isinstance(e, events.VersionSealed)),
        "finished": Counter(e.version for _, e in found if isinstance(e, (events.VersionProcessed, events.PipelineFailed))),
        "trained": [(e.version, e.run_id) for _, e in found if isinstance(e, events.ModelTrained)],
    }


async def deployment_history() -> dict:
    sealed = history(await read_topic(settings(), topology.VERSIONS.name))
    pipeline = history(await read_topic(settings(), topology.PIPELINE.name))
    return {"sealed": sealed["sealed"], "finished": pipeline["finished"], "trained": pipeline["trained"]}


def mlflow_runs(mlflow_uri: str) -> int:
    client = MlflowClient(mlflow_uri)
    experiment = client.get_experiment_by_name(f"lookalike-{settings().deployment}")
    return len(client.search_runs([experiment.experiment_id], max_results=10_000)) if experiment else 0


def send(api, version_dir: Path, name: str) -> None:
    from datagen.send import send_version

    send_version(str(api.base_url), version_dir, version_name=name)


async def wait_sealed(version: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not (await deployment_history())["sealed"][version]:
        assert time.monotonic() < deadline, (
            f"the restarted worker did not seal {version} within {timeout:.0f}s (see its log: after a kill -9 "
            "the broker may still count the dead member in the consumer group, so no partition is assigned)")
        await asyncio.sleep(1)


def assert_nothing_redone(before: dict, after: dict, new_version: str, runs_before: int, mlflow_uri: str) -> None:
    assert after["sealed"][new_version] == 1 and after["finished"][new_version] == 1
    assert all(count == 1 for count in after["sealed"].values()), after["sealed"]
    assert all(count == 1 for count in after["finished"].values()), after["finished"]
    assert after["trained"][:len(before["trained"])] == before["trained"]
    assert all(version == new_version for version, _ in after["trained"][len(before["trained"]):])
    assert mlflow_runs(mlflow_uri) - runs_before == len(after["trained"]) - len(before["trained"])


async def test_pipeline_kill9_redoes_nothing(api, stack_dir, series, first_version, run_id, mlflow_uri):
    before = await deployment_history()
    runs_before = mlflow_runs(mlflow_uri)
    experiments_before = api.get("/experiments").json()["experiments"]
    assert before["sealed"][first_version] == 1 and before["finished"][first_version] == 1

    kill9(stack_dir, "pipeline")
    restart("pipeline")
    # The next version goes through the restarted pipeline: once it is done, the pipeline has passed
    # every earlier version again (it re-reads the versions topic from its start) and skipped them.
    second = f"{run_id}-restart-v2"
    send(api, series[1], second)
    status = wait_idle(api)
    assert status["data_version"] == second, status

    assert_nothing_redone(before, await deployment_history(), second, runs_before, mlflow_uri)
    assert api.get("/experiments").json()["experiments"][:len(experiments_before)] == experiments_before


async def test_worker_kill9_seals_again_and_redoes_nothing(api, stack_dir, series, first_version, run_id, mlflow_uri):
    before = await deployment_history()
    runs_before = mlflow_runs(mlflow_uri)

    kill9(stack_dir, "worker")
    restart("worker")
    # A version committed after the restart must be sealed by the restarted worker, exactly once,
    # and no earlier commit may be sealed again. (The series' third version is a corrupted one: the
    # pipeline rejects it at validation, which keeps this test short.)
    third = f"{run_id}-restart-v3"
    send(api, series[2], third)
    await wait_sealed(third, timeout=120)
    wait_idle(api)

    assert_nothing_redone(before, await deployment_history(), third, runs_before, mlflow_uri)
