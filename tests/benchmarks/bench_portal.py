"""Partner portal benchmark (issue 17's target): a store of 200 partners with three years of
monthly documents; 50 concurrent clients on the loopback, each signed in as one partner's user,
asking for their invoice list and one of their invoices' page; p95 latency (target: < 200 ms).

The store is generated straight into its tables (a finalized cycle, invoice and its lines per
partner and month, sealed as finalization seals them: :func:`icdsl.billing.seal.seal_unsealed`),
not by running 7,200 real cycles: the pages read only these rows. The server is ``icdsl serve``'s
app under uvicorn in its own process (so that the clients do not share its interpreter); the
clients are httpx's asynchronous client, with a bounded number of requests.

Run as a script (prints one JSON line: generation time, then per page p50/p95/max in ms, the
requests per second and the server's CPU seconds)::

    python tests/benchmarks/bench_portal.py [--partners 200] [--months 36] [--clients 50]
        [--requests 2000] [--db sqlite|postgres] [--workers 1] [--warmup 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

PG_URL = os.environ.get("ICDSL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PASSWORD = "benchmark password 1"
SECRET = "bench" * 8


def _month(start: date, k: int) -> tuple[date, date]:
    y, m = divmod(start.month - 1 + k, 12)
    first = date(start.year + y, m + 1, 1)
    y2, m2 = divmod(first.month, 12)
    return first, date(first.year + y2, m2 + 1, 1)


def generate(url: str, data: Path, partners: int, months: int, users: int) -> dict[str, str]:
    """The store: ``partners`` x ``months`` finalized invoices (8 lines each), sealed; a user per
    partner for the first ``users`` partners; their session cookies (user name -> cookie)."""
    import sqlalchemy as sa

    from icdsl.billing import accounts
    from icdsl.billing import models as M
    from icdsl.billing.seal import seal_unsealed
    from icdsl.billing.store import open_store

    store = open_store(url, data_dir=data)
    t = datetime(2027, 1, 5, tzinfo=UTC)
    start = date(2024, 1, 1)
    seq = 0
    with store.session() as s:
        for p in range(partners):
            code = f"P{p:03d}"
            row = M.Partner(code=code, name=f"Partner {p:03d} Telecom", kind="carrier", currency="EUR", timezone="UTC",
                            billing="monthly", due_days=30, tax_kind="vat", tax_rate=Decimal("0.2"), country="FR",
                            attributes={}, decl_hash=uuid.uuid4().hex, source_file="bench.icd", span="bench.icd:1:1",
                            created_at=t, updated_at=t)
            s.add(row)
            s.flush()
            for k in range(months):
                first, end = _month(start, k)
                cyc = M.BillingCycle(partner_id=row.id, partner_code=code, frequency="monthly", label=first.strftime("%Y-%m"),
                                     timezone="UTC", local_start=first, local_end=end,
                                     period_start=datetime(first.year, first.month, 1, tzinfo=UTC),
                                     period_end=datetime(end.year, end.month, 1, tzinfo=UTC), status="finalized",
                                     opened_at=t, finalized_at=t, attempts=1)
                s.add(cyc)
                s.flush()
                seq += 1
                lines = [Decimal(random.randint(1000, 9_999_999)) / 100 for _ in range(8)]
                sub = sum(lines, Decimal(0))
                tax = (sub * Decimal("0.2")).quantize(Decimal("0.01"))
                inv = M.Invoice(partner_id=row.id, partner_code=code, partner_name=row.name, cycle_id=cyc.id,
                                stream="interconnect", currency="EUR", status="draft",
                                number=None, issue_date=end - timedelta(days=1),
                                due_date=end + timedelta(days=29), subtotal=sub, tax_kind="vat",
                                tax_rate=Decimal("0.2"), tax_amount=tax, total=sub + tax, created_at=t, finalized_at=None,
                                taxable_amount=sub)
                s.add(inv)
                s.flush()
                for i, amount in enumerate(lines, 1):
                    s.add(M.InvoiceLine(invoice_id=inv.id, line_no=i, kind="traffic",
                                        description=f"outbound voice to destination {i}", direction="outbound",
                                        service="voice", destination=f"destination {i}", quantity=Decimal(60_000 * i),
                                        unit="second", rate=Decimal("0.0123"), rate_unit="minute", amount=amount,
                                        currency="EUR", created_at=t))
                s.flush()  # then finalized, as finalization does: its lines are fixed from then on
                inv.status, inv.number, inv.finalized_at = "finalized", f"INV-{first.year}-{seq:06d}", t
        s.flush()
        seal_unsealed(s)
    cookies = {}
    with store.session() as s:
        for p in range(users):
            accounts.add_user(s, f"user{p:03d}", PASSWORD, partner=f"P{p:03d}")
    for p in range(users):
        with store.session() as s:
            got = accounts.sign_in(s, f"user{p:03d}", PASSWORD, "127.0.0.1")
        cookies[f"P{p:03d}"] = got.cookie
    with store.reading() as s:
        numbers = {}
        for code, number in s.execute(sa.select(M.Invoice.partner_code, M.Invoice.number)):
            numbers.setdefault(code, []).append(number)
    store.close()
    return {"cookies": cookies, "numbers": numbers}


SERVER = """
import os, sys, uvicorn
os.environ.update(ICDSL_DB=sys.argv[1], ICDSL_DATA=sys.argv[2], ICDSL_SECRET_KEY=sys.argv[3])
uvicorn.run("icdsl.web.app:from_environment", factory=True, host="127.0.0.1", port=int(sys.argv[4]),
            workers=int(sys.argv[5]), log_level="warning", timeout_worker_healthcheck=60)
"""


def _cpu(pid: int) -> float:
    """CPU seconds of a process and its children (the server's workers), living or reaped."""
    total = 0.0
    for p in [pid] + _children(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []
    return kids + [g for k in kids for g in _children(k)]


async def load(base: str, fixture: dict, clients: int, requests: int) -> dict[str, list[float]]:
    import httpx

    cookies, numbers = fixture["cookies"], fixture["numbers"]
    partners = sorted(cookies)
    times: dict[str, list[float]] = {"list": [], "document": []}
    errors = []
    left = [requests]

    async def client(k: int) -> None:
        code = partners[k % len(partners)]
        headers = {"Cookie": f"__Host-icdsl-session={cookies[code]}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as c:
            rng = random.Random(k)
            while left[0] > 0:
                left[0] -= 1
                kind = "list" if rng.random() < 0.5 else "document"
                path = (f"/p/{code}/documents" if kind == "list"
                        else f"/p/{code}/documents/{rng.choice(numbers[code])}")
                t0 = time.perf_counter()
                r = await c.get(path)
                times[kind].append(time.perf_counter() - t0)
                if r.status_code != 200:
                    errors.append((path, r.status_code))
    await asyncio.gather(*(client(k) for k in range(clients)))
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, e.g. {errors[:3]}")
    return times


def _pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--partners", type=int, default=200)
    ap.add_argument("--months", type=int, default=36)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--workers", type=int, default=1, help="server processes")
    ap.add_argument("--warmup", type=int, default=0,
                    help="requests made first and not measured (a server that has been running: its documents "
                         "built and their seals checked once, kept per process)")
    ap.add_argument("--store", type=Path, default=None,
                    help="keep the generated SQLite store in this folder and use it again on later runs (to "
                         "compare two versions of the code on the same store: its sessions last 12 hours)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="icdsl-bench-portal-") as tmp:
        if args.store is not None:
            if args.db != "sqlite":
                raise SystemExit("--store keeps a SQLite store only")
            args.store.mkdir(parents=True, exist_ok=True)
            tmp = str(args.store.resolve())
        schema = None
        if args.db == "postgres":
            import sqlalchemy as sa

            schema = f"bench_{uuid.uuid4().hex[:10]}"
            eng = sa.create_engine(PG_URL)
            with eng.begin() as c:
                c.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            eng.dispose()
            url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
        else:
            url = f"sqlite:///{Path(tmp) / 'icdsl.db'}"
        try:
            t0 = time.perf_counter()
            kept = Path(tmp) / "fixture.json"
            if args.store is not None and kept.exists():
                fixture = json.loads(kept.read_text())
            else:
                fixture = generate(url, Path(tmp) / "data", args.partners, args.months,
                                   min(args.clients, args.partners))
                if args.store is not None:
                    kept.write_text(json.dumps(fixture))
            generated = time.perf_counter() - t0
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            proc = subprocess.Popen([sys.executable, "-c", SERVER, url, str(Path(tmp) / "data"), SECRET, str(port),
                                     str(args.workers)])
            try:
                import httpx

                for _ in range(200):
                    try:
                        if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.1)
                if args.warmup:
                    asyncio.run(load(f"http://127.0.0.1:{port}", fixture, args.clients, args.warmup))
                cpu0 = _cpu(proc.pid)
                t1 = time.perf_counter()
                times = asyncio.run(load(f"http://127.0.0.1:{port}", fixture, args.clients, args.requests))
                wall = time.perf_counter() - t1
                cpu = _cpu(proc.pid) - cpu0
            finally:
                proc.terminate()
                proc.wait(timeout=20)
        finally:
            if schema:
                import sqlalchemy as sa

                eng = sa.create_engine(PG_URL)
                with eng.begin() as c:
                    c.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                eng.dispose()
    out = {"db": args.db, "workers": args.workers, "partners": args.partners, "documents": args.partners * args.months,
           "clients": args.clients, "requests": args.requests, "warmup": args.warmup, "generate_s": round(generated, 1),
           "wall_s": round(wall, 2), "requests_per_s": round(args.requests / wall, 1),
           "server_cpu_s": round(cpu, 2), "server_cpu_ms_per_request": round(cpu * 1000 / args.requests, 2)}
    for kind, values in times.items():
        out[kind] = {"n": len(values), "p50_ms": round(_pct(values, 0.5), 1), "p95_ms": round(_pct(values, 0.95), 1),
                     "max_ms": round(max(values) * 1000, 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
