"""The official contract (../shared/contract/openapi.yml), fuzzed with schemathesis: no 5xx, ever.

Runs once a model is deployed (a 503 before the first model is the documented answer of
/lookalike, and schemathesis counts every 5xx as a server error)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack import wait_idle

pytestmark = pytest.mark.e2e

CONTRACT = Path(__file__).resolve().parents[2].parent / "shared" / "contract" / "openapi.yml"


def test_no_request_gets_a_server_error(api, api_url, series, run_id):
    if not CONTRACT.exists():
        pytest.fail(f"the contract is expected at {CONTRACT}")
    if not api.get("/status").json()["ready"]:
        from datagen.send import send_version

        send_version(api_url, series[0], version_name=f"{run_id}-contract")
        assert wait_idle(api)["ready"], "no model after the first version"
    done = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", str(CONTRACT), "--url", api_url,
         "--checks", "not_a_server_error", "--max-examples", "40", "--seed", "1", "--request-timeout", "60"],
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:]
