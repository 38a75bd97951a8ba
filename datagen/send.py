"""Send a generated version over HTTP, as a client of the service would: batches, then a commit."""
from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import polars as pl


def _records(frame: pl.DataFrame) -> list[dict]:
    """JSON with real types: ints as ints, dates as ISO strings, missing as null."""
    return frame.with_columns(pl.col(pl.Date).dt.strftime("%Y-%m-%d")).to_dicts()


def iter_batches(version_dir: Path, batch_rows: int = 50_000) -> Iterator[tuple[str, int, int, list[dict]]]:
    """(table, batch_id, total_batches, records), tables interleaved batch by batch."""
    frames = {path.stem: pl.read_parquet(path) for path in sorted(Path(version_dir).glob("*.parquet"))}
    totals = {table: max(1, -(-frame.height // batch_rows)) for table, frame in frames.items()}
    for batch_id in range(1, max(totals.values(), default=0) + 1):
        for table, frame in frames.items():
            if batch_id <= totals[table]:
                yield table, batch_id, totals[table], _records(frame.slice((batch_id - 1) * batch_rows, batch_rows))


def send_version(base_url: str, version_dir: Path, version_name: str | None = None, batch_rows: int = 50_000,
                 client: httpx.Client | None = None, concurrency: int = 4) -> dict:
    """Post every batch (honouring the manifest's drop_batches), then commit; return the commit answer."""
    version_dir = Path(version_dir)
    manifest = json.loads((version_dir / "manifest.json").read_text())
    version = version_name or manifest["version"]
    dropped = {table: set(ids) for table, ids in manifest.get("drop_batches", {}).items()}
    own = client is None
    client = client or httpx.Client(base_url=base_url, timeout=300)
    try:
        def post(batch):
            table, batch_id, total, records = batch
            body = orjson.dumps({"version": version, "table": table, "batch_id": batch_id,
                                 "total_batches": total, "records": records})
            response = client.post("/data/batch", content=body, headers={"content-type": "application/json"})
            response.raise_for_status()

        batches = [b for b in iter_batches(version_dir, batch_rows) if b[1] not in dropped.get(b[0], set())]
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(post, batches))
        commit = client.post("/data/commit", json={"version": version})
        commit.raise_for_status()
        return commit.json()
    finally:
        if own:
            client.close()
