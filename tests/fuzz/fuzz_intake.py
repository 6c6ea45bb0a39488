"""Coverage-guided fuzzing of traffic intake (atheris): each input is a traffic file, read as
CSV (or as Parquet when it is one) by :func:`icdsl.rating.intake.read_records`. A finding is an
exception other than an IntakeError that names the file, counts that do not reconcile (read =
passed + rejected + duplicates), or a reject without a reason.

Run on demand, never by the test suite (pip install -e ".[fuzz]"); the corpus folder is seeded
from the example traffic when it is missing (``tests/fuzz/make_corpus.py``):

    python tests/fuzz/fuzz_intake.py -atheris_runs=100000 tests/fuzz/corpus/intake
    python tests/fuzz/fuzz_intake.py -max_total_time=300 -max_len=65536 tests/fuzz/corpus/intake
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports(include=["icdsl"]):
    from icdsl.rating.intake import IntakeError, read_records

WORK = Path(tempfile.mkdtemp(prefix="icdsl-fuzz-intake-"))


def one_input(data: bytes) -> None:
    path = WORK / ("traffic.parquet" if data[:4] == b"PAR1" else "traffic.csv")
    path.write_bytes(data)
    # batches of 1, 3 or a million rows: the first byte chooses (cut points are where bugs hide)
    batch_rows = (1, 3, 1_000_000)[data[0] % 3] if data else 1_000_000
    try:
        records, rejects, counts = read_records(path, batch_rows=batch_rows)
    except IntakeError as e:
        if path.name not in str(e):
            raise AssertionError(f"the refusal does not name the file: {e}") from None
        return
    if not counts.reconciles():
        raise AssertionError(f"counts do not reconcile: {counts}")
    if records.num_rows != counts.passed or rejects.num_rows != counts.rejected + counts.duplicates:
        raise AssertionError(f"{records.num_rows} records, {rejects.num_rows} rejects for {counts}")
    if not all(rejects.column("reason").to_pylist()):
        raise AssertionError("a reject without a reason")


if __name__ == "__main__":
    from fuzz.make_corpus import ensure_corpus

    ensure_corpus(sys.argv[1:])
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
