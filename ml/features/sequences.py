"""What clients start buying next: brand-to-brand transitions between consecutive adoptions.

A client's adoptions (first purchases at a brand) come in an order that says something about the next
one: a client who just started at one shop often starts at a related one soon after (a new home, a new
child, a new habit). Counting, over every client, which brand followed which as the next adoption gives
P(next = b | last = a); a client's chance to adopt b next is read from their own latest adoptions.
This is the first-order Markov chain of sequential recommenders (Rendle et al., "Factorizing
Personalized Markov Chains", WWW 2010, without the factorisation: the counts are dense enough here).

Only adoptions after the data's first WARMUP_DAYS count: before that, "first purchases" are mostly the
repertoire a client already had when the data starts, not adoptions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

WARMUP_DAYS = 60
RECENT_DAYS = 90
SMOOTHING = 5.0   # a transition seen from a brand with few successors counts for less


@dataclass
class Adoptions:
    transitions: sparse.csc_matrix   # n_brands x n_brands: P(next adoption = column | last adoption = row)
    last: np.ndarray                 # per user: the brand of the latest adoption, -1 if none
    recent: sparse.csr_matrix        # n_users x n_brands: adoptions in the RECENT_DAYS before the cut (1.0)


def build(users: np.ndarray, brands: np.ndarray, days: np.ndarray, n_users: int, n_brands: int,
          data_start: int, cut: int) -> Adoptions:
    """From every (user, brand, first purchase day) known before `cut`."""
    keep = days >= data_start + WARMUP_DAYS
    users, brands, days = users[keep], brands[keep], days[keep]
    order = np.lexsort((brands, days, users))
    users, brands, days = users[order], brands[order], days[order]
    same = users[1:] == users[:-1]
    counts = sparse.coo_matrix((np.ones(int(same.sum()), np.float32), (brands[:-1][same], brands[1:][same])),
                               shape=(n_brands, n_brands)).tocsr()
    counts.sum_duplicates()
    outgoing = np.asarray(counts.sum(axis=1)).ravel()
    transitions = (sparse.diags((1.0 / (outgoing + SMOOTHING)).astype(np.float32)) @ counts).tocsc()
    transitions.sort_indices()
    last = np.full(n_users, -1, dtype=np.int32)
    if len(users):
        ends = np.append(users[1:] != users[:-1], True)
        last[users[ends]] = brands[ends]
    fresh = days >= cut - RECENT_DAYS
    recent = sparse.csr_matrix((np.ones(int(fresh.sum()), np.float32), (users[fresh], brands[fresh])),
                               shape=(n_users, n_brands))
    recent.sum_duplicates()
    return Adoptions(transitions.astype(np.float32), last, recent)


def next_brand_scores(adoptions: Adoptions, brand: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per user in `rows`: P(next = brand | the user's latest adoption), and the mean of P(next = brand |
    a) over the user's adoptions of the last RECENT_DAYS."""
    m = len(rows)
    if not 0 <= brand < adoptions.transitions.shape[1]:
        return np.zeros(m, np.float32), np.zeros(m, np.float32)
    column = np.asarray(adoptions.transitions[:, brand].todense()).ravel().astype(np.float32)
    last = adoptions.last[rows]
    after_last = np.where(last >= 0, column[np.maximum(last, 0)], 0.0).astype(np.float32)
    recent = adoptions.recent[rows]
    count = np.diff(recent.indptr)
    after_recent = (np.asarray(recent @ column).ravel() / np.maximum(count, 1)).astype(np.float32)
    return after_last, after_recent
