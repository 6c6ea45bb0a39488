"""CSV files: read in blocks cut at line ends, each parsed by pyarrow (every column as text) in
a second thread while the previous block is normalized.

UTF-8 (a BOM is skipped), a header line, ``,`` (or ``;``, tab, ``|`` if the header has no comma)
with ``"`` quoting; gzip/bz2/zstd files are read transparently. Blank lines are not records (not
counted). A line with the wrong number of fields or bytes that are not UTF-8 is a
``malformed_row`` (raw: the line with bad bytes shown as ``\\xff``; id: its id field if it has
one). A quoted value may span lines (the row number is its first line). A block with a
malformed line is parsed again (single-threaded, so that pyarrow reports the line numbers), and
only a block pyarrow cannot parse at all (bytes that are not UTF-8, odd quoting) is read line
by line with Python's csv module.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from icdsl.rating.intake.columns import positions
from icdsl.rating.intake.counts import IntakeError
from icdsl.rating.intake.pieces import Piece

BLOCK_BYTES = 4 << 20  # CSV bytes handed to pyarrow at a time
MAX_LINE_BYTES = 256 << 20  # a longer CSV line is a malformed row
PREFETCH = True  # parse the next block in a thread while normalizing (False: for profiling)


def _is_utf8(buf: bytearray, end: int) -> bool:
    """Whether ``buf[:end]`` is UTF-8 text (about a millisecond for a block of ASCII).

    Checked before pyarrow parses a block: pyarrow decodes a malformed row's text before it calls
    our invalid-row handler, and when that row is not UTF-8 the decoding fails inside pyarrow,
    which prints an "Exception ignored" traceback. Such a block goes to the line-by-line reader,
    where the row becomes a ``malformed_row`` ("line is not UTF-8")."""
    try:
        codecs.utf_8_decode(memoryview(buf)[:end], "strict", True)
    except UnicodeDecodeError:
        return False
    return True


class CsvSource:
    def __init__(self, path: str, label: str, compression: str | None):
        self.path = path
        self.label = label
        self.compression = compression
        self.names: list[str] = []
        self.delimiter = ","
        self.types: dict[str, pa.DataType] = {}
        with self._open() as f:
            head, self._header_bytes = self._read_header(f)
        if head is None:
            return
        text = head.decode("utf-8") if isinstance(head, bytes) else head
        self.delimiter = _sniff_delimiter(text)
        try:
            fields = next(csv.reader([text], delimiter=self.delimiter), [])
        except csv.Error as exc:
            raise IntakeError(f"{self.label}: the header line cannot be read as CSV ({exc})") from None
        seen: dict[str, int] = {}
        for i, name in enumerate(fields):
            name = name.strip() or f"column_{i + 1}"
            if name in seen:
                seen[name] += 1
                name = f"{name}_{seen[name]}"
            seen.setdefault(name, 1)
            self.names.append(name)
        self.types = {n: pa.string() for n in self.names}

    def _open(self) -> Any:
        try:
            return pa.input_stream(self.path, compression=self.compression)
        except (OSError, pa.ArrowException) as exc:
            raise IntakeError(f"cannot read {self.label}: {exc}") from None

    def _read_header(self, f: Any) -> tuple[str | None, int]:
        buf = b""
        while b"\n" not in buf:
            chunk = f.read(1 << 16)
            if not chunk:
                break
            buf += chunk
            if len(buf) > 16 << 20:
                raise IntakeError(f"{self.label} is not a CSV file (no line end in its first 16 MB)")
        if not buf:
            return None, 0
        line = buf.split(b"\n", 1)[0]
        size = len(line) + (1 if len(line) < len(buf) else 0)
        if line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        line = line.rstrip(b"\r")
        if b"\r" in line:
            raise IntakeError(
                f"{self.label} ends its lines with a carriage return alone (old Mac style); "
                "convert the line ends to \\n or \\r\\n"
            )
        if b"\x00" in line:
            raise IntakeError(
                f"{self.label} is neither a Parquet file nor a CSV file (binary data in its first line)"
            )
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise IntakeError(f"{self.label}: the header line is not UTF-8 text; is it a CSV file?") from None
        if not text.strip():
            raise IntakeError(f"{self.label}: the first line is empty; a CSV file starts with a header line")
        return text, size

    def _open_raw(self) -> Any:
        """The file as a Python binary stream (``readinto`` avoids copying blocks around)."""
        try:
            if self.compression is None:
                return open(self.path, "rb", buffering=0)  # noqa: SIM115 - closed by the caller
            if self.compression == "gzip":
                return gzip.open(self.path, "rb")
            if self.compression == "bz2":
                return bz2.open(self.path, "rb")
        except OSError as exc:
            raise IntakeError(f"cannot read {self.label}: {exc.strerror or exc}") from None
        return self._open()

    def pieces(self) -> Iterator[Piece]:
        if not self.names:
            return
        with self._open_raw() as f:
            _read_exactly(f, self._header_bytes)
            pending = b""
            line = 2
            want = BLOCK_BYTES
            while True:
                buf = bytearray(len(pending) + want)
                buf[: len(pending)] = pending
                got = _read_into(f, memoryview(buf)[len(pending) :])
                size = len(pending) + got
                eof = got == 0
                if eof:
                    end = size
                else:
                    end = buf.rfind(b"\n", 0, size) + 1
                    if end == 0:  # no line end yet: a long line, read more (twice as much)
                        pending = bytes(buf[:size])
                        if len(pending) > MAX_LINE_BYTES:
                            piece, pending, used = self._too_long(f, pending, line)
                            yield piece
                            line += used
                        want = max(BLOCK_BYTES, len(pending))
                        continue
                want = BLOCK_BYTES
                pending = bytes(buf[end:size])
                if end:
                    piece, nlines = self._parse_block(buf, end, line)
                    line += nlines
                    yield piece
                if eof:
                    return

    def _too_long(self, f: Any, pending: bytes, line: int) -> tuple[Piece, bytes, int]:
        size = len(pending)
        while True:
            chunk = f.read(BLOCK_BYTES)
            if not chunk:
                rest = b""
                break
            cut = chunk.find(b"\n")
            if cut >= 0:
                size += cut
                rest = chunk[cut + 1 :]
                break
            size += len(chunk)
        raw = pending[:1000].decode("utf-8", "backslashreplace") + f"… ({size} bytes)"
        detail = f"line has {size} bytes, more than the {MAX_LINE_BYTES} allowed"
        empty = pa.table({n: pa.array([], pa.string()) for n in self.names})
        return (
            Piece(
                empty, np.zeros(0, np.int64), lambda pos: [], [(line, None, "malformed_row", detail, raw)]
            ),
            rest,
            1,
        )

    def _read(self, block: pa.Buffer, threads: bool, handler: Callable[[Any], str]) -> pa.Table:
        return pacsv.read_csv(
            pa.BufferReader(block),
            # single-threaded: the block in one chunk (no copy to combine chunks afterwards)
            read_options=pacsv.ReadOptions(
                column_names=self.names,
                use_threads=threads,
                block_size=(1 << 20) if threads else max(1 << 20, block.size + 1),
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=self.delimiter,
                newlines_in_values=False,
                ignore_empty_lines=False,
                invalid_row_handler=handler,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=self.types,
                check_utf8=True,
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )

    def _parse_block(self, buf: bytearray, end: int, first: int) -> tuple[Piece, int]:
        """Parse ``buf[:end]`` (whole lines, the first being line ``first``): the piece and the
        number of lines."""
        # Without quotes or carriage returns, every line is one row or one invalid row for
        # pyarrow: no need to count the lines (a quoted value may span lines, a lone \r ends one).
        simple = buf.find(b'"', 0, end) < 0 and buf.find(b"\r", 0, end) < 0
        nlines = -1 if simple else buf.count(b"\n", 0, end) + (0 if buf[end - 1] == 10 else 1)
        block = pa.py_buffer(buf)[:end]
        lines = BlockLines(buf, end)
        invalid: list[Any] = []
        if not _is_utf8(buf, end):
            return self._python_block(bytes(buf[:end]), first), (
                nlines if nlines >= 0 else buf.count(b"\n", 0, end) + (0 if buf[end - 1] == 10 else 1))
        try:
            table = self._read(block, not PREFETCH, lambda r: invalid.append(r) or "skip")
            if simple:
                nlines = table.num_rows + len(invalid)
            if not invalid and table.num_rows == nlines:
                rows = first + np.arange(nlines, dtype=np.int64)
                return self._drop_blank(Piece(table, rows, lines.raw_of(rows, first), []), lines, first), nlines
            if invalid:
                invalid.clear()
                table = self._read(block, False, lambda r: invalid.append(r) or "skip")
                numbers = [r.number for r in invalid]
                if table.num_rows + len(invalid) == nlines and None not in numbers:
                    bad_idx = np.asarray(sorted(numbers), np.int64) - 1
                    w = bad_idx - np.arange(len(bad_idx))
                    k = np.arange(table.num_rows, dtype=np.int64)
                    idx = k + np.searchsorted(w, k, side="right")
                    pre = []
                    for r in invalid:
                        text = lines.text(r.number - 1)
                        if text.strip():  # a line of spaces is a blank line, not a record
                            detail = self._count_detail(r.actual_columns)
                            pre.append((first + r.number - 1, None, "malformed_row", detail, text))
                    rows = first + idx
                    piece = Piece(table, rows, lines.raw_of(rows, first), pre)
                    return self._drop_blank(piece, lines, first), nlines
        except pa.ArrowInvalid:
            pass
        if nlines < 0:
            nlines = buf.count(b"\n", 0, end) + (0 if buf[end - 1] == 10 else 1)
        return self._python_block(bytes(buf[:end]), first), nlines

    def _count_detail(self, got: int) -> str:
        return f"line has {got} field{'s' if got != 1 else ''}, the header has {len(self.names)}"

    def _drop_blank(self, piece: Piece, lines: BlockLines, first: int) -> Piece:
        """Blank lines parse as rows of empty strings: they are not records (a line of empty
        fields, ``,,,``, is one: it is rejected later for its missing fields)."""
        t = piece.table
        if t.num_rows == 0 or t.num_columns == 0:
            return piece
        empty = pc.equal(pc.binary_length(t.column(0)), 0)
        if not pc.any(empty).as_py():
            return piece
        cand = positions(empty)
        blank = [p for p in cand.tolist() if not lines.text(int(piece.rows[p]) - first).strip()]
        if not blank:
            return piece
        keep = np.setdiff1d(np.arange(t.num_rows), blank)
        raw = piece.raw
        return Piece(t.take(pa.array(keep)), piece.rows[keep], lambda pos: raw(keep[pos]), piece.pre)

    def _python_block(self, block: bytes, first: int) -> Piece:
        """The slow path: line by line with Python's csv module (bad bytes, odd quoting)."""
        parts = block.split(b"\n")
        if block.endswith(b"\n"):
            parts.pop()
        texts: list[str] = []
        undecodable: dict[int, str] = {}
        for i, b in enumerate(parts):
            b = b[:-1] if b.endswith(b"\r") else b
            try:
                texts.append(b.decode("utf-8"))
            except UnicodeDecodeError as exc:
                texts.append(b.decode("utf-8", "backslashreplace"))
                undecodable[i] = f"line is not UTF-8 (byte 0x{b[exc.start]:02x} at position {exc.start + 1})"
        ncols = len(self.names)
        cols: list[list[str]] = [[] for _ in range(ncols)]
        rows: list[int] = []
        raws: list[str] = []
        pre: list[tuple[int, str | None, str, str, str]] = []
        base = start = 0
        reader = csv.reader((t + "\n" for t in texts), delimiter=self.delimiter, strict=False)
        while start < len(texts):
            try:
                rec = next(reader)
            except StopIteration:
                break
            except csv.Error:
                rec = None
            end = max(base + reader.line_num, start + 1)
            if rec is None:  # start again after the line the csv module refused
                base = end
                reader = csv.reader((t + "\n" for t in texts[end:]), delimiter=self.delimiter, strict=False)
            raw = "\n".join(texts[start:end])
            bad = next((undecodable[j] for j in range(start, end) if j in undecodable), None)
            if bad is not None:
                pre.append((first + start, None, "malformed_row", bad, raw))
            elif rec is None:
                pre.append((first + start, None, "malformed_row", "line cannot be parsed as CSV", raw))
            elif not rec or (len(rec) == 1 and not rec[0].strip() and ncols > 1):
                pass  # a blank line: not a record
            elif len(rec) != ncols:
                pre.append((first + start, None, "malformed_row", self._count_detail(len(rec)), raw))
            else:
                for c, v in zip(cols, rec, strict=True):
                    c.append(v)
                rows.append(first + start)
                raws.append(raw)
            start = end
        table = pa.table({n: pa.array(c, pa.string()) for n, c in zip(self.names, cols, strict=True)})
        return Piece(table, np.asarray(rows, np.int64), lambda pos: [raws[p] for p in pos], pre)


class BlockLines:
    """Line offsets of a CSV block (``buf[:end]``), computed only when a line's text is asked."""

    def __init__(self, buf: bytearray, end: int):
        self.buf = buf
        self.end = end
        self._bounds: tuple[np.ndarray, np.ndarray] | None = None

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(start, end) byte offsets of every line, the end excluding the newline."""
        if self._bounds is None:
            ends = np.flatnonzero(np.frombuffer(self.buf, np.uint8, count=self.end) == 10)
            if self.buf[self.end - 1] != 10:
                ends = np.append(ends, self.end)
            starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
            self._bounds = (starts, ends)
        return self._bounds

    def text(self, k: int) -> str:
        starts, ends = self.bounds()
        b = bytes(self.buf[starts[k] : ends[k]])
        return (b[:-1] if b.endswith(b"\r") else b).decode("utf-8", "backslashreplace")

    def raw_of(self, rows: np.ndarray, first: int) -> Callable[[np.ndarray], list[str]]:
        """Original text of table positions, given each table row's line number."""
        return lambda pos: [self.text(int(r) - first) for r in rows[pos]]


def _read_into(f: Any, view: memoryview) -> int:
    """Fill ``view`` from ``f`` as far as the file goes; the number of bytes read."""
    total = 0
    readinto = getattr(f, "readinto", None)
    while total < len(view):
        if readinto is not None:
            got = readinto(view[total:])
        else:
            chunk = f.read(len(view) - total)
            got = len(chunk)
            view[total : total + got] = chunk
        if not got:
            break
        total += got
    return total


def _read_exactly(f: Any, n: int) -> None:
    while n > 0:
        chunk = f.read(min(n, 1 << 20))
        if not chunk:
            return
        n -= len(chunk)


def _sniff_delimiter(header: str) -> str:
    if "," in header:
        return ","
    counts = {d: header.count(d) for d in (";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","
