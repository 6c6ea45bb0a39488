"""No internal errors from traffic files (property tests): the example traffic, randomly broken
(flipped bytes, cut rows, deleted and repeated lines, huge fields, wrong types, random bytes),
as CSV and as Parquet, goes through intake. Each file is either refused as a whole with an
:class:`IntakeError` that names it, or read: every row rated-ready (passed), rejected with a
reason, or a recognized duplicate, and the counts reconcile (read = passed + rejected +
duplicates, the reasons add up). No other exception escapes. The store's ``ingest`` (and its
switch readers) is checked the same way on fewer files.

``tests/fuzz/fuzz_intake.py`` is the coverage-guided fuzzer of the same property."""

from __future__ import annotations

import io
import random
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from fuzz.mutations import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_billing_store import db_url, make_plan  # noqa: F401 - fixtures
from test_billing_store import store as store  # noqa: F401 - a fixture (its name is the tests' parameter)

from icdsl.billing.errors import IngestError
from icdsl.rating.intake import IntakeError, read_records

TRAFFIC = [ROOT / "examples" / d / "traffic.csv" for d in ("interconnect", "mvno", "content")]
FAST = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

HUGE = ["9" * 200_000, "x" * 1_000_000, "1" * 400, "-" * 50, "2026-03-02T08:59:12Z" * 100, "\x00" * 10,
        '"' + "," * 1000 + '"', "é" * 1000, "1e308", "NaN", "-1", "0.5", "99999999999999999999", "\u202e"]
WRONG = ["", " ", "abc", "1.5", "-61", "2026-02-30T00:00:00Z", "9999-12-31T23:59:59Z", "0000-01-01", "true",
         "INBOUND", "Voice", "+33 6 12", "1e3", "0x10", "\t", '"', "'", "NULL", "None", "٣٤"]


# ---------------------------------------------------------------- mutations of a CSV file


def _cells(rng: random.Random, data: bytes, make) -> bytes:
    lines = data.split(b"\n")
    i = rng.randrange(1, max(2, len(lines)))
    if i >= len(lines):
        return data
    cells = lines[i].split(b",")
    j = rng.randrange(len(cells))
    cells[j] = make(cells[j])
    lines[i] = b",".join(cells)
    return b"\n".join(lines)


def huge_field(rng, data):
    return _cells(rng, data, lambda _: rng.choice(HUGE).encode("utf-8"))


def wrong_type(rng, data):
    return _cells(rng, data, lambda _: rng.choice(WRONG).encode("utf-8"))


def flip_bytes(rng, data):
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if b:
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    return bytes(b)


def cut_rows(rng, data):
    return data[: rng.randrange(len(data) + 1)]


def delete_lines(rng, data):
    lines = data.split(b"\n")
    i = rng.randrange(len(lines))
    return b"\n".join(lines[:i] + lines[i + rng.choice([1, 2, 10]):])


def repeat_lines(rng, data):
    lines = data.split(b"\n")
    i = rng.randrange(len(lines))
    return b"\n".join(lines[:i] + lines[i:i + rng.choice([1, 3])] * rng.choice([2, 5]) + lines[i:])


def extra_or_missing_commas(rng, data):
    lines = data.split(b"\n")
    i = rng.randrange(len(lines))
    lines[i] = lines[i] + b"," * rng.randint(1, 5) if rng.random() < 0.5 else lines[i].replace(b",", b"", 2)
    return b"\n".join(lines)


def random_bytes(rng, data):
    return rng.randbytes(rng.choice([0, 1, 10, 5000]))


def line_ends(rng, data):
    return data.replace(b"\n", rng.choice([b"\r\n", b"\r", b"\n\n", b"\x00\n"]))


def header(rng, data):
    first, _, rest = data.partition(b"\n")
    names = first.split(b",")
    rng.shuffle(names)
    k = rng.randrange(len(names))
    names[k] = rng.choice([b"", names[0], b"id", b"\xef\xbb\xbfid", b'"start"', b"x" * 300])
    return b",".join(names) + b"\n" + rest


CSV_MUTATIONS = [huge_field, wrong_type, flip_bytes, cut_rows, delete_lines, repeat_lines, extra_or_missing_commas,
                 random_bytes, line_ends, header]


def mutate_csv(rng: random.Random, data: bytes) -> tuple[bytes, list[str]]:
    kinds = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        m = rng.choice(CSV_MUTATIONS)
        data = m(rng, data)
        kinds.append(m.__name__)
    return data, kinds


# ---------------------------------------------------------------- Parquet: typed columns, wrong types


def _retype(rng: random.Random, col: pa.Array) -> pa.Array:
    """The column as another type: numbers, binary, timestamps, nulls, huge texts."""
    n = len(col)
    kind = rng.choice(["int", "float", "binary", "ts", "null", "huge", "bool", "same", "dict", "big_int", "list",
                       "struct", "decimal", "date"])
    if kind == "int":
        return pa.array([rng.randint(-2**63, 2**63 - 1) if rng.random() < 0.3 else rng.randint(-5, 5000)
                         for _ in range(n)], pa.int64())
    if kind == "big_int":
        return pa.array([rng.randint(0, 2**64 - 1) for _ in range(n)], pa.uint64())
    if kind == "float":
        return pa.array([rng.choice([0.5, -1.0, float("nan"), float("inf"), 1e300, 61.0]) for _ in range(n)])
    if kind == "binary":
        return pa.array([rng.randbytes(8) for _ in range(n)], pa.binary())
    if kind == "ts":
        return pa.array([rng.choice([-2**62, 0, 1772615700123456, 2**62]) for _ in range(n)], pa.timestamp("us"))
    if kind == "null":
        return pa.nulls(n, col.type)
    if kind == "huge":
        return pa.array([rng.choice(HUGE) for _ in range(n)])
    if kind == "bool":
        return pa.array([rng.random() < 0.5 for _ in range(n)])
    if kind == "list":
        return pa.array([[rng.randint(0, 9)] * rng.randint(0, 2) for _ in range(n)])
    if kind == "struct":
        return pa.array([{"a": rng.randint(0, 9)} for _ in range(n)])
    if kind == "decimal":
        return pa.array([rng.randint(-10**30, 10**30) for _ in range(n)], pa.decimal128(38, 0))
    if kind == "date":
        return pa.array([rng.randint(-10**6, 10**6) for _ in range(n)], pa.date32())
    if kind == "dict":
        # a column retyped before (random bytes, a list, a struct) may have no text form
        if pa.types.is_binary(col.type) or pa.types.is_string(col.type):
            return col.dictionary_encode()
        try:
            return col.cast(pa.string()).dictionary_encode()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return col.dictionary_encode() if pa.types.is_primitive(col.type) else col
    return col


def mutate_parquet(rng: random.Random, data: bytes) -> tuple[bytes, list[str]]:
    table = pacsv.read_csv(io.BytesIO(data), convert_options=pacsv.ConvertOptions(
        column_types={n: pa.string() for n in data.split(b"\n", 1)[0].decode().split(",")}))
    kinds = []
    for _ in range(rng.choice([1, 2, 3])):
        i = rng.randrange(table.num_columns)
        table = table.set_column(i, table.column_names[i], _retype(rng, table.column(i).combine_chunks()))
        kinds.append(f"retype {table.column_names[i]}")
    if rng.random() < 0.3:
        table = table.slice(0, rng.randrange(table.num_rows + 1))
        kinds.append("cut rows")
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=rng.choice([1, 7, 1000]))
    raw = out.getvalue()
    if rng.random() < 0.2:  # a damaged file
        raw, more = mutate_csv(rng, raw)
        kinds += more
    return raw, kinds


# ---------------------------------------------------------------- the property


def assert_intake(path: Path, batch_rows: int) -> None:
    try:
        records, rejects, counts = read_records(path, batch_rows=batch_rows)
    except IntakeError as e:
        assert path.name in str(e), f"the refusal does not name the file: {e}"
        return
    assert counts.reconciles(), counts
    assert records.num_rows == counts.passed
    assert rejects.num_rows == counts.rejected + counts.duplicates
    reasons = rejects.column("reason").to_pylist()
    assert all(r for r in reasons), "a reject without a reason"


@pytest.mark.parametrize(("suffix", "mutate"), [(".csv", mutate_csv), (".parquet", mutate_parquet)],
                         ids=["csv", "parquet"])
@FAST
@given(source=st.sampled_from(TRAFFIC), rng=st.randoms(use_true_random=False),
       batch_rows=st.sampled_from([1, 3, 1_000_000]))
def test_broken_files_are_rejected_with_reasons_or_refused(tmp_path_factory, suffix, mutate, source, rng, batch_rows):
    data, _ = mutate(rng, source.read_bytes())
    path = tmp_path_factory.mktemp("in") / f"traffic{suffix}"
    path.write_bytes(data)
    assert_intake(path, batch_rows)


@pytest.mark.parametrize("mutation", CSV_MUTATIONS, ids=[m.__name__ for m in CSV_MUTATIONS])
def test_each_csv_mutation(tmp_path, mutation):
    for n, source in enumerate(TRAFFIC):
        rng = random.Random(f"{mutation.__name__}:{n}")
        path = tmp_path / f"t{n}.csv"
        path.write_bytes(mutation(rng, source.read_bytes()))
        assert_intake(path, 2)


SWITCH = ROOT / "tests" / "data" / "cdr"
READERS = [(None, TRAFFIC[0], None),
           ("asterisk_csv", SWITCH / "asterisk_master_csv.txt", {"timezone": "Europe/Paris", "country": "FR",
                                                                 "partner_field": "accountcode"}),
           ("freeswitch_csv", SWITCH / "freeswitch_cdr_csv.txt", {"timezone": "Europe/Madrid", "country": "ES",
                                                                  "partner_field": "accountcode"})]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_store_ingests_broken_files_with_counts_that_reconcile(store, tmp_path):
    """``icdsl ingest``'s path (the store, its conflicts and its switch readers), 30 broken files:
    each is refused with an IngestError naming it, or stored with counts that reconcile."""
    pytest.importorskip("icdsl_mediation")
    # the partners name their document layouts (layouts/*.toml), which the checker reads
    shutil.copytree(ROOT / "examples" / "interconnect" / "layouts", tmp_path / "rules" / "layouts")
    plan, _ = make_plan(tmp_path, (ROOT / "examples" / "interconnect" / "partners.icd").read_text(encoding="utf-8"))
    rng = random.Random(12)
    for n in range(30):
        reader, source, options = READERS[n % len(READERS)]
        data, kinds = mutate_csv(rng, source.read_bytes())
        path = tmp_path / f"in{n}.csv"
        path.write_bytes(data)
        try:
            rep = store.ingest(path, plan=plan, reader=reader, reader_options=options)
        except IngestError as e:
            assert path.name in str(e), (kinds, str(e))
            continue
        assert rep.reconciles, (kinds, rep)
        assert sum(rep.by_reason.values()) == rep.rejected + rep.duplicates, (kinds, rep)
