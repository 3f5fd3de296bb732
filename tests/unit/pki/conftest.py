"""Shared fixtures for app.pki tests: real keys and CA hierarchies, made once per session,
and the openssl command line as an independent checker."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from app.pki import issue, keys
from app.pki.issuer import Issuer, make_issuer
from app.pki.keys import KeyType, PrivateKey

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
BASE_URL = "http://pki.certwright.test"


@dataclass(frozen=True)
class Hierarchy:
    """A root and an issuing CA, both ready to sign."""

    name: str
    root: Issuer
    issuing: Issuer

    @property
    def chain(self) -> list[x509.Certificate]:
        """Issuer first, root last, as formats.render_download expects."""
        return [self.issuing.certificate, self.root.certificate]


class KeyCache:
    """Generated keys by (type, slot), so each RSA key is generated once per session."""

    def __init__(self) -> None:
        self._keys: dict[tuple[KeyType, int], PrivateKey] = {}

    def get(self, key_type: KeyType, slot: int = 0) -> PrivateKey:
        if (key_type, slot) not in self._keys:
            self._keys[key_type, slot] = keys.generate_private_key(key_type)
        return self._keys[key_type, slot]


@pytest.fixture(scope="session")
def key_cache() -> KeyCache:
    return KeyCache()


def _hierarchy(name: str, root_key: PrivateKey, issuing_key: PrivateKey) -> Hierarchy:
    root_cert = issue.create_root_ca(
        root_key, customer_name=f"Certwright {name}", country="US", state="Texas"
    )
    root = make_issuer(
        root_cert,
        root_key,
        crl_url=f"{BASE_URL}/{name}/root.crl",
        ca_issuers_url=f"{BASE_URL}/{name}/root.crt",
    )
    issuing_cert = issue.create_issuing_ca(
        issuing_key.public_key(), root, customer_name=f"Certwright {name}", country="US"
    )
    issuing = make_issuer(
        issuing_cert,
        issuing_key,
        crl_url=f"{BASE_URL}/{name}/issuing.crl",
        ocsp_url=f"{BASE_URL}/ocsp",
        ca_issuers_url=f"{BASE_URL}/{name}/issuing.crt",
    )
    return Hierarchy(name, root, issuing)


@pytest.fixture(scope="session")
def rsa_hierarchy(key_cache: KeyCache) -> Hierarchy:
    return _hierarchy("RSA", key_cache.get("RSA-2048", 1), key_cache.get("RSA-2048", 2))


@pytest.fixture(scope="session")
def ec_hierarchy(key_cache: KeyCache) -> Hierarchy:
    # P-384 root (signs with SHA-384) over a P-256 issuing CA (signs with SHA-256).
    return _hierarchy("EC", key_cache.get("EC-P384", 1), key_cache.get("EC-P256", 2))


@pytest.fixture(scope="session", params=["rsa", "ec"])
def hierarchy(request: pytest.FixtureRequest) -> Hierarchy:
    fixture: Hierarchy = request.getfixturevalue(f"{request.param}_hierarchy")
    return fixture


Openssl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def openssl() -> Openssl:
    """Run ``openssl <args>``; returns the completed process (text), never raises."""

    def run(*args: str, input_bytes: bytes | None = None) -> subprocess.CompletedProcess[str]:
        completed = subprocess.run(
            [OPENSSL, *args],
            input=input_bytes.decode("latin-1") if input_bytes is not None else None,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return completed

    return run


WritePem = Callable[[str, Sequence[x509.Certificate]], Path]


@pytest.fixture
def write_pem(tmp_path: Path) -> WritePem:
    """Write certificates as one PEM file under tmp_path and return its path."""

    def write(name: str, certificates: Sequence[x509.Certificate]) -> Path:
        path = tmp_path / name
        path.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in certificates))
        return path

    return write
