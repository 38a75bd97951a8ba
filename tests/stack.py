"""Helpers for tests that talk to the running stack."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx


def kill9(stack_dir: Path, component: str) -> None:
    """kill -9 a local stack process (`scripts/stack.sh` keeps its pid under `<stack_dir>/pids`): its whole
    process group, with no chance to clean up; returns once it is gone (or after 10 s)."""
    pid = int((stack_dir / "pids" / f"{component}.pid").read_text())
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


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
