"""Helpers for tests that talk to the running stack."""
from __future__ import annotations

import time

import httpx


def wait_idle(api: httpx.Client, timeout: float = 600) -> dict:
    """Poll /status until the pipeline has finished every committed version."""
    deadline = time.monotonic() + timeout
    status: dict = {}
    while time.monotonic() < deadline:
        status = api.get("/status").json()
        if status["pipeline_status"] in ("idle", "failed"):
            return status
        time.sleep(1)
    raise AssertionError(f"pipeline not idle after {timeout}s: {status}")
