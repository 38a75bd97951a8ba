"""Send a generated version over HTTP, as a client of the service would: batches, then a commit.

Every table is cut into batches of `batch_rows` rows; batches of all tables are interleaved (batch 1
of every table, then batch 2, ...) and posted with `concurrency` parallel requests to
`POST {base_url}/data/batch` as {"version", "table", "batch_id" (1-based), "total_batches", "records"};
records are JSON with real types (ints as ints, dates as "YYYY-MM-DD", missing as null). Batches the
manifest lists in "drop_batches" (the missing-batches corruption) are not sent. Then
`POST /data/commit {"version"}`.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import polars as pl


def iter_frames(version_dir: Path, batch_rows: int) -> Iterator[tuple[str, int, int, pl.DataFrame]]:
    """(table, batch_id, total_batches, rows as a frame), tables interleaved batch by batch (drops not applied)."""
    frames = {path.stem: pl.read_parquet(path) for path in sorted(Path(version_dir).glob("*.parquet"))}
    totals = {table: max(1, -(-frame.height // batch_rows)) for table, frame in frames.items()}
    for batch_id in range(1, max(totals.values(), default=0) + 1):
        for table, frame in frames.items():
            if batch_id <= totals[table]:
                yield table, batch_id, totals[table], frame.slice((batch_id - 1) * batch_rows, batch_rows)


def _dates_as_text(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col(pl.Date).dt.strftime("%Y-%m-%d"))


def iter_batches(version_dir: Path | str, batch_rows: int = 50_000) -> Iterator[tuple[str, int, int, list[dict]]]:
    """(table, batch_id, total_batches, records), tables interleaved batch by batch (drops not applied)."""
    for table, batch_id, total, frame in iter_frames(Path(version_dir), batch_rows):
        yield table, batch_id, total, _dates_as_text(frame).to_dicts()


def batch_body(version: str, table: str, batch_id: int, total: int, frame: pl.DataFrame) -> bytes:
    """The request body of one batch, serialised by polars (fast) around a small orjson envelope."""
    head = orjson.dumps({"version": version, "table": table, "batch_id": batch_id, "total_batches": total})
    return head[:-1] + b',"records":' + frame.write_json().encode() + b"}"


def send_version(base_url: str, version_dir: Path | str, version_name: str | None = None, batch_rows: int = 50_000,
                 client: httpx.Client | None = None, concurrency: int = 4) -> dict:
    """Post every batch (honouring the manifest's drop_batches), then commit; return the commit answer."""
    version_dir = Path(version_dir)
    manifest = json.loads((version_dir / "manifest.json").read_text())
    version = version_name or manifest["version"]
    dropped = {table: set(ids) for table, ids in manifest.get("drop_batches", {}).items()}
    own = client is None
    client = client or httpx.Client(base_url=base_url, timeout=300)
    try:
        def post(batch: tuple[str, int, int, pl.DataFrame]) -> None:
            table, batch_id, total, frame = batch
            response = client.post("/data/batch", content=batch_body(version, table, batch_id, total, frame),
                                   headers={"content-type": "application/json"})
            response.raise_for_status()

        batches = (b for b in iter_frames(version_dir, batch_rows) if b[1] not in dropped.get(b[0], set()))
        with ThreadPoolExecutor(concurrency) as pool:
            for _ in pool.map(post, batches):
                pass
        commit = client.post("/data/commit", json={"version": version})
        commit.raise_for_status()
        return commit.json()
    finally:
        if own:
            client.close()
