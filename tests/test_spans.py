"""Every AST node and every plan node keeps the span of the source that produced it."""

import dataclasses

import pytest
from helpers import ROOT

from icdsl.lang.parser import parse_file
from icdsl.plan import model as m
from icdsl.plan.compiler import build

RULE_FILES = sorted((ROOT / "examples").rglob("*.icd")) + sorted((ROOT / "stdlib_rules").glob("*.icd"))


def walk(obj, path="root"):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        yield path, obj
        for f in dataclasses.fields(obj):
            yield from walk(getattr(obj, f.name), f"{path}.{f.name}")
    elif isinstance(obj, (list, tuple)):
        for i, x in enumerate(obj):
            yield from walk(x, f"{path}[{i}]")


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_ast_node_has_a_span(path):
    f, _, diags = parse_file(path)
    assert f is not None, diags
    for where, node in walk(f.items):
        if isinstance(node, m.Span):
            continue
        span = getattr(node, "span", None)
        assert isinstance(span, m.Span) and span.line > 0 and span.file, f"{where}: {type(node).__name__}"


SPANNED = (m.Agreement, m.ServicePlan, m.RateTable, m.RateRow, m.Charge, m.Calendar, m.BandRule, m.HolidayRule,
           m.Partner, m.Example, m.Expr, m.Tier, m.Share, m.Slot, m.FxRate, m.FxSource, m.RecordLayout,
           m.InvoiceStream)


@pytest.mark.parametrize("folder", sorted({p.parent for p in RULE_FILES if "examples" in p.parts}),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_plan_node_has_a_span(folder):
    plan, program, diags = build([folder])
    assert plan is not None, [str(d) for d in diags]
    for where, node in walk(plan):
        if isinstance(node, SPANNED):
            assert node.span.line > 0, f"{where}: {type(node).__name__} has no span"
