"""The compiled-plan cache (icdsl.plan.cache): used while nothing changed, rebuilt on every
change (a rule file, a deck, a file added to the folder, icdsl's code or version), and never
used when an entry is corrupt, truncated or signed by another cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from icdsl.cli.main import app
from icdsl.plan import cache as plan_cache
from icdsl.plan.cache import PlanCache, build_cached
from icdsl.plan.render import render_plan

TUTORIAL = Path(__file__).resolve().parent.parent / "examples" / "tutorial"


@pytest.fixture
def project(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    shutil.copytree(TUTORIAL, folder)
    monkeypatch.chdir(folder)
    monkeypatch.setenv(plan_cache.ENV_DIR, str(tmp_path / "cache"))
    monkeypatch.delenv(plan_cache.ENV_OFF, raising=False)
    return folder


def _entries(cache: PlanCache) -> list[Path]:
    return sorted(cache.folder.glob("*.plan"))


def test_an_unchanged_project_is_answered_from_the_cache_with_the_same_plan(project):
    cache = PlanCache()
    first = build_cached([Path(".")], None, cache)
    assert first.ok and not first.cached and cache.stats["stored"] == 1
    second = build_cached([Path(".")], None, cache)
    assert second.cached and cache.stats["hit"] == 1
    assert second.program is None  # nothing was parsed
    assert render_plan(second.get_plan()) == render_plan(first.plan)
    assert second.entry_count == first.entry_count == 1
    assert [d.to_dict() for d in second.diagnostics] == [d.to_dict() for d in first.diagnostics]


def test_the_entry_lists_the_rule_file_the_deck_and_the_stdlib_import_it_read(project):
    cache = PlanCache()
    build_cached([Path(".")], None, cache)
    (entry,) = _entries(cache)
    data = entry.read_bytes()
    n = int.from_bytes(data[len(plan_cache.MAGIC) + 32:len(plan_cache.MAGIC) + 40], "big")
    header = json.loads(data[len(plan_cache.MAGIC) + 40:len(plan_cache.MAGIC) + 40 + n])
    read = {Path(f[0]).name for f in header["files"]}
    assert {"acme.icd", "acme-a-z.csv", "calendars.icd"} <= read
    assert str(project.resolve()) in {f for f, _ in header["folders"]}


@pytest.mark.parametrize("change", ["deck", "rule file", "new rule file"])
def test_a_changed_source_is_a_rebuild_with_the_new_content(project, change):
    cache = PlanCache()
    before = render_plan(build_cached([Path(".")], None, cache).plan)
    if change == "deck":
        deck = project / "decks" / "acme-a-z.csv"
        deck.write_text(deck.read_text().replace("0.0070", "0.0071", 1))
    elif change == "rule file":
        rules = project / "acme.icd"
        rules.write_text(rules.read_text().replace('"Acme voice"', '"Acme voice 2"'))
    else:
        (project / "more.icd").write_text('partner BETA "Beta" {\n  currency EUR\n}\n')
    again = build_cached([Path(".")], None, cache)
    assert not again.cached and cache.stats["stale"] == 1
    assert render_plan(again.plan) != before
    assert build_cached([Path(".")], None, cache).cached  # and the new plan is kept


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "empty", "foreign key"])
def test_a_corrupt_or_foreign_entry_is_discarded_and_rebuilt_never_used(project, damage, tmp_path):
    cache = PlanCache()
    build_cached([Path(".")], None, cache)
    (entry,) = _entries(cache)
    data = entry.read_bytes()
    if damage == "flipped byte":
        data = data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:]
    elif damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "empty":
        data = b""
    else:  # an entry made by another cache (another user's, a copied folder): valid but not ours
        other = tmp_path / "other"
        other.mkdir()
        (other / "key").write_bytes(b"k" * 32)
        header, payload = plan_cache._unpack(data, plan_cache._secret(cache.folder))
        data = plan_cache._pack(header, payload, b"k" * 32)
    entry.write_bytes(data)
    again = build_cached([Path(".")], None, cache)
    assert not again.cached and again.plan is not None
    assert cache.stats["corrupt"] == 1
    assert build_cached([Path(".")], None, cache).cached  # rewritten whole


def test_a_changed_icdsl_version_or_code_is_another_key(project, monkeypatch):
    cache = PlanCache()
    build_cached([Path(".")], None, cache)
    monkeypatch.setattr(plan_cache, "__version__", "99.0")
    assert not build_cached([Path(".")], None, cache).cached
    monkeypatch.setattr(plan_cache, "code_fingerprint", lambda: "edited checkout")
    assert not build_cached([Path(".")], None, cache).cached
    assert len(_entries(cache)) == 3


def test_a_build_with_errors_is_not_kept_and_its_diagnostics_are_fresh(project):
    cache = PlanCache()
    (project / "decks" / "acme-a-z.csv").unlink()
    built = build_cached([Path(".")], None, cache)
    assert not built.ok and any(d.code == "E402" for d in built.diagnostics)
    assert _entries(cache) == []


def test_switched_off_by_the_environment(project, monkeypatch):
    monkeypatch.setenv(plan_cache.ENV_OFF, "off")
    cache = PlanCache()
    build_cached([Path(".")], None, cache)
    assert not build_cached([Path(".")], None, cache).cached and _entries(cache) == []


def test_check_and_rate_from_the_cache_say_what_they_said_without_it(project, tmp_path):
    runner = CliRunner()
    check = [runner.invoke(app, ["check", ".", "--format", "json"]) for _ in range(2)]
    assert check[0].exit_code == check[1].exit_code == 0
    assert check[0].output == check[1].output
    assert len(_entries(PlanCache())) == 1
    outs = []
    for i in range(2):
        r = runner.invoke(app, ["rate", ".", "--cdrs", "traffic.csv", "--out", str(tmp_path / f"out{i}")])
        assert r.exit_code == 0, r.output
        outs.append(json.loads((tmp_path / f"out{i}" / "summary.json").read_text()))
    assert PlanCache().folder == tmp_path / "cache"
    for summary in outs:
        summary.pop("outputs", None)
        summary.pop("seconds", None)
    assert outs[0] == outs[1]
