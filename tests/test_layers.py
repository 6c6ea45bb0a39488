"""The layers of docs/architecture.md hold: the import contract in pyproject.toml is kept (and
catches a violation), no package of icdsl imports another in a circle, and the only imports
inside functions are the lazy ones of heavy dependencies, each with its reason."""

from __future__ import annotations

import ast
import graphlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "icdsl"

#: the heavy or optional dependencies that may be imported on first use, and why
HEAVY = {
    "pyarrow": "columns: the checker and the plugin listing do not need them",
    "polars": "columns, on the paths that use them",
    "duckdb": "columns, on the paths that use them",
    "numpy": "integer money on arrays: the language does not need it",
    "sqlalchemy": "the database: only the billing commands open one",
    "alembic": "schema upgrades: only when a store is opened",
    "psycopg": "PostgreSQL: optional",
    "textual": "the terminal UI: only `icdsl tui`",
    "textual_plotext": "the dashboard's charts",
    "plotext": "the dashboard's charts",
    "fpdf": "PDF documents: only when one is written",
    "dask": "distributed cycles: optional",
    "distributed": "distributed cycles: optional",
    "lark": "the parser: `icdsl --help` and the billing commands on a store do not parse",
    "phonenumbers": "number plans: loaded on the first number normalized",
    "holidays": "holiday calendars: loaded on the first holiday asked for",
    "babel": "locale data: loaded on the first currency or locale looked up",
    "facturx": "Factur-X (pypdf, its XSDs): only when a Factur-X file is written or read",
    "pypdf": "PDF/A finishing and reading of Factur-X files: only when one is written or read",
    "saxonche": "Saxon, a large native library: only when a schematron runs",
    "stdnum": "identifier checks: only when rules declare legal details",
    "jinja2": "document templates: only when a document's layout is read",
    "pygls": "the language server: only `icdsl lsp`",
    "lsprotocol": "the language server: only `icdsl lsp`",
    "rich": "tables and progress bars: `icdsl check` and `icdsl --help` draw none",
    "uvicorn": "the web server: only `icdsl serve`",
}

#: icdsl modules that the CLI and the readers import on first use because they bring a heavy
#: dependency with them (checked below: each does import it)
HEAVY_MODULES = {
    "icdsl.billing": "sqlalchemy",
    "icdsl.charges.groups": "pyarrow",
    "icdsl.charges.percentage": "numpy",
    "icdsl.demo": "sqlalchemy",
    "icdsl.tui": "textual",
    "icdsl.plan.compiler": "lark",
    "icdsl.lang.formatter": "lark",
    "icdsl.lang.loader": "lark",
    "icdsl.cycle.examples": "pyarrow",
    "icdsl.rating.examples": "pyarrow",
    "icdsl.rating.intake": "pyarrow",
    "icdsl.rating.row": "pyarrow",
    "icdsl.rating.run": "pyarrow",
    "icdsl.routing": "polars",
    "icdsl.outputs": "lxml",
    "icdsl.outputs.pdfa": "pypdf",
    "icdsl.plan.render": "stdnum",
    "icdsl.lsp": "pygls",
    "icdsl.exporters": "pluggy",
    "icdsl.plugins": "pluggy",
    "icdsl.layouts": "jinja2",
    "icdsl.web": "fastapi",
    "icdsl.cli.main": "typer",  # the console script's launcher: only when no command server ran the command
}


def _lint(cwd: Path, env_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")
    env = None if env_path is None else {**os.environ, "PYTHONPATH": str(env_path)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=300)


def test_the_import_contract_is_kept():
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Contracts: 3 kept, 0 broken." in out.stdout


def _copy_project(tmp_path: Path) -> Path:
    shutil.copytree(PACKAGE, tmp_path / "icdsl", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_an_upward_import_breaks_the_contract(tmp_path):
    project = _copy_project(tmp_path)
    spans = project / "icdsl" / "lang" / "values.py"  # the language reaching up into the store
    spans.write_text(spans.read_text(encoding="utf-8") + "\nfrom icdsl.billing.store import open_store\n",
                     encoding="utf-8")
    out = _lint(project, project)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Contracts: 2 kept, 1 broken." in out.stdout
    assert "icdsl.lang is not allowed to import icdsl.billing" in out.stdout
    assert "icdsl.lang.values -> icdsl.billing.store" in out.stdout


def test_textual_outside_the_tui_and_the_store_imported_back_break_the_contract(tmp_path):
    project = _copy_project(tmp_path)
    money = project / "icdsl" / "money.py"
    money.write_text(money.read_text(encoding="utf-8") + "\nimport textual\n", encoding="utf-8")
    trace = project / "icdsl" / "billing" / "trace.py"
    trace.write_text(trace.read_text(encoding="utf-8") + "\nfrom icdsl.billing import store\n", encoding="utf-8")
    out = _lint(project, project)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "icdsl.money is not allowed to import textual" in out.stdout
    assert "icdsl.billing.trace is not allowed to import icdsl.billing.store" in out.stdout


def _package_of(module: str) -> str | None:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else None


def test_no_package_imports_another_in_a_circle():
    """Packages and top-level modules of icdsl, every import counted (function-local ones too),
    except those under TYPE_CHECKING."""
    graph = grimp.build_graph("icdsl", exclude_type_checking_imports=True, cache_dir=None)
    edges: dict[str, set[str]] = {}
    for importer in graph.modules:
        src = _package_of(importer)
        if src is None:
            continue
        edges.setdefault(src, set())
        for imported in graph.find_modules_directly_imported_by(importer):
            dst = _package_of(imported)
            if dst is not None and dst != src:
                edges[src].add(dst)
    try:
        order = list(graphlib.TopologicalSorter(edges).static_order())
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        chains = []
        for a, b in zip(cycle, cycle[1:], strict=False):
            chains += [f"{i} -> {j}" for i in graph.modules if _package_of(i) == a
                       for j in graph.find_modules_directly_imported_by(i) if _package_of(j) == b]
        pytest.fail(f"import cycle between packages: {' -> '.join(cycle)}; via {chains}")
    assert "icdsl.lang" in order and order.index("icdsl.lang") < order.index("icdsl.plan")



def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one node (the import cycles), iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return sorted(found)


def test_no_module_imports_another_in_a_circle():
    """Inside packages too: a cycle between two modules is a design message (move the shared
    thing down, or pass it in), not a reason for an import inside a function."""
    graph = grimp.build_graph("icdsl", exclude_type_checking_imports=True, cache_dir=None)
    edges = {m: {i for i in graph.find_modules_directly_imported_by(m) if i != m} for m in graph.modules}
    assert _strongly_connected(edges) == []


def _is_import_line(line: str) -> bool:
    return bool(re.match(r"\s*(import\s|from\s+\S+\s+import\s)", line)) or line.strip().startswith(")") or \
        bool(re.match(r"\s+\w+(\s+as\s+\w+)?,?\s*$", line))


def _reason(lines: list[str], node: ast.stmt) -> str | None:
    """The comment that gives the reason for a lazy import: on its line, or on the line above
    the run of imports it belongs to."""
    own = lines[node.lineno - 1]
    if "#" in own:
        return own.split("#", 1)[1].strip()
    i = node.lineno - 2
    while i >= 0 and _is_import_line(lines[i]) and "#" not in lines[i]:
        i -= 1
    above = lines[i].strip() if i >= 0 else ""
    return above[1:].strip() if above.startswith("#") else None


def _local_imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))

    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if in_function and isinstance(child, ast.Import | ast.ImportFrom):
                yield child
            yield from walk(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    return tree, list(walk(tree, False))


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level == 0:
        return [node.module or ""]
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return [".".join(base + ([node.module] if node.module else []))]


def local_import_problems(root: Path) -> list[str]:
    problems = []
    for path in sorted((root / "icdsl").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        module = ".".join(parts[:-1] if is_package else parts)
        tree, nodes = _local_imports(path)
        lines = path.read_text(encoding="utf-8").splitlines()
        top = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
        top |= {(n.module or "").split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom) and n.level == 0}
        for node in nodes:
            where = f"{rel}:{node.lineno}: {ast.unparse(node)}"
            for target in _targets(node, module, is_package):
                head = target.split(".")[0]
                if head == "icdsl":
                    heavy = next((m for m in HEAVY_MODULES if target == m or target.startswith(m + ".")), None)
                    if heavy is None:
                        problems.append(f"{where}: import it at the top of the module (move what makes a "
                                        "cycle down a layer, or pass it in)")
                elif head not in HEAVY:
                    problems.append(f"{where}: {head} is not a heavy dependency: import it at the top")
                elif head in top:
                    problems.append(f"{where}: the module already imports {head} at its top")
            if not _reason(lines, node):
                problems.append(f"{where}: say why it is lazy in a comment on the line (or the line above)")
    return problems


def test_function_local_imports_are_only_lazy_heavy_ones_with_a_reason():
    assert local_import_problems(ROOT) == []


def test_a_local_import_without_a_reason_or_of_a_light_module_is_found(tmp_path):
    (tmp_path / "icdsl" / "lang").mkdir(parents=True)
    (tmp_path / "icdsl" / "lang" / "x.py").write_text(
        "import pyarrow as pa\n\n\n"
        "def f():\n    from icdsl.plan.model import Plan\n    return Plan\n\n\n"
        "def g():\n    import pyarrow.compute as pc\n    return pc\n\n\n"
        "def h():\n    import polars as pl\n    return pl\n\n\n"
        "def k():\n    # lazy: polars loads only here\n    import json\n    import polars as pl\n    return pl, json\n",
        encoding="utf-8")
    found = [re.sub(r"^(\S+?:\d+): .*?: ((?:import it|say why|the module|\w+ is not).*)$", r"\1: \2", p)
             for p in local_import_problems(tmp_path)]
    assert found == [
        "icdsl/lang/x.py:5: import it at the top of the module (move what makes a cycle down a layer, or pass it in)",
        "icdsl/lang/x.py:5: say why it is lazy in a comment on the line (or the line above)",
        "icdsl/lang/x.py:10: the module already imports pyarrow at its top",
        "icdsl/lang/x.py:10: say why it is lazy in a comment on the line (or the line above)",
        "icdsl/lang/x.py:15: say why it is lazy in a comment on the line (or the line above)",
        "icdsl/lang/x.py:21: json is not a heavy dependency: import it at the top",
    ]


def test_the_heavy_modules_do_bring_their_heavy_dependency():
    graph = grimp.build_graph("icdsl", include_external_packages=True, cache_dir=None)
    wrong = []
    for module, heavy in HEAVY_MODULES.items():
        starts = [m for m in graph.modules if m == module or m.startswith(module + ".")]
        if not any(graph.chain_exists(importer=m, imported=heavy) for m in starts):
            wrong.append(f"{module} does not import {heavy}")
    assert wrong == []


def test_the_contract_lists_every_package_of_icdsl():
    """A new package must take its place in the layers (or the contract would not see it)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    block = text.split('id = "layers"', 1)[1].split("]", 1)[0]
    listed = set(re.findall(r"icdsl\.\w+", block))
    present = {f"icdsl.{p.name}" for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    present |= {f"icdsl.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert present - listed == set()
