"""End-to-end test order (the generated series is the shared `series` fixture of tests/conftest.py)."""
from __future__ import annotations


def pytest_collection_modifyitems(items):
    """The series test checks what only a fresh stack shows (model "1.0" on its first version, a new
    offer answered 404 until its version is processed), so it runs before every other test that
    sends versions of the same generated world (the dashboard test sends two of them)."""
    items.sort(key=lambda item: not item.nodeid.startswith("tests/e2e/test_series.py"))
