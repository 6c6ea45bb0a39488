"""Least-cost routing (``icdsl lcr``): hand-worked tables, the policy's rules, exports, changes.

The hand-worked project: we sell to CUST (inbound voice, by the second) and buy from three
suppliers. The policy prices a 45 s reference call:

* ALFA: increments 60/60 (a 45 s call is billed 60 s), calendar biz (peak Mon-Fri 08-20).
  33 0.0050 -> 0.0050; 44 peak 0.0100 -> 0.0100, offpeak 0.0040 -> 0.0040.
* BETA: increments 30/6 (45 s -> 30 + 3 x 6 = 48 s), calendar biz.
  33 0.0040 -> 0.0040 x 48/60 = 0.0032; 44 peak 0.0085 + connect 0.0010 -> 0.0010 + 0.0068 =
  0.0078, offpeak 0.0080 -> 0.0010 + 0.0064 = 0.0074; 4477 0.0300 -> 0.0240.
* GAMA: increments 1/1 (45 s), no calendar (every band alike).
  33 0.0030 -> 0.00225; 44 0.0070 -> 0.00525; 447 0.0250 -> 0.01875.
* CUST (sell, 1/1): 33 0.0100 -> 0.0075; 44 0.0200 -> 0.0150; 447 0.0500 -> 0.0375.

Destination 33 has three suppliers: GAMA is blocked for 33, BETA answered 3 of 10 calls (30%,
below the 40% floor), ALFA 5 of 10: ALFA alone. 44: GAMA is cheapest at peak (0.00525 < BETA
0.0078 < ALFA 0.0100) and ALFA off-peak (0.0040 < GAMA 0.00525 < BETA 0.0074). 4477: BETA's
own 4477 row (0.0240) overrides its 44 row (which would have made it the cheapest at peak,
0.0078): ALFA (by its 44) 0.0100 / 0.0040, GAMA (by its 447) 0.01875, BETA 0.0240.
"""

from __future__ import annotations

import contextlib
import os
import random
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from test_billing_store import db_url  # noqa: F401 - the fixture (SQLite, and PostgreSQL when reachable)
from typer.testing import CliRunner

from icdsl.cli.main import app
from icdsl.plan.compiler import build
from icdsl.routing import export
from icdsl.routing.diff import compare, read_previous
from icdsl.routing.lcr import LcrError, build_table, reference_table
from icdsl.routing.quality import measure

DAY = date(2026, 3, 2)

PROJECT = """
partner CUST "Customer" { currency EUR }
partner ALFA "Alfa Carrier" { currency EUR }
partner BETA "Beta Carrier" { currency EUR }
partner GAMA "Gamma Carrier" { currency EUR }

calendar biz timezone "Europe/Paris" {
  peak mon-fri 08:00-20:00
  offpeak otherwise
}

agreement "Customer A-Z" v1 with CUST effective 2026-01-01 .. {
  currency EUR
  inbound voice {
    price by destination {
      33  "France"                0.0100
      44  "United Kingdom"        0.0200
      447 "United Kingdom mobile" 0.0500
    }
    increments 1/1
  }
}

agreement "Alfa termination" v1 with ALFA effective 2026-01-01 .. {
  currency EUR
  calendar biz
  outbound voice {
    price by destination {
      33 "France" peak 0.0050 offpeak 0.0050
      44 "UK"     peak 0.0100 offpeak 0.0040
    }
  }
}

agreement "Beta termination" v1 with BETA effective 2026-01-01 .. {
  currency EUR
  calendar biz
  outbound voice {
    price by destination {
      33   "France"      0.0040
      44   "UK"          peak 0.0085 offpeak 0.0080 connect 0.0010
      4477 "UK Vodafone" 0.0300
    }
    increments 30/6
  }
}

agreement "Gamma termination" v1 with GAMA effective 2026-01-01 .. {
  currency EUR
  outbound voice {
    price by destination {
      33  "France"    0.0030
      44  "UK"        0.0070
      447 "UK mobile" 0.0250
    }
    increments 1/1
  }
}
"""

POLICY = """
lcr hand {
  sell CUST
  reference call 45 s
  minimum calls 5
  minimum asr 40%
  block GAMA for 33
}
"""


def calls() -> pl.DataFrame:
    """ALFA: 10 calls to 33, 5 answered (600 s, PDD 2 s each); BETA: 10 calls to 33, 3
    answered (150 s), and one older call outside the 30-day window."""
    rows = []
    for i, dur in enumerate((120, 0, 0, 0, 0, 100, 140, 130, 110, 0)):
        rows.append(("ALFA", f"3314268530{i}", "2026-02-20T10:00:00Z", dur, 2000 if dur else None))
    for i, dur in enumerate((50, 50, 50, 0, 0, 0, 0, 0, 0, 0)):
        rows.append(("BETA", f"3314268531{i}", "2026-02-21T10:00:00Z", dur, None))
    rows.append(("BETA", "33142685320", "2025-12-21T10:00:00Z", 60, None))
    return pl.DataFrame(rows, schema=["partner", "b_number", "start", "duration_s", "pdd_ms"], orient="row"
                        ).with_columns(pl.lit("outbound").alias("direction"))


def project(tmp_path: Path, policy: str = POLICY, extra: str = "") -> Path:
    (tmp_path / "routes.icd").write_text(PROJECT + extra + policy, encoding="utf-8")
    return tmp_path


def table_of(tmp_path: Path, policy: str = POLICY, extra: str = "", records=None, day: date = DAY):
    with contextlib.chdir(tmp_path):  # spans name files relative to the working folder
        plan, program, diags = build([project(tmp_path, policy, extra)])
    assert plan is not None, diags
    return build_table(plan, plan.lcr_policies[0], day, records=calls() if records is None else records)


def lists(table) -> dict[tuple[str, str], list[tuple]]:
    return {(p, b): table.ranked(p, b) for p in table.destinations["prefix"].to_list() for b in table.bands}


# --------------------------------------------------------------------------- the hand-worked table


def test_hand_worked_ranked_lists(tmp_path):
    t = table_of(tmp_path)
    assert t.bands == ("offpeak", "peak")
    assert lists(t) == {
        # three suppliers: GAMA blocked, BETA below the ASR floor
        ("33", "offpeak"): [(1, "ALFA", "0.005000", None)],
        ("33", "peak"): [(1, "ALFA", "0.005000", None)],
        # the cheapest changes between peak (GAMA) and off-peak (ALFA)
        ("44", "offpeak"): [(1, "ALFA", "0.004000", None), (2, "GAMA", "0.005250", None),
                            (3, "BETA", "0.007400", None)],
        ("44", "peak"): [(1, "GAMA", "0.005250", None), (2, "BETA", "0.007800", None),
                         (3, "ALFA", "0.010000", None)],
        ("447", "offpeak"): [(1, "ALFA", "0.004000", None), (2, "BETA", "0.007400", None),
                             (3, "GAMA", "0.018750", None)],
        ("447", "peak"): [(1, "BETA", "0.007800", None), (2, "ALFA", "0.010000", None),
                          (3, "GAMA", "0.018750", None)],
        # BETA's longer prefix 4477 overrides its 44
        ("4477", "offpeak"): [(1, "ALFA", "0.004000", None), (2, "GAMA", "0.018750", None),
                              (3, "BETA", "0.024000", None)],
        ("4477", "peak"): [(1, "ALFA", "0.010000", None), (2, "GAMA", "0.018750", None),
                           (3, "BETA", "0.024000", None)],
    }
    beta_4477 = t.routes.filter((pl.col("prefix") == "4477") & (pl.col("supplier") == "BETA"))
    assert set(beta_4477["supplier_prefix"]) == {"4477"}
    gama_4477 = t.routes.filter((pl.col("prefix") == "4477") & (pl.col("supplier") == "GAMA"))
    assert set(gama_4477["supplier_prefix"]) == {"447"}


def test_hand_worked_excluded_and_quality(tmp_path):
    t = table_of(tmp_path)
    assert export.excluded_csv(t) == (
        "prefix,band,supplier,agreement,supplier_prefix,rule,cost,reason,calls,asr,acd,pdd\n"
        "33,offpeak,GAMA,Gamma termination v1,33,routes.icd:52:7,0.002250,blocked,,,,\n"
        "33,offpeak,BETA,Beta termination v1,33,routes.icd:40:7,0.003200,asr,10,30.0,50.0,\n"
        "33,peak,GAMA,Gamma termination v1,33,routes.icd:52:7,0.002250,blocked,,,,\n"
        "33,peak,BETA,Beta termination v1,33,routes.icd:40:7,0.003200,asr,10,30.0,50.0,\n"
    )
    assert any("no quality measurement" in n and "'unmeasured allow'" in n for n in t.notes)


EXPECTED_CSV = """\
prefix,destination,band,rank,supplier,agreement,supplier_prefix,rule,currency,rate,cost,cost_per_minute,sell,margin,margin_pct,share,calls,asr,acd,pdd,note
33,France,offpeak,1,ALFA,Alfa termination v1,33,routes.icd:29:7,EUR,0.005000,0.005000,0.006667,0.007500,0.002500,33.33,,10,50.0,120.0,2.0,
33,France,peak,1,ALFA,Alfa termination v1,33,routes.icd:29:7,EUR,0.005000,0.005000,0.006667,0.007500,0.002500,33.33,,10,50.0,120.0,2.0,
44,United Kingdom,offpeak,1,ALFA,Alfa termination v1,44,routes.icd:30:7,EUR,0.004000,0.004000,0.005333,0.015000,0.011000,73.33,,,,,,unmeasured
44,United Kingdom,offpeak,2,GAMA,Gamma termination v1,44,routes.icd:53:7,EUR,0.007000,0.005250,0.007000,0.015000,0.009750,65.0,,,,,,unmeasured
44,United Kingdom,offpeak,3,BETA,Beta termination v1,44,routes.icd:41:7,EUR,0.008000,0.007400,0.009867,0.015000,0.007600,50.67,,,,,,unmeasured
44,United Kingdom,peak,1,GAMA,Gamma termination v1,44,routes.icd:53:7,EUR,0.007000,0.005250,0.007000,0.015000,0.009750,65.0,,,,,,unmeasured
44,United Kingdom,peak,2,BETA,Beta termination v1,44,routes.icd:41:7,EUR,0.008500,0.007800,0.010400,0.015000,0.007200,48.0,,,,,,unmeasured
44,United Kingdom,peak,3,ALFA,Alfa termination v1,44,routes.icd:30:7,EUR,0.010000,0.010000,0.013333,0.015000,0.005000,33.33,,,,,,unmeasured
"""


def test_hand_worked_csv(tmp_path):
    text = export.to_csv(table_of(tmp_path))
    head = "".join(text.splitlines(keepends=True)[:9])
    assert head == EXPECTED_CSV
    # 4477: sold by the sell deck's 447 row (0.0375); BETA's margin 0.0375 - 0.0240 = 0.0135, 36%
    assert ("4477,United Kingdom mobile,peak,3,BETA,Beta termination v1,4477,routes.icd:42:7,EUR,0.030000,0.024000,"
            "0.032000,"
            "0.037500,0.013500,36.0,,,,,,unmeasured\n") in text


EXPECTED_KAMAILIO = """\
-- Kamailio lcr: least-cost routing table of policy 'hand' on 2026-03-02 (icdsl lcr)
-- costs in EUR per minute of a 45 s reference call
-- bands: 1 = offpeak, 2 = peak
-- suppliers: 1 = ALFA, 2 = BETA, 3 = GAMA
-- gw_id is the supplier number above: define those gateways in lcr_gw
INSERT INTO lcr_rule (id, lcr_id, prefix, from_uri, request_uri, mt_tvalue, stopper, enabled) VALUES (1, 1, '33', NULL, NULL, NULL, 1, 1);
INSERT INTO lcr_rule_target (id, lcr_id, rule_id, gw_id, priority, weight) VALUES (1, 1, 1, 1, 0, 1);
INSERT INTO lcr_rule (id, lcr_id, prefix, from_uri, request_uri, mt_tvalue, stopper, enabled) VALUES (2, 1, '44', NULL, NULL, NULL, 1, 1);
INSERT INTO lcr_rule_target (id, lcr_id, rule_id, gw_id, priority, weight) VALUES (2, 1, 2, 1, 0, 1);
INSERT INTO lcr_rule_target (id, lcr_id, rule_id, gw_id, priority, weight) VALUES (3, 1, 2, 3, 1, 1);
INSERT INTO lcr_rule_target (id, lcr_id, rule_id, gw_id, priority, weight) VALUES (4, 1, 2, 2, 2, 1);
INSERT INTO lcr_rule (id, lcr_id, prefix, from_uri, request_uri, mt_tvalue, stopper, enabled) VALUES (3, 1, '447', NULL, NULL, NULL, 1, 1);
INSERT INTO lcr_rule_target (id, lcr_id, rule_id, gw_id, priority, weight) VALUES (5, 1, 3, 1, 0, 1);
INSERT INTO lcr_rule_target (id, lcr_id, rule_id, gw_id, priority, weight) VALUES (6, 1, 3, 2, 1, 1);
INSERT INTO lcr_rule_target (id, lcr_id, rule_id, gw_id, priority, weight) VALUES (7, 1, 3, 3, 2, 1);
INSERT INTO lcr_rule (id, lcr_id, prefix, from_uri, request_uri, mt_tvalue, stopper, enabled) VALUES (4, 1, '4477', NULL, NULL, NULL, 1, 1);
INSERT INTO lcr_rule_target (id, lcr_id, rule_id, gw_id, priority, weight) VALUES (8, 1, 4, 1, 0, 1);
INSERT INTO lcr_rule_target (id, lcr_id, rule_id, gw_id, priority, weight) VALUES (9, 1, 4, 3, 1, 1);
INSERT INTO lcr_rule_target (id, lcr_id, rule_id, gw_id, priority, weight) VALUES (10, 1, 4, 2, 2, 1);
INSERT INTO lcr_rule (id, lcr_id, prefix, from_uri, request_uri, mt_tvalue, stopper, enabled) VALUES (5, 2, '33', NULL, NULL, NULL, 1, 1);
INSERT INTO lcr_rule_target (id, lcr_id, rule_id, gw_id, priority, weight) VALUES (11, 2, 5, 1, 0, 1);
INSERT INTO lcr_rule (id, lcr_id, prefix, from_uri, request_uri, mt_tvalue, stopper, enabled) VALUES (6, 2, '44', NULL, NULL, NULL, 1, 1);
INSERT INTO lcr_rule_target (id, lcr_id, rule_id, gw_id, priority, weight) VALUES (12, 2, 6, 3, 0, 1);
INSERT INTO lcr_rule_target (id, lcr_id, rule_id, gw_id, priority, weight) VALUES (13, 2, 6, 2, 1, 1);
INSERT INTO lcr_rule_target (id, lcr_id, rule_id, gw_id, priority, weight) VALUES (14, 2, 6, 1, 2, 1);
INSERT INTO lcr_rule (id, lcr_id, prefix, from_uri, request_uri, mt_tvalue, stopper, enabled) VALUES (7, 2, '447', NULL, NULL, NULL, 1, 1);
INSERT INTO lcr_rule_target (id, lcr_id, rule_id, gw_id, priority, weight) VALUES (15, 2, 7, 2, 0, 1);
INSERT INTO lcr_rule_target (id, lcr_id, rule_id, gw_id, priority, weight) VALUES (16, 2, 7, 1, 1, 1);
INSERT INTO lcr_rule_target (id, lcr_id, rule_id, gw_id, priority, weight) VALUES (17, 2, 7, 3, 2, 1);
INSERT INTO lcr_rule (id, lcr_id, prefix, from_uri, request_uri, mt_tvalue, stopper, enabled) VALUES (8, 2, '4477', NULL, NULL, NULL, 1, 1);
INSERT INTO lcr_rule_target (id, lcr_id, rule_id, gw_id, priority, weight) VALUES (18, 2, 8, 1, 0, 1);
INSERT INTO lcr_rule_target (id, lcr_id, rule_id, gw_id, priority, weight) VALUES (19, 2, 8, 3, 1, 1);
INSERT INTO lcr_rule_target (id, lcr_id, rule_id, gw_id, priority, weight) VALUES (20, 2, 8, 2, 2, 1);
"""


def test_hand_worked_kamailio(tmp_path):
    assert export.to_kamailio(table_of(tmp_path)) == EXPECTED_KAMAILIO


FS_COLS = ("digits, rate, intrastate_rate, intralata_rate, carrier_id, lead_strip, trail_strip, prefix, suffix, "
           "lcr_profile, date_start, date_end, quality, reliability, cid, enabled")


def test_hand_worked_freeswitch(tmp_path):
    text = export.to_freeswitch(table_of(tmp_path))
    lines = text.splitlines()
    assert lines[:10] == [
        "-- FreeSWITCH mod_lcr: least-cost routing table of policy 'hand' on 2026-03-02 (icdsl lcr)",
        "-- costs in EUR per minute of a 45 s reference call",
        "-- bands: 1 = offpeak, 2 = peak",
        "-- suppliers: 1 = ALFA, 2 = BETA, 3 = GAMA",
        "-- mod_lcr orders each prefix's carriers by rate: the policy's preferences and splits are not kept",
        "INSERT INTO carriers (id, carrier_name, enabled) VALUES (1, 'ALFA', 1);",
        "INSERT INTO carriers (id, carrier_name, enabled) VALUES (2, 'BETA', 1);",
        "INSERT INTO carriers (id, carrier_name, enabled) VALUES (3, 'GAMA', 1);",
        "INSERT INTO lcr_profiles (id, profile_name, order_by, info) VALUES (1, 'offpeak', 'rate', "
        "'icdsl lcr policy hand');",
        "INSERT INTO lcr_profiles (id, profile_name, order_by, info) VALUES (2, 'peak', 'rate', "
        "'icdsl lcr policy hand');",
    ]
    rows = [ln for ln in lines if ln.startswith("INSERT INTO lcr (")]
    assert len(rows) == 20
    # 33 off-peak: ALFA at 0.0050 per 45 s = 0.006667 per minute, ASR 5/10
    assert rows[0] == (f"INSERT INTO lcr ({FS_COLS}) VALUES ('33', 0.006667, 0.006667, 0.006667, 1, 0, 0, '', '', 1, "
                       "'2026-03-02 00:00:00', '9999-12-31 23:59:59', 0.500000, 1, '', 1);")
    # 44 peak: GAMA, BETA, ALFA (0.00525, 0.0078, 0.0100 per 45 s), unmeasured
    peak_44 = [r for r in rows if r.split("VALUES (")[1].startswith("'44'") and ", 2, '2026" in r]
    assert [r.split("VALUES (")[1].split(", ")[1] for r in peak_44] == ["0.007000", "0.010400", "0.013333"]
    assert [r.split("VALUES (")[1].split(", ")[4] for r in peak_44] == ["3", "2", "1"]


def test_reference_call_rule_and_slow_reference_agree(tmp_path):
    """The columnar table and the one-destination-at-a-time Decimal reference agree (no rules)."""
    plan, _, _ = build([project(tmp_path)])
    policy = plan.lcr_policies[0]
    slow = reference_table(plan, policy, DAY)
    fast = build_table(plan, type(policy)(policy.name, reference_s=45), DAY)
    for (p, band), want in slow.items():
        got = [(s, Decimal(c)) for _, s, c, _ in fast.ranked(p, band)]
        assert got == [(s, c.quantize(Decimal("0.000001"))) for s, c in want], (p, band)


# --------------------------------------------------------------------------- the policy's rules


def test_split_and_preferred(tmp_path):
    policy = """
lcr hand {
  sell CUST
  reference call 45 s
  split 44 between GAMA 70%, BETA 30%
  prefer ALFA for 447
}
"""
    t = table_of(tmp_path, policy)
    # the split members share the first place and carry their shares; the others follow by cost
    assert t.ranked("44", "offpeak") == [(1, "BETA", "0.007400", "30"), (1, "GAMA", "0.005250", "70"),
                                         (2, "ALFA", "0.004000", None)]
    # 447 is under the split of 44 (the longest split that matches), ALFA preferred after it
    assert t.ranked("447", "peak") == [(1, "BETA", "0.007800", "30"), (1, "GAMA", "0.018750", "70"),
                                       (2, "ALFA", "0.010000", None)]
    sql = export.to_kamailio(t)
    head = "INSERT INTO lcr_rule_target (id, lcr_id, rule_id, gw_id, priority, weight) VALUES "
    # 44 off-peak (rule 2): BETA and GAMA at priority 0 with weights 30 and 70, then ALFA
    assert f"{head}(4, 1, 2, 2, 0, 30);\n{head}(5, 1, 2, 3, 0, 70);\n{head}(6, 1, 2, 1, 1, 1);\n" in sql
    csv = export.to_csv(t)
    assert ",30,,,,,split\n" in csv and ",,,,,,preferred\n" in csv


def test_cost_and_margin_limits(tmp_path):
    policy = """
lcr hand {
  sell CUST
  reference call 45 s
  maximum cost 0.0300 EUR per minute
  minimum margin 40%
  minimum margin 0.0100 EUR per minute for 4477
}
"""
    t = table_of(tmp_path, policy)
    reasons = {(r["prefix"], r["band"], r["supplier"]): r["reason"] for r in t.excluded.iter_rows(named=True)}
    # 44 peak: sell 0.0150; ALFA 0.0100 is a 33.33% margin (< 40%)
    assert reasons[("44", "peak", "ALFA")] == "margin"
    # 4477: BETA costs 0.0240 per 45 s = 0.032 per minute > 0.0300
    assert reasons[("4477", "peak", "BETA")] == "cost"
    # 4477 (the margin per minute rule, the longest scope): GAMA 0.0375 - 0.01875 = 0.01875 per 45 s
    # = 0.025 per minute >= 0.0100: kept, although 447's GAMA margin is 50% anyway
    assert [s for _, s, _, _ in t.ranked("4477", "peak")] == ["ALFA", "GAMA"]
    # 33: sell 0.0075; ALFA 0.0050 is a 33.33% margin: out; BETA 57.33%, GAMA 70%: kept
    assert reasons[("33", "peak", "ALFA")] == "margin"
    assert t.ranked("33", "peak") == [(1, "GAMA", "0.002250", None), (2, "BETA", "0.003200", None)]
    assert sorted(set(reasons.values())) == ["cost", "margin"]


def test_unmeasured_rules(tmp_path):
    last = POLICY.replace("block GAMA for 33", "block GAMA for 33\n  unmeasured last")
    t = table_of(tmp_path, last, records=calls().filter(pl.col("partner") == "ALFA"))
    # BETA has no calls any more: unmeasured, ranked after the measured ALFA although cheaper
    assert t.ranked("33", "peak") == [(1, "ALFA", "0.005000", None), (2, "BETA", "0.003200", None)]
    block = POLICY.replace("block GAMA for 33", "block GAMA for 33\n  unmeasured block")
    t = table_of(tmp_path, block)
    assert t.ranked("44", "peak") == []
    assert set(t.excluded.filter(pl.col("prefix") == "44")["reason"]) == {"unmeasured"}


def test_fx_and_effective_dates(tmp_path):
    extra = """
partner DELT "Delta Carrier" { currency GBP }
fx ecb {
  EUR/GBP 0.8000 from 2026-01-01
}
agreement "Delta termination" v1 with DELT effective 2026-02-01 .. {
  currency GBP
  outbound voice {
    price by destination {
      44 "UK" 0.0040 until 2026-03-01
      44 "UK" 0.0032 from 2026-03-01
    }
    increments 1/1
  }
}
"""
    policy = POLICY.replace("sell CUST", "sell CUST\n  fx ecb")
    t = table_of(tmp_path, policy, extra)
    # 0.0032 GBP x 45/60 = 0.0024 GBP; 1 GBP = 1 / 0.8 = 1.25 EUR: 0.003000 EUR, the cheapest
    assert t.ranked("44", "peak")[0] == (1, "DELT", "0.003000", None)
    assert any(s.code == "DELT" and "1 GBP = 1.25" in s.fx for s in t.suppliers)
    before = table_of(tmp_path, policy, extra, day=date(2026, 2, 15))
    assert before.ranked("44", "peak")[0] == (1, "DELT", "0.003750", None)
    # before Delta's agreement starts it is not a supplier
    jan = table_of(tmp_path, policy, extra, day=date(2026, 1, 15))
    assert "DELT" not in {s.code for s in jan.suppliers}


def test_fx_missing_is_a_located_error(tmp_path):
    extra = """
partner DELT "Delta Carrier" { currency GBP }
agreement "Delta termination" v1 with DELT effective 2026-02-01 .. {
  currency GBP
  outbound voice { price by destination { 44 "UK" 0.0040 } }
}
"""
    with pytest.raises(LcrError) as err:
        table_of(tmp_path, POLICY, extra)
    assert "a supplier prices in GBP but the policy compares in EUR" in str(err.value)
    assert "routes.icd:" in str(err.value) and "fx NAME" in str(err.value)


# --------------------------------------------------------------------------- quality


def test_quality_measure_answered_words_and_pdd_seconds():
    records = pl.DataFrame({
        "partner": ["X", "X", "X", "X"], "direction": ["outbound"] * 3 + ["inbound"],
        "b_number": ["4420", "4421", "4477", "4478"], "duration_s": [30, 0, 12, 99],
        "answered": ["ANSWERED", "BUSY", None, "yes"], "pdd_s": ["1.5", None, "2.25", "9"],
    })
    got = measure(records, ["44", "447"])
    assert got.rows() == [("X", "44", 3, 2, 42, 3750, 2), ("X", "447", 1, 1, 12, 2250, 1)]


# --------------------------------------------------------------------------- changes and the command


def test_changes_against_previous(tmp_path):
    t = table_of(tmp_path)
    old = tmp_path / "old.csv"
    old.write_text(export.to_csv(t), encoding="utf-8")
    assert compare(read_previous(old), t) == []
    # GAMA's 447 cheaper (0.0100 x 45/60 = 0.0075), GAMA blocked for 4477 too, a new sold 4478
    cheaper = PROJECT.replace('447 "UK mobile" 0.0250', '447 "UK mobile" 0.0100').replace(
        '447 "United Kingdom mobile" 0.0500', '447 "United Kingdom mobile" 0.0500\n      4478 "UK other" 0.0400')
    (tmp_path / "routes.icd").write_text(cheaper + POLICY.replace("block GAMA for 33", "block GAMA for 33, 4477"),
                                         encoding="utf-8")
    plan, _, _ = build([tmp_path / "routes.icd"])
    now = build_table(plan, plan.lcr_policies[0], DAY, records=calls())
    changes = compare(read_previous(old), now)
    assert [str(c) for c in changes] == CHANGES
    partial = tmp_path / "partial.csv"
    partial.write_text("".join(old.read_text().splitlines(keepends=True)[:3]), encoding="utf-8")
    added = compare(read_previous(partial), t)
    assert {c.kind for c in added} == {"added"} and len(added) == 6
    extra = tmp_path / "extra.csv"
    extra.write_text(old.read_text() + "999,Nowhere,peak,1,ALFA,x,999,EUR,1,1,1,,,,,,,,,\n", encoding="utf-8")
    assert [str(c) for c in compare(read_previous(extra), t)] == ["removed   999 peak: ALFA 1"]


CHANGES = [
    "repriced  447 offpeak: ALFA 0.004000 > BETA 0.007400 > GAMA 0.018750  ->  "
    "ALFA 0.004000 > BETA 0.007400 > GAMA 0.007500",
    "reranked  447 peak: BETA 0.007800 > ALFA 0.010000 > GAMA 0.018750  ->  "
    "GAMA 0.007500 > BETA 0.007800 > ALFA 0.010000",
    "reranked  4477 offpeak: ALFA 0.004000 > GAMA 0.018750 > BETA 0.024000  ->  ALFA 0.004000 > BETA 0.024000",
    "reranked  4477 peak: ALFA 0.010000 > GAMA 0.018750 > BETA 0.024000  ->  ALFA 0.010000 > BETA 0.024000",
    "added     4478 offpeak: ALFA 0.004000 > BETA 0.007400 > GAMA 0.007500",
    "added     4478 peak: GAMA 0.007500 > BETA 0.007800 > ALFA 0.010000",
]


@pytest.mark.parametrize(("text", "message"), [
    ("prefix,band,supplier\n44,peak,ALFA\n", "old.csv:1: the previous table has no column rank, cost"),
    ("prefix,band,rank,supplier,cost\n44,peak,1,ALFA,0.1\n44,peak,x,BETA,0.2\n",
     "old.csv:3: rank 'x' is not a whole number from 1"),
])
def test_previous_table_is_hostile_input(tmp_path, text, message):
    old = tmp_path / "old.csv"
    old.write_text(text, encoding="utf-8")
    with pytest.raises(LcrError) as err:
        read_previous(old)
    assert message in str(err.value)


def test_command(tmp_path, monkeypatch):
    project(tmp_path)
    monkeypatch.chdir(tmp_path)
    calls().write_csv(tmp_path / "calls.csv")
    runner = CliRunner()
    res = runner.invoke(app, ["lcr", "--date", "2026-03-02", "--records", "calls.csv", "--format", "kamailio",
                              "-o", "k.sql"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "k.sql").read_text() == EXPECTED_KAMAILIO
    res = runner.invoke(app, ["lcr", "--date", "2026-03-02", "--records", "calls.csv", "--format", "csv",
                              "-o", "t.csv", "--excluded", "x.csv"])
    assert res.exit_code == 0
    assert "wrote t.csv: 20 routes for 8 destinations, 2 band(s), 3 supplier(s)" in res.stdout
    assert (tmp_path / "t.csv").read_text().startswith(EXPECTED_CSV)
    assert (tmp_path / "x.csv").read_text().count("\n") == 5
    res = runner.invoke(app, ["lcr", "--date", "2026-03-02", "--records", "calls.csv", "--previous", "t.csv"])
    assert res.exit_code == 0
    assert "44       peak     United Kingdom           GAMA 0.005250 (0.007000) > BETA" in res.stdout
    assert "0 added, 0 removed, 0 reranked, 0 repriced" in res.output
    res = runner.invoke(app, ["lcr", "--date", "2026-03-02", "--policy", "hnad"])
    assert res.exit_code == 2 and "no lcr policy 'hnad': did you mean 'hand'?" in res.output
    res = runner.invoke(app, ["lcr", "--date", "2026-13-02"])
    assert res.exit_code == 2 and "is not a date" in res.output


# --------------------------------------------------------------------------- against the slow reference, random decks


@pytest.mark.parametrize("seed", [7, 11, 23])
def test_random_decks_agree_with_the_reference(tmp_path, seed):
    """Random nested decks, some on a peak/off-peak calendar, some rows dated (replaced on
    2026-03-01 or withdrawn), mixed increments and connect fees: the columnar table and the
    one-destination-at-a-time Decimal reference give the same ranked costs."""
    rnd = random.Random(seed)
    parts = ['calendar biz timezone "Europe/Paris" {\n  peak mon-fri 08:00-20:00\n  offpeak otherwise\n}']
    for s in range(4):
        banded = s % 2 == 0
        rows = []
        for p in sorted({"".join(rnd.choice("1234") for _ in range(rnd.randint(1, 4))) for _ in range(40)}):
            def price():
                return f"{Decimal(rnd.randint(1, 500)) / 10000}"
            value = f"peak {price()} offpeak {price()}" if banded and rnd.random() < 0.7 else price()
            fee = f" connect {Decimal(rnd.randint(1, 20)) / 10000}" if rnd.random() < 0.3 else ""
            kind = rnd.random()
            if kind < 0.15:  # replaced on 2026-03-01
                rows.append(f'      {p} "D{p}" {price()}{fee} until 2026-03-01')
                rows.append(f'      {p} "D{p}" {value}{fee} from 2026-03-01')
            elif kind < 0.25:  # withdrawn before the day
                rows.append(f'      {p} "D{p}" {value}{fee} until 2026-02-01')
            else:
                rows.append(f'      {p} "D{p}" {value}{fee}')
        inc = rnd.choice(["1/1", "60/60", "30/6", "60/1"])
        parts.append(f"""
partner S{s} "Supplier {s}" {{ currency EUR }}
agreement "S{s}" v1 with S{s} effective 2026-01-01 .. {{
  currency EUR
  {"calendar biz" if banded else ""}
  outbound voice {{
    price by destination {{
{chr(10).join(rows)}
    }}
    increments {inc}
    connect fee {Decimal(rnd.randint(0, 20)) / 10000} EUR
  }}
}}""")
    (tmp_path / "r.icd").write_text("\n".join(parts) + "\nlcr r { reference call 37 s }\n", encoding="utf-8")
    plan, _, diags = build([tmp_path / "r.icd"])
    assert plan is not None, diags
    policy = plan.lcr_policies[0]
    fast = build_table(plan, policy, DAY)
    slow = reference_table(plan, policy, DAY)
    assert len(slow) == fast.destinations.height * len(fast.bands)
    for (p, band), want in slow.items():
        got = [(s, c) for _, s, c, _ in fast.ranked(p, band)]
        assert got == [(s, f"{c.quantize(Decimal('0.000001'))}") for s, c in want], (p, band)


# --------------------------------------------------------------------------- quality from the store


def test_quality_from_the_stores_intake(tmp_path, db_url):  # noqa: F811 - the fixture
    """Outbound CDRs ingested with `answered` and `pdd_ms` extra columns are read back for the
    window and measured: ALFA 2 answered of 3 to 33 (PDD 1.5 s over 2), BETA none."""
    from icdsl.billing.routing import outbound_records
    from icdsl.billing.store import open_store

    traffic = tmp_path / "cdrs.csv"
    traffic.write_text(
        "id,partner,direction,service,a_number,b_number,start,duration_s,answered,pdd_ms\n"
        "c1,ALFA,outbound,voice,33170000001,33142685300,2026-02-20T10:00:00Z,61,ANSWERED,1000\n"
        "c2,ALFA,outbound,voice,33170000001,33142685301,2026-02-20T10:05:00Z,30,ANSWERED,2000\n"
        "c3,ALFA,outbound,voice,33170000001,33142685302,2026-02-20T10:06:00Z,0,BUSY,\n"
        "c4,BETA,outbound,voice,33170000001,33142685303,2026-02-20T10:07:00Z,0,NO ANSWER,\n"
        "c5,ALFA,outbound,voice,33170000001,33142685304,2025-11-20T10:07:00Z,99,ANSWERED,500\n"
        "c6,ALFA,inbound,voice,33142685300,33170000001,2026-02-20T10:07:00Z,99,ANSWERED,500\n",
        encoding="utf-8")
    plan, _, _ = build([project(tmp_path)])
    store = open_store(db_url, data_dir=tmp_path / "data")
    try:
        store.ingest(traffic, None, plan)
        records = outbound_records(store, DAY, 30)
    finally:
        store.close()
    assert records is not None and records.num_rows == 4
    got = measure(records, ["33", "331"], DAY, 30)
    assert got.rows() == [("ALFA", "33", 3, 2, 91, 3000, 2), ("ALFA", "331", 3, 2, 91, 3000, 2),
                          ("BETA", "33", 1, 0, 0, 0, 0), ("BETA", "331", 1, 0, 0, 0, 0)]
    t = build_table(plan, plan.lcr_policies[0], DAY, records=records)
    # ALFA 2/3 = 66.7% passes the 40% floor but has 3 calls < minimum calls 5: unmeasured, allowed
    assert t.ranked("33", "peak") == [(1, "BETA", "0.003200", None), (2, "ALFA", "0.005000", None)]
    shown = export.display_frame(t).filter(pl.col("prefix") == "33")
    assert shown.select("supplier", "calls", "asr", "pdd", "note").rows()[:2] == [
        ("BETA", "1", "0.0", "", "unmeasured"), ("ALFA", "3", "66.7", "1.5", "unmeasured")]


def test_the_benchmark_runs_at_a_small_size(tmp_path):
    """tests/benchmarks/bench_lcr.py's workload, small: the table is checked against the slow
    reference on a sample of destinations before it would be timed."""
    import importlib.util

    path = Path(__file__).parent / "benchmarks" / "bench_lcr.py"
    spec = importlib.util.spec_from_file_location("bench_lcr", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    got = bench.run(sell=400, suppliers=3, deck=200, folder=tmp_path)
    assert got["checked_against_reference"] == 40
    assert got["routes"] > 0 and got["excluded"] > 0 and got["bands"] == ["offpeak", "peak"]


KAMAILIO_SCHEMA = Path("/usr/share/kamailio/db_sqlite/lcr-create.sql")  # Debian's kamailio-sqlite-modules


def test_kamailio_export_loads_into_kamailios_own_tables(tmp_path):
    """The export runs against the lcr tables as Kamailio's package creates them (their unique
    keys included), and Kamailio's order (the longest prefix with a stopper rule, then priority)
    gives the hand-worked lists back."""
    if not KAMAILIO_SCHEMA.exists():
        reason = "Kamailio's lcr schema is not installed (apt-get install kamailio-sqlite-modules)"
        if os.environ.get("ICDSL_REQUIRE_KAMAILIO"):
            pytest.fail(f"{reason}; .ci/run installs it and sets ICDSL_REQUIRE_KAMAILIO=1")
        pytest.skip(reason)
    import sqlite3

    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE version (table_name VARCHAR(32) NOT NULL, table_version INTEGER DEFAULT 0 NOT NULL)")
    db.executescript(KAMAILIO_SCHEMA.read_text())
    db.executescript(export.to_kamailio(table_of(tmp_path)))

    def route(number: str, lcr_id: int) -> list[int]:
        rule = db.execute("SELECT id FROM lcr_rule WHERE lcr_id = ? AND ? LIKE prefix || '%' AND enabled = 1 "
                          "ORDER BY length(prefix) DESC LIMIT 1", (lcr_id, number)).fetchone()
        return [gw for (gw,) in db.execute("SELECT gw_id FROM lcr_rule_target WHERE rule_id = ? "
                                            "ORDER BY priority, gw_id", rule)]

    # lcr_id 2 = peak, gateways 1 ALFA, 2 BETA, 3 GAMA
    assert route("447712345678", 2) == [1, 3, 2]  # 4477: ALFA, GAMA, BETA
    assert route("447912345678", 2) == [2, 1, 3]  # 447: BETA, ALFA, GAMA
    assert route("442012345678", 1) == [1, 3, 2]  # 44 off-peak: ALFA, GAMA, BETA
    assert db.execute("SELECT count(*) FROM lcr_rule_target").fetchone() == (20,)


def test_a_split_member_left_out_and_routes(tmp_path):
    policy = """
lcr hand {
  sell CUST
  reference call 45 s
  routes 2
  split 44 between GAMA 70%, BETA 30%
  block BETA for 4477
}
"""
    t = table_of(tmp_path, policy)
    # 4477: BETA blocked, GAMA keeps the first place alone with its weight; two routes at most
    assert t.ranked("4477", "peak") == [(1, "GAMA", "0.018750", "70"), (2, "ALFA", "0.010000", None)]
    # 44: the two split members at rank 1, then ALFA at rank 2
    assert [r[:2] for r in t.ranked("44", "peak")] == [(1, "BETA"), (1, "GAMA"), (2, "ALFA")]
    assert t.excluded.filter(pl.col("prefix") == "4477")["reason"].unique().to_list() == ["blocked"]


def test_bad_call_records_are_located_errors(tmp_path, monkeypatch):
    project(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.csv").write_text("partner,direction,b_number,start,duration_s\n"
                                      "ALFA,outbound,3314,2026-02-20T10:00:00Z,10\n"
                                      "ALFA,outbound,3315,yesterday,10\n", encoding="utf-8")
    (tmp_path / "nocol.csv").write_text("partner,direction,number,start,duration_s\n", encoding="utf-8")
    (tmp_path / "dur.csv").write_text("partner,direction,b_number,start,duration_s\n"
                                      "ALFA,outbound,3314,2026-02-20T10:00:00Z,ten\n", encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(app, ["lcr", "--date", "2026-03-02", "--records", "bad.csv"])
    assert res.exit_code == 1
    assert "error: the call records bad.csv: line 3: start 'yesterday' is not a timestamp (1 such records)" in res.output
    res = runner.invoke(app, ["lcr", "--date", "2026-03-02", "--records", "nocol.csv"])
    assert res.exit_code == 1 and "have no column b_number" in res.output
    res = runner.invoke(app, ["lcr", "--date", "2026-03-02", "--records", "dur.csv"])
    assert res.exit_code == 1 and "error: line 2: duration_s 'ten' is not a whole number" in res.output


def test_a_flat_priced_supplier_and_the_suppliers_list(tmp_path):
    extra = """
partner FLAT "Flat Carrier" { currency EUR }
agreement "Flat termination" v1 with FLAT effective 2026-01-01 .. {
  currency EUR
  outbound voice {
    price 0.0045 EUR per minute
    connect fee 0.0010 EUR
  }
}
"""
    policy = "lcr only { reference call 45 s\n  suppliers ALFA, FLAT }\n"
    t = table_of(tmp_path, policy, extra)
    assert [s.code for s in t.suppliers] == ["ALFA", "FLAT"]
    # FLAT covers every destination (the empty prefix): 0.0010 + 0.0045 x 60/60 = 0.0055
    assert t.ranked("44", "offpeak") == [(1, "ALFA", "0.004000", None), (2, "FLAT", "0.005500", None)]
    assert t.ranked("44", "peak") == [(1, "FLAT", "0.005500", None), (2, "ALFA", "0.010000", None)]
    assert t.ranked("33", "peak") == [(1, "ALFA", "0.005000", None), (2, "FLAT", "0.005500", None)]
    # no sell deck, BETA and GAMA not suppliers: the destinations are ALFA's prefixes alone
    assert t.destinations["prefix"].to_list() == ["33", "44"]


def test_a_price_too_large_to_route_is_a_located_error(tmp_path):
    extra = """
partner HUGE "Huge Carrier" { currency EUR }
agreement "Huge" v1 with HUGE effective 2026-01-01 .. {
  currency EUR
  outbound voice { price by destination { 44 "UK" 99999999999999 } }
}
"""
    with pytest.raises(LcrError) as err:
        table_of(tmp_path, POLICY, extra)
    assert "HUGE: a price of 99999999999999 per minute cannot be routed" in str(err.value)
    assert "routes.icd:" in str(err.value)
