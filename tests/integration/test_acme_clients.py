"""Debian's certbot and lego, unchanged, against a `make run`-style Certwright (gunicorn with the
embedded worker, SQLite) on 127.0.0.1: EAB registration, http-01 served by certbot
--standalone on a free port (CW_ACME_HTTP01_PORT, the test-only port setting, as pebble's
httpPort; lego's --http.port), names resolved by a real DNS server (CW_ACME_RESOLVER), issuance, forced
renewal and revocation; openssl judges the chain, the names and the CRL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.dnsbed import dns_server
from tests.knotbed import KNOTD, knot_server
from tests.processes import PY, ROOT, Proc, app_env, describe, flask_ok, free_port, wait_until

GUNICORN = [PY, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
CERTBOT = shutil.which("certbot")
NAMES = ("www.acme.example", "api.acme.example")

pytestmark = pytest.mark.slow

SETUP = """
import json
from app import create_app
from app.extensions import db
from app.models import Admin
from app.services.acme import external_keys
from app.services.ca import authorities, profiles
from app.services.scope import SYSTEM
from app.services.structure import domains, orgs
from app.models import CertType, LintMode

app = create_app()
with app.app_context():
    mrao = db.session.execute(db.select(Admin)).scalars().first()
    org = orgs.create_org(actor=SYSTEM, data=orgs.OrgData(name="Acme", country="DE", city="Berlin"))
    domains.create_domain(actor=mrao, name="acme.example", organization_id=org.id, types=[CertType.SSL])
    domains.create_domain(actor=mrao, name="*.acme.example", organization_id=org.id, types=[CertType.SSL])
    root = authorities.create_ca(actor=SYSTEM, spec=authorities.CaSpec(
        name="Acme Root", key_type="EC-P256", customer_name="Acme", country="DE"))
    issuing = authorities.create_ca(actor=SYSTEM, spec=authorities.CaSpec(
        name="Acme Issuing", key_type="EC-P256", customer_name="Acme", country="DE", parent_id=root.id))
    profiles.create_profile(actor=SYSTEM, data=profiles.ProfileData(
        name="TLS servers", cert_type=CertType.SSL, ca_id=issuing.id, terms=(90,),
        key_types=("RSA-2048", "EC-P256", "EC-P384"), requires_approval=False,
        lint_mode=LintMode.EVERY, acme_slug="tls"))
    created = external_keys.create_key(actor=mrao, organization_id=org.id, department_id=None, label="certbot")
    db.session.commit()
    print(json.dumps({"kid": created.key.key_id, "hmac": created.hmac_key,
                      "root": root.id, "issuing": issuing.id}))
"""


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return bytes(resp.read())


def answers(url: str) -> bool:
    try:
        return bool(fetch(url))
    except OSError:
        return False


def openssl(*args: str | Path) -> str:
    done = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def root_pem(world) -> bytes:
    return subprocess.run(
        ["openssl", "x509", "-inform", "DER"],
        input=fetch(f"{world['base']}/pki/ca/{world['root']}.cer"),
        capture_output=True,
        check=True,
    ).stdout


@contextmanager
def running(tmp_path: Path, resolver: str) -> Iterator[dict]:
    """gunicorn with the embedded worker on a free port, names resolved by ``resolver``."""
    port, http_port, tls_port = free_port(), free_port(), free_port()
    env = app_env(
        CW_INSTANCE_DIR=tmp_path / "instance",
        CW_ADMIN_PASSWORD="Correct-Horse-9-Battery",
        PORT=port,
        CW_ACME_HTTP01_PORT=http_port,
        CW_ACME_TLSALPN01_PORT=tls_port,
        CW_ACME_RESOLVER=resolver,
    )
    flask_ok("db", "upgrade", env=env)
    flask_ok("bootstrap", env=env)
    setup = subprocess.run(
        [PY, "-c", SETUP],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr
    made = json.loads(setup.stdout.strip().splitlines()[-1])
    base = f"http://127.0.0.1:{port}"
    with Proc("web", GUNICORN, env=env, logs=tmp_path) as web:
        wait_until(
            lambda: answers(f"{base}/acme/tls/directory"),
            timeout=60,
            what="gunicorn",
            why=describe(web),
        )
        yield {
            **made,
            "base": base,
            "http_port": http_port,
            "tls_port": tls_port,
            "web": web,
            "tmp": tmp_path,
        }


@pytest.fixture
def certwright(tmp_path):
    with (
        dns_server({name: ["127.0.0.1"] for name in NAMES}) as dns,
        running(tmp_path, dns.address) as world,
    ):
        yield {**world, "dns": dns}


@pytest.fixture
def certwright_knot(tmp_path):
    """Names served by Debian's knot (dynamic updates allowed from 127.0.0.1)."""
    need(KNOTD, "knot")
    records = {name.removesuffix(".acme.example"): "127.0.0.1" for name in NAMES}
    with (
        knot_server(tmp_path, "acme.example", records) as knot,
        running(tmp_path, knot.address) as world,
    ):
        yield {**world, "knot": knot}


def certbot(world, *args: str) -> subprocess.CompletedProcess[str]:
    tmp = world["tmp"]
    return subprocess.run(
        [
            CERTBOT,
            *args,
            "--server",
            f"{world['base']}/acme/tls/directory",
            "--config-dir",
            str(tmp / "certbot" / "config"),
            "--work-dir",
            str(tmp / "certbot" / "work"),
            "--logs-dir",
            str(tmp / "certbot" / "logs"),
            "--non-interactive",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def need(tool: str | None, name: str) -> None:
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing (apt-get install {name})")
        pytest.skip(f"{name} is missing (apt-get install {name})")


def test_certbot_obtains_renews_and_revokes(certwright):
    need(CERTBOT, "certbot")
    world = certwright
    tmp = world["tmp"]
    first = certbot(
        world,
        "certonly", "--standalone",
        "--http-01-port", str(world["http_port"]), "--http-01-address", "127.0.0.1",
        "--eab-kid", world["kid"], "--eab-hmac-key", world["hmac"],
        "--agree-tos", "-m", "ops@acme.example",
        "--key-type", "ecdsa", "--elliptic-curve", "secp256r1",
        "--cert-name", "web", "-d", NAMES[0], "-d", NAMES[1],
    )  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr + world["web"].log()
    live = tmp / "certbot" / "config" / "live" / "web"
    text = openssl("x509", "-in", live / "cert.pem", "-noout", "-text")
    assert "DNS:www.acme.example" in text and "DNS:api.acme.example" in text
    serial = openssl("x509", "-in", live / "cert.pem", "-noout", "-serial").strip().split("=")[1]
    (tmp / "root.pem").write_bytes(root_pem(world))
    verified = openssl(
        "verify", "-CAfile", tmp / "root.pem", "-untrusted", live / "chain.pem",
        "-purpose", "sslserver", live / "cert.pem",
    )  # fmt: skip
    assert verified.strip().endswith(": OK")

    renewed = certbot(
        world, "renew", "--force-renewal", "--no-random-sleep-on-renew", "--cert-name", "web"
    )
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr + world["web"].log()
    new_serial = (
        openssl("x509", "-in", live / "cert.pem", "-noout", "-serial").strip().split("=")[1]
    )
    assert new_serial != serial

    revoked = certbot(
        world, "revoke", "--cert-path", str(live / "cert.pem"), "--reason", "keycompromise",
        "--no-delete-after-revoke",
    )  # fmt: skip
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr + world["web"].log()
    (tmp / "issuing.crl").write_bytes(fetch(f"{world['base']}/pki/crl/{world['issuing']}.crl"))
    crl = openssl("crl", "-inform", "DER", "-in", tmp / "issuing.crl", "-noout", "-text")
    assert f"Serial Number: {new_serial}" in crl
    assert "Key Compromise" in crl

    again = certbot(
        world, "revoke", "--cert-path", str(live / "cert.pem"), "--no-delete-after-revoke"
    )
    assert again.returncode != 0
    log = (tmp / "certbot" / "logs" / "letsencrypt.log").read_text()
    assert "urn:ietf:params:acme:error:alreadyRevoked" in log


LEGO = shutil.which("lego")


def lego(
    world, *args: str, names: tuple[str, ...] = NAMES, solver: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """lego with EAB; ``solver``: its challenge options (default: http-01 on the test port)."""
    solver = solver or ("--http", "--http.port", f"127.0.0.1:{world['http_port']}")
    return subprocess.run(
        [
            LEGO,
            "--server",
            f"{world['base']}/acme/tls/directory",
            "--path",
            str(world["tmp"] / "lego"),
            "--email",
            "ops@acme.example",
            "--accept-tos",
            "--eab",
            "--kid",
            world["kid"],
            "--hmac",
            world["hmac"],
            "--key-type",
            "ec256",
            *solver,
            *(part for name in names for part in ("--domains", name)),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_lego_obtains_renews_and_revokes(certwright):
    need(LEGO, "lego")
    world = certwright
    tmp = world["tmp"]
    first = lego(world, "run")
    assert first.returncode == 0, first.stdout + first.stderr + world["web"].log()
    bundle = tmp / "lego" / "certificates" / f"{NAMES[0]}.crt"
    text = openssl("x509", "-in", bundle, "-noout", "-text")
    assert "DNS:www.acme.example" in text and "DNS:api.acme.example" in text
    serial = openssl("x509", "-in", bundle, "-noout", "-serial").strip().split("=")[1]
    (tmp / "root.pem").write_bytes(root_pem(world))
    verified = openssl(
        "verify", "-CAfile", tmp / "root.pem", "-untrusted", bundle, "-purpose", "sslserver", bundle
    )
    assert verified.strip().endswith(": OK")

    renewed = lego(world, "renew", "--days", "366", "--no-random-sleep")
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr + world["web"].log()
    new_serial = openssl("x509", "-in", bundle, "-noout", "-serial").strip().split("=")[1]
    assert new_serial != serial

    # lego revokes the certificate file of each --domains: the one named after the first.
    revoked = lego(world, "revoke", "--reason", "4", names=NAMES[:1])
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr + world["web"].log()
    (tmp / "issuing.crl").write_bytes(fetch(f"{world['base']}/pki/crl/{world['issuing']}.crl"))
    crl = openssl("crl", "-inform", "DER", "-in", tmp / "issuing.crl", "-noout", "-text")
    assert f"Serial Number: {new_serial}" in crl and "Superseded" in crl


def test_lego_obtains_with_tls_alpn_01(certwright):
    """RFC 8737: lego's own acme-tls/1 responder (--tls) answers the worker's handshake."""
    need(LEGO, "lego")
    world = certwright
    solver = ("--tls", "--tls.port", f"127.0.0.1:{world['tls_port']}")
    first = lego(world, "run", solver=solver)
    assert first.returncode == 0, first.stdout + first.stderr + world["web"].log()
    bundle = world["tmp"] / "lego" / "certificates" / f"{NAMES[0]}.crt"
    text = openssl("x509", "-in", bundle, "-noout", "-text")
    assert "DNS:www.acme.example" in text and "DNS:api.acme.example" in text
    (world["tmp"] / "root.pem").write_bytes(root_pem(world))
    verified = openssl(
        "verify", "-CAfile", world["tmp"] / "root.pem", "-untrusted", bundle,
        "-purpose", "sslserver", bundle,
    )  # fmt: skip
    assert verified.strip().endswith(": OK")
    renewed = lego(world, "renew", "--days", "366", "--no-random-sleep", solver=solver)
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr + world["web"].log()


def test_lego_obtains_a_wildcard_with_dns_01_against_knot(certwright_knot):
    """dns-01: lego's rfc2136 provider writes the TXT records into a real knot by dynamic
    update; the worker reads them from knot (CW_ACME_RESOLVER); a wildcard with its base."""
    need(LEGO, "lego")
    world = certwright_knot
    knot = world["knot"]
    names = ("*.acme.example", "acme.example")
    solver = ("--dns", "rfc2136", "--dns.resolvers", knot.address, "--dns.disable-cp")
    # lego waits a minute between the authorizations of one order unless told otherwise.
    env = {
        **os.environ,
        "RFC2136_NAMESERVER": knot.address,
        "RFC2136_TTL": "60",
        "RFC2136_SEQUENCE_INTERVAL": "1",
        "RFC2136_POLLING_INTERVAL": "1",
    }
    first = subprocess.run(
        [
            LEGO, "--server", f"{world['base']}/acme/tls/directory",
            "--path", str(world["tmp"] / "lego"), "--email", "ops@acme.example",
            "--accept-tos", "--eab", "--kid", world["kid"], "--hmac", world["hmac"],
            "--key-type", "ec256", *solver,
            *(part for name in names for part in ("--domains", name)), "run",
        ],
        capture_output=True, text=True, timeout=240, check=False, env=env,
    )  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr + world["web"].log() + knot.proc.log()
    bundle = world["tmp"] / "lego" / "certificates" / "_.acme.example.crt"
    text = openssl("x509", "-in", bundle, "-noout", "-text")
    assert "DNS:*.acme.example" in text and "DNS:acme.example" in text
    (world["tmp"] / "root.pem").write_bytes(root_pem(world))
    verified = openssl(
        "verify", "-CAfile", world["tmp"] / "root.pem", "-untrusted", bundle,
        "-purpose", "sslserver", bundle,
    )  # fmt: skip
    assert verified.strip().endswith(": OK")
    # knot saw the updates: lego cleaned its records up afterwards.
    assert "DDNS" in knot.proc.log(tail=100_000)
    assert knot.txt("_acme-challenge.acme.example") == []
