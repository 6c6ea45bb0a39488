"""Both sides of transit: one record carried from one partner to another is billed on each side
(the originating partner's `transit` service, the terminating partner's `outbound` service),
on the store (SQLite and PostgreSQL), with counts that reconcile per side and a margin that adds
up exactly."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from icdsl.billing import models as M
from icdsl.cli.main import app
from icdsl.rating.intake import read_records
from icdsl.rating.intake.transit import sides, termination_of
from tests.test_billing_store import db_url, make_plan, store  # noqa: F401 (fixtures)

RULES = """partner HUBA "Hub A" {
  kind interconnect currency EUR timezone "UTC" billing monthly due 30 days
}
partner TERMB "Terminator B" {
  kind interconnect currency EUR timezone "UTC" billing monthly due 30 days
}

agreement "HUBA transit" v1 with HUBA effective 2026-01-01 .. {
  transit voice {
    price by destination in EUR {
      44  "United Kingdom"         0.0150
      447 "United Kingdom mobile"  0.0300
    }
    increments 60/60
  }
}

agreement "TERMB termination" v1 with TERMB effective 2026-01-01 .. {
  outbound voice {
    price by destination in EUR {
      44  "United Kingdom"         0.0100
      447 "United Kingdom mobile"  0.0220
    }
    increments 60/60
  }
  netting with outbound voice
}
"""

HEADER = "id,from_partner,to_partner,direction,service,a_number,b_number,start,duration_s\n"
ROWS = [
    # id, from, to, direction, service, a, b, start, seconds
    ("T1", "HUBA", "TERMB", "transit", "voice", "33612345678", "442071234567", "2026-03-02T10:00:00Z", 60),
    ("T2", "HUBA", "TERMB", "transit", "voice", "33612345678", "447700900123", "2026-03-05T11:00:00Z", 61),
    ("T3", "HUBA", "TERMB", "transit", "voice", "33612345678", "442071234567", "2026-03-17T12:00:00Z", 600),
    ("T4", "HUBA", "TERMB", "transit", "voice", "33612345678", "447700900999", "2026-03-31T23:00:00Z", 179),
    # a transit record that does not say where it went: rejected, located, never half-billed
    ("T5", "HUBA", "", "transit", "voice", "33612345678", "442071234567", "2026-03-10T10:00:00Z", 60),
    # nor one that goes back where it came from
    ("T6", "HUBA", "HUBA", "transit", "voice", "33612345678", "442071234567", "2026-03-10T10:00:00Z", 60),
]


def write(tmp_path, rows=ROWS):
    p = tmp_path / "in" / "transit.csv"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(HEADER + "".join(",".join(str(x) for x in r) + "\n" for r in rows), encoding="utf-8")
    return p


def test_a_transit_file_reads_its_origin_as_partner_and_rejects_half_named_transit(tmp_path):
    records, rejects, counts = read_records(write(tmp_path))
    assert counts.read == 6 and counts.passed == 4 and counts.rejected == 2 and counts.reconciles()
    assert records.column("partner").to_pylist() == ["HUBA"] * 4
    assert records.column("to_partner").to_pylist() == ["TERMB"] * 4
    got = sorted(zip(rejects.column("id").to_pylist(), rejects.column("reason").to_pylist(),
                     rejects.column("detail").to_pylist(), strict=True))
    assert got == [
        ("T5", "missing_field", "to_partner is empty: a transit record names the partner it went to"),
        ("T6", "missing_field", "to_partner 'HUBA' is the partner the record came from: "
                                "a transit record goes to another partner"),
    ]


def test_each_transit_record_has_a_termination_side_with_the_same_id(tmp_path):
    records, _, _ = read_records(write(tmp_path))
    both, added = sides(records)
    assert added == 4 and both.num_rows == 8
    term = termination_of(records)
    assert term.column("partner").to_pylist() == ["TERMB"] * 4
    assert term.column("direction").to_pylist() == ["outbound"] * 4
    assert term.column("id").to_pylist() == records.column("id").to_pylist()
    # plain records (no to_partner column, or not transit) have no second side
    plain = pa.table({"id": ["X"], "partner": ["HUBA"], "direction": ["inbound"], "to_partner": ["TERMB"]})
    assert sides(plain) == (plain, 0)
    assert sides(plain.drop_columns(["to_partner"]))[1] == 0


def minutes(seconds: int) -> int:
    return -(-seconds // 60)  # increments 60/60


def test_a_transit_month_invoice_cost_and_margin_add_up(store, tmp_path):  # noqa: F811 (fixture)
    plan, program = make_plan(tmp_path, RULES)
    store.load_plan(plan, program)
    rep = store.ingest(write(tmp_path), None, plan)
    # counts reconcile: 6 read = 4 passed + 2 rejected; 4 transit records, each on both sides
    assert (rep.read, rep.passed, rep.rejected, rep.duplicates) == (6, 4, 2, 0)

    orig = store.run_cycle("HUBA", "2026-03", plan)
    term = store.run_cycle("TERMB", "2026-03", plan)
    assert (orig.records_in, orig.rated, orig.rejected) == (4, 4, 0)
    assert (term.records_in, term.rated, term.rejected) == (4, 4, 0)

    # the same intake records on both sides, each side priced by its own agreement
    r_orig, r_term = store.rated(orig.cycle_id), store.rated(term.cycle_id)
    ids = ["T1", "T2", "T3", "T4"]
    assert sorted(r_orig.column("id").to_pylist()) == ids == sorted(r_term.column("id").to_pylist())
    assert set(r_orig.column("direction").to_pylist()) == {"transit"}
    assert set(r_term.column("direction").to_pylist()) == {"outbound"}

    # worked by hand: minutes 1, 2, 10, 3 at UK fixed, UK mobile, UK fixed, UK mobile
    sell = {"T1": 1 * Decimal("0.0150"), "T2": 2 * Decimal("0.0300"), "T3": 10 * Decimal("0.0150"),
            "T4": 3 * Decimal("0.0300")}
    buy = {"T1": 1 * Decimal("0.0100"), "T2": 2 * Decimal("0.0220"), "T3": 10 * Decimal("0.0100"),
           "T4": 3 * Decimal("0.0220")}
    assert dict(zip(r_orig.column("id").to_pylist(), r_orig.column("amount").to_pylist(), strict=True)) == sell
    assert dict(zip(r_term.column("id").to_pylist(), r_term.column("amount").to_pylist(), strict=True)) == buy
    assert sum(sell.values()) == Decimal("0.3150") and sum(buy.values()) == Decimal("0.2200")

    # the originating partner's invoice
    (inv,) = store.invoices(orig.cycle_id)
    lines = store.invoice_lines(inv.id)
    assert sum(ln.source_amount for ln in lines) == Decimal("0.3150")
    assert inv.subtotal == sum(ln.amount for ln in lines) == Decimal("0.32")
    # the terminating partner's cost: what we owe it on its settlement statement
    (st,) = store.statements(term.cycle_id)
    assert (st.receivable, st.payable, st.net) == (Decimal("0.00"), Decimal("0.22"), Decimal("-0.22"))
    # the margin: record by record, and in total, exactly the difference
    margin = {i: sell[i] - buy[i] for i in ids}
    assert sum(margin.values()) == Decimal("0.0950") == sum(sell.values()) - sum(buy.values())
    assert inv.subtotal - st.payable == Decimal("0.10")
    # ... and `icdsl margin` on the store says the same, each transit record counted once: sold
    # to HUBA (the invoice's lines before rounding), carried by TERMB (its rated cost), margin
    # 0.3150 - 0.2200 = 0.0950 (a regression: each record met both of its sides and counted twice)
    url = store.engine.url.render_as_string(hide_password=False)
    for by, row in (("partner", "HUBA,4,900,0.315000,0.220000,0,0.095000,EUR"),
                    ("supplier", "TERMB,4,900,0.315000,0.220000,0,0.095000,EUR")):
        res = CliRunner().invoke(app, ["margin", "2026-03", str(tmp_path / "rules"), "--db", url,
                                       "--data", str(store.data.root), "--by", by, "--format", "csv"])
        assert res.exit_code == 0, res.output
        assert res.stdout.splitlines()[1:] == [row]
    assert "total: 4 records, revenue 0.315000, cost 0.220000, margin 0.095000 EUR" in \
        CliRunner().invoke(app, ["margin", "2026-03", str(tmp_path / "rules"), "--db", url,
                                 "--data", str(store.data.root)]).stdout
    # counts per side: the batch wrote each transit record once per side, and each side's cycle
    # read its own (nothing lost, nothing twice on one side)
    with store.session() as s:
        stats = dict(s.execute(sa.select(M.IntakePartnerStat.partner, M.IntakePartnerStat.records)).all())
        (rec_file,) = s.scalars(sa.select(M.DataFile).where(M.DataFile.kind == "intake_records")).all()
    assert stats == {"HUBA": 4, "TERMB": 4} and rec_file.rows == rep.passed + 4
    written = pq.read_table(store.data.abs(rec_file.path))
    for code, direction in (("HUBA", "transit"), ("TERMB", "outbound")):
        side = written.filter(pc.equal(written.column("partner"), code))
        assert sorted(side.column("id").to_pylist()) == ids
        assert set(side.column("direction").to_pylist()) == {direction}
        assert set(side.column("from_partner").to_pylist()) == {"HUBA"}
        assert set(side.column("to_partner").to_pylist()) == {"TERMB"}
    # traceable: the originating side's invoice lines lead to the intake batch of the record
    for ln in lines:
        assert [b.file_name for b in store.trace(ln.id).batches] == ["transit.csv"]


@pytest.mark.parametrize("direction", ["inbound", "outbound"])
def test_records_not_in_transit_are_billed_once(tmp_path, direction):
    rows = [("P1", "HUBA", "TERMB", direction, "voice", "3361", "442071234567", "2026-03-02T10:00:00Z", 60)]
    records, _, counts = read_records(write(tmp_path, rows))
    assert counts.passed == 1 and sides(records)[1] == 0


REFILE_RULES = "use stdlib.zones\n" + RULES.replace(
    '''    increments 60/60
  }
}

agreement "TERMB''', '''    increments 60/60
    refile origin EEA surcharge 0.0500 EUR per minute
  }
}

agreement "TERMB''')


def test_a_refiled_record_is_found_and_priced_as_the_agreement_says(store, tmp_path):  # noqa: F811 (fixture)
    assert "refile origin EEA" in REFILE_RULES
    plan, program = make_plan(tmp_path, REFILE_RULES)
    store.load_plan(plan, program)
    rows = [*ROWS[:4],
            # a US caller on the EEA route: refiled
            ("T7", "HUBA", "TERMB", "transit", "voice", "12125550100", "442071234567", "2026-03-20T08:00:00Z", 90)]
    store.ingest(write(tmp_path, rows), None, plan)
    orig = store.run_cycle("HUBA", "2026-03", plan)
    term = store.run_cycle("TERMB", "2026-03", plan)
    assert (orig.rated, term.rated) == (5, 5)
    (inv,) = store.invoices(orig.cycle_id)
    lines = {ln.description: ln for ln in store.invoice_lines(inv.id)}
    refile = next(ln for d, ln in lines.items() if "Refile" in d)
    # T7 alone: 2 minutes (90 s in 60/60) at 0.0500
    assert refile.record_count == 1 and refile.source_amount == Decimal("0.1000")
    # the traffic lines: T1-T4 as before plus T7 at 2 minutes of UK fixed
    traffic = sum(ln.source_amount for d, ln in lines.items() if "Refile" not in d)
    assert traffic == Decimal("0.3150") + 2 * Decimal("0.0150")
    assert inv.subtotal == sum(ln.amount for ln in lines.values())
    # the terminating side is not refiled (its agreement says nothing of it): cost, margin exact
    (st,) = store.statements(term.cycle_id)
    assert st.payable == (Decimal("0.2200") + 2 * Decimal("0.0100")).quantize(Decimal("0.01"))
    assert sum(ln.source_amount for ln in lines.values()) - (Decimal("0.2200") + Decimal("0.0200")) == Decimal("0.2050")


def test_refile_agrees_in_both_executors_with_or_without_a_number(tmp_path):
    from datetime import UTC, datetime

    from icdsl.rating.batch import rate_batch_with_charges
    from icdsl.rating.row import rate_record
    from tests.test_rating_batch import table

    plan, _ = make_plan(tmp_path, REFILE_RULES)
    start = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    records = [{"id": i, "partner": "HUBA", "direction": "transit", "service": "voice", "a_number": a,
                "b_number": "442071234567", "start": start, "duration_s": 61}
               for i, a in enumerate(["33612345678", "12125550100", "4915112345678", None, "41791234567"])]
    row = [[(h.charge, h.amount) for h in rate_record(plan, r).surcharges] for r in records]
    refile = ("Refile (origin outside EEA)", Decimal("0.100000"))
    # France and Germany are EEA; the US and Switzerland are not; no a_number: the origin cannot
    # be shown to be in the zone, so it is refiled too (CLI hidden on an EEA route)
    assert row == [[], [refile], [], [refile], [refile]]
    _rated, _rejects, charges = rate_batch_with_charges(plan, table(records))
    assert charges.select(["record", "charge", "amount"]).to_pylist() == [
        {"record": i, "charge": refile[0], "amount": refile[1]} for i in (1, 3, 4)]


def test_refile_names_an_unknown_zone(tmp_path):
    from icdsl.plan.compiler import build

    d = tmp_path / "rules"
    d.mkdir()
    (d / "r.icd").write_text(REFILE_RULES.replace("refile origin EEA", "refile origin EAA"), encoding="utf-8")
    import contextlib
    with contextlib.chdir(d):
        plan, _program, diags = build(["r.icd"])
    assert plan is None
    assert [(x.code, x.message) for x in diags if x.code == "E422"] == [("E422", "unknown zone 'EAA'")]


def test_a_records_layout_maps_trunk_columns_to_both_partners(tmp_path):
    from icdsl.rating.intake import layout_rules

    layout_text = """records switch_transit {
  id = column "call_id"
  from_partner = column "in_carrier"
  to_partner = column "out_carrier"
  b_number = column "dst"
  a_number = column "src"
  start = column "start_time"
  duration_s = column "billsec"
  direction = transit
  service = voice
}
"""
    plan, _ = make_plan(tmp_path, RULES + layout_text)
    p = tmp_path / "switch.csv"
    p.write_text("call_id,in_carrier,out_carrier,src,dst,start_time,billsec\n"
                 "S1,HUBA,TERMB,33612345678,442071234567,2026-03-02T10:00:00Z,60\n"
                 "S2,,TERMB,33612345678,442071234567,2026-03-02T10:01:00Z,60\n"
                 "S3,HUBA,,33612345678,442071234567,2026-03-02T10:02:00Z,60\n", encoding="utf-8")
    (layout,) = [lay for lay in plan.layouts if lay.name == "switch_transit"]
    assert layout_rules(layout).source_of("from_partner") == "in_carrier"
    records, rejects, counts = read_records(p, layout=layout)
    assert counts.read == 3 and counts.passed == 1 and counts.reconciles()
    assert (records.column("partner").to_pylist(), records.column("to_partner").to_pylist()) == (["HUBA"], ["TERMB"])
    both, added = sides(records)
    assert added == 1 and both.column("partner").to_pylist() == ["HUBA", "TERMB"]
    assert sorted(zip(rejects.column("id").to_pylist(), rejects.column("detail").to_pylist(), strict=True)) == [
        ("S2", "in_carrier (partner) is empty"),
        ("S3", "to_partner is empty: a transit record names the partner it went to"),
    ]


def test_icdsl_rate_rates_both_sides_and_its_counts_reconcile(tmp_path):
    from icdsl.rating.run import rate_file

    plan, _ = make_plan(tmp_path, RULES)
    summary = rate_file(plan, write(tmp_path), tmp_path / "out" / "rated.parquet")
    assert (summary.read, summary.transit_sides, summary.rated, summary.rejected) == (6, 4, 8, 2)
    assert summary.reconciles() and "read 6 + transit sides 4 = rated 8" in summary.text()
    rated = pq.read_table(tmp_path / "out" / "rated.parquet")
    by_partner = {}
    for r in rated.select(["partner", "amount"]).to_pylist():
        by_partner[r["partner"]] = by_partner.get(r["partner"], Decimal(0)) + r["amount"]
    assert by_partner == {"HUBA": Decimal("0.3150"), "TERMB": Decimal("0.2200")}


@pytest.mark.parametrize("origin, termination", [("HUBA", "TERMB"), ("TERMB", "HUBA")])
def test_a_resent_transit_record_is_one_duplicate_and_a_changed_one_one_conflict(store, tmp_path, origin,  # noqa: F811
                                                                              termination):
    plan, program = make_plan(tmp_path, RULES)
    store.load_plan(plan, program)
    first = [(r[0], origin, termination, *r[3:]) for r in ROWS[:4]]
    store.ingest(write(tmp_path, first), None, plan)
    # T1 sent again with another duration, T2 sent again as it was: whichever partner's code sorts
    # first, each is compared with the record as read (its origination side)
    again = [(*first[0][:8], 999), first[1]]
    rep = store.ingest(write(tmp_path / "again", again), None, plan)
    assert (rep.read, rep.passed, rep.rejected, rep.duplicates) == (2, 0, 1, 1)
    with store.session() as s:
        (c,) = s.scalars(sa.select(M.IntakeConflict)).all()
    assert (c.record_id, c.partner, c.differs) == ("T1", origin, {"duration_s": ["60", "999"]})
