"""Reconciliation: a partner's invoice against our view of the same traffic, line by line
(status, both sides, the differences), and on enter down to the records of a line (theirs and
ours, classed). The reconciliation comes from the ``reconcile`` feed (:mod:`icdsl.tui.feeds`),
or is shown as given (``show``, the dashboard's Recon panel); the walking is
:mod:`icdsl.tui.reconview`."""

from __future__ import annotations

from decimal import Decimal

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, ContentSwitcher, DataTable, Footer, Input, Label, Select, Static

from icdsl.billing.errors import StoreError
from icdsl.recon.model import LineComparison, Reconciliation
from icdsl.tui.bindings import bindings
from icdsl.tui.components.documents import amount, money
from icdsl.tui.components.nav_bar import NavBar
from icdsl.tui.components.simulate_screen import DEFAULT_PERIOD
from icdsl.tui.reconview import LINE_STATUS, RECORD_CLASS, ordered_lines, records, summary, unplaced
from icdsl.tui.simulate import billable_partners

NOT_CONNECTED = ("Reconciliation reads a partner's imported invoice from a store: open the terminal with "
                 "icdsl tui FOLDER --db URL.")
NOT_WIRED = "This version of icdsl cannot reconcile yet (no reconciliation engine connected)."
HINT = "Choose a partner and a period, then reconcile (ctrl+g)."


def signed(value: Decimal | int | None, suffix: str = "") -> Text:
    if value is None:
        return Text("")
    if not value:
        return Text(f"{money(value)}{suffix}", style="dim", justify="right")
    return Text(f"{value:+,}{suffix}", style="green" if value < 0 else "red", justify="right")


class ReconScreen(Screen):
    BINDINGS = bindings("recon")

    DEFAULT_CSS = """
    ReconScreen {
        layout: vertical;
        #rc-form { height: auto; padding: 0 1; }
        #rc-row { height: 1; }
        #rc-row > Label { padding: 0 1 0 0; color: $text-muted; }
        #rc-partner { width: 18; margin: 0 1 0 0; }
        #rc-period { width: 10; margin: 0 1 0 0; }
        #rc-row > Button { width: auto; min-width: 11; }
        #rc-summary { height: auto; max-height: 5; color: $text-muted; }
        #rc-switch { height: 1fr; }
        #rc-switch > DataTable { height: 1fr; border: none; background: $surface; }
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.reconciliation: Reconciliation | None = None
        self.shown_lines: list[LineComparison] = []
        self.line: LineComparison | None = None  # the line whose records are shown (None: all)
        self.only_differing = False
        self.showing_records = False
        self._codes: list[str] = []

    def compose(self) -> ComposeResult:
        yield NavBar("recon")
        with Vertical(id="rc-form", classes="panel") as form:
            form.border_title = "Reconcile a partner's invoice"
            form.border_subtitle = "ctrl+g reconcile · ctrl+o only differences · enter: records"
            with Horizontal(id="rc-row"):
                yield Label("Partner")
                yield Select([], prompt="partner", compact=True, id="rc-partner")
                yield Label("Period")
                yield Input(DEFAULT_PERIOD, compact=True, id="rc-period")
                yield Button("Reconcile", compact=True, variant="primary", id="rc-run")
            yield Static(HINT, id="rc-summary")
        with Vertical(id="rc-box", classes="panel") as box:
            box.border_title = "Lines: theirs vs ours"
            with ContentSwitcher(id="rc-switch", initial="rc-lines"):
                yield DataTable(id="rc-lines", cursor_type="row", zebra_stripes=True)
                yield DataTable(id="rc-records", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        # what tells a line or a record first, within 80 columns; the rest to the right (the
        # currency, one for the whole invoice, is in the table's title)
        self.query_one("#rc-lines", DataTable).add_columns(
            "status", "service", "destination", "difference", "theirs", "ours", "calls", "band", "quantity")
        self.query_one("#rc-records", DataTable).add_columns(
            "class", "Δ amount", "their id", "our id", "durations", "Δ dur", "Δ start", "theirs", "ours",
            "A number", "B number", "start (UTC)")
        self.watch(self.app, "analysis", self._partners)
        if self.reconciliation is not None:
            self._fill()

    def focus_main(self) -> None:
        self.query_one("#rc-records" if self.showing_records else "#rc-lines", DataTable).focus()

    def _partners(self, *_: object) -> None:
        good = self.app.good
        if good is None or good.plan is None:
            return
        codes = billable_partners(good.plan)
        if codes != self._codes:
            self._codes = codes
            select = self.query_one("#rc-partner", Select)
            keep = select.value
            select.set_options([(c, c) for c in codes])
            if keep in codes:
                select.value = keep

    # ------------------------------------------------------------------ reconciling
    def action_run(self) -> None:
        feed = self.app.feeds.reconcile
        if feed is None:
            self._say(NOT_CONNECTED if self.app.store is None else NOT_WIRED, error=True)
            return
        partner = self.query_one("#rc-partner", Select).value
        if partner is Select.BLANK:
            self.notify("Choose a partner.", severity="warning")
            return
        period = self.query_one("#rc-period", Input).value.strip() or DEFAULT_PERIOD
        self._say(f"reconciling {partner} {period}…")
        self._reconcile(feed, str(partner), period)

    @work(thread=True, exclusive=True, group="recon", exit_on_error=False)
    def _reconcile(self, feed, partner: str, period: str) -> None:
        try:
            rec = feed(partner, period)
        except (ValueError, LookupError, StoreError) as e:  # the user's: no invoice imported, unknown period ...
            self.app.call_from_thread(self._say, f"Cannot reconcile {partner} {period}: {e}", True)
            return
        except Exception as e:  # a bug: said, the terminal carries on
            self.app.call_from_thread(self._say, f"Cannot reconcile {partner} {period}: {type(e).__name__}: {e}", True)
            return
        self.app.call_from_thread(self.show, rec)

    def _say(self, text: str, error: bool = False) -> None:
        self.query_one("#rc-summary", Static).update(Text(text, style="red" if error else ""))
        if error:
            self.notify(text, severity="error", timeout=6)

    def show(self, rec: Reconciliation) -> None:
        """Show a reconciliation (from the feed, or the dashboard's Recon panel)."""
        self.reconciliation = rec
        self.line = None
        if self.is_mounted:
            if rec.partner in self._codes:
                self.query_one("#rc-partner", Select).value = rec.partner
            self.query_one("#rc-period", Input).value = f"{rec.period_start:%Y-%m}"
            self._fill()

    # ------------------------------------------------------------------ lines
    def _fill(self) -> None:
        rec = self.reconciliation
        self.query_one("#rc-summary", Static).update(summary(rec))
        table = self.query_one("#rc-lines", DataTable)
        table.clear()
        self.shown_lines = ordered_lines(rec, self.only_differing)
        for c in self.shown_lines:
            word, style = LINE_STATUS.get(c.status, (c.status, ""))
            calls = (f"{c.their_calls:,}" if c.their_calls == c.our_calls
                     else f"{c.their_calls:,}/{c.our_calls:,}")
            qty = (money(c.their_quantity) if c.their_quantity == c.our_quantity
                   else f"{money(c.their_quantity)}/{money(c.our_quantity)}")
            table.add_row(Text(word, style=style), c.service, c.destination or "",
                          signed(c.amount_difference), amount(c.their_amount), amount(c.our_amount),
                          Text(calls, justify="right", style="" if c.their_calls == c.our_calls else "yellow"),
                          c.band or "",
                          Text(qty, justify="right", style="" if c.their_quantity == c.our_quantity else "yellow"))
        shown = "lines outside the tolerances" if self.only_differing else "lines"
        self.query_one("#rc-box").border_title = (
            f"{rec.partner} {rec.invoice.number}: {len(self.shown_lines)} {shown} (theirs vs ours, {rec.currency})")
        self.query_one("#rc-box").border_subtitle = "enter: the line's records · a: every record"
        self._show_lines()

    def _show_lines(self) -> None:
        self.showing_records = False
        self.query_one("#rc-switch", ContentSwitcher).current = "rc-lines"
        self.query_one("#rc-lines", DataTable).focus()

    @on(DataTable.RowSelected, "#rc-lines")
    def _line_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if 0 <= event.cursor_row < len(self.shown_lines):
            self.show_records(self.shown_lines[event.cursor_row])

    # ------------------------------------------------------------------ records
    def show_records(self, line: LineComparison | None) -> None:
        """The records of a line (theirs and ours, classed), or of the whole invoice (None)."""
        rec = self.reconciliation
        if rec is None:
            return
        self.line = line
        table = self.query_one("#rc-records", DataTable)
        table.clear()
        rows, total = records(rec, line, only_differing=self.only_differing)
        for r in rows:
            word, style = RECORD_CLASS.get(r.cls, (r.cls, ""))
            dur = "/".join("" if d is None else str(d) for d in (r.their_duration, r.our_duration))
            start = r.their_start or r.our_start
            table.add_row(Text(word, style=style), signed(r.amount_difference), r.their_id or "", r.our_id or "",
                          Text(dur, justify="right"), signed(r.duration_difference, " s"),
                          signed(None if r.start_difference is None else int(r.start_difference), " s"),
                          amount(r.their_amount), amount(r.our_amount), r.a_number or "", r.b_number or "",
                          f"{start:%m-%d %H:%M:%S}" if start else "")
        box = self.query_one("#rc-box")
        what = (f"{line.service} {line.destination or ''}".strip() if line is not None else "the whole invoice")
        if rec.records is None:
            note = "no record detail: the partner sent none"
        elif line is not None and not line.our_lines:
            note = f"a line only they billed: its records are among every record (a), {unplaced(rec):,} with no line"
        else:
            note = (f"{total:,} record(s)" + (f", the first {len(rows):,} shown" if len(rows) < total else "")
                    + (" outside the tolerances" if self.only_differing else ""))
        box.border_title = f"Records of {what}: {note}"
        box.border_subtitle = "escape: back to the lines · ctrl+o only differences"
        self.showing_records = True
        self.query_one("#rc-switch", ContentSwitcher).current = "rc-records"
        table.focus()

    def action_all_records(self) -> None:
        if self.reconciliation is not None:
            self.show_records(None)

    def action_back(self) -> None:
        if self.showing_records and self.reconciliation is not None:
            self._fill()

    def action_filter(self) -> None:
        self.only_differing = not self.only_differing
        if self.reconciliation is None:
            return
        if self.showing_records:
            self.show_records(self.line)
        else:
            self._fill()

    @on(Button.Pressed, "#rc-run")
    def _run_pressed(self) -> None:
        self.action_run()
