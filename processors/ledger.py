"""The batch ledger of one data version: a pure fold over ingest.control events.

The same fold runs in the Faust processor (which seals versions) and in the API's projection
(which answers /data/batch and /data/commit), so both agree on every outcome by construction:
the log order decides, not the wall clock.
"""
from __future__ import annotations

import enum
import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from domain.events import BatchReceived, CommitRequested, Event


class Outcome(str, enum.Enum):
    ACCEPTED = "accepted"            # first time this (table, batch_id) was seen
    DUPLICATE = "duplicate"          # same content again: nothing changes
    REPLACED = "replaced"            # different content for an open version: last write wins
    REJECTED_CLOSED = "rejected_closed"  # the version was committed before this batch
    COMMITTED = "committed"          # the first commit: seal the version, start the pipeline
    DUPLICATE_COMMIT = "duplicate_commit"
    ALREADY_APPLIED = "already_applied"  # a redelivered event (offset below the ledger's position)


@dataclass
class BatchEntry:
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


@dataclass
class VersionLedger:
    version: str
    batches: dict[str, BatchEntry] = field(default_factory=dict)  # key "table/batch_id"
    replaced: dict[str, int] = field(default_factory=dict)        # table -> count of replacements
    late_batches: int = 0
    commit_offset: int | None = None                               # commit order = sequence
    position: int = 0                                              # next offset this ledger expects

    @property
    def committed(self) -> bool:
        return self.commit_offset is not None

    def tables_received(self) -> list[str]:
        return sorted({entry.table for entry in self.batches.values()})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VersionLedger:
        batches = {key: BatchEntry(**entry) for key, entry in data.get("batches", {}).items()}
        return cls(
            version=data["version"], batches=batches, replaced=dict(data.get("replaced", {})),
            late_batches=data.get("late_batches", 0), commit_offset=data.get("commit_offset"),
            position=data.get("position", 0),
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
    if not isinstance(event, BatchReceived):
        raise TypeError(f"ingest.control carries no {type(event).__name__}")
    if ledger.committed:
        ledger.late_batches += 1
        return ledger, Outcome.REJECTED_CLOSED
    key = f"{event.table}/{event.batch_id}"
    previous = ledger.batches.get(key)
    if previous is not None and previous.content_hash == event.content_hash:
        return ledger, Outcome.DUPLICATE
    ledger.batches[key] = BatchEntry(
        table=event.table, batch_id=event.batch_id, total_batches=event.total_batches, rows=event.rows,
        content_hash=event.content_hash, chunk_offsets=list(event.chunk_offsets), offset=offset,
        unparseable=dict(event.unparseable), examples=dict(event.examples),
        unknown_columns=list(event.unknown_columns), missing_columns=list(event.missing_columns),
    )
    if previous is None:
        return ledger, Outcome.ACCEPTED
    ledger.replaced[event.table] = ledger.replaced.get(event.table, 0) + 1
    return ledger, Outcome.REPLACED


def manifest(ledger: VersionLedger, expected_tables: tuple[str, ...]) -> dict[str, Any]:
    """What the sealed snapshot holds, per table: rows, batches expected and received, hashes."""
    tables: dict[str, Any] = {}
    for table in ledger.tables_received():
        entries = sorted((e for e in ledger.batches.values() if e.table == table), key=lambda e: e.batch_id)
        # total_batches may differ between batches of one table; the largest claim is the one to meet.
        expected = max(entry.total_batches for entry in entries)
        received = [entry.batch_id for entry in entries]
        unparseable: dict[str, int] = {}
        examples: dict[str, list[str]] = {}
        for entry in entries:
            for column, count in entry.unparseable.items():
                unparseable[column] = unparseable.get(column, 0) + count
                examples.setdefault(column, [])
                examples[column] = (examples[column] + entry.examples.get(column, []))[:3]
        tables[table] = {
            "rows": sum(entry.rows for entry in entries),
            "batches_expected": expected,
            "batches_received": received,
            "missing_batches": sorted(set(range(1, expected + 1)) - set(received)),
            "extra_batches": sorted(set(received) - set(range(1, expected + 1))),
            "content_hash": _combined_hash([entry.content_hash for entry in entries]),
            "replaced_batches": ledger.replaced.get(table, 0),
            "unparseable": unparseable,
            "examples": examples,
            "unknown_columns": sorted({c for e in entries for c in e.unknown_columns}),
            "missing_columns": sorted(set.intersection(*(set(e.missing_columns) for e in entries))),
        }
    return {
        "version": ledger.version,
        "sequence": ledger.commit_offset,
        "tables": tables,
        "tables_missing": [t for t in expected_tables if t not in tables],
        "late_batches": ledger.late_batches,
    }


def _combined_hash(hashes: list[str]) -> str:
    return hashlib.sha256("".join(hashes).encode()).hexdigest()
