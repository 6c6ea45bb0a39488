"""The traffic of a simulation or a what-if: a traffic file of the folder, or generated traffic
with a size and a service mix (see ``icdsl.tui.traffic_source``)."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Input, Label, Select

from icdsl.tui.traffic_source import TrafficSource, parse_mix

GENERATED = "generated"
LAST = "last"  # the traffic of the last simulation (what-if)
DEFAULT_RECORDS = 5000


def parse_records(text: str) -> int:
    """``5000``, ``5k``, ``1m``, ``1_000_000`` or ``1,000,000`` -> a number of records."""
    t = text.strip().lower().replace("_", "").replace(",", "")
    factor = 1
    if t.endswith("k"):
        factor, t = 1000, t[:-1]
    elif t.endswith("m"):
        factor, t = 1_000_000, t[:-1]
    try:
        n = int(float(t) * factor)
    except ValueError:
        raise ValueError(f"records: '{text}' is not a number (e.g. 5000, 250k, 1m)") from None
    if not 1 <= n <= 50_000_000:
        raise ValueError("records: between 1 and 50m")
    return n


class SourcePicker(Horizontal):
    """``Traffic [generated ▾]  records [5000]  mix [voice=6,sms=3]`` on one line."""

    DEFAULT_CSS = """
    SourcePicker {
        height: 1;
        width: 1fr;
        & > Label { padding: 0 1 0 0; color: $text-muted; }
        & > Select { width: 24; margin: 0 1 0 0; }
        & > #src-records { width: 10; margin: 0 1 0 0; }
        & > #src-mix { width: 1fr; min-width: 10; }
    }
    """

    def __init__(self, *, last: bool = False, id: str | None = None):
        super().__init__(id=id)
        self.offer_last = last

    def compose(self) -> ComposeResult:
        yield Label("Traffic")
        yield Select(self._options(), value=GENERATED, allow_blank=False, compact=True, id="src-kind")
        yield Input(str(DEFAULT_RECORDS), placeholder="records", compact=True, id="src-records",
                    tooltip="How many records to generate: 5000, 250k, 1m")
        yield Input("", placeholder="mix: voice=6,sms=3", compact=True, id="src-mix",
                    tooltip="Services in these proportions (empty: as generated)")

    def _options(self) -> list[tuple[str, str]]:
        project = self.app.project
        out = []
        if self.offer_last:
            out.append(("last simulation's", LAST))
        out.append(("generated", GENERATED))
        out += [(project.shown(p), str(p)) for p in project.files().traffic]
        return out

    def refresh_files(self) -> None:
        select = self.query_one("#src-kind", Select)
        value = select.value
        options = self._options()
        select.set_options(options)
        if any(v == value for _, v in options):
            select.value = value

    @property
    def kind(self) -> str:
        return str(self.query_one("#src-kind", Select).value)

    def set_generated(self, records: int | str, mix: str = "") -> None:
        self.query_one("#src-kind", Select).value = GENERATED
        self.query_one("#src-records", Input).value = str(records)
        self.query_one("#src-mix", Input).value = mix

    def source(self) -> TrafficSource | None:
        """The chosen source (None: the last simulation's traffic); ValueError if invalid."""

        kind = self.kind
        if kind == LAST:
            return None
        if kind != GENERATED:
            return TrafficSource("file", Path(kind))
        records = parse_records(self.query_one("#src-records", Input).value)
        mix = self.query_one("#src-mix", Input).value.strip()
        parse_mix(mix)
        return TrafficSource("generated", records=records, mix=mix)

    def on_select_changed(self, event: Select.Changed) -> None:
        generated = str(event.value) == GENERATED
        self.query_one("#src-records", Input).display = generated
        self.query_one("#src-mix", Input).display = generated
