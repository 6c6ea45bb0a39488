#!/usr/bin/env python3
"""Whole-command times and language-server latencies (issue 18), run on demand:

    python tests/benchmarks/startup.py commands [--runs 7]          # icdsl check/rate/explain, cache off vs on
    python tests/benchmarks/startup.py commands --served            # in-process vs the warm command server
    python tests/benchmarks/startup.py lsp PROJECT FILE [--edits 20]  # first diagnostics, then per edit

``commands`` times whole processes on examples/interconnect (CPU time of the child: user + sys,
and wall), each command with the plan cache off (ICDSL_PLAN_CACHE=off: every run compiles) and
on (a warm cache), side by side in one run: the machine is shared, compare the ratios. With
``--served``: in-process (ICDSL_SERVER=0) against a warm command server started for the run (its
own folder; stopped at the end), the served command's CPU being the client's plus its child's
(the server's count of its children's CPU time, asked before and after each run).

``lsp`` starts ``icdsl lsp`` with pygls's client, opens FILE of PROJECT (e.g. the benchmark
workload's folder with its 50,000-row deck, tests/benchmarks/workload/gen.py), and reports the
time to the first diagnostics and, for each edit (a comment line added), the time from the
change to its diagnostics (the server's own analysis time too: command ``icdsl.stats``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "interconnect"
RECORD = ("partner=LUMFR direction=outbound service=voice b_number=33612345678 "
          "start=2026-03-04T09:15:00+01:00 duration_s=61")


def _time(cmd: list[str], env: dict, cwd: Path) -> tuple[float, float]:
    started = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(p.pid, 0)
    return time.perf_counter() - started, usage.ru_utime + usage.ru_stime


def _children_cpu(folder: str) -> float:
    from icdsl.cli import launcher

    return launcher.ask(folder, {"op": "status"})["children_cpu"]


def _time_served(cmd: list[str], env: dict, cwd: Path) -> tuple[float, float]:
    before = _children_cpu(env["ICDSL_SERVER_DIR"])
    wall, cpu = _time(cmd, env, cwd)
    return wall, cpu + _children_cpu(env["ICDSL_SERVER_DIR"]) - before


def commands(runs: int, before: str | None, served: bool = False) -> None:
    """Each command: ``before`` (another installation's icdsl, e.g. main's), then this one with
    the plan cache off and on, interleaved run by run so that the machine's load falls on all."""
    icdsl = str(Path(sys.executable).with_name("icdsl"))
    out = tempfile.mkdtemp()
    cases = {
        "--help": ["--help"],
        "check .": ["check", "."],
        "rate (38 records)": ["rate", ".", "--cdrs", "traffic.csv", "--out", out],
        "explain --record": ["explain", ".", "--record", RECORD],
    }
    cache = tempfile.mkdtemp()
    # bytecode as a user's installation has it (an editable install writes it on first run): a
    # shell with PYTHONDONTWRITEBYTECODE would otherwise time the compilation of every module
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    base.update(PYTHONPYCACHEPREFIX=tempfile.mkdtemp(), ICDSL_CACHE_DIR=cache)
    modes = {"off": (icdsl, "off"), "on": (icdsl, "on")}
    if before:
        modes = {"before": (before, "on"), **modes}  # main (or another install) with its cache warm too
    timers = {}
    if served:
        base.update(ICDSL_SERVER_DIR=tempfile.mkdtemp(prefix="icb", dir="/tmp") + "/s", ICDSL_SERVER="0")
        subprocess.run([icdsl, "server", "start"], env=base, check=True, stdout=subprocess.DEVNULL)
        modes = {"in-process": (icdsl, "on"), "served": (icdsl, "on")}
        timers = {"served": _time_served}
    try:
        _commands(runs, cases, base, modes, timers)
    finally:
        if served:
            subprocess.run([icdsl, "server", "stop"], env=base, check=True, stdout=subprocess.DEVNULL)


def _commands(runs: int, cases: dict, base: dict, modes: dict, timers: dict) -> None:
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    print(f"{'command':20s}" + "".join(f"{m + ': cpu / wall':>24s}" for m in modes) + "  cpu ratio first/last")
    for name, args in cases.items():
        samples: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
        for m, (exe, flag) in modes.items():  # warm: the parser's tables, the plan cache, the file cache
            _time([exe, *args], dict(base, ICDSL_PLAN_CACHE=flag, ICDSL_SERVER="1" if m == "served" else "0"), EXAMPLE)
        for _ in range(runs):
            for m, (exe, flag) in modes.items():
                env = dict(base, ICDSL_PLAN_CACHE=flag, ICDSL_SERVER="1" if m == "served" else "0")
                samples[m].append(timers.get(m, _time)([exe, *args], env, EXAMPLE))
        med = {m: (statistics.median(c for _, c in v), statistics.median(w for w, _ in v)) for m, v in samples.items()}
        first, last = list(med.values())[0], list(med.values())[-1]
        print(f"{name:20s}" + "".join(f"{c:13.3f} s / {w:5.2f} s" for c, w in med.values())
              + f"  {first[0] / last[0]:8.2f}x")


async def _lsp(project: Path, file: str, edits: int) -> None:
    from lsprotocol import types as lsp
    from pygls.lsp.client import LanguageClient
    from pygls.uris import from_fs_path

    client = LanguageClient("bench", "1")
    got = asyncio.Event()

    @client.feature(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def _diags(ls, params):
        if params.uri.endswith(file):
            got.set()

    await client.start_io(sys.executable, "-m", "icdsl.cli.main", "lsp")
    root = from_fs_path(str(project.resolve()))
    await client.initialize_async(lsp.InitializeParams(capabilities=lsp.ClientCapabilities(), root_uri=root))
    client.initialized(lsp.InitializedParams())
    uri = from_fs_path(str((project / file).resolve()))
    text = (project / file).read_text(encoding="utf-8")
    started = time.perf_counter()
    client.text_document_did_open(lsp.DidOpenTextDocumentParams(lsp.TextDocumentItem(uri, "icdsl", 1, text)))
    await got.wait()
    print(f"first diagnostics after opening {file}: {time.perf_counter() - started:.3f} s (wall, server start excluded)")
    waits = []
    for i in range(edits):
        got.clear()
        text = f"# edit {i}\n" + text
        started = time.perf_counter()
        client.text_document_did_change(lsp.DidChangeTextDocumentParams(
            lsp.VersionedTextDocumentIdentifier(version=2 + i, uri=uri), [lsp.TextDocumentContentChangeWholeDocument(text)]))
        await got.wait()
        waits.append(time.perf_counter() - started)
        await asyncio.sleep(0.1)
    stats = await client.workspace_execute_command_async(lsp.ExecuteCommandParams("icdsl.stats"))
    analyses = stats["analyses"] if isinstance(stats, dict) else stats.analyses
    print(f"per edit, change to diagnostics (wall, {edits} edits, includes the {0.05:.2f} s pause in typing): "
          f"median {statistics.median(waits):.3f} s, max {max(waits):.3f} s")
    wall = [a[0] for a in analyses[1:]]
    cpu = [a[1] for a in analyses[1:]]
    print(f"per edit, the server's analysis: median wall {statistics.median(wall):.3f} s, CPU "
          f"{statistics.median(cpu):.3f} s; the first (deck read): wall {analyses[0][0]:.3f} s, CPU {analyses[0][1]:.3f} s")
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="what", required=True)
    c = sub.add_parser("commands")
    c.add_argument("--runs", type=int, default=7)
    c.add_argument("--before", help="another installation's icdsl to compare with (e.g. main's .venv/bin/icdsl)")
    c.add_argument("--served", action="store_true", help="in-process against a warm command server")
    s = sub.add_parser("lsp")
    s.add_argument("project", type=Path)
    s.add_argument("file")
    s.add_argument("--edits", type=int, default=20)
    args = ap.parse_args()
    if args.what == "commands":
        commands(args.runs, args.before, args.served)
    else:
        asyncio.run(_lsp(args.project, args.file, args.edits))


if __name__ == "__main__":
    main()
