"""The OCSP responder under load: gunicorn (CW_WEB_WORKERS web processes, PostgreSQL) and
wrk on keep-alive connections, all on 127.0.0.1.

The client mix follows RFC 5019 (the lightweight profile browsers and TLS stacks use):
no nonce, one certificate per request, SHA-1 CertIDs (a tenth SHA-256), half the requests
as GET (base64 in the URL, cacheable) and half as POST, spread evenly over the serials of
certificates that were issued. Run by bench/issuance.py against the database the pipeline
benchmark left behind (DATABASE_URL); needs `wrk` on PATH.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from bench.harness import REPO, stop

LUA = """
local requests = {%(requests)s}
local threads = {}
local index = 0
bad = 0  -- a global: done() reads it from each thread

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  index = math.random(#requests)
end

function request()
  index = index %% #requests + 1
  local r = requests[index]
  if r[3] then
    return wrk.format("POST", r[2], {["Content-Type"] = "application/ocsp-request"}, r[3])
  end
  return wrk.format("GET", r[2])
end

function response(status, headers, body)
  -- a signed answer is hundreds of bytes; malformed/unauthorized/internal errors are 5
  if status ~= 200 or #body < 100 then bad = bad + 1 end
end

function done(summary, latency, requests)
  local failed = 0
  for _, thread in ipairs(threads) do failed = failed + thread:get("bad") end
  io.write(string.format("CW-RESULT {\\"requests\\": %%d, \\"seconds\\": %%f, \\"bad\\": %%d, " ..
    "\\"errors\\": %%d, \\"p50_ms\\": %%f, \\"p99_ms\\": %%f}\\n",
    summary.requests, summary.duration / 1e6, failed,
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.status + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def lua_string(data: bytes) -> str:
    return '"' + "".join(f"\\{b}" for b in data) + '"'


def build_requests(
    pairs: list[tuple[int, x509.Certificate, x509.Certificate]], seed: int = 5019
) -> list[tuple[str, str, bytes | None]]:
    """(method, path, body) per request: RFC 5019 mix over (ca_id, leaf, issuer) pairs."""
    rng = random.Random(seed)
    out: list[tuple[str, str, bytes | None]] = []
    for ca_id, leaf, issuer in pairs:
        algorithm = hashes.SHA256() if rng.random() < 0.1 else hashes.SHA1()
        der = (
            ocsp.OCSPRequestBuilder()
            .add_certificate(leaf, issuer, algorithm)
            .build()
            .public_bytes(Encoding.DER)
        )
        if rng.random() < 0.5:
            encoded = urllib.parse.quote(base64.b64encode(der).decode(), safe="")
            out.append(("GET", f"/pki/ocsp/{ca_id}/{encoded}", None))
        else:
            out.append(("POST", f"/pki/ocsp/{ca_id}", der))
    return out


def issued_pairs(count: int) -> list[tuple[int, x509.Certificate, x509.Certificate]]:
    """Up to ``count`` issued certificates (spread over every issuing CA) with their CA."""
    from sqlalchemy import func, select

    from app import create_app
    from app.extensions import db
    from app.models import Certificate, CertificateAuthority, CertStatus

    app = create_app()
    with app.app_context():
        rows = db.session.execute(
            select(Certificate.ca_id, Certificate.der, CertificateAuthority.cert_der)
            .join(CertificateAuthority, CertificateAuthority.id == Certificate.ca_id)
            .where(Certificate.status == CertStatus.ISSUED)
            .order_by(func.random())
            .limit(count)
        ).all()
        db.session.remove()
    cas: dict[int, x509.Certificate] = {}
    pairs = []
    for ca_id, der, ca_der in rows:
        issuer = cas.setdefault(ca_id, x509.load_der_x509_certificate(ca_der))
        pairs.append((ca_id, x509.load_der_x509_certificate(der), issuer))
    return pairs


def start_gunicorn(port: int, log: Path, threads: int | None) -> subprocess.Popen[bytes]:
    env = dict(os.environ, CW_BIND=f"127.0.0.1:{port}", CW_WEB_WORKERS="2")
    if threads:
        env["CW_WEB_THREADS"] = str(threads)
    if not env.get("BROKER_URL"):
        raise SystemExit("BROKER_URL must be set: with it gunicorn runs web processes only")
    gunicorn = Path(sys.executable).with_name("gunicorn")
    with log.open("wb") as err:
        return subprocess.Popen(
            [str(gunicorn), "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,  # the access log
            stderr=err,
            start_new_session=True,
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    """Until our gunicorn answers. The port came free from the kernel; check_answers()
    then proves the responder is ours (it knows our CAs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited during start-up: see {log}")
        if log.read_text(errors="replace").count("Booting worker") >= 2:
            try:
                with urllib.request.urlopen(f"{base}/login", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not start in time")


def check_answers(
    base: str, pairs: list[tuple[int, x509.Certificate, x509.Certificate]], k: int = 20
) -> int:
    """Ask k serials by POST and GET; each answer must be a signed 'good' for that serial."""
    ok = 0
    for ca_id, leaf, issuer in pairs[:k]:
        der = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()
        body = der.public_bytes(Encoding.DER)
        encoded = urllib.parse.quote(base64.b64encode(body).decode(), safe="")
        for request in (
            urllib.request.Request(
                f"{base}/pki/ocsp/{ca_id}",
                data=body,
                headers={"Content-Type": "application/ocsp-request"},
            ),
            urllib.request.Request(f"{base}/pki/ocsp/{ca_id}/{encoded}"),
        ):
            with urllib.request.urlopen(request, timeout=5) as resp:
                answer = ocsp.load_der_ocsp_response(resp.read())
            assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
            assert answer.serial_number == leaf.serial_number
            assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD
            public_key = issuer.public_key()
            if isinstance(public_key, ec.EllipticCurvePublicKey):
                public_key.verify(
                    answer.signature,
                    answer.tbs_response_bytes,
                    ec.ECDSA(answer.signature_hash_algorithm),  # type: ignore[arg-type]
                )
            else:
                public_key.verify(  # type: ignore[call-arg]
                    answer.signature,
                    answer.tbs_response_bytes,
                    padding.PKCS1v15(),  # type: ignore[arg-type]
                    answer.signature_hash_algorithm,  # type: ignore[arg-type]
                )
        ok += 1
    return ok


def run_wrk(base: str, script: Path, seconds: int, connections: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            base,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    match = re.search(r"CW-RESULT (\{.*\})", out.stdout)
    if match is None:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    return dict(json.loads(match.group(1)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serials", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--port", type=int, default=0, help="default: a free one")
    parser.add_argument("--threads", type=int, default=0, help="CW_WEB_THREADS (default: 8)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--log-dir", required=True)
    args = parser.parse_args()

    pairs = issued_pairs(args.serials)
    if not pairs:
        raise SystemExit("no issued certificates in the database")
    requests = build_requests(pairs)
    lua = LUA % {
        "requests": ",\n".join(
            f'{{"{m}", "{p}", {lua_string(b) if b is not None else "nil"}}}' for m, p, b in requests
        )
    }
    port = args.port or free_port()
    base = f"http://127.0.0.1:{port}"
    log = Path(args.log_dir) / "gunicorn.log"
    server = start_gunicorn(port, log, args.threads)
    result: dict[str, Any] = {
        "serials": len(pairs),
        "connections": args.connections,
        "threads": args.threads or int(os.environ.get("CW_WEB_THREADS", "8")),
    }
    try:
        wait_ready(base, server, log)
        result["checked_answers"] = check_answers(base, pairs)
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
            fh.write(lua)
            script = Path(fh.name)
        try:
            if args.warmup:
                run_wrk(base, script, args.warmup, args.connections)
            measured = run_wrk(base, script, args.seconds, args.connections)
        finally:
            script.unlink()
        result.update(measured)
        result["rate"] = round(measured["requests"] / measured["seconds"], 1)
    finally:
        stop(server)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
