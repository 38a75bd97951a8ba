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

from adapters.broker import scan
from adapters.storage import ObjectStore
from domain import events, topology
from domain.settings import Settings
from domain.tables import TABLE_NAMES, empty_frame
from ingest import chunks
from processors import ledger as ledger_fold

log = logging.getLogger(__name__)


def snapshot_prefix(store: ObjectStore, version: str) -> str:
    return store.key("snapshots", version)


async def seal(settings: Settings, store: ObjectStore,
               version_ledger: ledger_fold.VersionLedger) -> events.VersionSealed:
    manifest = ledger_fold.manifest(version_ledger, TABLE_NAMES)
    prefix = snapshot_prefix(store, version_ledger.version)
    workdir = Path(tempfile.mkdtemp(prefix=f"seal-{version_ledger.version}-", dir=_tmp_root(settings)))
    try:
        for table, path in (await _write_tables(settings, version_ledger, workdir)).items():
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
    root = settings.work_dir / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    return root

