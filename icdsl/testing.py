"""The plugin author's kit: test a plugin against icdsl in isolation, through both executors.

Use it from a plugin's tests (``pytest_plugins = ["icdsl.testing"]`` in ``conftest.py`` gives
the ``icdsl_kit`` fixture), or call the functions directly::

    from icdsl.testing import PluginKit

    def test_my_charge(tmp_path):
        kit = PluginKit(my_plugin, tmp_path=tmp_path)    # built-ins + my_plugin, nothing else
        plan = kit.build(RULES)                          # load, check, compile with kit.pm
        kit.rate(plan, [{"id": "1", ...}]).assert_agree()  # row and batch executors agree
        kit.check(BROKEN).text                           # what `icdsl check` says, rendered
        kit.evaluate(plan, "2026-03", records="usage.csv")  # the cycle's charge lines

What each helper checks:

- :func:`isolated_plugin_manager`: a fresh manager with the built-ins and the plugins under
  test only (no entry points: whatever else is installed cannot interfere); with
  ``strict=True`` (the default) any problem loading them fails the test with its message.
- :func:`build_plan`: the rule text is loaded, checked with the manager's charge types and
  compiled; errors fail the test with the rendered diagnostics (file:line:col, caret, help).
- :func:`check_rules`: the diagnostics of a rule text (never fails): to test the mistakes a
  charge type reports, rendered exactly as ``icdsl check`` prints them.
- :func:`rate_both`: the records are normalized (:func:`icdsl.rating.records.normalize_record`),
  rated one by one with :func:`icdsl.rating.row.rate_record` and as one batch with
  :func:`icdsl.rating.batch.rate_batch_with_charges`; :class:`Comparison` lists every
  difference: every column of the rated table, each reject's reason and detail, and every
  per-record charge (surcharges, plugins' per-record types) with its amount.
- :func:`evaluate_charges`: the cycle-level charge lines of an agreement for a cycle
  (:func:`icdsl.charges.evaluate.evaluate_cycle`), with event records given or read from a
  traffic file (:func:`event_types` says which ones the charges read).
- :func:`read_with`: a reader's output has the intake schemas and counts that reconcile.
- :func:`check_rounding_mode`, :func:`check_condition_function`: the two implementations of a
  mode (ints, int64 arrays, Decimals) or a function (row values, Arrow columns) agree.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from icdsl.charges.context import ChargeContext, events_from_records
from icdsl.charges.evaluate import charge_type, evaluate_cycle
from icdsl.charges.periods import Days
from icdsl.functions import CallContext
from icdsl.lang.checker import check
from icdsl.lang.diagnostics import Diagnostic, render_all
from icdsl.lang.loader import load
from icdsl.plan.compiler import compile_checked
from icdsl.plugins import (
    PluginError,
    PluginManager,
    charge_types,
    make_plugin_manager,
    register_plugin,
    use_plugin_manager,
)
from icdsl.rating.batch import rate_batch_with_charges
from icdsl.rating.records import (
    FIELDS,
    REJECTS_SCHEMA,
    Reject,
    normalize_record,
    record_schema,
    records_table,
)
from icdsl.rating.result import RATED_COLUMNS
from icdsl.rating.row import rate_record
from icdsl.readers import read_all

__all__ = [
    "Comparison",
    "Diagnostics",
    "PluginKit",
    "build_plan",
    "check_condition_function",
    "check_rounding_mode",
    "check_rules",
    "evaluate_charges",
    "event_types",
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


def _write_rules(root: Path, rules: str, files: Mapping[str, str] | None) -> Path:
    for rel, text in {"rules.icd": rules, **dict(files or {})}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "rules.icd"


def _load_and_check(rules: str, pm: PluginManager, files: Mapping[str, str] | None,
                    directory: str | Path | None, then: Any = None) -> tuple[Any, Any, list[Any], Any]:
    """(program, checked or None, diagnostics, ``then(checked)`` when there is no error) of
    ``rules`` written as ``rules.icd``; ``then`` runs while the files exist (decks are read
    when the plan is compiled)."""

    with tempfile.TemporaryDirectory() if directory is None else _nullcontext(directory) as tmp:
        root = Path(tmp)
        path = _write_rules(root, rules, files)
        with use_plugin_manager(pm):
            program, diags = load([path], root)
            checked = result = None
            if not any(d.is_error for d in diags):
                checked, more = check(program, charge_types(pm), pm)
                diags = diags + more
            if then is not None and checked is not None and not any(d.is_error for d in diags):
                result = then(checked)
    return program, checked, diags, result


def build_plan(rules: str, pm: PluginManager | None = None, *, files: Mapping[str, str] | None = None,
               directory: str | Path | None = None) -> Any:
    """Compile ``rules`` (the text of one rule file, ``rules.icd``; ``files`` adds others, e.g.
    rate decks, by relative path) with ``pm``'s charge types. Returns the Plan; fails the
    test with the diagnostics if there is an error."""

    pm = pm if pm is not None else isolated_plugin_manager()
    program, _, diags, plan = _load_and_check(rules, pm, files, directory, compile_checked)
    if any(d.is_error for d in diags):
        pytest.fail("the rules do not compile:\n" + render_all(diags, program.sources), pytrace=False)
    return plan


@dataclass
class Diagnostics:
    """What ``icdsl check`` would say about a rule text: ``items`` (sorted by place), ``codes``,
    and ``text``, rendered exactly as the CLI prints it (``rules.icd:LINE:COL: error[CODE]:
    message``, the source line, a caret, the help)."""

    items: list[Any]
    text: str

    @property
    def codes(self) -> list[str]:
        return [d.code for d in self.items]

    @property
    def errors(self) -> list[Any]:
        return [d for d in self.items if d.is_error]

    def at(self, line: int) -> list[Any]:
        return [d for d in self.items if d.span.line == line]


def check_rules(rules: str, pm: PluginManager | None = None, *, files: Mapping[str, str] | None = None
                ) -> Diagnostics:
    """Check ``rules`` with ``pm``'s charge types and return the diagnostics (never fails the
    test): to test the mistakes a charge type reports, with their places and help lines."""

    pm = pm if pm is not None else isolated_plugin_manager()

    program, _, diags, _ = _load_and_check(rules, pm, files, None)
    items = sorted(diags, key=Diagnostic.sort_key)
    text = render_all(items, program.sources)
    # the files were in a temporary folder: show their paths as given (rules.icd, decks/x.csv)
    prefixes = {d.span.file[: -len(rel)] for d in items for rel in ("rules.icd", *(files or {}))
                if d.span.file.endswith(rel) and d.span.file != rel}
    for prefix in sorted(prefixes, key=len, reverse=True):
        text = text.replace(prefix, "")
        items = [replace(d, span=replace(d.span, file=d.span.file[len(prefix):]))
                 if d.span.file.startswith(prefix) else d for d in items]
    return Diagnostics(items, text)


class _nullcontext:
    def __init__(self, value: Any):
        self.value = value

    def __enter__(self) -> Any:
        return self.value

    def __exit__(self, *exc: Any) -> None:
        return None


@dataclass
class Comparison:
    """The row executor's results (one per record, in order), the batch executor's tables
    (rated, rejects, per-record charges), and the differences between them (empty when they
    agree)."""

    records: list[dict[str, Any]]
    row: list[Any]
    rated: Any
    rejects: Any
    charges: Any = None
    differences: list[str] = field(default_factory=list)

    @property
    def amounts(self) -> list[Decimal | None]:
        return [r.amount if r.ok else None for r in self.row]

    @property
    def reasons(self) -> list[str | None]:
        return [None if r.ok else r.reason for r in self.row]

    @property
    def surcharges(self) -> list[list[tuple[str, Decimal]]]:
        """Per record: the (charge label, amount) of each per-record charge that applies to it."""
        return [[(h.charge, h.amount) for h in r.surcharges] if r.ok else [] for r in self.row]

    def assert_agree(self) -> Comparison:
        if self.differences:
            pytest.fail("the row and batch executors disagree:\n" + "\n".join(f"  {d}" for d in self.differences),
                        pytrace=False)
        return self


def _normalized(records: Sequence[Mapping[str, Any]], layout: Any) -> list[dict[str, Any]]:
    out = []
    for i, raw in enumerate(records):
        got = normalize_record(raw, layout)
        if isinstance(got, Reject):
            pytest.fail(f"sample record {i + 1} is rejected by intake ({got}); fix the sample", pytrace=False)
        if got.get("id") is None:
            got["id"] = str(i + 1)
        out.append(got)
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        try:
            return Decimal(str(a)) == Decimal(str(b))
        except Exception:
            return False
    return a == b or str(a) == str(b)


def rate_both(plan: Any, records: Sequence[Mapping[str, Any]], *, pm: PluginManager | None = None,
              layout: Any = None) -> Comparison:
    """Rate ``records`` (mappings as in a traffic file: strings are fine) through both executors
    and compare everything they say: every column of the rated table (``RATED_COLUMNS``: partner,
    agreement and version, prefix, destination, band, billed units, rate, amount, currency,
    rule...), the reason and detail of each reject, and every per-record charge (surcharges and
    plugins' per-record types: kind, label, amount, currency, rule) of each record."""

    normal = _normalized(records, layout)
    with use_plugin_manager(pm) if pm is not None else _nullcontext(None):
        row = [rate_record(plan, r) for r in normal]
        rated, rejects, charges = rate_batch_with_charges(plan, records_table(normal))
    cmp = Comparison(normal, row, rated, rejects, charges)
    by_id_rated = {str(r["id"]): r for r in rated.to_pylist()}
    by_id_rejected = {str(r["id"]): r for r in rejects.to_pylist()}
    batch_hits: dict[str, list[tuple[Any, ...]]] = {}
    for c in charges.to_pylist():
        batch_hits.setdefault(str(c["id"]), []).append(
            (c["kind"], c["charge"], Decimal(c["amount"]), c["currency"], c["rule"]))
    diff = cmp.differences
    for rec, out in zip(normal, row, strict=True):
        key = str(rec["id"])
        if out.ok:
            got = by_id_rated.get(key)
            if got is None:
                why = by_id_rejected.get(key, {}).get("reason", "missing")
                diff.append(f"record {key}: row rated {out.amount} {out.currency}, batch: {why}")
                continue
            mine = out.as_row()
            for k in RATED_COLUMNS:
                if not _same(mine[k], got[k]):
                    diff.append(f"record {key}: {k} row {mine[k]!r}, batch {got[k]!r}")
            want = [(h.kind, h.charge, Decimal(h.amount), h.currency, h.rule) for h in out.surcharges]
            have = batch_hits.get(key, [])
            if [(k, c, a, cur, str(r)) for k, c, a, cur, r in want] != [(k, c, a, cur, str(r))
                                                                      for k, c, a, cur, r in have]:
                diff.append(f"record {key}: per-record charges row {_hits_text(want)}, batch {_hits_text(have)}")
        else:
            got = by_id_rejected.get(key)
            if got is None:
                diff.append(f"record {key}: row rejected ({out.reason}), batch rated it")
            elif got["reason"] != out.reason:
                diff.append(f"record {key}: reason row {out.reason}, batch {got['reason']}")
            elif got.get("detail") != out.detail:
                diff.append(f"record {key}: detail row {out.detail!r}, batch {got.get('detail')!r}")
            if batch_hits.get(key):
                diff.append(f"record {key}: rejected, but the batch executor charged {_hits_text(batch_hits[key])}")
    return cmp


def _hits_text(hits: Sequence[tuple[Any, ...]]) -> str:
    if not hits:
        return "none"
    return "; ".join(f"{kind} {label!r} {amount} {cur} [{rule}]" for kind, label, amount, cur, rule in hits)


def event_types(plan: Any, pm: PluginManager | None = None, agreement: Any = None) -> list[str]:
    """The event record types the charges of ``plan`` (or of one ``agreement``) read: what each
    charge type's optional ``event_types(charge)`` returns."""

    pm = pm if pm is not None else isolated_plugin_manager()
    out: list[str] = []
    for ag in [agreement] if agreement is not None else plan.agreements:
        for c in ag.charges:
            fn = getattr(charge_type(c.kind, pm, c.span), "event_types", None)
            for name in fn(c) if callable(fn) else ():
                if name not in out:
                    out.append(name)
    return out


def evaluate_charges(plan: Any, cycle: Any, pm: PluginManager | None = None, *, agreement: str | None = None,
                     partner: str | None = None, events: Sequence[Any] = (), records: Any = None,
                     **context: Any) -> list[Any]:
    """The cycle-level charge lines of one agreement (the only one, or the one named
    ``agreement``) for ``cycle`` (``"2026-03"``, or :class:`icdsl.charges.periods.Days`), as
    :func:`icdsl.charges.evaluate.evaluate_cycle` gives them with ``pm``'s charge types.

    ``events``: :class:`icdsl.charges.context.EventRecord` s; ``records``: a records table or
    a traffic file (read with icdsl's intake) whose event records of the types the charges read
    (:func:`event_types`) are added to ``events``; as billing does, only the events of the
    partner whose local day is in the cycle are passed on; ``context``: any other field of
    :class:`icdsl.charges.context.ChargeContext` (``usage``, ``inventory``, ``billed``...)."""

    pm = pm if pm is not None else isolated_plugin_manager()
    ags = [a for a in plan.agreements if agreement is None or a.name == agreement]
    if len(ags) != 1:
        names = ", ".join(sorted({a.name for a in plan.agreements}))
        pytest.fail(f"name the agreement to evaluate (agreement=...): the plan has {names}", pytrace=False)
    ag = ags[0]
    code = partner or ag.partner
    party = plan.partner(code)
    if party is None:
        pytest.fail(f"partner {code} is not in the plan; give partner=...", pytrace=False)
    if isinstance(cycle, str):
        y, m = (int(x) for x in cycle.split("-"))
        cycle = Days(date(y, m, 1), date(y + (m == 12), m % 12 + 1, 1))
    found = list(events)
    if records is not None:
        if isinstance(records, str | Path):
            records, _, _ = read_all(records, None, pm=pm)
        found += events_from_records(records, event_types(plan, pm, ag), party.timezone, partner=code)
    # as billing does: the cycle's event records (their local day in the cycle) of the partner
    found = [e for e in found if e.day in cycle and (not e.partner or e.partner == code)]
    ctx = ChargeContext(agreement=ag, partner=party, cycle=cycle, events=tuple(found), **context)
    with use_plugin_manager(pm):
        return evaluate_cycle(ctx, pm)


def read_with(path: str | Path, pm: PluginManager, reader: str | None = None, *,
              options: Mapping[str, str] | None = None, layout: Any = None, **kw: Any) -> tuple[Any, Any, Any]:
    """Read a file with ``pm``'s readers and check the intake contract: the record and rejects
    schemas, and counts that reconcile. Returns (records, rejects, counts)."""

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

    def check(self, rules: str, *, files: Mapping[str, str] | None = None) -> Diagnostics:
        return check_rules(rules, self.pm, files=files)

    def evaluate(self, plan: Any, cycle: Any, **kw: Any) -> list[Any]:
        return evaluate_charges(plan, cycle, self.pm, **kw)

    def charge_types(self) -> dict[str, Any]:
        return charge_types(self.pm)


@pytest.fixture
def icdsl_kit(tmp_path: Path) -> PluginKit:
    """A :class:`PluginKit` with the built-ins only: ``icdsl_kit.add(my_plugin)`` adds the plugin
    under test."""
    return PluginKit(tmp_path=tmp_path)
