"""The journal: double-entry accounting entries from finalized invoices and credit notes, for an
ERP (``icdsl journal``), as CSV (:mod:`icdsl.safecsv`) and JSON.

The ledger accounts come from the rules (``accounts { ... }``, :class:`icdsl.plan.model.Accounts`).
One entry per document, dated its issue date, in its currency:

- debit the receivable account with the document's total (a credit note, whose total is
  negative, credits it);
- credit each revenue account with the sum of the lines it maps (revenue by the line's service,
  else its charge kind, else the default revenue account); a sum that is negative (an
  adjustment) is a debit;
- credit the tax account of the document's treatment with the tax (VAT collected; a reverse-
  charged or exempt invoice has none).

Every entry balances (debits = credits, exactly: the total is the subtotal plus the tax and the
subtotal the sum of the lines), so the entries of a period balance per currency; the revenue of
the journal is the sum of the documents' subtotals. Settlement and revenue-share statements are
not booked here (they settle invoices; their payables are booked from the partner's invoice).
"""

from __future__ import annotations

import json
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from icdsl.safecsv import Writer

COLUMNS = ("date", "journal", "document", "partner", "account", "debit", "credit", "currency", "description")


class JournalError(ValueError):
    """What prevents booking a document (no account for its tax, a draft): says how to fix it."""


@dataclass(frozen=True, slots=True)
class JournalLine:
    date: str
    journal: str
    document: str
    partner: str
    account: str
    debit: Decimal
    credit: Decimal
    currency: str
    description: str


def _side(amount: Decimal) -> tuple[Decimal, Decimal]:
    """(debit, credit) of a credit of ``amount`` (a negative credit is a debit); the zero side
    written with the amount's decimals (``0.00``)."""
    zero = amount - amount
    return (zero, amount) if amount >= 0 else (-amount, zero)


def entries(documents: Iterable[Mapping[str, Any]], accounts: Any, *, journal: str = "sales") -> list[JournalLine]:
    """The journal lines of the finalized invoices and credit notes among ``documents``."""
    out: list[JournalLine] = []
    for doc in documents:
        if doc.get("kind") not in ("invoice", "credit_note", "debit_note"):
            continue
        if doc.get("status") != "finalized" or not doc.get("number"):
            raise JournalError(f"{doc.get('number') or 'a draft'} is not finalized: only finalized documents are booked")
        ccy, number, partner = doc["currency"], doc["number"], doc.get("partner_code") or ""
        day = doc["issue_date"].isoformat()
        label = {"credit_note": "Credit note", "debit_note": "Debit note"}.get(doc["kind"], "Invoice")
        total = Decimal(doc["total"])
        debit, credit = _side(-total)
        out.append(JournalLine(day, journal, number, partner, accounts.receivable, debit, credit, ccy,
                               f"{label} {number} {doc.get('partner_name') or partner}"))
        revenue: OrderedDict[str, Decimal] = OrderedDict()
        for ln in doc.get("lines") or ():
            acc = accounts.revenue_for(ln.get("kind"), ln.get("service"))
            revenue[acc] = revenue.get(acc, Decimal(0)) + Decimal(ln["amount"])
        for acc, amount in revenue.items():
            debit, credit = _side(amount)
            out.append(JournalLine(day, journal, number, partner, acc, debit, credit, ccy,
                                   f"{label} {number}: revenue"))
        tax = Decimal(doc.get("tax_amount") or 0)
        if tax:
            acc = accounts.tax_for(doc.get("tax_kind") or "")
            if acc is None:
                raise JournalError(f"{number} has {tax} {ccy} of tax '{doc.get('tax_kind')}' and the rules map no "
                                   f"account to it: add `tax {doc.get('tax_kind')} \"ACCOUNT\"` to `accounts`")
            debit, credit = _side(tax)
            out.append(JournalLine(day, journal, number, partner, acc, debit, credit, ccy,
                                   f"{label} {number}: {doc.get('tax_label') or 'tax'}"))
    return out


def balances(lines: Sequence[JournalLine]) -> dict[str, tuple[Decimal, Decimal]]:
    """Per currency: (sum of debits, sum of credits)."""
    out: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for ln in lines:
        out[ln.currency][0] += ln.debit
        out[ln.currency][1] += ln.credit
    return {c: (d, k) for c, (d, k) in sorted(out.items())}


def revenue(lines: Sequence[JournalLine], accounts: Any) -> dict[str, Decimal]:
    """Per currency: the revenue booked (credits minus debits of the revenue accounts)."""
    rev_accounts = {accounts.revenue} | {a for _k, a in accounts.by_kind} | {a for _s, a in accounts.by_service}
    out: dict[str, Decimal] = defaultdict(Decimal)
    for ln in lines:
        if ln.account in rev_accounts:
            out[ln.currency] += ln.credit - ln.debit
    return dict(sorted(out.items()))


def write_csv(lines: Sequence[JournalLine], path: str | Path) -> Path:
    path = Path(path)
    with path.open("w", encoding="utf-8", newline="") as f:
        write_csv_to(lines, f)
    return path


def write_csv_to(lines: Sequence[JournalLine], f: IO[str]) -> None:
    """The journal as CSV into an open text file (amounts exact, text neutralized)."""
    w = Writer(f, numeric=(COLUMNS.index("debit"), COLUMNS.index("credit")))
    w.writerow(COLUMNS)
    for ln in lines:
        w.writerow([getattr(ln, c) for c in COLUMNS])


def to_json(lines: Sequence[JournalLine]) -> str:
    rows = []
    for ln in lines:
        d = asdict(ln)
        d["debit"], d["credit"] = format(ln.debit, "f"), format(ln.credit, "f")
        rows.append(d)
    return json.dumps({"entries": rows, "balances": {c: {"debit": format(d, "f"), "credit": format(k, "f")}
                                                     for c, (d, k) in balances(lines).items()}},
                      indent=2, ensure_ascii=False)


def write_json(lines: Sequence[JournalLine], path: str | Path) -> Path:
    path = Path(path)
    path.write_text(to_json(lines) + "\n", encoding="utf-8")
    return path
