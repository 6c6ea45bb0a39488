"""Collect the ``bench_*.py`` modules of this folder (pytest only collects ``test_*.py`` by default).

They are pytest-benchmark modules, skipped by the project's default ``--benchmark-skip``; run
them with ``pytest tests/benchmarks --benchmark-only``.
"""

import pytest


def pytest_collect_file(file_path, parent):
    if parent.session.isinitpath(file_path):  # named on the command line: pytest collects it itself
        return None
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None
