"""A private local stack for fault injection: its own ports, directory and deployment, started and
stopped by scripts/stack.sh, so pausing or killing its parts never touches the stack the other tests
use. Processes are driven by signal: SIGSTOP/SIGCONT (a pause: the process holds its sockets and
answers nothing) and SIGKILL (no chance to clean up), each to the whole process group, then
`stack.sh restart` starts a killed process again exactly as `up` does."""
from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.stack import kill9

ROOT = Path(__file__).resolve().parents[2]
# Where the private stacks live: a known place, so that .ci/run stops any left behind by a killed run.
FAULTS_DIR = Path(os.environ.get("LAL_FAULTS_DIR", ROOT / "var" / "faults"))


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _ports() -> dict[str, str]:
    """Ports for one stack: broker, S3 (weed mini opens S3..S3+4 and each +10000), MLflow, API (+1)."""
    for _ in range(200):
        base = random.randrange(20000, 29000, 20)
        wanted = [base, base + 10, base + 11, base + 12, base + 13, base + 14, base + 2, base + 3, base + 4]
        wanted += [base + 10 + i + 10000 for i in range(5)]
        if all(_free(port) for port in wanted):
            return {"LAL_BROKER_PORT": str(base), "LAL_S3_PORT": str(base + 10), "LAL_MLFLOW_PORT": str(base + 2),
                    "PORT": str(base + 3), "LAL_FAUST_WEB_PORT": str(base + 4)}
    raise RuntimeError("no free ports for a private stack")


class Stack:
    """One private stack: start, stop, and signals to its processes."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.env = {**os.environ, **_ports(), "LAL_STACK_DIR": str(directory), "VENV": sys.prefix,
                    "LAL_S3_SERVER": "weed"}
        self.url = f"http://127.0.0.1:{self.env['PORT']}"

    def _stack(self, *args: str, timeout: float = 300) -> None:
        subprocess.run(["bash", str(ROOT / "scripts" / "stack.sh"), *args], env=self.env, check=True,
                       timeout=timeout, stdout=subprocess.DEVNULL)

    def up(self) -> None:
        self._stack("up")

    def down(self) -> None:
        self._stack("down")

    def pid(self, process: str) -> int:
        return int((self.directory / "pids" / f"{process}.pid").read_text())

    def pause(self, process: str) -> None:
        os.killpg(self.pid(process), signal.SIGSTOP)

    def resume(self, process: str) -> None:
        os.killpg(self.pid(process), signal.SIGCONT)

    def kill9(self, process: str) -> None:
        kill9(self.directory, process)

    def restart(self, process: str) -> None:
        self._stack("restart", process)

    def kill_and_restart(self, process: str) -> None:
        """kill -9, then started again as `stack.sh up` starts it."""
        self.kill9(process)
        self.restart(process)

    def log(self, process: str) -> str:
        return (self.directory / "logs" / f"{process}.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def stacks():
    """Makes private stacks on demand (FAULTS_DIR/<name>); every one is stopped at the end, whatever happened."""
    made: list[Stack] = []

    def make(name: str) -> Stack:
        stack = Stack(FAULTS_DIR / name)
        stack.down()  # one left by an earlier run that was killed
        shutil.rmtree(stack.directory, ignore_errors=True)
        made.append(stack)
        stack.up()
        return stack

    yield make
    for stack in made:
        for process in ("broker", "s3", "mlflow", "worker", "pipeline", "api"):
            try:  # a process left paused would not stop on TERM
                stack.resume(process)
            except (OSError, ValueError):
                pass
        stack.down()


def wait_until(condition, timeout: float, every: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


def status_of(url: str) -> dict | None:
    try:
        response = httpx.get(f"{url}/status", timeout=2)
        return response.json() if response.status_code == 200 else None
    except httpx.HTTPError:
        return None
