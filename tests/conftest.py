"""Fixtures shared by the integration and end-to-end tests: the running stack's API."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import pytest


@pytest.fixture(scope="session")
def api_url() -> str:
    url = os.environ.get("LAL_API_URL", "http://127.0.0.1:8080")
    try:
        httpx.get(f"{url}/ready", timeout=5).raise_for_status()
    except httpx.HTTPError as error:
        pytest.fail(f"the stack's API is not answering at {url} ({error}): start it with `make up`")
    return url


@pytest.fixture(scope="session")
def api(api_url):
    with httpx.Client(base_url=api_url, timeout=120) as client:
        yield client


@pytest.fixture(scope="session")
def run_id() -> str:
    """Versions are named per test run, so runs against one long-lived stack never collide."""
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def series(tmp_path_factory) -> list[Path]:
    """One generated series (seed 7) for every test that sends versions: on a stack that has served
    it, its versions are valid data again, not a foreign world that validation rightly rejects."""
    import datagen

    out = tmp_path_factory.mktemp("series")
    return datagen.generate_series(out, scale="tiny", seed=7,
                                   scenarios=["base", "same", "corrupt_shuffled_users", "drift_behaviour", "same",
                                              "drift_clients"],
                                   mode="increment")
