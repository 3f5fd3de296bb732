"""Issue 10's "done when" in a real browser: a new administrator goes from first sign-in to
a first downloaded certificate without reloading a page or reading a raw column name.

Every main screen is checked for the framework's defaults (no "There are no items in the
table.", no column label that is its attribute name with underscores replaced), and the
whole visit for browser console errors, Content-Security-Policy violations included (the
console sends script-src 'self'). The request page shows the issuance outcome in place
after the approval, and Account Activity the hash chain verification."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from app.pki import csr, keys, names
from tests.e2e.conftest import ADMIN_LOGIN, ADMIN_PASSWORD, Console

FRAMEWORK_EMPTY = "There are no items in the table."
CN = "www.example.test"


class BrowserLog:
    """Console errors and uncaught exceptions of a page (CSP violations are errors)."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))


def raw_labels(c: Console) -> list[str]:
    """Column headings that are their attribute name title-cased (Flask-Admin's default)."""
    found = c.page.evaluate(
        """() => [...document.querySelectorAll('table.model-list th.column-header')].map(
            th => [[...th.classList].find(k => k.startsWith('col-')).slice(4),
                   th.innerText.trim()])"""
    )
    raw = []
    for name, label in found:
        framework = " ".join(w.capitalize() for w in name.replace("-", "_").split("_"))
        if "_" in name and label == framework:
            raw.append(f"{name} -> {label}")
    return raw


def check_screen(c: Console, where: str) -> None:
    text = c.page.content()
    assert FRAMEWORK_EMPTY not in text, where
    assert raw_labels(c) == [], where
    search = c.page.locator("input[name=search]")
    if search.count():
        hint = search.first.get_attribute("placeholder") or ""
        assert hint.startswith("Search by ") and "_" not in hint, (where, hint)


def every_screen(c: Console) -> list[str]:
    """Open every tab and menu entry, and each one's create form, checking each."""
    page = c.page
    nav = page.locator("#admin-navbar-collapse ul.navbar-nav").first
    tops = [t.strip() for t in nav.locator(":scope > li > a").all_inner_texts()]
    visited = []
    for top in tops:
        entries = [
            e.strip()
            for e in nav.locator("li", has_text=top).locator("a.dropdown-item").all_inner_texts()
        ]
        for entry in entries or [None]:
            c.menu(top, entry)
            check_screen(c, f"{top} > {entry}")
            visited.append(f"{top} > {entry}")
            create = page.locator("ul.nav-tabs a:has-text('Create')")
            if create.count():
                create.click()
                page.wait_for_load_state()
                check_screen(c, f"{top} > {entry} > Create")
    return visited


def click(c: Console, text: str) -> None:
    c.page.click(f"button:has-text('{text}'), input[type=submit][value='{text}']")
    c.page.wait_for_load_state()


def test_first_sign_in_to_first_certificate_without_a_reload(console: Console) -> None:
    c, page = console, console.page
    log = BrowserLog(page)
    navigations: list[str] = []
    page.on("framenavigated", lambda f: navigations.append(f.url) if f == page.main_frame else None)
    c.sign_in(ADMIN_LOGIN, ADMIN_PASSWORD)

    # The welcome asks where the bootstrap organization is, then ticks the step.
    welcome = page.locator("#cw-welcome")
    assert welcome.locator("[data-step][data-done=yes]").count() == 0
    page.fill("#cw-location-form #city", "Springfield")
    page.fill("#cw-location-form #state", "Illinois")
    click(c, "Save")
    assert "Organization 'My Organization' is in Springfield." in c.flashes()
    assert page.locator("[data-step=organization]").get_attribute("data-done") == "yes"
    c.shot("welcome")

    # Every main screen of a new install: no framework defaults, every empty list leads on.
    visited = every_screen(c)
    assert len(visited) >= 18, visited
    c.menu("Certificates", "SSL Certificates")
    assert "No SSL certificates yet." in page.inner_text("#cw-empty")
    c.menu("Settings", "Private CAs")
    assert page.inner_text("#cw-empty a") == "Create your root CA"

    # The welcome's steps, in order, each from its link.
    c.menu("Dashboard")
    page.click("[data-step=domain] a")
    page.fill("#name", "example.test")
    page.select_option("#target", label="My Organization (whole organization)")
    c.save()
    assert "Domain 'example.test' created." in c.flashes()
    for name, parent, key in (
        ("Example Root", "None (root CA)", "EC-P384"),
        ("Example Issuing", "Example Root (Root CA)", "EC-P256"),
    ):
        c.menu("Dashboard")
        page.click("[data-step=ca] a")
        page.fill("#name", name)
        page.select_option("#parent_id", label=parent)
        page.select_option("#key_type", label=key)
        page.fill("#customer_name", "Example")
        page.select_option("#country", label="United States of America (US)")
        click(c, "Next")
        click(c, "Create the CA")
        assert f"Created the CA '{name}'" in c.flashes()
    c.menu("Dashboard")
    page.click("[data-step=profile] a")
    page.fill("#name", "TLS 90 days")
    page.select_option("#ca_id", label="Example Issuing (issues TLS)")
    page.fill("#terms", "90")
    page.check("input[name=key_types][value=EC-P256]")
    c.save()
    assert "Profile 'TLS 90 days' created." in c.flashes()
    check_screen(c, "profiles after create")

    # The SSL list's own entry point leads to the request wizard.
    c.menu("Certificates", "SSL Certificates")
    page.click("#cw-request-certificate")
    assert "Request an SSL certificate" in page.inner_text("ul.nav-tabs")
    key = keys.generate_private_key("EC-P256")
    request = csr.build_csr(
        key,
        subject=names.build_subject(common_name=CN),
        alt_names=names.parse_alt_names([CN]),
    )
    page.fill("#csr", request.public_bytes(Encoding.PEM).decode())
    click(c, "Get common name and SANs from the CSR")
    assert page.input_value("#common_name") == CN
    page.select_option("#target", label="My Organization (whole organization)")
    page.select_option("#eula", label="I accept the subscriber agreement (EULA)")
    click(c, "Submit request")
    assert re.search(rf"Request #\d+ for {re.escape(CN)} is Requested\.", c.flashes())
    details = page.locator("table.searchable")
    assert "CN=www.example.test, O=My Organization, L=Springfield, ST=Illinois, C=US" in (
        details.inner_text()
    )

    # Approve; the page shows the issuance outcome in place: no reload, no navigation.
    page.click("a:has-text('Approve / decline')")
    page.fill("#message", "names checked")
    page.click("button[name=approve]")
    page.wait_for_load_state()
    assert "approved; the certificate is being issued" in c.flashes()
    status = page.locator("[data-cw-live]").first
    before = len(navigations)
    status.locator("xpath=self::*[@data-cw-state='Issued']").wait_for(timeout=30_000)
    assert len(navigations) == before, navigations[before:]
    assert page.evaluate("window.cwLivePolls") >= 1
    assert status.inner_text().startswith("Issued")
    c.shot("request-issued-live")
    status.locator("a:has-text('Open the certificate')").click()
    page.wait_for_load_state()
    assert page.inner_text("#cw-cert-status") == "Issued"

    # Downloads named by what they hold.
    saved = {}
    for fmt, expected in (
        ("x509CO", f"{CN}.pem"),
        ("pemia", f"{CN}-fullchain.pem"),
        ("x509", f"{CN}-chain.pem"),
        ("cer", f"{CN}.cer"),
    ):
        page.select_option("select[name=format]", value=fmt)
        with page.expect_download() as info:
            page.click("button:has-text('Download')")
        assert info.value.suggested_filename == expected
        saved[fmt] = Path(info.value.path()).read_bytes()
    assert x509.load_der_x509_certificate(saved["cer"]).subject.rfc4514_string() == (
        "CN=www.example.test,O=My Organization,L=Springfield,ST=Illinois,C=US"
    )
    assert saved["pemia"].count(b"BEGIN CERTIFICATE") == 2
    c.menu("Dashboard")
    assert page.locator("#cw-welcome-done").count() == 1
    page.wait_for_selector("#cw-charts .main-svg")  # Plotly drew under the CSP
    check_screen(c, "dashboard")

    # The hash chain verification reports where it was started, in place.
    c.menu("Reports", "Account Activity")
    page.click("#cw-verify-audit")
    page.wait_for_load_state()
    before = len(navigations)
    page.locator("#cw-verify-status [data-cw-state='Intact']").wait_for(timeout=30_000)
    assert len(navigations) == before
    assert re.search(
        r"The hash chain is intact: \d+ events verified\.", page.inner_text("#cw-verify-status")
    )

    assert log.errors == [], log.errors


def test_error_pages_use_the_console_layout(console: Console) -> None:
    c, page = console, console.page
    c.sign_in(ADMIN_LOGIN, ADMIN_PASSWORD)
    response = c.go("/admin/no-such-screen/")
    assert response.status == 404
    assert page.inner_text("#cw-error h4") == "Page not found"
    assert page.locator("#admin-navbar-collapse").count() == 1
    page.click("#cw-error a:has-text('Go to the dashboard')")
    page.wait_for_url(c.base + "/admin/")
