"""The data folder: Parquet files written atomically and named by their content.

A file is written under a temporary name (``.tmp-...``) in its final folder (hashed as it is
written: no second read), flushed and fsync'ed, then renamed to ``<stem>-<first 16 hex digits of its sha256>.parquet`` and the
folder fsync'ed. Only then does the database transaction that references it commit. So:

- a crash before the rename leaves a ``.tmp-`` file (ignored, removed by the next run);
- a crash after the rename but before the commit leaves an unreferenced file (an orphan,
  ignored, removed by the next run of the same partner/batch, or by :meth:`DataDir.gc`);
- a rerun writes the same bytes (Parquet output is deterministic for the same input), hence the
  same name: renaming over an orphan replaces it with identical content.

A file of no rows (most cycles' rejects and record charges) has bytes known in advance, hence
its name: it is written under that name directly (no temporary file, no rename) and fsync'ed
with the others; a file of that name already there is kept if it holds those bytes, else
replaced atomically (:meth:`AtomicParquet._write_empty`).

Paths stored in the database are relative to the data folder, so the folder can move.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

TMP_PREFIX = ".tmp-"
COMPRESSION = "zstd"
#: the compression of files said to be small (``small=True``: fewer than :data:`SMALL_ROWS`
#: rows): zstd sets up a context per column chunk, a fixed cost that is a fifth of writing a
#: file of a few thousand rows; LZ4 makes such files about 40% bigger (a cycle's rated file is
#: LZ4 whatever its size: ``RATED_COMPRESSION`` in :mod:`icdsl.billing.cycles`)
SMALL_COMPRESSION = "lz4"
SMALL_ROWS = 1 << 16
HASH_BLOCK = 1 << 20


#: (path, size, mtime, inode) -> sha256 of the files this process has hashed
_VERIFIED: dict[tuple[str, int, int, int], str] = {}


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


class _HashingFile:
    """The temporary file as the Parquet writer's sink: the bytes are hashed as they are
    written, so naming the file needs no second read of it (:meth:`AtomicParquet.name`). The
    writer only appends (and asks :meth:`tell`), so the hash is the file's."""

    def __init__(self, path: Path):
        self._f = open(path, "wb")  # noqa: SIM115 - closed by AtomicParquet.close/abort
        self.sha = hashlib.sha256()
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha.update(view)
        return self._f.write(view)

    def tell(self) -> int:
        return self._f.tell()

    def flush(self) -> None:
        self._f.flush()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._f.close()


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


_SYNC_POOL: ThreadPoolExecutor | None = None


def fsync_files(paths: list[Path]) -> None:
    """fsync several files at once (threads: their waits overlap, and the file system can
    make them durable in one journal commit); returns when every one is durable."""
    global _SYNC_POOL
    if len(paths) <= 1:
        for p in paths:
            _fsync_file(p)
        return
    if _SYNC_POOL is None:
        _SYNC_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="icdsl-fsync")
    for done in [_SYNC_POOL.submit(_fsync_file, p) for p in paths]:
        done.result()


def fsync_dir(path: Path) -> None:
    """Make the names in a folder durable (renames into it)."""
    _fsync_dir(path)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class WrittenFile:
    """A committed data file: ``path`` relative to the data folder."""

    path: str
    sha256: str
    rows: int
    bytes: int
    #: rated records only: (amounts by currency, line numbers) added up as they were written
    check: tuple[dict[str, Any], frozenset[int]] | None = None


class DataDir:
    """The folder holding the store's Parquet files. :meth:`abs` remembers the paths it
    resolved (a cycle asks for the same few folders and intake files again and again: resolving
    one walks every component with ``lstat``); :func:`data_dir` gives one per folder."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()
        self._resolved: dict[str, Path] = {}

    def __repr__(self) -> str:
        return f"DataDir({str(self.root)!r})"

    def abs(self, rel: str) -> Path:
        p = self._resolved.get(rel)
        if p is not None:
            return p
        p = (self.root / rel).resolve()
        if self.root not in p.parents:
            raise ValueError(f"{rel!r} is outside the data folder {self.root}")
        if len(self._resolved) >= RESOLVED_PATHS:
            self._resolved.clear()
        self._resolved[rel] = p
        return p

    def writer(self, rel_dir: str, stem: str, schema: pa.Schema, *, row_group_size: int | None = None,
               unique: tuple[str, ...] = (), dictionaries: bool = False,
               statistics: tuple[str, ...] | None = None, compression: str | None = None,
               small: bool = False) -> AtomicParquet:
        return AtomicParquet(self, rel_dir, stem, schema, row_group_size=row_group_size, unique=unique,
                             dictionaries=dictionaries, statistics=statistics, compression=compression, small=small)

    def verify(self, rel: str, sha256: str) -> None:
        """Raise if the file is missing or its content is not the recorded one. A file is hashed
        once per process: while its size, modification time and inode stay the same, the
        hash found earlier stands (a cycle of 200 partners reads the same intake file 400 times)."""
        p = self.abs(rel)
        try:
            st = p.stat()
        except FileNotFoundError:
            raise FileNotFoundError(f"data file {p} is missing (recorded in the store)") from None
        key = (str(p), st.st_size, st.st_mtime_ns, st.st_ino)
        got = _VERIFIED.get(key)
        if got is None:
            got = sha256_file(p)
            if len(_VERIFIED) > 10_000:
                _VERIFIED.clear()
            _VERIFIED[key] = got
        if got != sha256:
            raise OSError(f"data file {p} has changed: sha256 {got}, the store recorded {sha256}")

    def clean(self, rel_dir: str, keep: set[str]) -> list[str]:
        """Remove the files of ``rel_dir`` that are not in ``keep`` (paths relative to the data
        folder): orphans and temporary files. Call it only while no one else writes there."""
        d = self.abs(rel_dir) if rel_dir else self.root
        removed: list[str] = []
        if not d.is_dir():
            return removed
        for p in sorted(d.iterdir()):
            if not p.is_file():
                continue
            rel = p.relative_to(self.root).as_posix()
            if rel not in keep:
                p.unlink(missing_ok=True)
                removed.append(rel)
        return removed

    def gc(self, keep: set[str], min_age_s: float = 3600.0) -> list[str]:
        """Remove every file of the data folder that the store does not reference and that is
        older than ``min_age_s`` seconds (younger ones may belong to a run in progress)."""
        now = time.time()
        removed: list[str] = []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in sorted(files):
                p = Path(dirpath) / name
                rel = p.relative_to(self.root).as_posix()
                if rel in keep or rel == STORE_ID_FILE:
                    continue
                try:
                    if now - p.stat().st_mtime < min_age_s:
                        continue
                except FileNotFoundError:  # pragma: no cover - removed meanwhile
                    continue
                p.unlink(missing_ok=True)
                removed.append(rel)
        return removed


#: paths a :class:`DataDir` remembers resolved at most
RESOLVED_PATHS = 4096
_DATA_DIRS: dict[str, DataDir] = {}


def data_dir(root: str) -> DataDir:
    """The :class:`DataDir` of ``root``, made once per process (its resolved paths are kept)."""
    d = _DATA_DIRS.get(root)
    if d is None:
        if len(_DATA_DIRS) >= 64:
            _DATA_DIRS.clear()
        d = _DATA_DIRS[root] = DataDir(root)
    return d


STORE_ID_FILE = "STORE_ID"

#: (schema, writer options) -> the bytes of a Parquet file of no rows
_EMPTY: dict[tuple[pa.Schema, str], tuple[bytes, str]] = {}  # (bytes, sha256)


def _native(t: pa.DataType) -> bool:
    """A type that a Parquet file without an Arrow schema reads back as it is."""
    return (pa.types.is_string(t) or pa.types.is_int64(t) or pa.types.is_int32(t) or pa.types.is_decimal(t)
            or (pa.types.is_timestamp(t) and t.unit == "us" and t.tz == "UTC"))


class AtomicParquet:
    """Stream tables into a temporary Parquet file; :meth:`commit` makes it durable and gives
    it its content-addressed name; :meth:`abort` (or leaving a ``with`` block by an exception)
    removes it.

    ``dictionaries``: text columns that arrive dictionary-encoded are written as they are (their
    codes become the Parquet dictionary pages, with no cast to plain strings and no hashing of
    the strings again); the file keeps no Arrow schema of its own, so that every reader sees the
    plain ``schema`` (text as ``string``), exactly as a file written without the option.

    ``statistics``: the columns whose row groups get min/max statistics (None: every column).
    Readers use them only to skip row groups (``filters=``), so a file read by a few keys
    needs them for those only; computing them for every column (texts, decimals) costs as much
    as encoding the file.

    ``compression``: the codec (zstd by default; ``lz4`` where writing speed matters more than
    size, e.g. intake records: half the encoding time, files about 45% larger).

    ``small``: the file will hold few rows (fewer than :data:`SMALL_ROWS`): unless
    ``compression`` says otherwise it is compressed with :data:`SMALL_COMPRESSION`, whose fixed
    cost per column is lower."""

    def __init__(self, data: DataDir, rel_dir: str, stem: str, schema: pa.Schema, *,
                 row_group_size: int | None = None, unique: tuple[str, ...] = (), dictionaries: bool = False,
                 statistics: tuple[str, ...] | None = None, compression: str | None = None, small: bool = False):
        self.data = data
        self.compression = compression or (SMALL_COMPRESSION if small else COMPRESSION)
        self.row_group_size = row_group_size
        self.rel_dir = rel_dir.strip("/")
        self.stem = stem
        self.schema = schema
        self.dir = data.abs(self.rel_dir) if self.rel_dir else data.root
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tmp = self.dir / f"{TMP_PREFIX}{stem}-{os.getpid()}-{uuid.uuid4().hex}.parquet"
        # dictionary pages only where values repeat (texts, versions, units): trying them on
        # ids, times, amounts and the columns said ``unique`` (b_number) costs writing time for
        # nothing; integer ids and times of those are delta-encoded (smaller, faster)
        self._repeating = [f.name for f in schema
                           if (pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
                               or pa.types.is_dictionary(f.type)
                               or f.name in ("agreement_version", "billed_units", "duration_s", "batch_id"))
                           and f.name not in unique]
        self._delta = {f.name: "DELTA_BINARY_PACKED" for f in schema
                       if f.name in unique and (pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type))}
        # only where the plain types read back as they are without the Arrow schema in the file
        self.dictionaries = dictionaries and all(_native(f.type) for f in schema)
        self.statistics: bool | list[str] = True if statistics is None else [c for c in statistics
                                                                            if c in schema.names]
        self._writer: pq.ParquetWriter | None = None  # opened by the first write
        self._sink: _HashingFile | None = None  # the writer's file (hashing what it writes)
        self._sha: str | None = None  # the closed temporary file's sha256 (hashed as written)
        self._write_schema = schema
        self._closed = False
        self._synced = self.tmp  # the file close() made (the temporary one, or an empty file's own)
        self._empty: WrittenFile | None = None
        self.rows = 0
        self.result: WrittenFile | None = None

    def _options(self) -> dict[str, Any]:
        return dict(compression=self.compression, write_statistics=self.statistics, use_dictionary=self._repeating,
                    column_encoding=self._delta or None, **({"store_schema": False} if self.dictionaries else {}))

    def _open(self, schema: pa.Schema) -> None:
        self._write_schema = schema
        self._sink = _HashingFile(self.tmp)
        self._writer = pq.ParquetWriter(self._sink, schema, **self._options())

    def _write_empty(self) -> Path:
        """The file of no rows: the bytes the writer makes for it, made once per schema and
        options (most cycles reject nothing and have no record charges: no writer to set up for
        those). Its name is known before it is written, so it is written under that name (no
        temporary file to rename) unless a file of that name is there already: one with those
        very bytes is kept as it is, any other (a write cut short) is replaced atomically.
        Returns the file to fsync."""
        key = (self.schema, repr(sorted(self._options().items())))
        got = _EMPTY.get(key)
        if got is None:
            buf = pa.BufferOutputStream()
            pq.ParquetWriter(buf, self.schema, **self._options()).close()
            data = buf.getvalue().to_pybytes()
            got = _EMPTY[key] = (data, hashlib.sha256(data).hexdigest())
        data, sha = got
        final = self.dir / f"{self.stem}-{sha[:16]}.parquet"
        self._empty = WrittenFile(final.relative_to(self.data.root).as_posix(), sha, 0, len(data))
        try:
            fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if final.read_bytes() != data:  # a write cut short: replaced by durable bytes
                self.tmp.write_bytes(data)
                _fsync_file(self.tmp)
                os.replace(self.tmp, final)
            return final
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return final

    def write(self, table: pa.Table) -> None:
        if self._closed:
            raise RuntimeError("the file is closed")
        if table.num_rows:
            table = table.select(self.schema.names)
            if self._writer is None and not self.dictionaries:
                self._open(self.schema)
            elif self._writer is None:  # dictionaries: text columns as the first table has them
                self._open(pa.schema([
                    pa.field(f.name, t if pa.types.is_dictionary(t := table.schema.field(f.name).type)
                             and pa.types.is_string(t.value_type) and pa.types.is_string(f.type) else f.type)
                    for f in self.schema]))
            assert self._writer is not None
            self._writer.write_table(table.cast(self._write_schema), row_group_size=self.row_group_size)
            self.rows += table.num_rows

    def close(self, *, sync: bool = True) -> Path:
        """Finish and fsync the temporary file (no rename yet); ``sync=False``: the caller
        fsyncs it (:func:`fsync_files`, several files at once) before :meth:`commit`."""
        if not self._closed:
            self._closed = True
            if self._writer is None:
                self._synced = self._write_empty()
            else:
                self._writer.close()
                assert self._sink is not None
                self._sink.close()
                self._sha = self._sink.sha.hexdigest()
                self._synced = self.tmp
            self._writer = None
            if sync:
                _fsync_file(self._synced)
        return self._synced

    def commit(self, *, sync_dir: bool = True) -> WrittenFile:
        """Give the file its content-addressed name; ``sync_dir=False``: the caller fsyncs the
        folder itself (once for several files of the same folder) before relying on it."""
        if self.result is not None:
            return self.result
        self.close()
        if self._empty is not None:  # written under its name already
            if sync_dir:
                _fsync_dir(self.dir)
            self.result = self._empty
            return self.result
        sha = self._sha or sha256_file(self.tmp)
        final = self.dir / f"{self.stem}-{sha[:16]}.parquet"
        size = self.tmp.stat().st_size
        os.replace(self.tmp, final)
        if sync_dir:
            _fsync_dir(self.dir)
        self.result = WrittenFile(final.relative_to(self.data.root).as_posix(), sha, self.rows, size)
        return self.result

    def name(self) -> WrittenFile:
        """Close the file and give it its content-addressed name before it is durable: the
        caller fsyncs :attr:`synced` and the folder before anything refers to the name (an
        unreferenced file lost in a crash is an orphan, as any other). A file of that name there
        already (an orphan, or a committed file of the same content) is replaced only by bytes
        made durable first."""
        if self.result is not None:
            return self.result
        self.close(sync=False)
        if self._empty is not None:  # written under its name already
            self.result = self._empty
            return self.result
        sha = self._sha or sha256_file(self.tmp)
        final = self.dir / f"{self.stem}-{sha[:16]}.parquet"
        size = self.tmp.stat().st_size
        if final.exists():
            _fsync_file(self.tmp)
        os.replace(self.tmp, final)
        self._synced = final
        self.result = WrittenFile(final.relative_to(self.data.root).as_posix(), sha, self.rows, size)
        return self.result

    @property
    def synced(self) -> Path:
        """The file to fsync once closed (its temporary name, or its own once named)."""
        return self._synced

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):  # closing a broken writer
                self._writer.close()
            self._writer = None
        if self._sink is not None:
            self._sink.close()
        self._closed = True
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicParquet:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or self.result is None:
            self.abort()
