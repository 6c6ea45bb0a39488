"""Record readers, as plugin authors import them: the ``icdsl_record_readers`` contract
(:class:`Reader`), the built-in ``table`` reader and the choice of a reader for a file.

They live in :mod:`icdsl.rating.readers`, next to the intake they wrap (``icdsl rate`` opens
files through them, so they belong to the rating layer); this module is their public name (hook
API 1) and the built-in plugin the plugin manager registers as ``icdsl.readers``.
"""

from __future__ import annotations

from icdsl.rating.readers import (
    CLAIM_CONTENT,
    CLAIM_FALLBACK,
    CLAIM_NAME,
    HEAD_BYTES,
    ICDSL_HOOK_API,
    Reader,
    TableReader,
    choose_reader,
    icdsl_record_readers,
    open_reader,
    read_all,
    read_head,
)

__all__ = [
    "ICDSL_HOOK_API",
    "CLAIM_CONTENT",
    "CLAIM_NAME",
    "CLAIM_FALLBACK",
    "HEAD_BYTES",
    "Reader",
    "TableReader",
    "choose_reader",
    "icdsl_record_readers",
    "open_reader",
    "read_all",
    "read_head",
]
