"""Model quality against the generator's oracle and simple baselines, per kind of held-out offer, in worlds
that span what the checker may send; plus training cost and audience stability.

    python bench/ml_quality.py [--scale small|full] [--worlds low-likely,...] [--seeds 1,2]
                               [--out reports/ml_quality.json] [--keep DIR] [--no-stability]

Worlds (`datagen` knobs): visibility low (0: the original world, most of a first purchase is hidden
taste) or high (1: adoption walks a ladder of visible fit), times targeting likely (1: the bank shows
offers mostly to likely buyers) or random (0). For each world and seed:

1. generate v1 (base), v2 (same distributions) and v3 (behaviour drift), as increments;
2. merge v1 into a catalog, train the model on it (`ml.train.train`, in a child process so its peak
   memory is its own), build the serving bundle and score every held-out offer of v1 through the
   serving path (`Scorer.score_offer`), next to the oracle (the generator's true probabilities) and
   every baseline of `ml.baselines`, all ranking the same candidates (clients who had not bought at
   the brand before the offer's start); MAP@100 and precision@100 per kind: fresh (starting right
   after the data), running (window contains the cut), far (starting two months or more after it);
   and MAP@100 over the offers of the smallest, middle and largest third of brands (by customers);
3. audience stability: mean top-100 Jaccard of each offer of the v1 catalog before and after v2 is
   merged (bundle rebuilt, same model), and after v3 is merged and the model retrained.

Every figure but times and memory is deterministic: the same seeds give the same numbers. Each world
and seed runs in its own process, so the memory figures do not add up across runs.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ml import ALLOCATOR_ENV  # noqa: E402

os.environ.update(ALLOCATOR_ENV)  # as in the pipeline's stage processes; before polars loads

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from domain.settings import load_params  # noqa: E402
from ml.baselines import BASELINES, Context  # noqa: E402
from ml.catalog import merge, read_table  # noqa: E402
from ml.evaluate import average_precision_at_k, precision_at_k, top_k  # noqa: E402
from ml.features import EPOCH, OPEN_END_DAY, OfferSpec, non_customers  # noqa: E402
from ml.ground_truth import OPEN_END, offers_ground_truth  # noqa: E402
from ml.serving import Scorer, build_bundle  # noqa: E402

WORLDS = {"low-likely": (0.0, 1.0), "low-random": (0.0, 0.0), "high-likely": (1.0, 1.0), "high-random": (1.0, 0.0)}
KINDS = ("fresh", "running", "far")
RANKINGS = ("model", "oracle", *BASELINES)
SIZE_GROUPS = ("small", "middle", "large")  # thirds of each kind's offers by their brand's customers
SIZE_RANKINGS = ("model", "oracle", "item_knn", "als", "exposure")  # the by-brand-size table's columns
SERIES = ["base", "same", "drift_behaviour"]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_in_child(catalog: Path, out: Path, params: dict, seed: int):
    """Train in a child process; its own peak memory (VmHWM) goes into the result's metrics."""
    import pickle

    code = ("import pickle,sys,json; from pathlib import Path; from ml.train import train; "
            "p=json.loads(sys.argv[3]); r=train(Path(sys.argv[1]), Path(sys.argv[2]), p, int(sys.argv[4])); "
            # VmHWM: this process's own peak (ru_maxrss would start from the parent's size at fork).
            "import re; status=open('/proc/self/status').read(); "
            "r.metrics['peak_memory_mb']=int(re.search(r'VmHWM:\\s+(\\d+)', status).group(1))/1024; "
            "Path(sys.argv[2],'result.pkl').write_bytes(pickle.dumps(r))")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(catalog), str(out), json.dumps(params), str(seed)], check=True,
                   cwd=ROOT)
    result = pickle.loads((out / "result.pkl").read_bytes())
    return result, time.perf_counter() - started


def brand_index(brand_ids: np.ndarray, brand_dk: int | None) -> int:
    if brand_dk is None:
        return -1
    position = int(np.searchsorted(brand_ids, brand_dk))
    return position if position < len(brand_ids) and brand_ids[position] == brand_dk else -1


def known_transactions(version: Path, catalog: Path) -> pl.DataFrame:
    """(user_id, brand_dk, event_date) of the catalog and of the held-out months after the version's cut."""
    past = read_table(catalog, "transaction", ["user_id", "brand_dk", "event_date"])
    return pl.concat([past, pl.read_parquet(version / "_holdout" / "transaction.parquet").select(past.columns)])


def holdout_offers(version: Path, catalog: Path, merchants: pl.DataFrame, seed: int,
                   max_offers: int) -> list[tuple[str, dict, set[int]]]:
    """The held-out offers scored, as (kind, offer row, its new customers): a seeded sample of at most
    `max_offers` per kind, those with at least one new customer (MAP is the mean over those).
    `merchants`: the catalog's merchant table (offer merchant -> brand)."""
    offers = pl.read_parquet(version / "_holdout" / "offer.parquet").sort("kind", "offer_id", "merchant_id_offer")
    offers = pl.concat([group if group.height <= max_offers else group.sample(max_offers, seed=seed).sort("offer_id")
                        for group in offers.partition_by("kind", maintain_order=True)])
    truth = offers_ground_truth(known_transactions(version, catalog), offers, merchants)
    truth = {key: set(frame["user_id"].to_list())
             for key, frame in truth.partition_by(["offer_id", "merchant_id_offer"], as_dict=True).items()}
    return [(row["kind"], row, truth[key]) for row in offers.iter_rows(named=True)
            if (key := (row["offer_id"], row["merchant_id_offer"])) in truth]


def model_audience(scorer: Scorer, row: dict, k: int) -> list[int]:
    """The model's top-k users for a held-out offer, through the serving path."""
    return [user for user, _ in scorer.score_offer(row["offer_id"], row["merchant_id_offer"], row["start_date"],
                                                   row["end_date"], row["offer_text"], k).users]


def oracle_frames(version: Path, held_out: list[tuple[str, dict, set[int]]]) -> dict[tuple[int, int], pl.DataFrame]:
    """The oracle's probabilities of the held-out offers, by (offer_id, merchant_id_offer)."""
    return pl.scan_parquet(version / "_holdout" / "oracle.parquet").filter(
        pl.col("offer_id").is_in([row["offer_id"] for _, row, _ in held_out])).collect().partition_by(
        ["offer_id", "merchant_id_offer"], as_dict=True)


def oracle_top(ids: np.ndarray, frame: pl.DataFrame | None, k: int) -> np.ndarray:
    """The oracle's top k of the candidates `ids` (sorted user ids): by their true probability in the
    offer's `frame` of the oracle, 0 where it kept no row."""
    probability = np.zeros(len(ids))
    if frame is not None:
        users = frame["user_id"].to_numpy()
        at = np.searchsorted(ids, users)
        inside = (at < len(ids)) & (ids[np.minimum(at, len(ids) - 1)] == users)
        probability[at[inside]] = frame["probability"].to_numpy()[inside]
    return ids[top_k(probability, ids, k)]


def score_holdout(scorer: Scorer, version: Path, catalog: Path, k: int, seed: int, max_offers: int) -> dict:
    """Every ranking on every held-out offer of the version: {kind: {ranking: {map, precision}}, offers}."""
    merchants = read_table(catalog, "merchant")
    held_out = holdout_offers(version, catalog, merchants, seed, max_offers)
    oracle = oracle_frames(version, held_out)
    brand_of = dict(zip(merchants["merchant_id_offer"].to_list(), merchants["brand_dk"].to_list()))
    state = scorer.state
    context = Context(state, seed)
    values: dict[str, dict[str, dict[str, list[float]]]] = {kind: {} for kind in KINDS}
    brand_size = state.derived()["brand_nnz"]
    sizes: dict[str, list[float]] = {kind: [] for kind in KINDS}  # the offer's brand's customers, per offer
    new_customers: dict[str, list[int]] = {kind: [] for kind in KINDS}
    latencies = []

    def record(kind: str, ranking: str, ranked: np.ndarray | list[int], relevant: set[int]) -> None:
        figures = values[kind].setdefault(ranking, {"map": [], "precision": []})
        figures["map"].append(average_precision_at_k(ranked, relevant, k))
        figures["precision"].append(precision_at_k(ranked, relevant, k))

    for kind, row, relevant in held_out:
        key = (row["offer_id"], row["merchant_id_offer"])
        new_customers[kind].append(len(relevant))
        brand = brand_index(state.brand_ids, brand_of.get(row["merchant_id_offer"]))
        sizes[kind].append(float(brand_size[brand]) if brand >= 0 else 0.0)
        started = time.perf_counter()
        audience = model_audience(scorer, row, k)
        latencies.append(time.perf_counter() - started)
        record(kind, "model", audience, relevant)
        end = row["end_date"]
        spec = OfferSpec(brand=brand, start_day=(row["start_date"] - EPOCH).days,
                         end_day=OPEN_END_DAY if end is None or end >= OPEN_END else (end - EPOCH).days,
                         text=row["offer_text"], offer_id=row["offer_id"])
        pool = non_customers(state, spec.brand, spec.start_day)
        ids = state.user_ids[pool]
        for name, baseline in BASELINES.items():
            record(kind, name, ids[top_k(baseline(context, spec, pool), ids, k)], relevant)
        record(kind, "oracle", oracle_top(ids, oracle.get(key), k), relevant)
    result = {kind: {ranking: {name: float(np.mean(v)) for name, v in figures.items()}
                     for ranking, figures in values[kind].items()} for kind in KINDS}
    result["by_brand_size"] = {kind: _by_brand_size(values[kind], sizes[kind]) for kind in KINDS}
    result["offers"] = {kind: len(new_customers[kind]) for kind in KINDS}
    result["new_customers_per_offer"] = {kind: float(np.mean(v)) if v else 0.0 for kind, v in new_customers.items()}
    result["latency_p95_ms_uncached"] = float(np.percentile(latencies, 95) * 1000) if latencies else float("nan")
    return result


def _by_brand_size(values: dict[str, dict[str, list[float]]], sizes: list[float]) -> dict[str, dict[str, float]]:
    """MAP@100 of every ranking over the offers of the smallest, middle and largest third of brands (by
    customers before the data's end; ties by position): whether a ranking holds across brand sizes."""
    sizes = np.asarray(sizes)
    table = {}
    for name, rows in zip(SIZE_GROUPS, np.array_split(np.argsort(sizes, kind="stable"), len(SIZE_GROUPS))):
        table[name] = {"offers": len(rows), "median_customers": float(np.median(sizes[rows])) if len(rows) else 0.0}
        table[name].update({ranking: float(np.mean(np.asarray(figures["map"])[rows])) if len(rows) else float("nan")
                            for ranking, figures in values.items()})
    return table


def audiences(scorer: Scorer, offers: list[tuple[int, int]], k: int) -> dict[tuple[int, int], set[int]]:
    return {key: {user for user, _ in scorer.audience(*key, k).users} for key in offers}


def mean_jaccard(before: dict, after: dict) -> float:
    scores = [len(before[key] & after[key]) / len(before[key] | after[key]) for key in before
              if before[key] | after[key]]
    return float(np.mean(scores)) if scores else float("nan")


def evaluate_world(world: str, seed: int, scale: str, work: Path, params: dict, train_seed: int, k: int,
                   stability: bool, max_offers: int) -> dict:
    from datagen import generate_series

    visibility, targeting = WORLDS[world]
    figures: dict[str, float] = {}
    t = time.perf_counter()
    versions = generate_series(work / "generated", scale, seed, SERIES if stability else SERIES[:1], "increment",
                               visibility, targeting)
    figures["generate_seconds"] = time.perf_counter() - t
    t = time.perf_counter()
    rows = merge(None, versions[0], work / "catalog1")
    figures["merge_seconds"] = time.perf_counter() - t
    figures["transactions"] = float(rows["transaction"])
    t = time.perf_counter()
    build_bundle(work / "catalog1", work / "bundle1")
    figures["bundle_seconds"] = time.perf_counter() - t
    result, figures["train_seconds"] = train_in_child(work / "catalog1", work / "model1", params, train_seed)
    figures["train_peak_memory_mb"] = result.metrics["peak_memory_mb"]
    scorer = Scorer(work / "bundle1", result.model_path)
    t = time.perf_counter()
    holdout = score_holdout(scorer, versions[0], work / "catalog1", k, seed, max_offers)
    figures["score_seconds"] = time.perf_counter() - t
    report = {"world": world, "seed": seed, "visibility": visibility, "targeting": targeting, "holdout": holdout,
              "train_metrics": result.metrics, "loss_function": result.params.get("loss_function")}
    if stability:
        existing = (read_table(work / "catalog1", "offer").select("offer_id", "merchant_id_offer").unique()
                    .sort("offer_id", "merchant_id_offer").head(max_offers).rows())
        before = audiences(scorer, existing, k)
        merge(work / "catalog1", versions[1], work / "catalog2")
        build_bundle(work / "catalog2", work / "bundle2")
        same = Scorer(work / "bundle2", result.model_path)
        after_same = audiences(same, existing, k)
        merge(work / "catalog2", versions[2], work / "catalog3")
        build_bundle(work / "catalog3", work / "bundle3")
        retrained, seconds = train_in_child(work / "catalog3", work / "model3", params, train_seed)
        figures["retrain_seconds"] = seconds
        figures["train_peak_memory_mb"] = max(figures["train_peak_memory_mb"], retrained.metrics["peak_memory_mb"])
        after_drift = audiences(Scorer(work / "bundle3", retrained.model_path), existing, k)
        report["stability"] = {"offers": len(existing), "jaccard_same": mean_jaccard(before, after_same),
                               "jaccard_drift_retrained": mean_jaccard(after_same, after_drift)}
    figures["peak_memory_mb_data_and_scoring"] = _peak_mb()
    report["figures"] = figures
    return report


# --- the report ------------------------------------------------------------------------------------------

def _cell(runs: list[dict], kind: str, ranking: str, metric: str) -> str:
    values = [run["holdout"][kind].get(ranking, {}).get(metric) for run in runs]
    return " / ".join("–" if v is None else f"{v:.3f}" for v in values)


def _size_table(runs: list[dict]) -> list[str]:
    lines = ["MAP@100 by the size of the offer's brand (a third of each kind's offers each; cells by seed):", "",
             "| kind | brands | median customers | " + " | ".join(SIZE_RANKINGS) + " |",
             "|---|---|---|" + "---|" * len(SIZE_RANKINGS)]
    for kind in KINDS:
        for group in SIZE_GROUPS:
            cells = [run["holdout"]["by_brand_size"][kind][group] for run in runs]
            median = " / ".join(f"{c['median_customers']:.0f}" for c in cells)
            maps = [" / ".join(f"{c.get(ranking, float('nan')):.3f}" for c in cells) for ranking in SIZE_RANKINGS]
            lines.append(f"| {kind} | {group} | {median} | " + " | ".join(maps) + " |")
    return lines


def markdown(reports: list[dict], command: str) -> str:
    lines = [f"`{command}`", ""]
    seeds = sorted({r["seed"] for r in reports})
    for world in dict.fromkeys(r["world"] for r in reports):
        runs = sorted((r for r in reports if r["world"] == world), key=lambda r: r["seed"])
        visibility, targeting = WORLDS[world]
        offers = ", ".join(f"{kind} {' / '.join(str(r['holdout']['offers'][kind]) for r in runs)}" for kind in KINDS)
        lines += [f"**{world}** (visibility {visibility:g}, targeting {targeting:g}); cells: seed "
                  f"{' / '.join(map(str, seeds))}; offers with new customers: {offers}", "",
                  "| ranking | " + " | ".join(f"{kind} MAP@100 | {kind} P@100" for kind in KINDS) + " |",
                  "|---|" + "---|" * (2 * len(KINDS))]
        for ranking in RANKINGS:
            cells = [_cell(runs, kind, ranking, metric) for kind in KINDS for metric in ("map", "precision")]
            name = f"**{ranking}**" if ranking in ("model", "oracle") else ranking
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", *_size_table(runs), ""]
    lines += ["| world | seed | train s | retrain s | train peak MB | data+scoring peak MB | Jaccard, same version "
              "| Jaccard, drift + retrain | first-call p95 ms |", "|---|---|---|---|---|---|---|---|---|"]
    nan = float("nan")
    for r in reports:
        f, s = r["figures"], r.get("stability", {})
        lines.append(f"| {r['world']} | {r['seed']} | {f['train_seconds']:.0f} | {f.get('retrain_seconds', nan):.0f} "
                     f"| {f['train_peak_memory_mb']:.0f} | {f['peak_memory_mb_data_and_scoring']:.0f} "
                     f"| {s.get('jaccard_same', nan):.3f} | {s.get('jaccard_drift_retrained', nan):.3f} "
                     f"| {r['holdout']['latency_p95_ms_uncached']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=["tiny", "small", "full"], default="small")
    parser.add_argument("--worlds", default=",".join(WORLDS), help=f"comma-separated, from {list(WORLDS)}")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--out", type=Path, default=None, help="JSON report")
    parser.add_argument("--keep", type=Path, default=None, help="keep the work directories here (default: temporary)")
    parser.add_argument("--no-stability", action="store_true", help="only v1: no audience stability, no retraining")
    parser.add_argument("--max-offers", type=int, default=200, help="held-out offers per kind (a seeded sample)")
    parser.add_argument("--losses", default=None, help="CatBoost losses to compare (default: params.yaml)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # WORLD:SEED:RESULT, run in a child
    args = parser.parse_args()
    params = load_params()
    model_params = dict(params["model"])
    if args.losses:
        model_params["loss_candidates"] = args.losses.split(",")
    k = int(model_params.get("eval_top_k", 100))
    if args.one:
        world, seed, out = args.one.split(":", 2)
        work = Path(args.keep) / f"{world}-{seed}" if args.keep else Path(tempfile.mkdtemp(prefix="ml_quality_"))
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            report = evaluate_world(world, int(seed), args.scale, work, model_params, int(params["seed"]), k,
                                    not args.no_stability, args.max_offers)
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
        Path(out).write_text(json.dumps(report, indent=1, sort_keys=True))
        return
    worlds = args.worlds.split(",")
    unknown = [w for w in worlds if w not in WORLDS]
    if unknown:
        parser.error(f"unknown worlds {unknown}; known: {list(WORLDS)}")
    command = "python bench/ml_quality.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    reports = []
    with tempfile.TemporaryDirectory(prefix="ml_quality_results_") as results:
        for world in worlds:
            for seed in (int(s) for s in args.seeds.split(",")):
                out = Path(results) / f"{world}-{seed}.json"
                # Each world in its own process: its memory figures are its own, and it leaves nothing behind.
                subprocess.run([sys.executable, __file__, *sys.argv[1:], "--one", f"{world}:{seed}:{out}"],
                               check=True, cwd=ROOT)
                reports.append(json.loads(out.read_text()))
                print(f"{world} seed {seed}: " + ", ".join(
                    f"{kind} model {reports[-1]['holdout'][kind].get('model', {}).get('map', float('nan')):.3f} "
                    f"oracle {reports[-1]['holdout'][kind].get('oracle', {}).get('map', float('nan')):.3f}"
                    for kind in KINDS), flush=True)
    table = markdown(reports, command)
    print("\n" + table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"command": command, "scale": args.scale, "runs": reports}, indent=1,
                                       sort_keys=True))


if __name__ == "__main__":
    main()
