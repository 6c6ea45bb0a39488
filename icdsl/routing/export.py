"""A routing table as files: CSV (every column, for people and spreadsheets), FreeSWITCH
mod_lcr's ``lcr`` table and Kamailio's ``lcr_rule`` / ``lcr_rule_target`` (SQL INSERTs), and
the table as text for the terminal.

Money columns are decimal texts (6 places, half even) of the exact costs; the CSV's text cells
are neutralized against spreadsheet formulas (``icdsl.safecsv``).
"""

from __future__ import annotations

import io
from decimal import ROUND_HALF_EVEN, Decimal

import polars as pl

from icdsl.routing.lcr import SCALE, LcrTable, money_col
from icdsl.safecsv import neutralize_table

CSV_COLUMNS = ("prefix", "destination", "band", "rank", "supplier", "agreement", "supplier_prefix", "rule", "currency",
               "rate", "cost", "cost_per_minute", "sell", "margin", "margin_pct", "share", "calls", "asr", "acd",
               "pdd", "note")
NUMERIC = ("rank", "rate", "cost", "cost_per_minute", "sell", "margin", "margin_pct", "share", "calls", "asr",
           "acd", "pdd")
EXCLUDED_COLUMNS = ("prefix", "band", "supplier", "agreement", "supplier_prefix", "rule", "cost", "reason", "calls", "asr",
                    "acd", "pdd")
#: the end of validity written on switch rows: valid until the next table replaces them
OPEN_END = "9999-12-31 23:59:59"


def _ratio(num: str, den: str, factor: int, places: int) -> pl.Expr:
    value = pl.col(num).cast(pl.Float64) * factor / pl.col(den).cast(pl.Float64)
    return pl.when(pl.col(den).fill_null(0) > 0).then(value.round(places).cast(pl.Utf8)).otherwise(pl.lit(""))


def _judges_quality(table: LcrTable) -> bool:
    return any(lim.measure in ("asr", "acd", "pdd") for lim in table.policy.limits)


def display_frame(table: LcrTable) -> pl.DataFrame:
    """The routes as texts, in the order and with the columns of :data:`CSV_COLUMNS`."""
    R = table.policy.reference_s
    r = table.routes.with_columns((pl.col("sell_n") - pl.col("cost_n")).alias("_margin_n"))
    # cost per minute = cost x 60 / R, half even at 10^-9
    num = pl.col("cost_n") * 60
    q = num // R
    rem = num % R
    per_min = q + (((2 * rem) > R) | (((2 * rem) == R) & ((q % 2) == 1))).cast(pl.Int64)
    r = r.with_columns(per_min.alias("_pm"))
    note = pl.concat_str(
        [pl.when(pl.col("share").is_not_null()).then(pl.lit("split")),
         pl.when(pl.col("preferred")).then(pl.lit("preferred")),
         pl.when(~pl.col("measured") & pl.lit(_judges_quality(table))).then(pl.lit("unmeasured")),
         pl.when(pl.col("fallback")).then(pl.lit("fallback"))],
        separator=" ", ignore_nulls=True)
    pdd = pl.when(pl.col("pdd_n").fill_null(0) > 0).then(
        (pl.col("pdd_ms").cast(pl.Float64) / pl.col("pdd_n").cast(pl.Float64) / 1000).round(2).cast(pl.Utf8)
    ).otherwise(pl.lit(""))
    margin_pct = pl.when(pl.col("sell_n").fill_null(0) > 0).then(
        (pl.col("_margin_n").cast(pl.Float64) * 100 / pl.col("sell_n").cast(pl.Float64)).round(2).cast(pl.Utf8)
    ).otherwise(pl.lit(""))
    return r.select(
        "prefix", pl.col("destination").fill_null(""), "band", pl.col("rank").cast(pl.Utf8), "supplier", "agreement",
        "supplier_prefix", "rule", "currency",
        money_col("price_n").alias("rate"), money_col("cost_n").alias("cost"), money_col("_pm").alias("cost_per_minute"),
        money_col("sell_n").alias("sell"), money_col("_margin_n").alias("margin"), margin_pct.alias("margin_pct"),
        pl.col("share").fill_null(""),
        pl.col("calls").cast(pl.Utf8).fill_null(""),
        _ratio("answered", "calls", 100, 1).alias("asr"),
        _ratio("billsec", "answered", 1, 1).alias("acd"),
        pdd.alias("pdd"),
        note.alias("note"),
    )


def excluded_frame(table: LcrTable) -> pl.DataFrame:
    return table.excluded.select(
        "prefix", "band", "supplier", "agreement", "supplier_prefix", "rule", money_col("cost_n").alias("cost"),
        "reason",
        pl.col("calls").cast(pl.Utf8).fill_null(""),
        _ratio("answered", "calls", 100, 1).alias("asr"),
        _ratio("billsec", "answered", 1, 1).alias("acd"),
        pl.when(pl.col("pdd_n").fill_null(0) > 0).then(
            (pl.col("pdd_ms").cast(pl.Float64) / pl.col("pdd_n").cast(pl.Float64) / 1000).round(2).cast(pl.Utf8)
        ).otherwise(pl.lit("")).alias("pdd"),
    )


def _csv_text(frame: pl.DataFrame, numeric: tuple[str, ...]) -> str:
    frame = frame.with_columns(pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c)
                               for c, t in frame.schema.items() if t == pl.Utf8)
    arrow = neutralize_table(frame.to_arrow(), numeric=[c for c in numeric if c in frame.columns])
    buf = io.StringIO()
    buf.write(pl.from_arrow(arrow).write_csv(quote_style="necessary", line_terminator="\n"))
    return buf.getvalue()


def to_csv(table: LcrTable) -> str:
    return _csv_text(display_frame(table), NUMERIC)


def excluded_csv(table: LcrTable) -> str:
    return _csv_text(excluded_frame(table), ("cost", "calls", "asr", "acd", "pdd"))


# --------------------------------------------------------------------------- switches


def _sql(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _ids(table: LcrTable) -> tuple[dict[str, int], dict[str, int]]:
    bands = {b: i + 1 for i, b in enumerate(table.bands)}
    carriers = {s.code: i + 1 for i, s in enumerate(sorted(table.suppliers, key=lambda s: s.code))}
    return bands, carriers


def _header(table: LcrTable, switch: str) -> list[str]:
    bands, carriers = _ids(table)
    p = table.policy
    return [
        f"-- {switch}: least-cost routing table of policy '{p.name}' on {table.day} (icdsl lcr)",
        f"-- costs in {p.currency} per minute of a {p.reference_s} s reference call",
        "-- bands: " + ", ".join(f"{i} = {b}" for b, i in bands.items()),
        "-- suppliers: " + ", ".join(f"{i} = {c}" for c, i in carriers.items()),
    ]


def to_freeswitch(table: LcrTable) -> str:
    """SQL for FreeSWITCH mod_lcr: a ``carriers`` row per supplier, an ``lcr_profiles`` row per
    band (the dialplan picks the profile of the time of day) and an ``lcr`` row per prefix, band
    and supplier kept. ``rate`` is the cost per minute of the reference call; mod_lcr orders a
    prefix's carriers by its profile's ``order_by`` (``rate``), so preferred suppliers and splits
    are not expressed here (the Kamailio export keeps them); ``quality`` is the measured ASR
    (0 when unmeasured)."""
    bands, carriers = _ids(table)
    out = _header(table, "FreeSWITCH mod_lcr")
    out.append("-- mod_lcr orders each prefix's carriers by rate: the policy's preferences and splits are not kept")
    for code, i in carriers.items():
        out.append(f"INSERT INTO carriers (id, carrier_name, enabled) VALUES ({i}, {_sql(code)}, 1);")
    for band, i in bands.items():
        out.append(f"INSERT INTO lcr_profiles (id, profile_name, order_by, info) VALUES "
                   f"({i}, {_sql(band)}, 'rate', {_sql('icdsl lcr policy ' + table.policy.name)});")
    shown = display_frame(table)
    start = f"{table.day.isoformat()} 00:00:00"
    cols = ("digits, rate, intrastate_rate, intralata_rate, carrier_id, lead_strip, trail_strip, prefix, suffix, "
            "lcr_profile, date_start, date_end, quality, reliability, cid, enabled")
    for row, raw in zip(shown.iter_rows(named=True), table.routes.iter_rows(named=True), strict=True):
        rate = row["cost_per_minute"]
        quality = "0"
        if raw["calls"]:
            quality = str((Decimal(raw["answered"]) / Decimal(raw["calls"])).quantize(Decimal("0.000001"),
                                                                                     ROUND_HALF_EVEN))
        out.append(f"INSERT INTO lcr ({cols}) VALUES ({_sql(row['prefix'])}, {rate}, {rate}, {rate}, "
                   f"{carriers[row['supplier']]}, 0, 0, '', '', {bands[row['band']]}, '{start}', '{OPEN_END}', "
                   f"{quality}, 1, '', 1);")
    return "\n".join(out) + "\n"


def to_kamailio(table: LcrTable) -> str:
    """SQL for Kamailio's lcr module: one LCR instance (``lcr_id``) per band, an ``lcr_rule`` per
    prefix (``stopper`` 1: the longest prefix's list is the whole list, as in the table) and an
    ``lcr_rule_target`` per supplier kept: ``priority`` rank - 1 (0 is tried first), ``weight``
    the split's share (1 otherwise). The gateways (``lcr_gw``, ``gw_id`` as in the header) are
    the switch's own: their addresses are not in the agreements."""
    bands, carriers = _ids(table)
    out = _header(table, "Kamailio lcr")
    out.append("-- gw_id is the supplier number above: define those gateways in lcr_gw")
    rule_id = 0
    routes = table.routes.sort(["band", "prefix", "rank", "supplier"])
    current = None
    for target_id, r in enumerate(routes.iter_rows(named=True), start=1):
        lcr_id = bands[r["band"]]
        if current != (r["band"], r["prefix"]):
            current = (r["band"], r["prefix"])
            rule_id += 1
            out.append(f"INSERT INTO lcr_rule (id, lcr_id, prefix, from_uri, request_uri, mt_tvalue, stopper, enabled) "
                       f"VALUES ({rule_id}, {lcr_id}, {_sql(r['prefix'])}, NULL, NULL, NULL, 1, 1);")
        weight = 1
        if r["share"] is not None:
            weight = max(1, min(254, int(Decimal(r["share"]).to_integral_value(ROUND_HALF_EVEN))))
        out.append(f"INSERT INTO lcr_rule_target (id, lcr_id, rule_id, gw_id, priority, weight) VALUES "
                   f"({target_id}, {lcr_id}, {rule_id}, {carriers[r['supplier']]}, {min(255, r['rank'] - 1)}, {weight});")
    return "\n".join(out) + "\n"


def to_text(table: LcrTable, limit: int | None = None) -> str:
    """The ranked lists, one line per prefix and band: ``44 peak  GAMA 0.005250 > BETA ...``."""
    shown = display_frame(table)
    lines = [f"lcr policy '{table.policy.name}' on {table.day}: {table.policy.currency}, cost of a "
             f"{table.policy.reference_s} s call (per minute in brackets)"]
    grouped = shown.group_by(["prefix", "band"], maintain_order=True).agg(
        pl.col("destination").first(), pl.col("supplier"), pl.col("cost"), pl.col("cost_per_minute"), pl.col("rank"),
        pl.col("share"))
    for i, g in enumerate(grouped.iter_rows(named=True)):
        if limit is not None and i >= limit:
            lines.append(f"... {len(grouped) - limit} more (write the whole table with -o FILE)")
            break
        routes = " > ".join(
            f"{s}{' ' + sh + '%' if sh else ''} {c} ({pm})"
            for s, c, pm, sh in zip(g["supplier"], g["cost"], g["cost_per_minute"], g["share"], strict=True))
        lines.append(f"{g['prefix']:<8} {g['band']:<8} {g['destination'][:24]:<24} {routes}")
    return "\n".join(lines) + "\n"


def nano(text: str) -> int:
    return int(Decimal(text) * SCALE)
