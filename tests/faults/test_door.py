"""The door's probes (issue 12), against the running stack: each gets its 4xx, the service keeps
answering, and every batch answered 200 is in its version's sealed snapshot.

Needs the stack's API (LAL_API_URL); the broker pause needs the local stack's process ids
(LAL_STACK_DIR, as `make up` writes them) and is skipped without them.
"""
from __future__ import annotations

import os
import select
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import httpx
import orjson
import psutil
import pytest

from domain.settings import load_params

PARAMS = load_params()
JSON = {"content-type": "application/json"}


def merchants(count: int, start: int = 1) -> list[dict]:
    return [{"merchant_id_offer": i, "merchant_status": "ACT", "brand_dk": 10_000 + i} for i in range(start, start + count)]


def post_batch(client: httpx.Client, version: str, batch_id: int, total: int, records: list[dict]) -> httpx.Response:
    return client.post("/data/batch", headers=JSON, content=orjson.dumps(
        {"version": version, "table": "merchant", "batch_id": batch_id, "total_batches": total, "records": records}))


def sse_lines(response: httpx.Response):
    """An event stream's lines, split at line feeds only (as SSE is): httpx's iter_lines also splits at
    U+2028 and the like, which JSON carries unescaped (data sent by the contract's fuzzing, say)."""
    pending = b""
    for chunk in response.iter_bytes():
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from lines


def sealed_manifest(api_url: str, version: str, timeout: float = 120) -> dict:
    """The manifest of the version's VersionSealed, read back from the log (GET /events)."""
    deadline = time.monotonic() + timeout
    with httpx.stream("GET", f"{api_url}/events", params={"topics": "versions,control", "since": 0},
                      timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        for line in sse_lines(response):
            if time.monotonic() > deadline:
                break
            if line.startswith(b"data:"):
                frame = orjson.loads(line[5:])
                if frame["event"].get("version") != version:
                    continue
                if frame["type"] == "VersionSealed":
                    return frame["event"]["manifest"]
                assert frame["type"] != "SealFailed", frame
    raise AssertionError(f"{version} was not sealed within {timeout} s")


def commit_and_seal(api: httpx.Client, api_url: str, version: str) -> dict:
    answer = api.post("/data/commit", json={"version": version})
    assert answer.status_code == 200, answer.text
    return sealed_manifest(api_url, version)


def still_taking_versions(api: httpx.Client, api_url: str, version: str) -> None:
    """The service answers, takes a batch, commits and seals it, with every row."""
    assert api.get("/ready").status_code == 200, api.get("/ready").text
    assert post_batch(api, version, 1, 1, merchants(3)).status_code == 200
    assert commit_and_seal(api, api_url, version)["tables"]["merchant"]["rows"] == 3


def api_memory_mb() -> float | None:
    pid_file = Path(os.environ.get("LAL_STACK_DIR", "var/stack")) / "pids" / "api.pid"
    if not pid_file.exists():
        return None
    root = psutil.Process(int(pid_file.read_text()))
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


def test_a_billion_batches_claimed_is_refused_and_sealing_goes_on(api, api_url, run_id):
    version = f"{run_id}-claim"
    refused = post_batch(api, version, 1, 1_000_000_000, merchants(1))
    assert refused.status_code == 400 and refused.json()["detail"].startswith("total_batches: at most")
    refused = post_batch(api, version, 1_000_000_000, 1_000_000_000, merchants(1))
    assert refused.status_code == 400 and "batches per table" in refused.json()["detail"]
    # Its commit seals an empty version: the processor is alive and the next version is sealed too.
    assert commit_and_seal(api, api_url, version)["tables"] == {}
    still_taking_versions(api, api_url, f"{run_id}-after-claim")


def test_a_300_mb_body_is_refused_without_being_held(api, api_url, run_id):
    size, chunk = 300 * 2**20, b" " * 2**20
    before = api_memory_mb()

    def body():  # streamed: the test never holds the 300 MB either
        for _ in range(size // len(chunk)):
            yield chunk

    started = time.monotonic()
    answer = api.post("/data/batch", content=body(), headers={**JSON, "content-length": str(size)})
    assert answer.status_code == 413 and "over the limit" in answer.json()["detail"], answer.text
    assert time.monotonic() - started < 60
    if before is not None:
        assert api_memory_mb() - before < 100
    still_taking_versions(api, api_url, f"{run_id}-after-big-body")


def slow_sender(host: str, port: int, answers: list[bytes], stop: threading.Event) -> None:
    """Declares a 1,000-byte batch and sends it a byte every half second, reading whenever the server
    has something to say; keeps what the server answers."""
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(b"POST /data/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n")
        received = b""
        while not stop.is_set():
            readable, _, _ = select.select([sock], [], [], 0.5)
            if readable:
                data = sock.recv(4096)
                received += data
                if not data:  # the answer, then the server closed the connection
                    break
                continue
            sock.sendall(b" ")
        answers.append(received)


def test_slow_senders_get_408_and_never_hold_up_a_normal_batch(api, api_url, run_id):
    address = urlparse(api_url)
    answers: list[bytes] = []
    stop = threading.Event()
    senders = [threading.Thread(target=slow_sender, args=(address.hostname, address.port, answers, stop))
               for _ in range(4)]
    for sender in senders:
        sender.start()
    try:
        time.sleep(1)  # all four are trickling
        version = f"{run_id}-beside-slow"
        started = time.monotonic()
        answer = post_batch(api, version, 1, 1, merchants(3))
        assert answer.status_code == 200 and time.monotonic() - started < 5, answer.text
        grace = float(PARAMS["http"]["body_grace_s"])
        for sender in senders:
            sender.join(timeout=grace + 10)
    finally:
        stop.set()
    assert len(answers) == 4 and all(a.startswith(b"HTTP/1.1 408") for a in answers), answers
    assert all(b"bytes/s or faster" in a for a in answers)
    assert commit_and_seal(api, api_url, version)["tables"]["merchant"]["rows"] == 3


def test_a_commit_that_is_not_json_is_refused_and_the_version_stays_open(api, api_url, run_id):
    version = f"{run_id}-csrf"
    assert post_batch(api, version, 1, 2, merchants(2)).status_code == 200
    page = {"origin": "https://elsewhere.example"}  # a browser says which page sent a POST
    for headers, body in (({"content-type": "text/plain"}, orjson.dumps({"version": version})),
                          ({"content-type": "application/x-www-form-urlencoded"}, f"version={version}".encode()),
                          (page, orjson.dumps({"version": version}))):  # no type at all, from a page
        refused = api.post("/data/commit", content=body, headers=headers)
        assert refused.status_code == 415 and "application/json" in refused.json()["detail"]
    # Not closed: its second batch still arrives, and the real commit seals both.
    assert post_batch(api, version, 2, 2, merchants(2, start=3)).status_code == 200
    manifest = commit_and_seal(api, api_url, version)
    assert manifest["tables"]["merchant"]["rows"] == 4 and manifest["tables"]["merchant"]["missing_batch_count"] == 0


def test_thousands_of_batches_in_one_version_are_sealed(api_url, run_id):
    """4,000 batches: the ledger of such a version, kept as one changelog record as the processor used to,
    is 1.1 MB, over the broker's 1 MiB. (Some 35 s on the local stack: each batch waits for its log round trip.)"""
    version, total = f"{run_id}-many", 4_000
    # Many at once: each waits for the log round trip (and the local broker answers an empty fetch late).
    # A client per thread: httpcore's pool shared by 32 threads once read from a socket another closed.
    local, clients = threading.local(), []

    def post(batch_id: int) -> int:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=api_url, timeout=60)
            clients.append(local.client)
        return post_batch(local.client, version, batch_id, total, merchants(1, start=batch_id)).status_code

    try:
        with ThreadPoolExecutor(32) as pool:
            codes = list(pool.map(post, range(1, total + 1)))
    finally:
        for client in clients:
            client.close()
    assert codes == [200] * total
    with httpx.Client(base_url=api_url, timeout=60) as client:
        manifest = commit_and_seal(client, api_url, version)
    table = manifest["tables"]["merchant"]
    assert (table["rows"], table["batches_received"], table["missing_batch_count"]) == (total, total, 0)


def test_event_subscribers_are_bounded_and_released(api, api_url):
    limit = int(PARAMS["events"]["max_subscribers"])
    with httpx.Client(base_url=api_url, timeout=30) as client:
        streams = []
        try:
            for _ in range(limit):
                stream = client.stream("GET", "/events", params={"topics": "pipeline"})
                response = stream.__enter__()
                streams.append(stream)
                if response.status_code == 503:  # other subscribers (a dashboard) hold places
                    break
                assert response.status_code == 200
            over = client.get("/events", params={"topics": "pipeline"})
            assert over.status_code == 503 and "subscribers" in over.json()["detail"]
        finally:
            for stream in streams:
                stream.__exit__(None, None, None)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the server notices the closed connections and frees the places
            with client.stream("GET", "/events", params={"topics": "pipeline"}) as again:
                if again.status_code == 200:
                    return
            time.sleep(0.5)
        raise AssertionError("/events places were not released after the subscribers left")


def broker_processes() -> list[psutil.Process]:
    pid_file = Path(os.environ.get("LAL_STACK_DIR", "var/stack")) / "pids" / "broker.pid"
    if not pid_file.exists():
        pytest.skip("no local stack process ids (LAL_STACK_DIR): the broker cannot be paused from here")
    root = psutil.Process(int(pid_file.read_text()))
    return [root, *root.children(recursive=True)]


def wait_ready(api: httpx.Client, status: int, timeout: float) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        answer = api.get("/ready")
        if answer.status_code == status or time.monotonic() > deadline:
            return answer
        time.sleep(0.5)


def test_ready_is_503_naming_the_broker_while_it_does_not_answer(api, api_url, run_id):
    processes = broker_processes()
    assert api.get("/ready").status_code == 200
    for process in processes:
        process.send_signal(signal.SIGSTOP)
    try:
        answer = wait_ready(api, 503, timeout=20)
        assert answer.status_code == 503, answer.text
        assert any("broker" in reason and "unreachable" in reason for reason in answer.json()["reasons"])
        assert any("unreachable" in line for line in api.get("/status").json()["degraded"])
    finally:
        for process in processes:
            process.send_signal(signal.SIGCONT)
    assert wait_ready(api, 200, timeout=30).status_code == 200
    still_taking_versions(api, api_url, f"{run_id}-after-pause")
