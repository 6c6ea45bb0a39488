"""``example cycle`` blocks: a billing cycle described by its totals and the charge lines it must
give, run by ``icdsl test`` through the cycle engine's charge evaluation (no database). Rules and expectations are
written as language text; amounts are worked out by hand."""

from pathlib import Path

import pytest
from helpers import ROOT
from typer.testing import CliRunner

from icdsl.cli.main import app
from icdsl.cycle.examples import report, run_examples
from icdsl.plan.compiler import build

PARTNER = 'partner ORFR "Orange France" { currency EUR timezone "Europe/Paris" }\n'


def plan_of(tmp_path: Path, text: str):
    f = tmp_path / "rules.icd"
    f.write_text(PARTNER + text, encoding="utf-8")
    plan, _program, diags = build([f], root=tmp_path)
    assert plan is not None, [str(d) for d in diags]
    return plan


def run(tmp_path: Path, text: str):
    results = run_examples(plan_of(tmp_path, text))
    return results, report(results)


FEES = '''
agreement "Fees" v1 with ORFR effective 2026-01-01 .. {
  outbound voice { price 0.0070 EUR per minute }
  recurring "E1 port rental" 150.00 EUR monthly per inventory e1_port, prorate daily
  recurring "Port in advance" 150.00 EUR monthly per inventory adv_port, prorate daily, in advance
  event "Number porting" 25.00 EUR per porting
  commit "Minimum spend" 1_000 EUR per month
}
'''


def test_a_prorated_port_an_event_and_a_shortfall(tmp_path):
    results, text = run(tmp_path, FEES + '''
example cycle "March" {
  period 2026-03
  traffic outbound voice 100_000 minutes for 700.00 EUR
  item e1_port "P1" active 2026-03-15 ..
  events porting 2
  expect line "E1 port rental" 82.26 EUR, line "Number porting" 50.00 EUR
  expect line "Minimum spend" 300.00 EUR
  expect total 432.26 EUR
}
''')
    assert [r.ok for r in results] == [True], text
    # 150.00 x 17/31 = 82.258... -> 82.26; 25.00 x 2; 1,000.00 - 700.00
    assert text.endswith("1 passed, 0 failed")


def test_in_advance_fees_catch_up_and_correct_as_billing_would(tmp_path):
    """February's cycle billed March in advance with the inventory known then: a port added on
    10 March is caught up, a port ended on 20 March is corrected, April is billed in full."""
    results, text = run(tmp_path, FEES + '''
example cycle "March in advance" {
  period 2026-03
  item adv_port "OLD" active 2025-11-03 ..
  item adv_port "NEW" active 2026-03-10 ..
  item adv_port "GONE" active 2025-11-03 .. 2026-03-20
  expect line "Port in advance" for "NEW" 256.45 EUR
  expect line "Port in advance" for "GONE" -53.23 EUR
  expect line "Port in advance" for "OLD" 150.00 EUR
}
''')
    assert results[0].ok, text


def test_a_failure_shows_expected_actual_location_and_every_line(tmp_path):
    results, text = run(tmp_path, FEES + '''
example cycle "Wrong" {
  period 2026-03
  traffic outbound voice 200_000 minutes for 1_400.00 EUR
  item e1_port "P1" active 2026-03-15 ..
  expect line "E1 port rental" 82.25 EUR, no line "E1 port rental", line "Number porting" 25.00 EUR
  expect line "Minimum spend" 1.00 EUR, total 82.26 EUR
}
''')
    (r,) = results
    assert not r.ok
    lines = text.splitlines()
    assert lines[0].endswith('rules.icd:11:1: FAILED: example cycle "Wrong"')
    assert '    line "E1 port rental": expected 82.25 EUR, got 82.26 EUR' in lines
    assert '    line "E1 port rental": expected no line, got 82.26 EUR' in lines
    assert '    line "Number porting": expected 25.00 EUR, got no line' in lines
    assert '    line "Minimum spend": expected 1.00 EUR, got no line' in lines
    assert "    explanation:" in lines
    assert any(ln.startswith("      E1 port rental: e1_port P1") and ln.endswith(": 82.26 EUR") for ln in lines)
    assert "          formula: 150.00 x 1 x 17/31 = 2550/31 (~82.258064516129)" in lines
    assert lines[-1] == "0 passed, 1 failed"


def test_revenue_share_adds_up_to_the_cent(tmp_path):
    results, text = run(tmp_path, '''
agreement "Content" v1 with ORFR effective 2026-01-01 .. {
  outbound sms { price 1.50 EUR per message }
  revenue share "Premium SMS" on net of outbound sms {
    AGGR: 0.0200 EUR per message
    CPX: 70%
    us: remainder
  }
}

example cycle "Net of a refund" {
  period 2026-03
  traffic outbound sms 26 messages for 39.00 EUR
  refund outbound sms 3.00 EUR
  # 36.00 net: AGGR 0.52; CPX 70 % of 35.48 = 24.836, us 10.644 -> 24.84 + 10.64 (largest remainder)
  expect line "Premium SMS" for AGGR 0.52 EUR, line "Premium SMS" for CPX 24.84 EUR
  expect line "Premium SMS" for us 10.64 EUR, total 36.00 EUR
}
''')
    assert results[0].ok, text


def test_tiers_and_discounts(tmp_path):
    results, text = run(tmp_path, '''
agreement "Tiers" v1 with ORFR effective 2026-01-01 .. {
  outbound voice { price 0 EUR per minute }
  outbound data { price 0.0040 EUR per MB }
  tiered "Voice" graduated on minutes per cycle {
    from 0: 5.00 EUR per minute
    from 5: 4.00 EUR per minute
    from 10: 3.00 EUR per minute
  }, of outbound voice
  volume discount "Data" retroactive on volume per cycle { from 1_000: 10% }, of outbound data
}

example cycle "Stripe's worked example" {
  period 2026-03
  traffic outbound voice 15 minutes
  traffic outbound data 2 GB for 8.19 EUR
  # 5 x 5.00 + 5 x 4.00 + 5 x 3.00 = 60.00; 2,048 MB reach the tier: 10 % of 8.19 = 0.819 -> 0.82
  expect line "Voice" 60.00 EUR, line "Data" -0.82 EUR, total 59.18 EUR
}
''')
    assert results[0].ok, text


def test_version_changes_inside_the_cycle(tmp_path):
    """Both versions in force in the cycle are evaluated; traffic goes to the one in force at
    the end of the cycle unless it names one."""
    results, text = run(tmp_path, '''
agreement "Versions" v1 with ORFR effective 2026-01-01 .. 2026-03-15 {
  outbound voice { price 0 EUR per minute }
  tiered "Voice" graduated on minutes per cycle { from 0: 0.0100 EUR per minute }, of outbound voice
  recurring "Platform" 310.00 EUR monthly flat, prorate daily
}

agreement "Versions" v2 with ORFR effective 2026-03-16 .. {
  outbound voice { price 0 EUR per minute }
  tiered "Voice" graduated on minutes per cycle { from 0: 0.0200 EUR per minute }, of outbound voice
  recurring "Platform" 310.00 EUR monthly flat, prorate daily
}

example cycle "A new version on 16 March" {
  period 2026-03
  traffic outbound voice 1_000 minutes version v1
  traffic outbound voice 1_000 minutes
  # v1 1,000 x 0.0100 = 10.00; v2 1,000 x 0.0200 = 20.00; the platform 310.00 x 15/31 + 310.00 x 16/31
  expect line "Voice" 30.00 EUR, line "Platform" 310.00 EUR
}
''')
    assert results[0].ok, text


def test_a_charge_that_cannot_be_evaluated_is_an_error_at_its_rule(tmp_path):
    results, text = run(tmp_path, '''
agreement "Held" v1 with ORFR effective 2026-01-01 .. {
  outbound voice { price 0.0070 EUR per minute }
  commit "Minutes" 1_000 minutes per month
}

example cycle "No traffic to value the shortfall" {
  period 2026-03
  expect total 0.00 EUR
}
''')
    (r,) = results
    assert r.error and "rules.icd:5:3" in r.error, text
    assert "    error: " in text and "explanation" not in text


def test_days_period_and_event_days(tmp_path):
    results, text = run(tmp_path, FEES + '''
example cycle "Half a month" {
  period 2026-03-01 .. 2026-03-15
  events porting 1 on 2026-03-02
  events porting 5 on 2026-03-20
  # the second day is after the cycle: its events are not counted
  expect line "Number porting" 25.00 EUR
}
''')
    assert results[0].ok, text


def test_cli_exit_codes_and_verbose(tmp_path):
    plan_of(tmp_path, FEES + '''
example cycle "ok" {
  period 2026-03
  item e1_port "P1" active 2026-03-15 ..
  expect line "E1 port rental" 82.25 EUR
}
''')
    res = CliRunner().invoke(app, ["test", "-v", str(tmp_path / "rules.icd")])
    assert res.exit_code == 1, res.stdout
    assert 'FAILED: example cycle "ok"' in res.stdout
    (tmp_path / "rules.icd").write_text(PARTNER + FEES.replace('  commit "Minimum spend" 1_000 EUR per month\n', "")
                                        + '''
example cycle "ok" {
  period 2026-03
  item e1_port "P1" active 2026-03-15 ..
  expect line "E1 port rental" 82.26 EUR, no line "Number porting"
}
''', encoding="utf-8")
    res = CliRunner().invoke(app, ["test", "-v", str(tmp_path / "rules.icd")])
    assert res.exit_code == 0, res.stdout
    assert 'ok: example cycle "ok"' in res.stdout


@pytest.mark.parametrize("folder", ["interconnect", "mvno", "content", "charges"])
def test_the_example_projects_pass(folder):
    plan, _program, diags = build([ROOT / "examples" / folder])
    assert plan is not None, [str(d) for d in diags]
    results = run_examples(plan)
    assert plan.cycle_examples
    assert all(r.ok for r in results), report(results)


def test_plan_lists_cycle_examples(tmp_path):
    from icdsl.plan.render import render_plan

    text = render_plan(plan_of(tmp_path, FEES + '''
example cycle "March" {
  period 2026-03
  traffic outbound voice 10 minutes for 0.07 EUR in 3 calls
  item e1_port "P1" active 2026-03-15 .. 2026-03-20 quantity 2
  expect line "E1 port rental" 48.39 EUR
}
'''))
    assert "1 cycle example" in text.splitlines()[0]
    assert "  usage outbound voice: 600 billed seconds, 0.07 EUR, 3 records" in text
    assert "  inventory e1_port P1 x 2: 2026-03-15 .. 2026-03-21 (end excluded)" in text


def test_a_package_price_reads_in_the_plural(tmp_path):
    """'10.00 EUR per 1_000 messages' is the same package price as '... per 1_000 message'."""
    rules = '''
agreement "SMS packages" v1 with ORFR effective 2026-01-01 .. {
  outbound sms { price 0 EUR per message }
  tiered volume on messages per cycle {
    from 0: 10.00 EUR per 1_000 %s
  }, of outbound sms
}
'''
    plural = plan_of(tmp_path, rules % "messages").agreements[0].charges[0].param("tiers")
    singular = plan_of(tmp_path, rules % "message").agreements[0].charges[0].param("tiers")
    assert [t.price for t in plural] == [t.price for t in singular]
    assert plural[0].price.unit == "message" and plural[0].price.per_count == 1000


def test_periods_from_the_agreements_start(tmp_path):
    """', periods from start': a yearly fee's year runs from the agreement's first day (15 March
    to 14 March), billed whole in advance on the first invoice; calendar quarters otherwise."""
    results, text = run(tmp_path, '''
agreement "Anchored" v1 with ORFR effective 2026-03-15 .. {
  outbound voice { price 0.01 EUR per minute }
  recurring "Platform licence" 1_200.00 EUR yearly flat, in advance, periods from start
  recurring "Support" 300.00 EUR quarterly flat, prorate daily
}

example cycle "March" {
  period 2026-03
  # licence: 2026-03-15 .. 2027-03-14 in advance, whole: 1,200.00
  # support: calendar Q1 in arrears, active 15-31 March = 17 of 90 days: 300 x 17/90 = 56.67
  expect line "Platform licence" 1_200.00 EUR, line "Support" 56.67 EUR
}
''')
    assert all(r.ok for r in results), text


def test_one_time_fees_per_inventory_item(tmp_path):
    """'one_time ... on activation per inventory port': once per item, on the cycle of its
    activation (or of its last active day, for termination)."""
    results, text = run(tmp_path, '''
agreement "Ports" v1 with ORFR effective 2026-01-01 .. {
  outbound voice { price 0.01 EUR per minute }
  one_time "Port installation" 500.00 EUR on activation per inventory port
  one_time "Port removal" 200.00 EUR on termination per inventory port
}

example cycle "March: one port installed, one removed" {
  period 2026-03
  item port "P-NEW" active 2026-03-10 ..
  item port "P-OLD" active 2025-06-01 .. 2026-03-20
  expect line "Port installation" 500.00 EUR, line "Port removal" 200.00 EUR
}

example cycle "April: nothing installed or removed" {
  period 2026-04
  item port "P-NEW" active 2026-03-10 ..
  expect no line "Port installation", no line "Port removal"
}
''')
    assert all(r.ok for r in results), text


def test_a_per_inventory_fee_needs_an_item_trigger(tmp_path):
    f = tmp_path / "rules.icd"
    f.write_text(PARTNER + '''
agreement "Ports" v1 with ORFR effective 2026-01-01 .. {
  outbound voice { price 0.01 EUR per minute }
  one_time "Port removal" 200.00 EUR on invoice per inventory port
}
''', encoding="utf-8")
    plan, _program, diags = build([f], root=tmp_path)
    assert plan is None and [d.code for d in diags] == ["E226"]
