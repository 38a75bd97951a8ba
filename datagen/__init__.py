"""Deterministic generator of data versions with real structure, and the HTTP sender.

`generate_series(out_dir, scale, seed, scenarios, mode)` writes v1, v2, ... as typed parquet
directories (the snapshot layout of docs/design.md) with their held-out future in `_holdout/`.
"""
from datagen.scenarios import ALL as SCENARIOS
from datagen.series import generate_series

__all__ = ["generate_series", "SCENARIOS"]
