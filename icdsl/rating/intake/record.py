"""One record given as a mapping (``icdsl explain``, record examples, the plugin author's kit):
normalized by the same column rules as a file (:func:`.fields.normalize` on a one-row table),
so that a record and a file row with the same values cannot be treated differently."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from icdsl.plan.model import RecordLayout
from icdsl.rating.intake.binding import bind_values, record_schema
from icdsl.rating.intake.counts import FIELDS, TS_TYPE
from icdsl.rating.intake.fields import normalize
from icdsl.rating.intake.layout import layout_rules
from icdsl.rating.intake.times import one_value
from icdsl.rating.rejects import Reject


def normalize_record(
    raw: Mapping[str, Any], layout: RecordLayout | None = None, *, numbers: str | None = None
) -> dict[str, Any] | Reject:
    """Normalize one record given as a mapping (e.g. from ``icdsl explain``).

    Keys are the layout's source column names or the field names; the layout's constants fill
    the fields the mapping lacks. Values may be strings (as in a file) or Python values (int,
    float, Decimal, datetime: typed as a Parquet column would be). Returns the normalized fields
    (``start`` an aware UTC datetime, ints for durations) followed by the other keys unchanged,
    or the :class:`Reject` a file row with the same values would get. Unlike in a file, ``id``
    may be absent (None).
    """
    rules = layout_rules(layout, numbers)
    types = {k: one_value(v).type for k, v in raw.items()}
    binding = bind_values(list(raw), types, rules)
    table = pa.table({k: one_value(raw[k]) for k in binding.source.values()}) if binding.source else _ONE_ROW
    out, problems = normalize(table, binding, rules, lambda f, typ: pa.array([binding.const.get(f)], typ))
    found = problems.first()
    if found is not None:
        return Reject(*found)
    got: dict[str, Any] = {f: out[f][0].as_py() for f in FIELDS}
    if got["start"] is not None:
        got["start"] = got["start"].replace(tzinfo=UTC)
    used = set(binding.source.values())
    for k, v in rules.constants.items():
        if k not in FIELDS and k not in raw:
            got[k] = v
    for k, v in raw.items():
        if k not in used:
            got[k if k not in FIELDS else f"{k}_source"] = v
    return got


_ONE_ROW = pa.table({"row": pa.nulls(1)}).select([])  # a row without columns: every field from constants


def records_table(records: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Normalized records (dicts like those :func:`normalize_record` returns) -> a table with
    the record schema; ``id`` is int64 if every id is an int, else string; other keys become
    extra columns (types inferred by Arrow, strings if the values are mixed)."""
    rows = list(records)
    ids = [r.get("id") for r in rows]
    id_int = all(isinstance(v, int) and not isinstance(v, bool) for v in ids if v is not None) and any(
        v is not None for v in ids
    )
    schema = record_schema()
    cols: dict[str, pa.Array] = {}
    for f in schema:
        values = [r.get(f.name) for r in rows]
        if f.name == "id":
            cols["id"] = pa.array(
                values if id_int else [None if v is None else str(v) for v in values],
                pa.int64() if id_int else pa.string(),
            )
        elif pa.types.is_string(f.type):
            cols[f.name] = pa.array([None if v is None else str(v) for v in values], pa.string())
        elif f.name == "start":
            cols[f.name] = pa.array(
                [v.astimezone(UTC) if isinstance(v, datetime) and v.tzinfo else v for v in values], TS_TYPE
            )
        else:
            cols[f.name] = pa.array(values, f.type)
    for r in rows:
        for k in r:
            if k not in cols:
                values = [x.get(k) for x in rows]
                try:
                    cols[k] = pa.array(values)
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    cols[k] = pa.array([None if v is None else str(v) for v in values], pa.string())
    return pa.table(cols)
