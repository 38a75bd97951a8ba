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
