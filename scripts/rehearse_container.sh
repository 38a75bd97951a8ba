#!/usr/bin/env bash
# The container build, rehearsed without a Docker engine: what the Dockerfile and docker-compose.yml
# describe is read from them (never retyped here) and carried out on this machine.
#
#   scripts/rehearse_container.sh lint    hadolint on the Dockerfile, `docker-compose config -q` (default
#                                         and every profile)
#   scripts/rehearse_container.sh build   the image's Python environment: a clean venv in which the
#                                         Dockerfile's own dependency RUN line is executed (requirements.txt
#                                         + scripts/constraints.txt, runtime only), no compiler reachable;
#                                         then checked (pip check, every package pinned by the lock, no
#                                         dev/test tool) and measured (du)
#   scripts/rehearse_container.sh run     a clean root holding what the Dockerfile COPYs (build context
#                                         filtered by .dockerignore); compose's api service started in it
#                                         with compose's exact command and environment (Dockerfile ENV +
#                                         compose env), its peers (redpanda, minio, mlflow) mapped to the
#                                         running local stack; the Dockerfile's HEALTHCHECK must pass
#                                         (GET /ready) and the service must connect to the log and S3
#   scripts/rehearse_container.sh all     lint, build, run (default)
#
# The venv is cached like the image's dependency layer, under LAL_REHEARSE_CACHE (~/.cache/lal-rehearse):
# rebuilt when the Dockerfile's RUN line, requirements.txt or the Python version change, or when it no
# longer matches scripts/constraints.txt; pip's cache (PIP_CACHE_DIR) is reused. Dev tools (hadolint, docker-compose, the YAML/Dockerfile
# parsers) come from ${VENV:-.venv}; the stack is ${LAL_STACK_DIR:-var/stack} (`make up`).
# Differences from a real container, on purpose: the dependency line runs without --no-cache-dir
# (the cache changes speed, not what is installed); the container's port is published on a free
# host port (Docker's `ports:` does the same); absolute paths in the environment (LAL_WORK_DIR) are
# placed under the clean root; the process runs as the invoking user (the pyenv/Debian Python of
# this machine is not readable by uid 10001).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${VENV:-.venv}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
TOOLS_PY="$VENV/bin/python"
BASE_PYTHON="${LAL_REHEARSE_PYTHON:-$(command -v python3.11 || command -v python3)}"
CACHE="${LAL_REHEARSE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lal-rehearse}"
WORK="${LAL_REHEARSE_DIR:-$ROOT/var/rehearse}"
STACK_ENV="${LAL_STACK_DIR:-$ROOT/var/stack}/env"
SERVICE="${LAL_REHEARSE_SERVICE:-api}"
READY_TIMEOUT="${LAL_REHEARSE_READY_TIMEOUT:-120}"
MAX_ENV_MB="${LAL_REHEARSE_MAX_MB:-3500}"  # the image must stay under 4 GB; the base image is ~150 MB

log() { printf '[rehearse] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ -x "$TOOLS_PY" ]] || die "no dev tools at $TOOLS_PY: run \`make install\` (or set VENV=...)"

# helper SUBCOMMAND ARGS...: the parts that read the Dockerfile, .dockerignore and docker-compose.yml.
helper() {
    "$TOOLS_PY" - "$@" <<'PY'
import hashlib, json, os, re, shlex, shutil, socket, subprocess, sys
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import yaml
from dockerfile_parse import DockerfileParser

ROOT = Path.cwd()
DOCKERFILE = DockerfileParser(str(ROOT / "Dockerfile"))
# The compose file as `docker compose` resolves it: .env interpolated, ports and volumes in long form.
COMPOSE = json.loads(subprocess.run([str(Path(sys.executable).parent / "docker-compose"), "config", "--format", "json"],
                                    cwd=ROOT, capture_output=True, text=True, check=True).stdout)
# The compose services the app talks to, and the local stack's variable that says where each one is.
PEERS = {"redpanda": "LAL_BROKER", "minio": "LAL_S3_ENDPOINT", "mlflow": "MLFLOW_TRACKING_URI"}
STACK_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def instructions(name):
    return [i for i in DOCKERFILE.structure if i["instruction"] == name]


def deps_run():
    """The RUN line that installs the Python dependencies (the one that runs pip)."""
    runs = [i["value"] for i in instructions("RUN") if re.search(r"\bpip install\b", i["value"])]
    if len(runs) != 1:
        sys.exit(f"expected one `pip install` RUN line in the Dockerfile, found {len(runs)}")
    return runs[0]


def run_env():
    """The ENV in effect at the dependency RUN line (instructions above it), pip's no-cache switch aside."""
    env = {}
    for item in DOCKERFILE.structure:
        if item["instruction"] == "RUN" and item["value"] == deps_run():
            break
        if item["instruction"] == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(item["value"]))
    env.pop("PIP_NO_CACHE_DIR", None)
    return env


def copies():
    """(sources, absolute destination) of every COPY, WORKDIR applied; --chown/--from stripped."""
    workdir, out = PurePosixPath("/"), []
    for item in DOCKERFILE.structure:
        if item["instruction"] == "WORKDIR":
            workdir = workdir / item["value"]
        elif item["instruction"] == "COPY":
            words = [w for w in shlex.split(item["value"]) if not w.startswith("--")]
            if any(w.startswith("--from") for w in shlex.split(item["value"])):
                sys.exit("COPY --from (multi-stage) is not rehearsed")
            *sources, dest = words
            out.append((sources, workdir / dest, dest.endswith("/") or len(sources) > 1))
    return out


def docker_pattern(pattern):
    """One .dockerignore pattern as a regex (Docker's rules: `*` and `?` stay within one path
    segment, `**` spans any number of segments, paths are relative to the context root)."""
    regex, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        else:
            regex += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
            i += 1
    return re.compile(f"^{regex}$")


def ignore_patterns():
    """.dockerignore as (regex, negated) in file order."""
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            patterns.append((docker_pattern(os.path.normpath(line.lstrip("!").strip().strip("/"))), negated))
    return patterns


def excluded(relative, patterns):
    """Docker's matching: a path is out if it, or a directory above it, matches; the last match wins."""
    parts = PurePosixPath(relative).parts
    out = False
    for regex, negated in patterns:
        if any(regex.match("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            out = not negated
    return out


def stage(root):
    """Copy what the Dockerfile COPYs from the build context into root (a fresh directory)."""
    root = Path(root)
    shutil.rmtree(root, ignore_errors=True)
    patterns = ignore_patterns()
    files = 0
    for sources, dest, into_dir in copies():
        target = root / dest.relative_to("/")
        for source in sources:
            src = ROOT / source
            if not src.exists() or excluded(source, patterns):
                sys.exit(f"COPY {source}: not in the build context (missing, or left out by .dockerignore)")
            for path in ([src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())):
                relative = path.relative_to(ROOT).as_posix()
                if excluded(relative, patterns):
                    continue
                if src.is_file():
                    out = target / src.name if into_dir else target
                else:
                    out = target / path.relative_to(src)
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, out)
                files += 1
    print(files)


def venv_key(python_version):
    """What decides the image's dependency layer, bar the lock file (checked against it instead)."""
    digest = hashlib.sha256(deps_run().encode())
    digest.update((ROOT / "requirements.txt").read_bytes())
    digest.update(python_version.encode())
    return digest.hexdigest()[:16]


def install_command(root):
    """The dependency RUN line as this machine runs it: /tmp/deps inside the clean root, pip's cache on."""
    line = deps_run().replace("--no-cache-dir", "")
    return re.sub(r"(?<![\w/])/tmp/", f"{root}/tmp/", line)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_plan(root, stack_env_file, service):
    """Command, environment and published port of one compose service, mapped onto the local stack."""
    stack = dict(re.findall(r"^export (\w+)=(.*)$", Path(stack_env_file).read_text(), re.M))
    peers = {}
    for name, variable in PEERS.items():
        url = urlparse(stack[variable] if "://" in stack[variable] else f"tcp://{stack[variable]}")
        peers[name] = f"{url.hostname}:{url.port}"
    spec = COMPOSE["services"][service]
    env = dict(DOCKERFILE.envs)                       # ENV of the image, then compose's environment
    env.update({k: str(v) for k, v in (spec.get("environment") or {}).items()})
    host_port = free_port()
    container_port = None
    for mapping in spec.get("ports") or []:
        container_port = str(mapping["target"])
    for key, value in env.items():
        for peer in re.findall(r"(?:^|//)([a-z][\w-]*):\d+", value):
            if peer in COMPOSE["services"] and peer not in PEERS:
                sys.exit(f"{key}={value}: compose service {peer} has no stand-in in the local stack")
        for peer, address in peers.items():
            value = re.sub(rf"(^|//){peer}:\d+", rf"\g<1>{address}", value)
        if value.startswith("/"):
            value = f"{root}{value}"
        env[key] = value
    # The local S3 server has its own users: the stack's credentials stand in for the application's.
    for key in STACK_CREDENTIALS:
        env[key] = stack[key]
    if container_port is not None:
        assert env.get("PORT") == container_port, f"compose publishes {container_port}, the app listens on {env.get('PORT')}"
        env["PORT"] = str(host_port)
    healthcheck = next((i["value"] for i in instructions("HEALTHCHECK")), "")
    health_cmd = json.loads(healthcheck[healthcheck.index("CMD") + 3:]) if "CMD" in healthcheck else None
    workdir = PurePosixPath("/")
    for item in instructions("WORKDIR"):
        workdir = workdir / item["value"]
    # Compose mounts the service's volumes there; in the clean root they are empty directories.
    volumes = [f"{root}{mount['target']}" for mount in spec.get("volumes") or []]
    return {"command": spec.get("command") or json.loads(instructions("CMD")[-1]["value"]), "env": env,
            "workdir": f"{root}{workdir}", "port": env.get("PORT"), "healthcheck": health_cmd, "volumes": volumes}


command, args = sys.argv[1], sys.argv[2:]
if command == "stage":
    stage(*args)
elif command == "venv-key":
    print(venv_key(*args))
elif command == "run-env":
    print("\n".join(f"{k}={v}" for k, v in run_env().items()))
elif command == "install-command":
    print(install_command(*args))
elif command == "dev-only":
    # packages requirements-dev.txt adds to the runtime (by their requirement names)
    names = [re.split(r"[<>=!~\[; ]", l.strip())[0] for l in (ROOT / "requirements-dev.txt").read_text().splitlines()
             if l.strip() and not l.startswith(("#", "-"))]
    print("\n".join(n.lower().replace("_", "-") for n in names))
elif command == "plan":
    json.dump(service_plan(*args), sys.stdout)
else:
    sys.exit(f"unknown helper command {command}")
PY
}

cmd_lint() {
    log "hadolint Dockerfile"
    "$VENV/bin/hadolint" Dockerfile
    log "docker-compose config -q (default, and with every profile)"
    "$VENV/bin/docker-compose" config -q
    "$VENV/bin/docker-compose" --profile "*" config -q
}

python_version() { "$BASE_PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])'; }

# Reused when it was built by the same RUN line from the same requirements.txt and Python, and still
# holds exactly what the lock file pins for it (checked in check_venv); otherwise built again.
venv_dir() { echo "$CACHE/venv-py$(python_version)"; }

up_to_date() {  # venv -> 0 when pip, offline, finds nothing of requirements.txt + lock left to install
    local venv="$1" out
    out="$(cd "$ROOT" && "$venv/bin/python" -m pip install --no-index --dry-run --disable-pip-version-check \
        -r requirements.txt -c scripts/constraints.txt 2>&1)" || { log "$out"; return 1; }
    if grep -q '^Would install' <<<"$out"; then log "$(grep '^Would install' <<<"$out")"; return 1; fi
}

cmd_build() {
    local venv key
    venv="$(venv_dir)"
    key="$(helper venv-key "$(python_version)")"
    if [[ "$(cat "$venv/.complete" 2>/dev/null)" == "$key" ]] && up_to_date "$venv"; then
        log "image environment cached: $venv (same RUN line, requirements.txt and Python; the lock still holds)"
    else
        rm -rf "$venv" "$WORK/build"
        mkdir -p "$CACHE" "$WORK/build"
        log "building the image environment in $venv (Python $(python_version); Dockerfile: $(grep -m1 '^FROM' Dockerfile))"
        "$BASE_PYTHON" -m venv "$venv"
        helper stage "$WORK/build" >/dev/null  # the COPY to /tmp/deps the RUN line installs from
        local line; line="$(helper install-command "$WORK/build")"
        log "RUN $line"
        local -a run_env
        mapfile -t run_env < <(helper run-env)
        local started=$SECONDS
        # The image's ENV at that line; and a slim image has no compiler: every package must come as a
        # wheel (or be pure Python), so C and C++ compilers are made to fail.
        (cd "$WORK/build" && env "${run_env[@]}" PATH="$venv/bin:/usr/bin:/bin" CC=/bin/false CXX=/bin/false \
            bash -euo pipefail -c "$line")
        log "installed in $((SECONDS - started))s"
        echo "$key" >"$venv/.complete"
    fi
    check_venv "$venv"
}

check_venv() {
    local venv="$1"
    "$venv/bin/python" -m pip check >&2 || die "pip check failed in $venv"
    # Every installed distribution is pinned by the lock file, at that version.
    "$venv/bin/python" -m pip freeze --all --exclude-editable | grep -vE '^(pip|setuptools|wheel)==' \
        | "$TOOLS_PY" -c '
import re, sys
pins = {re.split("==", l)[0].lower().replace("_", "-"): l.strip() for l in open(sys.argv[1]) if "==" in l}
bad = [l.strip() for l in sys.stdin if pins.get(l.split("==")[0].lower().replace("_", "-")) != l.strip()]
sys.exit(f"not as pinned by {sys.argv[1]}: {bad}" if bad else 0)' scripts/constraints.txt
    local tool present=()
    while read -r tool; do
        "$venv/bin/python" -m pip show -q "$tool" >/dev/null 2>&1 && present+=("$tool")
    done < <(helper dev-only)
    ((${#present[@]} == 0)) || die "dev/test tools in the image environment: ${present[*]}"
    local mb site_mb
    mb="$(du -sm "$venv" | cut -f1)"
    site_mb="$(du -sm "$venv"/lib/python*/site-packages | cut -f1)"
    log "image environment: ${mb} MB installed (site-packages ${site_mb} MB), $("$venv/bin/python" -m pip list 2>/dev/null | tail -n +3 | wc -l) packages"
    ((mb < MAX_ENV_MB)) || die "the environment is ${mb} MB: with the base image it would pass 4 GB"
}

cmd_run() {
    [[ -f "$STACK_ENV" ]] || die "no $STACK_ENV: start the local stack first (\`make up\`)"
    local venv; venv="$(venv_dir)"
    [[ -f "$venv/.complete" ]] || die "no image environment at $venv: run \`$0 build\` first"
    local root="$WORK/root"
    local files; files="$(helper stage "$root")"
    log "clean root $root: $files files copied as the Dockerfile's COPY lines say (.dockerignore applied)"
    local plan="$WORK/plan.json"
    helper plan "$root" "$STACK_ENV" "$SERVICE" >"$plan"
    local -a env_args command health
    mapfile -t env_args < <("$TOOLS_PY" -c 'import json, sys; [print(f"{k}={v}") for k, v in json.load(open(sys.argv[1]))["env"].items()]' "$plan")
    mapfile -t command < <("$TOOLS_PY" -c 'import json, sys; print(*json.load(open(sys.argv[1]))["command"], sep="\n")' "$plan")
    mapfile -t health < <("$TOOLS_PY" -c 'import json, sys; print(*json.load(open(sys.argv[1]))["healthcheck"] or [], sep="\n")' "$plan")
    local workdir port
    workdir="$("$TOOLS_PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["workdir"])' "$plan")"
    port="$("$TOOLS_PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["port"])' "$plan")"
    ((${#health[@]})) || die "the Dockerfile has no HEALTHCHECK CMD"
    mkdir -p "$root/tmp" "$root/home/app"
    local -a volumes
    mapfile -t volumes < <("$TOOLS_PY" -c 'import json, sys; print(*json.load(open(sys.argv[1]))["volumes"], sep="\n")' "$plan")
    ((${#volumes[@]} == 0)) || mkdir -p "${volumes[@]}"
    # Nothing of this shell's environment leaks in: only the image's PATH and HOME, plus the plan's env.
    local -a base_env=(env -i "PATH=$venv/bin:/usr/local/bin:/usr/bin:/bin" "HOME=$root/home/app" "${env_args[@]}")
    log "starting compose service $SERVICE: ${command[*]} (port $port; env: $(printf '%s ' "${env_args[@]}"))"
    local out="$WORK/$SERVICE.log"
    (cd "$workdir" && exec setsid "${base_env[@]}" "${command[@]}") >"$out" 2>&1 </dev/null &
    local pid=$!
    stop_service() {
        kill -TERM -- "-$pid" 2>/dev/null || true
        local _
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
        kill -KILL -- "-$pid" 2>/dev/null || true
    }
    trap 'stop_service' EXIT
    local deadline=$((SECONDS + READY_TIMEOUT))
    # The Dockerfile's HEALTHCHECK command, run as Docker would (same env, inside the workdir).
    until (cd "$workdir" && "${base_env[@]}" "${health[@]}") >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || { tail -n 40 "$out" >&2; die "$SERVICE exited before its health check passed"; }
        ((SECONDS < deadline)) || { tail -n 40 "$out" >&2; die "health check not passing after ${READY_TIMEOUT}s"; }
        sleep 1
    done
    log "HEALTHCHECK passes: GET http://127.0.0.1:$port/ready = 200"
    # /ready answers before the broker is reached: also wait until the service has connected to the
    # log and S3 with compose's addresses (its /status leaves "starting").
    local status=""
    until status="$("$TOOLS_PY" -c 'import sys, httpx; print(httpx.get(sys.argv[1], timeout=5).json()["pipeline_status"])' \
            "http://127.0.0.1:$port/status" 2>/dev/null)" && [[ -n "$status" && "$status" != starting ]]; do
        kill -0 "$pid" 2>/dev/null || { tail -n 40 "$out" >&2; die "$SERVICE exited before connecting"; }
        ((SECONDS < deadline)) || { tail -n 40 "$out" >&2; die "$SERVICE did not connect to the stack in ${READY_TIMEOUT}s"; }
        sleep 1
    done
    log "$SERVICE connected to the stack (pipeline_status: $status)"
    stop_service
    trap - EXIT
    log "rehearsal of compose service $SERVICE passed; log: $out"
}

case "${1:-all}" in
    lint) cmd_lint ;;
    build) cmd_build ;;
    run) cmd_run ;;
    all) cmd_lint; cmd_build; cmd_run ;;
    *) echo "usage: $0 [lint|build|run|all]" >&2; exit 2 ;;
esac
