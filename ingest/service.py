"""Ingest commands: type a batch, put it on the log, and answer from the log's own verdict."""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass

import msgspec

from adapters.broker import EventLog, Follower
from domain import chunks, events, topology
from domain.ledger import Outcome
from domain.tables import ParseReport, parse_record_items
from projections.ledger import LedgerView

log = logging.getLogger(__name__)


class VersionClosed(Exception):
    """The version was committed before this batch: it can no longer change."""


class BatchTooLarge(Exception):
    """A batch over what one request may carry (records, or log messages once typed)."""


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
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class PreparedBatch:
    """A batch typed by its table's schema and cut into compressed log messages."""
    rows: int
    report: ParseReport
    payloads: list[bytes]
    digest: str


class IngestService:
    def __init__(self, event_log: EventLog, ledger_view: LedgerView, ledger_follower: Follower,
                 max_chunk_bytes: int, compression: str = "zstd", parallel_batches: int = 1,
                 max_batches: int = 100_000, max_batch_records: int = 2_000_000):
        self.event_log = event_log
        self.ledger = ledger_view
        self.follower = ledger_follower
        self.max_chunk_bytes = max_chunk_bytes
        self.compression = compression
        self.max_batches = max_batches
        self.max_batch_records = max_batch_records
        # A batch being typed holds its body, its records and its columns (about 2.5 times its JSON at
        # peak): at most this many at once; the others wait with their bodies read.
        self.slots = asyncio.Semaphore(parallel_batches)

    def check_records(self, body: bytes) -> None:
        """Refuse a batch's body that may hold more records than a batch may: checked before the records
        are cut apart, since each costs memory however short its JSON. Every record opens with a
        brace, so the braces bound them; a record takes three bytes at least ('{}' and a comma), so a
        shorter body is not even counted."""
        if len(body) > 3 * self.max_batch_records and body.count(b"{") > self.max_batch_records + 1:
            raise BatchTooLarge(f"records: more than {self.max_batch_records:,} records in one batch; "
                                "split it into several batches")

    async def prepare(self, version: str, table: str, records: list[msgspec.Raw]) -> PreparedBatch:
        """Type and encode a batch (CPU work, in a thread: the event loop stays free meanwhile)."""
        if self.ledger.is_committed(version):
            raise VersionClosed(version)
        return await asyncio.to_thread(self._prepare, table, records)

    def _prepare(self, table: str, records: list[msgspec.Raw]) -> PreparedBatch:
        frame, report = parse_record_items(table, records)
        payloads = chunks.split(frame, self.max_chunk_bytes, self.compression)
        if len(payloads) > events.MAX_CHUNKS_PER_BATCH:
            raise BatchTooLarge(f"records: {len(payloads)} log messages once typed, over the "
                                f"{events.MAX_CHUNKS_PER_BATCH} one batch may take; split it into several batches")
        return PreparedBatch(rows=frame.height, report=report, digest=chunks.content_hash(table, frame),
                             payloads=payloads)

    async def submit_batch(self, version: str, table: str, batch_id: int, total_batches: int,
                           batch: PreparedBatch) -> BatchAccepted:
        """Put a prepared batch on the log and answer from the ledger's verdict on it."""
        key = f"{version}/{table}/{batch_id}"
        sends = [self.event_log.send(topology.INGEST_DATA.name, key, payload,
                                     headers=[("chunk", f"{i + 1}/{len(batch.payloads)}".encode()),
                                              ("batch_hash", batch.digest.encode())])
                 for i, payload in enumerate(batch.payloads)]
        chunk_offsets = list(await asyncio.gather(*sends))
        received = events.BatchReceived(
            version=version, table=table, batch_id=batch_id, total_batches=total_batches,
            rows=batch.rows, content_hash=batch.digest, chunk_offsets=chunk_offsets,
            unparseable=batch.report.unparseable, examples=batch.report.examples,
            unknown_columns=batch.report.unknown_columns, missing_columns=batch.report.missing_columns,
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
        return BatchAccepted(table=table, batch_id=batch_id, rows=batch.rows,
                             outcome=outcome.value if outcome else "unknown")

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

