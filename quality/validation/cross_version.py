"""Checks against the catalog of the last valid version, for what formal checks miss: history
rewritten, profiles that flip, brands that stop joining, a new period's volume, shuffled ids that keep
every domain but break the (user, brand) history, a distribution collapsing to one value."""
from __future__ import annotations

import datetime as dt

import polars as pl

from quality import new_part
from quality.validation.integrity import values
from quality.validation.runner import Runner

# Columns that must not collapse to one value when they had several before.
COLLAPSE = {"transaction": ["user_id", "brand_dk", "amount_bucket", "online_transaction_flg"],
            "people": ["gender_cd", "age_bucket"], "segments": ["segment", "vip_status"],
            "receipts": ["category_name", "items_cost"]}


def check_against_catalog(runner: Runner, frames: dict, refs: dict, parts: dict,
                          people: pl.DataFrame | None) -> None:
    """`frames` are the new rows; `people` is every client the version carries (returning ones included)."""
    profiles_stable(runner, people, refs.get("people"))
    tx, ref_tx = frames.get("transaction"), refs.get("transaction")
    if "transaction" in parts and ref_tx is not None:
        history_unchanged(runner, parts["transaction"])
    if tx is not None and ref_tx is not None and tx.height:
        transactions_vs_catalog(runner, tx, ref_tx, frames, refs, parts["transaction"])
    for table, columns in COLLAPSE.items():
        frame, ref = frames.get(table), refs.get(table)
        if frame is None or ref is None or frame.height < 50:
            continue
        for column in columns:
            not_collapsed(runner, table, column, frame, ref)


def history_unchanged(runner: Runner, part: new_part.TablePart) -> None:
    """A transaction happened once: re-sent under its id, it keeps its values. A few corrections pass;
    a rewritten history does not. (Clients, segments and merchants change legitimately: their returning
    rows are judged by the profile check; the counts are in the report's `judged`.)"""
    resent = part.resent_rows
    share = part.changed_rows / resent if resent else 0.0
    limit = runner.params["max_changed_row_rate"]
    shown = ", ".join(str(v) for v in part.changed_examples)

    def describe(ok: bool) -> str:
        return (f"{share:.1%} of the {resent:,} transactions this version re-sends ({part.changed_rows:,}) "
                f"carry other values than the catalog's under the same transaction_id"
                + (f" (example: {shown})" if shown else "") + ("" if ok else f"; limit {limit:.0%}"))

    runner.value("transaction.resent_rows_unchanged", "transaction", share, None, limit, True, describe)


def profiles_stable(runner: Runner, people: pl.DataFrame | None, ref: pl.DataFrame | None) -> None:
    """Returning clients keep their gender and age: a wholesale change means shifted or mixed-up rows.
    A change is gender, or an age bucket that goes down or moves more than one bucket up."""
    if people is None or ref is None or not people.height:
        return
    order = sorted(set(values(ref, "age_bucket").to_list()) | set(values(people, "age_bucket").to_list()),
                   key=lambda v: (float(v) if str(v).replace(".", "", 1).isdigit() else float("inf"), str(v)))
    rank = {v: i for i, v in enumerate(order)}
    both = (people.select("user_id", "gender_cd", "age_bucket")
            .join(ref.unique("user_id", keep="last").select("user_id", "gender_cd", "age_bucket"),
                  on="user_id", suffix="_before")
            .with_columns(pl.col("age_bucket").replace_strict(rank, default=None).alias("rank"),
                          pl.col("age_bucket_before").replace_strict(rank, default=None).alias("rank_before")))
    gender = (both["gender_cd"] != both["gender_cd_before"]).fill_null(False)
    step = (both["rank"] - both["rank_before"])
    age = ((step < 0) | (step > 1)).fill_null(False)
    changed = gender | age
    examples = [f"{u}: {g0}/{a0} -> {g}/{a}" for u, g, a, g0, a0 in
                both.filter(changed).select("user_id", "gender_cd", "age_bucket", "gender_cd_before",
                                            "age_bucket_before").head(3).iter_rows()]
    share_g = float(gender.mean() or 0.0)
    share_a = float(age.mean() or 0.0)
    runner.flag("people.profiles_stable_across_versions", "people", changed, runner.params["max_profile_flip_rate"],
                True, f"re-sent for a known client with another profile (gender changed {share_g:.0%}, "
                f"age bucket moved back or by more than one bucket {share_a:.0%}, of {both.height:,} returning)",
                examples)


def transactions_vs_catalog(runner: Runner, tx: pl.DataFrame, ref_tx: pl.DataFrame, frames: dict, refs: dict,
                            part: new_part.TablePart) -> None:
    """`tx`: the new transactions; `part`: their numbers, with the catalog's last date."""
    brands_join(runner, tx, ref_tx, frames, refs)
    last = dt.date.fromisoformat(part.catalog_last_date) if part.catalog_last_date else ref_tx["event_date"].max()
    # The new period; dates past any plausible horizon are the date check's to judge, not a period's.
    horizon = last + dt.timedelta(days=int(runner.params["max_future_days"])) if last is not None else None
    new = tx.filter(pl.col("event_date").is_between(last, horizon, closed="right")) if last is not None else tx
    if new["event_date"].n_unique():
        volume_per_day(runner, new, ref_tx)
        history_consistent(runner, new, ref_tx, last)


def brands_join(runner: Runner, tx: pl.DataFrame, ref_tx: pl.DataFrame, frames: dict, refs: dict) -> None:
    """Brands that no longer join: new brands arrive, but most transactions are at brands seen before."""
    brands = pl.concat([values(ref_tx, "brand_dk"), values(refs.get("merchant"), "brand_dk"),
                        values(frames.get("merchant"), "brand_dk")]).unique()
    unknown = tx["brand_dk"].is_not_null() & ~tx["brand_dk"].is_in(brands.implode())
    runner.flag("transaction.brand_dk_joins_known_brands", "transaction", unknown,
                runner.params["max_unknown_brand_rate"], True,
                "carry a brand_dk never seen in transactions or merchants",
                tx["brand_dk"].filter(unknown).unique(maintain_order=True).head(3).to_list())


def volume_per_day(runner: Runner, new: pl.DataFrame, ref_tx: pl.DataFrame) -> None:
    """Transactions per day of the new period against the catalog's, whatever the delivery."""
    days_new = new["event_date"].n_unique()
    per_day = new.height / days_new
    before = ref_tx.height / max(1, ref_tx["event_date"].n_unique())

    def describe(ok: bool) -> str:
        return (f"{per_day:,.0f} transactions per day over {days_new} new days vs {before:,.0f} "
                f"before ({per_day / before:.0%})")

    runner.value("transaction.volume_per_day_vs_previous", "transaction", per_day / before,
                 1 - runner.params["max_row_count_drop"], None, True, describe)


def history_consistent(runner: Runner, new: pl.DataFrame, ref_tx: pl.DataFrame, last: dt.date) -> None:
    """Shuffled ids keep every column's domain but break each client's history: the share of new
    transactions at a brand the same client already used must stay near what it was."""
    current = new.filter(pl.col("user_id").is_in(ref_tx["user_id"].unique().implode()))
    if current.height < 50:
        return
    span = dt.timedelta(days=max(1, (new["event_date"].max() - new["event_date"].min()).days + 1))
    # Streaming queries over the catalog's transactions: no filtered copies of its ~10M rows (the
    # largest step of a full-snapshot validation otherwise, +1 GB); only means are taken of them.
    ref_pairs = ref_tx.lazy().select("user_id", "brand_dk", "event_date")
    pairs = ref_pairs.select("user_id", "brand_dk").unique().collect(engine="streaming")
    base_old = (ref_pairs.filter(pl.col("event_date") <= last - span).select("user_id", "brand_dk").unique()
                .collect(engine="streaming"))
    base_new = (ref_pairs.filter((pl.col("event_date") > last - span)
                                 & pl.col("user_id").is_in(base_old["user_id"].unique().implode()))
                .select("user_id", "brand_dk").collect(engine="streaming"))
    if base_new.height < 50 or not base_old.height:
        return
    now, before = repeat_share(current, pairs), repeat_share(base_new, base_old)
    ratio = now / before if before else 1.0

    def describe(ok: bool) -> str:
        return (f"{now:.0%} of new transactions of known clients are at a brand the client used "
                f"before, vs {before:.0%} for the reference's last {span.days} days (ratio {ratio:.2f}); "
                + ("" if ok else "user ids look shuffled or reassigned"))

    runner.value("transaction.user_brand_history_consistent", "transaction", ratio,
                 runner.params["min_pair_repeat_ratio"], None, True, describe)


def repeat_share(rows: pl.DataFrame, seen: pl.DataFrame) -> float:
    """The share of `rows` whose (user, brand) pair is in `seen`."""
    hit = rows.join(seen.with_columns(pl.lit(True).alias("hit")), on=["user_id", "brand_dk"], how="left")
    return float(hit["hit"].fill_null(False).mean() or 0.0)


def not_collapsed(runner: Runner, table: str, column: str, frame: pl.DataFrame, ref: pl.DataFrame) -> None:
    """A column with several values before must not collapse to one value now."""
    if column not in ref.columns or column not in frame.columns:
        return
    ref, frame = runner.sample(ref.select(column)), runner.sample(frame.select(column))  # shares: a sample will do
    if ref[column].drop_nulls().n_unique() < 2 or frame[column].drop_nulls().len() < 50:
        return
    ref_top = ref[column].drop_nulls().value_counts(sort=True).row(0)
    ref_share = ref_top[1] / ref[column].drop_nulls().len()
    limit = max(runner.params["collapse_top_share"], min(0.99, ref_share + 0.2))
    present = frame[column].drop_nulls()
    top = present.value_counts(sort=True).row(0)
    share = top[1] / present.len()

    def describe(ok: bool) -> str:
        return (f"{share:.0%} of {table}.{column} is {top[0]!r} (before: top value {ref_top[0]!r} at "
                f"{ref_share:.0%}; limit {limit:.0%})")

    runner.value(f"{table}.{column}_not_collapsed", table, share, None, limit, True, describe)
