"""Coverage-guided fuzzing of the partners' invoice readers (atheris): each input is a partner's
file, read as UBL 2.1 when it is XML, else as CSV in the example's ``lumiere_csv`` layout
(:func:`icdsl.recon.readers.read_invoice`). A finding is any exception other than an
InvoiceFileError whose problems name the file, an invoice whose lines' amounts are not
Decimals, or a CSV invoice whose total, without a stated total, is not the sum of its lines.

Run on demand, never by the test suite (pip install -e ".[fuzz]"); the corpus folder is seeded
from the examples when it is missing (``tests/fuzz/make_corpus.py``):

    python tests/fuzz/fuzz_partner_invoices.py -atheris_runs=100000 tests/fuzz/corpus/partner_invoices
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports(include=["icdsl.recon"]):
    from icdsl.recon.readers import InvoiceFileError, read_invoice

from icdsl.plan.model import InvoiceLayout  # noqa: E402

LAYOUT = InvoiceLayout(
    "lumiere_csv",
    columns=(("number", "Invoice No"), ("issue_date", "Invoice Date"), ("line", "Line"), ("service", "Service"),
             ("destination", "Destination"), ("prefix", "Prefix"), ("band", "Band"), ("period_start", "From"),
             ("period_end", "To"), ("calls", "Calls"), ("quantity", "Quantity"), ("unit", "Unit"),
             ("rate", "Rate"), ("amount", "Amount")),
    constants=(("currency", "EUR"),), services=(("Voice termination", "voice"), ("SMS termination", "sms")),
    date_format="%d/%m/%Y", decimal=",", delimiter=";")


def one_input(data: bytes) -> None:
    try:
        inv = read_invoice(data, "fuzz.bin", "LUMFR", layout=LAYOUT)
    except InvoiceFileError as e:
        if not e.problems or not all(p.file == "fuzz.bin" and p.message for p in e.problems):
            raise AssertionError(f"a problem without the file or a message: {e}") from None
        return
    if not all(isinstance(x.amount, Decimal) for x in inv.lines):
        raise AssertionError("an amount that is not a Decimal")
    if inv.format == "csv" and inv.total != sum((x.amount for x in inv.lines), Decimal(0)):
        raise AssertionError(f"total {inv.total} is not the sum of the lines")


if __name__ == "__main__":
    from fuzz.make_corpus import ensure_corpus

    ensure_corpus(sys.argv[1:])
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
