"""Simulated billing cycles, headless: the real billing pipeline on a throw-away store.

``simulate(project, request, overlay, scratch)`` does what ``icdsl demo`` does, for the partners
and the period the analyst chose, with the rules as they are in the editor (unsaved buffers
included, ``overlay``):

1. load, check and compile the folder (``icdsl.tui.project.load_with_overlay``);
2. prepare the traffic (:mod:`icdsl.tui.traffic_source`): a traffic file of the folder, or
   generated traffic written as Parquet chunks (cached in ``scratch`` for the session);
3. open a new SQLite store in a temporary folder (``icdsl.billing.store.open_store`` with an
   explicit URL *and* data folder: never the analyst's ``icdsl.db`` nor ``$ICDSL_DB`` /
   ``$ICDSL_DATA``), load the plan, import the folder's inventory files (``inventory*.csv``:
   recurring fees bill them), ingest the chunks;
4. run each partner's cycle (``Store.run_cycle``: rate, validate, invoice) and read back its
   documents (``Store.cycle_documents``: invoices with every line, whatever its kind, and
   settlement statements) and findings.

The store stays open for drill-down (``Simulation.trace``) until the next simulation or the end
of the session (``Simulation.close`` removes its folder).

Progress and cancellation: ``progress(stage, done, total)`` is called often (from the caller's
worker thread); ``cancelled()`` is polled at the same points and raises :class:`Cancelled`,
which rolls the current cycle's transaction back (the store is thrown away anyway).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select

from icdsl.billing import models as M
from icdsl.billing.store import open_store
from icdsl.lang.checker import check
from icdsl.plan.compiler import compile_checked
from icdsl.tui.project import Project, load_with_overlay
from icdsl.tui.traffic_source import Cancelled, TrafficSource, prepare_traffic

Progress = Callable[[str, int, int], None]
INVOICE_KINDS = ("invoice", "credit_note", "debit_note")


@dataclass(frozen=True)
class SimulationRequest:
    partners: tuple[str, ...]
    period: str
    source: TrafficSource


@dataclass
class PartnerRun:
    partner: str
    report: Any = None  # icdsl.billing.cycles.CycleReport
    documents: list[dict[str, Any]] = field(default_factory=list)  # invoices, then statements
    error: str | None = None

    @property
    def invoices(self) -> list[dict[str, Any]]:
        """Invoices and credit notes."""
        return [d for d in self.documents if d["kind"] in INVOICE_KINDS]

    @property
    def statements(self) -> list[dict[str, Any]]:
        """Settlement (netting) statements, revenue-share statements, and any later kind."""
        return [d for d in self.documents if d["kind"] not in INVOICE_KINDS]


@dataclass
class Simulation:
    """The result of a simulated cycle (and the open store behind it)."""

    request: SimulationRequest
    plan: Any  # the Plan billed with
    runs: list[PartnerRun]
    intake: list[Any]  # IngestReport per chunk
    traffic: list[Path]  # the chunks ingested (what-if rates the same ones)
    workdir: Path
    store: Any = None
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    edited: bool = False  # billed with unsaved buffers
    inventory: list[Any] = field(default_factory=list)  # import reports of the folder's inventory files

    @property
    def records(self) -> int:
        return sum(r.read for r in self.intake)

    def run_of(self, partner: str) -> PartnerRun | None:
        return next((r for r in self.runs if r.partner == partner), None)

    def findings(self) -> list[tuple[str, Any]]:
        """(partner, finding) of every cycle, errors first."""
        order = {"error": 0, "warning": 1, "info": 2}
        out = [(r.partner, f) for r in self.runs if r.report is not None for f in r.report.findings]
        return sorted(out, key=lambda pf: (order.get(pf[1].severity, 3), pf[0], pf[1].code))

    def trace(self, line_id: int, limit: int | None = 500) -> Any:
        """``icdsl trace``: the invoice line, its agreement, rules and (the first ``limit``) records."""
        return self.store.trace(line_id, limit=limit)

    def intake_records(self, partner: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        """The normalized records (as intake stored them) of ``partner`` with these ids."""

        out: dict[str, dict[str, Any]] = {}
        if not ids:
            return out
        with self.store.reading() as s:
            files = list(s.scalars(select(M.DataFile).where(M.DataFile.kind == "intake_records")))
        wanted = pa.array([str(i) for i in ids], pa.string())
        for f in files:
            t = pq.read_table(self.store.data.abs(f.path), filters=[("partner", "=", partner)])
            t = t.filter(pc.is_in(pc.cast(t.column("id"), pa.string()), value_set=wanted))
            for row in t.to_pylist():
                out.setdefault(str(row["id"]), row)
            if len(out) == len(ids):
                break
        return out

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None
        shutil.rmtree(self.workdir, ignore_errors=True)


def _noop(*_: Any) -> None:
    return None


def build_plan(project: Project, overlay: Mapping[Path, str] | None) -> tuple[Any, Any, str | None]:
    """(plan, program, None) or (None, program, why not) for the folder with ``overlay``."""

    program, diags = load_with_overlay(project.folder, overlay or {})
    if not any(d.is_error for d in diags):
        checked, more = check(program)
        diags = diags + more
        if not any(d.is_error for d in diags):
            return compile_checked(checked), program, None
    errors = [d for d in diags if d.is_error]
    first = errors[0]
    return None, program, (f"the rules have {len(errors)} error(s); first: {first.span.file}:{first.span.line}: "
                           f"{first.message}")


def billable_partners(plan: Any) -> list[str]:
    """The partners with at least one agreement (the ones a cycle can bill)."""
    return [p.code for p in plan.partners if plan.agreements_for(p.code)]


def simulate(project: Project, request: SimulationRequest, overlay: Mapping[Path, str] | None, scratch: Path, *,
             progress: Progress | None = None, cancelled: Callable[[], bool] | None = None) -> Simulation:
    """Run the request's cycles on a new store in a folder under ``scratch`` (see the module)."""

    progress = progress or _noop
    is_cancelled = cancelled or (lambda: False)

    def check_cancel() -> None:
        if is_cancelled():
            raise Cancelled()

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    progress("compiling the rules", 0, 1)
    plan, program, why = build_plan(project, overlay)
    if plan is None:
        raise ValueError(f"cannot simulate: {why}")
    partners = [p for p in request.partners if p in billable_partners(plan)]
    if not partners:
        raise ValueError("no partner to bill: choose at least one partner with an agreement")
    timings["compile"] = time.perf_counter() - t0
    check_cancel()

    t = time.perf_counter()
    files = prepare_traffic(project, plan, request.source, partners, scratch, progress=progress,
                            cancelled=is_cancelled)
    timings["traffic"] = time.perf_counter() - t
    check_cancel()

    workdir = Path(tempfile.mkdtemp(prefix="cycle-", dir=scratch))
    sim = Simulation(request, plan, [], [], files, workdir, edited=bool(overlay))
    try:
        sim.store = open_store(f"sqlite:///{workdir / 'simulation.db'}", data_dir=workdir / "data")
        sim.store.load_plan(plan, program)
        for f in project.files().inventory:  # recurring fees bill the partners' inventory
            progress(f"importing {f.name}", 0, 1)
            sim.inventory.append(sim.store.import_inventory(f))
        t = time.perf_counter()
        total = len(files)
        for i, f in enumerate(files):
            progress(f"ingesting {f.name}", i, total)
            sim.intake.append(sim.store.ingest(f, None, plan))
            check_cancel()
        progress("ingested", total, total)
        timings["ingest"] = time.perf_counter() - t

        for code in partners:
            t = time.perf_counter()

            def tick(stage: str, done: int, total: int, code: str = code) -> None:
                if is_cancelled():
                    raise Cancelled()
                progress(f"{code}: {stage}", done, total)

            run = PartnerRun(code)
            try:
                run.report = sim.store.run_cycle(code, request.period, plan, progress=tick)
                run.documents = sim.store.cycle_documents(run.report.cycle_id)
            except Cancelled:
                raise
            except Exception as e:  # a partner's failure is shown, the others still run
                run.error = f"{type(e).__name__}: {e}"
            sim.runs.append(run)
            timings[f"cycle {code}"] = time.perf_counter() - t
            check_cancel()
    except BaseException:
        sim.close()
        raise
    sim.seconds = time.perf_counter() - t0
    sim.timings = timings
    return sim
