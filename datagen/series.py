"""A series of data versions over the simulated timeline, with scenarios: the same world, drift,
or corruption; each version written as typed parquet with a manifest, plus its held-out future."""
from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl

from datagen import scenarios as scenario_kinds
from datagen.simulate import OFFER_LIFT, make_offers, offer_interactions, simulate_month
from datagen.world import Behaviour, World, build_world, load_texts, month_start, purchase_probability
from domain.tables import TABLES

FIRST_MONTH = dt.date(2024, 7, 1)
HISTORY_MONTHS = 11          # v1 holds July 2024 .. May 2025; its held-out offers start in June 2025
OFFER_MONTHS_BEFORE = 2      # offers (and who saw them) exist for the last two history months too


def _typed(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    schema = TABLES[table].columns
    return frame.select(pl.col(c).cast(t, strict=False) if c in frame.columns else pl.lit(None, t).alias(c)
                        for c, t in schema.items())


class Timeline:
    """Simulates months lazily and remembers them, so each version reads what it needs."""

    def __init__(self, world: World, behaviours: dict[int, Behaviour]):
        self.world = world
        self.behaviours = behaviours
        self.texts = load_texts()
        self.months: dict[int, dict] = {}
        self.boosts: list = []
        self.next_tx = 1
        self.next_offer = 1
        self.offers_so_far: pl.DataFrame | None = None

    def era(self, month: int) -> int:
        """Which version a month belongs to (0 for the history of the first version)."""
        return max(0, month - (HISTORY_MONTHS - 1))

    def month(self, index: int) -> dict:
        if index in self.months:
            return self.months[index]
        for earlier in range(len(self.months), index):
            self.month(earlier)
        world, era = self.world, self.era(index)
        offers = seens = activations = None
        if index >= HISTORY_MONTHS - OFFER_MONTHS_BEFORE:
            count = world.scale["offers_per_month"]
            offers = make_offers(world, index, FIRST_MONTH, count, self.next_offer, self.texts, self.offers_so_far,
                                 era=era)
            self.next_offer += count
            self.offers_so_far = offers if self.offers_so_far is None else pl.concat([self.offers_so_far, offers])
            new_boosts, seens, activations = offer_interactions(world, offers, era)
            self.boosts.extend(new_boosts)
        simulated = simulate_month(world, index, FIRST_MONTH, self.behaviours.get(era, Behaviour()), self.boosts,
                                   self.next_tx, era=era)
        self.next_tx += simulated.transactions.height
        self.months[index] = {"transaction": simulated.transactions, "receipts": simulated.receipts,
                              "offer": offers, "offer_seens": seens, "offer_activation": activations}
        return self.months[index]


def _concat(frames: list[pl.DataFrame | None]) -> pl.DataFrame | None:
    present = [f for f in frames if f is not None and f.height]
    return pl.concat(present) if present else None


def _rewards(activations: pl.DataFrame | None, offers: pl.DataFrame | None, merchants: pl.DataFrame,
             transactions: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame | None:
    """A reward row for each activation followed by a purchase at the brand within the window."""
    if activations is None or offers is None:
        return None
    windows = (offers.unique(["offer_id"], keep="first", maintain_order=True).join(merchants.select("merchant_id_offer", "brand_dk"),
                                                             on="merchant_id_offer")
               .select("offer_id", "brand_dk", "start_date", "end_date"))
    rewarded = (activations.join(windows, on="offer_id")
                .join(transactions.select("user_id", "brand_dk", "event_date"), on=["user_id", "brand_dk"])
                .filter(pl.col("event_date").is_between(pl.col("start_date"), pl.col("end_date")))
                .group_by("user_id", "offer_id").agg(pl.col("event_date").min())
                .with_columns(pl.lit(0.0).alias("reward_amt")).sort("offer_id", "user_id"))
    duplicates = rewarded.filter(pl.Series(rng.random(rewarded.height) < 0.03))
    return pl.concat([rewarded, duplicates])  # the real table carries exact duplicates


def generate_series(out_dir: Path | str, scale: str = "tiny", seed: int = 42,
                    scenarios: list[str] | tuple[str, ...] = ("base", "same"), mode: str = "increment") -> list[Path]:
    """Write one directory per version (v1, v2, ...) and return their paths."""
    if mode not in ("increment", "full"):
        raise ValueError("mode is 'increment' or 'full'")
    unknown = [s for s in scenarios if s not in scenario_kinds.ALL]
    if unknown:
        raise ValueError(f"unknown scenarios {unknown}; known: {sorted(scenario_kinds.ALL)}")
    out_dir = Path(out_dir)
    n_versions = len(scenarios)
    world = build_world(scale, seed, months=n_versions + 2)
    behaviours = {era: scenario_kinds.behaviour(name, world) for era, name in enumerate(scenarios)}
    timeline = Timeline(world, behaviours)
    rng = np.random.default_rng(seed + 1)
    paths = []
    for era, scenario in enumerate(scenarios):
        first_month = 0 if era == 0 else HISTORY_MONTHS - 1 + era
        last_month = HISTORY_MONTHS - 1 + era
        version_months = range(first_month, last_month + 1)
        known_months = range(0, last_month + 1)
        months = version_months if mode == "increment" else known_months
        # Offers of the next month are announced in this version (they are the held-out ones).
        announced = range(HISTORY_MONTHS - OFFER_MONTHS_BEFORE, last_month + 2)
        offer_months = announced if (mode == "full" or era == 0) else [last_month + 1]
        timeline.month(last_month + 1)
        all_tx = _concat([timeline.month(m)["transaction"] for m in known_months])
        new_users = (world.user_since == era) if mode == "increment" else (world.user_since <= era)
        users = world.user_ids[new_users]
        # Merchants arrive with the version that announces their first offers (next month's included).
        merchants = world.merchants.filter(
            (pl.col("since") <= era + 1) if (mode == "full" or era == 0) else (pl.col("since") == era + 1))
        last_seen = all_tx.group_by("user_id").agg(pl.col("event_date").max().cast(pl.Utf8).alias("last_activity_day"))
        activations = _concat([timeline.month(m)["offer_activation"] for m in months])
        tables = {
            "people": world.people.filter(pl.col("user_id").is_in(users)).drop("last_activity_day")
            .join(last_seen, on="user_id", how="left"),
            "segments": world.segments.filter(pl.col("user_id").is_in(users)),
            "financial_account": world.accounts.filter(pl.col("user_id").is_in(users)),
            "merchant": merchants.drop("since"),
            "transaction": _concat([timeline.month(m)["transaction"] for m in months]),
            "receipts": _concat([timeline.month(m)["receipts"] for m in months]),
            "offer": _concat([timeline.month(m)["offer"] for m in offer_months]),
            "offer_seens": _concat([timeline.month(m)["offer_seens"] for m in months]),
            "offer_activation": activations,
            "offer_reward": _rewards(activations, timeline.offers_so_far, world.merchants, all_tx, rng),
        }
        tables = {name: _typed(name, frame) for name, frame in tables.items() if frame is not None}
        manifest = {"version": f"v{era + 1}", "scenario": scenario, "mode": mode,
                    "cut_date": str(month_start(FIRST_MONTH, last_month + 1))}
        tables, manifest = scenario_kinds.corrupt(scenario, tables, manifest, world, rng)
        path = out_dir / f"v{era + 1}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        for name, frame in tables.items():
            frame.write_parquet(path / f"{name}.parquet")
        manifest["tables"] = {name: {"rows": frame.height} for name, frame in tables.items()}
        (path / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
        _write_holdout(path / "_holdout", timeline, last_month, world)
        paths.append(path)
    return paths


def _write_holdout(path: Path, timeline: Timeline, last_month: int, world: World) -> None:
    """The next month's offers, the transactions of the two months after the cut (never sent), and
    the generator's own probability that each client becomes a new customer of each offer."""
    path.mkdir(parents=True, exist_ok=True)
    offers = timeline.month(last_month + 1)["offer"]
    future = _concat([timeline.month(last_month + 1)["transaction"], timeline.month(last_month + 2)["transaction"]])
    offers.write_parquet(path / "offer.parquet")
    future.write_parquet(path / "transaction.parquet")
    brand_index = {int(b): i for i, b in enumerate(world.brand_ids)}
    merchant_brand = dict(zip(world.merchants["merchant_id_offer"].to_list(), world.merchants["brand_dk"].to_list()))
    era = timeline.era(last_month + 1)
    active = np.flatnonzero(world.user_since <= era)
    boosts_by_offer: dict[int, list[dict]] = {}
    for boost in timeline.boosts:
        boosts_by_offer.setdefault(boost["offer_id"], []).append(boost)
    parts = []
    for offer in offers.unique(["offer_id", "merchant_id_offer"], keep="first", maintain_order=True).iter_rows(named=True):
        brand = brand_index[int(merchant_brand[offer["merchant_id_offer"]])]
        end = min(offer["end_date"], offer["start_date"] + dt.timedelta(60))
        months = ((end - offer["start_date"]).days + 1) / 30
        organic = 1 - np.exp(-world.rate[active] * months * purchase_probability(world, active, brand))
        trial = np.zeros(len(active))
        for boost in boosts_by_offer.get(offer["offer_id"], []):
            trial[np.isin(active, boost["seen"])] = min(1.0, OFFER_LIFT * months + 0.02)
        probability = 1 - (1 - organic) * (1 - trial)
        parts.append(pl.DataFrame({"offer_id": offer["offer_id"], "merchant_id_offer": offer["merchant_id_offer"],
                                   "user_id": world.user_ids[active], "probability": probability}))
    pl.concat(parts).write_parquet(path / "oracle.parquet")
