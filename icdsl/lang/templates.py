"""Charge templates with parameters: ``template port_rental(price, kind) { ... }`` and
``apply port_rental(12.00 EUR, e1)``.

A parameter stands for a value in the template's charges: a name written where an amount is
expected (``recurring "Port rental" price monthly``: a :class:`~icdsl.lang.ast.ParamRef` that
expects money, or a percentage for ``surcharge "X" pct``), or a name anywhere a name is written
(``per inventory kind``, ``, stream kind``). Each ``apply`` binds the arguments in order and makes
the template's charges with them; the checker then checks those charges like any other statement
of the agreement (a wrong currency is reported at the argument). A label may name a parameter in
braces (``recurring "Port rental {kind}" ...``): each ``apply`` writes its value there, so a
template applied twice gives charges with labels of their own. The substitution is purely
syntactic (values for names, nothing is evaluated): the language never executes anything.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from icdsl.lang import ast

#: the words for what a parameter stands for, in messages
_EXPECTS = {
    "money": "an amount of money (e.g. 12.00 EUR)",
    "percent": "a percentage (e.g. 2.5%)",
    "name": "a name (e.g. e1)",
}
_KIND_OF = {ast.Money: "money", ast.Percent: "percent", ast.Ident: "name", ast.Num: "number", ast.Str: "text"}
_SKIP_FIELDS = frozenset(("span", "kind_span", "key", "kind", "generic", "currency"))


def arg_kind(value: Any) -> str:
    return _KIND_OF.get(type(value), "value")


def arg_text(value: Any) -> str:
    if isinstance(value, ast.Money):
        return f"{value.amount.text} {value.currency.text}"
    if isinstance(value, ast.Percent):
        return f"{value.value.text}%"
    if isinstance(value, ast.Ident | ast.Num):
        return value.text
    if isinstance(value, ast.Str):
        return f'"{value.value}"'
    return str(value)


def _walk(value: Any, found: list[Any]) -> None:
    """Every ParamRef and Ident in a charge (not the currency of an amount)."""
    if isinstance(value, ast.ParamRef | ast.Ident):
        found.append(value)
    elif isinstance(value, tuple | list):
        for v in value:
            _walk(v, found)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            if f.name not in _SKIP_FIELDS:
                _walk(getattr(value, f.name), found)


def _strings(charge: ast.ChargeNode) -> list[ast.Str]:
    """The texts of a charge (its label, text values) where a parameter may be named in braces."""
    out = [charge.label] if charge.label is not None else []

    def walk(value: Any) -> None:
        if isinstance(value, ast.Str):
            out.append(value)
        elif isinstance(value, tuple | list):
            for v in value:
                walk(v)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                if f.name not in _SKIP_FIELDS:
                    walk(getattr(value, f.name))

    walk(charge.params)
    return out


def param_refs(charge: ast.ChargeNode) -> list[ast.ParamRef]:
    found: list[Any] = []
    _walk(charge.params, found)
    _walk(charge.options, found)
    return [f for f in found if isinstance(f, ast.ParamRef)]


def check_template(checker: Any, t: ast.TemplateDecl) -> None:
    """A template with parameters, on its own: parameters named once and each used, every
    name where an amount is expected one of its parameters. Its charges are checked at each
    ``apply``, with the arguments."""
    seen: dict[str, ast.Ident] = {}
    for p in t.params:
        if p.text in seen:
            checker.error(
                "E140",
                f"template '{t.name.text}' has two parameters named '{p.text}'",
                p.span,
                f"the first is at {seen[p.text].span}: rename one",
            )
        seen[p.text] = p
    used: set[str] = set()
    for c in t.charges:
        found: list[Any] = []
        _walk(c.params, found)
        _walk(c.options, found)
        for f in found:
            if isinstance(f, ast.ParamRef):
                used.add(f.name.text)
                if f.name.text not in seen:
                    checker.error(
                        "E141",
                        f"'{f.name.text}' is not a parameter of template '{t.name.text}'",
                        f.name.span,
                        _declare_help(t, f),
                    )
            elif f.text in seen:
                used.add(f.text)
        found_text = " ".join(x.value for x in _strings(c))
        used |= {name for name in seen if "{" + name + "}" in found_text}
    for p in t.params:
        if p.text not in used:
            checker.warning(
                "W140",
                f"template parameter '{p.text}' is not used",
                p.span,
                f"use it in the template's charges, or remove it from 'template {t.name.text}(...)'",
            )


def _declare_help(t: ast.TemplateDecl, f: ast.ParamRef) -> str:
    names = ", ".join([p.text for p in t.params] + [f.name.text])
    return (
        f"write {_EXPECTS[f.expects]} here, or declare the parameter: "
        f"'template {t.name.text}({names}) {{ ... }}'"
    )


def unbound(checker: Any, charge: ast.ChargeNode) -> bool:
    """Report the names written where an amount is expected outside a template that declares
    them (True: the charge has such names and cannot be checked further)."""
    refs = param_refs(charge)
    for r in refs:
        checker.error(
            "E141",
            f"'{r.name.text}' is not {_EXPECTS[r.expects]}",
            r.name.span,
            f"write an amount here; a name stands for a value only in a template that declares it, "
            f"e.g. 'template NAME({r.name.text}) {{ ... }}' and 'apply NAME(...)'",
        )
    return bool(refs)


def instantiate(checker: Any, t: ast.TemplateDecl, at: ast.ApplyNode) -> list[ast.ChargeNode] | None:
    """The template's charges with the arguments of ``at``; None (and errors at the arguments)
    when they do not fit its parameters."""
    names = ", ".join(p.text for p in t.params)
    if len(at.args) != len(t.params):
        if not t.params:
            checker.error(
                "E142",
                f"template '{t.name.text}' takes no arguments, {len(at.args)} given",
                at.span,
                f"write 'apply {t.name.text}'",
            )
        else:
            checker.error(
                "E142",
                f"template '{t.name.text}' takes {len(t.params)} argument(s) ({names}), {len(at.args)} given",
                at.span,
                f"write 'apply {t.name.text}(...)' with a value for each of: {names} (template at {t.span})",
            )
        return None
    if t.params and not at.has_args:
        return None  # unreachable: no parentheses means no arguments, reported above
    binding = {p.text: a for p, a in zip(t.params, at.args, strict=True)}
    bad: dict[str, str] = {}  # parameter -> what it is used as, where the argument does not fit

    def sub(value: Any) -> Any:
        if isinstance(value, ast.ParamRef):
            arg = binding.get(value.name.text)
            if arg is None:
                bad.setdefault("", "")  # not a parameter: reported with the template (E141)
                return value
            if arg_kind(arg) != value.expects:
                bad.setdefault(value.name.text, value.expects)
                return value
            return arg
        if isinstance(value, ast.Ident):
            arg = binding.get(value.text)
            if arg is None:
                return value
            if not isinstance(arg, ast.Ident):
                bad.setdefault(value.text, "name")
                return value
            return arg
        if isinstance(value, ast.Str) and "{" in value.value:  # a label naming a parameter: "Port {kind}"
            text = value.value
            for name, arg in binding.items():
                text = text.replace(
                    "{" + name + "}", arg.value if isinstance(arg, ast.Str) else arg_text(arg)
                )
            return dataclasses.replace(value, value=text)
        if isinstance(value, tuple):
            return tuple(sub(v) for v in value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes = {
                f.name: sub(getattr(value, f.name))
                for f in dataclasses.fields(value)
                if f.name not in _SKIP_FIELDS
            }
            return dataclasses.replace(value, **changes)
        return value

    charges = [
        dataclasses.replace(c, label=sub(c.label), params=sub(c.params), options=sub(c.options))
        for c in t.charges
    ]
    for p, arg in zip(t.params, at.args, strict=True):
        if p.text in bad and p.text:
            checker.error(
                "E143",
                f"argument '{p.text}' of template '{t.name.text}' must be "
                f"{_EXPECTS[bad[p.text]]}, not {arg_kind(arg)} '{arg_text(arg)}'",
                getattr(arg, "span", at.span),
                f"the template uses '{p.text}' as {_EXPECTS[bad[p.text]]}",
            )
    return None if bad else charges


__all__ = ["arg_kind", "arg_text", "check_template", "instantiate", "param_refs", "unbound"]
