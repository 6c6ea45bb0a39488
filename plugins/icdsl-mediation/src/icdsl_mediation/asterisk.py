"""Asterisk ``cdr_csv`` files (``/var/log/asterisk/cdr-csv/Master.csv``).

One call per line, no header, every value quoted, 16 fixed columns::

    accountcode, src, dst, dcontext, clid, channel, dstchannel, lastapp, lastdata,
    start, answer, end, duration, billsec, disposition, amaflags

then, as ``cdr_csv.conf`` says: ``uniqueid`` (``loguniqueid``), ``userfield``
(``loguserfield``), ``peeraccount, linkedid, sequence`` (``newcdrcolumns``): 16 to 21 columns.
With 17 or 20 columns the 17th is taken as the uniqueid when it looks like one
(``1270167992.0``), else as the userfield. Times are the switch's local time (``usegmtime=yes``
writes UTC: then say ``timezone=UTC``).

Mapping: id = uniqueid (without it: ``CHANNEL@START``); a_number = src (else the number in
clid); b_number = dst; start = answer (start for an unanswered call); duration_s = billsec
(``duration`` includes the ring time and is kept as ``total_s``, never billed); rated only when
disposition is ANSWERED and billsec > 0, else ``unanswered``.
"""

from __future__ import annotations

import re
from typing import Any

from icdsl_mediation.cdr import CdrReader, clid_number, is_timestamp, whole

COLUMNS = (
    "accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp", "lastdata",
    "start", "answer", "end", "duration", "billsec", "disposition", "amaflags",
)
DISPOSITIONS = ("ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION")
AMAFLAGS = ("DOCUMENTATION", "BILLING", "OMIT", "DEFAULT", "")
_UNIQUEID = re.compile(r"\d+\.\d+")
_PEER = re.compile(r"^[^/]+/(.+?)(?:-[0-9a-fA-F]+)?(?:[;,]\d+)?$")


def trunk_of(channel: str) -> str:
    """``SIP/orange-0000001f`` -> ``orange``; ``PJSIP/bt-gb-00000a2c`` -> ``bt-gb``."""
    m = _PEER.match(channel.strip())
    return m.group(1) if m else channel.strip()


class AsteriskCsv(CdrReader):
    name = "asterisk_csv"
    description = "Asterisk cdr_csv Master.csv: 16-21 quoted columns, no header, local times"
    format_name = "Asterisk Master.csv"
    field_text = "16 to 21"
    sources = {"id": "uniqueid", "b_number": "dst", "start": "answer", "duration_s": "billsec"}
    columns = COLUMNS
    field_counts = (16, 17, 18, 19, 20, 21)
    answered_default = ("ANSWERED",)
    partner_fields = ("accountcode", "dcontext", "channel", "dstchannel", "trunk", "userfield", "peeraccount")

    def fields(self, values: list[str]) -> dict[str, str]:
        f = dict(zip(COLUMNS, values[:16], strict=True))
        rest = values[16:]
        if len(rest) in (1, 4):
            key = "uniqueid" if _UNIQUEID.fullmatch(rest[0].strip()) else "userfield"
            f[key] = rest[0]
            rest = rest[1:]
        elif len(rest) in (2, 5):
            f["uniqueid"], f["userfield"] = rest[0], rest[1]
            rest = rest[2:]
        if len(rest) == 3:
            f["peeraccount"], f["linkedid"], f["sequence"] = rest
        uid = f.get("uniqueid", "").strip()
        f["_id"] = uid or f"{f['channel'].strip()}@{f['start'].strip()}"
        return f

    def partner_value(self, f: dict[str, str], name: str) -> str:
        return trunk_of(f["dstchannel"]) if name == "trunk" else f.get(name, "")

    def record(self, f: dict[str, str]) -> tuple[dict[str, Any] | None, str | None]:
        unanswered = self.is_answered(f["disposition"], f["billsec"])
        if unanswered is not None:
            return None, unanswered
        return {
            "id": f["_id"],
            "a_number": f["src"].strip() or clid_number(f["clid"]) or None,
            "b_number": self.number(f["dst"]),
            "start": f["answer"].strip() or f["start"],
            "duration_s": f["billsec"],
            "total_s": whole(f["duration"]),
            "disposition": f["disposition"].strip(),
            "accountcode": f["accountcode"].strip() or None,
            "context": f["dcontext"].strip() or None,
            "cdr_format": "asterisk",
        }, None

    @classmethod
    def sniff(cls, values: list[str]) -> bool:
        return (
            16 <= len(values) <= 21
            and is_timestamp(values[9])
            and whole(values[12]) is not None
            and whole(values[13]) is not None
            and values[14].strip().upper() in DISPOSITIONS
            and values[15].strip().upper() in AMAFLAGS
        )
