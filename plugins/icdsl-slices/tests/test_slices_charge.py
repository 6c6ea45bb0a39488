"""The network_slice charge type: its diagnostics, its plan, the example month worked by hand,
SLA credits at the edges, and records rated through both executors (icdsl.testing)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D
from pathlib import Path

import icdsl_slices
import pytest
from icdsl_slices.charge import NetworkSlice

from icdsl.charges.context import EventRecord
from icdsl.plan.model import Price
from icdsl.plugins import charge_types
from icdsl.testing import PluginKit, event_types

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE = (EXAMPLES / "slices.icd").read_text(encoding="utf-8")
USAGE = EXAMPLES / "slice_usage.csv"


@pytest.fixture(scope="module")
def kit():
    return PluginKit(icdsl_slices)


def rules(body: str, *, currency: str = "EUR", start: str = "2026-01-01") -> str:
    return f"""partner ORFR "Orange France" {{
  currency {currency}
  timezone "Europe/Paris"
}}

agreement "Slices" v1 with ORFR effective {start} .. {{
  outbound data {{
    price 0.0040 EUR per MB
  }}

  charge network_slice "5G slices" {{
{body}
  }}
}}
"""


def events(*items: tuple[str, int], day: date = date(2026, 3, 2)) -> list[EventRecord]:
    return [EventRecord(f"e{i}", name, day, units) for i, (name, units) in enumerate(items)]


def lines_of(got) -> list[tuple[str, D]]:
    return [(ln.description.split(": ", 1)[1], ln.amount) for ln in got]


# --------------------------------------------------------------------------- the plugin


def test_the_plugin_registers_its_charge_type(kit):
    assert icdsl_slices.ICDSL_HOOK_API == 1
    assert kit.pm.problems == []
    assert isinstance(charge_types(kit.pm)["network_slice"], NetworkSlice)


def test_the_example_compiles_to_plain_parameters(kit):
    plan = kit.build(EXAMPLE)
    (charge,) = plan.agreements[0].charges
    assert charge.kind == "network_slice" and charge.name == "5G network slices"
    assert charge.param("embb") == (("price", Price(D("0.50"), "EUR", "hour")), ("availability", D("99.9")),
                                    ("credit", D("10")))
    assert charge.param("urllc") == (("price", Price(D("2.00"), "EUR", "hour")), ("availability", D("99.99")),
                                     ("credit", D("25")))
    # no SLA for mMTC; the default credit is 10%
    assert charge.param("mmtc") == (("price", Price(D("0.02"), "EUR", "hour")), ("availability", None),
                                    ("credit", D("10")))
    assert charge.param("option:stream") == "fees"
    assert event_types(plan, kit.pm) == ["slice_embb", "slice_embb_downtime", "slice_urllc",
                                         "slice_urllc_downtime", "slice_mmtc", "slice_mmtc_downtime"]


# --------------------------------------------------------------------------- the example month


def test_the_example_month_worked_by_hand(kit):
    plan = kit.build(EXAMPLE)
    got = kit.evaluate(plan, "2026-03", records=USAGE)
    assert lines_of(got) == [
        # 744 + 744 h x 0.50; 38 min down of 89,280: 99.957% >= 99.9%: no credit
        ("1488 eMBB slice-hours at 0.50 EUR per hour", D("744.00")),
        # 744 + 360 h x 2.00; 13 min down of 66,240: 99.980% < 99.99%: 25% back
        ("1104 URLLC slice-hours at 2.00 EUR per hour", D("2208.00")),
        ("SLA credit 25% of URLLC, availability 99.980% below the committed 99.99%", D("-552.00")),
        # 3 x 744 h x 0.02, best effort
        ("2232 mMTC slice-hours at 0.02 EUR per hour", D("44.64")),
    ]
    assert sum(ln.amount for ln in got) == D("2444.64")
    assert all(ln.kind == "network_slice" and ln.dimensions["stream"] == "fees" and ln.rule_span.line == 15
               for ln in got)
    assert [ln.dimensions["slice_class"] for ln in got] == ["eMBB", "URLLC", "URLLC", "mMTC"]
    credit = got[2]
    assert credit.details["measured_exact"] == "331135/3312" and credit.details["downtime_minutes"] == 13
    assert len({ln.key for ln in got}) == len(got)
    # pure: the same cycle gives the same lines
    assert kit.evaluate(plan, "2026-03", records=USAGE) == got
    # April has no usage records: no line at all
    assert kit.evaluate(plan, "2026-04", records=USAGE) == []


def test_records_of_the_example_go_through_both_executors(kit):
    """The slice records are events, not priced traffic: both executors reject them alike and
    price the data session next to them alike."""
    import csv

    plan = kit.build(EXAMPLE)
    with USAGE.open(encoding="utf-8") as fh:
        recs = [{k: v for k, v in r.items() if v != ""} for r in csv.DictReader(fh)][:3]
    recs.append({"id": "D-1", "partner": "ORFR", "direction": "outbound", "service": "data",
                 "start": "2026-03-02T10:00:00Z", "volume": str(3 * 1048576 + 1)})
    result = kit.rate(plan, recs).assert_agree()
    assert result.reasons[:3] == ["no_agreement"] * 3
    assert result.amounts[3] == D("0.012000")  # 3 MB and 1 byte at 0.0040 per MB, to 6 decimals
    assert result.surcharges == [[], [], [], []]


# --------------------------------------------------------------------------- SLA credits


@pytest.mark.parametrize(("down", "credited"), [
    (0, False),
    (43, False),  # 1 - 43/43,200 = 99.9005% >= 99.9%
    (44, True),  # 99.8981% < 99.9%
    (43_200, True),  # down all month: 0%
    (99_999, True),  # more downtime than slice time: still 0%, never negative
])
def test_credit_at_the_committed_level(kit, down, credited):
    plan = kit.build(rules("    embb: {\n      price: 1.00 EUR per hour\n      availability: 99.9%\n    }"))
    got = kit.evaluate(plan, "2026-03", events=events(("slice_embb", 720), ("slice_embb_downtime", down)))
    assert got[0].amount == D("720.00")
    assert (len(got) == 2) is credited
    if credited:
        assert got[1].amount == D("-72.00")  # the default credit, 10%


def test_top_level_defaults_and_a_class_of_its_own(kit):
    plan = kit.build(rules("    availability: 99.5%\n    credit: 5%\n    eMBB: 0.10 EUR per hour\n"
                           "    urllc: {\n      price: 3.00 EUR per hour\n      credit: 50%\n    }"))
    got = kit.evaluate(plan, "2026-03", events=events(("slice_embb", 100), ("slice_embb_downtime", 60),
                                                      ("slice_urllc", 10), ("slice_urllc_downtime", 6)))
    # eMBB: 1 - 60/6,000 = 99% < 99.5%: 5% of 10.00; URLLC: 1 - 6/600 = 99%: 50% of 30.00
    assert [ln.amount for ln in got] == [D("10.00"), D("-0.50"), D("30.00"), D("-15.00")]


def test_days_outside_the_agreement_do_not_count(kit):
    plan = kit.build(rules("    mmtc: 0.02 EUR per hour", start="2026-03-15"))
    got = kit.evaluate(plan, "2026-03", events=events(("slice_mmtc", 100), day=date(2026, 3, 14))
                       + events(("slice_mmtc", 24), day=date(2026, 3, 15)))
    assert lines_of(got) == [("24 mMTC slice-hours at 0.02 EUR per hour", D("0.48"))]


def test_rounded_once_with_the_agreement_mode(kit):
    plan = kit.build(rules("    urllc: {\n      price: 0.333 EUR per hour\n      availability: 99.99%\n"
                           "      credit: 33%\n    }"))
    got = kit.evaluate(plan, "2026-03", events=events(("slice_urllc", 7), ("slice_urllc_downtime", 1)))
    # 7 x 0.333 = 2.331 -> 2.33; credit 33% of the exact 2.331 = 0.76923 -> -0.77
    assert [ln.amount for ln in got] == [D("2.33"), D("-0.77")]
    assert got[1].details["exact"] == "-0.76923"


# --------------------------------------------------------------------------- mistakes, where they are


@pytest.mark.parametrize(("body", "expected"), [
    ("    embbb: 0.50 EUR per hour",
     "rules.icd:12:5: error[E120]: 'embbb' is not a slice class of charge 'network_slice'\n"
     "   |\n12 |     embbb: 0.50 EUR per hour\n   |     ^^^^^^\n"
     "   = help: did you mean 'embb'?; slice classes: embb (eMBB), urllc (URLLC), mmtc (mMTC)"),
    ("    availability: 99.9%",
     "rules.icd:11:3: error[E119]: charge 'network_slice' sells no slice class"),
    ("    embb: 0.50 EUR per minute",
     "rules.icd:12:24: error[E206]: the price of slice class 'embb' is per minute; slices are billed per hour"),
    ("    embb: 0.50 EUR",
     "rules.icd:12:11: error[E206]: the price of slice class 'embb' must be a price per hour"),
    ("    embb: fast",
     "rules.icd:12:11: error[E206]: slice class 'embb' takes a price per hour or a block"),
    ("    embb: {\n      availability: 99.9%\n    }",
     "rules.icd:12:11: error[E119]: slice class 'embb' needs 'price:'"),
    ("    embb: {\n      price: 0.50 EUR per hour\n      availabilty: 99.9%\n    }",
     "rules.icd:14:7: error[E120]: slice class 'embb' has no parameter 'availabilty'"),
    ("    embb: {\n      price: 0.50 EUR per hour\n      availability: 199%\n    }",
     "rules.icd:14:21: error[E214]: 199% is not a percentage between 0 and 100"),
    ("    embb: {\n      price: 0.50 EUR per hour\n      availability: 0%\n    }",
     "rules.icd:14:21: error[E214]: a committed availability of 0% commits to nothing"),
    ("    embb: {\n      price: 0.50 EUR per hour\n      credit: 10\n    }",
     "rules.icd:14:15: error[E214]: 'credit' is a percentage"),
    ("    embb: {\n      price: 0.50 EUR per hour\n      credit: 10%\n    }",
     "rules.icd:14:7: error[E119]: slice class 'embb' has an SLA credit but no committed availability"),
    ("    embb: 0.50 EUR per hour\n    EMBB: 0.60 EUR per hour",
     "rules.icd:13:5: error[E103]: 'EMBB' is given twice in this charge"),
    ("    embb: 0.50 USD per hour",
     "rules.icd:12:16: error[E211]: the price of slice class 'embb' is in USD but the agreement bills in EUR"),
])
def test_mistakes_are_reported_where_they_are(kit, body, expected):
    diags = kit.check(rules(body))
    assert len(diags.errors) == 1, diags.text
    assert diags.text.startswith(expected), diags.text


def test_the_example_and_the_readme_have_no_mistake(kit):
    assert kit.check(EXAMPLE).items == []
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    block = readme.split("```icd\n", 1)[1].split("```", 1)[0]
    head = 'partner ORFR "Orange France" {\n  currency EUR\n  timezone "Europe/Paris"\n}\n\n'
    assert kit.check(head + block).items == []
