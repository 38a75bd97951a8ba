"""Decision benchmark: every kind of version in every position that matters, in every delivery mode,
judged by the pipeline's own stage functions (validate, merge, drift, the policy) without the HTTP stack.

    python bench/decisions.py --scale small --modes increment,full --seeds 1 --jobs 2 --out docs/decisions.md

For each mode, position and kind, one generated series: the position's versions, then the kind
(`--series` runs whole series instead). Each version is sealed as the sealer would (dropped batches
removed and listed in the manifest), validated against the last valid catalog (with the snapshots of
the versions rejected so far), merged, compared for drift with the known worlds (the previous valid
period, what the first and the deployed model learnt from), and decided by domain/policy.py. Every
version of every series is checked against what the generator did (`datagen.scenarios.expected_action`);
the table shows the last one of each series (every one of a `--series`), with the margin of each score
from its threshold:
  - validation: the failed critical check furthest past its limit, or (valid) the critical check
    closest to its limit relative to it; positive = passed by that much, negative = failed by that much;
  - drift: the scores made, in the rule's order, and the decisive one (the smallest) minus the threshold.
Training is not run by default: a retrain is taken as deployed (the deployed model's catalog moves to
it); `--keep-model` takes every retrain as kept out (the first model stays deployed), the other way the
deploy test can go; `--train` trains and applies the deploy test itself (slow: minutes a retrain).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shlex
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: the repo root is the package root

from datagen import scenarios  # noqa: E402
from datagen.series import MODES  # noqa: E402
from domain import policy  # noqa: E402
from domain.settings import load_params  # noqa: E402

KINDS = (["same", "return"] + sorted(scenarios.DRIFTS) + sorted(scenarios.CORRUPTIONS) + sorted(scenarios.CONFINED))
# Position -> the versions before the judged one ({drift}: a drift other than the judged kind).
POSITIONS = {
    "first": ["base"],
    "after_two_normal": ["base", "same", "same"],
    "after_corrupted": ["base", "same", "corrupt_shuffled_users_confined"],
    "after_drift": ["base", "same", "{drift}"],
}


def seal(version: Path, out: Path) -> tuple[Path, dict]:
    """The snapshot and manifest the sealer writes for this version as the sender delivers it: a table
    the manifest drops batches of is cut into three batches and those never arrive."""
    manifest = json.loads((version / "manifest.json").read_text())
    dropped = manifest.get("drop_batches", {})
    out.mkdir(parents=True)
    tables = {}
    for path in sorted(version.glob("*.parquet")):
        frame, table = pl.read_parquet(path), path.stem
        batches, missing = 1, []
        if table in dropped:
            batches, missing = 3, list(dropped[table])
            size = math.ceil(frame.height / batches)
            frame = pl.concat([frame.slice((b - 1) * size, size) for b in range(1, batches + 1) if b not in missing])
        frame.write_parquet(out / path.name)
        tables[table] = {"rows": frame.height, "batches_expected": batches, "missing_batches": missing,
                         "batches_received": [b for b in range(1, batches + 1) if b not in missing]}
    return out, {**manifest, "tables": tables}


@dataclass
class Judged:
    version: str
    kind: str
    expected: str
    action: str
    valid: bool
    check: str = ""                 # the validation check the margin is of
    check_margin: float | None = None
    observed: float | None = None
    limit: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    drift_margin: float | None = None
    deployed: bool | None = None

    @property
    def right(self) -> bool:
        return self.action == self.expected


def _validation_margin(result):
    """The critical check that decided: the failed one furthest past its limit (or a failed one without
    a measure: a missing table or batch), else the passed one closest to its limit, relative to it."""
    critical = [c for c in result.checks if c.critical]
    failed = [c for c in critical if not c.passed]
    measured = [c for c in (failed or critical) if c.margin is not None]
    if failed and not measured:
        return failed[0]
    relative = lambda c: c.margin / abs(c.limit) if c.limit else c.margin  # noqa: E731
    return min(measured, key=relative, default=None)


def _content_key(key: str, version: Path) -> str:
    """`key` extended by the version's files: series whose versions so far are the same bytes share it."""
    digest = hashlib.sha256(key.encode())
    for path in sorted(version.glob("*")):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:24]


def run_series(work: Path, cache: Path, scale: str, seed: int, mode: str, series: list[str],
               deploy: str) -> list[Judged]:
    """Generate the series and take each version through validate, merge, drift and the policy.

    What a version leaves behind (its catalog, its sealed snapshot, the state after it) is kept in
    `cache` under the bytes of the versions so far: series that start alike (every kind after the same
    position, unless it changes the generated world) judge their common start once."""
    import datagen
    from ml.catalog import merge
    from quality.drift import evaluate_drift
    from quality.validation import validate

    params = load_params()
    versions = datagen.generate_series(work / "gen", scale, seed, series, mode)
    state: dict = {"catalog": None, "initial": None, "deployed": None, "period": None, "model": None,
                   "rejected": []}  # paths as text, the judged period, snapshots rejected so far
    judged, key = [], f"{mode}:{deploy}"
    for index, version in enumerate(versions):
        key = _content_key(key, version)
        done = cache / key
        if (done / "state.json").exists():
            saved = json.loads((done / "state.json").read_text())
            state, row = saved["state"], Judged(**saved["row"])
            row.kind, row.expected = scenarios.canonical(series[index]), scenarios.expected_action(series, index)
            judged.append(row)
            continue
        step = cache / f"{key}.{os.getpid()}"  # written aside, then moved in whole
        shutil.rmtree(step, ignore_errors=True)
        catalog, initial, deployed, model = (Path(state[k]) if state[k] else None
                                             for k in ("catalog", "initial", "deployed", "model"))
        name = version.name
        snapshot, manifest = seal(version, step / "sealed")
        result = validate(snapshot, manifest, catalog, params["validation"], None,
                          [Path(p) for p in state["rejected"]])
        check = _validation_margin(result)
        row = Judged(name, scenarios.canonical(series[index]), scenarios.expected_action(series, index), "",
                     result.valid)
        if check is not None:
            row.check, row.check_margin, row.observed, row.limit = check.name, check.margin, check.observed, check.limit
        if not result.valid:
            row.action = policy.decide(False, deployed is not None, None).action.value
            state["rejected"] = state["rejected"] + [str(done / "sealed")]
        else:
            merged = step / "catalog"
            merge(catalog, snapshot, merged)
            verdict = None
            if deployed is not None:
                drift = evaluate_drift(initial, snapshot, params["drift"], step / "reports", catalog, state["period"],
                                       deployed if deployed != initial else None)
                verdict = policy.drift_verdict(drift.scores, float(params["drift"]["threshold"]))
                row.scores, row.drift_margin = verdict.scores, round(verdict.score - verdict.threshold, 4)
            decision = policy.decide(True, deployed is not None, verdict)
            row.action = decision.action.value
            if decision.train:
                row.deployed = _deploy(deploy, decision, merged, step / "model", model, params)
                if row.deployed:
                    state["deployed"], state["model"] = str(done / "catalog"), str(done / "model")
                    state["initial"] = state["initial"] or str(done / "catalog")
            state["period"] = policy.judged_period(state["period"], name, {
                t: p["new_period"] for t, p in result.judged.items() if p.get("new_period")})
            state["catalog"] = str(done / "catalog")
        (step / "state.json").write_text(json.dumps({"state": state, "row": vars(row)}, default=str))
        if done.exists():  # the other worker judged the same bytes meanwhile: theirs is as good
            shutil.rmtree(step, ignore_errors=True)
        else:
            step.rename(done)
        judged.append(row)
    return judged


def _deploy(how: str, decision: policy.Decision, catalog: Path, out: Path, deployed: Path | None,
            params: dict) -> bool:
    if decision.first_model and how != "train":
        return True
    if how == "deploy":
        return True
    if how == "keep":
        return False
    from ml.train import train

    baseline = next(deployed.glob("*.cbm")) if deployed is not None else None
    trained = train(catalog, out, params["model"], int(params["seed"]), baseline)
    return policy.deploy_decision(trained.holdout_ap, trained.baseline_holdout_ap, params["deploy"],
                                  int(params["seed"])).deploy


def _task(args: tuple) -> dict:
    scale, seed, mode, position, kind, deploy, cache = args
    drift_before = "drift_receipts" if kind == "drift_behaviour" else "drift_behaviour"
    series = (kind.split("+") if position == "series" else
              [name.format(drift=drift_before) for name in POSITIONS[position]] + [kind])
    work = Path(tempfile.mkdtemp(prefix="decisions-"))
    started = time.perf_counter()
    try:
        judged = run_series(work, cache, scale, seed, mode, series, deploy)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"scale": scale, "seed": seed, "mode": mode, "position": position, "kind": kind, "series": series,
            "judged": [vars(j) | {"right": j.right} for j in judged],
            "seconds": round(time.perf_counter() - started, 1)}


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:+.{digits}f}"


def _scores(row: dict) -> str:
    """The scores made, in the rule's order ("-": not made, the rule was settled or there is no such
    reference), and the decisive score's margin from the threshold."""
    if not row["scores"]:
        return ""
    shown = " / ".join(f"{row['scores'][name]:.3f}" if name in row["scores"] else "-" for name in policy.REFERENCES)
    return f"{shown} ({_fmt(row['drift_margin'])})"


def table(results: list[dict]) -> list[str]:
    lines = ["| mode | position | kind | version | expected | action | right "
             "| validation: deciding check, observed vs limit (margin) "
             "| drift: vs previous / initial / deployed (margin) |", "|" + "---|" * 9]
    for r in results:
        rows = r["judged"] if r["position"] == "series" else r["judged"][-1:]  # a whole series: every version
        for row in rows:
            check = (f"{row['check']} {row['observed']:.3f} vs {row['limit']:g} ({_fmt(row['check_margin'])})"
                     if row["check_margin"] is not None else row["check"])
            lines.append(f"| {r['mode']} | {r['position']} | {row['kind']} | {row['version']} | {row['expected']} "
                         f"| {row['action']} | {'yes' if row['right'] else '**NO**'} | {check} | {_scores(row)} |")
    return lines


def summary(results: list[dict], threshold: float) -> list[str]:
    every = [j for r in results for j in r["judged"]]
    last = [r["judged"][-1] for r in results]
    wrong = [(r["mode"], r["position"], r["kind"], j["version"], j["expected"], j["action"])
             for r in results for j in r["judged"] if not j["right"]]
    lines = [f"- judged versions (last of each series): {sum(j['right'] for j in last)} of {len(last)} right; "
             f"every version of every series: {sum(j['right'] for j in every)} of {len(every)} right"]
    for kind in dict.fromkeys(r["kind"] for r in results):
        rows = [r["judged"][-1] for r in results if r["kind"] == kind]
        checks = [j["check_margin"] for j in rows if j["check_margin"] is not None]
        drifts = [j["drift_margin"] for j in rows if j["drift_margin"] is not None]
        text = f"- {kind}: {sum(j['right'] for j in rows)}/{len(rows)} right"
        if checks:
            text += f"; validation margin {min(checks):+.3f} .. {max(checks):+.3f}"
        if drifts:
            text += f"; drift margin {min(drifts):+.3f} .. {max(drifts):+.3f} (threshold {threshold})"
        lines.append(text)
    lines.append(f"- wrong: {len(wrong)}" + "".join(f"\n  - {w}" for w in wrong))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python bench/decisions.py")
    parser.add_argument("--scale", default="small", choices=["tiny", "small", "full"])
    parser.add_argument("--modes", default="increment,full", help=f"from {', '.join(MODES)}")
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--positions", default=",".join(POSITIONS))
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--series", default="", help="instead of positions and kinds: whole series, each "
                        "a '+'-joined list of scenarios, separated by commas (every version is checked)")
    parser.add_argument("--jobs", type=int, default=2)
    deploy = parser.add_mutually_exclusive_group()
    deploy.add_argument("--keep-model", action="store_true", help="every retrain kept out (not deployed)")
    deploy.add_argument("--train", action="store_true", help="train, and deploy by the deploy test")
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    parser.add_argument("--title", default="", help="a section title above it")
    parser.add_argument("--append", action="store_true", help="add to --out instead of replacing it")
    parser.add_argument("--json", type=Path, help="write every judged version here")
    args = parser.parse_args()
    how = "train" if args.train else "keep" if args.keep_model else "deploy"
    cases = ([("series", series) for series in args.series.split(",")] if args.series else
             [(position, kind) for position in args.positions.split(",") for kind in args.kinds.split(",")
              if not (position == "first" and kind == "return")])
    cache = Path(tempfile.mkdtemp(prefix="decisions-cache-"))
    tasks = [(args.scale, seed, mode, position, kind, how, cache) for mode in args.modes.split(",")
             for seed in map(int, args.seeds.split(",")) for position, kind in cases]
    started = time.perf_counter()
    results = []
    with ProcessPoolExecutor(args.jobs) as pool:
        for result in pool.map(_task, tasks):
            results.append(result)
            last = result["judged"][-1]
            print(f"{result['mode']:10} {result['position']:17} {result['kind']:34} {last['expected']:9} "
                  f"{last['action']:9} {'ok' if last['right'] else 'WRONG':5} {last['check']} "
                  f"{_fmt(last['check_margin'])} {last['scores']} {result['seconds']}s", flush=True)
    shutil.rmtree(cache, ignore_errors=True)
    threshold = float(load_params()["drift"]["threshold"])
    command = shlex.join(["python", "bench/decisions.py", *sys.argv[1:]])
    lines = [f"`{command}` ({len(tasks)} series, {time.perf_counter() - started:.0f} s, retrains taken as "
             f"{ {'deploy': 'deployed', 'keep': 'kept out', 'train': 'trained and tested'}[how] }; drift "
             f"threshold {threshold})", "", *summary(results, threshold), "", *table(results)]
    if args.title:
        lines = [f"## {args.title}", "", *lines]
    print("\n".join(lines))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        before = args.out.read_text() + "\n" if args.append and args.out.exists() else ""
        args.out.write_text(before + "\n".join(lines) + "\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
