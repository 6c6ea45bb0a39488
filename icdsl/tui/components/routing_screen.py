"""Routing (F11): the least-cost routing table of a day (suppliers ranked per destination, their
cost per minute, our sell price and the first choice's margin) and the margins of a period by
destination, partner, supplier or day, negative ones first and in red; enter on a margin row
shows its records (supplier, how it was chosen, revenue, cost, margin, why uncosted).

The table is :func:`icdsl.routing.lcr.build_table` on the checked rules; the margins are
:func:`icdsl.routing.margin.margins` on the sold records of the store's cycles (``icdsl tui
--db``), else of the last simulation (F5). The walking is :mod:`icdsl.tui.routingview`."""

from __future__ import annotations

import calendar
from datetime import date
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, ContentSwitcher, DataTable, Footer, Input, Label, Static

from icdsl.billing.errors import StoreError
from icdsl.routing.lcr import LcrError, LcrTable, build_table, choose_policy, money_text
from icdsl.routing.margin import BY, MarginError, Margins, in_period, margins
from icdsl.tui.bindings import bindings
from icdsl.tui.components.nav_bar import NavBar
from icdsl.tui.components.simulate_screen import DEFAULT_PERIOD
from icdsl.tui.routingview import lcr_rows, margin_rows, records_of, summary

HINT = "ctrl+g: the LCR table of the day and the margins of the period · n: LCR / margins · g: group by"
NO_RECORDS = (
    "Margins need rated records: open the terminal with icdsl tui FOLDER --db URL, or run a "
    "simulation (F5) first."
)
NO_RULES = "The rules do not compile: fix the problems (F2) first."


def period_days(text: str) -> tuple[date, date]:
    """A month (2026-03) or a day (2026-03-02) as (first day, last day); ValueError otherwise."""
    text = text.strip()
    if len(text) == 7 and text[4] == "-":
        y, m = int(text[:4]), int(text[5:7])
        return date(y, m, 1), date(y, m, calendar.monthrange(y, m)[1])
    d = date.fromisoformat(text)
    return d, d


def _money(n: int | None, places: int = 4) -> Text:
    if n is None:
        return Text("")
    return Text(money_text(n, places), justify="right", style="bold red" if n < 0 else "")


class RoutingScreen(Screen):
    BINDINGS = bindings("routing")

    DEFAULT_CSS = """
    RoutingScreen {
        layout: vertical;
        #rt-form { height: auto; padding: 0 1; }
        #rt-row { height: 1; }
        #rt-row > Label { padding: 0 1 0 0; color: $text-muted; }
        #rt-period { width: 10; margin: 0 1 0 0; }
        #rt-day { width: 12; margin: 0 1 0 0; }
        #rt-search { width: 14; margin: 0 1 0 0; }
        #rt-row > Button { width: auto; min-width: 7; }
        #rt-summary { height: auto; max-height: 3; color: $text-muted; }
        #rt-switch { height: 1fr; }
        #rt-switch > DataTable { height: 1fr; border: none; background: $surface; }
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.table: LcrTable | None = None
        self.margins: Margins | None = None
        self.by = "destination"
        self.view_name = "lcr"  # lcr | margins | records
        self.shown_keys: list[Any] = []
        self.records_source = None  # (first, last) -> sold records; default: the store, else the simulation
        self.period = DEFAULT_PERIOD

    def compose(self) -> ComposeResult:
        yield NavBar("routing")
        with Vertical(id="rt-form", classes="panel") as form:
            form.border_title = "Least-cost routing and margins"
            form.border_subtitle = "ctrl+g build · n LCR/margins · g group · enter records"
            with Horizontal(id="rt-row"):
                yield Label("Period")
                yield Input(DEFAULT_PERIOD, compact=True, id="rt-period")
                yield Label("Day")
                yield Input(f"{DEFAULT_PERIOD}-01", compact=True, id="rt-day")
                yield Label("Find")
                yield Input("", placeholder="prefix/name", compact=True, id="rt-search")
                yield Button("Build", compact=True, variant="primary", id="rt-run")
            yield Static(HINT, id="rt-summary")
        with Vertical(id="rt-box", classes="panel") as box:
            box.border_title = "LCR table"
            with ContentSwitcher(id="rt-switch", initial="rt-lcr"):
                yield DataTable(id="rt-lcr", cursor_type="row", zebra_stripes=True)
                yield DataTable(id="rt-margins", cursor_type="row", zebra_stripes=True)
                yield DataTable(id="rt-records", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#rt-lcr", DataTable).add_columns(
            "prefix",
            "band",
            "suppliers, cost/min (tried in this order)",
            "sell/min",
            "margin/min",
            "out",
            "destination",
        )
        self.query_one("#rt-records", DataTable).add_columns(
            "margin",
            "revenue",
            "cost",
            "supplier",
            "by",
            "destination",
            "number",
            "s",
            "id",
            "day",
            "uncosted",
        )

    def focus_main(self) -> None:
        self.query_one(f"#rt-{self.view_name}", DataTable).focus()

    # ------------------------------------------------------------------ building
    def action_run(self) -> None:
        good = self.app.good
        if good is None or good.plan is None:
            self._say(NO_RULES, error=True)
            return
        period = self.query_one("#rt-period", Input).value.strip() or DEFAULT_PERIOD
        day_text = self.query_one("#rt-day", Input).value.strip()
        try:
            first, last = period_days(period)
            day = date.fromisoformat(day_text) if day_text else first
        except ValueError:
            self._say(
                f"'{period}' / '{day_text}': give a month (2026-03) or a day, and a day (2026-03-02)",
                error=True,
            )
            return
        self.period = period
        self._say(f"building the LCR table of {day} and the margins of {period}…")
        self._build(good.plan, day, first, last)

    def _sold(self, first: date, last: date):
        if self.records_source is not None:
            return self.records_source(first, last)
        from icdsl.billing.margin import sold_records  # lazy: the store's side

        store = self.app.store
        if store is None and self.app.simulation is not None:
            store = self.app.simulation.store
        if store is None:
            return None
        return sold_records(store, first, last)

    @work(thread=True, exclusive=True, group="routing", exit_on_error=False)
    def _build(self, plan, day: date, first: date, last: date) -> None:
        notes: list[str] = []
        table = result = None
        try:
            policy = choose_policy(plan)
        except LcrError:  # several policies: the first by name, said
            policy = sorted(plan.lcr_policies, key=lambda p: p.name)[0]
            notes.append(f"several lcr policies: showing '{policy.name}'")
        try:
            table = build_table(plan, policy, day)
            notes += table.notes
        except LcrError as e:
            notes.append(f"no LCR table: {str(e).splitlines()[0]}")
        try:
            sold = self._sold(first, last)
            if sold is None:
                notes.append(NO_RECORDS)
            else:
                result = margins(plan, in_period(sold, first, last), policy)
                notes += result.notes
        except (MarginError, LcrError, StoreError, OSError) as e:
            notes.append(f"no margins: {str(e).splitlines()[0]}")
        except Exception as e:  # a bug: said, the terminal carries on
            notes.append(f"no margins: {type(e).__name__}: {e}")
        self.app.call_from_thread(self.show, table, result, notes)

    def _say(self, text: str, error: bool = False) -> None:
        self.query_one("#rt-summary", Static).update(Text(text, style="red" if error else ""))
        if error:
            self.notify(text, severity="error", timeout=6)

    def show(self, table: LcrTable | None, result: Margins | None, notes: list[str] = ()) -> None:
        """Show a routing table and margins (either may be None: the notes say why)."""
        self.table, self.margins = table, result
        lines = [summary(result, self.period)] if result is not None else []
        lines += list(notes)[:2]
        self.query_one("#rt-summary", Static).update("\n".join(lines) or HINT)
        if self.view_name == "records" or (self.view_name == "margins" and result is None):
            self.view_name = "lcr"
        self._fill()

    # ------------------------------------------------------------------ views
    def _fill(self) -> None:
        if self.view_name == "margins":
            self._fill_margins()
        else:
            self._fill_lcr()

    def _switch(self, name: str) -> None:
        self.view_name = name
        self.query_one("#rt-switch", ContentSwitcher).current = f"rt-{name}"
        self.query_one(f"#rt-{name}", DataTable).focus()

    def _fill_lcr(self) -> None:
        dt = self.query_one("#rt-lcr", DataTable)
        dt.clear()
        box = self.query_one("#rt-box")
        if self.table is None:
            box.border_title = "LCR table: none (ctrl+g builds it)"
            self._switch("lcr")
            return
        search = self.query_one("#rt-search", Input).value
        rows, total = lcr_rows(self.table, search)
        for r in rows:
            dt.add_row(
                r.prefix,
                r.band,
                r.ranked_text(),
                _money(r.sell_per_minute_n),
                _money(r.margin_per_minute_n),
                Text(str(r.excluded) if r.excluded else "", justify="right"),
                r.destination,
            )
        t = self.table
        box.border_title = (
            f"LCR {t.day} '{t.policy.name}': {total:,} prefix/band lines"
            + (f", the first {len(rows):,}" if len(rows) < total else "")
            + f" · {t.policy.currency} per minute"
        )
        box.border_subtitle = "n: margins · find: a prefix or a name, then ctrl+g"
        self._switch("lcr")

    def _fill_margins(self) -> None:
        dt = self.query_one("#rt-margins", DataTable)
        dt.clear(columns=True)
        m = self.margins
        box = self.query_one("#rt-box")
        if m is None:
            box.border_title = "Margins: none (ctrl+g; they need rated records)"
            self._switch("margins")
            return
        dt.add_columns(self.by, "margin", "revenue", "cost", "records", "seconds", "uncosted")
        rows = margin_rows(m, self.by)
        self.shown_keys = [r[self.by] for r in rows]
        for r in rows:
            key = r[self.by]
            neg = (r["margin_n"] or 0) < 0
            dt.add_row(
                Text(str(key) if key not in (None, "") else "(none)", style="bold red" if neg else ""),
                _money(r["margin_n"]),
                _money(r["revenue_n"]),
                _money(r["cost_n"]),
                Text(f"{r['records']:,}", justify="right"),
                Text(f"{r['seconds']:,}", justify="right"),
                Text(f"{r['uncosted']:,}" if r["uncosted"] else "", justify="right", style="yellow"),
            )
        negative = sum(1 for r in rows if (r["margin_n"] or 0) < 0)
        box.border_title = f"Margins {self.period} by {self.by} ({m.currency}): {len(rows):,} rows" + (
            f", {negative} negative (red, first)" if negative else ""
        )
        box.border_subtitle = "enter: records · g: group by · n: LCR"
        self._switch("margins")

    @on(DataTable.RowSelected, "#rt-margins")
    def _margin_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if 0 <= event.cursor_row < len(self.shown_keys):
            self.show_records(self.shown_keys[event.cursor_row])

    def show_records(self, key: Any) -> None:
        """The records behind one row of the margins (the most negative first)."""
        m = self.margins
        if m is None:
            return
        dt = self.query_one("#rt-records", DataTable)
        dt.clear()
        rows, total = records_of(m, self.by, key)
        for r in rows:
            dt.add_row(
                _money(r["margin_n"], 6),
                _money(r["revenue_n"], 6),
                _money(r["cost_n"], 6),
                r["supplier"] or "",
                r["chosen_by"],
                r["destination"] or "",
                r["number"] or "",
                Text(str(r["duration_s"]), justify="right"),
                str(r["id"]),
                str(r["day"]),
                Text(r["uncosted"] or "", style="yellow"),
            )
        box = self.query_one("#rt-box")
        box.border_title = f"Records of {self.by} {key if key is not None else '(none)'}: {total:,}" + (
            f", the first {len(rows):,}" if len(rows) < total else ""
        )
        box.border_subtitle = "escape: back to the margins"
        self._switch("records")

    def action_toggle(self) -> None:
        if self.view_name == "lcr":
            self._fill_margins()
        else:
            self._fill_lcr()

    def action_group(self) -> None:
        self.by = BY[(BY.index(self.by) + 1) % len(BY)]
        if self.view_name != "lcr":
            self._fill_margins()

    def action_back(self) -> None:
        if self.view_name == "records":
            self._fill_margins()

    @on(Button.Pressed, "#rt-run")
    def _run_pressed(self) -> None:
        self.action_run()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "rt-search" and self.table is not None:
            self._fill_lcr()
        else:
            self.action_run()
