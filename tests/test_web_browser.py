"""The portal in a real browser: Debian's Chromium driven by Playwright, against `icdsl serve`'s
app served by uvicorn on the loopback. A partner's user signs in, opens an invoice, downloads its
PDF, raises a dispute with an attached file, sees it listed, and signs out; on a phone's width too.
Screenshots of the main pages are kept in tests/artifacts/ (not in git).

Skipped where Chromium or Playwright is missing, except when ICDSL_REQUIRE_BROWSER=1 (CI), where
that is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from web_fixtures import demo_folder  # noqa: F401 - the fixture

from icdsl.billing import accounts
from icdsl.billing.store import open_store

ARTIFACTS = Path(__file__).parent / "artifacts"
PASSWORD = "correct horse battery staple"
CHROMIUM = os.environ.get("ICDSL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def _need(reason: str) -> None:
    if os.environ.get("ICDSL_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (ICDSL_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def server(demo_folder):  # noqa: F811 - the fixture
    try:
        import uvicorn
        from playwright.sync_api import sync_playwright  # noqa: F401
    except ImportError as e:
        _need(f"the browser test needs playwright and uvicorn: {e}")
    if not Path(CHROMIUM).exists():
        _need(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    from icdsl.web.app import create_app
    from icdsl.web.config import WebConfig

    store = open_store(f"sqlite:///{demo_folder / 'icdsl.db'}", data_dir=demo_folder / "icdsl-data")
    with store.session() as s:
        accounts.add_user(s, "browser-anna", PASSWORD, partner="LUMFR")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(WebConfig(db=None, data=None, secret_key="b" * 40), store)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(1200):  # a busy machine starts it slowly
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started, "the server did not start within 60 s"
    yield f"http://localhost:{port}", store
    srv.should_exit = True
    thread.join(timeout=10)
    store.close()


def test_sign_in_open_download_dispute_sign_out(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    base, store = server
    expect.set_options(timeout=20_000)  # a busy machine: the default 5 s wait is too short there
    ARTIFACTS.mkdir(exist_ok=True)
    proof = tmp_path / "our-cdrs.csv"
    proof.write_text("call,duration\n1,60\n2,120\n", encoding="utf-8")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_context(accept_downloads=True, viewport={"width": 1200, "height": 900}).new_page()
            page.set_default_timeout(20_000)
            page.goto(f"{base}/")
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
            page.screenshot(path=ARTIFACTS / "01-sign-in.png", full_page=True)
            page.get_by_label("User name").fill("browser-anna")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Invoices, credit notes and statements: LUMFR")).to_be_visible()
            page.screenshot(path=ARTIFACTS / "02-documents.png", full_page=True)
            page.locator("a[href^='/p/LUMFR/documents/INV-']").first.click()
            expect(page.get_by_role("heading", name="Dispute a line")).to_be_visible()
            number = page.locator("h1").inner_text().split()[-1]
            page.screenshot(path=ARTIFACTS / "03-invoice.png", full_page=True)
            with page.expect_download() as dl:
                page.get_by_role("link", name="PDF").click()
            pdf = tmp_path / "invoice.pdf"
            dl.value.save_as(pdf)
            assert dl.value.suggested_filename == f"{number}.pdf"
            assert pdf.read_bytes().startswith(b"%PDF-")
            page.get_by_label("Line").select_option(index=0)
            page.get_by_label("What is wrong").fill("Our records show 2 calls, not the quantity billed.")
            page.get_by_label("Attach a file").set_input_files(str(proof))
            page.get_by_role("button", name="Raise the dispute").click()
            expect(page.get_by_role("heading", name="Dispute PD-")).to_be_visible()
            expect(page.get_by_text("our-cdrs.csv")).to_be_visible()
            dispute = page.locator("h1").inner_text().split()[-1]
            page.screenshot(path=ARTIFACTS / "04-dispute.png", full_page=True)
            page.get_by_role("link", name="Disputes").click()
            row = page.get_by_role("row").filter(has=page.get_by_role("link", name=dispute))
            expect(row).to_contain_text(number)
            expect(row).to_contain_text("open")
            page.get_by_role("link", name="Traffic").click()
            expect(page.locator("svg rect").first).to_be_attached()
            page.screenshot(path=ARTIFACTS / "05-traffic.png", full_page=True)
            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
            page.goto(f"{base}/p/LUMFR/documents")
            expect(page.get_by_role("heading", name="Sign in")).to_be_visible()  # the session is over
            # a phone's width: the list fits (no horizontal scrolling of the page)
            phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True).new_page()
            phone.set_default_timeout(20_000)
            phone.goto(f"{base}/login")
            phone.get_by_label("User name").fill("browser-anna")
            phone.get_by_label("Password").fill(PASSWORD)
            phone.get_by_role("button", name="Sign in").click()
            expect(phone.get_by_role("heading", name="Invoices, credit notes and statements: LUMFR")).to_be_visible()
            phone.screenshot(path=ARTIFACTS / "06-phone-documents.png", full_page=True)
            assert phone.evaluate("document.documentElement.scrollWidth") <= 390
        finally:
            browser.close()
    with store.reading() as s:
        actions = [e.action for e in accounts.events(s) if e.actor == "browser-anna"]
    assert {"sign_in", "download", "dispute_raised", "sign_out"} <= set(actions)
