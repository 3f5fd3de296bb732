"""Debian's pebble as the behaviour reference: the same certbot and lego runs, unchanged
and with the same EAB key id and HMAC key, against pebble and against Certwright (both over
HTTPS on 127.0.0.1, both resolving names through one DNS server), and the outcome of each
(issued, renewed, revoked, or the ACME error type the client reports) compared.

DIFFERENCES lists every outcome where Certwright deliberately answers otherwise, and why
(docs/acme.md has the same table). Negative cases a client cannot express (a reused nonce,
a bad JWS signature, a CSR naming a name not in the order, an EAB key of another
organization) are in test_acme.py, against Certwright's own front door."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.dnsbed import dns_server
from tests.integration.test_acme_clients import CERTBOT, LEGO, certbot, lego, need, running
from tests.pebblebed import PEBBLE, pebble_server
from tests.processes import free_port

pytestmark = pytest.mark.slow

ERROR = re.compile(r"urn:ietf:params:acme:error:([A-Za-z]+)")
DENIED = "127.0.20.5"  # on Certwright's deny list (CW_SCAN_DENY) in this test; nobody listens
NAMES = {
    "www.acme.example": ["127.0.0.1"],
    "api.acme.example": ["127.0.0.1"],
    "www.outside.example": ["127.0.0.1"],  # resolves, but is delegated to nobody
    "denied.acme.example": [DENIED],
}
SAME = ""
# flow -> (Certwright's outcome, pebble's outcome, why they differ; SAME when they agree)
EXPECTED = {
    "certbot http-01 certonly": ("issued", "issued", SAME),
    "certbot renew --force-renewal": ("renewed", "renewed", SAME),
    "certbot revoke --reason keycompromise": ("revoked", "revoked", SAME),
    "certbot revoke (already revoked)": ("alreadyRevoked", "alreadyRevoked", SAME),
    "certbot register without EAB": ("externalAccountRequired", "externalAccountRequired", SAME),
    "lego http-01 run": ("issued", "issued", SAME),
    "lego tls-alpn-01 run": ("issued", "issued", SAME),
    "lego EAB with a wrong HMAC key": ("unauthorized", "unauthorized", SAME),
    "lego http-01, nobody answering": ("connection", "connection", SAME),
    "lego a name outside the delegations": (
        "rejectedIdentifier",
        "issued",
        "Certwright orders only names inside the approved SSL delegations of the EAB key's "
        "organization/department; pebble issues for any name it can validate",
    ),
    "lego a name resolving to a denied address": (
        "rejectedIdentifier",
        "connection",
        "Certwright never connects to an address on the discovery deny list (built-in plus "
        "CW_SCAN_DENY) and says so; pebble tries and finds nobody there",
    ),
}


def outcome(done: subprocess.CompletedProcess[str], ok: str, log: Path | None = None) -> str:
    """``ok`` when the client succeeded, else the last ACME error type it reports."""
    if done.returncode == 0:
        return ok
    text = done.stdout + done.stderr
    if log is not None and log.exists():
        text += log.read_text(errors="replace")
    found = ERROR.findall(text)
    if found:
        return found[-1]
    if "Server requires external account binding" in text:
        # certbot reads the directory's meta.externalAccountRequired and asks no further
        return "externalAccountRequired"
    return f"failed without an ACME error: {text[-300:]}"


def other_hmac() -> str:
    while True:  # certbot and lego read a leading '-' as an option
        value = secrets.token_urlsafe(32)
        if not value.startswith("-"):
            return value


def run_flows(world: dict) -> dict[str, str]:
    """Every flow of EXPECTED against one server; each in a client state of its own."""
    got: dict[str, str] = {}
    http = ("--standalone", "--http-01-port", str(world["http_port"]))
    http += ("--http-01-address", "127.0.0.1")
    eab = ("--eab-kid", world["kid"], "--eab-hmac-key", world["hmac"])
    mine = {**world, "tmp": world["tmp"] / "certbot-main"}
    log = mine["tmp"] / "certbot" / "logs" / "letsencrypt.log"
    first = certbot(
        mine, "certonly", *http, *eab, "--agree-tos", "-m", "ops@acme.example",
        "--key-type", "ecdsa", "--cert-name", "web", "-d", "www.acme.example",
    )  # fmt: skip
    got["certbot http-01 certonly"] = outcome(first, "issued", log)
    renewed = certbot(
        mine, "renew", "--force-renewal", "--no-random-sleep-on-renew", "--cert-name", "web"
    )
    got["certbot renew --force-renewal"] = outcome(renewed, "renewed", log)
    live = mine["tmp"] / "certbot" / "config" / "live" / "web" / "cert.pem"
    revoke = ("revoke", "--cert-path", str(live), "--no-delete-after-revoke")
    got["certbot revoke --reason keycompromise"] = outcome(
        certbot(mine, *revoke, "--reason", "keycompromise"), "revoked", log
    )
    got["certbot revoke (already revoked)"] = outcome(certbot(mine, *revoke), "revoked", log)
    bare = {**world, "tmp": world["tmp"] / "certbot-no-eab"}
    registered = certbot(bare, "register", "--agree-tos", "-m", "ops@acme.example")
    got["certbot register without EAB"] = outcome(
        registered, "registered", bare["tmp"] / "certbot" / "logs" / "letsencrypt.log"
    )

    def lego_flow(name: str, names: tuple[str, ...], **options: object) -> str:
        state = {**world, "tmp": world["tmp"] / f"lego-{name}", **options}
        return outcome(lego(state, "run", names=names, solver=options.get("solver", ())), "issued")

    www = ("www.acme.example",)
    got["lego http-01 run"] = lego_flow("http", www)
    tls = ("--tls", "--tls.port", f"127.0.0.1:{world['tls_port']}")
    got["lego tls-alpn-01 run"] = lego_flow("tls", www, solver=tls)
    got["lego EAB with a wrong HMAC key"] = lego_flow("hmac", www, hmac=other_hmac())
    elsewhere = ("--http", "--http.port", f"127.0.0.1:{free_port()}")
    got["lego http-01, nobody answering"] = lego_flow("nobody", www, solver=elsewhere)
    got["lego a name outside the delegations"] = lego_flow("outside", ("www.outside.example",))
    got["lego a name resolving to a denied address"] = lego_flow("denied", ("denied.acme.example",))
    return got


# Some twenty client runs and two servers: about 4 minutes on a quiet machine.
@pytest.mark.timeout(1200)
def test_the_same_client_flows_against_pebble_and_certwright(tmp_path):
    for tool, name in ((CERTBOT, "certbot"), (LEGO, "lego"), (PEBBLE, "pebble")):
        need(tool, name)
    assert shutil.which("openssl")
    with (
        dns_server(NAMES) as dns,
        running(tmp_path / "certwright", dns.address, CW_SCAN_DENY=f"{DENIED}/32") as world,
    ):
        ours = run_flows(world)
        with pebble_server(
            tmp_path,
            dns=dns.address,
            http_port=world["http_port"],
            tls_port=world["tls_port"],
            eab={world["kid"]: world["hmac"]},
        ) as pebble:
            theirs = run_flows(
                {
                    **world,
                    "directory": pebble.directory,
                    "trust": pebble.trust,
                    "tmp": tmp_path / "pebble-clients",
                }
            )
    table = {flow: (ours.get(flow), theirs.get(flow)) for flow in EXPECTED}
    expected = {flow: (cw, pb) for flow, (cw, pb, _) in EXPECTED.items()}
    assert table == expected, world["web"].log(20_000) + pebble.proc.log(20_000)
    for flow, (cw, pb, why) in EXPECTED.items():
        assert (cw == pb) == (why == SAME), flow  # every difference says why, and only those
