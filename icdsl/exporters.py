"""Invoice and statement writers: the contract of the ``icdsl_exporters`` hook and the built-in
``json`` exporter.

An exporter writes *documents*, the plain form of invoices, credit notes and settlement
statements that billing hands to every output. A document is a mapping (nothing to import, no
database row) with:

===================  ===========================================================================
``kind``             ``invoice``, ``credit_note`` or ``statement``
``number``           the document number (``None`` on a draft)
``partner_code``,    the partner
``partner_name``
``currency``         ISO 4217 code
``issue_date``,      ``datetime.date`` or ``None``
``due_date``
``period``           the billing period's label (``2026-03``)
``stream``           the invoice stream (invoices)
``subtotal``,        ``Decimal``, exact (``tax_amount``/``total`` are ``None`` until taxed)
``tax_kind``,
``tax_rate``,
``tax_amount``,
``total``
``lines``            a list of mappings: ``line_no``, ``kind``, ``description``, ``quantity``,
                     ``unit``, ``rate``, ``rate_unit``, ``amount``, ``currency``, and where
                     known ``direction``, ``service``, ``destination``, ``band``, ``rule``
``receivable``,      statements only: what the partner owes, what we owe, the difference
``payable``, ``net``
===================  ===========================================================================

Keys an exporter does not know are ignored; billing may add keys without changing the hook API.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from icdsl.hookspecs import hookimpl
from icdsl.lang.diagnostics import did_you_mean
from icdsl.plugins import PluginError, active_plugin_manager, exporters, owner

ICDSL_HOOK_API = 1

DOCUMENT_KINDS = ("invoice", "credit_note", "debit_note", "statement")


class Exporter:
    """One output format. Subclass it and register the class with ``icdsl_exporters``.

    ``write(documents, directory, options)`` writes all the documents of a run (a batch) into
    ``directory`` (it exists) and returns the paths it wrote, in the order of ``documents``.
    ``options`` are text values (``--export-option KEY=VALUE``), among ``options`` (name ->
    meaning). Documents of a kind not in ``kinds`` are not passed to it.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    suffix: ClassVar[str] = ""
    kinds: ClassVar[tuple[str, ...]] = DOCUMENT_KINDS
    options: ClassVar[Mapping[str, str]] = {}

    def write(self, documents: Sequence[Mapping[str, Any]], directory: Path,
              options: Mapping[str, str]) -> list[Path]:
        raise NotImplementedError


def file_stem(doc: Mapping[str, Any], index: int) -> str:
    """A safe file name for a document: its number, else ``draft-PARTNER-PERIOD-N``."""
    raw = doc.get("number") or f"draft-{doc.get('partner_code', 'x')}-{doc.get('period', '')}-{index + 1}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(raw)).strip("._") or f"document-{index + 1}"


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class JsonExporter(Exporter):
    name = "json"
    description = "one JSON file per document; amounts as exact decimal strings"
    suffix = ".json"
    options = {"indent": "spaces of indentation (default 2; 0 for one line)"}

    def write(self, documents, directory, options):
        indent = int(options.get("indent", "2")) or None
        out = []
        for i, doc in enumerate(documents):
            path = Path(directory) / f"{file_stem(doc, i)}{self.suffix}"
            path.write_text(json.dumps(_plain(doc), indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")
            out.append(path)
        return out


@hookimpl
def icdsl_exporters():
    return [JsonExporter]


def export(fmt: str, documents: Sequence[Mapping[str, Any]], directory: str | Path,
           options: Mapping[str, str] | None = None, *, pm: Any = None) -> list[Path]:
    """Write ``documents`` with the exporter called ``fmt``; an unknown format or option is a
    ValueError, a failure inside a plugin's exporter a PluginError naming the plugin."""

    pm = pm if pm is not None else active_plugin_manager()
    found = exporters(pm)
    ex = found.get(fmt)
    if ex is None:
        raise ValueError(f"unknown export format '{fmt}'; "
                         + (did_you_mean(fmt, found, "formats") or f"formats: {', '.join(found)}"))
    opts = dict(options or {})
    unknown = sorted(set(opts) - set(ex.options))
    if unknown:
        raise ValueError(f"export format '{fmt}' has no option {', '.join(map(repr, unknown))} "
                         f"(its options: {', '.join(ex.options) or 'none'})")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    docs = [d for d in documents if d.get("kind", "invoice") in ex.kinds]
    try:
        return list(ex.write(docs, directory, opts))
    except Exception as exc:
        raise PluginError(f"exporter '{fmt}' of plugin '{owner(pm, 'icdsl_exporters', fmt)}' failed: "
                          f"{type(exc).__name__}: {exc}") from exc
