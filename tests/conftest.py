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


# One world for every test that sends versions (tests/e2e/test_series.py sends it whole): on a stack that
# has served part of it, its versions are valid data again, not a foreign world that validation rightly
# rejects. The first INCREMENTS versions go out with only their new rows, the rest with everything so
# far; each part is a long series of its own (normal, corrupted, normal after it, drifts after normal
# versions, the same drift again, two drifts in a row, a return). The restart tests send the first three.
SERIES = ["base", "same", "corrupt_shuffled_users", "same", "drift_behaviour", "same", "drift_receipts",
          "drift_clients", "return",
          "same", "same", "drift_behaviour", "corrupt_null_keys_confined", "same", "drift_receipts",
          "drift_clients", "return"]
INCREMENTS = 9
SEED = 7


@pytest.fixture(scope="session")
def series(tmp_path_factory) -> list[Path]:
    """The series' first part, each version with only its new rows (seed 7, tiny)."""
    import datagen

    out = tmp_path_factory.mktemp("series")
    return datagen.generate_series(out, scale="tiny", seed=SEED, scenarios=SERIES, mode="increment")[:INCREMENTS]


@pytest.fixture(scope="session")
def everything_so_far(tmp_path_factory) -> list[Path]:
    """The series' second part, each version with everything so far (the same world: the first part's
    versions again, in full, then these)."""
    import datagen

    out = tmp_path_factory.mktemp("everything")
    return datagen.generate_series(out, scale="tiny", seed=SEED, scenarios=SERIES, mode="full")[INCREMENTS:]
