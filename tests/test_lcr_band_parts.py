"""LCR and margins with per-band tariff parts and fallback price lists, worked out by hand.

We sell France (33) at 0.0100 and the UK (44) at 0.0200 per minute by the second. Two suppliers,
both on the Paris peak/off-peak calendar, compared on a 45 s reference call:

* DELTA prices 33 at peak 0.0060, off-peak 0.0030, and its service says ``band peak { connect
  fee 0.0020 EUR increments 60/60 }``, ``band offpeak { increments 1/1 }``. Its own deck has no
  UK row: ``fallback from deck "decks/public.csv"`` prices 44 at 0.0090 and 447 at 0.0200 (and
  33 at 0.9000, never used: DELTA's own deck holds 33).
* ECHO prices 33 at 0.0070 and 44 at 0.0100 in every band, increments 1/1, no fee.

====  ========  ===========================================  ====================================
dest  band      DELTA                                        ECHO
====  ========  ===========================================  ====================================
33    peak      0.0020 + 0.0060 x 60/60 = 0.008000           0.0070 x 45/60 = 0.005250   (first)
33    offpeak   0.0030 x 45/60 = 0.002250  (first)           0.005250
44    peak      fallback: 0.0020 + 0.0090 x 60/60 = 0.011    0.0100 x 45/60 = 0.007500   (first)
44    offpeak   fallback: 0.0090 x 45/60 = 0.006750 (first)  0.007500
447   peak      fallback 447: 0.0020 + 0.0200 = 0.022000     its 44: 0.007500            (first)
447   offpeak   fallback 447: 0.0200 x 45/60 = 0.015000      0.007500                    (first)
====  ========  ===========================================  ====================================

Without the band parts DELTA's peak France would cost 0.0060 x 45/60 = 0.0045 and wrongly come
first; without the fallback list DELTA would have no UK route at all.
"""

from __future__ import annotations

import contextlib
import random
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from icdsl.plan.compiler import build
from icdsl.rating.batch import rate_batch, rate_units
from icdsl.routing import margin as margin_module
from icdsl.routing.export import to_csv
from icdsl.routing.lcr import build_table, reference_table
from icdsl.routing.margin import margins, sold

RULES = """
partner CUST "Customer" { currency EUR }
partner DELTA "Delta Carrier" { currency EUR }
partner ECHO "Echo Carrier" { currency EUR }

calendar biz timezone "Europe/Paris" {
  peak mon-fri 08:00-20:00
  offpeak otherwise
}

agreement "Customer A-Z" v1 with CUST effective 2026-01-01 .. {
  currency EUR
  inbound voice {
    price by destination {
      33 "France"         0.0100
      44 "United Kingdom" 0.0200
    }
    increments 1/1
  }
}

agreement "Delta termination" v1 with DELTA effective 2026-01-01 .. {
  currency EUR
  calendar biz
  outbound voice {
    price by destination {
      33 "France" peak 0.0060 offpeak 0.0030
    }
    fallback from deck "decks/public.csv"
    increments 1/1
    band peak {
      connect fee 0.0020 EUR
      increments 60/60
    }
    band offpeak {
      increments 1/1
    }
  }
}

agreement "Echo termination" v1 with ECHO effective 2026-01-01 .. {
  currency EUR
  calendar biz
  outbound voice {
    price by destination {
      33 "France" 0.0070
      44 "UK"     0.0100
    }
    increments 1/1
  }
}

lcr parts {
  sell CUST
  reference call 45 s
}
"""

PUBLIC = "prefix,destination,rate\n33,France other,0.9000\n44,UK,0.0090\n447,UK mobile,0.0200\n"
DAY = date(2026, 3, 2)
PEAK = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # 11:00 in Paris, a Monday
OFFPEAK = datetime(2026, 3, 2, 22, 0, tzinfo=UTC)  # 23:00 in Paris


def plan_of(tmp_path: Path):
    (tmp_path / "decks").mkdir()
    (tmp_path / "decks" / "public.csv").write_text(PUBLIC, encoding="utf-8")
    (tmp_path / "rules.icd").write_text(RULES, encoding="utf-8")
    with contextlib.chdir(tmp_path):
        plan, _, diags = build([tmp_path])
    assert plan is not None, [str(d) for d in diags]
    return plan


def test_ranked_lists_use_the_bands_fee_and_increments_and_the_fallback_list(tmp_path):
    plan = plan_of(tmp_path)
    table = build_table(plan, plan.lcr_policies[0], DAY)
    got = {(p, b): [(s, c) for _, s, c, _ in table.ranked(p, b)] for p in ("33", "44", "447")
           for b in ("peak", "offpeak")}
    assert got == {
        ("33", "peak"): [("ECHO", "0.005250"), ("DELTA", "0.008000")],
        ("33", "offpeak"): [("DELTA", "0.002250"), ("ECHO", "0.005250")],
        ("44", "peak"): [("ECHO", "0.007500"), ("DELTA", "0.011000")],
        ("44", "offpeak"): [("DELTA", "0.006750"), ("ECHO", "0.007500")],
        ("447", "peak"): [("ECHO", "0.007500"), ("DELTA", "0.022000")],
        ("447", "offpeak"): [("ECHO", "0.007500"), ("DELTA", "0.015000")],
    }
    # the fallback rows are shown as such, with the fallback deck's line; DELTA's own 33 wins
    delta = table.routes.filter(table.routes["supplier"] == "DELTA").sort("prefix", "band")
    assert [(r["prefix"], r["band"], r["supplier_prefix"], r["fallback"]) for r in delta.iter_rows(named=True)] == [
        ("33", "offpeak", "33", False), ("33", "peak", "33", False),
        ("44", "offpeak", "44", True), ("44", "peak", "44", True),
        ("447", "offpeak", "447", True), ("447", "peak", "447", True),
    ]
    rules = {r["prefix"]: r["rule"] for r in delta.iter_rows(named=True)}
    assert rules["44"].endswith("public.csv:3:1") and rules["447"].endswith("public.csv:4:1")
    assert "rules.icd" in rules["33"]
    line = next(x for x in to_csv(table).splitlines() if x.startswith("44,") and ",offpeak,1,DELTA," in x)
    assert line.rstrip().endswith("fallback"), line


def test_margins_cost_each_record_with_its_bands_parts_and_the_fallback(tmp_path, monkeypatch):
    plan = plan_of(tmp_path)
    traffic = pa.table({
        "id": ["m1", "m2", "m3", "m4"], "partner": ["CUST"] * 4, "direction": ["inbound"] * 4,
        "service": ["voice"] * 4, "b_number": ["33142685300", "442012345678", "33142685301", "442012345679"],
        "supplier": ["DELTA", "DELTA", "", ""],
        "start": pa.array([PEAK, PEAK, OFFPEAK, OFFPEAK], type=pa.timestamp("us", tz="UTC")),
        "duration_s": [45] * 4,
    })
    rated, rejects = rate_batch(plan, traffic.drop_columns(["supplier"]))
    assert rejects.num_rows == 0
    m = margins(plan, sold(rated, traffic), plan.lcr_policies[0])
    dec = lambda n: Decimal(int(n)) / 10**9  # noqa: E731
    got = {r["id"]: (r["supplier"], r["chosen_by"], r["from_fallback"], dec(r["revenue_n"]), dec(r["cost_n"]),
                     dec(r["margin_n"])) for r in m.records.iter_rows(named=True)}
    assert got == {
        # peak: the band's fee 0.0020 and 60/60: 0.0020 + 0.0060 x 60/60
        "m1": ("DELTA", "record", False, Decimal("0.0075"), Decimal("0.008"), Decimal("-0.0005")),
        # DELTA's own deck has no UK row: its fallback list's 44 at 0.0090, with the peak band's parts
        "m2": ("DELTA", "record", True, Decimal("0.015"), Decimal("0.011"), Decimal("0.004")),
        # off-peak, no supplier named: the LCR's off-peak first choice for 33 is DELTA, 45 s at 0.0030
        "m3": ("DELTA", "lcr", False, Decimal("0.0075"), Decimal("0.00225"), Decimal("0.00525")),
        # off-peak 44: DELTA from its fallback list, 0.0090 x 45/60
        "m4": ("DELTA", "lcr", True, Decimal("0.015"), Decimal("0.00675"), Decimal("0.00825")),
    }
    t = m.totals()
    assert (dec(t["revenue_n"]), dec(t["cost_n"]), dec(t["margin_n"])) == (
        Decimal("0.045"), Decimal("0.028"), Decimal("0.017"))
    assert any("fallback" in n for n in m.notes)
    # in slices (as 10M records are): the same records, the same notes
    monkeypatch.setattr(margin_module, "CHUNK", 3)
    again = margins(plan, sold(rated, traffic), plan.lcr_policies[0])
    assert again.records.equals(m.records) and again.notes == m.notes


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_band_parts_and_fallbacks_agree_with_the_reference(tmp_path, seed):
    """Random nested decks on a peak/off-peak calendar with random ``band`` parts (fee,
    increments) and inline fallback lists: the columnar table gives the one-destination-at-a-time
    Decimal reference's ranked costs."""
    rnd = random.Random(seed)

    def price() -> str:
        return f"{Decimal(rnd.randint(1, 500)) / 10000}"

    def rows(n: int) -> str:
        out = []
        for p in sorted({"".join(rnd.choice("1234") for _ in range(rnd.randint(1, 4))) for _ in range(n)}):
            fee = f" connect {Decimal(rnd.randint(1, 20)) / 10000}" if rnd.random() < 0.2 else ""
            inc = f" increments {rnd.choice(['1/1', '60/60', '30/6'])}" if rnd.random() < 0.2 else ""
            out.append(f'      {p} "D{p}" peak {price()} offpeak {price()}{fee}{inc}')
        return "\n".join(out)

    parts = ['calendar biz timezone "Europe/Paris" {\n  peak mon-fri 08:00-20:00\n  offpeak otherwise\n}']
    for s in range(4):
        bands = ""
        for band in ("peak", "offpeak"):
            said = ([f"connect fee {Decimal(rnd.randint(0, 30)) / 10000} EUR"] if rnd.random() < 0.6 else []) + \
                   ([f"increments {rnd.choice(['1/1', '60/60', '30/6', '60/1'])}"] if rnd.random() < 0.6 else [])
            if said:
                bands += f"    band {band} {{\n" + "".join(f"      {x}\n" for x in said) + "    }\n"
        fallback = f"    fallback {{\n{rows(15)}\n    }}\n" if s % 2 == 0 else ""
        parts.append(f"""
partner S{s} "Supplier {s}" {{ currency EUR }}
agreement "S{s}" v1 with S{s} effective 2026-01-01 .. {{
  currency EUR
  calendar biz
  outbound voice {{
    price by destination {{
{rows(25)}
    }}
{fallback}    increments {rnd.choice(["1/1", "60/60", "30/6"])}
    connect fee {Decimal(rnd.randint(0, 20)) / 10000} EUR
{bands}  }}
}}""")
    (tmp_path / "r.icd").write_text("\n".join(parts) + "\nlcr r { reference call 37 s }\n", encoding="utf-8")
    plan, _, diags = build([tmp_path / "r.icd"])
    assert plan is not None, [str(d) for d in diags]
    assert any(sp.band_parts for a in plan.agreements for sp in a.services)
    assert any(sp.rates.fallback is not None for a in plan.agreements for sp in a.services)
    policy = plan.lcr_policies[0]
    fast = build_table(plan, policy, DAY)
    slow = reference_table(plan, policy, DAY)
    assert len(slow) == fast.destinations.height * len(fast.bands)
    for (p, band), want in slow.items():
        got = [(s, c) for _, s, c, _ in fast.ranked(p, band)]
        assert got == [(s, f"{c.quantize(Decimal('0.000001'))}") for s, c in want], (p, band)


def test_rate_units_agree_with_rate_batch_and_skip_leaves_records_alone(tmp_path):
    """The costing's entry point (integer amounts, no rated table) gives rate_batch's amounts,
    prefixes and rejects record for record; skipped records are neither rated nor rejected."""
    plan = plan_of(tmp_path)
    calls = pa.table({
        "id": [f"c{i}" for i in range(6)], "partner": ["DELTA", "DELTA", "ECHO", "ECHO", "NOPE", "DELTA"],
        "direction": ["outbound"] * 6, "service": ["voice"] * 6,
        "b_number": ["33142685300", "447700900123", "33142685300", "8112345678", "33142685300", "442012345678"],
        "start": pa.array([PEAK, OFFPEAK, PEAK, PEAK, PEAK, PEAK], type=pa.timestamp("us", tz="UTC")),
        "duration_s": [45, 61, 45, 45, 45, 0],
    })
    rated, rejects = rate_batch(plan, calls)
    u = rate_units(plan, calls)
    ok = [i for i in range(6) if u.ok[i]]
    assert [calls["id"][i].as_py() for i in ok] == rated["id"].to_pylist()
    scale = [Decimal(10) ** -u.groups[u.group[i]].precision for i in ok]
    assert [Decimal(int(u.amount[i])) * s for i, s in zip(ok, scale, strict=True)] == rated["amount"].to_pylist()
    assert [u.groups[u.group[i]].prefixes[int(u.row[i])].as_py() for i in ok] == \
        [str(p) for p in rated["prefix"].to_pylist()]
    assert u.rejects["id"].to_pylist() == rejects["id"].to_pylist()
    assert u.rejects["reason"].to_pylist() == rejects["reason"].to_pylist()
    assert {"c3", "c4"} <= set(u.rejects["id"].to_pylist())  # ECHO has no 81 row; NOPE is no partner
    skip = np.array([False, False, False, True, True, False])
    s = rate_units(plan, calls, skip=skip)
    assert not s.ok[skip].any() and list(s.ok[~skip]) == list(u.ok[~skip])
    assert "c3" not in s.rejects["id"].to_pylist() and "c4" not in s.rejects["id"].to_pylist()
