"""The runner: every check goes through one ephemeral Great Expectations context (no network).

Three ways to state a check, one GE expectation each:
  - `expect`: an expectation on a narrow frame (one or two columns, at most `ge_sample_rows` rows of
    a fixed-seed sample);
  - `flag`: a per-row "bad" flag that polars computes over the whole table (uniqueness, membership in
    50k ids, cross-version joins: where GE has no fitting expectation or a sample would hide the
    cause); GE expects at most a rate of it;
  - `value`: one whole-table measure (a ratio, a share) that GE expects within bounds.
A check's details say what was found in words and numbers, with examples from the data.
"""
from __future__ import annotations

from typing import Callable

import great_expectations as gx
import pandas as pd
import polars as pl
from great_expectations.data_context.types.base import ProgressBarsConfig

from quality.validation.results import CheckResult

# A check's details quote values from the data; they are cut to this length, so the checks of a
# version (about a hundred, listed twice in ValidationFinished) stay well under the broker's message
# limit whatever the data holds (domain/events.py MAX_EVENT_BYTES).
MAX_DETAILS_CHARS = 300

# describe(GE's result, passed) -> the check's details.
Describe = Callable[[dict, bool], str]


class Runner:
    def __init__(self, params: dict) -> None:
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        asset = context.data_sources.add_pandas("lookalike").add_dataframe_asset(name="frame")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("whole")
        self.params = params
        self.checks: list[CheckResult] = []
        self.raw: list[dict] = []

    def sample(self, frame: pl.DataFrame) -> pl.DataFrame:
        rows = int(self.params["ge_sample_rows"])
        return frame.sample(n=rows, seed=int(self.params["sample_seed"])) if frame.height > rows else frame

    def expect(self, name: str, table: str, frame: pd.DataFrame | pl.DataFrame, expectation, critical: bool,
               describe: Describe, measure: tuple[float, float, str] | None = None) -> bool:
        """Run one GE expectation. `measure`: (observed, limit, "max" | "min") when the caller knows them;
        else an expectation with `mostly` is measured by its share of unexpected rows."""
        if isinstance(frame, pl.DataFrame):
            frame = self.sample(frame).to_pandas()
        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": frame})
        outcome = batch.validate(expectation, result_format="SUMMARY")
        result = outcome.result or {}
        passed = bool(outcome.success)
        try:
            details = describe(result, passed)
        except Exception as error:  # a report must never hide the verdict
            details = f"(details unavailable: {error!r}) {result}"
        if len(details) > MAX_DETAILS_CHARS:  # quoted data can be long: the checks travel in one event
            details = details[:MAX_DETAILS_CHARS - 1] + "…"
        mostly = getattr(expectation, "mostly", None)  # 1.0 (every row) leaves no margin to speak of
        if measure is None and mostly is not None and mostly < 1 and result.get("unexpected_percent") is not None:
            measure = (float(result["unexpected_percent"]) / 100, round(1 - float(mostly), 6), "max")
        observed, limit, bound = measure if measure is not None else (None, None, None)
        self.checks.append(CheckResult(name=name, table=table, critical=critical, passed=passed,
                                       details=details, expectation=type(expectation).__name__,
                                       observed=None if observed is None else round(float(observed), 6),
                                       limit=limit, bound=bound))
        self.raw.append({"check": name, "result": outcome.to_json_dict()})
        return passed

    def flag(self, name: str, table: str, bad: pl.Series, max_rate: float, critical: bool, what: str,
             examples: list | None = None) -> bool:
        """A per-row 'bad' flag computed by polars over the whole table; GE expects at most max_rate
        of it (on a sample of flags); details quote whole-table counts and examples."""
        total, count = bad.len(), int(bad.sum())
        frame = pl.DataFrame({"ok": ~bad})
        shown = ", ".join(str(v) for v in (examples or [])[:3])

        def describe(_: dict, ok: bool) -> str:
            share = count / total if total else 0.0
            text = f"{share:.1%} of new {table} rows ({count:,} of {total:,}) {what}"
            if count and shown:
                text += f" (example: {shown})"
            return text + ("" if ok else f"; limit {max_rate:.1%}")

        return self.expect(name, table, frame,
                           gx.expectations.ExpectColumnValuesToBeInSet(column="ok", value_set=[True],
                                                                       mostly=max(0.0, 1 - max_rate)),
                           critical, describe, (count / total if total else 0.0, max_rate, "max"))

    def value(self, name: str, table: str, value: float, low: float | None, high: float | None, critical: bool,
              describe: Callable[[bool], str]) -> bool:
        """A whole-table measure (a ratio, a share) that GE expects within [low, high]."""
        bound = (high, "max") if high is not None else (low, "min")

        def details(_: dict, ok: bool) -> str:
            return describe(ok)

        return self.expect(name, table, pd.DataFrame({"value": [float(value)]}),
                           gx.expectations.ExpectColumnValuesToBeBetween(column="value", min_value=low,
                                                                         max_value=high),
                           critical, details, (float(value), bound[0], bound[1]))

    def count(self, name: str, table: str, column: str, count: int, low: int | None, high: int | None,
              critical: bool, describe: Describe) -> bool:
        """A count (a table's rows, missing batches, absent columns) that GE expects within [low, high];
        `column` names it in GE's own results."""
        return self.expect(name, table, pd.DataFrame({column: [count]}),
                           gx.expectations.ExpectColumnValuesToBeBetween(column=column, min_value=low, max_value=high),
                           critical, describe)


def examples(result: dict, limit: int = 3) -> str:
    """The first distinct unexpected values GE quotes, as text."""
    values: list[str] = []
    for value in result.get("partial_unexpected_list", []) or []:
        text = "null" if value is None or (isinstance(value, float) and value != value) else str(value)
        if text not in values:
            values.append(text)
        if len(values) == limit:
            break
    return ", ".join(values)


def rate(result: dict, what: str, passed: bool, sampled: int | None = None) -> str:
    """'x% of new rows (count of total [sampled from n]) <what>', with examples when it failed."""
    count, total = result.get("unexpected_count", 0) or 0, result.get("element_count", 0) or 0
    share = 100 * count / total if total else 0.0
    shown = examples(result)
    text = f"{share:.1f}% of new rows ({count:,} of {total:,}"
    text += f" sampled from {sampled:,}) " if sampled and sampled > total else ") "
    text += what
    return text + (f" (example: {shown})" if shown and not passed else "")
