"""Rates by origin and number-range tables (issue 14, item 1).

An India-style matrix (circles by operators, with a ported number overriding its range) and an
EEA/non-EEA origin deck: each record is priced by the cell worked out by hand, in both
executors (row: Decimal, traced; batch: Arrow columns), and explained. The rule files and CSVs
are those of examples/origins (run by ``icdsl test`` as well).
"""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from test_rating_batch import assert_same, table

from icdsl.lang.numbers import range_prefixes, read_ported, read_ranges
from icdsl.plan.compiler import build
from icdsl.rating.batch import rate_batch, rate_batch_with_charges
from icdsl.rating.row import explain, rate_record
from icdsl.spans import Span

ROOT = Path(__file__).parent.parent
ORIGINS = ROOT / "examples" / "origins"
DECK_IN = "examples/origins/decks/india-termination.csv"
DECK_EEA = "examples/origins/decks/eea-termination.csv"
START = datetime(2026, 3, 2, 4, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def plan(request):
    import os

    old = os.getcwd()
    os.chdir(ROOT)
    try:
        p, _program, diags = build([ORIGINS], root=ROOT)
    finally:
        os.chdir(old)
    assert p is not None, [str(d) for d in diags]
    return p


def rec(i, partner, a, b, dur=60, **kw):
    return {"id": i, "partner": partner, "direction": "inbound", "service": "voice", "a_number": a,
            "b_number": b, "start": START + timedelta(minutes=i), "duration_s": dur} | kw


# (a_number, b_number, seconds) -> (deck line of the cell, rate, amount): worked out by hand from
# examples/origins/decks/india-termination.csv and numbers/india-*.csv (60/60 increments)
INDIA = [
    # Airtel Mumbai range 919820: the AIRTEL x MH cell (line 3)
    ("919820123456", "919886001122", 60, 3, "0.004", "0.004000"),
    # 919820000001 is in Airtel's range but ported to Jio, circle stays MH: JIO x MH (line 5)
    ("919820000001", "919886001122", 60, 5, "0.0038", "0.003800"),
    # ranges written START-END: 9198214... is Jio MH, 9198216... is VI MH (no VI MH cell: VI has
    # none, MH alone has none: any origin, line 2)
    ("919821400000", "919886001122", 60, 5, "0.0038", "0.003800"),
    ("919821600000", "919886001122", 61, 2, "0.0065", "0.013000"),
    # Airtel Delhi: AIRTEL x DL (line 4)
    ("919810000001", "919886001122", 60, 4, "0.0045", "0.004500"),
    # Jio Delhi: no JIO x DL cell, the JIO row for every circle (line 6)
    ("919811000001", "919886001122", 120, 6, "0.005", "0.010000"),
    # Vi Karnataka: no VI cell, the KA row for every operator (line 7)
    ("919886555000", "919810001122", 120, 7, "0.0042", "0.008400"),
    # ported to JIO with its own circle KA: JIO x KA has no cell, JIO (line 6, rank 5) beats KA (4)
    ("919845000777", "919810001122", 60, 6, "0.005", "0.005000"),
    # a number in no range, and no a_number at all: any origin (line 2)
    ("447700900123", "919886001122", 60, 2, "0.0065", "0.006500"),
    (None, "919886001122", 60, 2, "0.0065", "0.006500"),
    # the destination comes first: 9180 (any origin, line 8) beats 91 x AIRTEL x MH
    ("919820123456", "918012345678", 60, 8, "0.007", "0.007000"),
]

EEA = [
    # German caller (zone EEA) to a French mobile: line 5
    ("4915112345678", "33612345678", 60, 5, "0.012", "0.012000"),
    # French caller: country FR (rank 2) beats zone EEA (rank 1): line 6
    ("33145678901", "33612345678", 60, 6, "0.009", "0.009000"),
    # New York: outside the EEA, the row without an origin: line 4
    ("12125550100", "33612345678", 60, 4, "0.25", "0.250000"),
    # London (GB is not in the EEA): the A-number prefix 4420 row, line 7; 1/1 increments
    ("442071234567", "33612345678", 30, 7, "0.03", "0.015000"),
    # Norway is in the EEA (EU + IS LI NO): line 5
    ("4722123456", "33612345678", 90, 5, "0.012", "0.018000"),
    # French fixed from Germany: EEA row of 33 (line 3); from the US: line 2
    ("4915112345678", "33145678901", 60, 3, "0.008", "0.008000"),
    ("12125550100", "33145678901", 60, 2, "0.09", "0.090000"),
]


@pytest.mark.parametrize(("partner", "cases", "deck"), [("DESHI", INDIA, DECK_IN), ("GALLIA", EEA, DECK_EEA)],
                         ids=["india-matrix", "eea-origins"])
def test_each_record_is_priced_by_the_right_cell_in_both_executors(plan, partner, cases, deck):
    records = [rec(i, partner, a, b, dur) for i, (a, b, dur, *_rest) in enumerate(cases)]
    rated, rejects = assert_same(plan, records)  # batch == row, field by field
    assert rejects.num_rows == 0
    got = {r["id"]: r for r in rated.to_pylist()}
    for i, (_a, _b, _dur, line, rate, amount) in enumerate(cases):
        row = got[i]
        assert (row["rule"], row["rate"], str(row["amount"])) == (f"{deck}:{line}:1", rate, amount), cases[i]


def test_the_explanation_names_the_range_the_port_and_the_cell(plan):
    lines = explain(plan, rec(0, "DESHI", "919820000001", "919886001122"))
    text = "\n".join(lines)
    assert ("a_number 919820000001: range 919820 (AIRTEL, circle MH, IN) at examples/origins/numbers/"
            "india-ranges.csv:2; ported to JIO at examples/origins/numbers/india-ported.csv:2 -> operator JIO, "
            "circle MH  [examples/origins/numbers/india-ported.csv:2:1]") in lines
    assert (f"origin cell: origin operator JIO circle MH, prefix 91 (India) at {DECK_IN}:5:1: the longest "
            f"destination prefix, then the most specific origin; also holding: origin operator JIO: prefix 91 "
            f"({DECK_IN}:6:1); any origin: prefix 91 ({DECK_IN}:2:1)  [{DECK_IN}:5:1]") in lines
    assert "rounded once, half_up to 6 decimals: 0.0038 USD" in text
    # a range written START-END is explained by its line
    lines = explain(plan, rec(0, "DESHI", "919821600000", "919886001122"))
    assert any(s.startswith("a_number 919821600000: range 919821") and "(VI, circle MH, IN)" in s
               and "india-ranges.csv:4 -> operator VI, circle MH" in s for s in lines), lines
    # the EEA deck: the zone cell and what else held
    lines = explain(plan, rec(0, "GALLIA", "33145678901", "33612345678"))
    assert any(s.startswith(f"origin cell: origin country FR, prefix 336 (France mobile) at {DECK_EEA}:6:1")
               and f"origin zone EEA: prefix 336 ({DECK_EEA}:5:1)" in s for s in lines), lines


def test_explain_command_shows_the_range_and_the_cell(plan, monkeypatch):
    from typer.testing import CliRunner

    from icdsl.cli.main import app

    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(app, ["explain", "examples/origins", "--record",
                                      "partner=DESHI direction=inbound service=voice a_number=+919845000777 "
                                      "b_number=919810001122 start=2026-03-04T09:15:00+05:30 duration_s=61"])
    assert result.exit_code == 0, result.output
    assert "ported to JIO circle KA at examples/origins/numbers/india-ported.csv:3" in result.output
    assert f"origin cell: origin operator JIO, prefix 91 (India) at {DECK_IN}:6:1" in result.output
    assert "=> 0.010000 USD" in result.output


def test_a_condition_reads_the_origin_operator_in_both_executors(plan):
    # BSNL Mumbai (range 9122) pays the off-net surcharge: 0.0010 USD per minute on 120 s
    records = [rec(0, "DESHI", "912212345678", "919886001122", 120), rec(1, "DESHI", "919820123456", "919886001122")]
    row = [rate_record(plan, r) for r in records]
    assert [(h.charge, h.amount) for h in row[0].surcharges] == [("Off-net origin", Decimal("0.002000"))]
    assert row[1].surcharges == ()
    _rated, _rejects, charges = rate_batch_with_charges(plan, table(records))
    assert charges.select(["record", "charge", "amount"]).to_pylist() == [
        {"record": 0, "charge": "Off-net origin", "amount": Decimal("0.002000")}]


def test_ported_numbers_at_scale_in_the_batch_executor(plan):
    """Thousands of records, most of them ported callers: the vectorized port lookup and the row
    executor agree, and every ported caller gets the port's operator."""
    callers = ["919820000001", "919820000002", "919845000777", "919886000001", None, "9198"]
    records = [rec(i, "DESHI", callers[i % len(callers)], "919886001122", 30 + i % 200) for i in range(3000)]
    rated, _ = assert_same(plan, records)
    rules = rated.column("rule").to_pylist()
    assert rules[0::6] == [f"{DECK_IN}:5:1"] * 500  # ported AIRTEL MH -> JIO MH
    assert rules[1::6] == [f"{DECK_IN}:3:1"] * 500  # not ported: AIRTEL MH
    assert rules[2::6] == [f"{DECK_IN}:6:1"] * 500  # ported to JIO circle KA -> JIO


def test_a_short_a_number_or_b_number_takes_the_exact_path(plan):
    records = [rec(0, "DESHI", "9198", "919886001122"), rec(1, "DESHI", "919820123456", "91"),
               rec(2, "DESHI", "9x", "919886001122"), rec(3, "GALLIA", "49", "33612345678"),
               rec(4, "GALLIA", "", "336")]
    rated, rejects = assert_same(plan, records)
    assert rated.num_rows + rejects.num_rows == 5


DATED = """
partner P "P" { currency EUR }
zone EEA { FR DE }
agreement "dated" v1 with P effective 2026-01-01 .. {
  currency EUR
  inbound voice {
    price by destination from deck "dated.csv"
  }
}
"""


def test_dated_rows_in_origin_cells_agree(tmp_path, monkeypatch):
    (tmp_path / "dated.csv").write_text(
        "prefix,destination,origin_zone,origin,rate,effective,until\n"
        "33,France,,,0.09,,\n"
        "33,France,EEA,,0.01,,2026-03-10\n"
        "33,France,EEA,,0.02,2026-03-10,\n"
        "336,France mobile,,49,0.05,2026-03-05,\n", encoding="utf-8")
    (tmp_path / "rules.icd").write_text(DATED, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    p, _, diags = build([tmp_path / "rules.icd"], root=tmp_path)
    assert p is not None, [str(d) for d in diags]
    records = []
    for day in range(1, 20):
        for k, a in enumerate(["4930123", "33123", "12125550100", None]):
            records.append({"id": day * 10 + k, "partner": "P", "direction": "inbound", "service": "voice",
                            "a_number": a, "b_number": "33612345678", "duration_s": 60,
                            "start": datetime(2026, 3, day, 12, tzinfo=UTC)})
    rated, _ = assert_same(p, records)
    got = {r["id"]: r["rate"] for r in rated.to_pylist()}
    assert got[30] == "0.01" and got[31] == "0.01" and got[32] == "0.09"  # before the 4th: no 336 row
    assert got[60] == "0.05"  # from the 5th the German caller has a longer destination (336)
    assert got[61] == "0.01" and got[111] == "0.02"  # the EEA rate changes on the 10th


def test_destination_operator_keys(tmp_path, monkeypatch):
    (tmp_path / "ranges.csv").write_text("range,operator,circle\n919800000-919849999,AIRTEL,MH\n"
                                         "919850000-919899999,JIO,MH\n", encoding="utf-8")
    (tmp_path / "ported.csv").write_text("number,operator\n919812345678,JIO\n", encoding="utf-8")
    (tmp_path / "deck.csv").write_text("prefix,destination,destination_operator,origin_operator,rate\n"
                                       "91,India,,,0.01\n91,India,JIO,,0.02\n91,India,JIO,AIRTEL,0.03\n",
                                       encoding="utf-8")
    (tmp_path / "rules.icd").write_text("""
partner P "P" { currency EUR }
numbers india from "ranges.csv" ported "ported.csv"
agreement "d" v1 with P effective 2026-01-01 .. {
  currency EUR
  outbound voice {
    numbers india
    price by destination from deck "deck.csv"
  }
}
""", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    p, _, diags = build([tmp_path / "rules.icd"], root=tmp_path)
    assert p is not None, [str(d) for d in diags]
    cases = [("919811111111", "919811111111", "0.01"),  # to AIRTEL
             ("919811111111", "919855555555", "0.03"),  # AIRTEL to JIO: both keys hold, rank (2, 5)
             ("919855555555", "919855555555", "0.02"),  # JIO to JIO
             ("919855555555", "919812345678", "0.02"),  # to an AIRTEL number ported to JIO
             (None, "919812345678", "0.02")]
    records = [{"id": i, "partner": "P", "direction": "outbound", "service": "voice", "a_number": a,
                "b_number": b, "duration_s": 60, "start": START} for i, (a, b, _) in enumerate(cases)]
    rated, _ = assert_same(p, records)
    assert rated.column("rate").to_pylist() == [c[2] for c in cases]


def test_rate_batch_without_a_number_column(plan):
    t = table([rec(0, "GALLIA", "4915112345678", "33612345678")]).drop_columns(["a_number"])
    rated, _ = rate_batch(plan, t)
    assert rated.column("rate").to_pylist() == ["0.25"]  # no origin known: the row for every origin


# --------------------------------------------------------------------------- the tables themselves


def test_a_range_is_the_fewest_prefixes_that_cover_it():
    assert range_prefixes("9198100", "9198299") == ["91981", "91982"]
    assert range_prefixes("919821000000", "919821499999") == ["9198210", "9198211", "9198212", "9198213",
                                                              "9198214"]
    assert range_prefixes("105", "213") == ["105", "106", "107", "108", "109", "11", "12", "13", "14", "15", "16",
                                            "17", "18", "19", "20", "210", "211", "212", "213"]
    assert range_prefixes("5", "5") == ["5"]


def test_every_number_of_a_range_and_no_other_is_covered():
    lo, hi = 1234, 5678
    prefixes = range_prefixes(str(lo), str(hi))
    covered = [n for n in range(1000, 10000) if any(str(n).startswith(p) for p in prefixes)]
    assert covered == list(range(lo, hi + 1))
    assert len(set(prefixes)) == len(prefixes)


def test_reading_the_example_tables():
    ranges, diags = read_ranges(ORIGINS / "numbers" / "india-ranges.csv", "r.csv", Span("x", 1, 1, 1, 2))
    assert diags == [] and ranges is not None
    assert ranges.prefixes[:3] == ("919820", "9198210", "9198211")
    ported, _sha, diags = read_ported(ORIGINS / "numbers" / "india-ported.csv", "p.csv", Span("x", 1, 1, 1, 2))
    assert diags == [] and ported == (("919820000001", "JIO", None, 2), ("919845000777", "JIO", "KA", 3))


def test_hostile_tables_are_refused_at_their_line(tmp_path):
    bad = tmp_path / "r.csv"
    bad.write_bytes(b"prefix,operator\n91,A\n\xff\xfe,B\n")
    table_, diags = read_ranges(bad, "r.csv", Span("x", 1, 1, 1, 2))
    assert table_ is None and [(d.code, d.span.line) for d in diags] == [("E002", 3)]
    bad.write_text("prefix,operator\n" + "x,A\n" * 30, encoding="utf-8")
    table_, diags = read_ranges(bad, "r.csv", Span("x", 1, 1, 1, 2))
    assert table_ is None and len(diags) == 21 and diags[-1].message == "10 more rows of this table have problems"


def test_the_rated_table_keeps_its_schema(plan):
    rated, _ = rate_batch(plan, table([rec(0, "DESHI", "919820123456", "919886001122")]))
    assert rated.schema.field("amount").type == pa.decimal128(18, 6)


def test_the_record_examples_of_the_rule_files_pass(plan):
    """``icdsl test`` on examples/origins: every record example through both executors."""
    from icdsl.cycle.examples import run_examples

    results = run_examples(plan)
    assert len(results) >= 9
    assert all(r.ok for r in results), [r for r in results if not r.ok]


INLINE = """
use stdlib.zones
partner P "P" { currency EUR }
numbers india from "ranges.csv"
agreement "inline" v1 with P effective 2026-01-01 .. {
  currency EUR
  inbound voice {
    numbers india
    price by destination in EUR {
      33  "France"         0.09
      33  "France"         0.01 origin_zone EEA
      336 "France mobile"  0.2 origin 4420
      91  "India"          0.05 origin_operator "AIRTEL" origin_circle MH
      91  "India"          0.06 increments 60/6 origin_operator JIO
    }
  }
}
"""


def test_an_inline_table_keyed_by_origin(tmp_path, monkeypatch):
    shutil.copy(ORIGINS / "numbers" / "india-ranges.csv", tmp_path / "ranges.csv")
    (tmp_path / "rules.icd").write_text(INLINE, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    p, _, diags = build([tmp_path / "rules.icd"], root=tmp_path)
    assert p is not None, [str(d) for d in diags]
    cases = [("4930123456", "33145678901", "0.01"), ("12125550100", "33145678901", "0.09"),
             ("442071234567", "33612345678", "0.2"), ("919820111111", "911145678901", "0.05"),
             ("919821000001", "911145678901", "0.06"), ("919810000001", "911145678901", None)]
    records = [rec(i, "P", a, b) for i, (a, b, _) in enumerate(cases)]
    rated, rejects = assert_same(p, records)
    got = {r["id"]: r["rate"] for r in rated.to_pylist()}
    assert [got.get(i) for i in range(len(cases))] == [c[2] for c in cases]
    assert rejects.to_pylist()[0]["detail"] == "no row for b_number 911145678901 holds for a_number 919810000001"


def test_a_bad_origin_word_in_an_inline_row_is_located(tmp_path, monkeypatch):
    (tmp_path / "rules.icd").write_text(INLINE.replace("origin 4420", "origin 44x0").replace(
        'numbers india from "ranges.csv"', ""), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    p, _, diags = build([tmp_path / "rules.icd"], root=tmp_path)
    assert p is None
    assert [(d.code, d.span.line, d.message) for d in diags] == [
        ("E012", 12, "unexpected 'x0' in a rate row")]


def test_the_store_keeps_the_number_tables_as_loaded(tmp_path, monkeypatch):
    """Reference data behind prices is kept by hash (source_files), outside the version's identity."""
    import sqlalchemy as sa

    from icdsl.billing.store import open_store

    monkeypatch.chdir(ROOT)
    p, program, diags = build([ORIGINS], root=ROOT)
    assert p is not None, diags
    store = open_store(f"sqlite:///{tmp_path / 'icdsl.db'}", data_dir=tmp_path / "data")
    try:
        store.load_plan(p, program)
        with store.engine.connect() as c:
            paths = {r[0] for r in c.execute(sa.text("SELECT path FROM source_files"))}
    finally:
        store.close()
    assert {"examples/origins/numbers/india-ranges.csv", "examples/origins/numbers/india-ported.csv",
            "examples/origins/decks/india-termination.csv"} <= paths


def test_a_porting_update_is_no_new_agreement_version(tmp_path, monkeypatch):
    shutil.copytree(ORIGINS, tmp_path / "origins")
    monkeypatch.chdir(tmp_path)
    p1, _, _ = build([tmp_path / "origins"], root=tmp_path)
    with open(tmp_path / "origins" / "numbers" / "india-ported.csv", "a", encoding="utf-8") as f:
        f.write("919820000002,VI,\n")
    p2, _, _ = build([tmp_path / "origins"], root=tmp_path)
    assert [a.source_hash for a in p1.agreements] == [a.source_hash for a in p2.agreements]
    deshi = next(a for a in p2.agreements if a.partner == "DESHI")
    assert len(deshi.services[0].numbers.ported) == 3


LCR = """
use stdlib.zones
partner CUST "Customer" { currency EUR }
partner DELTA "Delta Carrier" { currency EUR }
agreement "Customer" v1 with CUST effective 2026-01-01 .. {
  currency EUR
  inbound voice {
    price by destination {
      33 "France" 0.0100
    }
  }
}
agreement "Delta termination" v1 with DELTA effective 2026-01-01 .. {
  currency EUR
  outbound voice {
    price by destination {
      33 "France" 0.0040
      33 "France" 0.0010 origin_zone EEA
    }
    increments 1/1
  }
}
lcr plain {
  sell CUST
  unmeasured allow
}
"""


def test_least_cost_routing_costs_a_deck_keyed_by_origin_by_its_rows_for_every_origin(tmp_path, monkeypatch):
    import polars as pl

    from icdsl.routing.lcr import build_table

    (tmp_path / "routes.icd").write_text(LCR, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    p, _, diags = build([tmp_path / "routes.icd"], root=tmp_path)
    assert p is not None, [str(d) for d in diags]
    empty = pl.DataFrame(schema={"partner": pl.Utf8, "b_number": pl.Utf8, "start": pl.Utf8, "duration_s": pl.Int64,
                                 "pdd_ms": pl.Int64, "direction": pl.Utf8})
    table = build_table(p, p.lcr_policies[0], date(2026, 3, 2), records=empty)
    ranked = table.ranked("33", table.bands[0])
    assert ranked == [(1, "DELTA", "0.004000", None)]  # the row for every origin, not the EEA cell
