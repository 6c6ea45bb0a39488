"""Suspected duplicates: the same call under a new id (``icdsl ingest --fingerprint``).

A call's fingerprint is its ``a_number``, ``b_number``, ``start`` and ``duration_s``. Two
records with the same fingerprint and different ids are, most likely, one call recorded twice
(two switches on its path, a mediation that re-keyed a re-sent file). Most likely is not
certainly: the ids are the switch's own keys and say two calls. So a suspect is **reported,
not held**: it is billed like any passed record, listed with the record it matches (both
versions, in ``intake_conflicts`` with kind ``suspect``; ``icdsl conflicts --kind suspect``),
and the analyst decides (a dispute with the partner, a correction). Holding it would delay the
billing of real calls on a guess.

The check compares the file's records with each other and with the earlier batches whose
starts overlap the file's; records without a ``b_number`` (data, events) have no fingerprint.
Each file is read twice: once for 64-bit hashes of the fingerprints, once for the rows whose
hash matched (compared exactly, so a hash collision reports nothing).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from icdsl.billing import models as M

FINGERPRINT = ("a_number", "b_number", "start", "duration_s")
_SEED = 0xF1A9


def _groups(path: Path) -> Iterator[tuple[int, pa.Table]]:
    pf = pq.ParquetFile(path)
    for g in range(pf.metadata.num_row_groups):
        yield g, pf.read_row_group(g, columns=["id", *FINGERPRINT])


def _hashes(t: pa.Table) -> np.ndarray:
    """One 64-bit hash of each row's fingerprint (0 for a row without a b_number: never matched)."""
    import polars as pl  # heavy to import; only --fingerprint needs it

    cols = {n: t.column(n) for n in FINGERPRINT}
    cols["start"] = pc.cast(cols["start"], pa.int64())
    h = pl.from_arrow(pa.table(cols)).hash_rows(seed=_SEED).to_numpy().astype(np.uint64)
    h[pc.is_null(t.column("b_number")).to_numpy(zero_copy_only=False)] = 0
    return h


def _keys_of(path: Path) -> np.ndarray:
    parts = [_hashes(t) for _, t in _groups(path)]
    return np.concatenate(parts) if parts else np.zeros(0, np.uint64)


def _rows_with(path: Path, keys: np.ndarray) -> pa.Table:
    """The whole rows of a records file whose fingerprint hash is among ``keys``, in file order."""
    pf = pq.ParquetFile(path)
    parts = []
    for g, t in _groups(path):
        hit = np.isin(_hashes(t), keys)
        if hit.any():
            parts.append(pf.read_row_group(g).filter(pa.array(hit)))
    return pa.concat_tables(parts, promote_options="permissive") if parts else pf.schema_arrow.empty_table()


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[n] for n in FINGERPRINT)


def find(s: Session, records_path: Path, earlier_files: dict[int, Path],
         raw_json: Callable[[pa.Table], pa.Array]) -> list[dict[str, Any]]:
    """The suspects of a file just written (``records_path``): each record whose fingerprint an
    earlier record has under another id (earlier in the file, or in an earlier batch), as
    ``intake_conflicts`` rows (``earlier_batch_id`` None: earlier in the same file)."""
    mine = _keys_of(records_path)
    mine = mine[mine != 0]
    if not len(mine):
        return []
    uniq, counts = np.unique(mine, return_counts=True)
    wanted = [uniq[counts > 1]]
    lo, hi = _start_range(records_path)
    overlapping = s.execute(select(M.IntakeBatch.id).where(M.IntakeBatch.min_start <= hi,
                                                           M.IntakeBatch.max_start >= lo)).scalars().all()
    earlier = {b: earlier_files[b] for b in sorted(overlapping) if b in earlier_files}
    for path in earlier.values():
        theirs = _keys_of(path)
        wanted.append(uniq[np.isin(uniq, theirs[theirs != 0])])
    keys = np.unique(np.concatenate(wanted))
    if not len(keys):
        return []
    # the first record of each fingerprint: the earliest batch's, else the first in this file
    first: dict[tuple[Any, ...], tuple[int | None, dict[str, Any], str]] = {}
    for batch_id, path in earlier.items():
        rows = _rows_with(path, keys)
        for r, j in zip(rows.to_pylist(), raw_json(rows).to_pylist(), strict=True):
            if r["b_number"] is not None:
                first.setdefault(_key(r), (batch_id, r, j))
    rows = _rows_with(records_path, keys)
    out = []
    for r, j in zip(rows.to_pylist(), raw_json(rows).to_pylist(), strict=True):
        if r["b_number"] is None:
            continue
        k = _key(r)
        if k not in first:
            first[k] = (None, r, j)
            continue
        batch_id, e, ej = first[k]
        if str(e["id"]) == str(r["id"]):
            continue
        out.append({
            "kind": "suspect", "row": None, "record_id": str(r["id"]), "partner": r["partner"], "start": r["start"],
            "earlier_batch_id": batch_id, "earlier_id": str(e["id"]), "differs": None,
            "earlier": json.loads(ej), "later": json.loads(j),
        })
    return out


def _start_range(path: Path) -> tuple[Any, Any]:
    t = pq.read_table(path, columns=["start"]).column("start")
    mm = pc.min_max(t)
    return mm["min"].as_py(), mm["max"].as_py()
