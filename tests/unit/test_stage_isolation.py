"""Heavy pipeline stages run in a child process: results and errors come back, a killed child fails
only the stage (the consumer itself survives)."""
import asyncio
import os
import signal

import pytest

from ml import ALLOCATOR_ENV
from processors.failures import StageProcessDied
from processors.stage_process import in_child


def _square(x: int) -> int:
    return x * x


def _raise(message: str) -> None:
    raise ValueError(message)


def _killed_by_the_kernel() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # what the OOM killer does


def _pid() -> int:
    return os.getpid()


def test_result_comes_back_from_another_process():
    assert asyncio.run(in_child(_square, 7)) == 49
    assert asyncio.run(in_child(_pid)) != os.getpid()


def test_exception_of_the_stage_is_raised_in_the_consumer():
    with pytest.raises(ValueError, match="bad version"):
        asyncio.run(in_child(_raise, "bad version"))


def test_a_killed_stage_is_an_error_not_the_end_of_the_consumer():
    with pytest.raises(StageProcessDied, match="killed by SIGKILL"):
        asyncio.run(in_child(_killed_by_the_kernel))
    assert asyncio.run(in_child(_square, 3)) == 9  # the next stage runs as usual


def _allocator_setting() -> str:
    return os.environ.get("_RJEM_MALLOC_CONF", "")


def test_stages_run_with_the_allocator_setting_although_polars_loaded_first():
    """Importing polars writes polars' own default into _RJEM_MALLOC_CONF (the consumer imports it
    before it configures its stages); jemalloc applies the last value of each option, so the stage
    processes must end up with ours, or freed memory stays resident (~1 GB more at full scale)."""
    import polars  # noqa: F401  (as the consumer does, through its adapters)

    effective = dict(option.split(":", 1) for option in asyncio.run(in_child(_allocator_setting)).split(","))
    wanted = dict(option.split(":", 1) for option in ALLOCATOR_ENV["_RJEM_MALLOC_CONF"].split(","))
    assert {name: effective.get(name) for name in wanted} == wanted


def _sleep_after_writing_pid(path: str) -> None:
    import time
    from pathlib import Path

    Path(path).write_text(str(os.getpid()))
    time.sleep(120)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead too
        return stat.read().split(")")[-1].split()[0] != "Z"


def test_a_cancelled_stage_has_its_process_killed(tmp_path):
    """A stage's timeout cancels the wait: the process must not go on computing (and holding memory)
    beside the next attempt."""
    pid_file = tmp_path / "pid"

    async def run() -> None:
        await asyncio.wait_for(in_child(_sleep_after_writing_pid, str(pid_file)), timeout=3)

    with pytest.raises(TimeoutError):
        asyncio.run(run())
    pid = int(pid_file.read_text())
    assert not _alive(pid)


class _Unrebuildable(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a}/{b}")


def _raise_unrebuildable() -> None:
    raise _Unrebuildable("x", "y")


def test_an_exception_that_cannot_cross_processes_still_comes_back():
    with pytest.raises(RuntimeError, match="_Unrebuildable: x/y"):
        asyncio.run(in_child(_raise_unrebuildable))
