"""The partner portal: server-rendered pages for people and a JSON API for partners' systems,
over the billing store (``icdsl serve``; docs/portal.md).

Nothing here reads a table: every read and write goes through :mod:`icdsl.billing.portal` with
the request's principal (a session's user, or an API token), which scopes it to the principal's
partner in the query itself. A document, dispute or file of another partner is "not found", with
the same answer as one that does not exist.

- Sessions: a random cookie (``__Host-`` prefixed, Secure, HttpOnly, SameSite=Strict) whose
  SHA-256 names a row of ``portal_sessions``; the user and its session are read at each request,
  so a disabled user or an ended session is refused at once.
- CSRF: every form carries a token: the session's (compared in constant time), or before sign-in
  an HMAC of a nonce cookie with the secret key. A POST without the right one is refused (403).
- API: ``Authorization: Bearer icdsl_...`` (a partner's token), read at each request; OpenAPI at
  ``/api/openapi.json``, described at ``/api/docs``.
"""


import hmac
import logging
import secrets
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

import jinja2
from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi import Path as InPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from icdsl.billing import accounts
from icdsl.billing import portal as P
from icdsl.billing.accounts import AccessError, Principal
from icdsl.billing.amounts import plain_number, present
from icdsl.billing.errors import StoreError
from icdsl.web.charts import bar_chart
from icdsl.web.config import WebConfig, load_config

log = logging.getLogger("icdsl.web")

SESSION_COOKIE = "__Host-icdsl-session"
LOGIN_COOKIE = "__Host-icdsl-login"
INSECURE_SESSION_COOKIE = "icdsl-session"  # over plain HTTP (development only: secure_cookies = 0)
INSECURE_LOGIN_COOKIE = "icdsl-login"
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}
MAX_BODY = P.MAX_ATTACHMENT + 256 * 1024
STATES = ("draft", "finalized", "void")
KINDS = P.KINDS

# compiled once per process and never looked at again on disk (auto_reload off: no stat per page)
templates = Jinja2Templates(env=jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True, auto_reload=False,
    cache_size=-1))


def _money(v: Any, ccy: str | None = None) -> str:
    if v is None:
        return ""
    return str(present(v if isinstance(v, Decimal) else Decimal(v), ccy) if ccy else v)


templates.env.filters["money"] = _money
templates.env.filters["number"] = plain_number
templates.env.globals["kind_titles"] = {"invoice": "Invoice", "credit_note": "Credit note", "debit_note": "Debit note",
                                        "statement": "Settlement statement",
                                        "share_statement": "Revenue-share statement"}
templates.env.globals["kind_names"] = {k: v.lower() for k, v in templates.env.globals["kind_titles"].items()}


class PageError(Exception):
    """Refused with a status and a message for a person (shown as a page or as JSON)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------- API models


class DocumentSummary(BaseModel):
    kind: str
    ref: str
    number: str | None
    period: str
    stream: str
    status: str
    issue_date: date | None
    due_date: date | None
    subtotal: Decimal | None
    tax: Decimal | None
    total: Decimal | None
    currency: str


class TrafficRow(BaseModel):
    key: str
    currency: str
    records: int
    units: int
    amount: Decimal


class DisputeView(BaseModel):
    number: str | None
    partner: str
    invoice: str | None
    line_no: int
    comment: str
    state: str
    raised_at: Any
    raised_by: str
    changed_at: Any
    changed_by: str
    change_reason: str | None
    attachment: dict[str, Any] | None
    line: dict[str, Any] | None = None
    accepted_amount: Decimal | None = None  # net: set when accepted
    credit_note: str | None = None  # the credit note issued when it was accepted


class RateTableRef(BaseModel):
    n: int
    service: str
    source: str
    currency: str
    unit: str | None


class AgreementView(BaseModel):
    id: int
    name: str
    version: int
    revision: int
    effective_from: date
    effective_to: date | None
    currency: str
    hash: str
    decks: list[str]
    tables: list[RateTableRef]


class RateRowView(BaseModel):
    prefix: str
    destination: str
    band: str  # "*": every band
    price: Decimal
    currency: str
    connect_fee: Decimal | None
    increments: str | None
    effective_from: str | None
    until: str | None


class RateTableView(BaseModel):
    table: RateTableRef
    bands: list[str]
    problem: str | None
    matched: int
    page: int
    pages: int
    rows: list[RateRowView]


class Health(BaseModel):
    status: str
    store: str


# --------------------------------------------------------------------------- the app


def create_app(config: WebConfig, store: Any = None) -> FastAPI:
    """The portal over ``store`` (or the one ``config`` names, opened and migrated at start)."""

    owned = store is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Iterator[None]:
        yield
        if owned:
            app.state.store.close()

    if store is None:
        from icdsl.billing.store import open_store  # lazy: Alembic's migrations, only when no store is given

        store = open_store(config.db, data_dir=config.data)
    app = FastAPI(title="icdsl partner portal API", version="1", lifespan=lifespan,
                  openapi_url="/api/openapi.json", docs_url="/api/docs", redoc_url=None,
                  description="A partner's documents, traffic and disputes, for its own systems. Authenticate "
                              "with `Authorization: Bearer <token>` (`icdsl tokens issue PARTNER`). Amounts are "
                              "exact decimal text.")
    app.state.store = store
    app.state.config = config
    # finalized documents built and seal-checked once per process (P.DocumentCache: keyed by their
    # seal; the access check and the lookup with the partner in the query run at every request)
    documents = app.state.documents = P.DocumentCache()
    secure = config.secure_cookies
    session_cookie = SESSION_COOKIE if secure else INSECURE_SESSION_COOKIE
    login_cookie = LOGIN_COOKIE if secure else INSECURE_LOGIN_COOKIE
    bearer = HTTPBearer(auto_error=False)

    def remote(request: Request) -> str | None:
        if config.forwarded:
            fwd = request.headers.get("x-forwarded-for")
            if fwd:
                return fwd.split(",")[0].strip()[:64]
        return request.client.host[:64] if request.client else None

    # ------------------------------------------------------------------ middleware and errors
    app.add_middleware(_Guard)

    def _error(request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/api/") or request.url.path == "/health":
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            return JSONResponse({"detail": message}, status_code=status, headers=headers)
        return templates.TemplateResponse(request, "error.html", {"status": status, "message": message,
                                                                  "me": getattr(request.state, "me", None)},
                                          status_code=status)

    @app.exception_handler(PageError)
    async def page_error(request: Request, e: PageError) -> Response:
        return _error(request, e.status, e.message)

    @app.exception_handler(P.NotFound)
    async def not_found(request: Request, e: P.NotFound) -> Response:
        return _error(request, 404, str(e))

    @app.exception_handler(AccessError)
    async def refused(request: Request, e: AccessError) -> Response:
        return _error(request, 400, str(e))

    @app.exception_handler(StoreError)
    async def store_error(request: Request, e: StoreError) -> Response:
        log.warning("refused %s %s: %s", request.method, request.url.path, e)
        return _error(request, 409, str(e))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> Response:
        return _error(request, e.status_code, "not found" if e.status_code == 404 else str(e.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> Response:
        where = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()[:5])
        return _error(request, 422, f"invalid request: {where}")

    # ------------------------------------------------------------------ who is asking
    def user(request: Request, c: Any = None) -> Principal | None:
        """The session's user (read at each request: one indexed row with its user), on the
        request's connection ``c`` or on one of its own."""
        cookie = request.cookies.get(session_cookie)
        if not cookie:
            return None
        if c is None:
            with store.read_rows() as c:
                me = accounts.session_principal(c, cookie)
        else:
            me = accounts.session_principal(c, cookie)
        request.state.me = me
        return me

    def signed_in(request: Request) -> Principal:
        """The signed-in user (a dependency), else a redirection to the sign-in page."""
        return signed_in_on(request, None)

    def signed_in_on(request: Request, c: Any) -> Principal:
        me = user(request, c)
        if me is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise _Redirect("/login?next=" + quote(target, safe=""))
        return me

    def api_principal(request: Request,
                      creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
        me = None
        if creds is not None and creds.scheme.lower() == "bearer":
            with store.read_rows() as c:
                me = accounts.token_principal(c, creds.credentials)
        if me is None:
            raise PageError(401, "a valid API token is required: Authorization: Bearer <token>")
        request.state.me = me
        return me

    async def form_with_csrf(request: Request, me: Principal) -> Any:
        try:
            form = await request.form(max_files=1, max_fields=20, max_part_size=64 * 1024)
        except Exception:  # a malformed body, a part too large
            raise PageError(400, "the form could not be read") from None
        token = form.get("csrf")
        if not isinstance(token, str) or not me.csrf or not hmac.compare_digest(token, me.csrf):
            raise PageError(403, "the form has expired or did not come from this site: reload the page and try again")
        return form

    def login_csrf(nonce: str) -> str:
        return hmac.new(config.secret_key.encode(), b"login:" + nonce.encode(), "sha256").hexdigest()

    class _Redirect(Exception):
        def __init__(self, url: str) -> None:
            self.url = url

    @app.exception_handler(_Redirect)
    async def redirect(request: Request, e: _Redirect) -> Response:
        return RedirectResponse(e.url, status_code=303)

    def page(request: Request, name: str, me: Principal, partner: str | None = None, **ctx: Any) -> Response:
        return templates.TemplateResponse(request, name, {"me": me, "partner": partner, **ctx})

    # ------------------------------------------------------------------ operations
    @app.get("/health", response_model=Health, tags=["operations"])
    def health() -> Health:
        """The server answers and its store is reachable."""
        try:
            P.ping(store)
        except Exception as e:  # the database is down: say so, as a 503
            log.error("health: the store cannot be read: %s", e)
            raise PageError(503, "the store cannot be read") from None
        return Health(status="ok", store=store.dialect)

    # ------------------------------------------------------------------ sign in and out
    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request, next: str = "/", error: str | None = None) -> Response:
        nonce = request.cookies.get(login_cookie) or secrets.token_urlsafe(24)
        response = templates.TemplateResponse(request, "login.html", {"me": None, "csrf": login_csrf(nonce),
                                                                      "next": _local(next), "error": error})
        response.set_cookie(login_cookie, nonce, max_age=3600, httponly=True, secure=secure, samesite="strict",
                            path="/")
        return response

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        try:
            form = await request.form(max_files=0, max_fields=10, max_part_size=8 * 1024)
        except Exception:  # a malformed body, too many fields, a part too large
            raise PageError(400, "the sign-in form could not be read") from None
        nonce = request.cookies.get(login_cookie)
        token = form.get("csrf")
        if not nonce or not isinstance(token, str) or not hmac.compare_digest(token, login_csrf(nonce)):
            raise PageError(403, "the sign-in form has expired or did not come from this site: reload it and try again")
        name, password = str(form.get("username") or ""), str(form.get("password") or "")
        where = remote(request)
        with store.session() as s:
            result = accounts.sign_in(s, name, password, where)
        if result.principal is None:
            log.warning("sign-in refused: user %r from %s: %s", name[:200], where, result.error)
            response = templates.TemplateResponse(
                request, "login.html", {"me": None, "csrf": login_csrf(nonce), "next": _local(str(form.get("next") or "/")),
                                        "error": result.error}, status_code=429 if result.limited else 401)
            return response
        me = result.principal
        log.info("signed in: %s (%s) from %s", me.name, me.partner or "staff", where)
        response = RedirectResponse(_local(str(form.get("next") or "/")), status_code=303)
        response.set_cookie(session_cookie, result.cookie, max_age=accounts.SESSION_HOURS * 3600, httponly=True,
                            secure=secure, samesite="strict", path="/")
        response.delete_cookie(login_cookie, path="/", secure=secure, httponly=True, samesite="strict")
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request, me: Annotated[Principal, Depends(signed_in)]) -> Response:
        await form_with_csrf(request, me)
        with store.session() as s:
            accounts.sign_out(s, me, remote(request))
        log.info("signed out: %s", me.name)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(session_cookie, path="/", secure=secure, httponly=True, samesite="strict")
        return response

    # ------------------------------------------------------------------ pages
    @app.get("/", include_in_schema=False)
    def home(me: Annotated[Principal, Depends(signed_in)]) -> Response:
        return RedirectResponse("/partners" if me.is_staff else f"/p/{quote(me.partner)}/documents", status_code=303)

    @app.get("/partners", response_class=HTMLResponse, include_in_schema=False)
    def partners_page(request: Request, me: Annotated[Principal, Depends(signed_in)]) -> Response:
        if not me.is_staff:
            raise P.NotFound()
        return page(request, "partners.html", me, partners=P.partners(store, me))

    # The two pages read most (a partner's list and its documents): the session, its user and the
    # scoped rows read on one connection in one transaction (not a dependency of its own: one hop
    # to the thread pool, not two). Plain functions, in the thread pool: run on the event loop
    # instead (tried on SQLite), the same CPU per request served fewer requests per second at 50
    # clients (sqlite3 lets go of the GIL while it reads; threads overlap those reads).
    @app.get("/p/{partner}/documents", response_class=HTMLResponse, include_in_schema=False)
    def documents_page(request: Request, partner: str, period: str | None = None, state: str | None = None,
                       kind: str | None = None) -> Response:
        with store.read_rows() as c:
            me = signed_in_on(request, c)
            every = P.documents_in(c, me, partner)
        docs = P.select_documents(every, period=period or None, state=state or None, kind=kind or None)
        return page(request, "documents.html", me, partner, docs=docs,
                    periods=sorted({d["period"] for d in every if d["period"]}, reverse=True),
                    period=period or "", state=state or "", kind=kind or "",
                    states=STATES if me.is_staff else STATES[1:], kinds=KINDS)

    @app.get("/p/{partner}/documents/{ref}", response_class=HTMLResponse, include_in_schema=False)
    def document_page(request: Request, partner: str, ref: str) -> Response:
        with store.read_rows() as c:
            me = signed_in_on(request, c)
            found = P.find_document(c, me, partner, ref, cache=documents)
        doc = P.finish_document(store, found, cache=documents)
        return page(request, "document.html", me, partner, doc=doc, formats=_formats(doc),
                    max_mib=P.MAX_ATTACHMENT // (1024 * 1024))

    @app.get("/p/{partner}/documents/{ref}/download/{fmt}", include_in_schema=False)
    def download_page(request: Request, partner: str, ref: str, fmt: str,
                      me: Annotated[Principal, Depends(signed_in)]) -> Response:
        return _download(request, me, partner, ref, fmt)

    def _download(request: Request, me: Principal, partner: str, ref: str, fmt: str) -> Response:
        name, media, data = P.download(store, me, partner, ref, fmt, cache=documents)
        with store.session() as s:
            accounts.principal_event(s, me, "download", partner=partner, target=f"{ref} {fmt}",
                                     remote=remote(request), details={"file": name, "bytes": len(data)})
        log.info("download: %s %s as %s by %s", partner, ref, fmt, me.name)
        return Response(data, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.post("/p/{partner}/documents/{ref}/disputes", include_in_schema=False)
    async def raise_page(request: Request, partner: str, ref: str,
                         me: Annotated[Principal, Depends(signed_in)]) -> Response:
        form = await form_with_csrf(request, me)
        try:
            line_no = int(str(form.get("line_no") or ""))
        except ValueError:
            raise PageError(400, "choose the line to dispute") from None
        upload = form.get("file")
        attached = None
        if upload is not None and not isinstance(upload, str) and upload.filename:
            data = await upload.read(P.MAX_ATTACHMENT + 1)
            attached = (upload.filename, upload.content_type, data)
        d = P.raise_dispute(store, me, partner, ref, line_no, str(form.get("comment") or ""), attachment=attached,
                            remote=remote(request))
        log.info("dispute raised: %s on %s line %s by %s", d["number"], ref, line_no, me.name)
        return RedirectResponse(f"/p/{quote(partner)}/disputes/{quote(d['number'])}", status_code=303)

    @app.get("/p/{partner}/traffic", response_class=HTMLResponse, include_in_schema=False)
    def traffic_page(request: Request, partner: str, me: Annotated[Principal, Depends(signed_in)],
                     by: str = "day", first: date | None = None, last: date | None = None) -> Response:
        rows = P.traffic(store, me, partner, by=by, first=first, last=last)
        # the chart draws one currency (the one of the most rows): amounts of two are not on one axis
        ccys = [r["currency"] for r in rows]
        ccy = max(set(ccys), key=ccys.count) if ccys else None
        shown = [r for r in rows if r["currency"] == ccy]
        chart = bar_chart([(r["key"], r["amount"]) for r in (shown if by == "day" else shown[:20])],
                          horizontal=by != "day")
        return page(request, "traffic.html", me, partner, rows=rows, by=by, chart=chart, ccy=ccy,
                    first=first.isoformat() if first else "", last=last.isoformat() if last else "")

    @app.get("/p/{partner}/agreements", response_class=HTMLResponse, include_in_schema=False)
    def agreements_page(request: Request, partner: str, me: Annotated[Principal, Depends(signed_in)]) -> Response:
        return page(request, "agreements.html", me, partner, agreements=P.agreements(store, me, partner))

    @app.get("/p/{partner}/agreements/{agreement_id}/rates/{n}", response_class=HTMLResponse, include_in_schema=False)
    def rates_page(request: Request, partner: str, agreement_id: str, n: str,
                   me: Annotated[Principal, Depends(signed_in)], prefix: str = "", destination: str = "",
                   band: str = "", page: str = "1") -> Response:
        # ids as text: anything but a number in range is "not found", like an id of another partner's
        if not (agreement_id.isdigit() and n.isdigit() and 0 < int(agreement_id) < 2**31 and 0 < int(n) < 1000):
            raise P.NotFound()
        got = P.rate_table(store, me, partner, int(agreement_id), int(n), prefix=prefix[:32],
                           destination=destination[:100], band=band[:32],
                           page=int(page) if page.isdigit() and len(page) < 8 else 1)
        return templates.TemplateResponse(request, "rates.html", {
            "me": me, "partner": partner, **got, "prefix": prefix[:32], "destination": destination[:100],
            "band": band[:32]})

    @app.get("/p/{partner}/agreements/{agreement_id}/decks/{n}", include_in_schema=False)
    def deck_download(request: Request, partner: str, agreement_id: int, n: int,
                      me: Annotated[Principal, Depends(signed_in)]) -> Response:
        if not (0 < agreement_id < 2**31 and 0 < n < 1000):
            raise P.NotFound()
        name, data = P.deck(store, me, partner, agreement_id, n)
        with store.session() as s:
            accounts.principal_event(s, me, "download", partner=partner, target=f"agreement #{agreement_id} deck {n}",
                                     remote=remote(request), details={"file": name, "bytes": len(data)})
        safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
        return Response(data, media_type="text/plain; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{safe}"'})

    @app.get("/p/{partner}/disputes", response_class=HTMLResponse, include_in_schema=False)
    def disputes_page(request: Request, partner: str, me: Annotated[Principal, Depends(signed_in)]) -> Response:
        return page(request, "disputes.html", me, partner, disputes=P.portal_disputes(store, me, partner),
                    ours=P.our_disputes(store, me, partner))

    @app.get("/p/{partner}/disputes/{number}", response_class=HTMLResponse, include_in_schema=False)
    def dispute_page(request: Request, partner: str, number: str,
                     me: Annotated[Principal, Depends(signed_in)]) -> Response:
        d = P.portal_dispute(store, me, partner, number)
        actions = [a for a, (states, _new, who) in P.TRANSITIONS.items()
                   if d["state"] in states and (who == "staff") == me.is_staff]
        return page(request, "dispute.html", me, partner, d=d, actions=actions)

    @app.post("/p/{partner}/disputes/{number}/{action}", include_in_schema=False)
    async def dispute_action(request: Request, partner: str, number: str, action: str,
                             me: Annotated[Principal, Depends(signed_in)]) -> Response:
        form = await form_with_csrf(request, me)
        P.change_dispute(store, me, partner, number, action, reason=str(form.get("reason") or ""),
                         remote=remote(request), amount=str(form.get("amount") or "").strip() or None)
        log.info("dispute %s: %s by %s", number, action, me.name)
        return RedirectResponse(f"/p/{quote(partner)}/disputes/{quote(number)}", status_code=303)

    @app.get("/p/{partner}/disputes/{number}/attachment", include_in_schema=False)
    def attachment_page(request: Request, partner: str, number: str,
                        me: Annotated[Principal, Depends(signed_in)]) -> Response:
        return _attachment(request, me, partner, number)

    def _attachment(request: Request, me: Principal, partner: str, number: str) -> Response:
        name, ctype, data = P.attachment(store, me, partner, number)
        with store.session() as s:
            accounts.principal_event(s, me, "download", partner=partner, target=f"{number} attachment",
                                     remote=remote(request), details={"bytes": len(data)})
        ascii_name = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
        return Response(data, media_type=ctype, headers={
            "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"})

    # ------------------------------------------------------------------ the JSON API
    Api = Annotated[Principal, Depends(api_principal)]

    def _own(me: Principal, partner: str | None) -> str:
        """The partner an API call reads: the token's; another one named is not found."""
        if partner is not None and partner != me.partner:
            raise P.NotFound()
        return me.partner

    @app.get("/api/v1/documents", response_model=list[DocumentSummary], tags=["documents"])
    def api_documents(me: Api, partner: str | None = None, period: str | None = None,
                      state: Literal["finalized", "void"] | None = None,
                      kind: Literal["invoice", "credit_note", "debit_note", "statement", "share_statement"] | None = None
                      ) -> list[dict[str, Any]]:
        """The partner's invoices, credit and debit notes, settlement statements and the revenue-share
        statements addressed to it (finalized ones)."""
        return P.documents(store, me, _own(me, partner), period=period, state=state, kind=kind)

    @app.get("/api/v1/documents/{ref}", tags=["documents"], responses={404: {"description": "No such document"}})
    def api_document(request: Request, ref: str, me: Api) -> Response:
        """One document as JSON (the same file as `icdsl invoice export --format json`)."""
        return _download(request, me, me.partner, ref, "json")

    @app.get("/api/v1/documents/{ref}/{fmt}", tags=["documents"],
             responses={404: {"description": "No such document or format"}})
    def api_download(request: Request, ref: str, fmt: str, me: Api) -> Response:
        """One document as a file: pdf, csv, json or ubl (invoices and credit notes)."""
        return _download(request, me, me.partner, ref, fmt)

    @app.get("/api/v1/traffic", response_model=list[TrafficRow], tags=["traffic"])
    def api_traffic(me: Api, by: Literal["day", "service", "destination"] = "day", first: date | None = None,
                    last: date | None = None, partner: str | None = None) -> list[dict[str, Any]]:
        """The partner's billed traffic added up by day, service or destination."""
        return P.traffic(store, me, _own(me, partner), by=by, first=first, last=last)

    @app.get("/api/v1/agreements", response_model=list[AgreementView], tags=["agreements"])
    def api_agreements(me: Api, partner: str | None = None) -> list[dict[str, Any]]:
        """The agreement versions the partner is billed under, with their rate tables."""
        return P.agreements(store, me, _own(me, partner))

    @app.get("/api/v1/agreements/{agreement_id}/rates/{n}", response_model=RateTableView, tags=["agreements"],
             responses={404: {"description": "No such agreement version or rate table"}})
    def api_rates(me: Api, agreement_id: Annotated[int, InPath(ge=1, lt=2**31)], n: Annotated[int, InPath(ge=1, lt=1000)],
                  prefix: Annotated[str, Query(max_length=32)] = "",
                  destination: Annotated[str, Query(max_length=100)] = "",
                  band: Annotated[str, Query(max_length=32)] = "",
                  page: Annotated[int, Query(ge=1, le=10**6)] = 1) -> dict[str, Any]:
        """One rate table of an agreement version: prefix, destination, band, price, currency,
        effective dates; filtered (prefix beginning, destination words, band) and paged (100 rows)."""
        return P.rate_table(store, me, me.partner, agreement_id, n, prefix=prefix, destination=destination, band=band,
                            page=page)

    @app.get("/api/v1/disputes", response_model=list[DisputeView], tags=["disputes"])
    def api_disputes(me: Api, partner: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        """The disputes the partner raised on our invoices, and their state."""
        return P.portal_disputes(store, me, _own(me, partner), state=state)

    @app.get("/api/v1/disputes/{number}", response_model=DisputeView, tags=["disputes"],
             responses={404: {"description": "No such dispute"}})
    def api_dispute(me: Api, number: str) -> dict[str, Any]:
        """One dispute the partner raised, with the disputed line and its state."""
        return P.portal_dispute(store, me, me.partner, number)

    @app.post("/api/v1/disputes", response_model=DisputeView, status_code=201, tags=["disputes"],
              responses={400: {"description": "Refused: no comment, a finalized invoice only, a file of the wrong "
                                              "type or over 5 MiB"},
                         404: {"description": "No such invoice, or no such line on it"},
                         413: {"description": "The request is over 5.25 MiB"}})
    async def api_raise(request: Request, me: Api,
                        document: Annotated[str, Form(max_length=64, description="The invoice's number (or inv-ID)")],
                        line_no: Annotated[int, Form(ge=1, lt=2**31, description="The disputed line's number")],
                        comment: Annotated[str, Form(max_length=P.MAX_COMMENT, description="What is wrong")],
                        file: Annotated[UploadFile | None, File(description="A PDF, PNG, JPEG, CSV or text file, "
                                                                             "at most 5 MiB")] = None
                        ) -> dict[str, Any]:
        """Raise a dispute on a line of one of the partner's finalized invoices (multipart/form-data),
        with a comment and optionally an attached file; answers the dispute (``open``), 201."""
        attached = None
        if file is not None and file.filename:
            attached = (file.filename, file.content_type, await file.read(P.MAX_ATTACHMENT + 1))
        d = await run_in_threadpool(P.raise_dispute, store, me, me.partner, document, line_no, comment,
                                    attachment=attached, remote=remote(request))
        log.info("dispute raised: %s on %s line %s by %s (API)", d["number"], document, line_no, me.name)
        return await run_in_threadpool(P.portal_dispute, store, me, me.partner, d["number"])

    @app.get("/api/v1/disputes/{number}/attachment", tags=["disputes"],
             responses={200: {"description": "The attached file", "content": {"application/octet-stream": {}}},
                        404: {"description": "No such dispute, or none attached"}})
    def api_attachment(request: Request, number: str, me: Api) -> Response:
        """The file attached to one of the partner's disputes."""
        return _attachment(request, me, me.partner, number)

    return app


_HEALTH_HEADERS = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
_PAGE_HEADERS = [*_HEALTH_HEADERS, (b"cache-control", b"no-store")]


class _Guard:
    """Every response: the security headers, ``no-store`` (but /health); a body announced larger
    than :data:`MAX_BODY` refused before it is read (413). Plain ASGI: no copy of the response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        size = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        message = None
        if size is not None and (not size.isdigit() or int(size) > MAX_BODY):
            message, status = f"the request is larger than {MAX_BODY // (1024 * 1024)} MiB", 413
        elif size is None and scope["method"] in ("POST", "PUT", "PATCH"):
            # a body of unknown length (chunked) could be any size: the forms always say theirs
            message, status = "a request with a body must say its length (Content-Length)", 411
        if message is not None:
            if scope["path"].startswith("/api/"):
                response: Response = JSONResponse({"detail": message}, status_code=status)
            else:
                response = HTMLResponse(f"<!doctype html><title>{status}</title><p>{message}</p>", status_code=status)
            await response(scope, receive, send)
            return
        extra = _HEALTH_HEADERS if scope["path"] == "/health" else _PAGE_HEADERS

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [(k, v) for k, v in extra if k not in have]
            await send(message)

        await self.app(scope, receive, sending)


def from_environment() -> FastAPI:
    """The app configured by the environment (``ICDSL_DB``, ``ICDSL_SECRET_KEY``, ...): what each
    server process of ``icdsl serve --workers N`` makes."""
    return create_app(load_config())


def _formats(doc: dict[str, Any]) -> list[str]:
    return ["pdf", "csv", "json"] + (["ubl"] if doc["kind"] in P.E_INVOICES and doc.get("number") else [])


def _local(target: str) -> str:
    """A redirect target inside this site only (``/...``, never ``//host`` or a URL)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target or any(ord(c) < 32 for c in target):
        return "/"
    return target
