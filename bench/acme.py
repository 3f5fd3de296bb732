"""Issue 15 benchmark: complete ACME orders against Certwright and Debian's pebble.

`python -m bench.acme` (repository root, the project's virtualenv). C concurrent ACME clients
of our own (asyncio, bench/http_keepalive.py over TLS, JWS ES256 signed with cryptography),
each with its own account registered with EAB, loop over complete orders for one new name
each: newOrder -> the authorization -> http-01 answered by this benchmark's own responder
(which closes every connection) -> challenge -> the authorization polled until valid ->
finalize with a fresh P-256 CSR -> the order polled until valid -> the certificate
downloaded (and a sample verified against the chain it came with). Latency: newOrder sent ->
certificate received. Names are resolved by pebble-challtestsrv answering 127.0.0.1.

- **Certwright**: 2 gunicorn web processes over HTTPS (8 threads), 2 dramatiq worker
  processes (4 threads; the acme queue, which carries both validation and issuance, 50 ms
  polling), PostgreSQL, a private
  Redis; a P-256 issuing CA, an auto-approved profile (lint mode "sample").
- **pebble** (Debian's 2.4): PEBBLE_VA_NOSLEEP=1, PEBBLE_WFE_NONCEREJECT=0,
  PEBBLE_AUTHZREUSE=0, EAB required with the same key. pebble 2.4 deadlocks under sustained
  concurrent load, so each round is a short window on a fresh process.

Each system runs ROUNDS windows of WINDOW seconds: clients start no new order after the
window and the in-flight ones finish; orders/s = completed orders / elapsed. Server CPU per
order from /proc (Certwright: web + workers + PostgreSQL backends; pebble: its process).
Target (issue 15): Certwright >= 0.5x pebble's orders/s. `--smoke` is a tiny run that only
proves every part works (the test suite runs it); `--json FILE` keeps the figures. Needs
PostgreSQL (BENCH_POSTGRES_URL), `redis-server`, `pebble` and `pebble-challtestsrv`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from bench.api import (
    CpuMeter,
    create_database,
    drop_database,
    free_port,
    profile,
    summarize,
)
from bench.harness import (
    REPO,
    app_env,
    idle_fraction,
    log,
    machine,
    migrate,
    start_dramatiq,
    start_redis,
    stop,
    wait_for_workers,
)
from bench.http_keepalive import Answer, Connection

TARGET = 0.5
SLUG = "bench"
VERIFY_EVERY = 10  # one certificate in ten is checked against the chain it came with
# Orders still in flight this long after a window's end mean a stalled server (pebble 2.4
# deadlocks now and then): they are cancelled and counted, and a pebble round is run again
# on a fresh process (at most PEBBLE_TRIES times).
STALL_GRACE = 30.0
PEBBLE_TRIES = 3
# --honor-retry-after: the clients wait what a Retry-After header says (both systems).
HONOR_RETRY_AFTER = [False]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# Wall-clock moments of each order by name, seen by the client (--timeline joins them with
# the server's rows): ordered, responded (challenge), saw_valid_authz, finalize,
# saw_valid_order, and the number of polls.
MARKS: dict[str, dict[str, float]] = {}


# --- the servers' HTTPS certificate (one throwaway root for both) -------------------------


def listener_tls(folder: Path) -> tuple[Path, Path, ssl.SSLContext]:
    """A throwaway root and a certificate for IP:127.0.0.1: (cert, key, client context)."""
    now = dt.datetime.now(dt.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "bench listener root")])
    root = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]), False
        )
        .sign(root_key, hashes.SHA256())
    )
    cert_path, key_path = folder / "listener.pem", folder / "listener.key"
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(
        cadata=root.public_bytes(serialization.Encoding.PEM).decode()
    )
    return cert_path, key_path, context


# --- the ACME client --------------------------------------------------------------------


class Refused(Exception):
    """The server answered an ACME problem."""


@dataclass
class Client:
    """One ACME client: an account key, a keep-alive TLS connection, the next nonce."""

    directory: dict[str, str]
    conn: Connection
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    kid: str = ""
    nonce: str = ""
    polls: int = 0  # POST-as-GET polls of the current order (until())

    @property
    def jwk(self) -> dict[str, str]:
        numbers = self.key.public_key().public_numbers()
        return {
            "crv": "P-256",
            "kty": "EC",
            "x": b64(numbers.x.to_bytes(32, "big")),
            "y": b64(numbers.y.to_bytes(32, "big")),
        }

    @property
    def thumbprint(self) -> str:
        text = json.dumps(self.jwk, sort_keys=True, separators=(",", ":"))
        return b64(hashlib.sha256(text.encode()).digest())

    async def fresh_nonce(self) -> str:
        answer = await self.conn.request("HEAD", urlsplit(self.directory["newNonce"]).path, {})
        return answer.headers["replay-nonce"]

    def sign(self, url: str, payload: Any, nonce: str) -> bytes:
        protected: dict[str, Any] = {"alg": "ES256", "nonce": nonce, "url": url}
        if self.kid:
            protected["kid"] = self.kid
        else:
            protected["jwk"] = self.jwk
        head = b64(json.dumps(protected).encode())
        body = "" if payload is None else b64(json.dumps(payload).encode())
        der = self.key.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        return json.dumps({"protected": head, "payload": body, "signature": signature}).encode()

    async def post(self, url: str, payload: Any = None) -> Answer:
        """A signed POST (payload None: POST-as-GET); a badNonce is retried with the nonce
        that came with it (RFC 8555 §6.5)."""
        for _ in range(3):
            nonce = self.nonce or await self.fresh_nonce()
            self.nonce = ""
            answer = await self.conn.request(
                "POST",
                urlsplit(url).path,
                {"Content-Type": "application/jose+json"},
                self.sign(url, payload, nonce),
            )
            self.nonce = answer.headers.get("replay-nonce", "")
            if answer.status < 400:
                return answer
            problem = answer.json() if answer.body.startswith(b"{") else {}
            if not str(problem.get("type", "")).endswith(":badNonce"):
                raise Refused(f"{url}: {answer.status} {answer.body[:300]!r}")
        raise Refused(f"{url}: badNonce three times")

    async def register(self, kid: str, hmac_key: str) -> None:
        url = self.directory["newAccount"]
        protected = b64(json.dumps({"alg": "HS256", "kid": kid, "url": url}).encode())
        payload = b64(json.dumps(self.jwk).encode())
        mac = hmac.new(unb64(hmac_key), f"{protected}.{payload}".encode(), hashlib.sha256)
        binding = {"protected": protected, "payload": payload, "signature": b64(mac.digest())}
        answer = await self.post(
            url, {"termsOfServiceAgreed": True, "externalAccountBinding": binding}
        )
        self.kid = answer.headers["location"]

    async def until(self, url: str, done: tuple[str, ...]) -> dict[str, Any]:
        """POST-as-GET ``url`` until its status is one of ``done`` (first after 20 ms, each
        wait 1.5 times the last, at most 0.5 s; with HONOR_RETRY_AFTER, the server's
        Retry-After when it sends one, as certbot and lego do)."""
        wait, deadline = 0.02, time.monotonic() + 120
        while time.monotonic() < deadline:
            self.polls += 1
            answer = await self.post(url)
            body = answer.json()
            if body["status"] in done:
                return dict(body)
            if body["status"] == "invalid":
                raise Refused(f"{url} is invalid: {body}")
            asked = answer.headers.get("retry-after", "")
            if HONOR_RETRY_AFTER[0] and asked.isdigit():
                await asyncio.sleep(int(asked))
                continue
            await asyncio.sleep(wait)
            wait = min(0.5, wait * 1.5)
        raise Refused(f"{url} did not become {done} within two minutes")

    async def order(
        self, name: str, answers: dict[str, str], phases: dict[str, list[float]]
    ) -> bytes:
        """One complete order for ``name``: the PEM chain. ``phases`` gets the seconds from
        newOrder to the authorization valid ("validation") and from finalize to the
        certificate in hand ("issuance")."""
        begun = time.perf_counter()
        self.polls = 0
        marks = MARKS.setdefault(name, {"ordered": time.time()})
        created = await self.post(
            self.directory["newOrder"], {"identifiers": [{"type": "dns", "value": name}]}
        )
        order_url, order = created.headers["location"], created.json()
        for authz_url in order["authorizations"]:
            authz = (await self.post(authz_url)).json()
            chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
            answers[chall["token"]] = f"{chall['token']}.{self.thumbprint}"
            marks["responded"] = time.time()
            await self.post(chall["url"], {})
            await self.until(authz_url, ("valid",))
            answers.pop(chall["token"], None)
        marks["saw_valid_authz"] = time.time()
        validated = time.perf_counter()
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
            .sign(key, hashes.SHA256())
        )
        der = csr.public_bytes(serialization.Encoding.DER)
        marks["finalize"] = time.time()
        await self.post(order["finalize"], {"csr": b64(der)})
        done = await self.until(order_url, ("valid",))
        marks["saw_valid_order"] = time.time()
        marks["polls"] = self.polls
        pem = (await self.post(done["certificate"])).body
        phases["validation"].append(validated - begun)
        phases["issuance"].append(time.perf_counter() - validated)
        return pem


async def http01_responder(port: int, answers: dict[str, str]) -> asyncio.Server:
    """http-01 answers on 127.0.0.1:port; every connection is closed after its answer."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            body = answers.get(path.rsplit("/", 1)[-1], "").encode()
            status = b"200 OK" if body else b"404 Not Found"
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\nContent-Length: "
                + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
            )  # fmt: skip
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", port)


def verify(pem: bytes) -> bool:
    """The leaf is signed by the next certificate of the chain it came with."""
    chain = x509.load_pem_x509_certificates(pem)
    if len(chain) < 2:
        return False
    try:
        chain[0].verify_directly_issued_by(chain[1])
    except (ValueError, TypeError, Exception):
        return False
    return True


async def window(
    base: str,
    tls: ssl.SSLContext,
    http_port: int,
    eab: tuple[str, str],
    clients: int,
    seconds: float,
    prefix: str,
    meter: Any = None,
) -> dict[str, Any]:
    """Register ``clients`` accounts, then loop complete orders for ``seconds``."""
    host, port = urlsplit(base).hostname or "127.0.0.1", urlsplit(base).port or 443
    answers: dict[str, str] = {}
    responder = await http01_responder(http_port, answers)
    directory_conn = Connection(host, port, tls=tls)
    directory = (await directory_conn.request("GET", urlsplit(base).path, {})).json()
    await directory_conn.close()
    accounts = [Client(directory, Connection(host, port, tls=tls)) for _ in range(clients)]
    await asyncio.gather(*(c.register(*eab) for c in accounts))
    latencies: list[float] = []
    phases: dict[str, list[float]] = {"validation": [], "issuance": []}
    failures, verified, counter = [0], [0], [0]
    start_cpu = meter() if meter else None
    started = time.perf_counter()
    deadline = started + seconds

    async def loop(client: Client) -> None:
        while time.perf_counter() < deadline:
            counter[0] += 1
            name = f"{prefix}{counter[0]}.bench.example"
            begun = time.perf_counter()
            try:
                pem = await client.order(name, answers, phases)
            except Exception as exc:  # counted and shown, the run goes on
                failures[0] += 1
                if failures[0] <= 3:
                    log(f"  failure: {exc!r}")
                continue
            latencies.append(time.perf_counter() - begun)
            if len(latencies) % VERIFY_EVERY == 1 and verify(pem):
                verified[0] += 1

    stalled = False
    try:
        await asyncio.wait_for(
            asyncio.gather(*(loop(c) for c in accounts)), timeout=seconds + STALL_GRACE
        )
    except TimeoutError:
        stalled = True
        log(f"  stalled: orders still in flight {STALL_GRACE:g} s after the window")
    finally:
        elapsed = time.perf_counter() - started
        for client in accounts:
            # A stalled server may never finish a TLS close.
            with contextlib.suppress(TimeoutError, OSError, ssl.SSLError):
                await asyncio.wait_for(client.conn.close(), timeout=2)
        responder.close()
        await responder.wait_closed()
    figures = summarize(latencies, elapsed, failures[0])
    figures["verified"] = verified[0]
    figures["stalled"] = stalled
    polls = [m["polls"] for n, m in MARKS.items() if n.startswith(prefix) and "polls" in m]
    figures["polls_per_order"] = round(sum(polls) / len(polls), 2) if polls else 0.0
    for phase, seconds_taken in phases.items():
        ordered = sorted(seconds_taken)
        figures[f"{phase}_p50_ms"] = round(ordered[len(ordered) // 2] * 1000, 1) if ordered else 0.0
    if start_cpu is not None:
        figures.update(start_cpu.stop(len(latencies)))
    return figures


def merge(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Figures of several windows as one: orders/s over the total time, CPU per order
    weighted by orders, p99 over every window's (the worst)."""
    count = sum(r["count"] for r in rounds)
    seconds = sum(r["seconds"] for r in rounds)
    out: dict[str, Any] = {
        "rounds": len(rounds),
        "count": count,
        "failures": sum(r["failures"] for r in rounds),
        "verified": sum(r["verified"] for r in rounds),
        "seconds": round(seconds, 2),
        "per_second": round(count / seconds, 1) if seconds else 0.0,
        "p50_ms": max(r["p50_ms"] for r in rounds),
        "p99_ms": max(r["p99_ms"] for r in rounds),
        "round_per_second": [r["per_second"] for r in rounds],
        "validation_p50_ms": max(r["validation_p50_ms"] for r in rounds),
        "issuance_p50_ms": max(r["issuance_p50_ms"] for r in rounds),
        "stalled_rounds": sum(1 for r in rounds if r.get("stalled")),
        "polls_per_order": round(
            sum(r["polls_per_order"] * r["count"] for r in rounds) / max(count, 1), 2
        ),
    }
    for key in {k for r in rounds for k in r if k.startswith("cpu_ms_")}:
        total = sum(r.get(key, 0.0) * r["count"] for r in rounds)
        out[key] = round(total / count, 2) if count else 0.0
    return out


# --- set-up -----------------------------------------------------------------------------


def timeline() -> dict[str, float]:
    """Where Certwright's orders spent their time (medians in ms over the orders of the
    timed windows), from the client's wall-clock marks (MARKS) and the server's own rows:
    the challenge's validated_at, the certificate request's created_at (finalize) and
    decided_at (approval), the certificate's created_at (its issuance batch began), and,
    where jobs carry the work, their created/started/finished times."""
    from sqlalchemy import text

    from app.extensions import db

    rows = db.session.execute(
        text(
            """
            SELECT r.common_name AS name, ch.id AS challenge_id, r.id AS request_id,
                   ch.validated_at, r.created_at AS finalized_at, r.decided_at,
                   c.created_at AS issued_at,
                   (SELECT row(j.created_at, j.started_at, j.finished_at)::text FROM jobs j
                     WHERE j.kind = 'acme_validate'
                       AND (j.payload::jsonb ->> 'challenge_id')::int = ch.id) AS vjob,
                   (SELECT row(j.created_at, j.started_at, j.finished_at)::text FROM jobs j
                     WHERE j.kind = 'issue_certificates'
                       AND j.payload::jsonb -> 'request_ids' @> to_jsonb(r.id)
                     ORDER BY j.id LIMIT 1) AS ijob
            FROM certificates c
            JOIN certificate_requests r ON r.id = c.request_id
            JOIN acme_orders o ON o.request_id = r.id
            JOIN acme_authorizations a ON a.order_id = o.id
            JOIN acme_challenges ch ON ch.authorization_id = a.id AND ch.status = 'valid'
            """
        )
    ).all()
    db.session.rollback()

    def job_times(value: str | None) -> list[float] | None:
        if not value:
            return None
        parts = [v.strip('"') for v in value.strip("()").split(",")]
        if any(not v for v in parts):
            return None
        return [dt.datetime.fromisoformat(v).timestamp() for v in parts]

    spans: dict[str, list[float]] = {}

    def add(label: str, start: float | None, end: float | None) -> None:
        if start is not None and end is not None:
            spans.setdefault(label, []).append((end - start) * 1000)

    for row in rows:
        marks = MARKS.get(row.name)
        if marks is None or "saw_valid_order" not in marks or row.name.startswith("warm"):
            continue
        validated = row.validated_at.timestamp()
        finalized = row.finalized_at.timestamp()
        issued = row.issued_at.timestamp()
        add("1 challenge response -> validated (server)", marks["responded"], validated)
        vjob = job_times(row.vjob)
        if vjob is not None:
            add("  1a response -> validation job started (queue)", vjob[0], vjob[1])
            add("  1b validation job started -> validated", vjob[1], validated)
            add("  1c validated -> validation job finished", validated, vjob[2])
        add(
            "2 validated -> client saw the authorization valid", validated, marks["saw_valid_authz"]
        )
        add("3 finalize sent -> request stored", marks["finalize"], finalized)
        if row.decided_at is not None:
            add("4 request stored -> approved", finalized, row.decided_at.timestamp())
        ijob = job_times(row.ijob)
        if ijob is not None:
            add("5 request stored -> issuance job started (queue)", ijob[0], ijob[1])
            add("6 issuance job started -> batch began", ijob[1], issued)
            add("7 batch began -> issuance job finished", issued, ijob[2])
            add(
                "8 issuance job finished -> client saw the order valid",
                ijob[2],
                marks["saw_valid_order"],
            )
        else:
            add("5 request stored -> issuance began", finalized, issued)
            add("8 issuance began -> client saw the order valid", issued, marks["saw_valid_order"])
        spans.setdefault("polls per order", []).append(float(marks.get("polls", 0)))
    return {label: round(sorted(v)[len(v) // 2], 1) for label, v in sorted(spans.items())}


def make_world() -> dict[str, Any]:
    """Through the services: an organization with bench.example delegated for SSL, a P-256
    root and issuing CA, an auto-approved ACME profile, an EAB key."""
    from app.extensions import db
    from app.models import Admin, CertType, LintMode, Role
    from app.services.accounts import admins
    from app.services.acme import external_keys
    from app.services.ca import authorities, profiles
    from app.services.scope import SYSTEM
    from app.services.structure import domains, orgs

    mrao: Admin = admins.create_admin(
        actor=SYSTEM,
        login="bench-mrao",
        email="bench@bench.example",
        role=Role.MRAO,
        password="a-long-benchmark-password-1",
    )
    org = orgs.create_org(
        actor=SYSTEM, data=orgs.OrgData(name="Bench", country="DE", city="Berlin")
    )
    domains.create_domain(
        actor=mrao, name="bench.example", organization_id=org.id, types=[CertType.SSL]
    )
    spec = {"key_type": "EC-P256", "customer_name": "Bench", "country": "DE"}
    root = authorities.create_ca(actor=SYSTEM, spec=authorities.CaSpec(name="Bench Root", **spec))
    issuing = authorities.create_ca(
        actor=SYSTEM,
        spec=authorities.CaSpec(name="Bench Issuing", parent_id=root.id, **spec),
    )
    profiles.create_profile(
        actor=SYSTEM,
        data=profiles.ProfileData(
            name="Bench ACME",
            cert_type=CertType.SSL,
            ca_id=issuing.id,
            terms=(90,),
            key_types=("EC-P256",),
            requires_approval=False,
            lint_mode=LintMode.SAMPLE,
            acme_slug=SLUG,
        ),
    )
    created = external_keys.create_key(
        actor=mrao, organization_id=org.id, department_id=None, label="bench"
    )
    db.session.commit()
    return {"kid": created.key.key_id, "hmac": created.hmac_key}


def start_challtestsrv(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """pebble-challtestsrv as the DNS server of both systems: every name is 127.0.0.1."""
    port = free_port()
    with (folder / "challtestsrv.log").open("wb") as out:
        proc = subprocess.Popen(
            [
                "pebble-challtestsrv",
                *("-dns01", f"127.0.0.1:{port}", "-management", f"127.0.0.1:{free_port()}"),
                *("-http01", "", "-https01", "", "-tlsalpn01", ""),
                *("-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    time.sleep(0.5)
    if proc.poll() is not None:
        raise RuntimeError(
            f"pebble-challtestsrv exited:\n{(folder / 'challtestsrv.log').read_text()}"
        )
    return proc, f"127.0.0.1:{port}"


def start_certwright(
    port: int, folder: Path, listener: tuple[Path, Path]
) -> subprocess.Popen[bytes]:
    """2 web processes over HTTPS (gunicorn's --certfile/--keyfile), as bench/api.py's."""
    env = dict(os.environ, CW_BIND=f"127.0.0.1:{port}", CW_WEB_WORKERS="2", CW_WEB_THREADS="8")
    gunicorn = Path(sys.executable).with_name("gunicorn")
    with (folder / "gunicorn.log").open("wb") as err:
        return subprocess.Popen(
            [
                *(str(gunicorn), "-c", "gunicorn.conf.py", "--access-logfile", "/dev/null"),
                *("--certfile", str(listener[0]), "--keyfile", str(listener[1]), "wsgi:app"),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )


_PEBBLE_PORTS: list[int] = []


def start_pebble(
    folder: Path, listener: tuple[Path, Path], dns: str, http_port: int, eab: tuple[str, str]
) -> tuple[subprocess.Popen[bytes], str]:
    # The same ports for every fresh process (the last one is stopped): a shared machine
    # gives a benchmark a few ports (BENCH_PORTS), not three more per round.
    if not _PEBBLE_PORTS:
        _PEBBLE_PORTS.extend(free_port() for _ in range(3))
    port, management, tls_port = _PEBBLE_PORTS
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{port}",
            "managementListenAddress": f"127.0.0.1:{management}",
            "certificate": str(listener[0]),
            "privateKey": str(listener[1]),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": True,
            "externalAccountMACKeys": {eab[0]: eab[1]},
        }
    }
    (folder / "pebble.json").write_text(json.dumps(config))
    env = {
        "PATH": "/usr/bin:/bin",
        "PEBBLE_VA_NOSLEEP": "1",
        "PEBBLE_WFE_NONCEREJECT": "0",
        "PEBBLE_AUTHZREUSE": "0",
    }
    with (folder / "pebble.log").open("ab") as out:
        proc = subprocess.Popen(
            ["pebble", "-config", str(folder / "pebble.json"), "-dnsserver", dns],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, f"https://127.0.0.1:{port}/dir"


def wait_tls(url: str, tls: ssl.SSLContext, proc: subprocess.Popen[bytes], log_file: Path) -> None:
    import urllib.request

    deadline = time.monotonic() + 240  # minutes on a loaded 2-core machine
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: exited during start-up\n{log_file.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2, context=tls)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in time")


# --- the run ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--window", type=float, default=10.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--profile",
        type=Path,
        help="folder: py-spy samples the web and worker processes during Certwright's "
        "windows and writes raw stacks there (acme-web.txt, acme-workers.txt)",
    )
    parser.add_argument(
        "--honor-retry-after",
        action="store_true",
        help="clients wait what a Retry-After header says instead of their own schedule",
    )
    parser.add_argument(
        "--timeline",
        action="store_true",
        help="also print where Certwright's orders spent their time, from its own rows",
    )
    args = parser.parse_args()
    HONOR_RETRY_AFTER[0] = args.honor_retry_after
    clients = 2 if args.smoke else args.clients
    seconds = 2.0 if args.smoke else args.window
    rounds = 1 if args.smoke else args.rounds
    for tool in (
        "redis-server",
        "pebble",
        "pebble-challtestsrv",
        *(("py-spy",) if args.profile else ()),
    ):
        if shutil.which(tool) is None:
            raise SystemExit(f"`{tool}` is not on PATH (Debian: redis-server, pebble)")
    results: dict[str, Any] = {"machine": machine(), "idle_before": round(idle_fraction(), 2)}
    results.update(clients=clients, window_s=seconds, rounds=rounds, runs={})
    results["honor_retry_after"] = args.honor_retry_after
    work = Path(tempfile.mkdtemp(prefix="cw-bench-acme-"))
    db_name, url = create_database()
    redis_proc, redis_url = start_redis(work)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        cert, key, tls = listener_tls(work)
        dns_proc, dns = start_challtestsrv(work)
        procs.append(dns_proc)
        http_port = free_port()
        os.environ.update(
            app_env(
                work,
                DATABASE_URL=url,
                BROKER_URL=redis_url,
                CW_ACME_RESOLVER=dns,
                CW_ACME_HTTP01_PORT=str(http_port),
                CW_ACME_ORDERS_PER_HOUR="0",
                CW_WORKER_PROCESSES="2",
            )
        )
        from app import create_app
        from app.extensions import db

        app = create_app()
        with app.app_context():
            migrate()
            world = make_world()
            workers = start_dramatiq(2, 4, work / "dramatiq.log", queue="acme", poll_ms=50)
            procs.append(workers)
            wait_for_workers(2, workers, timeout=240)  # slow to import on a loaded machine
            db.session.remove()
        eab = (world["kid"], world["hmac"])
        port = free_port()
        web = start_certwright(port, work, (cert, key))
        procs.append(web)
        base = f"https://127.0.0.1:{port}/acme/{SLUG}/directory"
        wait_tls(base, tls, web, work / "gunicorn.log")

        log("Certwright: warming up")
        asyncio.run(window(base, tls, http_port, eab, 2, 1.0, "warm"))
        ours = []
        spies = (
            profile(args.profile, "acme", {"web": web.pid, "workers": workers.pid})
            if args.profile
            else []
        )
        for n in range(rounds):
            log(f"Certwright: round {n + 1}/{rounds}, {clients} clients, {seconds:g} s")
            ours.append(
                asyncio.run(
                    window(
                        base,
                        tls,
                        http_port,
                        eab,
                        clients,
                        seconds,
                        f"cw{n}-",
                        lambda: CpuMeter({"web": web.pid, "workers": workers.pid}, db_name),
                    )
                )
            )
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        if args.timeline:
            with app.app_context():
                results["timeline"] = timeline()
                db.session.remove()
        theirs, stalls = [], 0
        for n in range(rounds):
            for attempt in range(1, PEBBLE_TRIES + 1):
                pebble, directory = start_pebble(work, (cert, key), dns, http_port, eab)
                try:
                    wait_tls(directory, tls, pebble, work / "pebble.log")
                    log(f"pebble: round {n + 1}/{rounds} (a fresh process), {clients} clients")
                    figures = asyncio.run(
                        window(
                            directory,
                            tls,
                            http_port,
                            eab,
                            clients,
                            seconds,
                            f"pb{n}-{attempt}-",
                            lambda p=pebble: CpuMeter({"pebble": p.pid}),
                        )
                    )
                finally:
                    stop(pebble)
                if not figures["stalled"] or attempt == PEBBLE_TRIES:
                    break
                stalls += 1
                log("pebble stalled (its 2.4 deadlock): the round again on a fresh process")
            theirs.append(figures)
        results["runs"] = {"certwright": merge(ours), "pebble": merge(theirs)}
        results["pebble_rounds_rerun"] = stalls
    finally:
        for proc in reversed(procs):
            stop(proc)
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)
        drop_database(db_name)
        shutil.rmtree(work, ignore_errors=True)
    results["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def report(results: dict[str, Any]) -> None:
    m = results["machine"]
    if results.get("timeline"):
        print("\nWhere Certwright's orders spent their time (p50 ms; polls: count):")
        for label, value in results["timeline"].items():
            print(f"  {label:<58} {value:>9}")
    print(f"\nACME benchmark, {m['date']}: {m['cpu']}, Python {m['python']}")
    print(
        f"{results['clients']} clients, {results['rounds']} windows of {results['window_s']:g} s "
        f"per system, load average before {m['load_average'][0]:.2f}, after "
        f"{results['load_average_after'][0]:.2f}, machine idle before: "
        f"{results['idle_before']:.0%}\n"
    )
    print(
        f"{'system':<12} {'orders':>7} {'orders/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'failures':>9} {'verified':>9} {'CPU ms/order':>13}"
    )
    for system, fig in results["runs"].items():
        print(
            f"{system:<12} {fig['count']:>7} {fig['per_second']:>9} {fig['p50_ms']:>8} "
            f"{fig['p99_ms']:>8} {fig['failures']:>9} {fig['verified']:>9} "
            f"{fig.get('cpu_ms_total', 0.0):>13}"
        )
    ours, theirs = results["runs"]["certwright"], results["runs"]["pebble"]
    parts = {k[7:]: v for k, v in ours.items() if k.startswith("cpu_ms_") and k != "cpu_ms_total"}
    print(
        "Certwright's CPU ms per order: " + ", ".join(f"{k} {v}" for k, v in sorted(parts.items()))
    )
    for system, fig in results["runs"].items():
        print(
            f"{system}: newOrder -> authorization valid p50 {fig['validation_p50_ms']} ms, "
            f"finalize -> certificate p50 {fig['issuance_p50_ms']} ms (worst window), "
            f"{fig['polls_per_order']} polls per order"
        )
    print(
        f"orders/s per window: Certwright {ours['round_per_second']}, pebble {theirs['round_per_second']}"
    )
    if results.get("pebble_rounds_rerun") or ours.get("stalled_rounds"):
        print(
            f"stalled windows: Certwright {ours.get('stalled_rounds', 0)}; pebble rounds run "
            f"again on a fresh process after a stall: {results.get('pebble_rounds_rerun', 0)}"
        )
    ratio = ours["per_second"] / max(theirs["per_second"], 0.001)
    results["targets"] = {"vs_pebble": round(ratio, 2), "target": TARGET}
    verdict = "PASS" if ratio >= TARGET else "FAIL"
    print(f"\nCertwright / pebble orders/s = {ratio:.2f} (target >= {TARGET}): {verdict}")


if __name__ == "__main__":
    main()
