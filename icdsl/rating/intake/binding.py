"""Binding a source to the layout: which column of a file (or key of a record) each field is
read from, which fields are constants, the extra columns, and the schema of the records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from icdsl.rating.intake.columns import is_numeric, is_text
from icdsl.rating.intake.counts import CALL_SERVICES, FIELDS, TS_TYPE, IntakeError, short
from icdsl.rating.intake.times import EPOCH_UNITS

if TYPE_CHECKING:
    from icdsl.rating.intake.layout import Rules


@dataclass
class Binding:
    source: dict[str, str]  # field -> column of the file
    const: dict[str, Any]  # field -> normalized constant
    extras: list[tuple[str, str]]  # (column of the file, output name)
    extra_constants: list[tuple[str, str]]  # (output name, value)
    id_int: bool
    types: dict[str, pa.DataType]
    label_of: dict[str, str]  # field -> how reject details name it
    id_required: bool = True
    check_missing: bool = True  # report missing required fields (not for a layout's constants)


def _find(names: list[str], wanted: str) -> str | None:
    if wanted in names:
        return wanted
    folded = [n for n in names if n.casefold() == wanted.casefold()]
    return folded[0] if len(folded) == 1 else None


def _from_partner(names: list[str], rules: Rules) -> str | None:
    """The column of ``from_partner`` (a transit record's originating partner), if the file has one."""
    return _find(names, rules.source_of("from_partner"))


def bind(names: list[str], types: dict[str, pa.DataType], rules: Rules, label: str, is_csv: bool) -> Binding:
    """Bind a file's columns; IntakeError when a required field has no column nor constant, or
    a column cannot hold what it is mapped to.

    A field is read from the column the layout maps it to (it must exist), else from the column
    of the field's own name (exact, else the only case-insensitive match), else from the
    layout's constants. Layout columns/constants naming other fields (``route_class``)
    rename/add extra columns; the other columns of the file are passed through under their own
    name (or ``<name>_source`` if that name is a field's)."""
    # a binary or hostile "header" can be megabytes: the message names at most 40 columns, 60 characters each
    listed = (", ".join(short(n, 60) for n in names[:40]) + (f", ... ({len(names)} columns)" if len(names) > 40 else "")
              if names else "(none)")
    source: dict[str, str] = {}
    const: dict[str, Any] = {}
    service = rules.constants.get("service")
    for f in (*FIELDS, *(k for k in rules.mapping if k not in FIELDS)):
        if f in rules.mapping:
            col = _find(names, rules.mapping[f])
            if col is None:
                raise IntakeError(
                    f"column '{rules.mapping[f]}' (mapped to {f} by layout '{rules.name}') not found in {label}; "
                    f"the columns are: {listed}"
                )
            source[f] = col
            continue
        col = _find(names, f)
        if col is None and f == "partner" and "partner" not in rules.constants:
            col = _from_partner(names, rules)  # a transit file: its partner is the one it came from
        if col is not None:
            source[f] = col
        elif f in rules.constants and f in FIELDS:
            const[f] = rules.constants[f]
        elif f in ("id", "partner", "direction", "service", "start") or (
            (f == "b_number" and (service is None or service in CALL_SERVICES))
            or (f == "duration_s" and (service is None or service == "voice"))
        ):
            raise IntakeError(
                f"column '{f}' not found in {label}; the columns are: {listed}; "
                f"map it in a `records` layout"
                + (" (or give it a constant)" if f in ("direction", "service", "partner") else "")
            )
    used = set(source.values())
    if "partner" in source and source["partner"] == _from_partner(names, rules):
        used.discard(source["partner"])  # kept as from_partner too
    taken = set(FIELDS) | set(source)
    extras = []
    for n in names:
        if n not in used:
            out = n if n not in taken else f"{n}_source"
            extras.append((n, out))
    extra_constants = [(k, v) for k, v in rules.constants.items() if k not in FIELDS and k not in source]
    for f, col in source.items():  # a list, struct or map in a field's column is no value of it
        t = types.get(col, pa.string())
        if pa.types.is_nested(t) or (pa.types.is_dictionary(t) and pa.types.is_nested(t.value_type)):
            raise IntakeError(f"column '{col}' of {label} has type {t}, which cannot hold {f}: "
                              "write it as text (or a number)")
    if "start" in source:
        t = types.get(source["start"], pa.string())
        numeric = is_numeric(t)
        if numeric and rules.clock.fmt not in EPOCH_UNITS:
            raise IntakeError(
                f"column '{source['start']}' of {label} holds numbers ({t}); set the layout's timestamp_format "
                "to epoch (or epoch_ms) if they are times since 1970"
            )
        if not (numeric or pa.types.is_timestamp(t) or is_text(t)):
            raise IntakeError(f"column '{source['start']}' of {label} has type {t}, which is not a timestamp")
    id_type = types.get(source.get("id", ""), pa.string())
    id_int = not is_csv and pa.types.is_integer(id_type) and id_type != pa.uint64()
    label_of = {f: (c if c == f else f"{c} ({f})") for f, c in source.items()}
    return Binding(source, const, extras, extra_constants, id_int, types, label_of)


def bind_values(names: list[str], types: dict[str, pa.DataType], rules: Rules, *, check_missing: bool = True
                ) -> Binding:
    """Bind the keys of one record given as a mapping (``normalize_record``): a field is read
    from the key the layout maps it to, else from the key of its own name, else from the
    layout's constants; nothing is a file-level error (a missing field is the record's reject,
    an absent id is allowed)."""
    source: dict[str, str] = {}
    const: dict[str, Any] = {}
    label_of: dict[str, str] = {}
    for f in FIELDS:
        src = rules.source_of(f)
        if src in names:
            source[f] = src
        elif f in names:
            source[f] = f
        elif f == "partner" and "partner" not in rules.constants and rules.source_of("from_partner") in names:
            source[f] = rules.source_of("from_partner")
        else:
            const[f] = rules.constants.get(f)
        label_of[f] = src if src in names else f
    id_type = types.get(source.get("id", ""), pa.string())
    id_int = pa.types.is_integer(id_type) and id_type != pa.uint64()
    return Binding(source, const, [], [], id_int, types, label_of, id_required=False,
                   check_missing=check_missing)


def record_schema(*, int_ids: bool = False) -> pa.Schema:
    """The schema of normalized records, without the extra columns a file may add."""
    return schema(None, int_ids)


def schema(binding: Binding | None, int_ids: bool = False) -> pa.Schema:
    id_type = pa.int64() if (binding.id_int if binding is not None else int_ids) else pa.string()
    base = [
        pa.field("id", id_type),
        pa.field("partner", pa.string()),
        pa.field("direction", pa.string()),
        pa.field("service", pa.string()),
        pa.field("a_number", pa.string()),
        pa.field("b_number", pa.string()),
        pa.field("start", TS_TYPE),
        pa.field("duration_s", pa.int64()),
        pa.field("volume", pa.int64()),
        pa.field("units", pa.int64()),
    ]
    if binding is None:
        return pa.schema(base)
    extra = [
        pa.field(f, binding.types.get(c, pa.string())) for f, c in binding.source.items() if f not in FIELDS
    ]
    extra += [pa.field(out, binding.types.get(col, pa.string())) for col, out in binding.extras]
    extra += [pa.field(k, pa.string()) for k, _ in binding.extra_constants]
    return pa.schema(base + extra)
