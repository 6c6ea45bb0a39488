"""Build the example A-Z rate decks from tools/numbering.tsv.

    python tools/make_deck.py            # from examples/interconnect: writes decks/*.csv

Deterministic: prices come from fixed zone price ranges and a SHA-256 of each destination's
name, never from a random generator, so the decks are the same on every machine and every run.

decks/lumiere-a-z.csv      Lumiere Telecom's A-Z deck, EUR, default column names, comma separated
                           (prefix,destination,rate_peak,rate_offpeak,connect_fee,increments,effective,until)
decks/brookline-europe.csv Brookline Carrier Services' deck for Europe and North America, GBP, their
                           own column names, semicolon separated
"""

from __future__ import annotations

import hashlib
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

HERE = Path(__file__).resolve().parent
DECKS = HERE.parent / "decks"
FOUR = Decimal("0.0001")

# zone: (fixed peak range, mobile peak range, off-peak factor, increments to choose from)
ZONES = {
    "eu": (("0.0035", "0.0120"), ("0.0045", "0.0180"), "0.75", ("60/6", "60/6", "30/6", "1/1")),
    "europe_other": (("0.0080", "0.0400"), ("0.0200", "0.1500"), "0.80", ("60/6", "60/60", "1/1")),
    "nanp": (("0.0040", "0.0090"), ("0.0040", "0.0090"), "1", ("1/1",)),
    "caribbean": (("0.0600", "0.1500"), ("0.1200", "0.2500"), "1", ("60/60",)),
    "latam": (("0.0100", "0.0800"), ("0.0300", "0.2000"), "0.90", ("60/60", "60/6")),
    "africa": (("0.0600", "0.3500"), ("0.1000", "0.4500"), "1", ("60/60",)),
    "middle_east": (("0.0500", "0.1600"), ("0.0800", "0.3000"), "0.90", ("60/6", "60/60")),
    "asia": (("0.0060", "0.0800"), ("0.0100", "0.1500"), "0.90", ("30/6", "60/6", "1/1")),
    "cis": (("0.0300", "0.1500"), ("0.0600", "0.2500"), "1", ("60/60",)),
    "oceania": (("0.0120", "0.0200"), ("0.0350", "0.0500"), "0.85", ("30/6",)),
    "pacific": (("0.3000", "0.9000"), ("0.4000", "1.1000"), "1", ("60/60",)),
    "satellite": (("2.5000", "8.0000"), ("2.5000", "8.0000"), "1", ("60/60",)),
}

# Hand-set prices of the destinations the examples and the tutorial use, so that their
# expected amounts are easy to follow: prefix -> (peak, off-peak, connect fee, increments).
PINNED = {
    "33": ("0.0070", "0.0050", "", "60/6"),
    "336": ("0.0110", "0.0080", "", "30/6"),
    "337": ("0.0110", "0.0080", "", "30/6"),
    "339": ("0.0060", "0.0045", "", "60/6"),
    "44": ("0.0065", "0.0045", "", "60/60"),
    "447": ("0.0180", "0.0150", "", "1/1"),
    "49": ("0.0068", "0.0050", "", "60/6"),
    "4915": ("0.0125", "0.0100", "", "60/6"),
    "4916": ("0.0125", "0.0100", "", "60/6"),
    "4917": ("0.0125", "0.0100", "", "60/6"),
    "1": ("0.0042", "0.0042", "", "1/1"),
}
DECK_START = "2025-10-01"


def unit(*parts: str) -> Decimal:
    """A number in [0, 1) that depends only on the given words."""
    h = hashlib.sha256("|".join(parts).encode()).hexdigest()
    return Decimal(int(h[:12], 16)) / Decimal(16**12)


def four(x: Decimal) -> Decimal:
    return x.quantize(FOUR, rounding=ROUND_HALF_UP)


def country_of(destination: str) -> str:
    for word in (" mobile", " fixed"):
        if word in destination:
            return destination.split(word)[0]
    return destination


def price(prefix: str, destination: str, zone: str, kind: str, parents: dict[str, tuple]) -> tuple:
    """(peak, offpeak, connect fee, increments) of one destination."""
    if prefix in PINNED:
        p, o, c, i = PINNED[prefix]
        return Decimal(p), Decimal(o), c, i
    fixed, mobile, factor, incr_choices = ZONES[zone]
    country = country_of(destination)
    lo, hi = (Decimal(v) for v in (mobile if kind == "mobile" else fixed))
    parent = next((parents[prefix[:n]] for n in range(len(prefix) - 1, 0, -1) if prefix[:n] in parents), None)
    if parent is not None and parent[5] == destination:
        # a range of the same destination (a NANP area code): the same prices
        return parent[:4]
    if kind == "mobile" and parent is not None and parent[4] == "mobile":
        # an operator row: within 15 % of its country's mobile price, on the same terms
        peak = four(parent[0] * (Decimal("0.92") + Decimal("0.20") * unit(destination, prefix)))
        return peak, four(peak * Decimal(factor)), parent[2], parent[3]
    else:
        peak = four(lo + (hi - lo) * unit(country, kind))
    if kind == "special":
        peak = four(peak * 3)
    offpeak = four(peak * Decimal(factor))
    increments = incr_choices[int(unit(country, "increments") * len(incr_choices))]
    connect = ""
    if zone == "satellite":
        connect = str(four(Decimal("0.5") + Decimal("0.4") * unit(destination, "connect")))
    elif zone == "pacific" or kind == "special":
        connect = "0.0500"
    elif zone == "africa" and kind == "mobile" and unit(country, "connect") < Decimal("0.3"):
        connect = "0.0150"
    return peak, offpeak, connect, increments


def read_numbering() -> list[tuple[str, str, str, str]]:
    rows = []
    for line in (HERE / "numbering.tsv").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            prefix, destination, zone, kind = line.split("\t")
            rows.append((prefix, destination, zone, kind))
    return rows


def lumiere(numbering) -> list[list[str]]:
    """Lumiere's deck: one row per destination from 2025-10-01, plus the changes of 2026:
    UK mobile up 8 % from 2026-03-01, France mobile down from 2026-04-01, Cuba withdrawn from
    2026-05-01, Kosovo priced from 2026-02-01, and EU destinations 5 % cheaper from 2026-07-01."""
    parents: dict[str, tuple] = {}
    out = []
    for prefix, destination, zone, kind in numbering:
        peak, off, connect, incr = price(prefix, destination, zone, kind, parents)
        parents[prefix] = (peak, off, connect, incr, kind, destination)
        row = [prefix, destination, str(peak), str(off), connect, incr]
        if prefix.startswith("447") and kind == "mobile":
            up = Decimal("1.08")
            out.append(row + [DECK_START, "2026-03-01"])
            out.append([prefix, destination, str(four(peak * up)), str(four(off * up)), connect, incr,
                        "2026-03-01", ""])
        elif prefix.startswith(("336", "337")):
            out.append(row + [DECK_START, "2026-04-01"])
            out.append([prefix, destination, str(four(peak - Decimal("0.0015"))),
                        str(four(off - Decimal("0.0010"))), connect, incr, "2026-04-01", ""])
        elif prefix.startswith("53"):
            out.append(row + [DECK_START, "2026-05-01"])
        elif prefix.startswith("383"):
            out.append(row + ["2026-02-01", ""])
        elif zone == "eu":
            down = Decimal("0.95")
            out.append(row + [DECK_START, "2026-07-01"])
            out.append([prefix, destination, str(four(peak * down)), str(four(off * down)), connect, incr,
                        "2026-07-01", ""])
        else:
            out.append(row + [DECK_START, ""])
    return out


def brookline(numbering) -> list[list[str]]:
    """Brookline's deck: Europe and North America, in GBP, with their own column names and
    separate initial/next increments."""
    parents: dict[str, tuple] = {}
    out = []
    for prefix, destination, zone, kind in numbering:
        peak, off, connect, incr = price(prefix, destination, zone, kind, parents)
        parents[prefix] = (peak, off, connect, incr, kind, destination)
        if zone not in ("eu", "europe_other", "nanp"):
            continue
        fx = Decimal("0.86") * (Decimal("0.95") + Decimal("0.10") * unit("brookline", prefix))
        if prefix.startswith("44"):
            incr = "1/1"
        initial, nxt = incr.split("/")
        setup = str(four(Decimal(connect) * Decimal("0.86"))) if connect else "0"
        out.append([prefix, destination, str(four(peak * fx)), str(four(off * fx)), setup, initial, nxt,
                    "2026-01-01"])
    return out


def write(path: Path, header: list[str], rows: list[list[str]], delimiter: str) -> None:
    # no quoting is needed: destination names never hold the delimiter (checked here)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(delimiter.join(header) + "\n")
        for r in rows:
            assert not any(delimiter in v or '"' in v for v in r), r
            f.write(delimiter.join(r) + "\n")
    print(f"{path.relative_to(HERE.parent)}: {len(rows)} rows")


def main() -> None:
    numbering = read_numbering()
    DECKS.mkdir(exist_ok=True)
    write(DECKS / "lumiere-a-z.csv",
          ["prefix", "destination", "rate_peak", "rate_offpeak", "connect_fee", "increments", "effective", "until"],
          lumiere(numbering), ",")
    write(DECKS / "brookline-europe.csv",
          ["Code", "Destination", "Peak", "Off-Peak", "Setup", "Initial", "Next", "Valid From"],
          brookline(numbering), ";")


if __name__ == "__main__":
    main()
