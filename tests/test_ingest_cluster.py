"""`icdsl ingest --workers N / --scheduler`: files read, checked and split on the workers of a
real local Dask cluster (2 worker processes), the database part in this process.

- the same batches, files (named by their content: the same bytes), counts by reason, partner
  and day, conflicts and duplicates as ingesting each file here in turn, including a file that
  repeats ids of another file of the same run (its worker could not see them: read again here)
  and a file given twice under two names;
- a file that a worker refuses (not Parquet inside, no id column) is reported with its located
  reason (the same message as without a cluster), the files before it ingested, no traceback;
- the command with `--workers N` and with `--scheduler` (a running cluster's address).
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from test_billing_cli import run
from test_billing_store import HEADER, PARTNER, V1_OPEN, make_plan, write_csv

from icdsl.billing import models as M
from icdsl.billing.errors import IngestError
from icdsl.billing.store import open_store
from icdsl.rating.cluster import dask_client

ROW = ("ORFR", "outbound", "voice", "33170000001")


@pytest.fixture(scope="module")
def client():
    with dask_client(workers=2) as c:
        yield c


def _files(folder):
    a = write_csv(folder / "a.csv", [
        ("A1", *ROW, "33142685300", "2026-03-02T08:00:00Z", 61),
        ("A2", *ROW, "33612345678", "2026-03-02T09:00:00Z", 30),
        ("A2", *ROW, "33612345678", "2026-03-02T09:00:00Z", 30),  # a repeat within the file
        ("A3", *ROW, "not-a-number", "2026-03-02T10:00:00Z", 30),  # rejected
        ("A4", *ROW, "33142685300", "2026-03-02T11:00:00Z", -5),  # rejected
        ("A5", "XXXX", "outbound", "sms", "33170000001", "33612345678", "2026-03-31T23:30:00Z", ""),
    ])
    again = folder / "a-again.csv"  # the same content under another name: already ingested
    again.write_bytes(a.read_bytes())
    b = write_csv(folder / "b.csv", [
        ("A1", *ROW, "33142685300", "2026-03-02T08:00:00Z", 61),  # a repeat of batch a
        ("A2", *ROW, "33612345678", "2026-03-02T09:00:00Z", 45),  # a conflict with batch a
        ("B1", *ROW, "33142685300", "2026-03-03T08:00:00Z", 10),
        ("B2", *ROW, "33142685300", "2026-03-04T08:00:00Z", 20),
    ])
    # Parquet, repeating B1 (the same) and B2 (another duration) of b.csv, in the same run
    c = folder / "c.parquet"
    pq.write_table(pa.table({
        "id": ["C1", "B1", "B2", "C2"], "partner": ["ORFR"] * 4, "direction": ["outbound"] * 4,
        "service": ["voice"] * 4, "a_number": ["33170000001"] * 4,
        "b_number": ["33612345678", "33142685300", "33142685300", "33142685300"],
        "start": pa.array([1_773_900_000_000_000, 1_772_524_800_000_000, 1_772_611_200_000_000,
                           1_773_000_000_000_000], pa.timestamp("us", tz="UTC")),
        "duration_s": [5, 10, 99, 7]}), c)
    d = write_csv(folder / "d.csv", [  # new ids only, one repeated within the file
        ("D1", *ROW, "33142685300", "2026-03-05T08:00:00Z", 61),
        ("D1", *ROW, "33142685300", "2026-03-05T08:00:00Z", 62),
        ("D2", *ROW, "33612345678", "2026-03-06T08:00:00Z", 1)])
    return [a, again, b, c, d]


def _dump(store) -> dict:
    """Everything an ingest leaves in the store, without timestamps."""
    out = {}
    with store.engine.connect() as c:
        for model, skip in ((M.IntakeBatch, {"started_at", "finished_at", "file_path"}),
                            (M.IntakeRejectCount, set()), (M.IntakePartnerStat, set()), (M.IntakeDailyCount, set()),
                            (M.DataFile, {"created_at", "id"}), (M.IntakeConflict, {"created_at", "id"})):
            t = model.__table__
            cols = [col for col in t.columns if col.name not in skip]
            rows = c.execute(sa.select(*cols)).all()
            out[t.name] = sorted(tuple(str(v) for v in r) for r in rows)
    return out


def test_cluster_ingest_gives_the_same_batches_as_one_process(tmp_path, client, monkeypatch):
    from icdsl.billing import intake

    read_here = []
    monkeypatch.setattr(intake, "ingest", lambda store, path, *a, **kw: read_here.append(path.name)
                        or type(store).ingest(store, path, *a, **kw))
    plan, program = make_plan(tmp_path, PARTNER + V1_OPEN)
    files = _files(tmp_path / "in")

    here = open_store(f"sqlite:///{tmp_path / 'here.db'}", data_dir=tmp_path / "here")
    there = open_store(f"sqlite:///{tmp_path / 'there.db'}", data_dir=tmp_path / "there")
    try:
        here.load_plan(plan, program)
        there.load_plan(plan, program)
        expected = [here.ingest(f, None, plan) for f in files]
        read_here.clear()
        got = list(there.ingest_files(files, None, plan, client=client))
        # b.csv and c.parquet repeat ids of files of the same run: their workers, started before
        # those were committed, could not see them; they are read again here, against every batch
        assert read_here == ["b.csv", "c.parquet"]

        assert [_text(r) for r in got] == [_text(r) for r in expected]
        a, again, b, c, d = got
        assert (a.read, a.passed, a.rejected, a.duplicates) == (6, 3, 2, 1) and a.unknown_partners == ["XXXX"]
        assert again.already_ingested and again.batch_id == a.batch_id
        assert (b.read, b.passed, b.rejected, b.duplicates) == (4, 2, 1, 1)
        assert b.by_reason == {"duplicate_id": 1, "conflicting_duplicate": 1}
        assert (c.read, c.passed, c.rejected, c.duplicates) == (4, 2, 1, 1)
        assert c.conflict_count == 1 and c.conflicts[0].record_id == "B2"
        assert c.conflicts[0].earlier_batch_id == b.batch_id
        assert (d.read, d.passed, d.rejected, d.duplicates) == (3, 2, 1, 0) and d.conflict_count == 1
        assert all(r.reconciles for r in got)
        assert _dump(there) == _dump(here)
        for r in got:
            if not r.already_ingested:
                assert (pq.read_table(there.data.abs(r.records_file))
                        .equals(pq.read_table(here.data.abs(r.records_file))))
        # nothing but the batches' files is left in the data folder
        written = {p.relative_to(there.data.root).as_posix() for p in (there.data.root / "intake").rglob("*")
                   if p.is_file()}
        assert written == set(_paths(there))

        # the same files again on the cluster: each already ingested, nothing added
        before = _dump(there)
        again_reports = list(there.ingest_files(files, None, plan, client=client))
        assert all(r.already_ingested for r in again_reports)
        assert [r.batch_id for r in again_reports] == [a.batch_id, a.batch_id, b.batch_id, c.batch_id, d.batch_id]
        assert _dump(there) == before
    finally:
        here.close()
        there.close()


def _text(report) -> str:
    """A report as printed, without the minute of the earlier ingest it names."""
    return re.sub(r" on \d{4}-\d\d-\d\d \d\d:\d\dZ", "", str(report))


def _paths(store) -> list[str]:
    with store.engine.connect() as c:
        return list(c.execute(sa.select(M.DataFile.path)).scalars())


def test_a_file_refused_on_a_worker_is_reported_with_its_reason(tmp_path, client):
    plan, program = make_plan(tmp_path, PARTNER + V1_OPEN)
    good = write_csv(tmp_path / "in" / "good.csv", [("G1", *ROW, "33142685300", "2026-03-02T08:00:00Z", 61)])
    bad = tmp_path / "in" / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not a Parquet file")
    no_id = tmp_path / "in" / "no-id.csv"
    no_id.write_text(HEADER.replace("id,", "ident,") + "X1,ORFR,outbound,voice,1,2,2026-03-02T08:00:00Z,1\n")
    store = open_store(f"sqlite:///{tmp_path / 's.db'}", data_dir=tmp_path / "data")
    try:
        store.load_plan(plan, program)
        reports = store.ingest_files([good, bad], None, plan, client=client)
        assert next(reports).passed == 1
        with pytest.raises(IngestError) as e:
            next(reports)
        assert "bad.parquet" in str(e.value) and "Parquet" in str(e.value)
        with pytest.raises(IngestError) as e:
            list(store.ingest_files([no_id], None, plan, client=client))
        local = pytest.raises(IngestError)
        with local as here:
            store.ingest(no_id, None, plan)
        assert str(e.value) == str(here.value)  # the same located message as without a cluster
        assert [b.file_name for b in store.batches()] == ["good.csv"]
    finally:
        store.close()


def test_cli_ingest_on_workers(tmp_path, monkeypatch, client):
    plan_dir = tmp_path / "rules"
    plan_dir.mkdir()
    (plan_dir / "rules.icd").write_text(PARTNER + V1_OPEN, encoding="utf-8")
    good = write_csv(tmp_path / "good.csv", [("G1", *ROW, "33142685300", "2026-03-02T08:00:00Z", 61)])
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not a Parquet file")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ICDSL_DB", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("ICDSL_DATA", str(tmp_path / "data"))
    out = run("ingest", str(good), str(bad), "--rules", "rules", "--workers", "2", code=1)
    assert "good.csv: batch #1: read 1, passed 1" in out
    assert "error: bad.parquet" in out and "Parquet" in out
    out = run("ingest", str(good), "--rules", "rules", "--workers", "1")
    assert "good.csv: already ingested as batch #1" in out
    other = write_csv(tmp_path / "other.csv", [("O1", *ROW, "33142685300", "2026-03-03T08:00:00Z", 5)])
    out = run("ingest", str(other), "--rules", "rules", "--scheduler", client.scheduler.address)
    assert "other.csv: batch #2: read 1, passed 1" in out
    out = run("ingest", str(good), "--rules", "rules", "--workers", "0", code=2)
    assert "--workers must be 1 or more" in out
