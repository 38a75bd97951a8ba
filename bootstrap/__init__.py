"""One place that builds every process of the service from the settings and the topology:

    python -m bootstrap provision    create the topics and the bucket (idempotent), then exit
    python -m bootstrap worker ...   the Faust worker (processors/faust_app.py: seals committed versions);
                                     the rest of the line is Faust's (e.g. `-l info --web-port 8081`)
    python -m bootstrap pipeline     the pipeline consumer (processors/pipeline.py)
    python -m bootstrap api          the HTTP API (serving/app.py) on PORT

`ops` (replay, rerun, export) and the DVC stages (`python -m stages`) are tools run by hand, not
processes: ops builds its pipeline with `pipeline_ports` as the consumer does; the stages need no
service at all.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from domain.settings import Settings

if TYPE_CHECKING:  # the adapters are imported where a process needs them: the API sets its allocator first
    from adapters.broker import EventLog
    from adapters.lineage import Lineage
    from adapters.storage import ObjectStore
    from adapters.tracking import Tracker

log = logging.getLogger(__name__)

# Polars' allocator (jemalloc) keeps freed pages for reuse. Read when polars loads (with the app), this
# returns pages unused for a second: while batches keep arriving they are reused, and after a burst the
# API shrinks back to what it holds, for a little more CPU per batch than keeping them (returning them
# at once, as the pipeline's stages do, costs much more CPU; docs/benchmarks.md).
API_ALLOCATOR = {"_RJEM_MALLOC_CONF": "dirty_decay_ms:1000,muzzy_decay_ms:1000"}


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def provision(config: Settings, attempts: int = 60) -> None:
    """Create what the processes expect to exist: the topics and the bucket, retrying while the broker
    and the object store start."""
    from adapters.broker import create_topics
    from adapters.storage import ObjectStore

    for attempt in range(attempts):
        try:
            created = asyncio.run(create_topics(config))
            ObjectStore(config).ensure_bucket()
            log.info("provisioned: topics created %s, bucket %s", created, config.s3_bucket)
            return
        except Exception as error:
            log.warning("provision attempt %d failed: %s", attempt + 1, error)
            time.sleep(2)
    raise SystemExit("could not provision the broker and the bucket")


def worker() -> None:
    """The Faust worker; Faust reads its own command line (`worker -l info ...`) from sys.argv."""
    from processors.faust_app import app

    app.main()


@dataclass
class PipelinePorts:
    """What the pipeline's stages talk to: the log, the object store, the tracker and the lineage."""

    event_log: EventLog
    store: ObjectStore
    tracker: Tracker
    lineage: Lineage


def pipeline_ports(config: Settings) -> PipelinePorts:
    from adapters.broker import EventLog
    from adapters.lineage import Lineage
    from adapters.storage import ObjectStore
    from adapters.tracking import Tracker

    return PipelinePorts(EventLog(config), ObjectStore(config), Tracker(config), Lineage(config))


async def run_pipeline(config: Settings) -> None:
    """Fold the pipeline topic (what is done), then take sealed versions one at a time, for ever."""
    from adapters.broker import Follower, create_topics
    from domain import events, topology
    from processors.pipeline import Pipeline
    from processors.stage_process import start_stage_server
    from projections.views import PipelineViews

    await create_topics(config)
    await asyncio.to_thread(start_stage_server)
    ports = pipeline_ports(config)
    ports.store.ensure_bucket()
    await ports.event_log.start()
    views = PipelineViews()
    # Know what is done before taking new work: fold the pipeline topic up to its end.
    history = Follower(config, topology.PIPELINE.name, views.apply)
    await history.start()
    await history.catch_up()
    await history.stop()
    pipeline = Pipeline(config, ports.event_log, ports.store, ports.tracker, ports.lineage, views)
    queue: asyncio.Queue[events.VersionSealed] = asyncio.Queue()

    def on_sealed(offset: int, payload: bytes, key: bytes | None) -> None:
        queue.put_nowait(events.from_bytes(payload))  # type: ignore[arg-type]

    sealed_versions = Follower(config, topology.VERSIONS.name, on_sealed)
    await sealed_versions.start()
    try:
        while True:
            await pipeline.handle(await queue.get())
    finally:
        await sealed_versions.stop()
        await ports.event_log.stop()


def api(config: Settings) -> None:
    """The API under uvicorn: connections beyond `http.max_connections` (and SSE streams) get 503
    rather than being held."""
    os.environ.update(API_ALLOCATOR)  # before polars loads, with the app
    import uvicorn

    uvicorn.run("serving.app:app", host="0.0.0.0", port=config.port, log_level="info", access_log=False,
                timeout_keep_alive=30, limit_concurrency=int(config.params["http"]["max_connections"]))
