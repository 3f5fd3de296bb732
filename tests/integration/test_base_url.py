"""The public URL an instance embeds (CW_BASE_URL): a real gunicorn on another port records
it, so that CAs created from the command line, without PORT, name that port; a second
server on a busy port fails with "port in use"; About, the CA wizard and a warning on
every console page show it."""

from __future__ import annotations

import ssl
import subprocess
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID

from app.base_url import checked_pki_url, resolve_base_url, url_of_bind
from app.config import Config
from app.pki import lint
from app.services.ca import authorities, signing
from app.services.errors import DomainError
from app.services.scope import SYSTEM
from app.settings import SettingError
from tests.conftest import ROOT, csrf_token, login
from tests.factories import PASSWORD, make_admin, make_pki
from tests.processes import PY, Proc, app_env, describe, flask_ok, free_port, wait_until

GUNICORN = [PY, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]


def answers(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return bytes(resp.read())


def embedded_urls(cert: x509.Certificate) -> list[str]:
    points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    access = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    return [str(name.value) for point in points for name in point.full_name or ()] + [
        str(d.access_location.value) for d in access
    ]


def cli_cas_name(url: str, cli_env: dict[str, str]) -> x509.Certificate:
    """Create a root and an issuing CA from the command line; the issuing CA's certificate,
    after checking that it names ``url`` for its root's CRL, OCSP and certificate and that
    the CRL is there, signed by the root."""
    flask_ok(
        "ca", "create", "--name", "Root", "--customer", "Acme", "--key-type", "EC-P256",
        "--country", "DE", env=cli_env,
    )  # fmt: skip
    flask_ok(
        "ca", "create", "--name", "Issuing", "--customer", "Acme", "--key-type", "EC-P256",
        "--country", "DE", "--parent", "Root", env=cli_env,
    )  # fmt: skip
    issuing = x509.load_der_x509_certificate(fetch(f"{url}/pki/ca/2.cer"))
    urls = embedded_urls(issuing)
    assert urls == [f"{url}/pki/crl/1.crl", f"{url}/pki/ocsp/1", f"{url}/pki/ca/1.cer"]
    root = x509.load_der_x509_certificate(fetch(urls[2]))
    crl = x509.load_der_x509_crl(fetch(urls[0]))
    assert crl.is_signature_valid(root.public_key())  # type: ignore[arg-type]
    return issuing


def test_the_cli_embeds_the_port_the_server_serves_and_a_second_server_is_refused(
    tmp_path: Path,
) -> None:
    port = free_port()
    server_env = app_env(
        CW_INSTANCE_DIR=tmp_path / "instance",
        CW_ADMIN_PASSWORD="Correct-Horse-9-Battery",
        CW_SCHEDULER_INTERVAL=1,
        PORT=port,  # as `PORT=6050 make run` passes it; CW_BASE_URL unset
    )
    flask_ok("db", "upgrade", env=server_env)
    flask_ok("bootstrap", env=server_env)
    base = f"http://127.0.0.1:{port}"
    with Proc("web", GUNICORN, env=server_env, logs=tmp_path) as web:
        wait_until(lambda: answers(base + "/login"), timeout=40, what="gunicorn", why=describe(web))
        assert (tmp_path / "instance" / "base_url").read_text().strip() == base

        # Another terminal: the same instance folder, no PORT.
        cli_env = {k: v for k, v in server_env.items() if k != "PORT"}
        issuing = cli_cas_name(base, cli_env)
        ocsp_access = issuing.extensions.get_extension_for_class(
            x509.AuthorityInformationAccess
        ).value
        assert [d.access_method for d in ocsp_access] == [
            AuthorityInformationAccessOID.OCSP,
            AuthorityInformationAccessOID.CA_ISSUERS,
        ]

        # A second `make run` on the busy port, with another database: refused at once.
        other_env = app_env(CW_INSTANCE_DIR=tmp_path / "other", PORT=port)
        flask_ok("db", "upgrade", env=other_env)
        with Proc("second", GUNICORN, env=other_env, logs=tmp_path) as second:
            second.popen.wait(timeout=30)
            assert second.popen.returncode != 0
            assert f"port in use: 127.0.0.1:{port}" in second.log(), second.log()
            assert "Booting worker" not in second.log()
        assert answers(base + "/login") and web.alive(), web.log()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate and key for IP:127.0.0.1, made by the openssl command line."""
    cert, key = tmp_path / "tls.pem", tmp_path / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_behind_https_certificates_name_the_plain_http_pki_listener(tmp_path: Path) -> None:
    """The deployment of README *Which URL goes into certificates*: gunicorn serving TLS at
    CW_BASE_URL, a second one serving plain HTTP at CW_PKI_URL (no worker of its own, its
    own control socket). A CA created from another terminal, without those settings, names
    the PKI listener, where its CRL and certificate answer; the console's session cookie is
    Secure; and the start refuses an https CW_BASE_URL without CW_PKI_URL."""
    tls_port, pki_port = free_port(), free_port()
    base, pki = f"https://127.0.0.1:{tls_port}", f"http://127.0.0.1:{pki_port}"
    cert, key = _self_signed(tmp_path)
    instance = tmp_path / "instance"
    common = {"CW_INSTANCE_DIR": instance, "CW_BASE_URL": base}
    refused = subprocess.run(
        [PY, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        env=app_env(**common), capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert refused.returncode != 0
    assert f"CW_BASE_URL is {base}, an https:// URL: set CW_PKI_URL" in refused.stderr
    server_env = app_env(
        **common,
        CW_PKI_URL=pki,
        CW_ADMIN_PASSWORD="Correct-Horse-9-Battery",
        PORT=tls_port,
        GUNICORN_CMD_ARGS=f"--certfile {cert} --keyfile {key}",
    )
    flask_ok("db", "upgrade", env=server_env)
    flask_ok("bootstrap", env=server_env)
    pki_env = app_env(
        **common,
        CW_PKI_URL=pki,
        PORT=pki_port,
        CW_EMBEDDED_WORKER=0,
        CW_CONTROL_SOCKET=tmp_path / "pki.ctl",
    )
    tls = ssl.create_default_context(cafile=str(cert))
    with (
        Proc("tls", GUNICORN, env=server_env, logs=tmp_path) as web,
        Proc("pki", GUNICORN, env=pki_env, logs=tmp_path) as plain,
    ):
        wait_until(lambda: answers(pki + "/login"), timeout=40, what="pki", why=describe(plain))
        wait_until(lambda: answers(base + "/login", tls), timeout=40, what="tls", why=describe(web))
        with urllib.request.urlopen(base + "/login", timeout=5, context=tls) as resp:
            cookie = resp.headers["Set-Cookie"]
        assert "certwright_session=" in cookie and "Secure" in cookie, cookie
        assert (instance / "pki_url").read_text().strip() == pki

        # Another terminal: the same instance folder, none of the URL settings.
        cli_env = app_env(CW_INSTANCE_DIR=instance)
        cli_cas_name(pki, cli_env)
        assert web.alive() and plain.alive(), web.log() + plain.log()


@pytest.mark.parametrize(
    ("bind", "url"),
    [
        ("127.0.0.1:6050", "http://127.0.0.1:6050"),
        ("[::1]:8443", "http://[::1]:8443"),
        ("pki.example.net:80", "http://pki.example.net:80"),
        ("unix:/run/certwright.sock", None),
    ],
)
def test_the_url_of_a_bind_address(bind, url):
    assert url_of_bind(bind) == url


def test_order_explicit_then_port_then_recorded_then_default(monkeypatch, tmp_path):
    for name in ("CW_BASE_URL", "PORT", "CW_BIND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CW_INSTANCE_DIR", str(tmp_path))
    assert resolve_base_url() == ("http://127.0.0.1:5000", "default")
    (tmp_path / "base_url").write_text("http://127.0.0.1:6050\n")
    assert resolve_base_url() == (
        "http://127.0.0.1:6050",
        f"recorded by the server in {tmp_path / 'base_url'}",
    )
    monkeypatch.setenv("PORT", "7000")
    assert resolve_base_url() == ("http://127.0.0.1:7000", "PORT")
    monkeypatch.setenv("CW_BASE_URL", "https://pki.example.net/")
    assert resolve_base_url() == ("https://pki.example.net", "CW_BASE_URL")


def test_the_pki_url_is_plain_http_and_required_behind_https():
    # Unset: certificates name CW_BASE_URL ("" here), unless that is https.
    assert checked_pki_url("", "http://127.0.0.1:5000") == ""
    with pytest.raises(SettingError, match=r"set CW_PKI_URL .* http://certs\.example\.net"):
        checked_pki_url("", "https://certs.example.net:8443")
    assert checked_pki_url(" http://certs.example.net/ ", "https://certs.example.net") == (
        "http://certs.example.net"
    )
    assert checked_pki_url("http://[::1]:8080/ca", "http://127.0.0.1") == "http://[::1]:8080/ca"
    for wrong in (
        "https://certs.example.net",
        "ftp://x.example",
        "http://",
        "certs.example.net",
        "http://x.example/?a=1",
        "http://x.example/#top",
    ):
        with pytest.raises(SettingError, match="expected a plain http:// URL"):
            checked_pki_url(wrong, "http://127.0.0.1:5000")


def test_the_session_cookie_is_secure_behind_https_unless_told(monkeypatch, tmp_path):
    monkeypatch.setenv("CW_INSTANCE_DIR", str(tmp_path))
    monkeypatch.delenv("SESSION_COOKIE_SECURE", raising=False)
    monkeypatch.setenv("CW_BASE_URL", "http://127.0.0.1:5000")
    assert Config().SESSION_COOKIE_SECURE is False
    monkeypatch.setenv("CW_BASE_URL", "https://certs.example.net")
    monkeypatch.setenv("CW_PKI_URL", "http://certs.example.net")
    assert Config().SESSION_COOKIE_SECURE is True
    monkeypatch.setenv("SESSION_COOKIE_SECURE", "0")
    assert Config().SESSION_COOKIE_SECURE is False


def test_certificates_name_the_plain_http_pki_url_behind_an_https_console(app):
    """Behind TLS: a CA certificate names the PKI URL for its CRL, OCSP and CA issuer, and
    passes the CA/Browser Forum's lint; naming the https console URL instead (what an
    https CW_BASE_URL alone gave before CW_PKI_URL, which the start now refuses) the lint
    refuses the CA."""
    app.config.update(
        CW_BASE_URL="https://console.example.net", CW_PKI_URL="http://crl.example.net"
    )
    root, issuing, _profile = make_pki()
    cert = x509.load_der_x509_certificate(issuing.cert_der)
    assert embedded_urls(cert) == [
        f"http://crl.example.net/pki/crl/{root.id}.crl",
        f"http://crl.example.net/pki/ocsp/{root.id}",
        f"http://crl.example.net/pki/ca/{root.id}.cer",
    ]
    lint.check_certificate(cert, None)  # raises LintError on any refused finding

    app.config.update(CW_PKI_URL="")
    signing.ISSUERS.clear()  # a process reads its settings once; unsealed CAs keep their URLs
    with pytest.raises(DomainError, match='Prohibited URI scheme: "https"'):
        authorities.create_ca(
            actor=SYSTEM,
            spec=authorities.CaSpec(
                name="Second Issuing",
                key_type="EC-P256",
                customer_name="Test",
                country="DE",
                parent_id=root.id,
            ),
        )


@pytest.fixture
def mrao(client):
    admin = make_admin("mrao")
    login(client, "mrao", PASSWORD)
    return admin


# The test client signs in at http://localhost; its cookie goes to any port of that host.
BASE = "http://localhost:6050"


def test_about_shows_the_base_url_and_where_it_came_from(app, client, mrao):
    app.config.update(CW_BASE_URL=BASE, CW_BASE_URL_SOURCE="PORT")
    page = client.get("/admin/about/", base_url=BASE).get_data(as_text=True)
    assert f'<td data-about="base-url"><code>{BASE}</code>' in page
    assert "(PORT;" in page
    assert 'data-about="pki-url"' not in page  # certificates name the base URL too
    app.config.update(CW_PKI_URL="http://crl.example.net")
    page = client.get("/admin/about/", base_url=BASE).get_data(as_text=True)
    assert '<td data-about="pki-url"><code>http://crl.example.net</code>' in page


def test_the_console_warns_when_reached_under_another_host(app, client, mrao):
    app.config["CW_BASE_URL"] = BASE
    same = client.get("/admin/about/", base_url=BASE).get_data(as_text=True)
    assert 'id="cw-base-url-warning"' not in same
    other = client.get("/admin/about/", base_url="http://localhost:5000").get_data(as_text=True)
    assert 'id="cw-base-url-warning"' in other
    assert "<code>http://localhost:5000</code>" in other and f"<code>{BASE}</code>" in other


def test_the_ca_wizard_confirmation_shows_the_urls_it_will_embed(app, client, mrao):
    root, _, _ = make_pki()
    app.config["CW_BASE_URL"] = BASE
    url = "/admin/cas/new/"
    form = {
        "name": "Second Issuing",
        "parent_id": str(root.id),
        "key_type": "EC-P256",
        "purpose": "TLS",
        "signature_hash": "",
        "customer_name": "Corp",
        "locality": "",
        "state": "",
        "country": "DE",
        "confirmed": "",
        "csrf_token": csrf_token(client, url),
    }
    page = client.post(url, data=form).get_data(as_text=True)
    assert 'id="cw-ca-confirm"' in page
    base = BASE
    assert (
        f"CRL {base}/pki/crl/{root.id}.crl · OCSP {base}/pki/ocsp/{root.id} · "
        f"CA issuers {base}/pki/ca/{root.id}.cer"
    ) in page
    assert f"CRL {base}/pki/crl/&lt;id&gt;.crl" in page
