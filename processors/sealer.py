"""Sealing a committed version: its accepted batches, read back from the log, as one Parquet file per
table in the object store, with a manifest. Deterministic: same log, same files."""
from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from adapters.broker import read_range
from adapters.storage import ObjectStore
from domain import events, topology
from domain.settings import Settings
from domain.tables import TABLE_NAMES, TABLES
from ingest import chunks
from processors import ledger as ledger_fold

log = logging.getLogger(__name__)


def snapshot_prefix(store: ObjectStore, version: str) -> str:
    return store.key("snapshots", version)


async def seal(settings: Settings, store: ObjectStore, version_ledger: ledger_fold.VersionLedger) -> events.VersionSealed:
    manifest = ledger_fold.manifest(version_ledger, TABLE_NAMES)
    prefix = snapshot_prefix(store, version_ledger.version)
    workdir = Path(tempfile.mkdtemp(prefix=f"seal-{version_ledger.version}-", dir=_tmp_root(settings)))
    try:
        for table in manifest["tables"]:
            entries = sorted((e for e in version_ledger.batches.values() if e.table == table),
                             key=lambda e: e.batch_id)
            path = workdir / f"{table}.parquet"
            await _write_table(settings, table, entries, path)
            store.put_file(f"{prefix}/{table}.parquet", path)
        (workdir / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
        store.put_file(f"{prefix}/manifest.json", workdir / "manifest.json")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    log.info("sealed %s: %s", version_ledger.version,
             {t: m["rows"] for t, m in manifest["tables"].items()})
    return events.VersionSealed(
        version=version_ledger.version,
        sequence=int(version_ledger.commit_offset or 0),
        snapshot_prefix=prefix,
        manifest=manifest,
        sealed_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
    )


async def _write_table(settings: Settings, table: str, entries: list[ledger_fold.BatchEntry], path: Path) -> None:
    """Stream the batches' chunks into one Parquet file, batch by batch, so memory stays one batch."""
    schema = None
    writer: pq.ParquetWriter | None = None
    try:
        for entry in entries:
            payloads = await read_range(settings, topology.INGEST_DATA.name, entry.chunk_offsets)
            for offset in entry.chunk_offsets:
                arrow = chunks.decode(payloads[offset]).to_arrow()
                if writer is None:
                    schema = arrow.schema
                    writer = pq.ParquetWriter(path, schema, compression="zstd")
                writer.write_table(arrow.cast(schema))
        if writer is None:  # no rows at all: still a typed, empty file
            from domain.tables import empty_frame

            empty_frame(table).write_parquet(path)
    finally:
        if writer is not None:
            writer.close()


def _tmp_root(settings: Settings) -> Path:
    root = settings.work_dir / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    return root


__all__ = ["seal", "snapshot_prefix", "TABLES"]
