"""bench/early_buyers.py: who becomes an offer's customer between the cut and its start."""
from __future__ import annotations

import datetime as dt

import polars as pl

from bench.early_buyers import early_buyers

CUT = dt.date(2025, 6, 1)


def test_early_buyers_first_bought_between_the_cut_and_the_start():
    transactions = pl.DataFrame({
        "user_id": [1, 1, 2, 3, 4, 5, 6],
        "brand_dk": [7, 7, 7, 7, 7, 7, 8],
        "event_date": [dt.date(2025, 5, 1), dt.date(2025, 6, 10),  # 1: a customer before the cut
                       dt.date(2025, 6, 1),                        # 2: first on the cut day: early
                       dt.date(2025, 7, 31),                       # 3: the day before the start: early
                       dt.date(2025, 8, 1),                        # 4: inside the window: a new customer
                       dt.date(2025, 6, 15),                       # 5: early
                       dt.date(2025, 6, 15)],                      # 6: another brand
    })
    merchants = pl.DataFrame({"merchant_id_offer": [70, 80], "brand_dk": [7, 8]})
    offers = pl.DataFrame({
        "offer_id": [1, 2, 3], "merchant_id_offer": [70, 70, 80],
        "start_date": [dt.date(2025, 8, 1), CUT, dt.date(2025, 9, 1)],  # offer 2 starts on the cut: none early
        "end_date": [dt.date(2025, 8, 31), dt.date(2025, 6, 30), None],
    })
    assert early_buyers(transactions, offers, merchants, CUT) == {(1, 70): {2, 3, 5}, (3, 80): {6}}
