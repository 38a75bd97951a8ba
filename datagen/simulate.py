"""Month-by-month simulation: brand adoption, repeat purchases, receipts, offers and who meets them.

State is a sparse set of (client, brand) pairs -- the client's repertoire -- kept sorted by
key = client * n_brands + brand, with the day of adoption, the day of the first transaction and a
loyalty weight, plus each client's position on their ladder (world.py). Everything is vectorised over
events; Python loops run over categories, offers and months only.
"""
from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from datagen.world import (
    AMOUNT_BUCKETS, CATEGORY_NAMES, CATEGORY_PRICE, K, LADDER_STREAM, Behaviour, World,
)

OFFER_DURATIONS = np.array([0, 6, 13, 20, 27, 29, 30, 44, 59, 89, 179])
OFFER_DURATION_P = np.array([0.03, 0.04, 0.08, 0.06, 0.14, 0.3, 0.17, 0.06, 0.06, 0.04, 0.02])
OPEN_END = dt.date(5999, 1, 1)
LIFT_SEEN = 0.5        # hazard multiplier (1 + lift) while the offer runs, for clients who saw it
LIFT_ACTIVATED = 3.0   # ... and for clients who activated it
ACTIVATION_SHARE = 0.45
EPOCH = np.datetime64("1970-01-01", "D")
NEVER = np.iinfo(np.int32).max
PRIOR = np.iinfo(np.int32).min


def labels(names: list[str], index: np.ndarray) -> pl.Series:
    """names[index] as a polars string column (numpy unicode arrays convert slowly)."""
    return pl.Series(names, dtype=pl.Utf8).gather(pl.Series(index, dtype=pl.UInt32))


def day_number(date: dt.date) -> int:
    return int((np.datetime64(date, "D") - EPOCH).astype(int))


@dataclass
class Boost:
    offer_id: int
    brand: int
    users: np.ndarray      # client indices who saw the offer
    lift: np.ndarray       # per client: LIFT_SEEN or LIFT_ACTIVATED, over the whole window
    start: int             # day numbers, inclusive
    end: int
    activated_day: np.ndarray  # per client: the day the activation is recorded, NEVER if none


class Simulator:
    def __init__(self, world: World, seed: int):
        self.world = world
        self.rng = np.random.default_rng(seed)
        self.nb = world.n_brands
        self.keys = np.empty(0, np.int64)          # sorted client * nb + brand
        self.adopted = np.empty(0, np.int32)       # day number, PRIOR for brands known before the client arrived
        self.first_tx = np.empty(0, np.int32)      # day number of the first transaction, NEVER if none yet
        self.loyalty = np.empty(0, np.float64)
        self.initialised: set[int] = set()         # eras whose newcomers got their prior repertoire
        self._samplers: dict[int, tuple] = {}
        # The ladder walk draws from its own stream, so the taste law's draws are the same at any visibility.
        self.ladder_rng = np.random.default_rng([seed, LADDER_STREAM])
        self.position = np.zeros(world.n_users, np.int64)  # ladder steps each client has taken

    # --- brand sampling by the adoption law --------------------------------------------------------------
    def _sampler(self, era: int):
        if era not in self._samplers:
            w, s = self.world.type_weights(era)
            order = np.argsort(self.world.brand_category, kind="stable")
            cat_start = np.searchsorted(self.world.brand_category[order], np.arange(K))
            cum = np.cumsum(w[:, order].ravel())
            self._samplers[era] = (order, np.append(cat_start, self.nb), cum, s)
        return self._samplers[era]

    def sample_brands(self, users: np.ndarray, era: int) -> np.ndarray:
        """One brand per event, with probability lambda(u, b) / A_u."""
        rng, world = self.rng, self.world
        order, bounds, cum, s = self._sampler(era)
        types = world.user_type(users)
        weights = world.taste[users] * s[types]
        cumulative = np.cumsum(weights, axis=1)
        category = (cumulative < rng.random(len(users))[:, None] * cumulative[:, -1:]).sum(axis=1)
        category = np.minimum(category, K - 1)
        lo = types * self.nb + bounds[category]
        hi = types * self.nb + bounds[category + 1]
        base = np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
        pos = base + rng.random(len(users)) * s[types, category]
        index = np.clip(np.searchsorted(cum, pos, side="right"), lo, np.maximum(hi - 1, lo))
        return order[index - types * self.nb]

    # --- repertoire ---------------------------------------------------------------------------------------
    def _add_pairs(self, users: np.ndarray, brands: np.ndarray, days: np.ndarray, era: int) -> np.ndarray:
        """Adopt (client, brand) pairs not yet known, first event first; returns the new keys' positions."""
        keys = users.astype(np.int64) * self.nb + brands
        order = np.lexsort((days, keys))
        keys, days, users, brands = keys[order], days[order], users[order], brands[order]
        first = np.ones(len(keys), bool)
        first[1:] = keys[1:] != keys[:-1]
        keys, days, users, brands = keys[first], days[first], users[first], brands[first]
        if len(self.keys):
            known = np.searchsorted(self.keys, keys)
            hit = (known < len(self.keys)) & (self.keys[np.minimum(known, len(self.keys) - 1)] == keys)
            keys, days, users, brands = keys[~hit], days[~hit], users[~hit], brands[~hit]
        w, s = self.world.type_weights(era)
        types = self.world.user_type(users)
        affinity = self.world.taste[users, self.world.brand_category[brands]] * w[types, brands]
        norm = (self.world.taste[users] * s[types]).sum(axis=1)
        loyalty = np.sqrt(affinity / norm) * self.rng.lognormal(0, 0.8, len(keys))
        at = np.searchsorted(self.keys, keys)
        self.keys = np.insert(self.keys, at, keys)
        self.adopted = np.insert(self.adopted, at, days.astype(np.int32))
        self.first_tx = np.insert(self.first_tx, at, np.full(len(keys), NEVER, np.int32))
        self.loyalty = np.insert(self.loyalty, at, loyalty)
        return keys

    def _newcomers(self, era: int) -> None:
        """Clients who arrive in an era already shop somewhere: a prior repertoire, never seen adopting."""
        if era in self.initialised:
            return
        self.initialised.add(era)
        world = self.world
        fresh = np.flatnonzero(world.user_since == era)
        counts = self.rng.poisson(world.adopt[fresh] * (1 - world.visibility) * world.scale["prior_months"]) + 1
        users = np.repeat(fresh, counts)
        brands = self.sample_brands(users, era)
        if world.ladder is not None:
            walked, rungs, _ = self._ladder_steps(fresh, world.adopt[fresh] * world.scale["prior_months"], PRIOR, 1,
                                                  era)
            users, brands = np.concatenate([users, walked]), np.concatenate([brands, rungs])
        self._add_pairs(users, brands, np.full(len(users), PRIOR, np.int64), era)

    def _ladder_steps(self, clients: np.ndarray, rate: np.ndarray, first_day: int, days: int, era: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each client walks Poisson(visibility * rate) steps down their ladder (rate: the client's adoptions
        expected in the period) on uniform days of [first_day, first_day + days). A step adopts the brand it
        lands on if the brand is open (a brand passed before it opened is left behind: the client moved on).
        Returns the (client, brand, day) of the adoptions."""
        world = self.world
        counts = self.ladder_rng.poisson(rate * world.visibility)
        users = np.repeat(clients, counts)
        step_days = first_day + self.ladder_rng.integers(0, days, len(users))
        order = np.lexsort((step_days, users))  # a client's steps in day order take the next positions
        users, step_days = users[order], step_days[order]
        position = self.position[users] + np.arange(len(users)) - np.repeat(np.cumsum(counts) - counts, counts)
        self.position[clients] += counts
        inside = position < world.ladder.shape[1]
        users, position, step_days = users[inside], position[inside], step_days[inside]
        brands = world.ladder[users, position]
        open_ = world.brand_since[brands] <= era
        return users[open_], brands[open_], step_days[open_]

    # --- one month -----------------------------------------------------------------------------------------
    def month(self, start: dt.date, era: int, behaviour: Behaviour, boosts: list[Boost], next_tx_id: int
              ) -> tuple[pl.DataFrame, pl.DataFrame]:
        rng, world = self.rng, self.world
        for e in range(era + 1):
            self._newcomers(e)
        days = calendar.monthrange(start.year, start.month)[1]
        first_day = day_number(start)
        day_weights = month_day_weights(start, behaviour)
        active = np.flatnonzero(world.user_since <= era)

        # Adoption: the taste law's picks, the ladder's steps, and offer-driven picks for clients who saw
        # an offer in its window.
        events = np.repeat(active, rng.poisson(world.adopt[active] * (1 - world.visibility)))
        ev_users, ev_brands = [events], [self.sample_brands(events, era)]
        ev_days = [first_day + rng.choice(days, len(events), p=day_weights)]
        if world.ladder is not None:
            for part, values in zip((ev_users, ev_brands, ev_days),
                                    self._ladder_steps(active, world.adopt[active], first_day, days, era)):
                part.append(values)
        last_day = first_day + days - 1
        for boost in boosts:
            lo, hi = max(boost.start, first_day), min(boost.end, last_day)
            if lo > hi:
                continue
            hazard = world.hazard(boost.users, boost.brand, era) * boost.lift * (hi - lo + 1) / days
            tries = boost.users[rng.random(len(boost.users)) < -np.expm1(-hazard)]
            ev_users.append(tries)
            ev_brands.append(np.full(len(tries), boost.brand))
            ev_days.append(lo + rng.integers(0, hi - lo + 1, len(tries)))
        new_keys = self._add_pairs(np.concatenate(ev_users), np.concatenate(ev_brands), np.concatenate(ev_days),
                                   era)

        # Purchases: each client spreads the month's transactions over the repertoire by loyalty.
        rate = world.rate[active] * behaviour.frequency
        if behaviour.segment_activity is not None:
            rate = rate * behaviour.segment_activity[world.cluster[active]]
        if behaviour.tier_activity is not None:
            rate = rate * behaviour.tier_activity[world.tier[active]]
        users = np.repeat(active, rng.poisson(rate))
        pair_user = self.keys // self.nb
        begin = np.searchsorted(pair_user, users)
        end = np.searchsorted(pair_user, users, side="right")
        has = end > begin
        users, begin, end = users[has], begin[has], end[has]
        cum = np.cumsum(self.loyalty)
        base = np.where(begin > 0, cum[np.maximum(begin - 1, 0)], 0.0)
        total = cum[end - 1] - base
        pick = np.clip(np.searchsorted(cum, base + rng.random(len(users)) * total, side="right"), begin, end - 1)
        tx_days = first_day + rng.choice(days, len(users), p=day_weights)
        adopted = self.adopted[pick]
        late = adopted > last_day
        pick, tx_days = pick[~late], np.maximum(tx_days[~late], adopted[~late])
        # ... and every adoption is a purchase on its day.
        adoption = np.searchsorted(self.keys, new_keys)
        pick = np.concatenate([pick, adoption])
        tx_days = np.concatenate([tx_days, self.adopted[adoption].astype(np.int64)])
        np.minimum.at(self.first_tx, pick, tx_days.astype(np.int32))
        order = np.lexsort((pick, tx_days))
        pick, tx_days = pick[order], tx_days[order]
        users, brands = (self.keys[pick] // self.nb), (self.keys[pick] % self.nb)
        transactions = self._transactions(users, brands, tx_days, behaviour, next_tx_id)
        return transactions, self._receipts(active, first_day, days, behaviour)

    def _transactions(self, users, brands, days, behaviour: Behaviour, next_tx_id: int) -> pl.DataFrame:
        rng, world = self.rng, self.world
        n = len(users)
        level = (0.6 + world.brand_tier[brands] + 0.7 * CATEGORY_PRICE[world.brand_category[brands]]
                 + 0.3 * world.tier[users] + rng.normal(0, 0.9, n) + behaviour.tier_shift)
        amount = np.clip(np.round(level), 0, len(AMOUNT_BUCKETS) - 1).astype(int)
        online_p = np.clip(0.5 * world.online[users] + 0.5 * world.brand_online[brands] + behaviour.online_shift, 0, 1)
        terminal = np.where(rng.random(n) < 0.15, rng.integers(1, 4, n), 0)
        return pl.DataFrame({
            "transaction_id": pl.int_range(next_tx_id, next_tx_id + n, eager=True).cast(pl.Utf8),
            "user_id": world.user_ids[users],
            "merchant_id_tx": 1_000_000 + brands.astype(np.int64) * 4 + terminal,
            "event_date": pl.Series((EPOCH + days).astype("datetime64[D]"), dtype=pl.Date),
            "amount_bucket": labels(AMOUNT_BUCKETS, amount),
            "online_transaction_flg": labels(["N", "Y"], (rng.random(n) < online_p).astype(np.uint32)),
            "brand_dk": world.brand_ids[brands],
        })

    def _receipts(self, active: np.ndarray, first_day: int, days: int, behaviour: Behaviour) -> pl.DataFrame:
        """Itemised receipts: a couple per active client per month, category by taste."""
        rng, world = self.rng, self.world
        users = np.repeat(active, rng.poisson(1.5, len(active)))
        n = len(users)
        weights = world.taste[users]
        if behaviour.receipt_mix is not None:
            weights = 0.3 * weights + 0.7 * behaviour.receipt_mix[None, :]
        cumulative = np.cumsum(weights, axis=1)
        category = np.minimum((cumulative < rng.random(n)[:, None] * cumulative[:, -1:]).sum(axis=1), K - 1)
        level = (0.5 + 0.6 * CATEGORY_PRICE[category] + 0.5 * world.tier[users] + rng.normal(0, 0.8, n)
                 + 2 * (rng.random(n) < behaviour.receipt_cost_shift))
        cost = np.clip(np.round(level), 0, len(AMOUNT_BUCKETS) - 1).astype(int)
        return pl.DataFrame({
            "user_id": world.user_ids[users],
            "date_operated": pl.Series((EPOCH + first_day + rng.integers(0, days, n)).astype("datetime64[D]"),
                                       dtype=pl.Date),
            "category_name": labels(CATEGORY_NAMES, category),
            "items_count": (1 + rng.poisson(1 + 2 * cost)).astype(float),
            "items_cost": labels(AMOUNT_BUCKETS, cost),
        }).sort("date_operated", "user_id")

    # --- offers -------------------------------------------------------------------------------------------
    def make_offers(self, start: dt.date, count: int, next_offer_id: int, texts: list[str],
                    previous: pl.DataFrame | None, era: int) -> pl.DataFrame:
        """Offers starting in the month: on the 1st or 3rd mostly; a few repeat an earlier offer_id."""
        rng, world = self.rng, self.world
        merchants = world.merchants.filter(pl.col("brand_dk").is_not_null() & (pl.col("since") <= era)
                                           & (pl.col("merchant_status") == "ACT"))
        popularity = world.brand_pop[merchants["brand_index"].to_numpy()] ** 0.9
        n = min(count, merchants.height)
        keys = np.log(popularity) + rng.gumbel(size=len(popularity))
        picked = np.sort(np.argpartition(-keys, n - 1)[:n]) if n < len(keys) else np.arange(n)
        start_day = rng.choice([0, 2, 14], n, p=[0.45, 0.45, 0.1])
        starts = np.datetime64(start, "D") + start_day
        durations = rng.choice(OFFER_DURATIONS, n, p=OFFER_DURATION_P)
        ends = np.where(rng.random(n) < 0.01, np.datetime64(OPEN_END, "D"), starts + durations)
        offers = pl.DataFrame({
            "offer_id": np.arange(next_offer_id, next_offer_id + n),
            "merchant_id_offer": merchants["merchant_id_offer"].to_numpy()[picked],
            "start_date": pl.Series(starts, dtype=pl.Date),
            "end_date": pl.Series(ends, dtype=pl.Date),
            "offer_text": np.array(texts, dtype=object)[rng.integers(0, len(texts), n)].tolist(),
        })
        if previous is not None and previous.height:
            # offer_id is not unique in the real data: a repeat with another end date or text.
            repeats = previous.filter(pl.col("end_date") < OPEN_END).sample(
                n=max(1, previous.height // 15), seed=int(rng.integers(1 << 30)))
            other_text = pl.Series(np.array(texts, dtype=object)[rng.integers(0, len(texts), repeats.height)].tolist())
            repeats = repeats.with_columns(
                pl.when(pl.Series(rng.random(repeats.height) < 0.7))
                .then(pl.col("end_date") + pl.duration(days=7)).otherwise(pl.col("end_date")).alias("end_date"),
                pl.when(pl.Series(rng.random(repeats.height) < 0.4)).then(other_text)
                .otherwise(pl.col("offer_text")).alias("offer_text"))
            offers = pl.concat([offers, repeats])
        return offers

    def offer_interactions(self, offers: pl.DataFrame, era: int
                           ) -> tuple[list[Boost], pl.DataFrame | None, pl.DataFrame | None]:
        """Who saw each offer (the bank targets clients with affinity to the brand), who activated it."""
        rng, world = self.rng, self.world
        merchant_brand = dict(zip(world.merchants["merchant_id_offer"].to_list(),
                                  world.merchants["brand_index"].to_list()))
        active = np.flatnonzero(world.user_since <= era)
        size = max(3, int(len(active) * world.scale["seen_share"]))
        boosts: list[Boost] = []
        seen_users, seen_rows, act_users, act_rows, act_days = [], [], [], [], []
        unique = offers.unique(["offer_id", "merchant_id_offer"], keep="first", maintain_order=True)
        for row, offer in enumerate(unique.iter_rows(named=True)):
            brand = int(merchant_brand[offer["merchant_id_offer"]])
            affinity = targeting_affinity(world, active, brand, era)
            keys = world.targeting * np.log(affinity) + rng.gumbel(size=len(active))
            seen = np.sort(active[np.argpartition(-keys, size - 1)[:size]])
            activated = rng.random(len(seen)) < ACTIVATION_SHARE
            start = day_number(offer["start_date"])
            end = day_number(offer["end_date"]) if offer["end_date"] < dt.date(2100, 1, 1) else start + 180
            days = start + rng.integers(0, activation_days(start, end), activated.sum())
            activated_day = np.full(len(seen), NEVER, np.int64)
            activated_day[activated] = days
            boosts.append(Boost(offer["offer_id"], brand, seen, np.where(activated, LIFT_ACTIVATED, LIFT_SEEN),
                                start, end, activated_day))
            seen_users.append(seen)
            seen_rows.append(np.full(len(seen), row))
            act_users.append(seen[activated])
            act_rows.append(np.full(activated.sum(), row))
            act_days.append(days)
        if not boosts:
            return boosts, None, None
        seens = pl.DataFrame({"user_id": world.user_ids[np.concatenate(seen_users)],
                              "row": np.concatenate(seen_rows)})
        windows = unique.with_row_index("row").select(pl.col("row").cast(pl.Int64), "offer_id", "start_date",
                                                      "end_date")
        seens = seens.join(windows, on="row", how="left", maintain_order="left").drop("row")
        activations = pl.DataFrame({
            "user_id": world.user_ids[np.concatenate(act_users)], "row": np.concatenate(act_rows),
            "activation_date": pl.Series((EPOCH + np.concatenate(act_days)).astype("datetime64[D]"), dtype=pl.Date),
        }).join(windows.select("row", "offer_id"), on="row", how="left", maintain_order="left").select(
            "user_id", "offer_id", "activation_date")
        return boosts, seens, activations


def month_day_weights(start: dt.date, behaviour: Behaviour) -> np.ndarray:
    """Probability of each day of the month starting at `start` for an event (weekends busier)."""
    days = calendar.monthrange(start.year, start.month)[1]
    weights = np.ones(days) + np.array([(start + dt.timedelta(d)).weekday() >= 5 for d in range(days)]) \
        * (0.25 + behaviour.weekend_bias)
    return weights / weights.sum()


def targeting_affinity(world: World, users: np.ndarray, brand: int, era: int) -> np.ndarray:
    """The bank's score of each client for an offer of the brand: the taste law's hazard, floored so
    that nobody is impossible to reach."""
    affinity = world.hazard(users, brand, era)
    return affinity + 0.3 * affinity.mean() + 1e-12


def activation_days(start: int, end: int) -> int:
    """Activations are recorded on a uniform day of the offer's first weeks: this many days from its start."""
    return min(end - start + 1, 40)
