"""The grammar and the standard library ship inside the wheel: a non-editable install works."""

import subprocess
import sys
import zipfile

from helpers import ROOT


def test_wheel_carries_grammar_and_stdlib(tmp_path):
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    (wheel,) = tmp_path.glob("icdsl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "icdsl/_grammar/icdsl.lark" in names
    assert any(n.startswith("icdsl/_stdlib_rules/") and n.endswith(".icd") for n in names)
    # run the installed package from the unpacked wheel, away from the source tree
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import icdsl.lang.parser as p, icdsl.lang.loader as l; "
            "assert '_grammar' in str(p.grammar_path()), p.grammar_path(); "
            "assert '_stdlib_rules' in str(l.stdlib_dir()); "
            "f, d = p.parse_text('partner X \"X\" { currency EUR }'); assert f and not d; print('ok')")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr
