"""One assembly of a billing cycle: the cycle engine (icdsl/cycle) is the only code that builds a
charge context or evaluates a cycle's charges; the callers that used to assemble a cycle of
their own (the TUI's what-if and simulation, ``example cycle`` blocks, ``icdsl commitments``,
the plugin author kit) call the engine. Read from the source with ``ast``, so a new caller that
assembles a cycle by hand fails here."""

import ast
from pathlib import Path

import pytest
from helpers import ROOT

PACKAGE = ROOT / "icdsl"
#: the only module outside the charges layer (which defines them) that may build a
#: ChargeContext or call evaluate_cycle
ENGINE = PACKAGE / "cycle" / "charges.py"
ASSEMBLY = {"evaluate_cycle", "ChargeContext"}


def calls(path: Path) -> list[tuple[str, int]]:
    """(name, line) of every call of, or import of, evaluate_cycle and ChargeContext."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if name in ASSEMBLY:
                found.append((name, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            found += [(a.name, node.lineno) for a in node.names if a.name in ASSEMBLY]
    return found


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_only_the_engine_assembles_a_cycles_charges():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == ENGINE or path.parent == PACKAGE / "charges":
            continue
        got = calls(path)
        if got:
            offenders[str(path.relative_to(ROOT))] = got
    assert offenders == {}, ("these modules assemble a cycle's charges by hand; call icdsl.cycle.run, or "
                             f"icdsl.cycle.charges.evaluate for stated usage: {offenders}")


def test_the_guard_sees_a_hand_made_context(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from icdsl.charges.evaluate import evaluate_cycle\nimport icdsl.charges.context as c\n"
                   "lines = evaluate_cycle(c.ChargeContext(agreement=None, partner=None, cycle=None))\n")
    assert sorted(calls(bad)) == [("ChargeContext", 3), ("evaluate_cycle", 1), ("evaluate_cycle", 3)]


@pytest.mark.parametrize(("module", "engine"), [
    ("tui/whatif.py", "icdsl.cycle.run"),
    ("cycle/examples.py", "icdsl.cycle.charges.evaluate"),
    ("billing/commitments.py", "icdsl.cycle.engine"),
    ("cycle/commitments.py", "icdsl.cycle.charges.charge_contexts"),
    ("testing.py", "icdsl.cycle.run"),
    ("testing.py", "icdsl.cycle.charges.evaluate"),
])
def test_the_callers_call_the_engine(module, engine):
    assert engine in imported_modules(PACKAGE / module)


def test_the_simulation_runs_the_stores_cycle_and_holds_no_cycle_logic():
    """The TUI's simulation bills through the store (Store.run_cycle: the engine behind the
    store's inputs and sinks); it rates, evaluates and invoices nothing itself."""
    path = PACKAGE / "tui" / "simulate.py"
    text = path.read_text(encoding="utf-8")
    assert "store.run_cycle(" in text
    mods = imported_modules(path)
    assert not {m for m in mods if m.startswith(("icdsl.rating", "icdsl.charges", "icdsl.cycle"))}, mods
    assert {"icdsl.cycle.engine", "icdsl.cycle.run"} & imported_modules(PACKAGE / "billing" / "cycles.py")


def test_record_examples_stay_below_the_cycle_layer():
    assert not {m for m in imported_modules(PACKAGE / "rating" / "examples.py") if m.startswith("icdsl.cycle")}
