"""Issue 3's story in a real browser on a fresh install: create a root and an issuing CA, a
profile, request an SSL certificate from a CSR for a delegated domain, approve it, download
it in every format; a TLS client trusting the root accepts a server using it; revoking it
shows in the CRL and in OCSP within seconds."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from app.pki import csr, keys, names
from tests.e2e.conftest import ADMIN_LOGIN, ADMIN_PASSWORD, Console

FORMATS = {
    "x509": 3,
    "x509CO": 1,
    "x509IO": 2,
    "x509IOR": 2,
    "pemia": 2,
    "base64": None,
    "bin": None,
    "cer": None,
}


def select(c: Console, field_id: str, label: str) -> None:
    c.page.select_option(f"#{field_id}", label=label)


def submit(c: Console, text: str) -> None:
    c.page.click(f"button:has-text('{text}'), input[type=submit][value='{text}']")
    c.page.wait_for_load_state()


def test_private_ca_story(console: Console, tmp_path: Path) -> None:
    c, page = console, console.page
    c.sign_in(ADMIN_LOGIN, ADMIN_PASSWORD)

    # An organization (SSL subjects need a city) and a domain delegated to it.
    c.go("/admin/organization/new/")
    page.fill("#name", "Wayne Enterprises")
    page.fill("#city", "Gotham")
    select(c, "country", "United States of America (US)")
    c.save()
    c.go("/admin/domain/new/")
    page.fill("#name", "wayne.example")
    select(c, "target", "Wayne Enterprises (whole organization)")
    c.save()
    assert "Domain 'wayne.example' created." in c.flashes()

    # The CA wizard: form, confirmation, creation; a root, then an issuing CA under it.
    ca_ids: dict[str, str] = {}
    for name, parent, key in (
        ("Wayne Root", "None (root CA)", "EC-P384"),
        ("Wayne Issuing", "Wayne Root (Root CA)", "EC-P256"),
    ):
        c.menu("Settings", "Private CAs")
        page.click("a:has-text('Create')")
        page.fill("#name", name)
        select(c, "parent_id", parent)
        select(c, "key_type", key)
        page.fill("#customer_name", "Wayne")
        select(c, "country", "United States of America (US)")
        submit(c, "Next")
        assert "CN=Wayne " in page.inner_text("#cw-ca-confirm")
        c.shot(f"ca-confirm-{name}")
        submit(c, "Create the CA")
        assert f"Created the CA '{name}'" in c.flashes()
        ca_ids[name] = page.url.split("id=")[-1]
    root_id = ca_ids["Wayne Root"]
    c.menu("Settings", "Private CAs")
    assert sorted(c.table_column("Name")) == ["Wayne Issuing", "Wayne Root"]

    # A profile enrolling through the issuing CA.
    c.menu("Settings", "Certificate Profiles")
    page.click("a:has-text('Create')")
    page.fill("#name", "Wayne TLS")
    select(c, "ca_id", "Wayne Issuing (issues TLS)")
    page.fill("#terms", "90")
    page.check("input[name=key_types][value=EC-P256]")
    c.save()
    assert "Profile 'Wayne TLS' created." in c.flashes()

    # The request wizard from a CSR; "get from CSR" fills the names.
    key = keys.generate_private_key("EC-P256")
    request = csr.build_csr(
        key,
        subject=names.build_subject(common_name="www.wayne.example"),
        alt_names=names.parse_alt_names(["www.wayne.example", "api.wayne.example"]),
    )
    c.menu("Certificates", "SSL Requests")
    page.click("a:has-text('Create')")
    page.fill("#csr", request.public_bytes(Encoding.PEM).decode())
    submit(c, "Get common name and SANs from the CSR")
    assert page.input_value("#common_name") == "www.wayne.example"
    select(c, "target", "Wayne Enterprises (whole organization)")
    select(c, "eula", "I accept the subscriber agreement (EULA)")
    c.shot("request-wizard")
    submit(c, "Submit request")
    assert "is Requested" in c.flashes()

    # Approve with a message; the embedded worker issues it.
    page.click("a:has-text('Approve / decline')")
    page.fill("#message", "DNS checked")
    submit(c, "Approve")
    for _ in range(60):
        if page.locator("td a:has-text('certificate')").count():
            break
        time.sleep(0.5)
        page.reload()
    page.click("td a:has-text('certificate')")
    assert page.inner_text("#cw-cert-status") == "Issued"
    assert "DNS:api.wayne.example" in page.inner_text("#cw-cert-fields")
    c.shot("certificate-details")
    cert_url = page.url

    # Download every format.
    files = {}
    for fmt, count in FORMATS.items():
        page.goto(cert_url)
        page.select_option("select[name=format]", value=fmt)
        with page.expect_download() as info:
            page.click("button:has-text('Download')")
        files[fmt] = Path(info.value.path()).read_bytes()
        if count is not None:
            assert files[fmt].count(b"BEGIN CERTIFICATE") == count, fmt
    leaf = x509.load_der_x509_certificate(files["cer"])
    assert leaf.subject.rfc4514_string() == "CN=www.wayne.example,O=Wayne Enterprises,L=Gotham,C=US"

    # A TLS server using it; a client that trusts only our root, hostname checked.
    with urllib.request.urlopen(f"{c.base}/pki/ca/{root_id}.pem") as resp:
        (tmp_path / "root.pem").write_bytes(resp.read())
    (tmp_path / "chain.pem").write_bytes(files["pemia"])
    (tmp_path / "key.pem").write_bytes(keys.private_key_to_pem(key))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def serve() -> None:
            conn, _ = listener.accept()
            with server.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")

        thread = threading.Thread(target=serve)
        thread.start()
        client = ssl.create_default_context(cafile=str(tmp_path / "root.pem"))
        with (
            socket.create_connection(listener.getsockname()) as raw,
            client.wrap_socket(raw, server_hostname="api.wayne.example") as tls,
        ):
            assert tls.recv(2) == b"ok"
        thread.join(5)

    # Revoke: the CRL and OCSP say so within seconds.
    page.goto(cert_url)
    page.click("a:has-text('Revoke')")
    page.select_option("#reason", value="keyCompromise")
    submit(c, "Revoke")
    assert "revoked (keyCompromise)" in c.flashes()
    revoked_at = time.monotonic()
    cdp = (
        leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints)
        .value[0]
        .full_name[0]
        .value
    )
    aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    ocsp_url = next(
        d.access_location.value
        for d in aia
        if d.access_method == x509.AuthorityInformationAccessOID.OCSP
    )
    with urllib.request.urlopen(cdp) as resp:
        crl = x509.load_der_x509_crl(resp.read())
    assert crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None
    (tmp_path / "leaf.pem").write_bytes(files["x509CO"])
    (tmp_path / "issuing.pem").write_bytes(
        files["x509IO"].split(b"-----END CERTIFICATE-----")[0] + b"-----END CERTIFICATE-----\n"
    )
    out = subprocess.run(
        [
            "openssl",
            "ocsp",
            "-issuer",
            tmp_path / "issuing.pem",
            "-cert",
            tmp_path / "leaf.pem",
            "-url",
            ocsp_url,
            "-CAfile",
            tmp_path / "root.pem",
            "-VAfile",
            tmp_path / "issuing.pem",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "leaf.pem: revoked" in out.stdout, out.stdout + out.stderr
    assert time.monotonic() - revoked_at < 10
    c.shot("revoked")
