"""Slot sets chosen per rate row (issue 16): ``slots NAME { ... }`` in a service and ``slots NAME``
in a rate row (or a deck's ``slots`` column), as CGRateS gives each destination its own rate
groups. Exact worked examples, both executors, decks read as columns and row by row, explain,
plan and the checker's words. The property tests of both executors draw slot sets too
(tests/test_rating_property.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from icdsl.lang import decks
from icdsl.plan.render import render_plan
from icdsl.rating.row import explain
from icdsl.testing import build_plan, check_rules, rate_both

PARTNER = 'partner CARR "Carrier" {\n  currency EUR\n}\n\n'

# RT_20CNT and RT_40CNT of CGRateS's tutorial; 1009 names no set (the unnamed slots price it);
# the calendar splits calls at 20:00 (parts matter only for rows priced by their own price)
RULES = PARTNER + """agreement "Rate groups" v1 with CARR effective 2026-01-01 .. {
  outbound voice {
    price by destination in EUR {
      1002 "DST_1002" 0.2000 connect 0.4000 slots RT_20CNT
      1003 "DST_1003" 0.4000 connect 0.8000 slots RT_40CNT
      1009 "DST_1009" 0.0600
    }
    slots RT_20CNT {
      first 60 s at 0.2000 EUR per minute increments 60/60,
      then 0.1000 EUR per minute increments 1/1
    }
    slots RT_40CNT {
      first 60 s at 0.4000 EUR per minute,
      then 0.2000 EUR per minute
    }
    increments 30/10
    minimum 20 s
  }

  outbound national {
    bands timezone "UTC" {
      peak mon-fri 08:00-20:00
      offpeak otherwise
    }
    price by destination in EUR {
      1002 "DST_1002" peak 0.1200 offpeak 0.0600 slots RT_20CNT
      1009 "DST_1009" peak 0.1200 offpeak 0.0600
    }
    slots RT_20CNT {
      first 60 s at 0.2000 EUR per minute increments 60/60,
      then 0.1000 EUR per minute increments 1/1
    }
    slots {
      then 0.0300 EUR per minute
    }
    split at band boundary
    increments 1/1
  }
}
"""


def _call(rid, number, seconds, service="voice", start="2026-03-04T09:15:00Z"):
    return {"id": rid, "partner": "CARR", "direction": "outbound", "service": service, "b_number": number,
            "start": start, "duration_s": seconds}


def test_each_row_is_priced_by_its_set_and_both_executors_agree():
    plan = build_plan(RULES)
    cmp = rate_both(plan, [
        _call(1, "1002", 85), _call(2, "1003", 85), _call(3, "1009", 85),
        _call(4, "1002", 10), _call(5, "1003", 10), _call(6, "1002", 0), _call(7, "1003", 0),
        _call(8, "10025", 3600), _call(9, "1003", 61),
    ]).assert_agree()
    assert [r.billed_units for r in cmp.row] == [85, 90, 90, 60, 30, 0, 0, 3600, 70]
    assert cmp.amounts == [
        # 0.4 + 60 s at 0.2 + 25 s at 0.1 (1 s steps) = 0.641666...
        Decimal("0.641667"),
        # RT_40CNT has no increments of its own: the service's 30/10 on the whole call -> 90 s;
        # 0.8 + 60 s at 0.4 + 30 s at 0.2
        Decimal("1.300000"),
        # no set: the row's own price, 90 s at 0.06
        Decimal("0.090000"),
        # the minimum 20 s, then RT_20CNT's 60/60: one minute at 0.2, plus 0.4
        Decimal("0.600000"),
        # the minimum 20 s, 30/10 -> 30 s at 0.4, plus 0.8
        Decimal("1.000000"),
        # 0-second calls: the connect fee
        Decimal("0.400000"), Decimal("0.800000"),
        # an hour: 0.4 + 0.2 + 3540 s at 0.1 per minute = 0.4 + 0.2 + 5.9
        Decimal("6.500000"),
        # 61 s -> 70 s: 0.8 + 0.4 + 10 s at 0.2
        Decimal("1.233333"),
    ]
    assert [r.rate for r in cmp.row] == ["0.2", "0.4", "0.06", "0.2", "0.4", "0.2", "0.4", "0.2", "0.4"]


def test_rows_without_a_set_take_the_unnamed_slots_and_split_calls_keep_their_set():
    plan = build_plan(RULES)
    late = "2026-03-04T19:59:00Z"  # a 120 s call crosses 20:00 (peak -> offpeak)
    cmp = rate_both(plan, [_call(1, "1002", 120, "national", late), _call(2, "1009", 120, "national", late),
                           _call(3, "1009", 30, "national")]).assert_agree()
    # 1002: RT_20CNT from the call's start (60 s at 0.2 + 60 s at 0.1), whatever the bands;
    # 1009: the unnamed slots, 120 s at 0.03
    assert cmp.amounts == [Decimal("0.300000"), Decimal("0.060000"), Decimal("0.015000")]
    assert [r.band for r in cmp.row] == ["peak+offpeak", "peak+offpeak", "peak"]


def test_explain_and_plan_say_which_set_prices_the_call():
    plan = build_plan(RULES)
    lines = explain(plan, _call(1, "1002", 85) | {"start": datetime(2026, 3, 4, 9, 15, tzinfo=UTC)})
    text = "\n".join(lines)
    assert "the row 1002 (DST_1002) chooses the slot set RT_20CNT: its slots price the call" in text
    assert "85 s, increments per slot: 60 s from 0 s with 60/60 + 25 s from 60 s with 1/1 = 85 s" in text
    shown = render_plan(plan)
    assert ("slots RT_40CNT, chosen by 1 row, from the call's start: 0-60 s at 0.4000 EUR/min; "
            "60-... s at 0.2000 EUR/min") in shown


DECK = """prefix,destination,rate,connect_fee,slots
1002,DST_1002,0.2000,0.4000,RT_20CNT
1003,DST_1003,0.4000,0.8000,RT_40CNT
1004,DST_FS,0.4000,0.8000,RT_40CNT
1009,DST_1009,0.0600,,
"""

DECK_RULES = PARTNER + """agreement "Rate groups from a deck" v1 with CARR effective 2026-01-01 .. {
  outbound voice {
    price by destination in EUR from deck "decks/tutorial.csv"
    slots RT_20CNT {
      first 60 s at 0.2000 EUR per minute increments 60/60,
      then 0.1000 EUR per minute increments 1/1
    }
    slots RT_40CNT {
      first 60 s at 0.4000 EUR per minute increments 30/30,
      then 0.2000 EUR per minute increments 10/10
    }
  }
}
"""


@pytest.mark.parametrize("columnar", [True, False])
def test_a_decks_slots_column_names_each_rows_set(columnar, monkeypatch):
    monkeypatch.setattr(decks, "COLUMNAR", columnar)
    plan = build_plan(DECK_RULES, files={"decks/tutorial.csv": DECK})
    rows = plan.agreements[0].services[0].rates.rows
    assert isinstance(rows, decks.RateColumns) is columnar
    cmp = rate_both(plan, [_call(1, "1002", 85), _call(2, "1003", 85), _call(3, "1004", 20),
                           _call(4, "1009", 85)]).assert_agree()
    assert cmp.amounts == [Decimal("0.641667"), Decimal("1.300000"), Decimal("1.000000"), Decimal("0.120000")]
    assert [r.destination for r in cmp.row] == ["DST_1002", "DST_1003", "DST_FS", "DST_1009"]


def test_mistakes_are_located_with_the_closest_name():
    bad_deck = DECK.replace("1004,DST_FS,0.4000,0.8000,RT_40CNT", "1004,DST_FS,0.4000,0.8000,RT_40CTN")
    got = check_rules(DECK_RULES, files={"decks/tutorial.csv": bad_deck})
    assert got.codes == ["E324"]
    assert "decks/tutorial.csv:4:1: error[E324]: unknown slot set 'RT_40CTN'" in got.text
    assert "did you mean 'RT_40CNT'?" in got.text
    got = check_rules(DECK_RULES, files={"decks/tutorial.csv": DECK.replace("RT_40CNT", "RT 40")})
    assert got.codes == ["E404", "E404", "W305"] and "slot set 'RT 40' is not a name" in got.text
    inline = RULES.replace('0.0600\n    }\n    slots RT_20CNT', '0.0600 slots\n    }\n    slots RT_20CNT', 1)
    got = check_rules(inline)
    assert got.codes == ["E012"] and "expected the name of a slot set after 'slots'" in got.text
    twice = RULES.replace("slots RT_20CNT\n      1003", "slots RT_20CNT slots RT_40CNT\n      1003", 1)
    got = check_rules(twice)
    assert got.codes == ["E012"] and "'slots' is given twice in this row" in got.text


def test_a_row_spread_over_lines_names_its_set_too():
    spread = RULES.replace('1003 "DST_1003" 0.4000 connect 0.8000 slots RT_40CNT',
                           '1003 "DST_1003" 0.4000\n        connect 0.8000\n        slots RT_40CNT', 1)
    plan = build_plan(spread)
    cmp = rate_both(plan, [_call(1, "1003", 85)]).assert_agree()
    assert cmp.amounts == [Decimal("1.300000")]
