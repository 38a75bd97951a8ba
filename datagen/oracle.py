"""The generator's own answer for held-out offers: each known client's true probability of being a new
customer of an offer, given everything the world holds at the cut.

A client's first adoption of brand b after the cut is whichever comes first of independent clocks
(the law is in world.py, the draws in simulate.py):
- the taste law: hazard (1 - v) * lambda(u, b, era) per month, spread over the month's days as the
  simulator spreads events (weekends busier);
- the ladder: b is adopted at the k-th step after the cut, k = (b's rank on the client's ladder) -
  (steps taken by the cut) + 1; steps are a Poisson process of rate v * A_u per month on uniform
  days, so P(no ladder adoption by t) = P(N(t) < k), a Poisson tail (never, if the walk passed b
  before it opened);
- each offer of b known at the cut: hazard LIFT * lambda(u, b, era) inside its window for the
  clients who see it. For an offer that started before the cut, its seens are delivered and so are
  its activations up to the cut; a seen client not activated yet may still be, with the generator's
  odds. For an offer that has not started, whom the bank will show it to is a draw still to come:
  P(seen) = 1 - exp(-tau * a_u^targeting), tau such that the expected number seen is the offer's
  reach (the large-population limit of the simulator's Gumbel top-k).
So S(t) = P(no adoption in [cut, t)) = exp(-H_taste(t)) * P(N_ladder(t) < k) * prod_o E[exp(-H_o(t))],
and P(first adoption in [s, e]) = S(max(s, cut)) - S(e + 1).

Clients who know b at the cut (a pair in the repertoire) get 0 if they bought there before the offer's
start, 1 if their first purchase fell inside the window before the cut (a running offer's converts),
and otherwise -- a brand known from before joining the bank, never bought yet -- the chance that a
repeat purchase lands in the window, with b's share of the client's loyalty at the cut.

Approximations, all small: the reach above; that loyalty share (brands adopted after the cut dilute
it a little); and offers of b not announced by the cut, whose exposure would add a little hazard but
which nobody can know of at the cut. Every held-out brand is open from the cut on (its merchant is
delivered), so no step after the cut finds it closed.
"""
from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.special import gammaincc

from datagen.simulate import (
    ACTIVATION_SHARE, LIFT_ACTIVATED, LIFT_SEEN, NEVER, Boost, Simulator, activation_days, day_number,
    month_day_weights, targeting_affinity,
)
from datagen.world import Behaviour, World
from domain.tables import OPEN_END


@dataclass(frozen=True)
class MonthSpan:
    """A month of the simulated future: its days, the world's era and the behaviour in it."""

    first_day: int
    days: int
    era: int
    behaviour: Behaviour
    day_weights: np.ndarray  # the simulator's probability of each day for a taste-law pick or a purchase

    @classmethod
    def of(cls, start: dt.date, era: int, behaviour: Behaviour) -> MonthSpan:
        return cls(day_number(start), calendar.monthrange(start.year, start.month)[1], era, behaviour,
                   month_day_weights(start, behaviour))

    def share(self, t0: int, t1: int, weighted: bool) -> float:
        """Share of the month's events that fall in days [t0, t1)."""
        lo, hi = max(t0, self.first_day) - self.first_day, min(t1, self.first_day + self.days) - self.first_day
        if hi <= lo:
            return 0.0
        return float(self.day_weights[lo:hi].sum()) if weighted else (hi - lo) / self.days


@dataclass(frozen=True)
class Exposure:
    """An offer of a brand known at the cut: delivered seens if it started before the cut, else a reach."""

    boost: Boost
    started: bool


class Oracle:
    def __init__(self, world: World, sim: Simulator, cut: int, users: np.ndarray, months: list[MonthSpan],
                 exposures: list[Exposure], positions: np.ndarray | None):
        self.world, self.cut, self.users, self.months = world, cut, users, months
        self.at = np.full(world.n_users, -1)
        self.at[users] = np.arange(len(users))
        # The repertoire at the cut: pairs adopted before it, and first purchases before it.
        known = (sim.adopted < cut) & (self.at[sim.keys // sim.nb] >= 0)
        keys = sim.keys[known]
        self.pair_user = self.at[keys // sim.nb]
        self.pair_brand = keys % sim.nb
        self.pair_first = np.where(sim.first_tx[known] < cut, sim.first_tx[known], NEVER)
        loyalty = sim.loyalty[known]
        self.pair_share = loyalty / np.bincount(self.pair_user, loyalty, minlength=len(users))[self.pair_user]
        self.by_brand = np.argsort(self.pair_brand, kind="stable")
        self.brand_bounds = np.searchsorted(self.pair_brand[self.by_brand], np.arange(sim.nb + 1))
        self.exposures: dict[int, list[Exposure]] = {}
        for exposure in exposures:
            self.exposures.setdefault(exposure.boost.brand, []).append(exposure)
        self.steps_taken = positions[users] if positions is not None else None
        # Per brand, cleared when the next brand is scored (a brand's hazards over eras are kept, not all).
        self._brand = -1
        self._cache: dict = {}

    def _cached(self, brand: int, key, compute):
        if brand != self._brand:
            self._brand, self._cache = brand, {}
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def hazard(self, brand: int, era: int) -> np.ndarray:
        """lambda(u, b) of the known clients in an era (per month)."""
        return self._cached(brand, ("hazard", era), lambda: self.world.hazard(self.users, brand, era))

    def _integral(self, rate, t0: int, t1: int, weighted: bool) -> np.ndarray | float:
        """Sum over months of rate(month) * the month's share of events in [t0, t1)."""
        total = 0.0
        for month in self.months:
            share = month.share(t0, t1, weighted)
            if share > 0:
                total = total + rate(month) * share
        return total

    def _reach(self, boost: Boost) -> np.ndarray:
        """P(the bank shows the offer to each known client), for an offer that has not started."""
        return self._cached(boost.brand, ("reach", boost.offer_id), lambda: self._draw_odds(boost))

    def _draw_odds(self, boost: Boost) -> np.ndarray:
        world = self.world
        era = next(m.era for m in self.months if m.first_day <= boost.start < m.first_day + m.days)
        active = np.flatnonzero(world.user_since <= era)
        size = max(3, int(len(active) * world.scale["seen_share"]))
        weight = targeting_affinity(world, active, boost.brand, era) ** world.targeting
        weight = weight / weight.mean()
        lo, hi = 0.0, 1.0
        while np.sum(-np.expm1(-hi * weight)) < size:
            hi *= 2
        for _ in range(60):  # bisection on tau: the expected number seen equals the reach
            tau = (lo + hi) / 2
            lo, hi = (tau, hi) if np.sum(-np.expm1(-tau * weight)) < size else (lo, tau)
        seen = np.zeros(world.n_users)
        seen[active] = -np.expm1(-(lo + hi) / 2 * weight)
        return seen[self.users]

    def _exposure_survival(self, exposure: Exposure, t: int) -> np.ndarray | float:
        """E[exp(-offer-driven hazard over [cut, t))] of each known client."""
        boost = exposure.boost
        t0, t1 = max(self.cut, boost.start), min(t, boost.end + 1)
        if t1 <= t0:
            return 1.0
        unit = self._integral(lambda m: self.hazard(boost.brand, m.era), t0, t1, weighted=False)
        activated, seen_only = np.exp(-LIFT_ACTIVATED * unit), np.exp(-LIFT_SEEN * unit)
        if not exposure.started:
            seen = self._reach(boost)
            return 1.0 - seen + seen * (ACTIVATION_SHARE * activated + (1 - ACTIVATION_SHARE) * seen_only)
        survival = np.ones(len(self.users))
        at = self.at[boost.users]
        inside = at >= 0
        at, activated_day = at[inside], boost.activated_day[inside]
        window = activation_days(boost.start, boost.end)
        later = max(0, window - (self.cut - boost.start)) / window  # P(activation day >= cut | activated)
        still = ACTIVATION_SHARE * later / (1 - ACTIVATION_SHARE * (1 - later))  # P(activates later | not yet)
        done = activated_day < self.cut
        survival[at] = np.where(done, activated[at], still * activated[at] + (1 - still) * seen_only[at])
        return survival

    def _ladder_survival(self, brand: int, t: int) -> np.ndarray | float:
        """P(the ladder walk has not adopted the brand by day t) of each known client without it."""
        world = self.world
        if world.ladder is None:
            return 1.0
        needed = self._cached(brand, "needed", lambda: self._steps_needed(brand))
        steps = world.visibility * world.adopt[self.users] * self._integral(lambda m: 1.0, self.cut, t, weighted=False)
        # needed <= 0: the walk passed it (before it opened, or it would be known): never by the ladder.
        return np.where(needed >= 1, gammaincc(np.maximum(needed, 1), steps), 1.0)

    def _steps_needed(self, brand: int) -> np.ndarray:
        """Ladder steps after the cut until each known client reaches the brand (0 or less: never)."""
        users, ranks, bounds = self._ladder_places
        slot = int(np.searchsorted(self._ladder_brands, brand))
        rank = np.full(self.world.n_users, -1)
        rank[users[bounds[slot]:bounds[slot + 1]]] = ranks[bounds[slot]:bounds[slot + 1]]
        rank = rank[self.users]
        return np.where(rank >= 0, rank - self.steps_taken + 1, 0)

    def index_ladders(self, brands: np.ndarray, chunk: int = 4096) -> None:
        """Where each of these brands sits on every client's ladder, found in one pass over the ladders
        (a pass per brand cost a second per ten brands at 15k clients)."""
        world = self.world
        self._ladder_brands = np.unique(brands)
        if world.ladder is None:
            return
        slot_of = np.full(world.n_brands, -1, np.int32)
        slot_of[self._ladder_brands] = np.arange(len(self._ladder_brands), dtype=np.int32)
        users, ranks, slots = [], [], []
        for lo in range(0, world.n_users, chunk):
            slot = slot_of[world.ladder[lo:lo + chunk]]
            rows, columns = np.nonzero(slot >= 0)
            users.append((rows + lo).astype(np.int32))
            ranks.append(columns.astype(np.int32))
            slots.append(slot[rows, columns])
        slots = np.concatenate(slots)
        order = np.argsort(slots, kind="stable")
        bounds = np.searchsorted(slots[order], np.arange(len(self._ladder_brands) + 1))
        self._ladder_places = (np.concatenate(users)[order], np.concatenate(ranks)[order], bounds)

    def _survival(self, brand: int, t: int) -> np.ndarray:
        """S(t): P(no adoption of the brand in [cut, t)) for each known client without it at the cut."""
        world = self.world
        taste = self._integral(lambda m: (1 - world.visibility) * self.hazard(brand, m.era), self.cut, t,
                               weighted=True)
        survival = np.exp(-taste) * self._ladder_survival(brand, t)
        for exposure in self.exposures.get(brand, []):
            survival = survival * self._exposure_survival(exposure, t)
        return np.broadcast_to(survival, len(self.users)).astype(np.float64)

    def _purchase_rate(self, month: MonthSpan) -> np.ndarray:
        """Transactions per month of the known clients in a month's behaviour."""
        world, behaviour = self.world, month.behaviour
        rate = world.rate[self.users] * behaviour.frequency
        if behaviour.segment_activity is not None:
            rate = rate * behaviour.segment_activity[world.cluster[self.users]]
        if behaviour.tier_activity is not None:
            rate = rate * behaviour.tier_activity[world.tier[self.users]]
        return rate

    def probability(self, brand: int, start: int, end: int) -> np.ndarray:
        """P(first purchase at the brand falls in [start, end]) for every known client."""
        begin = max(start, self.cut)
        probability = self._survival(brand, begin) - self._survival(brand, end + 1)
        pairs = self.by_brand[self.brand_bounds[brand]:self.brand_bounds[brand + 1]]
        user, first = self.pair_user[pairs], self.pair_first[pairs]
        probability[user[first < start]] = 0.0
        probability[user[(first >= start) & (first < self.cut)]] = 1.0
        quiet = first == NEVER
        if quiet.any():
            share = self.pair_share[pairs[quiet]]
            clients = user[quiet]
            purchases = lambda t: self._integral(lambda m: self._purchase_rate(m)[clients] * share,  # noqa: E731
                                                 self.cut, t, weighted=True)
            probability[clients] = np.exp(-purchases(begin)) - np.exp(-purchases(end + 1))
        return np.clip(probability, 0.0, 1.0)

    def table(self, offers: pl.DataFrame, brand_of: dict[int, int], horizon_end: int,
              top: int | None) -> pl.DataFrame:
        """(offer_id, merchant_id_offer, user_id, probability) of every offer row, windows clipped to the
        horizon; at most `top` clients per offer (the most likely) when given."""
        parts = []
        offers = offers.with_columns(pl.col("merchant_id_offer").replace_strict(brand_of).alias("brand"))
        self.index_ladders(offers["brand"].to_numpy())
        for offer in offers.sort("brand", "offer_id", "merchant_id_offer").iter_rows(named=True):
            brand = offer["brand"]
            start = day_number(offer["start_date"])
            end = horizon_end if offer["end_date"] is None or offer["end_date"] >= OPEN_END else \
                min(day_number(offer["end_date"]), horizon_end)
            probability = self.probability(brand, start, end)
            keep = np.arange(len(self.users))
            if top is not None and top < len(keep):
                keep = np.sort(np.argpartition(-probability, top - 1)[:top])
            parts.append(pl.DataFrame({"offer_id": offer["offer_id"], "merchant_id_offer": offer["merchant_id_offer"],
                                       "user_id": self.world.user_ids[self.users[keep]],
                                       "probability": probability[keep]}))
        schema = {"offer_id": pl.Int64, "merchant_id_offer": pl.Int64, "user_id": pl.Int64,
                  "probability": pl.Float64}
        if not parts:
            return pl.DataFrame(schema=schema)
        return pl.concat(parts).cast(schema).sort("offer_id", "merchant_id_offer", "user_id")

