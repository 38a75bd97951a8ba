"""Ingest throughput over HTTP, and the time from commit to an idle pipeline, with process memory.

    python bench/ingest_http.py --url http://127.0.0.1:8080 --scale small --batch-rows 50000 --concurrency 4
    python bench/ingest_http.py --url ... --version-dir /data/full/v1 --wait --stack-dir var/stack

Bodies are written as the project's sender writes them (polars); --client-json orjson writes them from
Python records instead, as the figures before 2026-12-01 were measured (3x the client's CPU).

Prints records/s for the batches (answered 200 = durable on the log). With --wait, also the time
from commit to `pipeline_status` idle, the stages' durations (from /status and /events), and with
--stack-dir the peak memory (PSS and its anonymous part) of each service process tree of the local stack (pids/*.pid),
sampled every second during the whole run.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import datagen  # noqa: E402
from datagen.send import batch_body, iter_batches, iter_frames  # noqa: E402

SERVICES = ("worker", "pipeline", "api")


def proportional_memory(pid: int) -> tuple[int, int]:
    """(PSS, anonymous PSS) in bytes from /proc/PID/smaps_rollup. PSS splits pages shared between
    processes (a fork server and its stage children, mapped files), so a tree's sum counts each page
    once, as a container's memory limit does; the anonymous part is what the kernel cannot drop and
    read again from a file (the memmapped serving bundle can be)."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            name, _, rest = line.partition(":")
            if name in ("Pss", "Pss_Anon"):
                fields[name] = int(rest.split()[0]) * 1024
    return fields["Pss"], fields["Pss_Anon"]


class MemorySampler(threading.Thread):
    """Peak PSS and anonymous PSS per service process tree (the process and its children, e.g. the
    pipeline's stage processes), sampled once a second."""

    def __init__(self, stack_dir: Path):
        super().__init__(daemon=True)
        self.roots = {name: int((stack_dir / "pids" / f"{name}.pid").read_text())
                      for name in SERVICES if (stack_dir / "pids" / f"{name}.pid").exists()}
        self.peak_mb = {name: (0.0, 0.0) for name in self.roots}
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            for name, pid in self.roots.items():
                try:
                    root = psutil.Process(pid)
                    samples = [proportional_memory(p.pid) for p in [root, *root.children(recursive=True)]]
                except (psutil.Error, OSError):
                    continue
                pss, anon = (sum(values) / 2**20 for values in zip(*samples))
                peak = self.peak_mb[name]
                self.peak_mb[name] = (max(peak[0], pss), max(peak[1], anon))

def stage_events(url: str, version: str) -> list[dict]:
    """The version's StageFinished events, read from the API's /events stream (pipeline topic)."""
    found = []
    with httpx.stream("GET", f"{url}/events", params={"topics": "pipeline", "since": 0}, timeout=60) as response:
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            frame = orjson.loads(line[5:])
            event = frame["event"]
            if event.get("version") != version:
                continue
            if frame["type"] == "StageFinished":
                found.append(event)
            if frame["type"] in ("VersionProcessed", "PipelineFailed"):
                break
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--scale", default="small")
    parser.add_argument("--version-dir", type=Path, default=None, help="an already generated version to send")
    parser.add_argument("--batch-rows", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--wait", action="store_true", help="also time commit -> pipeline idle")
    parser.add_argument("--stack-dir", type=Path, default=None, help="sample the local stack's process memory")
    parser.add_argument("--client-json", choices=("polars", "orjson"), default="polars",
                        help="how this client writes the bodies: polars, as datagen.send (the project's sender) "
                             "does, or orjson over Python records (3x the client's CPU; the earlier figures)")
    args = parser.parse_args()
    version_dir = args.version_dir
    if version_dir is None:
        started = time.monotonic()
        version_dir, = datagen.generate_series(Path(tempfile.mkdtemp()), args.scale, 42, ["base"])
        print(f"generated {args.scale} in {time.monotonic() - started:.1f}s")
    sampler = MemorySampler(args.stack_dir) if args.stack_dir else None
    if sampler:
        sampler.start()
    version = f"bench-{uuid.uuid4().hex[:6]}"

    def bodies():
        # Encoded lazily, a few ahead of the senders: a full-scale version is ~5 GB of JSON.
        if args.client_json == "polars":
            for table, batch_id, total, frame in iter_frames(version_dir, args.batch_rows):
                yield frame.height, batch_body(version, table, batch_id, total, frame)
            return
        for table, batch_id, total, records in iter_batches(version_dir, args.batch_rows):
            yield len(records), orjson.dumps({"version": version, "table": table, "batch_id": batch_id,
                                              "total_batches": total, "records": records})

    totals = {"records": 0, "bytes": 0, "batches": 0, "seconds": 0.0}
    with httpx.Client(base_url=args.url, timeout=600) as client:
        def post(item):
            rows, body = item
            started = time.monotonic()
            response = client.post("/data/batch", content=body, headers={"content-type": "application/json"})
            response.raise_for_status()
            return rows, len(body), time.monotonic() - started

        started = time.monotonic()
        with ThreadPoolExecutor(args.concurrency) as pool:
            for rows, size, _ in pool.map(post, bodies()):
                totals["records"] += rows
                totals["bytes"] += size
                totals["batches"] += 1
        elapsed = time.monotonic() - started
        print(f"ingest: {totals['records']} records, {totals['bytes'] / 1e6:.0f} MB JSON, {totals['batches']} "
              f"batches in {elapsed:.1f}s = {totals['records'] / elapsed:,.0f} records/s "
              f"({args.concurrency} concurrent clients; JSON written by this client with {args.client_json}, "
              "included)")
        started = time.monotonic()
        commit = client.post("/data/commit", json={"version": version}).json()
        print(f"commit answered in {time.monotonic() - started:.2f}s: {len(commit['tables_received'])} tables")
        if args.wait:
            while True:
                status = client.get("/status").json()
                if status["pipeline_status"] != "running":
                    break
                time.sleep(2)
            print(f"commit -> {status['pipeline_status']}: {time.monotonic() - started:.0f}s; status {status}")
            for event in stage_events(args.url, version):
                print(f"  {event['stage']:<9} {event['duration_s']:7.1f}s  {event['summary']}")
    if sampler:
        sampler.stopped.set()
        sampler.join()
        print("peak memory (process tree, PSS / anonymous part): " + ", ".join(
            f"{name} {pss:,.0f} / {anon:,.0f} MB" for name, (pss, anon) in sampler.peak_mb.items()))


if __name__ == "__main__":
    main()
