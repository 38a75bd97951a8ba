"""Days, range strings, flags and offer texts as numbers: one parser for each, whatever the table."""
from __future__ import annotations

import datetime as dt
import math
import re

import polars as pl

from domain.tables import OPEN_END

EPOCH = dt.date(1970, 1, 1)
OPEN_END_DAY = (OPEN_END - EPOCH).days
# An open-ended offer is treated as lasting this long (for its duration and the window ahead).
OPEN_DURATION_DAYS = 365

_ONLINE_WORDS = re.compile(r"интернет|онлайн|доставк|http|www|\.ru|приложен|marketplace|маркетплейс")
_NO_TEXT = re.compile(r"^\s*(сайт не указан)?\s*$")


def day_of(value: dt.date | None) -> int | None:
    return None if value is None else (value - EPOCH).days


def date_of(day: int) -> dt.date:
    return EPOCH + dt.timedelta(days=int(day))


def _amount_value(text: str | None) -> float:
    """'100-500' -> 300, '1k-5k' -> 3000, '10k+' -> 15000: the sets are not fixed, so parse, never list."""
    if text is None:
        return math.nan
    cleaned = text.lower().replace(" ", "").replace(",", ".")
    values = []
    for number, suffix in re.findall(r"(\d+(?:\.\d+)?)([kкmм]?)", cleaned):
        scale = 1000.0 if suffix in ("k", "к") else 1e6 if suffix in ("m", "м") else 1.0
        values.append(float(number) * scale)
    if not values:
        return math.nan
    value = (values[0] + values[1]) / 2 if len(values) > 1 else values[0] * (1.5 if "+" in cleaned else 1.0)
    return math.log1p(value)


def amount_level(column: pl.Series) -> pl.Series:
    """Log of a range string's middle, mapped over the distinct values only."""
    distinct = column.unique().to_list()
    mapping = {value: _amount_value(value) for value in distinct if value is not None}
    return column.replace_strict(mapping, default=None, return_dtype=pl.Float32)


def text_signal(text: str | None) -> tuple[float, float, float]:
    """(words, missing, mentions online) of an offer text; the text describes the merchant."""
    text = (text or "").strip()
    missing = 1.0 if _NO_TEXT.match(text) else 0.0
    words = 0.0 if missing else float(len(text.split()))
    online = 1.0 if _ONLINE_WORDS.search(text) else 0.0
    return words, missing, online
