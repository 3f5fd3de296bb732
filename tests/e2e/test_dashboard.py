"""The dashboard in a real browser, the issue's check: certificates imported through the
console, then a click on a bar of the "Expiring soon" chart (drawn by plotly.js from the
data-figure attribute) lands on Certificates > SSL filtered to that window, listing exactly
the certificates the bar counted."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.e2e.conftest import ADMIN_LOGIN, ADMIN_PASSWORD, Console

SOON = ("soon-a.dash.test", "soon-b.dash.test")  # expire within 7 days
LATER = "later.dash.test"  # expires in 45 days


def tls_certificate(cn: str, days: int) -> bytes:
    """A self-signed TLS server certificate (serverAuth: an import files it under SSL)
    expiring in ``days`` days, as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_a_dashboard_bar_opens_the_filtered_list(console: Console, tmp_path: Path) -> None:
    c = console
    files = []
    for cn, days in ((SOON[0], 3), (SOON[1], 5), (LATER, 45)):
        path = tmp_path / f"{cn}.pem"
        path.write_bytes(tls_certificate(cn, days))
        files.append(str(path))
    c.sign_in(ADMIN_LOGIN, ADMIN_PASSWORD)
    c.go("/admin/cert_import/")
    c.page.select_option("#target", index=0)
    c.page.set_input_files("#files", files)
    c.page.click("#cw-import-form button[type=submit]")
    c.page.wait_for_selector('#cw-import-status[data-status="done"]', timeout=60_000)

    c.go("/admin/")
    bars = c.page.locator("#cw-chart-expiring g.point path")
    bars.first.wait_for(timeout=60_000)  # plotly.min.js is 4.8 MB: slow on a loaded machine
    assert bars.count() == 4  # 0-7, 8-30, 31-60, 61-90 days
    # The y axis of counts shows whole numbers only.
    ticks = c.page.locator("#cw-chart-expiring .ytick text").all_text_contents()
    assert ticks and all(re.fullmatch(r"\d+", t) for t in ticks), ticks
    c.shot("dashboard with expiring certificates")
    # Click where a person would: Plotly's drag layer over the plot takes the pointer and
    # reports a click on the bar under it.
    bars.first.scroll_into_view_if_needed()  # the pointer only reaches the viewport
    box = bars.first.bounding_box()  # "up to 7 days"
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    c.page.mouse.move(x, y)  # Plotly finds the point under the pointer on hover
    c.page.locator("#cw-chart-expiring .hoverlayer .hovertext").wait_for()
    c.page.mouse.click(x, y)
    c.page.wait_for_url(re.compile(r".*/admin/ssl_certs/\?flt0_\w+=0-7$"), timeout=60_000)
    c.shot("filtered list")
    names = c.table_column("Common name")
    assert sorted(names) == sorted(SOON), names
    assert LATER not in c.main_text()


def test_every_dashboard_panel_draws_on_a_laptop_screen(console: Console) -> None:
    """Every chart of the dashboard is drawn by plotly.js from its data-figure (no inline
    script under the strict CSP) within a laptop's width, and the top-risks table links
    each number to a filtered list."""
    c = console
    c.sign_in(ADMIN_LOGIN, ADMIN_PASSWORD)
    c.page.set_viewport_size({"width": 1366, "height": 768})
    c.go("/admin/")
    charts = c.page.locator("#cw-charts [data-figure]")
    charts.first.locator(".main-svg").first.wait_for(timeout=60_000)
    ids = charts.evaluate_all("els => els.map(e => e.id)")
    for wanted in ("cw-chart-requests", "cw-chart-pending", "cw-chart-discovery"):
        assert wanted in ids, ids
    for chart_id in ids:
        plot = c.page.locator(f"#{chart_id} .main-svg").first
        plot.wait_for(timeout=60_000)
        box = plot.bounding_box()
        assert box is not None and 0 < box["width"] <= 1366, (chart_id, box)
    rows = c.page.locator("#cw-top-risks tr[data-risk]")
    assert rows.count() == 4
    link = rows.first.locator("td[data-type='ssl'] a")
    href = link.get_attribute("href")
    assert href and "flt0_" in href
    c.shot("dashboard on a laptop screen")
    link.click()
    c.page.wait_for_url(re.compile(r".*/admin/ssl_certs/\?flt0_\w+=expired_served$"))
