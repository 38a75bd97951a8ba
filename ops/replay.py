"""Replay: rebuild every API projection from offset 0 and read the answers the API would give.

The API's own Runtime is started on an empty work dir, so it has no checkpoint and folds every topic
from the start; once it has caught up with the log (and loaded the model that log says is deployed),
the API's own routes are asked in process. Comparing with a running API therefore checks the live
projections and their checkpoints against the log, through exactly the code that serves them.
"""
from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import dictdiffer
import httpx

from domain.settings import Settings
from serving.runtime import Runtime

# The reads that come from the projections (no request body, no side effect).
READS = ("/status", "/model/info", "/experiments", "/monitoring/drift", "/monitoring/data-quality")


async def rebuild(config: Settings, work_dir: Path, timeout: float = 300.0) -> Runtime:
    """A Runtime folded from offset 0 up to the log's current end, its servable model loaded."""
    checkpoints = dataclasses.replace(config, work_dir=work_dir).layout.checkpoints()
    if checkpoints.exists():
        raise FileExistsError(f"{checkpoints} already holds checkpoints: replay needs an empty work dir")
    runtime = Runtime(dataclasses.replace(config, work_dir=work_dir))
    await runtime.start(attempts=10)
    await runtime.ledger_follower.catch_up(timeout)
    await runtime.pipeline_follower.catch_up(timeout)
    deadline = asyncio.get_running_loop().time() + timeout
    while runtime.serving.loading():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"the deployed model did not load within {timeout:.0f}s")
        await asyncio.sleep(0.2)
    return runtime


async def answers(runtime: Runtime) -> dict[str, Any]:
    """GET every read from the API app in process, served by `runtime`."""
    from serving.app import app

    app.state.runtime = runtime
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://replay") as client:
        return {path: (await client.get(path)).raise_for_status().json() for path in READS}


async def replay(config: Settings, work_dir: Path) -> dict[str, Any]:
    runtime = await rebuild(config, work_dir)
    try:
        return await answers(runtime)
    finally:
        await runtime.stop()  # also writes the rebuilt checkpoints under work_dir


def live_answers(url: str) -> dict[str, Any]:
    with httpx.Client(base_url=url, timeout=60) as client:
        return {path: client.get(path).raise_for_status().json() for path in READS}


def differences(live: dict[str, Any], replayed: dict[str, Any]) -> list[str]:
    """One line per difference: where, the live value, the replayed value."""
    lines = []
    for kind, where, change in dictdiffer.diff(live, replayed):
        place = ".".join(str(part) for part in where) if isinstance(where, list) else str(where)
        if kind == "change":
            lines.append(f"{place}: live {change[0]!r} != replayed {change[1]!r}")
        else:  # "add" / "remove": keys or items only one side has
            side = "replayed only" if kind == "add" else "live only"
            lines.extend(f"{place}.{key}: {side} {value!r}" if place else f"{key}: {side} {value!r}"
                         for key, value in change)
    return lines
