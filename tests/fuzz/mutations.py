"""Mutations of rule files and example projects, shared by the fuzzers of ``tests/fuzz/`` and the
property tests of the default suite (``tests/test_fuzz_check.py``).

Every mutation is a pure function of a ``random.Random`` and the text, so a failing case is
reproduced from its seed. The kinds are the ways rule files break in practice and the ways a
fuzzer breaks them: flipped bytes, deleted, duplicated and swapped lines, tokens spliced from
elsewhere, numbers too large or too precise, dates out of range, long names and paths, odd
Unicode, deep nesting and repeated blocks.
"""

from __future__ import annotations

import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Example projects: each folder is checked as a whole (its rule files import each other and read
# decks). stdlib_rules is checked as a project of its own.
PROJECTS = [ROOT / "examples" / name for name in ("tutorial", "interconnect", "content", "mvno", "charges",
                                                   "bench")] + [ROOT / "stdlib_rules"]

_NUMBER = re.compile(r"(?<![\w.])\d[\d_]*(?:\.\d+)?(?![\w-])")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MONTH = re.compile(r"(?<![\d-])\d{4}-\d{2}(?![\d-])")
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_NAME = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")
_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|[A-Za-z_][A-Za-z0-9_]*|\d[\d_.:/-]*|[^\s\w]')

HUGE_NUMBERS = ["9" * 40, "1" + "0" * 400, "0." + "0" * 300 + "1", "123456789012345678901234567890.5",
                "0.1234567890123456789012345", "99999999999999999999", "4294967296", "18446744073709551616",
                "1_000_000_000_000_000_000", "00000000000000000000000001", "7" * 5000,
                "1000000000000000", "999999999999999.999999999999", "0.0000000000001", "9" * 1_000_001]
ODD_DATES = ["0000-01-01", "0001-01-01", "9999-12-31", "9999-12-30", "0001-01-02", "2026-02-30", "2026-13-01",
             "2026-00-10", "1899-12-31", "2400-02-29", "2100-02-29", "10000-01-01"]
ODD_MONTHS = ["0000-01", "9999-12", "0001-01", "2026-13", "2026-00", "10000-01"]
ODD_TEXT = ["\u0000", "\u200b", "\u202e", "\ufeff", "\u0301", "e\u0301", "\U0001f4a9", "\u2028", "\u00a0",
            "\t", "\r", "\r\n", "\\", '\\"', "\x7f", "ﬁ", "Ⅻ", "٣", "𝟘", "İ", "ß", "\u3000", "\ud7ff"]
KEYWORDS = ["agreement", "partner", "use", "{", "}", "(", ")", "..", "when", "and", "or", "not", "price",
            "example", "cycle", "item", "active", "period", "deck", "from", "records", "fx", "rounding",
            "calendar", "tiered_price", "commitment", "surcharge", "amends", "v1", "v99999999999999999999",
            "effective", "increments", "minimum", "connect", "==", "%", "EUR", "per", "minute", "GB", "s"]


def _replace_random(rng: random.Random, text: str, pattern: re.Pattern, make: Callable[[str], str]) -> str:
    found = list(pattern.finditer(text))
    if not found:
        return text
    m = rng.choice(found)
    return text[: m.start()] + make(m.group(0)) + text[m.end():]


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True) or [""]


def flip_bytes(rng: random.Random, text: str) -> str:
    data = bytearray(text.encode("utf-8", errors="surrogateescape"))
    for _ in range(rng.randint(1, 4)):
        if not data:
            break
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
    return data.decode("utf-8", errors="surrogateescape")


def delete_lines(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    i = rng.randrange(len(lines))
    del lines[i : i + rng.choice([1, 1, 2, 5])]
    return "".join(lines)


def duplicate_lines(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    i = rng.randrange(len(lines))
    block = lines[i : i + rng.choice([1, 1, 3, 10])]
    return "".join(lines[:i] + block * rng.choice([2, 2, 3, 50]) + lines[i:])


def swap_lines(rng: random.Random, text: str) -> str:
    lines = _lines(text)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return "".join(lines)


def splice_token(rng: random.Random, text: str) -> str:
    tokens = _TOKEN.findall(text) + KEYWORDS
    pos = rng.randrange(len(text) + 1)
    return text[:pos] + rng.choice([" ", ""]) + rng.choice(tokens) + rng.choice([" ", "", "\n"]) + text[pos:]


def delete_token(rng: random.Random, text: str) -> str:
    return _replace_random(rng, text, _TOKEN, lambda _: "")


def huge_number(rng: random.Random, text: str) -> str:
    return _replace_random(rng, text, _NUMBER, lambda _: rng.choice(HUGE_NUMBERS))


def odd_date(rng: random.Random, text: str) -> str:
    if rng.random() < 0.3:
        return _replace_random(rng, text, _MONTH, lambda _: rng.choice(ODD_MONTHS))
    return _replace_random(rng, text, _DATE, lambda _: rng.choice(ODD_DATES))


def long_name(rng: random.Random, text: str) -> str:
    n = rng.choice([256, 300, 5000])
    if rng.random() < 0.5:  # paths and texts: a long one, or one with folders
        return _replace_random(rng, text, _STRING, lambda s: '"' + rng.choice(
            ["a" * n, "d/" * (n // 2), s[1:-1] * 40, "../" * 20 + "x.icd", "x" * n + ".csv", "é" * n]) + '"')
    return _replace_random(rng, text, _NAME, lambda s: s + "_" * rng.choice([0, 1]) + "n" * n)


def odd_unicode(rng: random.Random, text: str) -> str:
    pos = rng.randrange(len(text) + 1)
    return text[:pos] + "".join(rng.choice(ODD_TEXT) for _ in range(rng.randint(1, 3))) + text[pos:]


def deep_nesting(rng: random.Random, text: str) -> str:
    depth = rng.choice([50, 1000, 20000])
    pos = rng.randrange(len(text) + 1)
    opener, closer = rng.choice([("{", "}"), ("(", ")"), ("[", "]"), ("not (", ")")])
    return text[:pos] + opener * depth + rng.choice(["", "x == 1", "1"]) + closer * rng.choice([0, depth]) + text[pos:]


def cut(rng: random.Random, text: str) -> str:
    return text[: rng.randrange(len(text) + 1)]


MUTATIONS: dict[str, Callable[[random.Random, str], str]] = {
    "flip_bytes": flip_bytes, "delete_lines": delete_lines, "duplicate_lines": duplicate_lines,
    "swap_lines": swap_lines, "splice_token": splice_token, "delete_token": delete_token,
    "huge_number": huge_number, "odd_date": odd_date, "long_name": long_name, "odd_unicode": odd_unicode,
    "deep_nesting": deep_nesting, "cut": cut,
}


def mutate(rng: random.Random, text: str, rounds: int | None = None) -> tuple[str, list[str]]:
    """``text`` with 1-3 random mutations (or ``rounds``); returns the text and the kinds applied."""
    kinds = []
    for _ in range(rounds if rounds is not None else rng.choice([1, 1, 1, 2, 3])):
        kind = rng.choice(sorted(MUTATIONS))
        text = MUTATIONS[kind](rng, text)
        kinds.append(kind)
    return text, kinds


def rule_files(project: Path) -> list[Path]:
    return sorted(project.rglob("*.icd"))


def mutated_project(rng: random.Random, project: Path, into: Path) -> list[str]:
    """Copy ``project`` into the folder ``into`` (replaced) and mutate one or two of its rule
    files; returns a description of what was done (file: kinds)."""
    if into.exists():
        shutil.rmtree(into)
    shutil.copytree(project, into, ignore=shutil.ignore_patterns("*.py", "__pycache__", "*.md"))
    files = rule_files(into)
    decks = sorted(into.rglob("*.csv")) if rng.random() < 0.15 else []
    if decks:  # sometimes a deck or traffic file instead of a rule file
        files = decks
    done = []
    for f in rng.sample(files, min(len(files), rng.choice([1, 1, 2]))):
        text, kinds = mutate(rng, f.read_text(encoding="utf-8"))
        f.write_bytes(text.encode("utf-8", errors="surrogateescape"))
        done.append(f"{f.relative_to(into)}: {'+'.join(kinds)}")
    return done
