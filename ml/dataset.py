"""Learning problems cut out of the catalog's history: queries (an offer seen from a cut day) with their
ground truth, in the three situations serving meets.

A query is an offer (its brand, window, text and id) and a cut day c, the state its features come
from (every fact before c). Where c sits in the offer's window decides its kind:
  - fresh: the offer starts at c or within `horizon` days after it (nothing of its own is known yet);
  - far: it starts `horizon` days or more after c;
  - running: it started before c and still runs (who saw and activated it, who already converted are known).
Candidates are the users with no purchase at the brand before c; the label is a first purchase at the
brand inside [max(start, c), end]. For a running offer the users whose first purchase fell inside the
window before c are certain new customers (`certain`): serving ranks them first, so evaluation does too.

Time split: the hold-out cut h = last day + 1 - horizon. Every training label ends before h; the
hold-out's labels run from h to the last day. Training queries are pseudo-offers "brand b, window
[T, T+horizon)" (fresh), the same starting later (far), and real offers at the monthly cuts and at the
days where most real offers run (running). Ground truth always comes from
`ml.ground_truth.offers_ground_truth` (one definition).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from ml.features import History, OfferSpec, date_of
from ml.ground_truth import offers_ground_truth

WARMUP_DAYS = 60
KINDS = ("fresh", "running", "far")
MAX_FAR_DAYS = 120          # real offers starting up to this long after a cut are far queries of it
MIN_DAYS_AHEAD = 7          # a running query needs this many label days after its cut


@dataclass(frozen=True)
class Query:
    key: int               # synthetic id, unique within a plan
    spec: OfferSpec
    cut: int               # the state the features come from
    kind: str              # fresh | running | far
    real: bool
    label_end: int         # last day of the label window (the offer's end, clipped to known data)
    positives: np.ndarray  # candidates (no purchase before the cut) whose first purchase falls in the label window
    certain: np.ndarray    # first purchase inside the window before the cut (running offers)

    @property
    def relevant(self) -> np.ndarray:
        """The offer's ground truth as far as the data reaches: certain converts and positives."""
        return np.union1d(self.certain, self.positives)


@dataclass
class Plan:
    holdout_cut: int
    train_cuts: list[int]
    train: list[Query]
    holdout: list[Query]

    @property
    def validation_cut(self) -> int | None:
        return max(self.train_cuts, default=None)


def kind_of(spec: OfferSpec, cut: int, horizon: int) -> str:
    if spec.start_day < cut:
        return "running"
    return "fresh" if spec.start_day - cut < horizon else "far"


def _brand_texts(history: History) -> dict[int, str]:
    """A brand's first offer text (by offer_id): what a pseudo-offer of the brand says."""
    # history.offers is sorted by (offer_id, merchant, dates, text): a repeated offer_id keeps one text.
    rows = history.offers.filter(pl.col("b") >= 0).unique("b", keep="first", maintain_order=True)
    return dict(zip(rows["b"].to_list(), rows["offer_text"].to_list()))


def _users_by_key(history: History, specs: list[OfferSpec], starts: list[int],
                  ends: list[int]) -> dict[int, np.ndarray]:
    """Per position in `specs`: user indices whose first purchase at the spec's brand falls in [start, end]."""
    keys = np.arange(len(specs))
    offers = pl.DataFrame({
        "offer_id": keys, "merchant_id_offer": keys,
        "start_date": [date_of(s) for s in starts], "end_date": [date_of(e) for e in ends],
    })
    merchants = pl.DataFrame({"merchant_id_offer": keys,
                              "brand_dk": [int(history.brand_ids[spec.brand]) for spec in specs]})
    truth = offers_ground_truth(history.transactions, offers, merchants)
    users = pl.DataFrame({"user_id": history.user_ids}).with_row_index("u")
    truth = truth.join(users, on="user_id", how="inner")
    return {int(k): np.sort(g["u"].to_numpy().astype(np.int32))
            for (k,), g in truth.group_by(["offer_id"], maintain_order=True)}


def _queries(history: History, wanted: list[tuple[OfferSpec, int, bool]], limit: int, horizon: int) -> list[Query]:
    """Ground truth of (spec, cut, real) with labels up to `limit`; queries without a label day are dropped."""
    wanted = [(spec, cut, real) for spec, cut, real in wanted if max(spec.start_day, cut) <= min(spec.last_day, limit)]
    if not wanted:
        return []
    specs = [spec for spec, _, _ in wanted]
    label_ends = [min(spec.last_day, limit) for spec in specs]
    positives = _users_by_key(history, specs, [max(spec.start_day, cut) for spec, cut, _ in wanted], label_ends)
    running = [i for i, (spec, cut, _) in enumerate(wanted) if spec.start_day < cut]
    certain_by_running = _users_by_key(history, [specs[i] for i in running], [specs[i].start_day for i in running],
                                       [wanted[i][1] - 1 for i in running]) if running else {}
    certain = {i: certain_by_running.get(j) for j, i in enumerate(running)}
    empty = np.zeros(0, dtype=np.int32)
    return [Query(key=i, spec=spec, cut=cut, kind=kind_of(spec, cut, horizon), real=real, label_end=label_ends[i],
                  positives=positives.get(i, empty), certain=certain.get(i) if certain.get(i) is not None else empty)
            for i, (spec, cut, real) in enumerate(wanted)]


def _new_customer_counts(history: History, start: int, end: int) -> pl.DataFrame:
    """Per brand, users whose first purchase falls in [start, end] (for choosing brands only)."""
    first = history.first_purchases()
    return (first.filter(pl.col("first").is_between(start, end)).group_by("b").len()
            .sort(["len", "b"], descending=[True, False]))


def _real_offers(history: History) -> pl.DataFrame:
    """Real offers with a brand, one row per (offer_id, merchant) with the latest end (as serving picks it)."""
    return (
        history.offers.filter(pl.col("b") >= 0)
        .sort("offer_id", "merchant_id_offer", "end_day", descending=[False, False, True])
        .unique(["offer_id", "merchant_id_offer"], keep="first")
        .sort("offer_id", "merchant_id_offer")
    )


def _real_spec(row: dict) -> OfferSpec:
    return OfferSpec(brand=int(row["b"]), start_day=int(row["start_day"]), end_day=int(row["end_day"]),
                     text=row["offer_text"], offer_id=int(row["offer_id"]))


def _real_at(offers: pl.DataFrame, cut: int, limit: int, horizon: int,
             per_kind: int) -> list[tuple[OfferSpec, int, bool]]:
    """Real offers seen from `cut`, at most `per_kind` of each kind, labels ending by `limit`."""
    specs = [_real_spec(row) for row in offers.filter(pl.col("start_day") <= limit).iter_rows(named=True)]
    chosen: list[tuple[OfferSpec, int, bool]] = []
    for kind in KINDS:
        of_kind = [spec for spec in specs if kind_of(spec, cut, horizon) == kind
                   and (kind != "running" or min(spec.last_day, limit) - cut + 1 >= MIN_DAYS_AHEAD)
                   and (kind != "far" or spec.start_day - cut <= MAX_FAR_DAYS)]
        chosen.extend((spec, cut, True) for spec in of_kind[:per_kind])
    return chosen


def _running_cuts(offers: pl.DataFrame, earliest: int, limit: int, taken: list[int], count: int) -> list[int]:
    """Days (weekly steps) where most real offers run with MIN_DAYS_AHEAD label days left: extra training
    cuts, so the model learns what an offer's exposure so far says (ties: the later day)."""
    if count <= 0 or offers.height == 0:
        return []
    days = np.arange(earliest, limit - MIN_DAYS_AHEAD + 2, 7)
    starts = offers["start_day"].to_numpy()
    ends = np.minimum(offers["end_day"].to_numpy(), limit)
    running = ((starts[None, :] < days[:, None]) & (ends[None, :] - days[:, None] + 1 >= MIN_DAYS_AHEAD)).sum(axis=1)
    order = np.lexsort((-days, -running))
    picked = [int(days[i]) for i in order if running[i] > 0 and int(days[i]) not in taken]
    return sorted(picked[:count])


def _spread(ranked: pl.DataFrame, count: int) -> list[int]:
    """`count` brands at evenly spaced positions of `ranked` (all of them if it holds no more)."""
    if count <= 0:
        return []
    if ranked.height <= count:
        return ranked["b"].to_list()
    return ranked["b"].gather(np.unique(np.linspace(0, ranked.height - 1, count).round().astype(int))).to_list()


def training_brands(eligible: pl.DataFrame, offered: pl.Series, count: int) -> list[int]:
    """The brands whose pseudo-offers train the model: `count` of the `eligible` ones (ranked by new
    customers), spread evenly over that ranking among the brands that have offers (the ones serving is
    asked about), then over the others if too few have. Offers go to brands of every size: the busiest
    brands alone taught the model what a big brand's newcomers look like, and it ranked the audiences
    of small brands below the bare factorisation (docs/model_quality.md)."""
    has_offers = eligible["b"].is_in(offered.implode())
    chosen = _spread(eligible.filter(has_offers), count)
    return chosen + _spread(eligible.filter(~has_offers), count - len(chosen))


def make_plan(history: History, params: dict) -> Plan:
    horizon = int(params.get("horizon_days", 30))
    n_cuts = int(params.get("cuts_per_brand", 3))
    max_brands = int(params.get("max_brands", 400))
    eval_offers = int(params.get("eval_offers", 60))
    max_real = int(params.get("max_real_offers", 300))
    max_offer_cuts = int(params.get("max_offer_cuts", 2))
    min_positives = int(params.get("min_positives", 2))
    far_gaps = [int(g) for g in params.get("far_gaps_days", [horizon, 2 * horizon])]
    texts = _brand_texts(history)
    offers = _real_offers(history)

    holdout_cut = history.max_day + 1 - horizon
    limit = holdout_cut - 1
    earliest = history.min_day + min(WARMUP_DAYS, max((history.max_day - history.min_day) // 4, 7))
    train_cuts = sorted(cut for cut in (holdout_cut - horizon * k for k in range(1, n_cuts + 1)) if cut >= earliest)
    running_cuts = _running_cuts(offers, earliest, limit, train_cuts, max_offer_cuts)

    # Pseudo-offers of brands of every size (training_brands): fresh at each monthly cut, and far
    # (starting far_gaps days later) where the window still ends before the hold-out.
    wanted: list[tuple[OfferSpec, int, bool]] = []
    if train_cuts:
        totals = _new_customer_counts(history, train_cuts[0], limit)
        brands = training_brands(totals.filter(pl.col("len") >= min_positives), offers["b"], max_brands)
        for cut in train_cuts:
            for gap in [0, *far_gaps]:
                if cut + gap + horizon - 1 > limit:
                    continue
                wanted.extend((OfferSpec(brand=int(b), start_day=cut + gap, end_day=cut + gap + horizon - 1,
                                         text=texts.get(int(b))), cut, False) for b in brands)
    all_cuts = sorted(train_cuts + running_cuts)
    per_kind = max(1, max_real // max(len(all_cuts) * len(KINDS), 1))
    for cut in all_cuts:
        wanted.extend(_real_at(offers, cut, limit, horizon, per_kind))
    train = [q for q in _queries(history, wanted, limit, horizon)
             if len(q.positives) >= (1 if q.real else min_positives)]

    # Hold-out: labels from the hold-out cut to the last day. Fresh and running offers are seen from the
    # hold-out cut; far ones from far_gaps[-1] days before it, starting at or after the hold-out cut.
    last = history.max_day
    busiest = [int(b) for b in _new_customer_counts(history, holdout_cut, last)["b"].head(eval_offers).to_list()]
    pseudo = [OfferSpec(brand=b, start_day=holdout_cut, end_day=last, text=texts.get(b)) for b in busiest]
    held = [(spec, cut, real) for spec, cut, real in _real_at(offers, holdout_cut, last, horizon, eval_offers)
            if kind_of(spec, cut, horizon) != "far"]
    held.extend((spec, holdout_cut, False) for spec in pseudo)
    far_cut = holdout_cut - max(far_gaps, default=2 * horizon)
    if far_cut >= history.min_day:
        far_offers = offers.filter(pl.col("start_day") >= holdout_cut)
        held.extend((spec, cut, real) for spec, cut, real in _real_at(far_offers, far_cut, last, horizon, eval_offers)
                    if kind_of(spec, cut, horizon) == "far")
        held.extend((spec, far_cut, False) for spec in pseudo)
    holdout = [q for q in _queries(history, held, last, horizon) if len(q.relevant) > 0]
    chosen: list[Query] = []
    for kind in KINDS:
        of_kind = [q for q in holdout if q.kind == kind]
        real = sorted((q for q in of_kind if q.real), key=lambda q: (-len(q.relevant), q.key))[: eval_offers // 2]
        chosen.extend(real + [q for q in of_kind if not q.real][: eval_offers - len(real)])
    return Plan(holdout_cut=holdout_cut, train_cuts=all_cuts, train=train, holdout=sorted(chosen, key=lambda q: q.key))
