"""Pricing models of other rating engines, written as contracts say them (issue 16, rating side):
increments per slot, a maximum cost per call, per-byte prices, catch-all rows, the band of a split
call, surcharges under the zero-duration policy, ``icdsl rate --show``, cycle traffic counted in
the price's own word. Each is rated by both executors, which must agree on every field (the
property tests of tests/test_rating_property.py draw slot increments and caps at random too)."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from icdsl.cli.main import app
from icdsl.cycle.examples import run_examples
from icdsl.rating.row import explain
from icdsl.testing import build_plan, check_rules, rate_both

DOCS = Path(__file__).parent.parent / "docs" / "language.md"
PARTNER = 'partner CARR "Carrier" {\n  currency EUR\n}\n\n'


def _doc_blocks() -> list[str]:
    """The self-contained ``icd`` blocks of the language reference that carry examples."""
    blocks = re.findall(r"```icd\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    return [b for b in blocks if re.search(r"^partner ", b, re.M) and re.search(r"^example ", b, re.M)]


def test_the_reference_examples_pass_with_both_executors():
    blocks = _doc_blocks()
    assert len(blocks) >= 5
    for block in blocks:
        plan = build_plan(block)
        results = run_examples(plan)  # record examples (both executors) and cycle examples
        assert results
        for res in results:
            assert res.ok, (res.title, res.failures)


def _record(rid, seconds, number="33612345678", **extra):
    return {"id": rid, "partner": "CARR", "direction": "outbound", "service": "voice", "b_number": number,
            "start": "2026-03-04T19:59:00Z", "duration_s": seconds, **extra}


SLOTS = PARTNER + """agreement "Slots" v1 with CARR effective 2026-01-01 .. {
  outbound voice {
    price by destination in EUR {
      33 "France" 0.0100 increments 30/6
    }
    minimum 10 s
    slots {
      first 30 s at 0.0600 EUR per minute increments 60/60,
      first 90 s at 0.0400 EUR per minute,
      then 0.0300 EUR per minute increments 1/1
    }
    connect fee 0.0100 EUR
    at most 0.0800 EUR per call
    surcharge "Share" 10%
  }
}
"""


def test_a_block_past_the_slot_end_moves_the_next_slot():
    plan = build_plan(SLOTS)
    cmp = rate_both(plan, [_record(1, 5), _record(2, 45), _record(3, 70), _record(4, 100), _record(5, 0),
                           _record(6, 400)]).assert_agree()
    # 5 s: minimum 10 s, first slot's 60/60 -> 60 s, past the 30 s slot and the 90 s one? no: the
    # second slot bills from 60 s up to min(10, 90): nothing; billed 60 s
    # 45 s: first slot 60 s; second slot: 45 < 60, nothing; 60 s at 0.06 = 0.06 + 0.01 fee
    # 70 s: 60 s, then 10 s left in the second slot with the row's 30/6: 30 s -> 90 s
    # 100 s: 60 + (90 - 60 = 30 with 30/6 -> 30) + (10 s with 1/1) = 100 s
    billed = [r.billed_units for r in cmp.row]
    assert billed == [60, 60, 90, 100, 0, 400]
    amounts = cmp.amounts
    assert amounts[1] == Decimal("0.070000")  # 0.01 + 0.06
    assert amounts[2] == Decimal("0.080000")  # 0.01 + 0.06 + 30 x 0.04 / 60 = 0.09, capped at 0.08
    assert amounts[4] == Decimal("0.010000")  # the connect fee (zero duration: connect_fee)
    assert amounts[5] == Decimal("0.080000")
    # the percentage surcharge is a share of the capped amount
    assert cmp.surcharges[5] == [("Share", Decimal("0.008000"))]


def test_explain_shows_slot_increments_and_the_cap():
    plan = build_plan(SLOTS)
    from icdsl.rating.intake import normalize_record

    lines = explain(plan, normalize_record(_record(3, 70)))
    text = "\n".join(lines)
    assert "increments per slot: 60 s from 0 s with 60/60 + 30 s from 60 s with 30/6 = 90 s" in text
    assert "capped at 0.08 EUR per call" in text and "rules.icd:17:5]" in text


def test_a_call_made_free_bears_no_surcharge():
    rules = PARTNER + """agreement "Free" v1 with CARR effective 2026-01-01 .. {
  outbound voice {
    price 0.0100 EUR per minute
    zero duration free
    surcharge "Per call" 0.0100 EUR per call
  }
  outbound sms {
    price 0.0100 EUR per message
    surcharge "Per message" 0.0010 EUR per message
  }
}
"""
    plan = build_plan(rules)
    sms = _record(3, 0) | {"service": "sms"}
    cmp = rate_both(plan, [_record(1, 0), _record(2, 30), sms]).assert_agree()
    assert cmp.amounts == [Decimal("0.000000"), Decimal("0.010000"), Decimal("0.010000")]
    assert cmp.surcharges == [[], [("Per call", Decimal("0.010000"))], [("Per message", Decimal("0.001000"))]]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    slots=st.lists(st.tuples(st.integers(1, 120), st.integers(0, 900), st.one_of(st.none(), st.tuples(
        st.integers(1, 90), st.integers(1, 90)))), min_size=1, max_size=3, unique_by=lambda t: t[0]),
    last=st.tuples(st.integers(0, 900), st.one_of(st.none(), st.tuples(st.integers(1, 90), st.integers(1, 90)))),
    cap=st.one_of(st.none(), st.integers(1, 5000)),
    minimum=st.sampled_from([0, 0, 45]),
    durations=st.lists(st.integers(0, 2000), min_size=1, max_size=12),
)
def test_written_slot_increments_and_caps_agree(slots, last, cap, minimum, durations):
    """Rules as written (through the checker and the compiler), rated by both executors."""
    slots = sorted(slots)

    def inc(x):
        return f" increments {x[0]}/{x[1]}" if x is not None else ""

    lines = [f"first {u} s at 0.{p:04d} EUR per minute{inc(i)}," for u, p, i in slots]
    lines.append(f"then 0.{last[0]:04d} EUR per minute{inc(last[1])}")
    rules = PARTNER + (
        'agreement "Gen" v1 with CARR effective 2026-01-01 .. {\n  outbound voice {\n    slots {\n      '
        + "\n      ".join(lines) + "\n    }\n"
        + (f"    at most 0.{cap:04d} EUR per call\n" if cap is not None else "")
        + (f"    minimum {minimum} s\n" if minimum else "")
        + "    increments 60/6\n  }\n}\n")
    plan = build_plan(rules)
    cmp = rate_both(plan, [_record(i, d) for i, d in enumerate(durations)]).assert_agree()
    for d, out in zip(durations, cmp.row, strict=True):
        assert out.billed_units >= (max(d, minimum) if d else 0)
        if cap is not None:
            assert out.amount <= Decimal(cap).scaleb(-4)


def test_check_reports_wrong_caps_and_slot_increments():
    rules = PARTNER + """agreement "Bad" v1 with CARR effective 2026-01-01 .. {
  outbound voice {
    slots {
      first 30 s at 0.0600 EUR per minute increments 0/1,
      then 0.0300 EUR per minute
    }
    at most 10.00 USD per minute
  }
}
"""
    d = check_rules(rules)
    assert d.codes == ["E208", "E322", "E206"]


def test_a_deck_catch_all_row_and_an_empty_prefix(tmp_path):
    rules = PARTNER + """agreement "Deck" v1 with CARR effective 2026-01-01 .. {
  outbound voice {
    price by destination from deck "decks/a.csv"
  }
}
"""
    plan = build_plan(rules, files={"decks/a.csv": "prefix,destination,rate\n*,Rest of world,0.5\n44,UK,0.02\n"})
    cmp = rate_both(plan, [_record(1, 60, "81312345678"), _record(2, 60, "447700900123")]).assert_agree()
    assert [r.destination for r in cmp.row] == ["Rest of world", "UK"]
    assert cmp.row[0].prefix == ""
    d = check_rules(rules, files={"decks/a.csv": "prefix,destination,rate\n,Rest of world,0.5\n"})
    assert d.codes == ["E404"] and "'*' is the catch-all row" in d.text


def test_cycle_traffic_in_the_price_word():
    rules = PARTNER + """agreement "API" v1 with CARR effective 2026-01-01 .. {
  outbound api {
    price 0.0100 EUR per transaction
  }
  commit 5.00 EUR per month
}

example cycle "transactions" {
  period 2026-03
  traffic outbound api 100 transactions for 1.00 EUR
  expect line "commitment" 4.00 EUR
}
"""
    assert check_rules(rules).codes == []
    bad = check_rules(rules.replace("100 transactions", "100 calls"))
    assert bad.codes == ["E206"] and "transactions" in bad.text


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("show")
    (root / "rules.icd").write_text(SLOTS, encoding="utf-8")
    (root / "cdrs.csv").write_text(
        "id,partner,direction,service,b_number,start,duration_s\n"
        "1,CARR,outbound,voice,33612345678,2026-03-04T09:15:00Z,45\n"
        "2,CARR,outbound,voice,447700900123,2026-03-04T09:15:00Z,45\n", encoding="utf-8")
    return root


def test_rate_show_prints_the_records(project):
    res = CliRunner().invoke(app, ["rate", str(project / "rules.icd"), "--cdrs", str(project / "cdrs.csv"), "--show"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == "rated records: 1"
    assert re.match(r"\s+1\s+CARR\s+outbound\s+voice\s+Slots\s+33\s+France\s+all\s+60\s+0.06\s+0.070000\s+EUR$",
                    lines[2]), lines[2]
    assert "per-record charges: 1" in res.output and "Share" in res.output
    assert re.search(r"rejects: 1\n.*\n\s+2\s+no_rate", res.output)
    assert not list(project.glob("*.parquet"))  # nothing written without --out


def test_rate_needs_out_or_show(project):
    res = CliRunner().invoke(app, ["rate", str(project / "rules.icd"), "--cdrs", str(project / "cdrs.csv")])
    assert res.exit_code == 2 and "--show" in res.output


def test_a_fallback_deck_prices_what_the_partner_deck_misses():
    rules = PARTNER + """agreement "Fallback" v1 with CARR effective 2026-01-01 .. {
  outbound voice {
    price by destination from deck "decks/own.csv"
    fallback from deck "decks/public.csv"
    increments 1/1
  }
}
"""
    files = {"decks/own.csv": "prefix,destination,rate,effective\n33,France,0.0100,\n336,France mobile,0.0200,\n"
                              "44,UK,0.0150,2026-04-01\n",
             "decks/public.csv": "prefix,destination,rate,connect_fee\n44,UK,0.0250,\n447,UK mobile,0.0300,0.01\n"
                                 "337,France other,0.9000,\n"}
    plan = build_plan(rules, files=files)
    recs = [_record(1, 60), _record(2, 60, "447700900123"), _record(3, 60, "33712345678"),
            _record(4, 60, "8112345678"), _record(5, 60, "447700900123", start="2026-05-04T10:00:00Z")]
    cmp = rate_both(plan, recs).assert_agree()
    assert [r.destination if r.ok else r.reason for r in cmp.row] == [
        "France mobile", "UK mobile", "France", "no_rate", "UK"]
    assert cmp.amounts[1] == Decimal("0.040000")  # the public row's connect fee 0.01 + 0.03
    assert cmp.row[1].rule.endswith("public.csv:3:1")
    from icdsl.rating.intake import normalize_record

    text = "\n".join(explain(plan, normalize_record(recs[1])))
    assert re.search(r"longest prefix 447 \(UK mobile\) among rows in force on 2026-03-04 of the fallback table "
                     r"\(\S*decks/public.csv\): no row of the price table holds it", text), text
    # the fallback deck is a term of the agreement: another public deck, another hash
    files2 = files | {"decks/public.csv": files["decks/public.csv"].replace("0.0300", "0.0310")}
    assert build_plan(rules, files=files2).agreements[0].source_hash != plan.agreements[0].source_hash


BAND_PARTS = PARTNER + """agreement "Band parts" v1 with CARR effective 2026-01-01 .. {
  outbound voice {
    price by destination in EUR {
      33  "France"         peak 0.0200 offpeak 0.0100
      336 "France mobile"  peak 0.0300 offpeak 0.0200 connect 0.0500 increments 30/30
    }
    bands timezone "Europe/Paris" {
      peak mon-fri 08:00-20:00
      offpeak otherwise
    }
    split at band boundary
    band peak {
      connect fee 0.0100 EUR
      increments 60/60
    }
    band offpeak {
      increments 1/1
    }
  }
  outbound sms {
    calendar biz
    price 0.0500 EUR per message
    band offpeak {
      price 0.0100 EUR per message
      connect fee 0.0010 EUR
    }
  }
}

calendar biz timezone "Europe/Paris" {
  peak mon-fri 08:00-20:00
  offpeak otherwise
}
"""


def test_band_parts_come_from_the_band_at_the_call_start():
    plan = build_plan(BAND_PARTS)
    sms = {"service": "sms", "b_number": "33612345678"}
    recs = [_record(1, 61, "33123456789", start="2026-03-04T10:00:00Z"),  # peak: fee 0.01, 60/60
            _record(2, 61, "33123456789", start="2026-03-04T22:00:00Z"),  # offpeak: 1/1, no fee
            _record(3, 61, "33612345678", start="2026-03-04T10:00:00Z"),  # the row's own fee and 30/30
            # 18:59:30 UTC is 19:59:30 in Paris: peak's 60/60 and fee; 30 s peak + 90 s offpeak
            _record(4, 61, "33123456789", start="2026-03-04T18:59:30Z"),
            _record(5, 1, start="2026-03-04T10:00:00Z") | sms, _record(6, 1, start="2026-03-04T22:00:00Z") | sms]
    cmp = rate_both(plan, recs).assert_agree()
    assert [r.billed_units for r in cmp.row] == [120, 61, 90, 120, 1, 1]
    assert cmp.amounts == [
        Decimal("0.050000"),  # 0.01 + 120 x 0.02 / 60
        Decimal("0.010167"),  # 61 x 0.01 / 60
        Decimal("0.095000"),  # 0.05 + 90 x 0.03 / 60
        Decimal("0.035000"),  # 0.01 + 30 x 0.02 / 60 + 90 x 0.01 / 60
        Decimal("0.050000"),  # the service's price in peak
        Decimal("0.011000"),  # off-peak: 0.001 + 0.01
    ]
    assert cmp.row[3].band == "peak+offpeak"


def test_band_parts_are_checked():
    rules = BAND_PARTS.replace("    band offpeak {\n      increments 1/1\n    }\n",
                               "    band offpeak {\n      price 0.0100 EUR per minute\n    }\n    band night {\n    }\n")
    assert check_rules(rules).codes == ["E305", "E207"]


def test_a_cap_beyond_the_vectorized_range_rates_on_the_exact_path():
    """A cap so large (at 12 decimals) that it does not fit the batch executor's int64 arithmetic
    caps nothing there, and both executors agree (found by the property test: it used to be an
    OverflowError in the batch executor)."""
    rules = PARTNER + """agreement "Huge cap" v1 with CARR effective 2026-01-01 .. {
  outbound voice {
    price by destination in EUR {
      33 "France" 0.0100
    }
    rounding half_up to 12 decimals
    at most 99_999_999_999.00 EUR per call
  }
}
"""
    plan = build_plan(rules)
    cmp = rate_both(plan, [_record(1, 60), _record(2, 125)]).assert_agree()
    assert cmp.amounts == [Decimal("0.010000000000"), Decimal("0.030000000000")]  # 60/60: 180 s
