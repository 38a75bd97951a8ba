"""Time and peak memory of each heavy pipeline stage on given data, run and measured as the pipeline does.

    python bench/stage_memory.py --reference CATALOG --snapshot SNAPSHOT --out DIR [--train [--baseline MODEL]]
        [--initial CATALOG] [--deployed CATALOG] [--previous FIRST,LAST]

CATALOG is a merged catalog (the pipeline's `catalog/<version>` directory), SNAPSHOT a sealed version's
tables (`snapshots/<version>`, or another catalog to stand for a full snapshot: all data so far). Each
stage runs in its own process forked from the pipeline's stage server (`processors.stage_process.in_child`),
so a figure here is the one the pipeline logs for that stage: validation of the snapshot against the
catalog, the merge into DIR/catalog, the serving bundle, drift against every reference given (the
previous period FIRST..LAST of CATALOG, --initial, default CATALOG, and --deployed), and with --train
the training on the merged catalog (with --baseline, a deployed model's .cbm file, also that model
scored on the same hold-out, as a retrain does). The process's peak resident memory includes the fork server's
shared pages (~0.3 GB), which a container limit counts once for all processes.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from domain.settings import load_params  # noqa: E402
from ml import catalog, serving, train  # noqa: E402
from processors.stage_process import measured_in_child, start_stage_server  # noqa: E402
from quality import drift, validation  # noqa: E402


async def run(reference: Path, snapshot: Path, out: Path, with_training: bool, baseline: Path | None,
              initial: Path | None = None, deployed: Path | None = None,
              previous: list[str] | None = None) -> list[dict]:
    params = load_params()
    manifest_file = snapshot / "manifest.json"
    manifest = json.loads(manifest_file.read_text()) if manifest_file.exists() else {"version": snapshot.name}
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    merged = out / "catalog"
    stages = [
        ("validate", validation.validate, (snapshot, manifest, reference, params["validation"]),
         lambda r: f"valid={r.valid}, {r.checks_failed} of {r.checks_total} checks failed"),
        ("merge", catalog.merge, (reference, snapshot, merged),
         lambda r: f"{r['transaction']:,} transactions, {r['offer_seens']:,} offer views"),
        ("bundle", serving.build_bundle, (merged, merged / "bundle"), lambda r: f"{r['user_brand_pairs']:,} pairs"),
        ("drift", drift.evaluate_drift, (initial or reference, snapshot, params["drift"], out / "reports", reference,
                                         {"transaction": previous} if previous else None, deployed),
         lambda r: f"score {r.drift_score:.3f} {r.scores}"),
    ]
    if with_training:
        stages.append(("train", train.train, (merged, out / "model", params["model"], int(params["seed"]), baseline),
                       lambda r: f"map@100 {r.metrics['map_at_100']:.4f}"))
    await measured_in_child(len, ())  # the fork server imports the stage libraries once: in no stage's time
    rows = []
    for name, fn, args, describe in stages:
        started = time.perf_counter()
        result, peak_mb = await measured_in_child(fn, *args)
        rows.append({"stage": name, "seconds": round(time.perf_counter() - started, 1), "peak_mb": round(peak_mb),
                     "result": describe(result)})
        print(f"{name:9s} {rows[-1]['seconds']:7.1f} s  peak {rows[-1]['peak_mb']:6,d} MB  {rows[-1]['result']}",
              flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python bench/stage_memory.py")
    parser.add_argument("--reference", type=Path, required=True, help="the catalog before this version")
    parser.add_argument("--snapshot", type=Path, required=True, help="the version's tables")
    parser.add_argument("--out", type=Path, required=True, help="scratch directory (replaced)")
    parser.add_argument("--train", action="store_true", help="also train on the merged catalog")
    parser.add_argument("--baseline", type=Path, default=None, help="a deployed model file to score as well")
    parser.add_argument("--initial", type=Path, default=None, help="drift: the first model's catalog")
    parser.add_argument("--deployed", type=Path, default=None, help="drift: the deployed model's catalog")
    parser.add_argument("--previous", default=None, help="drift: the previous period of CATALOG, FIRST,LAST")
    args = parser.parse_args()
    start_stage_server()
    rows = asyncio.run(run(args.reference, args.snapshot, args.out, args.train, args.baseline, args.initial,
                           args.deployed, args.previous.split(",") if args.previous else None))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
