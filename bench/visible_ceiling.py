"""How much of the oracle a ranking could reach that knows exactly what data can show, in a generated world.

    python bench/visible_ceiling.py [--scale small] [--seed 1] [--visibility 1] [--targeting 1]
    python bench/visible_ceiling.py --visibility 0 [--kind far]

A first adoption comes from one of two clocks (datagen/oracle.py): the ladder, in a world of
visibility above 0, and the taste law, below 1. Each is scored alone, as follows.

The oracle (datagen/oracle.py) knows each client's ladder, hidden noise included. A look-alike model
can at best learn the visible fit(u, b) (world.py), the client's adoption rate A_u and repertoire.
The ceiling ranking here is given exactly those: for an offer of brand b, the client's next ladder
steps are taken to be the open brands the client does not buy at yet, in fit order; b's place among
them is k, and the score is the chance that the k-th step comes inside the offer's window, with
steps a Poisson process of rate v * A_u from the cut: P(N(start) < k <= N(end));
customers from before the offer's start are left out, and a running offer's clients who already
bought inside its window come first (certain). It ignores the taste law and the offer's exposure (both smaller in a
high-visibility world), so it is a yardstick of visibility, not an optimum. MAP@100 over v1's fresh
(or, with --kind far, far) offers, next to the oracle's on the same offers and candidates, for:

- hidden repertoire: the brands the client knows in the simulator, bought at or not, are left out of
  the ladder (what this script reported first: a client who knows a brand but has not bought there
  yet is invisible in data, so this ceiling is not reachable from data);
- visible repertoire: only the brands the client has bought at are left out, as data shows them;
- visible repertoire with the fit known up to Gaussian noise of each `--noise` SD (seeded): how sharp
  the ceiling is. A learnt fit is an estimate; the ladder orders brands by small fit differences;
- visible repertoire with the fit and the pace estimated from data (`data_estimates`): the clients'
  first purchases before the cut give each client's category shares (the taste side of the fit; a
  brand's category is the one its customers' receipts over-represent most, `receipt_categories`), each
  brand's adopters and how they lean by each attribute of the client's profile as the people and
  segments tables show it (segment, age, region, gender, region size, VIP status: noisy views of the
  generator's cluster, region and tier; the brand side), and each client's adoptions of the last 12
  months (the pace; the online habit's small term is left out); then each side estimated with the other
  exact: a plain estimate from data to set a learnt one against.

The taste law (visibility below 1): a client's hazard of a first purchase at b is
(1 - v) * A_u * P_u(category of b) * P(b | its category, client type) (world.hazard, the era of the
month after the cut); the score is the chance of the first purchase inside the offer's window,
exp(-h * days to the start) - exp(-h * days to the end), with the same exclusions and certain converts.
It ignores the ladder, the offer's exposure and the brands a client knew before joining (the oracle
knows them). Rankings: that hazard exact, then with the pace (`data_estimates`), the category choice
(the client's category shares) and the brand choice (the brand side of `data_estimates`, normalised
over the open brands of the category) each from data with the rest exact, then all three from data.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from scipy.special import gammaincc  # noqa: E402

from datagen import generate_series  # noqa: E402
from datagen import scenarios as scenario_kinds  # noqa: E402
from datagen.series import FIRST_MONTH, HISTORY_MONTHS, WORLD_EXTRA_ERAS, Timeline, era_of_month  # noqa: E402
from datagen.simulate import day_number  # noqa: E402
from datagen.world import CATEGORY_NAMES, build_world, month_start  # noqa: E402
from ml.evaluate import average_precision_at_k, top_k  # noqa: E402
from ml.ground_truth import offers_ground_truth  # noqa: E402

PACE_MONTHS = 12       # adoptions counted for a client's estimated pace
SHARE_PRIOR = 2.0      # pseudo-adoptions spread as everyone's category mix, per client
LEAN_PRIOR = 5.0       # pseudo-adopters spread as the population, per brand and attribute


def first_purchases(sim, client_of: np.ndarray, cut: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(client, brand, day) of every client's first purchase at a brand before the cut."""
    owner = client_of[sim.keys // sim.nb]
    kept = (sim.first_tx < cut) & (owner >= 0)
    return owner[kept], (sim.keys % sim.nb)[kept], sim.first_tx[kept]


def receipt_categories(world, clients: np.ndarray, client_of: np.ndarray, firsts: tuple,
                       receipts: pl.DataFrame) -> np.ndarray:
    """Each brand's category as data shows it (no table names it): the category its customers
    (`first_purchases`) over-represent most in their receipts, against all clients' receipts; a category
    of its own (len(CATEGORY_NAMES)) without either."""
    at = {name: i for i, name in enumerate(CATEGORY_NAMES)}
    counts = np.zeros((len(clients), len(CATEGORY_NAMES)))
    users = client_of[np.searchsorted(world.user_ids, receipts["user_id"].to_numpy())]
    category = receipts["category_name"].replace_strict(at, return_dtype=pl.Int64).to_numpy()
    np.add.at(counts, (users[users >= 0], category[users >= 0]), 1)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    buyers, brands, _ = firsts
    profile = np.zeros((world.n_brands, len(CATEGORY_NAMES)))
    np.add.at(profile, brands, shares[buyers])
    lift = profile / np.maximum(profile.sum(axis=1, keepdims=True), 1e-12) / (shares.mean(axis=0) + 1e-12)
    return np.where(profile.sum(axis=1) > 0, lift.argmax(axis=1), len(CATEGORY_NAMES))


def profile_codes(people: pl.DataFrame, segments: pl.DataFrame, ids: np.ndarray) -> list[np.ndarray]:
    """The clients' (sorted `ids`) attributes as the version's people and segments tables give them,
    each as integer codes, missing a level of its own: the model's LIFT_ATTRIBUTES."""
    table = (pl.DataFrame({"user_id": ids}).join(people, on="user_id", how="left")
             .join(segments.unique("user_id", keep="last"), on="user_id", how="left").sort("user_id")
             .with_columns(pl.col("segment").str.extract(r"^\s*([^\s(]+)", 1)))
    return [table[name].cast(pl.Utf8).fill_null("<missing>").cast(pl.Categorical).to_physical().to_numpy()
            .astype(np.int64) for name in ("segment", "age_bucket", "region", "gender_cd", "region_size", "vip_status")]


def data_estimates(world, clients: np.ndarray, cut: int, firsts: tuple, categories: np.ndarray,
                   attributes: list[np.ndarray]) -> dict[str, np.ndarray]:
    """What first purchases before the cut (`first_purchases`) say about the ladder (clients x brands, and
    per client), with `categories` each brand's category as data shows it (`receipt_categories`) and
    `attributes` each client's codes as data shows them (`profile_codes`): taste: log of the client's
    smoothed share of adoptions in the brand's category; brand: log of the brand's adopters plus, for
    each of the client's attribute values, the log of how over-represented it is among them; pace:
    adoptions in the last PACE_MONTHS months per day (+ 0.5, so none is not zero)."""
    users, brands, days = firsts
    counts = np.zeros((len(clients), int(categories.max()) + 1))
    np.add.at(counts, (users, categories[brands]), 1)
    mix = (counts.sum(axis=0) + 1) / (counts.sum() + counts.shape[1])
    shares = (counts + SHARE_PRIOR * mix) / (counts.sum(axis=1, keepdims=True) + SHARE_PRIOR)
    brand = np.broadcast_to(np.log(np.bincount(brands, minlength=world.n_brands) + 0.5), (len(clients), world.n_brands))
    for level in attributes:
        population = np.bincount(level) / len(level)
        by_brand = np.zeros((world.n_brands, len(population)))
        np.add.at(by_brand, (brands, level[users]), 1)
        lean = (by_brand + LEAN_PRIOR * population) / (by_brand.sum(axis=1, keepdims=True) + LEAN_PRIOR)
        brand = brand + np.log(lean / population)[:, level].T
    span = 30.4 * PACE_MONTHS
    pace = (np.bincount(users[days >= cut - int(span)], minlength=len(clients)) + 0.5) / span
    return {"taste": np.log(shares[:, categories]), "brand": brand, "pace": pace, "category": categories}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=["tiny", "small"], default="small")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--visibility", type=float, default=1.0)
    parser.add_argument("--targeting", type=float, default=1.0)
    parser.add_argument("--series", default="base,same,drift_behaviour",
                        help="scenarios generated (the world depends on them; the default is bench/ml_quality.py's)")
    parser.add_argument("--kind", choices=["fresh", "running", "far"], default="fresh", help="held-out offers scored")
    parser.add_argument("--noise", default="0.3,1", help="comma-separated SDs of noise added to the fit")
    args = parser.parse_args()
    if not 0 <= args.visibility <= 1:
        parser.error("--visibility in [0, 1]")
    with tempfile.TemporaryDirectory(prefix="visible_ceiling_") as work:
        series = args.series.split(",")
        version = generate_series(work, args.scale, args.seed, series, "increment", args.visibility, args.targeting)[0]
        offers = pl.read_parquet(version / "_holdout" / "offer.parquet").filter(pl.col("kind") == args.kind)
        past = pl.read_parquet(version / "transaction.parquet").select("user_id", "brand_dk", "event_date")
        future = pl.read_parquet(version / "_holdout" / "transaction.parquet").select(past.columns)
        merchants = pl.read_parquet(version / "merchant.parquet")
        truth = offers_ground_truth(pl.concat([past, future]), offers, merchants)
        receipts = pl.read_parquet(version / "receipts.parquet").select("user_id", "category_name")
        people = pl.read_parquet(version / "people.parquet")
        segments = pl.read_parquet(version / "segments.parquet")
        oracle = pl.read_parquet(version / "_holdout" / "oracle.parquet")

    # The same world and history again (the generator is deterministic), read at the cut.
    behaviours = scenario_kinds.behaviours(series)
    world = build_world(args.scale, args.seed, versions=len(series) + WORLD_EXTRA_ERAS, behaviours=behaviours,
                        visibility=args.visibility, targeting=args.targeting)
    timeline = Timeline(world, behaviours, args.seed + 1)
    last_month = HISTORY_MONTHS - 1
    timeline.month(last_month)
    cut_date = month_start(FIRST_MONTH, last_month + 1)
    cut = day_number(cut_date)
    sim = timeline.sim
    clients = np.flatnonzero(world.user_since == 0)
    known = sim.keys[sim.adopted < cut]
    knows = np.zeros((world.n_users, world.n_brands), bool)
    knows[known // sim.nb, known % sim.nb] = True
    bought = sim.keys[sim.first_tx < cut]
    customer = np.zeros_like(knows)
    customer[bought // sim.nb, bought % sim.nb] = True
    open_brands = (world.brand_since <= 1)[None, :]
    fit = world.fit(clients)
    brand_of = dict(zip(world.merchants["merchant_id_offer"].to_list(), world.merchants["brand_index"].to_list()))
    ids = world.user_ids[clients]
    horizon = month_start(FIRST_MONTH, last_month + 6)
    client_of = np.full(world.n_users, -1)
    client_of[clients] = np.arange(len(clients))

    def first_purchase(brand: int) -> np.ndarray:
        """Per client, the day of the first purchase at `brand` (a large number if none)."""
        first = np.full(len(clients), np.iinfo(np.int64).max)
        pairs = np.flatnonzero(sim.keys % sim.nb == brand)
        where = client_of[sim.keys[pairs] // sim.nb]
        first[where[where >= 0]] = sim.first_tx[pairs][where >= 0]
        return first

    def bought_by(brand: int, row: dict) -> tuple[np.ndarray, np.ndarray]:
        """(customers before the offer's start: left out; converts between its start and the cut: certain)."""
        first = first_purchase(brand)
        start = day_number(row["start_date"])
        return first < start, (first >= start) & (first < cut)

    # Per held-out offer with new customers: its row, brand, ground truth, and who bought there by the cut.
    held_out = []
    for row in offers.iter_rows(named=True):
        relevant = set(truth.filter((pl.col("offer_id") == row["offer_id"])
                                    & (pl.col("merchant_id_offer") == row["merchant_id_offer"]))["user_id"].to_list())
        if relevant:
            brand = brand_of[row["merchant_id_offer"]]
            held_out.append((row, brand, relevant, *bought_by(brand, row)))

    def average_precision(chance: np.ndarray, relevant: set[int], excluded: np.ndarray,
                          converted: np.ndarray) -> float:
        """AP@100 of a ranking by `chance`, customers before the start left out, converts first."""
        score = np.where(excluded, -1.0, np.where(converted, 2.0, chance))
        return average_precision_at_k(ids[top_k(score, ids, 100)].tolist(), relevant)

    def ceiling(left_out: np.ndarray, estimate: np.ndarray, pace: np.ndarray | None = None) -> float:
        """MAP@100 of the ladder-place ranking with `estimate` as the fit, `left_out` brands off the
        ladder and `pace` ladder steps per day (default: the generator's)."""
        ranked = np.where(~left_out & open_brands, estimate, -np.inf)
        order = np.argsort(-ranked, axis=1, kind="stable")
        place = np.empty_like(order)
        np.put_along_axis(place, order, np.arange(world.n_brands)[None, :].repeat(len(clients), axis=0), axis=1)
        scores = []
        rate = args.visibility * world.adopt[clients] / 30.4 if pace is None else pace
        for row, brand, relevant, excluded, converted in held_out:
            # Steps by the start and by the end of the window: b is adopted inside it when the step that
            # reaches it comes after the first and by the second, P(N(start) <= k < N(end)).
            before = rate * max((row["start_date"] - cut_date).days, 0)
            by_end = rate * ((min(row["end_date"], horizon) - cut_date).days + 1)
            needed = place[:, brand] + 1
            chance = gammaincc(needed, before) - gammaincc(needed, by_end)
            scores.append(average_precision(chance, relevant, excluded, converted))
        return float(np.mean(scores))

    def taste_ceiling(hazard) -> float:
        """MAP@100 of the ranking by the taste law's chance of a first purchase inside the window, with
        hazard(brand) each client's hazard per day."""
        scores = []
        for row, brand, relevant, excluded, converted in held_out:
            rate = hazard(brand)
            before = max((row["start_date"] - cut_date).days, 0)
            by_end = (min(row["end_date"], horizon) - cut_date).days + 1
            chance = np.exp(-rate * before) - np.exp(-rate * by_end)
            scores.append(average_precision(chance, relevant, excluded, converted))
        return float(np.mean(scores))

    oracle_ap = []
    for row, brand, relevant, excluded, _ in held_out:
        mine = oracle.filter((pl.col("offer_id") == row["offer_id"])
                             & (pl.col("merchant_id_offer") == row["merchant_id_offer"]))
        probability = np.zeros(len(ids))
        probability[np.searchsorted(ids, mine["user_id"].to_numpy())] = mine["probability"].to_numpy()
        probability[excluded] = -1.0
        oracle_ap.append(average_precision_at_k(ids[top_k(probability, ids, 100)].tolist(), relevant))
    firsts = first_purchases(sim, client_of, cut)
    categories = receipt_categories(world, clients, client_of, firsts, receipts)
    data = data_estimates(world, clients, cut, firsts, categories, profile_codes(people, segments, ids))
    figures = {}
    if args.visibility > 0:
        figures["hidden repertoire"] = ceiling(knows[clients], fit)
        figures["visible repertoire"] = ceiling(customer[clients], fit)
        rng = np.random.default_rng(args.seed)
        for sd in (float(x) for x in args.noise.split(",") if x):
            figures[f"visible, fit noise SD {sd:g}"] = ceiling(customer[clients], fit + rng.normal(0, sd, fit.shape))
        taste = np.log(world.taste[clients][:, world.brand_category])
        figures["visible, pace from data"] = ceiling(customer[clients], fit, data["pace"])
        figures["visible, fit and pace from data"] = ceiling(customer[clients], data["taste"] + data["brand"],
                                                             data["pace"])
        figures["visible, taste from data, exact brand side"] = ceiling(customer[clients], fit - taste + data["taste"])
        figures["visible, exact taste, brand side from data"] = ceiling(customer[clients], taste + data["brand"])
    if args.visibility < 1:
        # The taste law's three factors, exact and from data (clients x categories, and per brand).
        weights, sums = world.type_weights(era_of_month(last_month + 1))
        types = world.user_type(clients)
        pace = (1 - args.visibility) * world.adopt[clients] / 30.4
        weighted = world.taste[clients] * sums[types]
        category = weighted / weighted.sum(axis=1, keepdims=True)
        shares = np.exp(data["taste"])  # clients x brands: the share of the brand's category
        appeal = np.where(open_brands, np.exp(data["brand"] - data["brand"].max(axis=1, keepdims=True)), 0.0)
        by_category = appeal @ np.eye(int(data["category"].max()) + 1)[data["category"]]  # clients x categories

        def exact_category(b: int) -> np.ndarray:
            return category[:, world.brand_category[b]]

        def data_category(b: int) -> np.ndarray:
            return shares[:, b]

        def exact_choice(b: int) -> np.ndarray:
            return weights[types, b] / sums[types, world.brand_category[b]]

        def data_choice(b: int) -> np.ndarray:
            return appeal[:, b] / by_category[:, data["category"][b]]

        def hazard(rate: np.ndarray, pick_category, pick_brand):
            """Per brand: each client's hazard per day, pace x category choice x brand choice."""
            return lambda b: rate * pick_category(b) * pick_brand(b)

        figures["taste law, exact"] = taste_ceiling(hazard(pace, exact_category, exact_choice))
        figures["taste law, pace from data"] = taste_ceiling(hazard(data["pace"], exact_category, exact_choice))
        figures["taste law, category choice from data"] = taste_ceiling(hazard(pace, data_category, exact_choice))
        figures["taste law, brand choice from data"] = taste_ceiling(hazard(pace, exact_category, data_choice))
        figures["taste law, all from data"] = taste_ceiling(hazard(data["pace"], data_category, data_choice))
    unknown = np.where(~customer[clients] & open_brands, fit, np.nan)
    spread = float(np.nanmean(np.nanstd(unknown, axis=1)))
    print(f"{args.scale} seed {args.seed} visibility {args.visibility:g} targeting {args.targeting:g}: "
          f"{args.kind} offers {len(held_out)}, MAP@100 oracle {np.mean(oracle_ap):.3f}; fit SD among a client's "
          f"unknown brands {spread:.2f}; brands whose category receipts show: "
          f"{np.mean(categories == world.brand_category):.2f}")
    for name, value in figures.items():
        print(f"  ceiling, {name}: {value:.3f}")


if __name__ == "__main__":
    main()
