"""Scenario kinds of a version: the same world, a drifted one, a return, or a corrupted delivery.

The world's behaviour moves only when a scenario says so, and stays where it is otherwise:
  - `same`: the previous version's behaviour (after a drift, the world stays moved: persistent drift);
  - a drift kind: moves the world from where it is (a second kind of drift adds to the first);
  - `return`: back to the usual behaviour of the first version;
  - a corruption breaks the delivery, not the world: its month keeps the previous behaviour.
Each row-level corruption also comes confined to the version's new rows (`<kind>_confined`): a 10-20%
share of them (drawn per version), or for the collapse all of them, while re-sent old rows (a version
carrying everything so far) stay intact, so a year of clean history is there to dilute it.
"""
from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import polars as pl

from datagen.world import AMOUNT_BUCKETS, K, Behaviour, World

SAME = {"base", "same"}
RETURN = {"return"}
DRIFTS = {"drift_clients", "drift_behaviour", "drift_receipts"}
CORRUPTIONS = {"corrupt_missing_table", "corrupt_missing_batches", "corrupt_null_keys", "corrupt_shuffled_users",
               "corrupt_profile_flip", "corrupt_dates", "corrupt_duplicates", "corrupt_collapsed"}
# Missing tables and batches are about the delivery as a whole: they have no confined form.
CONFINED = {f"{name}_confined" for name in ("corrupt_null_keys", "corrupt_shuffled_users", "corrupt_profile_flip",
                                            "corrupt_dates", "corrupt_duplicates", "corrupt_collapsed")}
ALIASES = {"corrupt_nulls": "corrupt_null_keys", "corrupt_shuffled": "corrupt_shuffled_users",
           "corrupt_missing": "corrupt_missing_table", "drift_behavior": "drift_behaviour"}
ALL = SAME | RETURN | DRIFTS | CORRUPTIONS | CONFINED | set(ALIASES)
CONFINED_SHARE = (0.10, 0.20)  # of the new rows a confined corruption breaks


def canonical(name: str) -> str:
    return ALIASES.get(name, name)


def is_corruption(name: str) -> bool:
    return canonical(name) in CORRUPTIONS | CONFINED


def drift(name: str) -> Behaviour:
    """How a drift kind moves clients' behaviour, the way a bank might see it."""
    name = canonical(name)
    if name == "drift_behaviour":
        # Spending moves online, to pricier buckets and to weekends, and gets more frequent.
        return Behaviour(online_shift=0.3, tier_shift=0.8, frequency=1.6, weekend_bias=1.5)
    if name == "drift_clients":
        # The client mix changes: a marketing campaign brings many young mass-market clients from towns
        # and villages, while the wealthier older clients go quiet.
        return Behaviour(segment_activity=np.array([0.3, 3.0, 1.0, 0.3]), tier_activity=np.array([2.5, 1.0, 0.25]),
                         newcomers=5.0, newcomer_mix={"cluster": [0.1, 0.65, 0.15, 0.1], "tier": [0.8, 0.17, 0.03],
                                                      "region_size": [0.03, 0.2, 0.42, 0.35]})
    if name == "drift_receipts":
        mix = np.zeros(K)
        mix[[1, 5]] = 0.5
        return Behaviour(receipt_mix=mix, receipt_cost_shift=0.6)
    raise ValueError(f"{name} is not a drift")


def _moved(current: Behaviour, change: Behaviour) -> Behaviour:
    """`current` with every knob `change` sets (away from the usual value) set its way."""
    usual = Behaviour()
    moved = {f.name: getattr(change, f.name) for f in dataclasses.fields(Behaviour)
             if not _same(getattr(change, f.name), getattr(usual, f.name))}
    return dataclasses.replace(current, **moved)


def _stayed(current: Behaviour) -> Behaviour:
    """The month after: the same behaviour, except that a campaign's influx of newcomers was a one-off
    (the clients it brought stay, and later newcomers still come from the same places)."""
    return dataclasses.replace(current, newcomers=Behaviour().newcomers)


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    return a == b


def behaviours(scenarios: list[str] | tuple[str, ...]) -> dict[int, Behaviour]:
    """The behaviour of each version's month (by era: 0 is the first version's history)."""
    current, out = Behaviour(), {}
    for era, name in enumerate(scenarios):
        name = canonical(name)
        if name in DRIFTS:
            current = _moved(current, drift(name))
        elif name in RETURN or era == 0:
            current = Behaviour()
        else:
            current = _stayed(current)
        out[era] = current
    return out


def expected_action(series: list[str] | tuple[str, ...], index: int) -> str:
    """The action the service should take on version `index` of a series, by what the generator did:
    the first version trains the first model ("retrained"), a corrupted one is "skipped", a drift that
    moved the world "retrained" (the same drift again is not a move), anything else "none"."""
    if index == 0:
        return "retrained"
    name = canonical(series[index])
    if is_corruption(name):
        return "skipped"
    worlds = behaviours(series)
    before, now = worlds[index - 1], worlds[index]
    moved = not all(_same(getattr(before, f.name), getattr(now, f.name)) for f in dataclasses.fields(Behaviour))
    return "retrained" if name in DRIFTS and moved else "none"


def corrupt(name: str, tables: dict[str, pl.DataFrame], manifest: dict, world: World,
            rng: np.random.Generator, new_since: dt.date | None = None) -> tuple[dict[str, pl.DataFrame], dict]:
    """Break the delivery the way the scenario says; untouched for every other kind. `new_since`: the
    first day of the version's own month (its new transactions), which confined kinds keep to."""
    name = canonical(name)
    if name not in CORRUPTIONS | CONFINED:
        return tables, manifest
    confined = name in CONFINED
    kind = name.removesuffix("_confined")
    tables = dict(tables)
    tx = tables.get("transaction")
    n = tx.height if tx is not None else 0
    if confined:
        fresh = (tx["event_date"] >= new_since) if new_since is not None else pl.repeat(True, n, eager=True)
        share = float(rng.uniform(*CONFINED_SHARE))
        manifest["corrupted_share"] = round(share, 4)
        # Exactly `share` of the new rows, picked at random: the rate a check sees is the one drawn.
        picked = np.zeros(n, dtype=bool)
        new_rows = np.flatnonzero(fresh.to_numpy())
        picked[rng.choice(new_rows, size=int(round(share * new_rows.size)), replace=False)] = True
        pick = lambda wholesale_share: pl.Series(picked)  # noqa: E731  (the drawn share, not the wholesale one)
        everything_new = fresh
    else:
        pick = lambda wholesale_share: pl.Series(rng.random(n) < wholesale_share)  # noqa: E731
        everything_new = pl.repeat(True, n, eager=True)
    if kind == "corrupt_missing_table":
        tables.pop("transaction")
    elif kind == "corrupt_missing_batches":
        manifest["drop_batches"] = {"transaction": [2]}
    elif kind == "corrupt_null_keys":
        tables["transaction"] = tx.with_columns(pl.when(pick(0.3)).then(None).otherwise(pl.col("user_id"))
                                                .alias("user_id"))
    elif kind == "corrupt_shuffled_users":
        # Each column keeps its domain (plausible integer ids), but the ids no longer join to people;
        # wholesale, the rest are shuffled among clients too.
        foreign = pl.Series(rng.integers(900_001, 950_000, n))
        broken = pick(0.6)
        rest = pl.col("user_id") if confined else pl.col("user_id").shuffle(seed=int(rng.integers(1 << 30)))
        tables["transaction"] = tx.with_columns(pl.when(broken).then(foreign).otherwise(rest).alias("user_id"))
    elif kind == "corrupt_profile_flip":
        tables["people"] = _flip_profiles(tables["people"], manifest, world, rng, 0.8 if not confined else share)
    elif kind == "corrupt_dates":
        bad = pl.Series(np.where(rng.random(n) < 0.5, np.datetime64("1970-01-01"), np.datetime64("2099-12-31")),
                        dtype=pl.Date)
        tables["transaction"] = tx.with_columns(pl.when(pick(0.3)).then(bad).otherwise(pl.col("event_date"))
                                                .alias("event_date"))
    elif kind == "corrupt_duplicates":
        tables["transaction"] = pl.concat([tx, tx.filter(pick(0.4))])
    elif kind == "corrupt_collapsed":
        tables["transaction"] = tx.with_columns(
            pl.when(everything_new).then(pl.lit(AMOUNT_BUCKETS[0])).otherwise(pl.col("amount_bucket"))
            .alias("amount_bucket"),
            pl.when(everything_new).then(pl.lit(int(tx["brand_dk"][0]))).otherwise(pl.col("brand_dk"))
            .alias("brand_dk"))
    manifest["corruption"] = name
    return tables, manifest


def _flip_profiles(people: pl.DataFrame, manifest: dict, world: World, rng: np.random.Generator,
                   share: float) -> pl.DataFrame:
    """A share of the returning clients re-sent with another gender and age. A version that carries
    every client has their rows replaced; one that carries only new clients gets them added."""
    era = int(manifest["version"].lstrip("v")) - 1
    known = pl.Series(world.user_ids[world.user_since < era]).implode()
    existing = world.people.filter(pl.col("user_id").is_in(known)).sample(fraction=share,
                                                                           seed=int(rng.integers(1 << 30)))
    flipped = existing.with_columns(
        pl.when(pl.col("gender_cd") == "M").then(pl.lit("F")).otherwise(pl.lit("M")).alias("gender_cd"),
        ((pl.col("age_bucket").cast(pl.Int64) + 25) % 70 + 15).cast(pl.Utf8).alias("age_bucket"))
    kept = people.filter(~pl.col("user_id").is_in(flipped["user_id"].implode()))
    return pl.concat([kept, flipped.select(people.columns)])
