"""Shared fixtures for app.pki tests: real keys and CA hierarchies, made once per session,
and the openssl command line as an independent checker."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from app.pki import issue, keys
from app.pki.issuer import Issuer, make_issuer
from app.pki.keys import KeyType, PrivateKey
from app.pki.profiles import CA_PURPOSE_KINDS, CaPurpose, CertKind

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
BASE_URL = "http://pki.certwright.test"
PUBLIC_BASE_URL = "http://pki.example.com"


@dataclass(frozen=True)
class Hierarchy:
    """A root and its issuing CAs, one per purpose, all ready to sign."""

    name: str
    root: Issuer
    issuing: Issuer  # the TLS issuing CA
    by_purpose: Mapping[CaPurpose, Issuer]

    @property
    def chain(self) -> list[x509.Certificate]:
        """Issuer first, root last, as formats.render_download expects."""
        return [self.issuing.certificate, self.root.certificate]

    def issuing_for(self, kind: CertKind) -> Issuer:
        """The issuing CA whose purpose covers ``kind``."""
        purpose = next(p for p, k in CA_PURPOSE_KINDS.items() if k is kind)
        return self.by_purpose[purpose]


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


def ready(
    certificate: x509.Certificate, key: PrivateKey, label: str, base_url: str = BASE_URL
) -> Issuer:
    """A CA ready to sign, with the CRL, OCSP and caIssuers URLs its certificates carry
    (BR 7.1.2.6.1 and 7.1.2.7.6 want them in every certificate below a root)."""
    return make_issuer(
        certificate,
        key,
        crl_url=f"{base_url}/{label}.crl",
        ocsp_url=f"{base_url}/ocsp",
        ca_issuers_url=f"{base_url}/{label}.crt",
    )


def _hierarchy(
    name: str,
    root_key: PrivateKey,
    issuing_keys: Mapping[CaPurpose, PrivateKey],
    base_url: str = BASE_URL,
) -> Hierarchy:
    root_cert = issue.create_root_ca(
        root_key, customer_name=f"Certwright {name}", country="US", state="Texas"
    )
    root = make_issuer(
        root_cert,
        root_key,
        crl_url=f"{base_url}/{name}/root.crl",
        ca_issuers_url=f"{base_url}/{name}/root.crt",
    )
    by_purpose = {}
    for purpose, key in issuing_keys.items():
        # The TLS CA keeps the plain name (and URLs); the others add their purpose.
        suffix = "" if purpose is CaPurpose.TLS else f" {purpose.value}"
        issuing_cert = issue.create_issuing_ca(
            key.public_key(),
            root,
            customer_name=f"Certwright {name}{suffix}",
            country="US",
            purpose=purpose,
        )
        label = "issuing" if purpose is CaPurpose.TLS else f"issuing-{purpose.value.lower()}"
        by_purpose[purpose] = ready(issuing_cert, key, f"{name}/{label}", base_url)
    return Hierarchy(name, root, by_purpose[CaPurpose.TLS], by_purpose)


ReadyIssuer = Callable[[x509.Certificate, PrivateKey, str], Issuer]


@pytest.fixture(scope="session")
def ready_issuer() -> ReadyIssuer:
    """ready(): make_issuer with the URLs a CA's certificates carry."""
    return ready


@pytest.fixture(scope="session")
def rsa_hierarchy(key_cache: KeyCache) -> Hierarchy:
    keys = {purpose: key_cache.get("RSA-2048", 2 + slot) for slot, purpose in enumerate(CaPurpose)}
    return _hierarchy("RSA", key_cache.get("RSA-2048", 1), keys)


@pytest.fixture(scope="session")
def ec_hierarchy(key_cache: KeyCache) -> Hierarchy:
    # P-384 root (signs with SHA-384) over P-256 issuing CAs (which sign with SHA-256).
    keys = {purpose: key_cache.get("EC-P256", 2 + slot) for slot, purpose in enumerate(CaPurpose)}
    return _hierarchy("EC", key_cache.get("EC-P384", 1), keys)


@pytest.fixture(scope="session", params=["RSA", "EC"])
def public_hierarchy(request: pytest.FixtureRequest, key_cache: KeyCache) -> Hierarchy:
    """The same keys and CAs as ``hierarchy``, publishing under a public host name, for
    pkilint's own command line (which has no private-CA allow-list and would report the
    .test host as an internal name)."""
    key_type: KeyType = "RSA-2048" if request.param == "RSA" else "EC-P256"
    root_key = key_cache.get("RSA-2048" if request.param == "RSA" else "EC-P384", 1)
    keys = {purpose: key_cache.get(key_type, 2 + slot) for slot, purpose in enumerate(CaPurpose)}
    return _hierarchy(request.param, root_key, keys, PUBLIC_BASE_URL)


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


@dataclass(frozen=True)
class PkilintRun:
    returncode: int
    stdout: str
    stderr: str


Pkilint = Callable[..., list[PkilintRun]]

# Runs pkilint's command-line entry points (pkilint.bin.<tool>.main) once per argument list,
# in one child process so that pkilint's imports and validators are paid once.
_PKILINT_RUNNER = """
import contextlib, importlib, io, json, sys
tool, runs = sys.argv[1], json.loads(sys.argv[2])
main = importlib.import_module("pkilint.bin." + tool).main
results = []
for args in runs:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(args)
        except SystemExit as exc:
            code = exc.code
    results.append([code, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""


@pytest.fixture(scope="session")
def pkilint() -> Pkilint:
    """Run one of pkilint's command-line linters (``lint_crl``, ``lint_ocsp_response``,
    ``lint_cabf_serverauth_cert`` ...) on each of the given argument lists: an independent
    check of what app.pki produces, through pkilint's own entry points, outside our
    wrapper and allow-lists. The exit code is the number of findings at or above the
    severity asked for (``-s``)."""

    def run(tool: str, *runs: Sequence[str]) -> list[PkilintRun]:
        completed = subprocess.run(
            [sys.executable, "-c", _PKILINT_RUNNER, tool, json.dumps([list(r) for r in runs])],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        return [PkilintRun(*result) for result in json.loads(completed.stdout)]

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
