"""End-to-end fixtures: a generated series of versions to send over HTTP."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def series(tmp_path_factory) -> list[Path]:
    import datagen

    out = tmp_path_factory.mktemp("series")
    return datagen.generate_series(out, scale="tiny", seed=7,
                                   scenarios=["base", "same", "corrupt_shuffled_users", "drift_behaviour", "same",
                                              "drift_clients"],
                                   mode="increment")


def pytest_collection_modifyitems(items):
    """The series test checks what only a fresh stack shows (model "1.0" on its first version, a new
    offer answered 404 until its version is processed), so it runs before every other test that
    sends versions of the same generated world (the dashboard test sends two of them)."""
    items.sort(key=lambda item: not item.nodeid.startswith("tests/e2e/test_series.py"))
