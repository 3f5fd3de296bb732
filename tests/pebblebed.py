"""Debian's pebble (Let's Encrypt's ACME test server) on 127.0.0.1 for tests: the behaviour
reference for Certwright's ACME. Served over HTTPS with a throwaway CA made here (pebble's
own test certificates are not packaged), EAB required, answers at full speed
(PEBBLE_VA_NOSLEEP=1), every good nonce accepted (PEBBLE_WFE_NONCEREJECT=0), no
authorization reuse (PEBBLE_AUTHZREUSE=0), names resolved by ``dns`` (-dnsserver)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import ssl
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.processes import Proc, free_port, wait_until

PEBBLE = shutil.which("pebble")


@dataclass
class Pebble:
    directory: str
    management: str
    trust: Path  # the CA of pebble's HTTPS listener
    proc: Proc

    def root_pem(self) -> bytes:
        """The root pebble issues under (its management interface, /roots/0)."""
        context = ssl.create_default_context(cafile=str(self.trust))
        with urllib.request.urlopen(f"{self.management}/roots/0", context=context) as resp:
            return bytes(resp.read())


def listener_certificate(home: Path) -> tuple[Path, Path, Path]:
    """A throwaway root and a certificate for IP:127.0.0.1 under it: (cert, key, root)."""
    now = dt.datetime.now(dt.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "pebble listener root")])
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .sign(root_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(root_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]), False
        )
        .sign(root_key, hashes.SHA256())
    )
    paths = (home / "listener.pem", home / "listener.key", home / "listener-root.pem")
    paths[0].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths[2].write_bytes(root.public_bytes(serialization.Encoding.PEM))
    return paths


def _answers(url: str, trust: Path) -> bool:
    try:
        context = ssl.create_default_context(cafile=str(trust))
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:
            return resp.status == 200
    except OSError:
        return False


@contextmanager
def pebble_server(
    tmp: Path,
    *,
    dns: str,
    http_port: int,
    tls_port: int,
    eab: dict[str, str],
    name: str = "pebble",
) -> Iterator[Pebble]:
    """pebble on free ports; ``eab``: key id -> base64url HMAC key (EAB required)."""
    assert PEBBLE is not None
    home = tmp / name
    home.mkdir(parents=True, exist_ok=True)
    cert, key, trust = listener_certificate(home)
    port, management = free_port(), free_port()
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{port}",
            "managementListenAddress": f"127.0.0.1:{management}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": True,
            "externalAccountMACKeys": eab,
        }
    }
    (home / "config.json").write_text(json.dumps(config))
    env = {
        "PATH": "/usr/bin:/bin",
        "PEBBLE_VA_NOSLEEP": "1",
        "PEBBLE_WFE_NONCEREJECT": "0",
        "PEBBLE_AUTHZREUSE": "0",
    }
    args = [PEBBLE, "-config", str(home / "config.json"), "-dnsserver", dns]
    with Proc(name, args, env=env, logs=tmp) as proc:
        directory = f"https://127.0.0.1:{port}/dir"
        wait_until(lambda: _answers(directory, trust), timeout=30, what="pebble", why=proc.log)
        yield Pebble(directory, f"https://127.0.0.1:{management}", trust, proc)
