"""The features of one offer for a set of users: one code path for training, evaluation and serving.

An offer is scored from a state (what was known before its cut day). Where the cut sits in the
offer's window decides what the data can say: before the start (a "far" or "fresh" offer) only the
users' and the brand's history; inside the window (a "running" offer) also who saw and activated this
offer so far and who already became a customer. Brand-side aggregates use the brand's customers before
the offer's start, so a user who first buys inside the window never describes the brand they are scored
for.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml.features import embeddings, sequences
from ml.features.names import BRAND_FEATURES, BRAND_INDEX, FEATURE_NAMES, LIFT_ATTRIBUTES, OFFER_FEATURES, USER_INDEX
from ml.features.parsing import OPEN_DURATION_DAYS, OPEN_END_DAY, date_of, text_signal
from ml.features.state import RECENT_DAYS, State

LIFT_SMOOTHING = 20.0


@dataclass(frozen=True)
class OfferSpec:
    """An offer as the model sees it: its brand index (-1: unknown), window in days, text, id."""

    brand: int
    start_day: int
    end_day: int
    text: str | None = None
    offer_id: int | None = None

    @property
    def last_day(self) -> int:
        """The window's last day, an open-ended offer counted as lasting OPEN_DURATION_DAYS."""
        return self.start_day + OPEN_DURATION_DAYS - 1 if self.end_day >= OPEN_END_DAY else self.end_day

    @property
    def duration(self) -> float:
        return float(max(self.last_day - self.start_day + 1, 0))


def brand_column(state: State, brand: int) -> tuple[np.ndarray, np.ndarray]:
    """(user indices, first purchase day) of everyone who bought at the brand before the state's cut."""
    if brand < 0 or brand >= len(state.brand_ids):
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int32)
    first_csc = state.derived()["first_csc"]
    lo, hi = first_csc.indptr[brand], first_csc.indptr[brand + 1]
    return first_csc.indices[lo:hi], first_csc.data[lo:hi]


def customers_before(state: State, brand: int, day: int) -> np.ndarray:
    users, first = brand_column(state, brand)
    return users[first < day]


def non_customers(state: State, brand: int, day: int) -> np.ndarray:
    """An offer's candidates: the state's users (indices) with no purchase at the brand before `day`."""
    mask = np.ones(state.n_users, dtype=bool)
    mask[customers_before(state, brand, day)] = False
    return np.flatnonzero(mask)


@dataclass(frozen=True)
class OfferGroups:
    """The users an offer's brand-side features describe."""

    members: np.ndarray          # customers before the offer's start
    recent: np.ndarray           # ... whose first purchase was in the RECENT_DAYS before it
    window_converts: np.ndarray  # first purchase inside the window, before the cut (a running offer)


def offer_groups(state: State, offer: OfferSpec) -> OfferGroups:
    users, first = brand_column(state, offer.brand)
    before = first < offer.start_day
    return OfferGroups(members=users[before], recent=users[before & (first >= offer.start_day - RECENT_DAYS)],
                       window_converts=users[(first >= offer.start_day) & (first <= offer.last_day)])


def _similarities(state: State, brand: int, groups: OfferGroups, rows: np.ndarray) -> list[np.ndarray]:
    """Per user in `rows`, in the raw brand space: cosine of the user's normalised brand vector with the
    centroid of the brand's customers and of its recent converts, and the item-item mean / max / sum
    of cosine similarities between the user's brands and this brand. Costs the nonzeros of the
    members and rows."""
    derived = state.derived()
    binary, inv = derived["binary"], derived["row_inv"]
    members, recent = groups.members, groups.recent
    m = len(rows)
    if len(members) == 0:
        return [np.zeros(m, dtype=np.float32) for _ in range(5)]
    member_rows = binary[members]
    co_buyers = np.asarray(member_rows.sum(axis=0)).ravel()
    centroid = member_rows.T @ inv[members]
    recent_centroid = binary[recent].T @ inv[recent] if len(recent) else np.zeros_like(centroid)
    right = np.zeros((binary.shape[1], 3), dtype=np.float32)
    for column, vector in ((0, centroid), (1, recent_centroid)):
        norm = float(np.linalg.norm(vector))
        if norm > 0:
            right[:, column] = vector / norm
    cosine = (co_buyers / np.sqrt(len(members) * np.maximum(derived["brand_nnz"], 1))).astype(np.float32)
    if 0 <= brand < len(cosine):
        cosine[brand] = 0.0
    right[:, 2] = cosine
    sub = binary if m == state.n_users and np.array_equal(rows, np.arange(m)) else binary[rows]
    user_side = np.asarray(sub @ right)
    values = np.append(cosine[sub.indices], np.float32(0))
    item_max = np.maximum.reduceat(values, np.minimum(sub.indptr[:-1], len(values) - 1))
    item_max[np.diff(sub.indptr) == 0] = 0.0
    inv_rows = inv[rows]
    item_sum = user_side[:, 2].astype(np.float32)
    return [(inv_rows * user_side[:, 0]).astype(np.float32), (inv_rows * user_side[:, 1]).astype(np.float32),
            item_sum / np.maximum(derived["row_nnz"][rows], 1.0), item_max.astype(np.float32), item_sum]


def _lift(state: State, name: str, members: np.ndarray) -> np.ndarray:
    """Per user: how over-represented the user's attribute value is among `members` (smoothed)."""
    codes = state.lift_codes[name]
    prior = state.derived()["priors"][name]
    counts = np.bincount(codes[members], minlength=len(prior)).astype(np.float64)
    share = (counts + LIFT_SMOOTHING * prior) / (len(members) + LIFT_SMOOTHING)
    return (share / np.maximum(prior, 1e-12)).astype(np.float32)[codes]


def _category_lift(shares: np.ndarray, members: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """How much the user's category mix leans where the brand's customers lean: the user's shares
    weighted by the log ratio of the customers' mean share to everyone's, per category (0 without
    customers or a mix)."""
    if len(members) == 0:
        return np.zeros(len(rows), np.float32)
    population = shares.mean(axis=0)
    log_ratio = np.log((shares[members].mean(axis=0) + 1e-3) / (population + 1e-3))
    return (shares[rows] @ log_ratio).astype(np.float32)


def _embedding_block(state: State, brand: int, groups: OfferGroups, rows: np.ndarray) -> np.ndarray:
    """EMBEDDING_FEATURES: the ALS preference of each user for the brand, its rank and margin among the
    user's best unbought brands, cosines of the user's factors with the centroids of the brand's
    customers, recent new customers and window converts, and where the brand sits against the user's
    latest adoptions."""
    derived = state.derived()
    unit = derived["user_unit"]
    users = unit[rows]
    known = 0 <= brand < len(state.brand_ids)
    if known:
        preference = state.user_factors[rows] @ state.brand_factors[brand]
        top = state.mf_top[rows]
        columns = [preference, (top > preference[:, None]).sum(axis=1),
                   np.where(np.isfinite(top[:, 0]), preference - top[:, 0], 0.0)]
    else:
        # An unknown brand has no preference: ranked behind every brand the user could walk to.
        columns = [np.zeros(len(rows), np.float32), np.full(len(rows), state.mf_top.shape[1], np.float32),
                   np.zeros(len(rows), np.float32)]
    for group in (groups.members, groups.recent, groups.window_converts):
        centroid = unit[group].mean(axis=0) if len(group) else np.zeros(unit.shape[1], np.float32)
        norm = float(np.linalg.norm(centroid))
        columns.append(users @ (centroid / norm) if norm > 0 else np.zeros(len(rows), np.float32))
    # The user's latest adoptions (`adoptions.recent`: first purchases in the 90 days before the cut)
    # show how far down their own order of preference the user has come: the next brands sit just past
    # them. mf_recent_gap: the preference for the brand minus the mean preference for those brands;
    # mf_recent_similarity: the cosine of the brand's factors with their mean. NaN without a recent
    # adoption or for an unknown brand.
    gap = np.full(len(rows), np.nan, np.float32)
    similarity = np.full(len(rows), np.nan, np.float32)
    if known:
        gap = columns[0] - np.einsum("ij,ij->i", state.user_factors[rows], derived["latest_factors"][rows])
        similarity = derived["latest_unit"][rows] @ embeddings.normalised(state.brand_factors[brand][None, :])[0]
        none = derived["recent_count"][rows] == 0
        gap[none] = similarity[none] = np.nan
    return np.column_stack([*columns, gap, similarity]).astype(np.float32)


def _offer_block(state: State, offer: OfferSpec) -> np.ndarray:
    """OFFER_FEATURES: one row, the same for every user."""
    start = date_of(offer.start_day)
    words, missing, online_text = text_signal(offer.text)
    ahead = offer.last_day - max(offer.start_day, state.cut) + 1
    return np.array([offer.duration, start.month, start.weekday(), words, missing, online_text,
                     offer.start_day - state.cut, ahead], dtype=np.float32)


def _exposure_block(state: State, offer: OfferSpec, groups: OfferGroups, rows: np.ndarray) -> np.ndarray:
    """EXPOSURE_FEATURES: this offer's exposure per user and as a whole, and the brand's earlier offers."""
    n = state.n_users
    exact = state.offer_users.users(offer.offer_id) if offer.offer_id is not None else None
    empty = np.zeros(0, dtype=np.int32)
    seen, activated, rewarded = exact if exact is not None else (empty, empty, empty)
    flags = []
    for users in (seen, activated, rewarded):
        flag = np.zeros(n, dtype=np.float32)
        flag[users] = 1.0
        flags.append(flag[rows])
    derived = state.derived()
    if 0 <= offer.brand < len(state.brand_ids):
        brand_seen = np.asarray(derived["seen_csc"][:, offer.brand].todense()).ravel()[rows]
        brand_activated = np.asarray(derived["activated_csc"][:, offer.brand].todense()).ravel()[rows]
    else:
        brand_seen = brand_activated = np.zeros(len(rows), np.float32)
    reach = np.array([np.log1p(len(seen)), len(activated) / (len(seen) + 1.0),
                      np.log1p(len(groups.window_converts))], dtype=np.float32)
    return np.column_stack([*flags, brand_seen, brand_activated,
                            np.broadcast_to(reach, (len(rows), len(reach)))]).astype(np.float32)


def offer_features(state: State, offer: OfferSpec, rows: np.ndarray | None = None) -> np.ndarray:
    """Feature matrix (rows x FEATURE_NAMES) of users `rows` (default: all) for `offer`."""
    if state.cat_codes is None:
        raise ValueError("encode_categoricals(state, levels) first")
    rows = np.arange(state.n_users) if rows is None else np.asarray(rows)
    brand = offer.brand
    groups = offer_groups(state, offer)
    affinity, recent_affinity, item_mean, item_max, item_sum = _similarities(state, brand, groups, rows)
    if len(groups.members):
        centroid_categories = state.category_share[groups.members].mean(axis=0)
    else:
        centroid_categories = np.zeros(state.category_share.shape[1], np.float32)
    user_categories = state.category_share[rows]
    norms = np.linalg.norm(user_categories, axis=1) * max(float(np.linalg.norm(centroid_categories)), 1e-12)
    category_affinity = np.where(norms > 0, user_categories @ centroid_categories / np.maximum(norms, 1e-12), 0.0)
    category_lift = _category_lift(state.category_share, groups.members, rows)
    spend_lift = _category_lift(state.spend_share, groups.members, rows)

    known = 0 <= brand < len(state.brand_ids)
    stats = state.brand_stats[brand] if known else np.full(len(BRAND_INDEX), np.nan, dtype=np.float32)
    user = state.user_numeric[rows]
    price_gap = user[:, USER_INDEX["amount_level_90d"]] - stats[BRAND_INDEX["brand_price_level"]]
    online_gap = user[:, USER_INDEX["online_share_90d"]] - stats[BRAND_INDEX["brand_online_share"]]
    lifts = [_lift(state, name, groups.members)[rows] for name in LIFT_ATTRIBUTES]
    segment_recent = _lift(state, "segment", groups.recent)[rows]

    m = len(rows)
    blocks = {
        "categorical": state.cat_codes[rows],
        "user": user,
        "brand": np.broadcast_to(np.append(stats, float(known)).astype(np.float32), (m, len(BRAND_FEATURES))),
        "pair": np.column_stack([affinity, recent_affinity, item_mean, item_max, item_sum, category_affinity,
                                 category_lift, spend_lift, price_gap, online_gap, *lifts, segment_recent]),
        "embedding": _embedding_block(state, brand, groups, rows),
        "sequence": np.column_stack(sequences.next_brand_scores(state.adoptions, brand, rows)),
        "offer": np.broadcast_to(_offer_block(state, offer), (m, len(OFFER_FEATURES))),
        "exposure": _exposure_block(state, offer, groups, rows),
    }
    matrix = np.hstack(list(blocks.values()), dtype=np.float32)
    assert matrix.shape[1] == len(FEATURE_NAMES)
    return matrix

