"""Fixtures for app.scan: generated PKI material and real servers on 127.0.10.x and ::1."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Iterator

import pytest

from tests.tlsbed.certs import NOW, Issued, Pki, issue, make_key, make_name
from tests.tlsbed.farm import Endpoints, ServerFarm, free_port, server_context, sni_context


@pytest.fixture(scope="session")
def pki() -> Pki:
    root = issue(make_name("Test Root", "Certwright Test"), ca=True)
    intermediate = issue(make_name("Test Intermediate", "Certwright Test"), ca=True, issuer=root)

    def leaf(name: str, **kwargs: object) -> Issued:
        subject = make_name(name, "Example Corp", "Web")
        return issue(subject, issuer=intermediate, sans=[name], **kwargs)  # type: ignore[arg-type]

    return Pki(
        root=root,
        intermediate=intermediate,
        rsa_leaf=leaf("rsa.test", key=make_key("rsa2048")),
        ec_leaf=leaf("ec.test"),
        expired_leaf=leaf(
            "expired.test",
            not_before=NOW - dt.timedelta(days=100),
            not_after=NOW - dt.timedelta(days=10),
        ),
        self_signed=issue(make_name("self.test"), sans=["self.test"]),
        alpha=leaf("alpha.test"),
        beta=leaf("beta.test"),
        default=leaf("default.test"),
    )


@pytest.fixture(scope="session")
def endpoints(pki: Pki) -> Iterator[Endpoints]:
    hosts = [f"127.0.10.{i}" for i in range(1, 17)] + ["::1"]
    port = free_port(hosts)
    ep = Endpoints(port)
    chain = [pki.ec_leaf, pki.intermediate]
    with ServerFarm() as farm:
        farm.add_tls(ep.rsa, port, server_context([pki.rsa_leaf, pki.intermediate]))
        farm.add_tls(ep.ec, port, server_context(chain))
        farm.add_tls(ep.missing_intermediate, port, server_context([pki.ec_leaf]))
        farm.add_tls(ep.self_signed, port, server_context([pki.self_signed]))
        farm.add_tls(ep.expired, port, server_context([pki.expired_leaf, pki.intermediate]))
        by_name = {
            "alpha.test": server_context([pki.alpha, pki.intermediate]),
            "beta.test": server_context([pki.beta, pki.intermediate]),
        }
        default = server_context([pki.default, pki.intermediate])
        farm.add_tls(ep.sni, port, sni_context(default, by_name))
        tls12 = server_context(chain, maximum=ssl.TLSVersion.TLSv1_2)
        farm.add_tls(ep.tls12_only, port, tls12)
        farm.add_plain(ep.http, port, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        farm.add_silent(ep.silent, port)
        farm.add_closing(ep.closing, port)
        misordered = server_context([pki.ec_leaf, pki.root, pki.intermediate])
        farm.add_tls(ep.misordered, port, misordered)
        farm.add_tls(ep.ipv6, port, server_context(chain))
        tls10 = ssl.TLSVersion.TLSv1
        farm.add_tls(ep.legacy, port, server_context(chain, minimum=tls10, maximum=tls10))
        farm.add_resetting(ep.resetting, port)
        client_auth = server_context(chain, maximum=ssl.TLSVersion.TLSv1_2)
        client_auth.verify_mode = ssl.CERT_REQUIRED  # TLS 1.2: fails after its certificate
        client_auth.load_verify_locations(cadata=pki.root.pem.decode())
        farm.add_tls(ep.client_auth, port, client_auth)
        farm.add_plain(ep.ssh, port, b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
        yield ep
