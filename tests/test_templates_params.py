"""Charge templates with parameters: ``template NAME(p, ...)`` and ``apply NAME(v, ...)`` give the
same plan as the charges written in place, and the checker locates wrong calls."""

import re
from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from icdsl.lang.formatter import format_text
from icdsl.plan.compiler import build

PARTNER = 'partner ORFR "Orange France" { currency EUR timezone "Europe/Paris" }\n'
TEMPLATE = """
template port_rental(price, kind, pct) {
  recurring "Port rental" price monthly per inventory kind, prorate daily
  event "Porting" price per kind
  surcharge "Premium" pct when band == "peak"
  surcharge "Per minute" price per minute when band == "peak"
}
"""


def build_text(tmp_path: Path, text: str):
    f = tmp_path / "rules.icd"
    f.write_text(PARTNER + text, encoding="utf-8")
    return build([f], root=tmp_path)


def agreement(body: str) -> str:
    return f"""
agreement "A" v1 with ORFR effective 2026-01-01 .. {{
  outbound voice {{ price 0.01 EUR per minute }}
  {body}
}}
"""


def charges(plan):
    """The charges without their places in the source (a template's charges are where it is)."""
    return re.sub(
        r"span=Span\([^)]*\)",
        "",
        repr([(c.kind, c.name, c.params, c.applies_to) for c in plan.agreements[0].charges]),
    )


def written_in_place(price: str, kind: str, pct: str) -> str:
    return (
        f'recurring "Port rental" {price} monthly per inventory {kind}, prorate daily\n'
        f'  event "Porting" {price} per {kind}\n'
        f'  surcharge "Premium" {pct} when band == "peak"\n'
        f'  surcharge "Per minute" {price} per minute when band == "peak"'
    )


def test_apply_with_arguments_compiles_like_the_charges_written_in_place(tmp_path):
    plan, _, diags = build_text(tmp_path, TEMPLATE + agreement("apply port_rental(12.00 EUR, e1, 2.5%)"))
    assert plan is not None, [str(d) for d in diags]
    inline, _, _ = build_text(tmp_path, agreement(written_in_place("12.00 EUR", "e1", "2.5%")))
    assert charges(plan) == charges(inline)
    rental = plan.agreements[0].charges[0]
    assert rental.param("amount").amount == Decimal("12.00") and rental.param("per_inventory") == "e1"


@settings(max_examples=15, deadline=None)
@given(
    cents=st.integers(0, 10**8),
    kind=st.sampled_from(["e1", "stm1", "sip_trunk"]),
    pct=st.decimals(0, 100, places=2),
)
def test_any_arguments_give_the_same_plan_as_in_place(tmp_path_factory, cents, kind, pct):
    tmp = tmp_path_factory.mktemp("t")
    price = f"{Decimal(cents) / 100:.2f} EUR"
    plan, _, diags = build_text(tmp, TEMPLATE + agreement(f"apply port_rental({price}, {kind}, {pct}%)"))
    assert plan is not None, [str(d) for d in diags]
    inline, _, _ = build_text(tmp, agreement(written_in_place(price, kind, f"{pct}%")))
    assert charges(plan) == charges(inline)


def codes(tmp_path, text):
    plan, _, diags = build_text(tmp_path, text)
    return plan, [(d.code, d.span.line, d.span.col) for d in diags]


def test_wrong_calls_are_located_at_the_arguments(tmp_path):
    plan, found = codes(tmp_path, TEMPLATE + agreement("apply port_rental(e1, 12.00 EUR, 2%)"))
    assert plan is None
    line = TEMPLATE.count("\n") + 5  # the apply line: partner line + template + agreement header lines
    assert ("E143", line, 21) in found and ("E143", line, 25) in found
    _, found = codes(tmp_path, TEMPLATE + agreement("apply port_rental(12.00 EUR)"))
    assert [c for c, *_ in found] == ["E142"]
    _, found = codes(tmp_path, TEMPLATE + agreement("apply port_rental(12.00 GBP, e1, 2%)"))
    assert {c for c, *_ in found} == {"E211"}  # each fee's currency, at the value given


def test_a_template_without_parameters_takes_no_arguments(tmp_path):
    text = 'template plain { one_time "Setup" 10.00 EUR on activation }\n'
    plan, found = codes(tmp_path, text + agreement("apply plain"))
    assert plan is not None and found == []
    plan, found = codes(tmp_path, text + agreement("apply plain(1.00 EUR)"))
    assert plan is None and [c for c, *_ in found] == ["E142"]


def test_fmt_glues_the_parentheses_and_is_idempotent():
    src = (
        PARTNER
        + TEMPLATE.replace("port_rental(price, kind, pct)", "port_rental (price,kind , pct)")
        + agreement("apply port_rental( 12.00 EUR,e1,2% )")
    )
    out, diags = format_text(src)
    assert out is not None and not diags
    assert "template port_rental(price, kind, pct) {" in out and "apply port_rental(12.00 EUR, e1, 2%)" in out
    assert format_text(out)[0] == out


def test_a_label_names_a_parameter_so_a_template_applies_twice(tmp_path):
    text = """
template port_rental(price, kind) {
  recurring "Port rental {kind}" price monthly per inventory kind
}
""" + agreement("apply port_rental(150.00 EUR, e1_port)\n  apply port_rental(300.00 EUR, stm1_port)")
    plan, found = codes(tmp_path, text)
    assert plan is not None and found == []
    names = {c.name: c.param("amount").amount for c in plan.agreements[0].charges}
    assert names == {"Port rental e1_port": Decimal("150.00"), "Port rental stm1_port": Decimal("300.00")}
