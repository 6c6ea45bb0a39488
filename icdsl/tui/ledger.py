"""The billing cycles of a real store, headless: what the dashboard shows with ``icdsl tui
--db URL`` (finalized and draft documents, revenue and cost over months, validation findings).

:func:`open_ledger_store` opens an *existing* store read-only in spirit: it never creates one
(a SQLite file that does not exist is refused) and never upgrades its schema (the terminal is
not the place to migrate a production database: ``icdsl`` commands do that).
:func:`read_ledger` reads the cycles of the last ``months`` months (every partner, or some):
each cycle's documents (``Store.cycle_documents``, seals checked as everywhere) and the findings
of its latest validation. The result has the shape :mod:`icdsl.tui.revenue` adds up (``runs``
with ``partner`` and ``documents``) and that the dashboard's findings panel lists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icdsl.billing.errors import StoreError
from icdsl.billing.store import Store, open_store

DEFAULT_MONTHS = 12
Progress = Callable[[str, int, int], None]


@dataclass
class CycleDocuments:
    """One billing cycle of the store: its partner, period, state, documents and findings."""

    partner: str
    cycle_id: int
    period: str  # the cycle's label (2026-03)
    month: str  # the month of its first day (2026-03)
    status: str  # open | rated | validated | invoiced | finalized
    documents: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Any] = field(default_factory=list)  # ValidationFinding rows of the latest run
    error: str | None = None  # a cycle that could not be read (a seal that fails): shown, not hidden
    report: Any = None  # (a simulation's runs have a report; a store's cycles do not)


@dataclass
class Ledger:
    """The cycles read from a store (newest month last)."""

    url: str
    runs: list[CycleDocuments]
    months: tuple[str, ...] = ()  # the months read, oldest first
    partners: tuple[str, ...] = ()

    def findings(self) -> list[tuple[str, Any]]:
        """(partner, finding) of every cycle's latest validation, errors first, then newest."""
        order = {"error": 0, "warning": 1, "info": 2}
        out = [(r.partner, r.period, f) for r in self.runs for f in r.findings]
        out.sort(key=lambda pf: (order.get(pf[2].severity, 3), _neg(pf[1]), pf[0], pf[2].code))
        return [(f"{p} {period}", f) for p, period, f in out]

    @property
    def drafts(self) -> int:
        return sum(1 for r in self.runs for d in r.documents if d.get("status") == "draft")

    @property
    def finalized(self) -> int:
        return sum(1 for r in self.runs for d in r.documents if d.get("status") == "finalized")

    def describe(self) -> str:
        span = f"{self.months[0]}..{self.months[-1]}" if len(self.months) > 1 else (self.months or ("no cycle",))[0]
        return (f"store {self.url} · {len(self.runs)} cycle(s) {span} · {self.finalized} finalized, "
                f"{self.drafts} draft doc(s)")


def _neg(period: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in period)


def store_url(where: str) -> str:
    """A database URL, or the path of an existing SQLite file (``icdsl.db``) as its URL."""
    if "://" in where:
        return where
    path = Path(where).expanduser()
    if not path.is_file():
        raise StoreError(f"no store at {where}: give the SQLite file of a store (icdsl.db) or a database URL "
                         "(sqlite:///FILE, postgresql://USER@HOST/DB)")
    return f"sqlite:///{path.resolve()}"


def open_ledger_store(where: str, data_dir: str | None = None) -> Store:
    """Open an existing store for the dashboard (no creation, no schema upgrade)."""
    url = store_url(where)
    sqlite_file = url.startswith("sqlite:///") and not url.endswith(":memory:")
    if sqlite_file and not Path(url.removeprefix("sqlite:///")).is_file():
        raise StoreError(f"no store at {url}: the terminal reads an existing store, it never creates one")
    return open_store(url, data_dir=data_dir, upgrade=False)


def read_ledger(store: Store, *, partners: Iterable[str] | None = None, months: int | None = DEFAULT_MONTHS,
                url: str = "", progress: Progress | None = None) -> Ledger:
    """The cycles of the last ``months`` months that have any (every month with ``None``)."""
    wanted = set(partners or ())
    cycles = [c for c in store.cycles() if not wanted or c.partner_code in wanted]
    all_months = sorted({f"{c.local_start:%Y-%m}" for c in cycles})
    keep = set(all_months[-months:] if months else all_months)
    cycles = [c for c in cycles if f"{c.local_start:%Y-%m}" in keep]
    cycles.sort(key=lambda c: (c.local_start, c.partner_code))
    runs: list[CycleDocuments] = []
    for i, c in enumerate(cycles):
        if progress is not None:
            progress(f"reading {c.partner_code} {c.label}", i, len(cycles))
        run = CycleDocuments(c.partner_code, c.id, c.label, f"{c.local_start:%Y-%m}", c.status)
        try:
            run.documents = store.cycle_documents(c.id)
            run.findings = store.findings(c.id)
        except StoreError as e:  # e.g. a finalized document whose seal fails: said, never shown as valid
            run.error = str(e)
            run.documents = []
        runs.append(run)
    return Ledger(url or _shown_url(store), runs, tuple(sorted(keep)),
                  tuple(sorted({c.partner_code for c in cycles})))


def _shown_url(store: Store) -> str:
    """The store as said on screen: a SQLite file's name, a server's database without password."""
    url = store.engine.url
    if url.get_backend_name() == "sqlite":
        return Path(url.database or "memory").name
    return url.render_as_string(hide_password=True)
