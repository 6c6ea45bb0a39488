"""The one CSV writer for files people open in spreadsheets (invoices, statements, rejects,
rated records, exporter plugins).

A cell whose text starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return, which
some spreadsheets skip before reading a formula) is a formula to Excel, LibreOffice and Google
Sheets: ``=HYPERLINK("http://evil.example","x")``, ``@SUM(...)``, ``-2+3+cmd|' /C calc'!A0``.
Text from outside (a destination name in a partner's rate deck, a rejected record's raw line)
is hostile, so, as OWASP advises against CSV injection, such a cell is written with a leading
apostrophe, which spreadsheets show as text and do not run.

Numbers stay numbers: a ``Decimal``, ``int`` or ``float`` value (an Arrow column of a numeric
type), and in a column the writer is told is numeric a text that is a plain number
(``-12.50``), are written as they are: a credit of ``-12.50`` in an amount column is still
``-12.50``. Any other text starting like a formula is neutralized, even ``-3`` or
``+4930123456`` in a text column (a spreadsheet still shows it as ``+4930123456``).

Not for files the project reads back as records (the demo's and the terminal's generated
traffic, a resubmission file, a CDR file a reader converts): those must keep every value byte
for byte, or the records billed would change.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: a plain decimal number as text (what a spreadsheet reads as a number, never as a formula)
NUMBER = r"-?[0-9]+(?:\.[0-9]+)?"
_NUMBER = re.compile(NUMBER)
_STARTS_LIKE_A_FORMULA = r"^[=+\-@\t\r]"


def neutralize(value: Any) -> Any:
    """``value`` as a spreadsheet reads it as text: a string starting like a formula gets a
    leading ``'``; anything else (numbers, None) is returned as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def cell(value: Any, numeric: bool = False) -> str:
    """The text of one cell: ``None`` empty, a number as it is (a ``Decimal`` exact, without
    exponent), text neutralized; in a ``numeric`` column a text that is a plain decimal number
    (``-12.50``) is kept as the number it is."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    text = str(value)
    if numeric and _NUMBER.fullmatch(text):
        return text
    return neutralize(text)


class Writer:
    """``csv.writer`` whose every cell goes through :func:`cell`; ``numeric`` names the
    positions of the numeric columns (amounts, quantities, rates)."""

    def __init__(self, f: IO[str], numeric: Iterable[int] = (), **fmtparams: Any):
        fmtparams.setdefault("lineterminator", "\n")
        self._w = csv.writer(f, **fmtparams)
        self._numeric = frozenset(numeric)

    def writerow(self, row: Iterable[Any]) -> None:
        self._w.writerow([cell(v, i in self._numeric) for i, v in enumerate(row)])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def write_rows(path: str | Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write ``rows`` (mappings with ``columns``) as CSV to ``path``, a header first."""
    path = Path(path)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = Writer(f)
        w.writerow(columns)
        w.writerows([r.get(c) for c in columns] for r in rows)
    return path


# ---------------------------------------------------------------------------- Arrow tables


def neutralize_array(arr: Any, numeric: bool = False) -> Any:
    """A string Arrow array (or dictionary of strings) with :func:`neutralize` applied to each
    value, vectorized (``numeric``: plain decimal numbers kept, as :func:`cell`); other types
    are returned as they are."""
    # lazy: pyarrow only where a table is written (the CLI imports this module at its start)
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(arr, pa.ChunkedArray):
        return pa.chunked_array([neutralize_array(c, numeric) for c in arr.chunks], type=arr.type)
    if pa.types.is_dictionary(arr.type):
        return pa.DictionaryArray.from_arrays(arr.indices, neutralize_array(arr.dictionary, numeric))
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return arr
    starts = pc.match_substring_regex(arr, _STARTS_LIKE_A_FORMULA)
    if not pc.any(starts).as_py():
        return arr
    if numeric:
        starts = pc.and_kleene(starts, pc.invert(pc.match_substring_regex(arr, f"^{NUMBER}$")))
    return pc.if_else(starts, pc.utf8_replace_slice(arr, 0, 0, "'"), arr)


def neutralize_table(table: pa.Table, numeric: Iterable[str] = ()) -> pa.Table:
    """``table`` with every text cell neutralized (columns of numbers, times and the like
    untouched; text columns named in ``numeric`` keep their plain decimal numbers)."""
    import pyarrow as pa  # lazy, as above

    keep = set(numeric)
    return pa.Table.from_arrays([neutralize_array(c, n in keep) for n, c in zip(table.column_names, table.columns,
                                                                                 strict=True)], schema=table.schema)


class ArrowWriter:
    """``pyarrow.csv.CSVWriter`` for a file people open: text columns neutralized, batch by
    batch (``numeric``: text columns of numbers, as :func:`neutralize_table`)."""

    def __init__(self, path: str | Path, schema: pa.Schema, numeric: Iterable[str] = ()):
        import pyarrow.csv as pacsv  # lazy, as above

        self._w = pacsv.CSVWriter(str(path), schema)
        self._numeric = tuple(numeric)

    def write_table(self, table: pa.Table) -> None:
        self._w.write_table(neutralize_table(table, self._numeric))

    def close(self) -> None:
        self._w.close()
