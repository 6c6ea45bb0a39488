"""ruff is part of the test command: the tree stays clean."""

import shutil
import subprocess
import sys

import pytest
from helpers import ROOT


def test_ruff_clean():
    ruff = shutil.which("ruff") or str(__import__("pathlib").Path(sys.executable).parent / "ruff")
    if not __import__("pathlib").Path(ruff).exists():
        pytest.fail("ruff is not installed: install the test extras (pip install -e '.[test]')")
    res = subprocess.run([ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
