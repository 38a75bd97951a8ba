"""Memory and time of typing one large batch, exactly as the API does it (envelope split, records read
and typed a slice at a time, content hash, log chunks), for sizing http.max_batch_body_bytes.

    python bench/ingest_memory.py --mib 128

Builds a transaction batch of about that many MiB of JSON from the generator's small world (written to
a temporary file first, so building it costs this process nothing), then prints the peak resident
memory over the process before the body was read (the body included), as a multiple of the body.
The API's allocator setting (bootstrap.API_ALLOCATOR) is applied, as in the API.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bootstrap import API_ALLOCATOR  # noqa: E402

os.environ.update(API_ALLOCATOR)  # before polars loads


def resident_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def write_body(path: Path, mib: int) -> None:
    """In a child process: a transaction batch of about `mib` MiB, the small world's rows repeated."""
    import datagen
    import orjson
    import polars as pl

    version_dir, = datagen.generate_series(path.parent / "gen", "small", 42, ["base"])
    frame = pl.read_parquet(version_dir / "transaction.parquet").with_columns(pl.col(pl.Date).dt.strftime("%Y-%m-%d"))
    per_row = len(frame.write_json()) / frame.height
    wanted = int(mib * 2**20 / per_row)
    with open(path, "wb") as out:
        out.write(orjson.dumps({"version": "v", "table": "transaction", "batch_id": 1, "total_batches": 1})[:-1])
        out.write(b',"records":[')
        for start in range(0, wanted, frame.height):
            part = frame.head(min(frame.height, wanted - start)).write_json().encode()[1:-1]
            out.write((b"," if start else b"") + part)
        out.write(b"]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "body.json"
        if os.fork() == 0:
            write_body(path, args.mib)
            os._exit(0)
        os.wait()

        from ingest.service import IngestService
        from serving.schemas import split_batch

        class OpenLedger:
            def is_committed(self, version: str) -> bool:
                return False

        service = IngestService(None, OpenLedger(), None, max_chunk_bytes=786_432)
        peak = [0.0]

        def sample() -> None:
            while True:
                peak[0] = max(peak[0], resident_mb())
                time.sleep(0.002)

        threading.Thread(target=sample, daemon=True).start()
        time.sleep(0.05)
        before = peak[0] = resident_mb()
        size = path.stat().st_size / 2**20
        started, cpu = time.monotonic(), time.process_time()
        body = bytearray(path.read_bytes())
        batch, records = split_batch(body)
        del body
        prepared = service._prepare(batch.table, records)
        del records
        elapsed, cpu = time.monotonic() - started, time.process_time() - cpu
    print(f"{size:.0f} MiB body, {prepared.rows:,} records, {len(prepared.payloads)} log messages: "
          f"{elapsed:.1f} s ({cpu:.1f} CPU-s); peak {peak[0] - before:,.0f} MB over the process before the body "
          f"= {(peak[0] - before) / size:.1f}x the body")


if __name__ == "__main__":
    main()
