"""Parse and check a rule file with a 50,000-row inline rate table (pytest-benchmark).

Run with ``pytest tests/benchmarks/bench_language.py --benchmark-only``.
"""

from __future__ import annotations

import random

import pytest

from icdsl.lang.formatter import format_text
from icdsl.lang.parser import _lark, parse_text
from icdsl.plan.compiler import build

ROWS = 50_000


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    rng = random.Random(42)
    prefixes = sorted({str(rng.randint(10, 99_999_999)) for _ in range(ROWS * 2)})[:ROWS]
    rows = "\n".join(
        f'      {p} "Destination {i}" peak {rng.randint(1, 99_999) / 1e6:.6f} offpeak {rng.randint(1, 99_999) / 1e6:.6f}'
        f'{" connect 0.0100" if i % 4 == 0 else ""}{" increments 60/6" if i % 3 == 0 else ""}'
        for i, p in enumerate(prefixes))
    text = f"""calendar uk timezone "Europe/London" {{
  peak mon-fri 08:00-20:00
  offpeak otherwise
}}

partner BIG "Big Carrier" {{
  currency EUR
}}

agreement "Big deck" v1 with BIG effective 2026-01-01 .. {{
  outbound voice {{
    price by destination in EUR {{
{rows}
    }}
    calendar uk
    increments 60/60
  }}
}}
"""
    folder = tmp_path_factory.mktemp("big")
    (folder / "big.icd").write_text(text)
    _lark()
    return folder, text


def test_parse_50k_rows(benchmark, big_file):
    _, text = big_file
    f, diags = benchmark.pedantic(parse_text, args=(text, "big.icd"), rounds=3, iterations=1)
    assert f is not None and not diags


def test_parse_and_check_50k_rows(benchmark, big_file):
    folder, _ = big_file
    plan, _, diags = benchmark.pedantic(build, args=([folder],), rounds=3, iterations=1)
    assert plan is not None, diags
    assert len(plan.agreements[0].services[0].rates.rows) == ROWS


def test_format_50k_rows(benchmark, big_file):
    _, text = big_file
    out, diags = benchmark.pedantic(format_text, args=(text, "big.icd"), rounds=3, iterations=1)
    assert out is not None and not diags
