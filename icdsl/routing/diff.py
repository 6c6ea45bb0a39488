"""What changed between two routing tables: destinations (prefix and band) added or removed,
re-ranked (another order of suppliers) and re-priced (the same order, other costs).

The previous table is a CSV file written by ``icdsl lcr --format csv`` (read back as text, and
treated as hostile: a missing column or a bad rank is a located error, never a traceback).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from icdsl.routing.export import display_frame
from icdsl.routing.lcr import LcrError, LcrTable

NEEDED = ("prefix", "band", "rank", "supplier", "cost")
MAX_BYTES = 2 * 1024**3


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # added | removed | reranked | repriced
    prefix: str
    band: str
    before: str  # "ALFA 0.004000 > GAMA 0.005250" ("" when added)
    after: str

    def __str__(self) -> str:
        if self.kind == "added":
            return f"added     {self.prefix} {self.band}: {self.after}"
        if self.kind == "removed":
            return f"removed   {self.prefix} {self.band}: {self.before}"
        return f"{self.kind:<9} {self.prefix} {self.band}: {self.before}  ->  {self.after}"


def read_previous(path: Path) -> pl.DataFrame:
    """The routes of a CSV routing table written earlier: (prefix, band, rank, supplier, cost)."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise LcrError(f"cannot read the previous table {path}: {e.strerror or e}") from None
    if size > MAX_BYTES:
        raise LcrError(f"{path}: the previous table is larger than {MAX_BYTES // 1024**3} GiB")
    try:
        frame = pl.read_csv(path, infer_schema=False, truncate_ragged_lines=False)
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError, UnicodeDecodeError) as e:
        raise LcrError(f"{path}: not a CSV routing table ({str(e).splitlines()[0]})",
                       help="give a file written by 'icdsl lcr --format csv -o FILE'") from None
    missing = [c for c in NEEDED if c not in frame.columns]
    if missing:
        raise LcrError(f"{path}:1: the previous table has no column {', '.join(missing)}",
                       help=f"its columns are: {', '.join(frame.columns) or '(none)'}; give a file written by "
                            "'icdsl lcr --format csv -o FILE'")
    frame = frame.select(*NEEDED).with_row_index("line", offset=2)
    rank = frame["rank"].cast(pl.Int64, strict=False)
    bad = frame.filter(rank.is_null() | (rank < 1))
    if len(bad):
        row = bad.row(0, named=True)
        raise LcrError(f"{path}:{row['line']}: rank {row['rank']!r} is not a whole number from 1",
                       help="the file was changed by hand or is not a routing table")
    empty = frame.filter(pl.col("prefix").is_null() | pl.col("supplier").is_null() | pl.col("band").is_null())
    if len(empty):
        raise LcrError(f"{path}:{empty['line'][0]}: a route without prefix, band or supplier")
    return frame.with_columns(rank.alias("rank")).drop("line").with_columns(pl.col("cost").fill_null(""))


def _lists(routes: pl.DataFrame) -> pl.DataFrame:
    return (routes.sort(["prefix", "band", "rank", "supplier"])
            .group_by(["prefix", "band"], maintain_order=True)
            .agg(pl.concat_str([pl.col("supplier"), pl.col("cost")], separator=" ").str.join(" > ").alias("priced"),
                 pl.col("supplier").str.join(" > ").alias("order")))


def compare(previous: pl.DataFrame, table: LcrTable) -> list[Change]:
    """The changes from ``previous`` (see :func:`read_previous`) to ``table``, by prefix and band."""
    now = display_frame(table).select("prefix", "band", pl.col("rank").cast(pl.Int64), "supplier", "cost")
    a, b = _lists(previous), _lists(now)
    joined = a.join(b, on=["prefix", "band"], how="full", coalesce=True, suffix="_new")
    joined = joined.filter(pl.col("priced").is_null() | pl.col("priced_new").is_null()
                           | (pl.col("priced") != pl.col("priced_new"))).sort(["prefix", "band"])
    out = []
    for r in joined.iter_rows(named=True):
        if r["priced"] is None:
            out.append(Change("added", r["prefix"], r["band"], "", r["priced_new"]))
        elif r["priced_new"] is None:
            out.append(Change("removed", r["prefix"], r["band"], r["priced"], ""))
        elif r["order"] != r["order_new"]:
            out.append(Change("reranked", r["prefix"], r["band"], r["priced"], r["priced_new"]))
        else:
            out.append(Change("repriced", r["prefix"], r["band"], r["priced"], r["priced_new"]))
    return out


def summary(changes: list[Change]) -> str:
    counts = {k: sum(1 for c in changes if c.kind == k) for k in ("added", "removed", "reranked", "repriced")}
    return ", ".join(f"{n} {k}" for k, n in counts.items())
