"""Record readers: the contract of the ``icdsl_record_readers`` hook, the built-in ``table``
reader, and how a reader is chosen for a file.

A reader turns a traffic file into :class:`icdsl.rating.intake.IntakeBatch` es: normalized
``records`` with the record schema (``icdsl.rating.intake.record_schema()`` plus any extra
columns) and the ``rejects`` of the same source rows (``REJECTS_SCHEMA``: row, id, reason,
detail, raw), with :class:`~icdsl.rating.intake.IntakeCounts` that reconcile
(``read == passed + rejected + duplicates``). A bad row is a reject, never an exception; a
file that cannot be read at all raises :class:`~icdsl.rating.intake.IntakeError` from the
constructor.

Choosing a reader (:func:`choose_reader`): by name when one is given (``icdsl rate --reader
NAME``); otherwise every reader's :meth:`Reader.claims` scores the file from its name and its
first bytes and the highest score wins (ties: the reader registered first). Scores: 0 "not
mine", 1 "I can try" (the built-in ``table`` reader: CSV with a header, or Parquet), 10 "my
file name pattern", 50 "my content" (a sniffed signature). A reader should claim by content
whenever its format can be recognized, because file names lie.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from icdsl.hookspecs import hookimpl
from icdsl.lang.diagnostics import did_you_mean
from icdsl.plugins import BUILTIN_PLUGINS, PluginError, active_plugin_manager, owner, record_readers

if TYPE_CHECKING:  # the intake (pyarrow) is imported when a file is read, not when plugins load
    import pyarrow as pa

    from icdsl.plan.model import RecordLayout
    from icdsl.rating.intake import IntakeBatch, IntakeCounts

ICDSL_HOOK_API = 1

HEAD_BYTES = 64 << 10
CLAIM_FALLBACK = 1
CLAIM_NAME = 10
CLAIM_CONTENT = 50


class Reader:
    """A traffic file format. Subclass it and register the class with ``icdsl_record_readers``.

    Class attributes: ``name`` (chosen with ``--reader NAME``), ``description``, ``patterns``
    (file name globs such as ``Master.csv``, matched case-insensitively by the default
    :meth:`claims`), ``options`` (option name -> meaning; the values come as text, from
    ``--reader-option KEY=VALUE``). The constructor takes the arguments of
    :class:`icdsl.rating.intake.RecordReader` plus ``options``; this base class stores them
    (``self.path``, ``self.layout``, ``self.batch_rows``, ``self.dedupe``, ``self.numbers``: None
    for the layout's own ``numbers`` setting,
    ``self.options``) and refuses an unknown option.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    patterns: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self,
        path: str | os.PathLike[str],
        layout: RecordLayout | None = None,
        *,
        batch_rows: int = 1_000_000,
        dedupe: bool = True,
        numbers: str | None = None,
        options: Mapping[str, str] | None = None,
    ):
        # lazy: the intake (pyarrow, polars) loads when a file is read, not when the built-ins register
        from icdsl.rating.intake import IntakeCounts, IntakeError, record_schema

        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        self.path = os.fspath(path)
        self.layout = layout
        self.batch_rows = batch_rows
        self.dedupe = dedupe
        self.numbers = numbers
        given = dict(options or {})
        unknown = sorted(set(given) - set(type(self).options))
        if unknown:
            known = ", ".join(type(self).options) or "none"
            raise IntakeError(f"reader '{self.name}' has no option {', '.join(map(repr, unknown))} "
                              f"(its options: {known})")
        self.option_values: dict[str, str] = given
        self.counts = IntakeCounts()
        self.schema: pa.Schema = record_schema()

    @classmethod
    def claims(cls, path: str, head: bytes) -> int:
        """How sure this reader is that the file is its format (0: not mine); see the module doc."""
        base = os.path.basename(path).lower()
        return CLAIM_NAME if any(fnmatch.fnmatchcase(base, p.lower()) for p in cls.patterns) else 0

    @property
    def format(self) -> str:
        return self.name

    def batches(self) -> Iterator[IntakeBatch]:
        raise NotImplementedError


class TableReader(Reader):
    """The built-in reader: :class:`icdsl.rating.intake.RecordReader` (CSV with a header, Parquet)."""

    name = "table"
    description = "CSV with a header line, or Parquet; columns mapped by a records layout"
    patterns = ("*.csv", "*.csv.gz", "*.parquet", "*.pq")

    def __init__(self, path, layout=None, **kw):
        # lazy: the intake (pyarrow, polars) loads when a file is read, not when the built-ins register
        from icdsl.rating.intake import RecordReader

        super().__init__(path, layout, **kw)
        self._reader = RecordReader(self.path, layout, batch_rows=self.batch_rows, dedupe=self.dedupe,
                                    numbers=self.numbers)
        self.schema = self._reader.schema

    @classmethod
    def claims(cls, path: str, head: bytes) -> int:
        return CLAIM_FALLBACK

    @property
    def format(self) -> str:
        return self._reader.format

    @property
    def counts(self) -> IntakeCounts:  # type: ignore[override]
        return self._reader.counts

    @counts.setter
    def counts(self, value: IntakeCounts) -> None:
        pass  # the wrapped RecordReader keeps the counts

    def batches(self) -> Iterator[IntakeBatch]:
        return self._reader.batches()


@hookimpl
def icdsl_record_readers():
    return [TableReader]


# --------------------------------------------------------------------------- choosing a reader


def read_head(path: str | os.PathLike[str], size: int = HEAD_BYTES) -> bytes:
    # lazy: the intake (pyarrow, polars) loads when a file is read, not when the built-ins register
    from icdsl.rating.intake import IntakeError

    try:
        with open(path, "rb") as fh:
            return fh.read(size)
    except FileNotFoundError:
        raise IntakeError(f"cannot read {os.fspath(path)}: no such file") from None
    except IsADirectoryError:
        raise IntakeError(f"cannot read {os.fspath(path)}: it is a directory") from None
    except OSError as exc:
        raise IntakeError(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from None


def choose_reader(path: str | os.PathLike[str], name: str | None = None, *, pm: Any = None) -> type[Reader]:
    """The reader class for ``path``: the one called ``name``, else the best claim (see module doc)."""
    # lazy: the intake (pyarrow, polars) loads when a file is read, not when the built-ins register
    from icdsl.rating.intake import IntakeError

    pm = pm if pm is not None else active_plugin_manager()
    readers = record_readers(pm)
    if name is not None:
        cls = readers.get(name)
        if cls is None:
            hint = did_you_mean(name, readers, "readers") or f"installed readers: {', '.join(readers)}"
            raise IntakeError(f"unknown reader '{name}'; {hint} ('icdsl plugins' lists them)")
        return cls
    head = read_head(path)
    best: tuple[int, type[Reader]] | None = None
    for cls in readers.values():
        try:
            score = int(cls.claims(os.fspath(path), head) or 0)
        except Exception as exc:  # a plugin's bug must not stop the choice
            pm.problem(owner(pm, "icdsl_record_readers", cls.name) or cls.name,
                       f"reader '{cls.name}': claims() raised {type(exc).__name__}: {exc}")
            continue
        if score > 0 and (best is None or score > best[0]):
            best = (score, cls)
    if best is None:
        raise IntakeError(f"no reader claims {os.fspath(path)}; name one with --reader "
                          f"({', '.join(readers)})")
    return best[1]


def open_reader(
    path: str | os.PathLike[str],
    layout: RecordLayout | None = None,
    *,
    reader: str | None = None,
    options: Mapping[str, str] | None = None,
    pm: Any = None,
    **kw: Any,
) -> Reader:
    """An instance of the chosen reader for ``path``. Keyword arguments go to the reader
    (``batch_rows``, ``dedupe``, ``numbers``). A reader that fails with anything but
    IntakeError raises :class:`icdsl.plugins.PluginError` naming its plugin."""
    # lazy: the intake (pyarrow, polars) loads when a file is read, not when the built-ins register
    from icdsl.rating.intake import IntakeError

    pm = pm if pm is not None else active_plugin_manager()
    cls = choose_reader(path, reader, pm=pm)
    plugin = owner(pm, "icdsl_record_readers", cls.name) or "?"
    try:
        return cls(path, layout, options=options, **kw)
    except IntakeError:
        raise
    except Exception as exc:
        if plugin in BUILTIN_PLUGINS:
            raise
        raise PluginError(f"reader '{cls.name}' of plugin '{plugin}' failed on {os.fspath(path)}: "
                          f"{type(exc).__name__}: {exc}") from exc


def read_all(path: str | os.PathLike[str], layout: RecordLayout | None = None, **kw: Any
             ) -> tuple[pa.Table, pa.Table, IntakeCounts]:
    """Like :func:`icdsl.rating.intake.read_records`, with any reader (keywords of :func:`open_reader`)."""
    # lazy: the intake (pyarrow, polars) loads when a file is read, not when the built-ins register
    from icdsl.rating.intake.reader import collect

    return collect(open_reader(path, layout, **kw))
