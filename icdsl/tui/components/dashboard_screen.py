"""Dashboard: revenue and cost of the store's finalized and draft cycles (``icdsl tui --db URL``)
or of the last simulation, by partner, charge type, service, agreement or month; one chart per
currency (amounts are never converted, so never drawn on one axis); the exact amounts, the
months, the validation findings, and (fed by :mod:`icdsl.tui.feeds`) the reconciliation
differences, the disputes still open and the revenue-assurance findings."""

from __future__ import annotations

from decimal import Decimal

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static, TabbedContent, TabPane
from textual_plotext import PlotextPlot

from icdsl.tui.bindings import bindings
from icdsl.tui.components.documents import amount, money
from icdsl.tui.components.nav_bar import NavBar
from icdsl.tui.feeds import call, dispute_row, finding_row, recon_row
from icdsl.tui.revenue import DIMENSIONS, STATES, breakdown, currencies, totals

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}
MAX_BARS = 8
PANELS = ("numbers", "months", "findings", "recon", "disputes", "assurance")
NO_SOURCE = ("Nothing to show yet: run a simulation in F5 (Simulate), or open a store: "
             "icdsl tui FOLDER --db URL.")
NOT_CONNECTED = {
    "recon": "Reconciliations are read from a store: icdsl tui FOLDER --db URL.",
    "disputes": "Disputes are read from a store: icdsl tui FOLDER --db URL.",
    "assurance": "Assurance findings are read from a store: icdsl tui FOLDER --db URL.",
}
NOT_WIRED = "This version of icdsl does not read {what} yet."
EMPTY = {
    "recon": "No reconciliation yet: import a partner's invoice (icdsl partner-invoice import FILE --partner P), "
             "then reconcile it (F10, or icdsl reconcile P PERIOD).",
    "disputes": "No open dispute.",
    "assurance": "No assurance finding (icdsl assure PERIOD found nothing to act on).",
}


def signed(value: Decimal, currency: str = "") -> Text:
    """An exact amount with its sign (``+1,446.75`` green, ``-3.10`` red), right-aligned."""
    text = f"{value:+,}" if value else money(value)
    return Text(text + (f" {currency}" if currency else ""), justify="right",
                style="green" if value > 0 else "red" if value < 0 else "dim")


class DashboardScreen(Screen):
    BINDINGS = bindings("dashboard")

    DEFAULT_CSS = """
    DashboardScreen {
        layout: vertical;
        #db-head { height: auto; max-height: 3; padding: 0 1; }
        #db-chart-box { height: 1fr; min-height: 7; }
        #db-tabs { height: 1fr; min-height: 8; }
        #db-tabs TabPane { padding: 0; }
        #db-tabs DataTable { height: 1fr; border: none; background: $surface; }
        .db-empty { padding: 0 1; color: $text-muted; height: auto; }
        .db-detail { padding: 0 1; height: auto; max-height: 3; background: $panel; }
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.dim = 0
        self.state = 0
        self.currency = 0
        self.use_store: bool | None = None  # None: the store when there is one
        self.feed_data: dict[str, tuple[list | None, str | None]] = {}
        self.shown_currency: str | None = None
        self.recon_shown: list = []  # the reconciliations of the Recon panel, in its order
        self.assurance_shown: list = []  # the assurance findings (FindingRow), in the panel's order

    def compose(self) -> ComposeResult:
        yield NavBar("dashboard")
        yield Static("", id="db-head")
        with Vertical(id="db-chart-box", classes="panel") as box:
            box.border_title = "Revenue and cost"
            yield PlotextPlot(id="db-chart")
        with TabbedContent(id="db-tabs", initial="db-p-numbers"):
            for name, title in (("numbers", "Amounts"), ("months", "Months"), ("findings", "Findings"),
                                ("recon", "Recon"), ("disputes", "Disputes"), ("assurance", "Assurance")):
                with TabPane(title, id=f"db-p-{name}"):
                    yield Static("", id=f"db-{name}-empty", classes="db-empty")
                    yield DataTable(id=f"db-{name}", cursor_type="row", zebra_stripes=True)
                    if name == "assurance":  # the selected finding in full: what, and what to do
                        yield Static("", id="db-assurance-detail", classes="db-detail")
        yield Footer()

    def on_mount(self) -> None:
        cols = {
            "numbers": ("", "ccy", "revenue", "cost", "net", "docs"),
            "months": ("month", "ccy", "revenue", "cost", "net", "final", "draft"),
            "findings": ("where", "severity", "code", "count", "message"),
            "recon": ("partner", "period", "ccy", "difference", "theirs", "ours", "lines ≠", "disputable", "invoice"),
            "disputes": ("number", "partner", "state", "ccy", "disputed", "accepted", "period", "invoice"),
            "assurance": ("severity", "code", "partner", "ccy", "at stake", "message", "what to do"),
        }
        for name, names in cols.items():
            self.query_one(f"#db-{name}", DataTable).add_columns(*names)
        self.watch(self.app, "simulation", self.refresh_data)
        self.watch(self.app, "ledger", self.refresh_data)
        self.watch(self.app, "ledger_state", self.refresh_data)
        self.load_feeds()

    def focus_main(self) -> None:
        self.query_one("#db-tabs", TabbedContent).active_pane.query_one(DataTable).focus()

    # ------------------------------------------------------------------ source
    @property
    def from_store(self) -> bool:
        if self.app.store is None:
            return False
        return self.use_store if self.use_store is not None else True

    def source(self):
        return self.app.ledger if self.from_store else self.app.simulation

    # ------------------------------------------------------------------ actions
    def action_group(self) -> None:
        self.dim = (self.dim + 1) % len(DIMENSIONS)
        self.refresh_data()

    def action_currency(self) -> None:
        self.currency += 1
        self.refresh_data()

    def action_state(self) -> None:
        self.state = (self.state + 1) % len(STATES)
        self.refresh_data()

    def action_source(self) -> None:
        if self.app.store is None:
            self.notify("No store: open one with icdsl tui FOLDER --db URL.", severity="warning")
            return
        self.use_store = not self.from_store
        self.refresh_data()

    def action_next_panel(self) -> None:
        tabs = self.query_one("#db-tabs", TabbedContent)
        i = PANELS.index(tabs.active.removeprefix("db-p-"))
        tabs.active = f"db-p-{PANELS[(i + 1) % len(PANELS)]}"

    def action_reload(self) -> None:
        if self.app.store is not None:
            self.app.load_ledger()
        self.load_feeds()

    # ------------------------------------------------------------------ feeds
    @work(thread=True, exclusive=True, group="dashboard-feeds", exit_on_error=False)
    def load_feeds(self) -> None:
        feeds = self.app.feeds
        data = {"recon": call(feeds.reconciliations), "disputes": call(feeds.disputes),
                "assurance": call(feeds.assurance)}
        self.app.call_from_thread(self._feeds_loaded, data)

    def _feeds_loaded(self, data: dict) -> None:
        self.feed_data = data
        self._show_feeds()

    def _empty(self, name: str, text: str) -> None:
        empty = self.query_one(f"#db-{name}-empty", Static)
        empty.update(text)
        empty.display = bool(text)

    def _show_feeds(self) -> None:
        for name, what in (("recon", "reconciliations"), ("disputes", "disputes"), ("assurance", "assurance findings")):
            table = self.query_one(f"#db-{name}", DataTable)
            table.clear()
            rows, error = self.feed_data.get(name, (None, None))
            if error:
                self._empty(name, f"Could not read the {what}: {error}")
                continue
            if rows is None:
                self._empty(name, NOT_CONNECTED[name] if self.app.store is None else NOT_WIRED.format(what=what))
                continue
            self._empty(name, "" if rows else EMPTY[name])
            getattr(self, f"_fill_{name}")(table, rows)
        self._tab_titles()

    def _fill_recon(self, table: DataTable, rows: list) -> None:
        pairs = sorted(((recon_row(r), r) for r in rows), key=lambda p: (-abs(p[0].difference), p[0].partner,
                                                                         p[0].period))
        self.recon_shown = [rec for _, rec in pairs]
        for r, _ in pairs:
            table.add_row(r.partner, r.period, r.currency, signed(r.difference), amount(r.their_total),
                          amount(r.our_total), Text(f"{r.differing}/{r.lines}", justify="right",
                                                    style="yellow" if r.differing else "dim"),
                          amount(r.disputable), r.invoice)

    def _fill_disputes(self, table: DataTable, rows: list) -> None:
        for d in (dispute_row(x) for x in rows):
            table.add_row(d.number, d.partner, d.state, d.currency, amount(d.amount),
                          amount(d.accepted) if d.accepted is not None else "", d.period, d.invoice)

    def _fill_assurance(self, table: DataTable, rows: list) -> None:
        order = {"error": 0, "warning": 1, "info": 2}
        self.assurance_shown = sorted((finding_row(x) for x in rows),
                                      key=lambda f: (order.get(f.severity, 3), f.code, f.partner))
        self._assurance_detail(0)
        for f in self.assurance_shown:
            table.add_row(Text(f.severity, style=SEVERITY_STYLE.get(f.severity, "")), f.code, f.partner, f.currency,
                          amount(f.amount) if f.amount is not None else "",
                          f.message + (f" ({f.subject})" if f.subject and f.subject not in f.message else ""),
                          f.action)

    def _tab_titles(self) -> None:
        tabs = self.query_one("#db-tabs", TabbedContent)
        recon, _ = self.feed_data.get("recon", (None, None))
        disputes, _ = self.feed_data.get("disputes", (None, None))
        assurance, _ = self.feed_data.get("assurance", (None, None))
        differing = sum(1 for r in recon or () if recon_row(r).differing)
        tabs.get_tab("db-p-recon").label = f"Recon {differing}≠" if recon else "Recon"
        tabs.get_tab("db-p-disputes").label = f"Disputes {len(disputes)}" if disputes else "Disputes"
        tabs.get_tab("db-p-assurance").label = f"Assurance {len(assurance)}" if assurance else "Assurance"

    # ------------------------------------------------------------------ the documents
    def refresh_data(self, *_: object) -> None:
        source = self.source()
        dim, state = DIMENSIONS[self.dim], STATES[self.state]
        head = self.query_one("#db-head", Static)
        chart = self.query_one(PlotextPlot)
        plt = chart.plt
        plt.clear_data()
        plt.clear_figure()
        for name in ("numbers", "months", "findings"):
            self.query_one(f"#db-{name}", DataTable).clear()
        box = self.query_one("#db-chart-box")
        if source is None:
            reading = self.app.ledger_state if self.from_store else ""
            head.update(Text(reading or NO_SOURCE, style="red" if reading.startswith("cannot") else ""))
            box.border_title = "Revenue and cost"
            box.border_subtitle = ""
            for name in ("numbers", "months", "findings"):
                self._empty(name, reading or NO_SOURCE)
            plt.title("")
            chart.refresh()
            return
        for name in ("numbers", "months", "findings"):
            self._empty(name, "")
        head.update(self._head(source, state))
        bars = breakdown(source, dim, state)
        ccys = currencies(bars)
        ccy = ccys[self.currency % len(ccys)] if ccys else None
        self.shown_currency = ccy
        shown = [b for b in bars if b.currency == ccy]
        if dim != "month":
            shown = shown[:MAX_BARS]
        more = f" · c: {ccys[(self.currency + 1) % len(ccys)]}" if len(ccys) > 1 else ""
        box.border_title = f"{ccy or 'Revenue and cost'}: revenue and cost by {dim} (g: group by{more})"
        box.border_subtitle = (f"{state} documents · exact amounts: Amounts panel (n)" if state != "all"
                               else "exact amounts: Amounts panel (n)")
        if shown:
            labels = [b.label if len(b.label) <= 12 else b.label[:11] + "…" for b in shown]
            # a picture only (plotext draws floats): the exact amounts are in the Amounts panel
            plt.multiple_bar(labels, [[float(b.revenue) for b in shown], [float(b.cost) for b in shown]],
                             labels=[f"revenue {ccy}", f"cost {ccy}"], color=["green", "red"])
            top = max(max(b.revenue, b.cost) for b in shown)
            if top > 0:  # the axis says the largest amount exactly, in its currency (plotext would round it)
                plt.yticks([0.0, float(top)], ["0", money(top, ccy)])
        else:
            plt.title(f"no {state} document" if state != "all" else "no document")
        chart.refresh()
        numbers = self.query_one("#db-numbers", DataTable)
        for b in sorted(bars, key=lambda b: (b.currency != ccy, b.currency)):  # the charted currency first
            numbers.add_row(b.label, b.currency, amount(b.revenue), amount(b.cost), signed(b.net),
                            Text(str(b.documents), justify="right"))
        if not bars:
            self._empty("numbers", f"No {state} document." if state != "all" else "No document.")
        months = self.query_one("#db-months", DataTable)
        for b in breakdown(source, "month", state):  # documents finalized and drafts, per month
            months.add_row(b.label, b.currency, amount(b.revenue), amount(b.cost), signed(b.net),
                           Text(str(b.documents - b.drafts), justify="right"),
                           Text(str(b.drafts), justify="right", style="dim" if not b.drafts else ""))
        self._show_findings(source)

    def _head(self, source, state: str) -> Text:
        if self.from_store:
            text = Text(source.describe() + (" · o: last simulation" if self.app.simulation is not None else ""),
                        style="dim")
        else:
            sim = source
            text = Text(f"simulation {', '.join(sim.request.partners)} {sim.request.period} · {sim.records:,} "
                        f"records" + (" · o: the store" if self.app.store is not None else ""), style="dim")
        text.append("\n")
        for ccy, t in totals(source, state).items():
            text.append(f"{ccy} revenue {money(t.revenue)} · cost {money(t.cost)} · net ")
            text.append(f"{money(t.net)}  ", style="green" if t.net >= 0 else "red")
        return text

    def _show_findings(self, source) -> None:
        findings = self.query_one("#db-findings", DataTable)
        found = source.findings()
        for where, f in found:
            findings.add_row(where, Text(f.severity, style=SEVERITY_STYLE.get(f.severity, "")), f.code,
                             "" if f.count is None else f"{f.count:,}", f.message)
        for run in source.runs:
            if run.error:
                findings.add_row(run.partner, Text("failed", style="bold red"), "", "", run.error)
        errors = sum(1 for _, f in found if f.severity == "error")
        warnings = sum(1 for _, f in found if f.severity == "warning")
        self.query_one("#db-tabs", TabbedContent).get_tab("db-p-findings").label = (
            f"Findings {errors}✖ {warnings}▲" if errors or warnings else "Findings")
        if not found and not any(r.error for r in source.runs):
            self._empty("findings", "No validation finding.")

    def _assurance_detail(self, row: int) -> None:
        detail = self.query_one("#db-assurance-detail", Static)
        shown = self.assurance_shown
        detail.display = bool(shown)
        if not 0 <= row < len(shown):
            detail.update("")
            return
        f = shown[row]
        text = Text.assemble((f"{f.code} ", SEVERITY_STYLE.get(f.severity, "")), f"{f.partner}: {f.message}")
        if f.amount is not None:
            text.append(f" ({money(f.amount, f.currency or None)} at stake)")
        if f.action:
            text.append(f"\nwhat to do: {f.action}", style="italic")
        detail.update(text)

    @on(DataTable.RowHighlighted, "#db-assurance")
    def _assurance_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._assurance_detail(event.cursor_row)

    @on(DataTable.RowSelected, "#db-recon")
    async def _recon_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if 0 <= event.cursor_row < len(self.recon_shown):
            await self.app.show_reconciliation(self.recon_shown[event.cursor_row])
