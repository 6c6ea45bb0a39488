"""Revenue assurance benchmark: ``icdsl assure`` over a 200-partner month with a year of
history (target: under 30 s).

The history is generated straight into the store's daily aggregate (``traffic_daily``, what
each cycle writes: records per local day, direction, service and destination), with one
billing cycle row per partner and month to hang it on, rather than by running twelve months of
real cycles over tens of millions of records: ``assure`` reads only the aggregate, so its time
is the same. Each partner has ``--series`` destinations (outbound and inbound voice, SMS), a
weekly profile and Poisson noise; the month assured has a few planted anomalies (a missing day,
a destination halved, a spike) so that the findings are checked before the time is taken. The
partners also get inventory (one item of a kind nothing bills each) and one agreement ending
inside the notice window.

As a pytest-benchmark module (skipped by the default options; collected by this folder's
conftest)::

    ICDSL_BENCH_ASSURE_PARTNERS=200 pytest tests/benchmarks/bench_assure.py --benchmark-only -s

As a script (one JSON line per back end: generation, then ``assure`` wall and CPU time)::

    python tests/benchmarks/bench_assure.py --partners 200 --series 30 [--db sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

PG_URL = os.environ.get("ICDSL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PERIOD = "2026-03"
START, END = date(2026, 3, 1), date(2026, 4, 1)
SERVICES = (("outbound", "voice"), ("inbound", "voice"), ("outbound", "sms"))
WEEKLY = (1.0, 1.05, 1.1, 1.05, 1.0, 0.6, 0.45)  # Monday .. Sunday


def rules_text(partners: int) -> str:
    """Partners P000.. with one agreement each (outbound and inbound voice, SMS, a port fee);
    P000's agreement ends inside the notice window."""
    out = []
    for i in range(partners):
        code = f"P{i:03d}"
        end = "2026-05-15" if i == 0 else ""
        out.append(f'partner {code} "Partner {i}" {{\n  kind interconnect currency EUR timezone "Europe/Paris" '
                   f'billing monthly due 30 days tax vat 20%\n}}\n')
        out.append(f'agreement "{code} bilateral" v1 with {code} effective 2025-01-01 .. {end} {{\n'
                   '  outbound voice {\n    price by destination in EUR {\n'
                   '      33 "France fixed" 0.0100\n      336 "France mobile" 0.0200\n      44 "United Kingdom" 0.0150\n'
                   '    }\n    increments 60/60\n  }\n'
                   '  inbound voice { price 0.0070 EUR per minute increments 60/60 }\n'
                   '  outbound sms { price 0.0050 EUR per message }\n'
                   '  recurring "Port rental" 100.00 EUR monthly per inventory port, prorate daily, in arrears\n'
                   '}\n')
    return "".join(out)


def _months(first: date, end: date):
    m = date(first.year, first.month, 1)
    while m < end:
        nxt = date(m.year + (m.month == 12), m.month % 12 + 1, 1)
        yield m, nxt
        m = nxt


def seed_history(store, series: dict[str, list[tuple[str, str, str, float]]], first: date, end: date, *,
                 noise: str = "poisson", seed: int = 7, shape=None) -> int:
    """Daily aggregate rows (one per series and month, the days as vectors, as a cycle writes
    them) from ``first`` to ``end`` (exclusive) for each partner's series
    ``(direction, service, destination, records a day)``, on one billing cycle row per partner
    and month (status ``invoiced``). ``noise``: ``poisson`` (random, seeded) or ``fixed``
    (exact: the base, +1 every fourth week and -1 two weeks later, so that each weekday's
    median is the base and its MAD under 1). ``shape(partner, key, day, n) -> n``: changes a
    day's value (anomalies). Returns the rows written."""
    from icdsl.billing import models as M  # noqa: PLC0415 - the store: heavy, imported when seeding

    rng = np.random.default_rng(seed)
    td = M.TrafficDaily.__table__
    written = 0
    with store.session() as s:
        ids = {code: pid for pid, code in s.execute(sa.select(M.Partner.id, M.Partner.code))}
        conn = s.connection()
        for code, keys in series.items():
            for m0, m1 in _months(first, end):
                lo, hi = max(m0, first), min(m1, end)
                cyc = s.scalar(sa.select(M.BillingCycle).where(M.BillingCycle.partner_code == code,
                                                               M.BillingCycle.local_start == m0))
                cyc = cyc or M.BillingCycle(
                    partner_id=ids[code], partner_code=code, frequency="monthly", label=f"{m0:%Y-%m}",
                    timezone="Europe/Paris", local_start=m0, local_end=m1,
                    period_start=datetime(m0.year, m0.month, 1, tzinfo=UTC) - timedelta(hours=1),
                    period_end=datetime(m1.year, m1.month, 1, tzinfo=UTC) - timedelta(hours=1),
                    status="invoiced", opened_at=datetime.now(UTC), attempts=1)
                s.add(cyc)
                s.flush()
                rows = []
                days = (m1 - m0).days
                for direction, service, destination, base in keys:
                    vec = [0] * days
                    for k in range((lo - m0).days, (hi - m0).days):
                        d = m0 + timedelta(days=k)
                        if noise == "fixed":
                            week = (d - first).days // 7
                            n = int(base) + (1 if week % 4 == 0 else -1 if week % 4 == 2 else 0)
                        else:
                            n = int(rng.poisson(base * WEEKLY[d.weekday()]))
                        vec[k] = shape(code, (direction, service, destination), d, n) if shape is not None else n
                    if any(vec):
                        total = sum(vec)
                        rows.append({"cycle_id": cyc.id, "partner_code": code, "direction": direction,
                                     "service": service, "destination": destination, "currency": "EUR",
                                     "first_day": m0, "days": days, "records": total, "units": total * 60,
                                     "amount": Decimal(total) * Decimal("0.01"),
                                     "daily_records": ",".join(map(str, vec)),
                                     "daily_units": ",".join(str(n * 60) for n in vec),
                                     "daily_amounts": ",".join(format(Decimal(n) * Decimal("0.01"), "f") if n else "0"
                                                               for n in vec)})
                if rows:
                    conn.execute(td.insert(), rows)
                    written += len(rows)
    return written


def build(url: str, folder: Path, partners: int, series: int, seed: int = 7) -> dict:
    """A store with ``partners`` partners, a year of history and the month assured."""
    from icdsl.billing.store import open_store  # noqa: PLC0415 - heavy: only when the benchmark runs
    from icdsl.plan.compiler import build as compile_rules  # noqa: PLC0415

    rules = folder / "rules"
    rules.mkdir(parents=True, exist_ok=True)
    (rules / "partners.icd").write_text(rules_text(partners), encoding="utf-8")
    cwd = os.getcwd()
    os.chdir(rules)
    try:
        plan, program, diags = compile_rules(["partners.icd"])
    finally:
        os.chdir(cwd)
    assert plan is not None, [str(d) for d in diags]
    store = open_store(url, data_dir=folder / "data")
    t0 = time.perf_counter()
    store.load_plan(plan, program)
    per_partner = {}
    for i in range(partners):
        keys = []
        for j in range(series):
            direction, service = SERVICES[j % len(SERVICES)]
            keys.append((direction, service, f"Destination {j:03d}", float(20 + (37 * (i + j)) % 400)))
        per_partner[f"P{i:03d}"] = keys

    def shape(code, key, day, n):  # the planted anomalies of the month assured
        if day >= START and code == "P001":
            return 0 if day == date(2026, 3, 18) else n
        if day >= date(2026, 3, 15) and code == "P002" and key[2] == "Destination 001":
            return n // 2
        if day == date(2026, 3, 10) and code == "P003" and key[2] == "Destination 002":
            return n * 4
        return n

    rows = seed_history(store, per_partner, START - timedelta(days=364), END, seed=seed, shape=shape)
    inv = folder / "inventory.csv"
    inv.write_text("partner,item_id,kind,quantity,activated,terminated,description\n"
                   + "".join(f"P{i:03d},PORT-{i},port,1,2025-06-01,,\nP{i:03d},FIB-{i},dark_fibre,1,2025-06-01,,\n"
                             for i in range(partners)), encoding="utf-8")
    store.import_inventory(inv, strict=True)
    return {"store": store, "plan": plan, "rows": rows, "generate_s": round(time.perf_counter() - t0, 2)}


def run_assure(store, plan) -> tuple[object, float, float]:
    from icdsl.billing.assurance import assure  # noqa: PLC0415 - heavy: only when the benchmark runs

    w0, c0 = time.perf_counter(), time.process_time()
    report = assure(store, plan, PERIOD)
    return report, time.perf_counter() - w0, time.process_time() - c0


def check(report, partners: int) -> None:
    """The planted anomalies are found, and the items nothing bills, and the ending agreement."""
    codes = {(f.code, f.partner) for f in report.findings}
    assert ("traffic_missing_day", "P001") in codes, codes
    assert ("traffic_drop", "P002") in codes
    assert ("traffic_spike", "P003") in codes
    assert ("agreement_expiring", "P000") in codes
    assert sum(1 for f in report.findings if f.code == "unbilled_item_kind") == partners
    # the generated cycles bill nothing: every port (a billed kind) is reported never billed
    assert sum(1 for f in report.findings if f.code == "unbilled_item") == partners
    others = {c for c, _p in codes} - {"traffic_missing_day", "traffic_drop", "traffic_spike", "agreement_expiring",
                                         "unbilled_item_kind", "unbilled_item"}
    assert not others, others


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--partners", type=int, default=200)
    ap.add_argument("--series", type=int, default=30)
    ap.add_argument("--db", choices=("sqlite", "postgres", "both"), default="sqlite")
    args = ap.parse_args()
    for db in (("sqlite", "postgres") if args.db == "both" else (args.db,)):
        with tempfile.TemporaryDirectory(prefix="bench-assure-") as tmp:
            folder = Path(tmp)
            schema = None
            url = f"sqlite:///{folder / 'icdsl.db'}"
            if db == "postgres":
                schema = f"b_{uuid.uuid4().hex[:10]}"
                eng = sa.create_engine(PG_URL)
                with eng.begin() as c:
                    c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
                url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
            try:
                built = build(url, folder, args.partners, args.series)
                report, wall, cpu = run_assure(built["store"], built["plan"])
                check(report, args.partners)
                built["store"].close()
                print(json.dumps({"db": db, "partners": args.partners, "series": report.series,
                                  "rows": built["rows"], "generate_s": built["generate_s"],
                                  "assure_wall_s": round(wall, 2), "assure_cpu_s": round(cpu, 2),
                                  "read_s": round(report.timings["read"], 2),
                                  "check_s": round(report.timings["check"], 2),
                                  "findings": len(report.findings), "load": os.getloadavg()[0]}))
            finally:
                if schema is not None:
                    with sa.create_engine(PG_URL).begin() as c:
                        c.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    partners = int(os.environ.get("ICDSL_BENCH_ASSURE_PARTNERS", "20"))
    folder = tmp_path_factory.mktemp("assure")
    b = build(f"sqlite:///{folder / 'icdsl.db'}", folder, partners, int(os.environ.get("ICDSL_BENCH_ASSURE_SERIES", "30")))
    b["partners"] = partners
    yield b
    b["store"].close()


def test_assure_month(benchmark, built):
    report = benchmark.pedantic(lambda: run_assure(built["store"], built["plan"])[0], rounds=1, iterations=1)
    check(report, built["partners"])


if __name__ == "__main__":
    main()
