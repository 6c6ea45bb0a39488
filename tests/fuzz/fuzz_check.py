"""Coverage-guided fuzzing of the parser and the checker (atheris, libFuzzer's engine).

Each input is a rule file: its first byte picks the example project it is written into (so that
its ``use`` imports and decks resolve), the rest is the file. The whole pipeline of ``icdsl
check`` runs on it (decode, parse, load its imports, check, compile). A finding is any exception
that escapes, or a diagnostic without a file and line.

Run on demand, never by the test suite (pip install -e ".[fuzz]"); the corpus folder is
seeded from examples/ when it is missing (``tests/fuzz/make_corpus.py``):

    python tests/fuzz/fuzz_check.py -atheris_runs=100000 tests/fuzz/corpus/check
    python tests/fuzz/fuzz_check.py -max_total_time=300 tests/fuzz/corpus/check

A crash leaves ``crash-<sha1>`` in the working folder; replay it with
``python tests/fuzz/fuzz_check.py crash-<sha1>``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports(include=["icdsl"]):
    from icdsl.lang.diagnostics import render_all
    from icdsl.plan.compiler import build

from fuzz.mutations import PROJECTS  # noqa: E402

WORK = Path(tempfile.mkdtemp(prefix="icdsl-fuzz-check-"))
FOLDERS = []
for project in PROJECTS:
    shutil.copytree(project, WORK / project.name, ignore=shutil.ignore_patterns("*.py", "__pycache__", "*.md"))
    FOLDERS.append(WORK / project.name)


def one_input(data: bytes) -> None:
    if not data:
        return
    folder = FOLDERS[data[0] % len(FOLDERS)]
    target = folder / "fuzzed.icd"
    target.write_bytes(data[1:])
    plan, program, diags = build([target], root=folder)
    render_all(diags, program.sources)  # the text a user sees must render too
    for d in diags:
        if not d.span.file or d.span.line < 1:
            raise AssertionError(f"unlocated diagnostic {d.code}: {d.message}")
    if plan is None and not any(d.is_error for d in diags):
        raise AssertionError("no plan, and no error says why")


if __name__ == "__main__":
    from fuzz.make_corpus import ensure_corpus

    ensure_corpus(sys.argv[1:])
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
