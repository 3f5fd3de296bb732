"""Debian's certbot and lego, unchanged, against a `make run`-style Certwright (gunicorn with the
embedded worker, SQLite) on 127.0.0.1, served over HTTPS (gunicorn --certfile/--keyfile) with
a certificate for IP:127.0.0.1 that Certwright's own root issued, the clients trusting that
root (REQUESTS_CA_BUNDLE for certbot, LEGO_CA_CERTIFICATES for lego): EAB registration,
http-01 served by certbot --standalone on a free port (CW_ACME_HTTP01_PORT, the test-only
port setting, as pebble's httpPort; lego's --http.port), tls-alpn-01, dns-01 into knot,
names resolved by a real DNS server (CW_ACME_RESOLVER), issuance, forced renewal and
revocation; openssl judges the chain, the names and the CRL."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
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

# The server's own HTTPS certificate (IP:127.0.0.1), issued by its own CA through the same
# enrollment checks as any other: the network 127.0.0.0/8 delegated to Acme, a CSR, issuance.
SERVER_CERT = """
import sys
from pathlib import Path
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from ipaddress import ip_address
from app import create_app
from app.extensions import db
from app.models import Admin, Certificate, CertificateProfile, CertType, Organization, RequestMode
from app.services.certificates import enrollment, inventory, issuance
from app.services.structure import domains

out = Path(sys.argv[1])
app = create_app()
with app.app_context():
    mrao = db.session.execute(db.select(Admin)).scalars().first()
    org = db.session.execute(db.select(Organization).where(Organization.name == "Acme")).scalar_one()
    profile = db.session.execute(db.select(CertificateProfile)).scalars().first()
    domains.create_domain(actor=mrao, name="127.0.0.0/8", organization_id=org.id, types=[CertType.SSL])
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "127.0.0.1")]))
           .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]), False)
           .sign(key, hashes.SHA256()))
    req = enrollment.submit_request(actor=mrao, data=enrollment.RequestData(
        organization_id=org.id, profile_id=profile.id, term_days=90, mode=RequestMode.CSR,
        csr=csr.public_bytes(serialization.Encoding.DER), eula_accepted=True))
    db.session.commit()
    issuance.issue_requests([req.id])
    db.session.commit()
    db.session.refresh(req)
    cert = db.session.get(Certificate, req.certificate_id)
    leaf = x509.load_der_x509_certificate(cert.der)
    chain = inventory.chain_for(cert)
    (out / "server.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + b"".join(
        c.public_bytes(serialization.Encoding.PEM) for c in chain[:-1]))
    (out / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (out / "root.pem").write_bytes(chain[-1].public_bytes(serialization.Encoding.PEM))
"""


def fetch(url: str, *, cafile: Path | None = None) -> bytes:
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    with urllib.request.urlopen(url, timeout=10, context=context) as resp:
        return bytes(resp.read())


def answers(url: str, *, cafile: Path) -> bool:
    try:
        return bool(fetch(url, cafile=cafile))
    except OSError:
        return False


def openssl(*args: str | Path) -> str:
    done = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def root_pem(world) -> bytes:
    return subprocess.run(
        ["openssl", "x509", "-inform", "DER"],
        input=fetch(f"{world['base']}/pki/ca/{world['root']}.cer", cafile=world["trust"]),
        capture_output=True,
        check=True,
    ).stdout


def crl_text(world) -> str:
    path = world["tmp"] / "issuing.crl"
    path.write_bytes(
        fetch(f"{world['base']}/pki/crl/{world['issuing']}.crl", cafile=world["trust"])
    )
    return openssl("crl", "-inform", "DER", "-in", path, "-noout", "-text")


@contextmanager
def running(tmp_path: Path, resolver: str, **settings: object) -> Iterator[dict]:
    """gunicorn with the embedded worker on a free port over HTTPS (a certificate from its
    own root), names resolved by ``resolver``; ``settings``: more of its environment."""
    port, http_port, tls_port = free_port(), free_port(), free_port()
    base = f"https://127.0.0.1:{port}"
    env = app_env(
        CW_INSTANCE_DIR=tmp_path / "instance",
        CW_ADMIN_PASSWORD="Correct-Horse-9-Battery",
        PORT=port,
        CW_ACME_HTTP01_PORT=http_port,
        CW_ACME_TLSALPN01_PORT=tls_port,
        CW_ACME_RESOLVER=resolver,
        **settings,
    )
    # Minutes, not the default 60 s: on a loaded 2-core machine the migrations alone took
    # longer than that.
    flask_ok("db", "upgrade", env=env, timeout=300)
    flask_ok("bootstrap", env=env, timeout=300)
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
    tls = tmp_path / "tls"
    tls.mkdir()
    served = subprocess.run(
        [PY, "-c", SERVER_CERT, str(tls)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert served.returncode == 0, served.stdout + served.stderr
    https = ["--certfile", str(tls / "server.pem"), "--keyfile", str(tls / "server.key")]
    with Proc("web", [*GUNICORN, *https], env=env, logs=tmp_path) as web:
        wait_until(
            lambda: answers(f"{base}/acme/tls/directory", cafile=tls / "root.pem"),
            timeout=60,
            what="gunicorn",
            why=describe(web),
        )
        yield {
            **made,
            "base": base,
            "directory": f"{base}/acme/tls/directory",
            "trust": tls / "root.pem",
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
            world["directory"],
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
        env={**os.environ, "REQUESTS_CA_BUNDLE": str(world["trust"])},
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
    crl = crl_text(world)
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
    world,
    *args: str,
    names: tuple[str, ...] = NAMES,
    solver: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """lego with EAB, trusting Certwright's root; ``solver``: its challenge options (default:
    http-01 on the test port); ``env``: more of its environment (a DNS provider's)."""
    solver = solver or ("--http", "--http.port", f"127.0.0.1:{world['http_port']}")
    return subprocess.run(
        [
            LEGO,
            "--server",
            world["directory"],
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
        env={**os.environ, "LEGO_CA_CERTIFICATES": str(world["trust"]), **(env or {})},
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
    crl = crl_text(world)
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


# lego's exec provider runs this with "present|cleanup FQDN VALUE": it writes the TXT record
# into knot by an RFC 2136 dynamic update (dnspython), as a site's own script would.
EXEC_SCRIPT = """
import os, sys
import dns.name, dns.query, dns.update
action, fqdn, value = sys.argv[1:4]
update = dns.update.UpdateMessage(os.environ["KNOT_ZONE"])
if action == "present":
    update.add(dns.name.from_text(fqdn), 60, "TXT", value)
elif action == "cleanup":
    update.delete(dns.name.from_text(fqdn), "TXT", value)
else:
    sys.exit(0)
host, port = os.environ["KNOT_ADDRESS"].split(":")
answer = dns.query.tcp(update, host, port=int(port), timeout=5)
sys.exit(answer.rcode())
"""


def dns_provider(world, provider: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """lego's options and environment for ``provider`` writing into the test's knot."""
    knot = world["knot"]
    solver = ("--dns", provider, "--dns.resolvers", knot.address, "--dns.disable-cp")
    if provider == "rfc2136":
        # lego waits a minute between the authorizations of one order unless told otherwise.
        return solver, {
            "RFC2136_NAMESERVER": knot.address,
            "RFC2136_TTL": "60",
            "RFC2136_SEQUENCE_INTERVAL": "1",
            "RFC2136_POLLING_INTERVAL": "1",
        }
    script = world["tmp"] / "knot-update"
    script.write_text(f"#!{sys.executable}\n{EXEC_SCRIPT}")
    script.chmod(0o755)
    return solver, {
        "EXEC_PATH": str(script),
        "EXEC_POLLING_INTERVAL": "1",
        "EXEC_PROPAGATION_TIMEOUT": "30",
        "EXEC_SEQUENCE_INTERVAL": "1",
        "KNOT_ZONE": knot.zone,
        "KNOT_ADDRESS": knot.address,
    }


@pytest.mark.parametrize("provider", ["exec", "rfc2136"])
def test_lego_obtains_a_wildcard_with_dns_01_against_knot(certwright_knot, provider):
    """dns-01: lego's exec provider (a script sending dynamic updates) or its rfc2136
    provider writes the TXT records into a real knot; the worker reads them from knot
    (CW_ACME_RESOLVER); a wildcard with its base."""
    need(LEGO, "lego")
    world = certwright_knot
    knot = world["knot"]
    names = ("*.acme.example", "acme.example")
    solver, env = dns_provider(world, provider)
    first = lego(world, "run", names=names, solver=solver, env=env)
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
