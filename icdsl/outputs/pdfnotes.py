"""The small print under a PDF document's body (provenance, hashes, notes), one way for every
document: the invoice and statement PDFs (:mod:`icdsl.outputs.pdf`), a reconciliation
(:mod:`icdsl.outputs.reconciliation`) and a dispute (:mod:`icdsl.outputs.disputes`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def notes_block(pdf: Any, notes: Sequence[str], width: float, *, encode: Callable[[str], str] = str,
                need: Callable[[float], Any] | None = None, room: float | None = None, prefix: str = "",
                size: float = 7.5, line: float = 3.8, gap: float = 4, grey: int = 90) -> None:
    """Write ``notes`` (each a paragraph, ``prefix`` before it, made printable by ``encode``:
    the core font's :func:`icdsl.outputs.pdf.latin1`) in small grey type of the document's font
    below what is on the page; ``need(room)`` first (a new page when less is left: ``room``
    defaults to a few millimetres a note). Nothing when there are no notes."""
    if not notes:
        return
    if need is not None:
        need(room if room is not None else 6 + 4 * len(notes))
    pdf.ln(gap)
    pdf.set_font(pdf.font_family, "", size)
    pdf.set_text_color(grey)
    for n in notes:
        pdf.multi_cell(width, line, encode(prefix + n), new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0)
