"""/lookalike latency at top_n=100 over the catalog's offers: each offer's first (uncached) request,
then repeated requests alone and under mixed load (50 concurrent /lookalike with 20 concurrent
/data/batch), counting errors.

    python bench/lookalike_latency.py --url http://127.0.0.1:8080 --offers DIR/offer.parquet --requests 2000 \
        --sample-offers 300
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import polars as pl


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def run(url: str, queries: list[dict], concurrency: int, load_batches: bool) -> dict:
    latencies: list[float] = []
    errors: list[int] = []
    stop = threading.Event()
    client = httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_connections=100))

    def ask(query):
        started = time.perf_counter()
        response = client.post("/lookalike", json=query)
        latencies.append(time.perf_counter() - started)
        if response.status_code != 200:
            errors.append(response.status_code)

    def writer(index):
        version = f"load-{uuid.uuid4().hex[:6]}-{index}"
        batch = 0
        while not stop.is_set():
            batch += 1
            response = client.post("/data/batch", json={
                "version": version, "table": "merchant", "batch_id": batch, "total_batches": 10_000,
                "records": [{"merchant_id_offer": 10_000_000 + i, "merchant_status": "ACT", "brand_dk": i}
                            for i in range(1000)]})
            if response.status_code != 200:
                errors.append(response.status_code)

    writers = []
    if load_batches:
        writers = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(20)]
        for thread in writers:
            thread.start()
    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(ask, queries))
    elapsed = time.monotonic() - started
    stop.set()
    for thread in writers:
        thread.join()
    client.close()
    ms = [1000 * x for x in latencies]
    return {"requests": len(ms), "rps": len(ms) / elapsed, "p50_ms": percentile(ms, 50), "p95_ms": percentile(ms, 95),
            "p99_ms": percentile(ms, 99), "errors": len(errors)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--offers", required=True, help="offer.parquet of a version the service has processed")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--sample-offers", type=int, default=300,
                        help="offers to use, spread evenly over the file (each one's first request is timed)")
    args = parser.parse_args()
    offers = pl.read_parquet(args.offers).unique(["offer_id", "merchant_id_offer"]).sort("offer_id")
    queries = [{"merchant_id": row["merchant_id_offer"], "offer_id": row["offer_id"], "top_n": 100}
               for row in offers.iter_rows(named=True)]
    queries = queries[::max(1, len(queries) // args.sample_offers)][:args.sample_offers]
    # One request per offer first: keeps the offers the service serves and times each offer's first
    # (uncached) ranking; every later request for that offer is a slice of the cached top 1000.
    cold = []
    with httpx.Client(base_url=args.url, timeout=60) as client:
        servable = []
        for query in queries:
            started = time.perf_counter()
            if client.post("/lookalike", json=query).status_code == 200:
                cold.append(1000 * (time.perf_counter() - started))
                servable.append(query)
    queries = servable
    print(f"{len(queries)} servable offers")
    print("first request per offer (uncached), 1 client:",
          {"requests": len(cold), "p50_ms": percentile(cold, 50), "p95_ms": percentile(cold, 95),
           "p99_ms": percentile(cold, 99)})
    queries = (queries * (args.requests // len(queries) + 1))[:args.requests]
    print("repeated offers, 1 client:", run(args.url, queries[:200], 1, False))
    print("50 concurrent /lookalike:", run(args.url, queries, 50, False))
    print("50 concurrent /lookalike + 20 concurrent /data/batch:", run(args.url, queries, 50, True))


if __name__ == "__main__":
    main()
