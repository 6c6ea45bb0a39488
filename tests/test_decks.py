"""Rate decks read as columns give exactly what the row-by-row reader gives: the same plan rows,
the same diagnostics (problems are reported by the row reader, at their line)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from icdsl.lang import decks
from icdsl.lang.diagnostics import render_all
from icdsl.plan.compiler import build
from icdsl.plan.model import RateColumns

AGREEMENT = """\
calendar business timezone "Europe/Paris" {{
  peak mon-fri 08:00-20:00
  offpeak otherwise
}}

agreement "Deck test" v1 with any partner effective 2026-01-01 .. {{
  currency EUR
  outbound voice {{
    price by destination from deck "rates.csv"{columns}
    calendar business
  }}
}}
"""


def build_both(folder: Path, deck: str, columns: str = "", monkeypatch=None):
    (folder / "rates.csv").write_text(deck, encoding="utf-8")
    (folder / "deck.icd").write_text(AGREEMENT.format(columns=columns), encoding="utf-8")
    out = []
    for columnar in (True, False):
        monkeypatch.setattr(decks, "COLUMNAR", columnar)
        old = os.getcwd()
        os.chdir(folder)
        try:
            plan, program, diags = build([Path("deck.icd")], Path("."))
            text = render_all(diags, program.sources)
        finally:
            os.chdir(old)
        rows = list(plan.agreements[0].services[0].rates.rows) if plan is not None else None
        kind = type(plan.agreements[0].services[0].rates.rows) if plan is not None else None
        out.append((rows, text, kind))
    return out


CASES = {
    "bands and increments": (
        "prefix,destination,peak_rate,offpeak_rate,initial_increment,subsequent_increment,connect_fee\n"
        "33,France,0.0100,0.0050,60,6,0\n336,France mobile,0.0200,0.0150,30,6,0.01\n44,UK,0.0100,0.0100,1,1,\n",
        "", True),
    "rate and a band override": (
        "prefix;name;rate;rate_peak;increments\n33;France;0.01;0.02;60/60\n49;Germany;0.03;;60/6\n", "", True),
    "effective dates and a repeated prefix": (
        "prefix,rate,effective,until\n33,0.01,2026-01-01,2026-06-30\n33,0.02,2026-06-30,\n34,0.5,,\n", "", True),
    "mapped columns, plus signs and spaces": (
        "Code,Dest,Price\n +33 , France ,0.0100\n+44,UK, 0.02 \n",
        ' columns { prefix "Code" destination "Dest" rate "Price" }', True),
    "CRLF line ends and a BOM": ("\ufeffprefix,rate\r\n1,0.01\r\n12,0.02\r\n", "", True),
    "a blank line": ("prefix,rate\n1,0.01\n\n12,0.02\n", "", False),
    "a line break inside quotes": ('prefix,destination,rate\n1,"North\nAmerica",0.01\n', "", False),
    "a bad rate": ("prefix,rate\n1,0.01\n12,abc\n13,-1\n", "", False),
    "a bad prefix": ("prefix,rate\n1x,0.01\n", "", False),
    "a row without a rate": ("prefix,peak_rate,offpeak_rate\n1,,\n", "", False),
    "a missing band price": ("prefix,peak_rate,offpeak_rate\n1,0.01,\n2,0.02,0.01\n", "", True),
    "an unknown band": ("prefix,rate_night\n1,0.01\n", "", True),
    "conflicting duplicates": ("prefix,rate\n33,0.01\n33,0.02\n33,0.01\n", "", True),
    "dates out of order": ("prefix,rate,effective,until\n33,0.01,2026-05-01,2026-04-01\n", "", True),
    "an impossible date": ("prefix,rate,effective\n33,0.01,2026-02-30\n", "", True),
    "too many fields": ("prefix,rate\n33,0.01,9\n", "", False),
    "bad increments": ("prefix,rate,increments\n33,0.01,60-6\n", "", False),
    "exponent spelling": ("prefix,rate\n33,1E-2\n", "", True),
    "header only": ("prefix,rate\n", "", True),
}


@pytest.mark.parametrize("name", list(CASES))
def test_columnar_reader_agrees_with_the_row_reader(name, tmp_path, monkeypatch):
    deck, columns, expect_columnar = CASES[name]
    (rows_c, text_c, kind_c), (rows_r, text_r, _) = build_both(tmp_path, deck, columns, monkeypatch)
    assert text_c == text_r
    assert rows_c == rows_r
    if rows_c is not None:
        assert (kind_c is RateColumns) == expect_columnar


def test_rows_of_columns_are_rate_rows(tmp_path, monkeypatch):
    (rows, _, kind), _ = build_both(tmp_path, CASES["bands and increments"][0], monkeypatch=monkeypatch)
    assert kind is RateColumns
    r = rows[1]
    assert (r.prefix, r.destination, r.price_for("peak"), str(r.span)) == ("336", "France mobile",
                                                                            r.prices[0][1], "rates.csv:3:1")
    assert r.connect_fee is not None and r.increments.initial == 30


prefixes = st.text("0123456789", min_size=1, max_size=6)
prices = st.one_of(st.just(""), st.decimals(min_value=0, max_value=10, places=4).map(str))
row = st.tuples(prefixes, prices, prices, st.sampled_from(["", "60", "30", "1"]), st.sampled_from(["", "6", "1"]),
                st.sampled_from(["", "2026-01-01", "2026-03-15"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(row, max_size=12))
def test_random_decks_agree(tmp_path, monkeypatch, rows):
    text = "prefix,peak_rate,offpeak_rate,initial_increment,subsequent_increment,effective\n"
    text += "".join(",".join(r) + "\n" for r in rows)
    (rows_c, text_c, _), (rows_r, text_r, _) = build_both(tmp_path, text, "", monkeypatch)
    assert text_c == text_r
    assert rows_c == rows_r
