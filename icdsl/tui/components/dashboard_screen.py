"""Dashboard: revenue and cost of the last simulation by partner, charge type, service or
agreement (a Plotext bar chart, ``g`` changes the grouping), and the pre-invoice validation
findings of its cycles."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual_plotext import PlotextPlot

from icdsl.tui.bindings import bindings
from icdsl.tui.components.nav_bar import NavBar
from icdsl.tui.revenue import DIMENSIONS, breakdown, totals

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}
MAX_BARS = 8


class DashboardScreen(Screen):
    BINDINGS = bindings("dashboard")

    DEFAULT_CSS = """
    DashboardScreen {
        layout: vertical;
        #db-top { height: 2fr; min-height: 8; }
        #db-chart-box { width: 2fr; }
        #db-numbers-box { width: 1fr; min-width: 26; }
        #db-numbers { height: 1fr; border: none; background: $surface; }
        #db-totals { height: auto; padding: 0 1; }
        #db-findings-box { height: 1fr; min-height: 5; }
        #db-findings { height: 1fr; border: none; background: $surface; }
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.dim = 0

    def compose(self) -> ComposeResult:
        yield NavBar("dashboard")
        yield Static("", id="db-totals")
        with Horizontal(id="db-top"):
            with Vertical(id="db-chart-box", classes="panel") as box:
                box.border_title = "Revenue and cost"
                yield PlotextPlot(id="db-chart")
            with Vertical(id="db-numbers-box", classes="panel") as box:
                box.border_title = "Net"
                yield DataTable(id="db-numbers", cursor_type="row", zebra_stripes=True)
        with Vertical(id="db-findings-box", classes="panel") as box:
            box.border_title = "Validation findings"
            yield DataTable(id="db-findings", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#db-numbers", DataTable).add_columns("", "net", "revenue", "cost")
        self.query_one("#db-findings", DataTable).add_columns("partner", "severity", "code", "count", "message")
        self.watch(self.app, "simulation", self.refresh_data)

    def focus_main(self) -> None:
        self.query_one("#db-findings", DataTable).focus()

    def action_group(self) -> None:
        self.dim = (self.dim + 1) % len(DIMENSIONS)
        self.refresh_data(self.app.simulation)

    def refresh_data(self, sim=None) -> None:
        sim = self.app.simulation
        dim = DIMENSIONS[self.dim]
        head = self.query_one("#db-totals", Static)
        chart = self.query_one(PlotextPlot)
        plt = chart.plt
        plt.clear_data()
        plt.clear_figure()
        numbers = self.query_one("#db-numbers", DataTable)
        numbers.clear()
        findings = self.query_one("#db-findings", DataTable)
        findings.clear()
        self.query_one("#db-chart-box").border_title = f"Revenue and cost by {dim} (g: group by)"
        if sim is None:
            head.update("No simulation yet: run one in F5 (Simulate).")
            plt.title("no simulation yet")
            chart.refresh()
            return
        text = Text(f"{', '.join(sim.request.partners)} {sim.request.period} · {sim.records:,} records · ")
        for ccy, t in totals(sim).items():
            text.append(f"{ccy} revenue {t.revenue:,.2f}, cost {t.cost:,.2f}, net ")
            text.append(f"{t.net:+,.2f}  ", style="green" if t.net >= 0 else "red")
        head.update(text)
        bars = breakdown(sim, dim)
        shown = bars[:MAX_BARS]
        labels = [self._label(b.label, b.currency, len({x.currency for x in bars}) > 1) for b in shown]
        if shown:
            plt.multiple_bar(labels, [[float(b.revenue) for b in shown], [float(b.cost) for b in shown]],
                             labels=["revenue", "cost"], color=["green", "red"])
        plt.title("")
        chart.refresh()
        for b in bars:
            numbers.add_row(f"{b.label} {b.currency}", Text(f"{b.net:+,.2f}", style="green" if b.net >= 0 else "red"),
                            f"{b.revenue:,.2f}", f"{b.cost:,.2f}")
        found = sim.findings()
        for partner, f in found:
            findings.add_row(partner, Text(f.severity, style=SEVERITY_STYLE.get(f.severity, "")), f.code,
                             "" if f.count is None else f"{f.count:,}", f.message)
        for run in sim.runs:
            if run.error:
                findings.add_row(run.partner, Text("failed", style="bold red"), "", "", run.error)
        box = self.query_one("#db-findings-box")
        errors = sum(1 for _, f in found if f.severity == "error")
        warnings = sum(1 for _, f in found if f.severity == "warning")
        box.border_title = f"Validation findings: {errors} error(s), {warnings} warning(s)"

    @staticmethod
    def _label(label: str, currency: str, show_currency: bool) -> str:
        short = label if len(label) <= 14 else label[:13] + "…"
        return f"{short} {currency}" if show_currency else short
