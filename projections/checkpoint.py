"""A projection's checkpoint: its state and the log offset it has applied, stored together.

One JSON file per followed topic, replaced atomically (written to a temporary file, flushed to disk,
then renamed over the old one): a reader, or a process restarted after kill -9, sees either the
previous checkpoint or the new one, never a mix, so the state always matches its offset. Resuming
from that offset applies every later record exactly once. Deleting the directory is always safe:
the projection is then folded again from offset 0 and gives the same answers.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

# Bumped whenever the stored state's shape changes: an older checkpoint is then ignored (replayed).
FORMAT = 1


@dataclass(frozen=True)
class Saved:
    position: int  # the next offset to apply
    state: dict[str, Any]


class Checkpoint:
    def __init__(self, path: Path):
        self.path = path
        self.saved_position: int | None = None  # what the file holds, to skip saving an unchanged state

    def load(self) -> Saved | None:
        """The stored checkpoint, or None when there is none (or one this code cannot read)."""
        try:
            stored = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except orjson.JSONDecodeError:
            log.warning("%s is not readable; ignoring it", self.path)
            return None
        if stored.get("format") != FORMAT:
            log.warning("%s has format %r, not %r; ignoring it", self.path, stored.get("format"), FORMAT)
            return None
        self.saved_position = stored["position"]
        return Saved(position=stored["position"], state=stored["state"])

    def save(self, position: int, state: dict[str, Any]) -> None:
        payload = orjson.dumps({"format": FORMAT, "position": position, "state": state})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".tmp")
        with open(partial, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, self.path)
        self.saved_position = position

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.saved_position = None
