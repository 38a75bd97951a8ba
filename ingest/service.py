"""Ingest commands: type a batch, put it on the log, and answer from the log's own verdict."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass

from adapters.broker import EventLog, Follower
from domain import events, topology
from domain.tables import parse_records
from ingest import chunks
from processors.ledger import Outcome
from projections.ledger import LedgerView

log = logging.getLogger(__name__)


class VersionClosed(Exception):
    """The version was committed before this batch: it can no longer change."""


@dataclass(frozen=True)
class BatchAccepted:
    table: str
    batch_id: int
    rows: int
    outcome: str


@dataclass(frozen=True)
class CommitAccepted:
    version: str
    tables_received: list[str]
    first_commit: bool


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


class IngestService:
    def __init__(self, event_log: EventLog, ledger_view: LedgerView, ledger_follower: Follower,
                 max_chunk_bytes: int, compression: str = "zstd"):
        self.event_log = event_log
        self.ledger = ledger_view
        self.follower = ledger_follower
        self.max_chunk_bytes = max_chunk_bytes
        self.compression = compression

    async def submit_batch(self, version: str, table: str, batch_id: int, total_batches: int,
                           records: list[dict]) -> BatchAccepted:
        if self.ledger.is_committed(version):
            raise VersionClosed(version)
        # Typing and encoding are CPU work: keep the event loop free for other requests meanwhile.
        frame, report, payloads, digest = await asyncio.to_thread(self._prepare, table, records)
        key = f"{version}/{table}/{batch_id}"
        sends = [self.event_log.send(topology.INGEST_DATA.name, key, payload,
                                     headers=[("chunk", f"{i + 1}/{len(payloads)}".encode()),
                                              ("batch_hash", digest.encode())])
                 for i, payload in enumerate(payloads)]
        chunk_offsets = list(await asyncio.gather(*sends))
        received = events.BatchReceived(
            version=version, table=table, batch_id=batch_id, total_batches=total_batches,
            rows=frame.height, content_hash=digest, chunk_offsets=chunk_offsets,
            unparseable=report.unparseable, examples=report.examples,
            unknown_columns=report.unknown_columns, missing_columns=report.missing_columns,
            received_at=_now(),
        )
        offset = await self.event_log.publish(received)
        await self.follower.wait_for(offset)
        outcome = self.ledger.outcome(offset)
        if outcome is Outcome.REJECTED_CLOSED:
            # A commit reached the log between our check and our batch: the log order decides.
            raise VersionClosed(version)
        if outcome is Outcome.REPLACED:
            log.warning("batch %s replaced with different content (last write wins)", key)
        return BatchAccepted(table=table, batch_id=batch_id, rows=frame.height,
                             outcome=outcome.value if outcome else "unknown")

    def _prepare(self, table: str, records: list[dict]):
        frame, report = parse_records(table, records)
        digest = chunks.content_hash(table, frame)
        payloads = chunks.split(frame, self.max_chunk_bytes, self.compression)
        return frame, report, payloads, digest

    async def commit(self, version: str) -> CommitAccepted:
        offset = await self.event_log.publish(events.CommitRequested(version=version, requested_at=_now()))
        # Every batch acknowledged before this commit sits before it on the log: once the follower
        # has applied the commit, the ledger holds all of them.
        await self.follower.wait_for(offset)
        return CommitAccepted(
            version=version,
            tables_received=self.ledger.tables_received(version),
            first_commit=self.ledger.outcome(offset) is Outcome.COMMITTED,
        )

