"""A whole cycle: every charge type of an agreement written as rule text, evaluated in the order of
deductions; plugins' charge types through the same hook; reruns change nothing."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D
from types import ModuleType

import pytest
from charges_fixtures import month
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from icdsl.charges.base import ChargeType
from icdsl.charges.context import ChargeContext, EventRecord, Usage
from icdsl.charges.evaluate import (
    BatchAmounts,
    CycleChargeType,
    RecordAmount,
    RecordChargeType,
    evaluate_cycle,
)
from icdsl.charges.lines import ChargeError, ChargeLine, billed_amounts
from icdsl.hookspecs import hookimpl
from icdsl.inventory import InventoryItem
from icdsl.plugins import use_plugin_manager
from icdsl.testing import build_plan, isolated_plugin_manager

RULES = """
partner ORFR "Orange France" {
  currency EUR
  timezone "Europe/Paris"
  tier: "gold"
}

agreement "Bilateral" v1 with ORFR effective 2026-03-10 .. 2026-12-31 {
  outbound voice {
    price 0.0070 EUR per minute
  }

  outbound sms {
    price 0.0100 EUR per message
  }

  recurring "E1 port" 150.00 EUR monthly per inventory e1_port, prorate daily, in advance
  recurring "Private APN" 350.00 EUR monthly flat
  one_time "Activation" 500.00 EUR on activation
  one_time "Paper invoice" 2.50 EUR on invoice, when partner.tier == "gold"
  event "Number porting" 25.00 EUR per porting
  tiered "SMS tiers" graduated on messages per cycle {
    from 0: 0.0000 EUR per message
    from 1_000: 5.00 EUR flat
  }, of outbound sms
  volume discount "Voice discount" retroactive on minutes per cycle {
    from 100_000: 3%
  }, of outbound voice
  commit "Monthly minimum" 2_000 EUR per month, shortfall charged
}
"""


def usage(direction, service, kind, *, records, seconds=0, units=0, amount):
    return Usage("ORFR", "Bilateral", 1, direction, service, "EUR", kind, records, seconds, units, 0, D(amount))


def context(plan, cycle, **kw):
    ag = plan.agreements[0]
    return ChargeContext(agreement=ag, partner=plan.partner("ORFR"), cycle=cycle, **kw)


def test_a_whole_cycle_from_rule_text():
    plan = build_plan(RULES)
    inv = (InventoryItem("ORFR", "E1-1", "e1_port", D(1), date(2026, 3, 10)),
           InventoryItem("ORFR", "E1-2", "e1_port", D(2), date(2026, 3, 20), date(2026, 4, 10)))
    voice = usage("outbound", "voice", "time", records=50_000, seconds=7_200_000, amount="840.00")  # 120,000 min
    sms = usage("outbound", "sms", "count", records=1_500, units=1_500, amount="15.00")
    events = (EventRecord("p1", "porting", date(2026, 3, 12)), EventRecord("p2", "porting", date(2026, 3, 1)))
    lines = evaluate_cycle(context(plan, month(2026, 3), usage=(voice, sms), inventory=inv, events=events))
    got = [(ln.charge_name, ln.amount) for ln in lines]
    assert got == [
        # E1-1: 22/31 x 150.00 = 106.45 for March, 150.00 for April in advance;
        # E1-2 (2 units): 12/31 x 300.00 = 116.129... -> 116.13 for March; April 9/30 x 300.00 = 90.00
        ("E1 port", D("106.45")), ("E1 port", D("116.13")), ("E1 port", D("150.00")), ("E1 port", D("90.00")),
        # flat, in arrears, not prorated: any day in force -> the whole month
        ("Private APN", D("350.00")),
        ("Activation", D("500.00")),
        ("Paper invoice", D("2.50")),
        # p2 is before the agreement's start: only p1
        ("Number porting", D("25.00")),
        ("SMS tiers", D("5.00")),
        # 3% of 840.00 = 25.20
        ("Voice discount", D("-25.20")),
        # 840.00 + 15.00 - 25.20 + 5.00 = 834.80 of 2,000.00 committed: 1,165.20
        ("Monthly minimum", D("1165.20")),
    ]
    assert [ln.stage for ln in lines][-2:] == ["discount", "commitment"]
    assert len({ln.key for ln in lines}) == len(lines)
    assert all(ln.agreement == "Bilateral" and ln.agreement_version == 1 and ln.rule_span.line > 0 for ln in lines)
    # every line survives a JSON column
    assert [ChargeLine.from_dict(ln.to_dict()) for ln in lines] == lines
    # the next cycle, with what March billed
    april = evaluate_cycle(context(plan, month(2026, 4), inventory=inv, billed=billed_amounts(lines)))
    # E1-1 for May in advance (April's were billed in March; E1-2's 9/30 too), no traffic: no tier line,
    # and the whole commitment is short
    assert [(ln.charge_name, ln.amount) for ln in april] == [
        ("E1 port", D("150.00")), ("Private APN", D("350.00")), ("Paper invoice", D("2.50")),
        ("Monthly minimum", D("2000.00"))]


def test_cycle_level_when_is_evaluated_on_the_partner():
    plan = build_plan(RULES.replace('tier: "gold"', 'tier: "silver"'))
    lines = evaluate_cycle(context(plan, month(2026, 4)))
    assert "Paper invoice" not in {ln.charge_name for ln in lines}


# --------------------------------------------------------------------------- rerun


items = st.lists(
    st.builds(lambda i, a, n, q: InventoryItem("ORFR", f"I{i}", "e1_port", D(q), a, a + timedelta(days=n) if n else None),
              st.integers(0, 99), st.dates(date(2026, 1, 1), date(2026, 12, 31)), st.integers(0, 400),
              st.integers(1, 5)),
    max_size=6, unique_by=lambda x: x.item_id)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inv=items, minutes=st.integers(0, 300_000), msgs=st.integers(0, 3000), m=st.integers(3, 12))
def test_rerun_gives_the_same_lines_and_applications_are_billed_once(inv, minutes, msgs, m):
    plan = build_plan_cached()
    voice = usage("outbound", "voice", "time", records=1, seconds=minutes * 60, amount=str(D(minutes) * D("0.007")))
    sms = usage("outbound", "sms", "count", records=1, units=msgs, amount=str(D(msgs) / 100))
    billed: list[ChargeLine] = []
    for mm in range(3, m + 1):
        x = context(plan, month(2026, mm), usage=(voice, sms), inventory=tuple(inv), billed=billed_amounts(billed))
        first, again = evaluate_cycle(x), evaluate_cycle(x)
        assert first == again
        assert len({ln.key for ln in first}) == len(first)
        apps = [a for ln in billed for a in ln.applications]
        assert not set(apps) & {a for ln in first for a in ln.applications}  # never billed twice
        billed += first


_PLAN: list = []


def build_plan_cached():
    if not _PLAN:
        _PLAN.append(build_plan(RULES))
    return _PLAN[0]


# --------------------------------------------------------------------------- plugins


class SliceHours(CycleChargeType):
    """A 5G network slice charge: hours of each slice type from event records, with an SLA credit
    when the availability measured from downtime events is below the target."""

    name = "slice_hours"
    description = "a price per hour of each network slice type, with an availability target"
    required = ("embb",)
    optional = ("urllc", "availability", "credit")
    params = {"embb": "price per hour of an eMBB slice", "urllc": "price per hour of a URLLC slice",
              "availability": "the availability target (%)", "credit": "SLA credit when below target (%)"}

    def evaluate(self, charge, ctx):
        lines = []
        total = D(0)
        hours_all = 0
        for slice_ in ("embb", "urllc"):
            price = charge.param(slice_)
            hours = ctx.event_units(f"slice_{slice_}")
            if price is None or not hours:
                continue
            hours_all += hours
            exact = price.amount * hours
            total += exact
            lines.append(ctx.line(charge, description=f"{charge.name}: {hours} {slice_} slice-hours", exact=exact,
                                  currency=price.currency, quantity=hours, unit="hour", unit_price=price.amount,
                                  application=ctx.key(charge, slice_, ctx.cycle_label)))
        target = charge.param("availability")
        if target is not None and hours_all:
            down = D(ctx.event_units("slice_downtime"))  # minutes
            measured = (1 - down / (hours_all * 60)) * 100
            if measured < target:
                pct = charge.param("credit", D(10))
                lines.append(ctx.line(charge, description=f"{charge.name}: SLA credit, availability {measured:.3f}% "
                                                          f"below {target}%", exact=-total * pct / 100,
                                      currency=lines[0].currency, unit="credit",
                                      application=ctx.key(charge, "sla_credit", ctx.cycle_label),
                                      details={"measured": str(measured), "target": str(target)}))
        return lines


class CallSetup(RecordChargeType):
    """A per-record plugin type: a fixed fee per answered call above a duration."""

    name = "call_setup"
    description = "a fee per call longer than a threshold"
    required = ("fee",)
    optional = ("over",)

    def evaluate_record(self, charge, rec):
        over = charge.param("over", D(0))
        if rec.kind != "time" or not (rec.value("duration_s") or 0) > over:
            return None
        fee = charge.param("fee")
        return RecordAmount(fee.amount, fee.currency, f"{fee} per call over {over} s")

    def evaluate_batch(self, charge, batch):
        import numpy as np

        over = charge.param("over", D(0))
        fee = charge.param("fee")
        dur = batch.column("duration_s")
        applies = (dur.ints > int(over)) & (~dur.nulls if dur.nulls is not None else True)
        if batch.kind != "time":
            applies = np.zeros(batch.n, dtype=bool)
        units = fee.amount.scaleb(batch.precision)
        from fractions import Fraction

        f = Fraction(units)
        return BatchAmounts(applies, np.full(batch.n, f.numerator, dtype=np.int64), f.denominator, fee.currency)


class NoEvaluate(ChargeType):  # a plugin written before evaluation existed
    name = "legacy"
    description = "checked and compiled only"
    optional = ("x",)


def plugin_module() -> ModuleType:
    mod = ModuleType("icdsl_test_slices")
    mod.ICDSL_HOOK_API = 1

    @hookimpl
    def icdsl_charge_types():
        return [SliceHours, CallSetup, NoEvaluate]

    mod.icdsl_charge_types = icdsl_charge_types
    return mod


SLICES = """
partner ORFR "Orange France" {
  currency EUR
}

agreement "Slices" v1 with ORFR effective 2026-01-01 .. {
  outbound voice {
    price 0.0100 EUR per minute
  }

  charge slice_hours "5G slices" {
    embb: 0.50 EUR per hour
    urllc: 2.00 EUR per hour
    availability: 99.9%
  }, stream fees

  charge call_setup "Long call setup" {
    fee: 0.0150 EUR
    over: 60
  }
}
"""


def test_a_plugin_charge_type_is_evaluated_like_a_builtin():
    mod = plugin_module()
    sys.modules.setdefault(mod.__name__, mod)
    pm = isolated_plugin_manager(mod)
    plan = build_plan(SLICES, pm)
    ag = plan.agreements[0]
    evs = tuple(EventRecord(f"e{i}", t, date(2026, 3, 2), units=u)
                for i, (t, u) in enumerate([("slice_embb", 720), ("slice_urllc", 100), ("slice_downtime", 60)]))
    x = ChargeContext(agreement=ag, partner=plan.partner("ORFR"), cycle=month(2026, 3), events=evs)
    lines = evaluate_cycle(x, pm)
    # 720 x 0.50 + 100 x 2.00 = 360.00 + 200.00; availability 1 - 60/(820 x 60) = 99.878% < 99.9%:
    # credit 10% of 560.00 = -56.00
    assert [(ln.description.split(":")[1].strip(), ln.amount) for ln in lines] == [
        ("720 embb slice-hours", D("360.00")), ("100 urllc slice-hours", D("200.00")),
        ("SLA credit, availability 99.878% below 99.9%", D("-56.00"))]
    assert all(ln.kind == "slice_hours" and ln.line_kind == "other" and ln.dimensions["stream"] == "fees"
               for ln in lines)
    # the per-record plugin type: both executors, same amounts
    from icdsl.rating.batch import rate_batch_with_charges
    from icdsl.rating.intake import records_table
    from icdsl.rating.row import rate_record

    recs = [{"id": i, "partner": "ORFR", "direction": "outbound", "service": "voice", "b_number": "331",
             "start": datetime(2026, 3, 2, 10, tzinfo=UTC), "duration_s": d} for i, d in enumerate([30, 61, 600])]
    with use_plugin_manager(pm):
        row = {r["id"]: [(h.charge, h.amount) for h in rate_record(plan, r).surcharges] for r in recs}
        _, _, charges = rate_batch_with_charges(plan, records_table(recs))
    assert row == {0: [], 1: [("Long call setup", D("0.015000"))], 2: [("Long call setup", D("0.015000"))]}
    assert [(r["id"], r["charge"], r["amount"]) for r in charges.to_pylist()] == [
        (i, c, a) for i, hits in row.items() for c, a in hits]


def test_a_charge_type_without_evaluation_is_an_error_not_a_silent_zero():
    mod = plugin_module()
    pm = isolated_plugin_manager(mod)
    plan = build_plan(SLICES.replace('charge call_setup "Long call setup" {\n    fee: 0.0150 EUR\n    over: 60\n  }',
                                     'charge legacy "Old" {\n    x: 1\n  }'), pm)
    x = ChargeContext(agreement=plan.agreements[0], partner=plan.partner("ORFR"), cycle=month(2026, 3))
    with pytest.raises(ChargeError, match="'legacy' cannot be evaluated"):
        evaluate_cycle(x, pm)
