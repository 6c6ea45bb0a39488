"""The checker and its diagnostics, tested as text: a broken rule file next to the exact
diagnostics it must produce (``x.icd`` + ``x.icd.errors``)."""

import json
import os
import time

import pytest
from helpers import GOLDEN, compare_golden

from icdsl.lang.diagnostics import render_all
from icdsl.plan.compiler import build

CHECK = GOLDEN / "check"
CASES = sorted(p.name for p in CHECK.glob("*.icd"))


def check_text(path):
    plan, program, diags = build([path], root=CHECK)
    return plan, render_all(diags, program.sources), diags


@pytest.mark.parametrize("name", CASES)
def test_golden_diagnostics(name, monkeypatch):
    monkeypatch.chdir(CHECK)
    plan, text, diags = check_text(name)
    compare_golden(CHECK / f"{name}.errors", text + ("\n" if text else ""))
    if diags and any(d.is_error for d in diags):
        assert plan is None
    else:
        assert plan is not None


def test_diagnostics_are_sorted_and_located(monkeypatch):
    monkeypatch.chdir(CHECK)
    _, _, diags = check_text("contract.icd")
    assert len(diags) >= 8
    keys = [(d.span.line, d.span.col) for d in diags]
    assert keys == sorted(keys)
    assert all(d.code[0] in "EW" and d.span.line > 0 for d in diags)


def test_json_format(tmp_path, capsys, monkeypatch):
    from typer.testing import CliRunner

    from icdsl.cli.main import app

    monkeypatch.chdir(CHECK)
    res = CliRunner().invoke(app, ["check", "--format", "json", "units.icd"])
    assert res.exit_code == 1
    data = json.loads(res.stdout)
    assert data[0]["code"] == "E214" and data[0]["line"] == 1 and data[0]["column"] == 71
    assert {"severity", "message", "file", "help", "end_line", "end_column"} <= set(data[0])


def _check_bytes(tmp_path, data: bytes):
    f = tmp_path / "x.icd"
    f.write_bytes(data)
    plan, program, diags = build([f], root=tmp_path)
    return plan, diags


def test_binary_garbage(tmp_path):
    plan, diags = _check_bytes(tmp_path, os.urandom(2048) + b"\x00\x01\x02")
    assert plan is None and diags[0].code in ("E001", "E002")


def test_not_utf8(tmp_path):
    plan, diags = _check_bytes(tmp_path, 'partner X "Caf\xe9" { currency EUR }\n'.encode("latin-1"))
    assert plan is None
    d = diags[0]
    assert (d.code, d.span.line, d.span.col) == ("E002", 1, 15)
    assert "0xe9" in d.message


def test_utf8_bom_is_accepted(tmp_path):
    plan, diags = _check_bytes(tmp_path, b'\xef\xbb\xbfpartner X "Caf\xc3\xa9" { currency EUR }\n')
    assert plan is not None and not diags


def test_twenty_megabytes_of_rows_with_one_mistake_near_the_end(tmp_path):
    rows = "".join(f'      {10_000_000 + i} "Dest {i}" 0.0100\n' for i in range(600_000))
    text = ('partner X "X" { currency EUR }\nagreement "big" v1 with X effective 2026-01-01 .. {\n'
            '  outbound voice {\n    price by destination {\n' + rows + '      99 "Bad" 0.01.0\n    }\n  }\n}\n')
    assert len(text) > 20_000_000
    t0 = time.perf_counter()
    plan, diags = _check_bytes(tmp_path, text.encode())
    assert plan is None and diags[0].code == "E012" and diags[0].span.line == 600_005
    assert time.perf_counter() - t0 < 120  # generous: it must finish, never hang


def test_empty_and_whitespace_files(tmp_path):
    for data in (b"", b"\n\n   \n", b"# only a comment"):
        plan, diags = _check_bytes(tmp_path, data)
        assert plan is not None and diags == []


def test_exit_codes(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from icdsl.cli.main import app

    monkeypatch.chdir(CHECK)
    r = CliRunner()
    assert r.invoke(app, ["check", "empty.icd"]).exit_code == 0
    assert r.invoke(app, ["check", "units.icd"]).exit_code == 1
    assert r.invoke(app, ["check", "no-such-file.icd"]).exit_code == 2
    assert r.invoke(app, ["check"]).exit_code == 2
    assert r.invoke(app, ["check", "--format", "yaml", "empty.icd"]).exit_code == 2
