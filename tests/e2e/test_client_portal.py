"""Issue 11's story in a real browser on a fresh install with real SMTP (aiosmtpd): an
administrator adds a person and invites them; the person reads the mail, registers on the
portal, downloads the PKCS#12 once; openssl reads it with the password (and not without),
verifies it for S/MIME signing against the root; a TLS server requiring client
certificates accepts it and refuses one from a foreign CA; the person revokes it on the
portal and OCSP says so."""

from __future__ import annotations

import datetime as dt
import re
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from app.pki import keys
from tests.e2e.conftest import ADMIN_LOGIN, ADMIN_PASSWORD, Console, _answers
from tests.processes import PY, Proc, app_env, describe, flask_ok, free_port, wait_until

P12_PASSWORD = "Gotham-Knight-2026"
PASSPHRASE = "the night is darkest before the dawn"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"

    def wait_for(self, to: str, subject: str, timeout: float = 30) -> str:
        def found() -> str | None:
            for msg in self.messages:
                if msg["To"] == to and msg["Subject"] == subject:
                    return str(msg.get_payload(decode=True).decode())  # type: ignore[union-attr]
            return None

        return wait_until(found, timeout=timeout, what=f"the mail '{subject}' to {to}")


@pytest.fixture(scope="module")
def inbox() -> Iterator[Inbox]:
    box = Inbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port  # type: ignore[attr-defined]
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory, inbox: Inbox) -> dict[str, str]:
    home = tmp_path_factory.mktemp("portal")
    port = free_port()
    return app_env(
        CW_INSTANCE_DIR=home / "instance",
        CW_ADMIN_LOGIN=ADMIN_LOGIN,
        CW_ADMIN_PASSWORD=ADMIN_PASSWORD,
        CW_SCHEDULER_INTERVAL=1,
        PORT=port,
        CW_BASE_URL=f"http://127.0.0.1:{port}",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=inbox.port,  # type: ignore[attr-defined]
        MAIL_FROM="certwright@wayne.example",
    )


@pytest.fixture(scope="module")
def console_url(install: dict[str, str], chromium: str) -> Iterator[str]:
    """This module's console: `make run` with SMTP pointed at the test's aiosmtpd."""
    flask_ok("db", "upgrade", env=install)
    flask_ok("bootstrap", env=install)
    url = install["CW_BASE_URL"]
    logs = Path(install["CW_INSTANCE_DIR"]).parent
    with Proc(
        "gunicorn",
        [PY, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        env=install,
        logs=logs,
    ) as web:
        wait_until(lambda: _answers(url + "/login"), timeout=30, what="gunicorn", why=describe(web))
        yield url
        assert web.alive(), web.log()


def select(c: Console, field_id: str, label: str) -> None:
    c.page.select_option(f"#{field_id}", label=label)


def openssl(*args: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=30)


def handshake(tmp: Path, root_pem: Path, client_chain: Path, client_key: Path) -> tuple[bool, str]:
    """A Python TLS server that requires a client certificate chaining to our root; did it
    accept the client, and whom did it see?"""
    server_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relying-party.test")])
    now = dt.datetime.now(dt.UTC)
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .sign(server_key, hashes.SHA256())
    )
    (tmp / "server.pem").write_bytes(server_cert.public_bytes(Encoding.PEM))
    (tmp / "server.key").write_bytes(keys.private_key_to_pem(server_key))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp / "server.pem", tmp / "server.key")
    server.verify_mode = ssl.CERT_REQUIRED
    server.load_verify_locations(cafile=str(root_pem))
    outcome: dict[str, Any] = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with server.wrap_socket(conn, server_side=True) as tls:
                    peer = tls.getpeercert()
                    outcome["peer"] = dict(x[0] for x in peer["subject"]) if peer else {}
                    tls.sendall(b"welcome")
            except (ssl.SSLError, OSError) as exc:
                outcome["error"] = str(exc)
                conn.close()

        thread = threading.Thread(target=serve)
        thread.start()
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE  # the relying party's own certificate is not the point
        client.load_cert_chain(client_chain, client_key)
        try:
            with (
                socket.create_connection(listener.getsockname(), timeout=10) as raw,
                client.wrap_socket(raw) as tls,
            ):
                got = tls.recv(7)
        except (ssl.SSLError, OSError):
            got = b""
        thread.join(10)
    return got == b"welcome" and "peer" in outcome, str(outcome.get("peer", outcome.get("error")))


def foreign_client(tmp: Path) -> tuple[Path, Path]:
    """A client certificate for the same mailbox from a CA nobody trusts."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Foreign CA")])
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bruce.wayne@wayne.example")])
        )
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name("bruce.wayne@wayne.example")]), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    (tmp / "foreign.pem").write_bytes(cert.public_bytes(Encoding.PEM))
    (tmp / "foreign.key").write_bytes(keys.private_key_to_pem(key))
    return tmp / "foreign.pem", tmp / "foreign.key"


def test_person_invited_registers_imports_and_revokes(
    console: Console, install: dict[str, str], inbox: Inbox, tmp_path: Path
) -> None:
    c, page = console, console.page
    # The private CA from the command line (the CA wizard has its own story).
    flask_ok(
        "ca",
        "create",
        "--name",
        "Wayne Root",
        "--customer",
        "Wayne",
        "--key-type",
        "EC-P384",
        "--country",
        "US",
        env=install,
    )
    flask_ok(
        "ca",
        "create",
        "--name",
        "Wayne People",
        "--customer",
        "Wayne",
        "--key-type",
        "EC-P256",
        "--parent",
        "Wayne Root",
        "--country",
        "US",
        "--purpose",
        "smime",
        env=install,
    )
    c.sign_in(ADMIN_LOGIN, ADMIN_PASSWORD)

    # A domain delegated for Client certificates and a Client profile.
    c.go("/admin/domain/new/")
    page.fill("#name", "wayne.example")
    select(c, "target", "My Organization (whole organization)")
    page.check("input[name=types][value=client]")
    c.save()
    assert "Domain 'wayne.example' created." in c.flashes(), c.flashes()
    c.menu("Settings", "Certificate Profiles")
    page.click("a:has-text('Create')")
    page.fill("#name", "People S/MIME")
    select(c, "cert_type", "Client")
    select(c, "ca_id", "Wayne People (issues S/MIME)")
    page.fill("#terms", "365")
    page.check("input[name=key_types][value=EC-P256]")
    c.save()
    assert "Profile 'People S/MIME' created." in c.flashes(), c.flashes()

    # The administrator adds the person and sends the invitation.
    c.menu("Certificates", "Client Persons")
    page.click("a:has-text('Create')")
    select(c, "target", "My Organization (whole organization)")
    page.fill("#email", "bruce.wayne@wayne.example")
    page.fill("#first_name", "Bruce")
    page.fill("#last_name", "Wayne")
    page.fill("#alt_emails", "batman@wayne.example")
    c.shot("person-form")
    c.save()
    assert "Person 'bruce.wayne@wayne.example' created." in c.flashes(), c.flashes()
    page.click("a[title='View Record']")
    page.click("#cw-send-invitation")
    assert page.input_value("#term_days") == "365" and page.input_value("#key_type") == "EC-P256"
    c.shot("invite")
    page.click("#cw-invite-form button[type=submit]")
    assert "Invitation sent to bruce.wayne@wayne.example" in c.flashes()

    # The person reads the mail (real SMTP) ...
    body = inbox.wait_for(
        "bruce.wayne@wayne.example", "Your client certificate from My Organization"
    )
    code = re.search(r"one-time code: (\S+)", body).group(1)  # type: ignore[union-attr]
    link = re.search(r"(http://127\.0\.0\.1:\d+/enroll/register\S*)", body).group(1)  # type: ignore[union-attr]

    # ... and registers on the portal: no console chrome, email prefilled.
    c.sign_out()
    page.goto(link)
    assert page.input_value("#email") == "bruce.wayne@wayne.example"
    assert page.locator("#admin-navbar-collapse").count() == 0
    page.fill("#code", code)
    page.fill("#pkcs12_password", P12_PASSWORD)
    page.fill("#pkcs12_password_again", P12_PASSWORD)
    page.fill("#passphrase", PASSPHRASE)
    page.fill("#passphrase_again", PASSPHRASE)
    page.check("#eula")
    c.shot("register")
    page.click("#cw-register button[type=submit]")
    page.wait_for_selector("#cw-download", timeout=60_000)  # the page reloads itself
    c.shot("ready")
    with page.expect_download() as info:
        page.click("#cw-download")
    p12 = tmp_path / "bruce.p12"
    p12.write_bytes(Path(info.value.path()).read_bytes())
    assert info.value.suggested_filename == "bruce.wayne@wayne.example.p12"
    page.reload()
    assert "already downloaded" in page.inner_text("#cw-enroll-status")

    # openssl opens it with the password, not with another.
    assert (
        openssl("pkcs12", "-in", p12, "-passin", "pass:not-the-password", "-nodes").returncode != 0
    )
    out = openssl("pkcs12", "-in", p12, "-passin", f"pass:{P12_PASSWORD}", "-nodes")
    assert out.returncode == 0, out.stderr
    blocks = re.findall(r"-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----\n", out.stdout, re.S)
    key_pem = next(b for b in blocks if "PRIVATE KEY" in b)
    certs = [x509.load_pem_x509_certificate(b.encode()) for b in blocks if "CERTIFICATE" in b]
    (leaf,) = [
        x for x in certs if not x.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ]
    (issuing,) = [x for x in certs if x is not leaf and x.subject != x.issuer]
    (root,) = [x for x in certs if x.subject == x.issuer]
    # The root comes from the relying party's own download, not from the .p12.
    root_id = flask_ok("ca", "list", env=install).split("Wayne Root")[0].split()[-1]
    with urllib.request.urlopen(f"{install['CW_BASE_URL']}/pki/ca/{root_id}.pem") as resp:
        (tmp_path / "root.pem").write_bytes(resp.read())
    assert x509.load_pem_x509_certificate((tmp_path / "root.pem").read_bytes()) == root
    (tmp_path / "issuing.pem").write_bytes(issuing.public_bytes(Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(Encoding.PEM))
    (tmp_path / "key.pem").write_text(key_pem)
    (tmp_path / "chain.pem").write_bytes(
        leaf.public_bytes(Encoding.PEM) + issuing.public_bytes(Encoding.PEM)
    )
    assert leaf.subject.rfc4514_string() == "CN=bruce.wayne@wayne.example"
    verified = openssl(
        "verify",
        "-purpose",
        "smimesign",
        "-CAfile",
        tmp_path / "root.pem",
        "-untrusted",
        tmp_path / "issuing.pem",
        tmp_path / "leaf.pem",
    )
    assert verified.returncode == 0 and verified.stdout.strip().endswith(": OK"), verified.stderr

    # A TLS server requiring client certificates from our root accepts it ...
    ok, peer = handshake(
        tmp_path, tmp_path / "root.pem", tmp_path / "chain.pem", tmp_path / "key.pem"
    )
    assert ok and "bruce.wayne@wayne.example" in peer, peer
    # ... and refuses the same mailbox certified by a foreign CA.
    foreign_cert, foreign_key = foreign_client(tmp_path)
    ok, why = handshake(tmp_path, tmp_path / "root.pem", foreign_cert, foreign_key)
    assert not ok, why

    # The person revokes it on the portal; OCSP says so.
    page.goto(f"{install['CW_BASE_URL']}/portal/")
    page.click("a:has-text('Revoke your certificate')")
    page.fill("#email", "bruce.wayne@wayne.example")
    page.fill("#passphrase", PASSPHRASE)
    page.select_option("#reason", value="keyCompromise")
    page.check("#confirm")
    page.click("#cw-revoke button[type=submit]")
    assert f"Revoked: serial {leaf.serial_number:x}" in page.inner_text("#cw-done")
    c.shot("revoked")
    revoked_at = time.monotonic()
    aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    ocsp_url = next(
        d.access_location.value
        for d in aia
        if d.access_method == x509.AuthorityInformationAccessOID.OCSP
    )
    answer = openssl(
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
    )
    assert "leaf.pem: revoked" in answer.stdout, answer.stdout + answer.stderr
    assert "Reason: keyCompromise" in answer.stdout
    assert time.monotonic() - revoked_at < 10
