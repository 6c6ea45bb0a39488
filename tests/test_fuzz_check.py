"""No internal errors from rule files (property tests): random mutations of the example projects
(flipped bytes, deleted and duplicated lines, spliced tokens, numbers too large or too precise,
dates out of range, long names and paths, odd Unicode, deep nesting) go through the whole of
``icdsl check``; no exception escapes and every diagnostic is located (a file and a line).

Bounded to stay a few seconds; ``tests/fuzz/`` has the fuzzers that run for minutes or hours
(docs/testing.md, Fuzzing)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from fuzz.mutate_check import case, problems_of, run_cli
from fuzz.mutations import MUTATIONS, PROJECTS, mutate, mutated_project
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from icdsl.lang.diagnostics import render_all, to_json
from icdsl.plan.compiler import build

FAST = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def assert_checked(folder: Path) -> None:
    """The pipeline of ``icdsl check`` on ``folder``: it ends in a plan or in errors, every
    diagnostic is located, and both renderings work."""
    plan, program, diags = build([folder], root=folder)
    render_all(diags, program.sources)
    to_json(diags)
    unlocated = [d for d in diags if not d.span.file or d.span.line < 1]
    assert not unlocated, unlocated
    assert (plan is None) == any(d.is_error for d in diags)


@FAST
@given(project=st.sampled_from(PROJECTS), rng=st.randoms(use_true_random=False))
def test_mutated_projects_get_located_diagnostics(tmp_path_factory, project, rng):
    folder = tmp_path_factory.mktemp("p") / project.name
    mutated_project(rng, project, folder)
    assert_checked(folder)


@pytest.mark.parametrize("kind", sorted(MUTATIONS))
def test_each_kind_of_mutation(tmp_path, kind):
    """Every kind of mutation, applied alone to the tutorial and to the interconnect example."""
    for n, project in enumerate(PROJECTS[:2]):
        rng = random.Random(f"{kind}:{n}")
        folder = tmp_path / project.name
        mutated_project(rng, project, folder)
        target = sorted(folder.glob("*.icd"))[-1]
        target.write_text(MUTATIONS[kind](rng, target.read_text(encoding="utf-8", errors="surrogateescape")),
                          encoding="utf-8", errors="surrogateescape")
        assert_checked(folder)


@FAST
@given(text=st.text(max_size=400), rng=st.randoms(use_true_random=False))
def test_random_text_and_its_mutations(tmp_path_factory, text, rng):
    """Any text at all, then mutated: the parser never raises."""
    folder = tmp_path_factory.mktemp("t")
    (folder / "x.icd").write_text(mutate(rng, text or " ")[0], encoding="utf-8", errors="surrogateescape")
    assert_checked(folder)


KNOWN = [
    ("a use path of 300 characters", 'use "' + "a" * 300 + '.icd"\n'),
    ("a deck path of 300 characters", 'partner P "P" { currency EUR }\nagreement "a" v1 with P effective 2026-01-01 .. '
     '{ outbound voice { price by destination from deck "' + "d" * 300 + '.csv" } }\n'),
    ("a NUL in a path", 'use "a\\u0000b.icd"\nuse "a\x00b.icd"\n'),
    ("an item active to 9999-12-31", 'partner P "P" { currency EUR }\nagreement "a" v1 with P effective 2026-01-01 .. {\n'
     '  recurring "r" 1.00 EUR monthly per inventory port\n}\nexample cycle "c" {\n  partner P\n  period 2026-03\n'
     '  item port "X" active 2026-01-01 .. 9999-12-31\n  expect total 0.00 EUR\n}\n'),
    ("a duration of a million digits", 'partner P "P" { currency EUR }\nagreement "a" v1 with P effective 2026-01-01 .. '
     '{ outbound voice { price 0.01 EUR per minute minimum ' + "9" * 1_000_000 + " s } }\n"),
    ("a period in year 0", 'partner P "P" { currency EUR }\nexample cycle "c" {\n  partner P\n  period 0000-01\n}\n'),
    ("nesting 20,000 deep, one parenthesis missing", 'partner P "P" { currency EUR }\nagreement "a" v1 with P effective 2026-01-01 .. '
     '{ outbound voice { price 0.01 EUR per minute surcharge "s" 0.01 EUR per minute when '
     + "(" * 20_000 + "x == 1" + ")" * 19_999 + " } }\n"),
]


@pytest.mark.parametrize(("what", "text"), KNOWN, ids=[k[0] for k in KNOWN])
def test_the_known_internal_errors_are_located_errors(tmp_path, what, text):
    """The cases of issue 12 (exit 3 "internal error") and their neighbours: exit 1, located."""
    (tmp_path / "x.icd").write_text(text, encoding="utf-8")
    code, out, err = run_cli(["check", "--format", "json", str(tmp_path)])
    assert code == 1, (what, err[:500])
    assert problems_of(code, out, err) == []


def test_the_command_on_mutated_projects():
    """The fuzzer of tests/fuzz/mutate_check.py, a few cases: the command itself, exit 0 or 1."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for n in range(12):
            name, done, found = case(12, n, Path(tmp))
            assert found == [], (name, done, found)


DECK_RULES = ('partner P "P" { currency EUR }\nagreement "a" v1 with P effective 2026-01-01 .. '
              '{ outbound voice { price by destination from deck "d.csv" } }\n')
DECKS = [
    ("a field of 200 KB", "prefix,destination,rate\n33,France," + "9" * 200_000 + "\n"),
    ("increments of 5000 digits", "prefix,destination,rate,increments\n33,France,0.01,60/" + "7" * 5000 + "\n"),
    ("a superscript digit", "prefix,destination,rate,initial,subsequent\n33,France,0.01,6\u00b2,6\n"),
    ("Arabic-Indic digits in a prefix", "prefix,destination,rate\n\u0663\u0663,France,0.01\n"),
    ("a rate of 1e400", "prefix,destination,rate\n33,France,1e400\n"),
]


@pytest.mark.parametrize(("what", "deck"), DECKS, ids=[d[0] for d in DECKS])
def test_decks_out_of_range_are_located_errors(tmp_path, what, deck):
    """Found by tests/fuzz/mutate_check.py: each was an internal error (or a prefix that never matches)."""
    (tmp_path / "x.icd").write_text(DECK_RULES, encoding="utf-8")
    (tmp_path / "d.csv").write_text(deck, encoding="utf-8")
    code, out, err = run_cli(["check", "--format", "json", str(tmp_path)])
    assert code == 1, (what, err[:500])
    assert problems_of(code, out, err) == []
    assert any(d["file"].endswith("d.csv") and d["line"] == 2 for d in json.loads(out)), out[:500]


@pytest.mark.parametrize(("number", "code"), [
    ("999_999_999_999_999", None), ("1_000_000_000_000_000", "E227"), ("0.000000000001", None),
    ("0.0000000000001", "E227"), ("1.100000000000000000", None), ("0.00000000000000", None),
    ("123456789012345.123456789012", None), ("9" * 5000, "E227"),
])
def test_the_limits_of_numbers(tmp_path, number, code):
    """15 digits before the decimal point, 12 after it (trailing zeros do not count), in the
    grammar's numbers and in inline rate tables alike."""
    for text in (f'partner P "P" {{ currency EUR }}\nagreement "a" v1 with P effective 2026-01-01 .. '
                 f'{{ outbound voice {{ price {number} EUR per minute }} }}\n',
                 f'partner P "P" {{ currency EUR }}\nagreement "a" v1 with P effective 2026-01-01 .. '
                 f'{{ outbound voice {{ price by destination in EUR {{\n  33 "France" {number}\n}} }} }}\n'):
        (tmp_path / "x.icd").write_text(text, encoding="utf-8")
        plan, program, diags = build([tmp_path / "x.icd"], root=tmp_path)
        assert [d.code for d in diags] == ([code] if code else []), [d.message for d in diags]
        if code:
            assert diags[0].span.line >= 2 and diags[0].span.col > 1
