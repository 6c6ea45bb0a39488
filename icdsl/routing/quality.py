"""Route quality from outbound call records: ASR, ACD and post-dial delay per supplier and
destination prefix, on columns.

A record is a call we handed to a supplier: ``direction`` ``outbound``, ``partner`` the
supplier, ``b_number`` the called number (E.164 digits), ``duration_s`` the answered seconds.
Two optional fields, kept by intake as extra columns of the traffic file when it has them:

* ``answered``: whether the call was answered (true/false, 1/0, yes/no, or a disposition such
  as ``ANSWERED``/``NO ANSWER``/``BUSY``: only ``answered``-like words count). Without it a
  call is answered when ``duration_s > 0``.
* ``pdd_ms``: the post-dial delay in milliseconds (``pdd_s``: in seconds, decimals allowed).
  Calls without it do not count in the PDD.

For a destination prefix ``P`` the measurement of a supplier is over all its calls whose
number begins with ``P`` (those to longer prefixes included): ``calls`` attempts, ``answered``,
``billsec`` (the answered seconds), ``pdd_ms`` (sum) over ``pdd_n`` calls. ASR = answered /
calls, ACD = billsec / answered, PDD = pdd_ms / pdd_n.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import polars as pl

ANSWERED_WORDS = ("1", "true", "t", "yes", "y", "answered", "answer")


class QualityError(Exception):
    """Call records that cannot be measured: the first bad row (line = row + 2 in a CSV file with
    a header) and what is wrong with it."""
COLUMNS = ("supplier", "prefix", "calls", "answered", "billsec", "pdd_ms", "pdd_n")


def _window(frame: pl.DataFrame, day: date, days: int) -> pl.DataFrame:
    if "start" not in frame.columns:
        return frame
    hi = datetime.combine(day, time(0), tzinfo=UTC)
    lo = hi - timedelta(days=days)
    start = pl.col("start")
    if frame.schema["start"] == pl.Utf8:
        start = start.str.to_datetime(time_zone="UTC", strict=False)
        parsed = frame.select(start.alias("s"), pl.col("start").alias("raw")).with_row_index("row")
        bad = parsed.filter(pl.col("s").is_null() & pl.col("raw").is_not_null())
        if len(bad):
            row = bad.row(0, named=True)
            raise QualityError(f"line {row['row'] + 2}: start {row['raw']!r} is not a timestamp "
                               f"({len(bad)} such records); write ISO 8601 with an offset, e.g. 2026-02-20T10:00:00Z")
    elif getattr(frame.schema["start"], "time_zone", None) is None:
        start = start.dt.replace_time_zone("UTC")
    return frame.filter((start >= lo) & (start < hi))


def empty() -> pl.DataFrame:
    return pl.DataFrame({c: pl.Series([], dtype=pl.Utf8 if c in ("supplier", "prefix") else pl.Int64)
                         for c in COLUMNS})


def measure(records, prefixes: Sequence[str], day: date | None = None, days: int = 30) -> pl.DataFrame:
    """Per (supplier, prefix of ``prefixes``): calls, answered, billsec, pdd_ms, pdd_n of the
    outbound ``records`` (an Arrow table or polars frame) that started in the ``days`` days
    before ``day`` (UTC), when they have a ``start``."""
    frame = records if isinstance(records, pl.DataFrame) else pl.from_arrow(records)
    missing = [c for c in ("partner", "b_number", "duration_s") if c not in frame.columns]
    if missing:
        raise QualityError(f"the call records have no column {', '.join(missing)} (their columns: "
                           f"{', '.join(frame.columns[:40])}); quality needs partner, b_number and duration_s")
    if not len(frame) or not len(prefixes):
        return empty()
    if "direction" in frame.columns:
        frame = frame.filter(pl.col("direction").cast(pl.Utf8) == "outbound")
    if day is not None:
        frame = _window(frame, day, days)
    if "answered" in frame.columns:
        word = pl.col("answered").cast(pl.Utf8).str.to_lowercase().str.strip_chars()
        answered = word.is_in(list(ANSWERED_WORDS)).fill_null(pl.col("duration_s").fill_null(0) > 0)
    else:
        answered = pl.col("duration_s").fill_null(0) > 0
    if "pdd_ms" in frame.columns:
        pdd = pl.col("pdd_ms").cast(pl.Int64, strict=False)
    elif "pdd_s" in frame.columns:
        pdd = (pl.col("pdd_s").cast(pl.Float64, strict=False) * 1000).round(0).cast(pl.Int64)
    else:
        pdd = pl.lit(None, dtype=pl.Int64)
    calls = frame.select(
        pl.col("partner").cast(pl.Utf8).alias("supplier"),
        pl.col("b_number").cast(pl.Utf8).alias("number"),
        answered.cast(pl.Int64).alias("answered"),
        pl.when(answered).then(pl.col("duration_s").cast(pl.Int64).fill_null(0)).otherwise(0).alias("billsec"),
        pdd.alias("pdd"),
    ).filter(pl.col("supplier").is_not_null() & pl.col("number").is_not_null())
    table = pl.DataFrame({"prefix": pl.Series(list(prefixes), dtype=pl.Utf8)}).unique()
    table = table.with_columns(pl.col("prefix").str.len_chars().alias("len"))
    out = []
    for length in np.unique(table["len"].to_numpy()).tolist():
        cut = (calls.with_columns(pl.col("number").str.slice(0, length).alias("prefix"))
               .filter(pl.col("prefix").str.len_chars() == length)
               .group_by(["supplier", "prefix"])
               .agg(pl.len().cast(pl.Int64).alias("calls"), pl.col("answered").sum().alias("answered"),
                    pl.col("billsec").sum().alias("billsec"), pl.col("pdd").sum().alias("pdd_ms"),
                    pl.col("pdd").is_not_null().sum().cast(pl.Int64).alias("pdd_n")))
        out.append(cut.join(table.filter(pl.col("len") == length).select("prefix"), on="prefix"))
    if not out:
        return empty()
    return pl.concat(out).select(*COLUMNS).sort(["supplier", "prefix"])
