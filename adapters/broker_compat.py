"""A shim for brokers that answer an empty fetch at once (noida-db, used by the local stack).

A Kafka broker holds a fetch with no new records for up to fetch.max.wait.ms; some in-memory
Kafka-compatible brokers answer it immediately, and aiokafka's background fetcher then re-asks in
a tight loop that burns a whole core per consumer. With LAL_BROKER_EMPTY_FETCH_WAIT_MS set, an
empty fetch is followed by that pause, as a real broker would have held it. Not set with Redpanda.
"""
from __future__ import annotations

import asyncio
import os
import time

from aiokafka.consumer.fetcher import Fetcher

_installed = False


def install() -> None:
    global _installed
    wait_ms = int(os.environ.get("LAL_BROKER_EMPTY_FETCH_WAIT_MS", "0") or 0)
    if _installed or wait_ms <= 0:
        return
    original = Fetcher._proc_fetch_request

    async def fetch_then_wait_if_empty(self, assignment, node_id, request):
        started = time.monotonic()
        got_records = await original(self, assignment, node_id, request)
        if not got_records:
            try:
                await asyncio.sleep(max(0.0, wait_ms / 1000 - (time.monotonic() - started)))
            except asyncio.CancelledError:  # the consumer is closing: as the original, end quietly
                return False
        return got_records

    Fetcher._proc_fetch_request = fetch_then_wait_if_empty
    _installed = True
