"""Wiring of the API process (the one bootstrap place): adapters, followers and projections.

Each followed topic has one projection and one checkpoint (projections/checkpoint.py) under
work_dir/projections/<deployment>/. On start a projection takes its checkpoint back and its follower
resumes at the stored offset; a checkpoint ahead of the topic's end belongs to an earlier log (a fresh
broker) and is discarded, so the projection replays from offset 0. While running, a projection that
has moved is saved every CHECKPOINT_EVERY_S seconds, and once more on stop.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from adapters.broker import EventLog, Follower, Tail, create_topics, end_offset
from adapters.storage import ObjectStore
from domain import events, topology
from domain.settings import Settings
from ingest.service import IngestService
from projections.checkpoint import Checkpoint
from projections.ledger import LedgerView
from projections.serving_model import ServingModel
from projections.views import PipelineViews
from serving.body import BodyLimits, BodyMemory
from serving.events_stream import Subscribers

log = logging.getLogger(__name__)

CHECKPOINT_EVERY_S = 1.0


class Projection(Protocol):
    position: int

    def state(self) -> dict: ...

    def restore(self, position: int, state: dict) -> None: ...


@dataclass(frozen=True)
class Checkpointed:
    """A projection, the follower that feeds it, and where its checkpoint lives."""

    projection: Projection
    follower: Follower
    checkpoint: Checkpoint

    async def restore(self, config: Settings) -> None:
        """Take the checkpoint back if it fits the log (else the projection starts empty, at 0)."""
        saved = self.checkpoint.load()
        if saved is None:
            return
        end = await end_offset(config, self.follower.topic)
        if saved.position <= end:
            self.projection.restore(saved.position, saved.state)
            log.info("%s: resumed from the checkpoint at offset %d (end %d)",
                     self.follower.topic, saved.position, end)
        else:
            log.warning("%s: checkpoint at offset %d is past the end %d (a new log): replaying from 0",
                        self.follower.topic, saved.position, end)
            self.checkpoint.discard()

    async def save_if_moved(self) -> None:
        # state() is taken in one synchronous step: no record is applied in between, so the state
        # and the position written with it always match. Encoding and writing it (with its fsync)
        # happen in a thread, off the event loop that answers requests.
        if self.projection.position != self.checkpoint.saved_position:
            position, state = self.projection.position, self.projection.state()
            await asyncio.to_thread(self.checkpoint.save, position, state)


@dataclass(frozen=True)
class BrokerHealth:
    """The last look at the broker: when, whether it answered, and each followed topic's end then."""

    checked_at: float | None = None  # time.monotonic()
    error: str | None = None
    failing_since: float | None = None  # time.time() of the first failed look in a row
    ends: dict[str, int] = field(default_factory=dict)


class Runtime:
    def __init__(self, config: Settings):
        self.config = config
        self.store = ObjectStore(config)
        self.event_log = EventLog(config)
        self.ledger = LedgerView()
        self.pipeline = PipelineViews()
        self.serving = ServingModel(self.store, config.layout.serving_cache())
        self.ledger_follower = Follower(config, topology.INGEST_CONTROL.name, self.ledger.apply)
        self.pipeline_follower = Follower(config, topology.PIPELINE.name, self._on_pipeline)
        checkpoints = config.layout.checkpoints()
        self.checkpointed = (
            Checkpointed(self.ledger, self.ledger_follower, Checkpoint(checkpoints / "ledger.json")),
            Checkpointed(self.pipeline, self.pipeline_follower, Checkpoint(checkpoints / "pipeline.json")),
        )
        self.ingest = IngestService(self.event_log, self.ledger, self.ledger_follower,
                                    max_chunk_bytes=int(config.params["ingest"]["max_chunk_bytes"]),
                                    compression=config.params["ingest"]["compression"],
                                    parallel_batches=int(config.params["ingest"]["parallel_batches"]),
                                    max_batches=int(config.params["ingest"]["max_batches"]),
                                    max_batch_records=int(config.params["ingest"]["max_batch_records"]))
        http = config.params["http"]
        pace = dict(grace_s=float(http["body_grace_s"]), min_bytes_per_s=float(http["body_min_bytes_per_s"]))
        self.batch_body_limits = BodyLimits(max_bytes=int(http["max_batch_body_bytes"]), **pace)
        self.body_limits = BodyLimits(max_bytes=int(http["max_body_bytes"]), **pace)
        self.body_memory = BodyMemory(int(http["body_memory_bytes"]))
        self.tmp_dir = config.layout.scratch("bodies")
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.subscribers = Subscribers(int(config.params["events"]["max_subscribers"]))
        self.health_params = config.params["health"]
        self.broker_health = BrokerHealth()
        self._health_tail: Tail | None = None  # where the followed topics end, for /ready
        self._saver: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self._watcher: asyncio.Task | None = None
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
        for checkpointed in self.checkpointed:
            await checkpointed.restore(self.config)
        # The servable pair of a restored pipeline state (a replay feeds it event by event instead).
        for event in (self.pipeline.catalog.current, self.pipeline.registry.deployed):
            if event is not None:
                self.serving.apply(event)
        for checkpointed in self.checkpointed:
            await checkpointed.follower.start(from_offset=checkpointed.projection.position)
        self.serving.start()
        self._saver = asyncio.create_task(self._save_checkpoints(), name="checkpoints")
        self._health_tail = Tail(self.config, {c.follower.topic: c.follower.topic for c in self.checkpointed})
        await self._health_tail.start()
        await self._look_at_broker()
        self._watcher = asyncio.create_task(self._watch_broker(), name="broker-health")
        self.started = True

    async def _look_at_broker(self) -> None:
        """Ask the broker for the followed topics' ends, within broker_timeout_s: it answers, or it is
        recorded as unreachable with the cause."""
        previous = self.broker_health
        try:
            async with asyncio.timeout(float(self.health_params["broker_timeout_s"])):
                ends = await self._health_tail.ends()
            self.broker_health = BrokerHealth(time.monotonic(), None, None, ends)
        except Exception as error:
            cause = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            self.broker_health = BrokerHealth(time.monotonic(), cause, previous.failing_since or time.time(),
                                              previous.ends)

    async def _watch_broker(self) -> None:
        while True:
            await asyncio.sleep(float(self.health_params["check_every_s"]))
            await self._look_at_broker()

    def degraded(self) -> list[str]:
        """What keeps the API from taking a batch or serving up to date, in words; empty when nothing does."""
        if not self.started:
            return ["still connecting to the event log"]
        problems = []
        health = self.broker_health
        stale_after = 3 * float(self.health_params["check_every_s"]) + float(self.health_params["broker_timeout_s"])
        if health.error is not None:
            since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(health.failing_since or time.time()))
            problems.append(f"broker {self.config.broker} unreachable since {since}: {health.error}")
        elif health.checked_at is None or time.monotonic() - health.checked_at > stale_after:
            problems.append(f"broker {self.config.broker} not checked for over {stale_after:.0f} s")
        for checkpointed in self.checkpointed:
            follower = checkpointed.follower
            if follower.failure is not None:
                problems.append(f"projection of {follower.topic}: reading the topic fails: {follower.failure}")
            behind = health.ends.get(follower.topic, 0) - follower.position
            if behind > int(self.health_params["max_lag"]):
                problems.append(f"projection of {follower.topic}: {behind:,} records behind the log")
        return problems

    def notices(self) -> list[str]:
        """Degraded parts that do not stop the API taking batches or serving: they say what to do."""
        found = [f"version {version!r} could not be sealed ({error}): send its batches and commit it again"
                 for version, error in self.ledger.seal_failures().items()]
        if self.serving.load_error:
            found.append(f"serving: {self.serving.load_error}")
        return found

    async def _save_checkpoints(self) -> None:
        """Every CHECKPOINT_EVERY_S, until stop() asks it to end (never cancelled mid-write: a write
        that went on in its thread would race the last one)."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), CHECKPOINT_EVERY_S)
            for checkpointed in self.checkpointed:
                try:
                    await checkpointed.save_if_moved()
                except OSError:  # a full disk must not stop the reads: the log still has everything
                    log.exception("could not save the checkpoint %s", checkpointed.checkpoint.path)

    async def stop(self) -> None:
        self._stopping.set()
        if self._saver:
            await self._saver
        if self._watcher:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._health_tail:
            await self._health_tail.stop()
        await self.serving.stop()
        await self.pipeline_follower.stop()
        await self.ledger_follower.stop()
        for checkpointed in self.checkpointed:
            await checkpointed.save_if_moved()
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
