"""Inventory CSV import: good rows become items, bad rows are reported with line and reason."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

from icdsl.inventory import InventoryItem, items_from_rows, parse_inventory, read_inventory, store_rows

GOOD = """\
partner,item_id,kind,quantity,activated,terminated,description,site
LUMFR,E1-PAR-001,e1_port,1,2026-03-10,,E1 port Paris,Aubervilliers
LUMFR,SIP-01,sip_channel,30,2026-01-01,2026-07-01,"SIP trunk 1, channels",
BRKGB,X-10G,port_10g,1,2026-02-01,,,
"""


def test_good_file():
    imp = parse_inventory(GOOD, "inv.csv")
    assert imp.ok and imp.rows == 3 and len(imp.items) == 3
    e1, sip, x = imp.items
    assert e1 == InventoryItem("LUMFR", "E1-PAR-001", "e1_port", D(1), date(2026, 3, 10), None, "E1 port Paris",
                               (("site", "Aubervilliers"),), 2)
    assert sip.quantity == D(30) and sip.terminated == date(2026, 7, 1) and sip.description == "SIP trunk 1, channels"
    assert sip.active_on(date(2026, 6, 30)) and not sip.active_on(date(2026, 7, 1))
    assert x.line == 4


def test_bad_rows_are_rejected_with_line_numbers_and_reasons():
    text = (
        "partner;item_id;kind;quantity;activated;terminated\n"
        "LUMFR;A;port;1;2026-03-10;\n"          # 2 good
        "LUMFR;B;port;0;2026-03-10;\n"          # 3 quantity not positive
        "LUMFR;C;port;1;2026-02-30;\n"          # 4 no such date
        "LUMFR;D;port;1;2026-03-10;2026-03-01\n"  # 5 terminated before activated
        "\n"                                      # 6 blank: skipped
        "LUMFR;A;port;1;2026-04-01;\n"          # 7 duplicate of line 2
        "LUMFR;E;e1 port;1;2026-03-10;\n"       # 8 kind is not a word
        "LUMFR;;port;1;2026-03-10;\n"           # 9 empty item_id
        "LUMFR;F;port;1\n"                      # 10 too few cells
        "NOPE;G;port;1;2026-03-10;\n"           # 11 unknown partner
        "LUMFR;H;port;2.5;2026-03-10;2026-03-11\n"  # 12 good (one day)
    )
    imp = parse_inventory(text, "inv.csv", partners={"LUMFR"})
    assert [i.item_id for i in imp.items] == ["A", "H"]
    assert [(p.line, p.reason) for p in imp.problems] == [
        (3, "bad_quantity"), (4, "bad_date"), (5, "ends_before_start"), (7, "duplicate_item"), (8, "bad_kind"),
        (9, "missing_field"), (10, "malformed_row"), (11, "unknown_partner")]
    assert "already on line 2" in imp.problems[3].message
    assert "first day no longer billed" in imp.problems[2].message
    assert imp.rows == 10  # blank lines are not rows
    assert imp.report().splitlines()[1] == "inv.csv:3: bad_quantity: quantity '0' is not a positive number"


def test_header_problems():
    imp = parse_inventory("partner,item,kind\nX,1,port\n", "x.csv")
    assert not imp.items and [p.reason for p in imp.problems] == ["missing_column"]
    assert "lacks item_id, quantity, activated" in imp.problems[0].message
    assert parse_inventory("", "e.csv").problems[0].reason == "missing_column"


def test_bom_file_and_store_rows(tmp_path):
    path = tmp_path / "inv.csv"
    path.write_text("\ufeff" + GOOD, encoding="utf-8")
    imp = read_inventory(path)
    assert imp.ok and imp.source == str(path)
    rows = store_rows(imp.items, {"LUMFR": 1, "BRKGB": 2})
    assert rows[0] == {"partner_id": 1, "kind": "e1_port", "reference": "E1-PAR-001", "quantity": D(1),
                       "activation_date": date(2026, 3, 10), "termination_date": None,
                       "attributes": {"site": "Aubervilliers", "description": "E1 port Paris"}}
    back = items_from_rows(rows, {1: "LUMFR", 2: "BRKGB"})
    assert [(b.partner, b.item_id, b.quantity, b.activated, b.terminated, b.description) for b in back] == [
        (i.partner, i.item_id, i.quantity, i.activated, i.terminated, i.description) for i in imp.items]


def test_not_utf8(tmp_path):
    path = tmp_path / "inv.csv"
    path.write_bytes(b"partner,item_id\n\xff\xfe")
    imp = read_inventory(path)
    assert not imp.ok and "not UTF-8" in imp.problems[0].message
