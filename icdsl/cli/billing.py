"""Billing commands of the ``icdsl`` command line: the store, intake, cycles, corrections, the
audit trail, invoices and the demo.

Every command that touches the store takes ``--db URL`` (or ``$ICDSL_DB``; default
``sqlite:///icdsl.db`` in the working folder) and ``--data DIR`` (or ``$ICDSL_DATA``; default
``icdsl-data`` next to a SQLite file). A mistake of the user (an unknown partner, a cycle in the
wrong state, a file already ingested with other content...) is a message and exit code 1; an
unreadable period or date is exit code 2; never a traceback.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import typer

from icdsl.cli.common import app, build_with_program_or_exit, echo_err, existing, table_console
from icdsl.rating.cluster import ClusterError, dask_client

DB_HELP = "Database URL: sqlite:///FILE or postgresql://USER@HOST/DB (default: $ICDSL_DB, else sqlite:///icdsl.db)."
DATA_HELP = "Folder of the store's Parquet files (default: $ICDSL_DATA, else icdsl-data next to the SQLite file)."
RULES_HELP = ("Rule files or folders (repeat --rules for several); default: the current folder, when it holds "
              "rule files (*.icd).")

cycle_app = typer.Typer(help="Billing cycles: run (rate, validate, invoice), status, finalize.",
                        no_args_is_help=True)
invoice_app = typer.Typer(help="Invoices and settlement statements: list, show, export.", no_args_is_help=True)
app.add_typer(cycle_app, name="cycle")
app.add_typer(invoice_app, name="invoice")


def _db_option() -> Any:
    return typer.Option(None, "--db", envvar="ICDSL_DB", help=DB_HELP, show_envvar=False)


def _data_option() -> Any:
    return typer.Option(None, "--data", envvar="ICDSL_DATA", help=DATA_HELP, show_envvar=False)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """StoreError -> exit 1, PeriodError -> exit 2, with the message only."""
    # lazy: the store: loaded when this command runs, not at every `icdsl` start
    from icdsl.billing.errors import StoreError
    from icdsl.billing.periods import PeriodError

    try:
        yield
    except PeriodError as e:
        echo_err(f"error: {e}")
        raise typer.Exit(2) from None
    except StoreError as e:
        echo_err(f"error: {e}")
        raise typer.Exit(1) from None


@contextlib.contextmanager
def opened(db: str | None, data: Path | None) -> Iterator[Any]:
    # lazy: this command needs numpy, pyarrow, sqlalchemy: loaded when it runs, not at every `icdsl` start
    from icdsl.billing.store import open_store

    with user_errors():
        store = open_store(db, data_dir=data)
        try:
            yield store
        finally:
            store.close()


def _plan(rules: list[Path], root: Path | None):
    """The plan of ``rules``, or of the current folder when none are given and it holds rule
    files (the way `icdsl check .` is run from a project); else a clear error (exit 2)."""
    if not rules:
        here = Path.cwd()
        if not any(p.is_file() for p in here.glob("*.icd")):
            echo_err(f"error: no rules given, and this folder ({here}) holds no rule files (*.icd)\n"
                     "  = help: run the command from the project's folder, or give its rules with --rules FOLDER")
            raise typer.Exit(2)
        rules = [Path(".")]
    return build_with_program_or_exit(existing(rules), root)


def _load_quietly(store: Any, plan: Any, program: Any, retroactive: bool = False) -> None:
    report = store.load_plan(plan, program, retroactive=retroactive)
    if report.changed:
        typer.echo(f"loaded: {report}")


# --------------------------------------------------------------------------- load, ingest


@app.command("load")
def load_cmd(
    rules: list[Path] = typer.Argument(..., help="Rule files or folders."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
    root: Path | None = typer.Option(None, help="Project folder that rule files may read from."),
) -> None:
    """Load rules into the store: partners, agreement versions (immutable), FX rates."""
    plan, program = _plan(rules, root)
    with opened(db, data) as store:
        typer.echo(str(store.load_plan(plan, program)))


@app.command("ingest")
def ingest_cmd(
    files: list[Path] = typer.Argument(..., help="Traffic files: CSV, Parquet, or a reader's format (switch CDRs)."),
    rules: list[Path] = typer.Option([], "--rules", help=RULES_HELP),
    layout: str | None = typer.Option(None, help="Records layout (from the rules) to read the files with."),
    reader: str | None = typer.Option(None, help="Record reader (e.g. asterisk_csv, freeswitch_csv from the "
                                      "mediation plugin; `icdsl plugins` lists them); default: the reader that "
                                      "recognizes the file."),
    reader_option: list[str] = typer.Option([], "--reader-option", metavar="KEY=VALUE",
                                            help="An option for the reader, e.g. timezone=Europe/Madrid (repeat)."),
    fingerprint: bool = typer.Option(False, "--fingerprint", help="Also report suspected duplicates: the same "
                                     "call (numbers, start, duration) under a new id (billed, listed for review)."),
    workers: int | None = typer.Option(None, "--workers", help="Read and split the files on a local Dask cluster "
                                       "of N worker processes (the database part stays here)."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Read and split the files on a running Dask "
                                         "cluster: tcp://HOST:PORT (docs/ingest.md)."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
    root: Path | None = typer.Option(None, help="Project folder that rule files may read from."),
) -> None:
    """Ingest traffic files: one intake batch per file (a file already ingested adds nothing).
    Repeated ids with other content are reported as conflicts (`icdsl conflicts` lists both versions).
    With --workers or --scheduler, workers read the files and write their batches' files; the
    batches are the same as without."""
    existing(files)
    options = _reader_options(reader_option)
    _check_cluster_options(workers, scheduler)
    plan, program = _plan(rules, root)
    with opened(db, data) as store, contextlib.ExitStack() as stack:
        _load_quietly(store, plan, program)
        if workers is not None or scheduler is not None:
            try:
                client = stack.enter_context(dask_client(workers=workers, scheduler=scheduler))
            except ClusterError as e:
                echo_err(f"error: {e}")
                raise typer.Exit(1) from None
            reports = store.ingest_files(files, layout, plan, client=client, reader=reader, reader_options=options,
                                         fingerprint=fingerprint)
        else:
            reports = (store.ingest(f, layout, plan, reader=reader, reader_options=options, fingerprint=fingerprint)
                       for f in files)
        bad = False
        for rep in reports:
            typer.echo(str(rep))
            if rep.unknown_partners:
                typer.echo(f"  warning: partners not declared in the rules: {', '.join(rep.unknown_partners)} "
                           "(their records will not be billed)")
            bad |= not rep.reconciles
    raise typer.Exit(3 if bad else 0)


def _check_cluster_options(workers: int | None, scheduler: str | None) -> None:
    """--workers N or --scheduler tcp://HOST:PORT (a command that spreads its work on Dask), not both."""
    if workers is not None and scheduler is not None:
        echo_err("error: give either --workers N (a local cluster) or --scheduler tcp://HOST:PORT, not both")
        raise typer.Exit(2)
    if workers is not None and workers < 1:
        echo_err("error: --workers must be 1 or more")
        raise typer.Exit(2)


def _reader_options(given: list[str]) -> dict[str, str]:
    options = {}
    for opt in given:
        k, sep, v = opt.partition("=")
        if not sep or not k.strip():
            echo_err(f"error: --reader-option expects KEY=VALUE, not '{opt}'")
            raise typer.Exit(2)
        options[k.strip()] = v.strip()
    return options


@app.command("conflicts")
def conflicts_cmd(
    batch: int | None = typer.Option(None, "--batch", help="Only this intake batch's (its number in the ingest "
                                     "report)."),
    partner: str | None = typer.Option(None, "--partner", help="Only this partner's records."),
    kind: str | None = typer.Option(None, "--kind", help="conflict (an id ingested again with other content) or "
                                    "suspect (the same call under a new id, from --fingerprint); default both."),
    fmt: str = typer.Option("text", "--format", help="text (both versions' differing fields) or json (both "
                            "versions whole)."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """Records that arrived again, both versions: conflicts (rejected, the earlier version stays
    billed) and suspected duplicates (billed); for the analyst to review."""
    # lazy: this command needs the store (sqlalchemy): loaded when it runs, not at every `icdsl` start
    from icdsl.billing.conflicts import differs_text, where_text

    if kind not in (None, "conflict", "suspect"):
        echo_err(f"error: --kind is conflict or suspect, not '{kind}'")
        raise typer.Exit(2)
    if fmt not in ("text", "json"):
        echo_err(f"error: --format is text or json, not '{fmt}'")
        raise typer.Exit(2)
    with opened(db, data) as store:
        if batch is not None and batch not in {b.id for b in store.batches()}:
            echo_err(f"error: there is no intake batch #{batch} ('icdsl conflicts' without --batch lists all)")
            raise typer.Exit(1)
        rows = store.conflicts(batch_id=batch, partner=partner, kind=kind)
        names = {b.id: b.file_name for b in store.batches()}
    if fmt == "json":
        typer.echo(json.dumps([{
            "kind": c.kind, "batch": c.batch_id, "file": names.get(c.batch_id), "row": c.row, "id": c.record_id,
            "partner": c.partner, "earlier_batch": c.earlier_batch_id, "earlier_file": names.get(c.earlier_batch_id),
            "earlier_id": c.earlier_id, "differs": c.differs, "earlier": c.earlier, "later": c.later,
        } for c in rows], indent=2, ensure_ascii=False))
        return
    if not rows:
        typer.echo("no conflicts" + ("" if kind == "conflict" else " or suspected duplicates"))
        return
    for c in rows:
        where = where_text(names.get(c.batch_id, "?"), c)
        earlier = f"batch #{c.earlier_batch_id} ({names.get(c.earlier_batch_id, '?')})"
        if c.kind == "conflict":
            typer.echo(f"conflict  batch #{c.batch_id} {where}: id '{c.record_id}' ({c.partner}): {differs_text(c)}; "
                       f"billed: the version of {earlier}; this one rejected")
        else:
            typer.echo(f"suspect   batch #{c.batch_id} {where}: id '{c.record_id}' ({c.partner}) is the same call "
                       f"as id '{c.earlier_id}' of {earlier}; both billed")
    typer.echo(f"{sum(c.kind == 'conflict' for c in rows)} conflict(s), {sum(c.kind == 'suspect' for c in rows)} "
               "suspect(s); --format json shows both versions whole")


# --------------------------------------------------------------------------- cycles


def _progress_bar(enabled: bool):
    # lazy: rich: loaded when this command runs, not at every `icdsl` start
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,.0f} records"),
                    TimeElapsedColumn(), transient=True, disable=not enabled)


@cycle_app.command("run")
def cycle_run(
    args: list[str] = typer.Argument(..., metavar="[PARTNER]... PERIOD",
                                     help="Partner codes ('all': every partner) and the period: 2026-03 (month), "
                                     "2026-W10, 2026-Q1, 2026-03-01..2026-03-15, or a day."),
    every: bool = typer.Option(False, "--all", help="Every partner of the rules, each in its own cycles ending in "
                               "PERIOD (a weekly partner's weeks, a quarterly partner's quarter)."),
    workers: int | None = typer.Option(None, "--workers", help="Run the cycles as tasks of a local Dask cluster "
                                       "of N worker processes."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Run the cycles as tasks of a running Dask "
                                         "cluster: tcp://HOST:PORT (docs/fleet.md)."),
    rules: list[Path] = typer.Option([], "--rules", help=RULES_HELP),
    rerate: bool = typer.Option(False, "--rerate", help="Rate an invoiced (not finalized) cycle again."),
    by: str | None = typer.Option(None, "--by", help="Line dimensions, comma-separated, among destination, band, "
                                  "prefix, rate, rule (default destination,band)."),
    accept: list[str] = typer.Option([], "--accept", help="Accept validation errors of this code (repeat; 'all')."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
    root: Path | None = typer.Option(None, help="Project folder that rule files may read from."),
) -> None:
    """Run billing cycles: rate, validate, draft the invoices (one transaction per cycle).

    One partner: its cycle of PERIOD. Several partners, 'all' or --all: each partner's cycles
    (a summary table at the end); exit 1 if any cycle stopped on a finding, was refused or failed."""
    partners, period = args[:-1], args[-1]
    if every or partners == ["all"]:
        if partners and partners != ["all"]:
            echo_err("error: give either --all or partner codes, not both")
            raise typer.Exit(2)
        partners = []
        every = True
    elif not partners:
        echo_err("error: give the partners and the period (`icdsl cycle run ORFR 2026-03`), or --all PERIOD")
        raise typer.Exit(2)
    _check_cluster_options(workers, scheduler)
    plan, program = _plan(rules, root)
    dims = [d for d in by.split(",")] if by else None
    # lazy: the fleet brings the store (numpy, pyarrow, sqlalchemy): loaded when the command runs
    from icdsl.billing.fleet import ClusterError, dask_client, plan_cycles, run_fleet

    with opened(db, data) as store:
        _load_quietly(store, plan, program)
        cycles = plan_cycles(store, plan, period, None if every else partners)
        distributed = workers is not None or scheduler is not None
        if not every and len(cycles) == 1 and not distributed:  # one partner: its report, as always
            c = cycles[0]
            if c.period is None:
                echo_err(f"error: {c.note}")
                raise typer.Exit(1)
            with _progress_bar(True) as bar:
                task = bar.add_task(f"{c.partner} rating", total=None)

                def progress(stage: str, done: int, total: int) -> None:
                    bar.update(task, description=f"{c.partner} {stage}", completed=done or 0, total=total or None)

                rep = store.run_cycle(c.partner, c.period, plan, rerate=rerate, dims=dims, accept=accept,
                                      progress=progress)
            typer.echo(str(rep))
            raise typer.Exit(1 if rep.blocked else 0)
        with _fleet_bar(cycles) as listener:
            if distributed:
                try:
                    with dask_client(workers=workers, scheduler=scheduler) as client:
                        outcomes = run_fleet(store, plan, cycles, client=client, rerate=rerate, dims=dims,
                                             accept=accept, listener=listener)
                except ClusterError as e:
                    echo_err(f"error: {e}")
                    raise typer.Exit(1) from None
            else:
                outcomes = run_fleet(store, plan, cycles, rerate=rerate, dims=dims, accept=accept, listener=listener)
        _fleet_summary(outcomes)
    raise typer.Exit(1 if any(o.failed for o in outcomes) else 0)


@contextlib.contextmanager
def _fleet_bar(cycles: list[Any]) -> Iterator[Any]:
    """Two bars, over partners' cycles and over records, fed by the fleet's listener."""
    # lazy: rich: loaded when this command runs, not at every `icdsl` start
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    # lazy: the fleet brings the store (numpy, pyarrow, sqlalchemy): loaded when the command runs
    from icdsl.billing.fleet import Listener

    runnable = [c for c in cycles if c.period is not None]
    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
                   TimeElapsedColumn(), transient=True, console=Console(stderr=True))
    t_cycles = bar.add_task("cycles", total=len(runnable))
    t_records = bar.add_task("records", total=sum(c.expected for c in runnable) or None)

    class Bars(Listener):
        def __init__(self) -> None:
            self.base = 0  # records of the cycles finished
            self.current: dict[str, int] = {}

        def _records(self) -> None:
            bar.update(t_records, completed=self.base + sum(self.current.values()))

        def started(self, planned: Any) -> None:
            bar.update(t_cycles, description=f"cycles ({planned.partner} {planned.label})")

        def rated(self, planned: Any, done: int) -> None:
            self.current[f"{planned.partner} {planned.label}"] = done
            self._records()

        def finished(self, outcome: Any) -> None:
            if outcome.planned.period is None:
                return
            self.current.pop(f"{outcome.planned.partner} {outcome.planned.label}", None)
            self.base += outcome.report.records_in + outcome.report.events + outcome.report.refunds \
                if outcome.report is not None else outcome.planned.expected
            bar.advance(t_cycles)
            self._records()

    with bar:
        yield Bars()


def _fleet_summary(outcomes: list[Any]) -> None:
    """The table of a run of several cycles, then the messages of those that need attention."""
    # lazy: rich: loaded when this command runs, not at every `icdsl` start
    from rich import box
    from rich.table import Table

    # lazy: the store's package brings sqlalchemy: loaded when this command runs
    from icdsl.billing.amounts import present

    console = table_console()
    narrow = console.width < 110  # an 80-column terminal: no frame, counts without `rated` (records - rejected)
    cols = ("partner", "period", "records", "rejected", "amounts", "findings", "state") if narrow else (
        "partner", "period", "records", "rated", "rejected", "amounts", "findings", "state")
    table = Table(title="billing cycles run", show_lines=False, **({"box": box.SIMPLE_HEAD, "padding": (0, 0),
                                                                       "pad_edge": False} if narrow else {}))
    for col in cols:
        # codes and counts keep their width; the other cells wrap between words
        table.add_column(col, justify="right" if col in ("records", "rated", "rejected") else "left",
                         no_wrap=col in ("partner", "period", "records", "rated", "rejected"), overflow="fold",
                         min_width=16 if col == "amounts" else None)  # an amount and its currency on one line
    for o in outcomes:
        r = o.report
        if r is None:
            table.add_row(o.planned.partner, o.planned.label, *["-"] * (len(cols) - 3), o.state)
            continue
        amounts = ", ".join(f"{present(v, k)} {k}" for k, v in sorted(r.totals.items())) or "-"
        errors = sum(1 for f in r.findings if f.severity == "error" and not f.accepted)
        warnings = sum(1 for f in r.findings if f.severity == "warning")
        findings = ", ".join(x for x in (f"{errors} error(s)" if errors else "",
                                         f"{warnings} warning(s)" if warnings else "") if x) or "-"
        state = {"already": f"already {r.status}", "stopped": "stopped (rated)"}.get(o.state, o.state)
        values = {"partner": o.planned.partner, "period": o.planned.label, "records": f"{r.records_in:,}",
                  "rated": f"{r.rated:,}", "rejected": f"{r.rejected:,}", "amounts": amounts, "findings": findings,
                  "state": state}
        table.add_row(*(values[c] for c in cols))
    console.print(table)
    for o in outcomes:
        if o.state == "stopped" and o.report is not None:
            codes = ", ".join(sorted({f.code for f in o.report.findings if f.blocking}))
            console.print(f"{o.planned.partner} {o.planned.label}: invoicing stopped on {codes}: fix the cause and "
                          "run the cycle again, or accept the finding (--accept CODE); `icdsl cycle status "
                          f"{o.planned.partner}` shows them", highlight=False, markup=False)
        elif o.message and o.state != "already":
            where = o.planned.partner + (f" {o.planned.label}" if o.planned.period is not None else "")
            console.print(f"{where}: {o.state}: {o.message}", highlight=False, markup=False)
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.state] = counts.get(o.state, 0) + 1
    console.print(", ".join(f"{n} {k}" for k, n in sorted(counts.items())), highlight=False, markup=False)


@cycle_app.command("status")
def cycle_status(
    partner: str | None = typer.Argument(None, help="Only this partner's cycles."),
    events: bool = typer.Option(False, "--events", help="Show each cycle's event log."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """The cycles: state, counts, totals, invoices, validation findings (and events)."""
    # lazy: rich: loaded when this command runs, not at every `icdsl` start
    from rich.table import Table

    # lazy: the store's package brings sqlalchemy: loaded when this command runs
    from icdsl.billing.amounts import present

    with opened(db, data) as store:
        cycles = store.cycles(partner)
        if partner is not None and not cycles and store.partner(partner) is None:
            echo_err(f"error: partner {partner} is not in the store")
            raise typer.Exit(1)
        console = table_console()
        table = Table(title="billing cycles", show_lines=False)
        for col in ("partner", "period", "status", "records", "rated", "rejected", "rated totals", "findings",
                    "documents"):
            table.add_column(col, justify="right" if col in ("records", "rated", "rejected") else "left", overflow="fold")
        details = []
        for c in cycles:
            findings = store.findings(c.id)
            counts = {sev: sum(1 for f in findings if f.severity == sev and not f.accepted) for sev in
                      ("error", "warning")}
            accepted = sum(1 for f in findings if f.accepted)
            ftext = ", ".join(f"{n} {k}(s)" for k, n in counts.items() if n) + (f", {accepted} accepted" if accepted
                                                                               else "")
            docs = [i.number or f"draft #{i.id} {present(i.total, i.currency)} {i.currency}"
                    for i in store.invoices(c.id)]
            docs += [st.number or f"statement #{st.id}" for st in store.statements(c.id)]
            docs += [f"{sh.number or f'shr:{sh.id}'} ({sh.party})" for sh in store.share_statements(c.id)]
            totals = ", ".join(f"{Decimal(v).normalize():f} {k}" for k, v in sorted((c.totals or {}).items())
                               if not k.startswith("_"))
            table.add_row(c.partner_code, c.label, c.status, f"{c.records_in or 0:,}", f"{c.rated_count or 0:,}",
                          f"{c.rejected_count or 0:,}", totals, ftext.strip(", ") or "-", "\n".join(docs) or "-")
            if findings or events:
                details.append((c, findings))
        console.print(table)
        late = store.late_records(partner)
        if late:
            console.print("\n[bold]late records[/bold] (records of finalized cycles that arrived afterwards)",
                          highlight=False)
            for lr in late:
                console.print(f"  {lr}", highlight=False, markup=False)
        review = store.conflict_summary(partner)
        if review:
            console.print("\n[bold]intake conflicts[/bold] (records that arrived again; 'icdsl conflicts' shows both "
                          "versions)", highlight=False)
            for code, kind, n in review:
                what = ("conflicting duplicate(s): rejected, the earlier versions billed" if kind == "conflict"
                        else "suspected duplicate(s) under new ids: billed")
                console.print(f"  {code}: {n} {what} (icdsl conflicts --partner {code} --kind {kind})",
                              highlight=False, markup=False, soft_wrap=True)
        for c, findings in details:
            console.print(f"\n[bold]{c.partner_code} {c.label}[/bold] ({c.status}, attempt {c.attempts})",
                          highlight=False)
            for f in findings:
                sev = "error (accepted)" if f.accepted else f.severity
                samples = f" (e.g. {', '.join(map(str, f.samples))})" if f.samples else ""
                console.print(f"  {sev}[{f.code}]: {f.message}{samples}", highlight=False, markup=False)
            if events:
                for e in store.cycle_events(c.id):
                    move = f"{e.from_state or ''} -> {e.to_state}" if e.to_state else ""
                    console.print(f"  {e.at:%Y-%m-%d %H:%M:%S}Z {e.kind:<8} {move:<22} {e.message}", highlight=False,
                                  markup=False)


@cycle_app.command("finalize")
def cycle_finalize(
    partner: str = typer.Argument(..., help="Partner code."),
    period: str = typer.Argument(..., help="The cycle's period (as given to `cycle run`)."),
    issue_date: str | None = typer.Option(None, "--issue-date", help="Date of the invoices (default: the "
                                          "period's last day)."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """Number the cycle's invoices and make them immutable."""
    # lazy: the store: loaded when this command runs, not at every `icdsl` start
    from icdsl.billing.periods import PeriodError

    with opened(db, data) as store, user_errors():
        day = None
        if issue_date:
            try:
                day = date.fromisoformat(issue_date)
            except ValueError:
                raise PeriodError(f"--issue-date '{issue_date}' is not a date (YYYY-MM-DD)") from None
        typer.echo(str(store.finalize_cycle(partner, period, issue_date=day)))


@cycle_app.command("progressive")
def cycle_progressive(
    partner: str = typer.Argument(..., help="Partner code."),
    period: str = typer.Argument(..., help="The period in progress (as given to `cycle run`: 2026-03)."),
    until: str = typer.Option(..., "--until", help="The last local day of the usage to bill (YYYY-MM-DD): the "
                              "records ingested so far that start up to the end of that day."),
    issue_date: str | None = typer.Option(None, "--issue-date", help="Date of the interim invoice (default: "
                                          "--until)."),
    rules: list[Path] = typer.Option([], "--rules", help=RULES_HELP),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
    root: Path | None = typer.Option(None, help="Project folder that rule files may read from."),
) -> None:
    """Progressive billing: raise an interim invoice (numbered, finalized, sealed) if the usage of
    the period so far passed a threshold of the agreement's `progressive billing at ...`; the
    period's final invoice deducts it (docs/language.md#progressive-billing)."""
    # lazy: the store: loaded when this command runs, not at every `icdsl` start
    from icdsl.billing.periods import PeriodError

    plan, program = _plan(rules, root)
    with opened(db, data) as store, user_errors():
        days = []
        for what, text in (("--until", until), ("--issue-date", issue_date)):
            try:
                days.append(date.fromisoformat(text) if text else None)
            except ValueError:
                raise PeriodError(f"{what} '{text}' is not a date (YYYY-MM-DD)") from None
        _load_quietly(store, plan, program)
        typer.echo(str(store.progressive(partner, period, plan, days[0], issue_date=days[1])))


# --------------------------------------------------------------------------- corrections, trace


@app.command("rerate")
def rerate_cmd(
    partner: str = typer.Option(..., "--partner", help="Partner code."),
    first: str = typer.Option(..., "--from", help="First local day (YYYY-MM-DD), included."),
    last: str = typer.Option(..., "--to", help="Last local day (YYYY-MM-DD), included."),
    destination: str | None = typer.Option(None, "--destination", help="Only called numbers starting with this "
                                           "prefix (e.g. 336)."),
    rules: list[Path] = typer.Option([], "--rules", help=RULES_HELP),
    accept: list[str] = typer.Option([], "--accept", help="Accept validation errors of this code when a cycle is "
                                     "run again (repeat; 'all')."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
    root: Path | None = typer.Option(None, help="Project folder that rule files may read from."),
) -> None:
    """Rate records again with the current rules: open cycles are rerun; finalized ones get
    adjustment lines (credit or debit) on the partner's next cycle."""
    plan, program = _plan(rules, root)
    with opened(db, data) as store:
        _load_quietly(store, plan, program, retroactive=True)  # a change over finalized days: corrected here
        typer.echo(str(store.rerate(partner, first, last, plan, destination=destination, accept=accept)))


@app.command("trace")
def trace_cmd(
    line: str = typer.Argument(..., help="Invoice line id (`icdsl invoice show NUMBER` lists them), or charge:ID "
                               "for any charge line (`icdsl invoice show` of a statement lists them)."),
    records: int = typer.Option(10, "--records", help="Show the first N records behind the line."),
    explain: str | None = typer.Option(None, "--explain", help="Rate this record of the line again, explained "
                                       "step by step (needs --rules)."),
    rules: list[Path] = typer.Option([], "--rules", help=RULES_HELP + " For --explain."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
    root: Path | None = typer.Option(None, help="Project folder that rule files may read from."),
) -> None:
    """The audit trail of an invoice line: invoice, agreement version, rule source, records."""
    # lazy: this command needs numpy, pyarrow, sqlalchemy: loaded when it runs, not at every `icdsl` start
    from icdsl.billing.trace import explain_record

    if records < 0:
        echo_err("error: --records must be 0 or more")
        raise typer.Exit(2)
    if explain is not None and not rules:
        echo_err("error: --explain needs the rules to rate with (--rules)")
        raise typer.Exit(2)
    text = line.strip().lower()
    if text.startswith("charge:") and text[7:].isdigit():
        # lazy: this command needs numpy, pyarrow, sqlalchemy: loaded when it runs, not at every `icdsl` start
        from icdsl.billing.trace import trace_charge

        with opened(db, data) as store:
            for out in trace_charge(store, int(text[7:]), limit=records):
                typer.echo(out)
        return
    if not text.isdigit():
        echo_err(f"error: '{line}' is not a line id: give an invoice line id (a number) or charge:ID")
        raise typer.Exit(2)
    plan = _plan(rules, root)[0] if explain is not None else None
    with opened(db, data) as store:
        tr = store.trace(int(text))
        for text in tr.lines(records):
            typer.echo(text)
        if explain is not None:
            typer.echo("")
            for text in explain_record(store, tr, explain, plan).lines():
                typer.echo(text)


# --------------------------------------------------------------------------- invoices


@invoice_app.command("list")
def invoice_list(
    partner: str | None = typer.Option(None, "--partner", help="Only this partner's documents."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """Every invoice and settlement statement: number, partner, period, status, amounts."""
    # lazy: rich: loaded when this command runs, not at every `icdsl` start
    from rich.table import Table

    # lazy: the store's package brings sqlalchemy: loaded when this command runs
    from icdsl.billing.amounts import present

    with opened(db, data) as store:
        cycles = {c.id: c for c in store.cycles()}
        table = Table(title="documents")
        for col in ("id", "number", "partner", "period", "stream", "status", "subtotal", "tax", "total", "currency"):
            table.add_column(col, justify="right" if col in ("subtotal", "tax", "total", "id") else "left", overflow="fold")
        for inv in store.invoices():
            if partner and inv.partner_code != partner:
                continue
            c = cycles.get(inv.cycle_id)
            label = c.label if c else (f"{inv.interim_period} (interim)" if inv.interim_period else "")
            table.add_row(str(inv.id), inv.number or "(draft)", inv.partner_code, label, inv.stream,
                          inv.status, str(present(inv.subtotal, inv.currency)),
                          str(present(inv.tax_amount, inv.currency)), str(present(inv.total, inv.currency)),
                          inv.currency)
        for st in store.statements():
            c = cycles.get(st.cycle_id)
            if partner and (c is None or c.partner_code != partner):
                continue
            table.add_row(f"stm:{st.id}", st.number or "(draft)", c.partner_code if c else "", c.label if c else "",
                          "netting", st.status, f"net {present(st.net, st.currency)}", "", "", st.currency)
        for sh in store.share_statements():
            c = cycles.get(sh.cycle_id)
            if partner and (c is None or (c.partner_code != partner and sh.party != partner)):
                continue
            table.add_row(f"shr:{sh.id}", sh.number or "(draft)", c.partner_code if c else "", c.label if c else "",
                          f"share: {sh.party}", sh.status, "", "", str(present(sh.total, sh.currency)), sh.currency)
        table_console().print(table)


@invoice_app.command("show")
def invoice_show(
    ref: str = typer.Argument(..., help="Invoice or statement number (INV-2026-000001), or an invoice id."),
    view: str = typer.Option("itemized", "--view", help="itemized (per destination and band) or summary."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """Show an invoice or statement: header, lines (with their ids for `icdsl trace`), totals."""
    # lazy: rich: loaded when this command runs, not at every `icdsl` start
    from rich.table import Table

    # lazy: the outputs bring lxml: loaded when this command runs
    from icdsl.outputs import VIEWS, view_lines
    from icdsl.outputs.pdf import quantity_text

    if view not in VIEWS:
        echo_err(f"error: --view must be {' or '.join(VIEWS)}")
        raise typer.Exit(2)
    with opened(db, data) as store:
        doc = store.document(ref)
    console = table_console()
    title = {"invoice": "Invoice", "credit_note": "Credit note", "debit_note": "Debit note",
             "statement": "Settlement statement",
             "share_statement": "Revenue-share statement"}[doc["kind"]]
    who = f"{doc['partner_name']} ({doc['partner_code']})"
    if doc["kind"] == "share_statement":
        who = f"party {doc['party_name']} ({doc['party']}), revenue of {doc['partner_code']}"
    console.print(f"[bold]{title} {doc.get('number') or '(draft #' + str(doc['id']) + ')'}[/bold]  {who}",
                  highlight=False)
    console.print(f"period {doc.get('period')} ({doc.get('period_start')} to {doc.get('period_end')}), "
                  f"stream {doc.get('stream')}, issued {doc.get('issue_date') or '-'}, due {doc.get('due_date') or '-'}, "
                  f"{doc['currency']}, {doc['status']}", highlight=False)
    table = Table(show_lines=False)
    itemized = view == "itemized"
    cols = (["line id", "#", "description", "quantity", "rate", "amount"] if itemized
            else ["description", "lines", "records", "quantity", "amount"])
    for c in cols:
        table.add_column(c, justify="left" if c == "description" else "right", overflow="fold")
    for ln in view_lines(doc, view):
        q = quantity_text(ln.get("quantity"), ln.get("unit"))
        if itemized:
            rate = ln.get("rate")
            ccy = ln.get("source_currency") if ln.get("source_currency") not in (None, doc["currency"]) else ""
            table.add_row(str(ln.get("line_id") or (f"charge:{ln['charge_line_id']}" if ln.get("charge_line_id")
                                                    else "")), str(ln.get("line_no")), ln["description"], q,
                          f"{rate} {ccy}/{ln.get('rate_unit')}".replace("  ", " ") if rate is not None else "",
                          str(ln["amount"]))
        else:
            table.add_row(ln["description"], str(ln["lines"]), f"{ln['record_count']:,}", q, str(ln["amount"]))
    console.print(table)
    if doc["kind"] == "statement":
        for item in doc.get("receivable_items", []):
            console.print(f"  receivable: {item['stream']}: {item['description']} {item['amount']}", highlight=False,
                          markup=False)
        for item in doc.get("payable_items", []):
            console.print(f"  payable: {item['description']} {item['amount']}", highlight=False, markup=False)
        payer = {"partner": "the partner pays us", "us": "we pay the partner", "none": "nothing to pay"}[doc["payer"]]
        console.print(f"receivable {doc['receivable']}  payable {doc['payable']}  net {doc['net']} {doc['currency']} "
                      f"({payer}; net = receivable - payable exactly)", highlight=False)
        # partners' invoices and disputes of the period: computed now, apart from the sealed totals
        for pos in ([doc["dispute_position"]] if doc.get("dispute_position") else []) + doc.get(
                "dispute_positions_other", []):
            _print_position(console, pos)
    elif doc["kind"] == "share_statement":
        for sp in doc.get("splits", []):
            parts = " + ".join(f"{k} {v}" for k, v in sp["parties"].items())
            net = f": {sp['gross']} gross less {sp['deducted']} ({sp.get('deductions', 0)} refund(s) and credit(s))" \
                if sp.get("basis") == "net" and sp.get("gross") is not None else ""
            console.print(f"  split {sp['charge']} ({sp['agreement']}, {sp.get('basis')}{net}"
                          + (f", {sp['tier']}" if sp.get("tier") else "")
                          + f"): amount split {sp['amount_split']} = {parts}"
                          + (" (adds up exactly)" if sp.get("adds_up") else " (DOES NOT ADD UP)"),
                          highlight=False, markup=False)
        console.print(f"[bold]total {doc['total']} {doc['currency']}[/bold]", highlight=False)
    else:
        console.print(f"subtotal {doc['subtotal']}  {doc['tax_label']} {doc['tax_amount']}  "
                      f"[bold]total {doc['total']} {doc['currency']}[/bold]", highlight=False)
        if doc.get("tax_note"):
            console.print(doc["tax_note"], highlight=False)
    for a in doc.get("agreements", []):
        console.print(f"agreement \"{a['name']}\" v{a['version']} sha256 {a['hash'][:16]}...", highlight=False,
                      markup=False)
    for fx in doc.get("fx", []):
        console.print(f"FX {fx['from']}->{fx['to']} {fx['rate']} ({fx['source']} {fx['listed']} from "
                      f"{fx['effective_from']})", highlight=False, markup=False)


def _print_position(console: Any, pos: dict[str, Any]) -> None:
    """A statement's dispute position (billing.disputes), a section apart from its sealed totals."""
    # lazy: lxml (outputs): loaded when this command runs, not at every `icdsl` start
    from icdsl.outputs.views import POSITION_TITLE, position_rows

    console.print(f"[bold]{POSITION_TITLE}, {pos['currency']}[/bold]", highlight=False)
    for _key, label, amount in position_rows(pos):
        console.print(f"  {label.lower()} {amount} {pos['currency']}", highlight=False, markup=False)
    held = [d["number"] for d in pos.get("disputes", []) if d.get("held")]
    if held:
        console.print(f"  held by {', '.join(held)}", highlight=False, markup=False)


@invoice_app.command("export")
def invoice_export(
    ref: str | None = typer.Argument(None, help="Invoice or statement number (or give --cycle)."),
    cycle: tuple[str, str] | None = typer.Option(None, "--cycle", help="PARTNER PERIOD: every document of a cycle."),
    formats: list[str] = typer.Option(["pdf"], "--format", help="csv, json, pdf, ubl or facturx (repeat for several), or a "
                                      "format of an exporter plugin."),
    out: Path = typer.Option(..., "--out", help="Folder to write the files into."),
    view: str = typer.Option("itemized", "--view", help="itemized or summary."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """Write invoices and statements as CSV, JSON or PDF files."""
    # lazy: lxml (outputs): loaded when this command runs, not at every `icdsl` start
    from icdsl.exporters import export
    from icdsl.outputs import FORMATS, VIEWS, write

    if (ref is None) == (cycle is None):
        echo_err("error: give a document number, or --cycle PARTNER PERIOD")
        raise typer.Exit(2)
    if view not in VIEWS:
        echo_err(f"error: --view must be {' or '.join(VIEWS)}")
        raise typer.Exit(2)
    with opened(db, data) as store, user_errors():
        if ref is not None:
            docs = [store.document(ref)]
        else:
            cyc = store.cycle(cycle[0], cycle[1])
            if cyc is None:
                echo_err(f"error: there is no cycle {cycle[0]} {cycle[1]}")
                raise typer.Exit(1)
            docs = store.cycle_documents(cyc.id)
            if not docs:
                echo_err(f"error: cycle {cycle[0]} {cyc.label} has no documents ({cyc.status})")
                raise typer.Exit(1)
    written = []
    for fmt in formats:
        if fmt in FORMATS:
            try:
                written += write(docs, out, fmt, view=view)
            except ValueError as e:  # an e-invoice refused (a statement, a draft, no company): why
                echo_err(f"error: {e}")
                raise typer.Exit(1) from None
            continue
        try:  # a format of an exporter plugin (icdsl_exporters)
            written += export(fmt, docs, out)
        except ValueError as e:
            echo_err(f"error: {e}")
            raise typer.Exit(2) from None
    for p in written:
        typer.echo(str(p))


@app.command("verify")
def verify_cmd(
    head: str | None = typer.Option(None, "--head", help="A chain head recorded earlier (the hash `icdsl verify` "
                                    "printed): the chain must still lead to it."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """Check every finalized document against its seal, and the chain of seals: exit 1 if one fails."""

    with opened(db, data) as store:
        result = store.verify(head=head)
    for line in result.lines():
        typer.echo(line)
    if not result.ok:
        raise typer.Exit(1)


# --------------------------------------------------------------------------- demo


@app.command("demo")
def demo_cmd(
    directory: Path | None = typer.Option(None, "--dir", help="Folder for the database, traffic and invoices "
                                          "(default: a new temporary folder). Rerunning in the same folder "
                                          "resumes: nothing is billed twice."),
    records: int = typer.Option(300_000, "--records", help="Records of synthetic traffic to generate."),
    seed: int = typer.Option(2026, "--seed", help="Seed of the traffic generator (same seed, same invoices)."),
    db: str | None = typer.Option(None, "--db", help="Database URL (default: SQLite in the folder)."),
) -> None:
    """Bill a month of synthetic traffic for the example partners, end to end: load the example
    agreements, generate and ingest traffic, rate, validate, invoice, finalize, write the invoices."""
    # lazy: this command needs numpy, pyarrow: loaded when it runs, not at every `icdsl` start
    from icdsl.demo import run_demo

    if records < 1_000:
        echo_err("error: --records must be at least 1000")
        raise typer.Exit(2)
    with user_errors():
        raise typer.Exit(run_demo(directory, records=records, seed=seed, db=db))


# --------------------------------------------------------------------------- inventory

inventory_app = typer.Typer(help="Inventory: ports, trunks, reservations... per partner (import, list).",
                            no_args_is_help=True)
app.add_typer(inventory_app, name="inventory")


@inventory_app.command("import")
def inventory_import(
    file: Path = typer.Argument(..., help="Inventory CSV: partner,item_id,kind,quantity,activated[,terminated,"
                                "description,...]."),
    strict: bool = typer.Option(False, "--strict", help="Import nothing if a row is bad."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """Import inventory items: new items are added, changed ones get a new version (the old one
    is kept), unchanged ones add nothing. Bad rows are listed with their line and reason."""
    # lazy: this command needs sqlalchemy: loaded when it runs, not at every `icdsl` start
    from icdsl.billing.inventory import import_inventory

    if not file.is_file():
        echo_err(f"error: {file}: no such file")
        raise typer.Exit(2)
    with opened(db, data) as store:
        rep = import_inventory(store, file, strict=strict)
    typer.echo(str(rep))
    raise typer.Exit(1 if rep.read.problems else 0)


@inventory_app.command("list")
def inventory_list(
    partner: str | None = typer.Option(None, "--partner", help="Only this partner's items."),
    history: bool = typer.Option(False, "--history", help="Also the versions that were superseded."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
) -> None:
    """The inventory: each item's kind, quantity, activation and termination, version."""
    # lazy: rich: loaded when this command runs, not at every `icdsl` start
    from rich.table import Table

    # lazy: this command needs sqlalchemy: loaded when it runs, not at every `icdsl` start
    from sqlalchemy import select

    # lazy: this command needs sqlalchemy: loaded when it runs, not at every `icdsl` start
    from icdsl.billing import models as M
    from icdsl.billing.amounts import plain_number

    # lazy: this command needs sqlalchemy: loaded when it runs, not at every `icdsl` start
    from icdsl.billing.inventory import inventory_rows

    with opened(db, data) as store, store.reading() as s:
        codes = {p.id: p.code for p in s.scalars(select(M.Partner))}
        if partner is not None and partner not in codes.values():
            echo_err(f"error: partner {partner} is not in the store")
            raise typer.Exit(1)
        rows = inventory_rows(s, partner, history=history)
    table = Table(title="inventory" + (" (with history)" if history else ""))
    for col in ("partner", "item", "kind", "quantity", "activated", "terminated", "version", "description"):
        table.add_column(col, justify="right" if col in ("quantity", "version") else "left", overflow="fold")
    for r in rows:
        table.add_row(codes.get(r.partner_id, "?"), r.reference, r.kind, str(plain_number(r.quantity)),
                      str(r.activation_date), str(r.termination_date or "-"),
                      f"v{r.version}" + (" (superseded)" if r.superseded_by_id else ""),
                      str((r.attributes or {}).get("description", "")))
    table_console().print(table)
    if not rows:
        typer.echo("no inventory items" + (f" for {partner}" if partner else "") + ": `icdsl inventory import FILE`")


# --------------------------------------------------------------------------- commitments


@app.command("commitments")
def commitments_cmd(
    partner: str = typer.Argument(..., help="Partner code."),
    rules: list[Path] = typer.Option([], "--rules", help=RULES_HELP),
    as_of: str | None = typer.Option(None, "--as-of", help="Day to measure through (YYYY-MM-DD, included; default: "
                                     "the last day with ingested records of the partner)."),
    db: str | None = _db_option(),
    data: Path | None = _data_option(),
    root: Path | None = typer.Option(None, help="Project folder that rule files may read from."),
) -> None:
    """Progress towards the partner's commitments, mid-cycle: the ingested records of the
    period so far are rated (nothing is stored) and compared with what is committed."""
    # lazy: the store: loaded when this command runs, not at every `icdsl` start
    # lazy: this command needs sqlalchemy: loaded when it runs, not at every `icdsl` start
    from icdsl.billing.commitments import commitment_progress
    from icdsl.billing.periods import PeriodError

    plan, program = _plan(rules, root)
    with opened(db, data) as store, user_errors():
        _load_quietly(store, plan, program)
        day = None
        if as_of:
            try:
                day = date.fromisoformat(as_of)
            except ValueError:
                raise PeriodError(f"--as-of '{as_of}' is not a date (YYYY-MM-DD)") from None
        rows = commitment_progress(store, partner, plan, day)
    if not rows:
        typer.echo(f"{partner} has no commitment in force")
        return
    for r in rows:
        typer.echo(str(r))
