"""Micro-benchmarks of the batch executor's kernels on 1M synthetic values (no data files needed).

Run with ``pytest tests/benchmarks --benchmark-only -k kernels``; each one also checks its answer.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from icdsl.money import div_round_array
from icdsl.rating.kernels import PrefixTable, StringBytes, div_round

N = 1_000_000


@pytest.fixture(scope="module")
def numbers():
    rng = np.random.default_rng(1)
    lengths = rng.integers(11, 16, N)
    digits = rng.integers(0, 10, (N, 15))
    texts = ["".join(map(str, d[:n])) for d, n in zip(digits[:20_000], lengths[:20_000], strict=True)]
    return pa.array(texts * (N // len(texts)))


def test_kernels_digit_keys(benchmark, numbers):
    sb = StringBytes(numbers)
    keys, ok = benchmark(sb.digit_keys, 10, 0, len(numbers))
    assert ok.all()
    assert keys[:3].tolist() == [int(s[:10]) for s in numbers[:3].to_pylist()]


def test_kernels_prefix_lookup(benchmark, numbers):
    rng = np.random.default_rng(2)
    prefixes = sorted(
        {
            str(int(x))[: int(n)]
            for x, n in zip(rng.integers(10**9, 10**10, 50_000), rng.integers(1, 11, 50_000), strict=True)
        }
    )
    table = PrefixTable(prefixes, list(range(len(prefixes))), 10)
    keys, _ = StringBytes(numbers).digit_keys(10, 0, len(numbers))
    rows = benchmark(table.lookup, keys)
    index = {p: i for i, p in enumerate(prefixes)}
    for k, r in zip(keys[:2000].tolist(), rows[:2000].tolist(), strict=True):
        s = f"{k:010d}"
        want = next((index[s[:n]] for n in range(10, 0, -1) if s[:n] in index), -1)
        assert r == want


@pytest.mark.parametrize("mode", ["half_up", "half_even", "up", "down"])
def test_kernels_div_round(benchmark, mode):
    n = np.random.default_rng(3).integers(0, 10**12, N)
    got = benchmark(div_round, n, 60, mode, True)
    assert (got == div_round_array(n, 60, mode)).all()
