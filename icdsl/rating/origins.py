"""Rates by origin: which cell of a rate table keyed by origin prices a record.

A rate table's rows may carry a :class:`~icdsl.plan.model.CellKey` (an A-number prefix, an
origin country or zone, an origin operator and circle, a destination operator and circle).
A row *holds* for a record when its destination prefix is a prefix of b_number, it is in force
on the record's local date, and every part of its key holds:

- ``origin`` (A-number prefix), ``country``, ``zone``: a_number starts with the prefix (one of
  the country's calling codes, one of the zone's prefixes);
- ``operator``, ``circle``: the a_number's operator and circle in the service's number-range
  table (the longest range prefix; a ported number's operator, and its circle if the ported
  line gives one, override the range's);
- ``d_operator``, ``d_circle``: the same for b_number.

Among the rows that hold, the chosen row is the greatest by, in this order: the length of its
destination prefix (the destination comes first), its key's rank (``CellKey.rank``: destination
operator and circle, then origin operator and circle 6, operator 5, circle 4, A-number prefix 3
(longer first), country 2, zone 1, any origin 0), its effective_from (later first), its position
in the table (later first). A record without a_number is priced only by rows whose key sets no
origin part. No row holds: ``no_rate``.

Both executors call this module: the row executor record by record (:meth:`OriginMatcher.match`),
the batch executor on columns (:meth:`OriginMatcher.lookup`), which computes the same thing: a
number's *class* (its longest prefix among every prefix any key or range names, and its ported
line) decides which keys hold, so the keys are worked out once per class, and each cell's rows
are looked up with the same multi-level prefix tables as a table without origins.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import date

import numpy as np
import pyarrow as pa

from icdsl.plan.model import CellKey, NumberRanges, RateRow, ServicePlan, Span
from icdsl.rating.kernels import PrefixTable, StringBytes
from icdsl.rating.select import Destinations

# --------------------------------------------------------------------------- number ranges


class NumberLookup:
    """A number-range table as lookups: the range of a number (longest prefix) and its port."""

    def __init__(self, table: NumberRanges):
        self.table = table
        self.index = {p: i for i, p in enumerate(table.prefixes)}
        self.maxlen = max((len(p) for p in table.prefixes), default=0)
        self.ported = {row[0]: j for j, row in enumerate(table.ported)}
        self._ported_keys: tuple[np.ndarray, np.ndarray] | None = None

    def ported_keys(self) -> tuple[np.ndarray, np.ndarray]:
        """The ported numbers as sorted int64 keys (``value * 32 + length``) and their lines."""
        if self._ported_keys is None:
            nums = [p[0] for p in self.table.ported]
            keys = np.array([int(x) * 32 + len(x) for x in nums], dtype=np.int64)
            order = np.argsort(keys, kind="stable")
            self._ported_keys = (keys[order], order.astype(np.int64))
        return self._ported_keys

    def range_of(self, number: str) -> int:
        """Index of the longest range prefix of ``number`` (-1: none)."""
        index = self.index
        for n in range(min(len(number), self.maxlen), -1, -1):
            i = index.get(number[:n])
            if i is not None:
                return i
        return -1

    def port_of(self, number: str) -> int:
        return self.ported.get(number, -1)

    def operator(self, r: int, j: int) -> str | None:
        if j >= 0:
            return self.table.ported[j][1]
        return self.table.operators[r] if r >= 0 else None

    def circle(self, r: int, j: int) -> str | None:
        if j >= 0 and self.table.ported[j][2] is not None:
            return self.table.ported[j][2]
        return self.table.circles[r] if r >= 0 else None

    def where(self, number: str) -> Span | None:
        """The CSV line that decided a number's operator: its ported line, else its range's."""
        t = self.table
        j = self.port_of(number)
        if j >= 0:
            line = t.ported[j][3]
            return Span(t.ported_source or t.source, line, 1, line, 2)
        r = self.range_of(number)
        return Span(t.source, t.lines[r], 1, t.lines[r], 2) if r >= 0 else None

    def explain(self, what: str, number: str) -> str:
        """``a_number 9198...: range 919820 (AIRTEL, circle MH, IN) at ranges.csv:2; ported ...``"""
        t = self.table
        r = self.range_of(number)
        j = self.port_of(number)
        if r < 0:
            text = f"{what} {number}: in no range of {t.source}"
        else:
            extra = "".join(f", {x}" for x in (f"circle {t.circles[r]}" if t.circles[r] else None, t.countries[r])
                            if x)
            text = f"{what} {number}: range {t.prefixes[r]} ({t.operators[r]}{extra}) at {t.source}:{t.lines[r]}"
        if j >= 0:
            num, op, circle, line = t.ported[j]
            text += f"; ported to {op}{f' circle {circle}' if circle else ''} at {t.ported_source}:{line}"
        return text + f" -> operator {self.operator(r, j) or '-'}, circle {self.circle(r, j) or '-'}"


#: the record fields a number-range table answers (conditions: ``when origin_operator == "JIO"``)
NUMBER_FIELDS = ("origin_operator", "origin_circle", "destination_operator", "destination_circle")


def number_field(table: NumberRanges | None, record_number: str | None, name: str) -> str | None:
    """``origin_operator`` and the like: the operator or circle of a number (a_number for
    ``origin_*``, b_number for ``destination_*``); None without a table, number or range."""
    if table is None or record_number is None:
        return None
    nl = number_lookup(table)
    r, j = nl.range_of(record_number), nl.port_of(record_number)
    return nl.operator(r, j) if name.endswith("operator") else nl.circle(r, j)


_lookups: dict[int, tuple[NumberRanges, NumberLookup]] = {}
_lookups_lock = threading.Lock()


def number_lookup(table: NumberRanges) -> NumberLookup:
    got = _lookups.get(id(table))
    if got is None or got[0] is not table:
        with _lookups_lock:
            if len(_lookups) > 64:
                _lookups.clear()
            got = (table, NumberLookup(table))
            _lookups[id(table)] = got
    return got[1]


# --------------------------------------------------------------------------- the matcher


class OriginMatcher:
    """One rate table keyed by origin: its cells (distinct keys), their rows, and the classes of
    numbers (see the module's documentation)."""

    def __init__(self, rows: Sequence[RateRow], keys: Sequence[CellKey], dest: Destinations,
                 numbers: NumberRanges | None):
        self.rows = rows
        self.dest = dest
        self.numbers = number_lookup(numbers) if numbers is not None else None
        cells: dict[CellKey, list[int]] = {}
        for i, k in enumerate(keys):
            cells.setdefault(k, []).append(i)
        self.cells = list(cells)
        self.members = [np.array(ix, dtype=np.int64) for ix in cells.values()]
        self.cell_of = np.zeros(len(keys), dtype=np.int32)
        for c, ix in enumerate(self.members):
            self.cell_of[ix] = c
        # a Destinations per cell over its own rows (sub-index -> table row)
        self.sub = [Destinations([rows[i] for i in ix.tolist()]) for ix in self.members]
        # the preference of every row: (destination prefix length, key rank, start, position)
        prefixes = dest.prefixes
        order = sorted(range(len(keys)), key=lambda i: (len(prefixes[i]), keys[i].rank, dest.start[i], i))
        self.rank = np.empty(len(keys), dtype=np.int64)
        self.rank[np.array(order, dtype=np.int64)] = np.arange(len(keys), dtype=np.int64)
        self.rank_list = self.rank.tolist()
        # every prefix an origin part names (and the ranges when an operator or circle is asked)
        universe: set[str] = set()
        self.origin_numbers = any(k.operator is not None or k.circle is not None for k in self.cells)
        self.dest_numbers = any(k.d_operator is not None or k.d_circle is not None for k in self.cells)
        for k in self.cells:
            if k.origin is not None:
                universe.add(k.origin)
            universe.update(k.country_prefixes)
            universe.update(k.zone_prefixes)
        if self.origin_numbers and self.numbers is not None:
            universe.update(self.numbers.table.prefixes)
        self.universe = sorted(universe)
        self.u_index = {p: i for i, p in enumerate(self.universe)}
        self.u_maxlen = max((len(p) for p in self.universe), default=0)
        self._holds: dict[tuple[int, int, int, int], tuple[int, ...]] = {}
        self._by_signature: dict[tuple, tuple[int, ...]] = {}
        self._sig_arrays: dict | None = None
        # the prefix conditions of the keys: ("o", A-prefix), ("c", country), ("z", zone), by prefix
        self._pconds: dict[str, list[tuple]] = {}
        for k in self.cells:
            if k.origin is not None:
                self._pconds.setdefault(k.origin, []).append(("o", k.origin))
            for p in k.country_prefixes:
                self._pconds.setdefault(p, []).append(("c", k.country, k.country_prefixes))
            for p in k.zone_prefixes:
                self._pconds.setdefault(p, []).append(("z", k.zone, k.zone_prefixes))
        self._tables: dict[tuple[int, int], PrefixTable | None] = {}
        self._u_table: PrefixTable | None | bool = False
        self._r_table: PrefixTable | None | bool = False
        self._tlock = threading.Lock()

    # ---------------------------------------------------------------- classes of numbers

    def origin_class(self, a_number: str | None) -> tuple[int, int]:
        """(index of the longest universe prefix of a_number or -1, its ported line or -1);
        (-2, -1) for no a_number."""
        if a_number is None:
            return -2, -1
        index = self.u_index
        u = -1
        for n in range(min(len(a_number), self.u_maxlen), -1, -1):
            i = index.get(a_number[:n])
            if i is not None:
                u = i
                break
        j = self.numbers.port_of(a_number) if self.origin_numbers and self.numbers is not None else -1
        return u, j

    def dest_class(self, b_number: str) -> tuple[int, int]:
        if not self.dest_numbers or self.numbers is None:
            return -1, -1
        return self.numbers.range_of(b_number), self.numbers.port_of(b_number)

    def holding(self, u: int, j: int, dr: int, dj: int) -> tuple[int, ...]:
        """The cells whose key holds for a record of origin class (u, j) and destination class
        (dr, dj): worked out once per *signature* (the prefix conditions the caller meets, its
        operator and circle, the called number's), which many classes share (every range of
        one operator in one circle)."""
        got = self._holds.get((u, j, dr, dj))
        if got is None:
            sig = self._signature(u, j, dr, dj)
            got = self._by_signature.get(sig)
            if got is None:
                got = self._by_signature[sig] = tuple(
                    c for c, k in enumerate(self.cells) if self._holds_signature(k, sig))
            self._holds[(u, j, dr, dj)] = got
        return got

    def _signature(self, u: int, j: int, dr: int, dj: int) -> tuple:
        nl = self.numbers
        if u == -2:
            conds: frozenset = frozenset()
            op = circle = None
        else:
            p = self.universe[u] if u >= 0 else ""
            found = set()
            for n in range(1, len(p) + 1):
                found.update(self._pconds.get(p[:n], ()))
            conds = frozenset(found)
            op = circle = None
            if self.origin_numbers and nl is not None:
                r = nl.range_of(p) if u >= 0 else -1
                op, circle = nl.operator(r, j), nl.circle(r, j)
        d_op = d_circle = None
        if self.dest_numbers and nl is not None:
            d_op, d_circle = nl.operator(dr, dj), nl.circle(dr, dj)
        return u == -2, conds, op, circle, d_op, d_circle

    @staticmethod
    def _holds_signature(k: CellKey, sig: tuple) -> bool:
        no_caller, conds, op, circle, d_op, d_circle = sig
        if no_caller and (k.origin is not None or k.country is not None or k.zone is not None
                          or k.operator is not None or k.circle is not None):
            return False
        return ((k.origin is None or ("o", k.origin) in conds)
                and (k.country is None or ("c", k.country, k.country_prefixes) in conds)
                and (k.zone is None or ("z", k.zone, k.zone_prefixes) in conds)
                and (k.operator is None or op == k.operator)
                and (k.circle is None or circle == k.circle)
                and (k.d_operator is None or d_op == k.d_operator)
                and (k.d_circle is None or d_circle == k.d_circle))

    def holds_plainly(self, k: CellKey, u: int, j: int, dr: int, dj: int) -> bool:
        """The definition of "a key holds", written plainly (tests check :meth:`holding`
        against it)."""
        return self._holds_key(k, u, j, dr, dj)

    def _holds_key(self, k: CellKey, u: int, j: int, dr: int, dj: int) -> bool:
        if u == -2 and (k.origin is not None or k.country is not None or k.zone is not None
                        or k.operator is not None or k.circle is not None):
            return False  # no a_number: only keys without an origin part
        p = self.universe[u] if u >= 0 else ""
        if k.origin is not None and not p.startswith(k.origin):
            return False
        if k.country is not None and not any(p.startswith(c) for c in k.country_prefixes):
            return False
        if k.zone is not None and not any(p.startswith(z) for z in k.zone_prefixes):
            return False
        nl = self.numbers
        if k.operator is not None or k.circle is not None:
            r = nl.range_of(p) if nl is not None and u >= 0 else -1
            if k.operator is not None and (nl is None or nl.operator(r, j) != k.operator):
                return False
            if k.circle is not None and (nl is None or nl.circle(r, j) != k.circle):
                return False
        if k.d_operator is not None and (nl is None or nl.operator(dr, dj) != k.d_operator):
            return False
        return not (k.d_circle is not None and (nl is None or nl.circle(dr, dj) != k.d_circle))

    # ---------------------------------------------------------------- one record (row executor)

    def candidates(self, b_number: str, a_number: str | None, day: int) -> list[tuple[int, int]]:
        """(cell, row) of every cell that holds and has a row for b_number on ``day``."""
        u, j = self.origin_class(a_number)
        dr, dj = self.dest_class(b_number)
        out = []
        for c in self.holding(u, j, dr, dj):
            i = self.sub[c].match(b_number, day)
            if i >= 0:
                out.append((c, int(self.members[c][i])))
        return out

    def match(self, b_number: str, a_number: str | None, day: int) -> int:
        """The row that prices the record (-1: none)."""
        best, best_rank = -1, -1
        rank = self.rank_list
        for _c, row in self.candidates(b_number, a_number, day):
            if rank[row] > best_rank:
                best, best_rank = row, rank[row]
        return best

    def explain(self, b_number: str, a_number: str | None, day: int) -> list[tuple[str, Span | None]]:
        """The lines of the trace that say how the origin cell was chosen, each with the place
        that decided it (a range's or ported number's CSV line, the chosen row; None: the table)."""
        lines: list[tuple[str, Span | None]] = []
        nl = self.numbers
        if a_number is None:
            lines.append(("no a_number: only rows without an origin key can price the record", None))
        elif self.origin_numbers and nl is not None:
            lines.append((nl.explain("a_number", a_number), nl.where(a_number)))
        else:
            u, _ = self.origin_class(a_number)
            lines.append((f"a_number {a_number}: longest origin prefix {self.universe[u]}" if u >= 0
                          else f"a_number {a_number}: no origin prefix of the table matches", None))
        if self.dest_numbers and nl is not None:
            lines.append((nl.explain("b_number", b_number), nl.where(b_number)))
        cands = self.candidates(b_number, a_number, day)
        rank = self.rank_list
        cands.sort(key=lambda t: rank[t[1]], reverse=True)
        if cands:
            others = "; ".join(f"{self.cells[c].text()}: prefix {self.rows[r].prefix} ({_line(self.rows[r])})"
                               for c, r in cands[1:])
            c, r = cands[0]
            row = self.rows[r]
            text = (f"origin cell: {self.cells[c].text()}, prefix {row.prefix} ({row.destination}) at "
                    f"{_line(row)}: the longest destination prefix, then the most specific origin")
            if others:
                text += f"; also holding: {others}"
            lines.append((text, row.span))
        else:
            lines.append((f"no origin cell that holds for this record has a row for b_number {b_number}", None))
        return lines

    # ---------------------------------------------------------------- columns (batch executor)

    def lookup(self, keys: np.ndarray, key_digits: int, called: StringBytes, callers: StringBytes | None,
               pos: np.ndarray, days: np.ndarray | None, epoch_cuts: np.ndarray) -> np.ndarray:
        """Row of each record at ``pos`` (-1: none). ``keys``: the first ``key_digits`` digits of
        their b_number (the caller sends records whose key is not exact to :meth:`match`);
        ``called``/``callers``: the batch's b_number and a_number columns as string bytes (no
        a_number column: None); ``days``: their local day ordinals (None: no dated rows)."""
        n = len(keys)
        u, j = self._origin_classes(callers, pos)
        dr, dj = self._dest_classes(called, pos)
        sigs, inverse = self._signatures(u, j, dr, dj)
        holds = np.zeros((len(sigs), len(self.cells)), dtype=bool)
        for x, sig in enumerate(sigs):
            got = self._by_signature.get(sig)
            if got is None:
                got = self._by_signature[sig] = tuple(
                    c for c, k in enumerate(self.cells) if self._holds_signature(k, sig))
            holds[x, list(got)] = True
        # the records of each signature, to visit only the records a cell holds for
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(sigs) + 1))
        epochs = np.searchsorted(epoch_cuts, days, side="right") if days is not None else None
        best = np.full(n, -1, dtype=np.int64)
        best_rank = np.full(n, -1, dtype=np.int64)
        for c in np.flatnonzero(holds.any(axis=0)).tolist():
            members = np.flatnonzero(holds[:, c])
            if len(members) == len(sigs):
                sel = np.arange(n)
            else:
                sel = np.sort(np.concatenate([order[bounds[x]:bounds[x + 1]] for x in members.tolist()]))
            if not len(sel):
                continue
            rows = np.full(len(sel), -1, dtype=np.int64)
            if epochs is None:
                table = self._table(c, 0, key_digits, None)
                if table is not None:
                    rows = table.lookup(keys[sel]).astype(np.int64)
            else:
                ep = epochs[sel]
                for e in np.unique(ep).tolist():
                    table = self._table(c, e, key_digits, epoch_cuts)
                    if table is None:
                        continue
                    at = np.flatnonzero(ep == e)
                    rows[at] = table.lookup(keys[sel[at]])
            r = np.where(rows >= 0, self.rank[np.maximum(rows, 0)], -1)
            better = r > best_rank[sel]
            best[sel[better]] = rows[better]
            best_rank[sel[better]] = r[better]
        return best.astype(np.int32)

    def _signature_arrays(self) -> dict[str, np.ndarray | list]:
        """Per universe prefix, ported line and range: ids of what a signature is made of (the
        prefix conditions met, operators and circles), so that a batch's signatures are
        computed on columns. Built once per matcher."""
        got = self._sig_arrays
        if got is not None:
            return got
        with self._tlock:
            if self._sig_arrays is not None:
                return self._sig_arrays
            names: dict[str | None, int] = {None: 0}
            conds: dict[frozenset, int] = {}
            nl = self.numbers

            def name_id(v: str | None) -> int:
                return names.setdefault(v, len(names))

            u_cond, u_op, u_circle = [], [], []
            for p in self.universe + [""]:  # the last entry: a caller in no universe prefix
                sig = self._signature(self.u_index.get(p, -1) if p else -1, -1, -1, -1)
                u_cond.append(conds.setdefault(sig[1], len(conds)))
                u_op.append(name_id(sig[2]))
                u_circle.append(name_id(sig[3]))
            ported = nl.table.ported if nl is not None else ()
            j_op = [name_id(x[1]) for x in ported] or [0]
            j_circle = [name_id(x[2]) for x in ported] or [0]  # 0 (None): the range's circle
            ranges = nl.table if nl is not None else None
            r_op = [name_id(o) for o in ranges.operators] + [0] if ranges is not None else [0]
            r_circle = [name_id(c) for c in ranges.circles] + [0] if ranges is not None else [0]
            arr = lambda x: np.array(x, dtype=np.int64)  # noqa: E731
            self._sig_arrays = {
                "u_cond": arr(u_cond), "u_op": arr(u_op), "u_circle": arr(u_circle), "j_op": arr(j_op),
                "j_circle": arr(j_circle), "r_op": arr(r_op), "r_circle": arr(r_circle),
                "names": list(names), "conds": list(conds),
            }
            return self._sig_arrays

    def _signatures(self, u: np.ndarray, j: np.ndarray, dr: np.ndarray, dj: np.ndarray) -> tuple[list, np.ndarray]:
        """The distinct signatures (as :meth:`_signature` makes them) of records of origin
        classes (u, j) and destination classes (dr, dj), and the index of each record's."""
        a = self._signature_arrays()
        names, conds = a["names"], a["conds"]
        no_caller = u == -2
        uu = np.where(u < 0, len(self.universe), u)
        cond = np.where(no_caller, -1, a["u_cond"][uu])
        op = np.zeros(len(u), dtype=np.int64)
        circle = np.zeros(len(u), dtype=np.int64)
        if self.origin_numbers and self.numbers is not None:
            jj = np.maximum(j, 0)
            ported = j >= 0
            op = np.where(ported, a["j_op"][jj], a["u_op"][uu])
            own = ported & (a["j_circle"][jj] > 0)
            circle = np.where(own, a["j_circle"][jj], a["u_circle"][uu])
            op[no_caller] = 0
            circle[no_caller] = 0
        d_op = np.zeros(len(u), dtype=np.int64)
        d_circle = np.zeros(len(u), dtype=np.int64)
        if self.dest_numbers and self.numbers is not None:
            rr = np.where(dr < 0, len(a["r_op"]) - 1, dr)
            jj = np.maximum(dj, 0)
            ported = dj >= 0
            d_op = np.where(ported, a["j_op"][jj], a["r_op"][rr])
            own = ported & (a["j_circle"][jj] > 0)
            d_circle = np.where(own, a["j_circle"][jj], a["r_circle"][rr])
        k = len(names)
        o_codes, o_inv = np.unique(((cond + 1) * k + op) * k + circle, return_inverse=True)
        d_codes, d_inv = np.unique(d_op * k + d_circle, return_inverse=True)
        codes, inverse = np.unique(o_inv.ravel() * len(d_codes) + d_inv.ravel(), return_inverse=True)
        sigs = []
        for code in codes.tolist():
            oc, dc = divmod(code, len(d_codes))
            rest, circle_ = divmod(int(o_codes[oc]), k)
            cond_, op_ = divmod(rest, k)
            d_op_, d_circle_ = divmod(int(d_codes[dc]), k)
            sigs.append((cond_ == 0, conds[cond_ - 1] if cond_ > 0 else frozenset(), names[op_], names[circle_],
                         names[d_op_], names[d_circle_]))
        return sigs, inverse.ravel()

    def _origin_classes(self, callers: StringBytes | None, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(pos)
        if callers is None:
            return np.full(n, -2, dtype=np.int64), np.full(n, -1, dtype=np.int64)
        k = self.u_maxlen
        u = np.full(n, -1, dtype=np.int64)
        if k <= 16 and self.universe:
            table = self._universe_table()
            digits, ok = callers.digit_keys_at(k, pos)
            if table is not None and ok.any():
                u[ok] = table.lookup(digits[ok])
            slow = np.flatnonzero(~ok)
        else:
            slow = np.arange(n)
        if len(slow):
            values = callers.array.take(pa.array(pos[slow])).to_pylist()
            u[slow] = [self.origin_class(v)[0] for v in values]
        nulls = ~callers.valid[pos]
        u[nulls] = -2
        j = np.full(n, -1, dtype=np.int64)
        if self.origin_numbers and self.numbers is not None and self.numbers.table.ported:
            j = _ported(callers, pos, self.numbers)
            j[nulls] = -1
        return u, j

    def _dest_classes(self, called: StringBytes, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(pos)
        if not self.dest_numbers or self.numbers is None:
            return np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64)
        nl = self.numbers
        r = np.full(n, -1, dtype=np.int64)
        table = self._range_table()
        if nl.maxlen <= 16 and table is not None:
            digits, ok = called.digit_keys_at(nl.maxlen, pos)
            r[ok] = table.lookup(digits[ok])
            slow = np.flatnonzero(~ok)
        else:
            slow = np.arange(n)
        if len(slow):
            values = called.array.take(pa.array(pos[slow])).to_pylist()
            r[slow] = [nl.range_of(v) if v is not None else -1 for v in values]
        j = _ported(called, pos, nl) if nl.table.ported else np.full(n, -1, dtype=np.int64)
        return r, j

    def _universe_table(self) -> PrefixTable | None:
        if self._u_table is False:
            with self._tlock:
                if self._u_table is False:
                    self._u_table = PrefixTable(self.universe, list(range(len(self.universe))), self.u_maxlen)
        return self._u_table

    def _range_table(self) -> PrefixTable | None:
        if self._r_table is False:
            with self._tlock:
                if self._r_table is False:
                    t = self.numbers.table
                    self._r_table = (PrefixTable(list(t.prefixes), list(range(len(t.prefixes))), self.numbers.maxlen)
                                     if t.prefixes else None)
        return self._r_table

    def _table(self, c: int, epoch: int, key_digits: int, cuts: np.ndarray | None) -> PrefixTable | None:
        got = self._tables.get((c, epoch), False)
        if got is not False:
            return got
        with self._tlock:
            if (c, epoch) in self._tables:
                return self._tables[(c, epoch)]
            dest = self.dest
            members = self.members[c].tolist()
            if cuts is not None and len(cuts):
                day = int(cuts[epoch - 1]) if epoch > 0 else int(cuts[0]) - 1
                members = [i for i in members if dest.start[i] <= day < dest.stop[i]]
            # same-prefix rows in one cell: the preferred one is written last
            members.sort(key=lambda i: (dest.start[i], i))
            table = PrefixTable([dest.prefixes[i] for i in members], members, key_digits) if members else None
            self._tables[(c, epoch)] = table
            return table


def _ported(numbers: StringBytes, pos: np.ndarray, nl: NumberLookup) -> np.ndarray:
    """The ported line of the numbers at ``pos`` (-1: not ported). A number of L digits is the
    key ``value * 32 + L`` (exact in int64 for L <= 16), searched in the sorted keys of the
    ported numbers: no hash set of a national porting database rebuilt per batch."""
    keys, order = nl.ported_keys()
    out = np.full(len(pos), -1, dtype=np.int64)
    if not len(keys):
        return out
    valid = numbers.valid[pos]
    lengths = numbers.offsets[pos + 1] - numbers.offsets[pos]
    for length in np.unique(lengths[valid]).tolist():
        if not 1 <= length <= 16:
            continue
        sub = np.flatnonzero((lengths == length) & valid)
        value, ok = numbers.digit_keys_at(int(length), pos[sub])
        sub, value = sub[ok], value[ok]
        k = value * 32 + length
        at = np.minimum(np.searchsorted(keys, k), len(keys) - 1)
        hit = keys[at] == k
        out[sub[hit]] = order[at[hit]]
    return out


def _line(row: RateRow) -> str:
    return str(row.span)


_matchers: dict[int, tuple[ServicePlan, OriginMatcher]] = {}
_matchers_lock = threading.Lock()


def origin_matcher(sp: ServicePlan, dest: Destinations | None) -> OriginMatcher | None:
    """The matcher of a service whose rate table is keyed by origin (None otherwise), shared by
    both executors."""
    rates = sp.rates
    if rates is None or rates.keys is None or dest is None:
        return None
    got = _matchers.get(id(sp))
    if got is None or got[0] is not sp:
        with _matchers_lock:
            if len(_matchers) > 256:
                _matchers.clear()
            got = (sp, OriginMatcher(rates.rows, rates.keys, dest, sp.numbers))
            _matchers[id(sp)] = got
    return got[1]


def day_text(day: int) -> str:
    return date.fromordinal(day).isoformat()
