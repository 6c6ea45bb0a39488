"""A document as JSON: every key, amounts as exact decimal text, dates as ISO text."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from icdsl.outputs.views import file_stem


def plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def dumps(doc: Mapping[str, Any]) -> str:
    return json.dumps(plain(doc), indent=2, ensure_ascii=False) + "\n"


def write_json(doc: Mapping[str, Any], directory: Path) -> Path:
    path = Path(directory) / f"{file_stem(doc)}.json"
    path.write_text(dumps(doc), encoding="utf-8")
    return path
