"""The icdsl hook API (pluggy): every hook a plugin can implement, in one module.

A plugin is a module (or any object) with functions marked ``@icdsl.hookspecs.hookimpl`` and a
module attribute naming the hook API version it was written for::

    from icdsl.hookspecs import hookimpl

    ICDSL_HOOK_API = 1

    @hookimpl
    def icdsl_record_readers():
        return [MyReader]

Built-in features are plugins of these same hooks (``icdsl.plugins.BUILTIN_PLUGINS``).

Conventions
-----------
- Every hook is a *registration* hook: it takes no argument and returns a list of classes (or,
  for :func:`icdsl_reject_reasons`, a mapping). The work itself happens in the methods of those
  classes, which receive **batches** (Arrow tables, int64 arrays, lists of documents), never one
  record per call: a hook signature is hard to change later, a per-record call is slow forever.
- Every class has a ``name`` (unique within its hook: a name registered twice is reported as a
  problem of the second plugin, whose class is ignored; built-ins are registered first and win),
  and a one-line ``description`` that ``icdsl plugins`` shows.
- No hook is ``firstresult``: icdsl calls each plugin's implementation on its own, so that one
  that raises is reported with its name and the others still load.
- Methods of registered classes report problems with the data as values (rejects, findings,
  diagnostics); an exception escaping them is a bug of the plugin and is reported naming it.

Versions
--------
``HOOK_API_VERSION`` is the version of this module's contract. A plugin declares
``ICDSL_HOOK_API = N``; icdsl loads it only when N equals ``HOOK_API_VERSION`` and otherwise
reports which version the plugin targets and which one icdsl provides. The version changes when
a hook is removed or the signature or meaning of a hook or of a registered class's method
changes; adding a hook, or an optional class attribute with a default, does not change it (such
additions say ``versionadded`` with the icdsl release).

- Hook API 1 (icdsl 0.1): ``icdsl_charge_types``, ``icdsl_rounding_modes``,
  ``icdsl_record_readers``, ``icdsl_reject_reasons``, ``icdsl_exporters``,
  ``icdsl_invoice_validators``, ``icdsl_condition_functions``.

``docs/plugins.md`` is the guide; the contracts of the registered classes live next to the code
that uses them: :mod:`icdsl.charges.base`, :mod:`icdsl.rounding`, :mod:`icdsl.readers`,
:mod:`icdsl.exporters`, :mod:`icdsl.validators`, :mod:`icdsl.functions`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from icdsl.charges.base import ChargeType
    from icdsl.exporters import Exporter
    from icdsl.functions import ConditionFunction
    from icdsl.readers import Reader
    from icdsl.rounding import RoundingMode
    from icdsl.validators import InvoiceValidator

HOOK_API_VERSION = 1
PROJECT = "icdsl"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def icdsl_charge_types() -> list[type[ChargeType]]:
    """Charge types: what a ``charge NAME "label" { key: value ... }`` statement means.

    Return subclasses of :class:`icdsl.charges.base.ChargeType` (in practice of one of the two
    evaluation classes below). Each has a unique ``name`` (the word after ``charge`` in rule
    files, or the built-in statement it implements: ``surcharge``, ``recurring``...), a
    ``description``, and:

    **Syntax and parameters.** The generic form's parameters: ``required`` and ``optional``
    (tuples of keys) and ``params`` (a sentence each, shown in help lines). Values arrive as
    AST values (:mod:`icdsl.lang.ast`: ``Money``, ``MoneyPer``, ``Percent``, ``Quantity``,
    ``Num``, ``Str``, ``Ident``, ``ListValue``, nested ``MapValue`` blocks). The options after
    the block (``, stream``, ``, tax``, ``, when``, ``, of``, ``, prorate``...) are the core's.

    **Checker rules** ``check(node, checker)``: report mistakes with ``checker.error(code,
    message, span, help)`` / ``checker.warning``, never raise. The default checks ``required``
    / ``optional`` (E119 missing, E120 unknown with "did you mean"); the checker offers value
    checks (``money``, ``percent``, ``word``, ``seconds``, ``currency_matches``, ``expr``...)
    and ``checker.agreement`` (the agreement being checked: ``currency``, ``timezone``).

    **Compilation** ``compile(node, compiler) -> tuple[(key, value), ...]``: the plan
    parameters as plain immutable values (``compiler.value(x)`` converts any AST value:
    ``Price``, ``Money``, ``Decimal``, text, tuples, condition ``Expr`` trees).

    **Evaluation, for both executors** (:mod:`icdsl.charges.evaluate`):

    - cycle-level, :class:`~icdsl.charges.evaluate.CycleChargeType`: ``evaluate(charge, ctx)
      -> list[ChargeLine]`` once per cycle from a :class:`~icdsl.charges.context.ChargeContext`
      (usage, inventory, event records, history), with a ``stage`` (charge, discount,
      commitment, share); optional ``event_types(charge)`` names the event records it reads;
    - per record, :class:`~icdsl.charges.evaluate.RecordChargeType` (``per_record = True``):
      ``evaluate_record(charge, RecordView) -> RecordAmount | None`` for the row executor and
      ``evaluate_batch(charge, BatchView) -> BatchAmounts`` over a batch's columns for the
      batch executor; the executor rounds each amount once, and the two must agree to the last
      digit (``icdsl.testing.rate_both`` compares them).

    Failures: a plugin type's ``check`` that raises becomes diagnostic E121 on the charge, its
    ``compile`` diagnostic E122 (no plan is made); an exception from its other methods becomes a ``ChargeError`` naming the plugin, the type
    and the rule's place (billing reports it for the cycle).

    No parameters. Not firstresult: every plugin's list is used; the lists are concatenated;
    a name already registered (by a built-in or an earlier plugin) is reported and ignored.

    .. versionadded:: 0.1 (hook API 1)
    """


@hookspec
def icdsl_rounding_modes() -> list[type[RoundingMode]]:
    """Rounding modes usable in ``rounding MODE to N decimals`` and in rounding presets.

    Return subclasses of :class:`icdsl.rounding.RoundingMode`: ``name`` (the word in rule files,
    e.g. ``half_odd``), ``description``, and two implementations that must agree exactly:

    - ``round_int(n, d) -> int``: ``round(n / d)`` for Python ints, ``d > 0``, ``n`` of any sign
      (the row executor, Decimal amounts as scaled integers);
    - ``round_array(n, d) -> numpy int64 array``: the same over an int64 array (the batch
      executor); never loop in Python here.

    ``round_decimal(value, precision)`` is derived from ``round_int``. The built-in modes
    (``half_up``, ``half_even``, ``up``, ``down``) are registered through this hook too.

    No parameters. Not firstresult.

    .. versionadded:: 0.1 (hook API 1)
    """


@hookspec
def icdsl_record_readers() -> list[type[Reader]]:
    """Record readers: traffic files in other formats (switch CDRs, mediation exports).

    Return subclasses of :class:`icdsl.readers.Reader`. A reader is chosen by ``name`` (``icdsl
    rate --reader NAME``), or claims a file: ``claims(path, head)`` returns a score (0: not
    mine) from the file's name and its first bytes (``head``, up to 64 KiB), and the highest
    score wins; the built-in ``table`` reader (CSV with a header, Parquet) answers 1 for
    anything. An instance is made with ``(path, layout, batch_rows=, dedupe=, numbers=,
    options=)`` and ``batches()`` yields :class:`icdsl.rating.intake.IntakeBatch` es whose
    ``records`` and ``rejects`` have exactly the schemas of :mod:`icdsl.rating.intake`
    (``record_schema()`` plus extra columns, ``REJECTS_SCHEMA``), with counts that reconcile.
    ``options`` are the reader's own settings (``options`` class attribute: name -> meaning).
    The same readers serve ``icdsl ingest --reader NAME`` (the billing store checks what they
    hand on, :mod:`icdsl.billing.sources`). A batch may carry the normalized rows of its
    ``duplicate_id`` rejects (``IntakeBatch.duplicates``, optional): the store then tells a
    repeat from a conflict (an id ingested again with other content).

    No parameters. Not firstresult.

    .. versionadded:: 0.1 (hook API 1)
    .. versionchanged:: 0.1 ``IntakeBatch.duplicates`` (optional, defaults to None: the API
       version is unchanged); readers also serve ``icdsl ingest``.
    """


@hookspec
def icdsl_reject_reasons() -> dict[str, str]:
    """Reject reasons a plugin's readers or charge types use, each with its explanation.

    Return ``{code: one-line explanation}``; codes are snake_case words (``unanswered``). A code
    the core (``icdsl.rating.rejects.REJECT_REASONS``) or another plugin already defines is
    reported and ignored. ``icdsl.plugins.reject_reasons(pm)`` returns the core's and the
    plugins' reasons together (for reports, ``expect rejected CODE`` in examples).

    No parameters. Not firstresult: the mappings are merged.

    .. versionadded:: 0.1 (hook API 1)
    """


@hookspec
def icdsl_exporters() -> list[type[Exporter]]:
    """Writers of invoices and settlement statements, by format name.

    Return subclasses of :class:`icdsl.exporters.Exporter`: ``name`` (the format, e.g. ``ubl``,
    ``peppol``, ``csv``), ``description``, ``suffix`` (``.xml``), ``kinds`` (the document kinds
    it writes: ``invoice``, ``credit_note``, ``statement``) and
    ``write(documents, directory, options) -> list[Path]``: all the documents of a run at once.

    No parameters. Not firstresult.

    .. versionadded:: 0.1 (hook API 1)
    """


@hookspec
def icdsl_invoice_validators() -> list[type[InvoiceValidator]]:
    """Checks run on draft invoices before they are finalized (numbering, tax rules, limits).

    Return subclasses of :class:`icdsl.validators.InvoiceValidator`: ``name``, ``description``
    and ``validate(documents, context) -> iterable of Finding``: all drafts of a cycle at once.
    A finding of severity ``error`` stops finalization; ``warning`` is shown.

    No parameters. Not firstresult.

    .. versionadded:: 0.1 (hook API 1)
    """


@hookspec
def icdsl_condition_functions() -> list[type[ConditionFunction]]:
    """Functions callable in conditions (``when starts_with(b_number, "33")``).

    Return subclasses of :class:`icdsl.functions.ConditionFunction`: ``name``, ``arity``,
    ``description``, and two implementations that must agree:

    - ``call(args, ctx)``: one record's values (``str``, ``int``, ``Decimal``, aware ``datetime``
      or ``None``) -> a value (the row executor);
    - ``call_column(args, ctx)``: ``pyarrow`` arrays (or scalars for constant arguments) of a
      batch -> a ``pyarrow`` array of the same length (the batch executor).

    ``ctx`` carries the agreement's time zone. The built-ins (``starts_with``, ``length``,
    ``hour``, ``weekday``) are registered through this hook too.

    No parameters. Not firstresult.

    .. versionadded:: 0.1 (hook API 1)
    """


#: hook name -> what it registers (for messages and ``icdsl plugins``)
HOOKS: dict[str, str] = {
    "icdsl_charge_types": "charge type",
    "icdsl_rounding_modes": "rounding mode",
    "icdsl_record_readers": "record reader",
    "icdsl_reject_reasons": "reject reason",
    "icdsl_exporters": "exporter",
    "icdsl_invoice_validators": "invoice validator",
    "icdsl_condition_functions": "condition function",
}
