"""Switch files into billing: ``icdsl ingest --reader`` with the mediation plugin's readers (the
real Asterisk and FreeSWITCH sample lines, and files written in their formats), a cycle that
bills them; duplicates that differ from what was ingested first (conflicts, both versions kept,
counts that reconcile); suspected duplicates under new ids (--fingerprint); hostile input gives
located rejects, never a traceback; a plugin's reader that misbehaves is named, not trusted."""

from __future__ import annotations

import random
import types
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import GOLDEN, compare_golden
from test_billing_cli import run  # the CLI run, its exit code and no traceback
from test_billing_store import db_url, make_plan  # noqa: F401 - fixtures
from test_billing_store import store as store  # noqa: F401 - a fixture (its name is the tests' parameter)

from icdsl.billing import conflicts
from icdsl.billing.errors import IngestError
from icdsl.hookspecs import hookimpl
from icdsl.plugins import make_plugin_manager, use_plugin_manager
from icdsl.rating.intake import IntakeBatch, IntakeCounts
from icdsl.readers import Reader

pytest.importorskip("icdsl_mediation")

CDR = Path(__file__).resolve().parent / "data" / "cdr"

RULES = """partner ORFR "Orange France" {
  kind interconnect currency EUR timezone "Europe/Paris" billing monthly due 30 days tax vat 20%
}
partner BTGB "BT" {
  kind interconnect currency EUR timezone "Europe/London" billing monthly due 30 days tax vat 20%
}
agreement "ORFR voice" v1 with ORFR effective 2010-01-01 .. {
  outbound voice {
    price by destination in EUR {
      33  "France fixed"  0.0100
      336 "France mobile" 0.0200
      34  "Spain"         0.0300
    }
    increments 60/6
  }
}
agreement "BTGB voice" v1 with BTGB effective 2026-01-01 .. {
  outbound voice { price by destination in EUR { 44 "United Kingdom" 0.0150 } increments 60/1 }
}
"""
FS = {"timezone": "Europe/Madrid", "country": "ES", "partner_field": "accountcode"}
AST = {"timezone": "Europe/Paris", "country": "FR", "partner_field": "trunk", "partner_map": "orange=ORFR,bt-gb=BTGB"}


@pytest.fixture
def planned(tmp_path):
    return make_plan(tmp_path, RULES)


@pytest.fixture
def plan(store, planned):  # noqa: F811 - the store fixture
    store.load_plan(*planned)
    return planned[0]


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """A folder with the rules, as the working folder of `icdsl` commands on its own store."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "partners.icd").write_text(RULES, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ICDSL_DB", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.delenv("ICDSL_DATA", raising=False)
    return tmp_path


def rows_of(st, batch_id: int) -> tuple[pa.Table, pa.Table]:
    rep = st.batch_report(batch_id)
    records = pq.read_table(st.data.abs(rep.records_file))
    return records, st.rejects(batch_id)


def reconciled(st, rep) -> None:
    """Nothing lost: every line read is a record, a reject with a reason or a duplicate, and the
    files hold exactly what the counts say."""
    assert rep.read == rep.passed + rep.rejected + rep.duplicates
    assert sum(rep.by_reason.values()) == rep.rejected + rep.duplicates
    assert rep.by_reason.get("duplicate_id", 0) == rep.duplicates
    records, rejects = rows_of(st, rep.batch_id)
    assert records.num_rows == rep.passed and rejects.num_rows == rep.rejected + rep.duplicates
    assert all(r["reason"] and r["detail"] and r["raw"] is not None for r in rejects.to_pylist())


# --------------------------------------------------------------------------- the real sample lines


def test_real_sample_lines_with_their_readers_then_a_cycle(store, plan):
    ast = store.ingest(CDR / "asterisk_master_csv.txt", plan=plan, reader="asterisk_csv",
                       reader_options={"timezone": "Europe/Paris", "partner": "ORFR"})
    fsw = store.ingest(CDR / "freeswitch_cdr_csv.txt", plan=plan, reader="freeswitch_csv",
                       reader_options={"timezone": "Europe/Madrid", "partner": "ORFR", "country": "ES"})
    for rep in (ast, fsw):
        reconciled(store, rep)
    assert (ast.file_format, fsw.file_format) == ("asterisk_csv", "freeswitch_csv")
    # Asterisk's own test lines call extension "1" (a console test, no public number);
    # the FreeSWITCH documentation's lines were never answered (no answer_stamp, billsec 0)
    assert (ast.read, ast.passed, ast.by_reason) == (2, 0, {"invalid_number": 2})
    assert (fsw.read, fsw.passed, fsw.by_reason) == (3, 0, {"unanswered": 3})
    located = [(r["row"], r["id"], r["reason"]) for r in store.rejects(fsw.batch_id).to_pylist()]
    assert located == [(1, "a5c9f6c0-e752-11e3-8bfb-65b6c3cdac7d", "unanswered"),
                       (2, "e29ff0ae-e752-11e3-8bff-65b6c3cdac7d", "unanswered"),
                       (3, "e38cb5b0-e752-11e3-8c0b-65b6c3cdac7d", "unanswered")]
    assert [r["row"] for r in store.rejects(ast.batch_id).to_pylist()] == [1, 2]
    # the cycles of those months run and bill what there is: nothing billable, nothing lost
    for period in ("2010-04", "2014-05"):
        cyc = store.run_cycle("ORFR", period, plan)
        assert (cyc.status, cyc.records_in, cyc.rated, cyc.invoices) == ("invoiced", 0, 0, [])
    # the same files again add nothing, whatever the options
    again = store.ingest(CDR / "freeswitch_cdr_csv.txt", plan=plan, reader="freeswitch_csv",
                         reader_options={"timezone": "UTC", "partner": "ORFR"})
    assert again.already_ingested and again.batch_id == fsw.batch_id and len(store.batches()) == 2


def test_switch_files_billed_by_a_cycle(cli):
    """Files written in the switches' formats (the plugin's fixtures): the answered calls are
    rated by the partners' cycles, to the last digit."""
    opts = [x for k, v in AST.items() for x in ("--reader-option", f"{k}={v}")]
    out = run("ingest", str(CDR / "asterisk_trunk_calls.csv"), "--rules", "rules", "--reader", "asterisk_csv", *opts)
    assert ("asterisk_trunk_calls.csv: batch #1: read 12, passed 3, rejected 8, duplicates 1 (bad_timestamp 1, "
            "duplicate_id 1, invalid_number 1, malformed_row 3, unanswered 3)") in out
    opts = [x for k, v in FS.items() for x in ("--reader-option", f"{k}={v}")]
    # no --reader: the FreeSWITCH reader recognizes its file
    out = run("ingest", str(CDR / "freeswitch_calls.csv"), "--rules", "rules", *opts)
    assert ("freeswitch_calls.csv: batch #2: read 8, passed 3, rejected 5, duplicates 0 (bad_duration 1, "
            "invalid_number 1, malformed_row 1, unanswered 2)") in out
    out = run("cycle", "run", "ORFR", "2026-03", "--rules", "rules")
    # France mobile 61 s -> 66 s x 0.02/60 = 0.022; 125 s -> 126 s: 0.042 (Asterisk);
    # Spain 42 s and 30 s -> 60 s each: 0.03 + 0.03; 61 s -> 66 s: 0.033 (FreeSWITCH)
    assert "records 5: rated 5, rejected 0" in out and "rated 0.157 EUR" in out
    out = run("cycle", "run", "BTGB", "2026-03", "--rules", "rules")
    assert "records 1: rated 1, rejected 0" in out and "rated 0.15 EUR" in out  # 600 s x 0.015/60
    # a reader's own rejects are located: file, line, reason
    from icdsl.billing.store import open_store

    with contextlib_closing(open_store(None)) as st:
        rej = {r["row"]: (r["reason"], r["detail"]) for r in st.rejects(1).to_pylist()}
    assert sorted(rej) == [3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert rej[6][0] == rej[8][0] == rej[11][0] == "malformed_row"
    assert rej[7] == ("duplicate_id", "id '1772612095.11' was already seen earlier in the file")
    assert rej[9][0] == "bad_timestamp"


class contextlib_closing:  # noqa: N801 - a context manager named like contextlib's
    def __init__(self, store):
        self.store = store

    def __enter__(self):
        return self.store

    def __exit__(self, *exc):
        self.store.close()


def test_ingest_reader_mistakes_are_messages(cli):
    fs = str(CDR / "freeswitch_calls.csv")
    out = run("ingest", fs, "--rules", "rules", code=1)
    assert "freeswitch_calls.csv: reader 'freeswitch_csv': the CDR times are local to the switch" in out
    out = run("ingest", fs, "--rules", "rules", "--reader", "freeswich_csv", code=1)
    assert "unknown reader 'freeswich_csv'" in out and "freeswitch_csv" in out
    out = run("ingest", fs, "--rules", "rules", "--reader", "freeswitch_csv", "--reader-option", "tz=UTC", code=1)
    assert "reader 'freeswitch_csv' has no option 'tz'" in out
    assert "expects KEY=VALUE" in run("ingest", fs, "--rules", "rules", "--reader-option", "timezone", code=2)
    assert "no conflicts or suspected duplicates" in run("conflicts")
    assert "there is no intake batch #7" in run("conflicts", "--batch", "7", code=1)
    assert "--kind is conflict or suspect" in run("conflicts", "--kind", "other", code=2)


# --------------------------------------------------------------------------- conflicts


def fs_line(uid: str, start: datetime, billsec: int, number: str = "0034688886392", partner: str = "ORFR") -> str:
    ans = start + timedelta(seconds=5)
    end = ans + timedelta(seconds=billsec)
    f = "%Y-%m-%d %H:%M:%S"
    return (f'"9007","9007","{number}","public","{start:{f}}","{ans:{f}}","{end:{f}}","{billsec + 5}",'
            f'"{billsec}","NORMAL_CLEARING","{uid}","","{partner}","PCMA","PCMA"\n')


def uid(n: int) -> str:
    return str(uuid.UUID(int=0x0B8F0A4E17A511F18C2A000000000000 + n))


T0 = datetime(2026, 3, 4, 9, 0)


def test_repeated_ids_with_changed_durations_every_conflict_reported_nothing_lost(store, plan, tmp_path):
    first = {n: 60 * (1 + n % 4) for n in range(20)}  # whole minutes: Spain at 0.03 a minute
    a = tmp_path / "day1.csv"
    a.write_text("".join(fs_line(uid(n), T0 + timedelta(minutes=10 * n), s) for n, s in first.items()))
    rep_a = store.ingest(a, plan=plan, reader="freeswitch_csv", reader_options=FS)
    assert (rep_a.read, rep_a.passed, rep_a.conflict_count) == (20, 20, 0)
    # the switch sends the day again: five calls changed (30 s longer), fifteen the same;
    # three new calls, one of them twice with another duration, one twice the same
    changed = {3, 7, 11, 12, 19}
    lines = [fs_line(uid(n), T0 + timedelta(minutes=10 * n), s + (30 if n in changed else 0)) for n, s in first.items()]
    new = {20: 120, 21: 60, 22: 180}
    lines += [fs_line(uid(n), T0 + timedelta(minutes=10 * n), s) for n, s in new.items()]
    # line 5: call 21 first (billed), its line 23 comes later with another duration (a conflict)
    lines.insert(4, fs_line(uid(21), T0 + timedelta(minutes=210), 120))
    lines.append(fs_line(uid(22), T0 + timedelta(minutes=220), 180))  # line 25: 22 again, the same
    b = tmp_path / "day1-resent.csv"
    b.write_text("".join(lines))
    rep = store.ingest(b, plan=plan, reader="freeswitch_csv", reader_options=FS)
    reconciled(store, rep)
    assert (rep.read, rep.passed, rep.rejected, rep.duplicates) == (25, 3, 6, 16)
    assert rep.by_reason == {"conflicting_duplicate": 6, "duplicate_id": 16}
    assert rep.conflict_count == 6
    rows = store.conflicts(batch_id=rep.batch_id)
    got = {c.record_id: c for c in rows}
    # every changed id is reported, once, with both versions and what differs
    assert set(got) == {uid(n) for n in changed} | {uid(21)}
    for n in changed:
        c = got[uid(n)]
        old, new_s = first[n], first[n] + 30
        assert c.kind == "conflict" and c.earlier_batch_id == rep_a.batch_id and c.row is None
        assert c.differs == {"duration_s": [str(old), str(new_s)], "total_s": [str(old + 5), str(new_s + 5)]}
        assert (c.earlier["duration_s"], c.later["duration_s"]) == (old, new_s)
        assert c.earlier["id"] == c.later["id"] == uid(n) and c.partner == "ORFR"
    c = got[uid(21)]  # within the file: its line is known, the billed version is this batch's
    assert (c.row, c.earlier_batch_id, c.differs["duration_s"]) == (23, rep.batch_id, ["120", "60"])
    # the rejects: each later version kept with its line, the reason saying what to do
    rej = store.rejects(rep.batch_id).to_pylist()
    conflict_rejects = [r for r in rej if r["reason"] == "conflicting_duplicate"]
    assert {r["id"] for r in conflict_rejects} == set(got)
    line23 = next(r for r in conflict_rejects if r["row"] == 23)
    assert line23["raw"] == lines[22].rstrip("\n")
    assert "duration_s 120 -> 60" in line23["detail"] and "earlier version stays billed" in line23["detail"]
    repeat = next(r for r in rej if r["id"] == uid(0))
    assert repeat["reason"] == "duplicate_id" and repeat["detail"] == f"id '{uid(0)}' was already ingested in batch #1 (day1.csv)"
    # every line of the file is somewhere: a record, or a reject
    records, _ = rows_of(store, rep.batch_id)
    assert sorted(records.column("id").to_pylist()) == [uid(20), uid(21), uid(22)]
    # the same file again adds nothing (no batch, no conflict)
    again = store.ingest(b, plan=plan, reader="freeswitch_csv", reader_options=FS)
    assert again.already_ingested and len(store.batches()) == 2 and len(store.conflicts()) == 6
    # the cycle bills the versions ingested first: never the later ones, never twice
    cyc = store.run_cycle("ORFR", "2026-03", plan)
    minutes = sum(first.values()) // 60 + (120 + 120 + 180) // 60
    assert cyc.rated == 23 and cyc.totals == {"EUR": Decimal("0.03") * minutes}


def test_conflicts_of_csv_and_parquet_files_ids_compared_as_text(store, plan, tmp_path):
    head = "id,partner,direction,service,a_number,b_number,start,duration_s,route\n"
    a = tmp_path / "a.csv"
    a.write_text(head + "".join(f"{i},ORFR,outbound,voice,33123456789,33612345678,2026-03-04T09:0{i}:00Z,60,std\n"
                                for i in range(1, 6))
                 + "3,ORFR,outbound,voice,33123456789,33612345678,2026-03-04T09:03:00Z,60,premium\n")
    rep_a = store.ingest(a, plan=plan)
    reconciled(store, rep_a)
    assert (rep_a.passed, rep_a.rejected, rep_a.by_reason) == (5, 1, {"conflicting_duplicate": 1})
    c = store.conflicts(batch_id=rep_a.batch_id)[0]
    assert (c.row, c.record_id, c.differs) == (7, "3", {"route": ["std", "premium"]})
    # a Parquet file with integer ids: 4 and 5 again, 4 with another start
    b = tmp_path / "b.parquet"
    pq.write_table(pa.table({
        "id": pa.array([4, 5, 6], pa.int64()), "partner": ["ORFR"] * 3, "direction": ["outbound"] * 3,
        "service": ["voice"] * 3, "a_number": ["33123456789"] * 3, "b_number": ["33612345678"] * 3,
        "start": pa.array([datetime(2026, 3, 4, 9, 14, tzinfo=UTC), datetime(2026, 3, 4, 9, 5, tzinfo=UTC),
                           datetime(2026, 3, 4, 9, 6, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
        "duration_s": pa.array([60, 60, 60], pa.int64()),
    }), b)
    rep_b = store.ingest(b, plan=plan)
    reconciled(store, rep_b)
    assert (rep_b.passed, rep_b.rejected, rep_b.duplicates) == (1, 1, 1)
    c = store.conflicts(batch_id=rep_b.batch_id)[0]
    assert (c.record_id, c.earlier_batch_id, list(c.differs)) == ("4", rep_a.batch_id, ["start"])


def test_the_same_results_whatever_the_batches_and_the_spill(store, plan, planned, tmp_path, monkeypatch):
    """Conflicts across batches of one file, and duplicates spilled to disk, give the same
    counts and conflicts as one batch in memory."""
    rng = random.Random(7)
    lines = []
    for _ in range(60):
        n = rng.randrange(25)
        lines.append(fs_line(uid(n), T0 + timedelta(minutes=n), 60 + 30 * rng.randrange(2)))
    f = tmp_path / "noisy.csv"
    f.write_text("".join(lines))
    ref = store.ingest(f, plan=plan, reader="freeswitch_csv", reader_options=FS)
    expected = ([(c.row, c.record_id, c.differs) for c in store.conflicts(batch_id=ref.batch_id)],
                (ref.read, ref.passed, ref.rejected, ref.duplicates))
    assert ref.conflict_count > 0 and ref.duplicates > 0

    from icdsl.billing.store import open_store

    monkeypatch.setattr(conflicts, "PENDING_ROWS", 4)
    other = open_store(f"sqlite:///{tmp_path / 'other.db'}", data_dir=tmp_path / "other-data")
    try:
        other.load_plan(*planned)
        rep = other.ingest(f, plan=plan, reader="freeswitch_csv", reader_options=FS, batch_rows=7)
        reconciled(other, rep)
        got = [(c.row, c.record_id, c.differs) for c in other.conflicts(batch_id=rep.batch_id)]
        assert (sorted(got, key=str), (rep.read, rep.passed, rep.rejected, rep.duplicates)) == \
            (sorted(expected[0], key=str), expected[1])
        leftovers = [p for p in (tmp_path / "other-data").rglob("*") if "pending" in p.name]
        assert leftovers == []
    finally:
        other.close()


# --------------------------------------------------------------------------- fingerprints


def test_fingerprints_report_the_same_call_under_new_ids(store, plan, tmp_path):
    a = tmp_path / "a.csv"
    a.write_text(fs_line(uid(1), T0, 60) + fs_line(uid(2), T0 + timedelta(minutes=5), 120))
    store.ingest(a, plan=plan, reader="freeswitch_csv", reader_options=FS)
    b = tmp_path / "b.csv"
    b.write_text(fs_line(uid(11), T0, 60)  # call 1 under a new id
                 + fs_line(uid(12), T0 + timedelta(minutes=5), 121)  # not the same duration: another call
                 + fs_line(uid(13), T0 + timedelta(hours=1), 60)
                 + fs_line(uid(14), T0 + timedelta(hours=1), 60))  # 13 again, under a new id
    plain = store.ingest(b, plan=plan, reader="freeswitch_csv", reader_options=FS)
    assert plain.suspect_count == 0 and "suspected" not in str(plain)
    c = tmp_path / "c.csv"
    c.write_text(b.read_text().replace(uid(11), uid(21)).replace(uid(12), uid(22)).replace(uid(13), uid(23))
                 .replace(uid(14), uid(24)))
    rep = store.ingest(c, plan=plan, reader="freeswitch_csv", reader_options=FS, fingerprint=True)
    reconciled(store, rep)
    assert rep.passed == 4  # suspects are billed: the analyst decides
    got = {(s.record_id, s.earlier_id, s.earlier_batch_id) for s in store.conflicts(kind="suspect")}
    # c.csv is b.csv under new ids: every call is a suspect, named with its earliest record
    # (21 is call 1 of a.csv, not 11 of b.csv; 24 is 13 of b.csv, not 23 of this file)
    assert got == {(uid(21), uid(1), 1), (uid(22), uid(12), 2), (uid(23), uid(13), 2), (uid(24), uid(13), 2)}
    assert rep.suspect_count == 4 and "4 suspected duplicate(s)" in str(rep)


# --------------------------------------------------------------------------- hostile input


def test_hostile_input_gives_located_rejects_never_a_traceback(cli):
    tmp_path = cli
    good = fs_line(uid(1), T0, 60)
    cdr = [
        good,  # 1
        '"' + "9" * 3_000_000 + good[4:],  # 2: a 3 MB field
        "\x00\x01garbage\n",  # 3
        ",".join(['"x"'] * 100_000) + "\n",  # 4: 100 000 fields
        fs_line(uid(2), T0, 60).replace('"65","60"', '"65","' + "4" * 400 + '"'),  # 5: a 400-digit billsec
        "\n",  # blank: not a line
        '"unbalanced,"quotes\n',  # 7
    ]
    f = tmp_path / "hostile_cdr.csv"
    f.write_bytes("".join(cdr).encode() + b"\xff\xfe not utf-8\n")  # 8
    out = run("ingest", str(f), "--rules", "rules", "--reader", "freeswitch_csv",
              *[x for k, v in FS.items() for x in ("--reader-option", f"{k}={v}")])
    assert "hostile_cdr.csv: batch #1: read 7, passed 1, rejected 6, duplicates 0 (bad_duration 1, malformed_row 5)" in out
    table = tmp_path / "hostile.csv"
    table.write_text("id,partner,direction,service,a_number,b_number,start,duration_s\n"
                     "1,ORFR,outbound,voice,33123456789,33612345678,2026-03-04T09:00:00Z,60\n"
                     "2,ORFR,outbound,voice,33123456789,33612345678,2026-03-04T09:01:00Z," + "9" * 3_000_000 + "\n"
                     '3,ORFR,outbound,voice,33123456789,"' + "7" * 2_000_000 + '",2026-03-04T09:02:00Z,60\n'
                     "\x00\x01\x02garbage\n"
                     "4,ORFR,outbound,voice,1,2,3,4,5,6\n"
                     "5,ORFR,outbound,voice,33123456789,33612345678,2026-03-04T09:04:00Z,60\n")
    out = run("ingest", str(table), "--rules", "rules")
    assert "hostile.csv: batch #2: read 6, passed 2, rejected 4, duplicates 0" in out
    from icdsl.billing.store import open_store

    with contextlib_closing(open_store(None)) as st:
        for b, lines in ((1, {2: "malformed_row", 3: "malformed_row", 4: "malformed_row", 5: "bad_duration",
                               7: "malformed_row", 8: "malformed_row"}),
                         (2, {3: "bad_duration", 4: "invalid_number", 5: "malformed_row", 6: "malformed_row"})):
            rej = st.rejects(b).to_pylist()
            assert {r["row"]: r["reason"] for r in rej} == lines
            assert all(len(r["detail"]) < 300 for r in rej)  # a detail shows a value, never all of it
        details = {r["row"]: r["detail"] for r in st.rejects(1).to_pylist()}
    assert details[2] == "the line is not valid CSV (a field longer than 131072 characters)"
    assert details[4] == "100000 fields; a line of FreeSWITCH mod_cdr_csv 'example' has 15"
    assert details[5].startswith("billsec (duration_s) '444") and details[5].endswith("' is too large")
    # bytes that are no text at all: a located message, never the whole "header"
    junk = tmp_path / "junk.csv"
    junk.write_bytes(bytes(random.Random(1).randrange(256) for _ in range(200_000)))
    out = run("ingest", str(junk), "--rules", "rules", code=1)
    assert out.startswith("error: junk.csv: ") and len(out) < 3000


# --------------------------------------------------------------------------- a plugin's reader


class _Broken(Reader):
    name = "broken_cdr"
    description = "raises half-way"
    patterns = ("*.broken",)

    def batches(self):
        yield IntakeBatch(self.schema.empty_table(), conflicts.REJECTS_SCHEMA.empty_table(), 1, IntakeCounts())
        raise RuntimeError("lost the connection to the switch")


class _WrongTypes(Reader):
    name = "text_start_cdr"
    description = "gives the start as text"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.schema = pa.schema([f if f.name != "start" else pa.field("start", pa.string()) for f in self.schema])

    def batches(self):
        return iter(())


def test_a_plugins_reader_that_misbehaves_is_named(store, plan, tmp_path):
    plugin = types.ModuleType("acme_cdr")
    plugin.ICDSL_HOOK_API = 1
    plugin.icdsl_record_readers = hookimpl(lambda: [_Broken, _WrongTypes])
    f = tmp_path / "calls.broken"
    f.write_text("anything\n")
    pm = make_plugin_manager((plugin,))
    with use_plugin_manager(pm), pytest.raises(IngestError) as e:
        store.ingest(f, plan=plan, reader="broken_cdr")
    assert "calls.broken: reader 'broken_cdr' of plugin 'acme_cdr' failed" in str(e.value)
    assert "RuntimeError: lost the connection to the switch" in str(e.value)
    with use_plugin_manager(pm), pytest.raises(IngestError) as e:
        store.ingest(f, plan=plan, reader="text_start_cdr")
    assert "gives 'start' as string; the intake needs timestamp[us, tz=UTC]" in str(e.value)
    assert store.batches() == []  # nothing half-ingested


# --------------------------------------------------------------------------- the texts


def test_ingest_and_conflicts_texts_golden(cli):
    tmp_path = cli
    opts = [x for k, v in FS.items() for x in ("--reader-option", f"{k}={v}")]
    (tmp_path / "day.csv").write_text(fs_line(uid(1), T0, 60) + fs_line(uid(2), T0 + timedelta(minutes=3), 120))
    (tmp_path / "again.csv").write_text(fs_line(uid(1), T0, 90) + fs_line(uid(2), T0 + timedelta(minutes=3), 120)
                                        + fs_line(uid(3), T0, 60) + fs_line(uid(3), T0, 61))
    text = run("ingest", "day.csv", "--rules", "rules", "--reader", "freeswitch_csv", *opts, "--fingerprint")
    text = text.split("\n", 1)[1]  # after "loaded: ..."
    text += run("ingest", "again.csv", "--rules", "rules", "--reader", "freeswitch_csv", *opts, "--fingerprint")
    text += run("conflicts")
    compare_golden(GOLDEN / "ingest" / "conflicts.txt", text)
    status = run("cycle", "status")
    assert "ORFR: 2 conflicting duplicate(s): rejected, the earlier versions billed (icdsl conflicts --partner ORFR " \
           "--kind conflict)" in status
    assert "ORFR: 1 suspected duplicate(s) under new ids: billed" in status
    assert '"differs": {' in run("conflicts", "--partner", "ORFR", "--format", "json")
