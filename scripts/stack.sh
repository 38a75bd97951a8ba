#!/usr/bin/env bash
# The local stack without Docker: broker (noida-db, Kafka-compatible), S3 (moto_server or weed mini),
# MLflow server, then the service's own processes (provision, Faust worker, pipeline, API).
#
#   scripts/stack.sh up [--infra-only]   fresh stack (state under var/stack is wiped), waits for /ready
#   scripts/stack.sh down                stops everything it started (idempotent)
#   scripts/stack.sh status              what runs, and whether the API answers
#   scripts/stack.sh env                 the export lines clients need (var/stack/env)
#   scripts/stack.sh smoke               checks broker, Faust, S3 and MLflow of the running stack
#   scripts/stack.sh restart s3|mlflow|worker|pipeline|api
#                                        stops one process (if it still runs) and starts it again
#                                        exactly as `up` does, with the same env and data/work dir
#                                        (s3 with weed and mlflow keep their data on disk; the broker
#                                        is not restartable: noida-db keeps the log in memory)
#
# Python comes from ${VENV:-.venv}. Addresses (all configurable):
#   LAL_STACK_HOST (127.0.0.1)  LAL_BROKER_PORT (9092)  LAL_S3_PORT (9000)  LAL_MLFLOW_PORT (5000)
#   PORT (8080, the API)  LAL_FAUST_WEB_PORT (PORT+1: the Faust worker binds it even with its UI off)
# S3 server: LAL_S3_SERVER=weed (default: SeaweedFS `weed mini`, a real S3 server keeping its data on
# disk under data/weed; it also opens LAL_S3_PORT+1..+4 and their gRPC ports, +10000) or moto (moto's
# in-memory mock, kept for comparison; the unit tests use moto in-process).
# LAL_STACK_DIR (var/stack) holds env, pids/, logs/, data/. LAL_READY_TIMEOUT (180) bounds `up`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${VENV:-.venv}"
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
BIN="$VENV/bin"
PY="$BIN/python"

STATE="${LAL_STACK_DIR:-$ROOT/var/stack}"
case "$STATE" in /*) ;; *) STATE="$ROOT/$STATE" ;; esac
PIDS="$STATE/pids"
LOGS="$STATE/logs"
DATA="$STATE/data"
ENV_FILE="$STATE/env"

HOST="${LAL_STACK_HOST:-127.0.0.1}"
BROKER_PORT="${LAL_BROKER_PORT:-9092}"
S3_PORT="${LAL_S3_PORT:-9000}"
MLFLOW_PORT="${LAL_MLFLOW_PORT:-5000}"
API_PORT="${PORT:-8080}"
FAUST_WEB_PORT="${LAL_FAUST_WEB_PORT:-$((API_PORT + 1))}"
S3_SERVER="${LAL_S3_SERVER:-weed}"
READY_TIMEOUT="${LAL_READY_TIMEOUT:-180}"

# Processes in start order; `down` stops them in reverse.
ALL_PROCS=(broker s3 mlflow worker pipeline api)

log() { printf '[stack] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

pid_of() { [[ -f "$PIDS/$1.pid" ]] && cat "$PIDS/$1.pid" || true; }
alive() { local pid; pid="$(pid_of "$1")"; [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

http_ok() {  # url -> 0 when it answers 2xx (any python will do: `status` may run without the venv)
    local py="$PY"; [[ -x "$py" ]] || py=python3
    "$py" - "$1" <<'EOF' 2>/dev/null
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as r:
        sys.exit(0 if 200 <= r.status < 300 else 1)
except Exception:
    sys.exit(1)
EOF
}

write_env() {
    mkdir -p "$STATE"
    # AWS_* are the S3 server's credentials (moto accepts any; weed mini adopts these at start).
    cat >"$ENV_FILE" <<EOF
export LAL_BROKER=$HOST:$BROKER_PORT
export LAL_S3_ENDPOINT=http://$HOST:$S3_PORT
export LAL_S3_BUCKET=${LAL_S3_BUCKET:-lookalike}
export LAL_DEPLOYMENT=${LAL_DEPLOYMENT:-lal}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-lookalike}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-lookalike-secret}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
export MLFLOW_TRACKING_URI=http://$HOST:$MLFLOW_PORT
export MLFLOW_S3_ENDPOINT_URL=http://$HOST:$S3_PORT
export LAL_BROKER_EMPTY_FETCH_WAIT_MS=${LAL_BROKER_EMPTY_FETCH_WAIT_MS:-100}
export GX_ANALYTICS_ENABLED=false
export DVC_NO_ANALYTICS=1
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
export PYTHONUNBUFFERED=1
export PORT=$API_PORT
export LAL_API_URL=http://$HOST:$API_PORT
export LAL_STACK_DIR=$STATE
export LAL_S3_SERVER=$S3_SERVER
export LAL_S3_PORT=$S3_PORT
export LAL_MLFLOW_PORT=$MLFLOW_PORT
EOF
}

# start NAME CMD... : runs in its own session (process group = pid) so `down` can stop its children.
start() {
    local name="$1"; shift
    log "starting $name: $*"
    PATH="$BIN:$PATH" setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
    echo $! >"$PIDS/$name.pid"
}

fail_with_log() {
    log "$1 failed; last lines of $LOGS/$1.log:"
    tail -n 40 "$LOGS/$1.log" >&2 || true
    exit 1
}

# wait_for NAME TIMEOUT CHECK... : polls CHECK until it succeeds, fails if NAME's process dies.
wait_for() {
    local name="$1" timeout="$2"; shift 2
    local deadline=$((SECONDS + timeout))
    until "$@"; do
        alive "$name" || fail_with_log "$name"
        ((SECONDS < deadline)) || { log "$name not ready after ${timeout}s"; fail_with_log "$name"; }
        sleep 1
    done
}

stop_one() {
    local name="$1" pid
    pid="$(pid_of "$name")"
    [[ -n "$pid" ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        log "stopping $name (pid $pid)"
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 60); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
    fi
    # whatever is left of the group (children that ignored TERM, or the leader itself)
    kill -KILL -- "-$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$PIDS/$name.pid"
}

cmd_down() {
    local i
    for ((i = ${#ALL_PROCS[@]} - 1; i >= 0; i--)); do stop_one "${ALL_PROCS[i]}"; done
    log "stack stopped"
}

check_ports_free() {
    local p
    for p in "$@"; do
        if port_open "$p"; then
            die "port $p on $HOST is already in use (another stack?). Change it: LAL_BROKER_PORT, LAL_S3_PORT, LAL_MLFLOW_PORT, PORT, LAL_FAUST_WEB_PORT"
        fi
    done
}

s3_ports() {  # every port the chosen S3 server opens
    case "$S3_SERVER" in
        moto) echo "$S3_PORT" ;;
        weed) local p; for p in 0 1 2 3 4; do echo "$((S3_PORT + p))" "$((S3_PORT + p + 10000))"; done ;;
    esac
}

start_s3() {
    case "$S3_SERVER" in
        moto)
            start s3 "$BIN/moto_server" -H "$HOST" -p "$S3_PORT"
            ;;
        weed)
            # weed mini opens a master, a volume server, a filer, S3 and an admin UI (each http port
            # has a gRPC twin at +10000): all are packed right above the S3 port. Credentials: it
            # makes AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (exported from the env file) its admin.
            mkdir -p "$DATA/weed"
            start s3 "$BIN/weed" mini -dir="$DATA/weed" -ip="$HOST" -ip.bind="$HOST" \
                -s3.port="$S3_PORT" -master.port="$((S3_PORT + 1))" -volume.port="$((S3_PORT + 2))" \
                -filer.port="$((S3_PORT + 3))" -admin.port="$((S3_PORT + 4))" \
                -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false
            ;;
        *) die "LAL_S3_SERVER must be moto or weed, not $S3_SERVER" ;;
    esac
}

start_mlflow() {  # its runs in a sqlite file on disk, its artifacts in the bucket
    mkdir -p "$DATA/mlflow"
    start mlflow "$BIN/mlflow" server \
        --backend-store-uri "sqlite:///$DATA/mlflow/mlflow.db" \
        --artifacts-destination "s3://$LAL_S3_BUCKET/mlflow" \
        --host "$HOST" --port "$MLFLOW_PORT" --workers 1
}

ensure_bucket() {
    "$PY" -c '
import os, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=os.environ["LAL_S3_ENDPOINT"], config=Config(s3={"addressing_style": "path"}))
try:
    s3.head_bucket(Bucket=os.environ["LAL_S3_BUCKET"])
except Exception:
    s3.create_bucket(Bucket=os.environ["LAL_S3_BUCKET"])
' 2>/dev/null
}

# start_app NAME: one of the service's own processes, each with its own work dir (used by up and restart).
start_app() {
    mkdir -p "$DATA/work/$1"
    case "$1" in
        worker) LAL_WORK_DIR="$DATA/work/worker" start worker "$PY" -m bootstrap worker -l info --web-port "$FAUST_WEB_PORT" ;;
        pipeline) LAL_WORK_DIR="$DATA/work/pipeline" start pipeline "$PY" -m bootstrap pipeline ;;
        api) LAL_WORK_DIR="$DATA/work/api" start api "$PY" -m bootstrap api ;;
        *) die "restart: choose worker, pipeline or api, not '$1'" ;;
    esac
}

cmd_up() {
    local infra_only=0
    for arg in "$@"; do
        case "$arg" in
            --infra-only) infra_only=1 ;;
            *) die "unknown option $arg" ;;
        esac
    done
    [[ -x "$PY" ]] || die "no python at $PY: run \`make install\` (or set VENV=...)"

    cmd_down >/dev/null 2>&1 || true
    rm -rf "$STATE"
    mkdir -p "$PIDS" "$LOGS" "$DATA"
    local ports=("$BROKER_PORT" "$MLFLOW_PORT")
    mapfile -t -O 2 ports < <(s3_ports | tr ' ' '\n')
    ((infra_only)) || ports+=("$API_PORT" "$FAUST_WEB_PORT")
    check_ports_free "${ports[@]}"
    write_env
    set -a; . "$ENV_FILE"; set +a
    # if anything below fails, do not leave half a stack behind
    trap 'rc=$?; if ((rc != 0)); then log "up failed, stopping what was started"; cmd_down; fi' EXIT

    # noida-db: in-memory Kafka API; its data dir only holds its control file.
    start broker "$BIN/noida-db" start --data-dir "$DATA/broker" --host "$HOST" --only kafka --kafka-port "$BROKER_PORT"
    start_s3
    wait_for broker 60 port_open "$BROKER_PORT"
    wait_for s3 60 port_open "$S3_PORT"

    # The bucket first: MLflow stores artifacts in it, and nobody else creates it before provision.
    wait_for s3 60 ensure_bucket

    start_mlflow
    wait_for mlflow 180 http_ok "$MLFLOW_TRACKING_URI/health"

    if ((infra_only)); then
        trap - EXIT
        log "infrastructure up: broker $LAL_BROKER, S3 $LAL_S3_ENDPOINT ($S3_SERVER), MLflow $MLFLOW_TRACKING_URI"
        log "env: $ENV_FILE (source it; LAL_API_URL is where a locally started API would answer)"
        return 0
    fi

    log "provisioning topics and bucket"
    mkdir -p "$DATA/work/provision"
    if ! LAL_WORK_DIR="$DATA/work/provision" timeout 180 "$PY" -m bootstrap provision >"$LOGS/provision.log" 2>&1; then
        log "provision failed; last lines of $LOGS/provision.log:"
        tail -n 40 "$LOGS/provision.log" >&2
        exit 1
    fi

    local started=(worker pipeline api) p
    for p in "${started[@]}"; do start_app "$p"; done

    log "waiting for $LAL_API_URL/ready (up to ${READY_TIMEOUT}s)"
    local deadline=$((SECONDS + READY_TIMEOUT)) p
    until http_ok "$LAL_API_URL/ready"; do
        for p in broker s3 mlflow "${started[@]}"; do alive "$p" || fail_with_log "$p"; done
        ((SECONDS < deadline)) || { log "API not ready after ${READY_TIMEOUT}s"; fail_with_log api; }
        sleep 1
    done
    trap - EXIT
    cat >&2 <<EOF
[stack] ready in ${SECONDS}s:
  API     $LAL_API_URL   (GET /ready, /docs)
  MLflow  $MLFLOW_TRACKING_URI
  S3      $LAL_S3_ENDPOINT ($S3_SERVER, bucket $LAL_S3_BUCKET, key $AWS_ACCESS_KEY_ID)
  broker  $LAL_BROKER (noida-db)
  logs    $LOGS/   env: $ENV_FILE   stop: make down
EOF
}

cmd_status() {
    local p pid rc=0
    for p in "${ALL_PROCS[@]}"; do
        pid="$(pid_of "$p")"
        if [[ -z "$pid" ]]; then printf '%-9s not started\n' "$p"
        elif kill -0 "$pid" 2>/dev/null; then printf '%-9s running (pid %s)\n' "$p" "$pid"
        else printf '%-9s DEAD (pid %s, see %s)\n' "$p" "$pid" "$LOGS/$p.log"; rc=1
        fi
    done
    if [[ -f "$ENV_FILE" ]]; then
        local url; url="$(sed -n 's/^export LAL_API_URL=//p' "$ENV_FILE")"
        if http_ok "$url/ready"; then echo "api ready at $url"; else echo "api NOT ready at $url"; rc=1; fi
    else
        echo "no $ENV_FILE: the stack is not up"; rc=1
    fi
    return $rc
}

cmd_restart() {
    local name="${1:-}"
    [[ "$name" =~ ^(s3|mlflow|worker|pipeline|api)$ ]] || die "restart: choose s3, mlflow, worker, pipeline or api, not '$name'"
    [[ -f "$ENV_FILE" ]] || die "no $ENV_FILE: the stack is not up"
    set -a; . "$ENV_FILE"; set +a
    FAUST_WEB_PORT="${LAL_FAUST_WEB_PORT:-$((PORT + 1))}"
    S3_SERVER="$LAL_S3_SERVER" S3_PORT="$LAL_S3_PORT" MLFLOW_PORT="$LAL_MLFLOW_PORT"
    stop_one "$name"
    if [[ "$name" == s3 ]]; then
        start_s3
        wait_for s3 60 ensure_bucket
    elif [[ "$name" == mlflow ]]; then
        start_mlflow
        wait_for mlflow 180 http_ok "$MLFLOW_TRACKING_URI/health"
    elif [[ "$name" == api ]]; then
        start_app api
        wait_for api "$READY_TIMEOUT" http_ok "$LAL_API_URL/ready"
    else
        start_app "$name"
        sleep 2
        alive "$name" || fail_with_log "$name"
    fi
    log "$name restarted (pid $(pid_of "$name"))"
}

cmd_env() {
    [[ -f "$ENV_FILE" ]] || write_env
    cat "$ENV_FILE"
}

cmd_smoke() {
    [[ -f "$ENV_FILE" ]] || die "no $ENV_FILE: run \`make up\` (or \`make up-infra\`) first"
    set -a; . "$ENV_FILE"; set +a
    local script
    for script in smoke_broker smoke_s3 smoke_mlflow smoke_faust; do
        log "$script"
        SMOKE_WEB_PORT="${SMOKE_WEB_PORT:-$((API_PORT + 2))}" "$PY" "$ROOT/scripts/$script.py"
    done
}

case "${1:-}" in
    up) shift; cmd_up "$@" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    smoke) cmd_smoke ;;
    restart) shift; cmd_restart "$@" ;;
    *) echo "usage: $0 up [--infra-only] | down | status | env | smoke | restart s3|mlflow|worker|pipeline|api" >&2; exit 2 ;;
esac
