"""The plugin author kit evaluates a cycle through the cycle engine: records are rated and
measured as a billing cycle does (icdsl.cycle.run), stated usage goes through the engine's
charge evaluation, and a held charge raises as it did."""

from datetime import date
from decimal import Decimal as D

import pytest

from icdsl.charges.context import EventRecord, Usage
from icdsl.charges.lines import ChargeHold
from icdsl.cycle import CycleInputs, run
from icdsl.cycle.offline import plan_fx
from icdsl.rating.intake import normalize_record, records_table
from icdsl.testing import PluginKit

RULES = """partner ORFR "Orange France" {
  currency EUR
  timezone "Europe/Paris"
}

agreement "Voice" v1 with ORFR effective 2026-01-01 .. {
  outbound voice {
    price 0.0100 EUR per minute
    increments 60/60
  }
  event "Number porting" 25.00 EUR per porting
  commit "Minimum" 10 EUR per month, shortfall charged, of outbound voice
}
"""


def records(n_calls: int, portings: int = 0):
    rows = [{"id": f"C{i}", "partner": "ORFR", "direction": "outbound", "service": "voice",
             "b_number": "+33612345678", "start": f"2026-03-{1 + i % 28:02d}T10:00:00Z", "duration_s": "60"}
            for i in range(n_calls)]
    rows += [{"id": f"P{i}", "partner": "ORFR", "direction": "outbound", "service": "porting",
              "start": "2026-03-05T10:00:00Z"} for i in range(portings)]
    # one call of February and one of another partner: not this cycle's records
    rows += [{"id": "FEB", "partner": "ORFR", "direction": "outbound", "service": "voice",
              "b_number": "+33612345678", "start": "2026-02-27T10:00:00Z", "duration_s": "60"},
             {"id": "OTHER", "partner": "XXXX", "direction": "outbound", "service": "voice",
              "b_number": "+33612345678", "start": "2026-03-02T10:00:00Z", "duration_s": "60"}]
    return records_table([normalize_record(r, None) for r in rows])


@pytest.fixture(scope="module")
def kit():
    return PluginKit()


def test_records_are_a_cycle_of_the_engine(kit):
    plan = kit.build(RULES)
    table = records(300, portings=2)
    got = kit.evaluate(plan, "2026-03", records=table)
    by = {ln.charge_name: ln.amount for ln in got}
    # 300 one-minute calls of March at 0.01: 3.00 EUR; the minimum of 10: 7.00 short; 2 portings
    assert by == {"Number porting": D("50.00"), "Minimum": D("7.00")}
    # the same lines as the engine's own run of the partner's records of March
    march = table.filter([r["partner"] == "ORFR" and r["id"] not in ("FEB",) for r in table.to_pylist()])
    result = run(CycleInputs.of(plan, "ORFR", "2026-03", march, fx=plan_fx(plan)))
    assert got == result.charge_lines
    assert result.counts.rated == 300 and result.counts.events == 2


def test_stated_usage_and_events_go_through_the_engines_evaluation(kit):
    plan = kit.build(RULES)
    usage = [Usage("ORFR", "Voice", 1, "outbound", "voice", "EUR", "time", records=100, billed_seconds=6000,
                   amount=D("1.00"))]
    events = [EventRecord("p1", "porting", date(2026, 3, 2), 1), EventRecord("p2", "porting", date(2026, 4, 1), 1)]
    got = kit.evaluate(plan, "2026-03", usage=usage, events=events)
    assert {ln.charge_name: ln.amount for ln in got} == {"Number porting": D("25.00"), "Minimum": D("9.00")}
    # records and stated events add up
    got = kit.evaluate(plan, "2026-03", records=records(100, portings=1), events=events[:1])
    assert {ln.charge_name: ln.amount for ln in got} == {"Number porting": D("50.00"), "Minimum": D("9.00")}


def test_a_held_charge_raises_and_an_unknown_input_fails_clearly(kit):
    plan = kit.build(RULES.replace("commit \"Minimum\" 10 EUR per month, shortfall charged, of outbound voice",
                                   "commit \"Minutes\" 1_000 minutes per month"))
    with pytest.raises(ChargeHold, match="held for review"):
        kit.evaluate(plan, "2026-03", events=[])
    with pytest.raises(pytest.fail.Exception, match="does not take lines"):
        kit.evaluate(plan, "2026-03", lines=())
