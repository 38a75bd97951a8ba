"""Integration fixtures: find the running local stack (broker, S3 server, MLflow server, API).

`make up` (scripts/stack.sh) writes every address to var/stack/env and `make test` exports it. When
pytest is run by hand without those variables, they are read from that file here, before any test
calls domain.settings.settings() (which caches them). Variables already set always win, so the same
tests run against another stack (e.g. docker compose) by exporting its addresses.
"""
from __future__ import annotations

import os
import shlex
import socket
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
STACK_ENV = Path(os.environ.get("LAL_STACK_ENV", ROOT / "var" / "stack" / "env"))


def read_stack_env(path: Path = STACK_ENV) -> dict[str, str]:
    """`export NAME=value` lines, as scripts/stack.sh writes them."""
    found: dict[str, str] = {}
    if not path.exists():
        return found
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("export "):
            line = line[len("export "):]
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, value = line.split("=", 1)
        parts = shlex.split(value) or [""]
        found[name.strip()] = parts[0]
    return found


for _name, _value in read_stack_env().items():
    os.environ.setdefault(_name, _value)


def _reachable(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _require(name: str, address: str, host: str | None, port: int | None) -> None:
    if not host or not port or not _reachable(host, port):
        pytest.fail(f"{name} is not reachable at {address}: start the stack with `make up` "
                    f"(or export the variables of a running one; see {STACK_ENV})")


@pytest.fixture(scope="session")
def broker_address() -> str:
    """host:port of the Kafka-compatible broker (LAL_BROKER)."""
    address = os.environ.get("LAL_BROKER", "127.0.0.1:9092")
    host, _, port = address.rpartition(":")
    _require("the broker", address, host, int(port) if port.isdigit() else None)
    return address


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """URL of the S3 server (LAL_S3_ENDPOINT)."""
    url = os.environ.get("LAL_S3_ENDPOINT", "")
    parsed = urlparse(url)
    _require("the S3 server", url or "(LAL_S3_ENDPOINT unset)", parsed.hostname, parsed.port or 80)
    return url


@pytest.fixture(scope="session")
def mlflow_uri() -> str:
    """URL of the MLflow tracking server (MLFLOW_TRACKING_URI)."""
    url = os.environ.get("MLFLOW_TRACKING_URI", "")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https"):
        pytest.fail(f"MLFLOW_TRACKING_URI={url!r} is not a tracking server: start the stack with `make up`")
    _require("the MLflow server", url, parsed.hostname, parsed.port or 80)
    return url


@pytest.fixture(scope="session")
def stack(broker_address, s3_endpoint, mlflow_uri, api_url) -> dict[str, str]:
    """Every address of the running stack, each checked to answer."""
    return {"broker": broker_address, "s3": s3_endpoint, "mlflow": mlflow_uri, "api": api_url}
