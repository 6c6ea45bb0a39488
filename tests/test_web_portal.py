"""The partner portal (``icdsl serve``): each partner sees its own documents, traffic, agreements and
disputes and nothing else, through the pages and the API alike; forms need their CSRF token; a
disabled user or a revoked token is refused at its next request; sign-ins are limited and every
sign-in and download is in the audit trail.

One store per back end for the module: the demo's month (four partners, finalized invoices and
statements) on SQLite, and on PostgreSQL (skipped without a server, required in CI).
"""

from __future__ import annotations

import re
import warnings
from decimal import Decimal as D
from pathlib import Path

import pytest
import sqlalchemy as sa
from test_billing_store import _pg_drop, _pg_schema_url
from web_fixtures import bill_demo, demo_folder  # noqa: F401 - the fixture

from icdsl.billing import accounts
from icdsl.billing import models as M
from icdsl.billing import portal as P
from icdsl.billing.store import open_store

with warnings.catch_warnings():  # starlette's notice about httpx's successor
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from icdsl.web.app import create_app  # noqa: E402
from icdsl.web.config import ConfigError, WebConfig, load_config  # noqa: E402

PASSWORD = "correct horse battery staple"
SECRET = "s" * 40
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(30)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def site(request, tmp_path_factory, demo_folder):  # noqa: F811 - the fixture
    """The demo's store with users: anna (LUMFR), boris (BRKGB), sam (staff); tokens of both."""
    schema = None
    url = None
    folder = demo_folder
    if request.param == "postgres":
        schema, url = _pg_schema_url()
        folder = tmp_path_factory.mktemp("portal-postgres")
    try:
        if url:
            bill_demo(folder, url)
        store = open_store(url or f"sqlite:///{folder / 'icdsl.db'}", data_dir=folder / "icdsl-data")
        with store.session() as s:
            accounts.add_user(s, "anna", PASSWORD, partner="LUMFR")
            accounts.add_user(s, "boris", PASSWORD, partner="BRKGB")
            accounts.add_user(s, "sam", PASSWORD, partner=None)
            _, token_a = accounts.issue_token(s, "LUMFR", "erp")
            _, token_b = accounts.issue_token(s, "BRKGB", "erp")
        app = create_app(WebConfig(db=None, data=None, secret_key=SECRET), store)
        yield {"store": store, "app": app, "token_a": token_a, "token_b": token_b, "folder": folder}
        store.close()
    finally:
        if schema:
            _pg_drop(schema)


def once(site) -> None:
    """Tests of what does not depend on the back end (sessions, the sign-in limit, attached files'
    checks): run on SQLite only, to keep the suite fast."""
    if site["store"].is_postgres:
        pytest.skip("the same on both back ends: run on SQLite")


def client(site) -> TestClient:
    return TestClient(site["app"], base_url="https://testserver", follow_redirects=False)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def sign_in(site, username: str, password: str = PASSWORD) -> TestClient:
    c = client(site)
    form = c.get("/login")
    r = c.post("/login", data={"username": username, "password": password, "csrf": csrf_of(form.text), "next": "/"})
    assert r.status_code == 303, r.text
    return c


@pytest.fixture(scope="module")
def anna(site):
    return sign_in(site, "anna")


@pytest.fixture(scope="module")
def boris(site):
    return sign_in(site, "boris")


@pytest.fixture(scope="module")
def sam(site):
    return sign_in(site, "sam")


def refs(c: TestClient, partner: str) -> list[str]:
    r = c.get(f"/p/{partner}/documents")
    assert r.status_code == 200
    return re.findall(rf'href="/p/{partner}/documents/([^"/]+)"', r.text)


def ids_of(store, partner: str) -> tuple[list[int], list[int]]:
    with store.reading() as s:
        pid = s.scalar(sa.select(M.Partner.id).where(M.Partner.code == partner))
        inv = list(s.scalars(sa.select(M.Invoice.id).where(M.Invoice.partner_id == pid)))
        stm = list(s.scalars(sa.select(M.SettlementStatement.id).where(M.SettlementStatement.partner_id == pid)))
    return inv, stm


def first_invoice(c: TestClient, partner: str) -> str:
    return next(r for r in refs(c, partner) if r.startswith("INV-"))


def raise_one(c: TestClient, partner: str, ref: str, *, line: int = 1, comment: str = "rate is not the agreed one",
              file: tuple[str, bytes, str] | None = ("proof.png", PNG, "image/png"), csrf: str | None = None):
    page = c.get(f"/p/{partner}/documents/{ref}")
    files = {"file": file} if file else None
    return c.post(f"/p/{partner}/documents/{ref}/disputes", files=files,
                  data={"csrf": csrf if csrf is not None else csrf_of(page.text), "line_no": str(line),
                        "comment": comment})


# --------------------------------------------------------------------------- what a partner sees


def test_a_partner_lists_and_opens_its_own_finalized_documents_only(site, anna, sam):
    mine = refs(anna, "LUMFR")
    assert mine and all(re.match(r"^(INV|STM)-\d{4}-\d{6}$", r) for r in mine)
    store = site["store"]
    with store.reading() as s:
        numbers = set(s.scalars(sa.select(M.Invoice.number).where(M.Invoice.partner_code == "LUMFR")))
    assert {r for r in mine if r.startswith("INV-")} == numbers
    page = anna.get(f"/p/LUMFR/documents/{first_invoice(anna, 'LUMFR')}")
    assert page.status_code == 200 and "Dispute a line" in page.text and "LUMFR" in page.text
    # the filters: by state and by period (a period of no document: none listed)
    assert refs(anna, "LUMFR") == re.findall(r'href="/p/LUMFR/documents/([^"/]+)"',
                                               anna.get("/p/LUMFR/documents?state=finalized").text)
    assert "No documents match" in anna.get("/p/LUMFR/documents?period=1999-01").text
    # staff: every partner, the same pages
    assert sam.get("/").headers["location"] == "/partners"
    listing = sam.get("/partners").text
    assert all(code in listing for code in ("LUMFR", "BRKGB", "CPX", "FLTX"))
    assert refs(sam, "BRKGB") and sam.get("/p/BRKGB/traffic").status_code == 200


def test_downloads_are_the_exporters_files_and_are_audited(site, anna):
    ref = first_invoice(anna, "LUMFR")
    for fmt, magic in (("pdf", b"%PDF-"), ("csv", None), ("json", b"{"), ("ubl", b"<?xml")):
        r = anna.get(f"/p/LUMFR/documents/{ref}/download/{fmt}")
        assert r.status_code == 200, (fmt, r.text[:300])
        assert re.fullmatch(rf'attachment; filename="{ref}[.A-Za-z0-9_-]*\.{ {"ubl": "xml"}.get(fmt, fmt)}"',
                            r.headers["content-disposition"]), r.headers["content-disposition"]
        if magic:
            assert r.content.startswith(magic)
    assert anna.get(f"/p/LUMFR/documents/{ref}/download/exe").status_code == 404
    with site["store"].reading() as s:
        downloads = list(s.scalars(sa.select(M.PortalEvent).where(M.PortalEvent.action == "download",
                                                                  M.PortalEvent.actor == "anna")))
    assert {e.target for e in downloads} >= {f"{ref} pdf", f"{ref} csv", f"{ref} json", f"{ref} ubl"}


def test_traffic_agreements_decks_and_charts_are_the_partners_own(anna, sam):
    day = anna.get("/p/LUMFR/traffic")
    assert day.status_code == 200 and "<svg" in day.text and "2026-03-" in day.text
    assert "<rect" in anna.get("/p/LUMFR/traffic?by=destination").text
    assert anna.get("/p/LUMFR/traffic?by=password").status_code == 404
    ags = anna.get("/p/LUMFR/agreements").text
    assert "In force" in ags
    # its rate decks as loaded with the agreement; another partner's agreement is not found
    links = re.findall(r'href="(/p/LUMFR/agreements/(\d+)/decks/(\d+))"', ags)
    assert links
    deck = anna.get(links[0][0])
    assert deck.status_code == 200 and deck.headers["content-disposition"].startswith("attachment;") and deck.text
    theirs = re.findall(r'href="/p/BRKGB/agreements/(\d+)/decks/(\d+)"', sam.get("/p/BRKGB/agreements").text)
    mine = {a for _, a, _ in links}
    only_theirs = [(a, n) for a, n in theirs if a not in mine]
    assert only_theirs
    for a, n in only_theirs:
        assert anna.get(f"/p/LUMFR/agreements/{a}/decks/{n}").status_code == 404
        assert anna.get(f"/p/BRKGB/agreements/{a}/decks/{n}").status_code == 404
    assert anna.get(f"/p/LUMFR/agreements/{links[0][1]}/decks/99").status_code == 404
    assert anna.get("/p/LUMFR/agreements/99999999999/decks/1").status_code == 404


# --------------------------------------------------------------------------- isolation


def test_another_partners_documents_are_not_found_by_any_route(site, anna, boris):
    missing = anna.get("/p/LUMFR/documents/INV-2099-999999")
    assert missing.status_code == 404
    theirs = refs(boris, "BRKGB")
    inv_ids, stm_ids = ids_of(site["store"], "BRKGB")
    guesses = theirs + [f"inv-{i}" for i in inv_ids] + [f"stm-{i}" for i in stm_ids]
    assert len(guesses) >= 4
    for ref in guesses:
        for path in (f"/p/LUMFR/documents/{ref}", f"/p/BRKGB/documents/{ref}",
                     f"/p/LUMFR/documents/{ref}/download/pdf", f"/p/BRKGB/documents/{ref}/download/json"):
            r = anna.get(path)
            assert r.status_code == 404, path
            assert r.text == missing.text, path  # the same answer as for a document that does not exist
    for path in ("/p/BRKGB/documents", "/p/BRKGB/traffic", "/p/BRKGB/agreements", "/p/BRKGB/disputes",
                 "/p/brkgb/documents", "/partners", "/p/LUMFR/documents/..%2F..%2Fetc%2Fpasswd",
                 "/p/LUMFR/documents/%2e%2e%2fBRKGB", "/p/..%2FBRKGB/documents",
                 "/p/LUMFR/../BRKGB/documents", "/p/LUMFR/documents/inv-0", "/p/LUMFR/documents/inv-99999999999",
                 "/p/LUMFR/documents/inv-2147483648"):
        r = anna.get(path)
        assert r.status_code == 404, path
    # a partner's own ids work: the refusal above is the scope, not the id form
    own_inv, _ = ids_of(site["store"], "LUMFR")
    assert anna.get(f"/p/LUMFR/documents/inv-{own_inv[0]}").status_code == 200


def test_the_api_answers_for_the_tokens_partner_only(site):
    c = client(site)
    auth = {"Authorization": f"Bearer {site['token_a']}"}
    docs = c.get("/api/v1/documents", headers=auth).json()
    assert docs and {d["ref"][:4] for d in docs} <= {"INV-", "STM-"}
    own = {d["ref"] for d in docs}
    theirs = [d["ref"] for d in c.get("/api/v1/documents", headers={"Authorization": f"Bearer {site['token_b']}"})
              .json()]
    assert theirs and not own & set(theirs)
    missing = c.get("/api/v1/documents/INV-2099-999999", headers=auth)
    assert missing.status_code == 404
    inv_ids, stm_ids = ids_of(site["store"], "BRKGB")
    for ref in theirs + [f"inv-{i}" for i in inv_ids] + [f"stm-{i}" for i in stm_ids]:
        for path in (f"/api/v1/documents/{ref}", f"/api/v1/documents/{ref}/pdf", f"/api/v1/documents/{ref}/ubl"):
            r = c.get(path, headers=auth)
            assert (r.status_code, r.json()) == (404, missing.json()), path
    for path in ("/api/v1/documents?partner=BRKGB", "/api/v1/traffic?partner=BRKGB", "/api/v1/disputes?partner=BRKGB",
                 "/api/v1/documents/..%2F..%2Fetc%2Fpasswd", "/api/v1/disputes/PD-2026-000001x"):
        assert c.get(path, headers=auth).status_code == 404, path
    one = next(d for d in docs if d["kind"] == "invoice")
    doc = c.get(f"/api/v1/documents/{one['ref']}", headers=auth).json()
    assert doc["number"] == one["ref"] and doc["partner_code"] == "LUMFR" and isinstance(doc["total"], str)
    traffic = c.get("/api/v1/traffic?by=service", headers=auth).json()
    assert traffic and all(isinstance(r["amount"], str) for r in traffic)
    # no token, a wrong one: 401
    assert c.get("/api/v1/documents").status_code == 401
    assert c.get("/api/v1/documents", headers={"Authorization": "Bearer icdsl_guess"}).status_code == 401
    assert c.get("/api/openapi.json").json()["paths"]["/api/v1/documents"]


def test_disputes_raised_with_a_file_are_kept_safely_and_seen_by_their_partner_only(site, anna, boris, sam):
    ref = first_invoice(anna, "LUMFR")
    r = raise_one(anna, "LUMFR", ref, file=("../../etc/<evil>.png", PNG, "image/png"))
    assert r.status_code == 303, r.text
    where = r.headers["location"]
    number = where.rsplit("/", 1)[1]
    assert re.match(r"^PD-\d{4}-\d{6}$", number)
    page = anna.get(where)
    assert page.status_code == 200 and "rate is not the agreed one" in page.text and "etc_evil_.png" not in page.text
    got = anna.get(f"{where}/attachment")
    assert got.status_code == 200 and got.content == PNG and got.headers["content-type"] == "image/png"
    store = site["store"]
    with store.reading() as s:
        d = s.scalars(sa.select(M.PortalDispute).where(M.PortalDispute.number == number)).one()
    assert re.fullmatch(r"portal/attachments/LUMFR/[0-9a-f]{32}\.png", d.attachment_path)
    assert d.attachment_name == "evil.png" or "/" not in d.attachment_name
    assert (store.data.root / d.attachment_path).read_bytes() == PNG
    assert d.attachment_path not in store.gc(min_age_s=0)  # referenced: never collected
    # the other partner: not found, by page, file and API
    for path in (f"/p/LUMFR/disputes/{number}", f"/p/BRKGB/disputes/{number}", f"/p/LUMFR/disputes/{number}/attachment",
                 f"/p/BRKGB/disputes/{number}/attachment"):
        assert boris.get(path).status_code == 404, path
    api_b = {"Authorization": f"Bearer {site['token_b']}"}
    assert client(site).get(f"/api/v1/disputes/{number}", headers=api_b).status_code == 404
    assert number not in client(site).get("/api/v1/disputes", headers=api_b).text
    api_a = {"Authorization": f"Bearer {site['token_a']}"}
    assert client(site).get(f"/api/v1/disputes/{number}", headers=api_a).json()["state"] == "open"
    # boris cannot raise one on anna's invoice either
    assert raise_one(boris, "BRKGB", ref).status_code == 404
    # staff follows it up; the partner sees the state
    staff_page = sam.get(f"/p/LUMFR/disputes/{number}")
    assert staff_page.status_code == 200
    r = sam.post(f"/p/LUMFR/disputes/{number}/accept", data={"csrf": csrf_of(staff_page.text), "reason": "agreed"})
    assert r.status_code == 303
    got = client(site).get(f"/api/v1/disputes/{number}", headers=api_a).json()
    assert got["state"] == "accepted" and re.fullmatch(r"CN-\d{4}-\d{6}", got["credit_note"])
    with store.reading() as s:  # accepted without an amount: the whole disputed line is credited
        line = s.get(M.InvoiceLine, d.line_id)
        cn = s.scalars(sa.select(M.Invoice).where(M.Invoice.number == got["credit_note"])).one()
        assert cn.subtotal == -line.amount and D(got["accepted_amount"]) == line.amount
    assert got["credit_note"] in anna.get(where).text  # the partner sees which credit note settled it
    # a partner cannot accept its own dispute
    mine = anna.get(f"/p/LUMFR/disputes/{number}")
    assert anna.post(f"/p/LUMFR/disputes/{number}/accept", data={"csrf": csrf_of(mine.text)}).status_code == 400


def test_an_accepted_dispute_is_credited_by_a_sealed_credit_note_of_the_amount_accepted(site, anna):
    """Accepting a partner's dispute in part issues, in the same transaction, a credit note of
    exactly the amount accepted on the disputed line: numbered in the CN- series, referencing the
    invoice and its line, sealed in the chain, audited, a valid EN 16931 credit note. A dispute is
    credited once; more than the line is refused and leaves the dispute as it was."""
    from icdsl.outputs.einvoice import cii_xml, ubl_xml
    from icdsl.outputs.einvoice_check import validate_xml

    store = site["store"]
    with store.reading() as s:  # the largest line of Lumière's invoices
        line, ref = max(s.execute(sa.select(M.InvoiceLine, M.Invoice.number).join(
            M.Invoice, M.Invoice.id == M.InvoiceLine.invoice_id).where(
            M.Invoice.partner_code == "LUMFR", M.Invoice.status == "finalized",
            M.Invoice.number.like("INV-%"))).all(), key=lambda r: r[0].amount)
        assert line.amount > D("1.00")
        before = s.scalar(sa.select(sa.func.count()).select_from(M.Invoice)
                          .where(M.Invoice.doc_type == "credit_note"))
    r = raise_one(anna, "LUMFR", ref, line=line.line_no, comment="12 calls billed twice", file=None)
    assert r.status_code == 303, r.text
    number = r.headers["location"].rsplit("/", 1)[1]
    with store.reading() as s:
        u = s.scalars(sa.select(M.PortalUser).where(M.PortalUser.username == "sam")).one()
    staff = accounts.Principal("user", u.id, "sam", None)
    too_much = line.amount + D("0.01")
    with pytest.raises(accounts.AccessError, match="is more than line"):
        P.change_dispute(store, staff, "LUMFR", number, "accept", amount=str(too_much))
    with pytest.raises(accounts.AccessError, match="at most 2 decimals"):
        P.change_dispute(store, staff, "LUMFR", number, "accept", amount="0.001")
    assert P.portal_dispute(store, staff, "LUMFR", number)["state"] == "open"  # nothing changed
    part = D("0.75")
    out = P.change_dispute(store, staff, "LUMFR", number, "accept", amount="0.75", reason="6 of the 12 were twice")
    assert out["state"] == "accepted" and out["accepted_amount"] == part
    doc = store.document(out["credit_note"])
    assert doc["kind"] == "credit_note" and doc["corrects"] == [ref]
    assert doc["subtotal"] == -part and doc["subtotal"] == sum(D(ln["amount"]) for ln in doc["lines"])
    assert doc["total"] == doc["subtotal"] + doc["tax_amount"]
    with store.reading() as s:
        cn = s.scalars(sa.select(M.Invoice).where(M.Invoice.number == out["credit_note"])).one()
        (cl,) = s.scalars(sa.select(M.InvoiceLine).where(M.InvoiceLine.invoice_id == cn.id))
        assert cl.corrects_line_id == line.id
        # in the words of Lumière's layout (French), the reason our staff gave
        assert cl.description == (f"Avoir sur {ref}, ligne {line.line_no} ({line.description}) : contestation "
                                  f"{number} acceptée en partie : 6 of the 12 were twice")
        assert s.scalar(sa.select(sa.func.count()).select_from(M.Invoice)
                        .where(M.Invoice.doc_type == "credit_note")) == before + 1
        audit = s.scalars(sa.select(M.AuditEntry).where(M.AuditEntry.action == "credit_note",
                                                        M.AuditEntry.entity_id == cn.id)).one()
        assert audit.details["dispute"] == number and audit.details["line_no"] == line.line_no
        event = s.scalars(sa.select(M.PortalEvent).where(M.PortalEvent.action == "dispute_accept",
                                                         M.PortalEvent.target == number)).one()
        assert event.details == {"credit_note": cn.number, "amount": "0.75"}
    assert store.verify().ok  # sealed in the chain
    assert doc["period"] == store.document(ref)["period"]  # it covers the period of the invoice it credits
    assert validate_xml(ubl_xml(doc)) == [] and validate_xml(cii_xml(doc)) == []  # no error, no warning
    with pytest.raises(accounts.AccessError, match="is accepted: it cannot be accepted now"):
        P.change_dispute(store, staff, "LUMFR", number, "accept")


def test_attached_files_are_checked(site, anna):
    once(site)
    ref = first_invoice(anna, "LUMFR")
    fake = raise_one(anna, "LUMFR", ref, file=("x.pdf", b"MZ\x90\x00 not a pdf", "application/pdf"))
    assert fake.status_code == 400 and "not the PDF file it says" in fake.text
    exe = raise_one(anna, "LUMFR", ref, file=("x.exe", b"MZ\x90\x00", "application/octet-stream"))
    assert exe.status_code == 400 and "attach a PDF" in exe.text
    big = raise_one(anna, "LUMFR", ref, file=("big.txt", b"a" * (5 * 1024 * 1024 + 1), "text/plain"))
    assert big.status_code == 400 and "larger than 5 MiB" in big.text
    huge = raise_one(anna, "LUMFR", ref, file=("huge.txt", b"a" * (6 * 1024 * 1024), "text/plain"))
    assert huge.status_code == 413
    assert raise_one(anna, "LUMFR", ref, comment="  ", file=None).status_code == 400
    assert raise_one(anna, "LUMFR", ref, line=9999, file=None).status_code == 404
    assert raise_one(anna, "LUMFR", ref, line=99999999999, file=None).status_code == 404


# --------------------------------------------------------------------------- CSRF, sessions, tokens


def test_forms_without_their_csrf_token_are_refused(site, anna):
    once(site)
    ref = first_invoice(anna, "LUMFR")
    assert raise_one(anna, "LUMFR", ref, csrf="").status_code == 403
    assert raise_one(anna, "LUMFR", ref, csrf="forged" * 8).status_code == 403
    assert anna.post("/logout", data={}).status_code == 403
    assert anna.get("/p/LUMFR/documents").status_code == 200  # still signed in
    # the sign-in form: its token is bound to this browser's nonce cookie
    c = client(site)
    c.get("/login")
    assert c.post("/login", data={"username": "anna", "password": PASSWORD}).status_code == 403
    other = client(site)
    token = csrf_of(other.get("/login").text)
    assert c.post("/login", data={"username": "anna", "password": PASSWORD, "csrf": token}).status_code == 403


def test_sessions_are_secure_cookies_and_end_at_sign_out(site):
    once(site)
    c = client(site)
    r = c.get("/login")
    r = c.post("/login", data={"username": "anna", "password": PASSWORD, "csrf": csrf_of(r.text), "next": "//evil"})
    assert r.headers["location"] == "/"  # never a redirect off the site
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("__Host-icdsl-session=")
    assert all(flag in cookie.lower() for flag in ("secure", "httponly", "samesite=strict", "path=/"))
    assert r.headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in r.headers["content-security-policy"]
    stolen = c.cookies.get("__Host-icdsl-session")
    page = c.get("/p/LUMFR/documents")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    chunked = c.post("/logout", content=iter([b"csrf=x"]))  # a body of unknown length: refused before it is read
    assert chunked.status_code == 411
    assert c.post("/logout", data={"csrf": csrf_of(page.text)}).status_code == 303
    replay = client(site)
    replay.cookies.set("__Host-icdsl-session", stolen)
    assert replay.get("/p/LUMFR/documents").status_code == 303  # the session ended on the server


def test_a_disabled_user_and_a_revoked_token_are_refused_at_once(site):
    store = site["store"]
    with store.session() as s:
        accounts.add_user(s, "carla", PASSWORD, partner="LUMFR")
        row, token = accounts.issue_token(s, "LUMFR", "soon revoked")
    c = sign_in(site, "carla")
    assert c.get("/p/LUMFR/documents").status_code == 200
    api = client(site)
    assert api.get("/api/v1/documents", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    with store.session() as s:
        accounts.disable_user(s, "carla")
        accounts.revoke_token(s, row.id)
    assert c.get("/p/LUMFR/documents").status_code == 303
    assert api.get("/api/v1/documents", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    again = client(site)
    form = again.get("/login")
    r = again.post("/login", data={"username": "carla", "password": PASSWORD, "csrf": csrf_of(form.text)})
    assert r.status_code == 401


def test_sign_ins_are_limited_and_audited(site, anna):
    once(site)
    store = site["store"]
    with store.session() as s:
        accounts.add_user(s, "dora", PASSWORD, partner="FLTX")
    c = client(site)
    token = csrf_of(c.get("/login").text)
    for _ in range(accounts.MAX_FAILURES_PER_USER):
        assert c.post("/login", data={"username": "dora", "password": "wrong" * 3, "csrf": token}).status_code == 401
    r = c.post("/login", data={"username": "dora", "password": PASSWORD, "csrf": token})
    assert r.status_code == 429 and "too many failed sign-ins" in r.text
    with store.reading() as s:
        actions = [e.action for e in s.scalars(sa.select(M.PortalEvent).where(M.PortalEvent.target == "dora")
                                               .order_by(M.PortalEvent.id))]
        signed = s.scalar(sa.select(sa.func.count()).select_from(M.PortalEvent).where(
            M.PortalEvent.action == "sign_in", M.PortalEvent.actor == "anna"))
    assert actions == ["user_added"] + ["sign_in_failed"] * accounts.MAX_FAILURES_PER_USER + ["sign_in_limited"]
    assert signed >= 1


def test_health_and_login_page_fit_a_phone(site):
    once(site)
    c = client(site)
    h = c.get("/health")
    assert h.json() == {"status": "ok", "store": site["store"].dialect}
    page = c.get("/login").text
    assert 'name="viewport" content="width=device-width' in page and "@media (max-width: 600px)" in page


# --------------------------------------------------------------------------- configuration and the CLI


def test_configuration_from_a_file_and_the_environment(tmp_path):
    f = tmp_path / "portal.toml"
    f.write_text('db = "sqlite:///x.db"\nbind = "0.0.0.0:9000"\nsecure_cookies = false\n', encoding="utf-8")
    cfg = load_config(f, env={"ICDSL_SECRET_KEY": SECRET, "ICDSL_DB": "sqlite:///ignored.db"})
    assert (cfg.db, cfg.host, cfg.port, cfg.secure_cookies, cfg.secret_key) == ("sqlite:///x.db", "0.0.0.0", 9000,
                                                                                False, SECRET)
    cfg = load_config(None, env={"ICDSL_SECRET_KEY": SECRET, "ICDSL_BIND": "[::1]:8080"})
    assert (cfg.host, cfg.port, cfg.secure_cookies) == ("::1", 8080, True)
    with pytest.raises(ConfigError, match="secret key of at least 32"):
        load_config(None, env={"ICDSL_SECRET_KEY": "short"})
    with pytest.raises(ConfigError, match="HOST:PORT"):
        load_config(None, env={"ICDSL_SECRET_KEY": SECRET, "ICDSL_BIND": "8000"})
    (tmp_path / "bad.toml").write_text('secret = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(tmp_path / "bad.toml", env={})


def test_users_and_tokens_commands(site, anna, tmp_path):
    from typer.testing import CliRunner

    from icdsl.cli.main import app

    once(site)
    db = f"sqlite:///{Path(site['folder']) / 'icdsl.db'}"
    data = str(Path(site["folder"]) / "icdsl-data")
    run = CliRunner().invoke
    common = ["--db", db, "--data", data]
    r = run(app, ["users", "add", "erin", "--partner", "CPX", "--password-stdin", *common], input=PASSWORD + "\n")
    assert r.exit_code == 0 and "added user erin (partner CPX)" in r.output, r.output
    r = run(app, ["users", "add", "erin", "--partner", "CPX", "--password-stdin", *common], input=PASSWORD + "\n")
    assert r.exit_code == 1 and "already a user" in r.output
    r = run(app, ["users", "add", "fred", "--partner", "NOPE", "--password-stdin", *common], input=PASSWORD + "\n")
    assert r.exit_code == 1 and "no partner 'NOPE'" in r.output
    r = run(app, ["users", "add", "gus", "--staff", "--password-stdin", *common], input="short\n")
    assert r.exit_code == 1 and "at least 12 characters" in r.output
    r = run(app, ["users", "list", *common])
    assert r.exit_code == 0 and "erin" in r.output and "(staff)" in r.output
    r = run(app, ["users", "disable", "erin", *common])
    assert r.exit_code == 0 and "disabled user erin" in r.output
    r = run(app, ["tokens", "issue", "CPX", "--name", "billing system", *common])
    assert r.exit_code == 0
    token = r.stdout.strip().splitlines()[-1]
    assert token.startswith("icdsl_")
    with site["store"].reading() as s:
        assert accounts.token_principal(s, token).partner == "CPX"
        assert token not in {t.token_hash for t in accounts.tokens(s)}
        tid = max(t.id for t in accounts.tokens(s, "CPX"))
    r = run(app, ["tokens", "list", "--partner", "CPX", *common])
    assert r.exit_code == 0 and "billing system" in r.output and token not in r.output
    r = run(app, ["tokens", "revoke", str(tid), *common])
    assert r.exit_code == 0 and f"revoked token #{tid} of CPX" in r.output
    with site["store"].reading() as s:
        assert accounts.token_principal(s, token) is None
    r = run(app, ["users", "audit", "--action", "token_revoked", *common])
    assert r.exit_code == 0 and "token_revoked" in r.output and "CPX" in r.output
    r = run(app, ["users", "audit", "--action", "sign_in", *common])
    assert r.exit_code == 0 and "anna" in r.output and "LUMFR" in r.output
    r = run(app, ["serve", *common], env={"ICDSL_SECRET_KEY": ""})
    assert r.exit_code == 2 and "secret key" in r.output


def test_each_server_process_makes_the_app_from_the_environment(demo_folder, monkeypatch):  # noqa: F811
    from icdsl.web.app import from_environment

    monkeypatch.setenv("ICDSL_DB", f"sqlite:///{demo_folder / 'icdsl.db'}")
    monkeypatch.setenv("ICDSL_DATA", str(demo_folder / "icdsl-data"))
    monkeypatch.setenv("ICDSL_SECRET_KEY", SECRET)
    monkeypatch.setenv("ICDSL_SECURE_COOKIES", "0")
    app = from_environment()
    try:
        c = TestClient(app, follow_redirects=False)
        assert c.get("/health").json() == {"status": "ok", "store": "sqlite"}
        assert "icdsl-login" in c.get("/login").cookies  # plain HTTP: cookies without the __Host- prefix
    finally:
        app.state.store.close()


def test_documents_built_once_per_seal_and_still_scoped_at_every_request(site, anna, boris):
    """A finalized document is built and its seal checked once per process (the app's
    ``DocumentCache``, keyed by its seal): what is served from it is the document as built, and
    another partner asking for a document already kept is still not found."""
    from icdsl.billing import portal as P

    store, cache = site["store"], site["app"].state.documents
    theirs = refs(boris, "BRKGB")
    for ref in theirs:
        assert boris.get(f"/p/BRKGB/documents/{ref}").status_code == 200
    hits = cache.hits
    for ref in theirs:  # again: from the cache
        assert boris.get(f"/p/BRKGB/documents/{ref}").status_code == 200
    assert cache.hits >= hits + len(theirs)
    missing = anna.get("/p/LUMFR/documents/INV-2099-999999")
    for ref in theirs:  # kept, and still another partner's: not found, as one that does not exist
        for path in (f"/p/LUMFR/documents/{ref}", f"/p/BRKGB/documents/{ref}",
                     f"/p/BRKGB/documents/{ref}/download/json"):
            r = anna.get(path)
            assert (r.status_code, r.text) == (404, missing.text), path
    boris_p = accounts.Principal("user", 0, "boris", "BRKGB")
    ref = theirs[0]
    built = P.document(store, boris_p, "BRKGB", ref)
    served = P.document(store, boris_p, "BRKGB", ref, cache=cache)
    assert served == built
    served["lines"].clear()  # the caller's copy: the kept one is untouched
    assert P.document(store, boris_p, "BRKGB", ref, cache=cache) == built
    # the partner's declaration (shown as it is now, not sealed) changed: built again
    with store.session() as s:
        row = s.scalars(sa.select(M.Partner).where(M.Partner.code == "BRKGB")).one()
        old, row.decl_hash = row.decl_hash, "changed"
    try:
        misses = cache.misses
        assert P.document(store, boris_p, "BRKGB", ref, cache=cache) == built
        assert cache.misses == misses + 1
    finally:
        with store.session() as s:
            s.scalars(sa.select(M.Partner).where(M.Partner.code == "BRKGB")).one().decl_hash = old


# --------------------------------------------------------------------------- revenue-share statements


def _partner_party(store, code: str) -> None:
    """A partner row for a party of revenue shares that is not yet one (as ``icdsl load`` adds)."""
    with store.session() as s:
        if s.scalars(sa.select(M.Partner).where(M.Partner.code == code)).first() is None:
            base = s.scalars(sa.select(M.Partner).where(M.Partner.code == "CPX")).one()
            cols = {c.key: getattr(base, c.key) for c in M.Partner.__table__.columns if c.key != "id"}
            s.add(M.Partner(**dict(cols, code=code, name=f"{code} Aggregation Ltd")))
            s.flush()
        if s.scalars(sa.select(M.PortalUser).where(M.PortalUser.username == f"user-{code.lower()}")).first() is None:
            accounts.add_user(s, f"user-{code.lower()}", PASSWORD, partner=code)


def _party_documents(store, code: str) -> set[str]:
    """What the store holds that ``code`` is party to, finalized: its invoices, credit and debit
    notes and settlement statements, and the revenue-share statements addressed to it."""
    with store.reading() as s:
        pid = s.scalar(sa.select(M.Partner.id).where(M.Partner.code == code))
        refs_ = {n for (n,) in s.execute(sa.select(M.Invoice.number).where(M.Invoice.partner_id == pid,
                                                                          M.Invoice.status != "draft"))}
        refs_ |= {n for (n,) in s.execute(sa.select(M.SettlementStatement.number).where(
            M.SettlementStatement.partner_id == pid, M.SettlementStatement.status != "draft"))}
        refs_ |= {n for (n,) in s.execute(sa.select(M.ShareStatement.number).where(
            M.ShareStatement.party == code, M.ShareStatement.status != "draft"))}
    return refs_


def test_every_document_a_partner_is_party_to_is_listed_and_nothing_else(site, sam):
    store = site["store"]
    _partner_party(store, "AGGR")
    with store.reading() as s:
        shares = list(s.execute(sa.select(M.ShareStatement.number, M.ShareStatement.party, M.ShareStatement.id,
                                          M.ShareStatement.partner_id, M.ShareStatement.status)))
        kinds = {n: k for n, k in s.execute(sa.select(M.Invoice.number, M.Invoice.doc_type))}
    assert {party for _, party, *_ in shares} >= {"CPX", "AGGR", "us"}, shares
    users = {"LUMFR": "anna", "BRKGB": "boris", "CPX": "user-cpx", "AGGR": "user-aggr"}
    _partner_party(store, "CPX")
    for code, name in users.items():
        c = sign_in(site, name)
        listed = set(refs(c, code))
        assert listed == _party_documents(store, code), code
        if code == "LUMFR":  # the API lists the same, each of its kind (debit notes too)
            api = {d["ref"]: d for d in client(site).get("/api/v1/documents", headers={
                "Authorization": f"Bearer {site['token_a']}"}).json()}
            assert set(api) == listed
            assert all(d["kind"] == (kinds[r] or d["kind"]) for r, d in api.items() if r in kinds)
        mine = [(n, i) for n, party, i, _, st in shares if party == code and st == "finalized"]
        others = [(n, i) for n, party, i, _, st in shares if party != code]
        assert bool(mine) == (code in ("CPX", "AGGR")), code
        for number, _ in mine:  # shown, downloaded as pdf, csv, json; not an e-invoice
            page = c.get(f"/p/{code}/documents/{number}")
            assert page.status_code == 200 and "Revenue-share statement" in page.text and "Payable to" in page.text
            for fmt in ("pdf", "csv", "json"):
                assert c.get(f"/p/{code}/documents/{number}/download/{fmt}").status_code == 200, fmt
            assert c.get(f"/p/{code}/documents/{number}/download/ubl").status_code == 404
        assert set(refs(c, code)) >= {n for n, _ in mine}
        shown = c.get(f"/p/{code}/documents?kind=share_statement").text
        assert set(re.findall(rf'href="/p/{code}/documents/([^"/]+)"', shown)) == {n for n, _ in mine}
        # the shares addressed to another party (our own too), even of its own cycles: not found
        missing = c.get(f"/p/{code}/documents/SHR-2099-999999")
        for number, id_ in others:
            for ref in ([number] if number else []) + [f"shr-{id_}"]:
                for path in (f"/p/{code}/documents/{ref}", f"/p/{code}/documents/{ref}/download/pdf"):
                    r = c.get(path)
                    assert (r.status_code, r.text) == (404, missing.text), path
    # staff: every share statement of a partner's cycles, our own share too, by its id
    ours = next(i for _, party, i, _, st in shares if party == "us")
    assert "Revenue-share statement" in sam.get(f"/p/CPX/documents/shr-{ours}").text


def test_the_api_lists_and_serves_a_partners_share_statements_only(site):
    store = site["store"]
    _partner_party(store, "CPX")
    with store.session() as s:
        _, token = accounts.issue_token(s, "CPX", "share test")
    c = client(site)
    auth = {"Authorization": f"Bearer {token}"}
    docs = c.get("/api/v1/documents?kind=share_statement", headers=auth).json()
    assert docs and all(d["kind"] == "share_statement" and d["ref"].startswith("SHR-") for d in docs)
    assert {d["ref"] for d in docs} == {r for r in _party_documents(store, "CPX") if r.startswith("SHR-")}
    got = c.get(f"/api/v1/documents/{docs[0]['ref']}", headers=auth).json()
    assert got["kind"] == "share_statement" and got["party"] == "CPX"
    lumfr = {"Authorization": f"Bearer {site['token_a']}"}
    assert c.get(f"/api/v1/documents/{docs[0]['ref']}", headers=lumfr).status_code == 404
    assert c.get(f"/api/v1/documents/{docs[0]['ref']}/pdf", headers=lumfr).status_code == 404
    assert not c.get("/api/v1/documents?kind=share_statement", headers=lumfr).json()


# --------------------------------------------------------------------------- disputes through the API


def test_disputes_raised_and_followed_through_the_api(site):
    c = client(site)
    a = {"Authorization": f"Bearer {site['token_a']}"}
    b = {"Authorization": f"Bearer {site['token_b']}"}
    inv = next(d["ref"] for d in c.get("/api/v1/documents?kind=invoice", headers=a).json())
    stm = next(d["ref"] for d in c.get("/api/v1/documents?kind=statement", headers=a).json())
    r = c.post("/api/v1/disputes", headers=a, data={"document": inv, "line_no": "1", "comment": "not the agreed rate"},
               files={"file": ("../proof.png", PNG, "image/png")})
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["state"] == "open" and d["invoice"] == inv and d["line_no"] == 1 and d["line"]["amount"]
    assert d["raised_by"].startswith("token:") and d["attachment"]["size"] == len(PNG)
    number = d["number"]
    assert c.get(f"/api/v1/disputes/{number}", headers=a).json()["state"] == "open"
    assert number in {x["number"] for x in c.get("/api/v1/disputes", headers=a).json()}
    got = c.get(f"/api/v1/disputes/{number}/attachment", headers=a)
    assert got.status_code == 200 and got.content == PNG
    # the other partner's token: not found by number, file or list, nor raising on A's invoice
    missing = c.get("/api/v1/disputes/PD-2099-999999", headers=b)
    for path in (f"/api/v1/disputes/{number}", f"/api/v1/disputes/{number}/attachment",
                 f"/api/v1/disputes/{number}?partner=LUMFR"):
        r = c.get(path, headers=b)
        assert (r.status_code, r.json()) == (404, missing.json()), path
    assert number not in c.get("/api/v1/disputes", headers=b).text
    assert c.get("/api/v1/disputes?partner=LUMFR", headers=b).status_code == 404
    inv_ids, _ = ids_of(site["store"], "LUMFR")
    for ref in (inv, f"inv-{inv_ids[0]}", "../" + inv):
        r = c.post("/api/v1/disputes", headers=b, data={"document": ref, "line_no": "1", "comment": "mine?"})
        assert r.status_code == 404, ref
    # refused, with why: a statement, no comment, a file that is not what it says, no token
    r = c.post("/api/v1/disputes", headers=a, data={"document": stm, "line_no": "1", "comment": "x"})
    assert r.status_code == 400 and "invoice's lines" in r.json()["detail"]
    assert c.post("/api/v1/disputes", headers=a, data={"document": inv, "line_no": "1", "comment": " "}).status_code == 400
    r = c.post("/api/v1/disputes", headers=a, data={"document": inv, "line_no": "1", "comment": "x"},
               files={"file": ("a.pdf", b"MZ", "application/pdf")})
    assert r.status_code == 400 and "not the PDF" in r.json()["detail"]
    assert c.post("/api/v1/disputes", headers=a, data={"document": inv, "line_no": "9999", "comment": "x"}
                  ).status_code == 404
    assert c.post("/api/v1/disputes", headers=a, data={"document": inv, "line_no": "1", "comment": "a\x00b"}
                  ).status_code == 400
    assert c.post("/api/v1/disputes", data={"document": inv, "line_no": "1", "comment": "x"}).status_code == 401
    ops = c.get("/api/openapi.json").json()["paths"]
    assert "multipart/form-data" in ops["/api/v1/disputes"]["post"]["requestBody"]["content"]
    assert "/api/v1/disputes/{number}/attachment" in ops and "/api/v1/agreements/{agreement_id}/rates/{n}" in ops


# --------------------------------------------------------------------------- rate tables


def test_rate_tables_are_shown_paged_and_filtered_for_the_partners_own_agreements(site, anna, sam):
    ags = anna.get("/p/LUMFR/agreements").text
    tables = re.findall(r'href="(/p/LUMFR/agreements/(\d+)/rates/(\d+))"', ags)
    assert tables
    pages = {path: anna.get(path) for path, _, _ in tables}
    assert all(r.status_code == 200 for r in pages.values())
    big_path, big = max(pages.items(), key=lambda kv: int(re.search(r"(\d+) row\(s\)", kv[1].text).group(1)))
    rows = int(re.search(r"(\d+) row\(s\)", big.text).group(1))
    assert rows > 100 and "page 1 of" in big.text and "<th>Prefix</th>" in big.text
    second = anna.get(f"{big_path}?page=2")
    assert "page 2 of" in second.text
    prefixes = re.findall(r"<tr><td>(\d+)</td>", anna.get(f"{big_path}?prefix=33").text)
    assert prefixes and all(p.startswith("33") for p in prefixes)
    dest = anna.get(f"{big_path}?destination=united+states").text
    assert "United States" in dest and "Canada" not in dest
    # the API: the same rows, prices as exact decimal text
    c = client(site)
    a = {"Authorization": f"Bearer {site['token_a']}"}
    listed = c.get("/api/v1/agreements", headers=a).json()
    assert listed and all(t["n"] for x in listed for t in x["tables"])
    _, aid, n = next(t for t in tables if t[0] == big_path)
    api = c.get(f"/api/v1/agreements/{aid}/rates/{n}?prefix=33", headers=a).json()
    assert api["rows"] and all(r["prefix"].startswith("33") and isinstance(r["price"], str) for r in api["rows"])
    # another partner's agreement versions: not found by id, through pages and the API
    theirs = {x for _, x, _ in re.findall(r'href="(/p/BRKGB/agreements/(\d+)/rates/(\d+))"',
                                          sam.get("/p/BRKGB/agreements").text)}
    only_theirs = theirs - {x for _, x, _ in tables}
    assert only_theirs
    b = {"Authorization": f"Bearer {site['token_b']}"}
    for x in only_theirs:
        for path in (f"/p/LUMFR/agreements/{x}/rates/1", f"/p/BRKGB/agreements/{x}/rates/1",
                     f"/p/LUMFR/agreements/{x}/rates/1?prefix=..%2F", f"/p/LUMFR/agreements/{x}/rates/..%2F1",
                     f"/p/LUMFR/agreements/..%2F{x}/rates/1", f"/p/LUMFR/agreements/{x}.0/rates/1"):
            assert anna.get(path).status_code == 404, path
        assert c.get(f"/api/v1/agreements/{x}/rates/1", headers=a).status_code == 404
        assert c.get(f"/api/v1/agreements/{x}/rates/1", headers=b).status_code == 200
    if aid not in theirs:  # LUMFR's own version: not found with BRKGB's token
        assert c.get(f"/api/v1/agreements/{aid}/rates/{n}", headers=b).status_code == 404
    assert c.get("/api/v1/agreements?partner=BRKGB", headers=a).status_code == 404
    assert anna.get(f"/p/LUMFR/agreements/{aid}/rates/999").status_code == 404
