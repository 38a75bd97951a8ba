"""The batch ledger of one data version: a pure fold over ingest.control events.

The same fold runs in the Faust processor (which seals versions) and in the API's projection
(which answers /data/batch and /data/commit), so both agree on every outcome by construction:
the log order decides, not the wall clock.
"""
from __future__ import annotations

import copy
import enum
import hashlib
from dataclasses import dataclass, field, fields
from typing import Any

from domain.events import BatchReceived, CommitRequested, Event, SealFailed


class Outcome(str, enum.Enum):
    ACCEPTED = "accepted"            # first time this (table, batch_id) was seen
    DUPLICATE = "duplicate"          # same content again: nothing changes
    REPLACED = "replaced"            # different content for an open version: last write wins
    REJECTED_CLOSED = "rejected_closed"  # the version was committed before this batch
    COMMITTED = "committed"          # the first commit: seal the version, start the pipeline
    DUPLICATE_COMMIT = "duplicate_commit"
    ALREADY_APPLIED = "already_applied"  # a redelivered event (offset below the ledger's position)
    REOPENED = "reopened"            # the commit could not be sealed: the version is open again, empty
    STALE = "stale"                  # a seal failure of a commit that is no longer the version's


# A manifest names at most this many missing batches of a table (and counts them all).
MISSING_LISTED = 20


@dataclass
class BatchEntry:
    """A batch as its BatchReceived tells it (every field they share), and where that event is on the log."""

    table: str
    batch_id: int
    total_batches: int
    rows: int
    content_hash: str
    chunk_offsets: list[int]
    offset: int
    unparseable: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    unknown_columns: list[str] = field(default_factory=list)
    missing_columns: list[str] = field(default_factory=list)

    @classmethod
    def received(cls, event: BatchReceived, offset: int) -> BatchEntry:
        shared = {f.name for f in fields(cls)} & {f.name for f in fields(event)}
        return cls(offset=offset, **{name: copy.copy(getattr(event, name)) for name in sorted(shared)})


@dataclass
class VersionLedger:
    version: str
    batches: dict[str, BatchEntry] = field(default_factory=dict)  # key "table/batch_id"
    replaced: dict[str, int] = field(default_factory=dict)        # table -> count of replacements
    late_batches: int = 0
    commit_offset: int | None = None                               # commit order = sequence
    position: int = 0                                              # next offset this ledger expects
    seal_failures: int = 0
    seal_error: str | None = None                                  # why the last seal failed for good

    @property
    def committed(self) -> bool:
        return self.commit_offset is not None

    def tables_received(self) -> list[str]:
        return sorted({entry.table for entry in self.batches.values()})

    def to_dict(self) -> dict[str, Any]:
        """Plain data, taken fast (the API checkpoints its ledgers every second while they change, on
        its event loop): an entry is replaced by the fold, never changed in place, so the lists and
        dicts inside it are shared, not copied."""
        return {"version": self.version, "batches": {key: vars(entry).copy() for key, entry in self.batches.items()},
                "replaced": dict(self.replaced), "late_batches": self.late_batches,
                "commit_offset": self.commit_offset, "position": self.position,
                "seal_failures": self.seal_failures, "seal_error": self.seal_error}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VersionLedger:
        batches = {key: BatchEntry(**entry) for key, entry in data.get("batches", {}).items()}
        return cls(
            version=data["version"], batches=batches, replaced=dict(data.get("replaced", {})),
            late_batches=data.get("late_batches", 0), commit_offset=data.get("commit_offset"),
            position=data.get("position", 0), seal_failures=data.get("seal_failures", 0),
            seal_error=data.get("seal_error"),
        )


def apply(ledger: VersionLedger | None, offset: int, event: Event) -> tuple[VersionLedger, Outcome]:
    """Fold one control event (at log `offset`) into its version's ledger."""
    ledger = ledger or VersionLedger(version=event.version)  # type: ignore[attr-defined]
    if offset < ledger.position:
        return ledger, Outcome.ALREADY_APPLIED
    ledger.position = offset + 1
    if isinstance(event, CommitRequested):
        if ledger.committed:
            return ledger, Outcome.DUPLICATE_COMMIT
        ledger.commit_offset = offset
        return ledger, Outcome.COMMITTED
    if isinstance(event, SealFailed):
        if ledger.commit_offset is None or ledger.commit_offset != event.commit_offset:
            return ledger, Outcome.STALE
        # Its batches are dropped too: their data is what could not be read back, so a re-sent batch
        # must not count as a duplicate of one.
        return VersionLedger(version=ledger.version, position=ledger.position,
                             seal_failures=ledger.seal_failures + 1, seal_error=event.reason), Outcome.REOPENED
    if not isinstance(event, BatchReceived):
        raise TypeError(f"ingest.control carries no {type(event).__name__}")
    if ledger.committed:
        ledger.late_batches += 1
        return ledger, Outcome.REJECTED_CLOSED
    key = f"{event.table}/{event.batch_id}"
    previous = ledger.batches.get(key)
    if previous is not None and previous.content_hash == event.content_hash:
        return ledger, Outcome.DUPLICATE
    ledger.batches[key] = BatchEntry.received(event, offset)
    if previous is None:
        return ledger, Outcome.ACCEPTED
    ledger.replaced[event.table] = ledger.replaced.get(event.table, 0) + 1
    return ledger, Outcome.REPLACED


def manifest(ledger: VersionLedger, expected_tables: tuple[str, ...]) -> dict[str, Any]:
    """What the sealed snapshot holds, per table: rows, batches expected and received, hashes.

    Its size does not grow with the number of batches (it travels in VersionSealed): batches are
    counted, and only the first MISSING_LISTED missing batch numbers are listed."""
    tables: dict[str, Any] = {}
    for table in ledger.tables_received():
        entries = sorted((e for e in ledger.batches.values() if e.table == table), key=lambda e: e.batch_id)
        # total_batches may differ between batches of one table; the largest claim is the one to meet.
        # Every batch_id is at most its own total_batches, so none lies beyond the largest claim.
        expected = max(entry.total_batches for entry in entries)
        unparseable: dict[str, int] = {}
        examples: dict[str, list[str]] = {}
        for entry in entries:
            for column, count in entry.unparseable.items():
                unparseable[column] = unparseable.get(column, 0) + count
                examples.setdefault(column, [])
                examples[column] = (examples[column] + entry.examples.get(column, []))[:3]
        missing_count, missing_listed = _missing(expected, [entry.batch_id for entry in entries])
        tables[table] = {
            "rows": sum(entry.rows for entry in entries),
            "batches_expected": expected,
            "batches_received": len(entries),
            "missing_batch_count": missing_count,
            "missing_batches": missing_listed,
            "content_hash": _combined_hash([entry.content_hash for entry in entries]),
            "replaced_batches": ledger.replaced.get(table, 0),
            "unparseable": unparseable,
            "examples": examples,
            "unknown_columns": sorted({c for e in entries for c in e.unknown_columns})[:MISSING_LISTED],
            "missing_columns": sorted(set.intersection(*(set(e.missing_columns) for e in entries))),
        }
    return {
        "version": ledger.version,
        "sequence": ledger.commit_offset,
        "tables": tables,
        "tables_missing": [t for t in expected_tables if t not in tables],
        "late_batches": ledger.late_batches,
    }


def _missing(expected: int, received: list[int]) -> tuple[int, list[int]]:
    """How many of the batches 1..expected never arrived, and the first few of them, from the sorted
    ids that did (walking the gaps between them: nothing is sized by the expected count)."""
    listed: list[int] = []
    previous = 0
    for batch_id in [*sorted(set(received)), expected + 1]:
        gap = range(previous + 1, min(batch_id, expected + 1))
        listed.extend(gap[:MISSING_LISTED - len(listed)])
        previous = batch_id
    return expected - sum(1 for batch_id in set(received) if batch_id <= expected), listed


def _combined_hash(hashes: list[str]) -> str:
    return hashlib.sha256("".join(hashes).encode()).hexdigest()
