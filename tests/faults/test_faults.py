"""Faults delay work and never lose it. The same three versions (first model, no drift, drift) go
through two private stacks: one undisturbed, one while its parts are paused (SIGSTOP) and killed
(kill -9, then restarted as `stack.sh up` starts them) during ingest, sealing, validation and
training. The disturbed run must end exactly as the undisturbed one (versions, decisions, models,
experiments, served audiences), with every acknowledged batch in its snapshot, each version sealed
and processed once, one MLflow run per training, and the API answering throughout except while it
is itself down.

The local broker (noida-db) keeps the log in memory: a killed broker loses it, so the broker is only
paused here. S3 (weed mini) and MLflow (sqlite) keep their data on disk, and are killed and
restarted: what they held before must still be there.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from pathlib import Path

import httpx
import polars as pl
import pytest

from tests.faults.conftest import Stack, status_of, wait_until

pytestmark = pytest.mark.faults

VOLATILE = {"run_id", "mlflow_run_id", "timestamp", "started_at", "finished_at", "sealed_at", "received_at", "requested_at",
            "duration_s", "stages_done", "loaded_at", "report_key", "report_keys", "examples_seconds",
            "fit_seconds", "train_seconds"}


def stable(answer):
    """An answer without what differs between two runs of the same data: ids and clock readings."""
    if isinstance(answer, dict):
        return {key: stable(value) for key, value in answer.items() if key not in VOLATILE}
    if isinstance(answer, list):
        return [stable(value) for value in answer]
    return answer


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> list[Path]:
    import datagen

    return datagen.generate_series(tmp_path_factory.mktemp("faults-series"), scale="tiny", seed=11,
                                   scenarios=["base", "same", "drift_behaviour"], mode="increment")


class Sender:
    """A client that does what the contract asks of one: a batch without an answer is sent again (the
    same content is a no-op), until it is acknowledged."""

    def __init__(self, url: str):
        self.client = httpx.Client(base_url=url, timeout=60)
        self.resent = 0

    def _until_acknowledged(self, path: str, body: bytes) -> dict:
        deadline = time.monotonic() + 240
        while True:
            try:
                response = self.client.post(path, content=body, headers={"content-type": "application/json"})
                if response.status_code == 200:
                    return response.json()
                assert response.status_code == 503, (path, response.status_code, response.text)
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{path} never acknowledged"
            self.resent += 1
            time.sleep(0.5)

    def batches(self, version_dir: Path, version: str) -> list[bytes]:
        from datagen.send import batch_body, iter_frames

        return [batch_body(version, table, batch_id, total, frame)
                for table, batch_id, total, frame in iter_frames(version_dir, batch_rows=2_000)]

    def send(self, body: bytes) -> dict:
        return self._until_acknowledged("/data/batch", body)

    def commit(self, version: str) -> dict:
        return self._until_acknowledged("/data/commit", json.dumps({"version": version}).encode())


class Watch:
    """Asks /status every quarter second; every answer must be 200, and no request may go unanswered
    outside the windows in which the API itself is down."""

    def __init__(self, url: str):
        self.url, self.failures, self.errors, self.down = url, [], [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while not self._stop.is_set():
                at = time.monotonic()
                try:
                    code = client.get("/status").status_code
                    if code != 200:
                        self.errors.append((at, code))
                except httpx.HTTPError as error:
                    self.failures.append((at, type(error).__name__))
                self._stop.wait(0.25)

    def api_down(self, stack: Stack) -> None:
        started = time.monotonic()
        stack.kill_and_restart("api")
        self.down.append((started, time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        unexplained = [f for f in self.failures if not any(a - 0.5 <= f[0] <= b + 5 for a, b in self.down)]
        assert not self.errors and not unexplained, (self.errors, unexplained)


def in_stage(url: str, stage: str, timeout: float = 120) -> dict:
    return wait_until(lambda: (s := status_of(url)) and s.get("stage") == stage and s, timeout, 0.05,
                      f"stage {stage}")


def idle(url: str, version: str, timeout: float = 300) -> dict:
    return wait_until(lambda: (s := status_of(url)) and s["pipeline_status"] == "idle"
                      and s.get("data_version") == version and s, timeout, 0.5, f"{version} done")


def paused_for(stack: Stack, process: str, seconds: float) -> threading.Timer:
    stack.pause(process)
    timer = threading.Timer(seconds, stack.resume, [process])
    timer.start()
    return timer


def answers(url: str, probe: dict) -> dict:
    with httpx.Client(base_url=url, timeout=60) as client:
        found = {path: stable(client.get(path).json())
                 for path in ("/model/info", "/experiments", "/monitoring/drift", "/monitoring/data-quality")}
        status = client.get("/status").json()
        found["/status"] = {key: status.get(key) for key in ("data_version", "model_version", "pipeline_status")}
        found["/lookalike"] = stable(client.post("/lookalike", json=probe).json())
    return found


def probe_of(version_dir: Path) -> dict:
    offer = pl.read_parquet(version_dir / "offer.parquet").sort("offer_id").row(0, named=True)
    return {"merchant_id": offer["merchant_id_offer"], "offer_id": offer["offer_id"], "top_n": 50}


def history(stack: Stack) -> dict:
    """What the stack's log and MLflow hold: seals, outcomes, trainings, runs."""
    from mlflow.tracking import MlflowClient

    from domain import events, topology
    from domain.settings import settings
    from ops.log import read_topic

    env = dict(line.removeprefix("export ").split("=", 1)
               for line in (stack.directory / "env").read_text().splitlines() if "=" in line)
    config = dataclasses.replace(settings(), broker=env["LAL_BROKER"], deployment=env["LAL_DEPLOYMENT"])
    sealed = [e for _, e in asyncio.run(read_topic(config, topology.VERSIONS.name))]
    pipeline = [e for _, e in asyncio.run(read_topic(config, topology.PIPELINE.name))]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(f"lookalike-{env['LAL_DEPLOYMENT']}")
    runs = client.search_runs([experiment.experiment_id], max_results=1000) if experiment else []
    return {
        "sealed": [(e.version, {t: m["rows"] for t, m in e.manifest["tables"].items()}) for e in sealed],
        "outcomes": [(e.version, type(e).__name__, getattr(e, "action_taken", getattr(e, "cause", None)))
                     for e in pipeline if isinstance(e, (events.VersionProcessed, events.PipelineFailed))],
        "trained": [(e.version, e.model_version, e.metrics["map_at_100"]) for e in pipeline
                    if isinstance(e, events.ModelTrained)],
        "runs": sorted((r.data.tags["data_version"], r.data.tags["model_version"], r.info.status) for r in runs),
    }


def rows_sent(version_dir: Path) -> dict[str, int]:
    return {path.stem: pl.read_parquet(path).height for path in sorted(version_dir.glob("*.parquet"))}


def run_undisturbed(stack: Stack, series: list[Path]) -> None:
    sender = Sender(stack.url)
    for version_dir in series:
        for body in sender.batches(version_dir, version_dir.name):
            sender.send(body)
        sender.commit(version_dir.name)
        idle(stack.url, version_dir.name)


def run_disturbed(stack: Stack, series: list[Path], watch: Watch) -> list[str]:
    """The faults, in the phase each is meant for; returns what was done, with the stage it hit."""
    sender, done = Sender(stack.url), []

    def note(what: str) -> None:
        status = status_of(stack.url) or {}
        done.append(f"{what} (stage {status.get('stage')})")

    base, same, drift = series
    # v1, ingest: the broker paused while batches arrive, then the API killed between two batches.
    bodies = sender.batches(base, base.name)
    for index, body in enumerate(bodies):
        if index == len(bodies) // 3:
            paused_for(stack, "broker", 4)
            note("ingest: broker paused 4 s")
        if index == 2 * len(bodies) // 3:
            watch.api_down(stack)
            note("ingest: API killed and restarted")
        sender.send(body)
    # v1, sealing: S3 paused across the commit, so the worker writes the snapshot into a paused server.
    s3_pause = paused_for(stack, "s3", 8)
    sender.commit(base.name)
    note("sealing: S3 paused 8 s")
    s3_pause.join()
    # v1, validation: the pipeline consumer killed mid-stage, then restarted.
    in_stage(stack.url, "validate")
    stack.kill_and_restart("pipeline")
    note("validation: pipeline killed and restarted")
    # v1, training: MLflow paused, S3 killed and restarted on its own disk.
    in_stage(stack.url, "train")
    mlflow_pause = paused_for(stack, "mlflow", 10)
    note("training: MLflow paused 10 s")
    stack.kill_and_restart("s3")
    note("training: S3 killed and restarted")
    mlflow_pause.join()
    idle(stack.url, base.name)

    # v2, sealing: the Faust worker killed right after the commit; validation: the pipeline paused.
    for body in sender.batches(same, same.name):
        sender.send(body)
    sender.commit(same.name)
    stack.kill_and_restart("worker")
    note("sealing: worker killed and restarted")
    in_stage(stack.url, "validate")
    pipeline_pause = paused_for(stack, "pipeline", 5)
    note("validation: pipeline paused 5 s")
    pipeline_pause.join()
    stack.kill_and_restart("mlflow")
    note("MLflow killed and restarted")
    idle(stack.url, same.name)

    # v3 (drift, retrained), training: the pipeline killed mid-training, then, in the new attempt, the
    # broker paused and the API killed while it trains.
    for body in sender.batches(drift, drift.name):
        sender.send(body)
    sender.commit(drift.name)
    in_stage(stack.url, "train")
    stack.kill_and_restart("pipeline")
    note("training: pipeline killed and restarted")
    in_stage(stack.url, "train")
    broker_pause = paused_for(stack, "broker", 4)
    note("training: broker paused 4 s")
    broker_pause.join()
    watch.api_down(stack)
    note("training: API killed and restarted")
    idle(stack.url, drift.name)
    done.append(f"batches sent again after a fault: {sender.resent}")
    return done


def test_faults_delay_the_series_and_change_nothing(stacks, series):
    probe = probe_of(series[0])
    reference = stacks("undisturbed")
    started = time.monotonic()
    run_undisturbed(reference, series)
    undisturbed_s = time.monotonic() - started
    expected, expected_history = answers(reference.url, probe), history(reference)
    reference.down()

    disturbed = stacks("disturbed")
    watch = Watch(disturbed.url)
    started = time.monotonic()
    done = run_disturbed(disturbed, series, watch)
    disturbed_s = time.monotonic() - started
    watch.stop()
    found, found_history = answers(disturbed.url, probe), history(disturbed)
    print(f"undisturbed {undisturbed_s:.0f} s, disturbed {disturbed_s:.0f} s:", *done, sep="\n  ")

    # Every acknowledged row is in its version's snapshot, and each version was sealed once.
    assert found_history["sealed"] == [(d.name, rows_sent(d)) for d in series], found_history["sealed"]
    # One outcome per version, the same as undisturbed; no failure.
    assert found_history["outcomes"] == expected_history["outcomes"] == [
        ("v1", "VersionProcessed", "retrained"), ("v2", "VersionProcessed", "none"),
        ("v3", "VersionProcessed", "retrained")]
    # The same trainings (one per retrain, none repeated), one finished MLflow run each.
    assert found_history["trained"] == expected_history["trained"]
    assert found_history["runs"] == expected_history["runs"] == [("v1", "1.0", "FINISHED"), ("v3", "2.0", "FINISHED")]
    # And the service answers exactly as the undisturbed one.
    assert found == expected
