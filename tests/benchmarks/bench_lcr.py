"""Least-cost routing benchmark: the LCR table of a sell deck of S prefixes against K supplier
decks of D prefixes each (the target: S = 100,000, K = 10, D = 50,000 in under 10 s).

As a pytest-benchmark module (skipped by the default options; collected by this folder's
conftest)::

    ICDSL_BENCH_LCR_SELL=100000 ICDSL_BENCH_LCR_DECK=50000 pytest tests/benchmarks/bench_lcr.py --benchmark-only -s

As a script (prints one JSON line: compile and table times, wall and CPU, and the table's size)::

    python tests/benchmarks/bench_lcr.py --sell 100000 --suppliers 10 --deck 50000

The workload: a universe of nested E.164 prefixes (country codes, then operator ranges and
sub-ranges of 4 to 9 digits); the sell deck and each supplier deck draw theirs from it, so the
decks overlap as real A-Z decks do and a supplier's longer prefix often overrides its shorter
one. Half the suppliers price peak and off-peak on a calendar, the others one rate; increments
1/1, 60/60, 30/6 and 60/1; some rows have a connect fee. The policy has a quality floor (no
records: every route unmeasured, allowed), a maximum cost, a minimum margin and a block. The
table is checked against the slow reference (one destination at a time, Decimal) on a sample of
destinations before it is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import tempfile
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

DAY = date(2026, 3, 2)
COUNTRIES = ("1", "33", "34", "39", "44", "49", "52", "55", "61", "7", "81", "86", "91", "234", "254", "351",
             "353", "358", "420", "971")
INCREMENTS = ("1/1", "60/60", "30/6", "60/1")


def universe(n: int, rnd: random.Random) -> list[str]:
    """About ``n`` distinct nested prefixes."""
    out: set[str] = set(COUNTRIES)
    while len(out) < n:
        cc = rnd.choice(COUNTRIES)
        length = rnd.randint(len(cc) + 2, min(len(cc) + 7, 12))
        p = cc + "".join(rnd.choice("0123456789") for _ in range(length - len(cc)))
        out.add(p)
        if rnd.random() < 0.5:  # a parent range too, so that decks nest
            out.add(p[: rnd.randint(len(cc) + 1, len(p) - 1)] if len(p) - 1 > len(cc) else p)
    return sorted(out)


def _price(rnd: random.Random) -> str:
    return f"{Decimal(rnd.randint(5, 4000)) / 10000:.4f}"


def write_project(folder: Path, sell: int, suppliers: int, deck: int, seed: int = 1) -> Path:
    rnd = random.Random(seed)
    pool = universe(max(int(sell * 1.3), deck * 2), rnd)
    decks = folder / "decks"
    decks.mkdir(parents=True, exist_ok=True)
    parts = ['partner CUST "Customer" { currency EUR }',
             'calendar biz timezone "Europe/Paris" {\n  peak mon-fri 08:00-20:00\n  offpeak otherwise\n}']
    rows = sorted(set(COUNTRIES) | set(rnd.sample(pool, min(sell, len(pool)) - len(COUNTRIES))))
    (decks / "sell.csv").write_text("prefix,destination,rate\n" + "".join(
        f"{p},Dest {p},{_price(rnd)}\n" for p in rows), encoding="utf-8")
    parts.append('agreement "Sell" v1 with CUST effective 2026-01-01 .. {\n  currency EUR\n'
                 '  inbound voice {\n    price by destination from deck "decks/sell.csv"\n    increments 1/1\n  }\n}')
    for k in range(suppliers):
        code = f"SUP{k:02d}"
        banded = k % 2 == 0
        rows = sorted(set(COUNTRIES) | set(rnd.sample(pool, min(deck, len(pool)) - len(COUNTRIES))))
        if banded:
            head = "prefix,destination,rate_peak,rate_offpeak,connect_fee,increments\n"
            body = "".join(f"{p},D {p},{_price(rnd)},{_price(rnd)},{'0.0010' if rnd.random() < 0.1 else ''},"
                           f"{rnd.choice(INCREMENTS)}\n" for p in rows)
        else:
            head = "prefix,destination,rate,connect_fee\n"
            body = "".join(f"{p},D {p},{_price(rnd)},{'0.0005' if rnd.random() < 0.1 else ''}\n" for p in rows)
        (decks / f"{code}.csv").write_text(head + body, encoding="utf-8")
        parts.append(f'partner {code} "Supplier {k}" {{ currency EUR }}')
        parts.append(f'agreement "{code}" v1 with {code} effective 2026-01-01 .. {{\n  currency EUR\n'
                     f'{"  calendar biz" if banded else ""}\n  outbound voice {{\n'
                     f'    price by destination from deck "decks/{code}.csv"\n'
                     f'    increments {rnd.choice(INCREMENTS)}\n  }}\n}}')
    parts.append("lcr bench {\n  sell CUST\n  reference call 60 s\n  minimum asr 30%\n"
                 "  maximum cost 0.3500 EUR per minute\n  minimum margin 5%\n  block SUP01 for 44\n}")
    (folder / "bench.icd").write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    return folder


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def check_against_reference(plan, table, sample: int = 40, seed: int = 2) -> int:
    """The ranked costs of a sample of destinations equal the slow reference's (no rules)."""
    from icdsl.plan.model import LcrPolicy
    from icdsl.routing.lcr import build_table, reference_table

    bare = LcrPolicy("bare", reference_s=table.policy.reference_s)
    fast = build_table(plan, bare, DAY)
    prefixes = fast.destinations["prefix"].to_list()
    picked = random.Random(seed).sample(prefixes, min(sample, len(prefixes)))
    small = _restricted(plan, picked)
    slow = reference_table(small, bare, DAY)
    for p in picked:
        for band in fast.bands:
            got = [(s, c) for _, s, c, _ in fast.ranked(p, band)]
            want = [(s, f"{c.quantize(Decimal('0.000001'))}") for s, c in slow[(p, band)]]
            assert got == want, (p, band, got, want)
    return len(picked)


def _restricted(plan, prefixes):
    """The plan with each supplier deck cut to the rows that can match ``prefixes`` (so the slow
    reference stays quick) and no sell deck."""
    import dataclasses

    from icdsl.plan.model import RateTable

    agreements = []
    for a in plan.agreements:
        services = []
        for sp in a.services:
            if sp.rates is not None and sp.direction == "outbound":
                rows = tuple(r for r in sp.rates.rows if any(p.startswith(r.prefix) for p in prefixes))
                sp = dataclasses.replace(sp, rates=RateTable(rows, sp.rates.currency, sp.rates.unit))
            services.append(sp)
        if a.partner != "CUST":
            agreements.append(dataclasses.replace(a, services=tuple(services)))
    return dataclasses.replace(plan, agreements=tuple(agreements), lcr_policies=())


def run(sell: int, suppliers: int, deck: int, folder: Path | None = None, check: bool = True) -> dict:
    from icdsl.plan.compiler import build
    from icdsl.routing.lcr import build_table

    with tempfile.TemporaryDirectory() as tmp:
        root = write_project(folder or Path(tmp), sell, suppliers, deck)
        t0, c0 = time.perf_counter(), _cpu()
        plan, _, diags = build([root / "bench.icd"])
        assert plan is not None, [str(d) for d in diags]
        t1, c1 = time.perf_counter(), _cpu()
        table = build_table(plan, plan.lcr_policies[0], DAY)
        t2, c2 = time.perf_counter(), _cpu()
        checked = check_against_reference(plan, table) if check else 0
    return {
        "bench": "lcr", "sell": sell, "suppliers": suppliers, "deck": deck,
        "compile_wall_s": round(t1 - t0, 3), "compile_cpu_s": round(c1 - c0, 3),
        "table_wall_s": round(t2 - t1, 3), "table_cpu_s": round(c2 - c1, 3),
        "destinations": table.destinations.height, "routes": table.routes.height,
        "excluded": table.excluded.height, "bands": list(table.bands), "checked_against_reference": checked,
        "load": os.getloadavg()[0],
    }


@pytest.fixture(scope="module")
def bench_plan(tmp_path_factory):
    from icdsl.plan.compiler import build

    sell = int(os.environ.get("ICDSL_BENCH_LCR_SELL", "5000"))
    deck = int(os.environ.get("ICDSL_BENCH_LCR_DECK", "2500"))
    k = int(os.environ.get("ICDSL_BENCH_LCR_SUPPLIERS", "10"))
    root = write_project(tmp_path_factory.mktemp("lcr"), sell, k, deck)
    plan, _, diags = build([root / "bench.icd"])
    assert plan is not None, diags
    return plan


def test_lcr_table(benchmark, bench_plan):
    from icdsl.routing.lcr import build_table

    table = build_table(bench_plan, bench_plan.lcr_policies[0], DAY)
    check_against_reference(bench_plan, table, sample=10)
    result = benchmark.pedantic(build_table, args=(bench_plan, bench_plan.lcr_policies[0], DAY), rounds=3)
    assert result.routes.height == table.routes.height


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sell", type=int, default=100_000)
    ap.add_argument("--suppliers", type=int, default=10)
    ap.add_argument("--deck", type=int, default=50_000)
    ap.add_argument("--no-check", action="store_true", help="skip the comparison with the slow reference")
    args = ap.parse_args()
    print(json.dumps(run(args.sell, args.suppliers, args.deck, check=not args.no_check)))


if __name__ == "__main__":
    main()
