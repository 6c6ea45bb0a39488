"""A ``records`` layout compiled for intake (independent of any file): which column holds
which field, the constants (normalized by the field rules), the clock of the timestamps and how
phone numbers are written."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pyarrow as pa

from icdsl.plan.model import RecordLayout
from icdsl.rating.intake.binding import bind_values
from icdsl.rating.intake.counts import FIELDS, IntakeError
from icdsl.rating.intake.fields import normalize
from icdsl.rating.intake.numbers import NumberPlan, number_plan
from icdsl.rating.intake.times import Clock, clock, one_value

NUMBER_MODES = ("normalize", "e164")


@dataclass(frozen=True)
class Rules:
    """A layout compiled for intake."""

    name: str
    mapping: dict[str, str]
    constants: dict[str, Any]  # normalized values (fields), or as given (extra columns)
    clock: Clock
    numbers: NumberPlan

    def source_of(self, f: str) -> str:
        return self.mapping.get(f, f)


@lru_cache(maxsize=32)
def layout_rules(layout: RecordLayout | None, numbers: str | None = None) -> Rules:
    """The rules of ``layout`` (None: the default layout); IntakeError if it cannot apply."""
    if numbers is None:  # the layout says how its numbers are written (default: normalize)
        numbers = getattr(layout, "numbers", None) or "normalize"
    if numbers not in NUMBER_MODES:
        raise ValueError(f"numbers must be one of {', '.join(NUMBER_MODES)}, not {numbers!r}")
    lay = layout or RecordLayout(name="default")
    where = f"layout '{lay.name}'"
    try:
        clk = clock(lay.timezone, lay.timestamp_format)
    except ValueError as exc:
        raise IntakeError(f"{where}: {exc}") from None
    try:
        plan = number_plan(lay.country, as_given=numbers == "e164")
    except ValueError as exc:
        raise IntakeError(f"{where}: {exc}") from None
    rules = Rules(lay.name, dict(lay.columns), {}, clk, plan)
    given = dict(lay.constants)
    for f, value in given.items():
        if f not in FIELDS:
            rules.constants[f] = value
        elif value is None or (isinstance(value, str) and not value.strip()):
            raise IntakeError(f"{where}: constant {f} = {value!r}: {f} is empty")
    for f in FIELDS:  # each constant goes through its field's rule, as a one-row column
        if f not in given:
            continue
        table = pa.table({f: one_value(given[f])})
        binding = bind_values([f], {f: table.schema.field(f).type}, rules, check_missing=False)
        out, problems = normalize(table, binding, rules, lambda _f, typ: pa.nulls(1, typ))
        found = problems.first()
        if found is not None:
            raise IntakeError(f"{where}: constant {f} = {given[f]!r}: {found[1]}")
        rules.constants[f] = out[f][0].as_py()
    return rules
