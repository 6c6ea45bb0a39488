"""Cells of files that people open in spreadsheets: text that starts with ``=``, ``+``, ``-``,
``@`` (or a tab or carriage return, which some spreadsheets skip before reading a formula) is a
formula to Excel, LibreOffice and Google Sheets (``=HYPERLINK(...)``, ``@SUM(...)``,
``-2+3+cmd|...``). Outside input (a partner's file, a rejected record's raw line) is hostile:
such a cell is written with a leading apostrophe, which spreadsheets show as text (OWASP's
advice for CSV injection)."""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralize(value: Any) -> Any:
    """``value`` as a spreadsheet reads it as text: a string starting like a formula gets a
    leading ``'``; anything else (numbers, None) is returned as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
