"""Write the seed corpora of the atheris targets from the examples (``tests/fuzz/corpus/``,
not kept in git: made again from the examples, which change):

- ``check/``: every rule file of examples/ and stdlib_rules/, prefixed by the byte that puts it
  back in its own project (see ``fuzz_check.py``);
- ``partner_invoices/``: the partners' invoice samples (UBL and CSV) of examples/interconnect;
- ``intake/``: the traffic files of examples/ and tests/data/records, cut to their first 60 lines,
  and the examples' traffic as Parquet.

    python tests/fuzz/make_corpus.py
"""

from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz.mutations import PROJECTS, ROOT, rule_files  # noqa: E402

CORPUS = Path(__file__).resolve().parent / "corpus"


def _put(folder: Path, data: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


def _parquet(data: bytes) -> bytes:
    # lazy: pyarrow is needed only to write the Parquet seeds
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    out = io.BytesIO()
    pq.write_table(pacsv.read_csv(io.BytesIO(data)), out, row_group_size=7)
    return out.getvalue()


def main() -> None:
    n = 0
    for i, project in enumerate(PROJECTS):
        for f in rule_files(project):
            _put(CORPUS / "check", bytes([i]) + f.read_bytes())
            n += 1
    traffic = sorted((ROOT / "examples").rglob("traffic.csv")) + sorted((ROOT / "tests/data/records").glob("*.csv"))
    for f in traffic:
        lines = f.read_bytes().splitlines(keepends=True)
        _put(CORPUS / "intake", b"".join(lines[:60]))
        n += 1
        if f.name == "traffic.csv":
            _put(CORPUS / "intake", _parquet(b"".join(lines[:20])))
            n += 1
    for f in sorted((ROOT / "examples" / "interconnect" / "partner-invoices").glob("lumiere-*")):
        if "detail" not in f.name:  # partners' invoices: the UBL and CSV samples
            _put(CORPUS / "partner_invoices", f.read_bytes())
            n += 1
    print(f"{n} seeds written under {CORPUS}")


def ensure_corpus(args: list[str]) -> None:
    """Seed the corpus folders named on a fuzzer's command line that are missing or empty."""
    for a in args:
        p = Path(a)
        if not a.startswith("-") and p.resolve().parent == CORPUS and not (p.is_dir() and any(p.iterdir())):
            main()
            return


if __name__ == "__main__":
    main()
