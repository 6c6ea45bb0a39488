"""Record intake (icdsl.rating.intake): files to normalized records and rejects, with exact
expectations for every reject code, the reconciliation of counts, and the awkward inputs (broken
rows, bad bytes, BOM, huge fields, DST gaps, empty files, Parquet, layouts, number spellings)."""

import csv
import gzip
import io
import json
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from helpers import ROOT

from icdsl.plan.model import RecordLayout
from icdsl.rating.intake import (
    FIELDS,
    REJECT_REASONS,
    IntakeError,
    RecordReader,
    Reject,
    csvfile,
    duplicates,
    normalize_record,
    read_records,
    records_table,
)
from icdsl.rating.intake.duplicates import Deduper
from icdsl.rating.intake.numbers import NumberError, number_plan, to_e164, to_e164_array
from icdsl.rating.rejects import REJECTS_SCHEMA

DATA = ROOT / "tests" / "data" / "records"
PARIS = RecordLayout(name="paris", timezone="Europe/Paris")
BENCH = RecordLayout(
    name="bench",
    columns=(("start", "start_time"), ("duration_s", "duration"), ("partner", "partner_id")),
    constants=(("direction", "outbound"), ("service", "voice")),
)
HEADER = "id,partner,direction,service,b_number,start,duration_s\n"


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def write(tmp_path, text, name="t.csv"):
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def row(i, b="33612345678", start="2026-03-04T09:15:00Z", dur="61", partner="FR01"):
    return f"{i},{partner},outbound,voice,{b},{start},{dur}\n"


def rejects(table):
    return [(r["row"], r["id"], r["reason"], r["detail"]) for r in table.to_pylist()]


# --------------------------------------------------------------------------- every reject code


MIXED_REJECTS = [
    (4, "3", "invalid_number",
     "b_number '00034612345678' has the international prefix 00 followed by 0 (no country code starts with 0)"),
    (5, "4", "bad_timestamp",
     "start '2026-13-01 10:00' is not a timestamp (expected ISO 8601 with offset, or the layout's format)"),
    (6, "5", "negative_duration", "duration_s '-5' is negative"),
    (7, "6", "bad_duration", "duration_s '61.5' is not a whole number of seconds"),
    (8, "7", "bad_duration", "duration_s 'abc' is not a number of seconds"),
    (9, "8", "missing_field", "b_number is empty"),
    (10, None, "missing_field", "id is empty"),
    (11, "1", "duplicate_id", "id '1' was already seen earlier in the file"),
    (12, "9", "invalid_number", "b_number '1234567890123456' has 16 digits, more than the 15 of E.164"),
    (14, "11", "bad_timestamp", "start '2026-03-29 02:30:00' does not exist in Europe/Paris (DST gap)"),
    (15, "12", "malformed_row", "line has 4 fields, the header has 9"),
]


@pytest.mark.parametrize("batch_rows", [1_000_000, 4, 1])
def test_every_intake_reject_code_golden(batch_rows):
    rec, rej, counts = read_records(DATA / "mixed.csv", PARIS, batch_rows=batch_rows)
    assert rejects(rej) == MIXED_REJECTS
    assert rej.schema == REJECTS_SCHEMA
    assert rej.column("raw")[0].as_py() == "3,FR01,outbound,voice,,00034612345678,2026-03-04T09:17:00Z,5,std"
    assert rej.column("raw")[-1].as_py() == "12,FR01,outbound,voice"
    assert rec.column("id").to_pylist() == ["1", "2", "10", "13", "14"]
    assert (counts.read, counts.passed, counts.rejected, counts.duplicates) == (16, 5, 10, 1)
    assert counts.by_reason == {
        "invalid_number": 2, "bad_timestamp": 2, "negative_duration": 1, "bad_duration": 2,
        "missing_field": 2, "duplicate_id": 1, "malformed_row": 1,
    }
    assert counts.reconciles() and counts.read == counts.passed + counts.rejected + counts.duplicates
    first = rec.slice(0, 1).to_pylist()[0]
    assert first == {
        "id": "1", "partner": "FR01", "direction": "outbound", "service": "voice",
        "a_number": "33123456789", "b_number": "33612345678", "start": utc(2026, 3, 4, 8, 15),
        "duration_s": 61, "volume": None, "units": None, "route_class": "premium",
    }
    by_id = {r["id"]: r for r in rec.to_pylist()}
    assert by_id["2"]["b_number"] == "34612345678" and by_id["2"]["duration_s"] == 0
    assert by_id["10"]["start"] == utc(2026, 3, 4, 8, 17)  # local Paris time, 61.0 accepted
    assert by_id["10"]["duration_s"] == 61
    assert by_id["13"]["service"] == "sms" and by_id["13"]["direction"] == "inbound"
    assert by_id["13"]["b_number"] == "442079460958"  # tel: URI with separators
    assert by_id["13"]["start"] == utc(2026, 10, 25, 0, 30)  # ambiguous: first occurrence (CEST)
    assert by_id["14"]["b_number"] is None and by_id["14"]["duration_s"] == 0  # data: neither needed


def test_reject_reasons_cover_intake_and_rating():
    intake = {"bad_timestamp", "negative_duration", "bad_duration", "invalid_number", "missing_field",
              "duplicate_id", "bad_volume", "malformed_row"}
    rating = {"unknown_partner", "no_agreement", "outside_agreement_period", "no_rate", "zero_duration"}
    assert intake | rating <= set(REJECT_REASONS)
    assert all(isinstance(v, str) and v and "\n" not in v for v in REJECT_REASONS.values())
    assert "missing_column" not in REJECT_REASONS  # a file-level error, not a row reject
    result = pytest.importorskip("icdsl.rating.result")
    assert set(result.REJECT_REASONS) <= set(REJECT_REASONS)  # every code rating may give


def test_volume_and_units(tmp_path):
    p = write(tmp_path, "id,partner,direction,service,b_number,start,duration_s,volume,units\n"
                        "1,P,outbound,data,,2026-01-01T00:00:00Z,,1048576,\n"
                        "2,P,outbound,data,,2026-01-01T00:00:00Z,,-1,\n"
                        "3,P,outbound,data,,2026-01-01T00:00:00Z,,1.5,\n"
                        "4,P,outbound,event,,2026-01-01T00:00:00Z,,,3\n"
                        "5,P,outbound,event,,2026-01-01T00:00:00Z,,,x\n")
    rec, rej, counts = read_records(p)
    assert rec.select(["id", "volume", "units", "duration_s"]).to_pylist() == [
        {"id": "1", "volume": 1048576, "units": None, "duration_s": 0},
        {"id": "4", "volume": None, "units": 3, "duration_s": 0},
    ]
    assert rejects(rej) == [
        (3, "2", "bad_volume", "volume '-1' is negative"),
        (4, "3", "bad_volume", "volume '1.5' is not a whole number of bytes"),
        (6, "5", "bad_units", "units 'x' is not a number"),
    ]
    assert counts.reconciles()


def test_first_problem_of_a_row_wins(tmp_path):
    p = write(tmp_path, HEADER + "1,,outbound,voice,abc,nope,-3\n" + "2,P,outbound,voice,abc,nope,-3\n"
              + "3,P,outbound,voice,33612345678,nope,-3\n")
    _, rej, _ = read_records(p)
    assert [(r[2], r[3].split(" ")[0]) for r in rejects(rej)] == [
        ("missing_field", "partner"), ("invalid_number", "b_number"), ("bad_timestamp", "start")]


# --------------------------------------------------------------------------- batches, duplicates


def test_duplicates_across_batches_first_occurrence_wins(tmp_path):
    ids = [5, 3, 5, 7, 3, 3, 9, 1, 7, 2]
    p = write(tmp_path, HEADER + "".join(row(i) for i in ids))
    reader = RecordReader(p, batch_rows=3)
    batches = list(reader.batches())
    assert [b.first_row for b in batches] == [2, 5, 8, 11]
    assert [b.counts.read for b in batches] == [3, 3, 3, 1]
    got = [i for b in batches for i in b.records.column("id").to_pylist()]
    assert got == ["5", "3", "7", "9", "1", "2"]
    dups = [(r["row"], r["id"]) for b in batches for r in b.rejects.to_pylist()]
    assert dups == [(4, "5"), (6, "3"), (7, "3"), (10, "7")]
    c = reader.counts
    assert (c.read, c.passed, c.rejected, c.duplicates) == (10, 6, 0, 4) and c.reconciles()


def test_a_rejected_row_does_not_claim_its_id(tmp_path):
    p = write(tmp_path, HEADER + row(1, start="bad") + row(1) + row(1))
    rec, rej, c = read_records(p, batch_rows=1)
    assert rec.column("id").to_pylist() == ["1"]
    assert [(r[0], r[2]) for r in rejects(rej)] == [(2, "bad_timestamp"), (4, "duplicate_id")]
    assert c.reconciles()


def test_dedupe_off(tmp_path):
    p = write(tmp_path, HEADER + row(1) + row(1))
    rec, _, c = read_records(p, dedupe=False)
    assert rec.num_rows == 2 and c.duplicates == 0


def test_parquet_integer_ids_dedupe_across_batches(tmp_path):
    n = 50
    ids = np.arange(n) % 40  # ids 0..9 repeat at the end
    t = pa.table({
        "id": pa.array(ids, pa.int64()),
        "partner": pa.array(["P"] * n),
        "direction": pa.array(["outbound"] * n),
        "service": pa.array(["voice"] * n),
        "b_number": pa.array(["4477001"] * n),
        "start": pa.array([datetime(2026, 1, 1, 12)] * n, pa.timestamp("s", tz="Europe/London")),
        "duration_s": pa.array(np.arange(n), pa.int32()),
    })
    p = tmp_path / "c.parquet"
    pq.write_table(t, p, row_group_size=16)
    rec, rej, c = read_records(p, batch_rows=7)
    assert rec.schema.field("id").type == pa.int64()
    assert rec.column("id").to_pylist() == list(range(40))
    assert rej.column("row").to_pylist() == list(range(41, 51))
    assert set(rej.column("reason").to_pylist()) == {"duplicate_id"}
    assert json.loads(rej.column("raw")[0].as_py()) == {
        "id": 0, "partner": "P", "direction": "outbound", "service": "voice", "b_number": "4477001",
        "start": "2026-01-01 12:00:00+00:00", "duration_s": 40}
    assert rec.column("start")[0].as_py() == utc(2026, 1, 1, 12)
    assert c.reconciles() and c.duplicates == 10


def test_seen_keys_cost_eight_bytes_an_id_and_handle_any_order():
    d = Deduper()
    ids = np.arange(800_000, dtype=np.int64)
    for k in range(4):
        chunk = pa.array(ids[k * 200_000 : (k + 1) * 200_000])
        assert len(d.duplicates(chunk, np.arange(len(chunk)))) == 0
    assert d.nbytes == 8 * 800_000
    rng = np.random.default_rng(1)
    shuffled = np.concatenate([rng.permutation(1_200_000), [5, 900_000]])  # 400k new ids, 2 repeats
    dup = d.duplicates(pa.array(shuffled), np.arange(len(shuffled)))
    assert len(dup) == 800_002 and (shuffled[dup[:-2]] < 800_000).all()
    assert dup[-1] == len(shuffled) - 1 and dup[-2] == len(shuffled) - 2  # the later occurrences
    assert d.nbytes == 8 * 1_200_000


def test_string_ids_hashed_and_canonical_integers(tmp_path):
    d = Deduper()
    first = pa.array(["a-1", "17", "017", "b-2", "a-1"])
    assert d.duplicates(first, np.arange(5)).tolist() == [4]
    again = pa.array(["17", "a-1", "17.0", "b-3"])
    assert d.duplicates(again, np.arange(4)).tolist() == [0, 1]



@pytest.mark.parametrize("exact", [0, 3, 6, 50_000])
def test_string_ids_kept_exactly_then_hashed_find_the_same_duplicates(monkeypatch, exact):
    """Past EXACT_IDS strings, the deduper hashes the strings seen so far and carries on with
    hashes: the duplicates found are the same wherever the switch falls."""
    monkeypatch.setattr(duplicates, "EXACT_IDS", exact)
    d = Deduper()
    batches = [["a-1", "b-2", "a-1", "c-3"], ["c-3", "d-4", "17", "e-5"], ["b-2", "f-6", "d-4", "f-6", "g-7"]]
    found = [d.duplicates(pa.array(b), np.arange(len(b))).tolist() for b in batches]
    assert found == [[2], [0], [0, 2, 3]]
    assert (d.exact is None) == (exact < 50_000)


# --------------------------------------------------------------------------- CSV oddities


def test_broken_row_in_the_middle_of_a_large_file(tmp_path):
    lines = [row(i) for i in range(1, 5001)]
    lines[2499] = "2500,FR01,outbound\n"  # line 2501: wrong field count
    lines[3999] = row(4000, start="yesterday")  # line 4001: after the broken row
    p = write(tmp_path, HEADER + "".join(lines))
    rec, rej, c = read_records(p, batch_rows=1000)
    assert rejects(rej) == [
        (2501, "2500", "malformed_row", "line has 3 fields, the header has 7"),
        (4001, "4000", "bad_timestamp",
         "start 'yesterday' is not a timestamp (expected ISO 8601 with offset, or the layout's format)"),
    ]
    assert rej.column("raw").to_pylist() == ["2500,FR01,outbound", lines[3999].rstrip("\n")]
    assert rec.num_rows == 4998 and c.read == 5000 and c.reconciles()


def test_non_utf8_bytes_are_a_malformed_row(tmp_path):
    data = (HEADER + row(1)).encode() + b"2,FR\xff01,outbound,voice,33612345678,2026-03-04T09:15:00Z,61\n" + (
        row(3, start="soon")).encode()
    rec, rej, c = read_records(write(tmp_path, data))
    assert rejects(rej) == [
        (3, "2", "malformed_row", "line is not UTF-8 (byte 0xff at position 5)"),
        (4, "3", "bad_timestamp",
         "start 'soon' is not a timestamp (expected ISO 8601 with offset, or the layout's format)"),
    ]
    assert rej.column("raw")[0].as_py() == "2,FR\\xff01,outbound,voice,33612345678,2026-03-04T09:15:00Z,61"
    assert rec.column("id").to_pylist() == ["1"] and c.reconciles()


def test_a_non_utf8_row_with_wrong_fields_prints_nothing_and_hooks_nothing(tmp_path):
    """pyarrow decodes a malformed row before calling the invalid-row handler; a row that is not
    UTF-8 must not make it print an "Exception ignored" traceback, and reading records must not
    replace the interpreter's global hooks to hide one."""
    import subprocess
    import sys

    data = (HEADER + row(1)).encode() + b"2,FR\xff01,outbound\n" + row(3).encode()
    p = write(tmp_path, data)
    script = (
        "import sys; hook = sys.unraisablehook\n"
        "from icdsl.rating.intake import read_records\n"
        f"rec, rej, c = read_records({str(p)!r})\n"
        "assert sys.unraisablehook is hook, 'a global hook was replaced'\n"
        "print(rec.num_rows, rej.num_rows, rej.column('detail')[0].as_py())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2 1 line is not UTF-8 (byte 0xff at position 5)"
    assert out.stderr == ""


def test_bom_crlf_and_blank_lines(tmp_path):
    text = "\ufeff" + HEADER + row(1) + "\n" + row(2, dur="x") + "\n\n" + row(3)
    p = write(tmp_path, text.replace("\n", "\r\n"))
    rec, rej, c = read_records(p)
    assert rec.column("id").to_pylist() == ["1", "3"]
    assert rejects(rej) == [(4, "2", "bad_duration", "duration_s 'x' is not a number of seconds")]
    assert rej.column("raw")[0].as_py() == row(2, dur="x").rstrip("\n")
    assert c.read == 3 and c.reconciles()  # blank lines are not records


def test_quoted_fields_and_a_newline_inside_quotes(tmp_path):
    text = ('id,partner,direction,service,b_number,start,duration_s,note\n'
            '1,FR01,outbound,voice,"+33 6 12 34 56 78",2026-03-04T09:15:00Z,61,"a, b"\n'
            '2,FR01,outbound,voice,33612345678,2026-03-04T09:15:00Z,61,"two\nlines"\n'
            '3,FR01,outbound,voice,33612345678,later,61,x\n')
    rec, rej, c = read_records(write(tmp_path, text))
    assert rec.column("note").to_pylist() == ["a, b", "two\nlines"]
    assert rejects(rej)[0][:3] == (5, "3", "bad_timestamp")
    assert c.reconciles()


def test_huge_field(tmp_path):
    big = "x" * (1 << 20)
    text = ("id,partner,direction,service,b_number,start,duration_s,blob\n"
            f"1,FR01,outbound,voice,33612345678,2026-03-04T09:15:00Z,61,{big}\n"
            f"2,FR01,outbound,voice,{'9' * 1000},2026-03-04T09:15:00Z,61,{big}\n")
    rec, rej, c = read_records(write(tmp_path, text))
    assert rec.column("blob")[0].as_py() == big
    (r,) = rej.to_pylist()
    assert r["detail"] == "b_number '" + "9" * 79 + "…' has 1000 digits, more than the 15 of E.164"
    assert r["raw"].endswith(big) and len(r["raw"]) > 1 << 20
    assert c.reconciles()


def test_semicolon_csv_and_gzip(tmp_path):
    text = HEADER.replace(",", ";") + row(1).replace(",", ";")
    rec, _, _ = read_records(write(tmp_path, text))
    assert rec.column("b_number").to_pylist() == ["33612345678"]
    p = tmp_path / "t.csv.gz"
    p.write_bytes(gzip.compress((HEADER + row(1) + row(2)).encode()))
    rec, _, c = read_records(p)
    assert rec.num_rows == 2 and c.reconciles()


# --------------------------------------------------------------------------- files as a whole


@pytest.mark.parametrize("content", ["", HEADER])
def test_empty_files(tmp_path, content):
    rec, rej, c = read_records(write(tmp_path, content))
    assert rec.num_rows == 0 and rej.num_rows == 0
    assert rec.schema.names[:10] == list(FIELDS)
    assert (c.read, c.passed, c.rejected, c.duplicates) == (0, 0, 0, 0) and c.reconciles()


def test_missing_column_lists_the_columns(tmp_path):
    p = write(tmp_path, "id,partner,dst,start,duration_s\n1,P,336,2026-01-01T00:00:00Z,1\n", "traffic.csv")
    lay = RecordLayout(name="x", constants=(("direction", "outbound"), ("service", "voice")))
    with pytest.raises(IntakeError) as e:
        RecordReader(p, lay)
    assert str(e.value) == ("column 'b_number' not found in traffic.csv; the columns are: "
                            "id, partner, dst, start, duration_s; map it in a `records` layout")
    with pytest.raises(IntakeError, match=r"column 'direction' not found in traffic.csv.*or give it a constant"):
        read_records(p)
    bad_map = RecordLayout(name="sw", columns=(("b_number", "called"),), constants=lay.constants)
    with pytest.raises(IntakeError) as e:
        RecordReader(p, bad_map)
    assert str(e.value).startswith("column 'called' (mapped to b_number by layout 'sw') not found in traffic.csv")
    # a data-only file needs neither b_number nor duration_s
    data = RecordLayout(name="d", constants=(("direction", "outbound"), ("service", "data")))
    rec, _, _ = read_records(p, data)
    assert rec.column("b_number").to_pylist() == [None] and rec.column("dst").to_pylist() == ["336"]


def test_unreadable_files(tmp_path):
    with pytest.raises(IntakeError, match="no such file"):
        RecordReader(tmp_path / "nope.csv")
    with pytest.raises(IntakeError, match="is a directory"):
        RecordReader(tmp_path)
    with pytest.raises(IntakeError, match="ZIP archive"):
        RecordReader(write(tmp_path, b"PK\x03\x04rest of a spreadsheet", "t.xlsx"))
    with pytest.raises(IntakeError, match="is not a Parquet file"):
        RecordReader(write(tmp_path, HEADER, "t.parquet"))
    with pytest.raises(IntakeError, match="neither a Parquet file nor a CSV file"):
        RecordReader(write(tmp_path, b"\x00\x01\x02\x03\n", "t.bin"))
    with pytest.raises(IntakeError, match="cannot read t.parquet as Parquet"):
        RecordReader(write(tmp_path, b"PAR1 truncated", "t.parquet"))
    with pytest.raises(IntakeError, match="carriage return alone"):
        RecordReader(write(tmp_path, HEADER.replace("\n", "\r") + row(1).replace("\n", "\r")))
    with pytest.raises(IntakeError, match="unknown time zone 'Mars/Olympus'"):
        RecordReader(write(tmp_path, HEADER), RecordLayout(name="m", timezone="Mars/Olympus"))


def test_numeric_start_needs_epoch_format(tmp_path):
    t = pa.table({"id": [1], "partner": ["P"], "direction": ["outbound"], "service": ["voice"],
                  "b_number": ["33612345678"], "start": [1772615700], "duration_s": [1]})
    p = tmp_path / "e.parquet"
    pq.write_table(t, p)
    with pytest.raises(IntakeError, match="set the layout's timestamp_format to epoch"):
        RecordReader(p)
    rec, _, _ = read_records(p, RecordLayout(name="e", timestamp_format="epoch"))
    assert rec.column("start")[0].as_py() == utc(2026, 3, 4, 9, 15)


# --------------------------------------------------------------------------- layouts


def test_bench_layout_csv_and_parquet_agree(tmp_path):
    rows = [
        (1, "447889260699", "16792826494", utc(2025, 10, 1), 0, 163),
        (2, "447275537433", "0719769062975", utc(2025, 10, 1, 7), 61, 179),
        (3, "447275537433", "441234", utc(2025, 10, 26, 1), 7200, 5),
    ]
    t = pa.table({
        "id": pa.array([r[0] for r in rows], pa.int64()),
        "a_number": [r[1] for r in rows],
        "b_number": [r[2] for r in rows],
        "start_time": pa.array([r[3] for r in rows], pa.timestamp("us", tz="UTC")),
        "duration": pa.array([r[4] for r in rows], pa.int32()),
        "partner_id": pa.array([r[5] for r in rows], pa.int32()),
    })
    pq.write_table(t, tmp_path / "cdrs.parquet")
    text = "id,a_number,b_number,start_time,duration,partner_id\n" + "".join(
        f"{r[0]},{r[1]},{r[2]},{r[3]:%Y-%m-%dT%H:%M:%SZ},{r[4]},{r[5]}\n" for r in rows)
    write(tmp_path, text, "cdrs.csv")
    pq_rec, _, _ = read_records(tmp_path / "cdrs.parquet", BENCH)
    csv_rec, _, _ = read_records(tmp_path / "cdrs.csv", BENCH)
    assert pq_rec.schema.field("id").type == pa.int64() and csv_rec.schema.field("id").type == pa.string()
    assert pq_rec.schema.names == list(FIELDS)  # mapped columns are not passed through
    assert pq_rec.drop_columns(["id"]).equals(csv_rec.drop_columns(["id"]))
    assert pq_rec.column("partner").to_pylist() == ["163", "179", "5"]
    assert pq_rec.column("direction").to_pylist() == ["outbound"] * 3
    assert pq_rec.column("b_number")[1].as_py() == "0719769062975"  # national, kept: no_rate later


def test_layout_extra_fields_and_collisions(tmp_path):
    text = ("call,who,dst,when,secs,rc,start\n"
            "7,FR01,+33612345678,04/03/2026 09:15:00,61,premium,ignored\n"
            "8,FR01,+33612345678,31/02/2026 09:15:00,61,std,ignored\n")
    lay = RecordLayout(
        name="sw",
        columns=(("id", "call"), ("partner", "who"), ("b_number", "dst"), ("start", "when"),
                 ("duration_s", "secs"), ("route_class", "rc")),
        constants=(("direction", "Outbound"), ("service", "VOICE"), ("origin", "lab")),
        timestamp_format="%d/%m/%Y %H:%M:%S", timezone="Europe/Paris")
    rec, rej, _ = read_records(write(tmp_path, text), lay)
    assert rec.to_pylist() == [{
        "id": "7", "partner": "FR01", "direction": "outbound", "service": "voice", "a_number": None,
        "b_number": "33612345678", "start": utc(2026, 3, 4, 8, 15), "duration_s": 61, "volume": None,
        "units": None, "route_class": "premium", "start_source": "ignored", "origin": "lab"}]
    assert rejects(rej) == [(3, "8", "bad_timestamp",
                             "when (start) '31/02/2026 09:15:00' does not match the layout's timestamp_format "
                             "'%d/%m/%Y %H:%M:%S'")]


def test_case_insensitive_columns_and_file_values_over_constants(tmp_path):
    text = "ID,Partner,Service,B_Number,Start,Duration_S\n1,P,sms,33612345678,2026-03-04T09:15:00Z,\n"
    lay = RecordLayout(name="c", constants=(("direction", "inbound"), ("service", "voice")))
    rec, _, _ = read_records(write(tmp_path, text), lay)
    assert rec.select(["id", "direction", "service", "duration_s"]).to_pylist() == [
        {"id": "1", "direction": "inbound", "service": "sms", "duration_s": 0}]


def test_asterisk_sample():
    lay = RecordLayout(
        name="asterisk",
        columns=(("id", "uniqueid"), ("partner", "accountcode"), ("a_number", "src"), ("b_number", "dst"),
                 ("start", "answer"), ("duration_s", "billsec")),
        constants=(("direction", "outbound"), ("service", "voice")),
        timezone="Europe/Madrid", country="ES")
    rec, rej, c = read_records(DATA / "asterisk.csv", lay)
    assert rec.select(["id", "a_number", "b_number", "start", "duration_s"]).to_pylist() == [
        {"id": "1709543690.1", "a_number": "34915551234", "b_number": "34612345678",
         "start": utc(2026, 3, 4, 8, 15), "duration_s": 61},
        {"id": "1709544000.2", "a_number": "34915551234", "b_number": "34612345678",
         "start": utc(2026, 3, 4, 8, 20, 5), "duration_s": 60},
        {"id": "1711673999.4", "a_number": "34915551234", "b_number": "34612345678",
         "start": utc(2026, 3, 29, 0, 59, 59), "duration_s": 31},
    ]
    assert rejects(rej) == [
        (4, "1709544600.3", "invalid_number",
         "dst (b_number) '00034612345678' has the international prefix 00 followed by 0 "
         "(no country code starts with 0)"),
        (6, "1711674600.5", "bad_timestamp", "answer (start) '2026-03-29 02:10:00' does not exist in "
                                             "Europe/Madrid (DST gap)"),
        (7, "1709543690.1", "duplicate_id", "uniqueid (id) '1709543690.1' was already seen earlier in the file"),
    ]
    assert "start_source" in rec.schema.names and "disposition" in rec.schema.names
    assert c.reconciles()


def test_freeswitch_sample():
    lay = RecordLayout(
        name="fs",
        columns=(("id", "uuid"), ("partner", "trunk"), ("a_number", "caller_id_number"),
                 ("b_number", "destination_number"), ("start", "answer_stamp"), ("duration_s", "billsec")),
        constants=(("direction", "outbound"), ("service", "voice")), timezone="Europe/Madrid")
    rec, rej, c = read_records(DATA / "freeswitch.csv", lay)
    assert rec.column("b_number").to_pylist() == ["34612345678"] * 3
    assert rec.column("duration_s").to_pylist() == [42, 0, 12]
    assert [(r[0], r[2]) for r in rejects(rej)] == [(4, "invalid_number"), (6, "duplicate_id")]
    assert rej.column("raw")[0].as_py().startswith('"a3c2f0e6-5d0b-4a51-9a3e-000000000003","1001","00034612345678"')
    assert c.reconciles()


# --------------------------------------------------------------------------- numbers


NO_COUNTRY_CASES = [
    ("+34612345678", "34612345678"),
    ("0034612345678", "34612345678"),
    ("+34 612-34.56 (78)", "34612345678"),
    ("34612345678", "34612345678"),
    ("tel:+34-612-345-678;phone-context=example.com", "34612345678"),
    ("sip:+34612345678@gw.example.net;user=phone", "34612345678"),
    ("sips:0034612345678;isub=1@gw", "34612345678"),
    ('"Ana" <sip:+34612345678@gw>', "34612345678"),
    ("0612345678", "0612345678"),  # national, no country to convert it: kept, no rate will match
]
NO_COUNTRY_BAD = [
    ("00034612345678", "has the international prefix 00 followed by 0 (no country code starts with 0)"),
    ("+034612345678", "does not start with a country code"),
    ("33 6 12 AB", "is not a phone number (characters other than digits)"),
    ("+12", "has 2 digits, fewer than 3"),
    ("1234567890123456", "has 16 digits, more than the 15 of E.164"),
    ("sip:gw.example.net", "is a SIP URI without a user part"),
    ("++33", "is not a phone number (characters other than digits)"),
    ("-", "has no digits"),
]
COUNTRY_CASES = [
    ("FR", "0612345678", "33612345678"),
    ("FR", "612345678", "33612345678"),
    ("FR", "33612345678", "33612345678"),
    ("FR", "0044 20 7946 0958", "442079460958"),
    ("FR", "447946095800", "447946095800"),  # not a French length: international
    ("ES", "612345678", "34612345678"),
    ("ES", "0034612345678", "34612345678"),
    ("IT", "0612345678", "390612345678"),  # Italy keeps its 0
    ("GB", "07700 900123", "447700900123"),
    ("US", "(212) 555-1234", "12125551234"),
    ("US", "1 212 555 1234", "12125551234"),
    ("US", "011 33 6 12 34 56 78", "33612345678"),
    ("AU", "0011 44 20 7946 0958", "442079460958"),
    ("AU", "02 9374 4000", "61293744000"),
]


@pytest.mark.parametrize(("value", "expected"), NO_COUNTRY_CASES)
def test_numbers_without_country(value, expected):
    assert to_e164(value) == expected


@pytest.mark.parametrize(("value", "message"), NO_COUNTRY_BAD)
def test_bad_numbers(value, message):
    with pytest.raises(NumberError) as e:
        to_e164(value)
    assert str(e.value) == message


@pytest.mark.parametrize(("country", "value", "expected"), COUNTRY_CASES)
def test_numbers_with_country(country, value, expected):
    assert to_e164(value, number_plan(country)) == expected


@pytest.mark.parametrize("country", [None, "FR", "ES", "US", "GB", "IT", "AU"])
def test_vectorized_numbers_agree_with_one_by_one(country):
    plan = number_plan(country)
    values = [v for v, _ in NO_COUNTRY_CASES] + [v for v, _ in NO_COUNTRY_BAD] + [
        c[1] for c in COUNTRY_CASES] + ["", "   ", None, "0", "00", "+", "0612345678", "612345678",
                                         "2125551234", "3361234567", "4477009001", "1"]
    got, bad, messages = to_e164_array(pa.array(values, pa.string()), plan)
    bad_at = dict(zip(bad.tolist(), messages, strict=True))
    for i, v in enumerate(values):
        if v is None or not v.strip():
            assert got[i].as_py() is None and i not in bad_at
            continue
        try:
            want = to_e164(v, plan)
        except NumberError as e:
            assert bad_at.get(i) == str(e), v
        else:
            assert i not in bad_at and got[i].as_py() == want, v


def test_clean_columns_take_the_fast_path():
    arr = pa.array(["33612345678", "4477001234"] * 1000)
    got, bad, _ = to_e164_array(arr)
    assert got is arr and len(bad) == 0


def test_e164_mode_keeps_prefixes(tmp_path):
    p = write(tmp_path, HEADER + row(1, b="0034612345678") + row(2, b="+34612345678") + row(3, b="12"))
    rec, rej, _ = read_records(p, numbers="e164")
    assert rec.column("b_number").to_pylist() == ["0034612345678", "34612345678"]
    assert rejects(rej) == [(4, "3", "invalid_number", "b_number '12' has 2 digits, fewer than 3")]
    rec, _, _ = read_records(p)
    assert rec.column("b_number").to_pylist() == ["34612345678", "34612345678"]


# --------------------------------------------------------------------------- timestamps


TS_OK = [
    ("2026-03-04T09:15:00+01:00", utc(2026, 3, 4, 8, 15)),
    ("2026-03-04 09:15:00Z", utc(2026, 3, 4, 9, 15)),
    ("2026-03-04T09:15Z", utc(2026, 3, 4, 9, 15)),
    ("2026-03-04T09:15:00.123456Z", utc(2026, 3, 4, 9, 15, 0, 123456)),
    ("2026-03-04T09:15:00.123456789Z", utc(2026, 3, 4, 9, 15, 0, 123456)),  # truncated
    ("2026-03-04T09:15:00+0100", utc(2026, 3, 4, 8, 15)),
    ("2026-03-04T09:15:00-05", utc(2026, 3, 4, 14, 15)),
    ("2026-03-04t09:15:00z", utc(2026, 3, 4, 9, 15)),
    (" 2026-03-04T09:15:00 +01:00 ", utc(2026, 3, 4, 8, 15)),
    ("2026-03-04 09:15:00", utc(2026, 3, 4, 8, 15)),  # Paris local
    ("2026-03-04T09:15", utc(2026, 3, 4, 8, 15)),
    ("2026-07-01 12:00:00.5", utc(2026, 7, 1, 10, 0, 0, 500000)),
    ("2026-10-25 02:30:00", utc(2026, 10, 25, 0, 30)),  # ambiguous: first occurrence
    ("2026-10-25 03:00:00", utc(2026, 10, 25, 2, 0)),
]
TS_BAD = ["2026-03-29 02:30:00", "2026-03-29T02:00", "2026-13-01 10:00", "2026-02-30T10:00:00Z",
          "2026-03-04", "2026-03-04T24:00:00Z", "04/03/2026", "2026-03-04T09:15:00+25:00", "now"]


def test_timestamps_vectorized_and_one_by_one_agree(tmp_path):
    values = [v for v, _ in TS_OK] + TS_BAD
    # many copies so that the Arrow paths (not only the Python fallback) are used
    lines = [row(i, start=v) for i, v in enumerate(values * 50)]
    rec, rej, c = read_records(write(tmp_path, HEADER + "".join(lines)), PARIS)
    got = dict(zip(rec.column("id").to_pylist(), rec.column("start").to_pylist(), strict=True))
    for i, v in enumerate(values * 50):
        one = normalize_record({"b_number": "33612345678", "start": v, "duration_s": "1", "partner": "P",
                                "direction": "outbound", "service": "voice"}, PARIS)
        if isinstance(one, Reject):
            assert str(i) not in got
        else:
            assert got[str(i)] == one["start"], v
    assert [got[str(i)] for i in range(len(TS_OK))] == [t for _, t in TS_OK]
    details = set(rej.column("detail").to_pylist())
    assert "start '2026-03-29 02:30:00' does not exist in Europe/Paris (DST gap)" in details
    assert "start '2026-03-29T02:00' does not exist in Europe/Paris (DST gap)" in details
    assert c.rejected == len(TS_BAD) * 50 and c.reconciles()


def test_epoch_and_parquet_naive_timestamps(tmp_path):
    p = write(tmp_path, HEADER + row(1, start="1772615700") + row(2, start="1772615700.5") + row(3, start="x"))
    rec, rej, _ = read_records(p, RecordLayout(name="e", timestamp_format="epoch"))
    assert rec.column("start").to_pylist() == [utc(2026, 3, 4, 9, 15), utc(2026, 3, 4, 9, 15, 0, 500000)]
    assert rejects(rej)[0][3] == "start 'x' is not a number of seconds since 1970"
    t = pa.table({"id": ["a", "b", "c"], "partner": ["P"] * 3, "direction": ["outbound"] * 3,
                  "service": ["voice"] * 3, "b_number": ["33612345678"] * 3,
                  "start": pa.array([datetime(2026, 3, 29, 1, 59), datetime(2026, 3, 29, 2, 30),
                                     datetime(2026, 3, 29, 3, 0)], pa.timestamp("ms")),
                  "duration_s": pa.array([1.0, 2.0, None])})
    pq.write_table(t, tmp_path / "n.parquet")
    rec, rej, c = read_records(tmp_path / "n.parquet", PARIS)
    assert rec.select(["id", "start", "duration_s"]).to_pylist() == [
        {"id": "a", "start": utc(2026, 3, 29, 0, 59), "duration_s": 1}]
    assert rejects(rej) == [
        (2, "b", "bad_timestamp", "start '2026-03-29 02:30:00' does not exist in Europe/Paris (DST gap)"),
        (3, "c", "missing_field", "duration_s is empty")]
    assert c.reconciles()


# --------------------------------------------------------------------------- one record


def test_normalize_record_from_the_command_line():
    got = normalize_record({"b_number": "+33 6 12 34 56 78", "start": "2026-03-04T09:15:00+01:00",
                            "duration_s": "61", "partner": "FR01", "direction": "outbound",
                            "service": "voice", "route_class": "premium"})
    assert got == {"id": None, "partner": "FR01", "direction": "outbound", "service": "voice",
                   "a_number": None, "b_number": "33612345678", "start": utc(2026, 3, 4, 8, 15),
                   "duration_s": 61, "volume": None, "units": None, "route_class": "premium"}


def test_normalize_record_with_layout_and_python_values():
    got = normalize_record({"dst": "0612345678", "when": datetime(2026, 3, 4, 9, 15), "secs": 61.0, "who": 7,
                            "call": 42},
                           RecordLayout(name="sw", columns=(("b_number", "dst"), ("start", "when"),
                                                            ("duration_s", "secs"), ("partner", "who"),
                                                            ("id", "call")),
                                        constants=(("direction", "outbound"), ("service", "voice")),
                                        timezone="Europe/Paris", country="FR"))
    assert got["b_number"] == "33612345678" and got["start"] == utc(2026, 3, 4, 8, 15)
    assert got["duration_s"] == 61 and got["partner"] == "7" and got["id"] == 42


@pytest.mark.parametrize(("record", "reject"), [
    ({"b_number": "", "start": "2026-03-04T09:15:00Z", "duration_s": "1"},
     Reject("missing_field", "b_number is empty")),
    ({"b_number": "3361", "start": "2026-03-04T09:15:00Z", "duration_s": "-1"},
     Reject("negative_duration", "duration_s '-1' is negative")),
    ({"b_number": "3361", "start": "2026-03-04T09:15:00Z", "duration_s": 1.5},
     Reject("bad_duration", "duration_s '1.5' is not a whole number of seconds")),
    ({"b_number": "3361", "start": "2026-03-04T09:15:00", "duration_s": "1"}, None),
    ({"b_number": "x", "start": "2026-03-04T09:15:00Z"},
     Reject("invalid_number", "b_number 'x' is not a phone number (characters other than digits)")),
    ({"b_number": "3361", "start": "2026-03-04T09:15:00Z"}, Reject("missing_field", "duration_s is empty")),
])
def test_normalize_record_rejects(record, reject):
    got = normalize_record({"partner": "P", "direction": "outbound", "service": "voice", **record})
    if reject is None:
        assert got["start"] == utc(2026, 3, 4, 9, 15)  # without offset: the layout's zone, UTC here
    else:
        assert got == reject


def test_a_service_that_needs_no_number_keeps_what_the_traffic_carries():
    """Data sessions and events carry an APN or a service name where a call has its number: kept
    as given (a flat price does not read it), where a call or a message is invalid_number; in a
    batch of many rows, with numbers to normalize beside them, as for one record."""
    rows = [("1", "data", " internet.m2m "), ("2", "voice", "abc"), ("3", "data", "+33 6 12 34 56 78"),
            ("4", "sms", "short.code"), ("5", "porting", "SRV-42"), ("6", "data", None)]
    got = [normalize_record({"id": i, "partner": "P", "direction": "outbound", "service": svc, "b_number": bn,
                             "start": "2026-03-04T09:15:00Z", "duration_s": "0"}) for i, svc, bn in rows]
    assert got[0]["b_number"] == "internet.m2m"
    assert got[1] == Reject("invalid_number", "b_number 'abc' is not a phone number (characters other than digits)")
    assert got[2]["b_number"] == "33612345678"
    assert got[3] == Reject("invalid_number",
                            "b_number 'short.code' is not a phone number (characters other than digits)")
    assert got[4]["b_number"] == "SRV-42" and got[5]["b_number"] is None


def test_a_file_keeps_what_data_sessions_carry_instead_of_a_number(tmp_path):
    text = (HEADER + "1,FR01,outbound,data,internet.m2m,2026-03-04T09:15:00Z,0\n" + row(2, b="abc")
            + "3,FR01,outbound,data,+33 6 12 34 56 78,2026-03-04T09:15:00Z,0\n" + row(4)
            + "5,FR01,outbound,data, apn.x ,2026-03-04T09:15:00Z,0\n")
    rec, rej, counts = read_records(write(tmp_path, text), PARIS)
    assert rec.column("b_number").to_pylist() == ["internet.m2m", "33612345678", "33612345678", "apn.x"]
    assert [(r[1], r[2]) for r in rejects(rej)] == [("2", "invalid_number")]
    assert counts.reconciles()


def test_records_table_for_the_batch_executor():
    recs = [normalize_record({"id": "e1", "partner": "P", "direction": "outbound", "service": "voice",
                              "b_number": "+33612345678", "start": "2026-03-04T09:15:00Z", "duration_s": 61,
                              "route_class": "premium"})]
    t = records_table(recs)
    assert t.schema.field("start").type == pa.timestamp("us", tz="UTC")
    assert t.to_pylist()[0]["b_number"] == "33612345678" and t.column("route_class").to_pylist() == ["premium"]


# --------------------------------------------------------------------------- consistency


@pytest.mark.parametrize(("layout", "mode"), [
    (PARIS, "normalize"),
    (RecordLayout(name="fr", timezone="Europe/Paris", country="FR"), "normalize"),
    (RecordLayout(name="us", timezone="America/New_York", country="US"), "normalize"),
    (PARIS, "e164"),
])
def test_file_rows_and_normalize_record_agree(tmp_path, layout, mode):
    """Every row of a file gets what normalize_record gives the same values (records or reject)."""
    rng = np.random.default_rng(7)
    numbers = [v for v, _ in NO_COUNTRY_CASES] + [v for v, _ in NO_COUNTRY_BAD] + [
        c[1] for c in COUNTRY_CASES] + ["", "33612345678", "612345678", "2125551234", "0044 20 7946 0958"]
    starts = [v for v, _ in TS_OK] + TS_BAD + [""]
    durs = ["61", "0", "61.0", "-1", "1.5", "x", "", " 7 "]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(HEADER.strip().split(","))
    rows = []
    for i in range(600):
        r = [str(i), "FR01", "outbound", "voice", numbers[rng.integers(len(numbers))],
             starts[rng.integers(len(starts))], durs[rng.integers(len(durs))]]
        rows.append(r)
        w.writerow(r)
    rec, rej, c = read_records(write(tmp_path, out.getvalue()), layout, batch_rows=128, numbers=mode)
    got = {r["id"]: r for r in rec.to_pylist()}
    why = {r["id"]: Reject(r["reason"], r["detail"]) for r in rej.to_pylist()}
    names = HEADER.strip().split(",")
    for r in rows:
        one = normalize_record(dict(zip(names, r, strict=True)), layout, numbers=mode)
        if isinstance(one, Reject):
            assert why[r[0]] == one, r
        else:
            assert got[r[0]] == one, r
    assert c.reconciles() and c.read == 600


def test_rejects_table_row_numbers_point_at_the_lines(tmp_path):
    lines = [row(i, dur="x" if i % 97 == 0 else "1") for i in range(1, 3000)]
    p = write(tmp_path, HEADER + "".join(lines))
    _, rej, _ = read_records(p, batch_rows=500)
    text = p.read_text().splitlines()
    for r in rej.to_pylist():
        assert text[r["row"] - 1] == r["raw"]
    assert pc.all(pc.equal(rej.column("reason"), "bad_duration")).as_py()


def test_a_line_too_long_is_a_malformed_row(tmp_path, monkeypatch):
    monkeypatch.setattr(csvfile, "BLOCK_BYTES", 1 << 12)
    monkeypatch.setattr(csvfile, "MAX_LINE_BYTES", 1 << 14)
    p = write(tmp_path, HEADER + row(1) + "2," + "x" * 50_000 + "\n" + row(3, dur="x") + row(4))
    rec, rej, c = read_records(p)
    assert rec.column("id").to_pylist() == ["1", "4"]
    assert [(r["row"], r["id"], r["reason"], r["detail"]) for r in rej.to_pylist()] == [
        (3, "2", "malformed_row", "line has 50002 bytes, more than the 16384 allowed"),
        (4, "3", "bad_duration", "duration_s 'x' is not a number of seconds"),
    ]
    assert rej.column("raw")[0].as_py().endswith("… (50002 bytes)")
    assert c.reconciles()


def test_a_header_that_is_not_text(tmp_path):
    with pytest.raises(IntakeError, match="the header line is not UTF-8 text"):
        RecordReader(write(tmp_path, b"id,\xff\xfe\n1,2\n"))


def test_stopping_early_leaves_no_reader_behind(tmp_path, monkeypatch):
    import threading

    monkeypatch.setattr(csvfile, "BLOCK_BYTES", 1 << 14)
    p = write(tmp_path, HEADER + "".join(row(i) for i in range(20_000)))
    before = threading.active_count()
    it = RecordReader(p, batch_rows=100).batches()
    assert next(it).records.num_rows == 100
    it.close()
    assert threading.active_count() == before


def test_a_number_is_normalized_when_it_can_be_and_never_rejected(tmp_path):
    text = "id,partner,direction,service,a_number,b_number,start,duration_s\n" + "".join(
        f"{i},P,outbound,voice,{a},33612345678,2026-03-04T09:15:00Z,1\n"
        for i, a in enumerate(["anonymous", " Restricted ", "", "+44 20 7946 0958", "0034612345678", "12"]))
    rec, rej, c = read_records(write(tmp_path, text))
    assert rec.column("a_number").to_pylist() == [
        "anonymous", "Restricted", None, "442079460958", "34612345678", "12"]
    assert rej.num_rows == 0 and c.reconciles()
