# ruff: noqa: F811 - tests take the imported fixtures as parameters
"""Billing cycles with refunds and currencies, on SQLite and PostgreSQL: refund records are not
traffic, ``on net`` revenue shares deduct them (and corrections billed on the cycle), shares in
the agreement's currency count traffic priced in another, a money commitment counts it too; to
the cent, shares adding up exactly; bad refund records stop invoicing until fixed or accepted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from test_billing_store import db_url, make_plan, store  # noqa: F401 - fixtures

from icdsl.billing import models as M

RULES = """partner CPX "Pixel Forge" { kind content currency EUR timezone "Europe/Paris" billing monthly due 30 days tax none }
partner AGGR "Mobiquity" { kind content currency EUR timezone "Europe/Paris" billing monthly due 30 days tax none }

fx ecb {
  EUR/GBP 0.8500 from 2026-01-01
}

agreement "Content" v1 with CPX effective 2026-03-01 .. {
  currency EUR
  fx ecb
  outbound sms {
    price by destination in EUR per message {
      81020 "Games" 1.5000
    }
  }
  outbound carrier_billing {
    price by destination in GBP per event {
      9003 "Price point 4.99" 4.9900
    }
  }
  revenue share "Premium SMS" on net of outbound sms {
    AGGR: 0.0200 EUR per message
    CPX: 70%
    us: remainder
  }
  revenue share "Carrier billing" on net of outbound carrier_billing {
    CPX: 85%
    us: remainder
  }
  commit "Carrier minimum" 100 EUR per month, of outbound carrier_billing
}
"""
HEADER = "id,partner,direction,service,a_number,b_number,start,duration_s,units,event,refund_of,refund_amount\n"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(i: int) -> str:
    return (T0 + timedelta(hours=5 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")


def march(bad: bool = False) -> list[tuple]:
    """26 SMS purchases at 1.50 EUR, 10 carrier-billing purchases at 4.99 GBP; refunds: S003 in
    full (1.50 EUR), C001 in part (2.00 GBP), C002 in full (4.99 GBP); ``bad``: one refund that
    does not say what it refunds."""
    rows = [(f"S{i:03d}", "CPX", "outbound", "sms", "33612345678", "81020", at(i), "", 1, "", "", "")
            for i in range(26)]
    rows += [(f"C{i:03d}", "CPX", "outbound", "carrier_billing", "33612345678", "9003", at(i), "", "", "", "", "")
             for i in range(10)]
    rows += [("R001", "CPX", "outbound", "sms", "33612345678", "81020", at(40), "", 1, "refund", "S003", ""),
             ("R002", "CPX", "outbound", "carrier_billing", "33612345678", "9003", at(41), "", "", "refund", "C001",
              "2.00"),
             ("R003", "CPX", "outbound", "carrier_billing", "33612345678", "9003", at(42), "", "", "refund", "C002", "")]
    if bad:
        rows.append(("R004", "CPX", "outbound", "carrier_billing", "33612345678", "9003", at(43), "", "", "refund", "",
                     "1.00"))
    return rows


def setup(store, tmp_path, bad=False):
    plan, program = make_plan(tmp_path, RULES, "content.icd")
    store.load_plan(plan, program)
    path = tmp_path / "in" / "march.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(",".join(str(x) for x in r) + "\n" for r in march(bad)), encoding="utf-8")
    rep = store.ingest(path, None, plan)
    assert rep.passed == 36 + 3 + bad, str(rep)
    return plan


def shares_of(store, cycle_id):
    out = {}
    for d in store.cycle_documents(cycle_id):
        if d["kind"] == "share_statement":
            for sp in d["splits"]:
                out[sp["charge"]] = sp
    return out


def test_net_shares_deduct_refunds_in_every_currency_to_the_cent(store, tmp_path):
    plan = setup(store, tmp_path)
    rep = store.run_cycle("CPX", "2026-03", plan)
    assert rep.status == "invoiced", str(rep)
    # refunds are neither traffic nor rejects
    assert (rep.records_in, rep.rated, rep.rejected, rep.refunds) == (36, 36, 0, 3)
    assert "3 refund record(s)" in str(rep)
    splits = shares_of(store, rep.cycle_id)
    # Premium SMS: 26 x 1.50 = 39.00, less R001 (S003 refunded in full: 1.50) = 37.50.
    # AGGR 26 x 0.02 = 0.52; left 36.98: CPX 70% = 25.886, us 11.094 -> one cent short, CPX has
    # the larger remainder: 25.89 and 11.09. 0.52 + 25.89 + 11.09 = 37.50.
    sms = splits["Premium SMS"]
    assert sms["basis"] == "net" and Decimal(sms["amount_split"]) == Decimal("37.50")
    assert {k: Decimal(v) for k, v in sms["parties"].items()} == {"AGGR": Decimal("0.52"), "CPX": Decimal("25.89"),
                                                                  "us": Decimal("11.09")}
    assert sms["adds_up"]
    # Carrier billing, split in EUR (the agreement's currency): 10 x 4.99 = 49.90 GBP, less
    # R002 (2.00 GBP) and R003 (4.99 GBP, in full) = 42.91 GBP, at 1 / 0.8500 = 1.176471 (the
    # inverse rate, half even to 6) = 50.48237061 EUR -> 50.48. CPX 85% = 42.908, us 7.572 ->
    # 42.90 + 7.57 is one cent short: CPX (remainder 0.008) 42.91, us 7.57. Total 50.48.
    cb = splits["Carrier billing"]
    assert Decimal(cb["amount_split"]) == Decimal("50.48") and cb["currency"] == "EUR"
    assert {k: Decimal(v) for k, v in cb["parties"].items()} == {"CPX": Decimal("42.91"), "us": Decimal("7.57")}
    # the trail of a share line: gross, what was deducted and why, the conversions
    lines = [ln for d in store.cycle_documents(rep.cycle_id) if d["kind"] == "invoice" for ln in d["lines"]]
    with store.reading() as s:
        rows = [r.data for r in s.scalars(sa.select(M.ChargeLine).where(M.ChargeLine.cycle_id == rep.cycle_id))]
    cpx = next(r for r in rows if r["charge_name"] == "Carrier billing" and r["dimensions"]["party"] == "CPX")
    det = cpx["details"]
    assert det["gross_exact"] == "58.7059029" and det["deducted_exact"] == "8.22353229"
    assert [(x["id"], x["refers_to"], x["amount"], x["currency"]) for x in det["deductions"]] == [
        ("R002", "C001", "2.00", "GBP"), ("R003", "C002", "4.990000", "GBP")]  # the record as rated
    assert cpx["description"] == ("Carrier billing: CPX percent share of 50.48 EUR net: 58.71 EUR gross less "
                                  "8.22 EUR (2 refunds)")
    # the commitment counts the GBP traffic (refunds are not usage charges): 100.00 - 49.90 x
    # 1.176471 = 41.2940971 -> 41.29 EUR
    commit = next(ln for ln in lines if ln["kind"] == "commitment")
    assert Decimal(commit["amount"]) == Decimal("41.29")
    # rerun: the same splits
    again = store.run_cycle("CPX", "2026-03", plan, rerate=True)
    assert shares_of(store, again.cycle_id) == splits


def test_a_refund_that_says_not_what_it_refunds_stops_invoicing_until_accepted(store, tmp_path):
    plan = setup(store, tmp_path, bad=True)
    rep = store.run_cycle("CPX", "2026-03", plan)
    assert rep.status == "rated" and rep.blocked
    (f,) = [f for f in rep.findings if f.code == "bad_refund"]
    assert f.samples == ("R004",) and "refund R004: refund_of is empty" in f.message
    rep = store.run_cycle("CPX", "2026-03", plan, accept=["bad_refund"])
    assert rep.status == "invoiced"
    # left out: the same split as without it
    assert Decimal(shares_of(store, rep.cycle_id)["Carrier billing"]["amount_split"]) == Decimal("50.48")
