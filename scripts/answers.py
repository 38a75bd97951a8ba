"""Everything a running service answers after a generated series, with what depends on the clock masked:
the check that a change of code is a change of layout only.

    python scripts/answers.py --url http://localhost:8080 --out before.json   # on the old code
    python scripts/answers.py --url http://localhost:8080 --out after.json    # on the new code, a fresh stack
    diff before.json after.json                                               # nothing

The series (tiny, seed 7, every version with only its new rows): a first model, a version without
drift, a corrupted one, a drift, and a version without drift after it. Each version is sent over HTTP
(`datagen.send`), and the next only once the pipeline is idle. Then every read of the API
(`ops.replay.live_answers`), and the top-100 audience with scores and reasons of every offer any
version sent, are written as sorted JSON. Masked (replaced by "<masked>"): times and durations (keys ending in _at,
_s, _ms, _seconds, timestamp, uptime, started, finished), memory peaks (_mb), MLflow's run ids, and
the local ports of an address; all of them change from run to run on the same code. Everything else
(decisions, every score and margin, metrics, model versions, data hashes, audiences) must be
byte-identical.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

import httpx
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from datagen import generate_series  # noqa: E402
from datagen.send import send_version  # noqa: E402
from ops.replay import live_answers  # noqa: E402
from tests.stack import wait_idle  # noqa: E402

SERIES = ["base", "same", "corrupt_shuffled_users", "drift_behaviour", "same"]
VOLATILE = re.compile(r"(_at|_s|_ms|_seconds|_mb|timestamp|uptime|run_id|started|finished)$")
PORT = re.compile(r"(localhost|127\.0\.0\.1):\d+")


def masked(value, key: str = ""):
    if isinstance(value, dict):
        return {k: masked(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, key) for v in value]
    if VOLATILE.search(key):
        return "<masked>"
    if isinstance(value, str):
        return PORT.sub(r"\1:<port>", value)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://localhost:8080")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    answers: dict = {}
    offers: set[tuple[int, int]] = set()
    with tempfile.TemporaryDirectory(prefix="answers_") as work, httpx.Client(base_url=args.url, timeout=300) as api:
        for index, version in enumerate(generate_series(work, "tiny", 7, SERIES, "increment")):
            send_version(args.url, version, version_name=f"v{index + 1}", client=api)
            wait_idle(api)
            answers[f"after v{index + 1}: /status"] = api.get("/status").json()
            offer = pl.read_parquet(version / "offer.parquet").drop_nulls(["offer_id", "merchant_id_offer"])
            offers |= set(offer.select("offer_id", "merchant_id_offer").iter_rows())
        answers.update(live_answers(args.url))
        # Every offer any version sent, the rejected version's too (those answer 404).
        for offer_id, merchant_id in sorted(offers):
            answer = api.post("/lookalike", json={"offer_id": offer_id, "merchant_id": merchant_id, "top_n": 100})
            answers[f"/lookalike {offer_id} {merchant_id}"] = [answer.status_code, answer.json()]
    args.out.write_text(json.dumps(masked(answers), indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    print(f"{args.out}: {len(answers)} answers, {len(offers)} offers")


if __name__ == "__main__":
    main()
