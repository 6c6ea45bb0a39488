"""Every partner's cycles in one command (`icdsl cycle run --all`), here and on Dask distributed.

- which cycles a period holds for monthly, weekly and quarterly partners; a period of another
  frequency than a partner's billing refused with a message saying why;
- the command's summary and exit code (a cycle stopped on a finding);
- a real local Dask cluster (2 worker processes): the demo month billed as tasks gives exactly
  the store of running each partner alone, also when a worker process is killed (os.kill) while
  it rates; a coordinator that dies mid-run leaves each cycle billed whole or not at all, and a
  rerun bills the rest (a subprocess killed at a crash point, and a crash in the Dask path).

The kills are deterministic: a worker is killed while it is held at its first `cycle:rated`
crash point (the others wait for a marker file until then); the coordinator at the Nth
`cycle:before_commit`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from helpers import ROOT
from test_billing_cli import run
from test_cycle_identity import dump
from typer.testing import CliRunner

from icdsl.billing.errors import CycleError
from icdsl.billing.store import open_store
from icdsl.cli.main import app
from icdsl.cycle.periods import parse_period
from icdsl.plan.compiler import build

# --------------------------------------------------------------------------- which cycles


def test_cycles_ending_in_a_month_quarter_and_week():
    from icdsl.billing.fleet import cycles_ending_in

    march = parse_period("2026-03", "Europe/Paris")
    weeks = cycles_ending_in(march, "weekly", "Europe/Paris")
    # ISO weeks whose Sunday is in March 2026: W09 ends Sunday 1 March, W13 on the 29th (W14 ends in April)
    assert [w.label for w in weeks] == ["2026-W09", "2026-W10", "2026-W11", "2026-W12", "2026-W13"]
    assert all(w.timezone == "Europe/Paris" for w in weeks)
    assert [q.label for q in cycles_ending_in(march, "quarterly", "UTC")] == ["2026-Q1"]
    assert cycles_ending_in(parse_period("2026-02", "UTC"), "quarterly", "UTC") == []
    assert [m.label for m in cycles_ending_in(parse_period("2026-Q1", "UTC"), "monthly", "UTC")] == [
        "2026-01", "2026-02", "2026-03"]
    assert cycles_ending_in(march, "monthly", "Europe/Paris") == [march]


def _bench(name: str, partners: int):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests/benchmarks/bench_cycle.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.PARTNERS = partners  # read by make_project and make_traffic
    return mod


@pytest.fixture
def six(tmp_path, monkeypatch):
    """Six partners: P001-P004 monthly (P004 sends a fifth of its calls to a country the deck
    does not price: validation stops its cycle), P005 weekly, P006 quarterly."""
    bench = _bench("bench_cycle_fleet_six", 6)
    project, prefixes = bench.make_project(tmp_path / "project")
    text = (project / "bench.icd").read_text()
    for code, billing in (("P005", "weekly"), ("P006", "quarterly")):
        text = text.replace(f'partner {code} "Partner {int(code[1:])}" {{ currency EUR timezone "UTC" billing monthly',
                            f'partner {code} "Partner {int(code[1:])}" {{ currency EUR timezone "UTC" billing {billing}')
    (project / "bench.icd").write_text(text)
    (traffic,) = bench.make_traffic(tmp_path / "traffic", prefixes, 12_000, 1)
    t = pq.read_table(traffic)
    bad = pc.and_(pc.equal(t.column("partner"), "P004"), pc.equal(pc.bit_wise_and(t.column("id"), 3), 0))
    t = t.set_column(t.schema.get_field_index("b_number"), "b_number",
                     pc.if_else(bad, pa.scalar("16502530000"), t.column("b_number")))
    pq.write_table(t, traffic)
    monkeypatch.chdir(project)
    monkeypatch.setenv("ICDSL_DB", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.delenv("ICDSL_DATA", raising=False)
    run("ingest", str(traffic), "--rules", "bench.icd")
    return tmp_path


def test_all_partners_each_in_its_own_cycles(six):
    out = run("cycle", "run", "--all", "2026-03", "--rules", "bench.icd", code=1)  # P004 stopped
    rows = {tuple(line.split("│")[1:3]): line for line in out.splitlines() if line.startswith("│ P")}
    got = {(p.strip(), per.strip()): line.split("│")[-2].strip() for (p, per), line in rows.items()}
    assert got == {("P001", "2026-03"): "invoiced", ("P002", "2026-03"): "invoiced",
                   ("P003", "2026-03"): "invoiced", ("P004", "2026-03"): "stopped (rated)",
                   **{("P005", f"2026-W{w:02d}"): "invoiced" for w in range(9, 14)},
                   ("P006", "2026-Q1"): "invoiced"}
    assert "P004 2026-03: invoicing stopped on invalid_destination" in out
    assert "9 invoiced, 1 stopped" in out
    with open_store() as store:
        by_cycle = {(c.partner_code, c.label): c for c in store.cycles()}
        assert set(by_cycle) == set(got)
        # every record of March billed once: the monthly cycles' and P005's weeks (W14 holds 30-31 March)
        week14 = parse_period("2026-W14", "UTC")
        t = pq.read_table(next((six / "traffic").glob("*.parquet")))
        p005 = t.filter(pc.equal(t.column("partner"), "P005"))
        late = pc.sum(pc.greater_equal(p005.column("start"), pa.scalar(week14.start, pa.timestamp("us", "UTC")))).as_py()
        weeks = sum(c.records_in for (p, _l), c in by_cycle.items() if p == "P005")
        assert weeks + late == p005.num_rows and late > 0

    # a rerun bills nothing twice: invoiced cycles are reported; the stopped one is rated again
    out = run("cycle", "run", "--all", "2026-03", "--rules", "bench.icd", "--accept", "invalid_destination")
    assert "9 already, 1 invoiced" in out and "already invoiced" in out
    with open_store() as store:
        assert len(store.cycles()) == 10 and all(c.status == "invoiced" for c in store.cycles())
        assert len(store.invoices()) == 10


def test_the_summary_fits_an_80_column_terminal(six, monkeypatch):
    """In a terminal of 80 columns the summary drops its frame and the `rated` count (records -
    rejected), and wraps cells between words: no line is wider, no amount is cut."""
    import io

    from rich.console import Console

    import icdsl.cli.billing as cli_billing

    screen = io.StringIO()
    monkeypatch.setattr(cli_billing, "table_console",
                        lambda width=120: Console(file=screen, width=80, force_terminal=True, color_system=None))
    run("cycle", "run", "--all", "2026-03", "--rules", "bench.icd", code=1)  # P004 stops on a finding
    lines = screen.getvalue().splitlines()
    assert lines and all(len(line) <= 80 for line in lines), lines
    head = next(line for line in lines if "partner" in line)
    assert head.split() == ["partner", "period", "records", "rejected", "amounts", "findings", "state"]
    rows = [line for line in lines if line.startswith(" P")]
    assert len(rows) == 10  # one line per cycle: 3 monthly, P004 stopped, P005's 5 weeks, P006's quarter
    for line in rows:  # the amount of each cycle whole, with its currency, on the cycle's line
        assert re.search(r" \d+\.\d+ EUR ", line), line


def test_a_monthly_cycle_of_a_weekly_partner_is_refused(six):
    out = CliRunner().invoke(app, ["cycle", "run", "P005", "2026-03", "--rules", "bench.icd"])
    assert out.exit_code == 1 and "Traceback" not in out.output
    assert ("error: P005 is billed weekly (`billing weekly` in its declaration): a monthly cycle 2026-03 is refused, "
            "since its records are billed in weekly cycles and would be billed twice; run its weekly cycles (for "
            "example `icdsl cycle run P005 2026-W09`) or `icdsl cycle run --all 2026-03` for every cycle ending "
            "in 2026-03") in out.output
    # among several partners: the others run, the refusal is in the summary, exit 1
    out = run("cycle", "run", "P001", "P005", "2026-03", "--rules", "bench.icd", code=1)
    assert "1 invoiced, 1 refused" in out and "P005: refused: P005 is billed weekly" in out
    assert "P005 2026-W10: invoiced" in run("cycle", "run", "P005", "2026-W10", "--rules", "bench.icd")
    with open_store() as store:
        assert sorted((c.partner_code, c.label) for c in store.cycles()) == [("P001", "2026-03"), ("P005", "2026-W10")]
        # the library refuses it too (the store's run_cycle, as the TUI and scripts call it), and opens nothing
        with contextlib.chdir(six):
            plan, _program, _diags = build(["bench.icd"])
        with pytest.raises(CycleError, match=r"P005 is billed weekly .* a monthly cycle 2026-03 is refused"):
            store.run_cycle("P005", "2026-03", plan)
        assert len(store.cycles()) == 2
    out = CliRunner().invoke(app, ["cycle", "run", "--all", "P001", "2026-03", "--rules", "bench.icd"])
    assert out.exit_code == 2 and "either --all or partner codes" in out.output
    out = CliRunner().invoke(app, ["cycle", "run", "--all", "2026-13", "--rules", "bench.icd"])
    assert out.exit_code == 2 and "month 13 does not exist" in out.output


# --------------------------------------------------------------------------- the demo month, three ways


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's rules, inventory and a small March (6,000 records, seed 5), made once."""
    from icdsl.demo import PERIOD, copy_examples, generate, write_weeks

    folder = tmp_path_factory.mktemp("fleet-demo")
    with contextlib.chdir(folder):
        projects = copy_examples(Path("rules"))
        files = write_weeks(generate(Path("rules"), 6000, 5), folder / "traffic")
    return folder, projects, files, PERIOD


def _demo_store(demo, name: str):
    """A fresh store of the demo month, ingested; returns (store, plan, partners, url, data)."""
    folder, projects, files, _period = demo
    with contextlib.chdir(folder):
        plan, program, diags = build([p.relative_to(folder) if p.is_absolute() else p for p in projects], Path("rules"))
        assert plan is not None, [str(d) for d in diags]
        url, data = f"sqlite:///{folder / name}.db", folder / f"{name}-data"
        store = open_store(url, data_dir=data)
        store.load_plan(plan, program)
        for f in sorted(Path("rules").glob("*/inventory.csv")):
            store.import_inventory(f, strict=True)
        for f in files:
            store.ingest(f, None, plan)
    partners = [p.code for p in plan.partners if plan.agreements_for(p.code)]
    return store, plan, partners, url, data


def _finalize_all(store, partners, period) -> None:
    for code in partners:
        store.finalize_cycle(code, period)


@pytest.fixture(scope="module")
def alone(demo):
    """The month billed by running each partner's cycle alone, in this process."""
    store, plan, partners, url, data = _demo_store(demo, "alone")
    try:
        for code in partners:
            assert store.run_cycle(code, demo[3], plan).status == "invoiced"
        _finalize_all(store, partners, demo[3])
    finally:
        store.close()
    return dump(url, data)


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0",
                      silence_logs=40) as cluster, Client(cluster) as c:
        yield c


def _hold_rating(folder: str) -> int:
    """Runs in a worker: its `cycle:rated` crash point writes a marker and waits for `go`."""
    import icdsl.billing.base as base

    def hold(stage: str) -> None:
        if stage == "cycle:rated":
            Path(folder, f"rating-{os.getpid()}").touch()
            end = time.monotonic() + 120
            while not Path(folder, "go").exists() and time.monotonic() < end:
                time.sleep(0.01)

    base.checkpoint = hold
    return os.getpid()


def _release(folder: str) -> None:
    import icdsl.billing.base as base

    base.checkpoint = lambda stage: None


def test_on_dask_with_a_worker_killed_mid_run_bills_as_alone(demo, alone, client, tmp_path):
    import cloudpickle

    from icdsl.billing.fleet import plan_cycles, run_fleet

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    store, plan, partners, url, data = _demo_store(demo, "dask")
    marks = tmp_path / "marks"
    marks.mkdir()
    pids = client.run(_hold_rating, str(marks))
    assert len(pids) == 2
    killed: list[int] = []

    def killer() -> None:  # the first worker held while rating a cycle dies
        end = time.monotonic() + 120
        while time.monotonic() < end:
            held = sorted(marks.glob("rating-*"))
            if held:
                pid = int(held[0].name.split("-")[1])
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.01)
        (marks / "go").touch()

    th = threading.Thread(target=killer)
    th.start()
    try:
        outcomes = run_fleet(store, plan, plan_cycles(store, plan, demo[3], partners), client=client)
    finally:
        (marks / "go").touch()
        th.join()
        client.run(_release, str(marks), on_error="ignore")  # the killed worker may still be restarting
    end = time.monotonic() + 120  # a task of the killed worker run again, if any, is over before looking
    while any(client.processing().values()) and time.monotonic() < end:
        time.sleep(0.05)
    assert killed and killed[0] in pids.values(), (killed, pids)
    assert [(o.planned.partner, o.state) for o in outcomes] == [(p, "invoiced") for p in partners], [
        (o.planned.partner, o.state, o.message) for o in outcomes]
    _finalize_all(store, partners, demo[3])
    store.close()
    assert dump(url, data) == alone
    leftovers = [p for p in (data / "cycles").rglob("*") if p.is_file() and p.name.startswith(".")]
    assert leftovers == [], leftovers  # the killed worker's half-written files were removed with the result written


class Crash(BaseException):
    """The coordinator dying (not an Exception: nothing catches it)."""


def test_on_dask_a_coordinator_dying_mid_run_leaves_cycles_whole_and_a_rerun_bills_the_rest(
        demo, alone, client, monkeypatch):
    from sqlalchemy import select

    from icdsl.billing import models as M
    from icdsl.billing.fleet import plan_cycles, run_fleet

    store, plan, partners, url, data = _demo_store(demo, "crash")
    seen = []

    def die(stage: str) -> None:
        if stage == "cycle:before_commit":
            seen.append(stage)
            if len(seen) == 2:
                raise Crash()

    monkeypatch.setattr("icdsl.billing.base.checkpoint", die)
    with pytest.raises(Crash):
        run_fleet(store, plan, plan_cycles(store, plan, demo[3], partners), client=client)
    monkeypatch.undo()
    with store.reading() as s:
        states = {c.partner_code: c.status for c in s.scalars(select(M.BillingCycle))}
        billed = {c: s.query(M.Invoice).filter(M.Invoice.partner_code == c).count() for c in partners}
        files = {c: s.query(M.DataFile).filter(M.DataFile.partner == c, M.DataFile.cycle_id.is_not(None)).count()
                 for c in partners}
    first, *rest = sorted(partners)  # results are written in the order of the partners' codes
    assert states[first] == "invoiced" and billed[first] > 0  # written before the crash
    for code in rest:  # the second's transaction died; the rest never wrote: untouched
        assert states.get(code, "open") == "open" and billed[code] == 0 and files[code] == 0
    outcomes = run_fleet(store, plan, plan_cycles(store, plan, demo[3], partners), client=client)
    assert {o.planned.partner: o.state for o in outcomes} == {p: "already" if p == first else "invoiced"
                                                               for p in partners}
    _finalize_all(store, partners, demo[3])
    store.close()
    assert dump(url, data) == alone


KILL = textwrap.dedent("""
    import os, sys
    import icdsl.billing.base
    hits = int(sys.argv[1])
    seen = []
    def die(at):
        if at == "cycle:before_commit":
            seen.append(at)
            if len(seen) == hits:
                os.kill(os.getpid(), 9)
    icdsl.billing.base.checkpoint = die  # where the store's parts call it
    from icdsl.cli.main import main
    sys.argv = ["icdsl", *sys.argv[2:]]
    main()
""")


def test_cycle_run_all_killed_by_a_signal_then_rerun(six):
    args = ["cycle", "run", "--all", "2026-03", "--rules", "bench.icd", "--accept", "all"]
    res = subprocess.run([sys.executable, "-c", KILL, "4", *args], capture_output=True, text=True, timeout=300)
    assert res.returncode == -signal.SIGKILL, res.stderr
    with open_store() as store:
        cycles = {(c.partner_code, c.label): c.status for c in store.cycles()}
        invoices = store.invoices()
    assert cycles == {("P001", "2026-03"): "invoiced", ("P002", "2026-03"): "invoiced",
                      ("P003", "2026-03"): "invoiced"}  # the 4th died whole: its cycle was never committed
    assert sorted(i.partner_code for i in invoices) == ["P001", "P002", "P003"]
    out = run(*args)
    assert "3 already, 7 invoiced" in out
    with open_store() as store:
        assert sorted((c.partner_code, c.status) for c in store.cycles()) == sorted(
            [(p, "invoiced") for p in ("P001", "P002", "P003", "P004", "P006")] + [("P005", "invoiced")] * 5)
        per_cycle = {}
        for i in store.invoices():
            per_cycle[i.cycle_id] = per_cycle.get(i.cycle_id, 0) + 1
        assert len(per_cycle) == 10 and set(per_cycle.values()) == {1}  # one invoice per cycle: none twice


def test_rate_on_dask_writes_the_same_outputs_as_in_one_process(demo, client, tmp_path):
    from icdsl.rating.run import rate_file

    folder, projects, files, _period = demo
    with contextlib.chdir(folder):
        plan, _program, diags = build([p.relative_to(folder) if p.is_absolute() else p for p in projects],
                                      Path("rules"))
    assert plan is not None, [str(d) for d in diags]
    here = rate_file(plan, files[1], tmp_path / "here", batch_rows=400)
    there = rate_file(plan, files[1], tmp_path / "there", batch_rows=400, client=client)  # several batches in flight
    assert here.read > 1200 and here.rejected and here.record_charges  # batches, rejects and surcharges
    assert {k: v for k, v in there.to_dict().items() if k not in ("seconds", "outputs")} == {
        k: v for k, v in here.to_dict().items() if k not in ("seconds", "outputs")}
    for name in ("rated.parquet", "rejects.parquet", "record_charges.parquet"):
        assert (tmp_path / "there" / name).read_bytes() == (tmp_path / "here" / name).read_bytes(), name


def test_rate_and_cycle_run_refuse_a_bad_worker_count(six):
    out = CliRunner().invoke(app, ["rate", "bench.icd", "--cdrs", str(next((six / "traffic").glob("*.parquet"))),
                                   "--out", str(six / "out"), "--workers", "0"])
    assert out.exit_code == 2 and "--workers must be 1 or more" in out.output
    out = CliRunner().invoke(app, ["cycle", "run", "--all", "2026-03", "--rules", "bench.icd", "--workers", "0"])
    assert out.exit_code == 2 and "--workers must be 1 or more" in out.output


def test_a_cycle_job_and_its_result_are_plain_picklable_data(six):
    import pickle

    from icdsl.billing.fleet import open_cycles, plan_cycles, prepare, work

    with contextlib.chdir(six / "project"):
        plan, _program, _diags = build(["bench.icd"])
    with open_store() as store:
        (c,) = [c for c in plan_cycles(store, plan, "2026-03", ["P001"])]
        assert open_cycles(store, plan, [c], rerate=False) == {id(c): None}
        prep = prepare(store, plan, c, rerate=False, dims=("destination", "band"), accept=())
        job = pickle.loads(pickle.dumps(prep.job))  # what a worker receives: no session, file or closure
        assert job.inputs.records.files == prep.job.inputs.records.files and job.batches == (1,)
        result, files = pickle.loads(pickle.dumps(work(job, plan)))  # and what it sends back
    assert result.sinks is None and result.counts.rated == files["rated"].rows > 0
    assert result.drafts is not None and sum(ln.amount for ln in result.drafts.invoices[0].lines) == \
        result.drafts.invoices[0].subtotal


# --------------------------------------------------------------------------- a large partner in pieces


def _largest_job(demo, name: str):
    """(store, plan, job) of the cycle of the demo partner with the most records in the month
    (among those whose per-record charges do not read cycle.*), opened and read."""
    from icdsl.billing import cycles as C
    from icdsl.cycle.charges import needs_totals

    store, plan, partners, _url, _data = _demo_store(demo, name)
    with store.session() as s:
        sizes = {}
        for code in partners:
            prow, per = C.resolve_period(s, code, demo[3], plan)
            if not needs_totals(plan, code):
                sizes[code] = sum(n for *_x, n in C.partner_inputs(s, code, per.start, per.end))
        partner = max(sizes, key=lambda c: (sizes[c], c))
        prow, per = C.resolve_period(s, partner, demo[3], plan)
        job = C.read_job(store, s, C._open(store, s, prow, per), prow, per, plan)
    return store, plan, job


def _result_of(result, files):
    """What a cycle's result says, as plain data: counts, lines, totals, daily counts, usage,
    findings, draft documents, and the rated file's records by line (sorted)."""
    rated = pq.read_table(files["rated"], columns=["id", "batch_id", "line", "amount"]).sort_by(
        [("id", "ascending"), ("batch_id", "ascending")])
    return (result.counts, [(g.key, g.agreement_hash, g.direction, g.service, g.currency, sorted(g.dims.items()),
                             g.count, g.units, g.amount, g.first, g.last) for g in result.lines],
            result.totals, result.daily, result.usage, [f.as_dict() for f in result.findings],
            repr(result.drafts), rated.to_pydict())


def test_pieces_rated_in_any_order_merge_as_one_run(demo):
    """The deterministic merge: a partner's records cut into pieces, rated on their own in the
    reverse order (as tasks finishing in any order would), then merged in the order of the
    records, give the same counts, lines, sums, findings, drafts and rated records as rating
    them in one run."""
    from dataclasses import replace

    from icdsl.billing import cycles as C

    store, plan, job = _largest_job(demo, "pieces")
    partner = job.partner
    try:
        data = store.data
        whole, whole_files = C.run_job(job)
        one = _result_of(whole, {k: data.abs(f.path) for k, f in whole_files.items()})
        pieces = C.piece_jobs(job, rows=1)  # each read a piece of its own
        assert len(pieces) >= 3, pieces
        assert [r for p in pieces for r in p.reads] == [
            (b, path, r) for b, path in job.inputs.records.files
            for r in C.partner_reads(str(data.abs(path)), partner, job.inputs.records.period.start,
                                     job.inputs.records.period.end)]
        rated = {p.index: C.rate_piece(p, plan) for p in reversed(pieces)}  # finishing last to first
        merged, merged_files = C.run_job(replace(job, inputs=replace(job.inputs, pieces=tuple(
            rated[i] for i in range(len(pieces))))))
        assert _result_of(merged, {k: data.abs(f.path) for k, f in merged_files.items()}) == one
        assert merged.counts.rated == sum(p.rated for p in rated.values()) > 0
        # merged in another order, the lines are numbered otherwise: the order given is the one used
        shuffled, _files = C.run_job(replace(job, inputs=replace(job.inputs, pieces=tuple(reversed(
            [rated[i] for i in range(len(pieces))])))))
        assert shuffled.totals == whole.totals
        assert [g.key for g in shuffled.lines] == [g.key for g in whole.lines]
        assert {(g.dims["destination"], g.key) for g in shuffled.lines} != {(g.dims["destination"], g.key)
                                                                          for g in whole.lines}
    finally:
        store.close()


def test_on_dask_a_large_partner_rated_in_pieces_bills_as_alone(demo, alone, client, monkeypatch):
    """With a threshold of the median partner's records, the demo's larger partners are rated
    in pieces (of intake files' row groups) on the two workers and merged by their cycle's
    task, the others in one task: the store is exactly that of running each partner alone in
    one process."""
    import icdsl.billing.fleet as fleet

    split = fleet.split
    cut: dict[str, int] = {}

    def counted(job, plan, rows):
        got = split(job, plan, rows)
        cut[job.partner] = len(got)
        return got

    monkeypatch.setattr(fleet, "split", counted)
    store, plan, partners, url, data = _demo_store(demo, "dask-pieces")
    cycles = fleet.plan_cycles(store, plan, demo[3], partners)
    sizes = sorted(c.expected for c in cycles)
    threshold = sizes[len(sizes) // 2]  # the larger half of the partners in pieces of about that many records
    outcomes = fleet.run_fleet(store, plan, cycles, client=client, split_rows=threshold)
    assert [(o.planned.partner, o.state) for o in outcomes] == [(p, "invoiced") for p in partners], [
        (o.planned.partner, o.state, o.message) for o in outcomes]
    assert max(cut.values()) >= 2 and min(cut.values()) == 0, (cut, sizes)  # some in pieces, some whole
    _finalize_all(store, partners, demo[3])
    store.close()
    assert dump(url, data) == alone
    leftovers = [p for p in (data / "cycles").rglob("*") if p.is_file() and "part" in p.name]
    assert leftovers == [], leftovers  # the pieces' files were removed with the result written
