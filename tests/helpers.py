import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = bool(os.environ.get("ICDSL_UPDATE_GOLDEN"))


def compare_golden(path: Path, actual: str) -> None:
    """Assert ``actual`` equals the golden file; ICDSL_UPDATE_GOLDEN=1 rewrites it."""
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"missing golden file {path}; run with ICDSL_UPDATE_GOLDEN=1 to create it")
        path.write_text(actual, encoding="utf-8")
        return
    assert actual == path.read_text(encoding="utf-8")
