"""Rerun: the pipeline of one sealed version again, in a separate deployment namespace, for audits.

The live deployment is only read. The rerun gets its own namespace (LAL_DEPLOYMENT-style): its own
topics, S3 keys (a copy of the version's snapshot, its catalog, model and reports), MLflow experiment
and DVC project. It starts from the state the live pipeline had when it took the version (the live
pipeline topic folded up to the version's first event: previous catalog, deployed model, model
numbering), so it re-makes the same decision with processors.pipeline's own code, and the report
sets the rerun's outcome next to the live one.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Any

from adapters.broker import create_topics, end_offset
from adapters.storage import ObjectStore
from adapters.tracking import Tracker
from bootstrap import pipeline_ports
from domain import events, topology
from domain.settings import Settings
from ops.log import read_topic
from processors.pipeline import Pipeline
from projections.views import PipelineViews


def default_namespace(config: Settings, version: str) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{config.deployment}-audit-{version}-{stamp}")


def outcome(history: list[events.Event]) -> dict[str, Any]:
    """What the pipeline decided for one version, from its events."""
    found: dict[str, Any] = {"events": [type(event).__name__ for event in history]}
    for event in history:
        if isinstance(event, events.ValidationFinished):
            found["valid"], found["checks_failed"] = event.valid, event.checks_failed
        elif isinstance(event, events.DriftEvaluated):
            found["drift_detected"], found["drift_score"] = event.drift_detected, event.drift_score
        elif isinstance(event, events.ModelTrained):
            found["model_version"], found["metrics"], found["deployed"] = (
                event.model_version, event.metrics, event.deployed)
            found["run_id"] = event.run_id
        elif isinstance(event, events.VersionProcessed):
            found["action_taken"] = event.action_taken
        elif isinstance(event, events.PipelineFailed):
            found["action_taken"], found["error"] = "failed", f"{event.stage}: {event.error}"
    return found


async def rerun(config: Settings, version: str, namespace: str) -> dict[str, Any]:
    if namespace == config.deployment:
        raise ValueError("the rerun namespace must differ from the live deployment")
    sealed = next((event for _, event in await read_topic(config, topology.VERSIONS.name)
                   if isinstance(event, events.VersionSealed) and event.version == version), None)
    if sealed is None:
        raise LookupError(f"version {version!r} is not sealed in deployment {config.deployment!r}")

    # The live pipeline's state when it took the version, and what it did with it.
    before, live = PipelineViews(), []
    for offset, event in await read_topic(config, topology.PIPELINE.name):
        if getattr(event, "version", None) == version:
            live.append(event)
        elif not live:
            before.apply(offset, event.to_bytes())

    target = dataclasses.replace(config, deployment=namespace, work_dir=config.layout.ops(namespace))
    await create_topics(target)
    if await end_offset(target, topology.PIPELINE.name) > 0:
        raise FileExistsError(f"namespace {namespace!r} has been used already: choose another")
    ports = pipeline_ports(target)
    snapshot = target.layout.snapshot(version)
    ports.store.copy_dir(ObjectStore(config), sealed.snapshot_prefix, snapshot)

    await ports.event_log.start()
    try:
        pipeline = Pipeline(target, ports.event_log, ports.store, ports.tracker, ports.lineage, before)
        await pipeline.handle(dataclasses.replace(sealed, snapshot_prefix=snapshot))
    finally:
        await ports.event_log.stop()
    rerun_events = [event for _, event in await read_topic(target, topology.PIPELINE.name)]
    return {"version": version, "namespace": namespace, "mlflow_experiment": Tracker(target).experiment_name,
            "live": outcome(live), "rerun": outcome(rerun_events)}
