"""Every partner's cycles of a period in one command (``icdsl cycle run --all PERIOD``), in this
process or as tasks on Dask distributed.

::

    cycles = plan_cycles(store, plan, "2026-03")            # each partner's own cycles ending in March
    with dask_client(workers=2) as client:                  # or dask_client(scheduler="tcp://host:8786")
        outcomes = run_fleet(store, plan, cycles, client=client)

**Which cycles.** Each partner is billed in its own periods (``billing monthly``, ``weekly``,
``quarterly``; :mod:`icdsl.cycle.periods`). ``--all 2026-03`` runs every cycle that *ends* in
March: a monthly partner's March, a weekly partner's ISO weeks whose Sunday falls in March, a
quarterly partner's Q1; an ad hoc partner is skipped (its cycles are opened by hand with
``FROM..TO``). A period named for partners given by code must be of their frequency: a monthly
cycle of a weekly partner is refused (it would bill the records of its weeks a second time).

**One partner cycle is one task.** The coordinator (this process, the only one that talks to the
database) opens the cycles (:func:`open_cycles`, one transaction), then for each one locks it and
reads its inputs in a reading transaction (:func:`prepare`, :func:`icdsl.billing.cycles.read_job`:
the intake files' paths, history, inventory, FX, options: small, picklable); a worker runs the
engine (:func:`icdsl.billing.cycles.run_job`), reading the intake Parquet files by path and
writing the cycle's rated records, rejects and record charges as content-addressed files of the
cycle's folder, and returns the result (plain data); the coordinator writes it in one
transaction per cycle (:func:`write_job`), after checking under the cycle's lock that the cycle
is still in the state it read (same attempt, same intake batches): a result computed from inputs
that changed meanwhile is never written. Results are written in the order the cycles were
submitted, so rows get the same ids as in a run in this process. Cycles of the same partner run
one after the other (each one's history holds the one before), in waves: the first cycle of
every partner, then the second...

**Faults.** A worker that dies loses its task; the scheduler runs it again on another worker
(the files it had half written have temporary names, removed when the result is written). A
coordinator that dies loses what it had not committed: each cycle is billed whole or not at all,
and a rerun bills the rest (cycles already invoiced are reported, not billed again).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from icdsl.billing.cycles import (
    SPLIT_ROWS,
    CycleJob,
    CycleReport,
    PieceJob,
    _lock_cycle,  # the cycle's lock and row, as run_locked takes them
    _log_failure,
    _open,
    _report,
    _write_result,
    begin_attempt,
    cycles_ending_in,
    frequency_refusal,
    job_event,
    partner_inputs,
    piece_jobs,
    rate_piece,
    read_job,
    refuse_finalized,
    resolve_period,
    run_cycle,
    run_job,
)
from icdsl.billing.errors import CycleError, CycleStateError, StoreError
from icdsl.cycle.charges import needs_totals
from icdsl.cycle.engine import CycleResult
from icdsl.cycle.invoicing import check_dims
from icdsl.cycle.periods import Period
from icdsl.cycle.rater import RatedPiece
from icdsl.plan.model import Plan
from icdsl.rating.cluster import ClusterError, dask_client, shared  # noqa: F401 - (the fleet's client)

if TYPE_CHECKING:
    from icdsl.billing.store import Store

#: states of an outcome that make `icdsl cycle run` exit non-zero
FAILED = ("stopped", "refused", "error")


# --------------------------------------------------------------------------- which cycles


@dataclass(frozen=True)
class PlannedCycle:
    """A cycle to run (``period``), or a partner with none (``note``: why; ``refused``: the
    request was wrong). ``expected``: the partner's records in the intake batches overlapping
    the period (for progress); ``wave``: its rank among the partner's cycles of the run."""

    partner: str
    period: Period | None
    expected: int = 0
    wave: int = 0
    note: str | None = None
    refused: bool = False

    @property
    def label(self) -> str:
        return self.period.label if self.period is not None else "-"


def plan_cycles(store: Store, plan: Plan, spec: str, partners: Sequence[str] | None = None) -> list[PlannedCycle]:
    """The cycles to run for ``spec``: with ``partners`` None, every partner of ``plan``'s cycles
    ending in the period; else the named partners' period ``spec`` (refused for a partner
    billed at another frequency). Raises :class:`icdsl.cycle.periods.PeriodError` for a period
    that cannot be read."""
    every = partners is None
    codes = sorted(p.code for p in plan.partners) if every else list(dict.fromkeys(partners or ()))
    out: list[PlannedCycle] = []
    with store.reading() as s:
        for code in codes:
            try:
                prow, span = resolve_period(s, code, spec, plan)
            except CycleError as e:
                out.append(PlannedCycle(code, None, note=str(e), refused=True))
                continue
            billing, tz = prow.billing, prow.timezone
            if every:
                if billing == "adhoc" and span.frequency != "adhoc":
                    out.append(PlannedCycle(code, None, note="billed ad hoc: its cycles are run by hand "
                                            "(`icdsl cycle run " + code + " FROM..TO`)"))
                    continue
                periods = cycles_ending_in(span, billing, tz) if span.frequency != "adhoc" else [span]
                if not periods:
                    out.append(PlannedCycle(code, None, note=f"billed {billing}: no {billing} cycle ends in "
                                            f"{span.label}"))
            else:
                why = frequency_refusal(code, billing, span, tz, spec)
                if why is not None:
                    out.append(PlannedCycle(code, None, refused=True, note=why))
                    continue
                periods = [span]
            for i, per in enumerate(periods):
                expected = sum(n for *_x, n in partner_inputs(s, code, per.start, per.end))
                out.append(PlannedCycle(code, per, expected, i))
    return out


# --------------------------------------------------------------------------- outcomes


@dataclass
class Outcome:
    """What became of a planned cycle. ``state``: ``invoiced``, ``stopped`` (rated; a finding
    stopped invoicing), ``already`` (invoiced or finalized before: nothing done), ``skipped``,
    ``refused``, ``error`` (``message`` says why; nothing of the cycle was committed)."""

    planned: PlannedCycle
    state: str
    report: CycleReport | None = None
    message: str | None = None

    @property
    def failed(self) -> bool:
        return self.state in FAILED


def outcome_of(planned: PlannedCycle, report: CycleReport) -> Outcome:
    if report.already:
        return Outcome(planned, "already", report, f"already {report.status}: not billed again")
    return Outcome(planned, "stopped" if report.blocked else report.status, report)


class Listener:
    """Progress of a fleet run (the command line draws its bars from it); does nothing here."""

    def started(self, planned: PlannedCycle) -> None:
        """The cycle's run began (in this process) or its task was submitted."""

    def rated(self, planned: PlannedCycle, done: int) -> None:
        """``done`` records of the cycle rated so far (runs in this process only)."""

    def finished(self, outcome: Outcome) -> None:
        """The cycle's result was written (or it failed, or had nothing to do)."""


def _waves(cycles: Sequence[PlannedCycle]) -> list[list[PlannedCycle]]:
    runnable = sorted((c for c in cycles if c.period is not None), key=lambda c: (c.wave, c.partner, c.period.start))
    waves: dict[int, list[PlannedCycle]] = {}
    for c in runnable:
        waves.setdefault(c.wave, []).append(c)
    return [waves[k] for k in sorted(waves)]


# --------------------------------------------------------------------------- running


def run_fleet(store: Store, plan: Plan, cycles: Sequence[PlannedCycle], *, client: Any = None,
              rerate: bool = False, dims: Sequence[str] | None = None, accept: Sequence[str] = (),
              listener: Listener | None = None, split_rows: int | None = None) -> list[Outcome]:
    """Run the planned cycles: in this process (``client`` None: :func:`run_cycle` each, as
    ``icdsl cycle run PARTNER PERIOD`` does) or as tasks of a Dask ``client``, a partner with
    more than ``split_rows`` records (None: :data:`icdsl.billing.cycles.SPLIT_ROWS`) rated in
    pieces on several workers (:func:`split`). A cycle that fails is reported and the others go
    on. Outcomes in the order of ``cycles``."""
    listener = listener or Listener()
    dims_t = check_dims(dims)
    done: dict[int, Outcome] = {}
    for i, c in enumerate(cycles):
        if c.period is None:
            done[i] = Outcome(c, "refused" if c.refused else "skipped", message=c.note)
            listener.finished(done[i])
    index = {id(c): i for i, c in enumerate(cycles)}
    for wave in _waves(cycles):
        if client is None:
            for c in wave:
                done[index[id(c)]] = _run_here(store, plan, c, rerate, dims_t, tuple(accept), listener)
        else:
            for c, out in _run_wave(store, plan, wave, client, rerate, dims_t, tuple(accept), listener, split_rows):
                done[index[id(c)]] = out
    return [done[i] for i in range(len(cycles))]


def _run_here(store: Store, plan: Plan, c: PlannedCycle, rerate: bool, dims: tuple[str, ...],
              accept: tuple[str, ...], listener: Listener) -> Outcome:
    listener.started(c)

    def progress(stage: str, done: int, _total: int) -> None:
        if stage == "rate":
            listener.rated(c, done)

    try:
        out = outcome_of(c, run_cycle(store, c.partner, c.period, plan, rerate=rerate, dims=dims, accept=accept,
                                      progress=progress))
    except StoreError as e:
        out = Outcome(c, "error", message=str(e))
    listener.finished(out)
    return out


@dataclass
class Prepared:
    """A cycle read by the coordinator: its job and what the cycle was when read (``claim``:
    id, attempts, state), checked again before its result is written."""

    planned: PlannedCycle
    job: CycleJob
    claim: tuple[int, int, str]


def open_cycles(store: Store, plan: Plan, wave: Sequence[PlannedCycle], *,
                rerate: bool) -> dict[int, CycleReport | StoreError | None]:
    """The wave's cycles opened (rows created, state ``open``) in one transaction, in order (the
    same ids as in a run in this process). By ``id(planned)``: None (to run), the report of a
    cycle already invoiced or finalized (not ``rerate``), or the error that refuses it."""
    out: dict[int, CycleReport | StoreError | None] = {}
    with store.session() as s:
        for c in wave:
            try:
                prow, per = resolve_period(s, c.partner, c.period, plan)
                cyc = _open(store, s, prow, per)
                if cyc.status in ("invoiced", "finalized") and not rerate:
                    out[id(c)] = _report(s, cyc, per, already=True)
                    continue
                refuse_finalized(cyc, prow, per)
                out[id(c)] = None
            except StoreError as e:  # raised before this cycle wrote anything: the others go on
                out[id(c)] = e
    return out


def prepare(store: Store, plan: Plan, c: PlannedCycle, *, rerate: bool, dims: tuple[str, ...],
            accept: tuple[str, ...]) -> Prepared | CycleReport:
    """Step 1 in the coordinator, in a reading transaction (on SQLite it neither waits for nor
    blocks a writer): lock the (opened) cycle, read its job. A cycle already invoiced or
    finalized (and not ``rerate``): its report instead."""
    with store.reading() as s:
        got = _locked(store, s, plan, c, rerate=rerate, doing="started")
        if isinstance(got, CycleReport):
            return got
        prow, per, cyc = got
        job = read_job(store, s, cyc, prow, per, plan, dims=dims, accept=accept)
        return Prepared(c, job, (cyc.id, cyc.attempts, cyc.status))


def _locked(store: Store, s: Any, plan: Plan, c: PlannedCycle, *, rerate: bool,
            doing: str) -> tuple[Any, Period, Any] | CycleReport:
    """The planned cycle's partner row, period and cycle row, locked (``s``'s transaction); the
    cycle's report instead when it is already invoiced or finalized (and not ``rerate``)."""
    prow, per = resolve_period(s, c.partner, c.period, plan)
    cyc = _lock_cycle(store, s, prow, per)
    if cyc is None:
        raise CycleStateError(f"the cycle {prow.code} {per.label} disappeared while it was being {doing}")
    if cyc.status in ("invoiced", "finalized") and not rerate:
        return _report(s, cyc, per, already=True)  # another session finished it meanwhile
    refuse_finalized(cyc, prow, per)
    return prow, per, cyc


def write_job(store: Store, plan: Plan, prep: Prepared, result: CycleResult, files: dict[str, Any], *,
              rerate: bool, dims: tuple[str, ...]) -> CycleReport:
    """Step 3 in the coordinator, one transaction: under the cycle's lock, check that the cycle
    is as it was read (same attempt and state, same intake batches), then write the result as
    :func:`icdsl.billing.cycles.run_locked` does."""
    with store.session() as s:
        got = _locked(store, s, plan, prep.planned, rerate=rerate, doing="run")
        if isinstance(got, CycleReport):
            return got
        prow, per, cyc = got
        batches = tuple(b for b, *_x in partner_inputs(s, prow.code, per.start, per.end))
        if (cyc.id, cyc.attempts, cyc.status) != prep.claim or batches != prep.job.batches:
            raise CycleStateError(f"the cycle {prow.code} {per.label} changed while its task ran (another run of "
                                  "it, or a new intake batch of the partner): its result was not written; run it "
                                  "again")
        begin_attempt(store, s, cyc, per, plan, dims, produced=[f.path for f in files.values()])
        job_event(s, cyc, prep.job)
        return _write_result(store, s, cyc, prow, per, plan, result, files)


def work(job: CycleJob, plan: Plan, *pieces: RatedPiece) -> tuple[CycleResult, dict[str, Any]]:
    """Step 2, the task a worker runs: the engine on the job (the plan is sent once to every
    worker, not with each job); ``pieces``: the cycle's records rated already, piece by piece on
    other tasks (:func:`icdsl.billing.cycles.rate_piece`), merged in the order given (which is
    the order of the records, whatever order their tasks finished in). Returns plain data: the
    result without its sinks, the files."""
    inputs = replace(job.inputs, plan=plan, pieces=tuple(pieces)) if pieces else replace(job.inputs, plan=plan)
    result, files = run_job(replace(job, inputs=inputs))
    result.sinks = None  # the files stay on disk; the coordinator reads them back by path
    return result, files


def split(job: CycleJob, plan: Plan, rows: int | None) -> list[PieceJob]:
    """The pieces a large partner's cycle is rated in on several workers: its intake row groups
    in pieces of about ``rows`` records (:data:`icdsl.billing.cycles.SPLIT_ROWS`; None: that),
    in order. None (one task for the whole cycle) for a partner with no more records than
    that, or whose per-record charges read ``cycle.*`` (they need the cycle's totals first)."""
    rows = SPLIT_ROWS if rows is None else rows
    if job.inputs.expected <= rows or needs_totals(plan, job.partner):
        return []
    pieces = piece_jobs(job, rows)
    return pieces if len(pieces) > 1 else []


def _run_wave(store: Store, plan: Plan, wave: list[PlannedCycle], client: Any, rerate: bool,
              dims: tuple[str, ...], accept: tuple[str, ...], listener: Listener,
              split_rows: int | None = None) -> Iterator[tuple[PlannedCycle, Outcome]]:
    plan_f = shared(client, plan, "plan")
    opened = open_cycles(store, plan, wave, rerate=rerate)
    submitted: deque[tuple[Prepared, Any]] = deque()

    def settled(c: PlannedCycle, out: Outcome) -> tuple[PlannedCycle, Outcome]:
        listener.finished(out)
        return c, out

    for c in wave:
        listener.started(c)
        got = opened[id(c)]
        try:
            if isinstance(got, StoreError):
                raise got
            prep = got if isinstance(got, CycleReport) else prepare(store, plan, c, rerate=rerate, dims=dims,
                                                                     accept=accept)
        except StoreError as e:
            yield settled(c, Outcome(c, "error", message=str(e)))
            continue
        if isinstance(prep, CycleReport):
            yield settled(c, outcome_of(c, prep))
            continue
        light = replace(prep.job, inputs=replace(prep.job.inputs, plan=None))  # the plan goes once per worker
        tag = f"{c.partner}-{c.label}-{os.urandom(4).hex()}"
        # a large partner: its pieces rated at once on the workers, merged in order by the cycle's task
        pieces = [client.submit(rate_piece, p, plan_f, pure=False, key=f"icdsl-piece-{tag}-{p.index}")
                  for p in split(prep.job, plan, split_rows)]
        fut = client.submit(work, light, plan_f, *pieces, pure=False, key=f"icdsl-cycle-{tag}")
        for p in pieces:
            p.release()  # held by the cycle's task from now on
        submitted.append((prep, fut))
        # results are written in the order submitted (rows get the ids of a run in this process);
        # those ready are written between two submissions, while the workers go on
        while submitted and submitted[0][1].done():
            prep, fut = submitted.popleft()
            yield settled(prep.planned, _written(store, plan, prep, fut, rerate=rerate, dims=dims))
    while submitted:
        prep, fut = submitted.popleft()
        yield settled(prep.planned, _written(store, plan, prep, fut, rerate=rerate, dims=dims))
    plan_f.release()


def _written(store: Store, plan: Plan, prep: Prepared, fut: Any, *, rerate: bool, dims: tuple[str, ...]) -> Outcome:
    """The task's result written (step 3), or why not."""
    c = prep.planned
    try:
        result, files = fut.result()
        # released before writing: should the worker holding it die now, the scheduler must not
        # run the task again (rewriting the cycle's files) while its result is being written
        fut.release()
        return outcome_of(c, write_job(store, plan, prep, result, files, rerate=rerate, dims=dims))
    except StoreError as e:
        _log_failure(store, prep.claim[0], e)
        return Outcome(c, "error", message=str(e))
    except Exception as e:  # a worker's error, or a task lost with too many workers: this cycle only
        _log_failure(store, prep.claim[0], e)
        return Outcome(c, "error", message=f"{type(e).__name__}: {e}")
    finally:
        fut.release()
