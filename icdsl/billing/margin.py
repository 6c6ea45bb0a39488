"""The store's side of margins: the sold records of a period, from the cycles' rated files.

For every billing cycle whose UTC period overlaps the days asked and that has been rated (any
state but ``open``), its latest ``rated`` file is read; the sold records (``inbound`` and
``transit``) are kept, and the intake files of their batches give them, by (``batch_id``, ``id``,
``partner``: a transit record is written once per side with the same id), the called number (``b_number``), the calling number and the supplier column (``supplier``,
``route`` or ``out_trunk``) that the rated file does not keep. The costing itself is
:mod:`icdsl.routing.margin`'s.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from icdsl.billing import models as M

SOLD = ("inbound", "transit")
JOINED = ("b_number", "a_number", "to_partner", "supplier", "route", "out_trunk")


def sold_records(store: Any, first: date, last: date) -> pa.Table:
    """The sold records of the cycles rated for the UTC days ``first`` .. ``last``, with the
    traffic's number and supplier columns. An empty table (with the rated columns) if none."""
    lo = datetime.combine(first, time(0), tzinfo=UTC)
    hi = datetime.combine(last + timedelta(days=1), time(0), tzinfo=UTC)
    with store.session() as s:
        files = s.execute(
            sa.select(M.DataFile.cycle_id, sa.func.max(M.DataFile.id))
            .join(M.BillingCycle, M.BillingCycle.id == M.DataFile.cycle_id)
            .where(M.DataFile.kind == "rated", M.BillingCycle.status != "open",
                   M.BillingCycle.period_start < hi,
                   M.BillingCycle.period_end > lo)
            .group_by(M.DataFile.cycle_id)).all()
        paths = s.execute(sa.select(M.DataFile.path, M.DataFile.sha256).where(M.DataFile.id.in_([f for _, f in files]))
                          .order_by(M.DataFile.id)).all() if files else []
    tables = []
    for rel, sha in paths:
        store.data.verify(rel, sha)  # missing or changed: an OSError that names the file
        t = pq.read_table(store.data.abs(rel))
        t = t.filter(pc.is_in(pc.cast(t.column("direction"), pa.string()), pa.array(SOLD)))
        if t.num_rows:
            tables.append(t)
    if not tables:
        return pa.table({c: pa.array([], type=pa.string()) for c in
                         ("id", "partner", "direction", "service", "prefix", "destination", "band", "currency")}
                        | {"amount": pa.array([], type=pa.decimal128(38, 6)),
                           "start": pa.array([], type=pa.timestamp("us", tz="UTC")),
                           "duration_s": pa.array([], type=pa.int64())})
    rated = pa.concat_tables(tables, promote_options="permissive")
    return _with_traffic(store, rated)


def _with_traffic(store: Any, rated: pa.Table) -> pa.Table:
    if "batch_id" not in rated.column_names:
        return rated
    batches = pc.unique(rated.column("batch_id")).drop_null().to_pylist()
    with store.session() as s:
        paths = s.execute(sa.select(M.DataFile.batch_id, M.DataFile.path, M.DataFile.sha256)
                          .where(M.DataFile.kind == "intake_records", M.DataFile.batch_id.in_(batches))).all()
    parts = []
    for batch, rel, sha in paths:
        store.data.verify(rel, sha)
        path = store.data.abs(rel)
        names = pq.read_schema(path).names
        cols = [c for c in JOINED if c in names]
        if not cols or "id" not in names or "partner" not in names:
            continue
        t = pq.read_table(path, columns=["id", "partner", *cols])
        for c in ("id", "partner", *cols):
            i = t.column_names.index(c)
            t = t.set_column(i, c, pc.cast(t.column(c), pa.string()))
        parts.append(t.append_column("batch_id", pa.array([batch] * t.num_rows, type=pa.int64())))
    if not parts:
        return rated
    traffic = pa.concat_tables(parts, promote_options="permissive")
    left = rated.set_column(rated.column_names.index("id"), "id", pc.cast(rated.column("id"), pa.string()))
    left = left.set_column(left.column_names.index("batch_id"), "batch_id", pc.cast(left.column("batch_id"), pa.int64()))
    left = left.set_column(left.column_names.index("partner"), "partner", pc.cast(left.column("partner"), pa.string()))
    # by partner too: the two sides of a transit record share its batch and id (each sold record
    # must meet its own side's row once, or a transit month is counted twice)
    return left.join(traffic, keys=["batch_id", "id", "partner"], join_type="left outer")
