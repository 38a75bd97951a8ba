"""Early buyers: how many of an audience become the brand's customers after the data ends but before the
offer starts, and what they cost. On a kept world of `bench/ml_quality.py --keep`:

    python bench/early_buyers.py DIR/high-likely-1 [--model MODEL_DIR] [--max-offers 100] [--seed 1]

An early buyer of an offer is a client known at the cut whose first purchase at the offer's brand falls
between the cut and the offer's start: a customer before the start, never in its ground truth, however
well the client fits the brand (fresh offers start within days of the cut, far ones months later). Per
kind of offer: the model's MAP@k, the early buyers in its top k and in the oracle's, and the model's MAP@k
had it known them (its ranking with the early buyers taken out, the rest moving up): what telling them
apart from the clients who buy inside the window would be worth. The offers are the bench run's (same
`--seed` and `--max-offers`), the model is scored through the serving path.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import polars as pl  # noqa: E402

from bench.compare_models import model_file, world_offers, world_version  # noqa: E402
from bench.ml_quality import KINDS, brand_index, known_transactions, oracle_frames, oracle_top  # noqa: E402
from domain.settings import load_params  # noqa: E402
from ml.catalog import read_table  # noqa: E402
from ml.evaluate import average_precision_at_k  # noqa: E402
from ml.features import EPOCH, non_customers  # noqa: E402
from ml.ground_truth import offers_ground_truth  # noqa: E402
from ml.serving import Scorer  # noqa: E402


def early_buyers(transactions: pl.DataFrame, offers: pl.DataFrame, merchants: pl.DataFrame,
                 cut: dt.date) -> dict[tuple[int, int], set[int]]:
    """Per offer starting after `cut` (offer_id, merchant_id_offer): the users whose first purchase at its
    brand falls in [cut, start): the ground truth of the same offer run from the cut to the day before."""
    later = offers.filter(pl.col("start_date") > cut).with_columns(
        end_date=pl.col("start_date") - pl.duration(days=1), start_date=pl.lit(cut))
    truth = offers_ground_truth(transactions, later, merchants)
    return {key: set(frame["user_id"].to_list())
            for key, frame in truth.partition_by(["offer_id", "merchant_id_offer"], as_dict=True).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("world", type=Path, help="a world directory kept by bench/ml_quality.py --keep")
    parser.add_argument("--model", type=Path, default=None, help="default: WORLD/model1")
    parser.add_argument("--seed", type=int, default=1, help="the world's seed: it draws the offers scored")
    parser.add_argument("--max-offers", type=int, default=100, help="held-out offers per kind, as the bench run")
    args = parser.parse_args()
    k = int(load_params()["model"].get("eval_top_k", 100))
    held_out = world_offers(args.world, args.seed, args.max_offers)
    version = world_version(args.world)
    catalog = args.world / "catalog1"
    scorer = Scorer(args.world / "bundle1", model_file(args.model or args.world / "model1"))
    state = scorer.state
    cut = EPOCH + dt.timedelta(days=int(state.cut))
    merchants = read_table(catalog, "merchant")
    offers = pl.DataFrame([row for _, row, _ in held_out]).select("offer_id", "merchant_id_offer", "start_date",
                                                                 "end_date")
    early = early_buyers(known_transactions(version, catalog), offers, merchants, cut)
    oracle = oracle_frames(version, held_out)
    brand_of = dict(zip(merchants["merchant_id_offer"].to_list(), merchants["brand_dk"].to_list()))
    rows = []
    for kind, row, relevant in held_out:
        key = (row["offer_id"], row["merchant_id_offer"])
        too_soon = early.get(key, set())
        # Deep enough that k remain however many early buyers are taken out.
        deep = [user for user, _ in scorer.score_offer(row["offer_id"], row["merchant_id_offer"], row["start_date"],
                                                       row["end_date"], row["offer_text"], k + len(too_soon)).users]
        brand = brand_index(state.brand_ids, brand_of.get(row["merchant_id_offer"]))
        pool = non_customers(state, brand, (row["start_date"] - EPOCH).days)
        best = oracle_top(state.user_ids[pool], oracle.get(key), k)
        rows.append({"kind": kind, "model": average_precision_at_k(deep[:k], relevant, k),
                     "model_early": len(too_soon.intersection(deep[:k])),
                     "oracle_early": len(too_soon.intersection(best.tolist())),
                     "early": len(too_soon), "new_customers": len(relevant),
                     "model_knowing": average_precision_at_k([u for u in deep if u not in too_soon][:k], relevant, k)})
    table = pl.DataFrame(rows)
    print(f"| offers | n | new customers per offer | early buyers per offer | early buyers in the model's top {k} "
          f"| in the oracle's top {k} | model MAP@{k} | model MAP@{k} knowing the early buyers |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in KINDS:
        of_kind = table.filter(pl.col("kind") == kind)
        if of_kind.height:
            mean = {name: float(of_kind[name].mean()) for name in of_kind.columns if name != "kind"}
            print(f"| {kind} | {of_kind.height} | {mean['new_customers']:.0f} | {mean['early']:.0f} "
                  f"| {mean['model_early']:.1f} | {mean['oracle_early']:.1f} | {mean['model']:.3f} "
                  f"| {mean['model_knowing']:.3f} |")


if __name__ == "__main__":
    main()
