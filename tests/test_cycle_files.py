"""The cycle's files (icdsl.billing.files, the store's sinks): an empty file written under its
name, known in advance; the rejects a cycle reads taken from memory or, beyond what is kept,
from their file, with the same result."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
from test_billing_store import ACCEPT, load_and_ingest, snapshot

from icdsl.billing import cycles
from icdsl.billing.files import DataDir
from icdsl.billing.store import open_store
from icdsl.cycle.rater import REJECTS_FILE_SCHEMA


def test_an_empty_file_is_written_under_its_name(tmp_path):
    data = DataDir(tmp_path / "data")
    got = data.writer("c", "rating-rejects", REJECTS_FILE_SCHEMA).commit()
    # the bytes a writer makes for no rows, so the name a streamed file of no rows would get
    pq.ParquetWriter(tmp_path / "ref.parquet", REJECTS_FILE_SCHEMA, compression="zstd",
                     write_statistics=True, use_dictionary=[f.name for f in REJECTS_FILE_SCHEMA
                                                            if pa.types.is_string(f.type)]).close()
    path = data.abs(got.path)
    assert path.read_bytes() == (tmp_path / "ref.parquet").read_bytes()
    assert got.rows == 0 and got.bytes == path.stat().st_size and path.name.startswith("rating-rejects-")
    assert pq.read_table(path).schema == REJECTS_FILE_SCHEMA
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    # there already with its bytes (a committed file of another run): kept as it is
    inode = path.stat().st_ino
    assert data.writer("c", "rating-rejects", REJECTS_FILE_SCHEMA).commit() == got
    assert path.stat().st_ino == inode
    # there with other bytes (a write cut short): replaced
    path.write_bytes(b"PAR1 cut short")
    assert data.writer("c", "rating-rejects", REJECTS_FILE_SCHEMA).commit() == got
    assert path.read_bytes() == (tmp_path / "ref.parquet").read_bytes()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_rejects_beyond_what_is_kept_are_read_from_their_file(tmp_path, monkeypatch):
    def run(name: str) -> dict:
        (tmp_path / name).mkdir()
        store = open_store(f"sqlite:///{tmp_path / name}.db", data_dir=tmp_path / f"{name}-data")
        try:
            plan, _program = load_and_ingest(store, tmp_path / name)
            rep = store.run_cycle("ORFR", "2026-03", plan, accept=ACCEPT)
            assert rep.rejected > 0 and rep.status == "invoiced", str(rep)
            return snapshot(store, rep.cycle_id)
        finally:
            store.close()

    kept = run("kept")
    monkeypatch.setattr(cycles, "KEEP_ROWS", 0)  # nothing kept: the engine reads the files
    read = {}
    real = cycles._FileSinks.read_rejects

    def counted(self):
        read["rejects"] = self.rejects.table() is None
        return real(self)

    monkeypatch.setattr(cycles._FileSinks, "read_rejects", counted)
    from_files = run("files")
    assert read == {"rejects": True}
    assert from_files == kept  # counts, totals, invoices, and the files (names are their contents' hashes)
