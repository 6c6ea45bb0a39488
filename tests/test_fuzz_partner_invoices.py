"""Property and fuzz tests of the partners' invoice readers (hypothesis), like
tests/test_fuzz_intake.py: generated invoices written as UBL 2.1 and as CSV read back to the same
exact lines, and the sample files mutated at random (bytes, cells, lines, declarations): every
outcome is an invoice or an InvoiceFileError whose problems name the file, never another
exception. The coverage-guided fuzzer of the same readers is tests/fuzz/fuzz_partner_invoices.py.
"""

from __future__ import annotations

import random
from decimal import Decimal
from pathlib import Path
from xml.sax.saxutils import escape

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from icdsl.plan.model import InvoiceLayout
from icdsl.recon.readers import InvoiceFileError, read_invoice

SAMPLES = Path(__file__).resolve().parent.parent / "examples" / "interconnect" / "partner-invoices"
FAST = settings(max_examples=80, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
LAYOUT = InvoiceLayout(
    "lumiere_csv",
    columns=(("number", "Invoice No"), ("issue_date", "Invoice Date"), ("line", "Line"), ("service", "Service"),
             ("destination", "Destination"), ("prefix", "Prefix"), ("band", "Band"), ("period_start", "From"),
             ("period_end", "To"), ("calls", "Calls"), ("quantity", "Quantity"), ("unit", "Unit"),
             ("rate", "Rate"), ("amount", "Amount"), ("total", "Invoice Total")),
    constants=(("currency", "EUR"),), services=(("Voice termination", "voice"), ("SMS termination", "sms")),
    date_format="%d/%m/%Y", decimal=",", delimiter=";")

money = st.decimals(min_value=Decimal("-99999999.99"), max_value=Decimal("99999999.99"), places=2)
rates = st.decimals(min_value=Decimal(0), max_value=Decimal("9.999999"), places=6)
qty = st.decimals(min_value=Decimal(0), max_value=Decimal("9999999.9"), places=1)
words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=20) \
    .map(str.strip).filter(lambda w: w and ";" not in w and '"' not in w)
line = st.tuples(st.sampled_from(["Voice termination", "SMS termination"]), words, money, rates, qty,
                 st.integers(0, 10**9))


def ubl(lines, stated: Decimal) -> bytes:
    body = []
    for i, (svc, dest, amount, rate, q, calls) in enumerate(lines, 1):
        body.append(f"""<cac:InvoiceLine><cbc:ID>{i}</cbc:ID>
<cbc:InvoicedQuantity unitCode="MIN">{q}</cbc:InvoicedQuantity>
<cbc:LineExtensionAmount currencyID="EUR">{amount}</cbc:LineExtensionAmount>
<cac:Item><cbc:Name>{escape(svc)}</cbc:Name>
<cac:AdditionalItemProperty><cbc:Name>destination</cbc:Name><cbc:Value>{escape(dest)}</cbc:Value></cac:AdditionalItemProperty>
<cac:AdditionalItemProperty><cbc:Name>calls</cbc:Name><cbc:Value>{calls}</cbc:Value></cac:AdditionalItemProperty>
</cac:Item><cac:Price><cbc:PriceAmount currencyID="EUR">{rate}</cbc:PriceAmount></cac:Price></cac:InvoiceLine>""")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
 xmlns:cac="urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"
 xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">
<cbc:ID>INV-1</cbc:ID><cbc:IssueDate>2026-04-03</cbc:IssueDate><cbc:DocumentCurrencyCode>EUR</cbc:DocumentCurrencyCode>
<cac:InvoicePeriod><cbc:StartDate>2026-03-01</cbc:StartDate><cbc:EndDate>2026-03-31</cbc:EndDate></cac:InvoicePeriod>
<cac:LegalMonetaryTotal><cbc:LineExtensionAmount currencyID="EUR">{stated}</cbc:LineExtensionAmount></cac:LegalMonetaryTotal>
{"".join(body)}</Invoice>""".encode()


def csv_of(lines, stated: Decimal) -> bytes:
    rows = ["Invoice No;Invoice Date;Line;Service;Destination;Prefix;Band;From;To;Calls;Quantity;Unit;Rate;Amount;"
            "Invoice Total"]
    for i, (svc, dest, amount, rate, q, calls) in enumerate(lines, 1):
        c = [str(x).replace(".", ",") for x in (q, rate, amount, stated)]
        rows.append(f"INV-1;03/04/2026;{i};{svc};{dest};;;01/03/2026;31/03/2026;{calls};{c[0]};minute;{c[1]};{c[2]};"
                    f"{c[3]}")
    return ("\n".join(rows) + "\n").encode()


@FAST
@given(st.lists(line, min_size=1, max_size=12), st.one_of(st.none(), money))
def test_ubl_and_csv_read_the_same_exact_lines(lines, other):
    total = sum((x[2] for x in lines), Decimal(0))
    stated = total if other is None else other
    a = read_invoice(ubl(lines, stated), "x.xml", "P", layout=LAYOUT)  # their words mapped on UBL too
    b = read_invoice(csv_of(lines, stated), "x.csv", "P", layout=LAYOUT)
    for inv in (a, b):
        assert [x.amount for x in inv.lines] == [x[2] for x in lines]
        assert [x.rate for x in inv.lines] == [x[3] for x in lines]
        assert [x.quantity for x in inv.lines] == [x[4] for x in lines]
        assert [x.calls for x in inv.lines] == [x[5] for x in lines]
        assert [x.service for x in inv.lines] == ["voice" if x[0].startswith("Voice") else "sms" for x in lines]
        assert [x.destination for x in inv.lines] == [x[1] for x in lines]
        # their stated total is kept as stated; a difference from the sum of the lines is a finding
        assert inv.total == stated
        assert bool(inv.findings) == (stated != total)


def _mutate(rng: random.Random, data: bytes) -> bytes:
    how = rng.randrange(8)
    if how == 0:  # flip bytes
        b = bytearray(data)
        for _ in range(rng.randint(1, 20)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if how == 1:  # cut
        return data[: rng.randrange(len(data))]
    if how == 2:  # drop or repeat lines
        lines = data.split(b"\n")
        i = rng.randrange(len(lines))
        return b"\n".join(lines[:i] + lines[i + 1:] if rng.random() < .5 else lines[:i] + [lines[i]] * 3 + lines[i:])
    if how == 3:  # a declaration
        return data.replace(b"<Invoice ", b'<!DOCTYPE Invoice [<!ENTITY e SYSTEM "file:///etc/passwd">]><Invoice ', 1)
    if how == 4:  # wrong values in numbers and dates
        bad = rng.choice([b"NaN", b"1e9", b"-", b"", b"\x00", b"9" * 60, b"0,5.3", "٣".encode(), b"31/02/2026"])
        for tok in (b"288.61", b"288,61", b"2026-03-01", b"01/02/2026", b"0.0070", b"18250"):
            if tok in data and rng.random() < .5:
                data = data.replace(tok, bad, 1)
        return data
    if how == 5:  # huge field
        i = rng.randrange(len(data))
        return data[:i] + b"x" * 200_000 + data[i:]
    if how == 6:  # delimiters and quotes
        i = rng.randrange(len(data))
        return data[:i] + rng.choice([b";", b'"', b",", b"\r", b"<", b"&"]) * rng.randint(1, 5) + data[i:]
    return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))


@FAST
@given(st.sampled_from(sorted(p.name for p in SAMPLES.glob("lumiere-2026-0[23].*"))), st.randoms(use_true_random=False))
def test_mutated_files_never_traceback(name, rng):
    data = _mutate(rng, (SAMPLES / name).read_bytes())
    try:
        inv = read_invoice(data, name, "LUMFR", layout=LAYOUT)
    except InvoiceFileError as e:
        assert e.problems and all(p.file == name and p.message for p in e.problems)
        assert len(e.problems) <= 30
        assert "root:x:0" not in str(e)  # nothing of another file was read
        return
    assert all(isinstance(x.amount, Decimal) for x in inv.lines)
    assert inv.period_start <= inv.period_end
