"""Fuzz ``icdsl check`` from outside, as a user (or the issue's checker) would: write thousands of
mutated copies of the example projects and run the command's entry point in-process on each.

Counts, per mutation kind: internal errors (exit 3, or a traceback on the output), diagnostics
without a location (no file or no line), and output that is not what the exit code says. Every
failing case is kept under ``--keep`` with the seed that makes it again.

    python tests/fuzz/mutate_check.py --cases 5000            # all example projects
    python tests/fuzz/mutate_check.py --cases 200 --seed 7    # another sample
    python tests/fuzz/mutate_check.py --replay 7:123          # re-run case 123 of seed 7

Exit code 0 when every case ended in exit 0 or 1 with located diagnostics, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz.mutations import PROJECTS, mutated_project  # noqa: E402

from icdsl.cli.main import main  # noqa: E402


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """Run ``icdsl ARGS`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    old = sys.argv
    sys.argv = ["icdsl", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old
    return code, out.getvalue(), err.getvalue()


def problems_of(code: int, out: str, err: str) -> list[str]:
    """What is wrong with one run of ``icdsl check --format json``: [] when nothing."""
    found = []
    if code not in (0, 1):
        found.append(f"exit {code}: {err.strip()[:300]}")
    if "Traceback" in out or "Traceback" in err:
        found.append("a traceback was printed")
    if code in (0, 1):
        try:
            diags = json.loads(out)
        except ValueError:
            return found + [f"the JSON output does not parse: {out[:200]!r}"]
        if code == 1 and not any(d["severity"] == "error" for d in diags):
            found.append("exit 1 without an error diagnostic")
        if code == 0 and any(d["severity"] == "error" for d in diags):
            found.append("exit 0 with an error diagnostic")
        for d in diags:
            if not d.get("file") or not isinstance(d.get("line"), int) or d["line"] < 1:
                found.append(f"unlocated diagnostic {d['code']}: {d['message'][:200]}")
    return found


def case(seed: int, n: int, work: Path) -> tuple[str, list[str], list[str]]:
    rng = random.Random(f"{seed}:{n}")
    project = rng.choice(PROJECTS)
    folder = work / "p"
    done = mutated_project(rng, project, folder)
    code, out, err = run_cli(["check", "--format", "json", str(folder)])
    return project.name, done, problems_of(code, out, err)


def main_cli() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--replay", help="SEED:N: run one case and keep its project")
    ap.add_argument("--keep", type=Path, default=Path("fuzz-failures"), help="folder for failing cases")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="icdsl-fuzz-") as tmp:
        work = Path(tmp)
        if a.replay:
            seed, n = (int(x) for x in a.replay.split(":"))
            name, done, found = case(seed, n, work)
            shutil.copytree(work / "p", a.keep / f"{seed}-{n}", dirs_exist_ok=True)
            print(f"{name} {done}: {found or 'ok'} (kept in {a.keep / f'{seed}-{n}'})")
            return 1 if found else 0
        kinds, failures = Counter(), Counter()
        bad = 0
        t0 = time.perf_counter()
        for n in range(a.cases):
            name, done, found = case(a.seed, n, work)
            for d in done:
                kinds.update(d.split(": ")[1].split("+"))
            if found:
                bad += 1
                for f in found:
                    failures[f.split(":")[0]] += 1
                keep = a.keep / f"{a.seed}-{n}"
                shutil.copytree(work / "p", keep, dirs_exist_ok=True)
                print(f"case {a.seed}:{n} {name} {done}: {found}", flush=True)
        took = time.perf_counter() - t0
    print(f"{a.cases} mutated projects checked in {took:.0f} s; {bad} failed")
    print("mutations applied: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    for what, count in failures.most_common():
        print(f"  {count:5d}  {what}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main_cli())
