"""Wiring of the API process (the one bootstrap place): adapters, followers and projections."""
from __future__ import annotations

import asyncio
import logging

from adapters.broker import EventLog, Follower, create_topics
from adapters.storage import ObjectStore
from domain import events, topology
from domain.settings import Settings
from ingest.service import IngestService
from projections.ledger import LedgerView
from projections.serving_model import ServingModel
from projections.views import PipelineViews

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, config: Settings):
        self.config = config
        self.store = ObjectStore(config)
        self.event_log = EventLog(config)
        self.ledger = LedgerView()
        self.pipeline = PipelineViews()
        self.serving = ServingModel(self.store, config.work_dir / "serving")
        self.ledger_follower = Follower(config, topology.INGEST_CONTROL.name, self.ledger.apply)
        self.pipeline_follower = Follower(config, topology.PIPELINE.name, self._on_pipeline)
        self.ingest = IngestService(self.event_log, self.ledger, self.ledger_follower,
                                    max_chunk_bytes=int(config.params["ingest"]["max_chunk_bytes"]),
                                    compression=config.params["ingest"]["compression"])
        self.started = False

    def _on_pipeline(self, offset: int, payload: bytes, key: bytes | None) -> None:
        event = self.pipeline.apply(offset, payload)
        self.serving.apply(event)

    async def start(self, attempts: int = 60) -> None:
        """Connect to the log (retrying while the broker starts) and begin following it."""
        for attempt in range(attempts):
            try:
                await create_topics(self.config)
                await self.event_log.start()
                break
            except Exception as error:  # broker not up yet
                log.warning("broker not reachable (%s); retrying", error)
                await asyncio.sleep(min(2.0, 0.2 * (attempt + 1)))
        else:
            raise RuntimeError(f"broker {self.config.broker} unreachable")
        await self.ledger_follower.start()
        await self.pipeline_follower.start()
        self.serving.start()
        self.started = True

    async def stop(self) -> None:
        await self.serving.stop()
        await self.pipeline_follower.stop()
        await self.ledger_follower.stop()
        await self.event_log.stop()

    # --- derived answers --------------------------------------------------------------------

    def pipeline_status(self) -> str:
        """running while a committed version has no outcome yet; failed if the last one failed."""
        finished = self.pipeline.progress.finished
        if any(version not in finished for version in self.ledger.committed_versions()):
            return "running"
        if self.serving.loading():  # the last version's catalog or model is not servable yet
            return "running"
        return "failed" if self.pipeline.progress.last_finished == "failed" else "idle"


def event_summary(event: events.Event) -> dict:
    return {"type": type(event).__name__, **event.__dict__}
