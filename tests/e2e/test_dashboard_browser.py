"""The /dashboard page in a real headless browser (Debian's chromium driven by Playwright).

Two tiny versions are sent while the page is open: the page must show each one's stages as the
pipeline runs them (every stage seen in progress, then done, in the order the log has them), the
validation and drift rows, both plots drawn, the last events, and not one console error, page
error or failed request. The log itself (GET /events) is the reference the page is compared with.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.stack import wait_idle

pytestmark = pytest.mark.e2e

CHROMIUM = Path(os.environ.get("LAL_CHROMIUM", "/usr/bin/chromium"))
# Debian's chromium in a container: no sandbox (no user namespaces), no GPU, nothing fetched from Google.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

# Every render of the "current version" box, as the page showed it: recorded in the page itself by a
# MutationObserver, so no state is missed between two polls of the test.
RECORD_CURRENT = """
window.__snapshots = [];
new MutationObserver(() => {
  const box = document.getElementById("current");
  const title = box.querySelector("div");
  window.__snapshots.push({
    version: title ? title.textContent.replace(/^version /, "") : null,
    stages: [...box.querySelectorAll("li")].map(li => ({text: li.textContent, state: li.className})),
  });
}).observe(document.getElementById("current"), {childList: true, subtree: true, characterData: true});
"""

# Pixels of a plot's canvas in one series' stroke colour: the series was drawn, not just the axes.
COUNT_PIXELS = """([selector, rgb]) => {
  const canvas = document.querySelector(selector + " canvas");
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 0; i < data.length; i += 4)
    if (data[i + 3] > 200 && Math.abs(data[i] - rgb[0]) < 24 && Math.abs(data[i + 1] - rgb[1]) < 24
        && Math.abs(data[i + 2] - rgb[2]) < 24) n++;
  return n;
}"""


def _hex_rgb(colour: str) -> list[int]:
    colour = colour.lstrip("#")
    if len(colour) == 3:
        colour = "".join(c * 2 for c in colour)
    return [int(colour[i:i + 2], 16) for i in (0, 2, 4)]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists() and shutil.which(str(CHROMIUM)) is None:
        pytest.skip(f"no chromium at {CHROMIUM}: `apt-get install -y chromium` (CI installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")
    with sync_api.sync_playwright() as playwright:
        # Debian's own chromium, never a downloaded one.
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def pipeline_events_of(api_url: str, versions: set[str], timeout: float = 60) -> list[dict]:
    """The pipeline topic's events of these versions, read back from GET /events (the page's own source)."""
    wanted: list[dict] = []
    remaining = set(versions)
    deadline = time.monotonic() + timeout
    with httpx.stream("GET", f"{api_url}/events", params={"topics": "pipeline", "since": 0},
                      timeout=httpx.Timeout(timeout, connect=10)) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if time.monotonic() > deadline:
                raise AssertionError(f"/events did not replay VersionProcessed of {remaining} in {timeout}s")
            if not line.startswith("data: "):
                continue
            frame = orjson.loads(line[len("data: "):])
            if frame["event"].get("version") not in versions:
                continue
            wanted.append(frame)
            if frame["type"] in ("VersionProcessed", "PipelineFailed"):
                remaining.discard(frame["event"]["version"])
                if not remaining:
                    return wanted
    raise AssertionError("/events ended before the versions were processed")


def test_dashboard_follows_versions_as_they_are_processed(browser, api, api_url, series, run_id):
    from datagen.send import send_version

    problems: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    page.on("console", lambda message: problems.append(f"console {message.type}: {message.text} {message.location}")
            if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("requestfailed", lambda request: problems.append(f"request failed: {request.url} {request.failure}")
            if "/events" not in request.url else None)  # the SSE request is aborted when the page closes
    page.on("response", lambda response: problems.append(f"HTTP {response.status}: {response.url}")
            if response.status >= 400 else None)

    wait_idle(api)  # earlier tests' versions are done: ours are the ones the page shows in progress
    page.goto(f"{api_url}/dashboard", wait_until="load")
    page.evaluate(RECORD_CURRENT)
    # /status is polled and rendered: the page is alive and talking to the API.
    page.wait_for_function("document.querySelector('#status .badge') !== null", timeout=15_000)
    assert page.locator("#drift-chart .uplot").count() == 1 and page.locator("#model-chart .uplot").count() == 1

    # Two versions of one world: the first is validated (and trained on, on a fresh stack), the second
    # is compared with the deployed model's data, so it gets a drift score.
    names = [f"{run_id}-dash-{version_dir.name}" for version_dir in series[:2]]
    for version_dir, name in zip(series[:2], names):
        send_version(api_url, version_dir, version_name=name)
        wait_idle(api)

    # The versions table has each version's final action (rendered from VersionProcessed).
    for name in names:
        page.wait_for_function(
            """name => [...document.querySelectorAll('#versions tbody tr')].some(
                   tr => tr.cells[0].textContent === name && tr.cells[4].textContent !== '…')""",
            arg=name, timeout=60_000)

    log = pipeline_events_of(api_url, set(names))
    snapshots = page.evaluate("window.__snapshots")
    rows = {cells[0]: cells for cells in page.eval_on_selector_all(
        "#versions tbody tr", "trs => trs.map(tr => [...tr.cells].map(td => td.textContent))")}
    failed = [f["event"] for f in log if f["type"] == "PipelineFailed"]
    for event in failed:  # the page says so too; but then there is no drift or model to show: fail here
        assert rows[event["version"]][4] == f"failed in {event['stage']}: {event['error']}"
    assert not failed, f"the pipeline failed, the page cannot be checked further: {failed}"
    for name in names:
        started = [f["event"]["stage"] for f in log if f["type"] == "StageStarted" and f["event"]["version"] == name]
        assert started, f"the log has no stage of {name}"
        shown = [s for s in snapshots if s["version"] == name]
        # Each stage was shown in progress, then done, and in the log's order.
        for index, stage in enumerate(started):
            assert any(len(s["stages"]) == index + 1 and s["stages"][index] == {"text": f"{stage}…", "state": "active"}
                       for s in shown), f"{name}: stage {stage} never shown in progress; shown: {shown}"
            assert any(len(s["stages"]) > index and s["stages"][index]["state"] == "done"
                       and s["stages"][index]["text"].startswith(f"{stage} (") for s in shown), \
                f"{name}: stage {stage} never shown done; shown: {shown}"
        processed = next(f["event"] for f in log if f["type"] == "VersionProcessed" and f["event"]["version"] == name)
        cells = rows[name]
        assert cells[4] == processed["action_taken"], (cells, processed)
        for stage in started:
            assert f"{stage} " in cells[5], f"{name}: duration of {stage} missing from {cells[5]!r}"
        validation = next((f["event"] for f in log if f["type"] == "ValidationFinished" and f["event"]["version"] == name), None)
        if validation is not None:
            assert cells[1] == str(validation["valid"]).lower()
        drift = next((f["event"] for f in log if f["type"] == "DriftEvaluated" and f["event"]["version"] == name), None)
        if drift is not None:
            assert cells[3] == f"{drift['drift_score']:.3f} (threshold {drift['threshold']:g})", cells[3]
    # The second version is always compared with the deployed model: its drift score is on the page.
    assert any(f["type"] == "DriftEvaluated" and f["event"]["version"] == names[1] for f in log), log
    assert rows[names[1]][3], rows[names[1]]

    # Both plots drew their data series (the threshold and MAP@100 come from real events).
    page.wait_for_timeout(300)  # uPlot draws on the next animation frame after setData
    for chart, colour in (("#drift-chart", "#c33"), ("#model-chart", "#36c")):
        assert page.evaluate(COUNT_PIXELS, [chart, _hex_rgb(colour)]) > 0, f"{chart}: no {colour} pixel drawn"
    assert page.evaluate("modelPlot.data[0].length") == len(api.get("/experiments").json()["experiments"])

    # The last events include our versions' pipeline events, newest first.
    events_text = page.inner_text("#events")
    for name in names:
        assert f"VersionProcessed {name}" in events_text
        assert f"VersionSealed {name}" in events_text

    page.close()
    assert not problems, "\n".join(problems)
