"""Heavy stages in child processes: each stage function runs in a fresh process forked from a fork
server that has imported the stage libraries once. Its memory goes back to the OS when it ends, a
kill (out of memory, a timeout) fails only that stage, and the consumer that waits for it keeps its
own state and sockets."""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import pickle
import resource
import signal
import traceback
from typing import Any

from ml import ALLOCATOR_ENV
from processors.failures import StageProcessDied

log = logging.getLogger(__name__)

# The fork server imports these once. The consumer's main module too: a child re-runs the consumer's main
# module, which is then cheap.
STAGE_MODULES = ["processors.pipeline", "ml.catalog", "ml.serving", "ml.train", "ml.evaluate",
                 "quality.validation", "quality.drift"]
_children = multiprocessing.get_context("forkserver")


def start_stage_server() -> None:
    """Start the fork server (it imports STAGE_MODULES, ~10 s), once; the consumer calls it before the
    first version arrives, and every stage before it runs. Importing this module changes nothing.

    The stages' allocator setting (see ml.ALLOCATOR_ENV) is inherited by the fork server when it starts.
    Assigned, not defaulted: importing polars (done by then, through the adapters) writes its own
    default into the variable, and a default would then keep polars' setting in every stage. The fork
    server's polars appends this value to its own, and the later setting wins."""
    os.environ.update(ALLOCATOR_ENV)
    _children.set_forkserver_preload(STAGE_MODULES)
    multiprocessing.forkserver.ensure_running()


async def in_child(fn, *args):
    """Run a heavy stage function in a fresh process. Its memory goes back to the OS when it ends,
    and if the kernel kills it (out of memory), only this stage fails (StageProcessDied, which the
    consumer retries): the consumer and the served model stay. Children fork from the fork server, a
    clean process that never ran the consumer's threads or sockets, and that has the stage libraries
    imported already. A stage that is cancelled (its timeout) has its process killed."""
    result, _ = await measured_in_child(fn, *args)
    return result


async def measured_in_child(fn, *args) -> tuple[Any, float]:
    """`in_child`, also returning the stage process's peak resident memory in MB (logged as well)."""
    name = f"{fn.__module__}.{fn.__name__}"
    await asyncio.to_thread(start_stage_server)  # at once when it runs already
    receiver, sender = _children.Pipe(duplex=False)
    process = _children.Process(target=_run_stage, args=(sender, fn, args), name=name)
    process.start()
    sender.close()  # the child holds the only writing end: its death ends the wait below
    try:
        outcome = await asyncio.to_thread(_receive, receiver)
    finally:
        if process.is_alive():
            process.kill()  # cancelled (a stage timeout): the stage's work stops with it
        await asyncio.to_thread(process.join)
        receiver.close()
    if outcome is None:
        raise StageProcessDied(f"{name}: the stage process ended without an answer ({_exit_cause(process.exitcode)})")
    kind, value, detail = outcome
    if kind == "error":
        value.add_note(f"in the stage process:\n{detail}")
        raise value
    log.info("%s: peak resident memory %.0f MB", name, detail)
    return value, detail


def _receive(receiver) -> tuple | None:
    """The child's (kind, value, detail), or None when it ended without sending one."""
    try:
        return pickle.loads(receiver.recv_bytes())
    except EOFError:
        return None


def _exit_cause(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"killed by {signal.Signals(-exitcode).name}"
    return f"exit code {exitcode}"


def _run_stage(sender, fn, args) -> None:
    """In the child: ("ok", result, peak resident MB) or ("error", exception, its traceback)."""
    try:
        payload = pickle.dumps(("ok", fn(*args), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    except BaseException as error:  # noqa: BLE001 (everything goes back to the consumer)
        detail = traceback.format_exc()
        try:
            payload = pickle.dumps(("error", error, detail))
            pickle.loads(payload)  # some exceptions pickle but cannot be rebuilt: check here, not there
        except Exception:
            payload = pickle.dumps(("error", RuntimeError(f"{type(error).__name__}: {error}"), detail))
    sender.send_bytes(payload)
    sender.close()
