"""Ingest throughput over HTTP: a generated version sent as batches, then committed.

    python bench/ingest_http.py --url http://127.0.0.1:8080 --scale small --batch-rows 50000 --concurrency 4
Prints records/s for the batches (answered 200 = durable on the log), and the time from commit to an
idle pipeline when --wait is given.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import datagen  # noqa: E402
from datagen.send import iter_batches  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--scale", default="small")
    parser.add_argument("--batch-rows", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--wait", action="store_true", help="also time commit -> pipeline idle")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    started = time.monotonic()
    version_dir, = datagen.generate_series(work, args.scale, 42, ["base"])
    print(f"generated {args.scale} in {time.monotonic() - started:.1f}s")
    bodies = []
    version = f"bench-{uuid.uuid4().hex[:6]}"
    for table, batch_id, total, records in iter_batches(version_dir, args.batch_rows):
        bodies.append((len(records), orjson.dumps({"version": version, "table": table, "batch_id": batch_id,
                                                    "total_batches": total, "records": records})))
    total_records = sum(n for n, _ in bodies)
    total_bytes = sum(len(b) for _, b in bodies)
    with httpx.Client(base_url=args.url, timeout=600) as client:
        def post(item):
            response = client.post("/data/batch", content=item[1], headers={"content-type": "application/json"})
            response.raise_for_status()

        started = time.monotonic()
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(post, bodies))
        elapsed = time.monotonic() - started
        print(f"ingest: {total_records} records, {total_bytes / 1e6:.0f} MB JSON, {len(bodies)} batches in "
              f"{elapsed:.1f}s = {total_records / elapsed:,.0f} records/s ({args.concurrency} concurrent clients)")
        started = time.monotonic()
        commit = client.post("/data/commit", json={"version": version}).json()
        print(f"commit answered in {time.monotonic() - started:.2f}s: {len(commit['tables_received'])} tables")
        if args.wait:
            while client.get("/status").json()["pipeline_status"] == "running":
                time.sleep(1)
            print(f"commit -> idle: {time.monotonic() - started:.0f}s; status {client.get('/status').json()}")


if __name__ == "__main__":
    main()
