"""The plugin author's kit: test a plugin against icdsl in isolation, through both executors.

Use it from a plugin's tests (``pytest_plugins = ["icdsl.testing"]`` in ``conftest.py`` gives
the ``icdsl_kit`` fixture), or call the functions directly::

    from icdsl.testing import PluginKit

    def test_my_charge(tmp_path):
        kit = PluginKit(my_plugin, tmp_path=tmp_path)    # built-ins + my_plugin, nothing else
        plan = kit.build(RULES)                          # load, check, compile with kit.pm
        kit.rate(plan, [{"id": "1", ...}]).assert_agree()  # row and batch executors agree

What each helper checks:

- :func:`isolated_plugin_manager`: a fresh manager with the built-ins and the plugins under
  test only (no entry points: whatever else is installed cannot interfere); with
  ``strict=True`` (the default) any problem loading them fails the test with its message.
- :func:`build_plan`: the rule text is loaded, checked with the manager's charge types and
  compiled; errors fail the test with the rendered diagnostics (file:line:col, caret, help).
- :func:`rate_both`: the records are normalized (:func:`icdsl.rating.records.normalize_record`),
  rated one by one with :func:`icdsl.rating.row.rate_record` and as one batch with
  :func:`icdsl.rating.batch.rate_batch`; :class:`Comparison` lists every difference (rated or
  not, reason, amount, billed units, band, prefix, destination, currency).
- :func:`read_with`: a reader's output has the intake schemas and counts that reconcile.
- :func:`check_rounding_mode`, :func:`check_condition_function`: the two implementations of a
  mode (ints, int64 arrays, Decimals) or a function (row values, Arrow columns) agree.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from icdsl.plugins import PluginError, PluginManager, charge_types, make_plugin_manager, use_plugin_manager

__all__ = [
    "Comparison",
    "PluginKit",
    "build_plan",
    "check_condition_function",
    "check_rounding_mode",
    "icdsl_kit",
    "isolated_plugin_manager",
    "rate_both",
    "read_with",
]


def isolated_plugin_manager(*plugins: object, modules: Iterable[str] = (), strict: bool = True) -> PluginManager:
    """Built-ins + ``plugins`` (objects or modules) + ``modules`` (names or ``.py`` paths); no entry points."""
    pm = make_plugin_manager(tuple(plugins), modules=modules, entry_points=False)
    if strict and pm.problems:
        raise PluginError("the plugin under test has problems:\n" + "\n".join(f"  {p}" for p in pm.problems))
    return pm


def build_plan(rules: str, pm: PluginManager | None = None, *, files: Mapping[str, str] | None = None,
               directory: str | Path | None = None) -> Any:
    """Compile ``rules`` (the text of one rule file, ``rules.icd``; ``files`` adds others, e.g.
    rate decks, by relative path) with ``pm``'s charge types. Returns the Plan; fails the
    test with the diagnostics if there is an error."""
    from icdsl.lang.checker import check
    from icdsl.lang.diagnostics import render_all
    from icdsl.lang.loader import load
    from icdsl.plan.compiler import compile_checked

    pm = pm if pm is not None else isolated_plugin_manager()
    with tempfile.TemporaryDirectory() if directory is None else _nullcontext(directory) as tmp:
        root = Path(tmp)
        for rel, text in {"rules.icd": rules, **dict(files or {})}.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        with use_plugin_manager(pm):
            program, diags = load([root / "rules.icd"], root)
            if not any(d.is_error for d in diags):
                checked, more = check(program, charge_types(pm))
                diags = diags + more
            if any(d.is_error for d in diags):
                pytest.fail("the rules do not compile:\n" + render_all(diags, program.sources), pytrace=False)
            return compile_checked(checked)


class _nullcontext:
    def __init__(self, value: Any):
        self.value = value

    def __enter__(self) -> Any:
        return self.value

    def __exit__(self, *exc: Any) -> None:
        return None


_COMPARED = ("band", "billed_units", "prefix", "destination", "currency")


@dataclass
class Comparison:
    """The row executor's results (one per record, in order), the batch executor's tables, and
    the differences between them (empty when they agree)."""

    records: list[dict[str, Any]]
    row: list[Any]
    rated: Any
    rejects: Any
    differences: list[str] = field(default_factory=list)

    @property
    def amounts(self) -> list[Decimal | None]:
        return [r.amount if r.ok else None for r in self.row]

    @property
    def reasons(self) -> list[str | None]:
        return [None if r.ok else r.reason for r in self.row]

    def assert_agree(self) -> Comparison:
        if self.differences:
            pytest.fail("the row and batch executors disagree:\n" + "\n".join(f"  {d}" for d in self.differences),
                        pytrace=False)
        return self


def _normalized(records: Sequence[Mapping[str, Any]], layout: Any) -> list[dict[str, Any]]:
    from icdsl.rating.records import Reject, normalize_record

    out = []
    for i, raw in enumerate(records):
        got = normalize_record(raw, layout)
        if isinstance(got, Reject):
            pytest.fail(f"sample record {i + 1} is rejected by intake ({got}); fix the sample", pytrace=False)
        if got.get("id") is None:
            got["id"] = str(i + 1)
        out.append(got)
    return out


def rate_both(plan: Any, records: Sequence[Mapping[str, Any]], *, pm: PluginManager | None = None,
              layout: Any = None) -> Comparison:
    """Rate ``records`` (mappings as in a traffic file: strings are fine) through both executors."""
    from icdsl.rating.batch import rate_batch
    from icdsl.rating.records import records_table
    from icdsl.rating.row import rate_record

    normal = _normalized(records, layout)
    with use_plugin_manager(pm) if pm is not None else _nullcontext(None):
        row = [rate_record(plan, r) for r in normal]
        rated, rejects = rate_batch(plan, records_table(normal))
    cmp = Comparison(normal, row, rated, rejects)
    by_id_rated = {str(r["id"]): r for r in rated.to_pylist()}
    by_id_rejected = {str(r["id"]): r for r in rejects.to_pylist()}
    for rec, out in zip(normal, row, strict=True):
        key = str(rec["id"])
        if out.ok:
            got = by_id_rated.get(key)
            if got is None:
                why = by_id_rejected.get(key, {}).get("reason", "missing")
                cmp.differences.append(f"record {key}: row rated {out.amount} {out.currency}, batch: {why}")
                continue
            if Decimal(got["amount"]) != out.amount:
                cmp.differences.append(f"record {key}: amount row {out.amount}, batch {got['amount']}")
            for k in _COMPARED:
                if str(got[k]) != str(getattr(out, k)):
                    cmp.differences.append(f"record {key}: {k} row {getattr(out, k)!r}, batch {got[k]!r}")
        else:
            got = by_id_rejected.get(key)
            if got is None:
                cmp.differences.append(f"record {key}: row rejected ({out.reason}), batch rated it")
            elif got["reason"] != out.reason:
                cmp.differences.append(f"record {key}: reason row {out.reason}, batch {got['reason']}")
    return cmp


def read_with(path: str | Path, pm: PluginManager, reader: str | None = None, *,
              options: Mapping[str, str] | None = None, layout: Any = None, **kw: Any) -> tuple[Any, Any, Any]:
    """Read a file with ``pm``'s readers and check the intake contract: the record and rejects
    schemas, and counts that reconcile. Returns (records, rejects, counts)."""
    from icdsl.rating.records import FIELDS, REJECTS_SCHEMA, record_schema
    from icdsl.readers import read_all

    records, rejects, counts = read_all(path, layout, reader=reader, options=options, pm=pm, **kw)
    base = record_schema()
    for f in FIELDS:
        want = base.field(f).type
        got = records.schema.field(f).type if f in records.schema.names else None
        if got is None or (got != want and not (f == "id" and str(got) == "int64")):
            pytest.fail(f"records column {f}: {got}, expected {want}", pytrace=False)
    if not rejects.schema.equals(REJECTS_SCHEMA):
        pytest.fail(f"rejects schema {rejects.schema}, expected {REJECTS_SCHEMA}", pytrace=False)
    if not counts.reconciles():
        pytest.fail(f"counts do not reconcile: {counts}", pytrace=False)
    if counts.passed != records.num_rows or rejects.num_rows != counts.rejected + counts.duplicates:
        pytest.fail(f"counts {counts} do not match {records.num_rows} records and {rejects.num_rows} rejects",
                    pytrace=False)
    return records, rejects, counts


def check_rounding_mode(mode: Any, *, divisors: Iterable[int] = (1, 2, 3, 7, 10, 60, 1000, 10**6),
                        span: int = 2500) -> None:
    """``round_int``, ``round_array`` and ``round_decimal`` of ``mode`` (an instance or class)
    agree on every n in [-span, span] for each divisor, and stay within 1 of the exact quotient."""
    import numpy as np

    m = mode() if isinstance(mode, type) else mode
    n = np.arange(-span, span + 1, dtype=np.int64)
    for d in divisors:
        arr = np.asarray(m.round_array(n, d))
        if arr.dtype != np.int64 or arr.shape != n.shape:
            pytest.fail(f"{m.name}: round_array must return an int64 array of the input's shape", pytrace=False)
        for i, v in enumerate(n.tolist()):
            one = m.round_int(v, d)
            if one != int(arr[i]):
                pytest.fail(f"{m.name}: round_int({v}, {d}) = {one} but round_array gives {int(arr[i])}",
                            pytrace=False)
            if abs(Decimal(one) - Decimal(v) / Decimal(d)) >= 1:
                pytest.fail(f"{m.name}: round_int({v}, {d}) = {one} is not a rounding of {v}/{d}", pytrace=False)
        if d in (10, 1000):
            places = 1 if d == 10 else 3
            for v in n.tolist()[:: max(1, span // 100)]:
                got = m.round_decimal(Decimal(v).scaleb(-places), 0)
                if got != m.round_int(v, d):
                    pytest.fail(f"{m.name}: round_decimal({Decimal(v).scaleb(-places)}, 0) = {got}, "
                                f"round_int gives {m.round_int(v, d)}", pytrace=False)


def check_condition_function(fn: Any, rows: Sequence[tuple[Any, ...]], *, timezone: str = "UTC",
                             constant: Sequence[bool] | None = None) -> list[Any]:
    """``call`` on each row's arguments equals ``call_column`` on the columns of all rows.
    ``constant[i]`` passes argument i as a scalar (a constant in the rule; it must then be the
    same in every row). Returns the row results."""
    import pyarrow as pa

    from icdsl.functions import CallContext

    f = fn() if isinstance(fn, type) else fn
    ctx = CallContext(timezone)
    expected = [f.call(tuple(r), ctx) for r in rows]
    cols = []
    for i in range(f.arity):
        values = [r[i] for r in rows]
        if constant and constant[i]:
            cols.append(pa.scalar(values[0]))
        else:
            cols.append(pa.array(values))
    got = f.call_column(tuple(cols), ctx)
    if len(got) != len(rows):
        pytest.fail(f"{f.name}: call_column returned {len(got)} values for {len(rows)} rows", pytrace=False)
    for i, (want, have) in enumerate(zip(expected, got.to_pylist(), strict=True)):
        if want != have:
            pytest.fail(f"{f.name}{tuple(rows[i])}: call gives {want!r}, call_column {have!r}", pytrace=False)
    return expected


class PluginKit:
    """An isolated plugin manager and the helpers above bound to it."""

    def __init__(self, *plugins: object, modules: Iterable[str] = (), tmp_path: str | Path | None = None,
                 strict: bool = True):
        self.pm = isolated_plugin_manager(*plugins, modules=modules, strict=strict)
        self.tmp_path = Path(tmp_path) if tmp_path is not None else None

    def add(self, *plugins: object) -> PluginKit:
        """Register more plugins (version and hook names checked); a problem fails the test."""
        from icdsl.plugins import register_plugin

        before = len(self.pm.problems)
        for plugin in plugins:
            register_plugin(self.pm, plugin, getattr(plugin, "__name__", None))
        if len(self.pm.problems) > before:
            pytest.fail("the plugin under test has problems:\n"
                        + "\n".join(f"  {p}" for p in self.pm.problems[before:]), pytrace=False)
        return self

    def build(self, rules: str, *, files: Mapping[str, str] | None = None) -> Any:
        directory = None
        if self.tmp_path is not None:
            directory = Path(tempfile.mkdtemp(prefix="rules-", dir=self.tmp_path))
        return build_plan(rules, self.pm, files=files, directory=directory)

    def rate(self, plan: Any, records: Sequence[Mapping[str, Any]], *, layout: Any = None) -> Comparison:
        return rate_both(plan, records, pm=self.pm, layout=layout)

    def read(self, path: str | Path, reader: str | None = None, **kw: Any) -> tuple[Any, Any, Any]:
        return read_with(path, self.pm, reader, **kw)

    def charge_types(self) -> dict[str, Any]:
        return charge_types(self.pm)


@pytest.fixture
def icdsl_kit(tmp_path: Path) -> PluginKit:
    """A :class:`PluginKit` with the built-ins only: ``icdsl_kit.add(my_plugin)`` adds the plugin
    under test."""
    return PluginKit(tmp_path=tmp_path)
