"""``icdsl demo``: bill a month of synthetic traffic for the example partners, end to end.

1. copy the example agreements (``examples/interconnect``, ``content``, ``mvno``: their rule
   files and rate decks) into ``DIR/rules`` and compile them;
2. open a SQLite store in ``DIR`` (``icdsl.db`` and ``icdsl-data/``) and load the rules;
3. generate March 2026 of traffic for Lumière (LUMFR), Brookline (BRKGB), Pixel Forge (CPX)
   and Fleetrix (FLTX) into ``DIR/traffic/`` (one CSV per week, as a mediation system would
   drop them): numbers drawn from the agreements' own decks and tables, an hour-of-day profile
   per service, and bad rows on purpose (impossible timestamps, negative durations, a partner
   nobody declared, duplicates within and across files, a few calls to destinations the deck
   does not cover, and a day without any Brookline traffic);
4. ingest the files, run each partner's cycle (rate, validate, invoice), finalize it, and write
   every invoice and settlement statement as CSV, JSON and PDF into ``DIR/invoices/``.

Deterministic: the same ``seed`` and ``records`` give the same traffic files, the same
invoices and the same bytes (invoices are dated at the end of the period). Rerun in the same
folder, it resumes: what is done is not done again (ingest and cycles are idempotent), so a
demo killed half way and started again gives the same invoices, each billed once.

Where the examples come from: the source checkout's ``examples/`` folder (next to the
``icdsl`` package: an editable install, as the README does it), else a copy shipped inside the
package as ``icdsl/_examples`` (a wheel built with the ``force-include`` of pyproject.toml);
without either, the demo says so.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import icdsl
from icdsl.billing.amounts import present
from icdsl.billing.errors import StoreError
from icdsl.billing.store import open_store
from icdsl.outputs import write
from icdsl.plan.compiler import build
from icdsl.plugins import BUILTIN_PLUGINS, active_plugin_manager
from icdsl.rating.intake.times import parse_instant, to_datetime

EXAMPLES = ("interconnect", "content", "mvno")
PERIOD = "2026-03"
MONTH = date(2026, 3, 1)
DAYS = 31
OUTAGE = ("BRKGB", date(2026, 3, 18))  # Brookline sends nothing that day: validation warns
COLUMNS = ("id", "partner", "direction", "service", "a_number", "b_number", "start", "duration_s", "volume", "units",
           "route_class", "origin", "qos", "event", "refund_of", "refund_amount")
SHARES = {"LUMFR": 0.45, "BRKGB": 0.22, "FLTX": 0.20, "CPX": 0.13}
ZONES = {"LUMFR": "Europe/Paris", "BRKGB": "Europe/London", "FLTX": "Europe/Berlin", "CPX": "Europe/Dublin"}

# hour-of-day profiles (relative weights, local time)
VOICE_HOURS = [1, .6, .4, .3, .3, .5, 1.2, 3, 6, 8, 9, 9, 7, 8, 9, 9, 8.5, 7.5, 6.5, 5, 4, 3, 2, 1.4]
SMS_HOURS = [1.5, .8, .4, .3, .3, .5, 1.5, 4, 6, 6, 6, 6.5, 7, 6.5, 6, 6, 6.5, 7, 7.5, 7.5, 7, 6, 4.5, 2.5]
DATA_HOURS = [4, 5, 6, 5, 3, 2, 2.5, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 4.5, 4, 3.5, 3, 3, 3.5]
CONTENT_HOURS = [2, 1, .5, .3, .3, .4, 1, 2, 3, 4, 5, 6, 7, 6, 6, 6, 7, 8, 9, 10, 10, 9, 7, 4]


def examples_root() -> Path:
    """The folder holding the example projects (see the module's documentation)."""

    pkg = Path(icdsl.__file__).resolve().parent
    for candidate in (pkg.parent / "examples", pkg / "_examples"):
        if all((candidate / name).is_dir() for name in EXAMPLES):
            return candidate

    raise StoreError("the example agreements are not installed: run the demo from a source checkout "
                     "(pip install -e . in the repository, as the README says)")


def copy_examples(dest: Path) -> list[Path]:
    """Copy the rule files and decks of the examples into ``dest`` (unchanged files are kept)."""
    src = examples_root()
    out = []
    for name in EXAMPLES:
        for f in sorted((src / name).rglob("*")):
            rel = f.relative_to(src)
            if not f.is_file() or "tools" in rel.parts or f.name in ("traffic.csv", "refunds.csv"):
                continue
            if f.suffix not in (".icd", ".csv", ".md", ".toml"):  # .toml: document layouts
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists() or target.read_bytes() != f.read_bytes():
                shutil.copyfile(f, target)
        out.append(dest / name)
    return out


# --------------------------------------------------------------------------- traffic


def _deck(path: Path, sep: str, prefix_col: str, from_col: str, until_col: str | None) -> list[str]:
    """Prefixes of a deck in force during the demo month."""

    out = []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter=sep):
            start = row.get(from_col) or ""
            end = row.get(until_col) or "" if until_col else ""
            if start and date.fromisoformat(start) > date(2026, 3, 31):
                continue
            if end and date.fromisoformat(end) <= MONTH:
                continue
            out.append(row[prefix_col].strip().lstrip("+"))
    return sorted(set(out))


def _numbers(rng: np.random.Generator, prefixes: np.ndarray, n: int, length: int = 11) -> pa.Array:
    """Numbers starting with the given prefixes, padded with random digits to ``length``."""
    picks = prefixes[rng.integers(0, len(prefixes), n)] if len(prefixes) else np.array([""] * n)
    tails = rng.integers(0, 10**9, n).astype(np.int64)
    digits = pc.utf8_lpad(pa.array(tails.astype(str)), 9, "0")
    full = pc.binary_join_element_wise(pa.array(picks.astype(str)), digits, "")
    lens = np.maximum(length, pc.utf8_length(pa.array(picks.astype(str))).to_numpy() + 4)
    out = full
    for m in np.unique(lens).tolist():  # a few distinct lengths: one slice each, no Python per number
        out = pc.if_else(pa.array(lens == m), pc.utf8_slice_codeunits(full, 0, m), out)
    return out


def _starts(rng: np.random.Generator, n: int, tz: str, hours: list[float], skip: date | None = None) -> np.ndarray:
    """UTC instants (µs) in the demo month: local day uniform, local hour by ``hours``."""
    days = [MONTH + timedelta(days=i) for i in range(DAYS) if MONTH + timedelta(days=i) != skip]
    day = rng.integers(0, len(days), n)
    p = np.array(hours, float)
    hour = rng.choice(24, n, p=p / p.sum())
    sec = rng.integers(0, 3600, n)
    zone = ZoneInfo(tz)
    # the local midnight of each day as UTC µs, and its UTC offset at noon (no record falls in the
    # one-hour DST gap of 29 March at 02:00 in a way that matters: we use the day's offset at noon)
    mid = np.array([int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) for d in days], np.int64)
    off = np.array([int(datetime(d.year, d.month, d.day, 12, tzinfo=zone).utcoffset().total_seconds())
                    for d in days], np.int64)
    return (mid[day] + hour * 3600 + sec - off[day]) * 1_000_000


def _iso(us: np.ndarray) -> pa.Array:
    ts = pa.array(us, pa.timestamp("us"))
    return pc.binary_join_element_wise(pc.strftime(ts, format="%Y-%m-%dT%H:%M:%S"), "Z", "")


@dataclass
class Part:
    partner: str
    direction: str
    service: str
    share: float


def _empty(n: int) -> pa.Array:
    return pa.nulls(n, pa.string())


def _choice(rng: np.random.Generator, values: list[str], p: list[float], n: int) -> pa.Array:
    pp = np.array(p, float)
    return pa.array(np.array(values)[rng.choice(len(values), n, p=pp / pp.sum())].astype(str))


def generate(rules: Path, records: int, seed: int) -> pa.Table:
    """The month's traffic of the four partners as one table of text columns (plus bad rows)."""
    rng = np.random.default_rng(seed)
    lum = np.array(_deck(rules / "interconnect/decks/lumiere-a-z.csv", ",", "prefix", "effective", "until"))
    brk = np.array(_deck(rules / "interconnect/decks/brookline-europe.csv", ";", "Code", "Valid From", None))
    fr = np.array([p for p in lum if p.startswith("33") and not p.startswith("338")])
    ours = np.array(["331", "332", "333", "334", "335", "336", "337", "339"])
    tables = []
    counter = 0

    def add(partner: str, direction: str, service: str, n: int, b: pa.Array | None, hours: list[float],
            **extra: Any) -> None:
        nonlocal counter
        if n <= 0:
            return
        skip = OUTAGE[1] if partner == OUTAGE[0] else None
        us = _starts(rng, n, ZONES[partner], hours, skip)
        seq = pc.utf8_lpad(pa.array(np.arange(counter, counter + n).astype(str)), 7, "0")
        ids = pc.binary_join_element_wise(pa.scalar(partner), seq, "-")
        counter += n
        cols = {c: _empty(n) for c in COLUMNS}
        cols.update(id=ids, partner=pa.array([partner] * n), direction=pa.array([direction] * n),
                    service=pa.array([service] * n), start=_iso(us))
        cols["a_number"] = _numbers(rng, ours if direction == "outbound" else np.array(["44", "49", "33"]), n)
        if b is not None:
            cols["b_number"] = b
        for k, v in extra.items():
            cols[k] = v
        tables.append(pa.table(cols))

    def durations(n: int, zero: float = 0.0) -> pa.Array:
        d = np.round(rng.lognormal(4.4, 1.0, n)).astype(np.int64).clip(1, 7200)
        d[rng.random(n) < zero] = 0
        return pa.array(d.astype(str))

    total = records
    n = {k: int(total * v) for k, v in SHARES.items()}
    # Lumière: both ways, voice and SMS
    k = int(n["LUMFR"] * .5)
    france = rng.random(k) < .6
    b = pa.concat_arrays([_numbers(rng, fr, int(france.sum())), _numbers(rng, lum, k - int(france.sum()))])
    add("LUMFR", "outbound", "voice", k, b, VOICE_HOURS, duration_s=durations(k, .04),
        route_class=_choice(rng, ["standard", "premium"], [.95, .05], k))
    k = int(n["LUMFR"] * .3)
    add("LUMFR", "inbound", "voice", k, _numbers(rng, np.array(["33", "336", "337"]), k), VOICE_HOURS,
        duration_s=durations(k), origin=_choice(rng, ["eea", "non_eea"], [.97, .03], k))
    k = int(n["LUMFR"] * .1)
    add("LUMFR", "outbound", "sms", k, _numbers(rng, np.array(["336", "337"]), k), SMS_HOURS, units=pa.array(["1"] * k))
    k = n["LUMFR"] - int(n["LUMFR"] * .5) - int(n["LUMFR"] * .3) - int(n["LUMFR"] * .1)
    add("LUMFR", "inbound", "sms", k, _numbers(rng, np.array(["336", "337"]), k), SMS_HOURS, units=pa.array(["1"] * k))
    # Brookline: wholesale voice; a few calls to Brazil, which its deck does not cover
    k = int(n["BRKGB"] * .6)
    brazil = max(1, k // 400)
    b = pa.concat_arrays([_numbers(rng, brk, k - brazil, 12), _numbers(rng, np.array(["5511"]), brazil, 13)])
    add("BRKGB", "outbound", "voice", k, b, VOICE_HOURS, duration_s=durations(k))
    k = n["BRKGB"] - k
    add("BRKGB", "inbound", "voice", k, _numbers(rng, np.array(["33", "336", "337"]), k), VOICE_HOURS,
        duration_s=durations(k))
    # Pixel Forge: premium SMS on short codes, carrier billing at price points
    k = int(n["CPX"] * .7)
    add("CPX", "outbound", "sms", k, _choice(rng, ["81010", "81020", "81030"], [.5, .35, .15], k), CONTENT_HOURS,
        units=_choice(rng, ["1", "2"], [.93, .07], k))
    k = n["CPX"] - k
    add("CPX", "outbound", "carrier_billing", k, _choice(rng, ["9001", "9002", "9003", "9004"], [.4, .3, .2, .1], k),
        CONTENT_HOURS)
    tables.append(_refunds(rng, tables[-1]))
    # Fleetrix: IoT data sessions, alarm SMS, a few hotline calls
    k = int(n["FLTX"] * .8)
    vol = np.round(rng.lognormal(10.2, 1.3, k)).astype(np.int64).clip(200, 50_000_000)
    vol[rng.random(k) < .01] = 1_572_864  # firmware downloads
    # dashcam video uploads: 2,300,000 MB in the month whatever the number of records, so that
    # the month reaches the first tier of the data volume discount (from 2,000,000 MB)
    video = max(1, k // 33)
    vol[:video] = (rng.lognormal(0.0, 0.05, video) * (2_300_000 * 1_048_576 / video)).astype(np.int64)
    add("FLTX", "outbound", "data", k, None, DATA_HOURS, volume=pa.array(vol.astype(str)),
        qos=_choice(rng, ["standard", "priority"], [.9, .1], k))
    k = int(n["FLTX"] * .15)
    add("FLTX", "outbound", "sms", k, _numbers(rng, np.array(["4915", "4917"]), k, 13), SMS_HOURS,
        units=pa.array(["1"] * k))
    k = n["FLTX"] - int(n["FLTX"] * .8) - int(n["FLTX"] * .15)
    add("FLTX", "outbound", "voice", k, _numbers(rng, np.array(["4989", "4930"]), k), VOICE_HOURS,
        duration_s=durations(k))
    # event records: number portings with Lumière, SIM activations of Fleetrix's roll-out
    k = max(3, records // 5000)
    add("LUMFR", "inbound", "porting", k, _numbers(rng, np.array(["336", "337"]), k), SMS_HOURS)
    add("LUMFR", "inbound", "porting_cancellation", max(1, k // 10), None, SMS_HOURS)
    k = max(5, records // 1000)
    add("FLTX", "outbound", "sim_activation", k, None, DATA_HOURS)
    good = pa.concat_tables(tables)

    # ---- bad rows: ~0.1 % of each kind
    bad_n = max(3, records // 1000)
    pick = good.take(pa.array(rng.integers(0, good.num_rows, bad_n * 5)))
    ids = pa.array([f"BAD-{i:06d}" for i in range(bad_n * 5)])
    pick = pick.set_column(0, "id", ids)
    parts = []
    for j, how in enumerate(("timestamp", "yesterday", "negative", "unknown", "decimal")):
        t = pick.slice(j * bad_n, bad_n)
        if how == "timestamp":
            t = t.set_column(t.column_names.index("start"), "start", pa.array(["2026-02-30T10:00:00Z"] * bad_n))
        elif how == "yesterday":
            t = t.set_column(t.column_names.index("start"), "start", pa.array(["yesterday"] * bad_n))
        elif how == "negative":
            t = t.set_column(t.column_names.index("service"), "service", pa.array(["voice"] * bad_n))
            t = t.set_column(t.column_names.index("duration_s"), "duration_s", pa.array(["-5"] * bad_n))
        elif how == "unknown":
            t = t.set_column(t.column_names.index("partner"), "partner", pa.array(["ACME"] * bad_n))
        elif how == "decimal":
            t = t.set_column(t.column_names.index("service"), "service", pa.array(["voice"] * bad_n))
            t = t.set_column(t.column_names.index("duration_s"), "duration_s", pa.array(["61.5"] * bad_n))
        parts.append(t)
    dups = good.take(pa.array(rng.integers(0, good.num_rows, bad_n * 2)))  # sent twice
    return pa.concat_tables([good, *parts, dups])


def _refunds(rng: np.random.Generator, purchases: pa.Table) -> pa.Table:
    """Refunds of about 2 % of the carrier-billing purchases (at least 2), two days after the
    purchase (at the latest on 31 March, so that the month's net split deducts them): records of
    the purchase with ``event`` = ``refund`` and ``refund_of`` its id; every other one is partial
    (``refund_amount`` 1.00), the others refund the full price."""
    k = max(2, purchases.num_rows // 50)
    idx = np.sort(rng.choice(purchases.num_rows, min(k, purchases.num_rows), replace=False))
    t = purchases.take(pa.array(idx))
    last = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
    starts = [min(to_datetime(parse_instant(v)) + timedelta(days=2), last)
              .strftime("%Y-%m-%dT%H:%M:%SZ") for v in t.column("start").to_pylist()]
    n = t.num_rows
    cols = {c: t.column(c) for c in t.column_names}
    cols.update(id=pa.array([f"CPX-R{i:06d}" for i in range(n)]), start=pa.array(starts),
                event=pa.array(["refund"] * n), refund_of=t.column("id"),
                refund_amount=pa.array(["1.00" if i % 2 else "" for i in range(n)]))
    return pa.table({c: cols[c] for c in COLUMNS})


def write_weeks(table: pa.Table, folder: Path) -> list[Path]:
    """One CSV per week of the month (by the record's UTC start date; unreadable starts go to the
    first week), sorted by start; a few duplicates straddle two files."""

    folder.mkdir(parents=True, exist_ok=True)
    day = pc.cast(pc.utf8_slice_codeunits(table.column("start"), 8, 10), pa.string())
    day_num = pc.cast(pc.if_else(pc.match_substring_regex(day, r"^\d\d$"), day, "01"), pa.int64())
    week = pc.min_element_wise(pc.divide(pc.subtract(day_num, 1), 7), 4)
    table = table.append_column("_week", week)
    paths = []
    for w in range(5):
        t = table.filter(pc.equal(table.column("_week"), w)).drop_columns(["_week"])
        t = t.sort_by([("start", "ascending"), ("id", "ascending")])
        p = folder / f"march-week{w + 1}.csv"
        sink = pa.BufferOutputStream()
        pcsv.write_csv(t, sink, pcsv.WriteOptions(quoting_style="needed"))
        data = sink.getvalue().to_pybytes()
        if not p.exists() or p.read_bytes() != data:
            tmp = p.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(p)
        paths.append(p)
    return paths


# --------------------------------------------------------------------------- the run


def run_demo(directory: Path | None, *, records: int = 300_000, seed: int = 2026, db: str | None = None,
             console: Any = None, formats: tuple[str, ...] = ("csv", "json", "pdf")) -> int:
    """Run the demo in ``directory`` (a new temporary folder if None); 0 when every cycle was
    invoiced and finalized, 1 when validation stopped one."""


    console = console or Console()
    t0 = time.perf_counter()
    folder = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="icdsl-demo-"))
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]icdsl demo[/bold]: a month of interconnect billing in {folder}", highlight=False)
    progress = Progress(TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, transient=False)
    url = db or f"sqlite:///{folder / 'icdsl.db'}"
    with progress, contextlib.chdir(folder):
        # ---- rules
        task = progress.add_task("compiling the example agreements", total=3)
        projects = copy_examples(Path("rules"))
        plan, program, diags = build([p.relative_to(Path.cwd()) if p.is_absolute() else p for p in projects],
                                     Path("rules"))
        if plan is None:
            raise StoreError("the example agreements do not compile: "
                             + "; ".join(str(d) for d in diags if d.is_error)[:2000])
        progress.update(task, completed=3)
        store = open_store(url, data_dir=folder / "icdsl-data")
        try:
            store.load_plan(plan, program)
            partners = [p.code for p in plan.partners if plan.agreements_for(p.code)]
            # ---- inventory: ports, trunks, short codes, SIM cards (some activated mid-March)
            inventory = [store.import_inventory(f, strict=True) for f in sorted(Path("rules").glob("*/inventory.csv"))]
            bad = [str(r) for r in inventory if r.read.problems]
            if bad:
                raise StoreError("the example inventory has bad rows: " + "; ".join(bad)[:2000])

            # ---- traffic
            task = progress.add_task("generating March 2026 traffic", total=records)
            manifest = folder / "traffic" / "manifest.json"
            want = {"records": records, "seed": seed}
            files = sorted((folder / "traffic").glob("march-week*.csv"))
            have = json.loads(manifest.read_text()) if manifest.exists() else None
            if not (have and {k: have.get(k) for k in want} == want and len(files) == 5
                    and all(hashlib.sha256(f.read_bytes()).hexdigest() == have["files"].get(f.name) for f in files)):
                table = generate(Path("rules"), records, seed)
                files = write_weeks(table, folder / "traffic")
                manifest.write_text(json.dumps(dict(want, files={f.name: hashlib.sha256(f.read_bytes()).hexdigest()
                                                                 for f in files}), indent=2) + "\n")
            progress.update(task, completed=records)

            # ---- intake
            task = progress.add_task("ingesting 5 weekly files", total=len(files))
            intake = []
            for f in files:
                intake.append(store.ingest(f, None, plan))
                progress.advance(task)

            # ---- cycles
            task = progress.add_task("billing cycles (rate, validate, invoice)", total=len(partners))
            reports = {}
            for code in partners:
                sub = progress.add_task(f"  {code}", total=None)

                def tick(stage: str, done: int, total: int, sub=sub, code=code) -> None:
                    progress.update(sub, description=f"  {code}: {stage}", completed=done, total=total or None)

                reports[code] = store.run_cycle(code, PERIOD, plan, progress=tick)
                progress.update(sub, description=f"  {code}: {reports[code].status}", completed=1, total=1)
                progress.advance(task)
            task = progress.add_task("finalizing", total=len(partners))
            for code in partners:
                if reports[code].status in ("invoiced", "finalized"):
                    reports[code] = store.finalize_cycle(code, PERIOD)
                progress.advance(task)

            # ---- documents

            docs = [d for code in partners for d in store.cycle_documents(reports[code].cycle_id)]
            task = progress.add_task("writing invoices (CSV, JSON, PDF)", total=len(docs) * len(formats))
            out = folder / "invoices"
            written = []
            for fmt in formats:
                for d in docs:
                    written += write([d], out, fmt)
                    if fmt == "pdf" and d["kind"] not in ("statement", "share_statement"):
                        written += write([d], out, fmt, view="summary")
                    progress.advance(task)
            charges = {code: [ln.data for ln in store.charge_lines(reports[code].cycle_id)] for code in partners}
        finally:
            store.close()
    _summary(console, intake, reports, partners, docs, folder, url, written, time.perf_counter() - t0, charges)
    return 1 if any(r.blocked for r in reports.values()) else 0


def _summary(console: Any, intake: list, reports: dict, partners: list[str], docs: list[dict], folder: Path,
             url: str, written: list[Path], elapsed: float, charges: dict[str, list[dict]] | None = None) -> None:

    read = sum(r.read for r in intake)
    passed = sum(r.passed for r in intake)
    rejected = sum(r.rejected for r in intake)
    dups = sum(r.duplicates for r in intake)
    reasons: dict[str, int] = {}
    for r in intake:
        for k, v in r.by_reason.items():
            reasons[k] = reasons.get(k, 0) + v
    unknown = sorted({u for r in intake for u in r.unknown_partners})
    console.print(f"\nintake: {read:,} records read, {passed:,} passed, {rejected:,} rejected, {dups:,} duplicates "
                  f"({', '.join(f'{k} {v:,}' for k, v in sorted(reasons.items()))})"
                  + (f"; partners nobody declared: {', '.join(unknown)}" if unknown else ""), highlight=False)
    console.print()
    console.print(_traffic_table(reports, partners))
    for code in partners:
        for f in reports[code].findings:
            if f.severity in ("error", "warning"):
                console.print(f"  {code}: {f}", highlight=False, markup=False)
    console.print()
    console.print(_invoices_table(docs, partners))
    if charges is not None:
        console.print()
        _charges(console, charges)
    console.print()
    console.print(_statements_table(docs, partners))
    _statement_details(console, docs)
    kinds = ", ".join(sorted({p.suffix.lstrip(".").upper() for p in written}))
    console.print(f"\n{len(written)} files in {folder / 'invoices'} ({kinds}); done in {elapsed:.1f} s.",
                  highlight=False)
    first = next((d for d in docs if d["kind"] != "statement" and d.get("lines")), None)
    db = f"--db {url}"
    console.print("\nLook closer:", highlight=False)
    console.print(f"  icdsl cycle status {db}", highlight=False, markup=False)
    if first is not None:
        console.print(f"  icdsl invoice show {first['number']} {db}", highlight=False, markup=False)
    traffic = next((ln for d in docs if d["kind"] == "invoice" for ln in d["lines"] if ln["kind"] == "traffic"), None)
    if traffic is not None:
        console.print(f"  icdsl trace {traffic['line_id']} --records 5 {db}   (a traffic line: its records, "
                      "re-explained)", highlight=False, markup=False)
    fee = next((ln for d in docs if d["kind"] == "invoice" for ln in d["lines"] if ln["kind"] == "recurring"
                and "days" in ln["description"]), None)
    if fee is not None:
        console.print(f"  icdsl trace {fee['line_id']} {db}   (a prorated fee: item, days, formula)", highlight=False,
                      markup=False)
    share = next((d for d in docs if d["kind"] == "share_statement"), None)
    if share is not None:
        console.print(f"  icdsl invoice show {share['number'] or 'shr:' + str(share['id'])} {db}", highlight=False,
                      markup=False)
    stm = next((d for d in docs if d["kind"] == "statement"), None)
    if stm is not None:
        console.print(f"  icdsl invoice show {stm['number'] or 'stm:' + str(stm['id'])} {db}", highlight=False,
                      markup=False)
    console.print(f"  icdsl inventory list {db}", highlight=False, markup=False)
    console.print(f"  icdsl commitments FLTX --rules {folder / 'rules' / 'mvno'} --as-of 2026-03-15 {db}",
                  highlight=False, markup=False)
    _plugins(console)


def _plugins(console: Any) -> None:
    """Which plugins this run had, and how to add the example ones."""

    pm = active_plugin_manager()
    names = sorted(n for n, _ in pm.list_name_plugin() if n and n not in BUILTIN_PLUGINS)
    console.print("\nPlugins:", highlight=False)
    console.print(f"  loaded: {', '.join(names) if names else 'none besides the built-in charge types'} "
                  "('icdsl plugins' lists them with their hooks)", highlight=False, markup=False)
    console.print("  the examples: pip install plugins/icdsl-slices plugins/icdsl-mediation  (from a checkout) adds "
                  "5G network-slice charges (charge network_slice ...) and Asterisk/FreeSWITCH CDR readers "
                  "(icdsl rate --cdrs Master.csv); see docs/plugins.md", highlight=False, markup=False)


# The summary's tables fit 80 columns: a frame of spaces (box.SIMPLE_HEAD), amounts without
# their currency (a column of its own), long texts wrapped in their cell.


def _table(title: str) -> Table:
    return Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False, collapse_padding=True)


def _money(amount: Any, currency: str) -> str:
    return "-" if amount is None else f"{present(Decimal(amount), currency)}"


def _traffic_table(reports: dict, partners: list[str]) -> Table:
    """Per partner: the records of its cycle and what validation found."""

    table = _table("March 2026: traffic per partner")
    for col in ("partner", "records", "rated", "rejected", "cycle", "findings"):
        table.add_column(col, justify="right" if col in ("records", "rated", "rejected") else "left")
    for code in partners:
        r = reports[code]
        warn = [f for f in r.findings if f.severity in ("error", "warning")]
        table.add_row(code, f"{r.records_in:,}", f"{r.rated:,}", f"{r.rejected:,}", r.status,
                      "\n".join(f"{f.code} ({f.count})" for f in warn) or "-")
    return table


def _invoices_table(docs: list[dict], partners: list[str]) -> Table:
    """The invoices (and credit notes), partner by partner: what each partner pays us (what a
    credit note pays back), with the partner's total when it has several."""

    table = _table("Invoices: what each partner pays us (lines rounded once; totals = sums of lines)")
    for col in ("partner", "document", "stream", "subtotal", "tax", "total", ""):
        table.add_column(col, justify="right" if col in ("subtotal", "tax", "total") else "left")
    taxes: dict[str, set[str]] = {}
    for code in partners:
        invs = [d for d in docs if d["partner_code"] == code and d["kind"] in ("invoice", "credit_note", "debit_note")]
        sums: dict[str, list[Decimal]] = {}
        for d in invs:
            cur, sign = d["currency"], (-1 if d["kind"] == "credit_note" else 1)
            name = d.get("number") or "draft"
            table.add_row(code, name + (" (credit)" if sign < 0 else " (debit note)" if d["kind"] == "debit_note" else ""), d["stream"], _money(d["subtotal"], cur),
                          _money(d.get("tax_amount"), cur), _money(d.get("total"), cur), cur)
            if d.get("tax_label"):
                taxes.setdefault(d["tax_label"], set()).add(code)
            acc = sums.setdefault(cur, [Decimal(0), Decimal(0), Decimal(0)])
            for i, key in enumerate(("subtotal", "tax_amount", "total")):
                acc[i] += sign * Decimal(d.get(key) or 0)
        if len(invs) > 1:
            for cur, (sub, tax, tot) in sorted(sums.items()):
                table.add_row("", f"{code} pays", "", _money(sub, cur), _money(tax, cur), _money(tot, cur), cur,
                              style="bold")
        if not invs:
            table.add_row(code, "none", "", "-", "-", "-", "")
        table.add_section()
    table.caption = "tax: " + "; ".join(f"{label} ({', '.join(c for c in partners if c in codes)})"
                                        for label, codes in sorted(taxes.items())) if taxes else None
    table.caption_justify = "left"
    return table


def _statements_table(docs: list[dict], partners: list[str]) -> Table:
    """Revenue-share statements (one to each party of a share: a partner, an aggregator, our
    own) and settlement statements (what remains to pay after netting), each with the party it
    is addressed to. They are not invoices: their amounts are not added to anyone's."""

    table = _table("Revenue-share and settlement statements")
    for col in ("statement", "partner", "to", "what", "amount", ""):
        table.add_column(col, justify="right" if col == "amount" else "left")
    for code in partners:  # a partner's shares, then its settlement (which nets its share)
        for d in sorted((d for d in docs if d["partner_code"] == code), key=lambda d: d["kind"] != "share_statement"):
            cur, name = d["currency"], d.get("number") or "draft"
            if d["kind"] == "share_statement":
                party = d["party"]
                what = "our own share (kept)" if party == "us" else "revenue share to pay"
                table.add_row(name, code, party, what, _money(d["total"], cur), cur)
            elif d["kind"] == "statement":
                what = {"partner": f"net: {code} pays us", "us": f"net: we pay {code}",
                        "none": "net: nothing to pay"}[d["payer"]]
                table.add_row(name, code, code, what, _money(d["net"], cur), cur)
    return table


def _charges(console: Any, charges: dict[str, list[dict]]) -> None:
    """What the charges did: prorated recurring fees, one-time and event fees, discounts,
    commitment shortfalls, surcharges."""

    table = _table("March 2026: charges beyond traffic (each line rounded once; `icdsl trace` shows how)")
    for col in ("partner", "charge", "line", "amount", ""):
        table.add_column(col, justify="right" if col == "amount" else "left", overflow="fold")
    for code, lines in charges.items():
        whole = [d for d in lines if d["kind"] == "recurring" and d.get("details", {}).get("factor") in (None, "1")]
        for d in lines:
            if d in whole or d["kind"] == "revenue_share":
                continue
            table.add_row(code, d["kind"].replace("_", " "), d["description"], _money(d["amount"], d["currency"]),
                          d["currency"])
        if whole:
            total = sum(Decimal(d["amount"]) for d in whole)
            table.add_row(code, "recurring", f"whole periods: {len(whole)} line(s)", _money(total, whole[0]["currency"]),
                          whole[0]["currency"])
    console.print(table)


def _statement_details(console: Any, docs: list[dict]) -> None:
    """How each share was split and how each settlement nets."""

    for d in docs:
        if d["kind"] == "share_statement":
            splits = "; ".join(f"{sp['charge']} ({sp['basis']}"
                               + (f": {sp['gross']} gross less {sp['deducted']} refunded" if sp.get("gross") else "")
                               + f"): {sp['amount_split']} = "
                               + " + ".join(f"{k} {v}" for k, v in sp["parties"].items()) for sp in d["splits"])
            console.print(f"  {d.get('number') or 'draft'} to {d['party']}: {d['total']} {d['currency']} of "
                          f"{splits}", highlight=False, markup=False)
    for d in docs:
        if d["kind"] == "statement":
            console.print(f"  {d.get('number') or 'draft'} {d['partner_code']}: receivable {d['receivable']} "
                          f"- payable {d['payable']} = net {d['net']} {d['currency']}", highlight=False,
                          markup=False)
