"""The quarantine's entries as a file: CSV (every text cell neutralized against spreadsheet
formulas, :mod:`icdsl.safecsv`) or Parquet (the values as they are, for tools)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icdsl.safecsv import write_rows

if TYPE_CHECKING:
    import pyarrow as pa

EXPORT_FORMATS = ("csv", "parquet")


def export_format(path: str | Path) -> str:
    """The format a file name asks for (``.csv`` or ``.parquet``)."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in EXPORT_FORMATS:
        return suffix
    raise ValueError(f"{Path(path).name}: name the file .csv or .parquet (the format of the export)")


def write_rejects(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], path: str | Path,
                  schema: pa.Schema | None = None) -> Path:
    """Write ``rows`` (mappings with ``columns``) to ``path`` in the format its suffix names."""
    path = Path(path)
    fmt = export_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        # lazy: pyarrow only for a Parquet export (the CLI imports this module at its start)
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows], schema=schema), path)
        return path
    return write_rows(path, columns, rows)
