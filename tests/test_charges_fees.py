"""One-time and event fees: each application once and only once, reruns included."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

from charges_fixtures import agreement, charge, ctx, fee, item, month

from icdsl.charges import fees
from icdsl.charges.context import EventRecord
from icdsl.charges.lines import billed_amounts


def one_time(on, amount="500.00", name="Activation", **extra):
    return charge("one_time", name, ("amount", fee(amount)), ("on", on), *extra.items())


def test_activation_once_on_the_first_invoice_and_never_for_a_later_version():
    c = one_time("activation")
    v1 = agreement(c, start=date(2026, 3, 10), end=date(2026, 6, 30))
    v2 = agreement(c, start=date(2026, 7, 1), version=2)
    first = fees.evaluate_one_time(c, ctx(v1, month(2026, 3), versions=(v1, v2)))
    assert [ln.amount for ln in first] == [D("500.00")]
    assert "|*|" in first[0].key  # once per agreement, whatever the version
    assert fees.evaluate_one_time(c, ctx(v1, month(2026, 4), versions=(v1, v2))) == []
    # v2 starts in July with the same label: billed already
    assert fees.evaluate_one_time(c, ctx(v2, month(2026, 7), versions=(v1, v2), billed=billed_amounts(first))) == []
    # a rerun of March (billed holds other cycles only) gives the same line
    assert fees.evaluate_one_time(c, ctx(v1, month(2026, 3), versions=(v1, v2))) == first


def test_activation_per_inventory_item():
    c = one_time("activation", "400.00", "SIP trunk setup", per_inventory="sip_trunk")
    inv = (item("T1", "sip_trunk", date(2026, 3, 2)), item("T2", "sip_trunk", date(2026, 4, 1)),
           item("T3", "sip_trunk", date(2026, 3, 20), partner="DTAG"), item("P1", "port", date(2026, 3, 5)))
    march = fees.evaluate_one_time(c, ctx(agreement(c), month(2026, 3), inventory=inv))
    assert [(ln.dimensions["item"], ln.amount) for ln in march] == [("T1", D("400.00"))]
    april = fees.evaluate_one_time(c, ctx(agreement(c), month(2026, 4), inventory=inv, billed=billed_amounts(march)))
    assert [ln.dimensions["item"] for ln in april] == ["T2"]


def test_termination_per_item_on_its_last_active_day():
    c = one_time("termination", "800.00", "Decommissioning", per_inventory="port")
    inv = (item("P1", "port", date(2025, 1, 1), date(2026, 4, 1)),)  # last active day 31 March
    assert [ln.amount for ln in fees.evaluate_one_time(c, ctx(agreement(c), month(2026, 3), inventory=inv))] == [
        D("800.00")]
    assert fees.evaluate_one_time(c, ctx(agreement(c), month(2026, 4), inventory=inv)) == []


def test_completion_and_termination_of_the_agreement():
    done = one_time("completion", "800.00", "Completion")
    ag = agreement(done, end=date(2026, 6, 30))
    assert fees.evaluate_one_time(done, ctx(ag, month(2026, 5))) == []
    assert [ln.amount for ln in fees.evaluate_one_time(done, ctx(ag, month(2026, 6)))] == [D("800.00")]
    # terminated early: no completion; the termination fee on the cycle of its last day
    term = one_time("termination", "1200.00", "Early termination")
    ag = agreement(done, term, end=date(2026, 12, 31))
    assert fees.evaluate_one_time(done, ctx(ag, month(2026, 12), terminated_on=date(2026, 5, 1))) == []
    got = fees.evaluate_one_time(term, ctx(ag, month(2026, 4), terminated_on=date(2026, 5, 1)))
    assert [ln.amount for ln in got] == [D("1200.00")]
    assert fees.evaluate_one_time(term, ctx(ag, month(2026, 5), terminated_on=date(2026, 5, 1))) == []


def test_invoice_fee_once_per_invoice_even_when_versions_change():
    c = one_time("invoice", "2.50", "Paper invoice")
    v1 = agreement(c, end=date(2026, 3, 15))
    v2 = agreement(c, start=date(2026, 3, 16), version=2)
    l1 = fees.evaluate_one_time(c, ctx(v1, month(2026, 3), versions=(v1, v2)))
    l2 = fees.evaluate_one_time(c, ctx(v2, month(2026, 3), versions=(v1, v2)))
    assert l1 == [] and [ln.amount for ln in l2] == [D("2.50")]
    assert l2[0].key.endswith("|invoice|2026-03-01..2026-03-31")
    assert len(fees.evaluate_one_time(c, ctx(v2, month(2026, 4), versions=(v1, v2)))) == 1


def test_events_counted_per_cycle_and_billed_once():
    c = charge("event", "Number porting", ("amount", fee("25.00")), ("event", "porting"))
    ag = agreement(c)
    evs = (EventRecord("e1", "porting", date(2026, 3, 2)), EventRecord("e2", "porting", date(2026, 3, 9), units=3),
           EventRecord("e3", "porting_cancellation", date(2026, 3, 9)), EventRecord("e4", "porting", date(2026, 3, 9),
                                                                                   partner="DTAG"))
    (ln,) = fees.evaluate_event(c, ctx(ag, month(2026, 3), events=evs))
    # 1 + 3 portings x 25.00 = 100.00
    assert ln.amount == D("100.00") and ln.quantity == 4 and ln.unit == "porting"
    assert len(ln.applications) == 2 and ln.details["records"] == 2
    assert billed_amounts([ln])[ln.applications[1]] == D("75.00")
    # e1 billed already on another cycle (re-ingested late): only e2 is billed
    (again,) = fees.evaluate_event(c, ctx(ag, month(2026, 3), events=evs, billed={ln.applications[0]: D("25.00")}))
    assert again.amount == D("75.00")
    assert fees.evaluate_event(c, ctx(ag, month(2026, 3), events=evs, billed=billed_amounts([ln]))) == []


def test_event_records_from_a_traffic_table():
    from datetime import UTC, datetime

    import pyarrow as pa

    from icdsl.charges.context import events_from_records

    t = pa.table({
        "id": ["a", "b", "c", "d", "e"],
        "partner": ["ORFR", "ORFR", "ORFR", "DTAG", "ORFR"],
        "service": ["porting", "voice", "voice", "porting", "voice"],
        "event": [None, "porting", None, None, "sim_swap"],
        "start": pa.array([datetime(2026, 3, 31, 22, 30, tzinfo=UTC)] * 5, pa.timestamp("us", tz="UTC")),
        "units": [None, 2, None, None, 1],
    })
    got = events_from_records(t, ["porting"], "Europe/Paris", partner="ORFR")
    # 22:30 UTC on 31 March is 1 April in Paris
    assert got == [EventRecord("a", "porting", date(2026, 4, 1), 1, "ORFR"),
                   EventRecord("b", "porting", date(2026, 4, 1), 2, "ORFR")]
