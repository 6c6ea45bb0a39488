"""The store's side of least-cost routing: the outbound call records of a recent period, read
from the intake files, for the route quality of ``icdsl lcr`` (:mod:`icdsl.routing.quality`).

Only the intake batches whose records start in the window are opened, only the columns quality
needs are read (``answered`` and ``pdd_ms``/``pdd_s`` when a traffic file had them as extra
columns), and only outbound records in the window are kept.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from icdsl.billing import models as M

QUALITY_COLUMNS = ("partner", "direction", "b_number", "start", "duration_s", "answered", "pdd_ms", "pdd_s")


def window(day: date, days: int) -> tuple[datetime, datetime]:
    """The ``days`` whole UTC days before ``day``: [start, end)."""
    hi = datetime.combine(day, time(0), tzinfo=UTC)
    return hi - timedelta(days=days), hi


def outbound_records(store: Any, day: date, days: int) -> pa.Table | None:
    """The outbound records that started in the ``days`` days before ``day`` (UTC), with the
    columns quality reads; None when the store holds none."""
    lo, hi = window(day, days)
    with store.session() as s:
        rows = s.execute(
            sa.select(M.DataFile.path)
            .join(M.IntakeBatch, M.IntakeBatch.id == M.DataFile.batch_id)
            .where(M.DataFile.kind == "intake_records")
            .where(sa.or_(M.IntakeBatch.max_start.is_(None), M.IntakeBatch.max_start >= lo))
            .where(sa.or_(M.IntakeBatch.min_start.is_(None), M.IntakeBatch.min_start < hi))
            .order_by(M.DataFile.id)
        ).scalars().all()
    tables = []
    for rel in rows:
        path = store.data.abs(rel)
        names = pq.read_schema(path).names
        cols = [c for c in QUALITY_COLUMNS if c in names]
        if not {"partner", "b_number", "duration_s", "start"} <= set(cols):
            continue
        t = pq.read_table(path, columns=cols)
        start = t.column("start")
        lo_s = pa.scalar(lo, start.type) if start.type.tz else pa.scalar(lo.replace(tzinfo=None), start.type)
        hi_s = pa.scalar(hi, start.type) if start.type.tz else pa.scalar(hi.replace(tzinfo=None), start.type)
        mask = pc.and_(pc.greater_equal(start, lo_s), pc.less(start, hi_s))
        if "direction" in cols:
            mask = pc.and_(mask, pc.equal(pc.cast(t.column("direction"), pa.string()), "outbound"))
        t = t.filter(mask)
        if t.num_rows:
            tables.append(t.select([c for c in QUALITY_COLUMNS if c in t.column_names]))
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")
