"""Bar charts as SVG, drawn on the server (no JavaScript): the traffic pages' pictures."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    label: str
    value: Decimal
    text_y: float = 0.0


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    horizontal: bool
    maximum: Decimal


def bar_chart(values: list[tuple[str, Decimal]], *, horizontal: bool = False, width: int = 640) -> Chart | None:
    """Bars of ``values`` (label, amount >= 0 drawn; negatives as empty bars), scaled to the largest:
    vertical (a bar per day, left to right) or horizontal (a row per service or destination)."""
    if not values:
        return None
    top = max((v for _, v in values), default=Decimal(0))
    top = top if top > 0 else Decimal(1)
    bars = []
    if horizontal:
        row = 22
        label_w = 0.0
        for i, (label, v) in enumerate(values):
            w = float(max(v, Decimal(0)) / top) * (width - label_w - 4)
            bars.append(Bar(label_w, i * row + 3, max(w, 1.0), row - 6, label, v, i * row + row / 2 + 4))
        return Chart(width, row * len(values) + 4, bars, True, top)
    height = 160
    step = width / len(values)
    for i, (label, v) in enumerate(values):
        h = float(max(v, Decimal(0)) / top) * (height - 4)
        bars.append(Bar(i * step + step * 0.1, height - h, max(step * 0.8, 1.0), h, label, v))
    return Chart(width, height, bars, False, top)
