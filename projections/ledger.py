"""The API's view of ingest.control: every version's batch ledger, folded with domain.ledger."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

from domain import events, ledger


class LedgerView:
    """Versions and their batches as the log says; remembers recent outcomes for read-your-writes.

    Its checkpointed state is the ledgers only: an outcome is read once, by the request that has just
    produced that record, which a restarted process never has in flight.
    """

    OUTCOMES_KEPT = 10_000

    def __init__(self) -> None:
        self.versions: dict[str, ledger.VersionLedger] = {}
        self.position = 0
        self._outcomes: OrderedDict[int, ledger.Outcome] = OrderedDict()

    def apply(self, offset: int, payload: bytes, key: bytes | None = None) -> None:
        event = events.from_bytes(payload)
        version = event.version  # type: ignore[attr-defined]
        self.versions[version], outcome = ledger.apply(self.versions.get(version), offset, event)
        self._outcomes[offset] = outcome
        if len(self._outcomes) > self.OUTCOMES_KEPT:
            self._outcomes.popitem(last=False)
        self.position = offset + 1

    def state(self) -> dict[str, Any]:
        return {"versions": {version: entry.to_dict() for version, entry in self.versions.items()}}

    def restore(self, position: int, state: dict[str, Any]) -> None:
        """Take a checkpointed state back: the next record to apply is the one at `position`."""
        self.versions = {version: ledger.VersionLedger.from_dict(entry)
                         for version, entry in state["versions"].items()}
        self.position = position

    def outcome(self, offset: int) -> ledger.Outcome | None:
        return self._outcomes.get(offset)

    def is_committed(self, version: str) -> bool:
        entry = self.versions.get(version)
        return entry is not None and entry.committed

    def tables_received(self, version: str) -> list[str]:
        entry = self.versions.get(version)
        return entry.tables_received() if entry else []

    def seal_failures(self) -> dict[str, str]:
        """Open versions whose last commit could not be sealed, with the reason (they can be sent again)."""
        return {v.version: v.seal_error for v in self.versions.values() if v.seal_error and not v.committed}

    def committed_versions(self) -> list[str]:
        """Committed versions in commit order."""
        done = [v for v in self.versions.values() if v.committed]
        return [v.version for v in sorted(done, key=lambda v: v.commit_offset or 0)]
