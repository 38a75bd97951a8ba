"""Export: a sealed version's tables, from its S3 snapshot (snapshots/<version>/), to local files."""
from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl

from adapters.storage import ObjectStore
from domain.layout import MANIFEST
from domain.settings import Settings

FORMATS = ("csv", "parquet")


def export(config: Settings, version: str, fmt: str, out: Path) -> list[Path]:
    """Write <out>/<table>.<fmt> for every table of the snapshot, and its manifest.json."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    store = ObjectStore(config)
    prefix = config.layout.snapshot(version)
    if not store.exists(f"{prefix}/{MANIFEST}"):  # the sealer writes it last
        raise LookupError(f"version {version!r} has no sealed snapshot at s3://{store.bucket}/{prefix}/")
    out.mkdir(parents=True, exist_ok=True)
    written = [store.get_file(f"{prefix}/{MANIFEST}", out / MANIFEST)]
    tables = [key for key in store.list_keys(prefix + "/") if key.endswith(".parquet")]
    for key in tables:
        name = Path(key).name
        if fmt == "parquet":
            written.append(store.get_file(key, out / name))
            continue
        with tempfile.TemporaryDirectory() as scratch:
            frame = pl.read_parquet(store.get_file(key, Path(scratch) / name))
        target = out / f"{Path(name).stem}.csv"
        frame.write_csv(target)
        written.append(target)
    return written
