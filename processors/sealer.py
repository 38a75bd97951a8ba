"""Sealing a committed version: its accepted batches, read back from the log, as one Parquet file per
table in the object store, with a manifest. Deterministic: same log, same files.

The version's ledger is folded at seal time from the version's own control events (its first event to
the commit), with the same fold the API runs (domain/ledger.py): the processor keeps no per-batch
state, so nothing it stores grows with the number of batches.

A seal that fails because a part it talks to does (broker, object store, local disk) is retried until
it succeeds (`until_done`): those pass, or an operator fixes them, and the same seal then works. One
that fails because of the version's own data (its records gone from the log or undecodable), or a
defect, fails the same way every time: it ends in SealFailed, which opens the version again so that
its batches can be sent anew.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pyarrow.parquet as pq
from aiokafka.errors import KafkaError
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError

from adapters.broker import read_range, scan
from adapters.storage import ObjectStore
from domain import chunks, events, topology
from domain import ledger as ledger_fold
from domain.layout import MANIFEST
from domain.settings import Settings
from domain.tables import TABLE_NAMES, empty_frame

log = logging.getLogger(__name__)

# Failures of the parts a seal talks to; TimeoutError and ConnectionError are OSErrors.
RETRYABLE = (KafkaError, OSError, BotoCoreError, ClientError, S3UploadFailedError)
T = TypeVar("T")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


async def until_done(attempt: Callable[[], Awaitable[T]], what: str, sleep=asyncio.sleep,
                     first_delay_s: float = 1.0, max_delay_s: float = 60.0) -> T:
    """Run `attempt` until it returns, waiting longer after each retryable failure (doubling up to
    max_delay_s); any other error is raised at once."""
    delay = first_delay_s
    failures = 0
    while True:
        try:
            return await attempt()
        except RETRYABLE as error:
            failures += 1
            log.warning("%s failed (%d times so far: %s: %s); retrying in %.0f s",
                        what, failures, type(error).__name__, error, delay)
            await sleep(delay)
            delay = min(delay * 2, max_delay_s)


async def version_ledger(settings: Settings, version: str, first: int, last: int
                         ) -> tuple[ledger_fold.VersionLedger | None, ledger_fold.Outcome | None]:
    """The version's ledger after the control event at `last`, and that event's outcome."""
    ledger, outcome = None, None
    wanted = version.encode()
    async for offset, key, value in read_range(settings, topology.INGEST_CONTROL.name, first, last):
        if key != wanted:
            continue
        try:
            event = events.from_bytes(value)
        except events.UnknownEvent:
            continue
        ledger, outcome = ledger_fold.apply(ledger, offset, event)
    return ledger, outcome


async def already_sealed(settings: Settings, version: str, sequence: int) -> bool:
    """Whether this commit's VersionSealed is on the log (announced before a restart cut the processor
    short of acknowledging the commit)."""
    wanted = version.encode()
    async for _, key, value in read_range(settings, topology.VERSIONS.name):
        if key != wanted:
            continue
        try:
            if getattr(events.from_bytes(value), "sequence", None) == sequence:
                return True
        except events.UnknownEvent:
            continue
    return False


async def seal_commit(settings: Settings, store: ObjectStore, version: str, first: int,
                      commit: int) -> events.VersionSealed | events.SealFailed | None:
    """What the commit at offset `commit` makes of the version (whose first control event is at
    `first`): VersionSealed, SealFailed, or None when there is nothing to do (a repeated commit, or
    one sealed already). Raises the retryable failures for `until_done`."""
    try:
        ledger, outcome = await version_ledger(settings, version, first, commit)
        if ledger is None or outcome is not ledger_fold.Outcome.COMMITTED:
            return None
        if await already_sealed(settings, version, commit):
            log.info("version %s: commit %d was sealed before a restart", version, commit)
            return None
        sealed = await seal(settings, store, ledger)
        sealed.to_bytes()  # bounded by construction; a defect there fails this version, not the processor
        return sealed
    except RETRYABLE:
        raise
    except Exception as error:  # the version's data, or a defect: the same seal would fail again
        log.exception("version %s: commit %d cannot be sealed", version, commit)
        return events.SealFailed(version=version, commit_offset=commit, failed_at=_now(),
                                 reason=f"{type(error).__name__}: {error}"[:500])


async def seal(settings: Settings, store: ObjectStore,
               version_ledger: ledger_fold.VersionLedger) -> events.VersionSealed:
    manifest = ledger_fold.manifest(version_ledger, TABLE_NAMES)
    prefix = settings.layout.snapshot(version_ledger.version)
    workdir = Path(tempfile.mkdtemp(prefix=f"seal-{version_ledger.version}-", dir=_tmp_root(settings)))
    try:
        # Uploads in a thread: the processor's event loop keeps its broker connection alive meanwhile,
        # however long the object store takes to answer.
        for table, path in (await _write_tables(settings, version_ledger, workdir)).items():
            await asyncio.to_thread(store.put_file, f"{prefix}/{table}.parquet", path)
        (workdir / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        await asyncio.to_thread(store.put_file, f"{prefix}/{MANIFEST}", workdir / MANIFEST)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    log.info("sealed %s: %s", version_ledger.version,
             {t: m["rows"] for t, m in manifest["tables"].items()})
    return events.VersionSealed(
        version=version_ledger.version,
        sequence=int(version_ledger.commit_offset or 0),
        snapshot_prefix=prefix,
        manifest=manifest,
        sealed_at=_now(),
    )


async def _write_tables(settings: Settings, version_ledger: ledger_fold.VersionLedger,
                        workdir: Path) -> dict[str, Path]:
    """Stream the accepted chunks from the log into one Parquet file per table: one pass over the
    log, one chunk in memory at a time. Superseded (replaced) batches are not read."""
    table_of = {offset: entry.table for entry in version_ledger.batches.values() for offset in entry.chunk_offsets}
    writers: dict[str, pq.ParquetWriter] = {}
    paths: dict[str, Path] = {}
    try:
        async for offset, payload in scan(settings, topology.INGEST_DATA.name, set(table_of)):
            table = table_of[offset]
            arrow = chunks.decode(payload).to_arrow()
            if table not in writers:
                paths[table] = workdir / f"{table}.parquet"
                writers[table] = pq.ParquetWriter(paths[table], arrow.schema, compression="zstd")
            writers[table].write_table(arrow.cast(writers[table].schema))
    finally:
        for writer in writers.values():
            writer.close()
    for table in version_ledger.tables_received():
        if table not in paths:  # batches with no rows: still a typed, empty file
            paths[table] = workdir / f"{table}.parquet"
            empty_frame(table).write_parquet(paths[table])
    return paths


def _tmp_root(settings: Settings) -> Path:
    root = settings.layout.scratch()
    root.mkdir(parents=True, exist_ok=True)
    return root
