"""The discovery benchmark's loopback test bed, and the two references it is scanned with.

    python -m bench.discovery_bed serve --count 1000 --port 9443 --processes 2
    python -m bench.discovery_bed bare --count 1000 --port 9443 --names 100
    python -m bench.discovery_bed nmap --count 1000 --port 9443

serve: ``count`` TLS endpoints on distinct addresses from 127.20.0.1 (one listening socket
per address, all on one port), served by ``processes`` processes with one selector each
(non-blocking server-side handshakes, closed once done: cheaper per handshake than asyncio
streams, so what is measured is the client). Certificate ``j`` (one distinct certificate
per ``SHARE`` consecutive addresses) is RSA-2048 when ``j % 3 == 0``, else ECDSA P-256;
issued by an intermediate of its key type and presented with it (leaf + intermediate),
except every tenth, which is a self-signed leaf presented alone. Even ``j`` have subject O
``Bench Corp A``, odd ``Bench Corp B``. The first ``names`` addresses also answer SNI
``sni-K.bench.test`` (K = the address's index) with a certificate of its own.

bare: the practical limit, a plain asyncio handshake loop (``asyncio.open_connection``
with TLS, verification off, bounded concurrency) over the same targets, keeping nothing.

nmap: ``nmap -Pn -n -p PORT --script ssl-cert`` over the bed's addresses (see ``NMAP_TLS``).

Everything binds and scans 127.0.0.0/8 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import os
import resource
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.tlsbed.farm import handshake_loop, serve_handshakes

BASE = "127.20.0.1"
SHARE = 4  # consecutive addresses presenting the same certificate
ORG_A, ORG_B = "Bench Corp A", "Bench Corp B"
# nmap options for the TLS endpoints: -Pn (every address is known to be up: no ping
# round first), -n (no reverse DNS), -T4 (nmap's "aggressive" timing, recommended by its
# manual for fast, reliable networks). The script fetches and parses the certificate.
NMAP_TLS = ("-Pn", "-n", "-T4", "--script", "ssl-cert")


def addresses(count: int, base: str = BASE) -> list[str]:
    start = int(ipaddress.IPv4Address(base))
    hosts = [str(ipaddress.IPv4Address(start + i)) for i in range(count)]
    for host in (hosts[0], hosts[-1]):
        if not ipaddress.IPv4Address(host).is_loopback:
            raise ValueError(f"the bed binds loopback only, not {host}")
    return hosts


def sni_name(index: int) -> str:
    return f"sni-{index}.bench.test"


# --- certificates ------------------------------------------------------------------------


@dataclass(frozen=True)
class Material:
    """What one TLS context serves: chain PEM (leaf first) and the leaf's key PEM."""

    chain_pem: bytes
    key_pem: bytes


def _name(cn: str, org: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
        ]
    )


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(
    subject: x509.Name,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    signer: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    sans: Sequence[str] = (),
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False
        )
    return builder.sign(signer, hashes.SHA256())


def make_materials(count: int, names: int) -> tuple[dict[int, Material], dict[int, Material]]:
    """(material per distinct certificate j, SNI material per address index < names).

    Keys are shared between certificates (one per key type): the certificates differ, the
    handshake cost is that of the key type.
    """
    keys = {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec": ec.generate_private_key(ec.SECP256R1()),
    }
    inter: dict[str, tuple[x509.Name, x509.Certificate]] = {}
    for kind, key in keys.items():
        name = _name(f"Bench {kind.upper()} Intermediate", "Bench Trust")
        inter[kind] = (name, _cert(name, key, name, key, ca=True))

    def leaf(cn: str, org: str, kind: str, self_signed: bool) -> Material:
        key = keys[kind]
        subject = _name(cn, org)
        if self_signed:
            cert = _cert(subject, key, subject, key, ca=False, sans=[cn])
            chain = [cert]
        else:
            issuer_name, issuer_cert = inter[kind]
            chain = [_cert(subject, key, issuer_name, key, ca=False, sans=[cn]), issuer_cert]
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
        return Material(pem, _pem(key))

    distinct = -(-count // SHARE)
    by_cert = {
        j: leaf(
            f"host-{j}.bench.test",
            ORG_A if j % 2 == 0 else ORG_B,
            "rsa" if j % 3 == 0 else "ec",
            self_signed=j % 10 == 9,
        )
        for j in range(distinct)
    }
    by_name = {
        i: leaf(sni_name(i), ORG_A, "ec" if i % 2 else "rsa", self_signed=False)
        for i in range(min(names, count))
    }
    return by_cert, by_name


def _context(material: Material, tmp: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.num_tickets = 0
    (tmp / "chain.pem").write_bytes(material.chain_pem)
    (tmp / "key.pem").write_bytes(material.key_pem)
    context.load_cert_chain(tmp / "chain.pem", tmp / "key.pem")
    return context


def build_contexts(count: int, names: int) -> list[ssl.SSLContext]:
    """The server context of every address (index order), SNI switching included."""
    by_cert, by_name = make_materials(count, names)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        cert_contexts = {j: _context(m, tmp) for j, m in by_cert.items()}
        contexts = []
        for i in range(count):
            if i in by_name:
                # its own default context (sni_callback is per context), plus the named one
                context = _context(by_cert[i // SHARE], tmp)
                named = {sni_name(i): _context(by_name[i], tmp)}

                def pick(
                    sslobj: ssl.SSLObject,
                    server_name: str | None,
                    _: ssl.SSLContext,
                    named: dict[str, ssl.SSLContext] = named,
                ) -> None:
                    if server_name in named:
                        sslobj.context = named[server_name]

                context.sni_callback = pick
                contexts.append(context)
            else:
                contexts.append(cert_contexts[i // SHARE])
    return contexts


# --- serving -----------------------------------------------------------------------------


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def serve(
    hosts: Sequence[str], contexts: Sequence[ssl.SSLContext], port: int, stopped: threading.Event
) -> int:
    """One selector: accept, non-blocking server handshake, close. Returns handshakes done."""
    return serve_handshakes(
        hosts, port, contexts, stopped, ready=lambda: print(f"ready {len(hosts)}", flush=True)
    )


def _serve_child(hosts: Sequence[str], contexts: Sequence[ssl.SSLContext], port: int) -> None:
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    served = serve(hosts, contexts, port, stopped)
    print(f"served {served}", flush=True)
    os._exit(0)


def serve_main(count: int, port: int, names: int, processes: int) -> None:
    """Build every context, then fork ``processes`` servers sharing the addresses out."""
    raise_nofile()
    hosts = addresses(count)
    contexts = build_contexts(count, names)
    children = []
    for k in range(processes):
        pid = os.fork()
        if pid == 0:
            # interleaved, so that a scan in address order keeps every process busy
            _serve_child(hosts[k::processes], contexts[k::processes], port)
        children.append(pid)

    def forward(signum: int, _: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for pid in children:
        os.waitpid(pid, 0)


# --- the references ----------------------------------------------------------------------


def targets(count: int, names: int) -> list[tuple[str, str | None]]:
    """(address, SNI name or None): every bed address, then the SNI names."""
    hosts = addresses(count)
    return [(h, None) for h in hosts] + [(hosts[i], sni_name(i)) for i in range(min(names, count))]


def bare_main(count: int, port: int, names: int, concurrency: int) -> None:
    raise_nofile()
    items = targets(count, names)
    started = time.perf_counter()
    ok = asyncio.run(handshake_loop(items, port, concurrency, 10.0))
    seconds = time.perf_counter() - started
    print(json.dumps({"endpoints": len(items), "handshakes": ok, "seconds": seconds}))


def nmap_command(hosts_file: Path, port: int, options: Sequence[str]) -> list[str]:
    return ["nmap", *options, "-p", str(port), "-iL", str(hosts_file), "-oX", "-"]


def run_nmap(
    hosts: Sequence[str] | str, port: int, options: Sequence[str]
) -> tuple[float, str, subprocess.CompletedProcess[str]]:
    """Run nmap over ``hosts`` (addresses, or one range in nmap syntax); (seconds, XML)."""
    for host in [hosts] if isinstance(hosts, str) else hosts[:1]:
        first = host.split("/", 1)[0].split("-", 1)[0]
        if not ipaddress.IPv4Address(first).is_loopback:
            raise ValueError(f"the benchmark scans loopback only, not {host}")
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as listing:
        listing.write(hosts if isinstance(hosts, str) else "\n".join(hosts))
        listing.flush()
        command = nmap_command(Path(listing.name), port, options)
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
        seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr[-2000:]}")
    return seconds, done.stdout, done


def nmap_main(count: int, port: int) -> None:
    seconds, xml, _ = run_nmap(addresses(count), port, NMAP_TLS)
    certs = xml.count('<script id="ssl-cert"')
    print(json.dumps({"endpoints": count, "certificates": certs, "seconds": seconds}))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["serve", "bare", "nmap"])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--names", type=int, default=100)
    parser.add_argument("--port", type=int, default=9443)
    parser.add_argument("--processes", type=int, default=2, help="serve: server processes")
    parser.add_argument("--concurrency", type=int, default=256, help="bare: in flight")
    args = parser.parse_args(argv)
    if args.mode == "serve":
        serve_main(args.count, args.port, args.names, args.processes)
    elif args.mode == "bare":
        bare_main(args.count, args.port, args.names, args.concurrency)
    else:
        nmap_main(args.count, args.port)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
