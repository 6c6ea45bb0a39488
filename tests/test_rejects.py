"""`icdsl rejects`: the quarantine end to end through the command line (traffic to a destination
without a rate, to a partner not declared yet, a national number the default layout cannot
read, a bad timestamp, a duplicate), the rules fixed, the records resubmitted and billed once,
the counts reconciled at every step; the export (CSV cells neutralized against formulas) and
the listing's golden file."""

from __future__ import annotations

import csv
import io
import json
import os
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from test_billing_cli import run  # the CLI run, its exit code and no traceback
from test_billing_store import db_url  # noqa: F401 - the fixture: SQLite, and PostgreSQL when it is there

from icdsl.safecsv import FORMULA_STARTS, neutralize

GOLDEN = Path(__file__).parent / "golden" / "rejects"

PARTNER = """partner ORFR "Orange France" {
  kind interconnect currency EUR timezone "Europe/Paris" billing monthly due 30 days tax vat 20%
}
"""
V1 = """agreement "ORFR voice" v1 with ORFR effective 2026-01-01 .. {
  outbound voice {
    price by destination in EUR {
      33  "France fixed"  0.0100
      336 "France mobile" 0.0200
    }
    increments 60/6
  }
}
"""
# the fix: a deck row for the United Kingdom from March (a new version: loaded versions are immutable)
V2 = """agreement "ORFR voice" v2 with ORFR effective 2026-03-01 .. amends v1 {
  outbound voice {
    price by destination in EUR {
      33  "France fixed"  0.0100
      336 "France mobile" 0.0200
      44  "United Kingdom" 0.0500
    }
    increments 60/6
  }
}
"""
# the other fixes: the partner that sent traffic before it was declared, and a layout for
# a switch that writes local times as day/month/year
NEWP = """partner NEWP "New Partner" {
  kind interconnect currency EUR timezone "Europe/Paris" billing monthly due 30 days tax none
}
agreement "NEWP voice" v1 with NEWP effective 2026-01-01 .. {
  outbound voice { price 0.0100 EUR per minute increments 60/60 }
}
records fr_local {
  timezone "Europe/Paris"
  format "%d/%m/%Y %H:%M"
}
"""
TRAFFIC = """id,partner,direction,service,a_number,b_number,start,duration_s
C1,ORFR,outbound,voice,33170000001,33612345678,2026-03-02T09:00:00Z,60
C2,ORFR,outbound,voice,33170000001,33142685300,2026-03-03T09:00:00Z,120
C3,ORFR,outbound,voice,33170000001,4420712345,2026-03-04T09:00:00Z,60
C4,ORFR,outbound,voice,33170000001,4420712346,2026-03-05T09:00:00Z,30
C5,NEWP,outbound,voice,33170000001,33612345678,2026-03-06T09:00:00Z,90
C6,ORFR,outbound,voice,33170000001,33612345678,not-a-time,60
C1,ORFR,outbound,voice,33170000001,33612345678,2026-03-02T09:00:00Z,60
C7,ORFR,outbound,voice,33170000001,33612345678,07/03/2026 10:00,60
"""


def summary() -> dict:
    return json.loads(run("rejects", "--format", "json"))


def listed(*filters: str) -> list[dict]:
    return json.loads(run("rejects", "list", "--format", "json", *filters))


@pytest.fixture
def env(tmp_path, monkeypatch):
    return _env(tmp_path, monkeypatch, f"sqlite:///{tmp_path / 'store.db'}")


@pytest.fixture
def env_db(tmp_path, monkeypatch, db_url):  # noqa: F811 - the fixture imported above
    return _env(tmp_path, monkeypatch, db_url)


def _env(tmp_path, monkeypatch, url):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "orfr.icd").write_text(PARTNER + V1, encoding="utf-8")
    (tmp_path / "march.csv").write_text(TRAFFIC, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ICDSL_DB", url)
    monkeypatch.setenv("ICDSL_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "80")  # rich's tables at the width the golden files were written at
    return tmp_path


def fix_rules(root: Path) -> None:
    (root / "rules" / "orfr.icd").write_text(PARTNER + V1 + V2, encoding="utf-8")
    (root / "rules" / "newp.icd").write_text(NEWP, encoding="utf-8")


def test_rejects_listed_fixed_resubmitted_and_billed_once(env_db):
    env = env_db
    run("load", "rules")
    out = run("ingest", "march.csv", "--rules", "rules")
    assert "read 8, passed 5, rejected 2, duplicates 1" in out and "NEWP" in out
    out = run("cycle", "run", "ORFR", "2026-03", "--rules", "rules", "--accept", "all")
    assert "records 4: rated 2, rejected 2 (no_rate 2)" in out and "subtotal 0.04" in out

    # the quarantine by reason, partner and file; every reject is there
    s = summary()
    got = {(r["reason"], r["partner"], r["file"]): (r["open"], r["resubmitted"]) for r in s["summary"]}
    assert got == {("bad_timestamp", "ORFR", "march.csv"): (2, 0), ("duplicate_id", "ORFR", "march.csv"): (1, 0),
                   ("no_rate", "ORFR", "march.csv"): (2, 0),
                   ("unknown_partner", "NEWP", "march.csv"): (1, 0)}
    assert s["open"] == 6 and s["resubmitted"] == 0 and s["reconciles"]
    out = run("rejects")
    assert "no_rate" in out and "unknown_partner" in out and "open 6, resubmitted 0" in out
    assert "intake rejects: 3 in the rejects files, 3 counted by the intake batches" in out
    assert "rating rejects: 2 in the cycles' rejects files, 2 counted by the cycles" in out
    # filters
    assert [r["id"] for r in listed("--reason", "no_rate")] == ["C3", "C4"]
    assert [r["id"] for r in listed("--partner", "NEWP")] == ["C5"]
    assert len(listed("--file", "march.csv")) == 6 and listed("--file", "other.csv") == []
    # C6 and C7: no start to read (C7's is written day first)
    assert {r["id"] for r in listed("--period", "2026-03")} == {"C1", "C3", "C4", "C5"}
    assert listed("--period", "2026-04") == []
    detail = run("rejects", "list", "--reason", "no_rate")
    assert "C3" in detail and "no destination matches" in detail

    # before the fix: a partner still undeclared is not resubmittable; nothing changes
    out = run("rejects", "resubmit", "--partner", "NEWP", "--rules", "rules")
    assert "nothing to resubmit" in out and "partner NEWP is still not declared" in out

    # the rules are fixed and loaded; resubmit everything
    fix_rules(env)
    assert "NEWP" in run("load", "rules")
    out = run("rejects", "resubmit", "--rules", "rules", "--layout", "fr_local")
    assert "resubmission #1: 5 record(s) (intake rejects 2, rating rejects 2, records of partners unknown at " \
           "ingest 1)" in out
    assert "read 2, passed 1, rejected 1" in out  # C7's local time now reads, C6 stays bad
    assert "ORFR 2026-03: reopened" in out and "icdsl cycle run NEWP PERIOD" in out
    assert "not resubmitted: 1 record(s): duplicates are not resubmittable" in out
    s = summary()
    assert s["open"] == 2 and s["resubmitted"] == 5  # the duplicate and C6's new reject
    assert s["outcomes"] == {"passed intake": 1, "pending": 3, "rejected again": 1}

    # resubmitting again adds nothing: the rest waits for its cycle, C6 was read with this layout
    out = run("rejects", "resubmit", "--rules", "rules", "--layout", "fr_local")
    assert "nothing to resubmit" in out and "4 already resubmitted, waiting for their cycle" in out
    assert "rejected again when resubmitted in #1, read with the same layout (fr_local)" in out
    assert summary()["resubmitted"] == 5

    # the cycles rate them
    out = run("cycle", "run", "ORFR", "2026-03", "--rules", "rules")
    # C1 0.02 + C2 0.02 + C3 0.05 + C4 0.05 (60/6: a minute at least) + C7 0.02
    assert "records 5: rated 5, rejected 0" in out and "subtotal 0.16, tax 0.03, total 0.19 EUR" in out
    out = run("cycle", "run", "NEWP", "2026-03", "--rules", "rules")
    assert "records 1: rated 1, rejected 0" in out and "subtotal 0.02" in out  # 90 s in whole minutes
    s = summary()
    assert s["open"] == 2 and s["resubmitted"] == 5 and s["reconciles"]
    assert s["outcomes"] == {"rated": 4, "rejected again": 1}
    rows = {r["id"]: r for r in listed("--state", "resubmitted")}
    assert rows["C3"]["outcome"] == rows["C4"]["outcome"] == "rated (ORFR 2026-03)"
    assert rows["C5"]["outcome"] == "rated (NEWP 2026-03)"
    assert rows["C7"]["outcome"] == "passed intake (batch #2), rated (ORFR 2026-03)"
    assert rows["C6"]["outcome"].startswith("rejected again: bad_timestamp (batch #2)")
    open_rows = listed("--state", "open")
    assert {(r["id"], r["reason"], r["file"].split("-resubmit-")[0]) for r in open_rows} == {
        ("C1", "duplicate_id", "march.csv"), ("C6", "bad_timestamp", "march")}

    # resubmitting again still adds nothing, and running the cycle again bills the same
    assert "nothing to resubmit" in run("rejects", "resubmit", "--rules", "rules")
    assert "already" in run("cycle", "run", "ORFR", "2026-03", "--rules", "rules")
    out = run("cycle", "run", "ORFR", "2026-03", "--rules", "rules", "--rerate")
    assert "records 5: rated 5, rejected 0" in out and "total 0.19 EUR" in out

    # every original reject is open or resubmitted: 3 intake + 2 rating + 1 unknown partner,
    # plus C6's new intake reject (open again with its reason)
    originals = [r for r in listed() if r["file"] == "march.csv"]
    assert len(originals) == 6 and {r["state"] for r in originals} == {"open", "resubmitted"}
    # the audit log has one entry per resubmission
    eng = sa.create_engine(os.environ["ICDSL_DB"])
    with eng.connect() as c:
        audit = c.execute(sa.text("SELECT message FROM audit_log WHERE action = 'rejects_resubmitted'")).all()
        resubmissions = c.execute(sa.text("SELECT id, records FROM reject_resubmissions")).all()
    eng.dispose()
    assert [m for (m,) in audit] == ["resubmission #1: 5 record(s): intake 2, rating 2, unknown partner 1"]
    assert [tuple(r) for r in resubmissions] == [(1, 5)]


def test_a_finalized_cycle_is_never_reopened_its_rejects_go_to_a_correction(env):
    run("load", "rules")
    run("ingest", "march.csv", "--rules", "rules")
    run("cycle", "run", "ORFR", "2026-03", "--rules", "rules", "--accept", "all")
    run("cycle", "finalize", "ORFR", "2026-03")
    out = run("rejects", "resubmit", "--reason", "no_rate", "--rules", "rules")
    assert "resubmission #1: 2 record(s)" in out
    command = "icdsl rerate --partner ORFR --from 2026-03-01 --to 2026-03-31"
    assert f"ORFR 2026-03: finalized: never changed; bill them as a correction with `{command}" in out
    rows = listed("--reason", "no_rate")
    assert {r["state"] for r in rows} == {"resubmitted"} and all(command in r["outcome"] for r in rows)
    assert "nothing to resubmit" in run("rejects", "resubmit", "--reason", "no_rate", "--rules", "rules")
    # the fix goes in through a correction of the finalized month (what `icdsl load` says to do)
    fix_rules(env)
    out = run("rerate", "--partner", "ORFR", "--from", "2026-03-01", "--to", "2026-03-31", "--rules", "rules")
    assert "0.10" in out  # C3 and C4 at 0.05, billed on April
    rows = listed("--reason", "no_rate")
    assert [r["outcome"] for r in rows] == ["rated by correction #1 (ORFR 2026-03, billed on the next cycle)"] * 2
    assert summary()["reconciles"]


def test_export_neutralizes_formulas_in_csv_and_keeps_values_in_parquet(env):
    hostile = ("id,partner,direction,service,a_number,b_number,start,duration_s\n"
               '"=HYPERLINK(""http://x"",""y"")",ORFR,outbound,voice,+33170000001,33612345678,nope,60\n'
               "@SUM(1),ORFR,outbound,voice,33170000001,33612345678,-1,60\n"
               "-2+3,ORFR,outbound,voice,33170000001,33612345678,2026-03-02T09:00:00Z,-5\n")
    (env / "hostile.csv").write_text(hostile, encoding="utf-8")
    run("load", "rules")
    run("ingest", "hostile.csv", "--rules", "rules")
    out = run("rejects", "export", "-o", "q.csv")
    assert "wrote 3 rejected record(s)" in out
    rows = list(csv.DictReader(io.StringIO((env / "q.csv").read_text(encoding="utf-8"))))
    assert len(rows) == 3
    for r in rows:  # no cell a spreadsheet would read as a formula
        for value in r.values():
            assert not value.startswith(FORMULA_STARTS), value
    assert {r["id"] for r in rows} == {"'=HYPERLINK(\"http://x\",\"y\")", "'@SUM(1)", "'-2+3"}
    assert sorted(r["raw"][:2] for r in rows) == ['"=', "'-", "'@"]  # a quoted cell is no formula
    run("rejects", "export", "-o", "q.parquet", "--reason", "negative_duration")
    t = pq.read_table(env / "q.parquet")
    assert t.column("id").to_pylist() == ["-2+3"] and t.column("reason").to_pylist() == ["negative_duration"]
    # the listing as CSV is neutralized the same way
    out = run("rejects", "list", "--format", "csv")
    assert "'=HYPERLINK" in out and "\n=" not in out and ",=" not in out
    assert "name the file .csv or .parquet" in run("rejects", "export", "-o", "q.xlsx", code=2)


def test_neutralize():
    assert [neutralize(v) for v in ("=1+1", "+3", "-3", "@x", "\tx", "\rx", "ok", "", None, 5)] == [
        "'=1+1", "'+3", "'-3", "'@x", "'\tx", "'\rx", "ok", "", None, 5]


def test_resubmitted_parquet_rejects_are_read_from_their_raw_rows(env):
    t = pa.table({"id": pa.array([101, 102, 103], pa.int64()), "partner": ["ORFR"] * 3,
                  "direction": ["outbound"] * 3, "service": ["voice"] * 3, "a_number": ["33170000001"] * 3,
                  "b_number": ["33612345678", "33612345678", "33142685300"],
                  "start": ["2026-03-02T09:00:00Z", "02/03/2026 11:00", "03/03/2026 11:00"],
                  "duration_s": pa.array([60, 60, 30], pa.int64())})
    pq.write_table(t, env / "march.parquet")
    fix_rules(env)
    run("load", "rules")
    assert "read 3, passed 1, rejected 2" in run("ingest", "march.parquet", "--rules", "rules")
    assert [(r["reason"], r["row"], r["id"]) for r in listed()] == [("bad_timestamp", 2, "102"),
                                                                    ("bad_timestamp", 3, "103")]
    out = run("rejects", "resubmit", "--rules", "rules", "--layout", "fr_local")
    assert "read 2, passed 2, rejected 0" in out
    out = run("cycle", "run", "ORFR", "2026-03", "--rules", "rules")
    assert "records 3: rated 3, rejected 0" in out
    # 0.02 (101) + 0.02 (102, French mobile) + 0.01 (103, French fixed, 30 s: a minute at least)
    assert Decimal(out.split("subtotal ")[1].split(",")[0]) == Decimal("0.05")
    assert [r["outcome"].split(" (")[0] for r in listed()] == ["passed intake", "passed intake"]


def test_a_layout_names_the_columns_of_intake_rejects(env):
    (env / "rules" / "switch.icd").write_text('records switch {\n  partner = column "carrier"\n'
                                              '  b_number = column "dst"\n}\n', encoding="utf-8")
    (env / "switch.csv").write_text("id,carrier,direction,service,a_number,dst,start,duration_s\n"
                                    "S1,ORFR,outbound,voice,33170000001,33612345678,never,60\n", encoding="utf-8")
    run("load", "rules")
    assert "rejected 1" in run("ingest", "switch.csv", "--layout", "switch", "--rules", "rules")
    assert [(r["partner"], r["b_number"]) for r in listed()] == [(None, None)]  # which columns? the rules say
    got = json.loads(run("rejects", "list", "--format", "json", "--rules", "rules"))
    assert [(r["partner"], r["b_number"], r["reason"]) for r in got] == [("ORFR", "33612345678", "bad_timestamp")]
    assert [r["id"] for r in json.loads(run("rejects", "list", "--format", "json", "--rules", "rules",
                                            "--partner", "ORFR"))] == ["S1"]


def test_a_rejects_file_that_lost_rows_does_not_reconcile(env):
    run("load", "rules")
    run("ingest", "march.csv", "--rules", "rules")
    rejects = next((env / "data" / "intake").rglob("rejects-*.parquet"))
    t = pq.read_table(rejects)
    rejects.chmod(0o644)
    pq.write_table(t.slice(0, 1), rejects)  # behind the store's back
    out = run("rejects", code=3)
    assert "intake rejects: 1 in the rejects files, 3 counted by the intake batches  MISMATCH" in out
    assert not summary_of(run("rejects", "--format", "json", code=3))["reconciles"]


def summary_of(text: str) -> dict:
    return json.loads(text)


def test_csv_rejects_need_their_original_file_for_its_header(env):
    run("load", "rules")
    run("ingest", "march.csv", "--rules", "rules")
    (env / "march.csv").rename(env / "moved.csv")
    out = run("rejects", "resubmit", "--reason", "bad_timestamp", "--rules", "rules")
    assert "nothing to resubmit" in out
    assert f"not resubmitted: 2 record(s): the original file of march.csv (batch #1), whose header line the " \
           f"rejected lines need, is no longer at {env / 'march.csv'} as it was ingested: put it back there" in out
    (env / "moved.csv").rename(env / "march.csv")
    assert "resubmission #1: 2 record(s)" in run("rejects", "resubmit", "--reason", "bad_timestamp",
                                                 "--rules", "rules")


def test_user_mistakes(env):
    run("load", "rules")
    assert "is not a period" in run("rejects", "--period", "March", code=2)
    assert "--state is 'open' or 'resubmitted'" in run("rejects", "list", "--state", "gone", code=2)
    assert "--format is one of table, csv, json" in run("rejects", "--format", "xml", code=2)
    assert "no rejected records" in run("rejects")


def test_listing_golden(env):
    """The summary and the listing as an analyst sees them (tests/golden/rejects/)."""
    run("load", "rules")
    run("ingest", "march.csv", "--rules", "rules")
    run("cycle", "run", "ORFR", "2026-03", "--rules", "rules", "--accept", "all")
    got = {"summary.txt": run("rejects"), "list.txt": run("rejects", "list"),
           "list.csv": run("rejects", "list", "--format", "csv")}
    fix_rules(env)
    run("load", "rules")
    got["resubmit.txt"] = run("rejects", "resubmit", "--rules", "rules", "--layout", "fr_local")
    run("cycle", "run", "ORFR", "2026-03", "--rules", "rules")
    run("cycle", "run", "NEWP", "2026-03", "--rules", "rules")
    got["summary-after.txt"] = run("rejects")
    got["list-after.txt"] = run("rejects", "list")
    for name, text in got.items():
        path = GOLDEN / name
        if os.environ.get("ICDSL_UPDATE_GOLDEN"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        assert path.exists(), f"{path} is missing: ICDSL_UPDATE_GOLDEN=1 pytest tests/test_rejects.py -k golden"
        assert text == path.read_text(encoding="utf-8"), f"{name} differs from {path}"


def test_invoice_csv_neutralizes_formula_text_but_not_amounts():
    """An invoice's CSV carries text from partners' decks (destination names): a cell that a
    spreadsheet would run as a formula is written as text; negative amounts stay numbers."""
    import csv as _csv
    from decimal import Decimal

    from icdsl.outputs.csv import dumps

    doc = {"number": "INV-1", "kind": "invoice", "partner_code": "ORFR", "period": "2026-03", "currency": "EUR",
           "lines": [{"line_no": 1, "kind": "traffic", "description": "=HYPERLINK(\"http://x\")",
                      "destination": "@SUM(A1)", "amount": Decimal("-1.50"), "quantity": 3}],
           "subtotal": Decimal("-1.50"), "tax_amount": Decimal("0"), "total": Decimal("-1.50"), "tax_label": "VAT"}
    rows = list(_csv.DictReader(dumps(doc).splitlines()))
    line = rows[0]
    assert line["description"] == "'=HYPERLINK(\"http://x\")" and line["destination"] == "'@SUM(A1)"
    assert line["amount"] == "-1.50" and rows[-1]["amount"] == "-1.50"
