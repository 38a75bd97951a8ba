"""A series of data versions over the simulated timeline, with scenarios: the same world, drift,
or corruption; each version written as typed parquet with a manifest, plus its held-out future."""
from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl

from datagen import scenarios as scenario_kinds
from datagen.oracle import Exposure, MonthSpan, Oracle
from datagen.simulate import EPOCH, Boost, Simulator, day_number
from datagen.world import AMOUNT_BUCKETS, Behaviour, World, build_world, load_texts, month_start
from domain.tables import TABLES

FIRST_MONTH = dt.date(2024, 6, 1)
HISTORY_MONTHS = 12          # v1 holds June 2024 .. May 2025 (cut 2025-06-01); its held-out offers start in June 2025
OFFER_MONTHS_BEFORE = 2      # offers (and who saw them) exist for the last two history months too
WORLD_EXTRA_ERAS = 2         # eras of newcomers and brands drawn past the series' end (the world's draws depend on it)
FAR_MONTHS = 3               # a version also announces the offers of the month starting two months after its cut
FUTURE_MONTHS = 5            # months after the cut whose transactions are held out: every window is clipped there
# How versions after the first are delivered:
#   increment    only new rows: the version's month, its new clients, merchants and offers;
#   full         everything so far;
#   corrections  everything so far, with a few old transactions corrected (CORRECTED_SHARE);
#   mixed        a different mode per table (MIXED_FULL tables everything so far, the rest only new rows);
#   redeliver    only new rows, and a version right after corrupted ones re-sends their months too.
MODES = ("increment", "full", "corrections", "mixed", "redeliver")
MIXED_FULL = {"people", "transaction", "merchant", "offer_seens", "offer_reward"}
CORRECTED_SHARE = 0.002


def _typed(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    schema = TABLES[table].columns
    return frame.select(pl.col(c).cast(t, strict=False) if c in frame.columns else pl.lit(None, t).alias(c)
                        for c, t in schema.items())


def era_of_month(month: int) -> int:
    """Which version a month belongs to (0 for the history of the first version)."""
    return max(0, month - (HISTORY_MONTHS - 1))


class Timeline:
    """Simulates months in order and remembers them, so each version reads what it needs."""

    def __init__(self, world: World, behaviours: dict[int, Behaviour], seed: int):
        self.world = world
        self.behaviours = behaviours
        self.sim = Simulator(world, seed)
        self.texts = load_texts()
        self.months: dict[int, dict] = {}
        self.boosts: list[Boost] = []
        self.boosts_by_month: dict[int, list[Boost]] = {}
        self.next_tx = 1
        self.next_offer = 1
        self.offers_so_far: pl.DataFrame | None = None
        self.pending_activations: pl.DataFrame | None = None  # recorded in a later month than their offer's
        self.positions: dict[int, np.ndarray] = {}  # month -> ladder steps taken by its end

    def month(self, index: int) -> dict:
        if index in self.months:
            return self.months[index]
        for earlier in range(len(self.months), index):
            self.month(earlier)
        world, era = self.world, era_of_month(index)
        start = month_start(FIRST_MONTH, index)
        offers = seens = activations = None
        if index >= HISTORY_MONTHS - OFFER_MONTHS_BEFORE:
            offers = self.sim.make_offers(start, world.scale["offers_per_month"], self.next_offer, self.texts,
                                          self.offers_so_far, era)
            self.next_offer += world.scale["offers_per_month"]
            self.offers_so_far = offers if self.offers_so_far is None else pl.concat([self.offers_so_far, offers])
            new_boosts, seens, activations = self.sim.offer_interactions(
                offers.filter(pl.col("start_date") >= start), era)
            self.boosts_by_month[index] = new_boosts
            self.boosts.extend(new_boosts)
            today = int((np.datetime64(start, "D") - EPOCH).astype(int))
            self.boosts = [b for b in self.boosts if b.end >= today]
            # An activation belongs to the month of its date: a version holds those up to its cut only.
            activations = _concat([self.pending_activations, activations])
            if activations is not None:
                after = pl.col("activation_date") >= month_start(FIRST_MONTH, index + 1)
                self.pending_activations = activations.filter(after)
                activations = activations.filter(~after)
        transactions, receipts = self.sim.month(start, era, self.behaviours.get(era, Behaviour()), self.boosts,
                                                self.next_tx)
        self.next_tx += transactions.height
        self.positions[index] = self.sim.position.copy()
        self.months[index] = {"transaction": transactions, "receipts": receipts,
                              "offer": offers, "offer_seens": seens, "offer_activation": activations}
        return self.months[index]

    def far_offers(self, era: int) -> pl.DataFrame:
        """The offers version `era` announces early: new offers of the month FAR_MONTHS after its last one,
        of merchants the version already delivers."""
        index = HISTORY_MONTHS - 1 + era + FAR_MONTHS
        known = self.world.merchants.filter(pl.col("since") <= era + 1)["merchant_id_offer"].implode()
        return self.month(index)["offer"].filter((pl.col("start_date") >= month_start(FIRST_MONTH, index))
                                                 & pl.col("merchant_id_offer").is_in(known))

    def offer_rows(self, era: int, whole: bool, since: int) -> pl.DataFrame | None:
        """The offer rows version `era` delivers. Whole: every month's offers up to the next one (the
        held-out fresh ones), plus the far offers announced so far. Otherwise what versions `since`..`era`
        announced: each one's next month (less what was announced early) and its far offers."""
        last_month = HISTORY_MONTHS - 1 + era
        if whole:
            months = range(HISTORY_MONTHS - OFFER_MONTHS_BEFORE, last_month + 2)
            early = [self.far_offers(e) for e in range(max(0, era - 1), era + 1)]
            return _concat([self.month(m)["offer"] for m in months] + early)
        rows = []
        for announcing in range(since, era + 1):
            next_month = self.month(HISTORY_MONTHS + announcing)["offer"]
            if announcing >= 2:  # part of that month was announced two versions before
                next_month = next_month.join(self.far_offers(announcing - 2).select("offer_id", "merchant_id_offer"),
                                             on=["offer_id", "merchant_id_offer"], how="anti", maintain_order="left")
            rows += [next_month, self.far_offers(announcing)]
        return _concat(rows)


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


def _correct(transactions: pl.DataFrame, before: dt.date, rng: np.random.Generator) -> tuple[pl.DataFrame, int]:
    """A few old transactions (dated before `before`) re-sent corrected: their amount moves one bucket
    along the bucket order of AMOUNT_BUCKETS, as a late correction by the bank would."""
    old = (transactions["event_date"] < before).to_numpy()
    corrected = old & (rng.random(transactions.height) < CORRECTED_SHARE)
    order = {bucket: index for index, bucket in enumerate(AMOUNT_BUCKETS)}
    moved = pl.col("amount_bucket").replace_strict(order, default=None).add(1).mod(len(AMOUNT_BUCKETS))
    frame = transactions.with_columns(
        pl.when(pl.Series(corrected)).then(moved.replace_strict(dict(enumerate(AMOUNT_BUCKETS)), default=None))
        .otherwise(pl.col("amount_bucket")).alias("amount_bucket"))
    return frame, int(corrected.sum())


class Delivered(NamedTuple):
    """What a version's table carries: the months, the clients (a mask over the world's) and the
    merchants (a filter on their arrival)."""

    months: range
    clients: np.ndarray
    merchants: pl.Expr


def generate_series(out_dir: Path | str, scale: str = "tiny", seed: int = 42,
                    scenarios: list[str] | tuple[str, ...] = ("base", "same"), mode: str = "increment",
                    visibility: float = 0.0, targeting: float = 1.0) -> list[Path]:
    """Write one directory per version (v1, v2, ...) and return their paths.

    v1 (the first scenario, normally "base") holds HISTORY_MONTHS of history; every later version one
    more month, new clients, new brands and merchants, new offers, in the way its scenario says.
    `visibility` and `targeting` shape the world (world.py); 0 and 1 are the original world."""
    if mode not in MODES:
        raise ValueError(f"mode is one of {', '.join(MODES)}")
    unknown = [s for s in scenarios if s not in scenario_kinds.ALL]
    if unknown:
        raise ValueError(f"unknown scenarios {unknown}; known: {sorted(scenario_kinds.ALL)}")
    out_dir = Path(out_dir)
    behaviours = scenario_kinds.behaviours(scenarios)
    world = build_world(scale, seed, versions=len(scenarios) + WORLD_EXTRA_ERAS, behaviours=behaviours,
                        visibility=visibility, targeting=targeting)
    timeline = Timeline(world, behaviours, seed + 1)
    rng = np.random.default_rng(seed + 2)
    paths = []
    for era, scenario in enumerate(scenarios):
        last_month = HISTORY_MONTHS - 1 + era
        # The first era the service will take as new: this version's own, or the first of the corrupted
        # (so never accepted) versions right before it, when this version re-sends their months.
        unaccepted = era
        while unaccepted > 1 and scenario_kinds.is_corruption(scenarios[unaccepted - 1]):
            unaccepted -= 1
        since = unaccepted if mode == "redeliver" else era  # the first era an increment delivers
        for future in range(1, FUTURE_MONTHS + 1):
            timeline.month(last_month + future)
        all_tx = _concat([timeline.month(m)["transaction"] for m in range(0, last_month + 1)])
        last_seen = all_tx.group_by("user_id").agg(pl.col("event_date").max().cast(pl.Utf8).alias("last_activity_day"))

        def delivered(table: str) -> Delivered:
            """What the table carries: months, clients and merchants (by arrival)."""
            if era == 0 or mode in ("full", "corrections") or (mode == "mixed" and table in MIXED_FULL):
                return Delivered(range(0, last_month + 1), world.user_since <= era, pl.col("since") <= era + 1)
            return Delivered(range(HISTORY_MONTHS - 1 + since, last_month + 1),
                             (world.user_since >= since) & (world.user_since <= era),
                             pl.col("since").is_between(since + 1, era + 1))

        def clients(table: str) -> pl.Expr:
            return pl.col("user_id").is_in(pl.Series(world.user_ids[delivered(table).clients]).implode())

        def monthly(table: str) -> pl.DataFrame | None:
            return _concat([timeline.month(m)[table] for m in delivered(table).months])

        rewarded = _concat([timeline.month(m)["offer_activation"] for m in delivered("offer_reward").months])
        tables = {
            "people": world.people.filter(clients("people")).drop("last_activity_day")
            .join(last_seen, on="user_id", how="left"),
            "segments": world.segments.filter(clients("segments")),
            "financial_account": world.accounts.filter(clients("financial_account")),
            "merchant": world.merchants.filter(delivered("merchant").merchants).drop("since", "brand_index"),
            "transaction": monthly("transaction"),
            "receipts": monthly("receipts"),
            "offer": timeline.offer_rows(era, whole=delivered("offer").months[0] == 0, since=since),
            "offer_seens": monthly("offer_seens"),
            "offer_activation": monthly("offer_activation"),
            "offer_reward": _rewards(rewarded, timeline.offers_so_far, world.merchants, all_tx, rng),
        }
        del all_tx
        tables = {name: _typed(name, frame) for name, frame in tables.items() if frame is not None}
        cut = month_start(FIRST_MONTH, last_month + 1)
        own_month = month_start(FIRST_MONTH, last_month)
        manifest = {"version": f"v{era + 1}", "scenario": scenario_kinds.canonical(scenario), "mode": mode,
                    "scale": scale, "seed": seed, "cut_date": str(cut),
                    "first_date": str(month_start(FIRST_MONTH, delivered("transaction").months[0])),
                    "visibility": world.visibility, "targeting": world.targeting}
        if mode == "corrections" and era:
            tables["transaction"], manifest["corrected_rows"] = _correct(tables["transaction"], own_month, rng)
        # What the service will see as new: the version's own month, and the months of corrupted versions
        # before it that it re-sends (whole or re-delivered).
        resends = mode == "redeliver" or delivered("transaction").months[0] == 0
        new_since = month_start(FIRST_MONTH, HISTORY_MONTHS - 1 + (unaccepted if resends else era)) if era else None
        tables, manifest = scenario_kinds.corrupt(scenario, tables, manifest, world, rng, new_since=new_since)
        path = out_dir / f"v{era + 1}"
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        for name, frame in tables.items():
            frame.write_parquet(path / f"{name}.parquet")
        manifest["tables"] = {name: {"rows": frame.height} for name, frame in tables.items()}
        (path / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
        _write_holdout(path / "_holdout", timeline, last_month, world, era)
        paths.append(path)
    return paths


def holdout_offers(timeline: Timeline, era: int) -> pl.DataFrame:
    """The held-out offers of version `era`, each once, with their kind:

    - fresh: new offers starting in the month right after the cut;
    - running: offers whose window contains the cut (start < cut <= end); their seens, and their
      activations up to the cut, are in the versions so far;
    - far: offers announced in this version whose window starts FAR_MONTHS - 1 months after the cut.
    An offer_id delivered in several rows (a repeat with another end or text) has no single window
    and is left out."""
    last_month = HISTORY_MONTHS - 1 + era
    cut = month_start(FIRST_MONTH, last_month + 1)
    earlier = _concat([timeline.month(m)["offer"] for m in range(HISTORY_MONTHS - OFFER_MONTHS_BEFORE, last_month + 1)])
    kinds = {
        "fresh": timeline.month(last_month + 1)["offer"].filter(pl.col("start_date") >= cut),
        "running": earlier.filter((pl.col("start_date") < cut) & (pl.col("end_date") >= cut)),
        "far": timeline.far_offers(era),
    }
    delivered = _concat([earlier, timeline.month(last_month + 1)["offer"], timeline.far_offers(era)])
    repeated = delivered.group_by("offer_id").len().filter(pl.col("len") > 1)["offer_id"].implode()
    return pl.concat([_typed("offer", frame).with_columns(pl.lit(kind).alias("kind")) for kind, frame in kinds.items()]
                     ).filter(~pl.col("offer_id").is_in(repeated)).unique(["offer_id", "merchant_id_offer"],
                                                                          keep="first", maintain_order=True)


def _write_holdout(path: Path, timeline: Timeline, last_month: int, world: World, era: int) -> None:
    """The version's held-out offers of the three kinds (`offer.parquet`, with a `kind` column), the
    known clients' transactions of the FUTURE_MONTHS after the cut (never sent), and the generator's
    own probability that each known client becomes a new customer of each offer (`oracle.py`)."""
    path.mkdir(parents=True, exist_ok=True)
    cut = day_number(month_start(FIRST_MONTH, last_month + 1))
    offers = holdout_offers(timeline, era)
    future_months = range(last_month + 1, last_month + 1 + FUTURE_MONTHS)
    # Only clients known at the cut: newcomers of later versions cannot be ranked by anyone.
    known = np.flatnonzero(world.user_since <= era)
    future = _typed("transaction", _concat([timeline.month(m)["transaction"] for m in future_months])
                    .filter(pl.col("user_id").is_in(pl.Series(world.user_ids[known]).implode())))
    offers.write_parquet(path / "offer.parquet")
    future.write_parquet(path / "transaction.parquet")
    horizon_end = day_number(month_start(FIRST_MONTH, future_months[-1] + 1)) - 1
    spans = [MonthSpan.of(month_start(FIRST_MONTH, m), era_of_month(m),
                          timeline.behaviours.get(era_of_month(m), Behaviour())) for m in future_months]
    # Offers known at the cut: those started before it (their seens delivered) and those announced.
    announced = set(timeline.month(last_month + 1)["offer"]["offer_id"].to_list())
    for far in range(max(0, era - 1), era + 1):
        announced |= set(timeline.far_offers(far)["offer_id"].to_list())
    exposures = [Exposure(boost, started=boost.start < cut)
                 for month, boosts in timeline.boosts_by_month.items() for boost in boosts
                 if (month <= last_month and boost.end >= cut) or boost.offer_id in announced]
    positions = timeline.positions[last_month] if world.ladder is not None else None
    oracle = Oracle(world, timeline.sim, cut, known, spans, exposures, positions)
    brand_of = dict(zip(world.merchants["merchant_id_offer"].to_list(), world.merchants["brand_index"].to_list()))
    table = oracle.table(offers, brand_of, horizon_end, world.scale["oracle_top"])
    table.with_columns(pl.col("probability").cast(pl.Float32)).write_parquet(path / "oracle.parquet")
