"""Issue 14 benchmark: enroll -> collect over the SCM REST API, against two references.

`python -m bench.api` (repository root, the project's virtualenv). For an RSA-2048 and a P-256
issuing CA, N certificates each, C concurrent keep-alive clients (asyncio, bench/http_keepalive.py):

- **Certwright**: 2 gunicorn web processes, 2 dramatiq issuance worker processes (one thread,
  50 ms polling, README "Scale-out"), PostgreSQL, a private Redis; an API administrator, an
  auto-approved profile (lint mode "sample": the first certificate and one in 100 linted). A
  client POSTs /api/ssl/v1/enroll, then GETs /api/ssl/v1/collect/{id}/x509CO until it is 200
  (first after 50 ms, then each wait 1.5 times the last, at most 1 s: a client polling every
  20 ms spent the web tier's CPU on answering "not yet"). Latency: enroll sent -> certificate
  received.
- **cfssl** (Debian's golang-cfssl, `cfssl serve`): POST /api/v1/cfssl/sign with the same CSRs.
- **bare Flask**: bench/bare_sign.py under gunicorn with 2 processes: parse the CSR and sign,
  nothing else.

Targets (issue 14): RSA-2048 throughput >= 1.0x cfssl; P-256 >= 0.5x bare Flask; p99 reported.
`--quick` is a smaller run, `--smoke` a tiny one that only proves every part works (the test
suite runs it); `--json FILE` keeps the figures. Needs PostgreSQL (BENCH_POSTGRES_URL),
`redis-server` and `cfssl` on PATH (`apt-get install golang-cfssl redis-server`).
BENCH_PORTS ("5630-5640") keeps the servers to a range of ports on a shared machine;
BENCH_WEB_THREADS (default 8) sets Certwright's threads per web process.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.harness import (
    POSTGRES,
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
from bench.http_keepalive import Connection

KEY_TYPES = ("RSA-2048", "EC-P256")
PASSWORD = "a-long-benchmark-password-1"
DISTINCT_KEYS = 16  # CSRs differ by name; keys are reused (profiles allow it)


# BENCH_PORTS: "5630-5640" (the end excluded), or several such ranges separated by commas.
_PORTS = iter(
    [
        port
        for part in os.environ.get("BENCH_PORTS", "").split(",")
        if part.strip()
        for port in range(*(int(v) for v in part.split("-")))
    ]
)


def free_port() -> int:
    """A free port: the next of BENCH_PORTS ("5630-5640", on a shared machine) that is
    free, else any the kernel gives."""
    for port in _PORTS:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_http(
    url: str, proc: subprocess.Popen[bytes], timeout: float = 60, log_file: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_file.read_text(errors="replace")[-3000:] if log_file else ""
            raise RuntimeError(f"{url}: the server exited during start-up\n{tail}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in time")


# --- set-up -----------------------------------------------------------------------------


def make_world() -> dict[str, Any]:
    """Through the services: an API administrator (MRAO), an organization with a delegated
    domain, and per key type a root, an issuing CA and an auto-approved profile."""
    from app.extensions import db
    from app.models import AdminKind, CertType, LintMode, Role
    from app.services.accounts import admins
    from app.services.ca import authorities, profiles
    from app.services.scope import SYSTEM
    from app.services.structure import domains, orgs

    api = admins.create_admin(
        actor=SYSTEM,
        login="bench-api",
        email="bench@bench.example",
        role=Role.MRAO,
        password=PASSWORD,
        kind=AdminKind.API,
    )
    org = orgs.create_org(
        actor=SYSTEM, data=orgs.OrgData(name="Bench", country="DE", city="Berlin")
    )
    domains.create_domain(
        actor=api, name="bench.example", organization_id=org.id, types=[CertType.SSL]
    )
    world: dict[str, Any] = {"org": org.id, "profiles": {}}
    for key_type in KEY_TYPES:
        root = authorities.create_ca(
            actor=SYSTEM,
            spec=authorities.CaSpec(
                name=f"Bench Root {key_type}",
                key_type=key_type,
                customer_name="Bench",
                country="DE",
            ),
        )
        issuing = authorities.create_ca(
            actor=SYSTEM,
            spec=authorities.CaSpec(
                name=f"Bench Issuing {key_type}",
                key_type=key_type,
                customer_name="Bench",
                country="DE",
                parent_id=root.id,
            ),
        )
        profile = profiles.create_profile(
            actor=SYSTEM,
            data=profiles.ProfileData(
                name=f"Bench {key_type}",
                cert_type=CertType.SSL,
                ca_id=issuing.id,
                terms=(90,),
                key_types=(key_type,),
                requires_approval=False,
                lint_mode=LintMode.SAMPLE,
            ),
        )
        world["profiles"][key_type] = profile.id
        world.setdefault("issuing_der", {})[key_type] = issuing.cert_der
    db.session.commit()
    return world


def make_csrs(key_type: str, n: int) -> list[str]:
    from cryptography.hazmat.primitives.serialization import Encoding

    from app.pki import csr, keys, names

    pool = [keys.generate_private_key(key_type) for _ in range(min(n, DISTINCT_KEYS))]
    tag = "rsa" if key_type.startswith("RSA") else "ec"
    out = []
    for i in range(n):
        cn = f"b{i}-{tag}-{secrets.token_hex(3)}.bench.example"
        request = csr.build_csr(
            pool[i % len(pool)],
            subject=names.build_subject(common_name=cn),
            alt_names=names.parse_alt_names([cn]),
        )
        out.append(request.public_bytes(Encoding.PEM).decode())
    return out


def reference_ca(key_type: str, folder: Path) -> tuple[Path, Path]:
    """A CA of the same key type for the references (cfssl, bare Flask), as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    from app.pki import keys

    key = keys.generate_private_key(key_type)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, f"Reference {key_type}")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"ca-{key_type}.pem", folder / f"ca-{key_type}-key.pem"
    cert_path.write_bytes(cert.public_bytes(Encoding.PEM))
    key_path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return cert_path, key_path


# --- timed runs -------------------------------------------------------------------------


def summarize(latencies: list[float], seconds: float, failures: int) -> dict[str, Any]:
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else 0.0

    return {
        "count": len(latencies),
        "failures": failures,
        "seconds": round(seconds, 3),
        "per_second": round(len(latencies) / seconds, 1) if seconds else 0.0,
        "p50_ms": round(pct(0.50), 1),
        "p99_ms": round(pct(0.99), 1),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 1) if ordered else 0.0,
    }


async def drive(port: int, clients: int, jobs: list[Any], one: Any) -> dict[str, Any]:
    """Run ``one(conn, job)`` for every job on ``clients`` keep-alive connections."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    latencies: list[float] = []
    failures = [0]
    results: list[Any] = []

    async def worker() -> None:
        conn = Connection("127.0.0.1", port)
        try:
            while not queue.empty():
                job = queue.get_nowait()
                start = time.perf_counter()
                try:
                    results.append(await one(conn, job))
                    latencies.append(time.perf_counter() - start)
                except Exception as exc:  # counted and shown, the run goes on
                    failures[0] += 1
                    if failures[0] <= 3:
                        log(f"  failure: {exc!r}")
        finally:
            await conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    figures = summarize(latencies, time.perf_counter() - start, failures[0])
    figures["results"] = results
    return figures


def certwright_run(
    port: int, world: dict[str, Any], key_type: str, csrs: list[str], clients: int
) -> dict[str, Any]:
    headers = {
        "login": "bench-api",
        "password": PASSWORD,
        "customerUri": "certwright",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }

    enrolls: list[float] = []

    async def one(conn: Connection, csr: str) -> str:
        start = time.perf_counter()
        body = {
            "orgId": world["org"],
            "csr": csr,
            "certType": world["profiles"][key_type],
            "term": 90,
        }
        answer = await conn.request(
            "POST", "/api/ssl/v1/enroll", headers, json.dumps(body).encode()
        )
        if answer.status != 200:
            raise RuntimeError(f"enroll {answer.status}: {answer.body[:200]!r}")
        ssl_id = answer.json()["sslId"]
        enrolls.append(time.perf_counter() - start)
        wait, deadline = 0.05, time.monotonic() + 120
        while time.monotonic() < deadline:
            await asyncio.sleep(wait)
            got = await conn.request("GET", f"/api/ssl/v1/collect/{ssl_id}/x509CO", headers)
            if got.status == 200:
                return got.body.decode()
            if got.status != 400:
                raise RuntimeError(f"collect {got.status}: {got.body[:200]!r}")
            wait = min(1.0, wait * 1.5)
        raise RuntimeError(f"order {ssl_id} was not issued within two minutes")

    figures = asyncio.run(drive(port, clients, csrs, one))
    enrolls.sort()
    figures["enroll_p50_ms"] = round(enrolls[len(enrolls) // 2] * 1000, 1) if enrolls else 0.0
    figures["enroll_p99_ms"] = (
        round(enrolls[int(len(enrolls) * 0.99)] * 1000, 1) if enrolls else 0.0
    )
    return figures


def cfssl_run(port: int, csrs: list[str], clients: int) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}

    async def one(conn: Connection, csr: str) -> str:
        answer = await conn.request(
            "POST", "/api/v1/cfssl/sign", headers, json.dumps({"certificate_request": csr}).encode()
        )
        data = answer.json()
        if answer.status != 200 or not data.get("success"):
            raise RuntimeError(f"cfssl {answer.status}: {answer.body[:200]!r}")
        return str(data["result"]["certificate"])

    return asyncio.run(drive(port, clients, csrs, one))


def bare_run(port: int, csrs: list[str], clients: int) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}

    async def one(conn: Connection, csr: str) -> str:
        answer = await conn.request("POST", "/sign", headers, json.dumps({"csr": csr}).encode())
        if answer.status != 200:
            raise RuntimeError(f"bare {answer.status}: {answer.body[:200]!r}")
        return answer.body.decode()

    return asyncio.run(drive(port, clients, csrs, one))


def verified(
    pems: list[str], issuer_der: bytes | None, issuer_pem: Path | None, k: int = 10
) -> int:
    """How many of a sample of certificates verify against their issuing CA."""
    from cryptography import x509

    issuer = (
        x509.load_der_x509_certificate(issuer_der)
        if issuer_der is not None
        else x509.load_pem_x509_certificate(issuer_pem.read_bytes())  # type: ignore[union-attr]
    )
    good = 0
    for pem in pems[:: max(1, len(pems) // k)][:k]:
        cert = x509.load_pem_x509_certificate(pem.encode())
        cert.verify_directly_issued_by(issuer)
        good += 1
    return good


# --- CPU spent, whatever else runs on the machine ------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of one process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _tree(root: int) -> list[int]:
    """root and its descendants (gunicorn's workers, dramatiq's worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _backends(database: str) -> list[int]:
    """PostgreSQL's server processes serving ``database`` (same machine, readable /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if title.startswith("postgres: ") and f" {database} " in title:
                found.append(int(entry.name))
    return found


class CpuMeter:
    """CPU seconds of process trees (and a database's backends) between start and stop:
    a measure of the work per certificate that other load on the machine barely moves."""

    def __init__(self, roots: dict[str, int], database: str | None = None) -> None:
        self.roots, self.database = roots, database
        self.before = self._sample()

    def _sample(self) -> dict[str, dict[int, float]]:
        sample = {name: {p: _cpu_of(p) for p in _tree(pid)} for name, pid in self.roots.items()}
        if self.database:
            sample["postgres"] = {p: _cpu_of(p) for p in _backends(self.database)}
        return sample

    def stop(self, count: int) -> dict[str, float]:
        """Milliseconds of CPU per certificate, per part and in total."""
        after = self._sample()
        spent = {
            name: sum(cpu - self.before.get(name, {}).get(pid, 0.0) for pid, cpu in procs.items())
            for name, procs in after.items()
        }
        per = {f"cpu_ms_{name}": round(1000 * s / max(count, 1), 2) for name, s in spent.items()}
        per["cpu_ms_total"] = round(sum(per.values()), 2)
        return per


# --- servers ----------------------------------------------------------------------------


def profile(folder: Path, key_type: str, pids: dict[str, int]) -> list[subprocess.Popen[bytes]]:
    """py-spy sampling each process tree (100 a second, idle threads left out) until SIGINT."""
    folder.mkdir(parents=True, exist_ok=True)
    spies = []
    for name, pid in pids.items():
        out = folder / f"{key_type}-{name}.txt"
        spies.append(
            subprocess.Popen(
                [
                    *("py-spy", "record", "--subprocesses", "--format", "raw", "--rate", "100"),
                    *("--output", str(out), "--pid", str(pid)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=(folder / f"{key_type}-{name}.log").open("wb"),
            )
        )
    time.sleep(1)  # attached before the clients start
    return spies


def start_certwright(port: int, folder: Path) -> subprocess.Popen[bytes]:
    threads = os.environ.get("BENCH_WEB_THREADS", "8")  # per web process (gthread)
    env = dict(os.environ, CW_BIND=f"127.0.0.1:{port}", CW_WEB_WORKERS="2", CW_WEB_THREADS=threads)
    gunicorn = Path(sys.executable).with_name("gunicorn")
    with (folder / "gunicorn.log").open("wb") as err:
        return subprocess.Popen(
            [str(gunicorn), "-c", "gunicorn.conf.py", "--access-logfile", "/dev/null", "wsgi:app"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )


def start_cfssl(port: int, ca: tuple[Path, Path], folder: Path) -> subprocess.Popen[bytes]:
    config = folder / "cfssl.json"
    config.write_text(
        json.dumps(
            {
                "signing": {
                    "default": {
                        "expiry": "2160h",
                        "usages": ["digital signature", "key encipherment", "server auth"],
                    }
                }
            }
        )
    )
    with (folder / f"cfssl-{port}.log").open("wb") as err:
        return subprocess.Popen(
            [
                "cfssl",
                "serve",
                "-address",
                "127.0.0.1",
                "-port",
                str(port),
                "-ca",
                str(ca[0]),
                "-ca-key",
                str(ca[1]),
                "-config",
                str(config),
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )


def start_bare(port: int, ca: tuple[Path, Path], folder: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, BARE_CA_CERT=str(ca[0]), BARE_CA_KEY=str(ca[1]), PYTHONPATH=str(REPO))
    gunicorn = Path(sys.executable).with_name("gunicorn")
    with (folder / f"bare-{port}.log").open("wb") as err:
        return subprocess.Popen(
            [
                *(str(gunicorn), "-w", "2", "-k", "gthread", "--threads", "8", "--reuse-port"),
                *(
                    "-b",
                    f"127.0.0.1:{port}",
                    "--access-logfile",
                    "/dev/null",
                    "bench.bare_sign:app",
                ),
            ],
            # Not the repository: gunicorn reads ./gunicorn.conf.py, Certwright's own settings
            # (its worker hooks build the console), which the bare reference must not get.
            cwd=folder,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )


# --- the run ----------------------------------------------------------------------------


def create_database() -> tuple[str, str]:
    import psycopg

    name = f"bench_api_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES.rsplit("/", 1)[0]
    return name, f"{base}/{name}"


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--count", type=int, default=1000, help="certificates per key type and system"
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--profile",
        type=Path,
        help="folder: py-spy samples the web and worker processes during Certwright's timed "
        "runs and writes collapsed stacks there (<key type>-web.txt, -workers.txt)",
    )
    args = parser.parse_args()
    count = 20 if args.smoke else 300 if args.quick else args.count
    clients = 4 if args.smoke else args.clients
    for tool in ("cfssl", "redis-server", *(("py-spy",) if args.profile else ())):
        if shutil.which(tool) is None:
            raise SystemExit(f"`{tool}` is not on PATH (Debian: golang-cfssl, redis-server)")
    results: dict[str, Any] = {"machine": machine(), "idle_before": round(idle_fraction(), 2)}
    results.update(count=count, clients=clients, runs={})
    work = Path(tempfile.mkdtemp(prefix="cw-bench-api-"))
    db_name, url = create_database()
    redis_proc, redis_url = start_redis(work)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        os.environ.update(
            app_env(
                work,
                DATABASE_URL=url,
                BROKER_URL=redis_url,
                CW_API_RATE_LIMIT="0",
                CW_WORKER_PROCESSES="2",
            )
        )
        from app import create_app
        from app.extensions import db

        app = create_app()
        with app.app_context():
            migrate()
            world = make_world()
            csrs = {k: make_csrs(k, count) for k in KEY_TYPES}
            workers = start_dramatiq(2, 1, work / "dramatiq.log", queue="issuance", poll_ms=50)
            procs.append(workers)
            wait_for_workers(2, workers, timeout=240)  # start-up only: a loaded machine is slow
            db.session.remove()
        port = free_port()
        web = start_certwright(port, work)
        procs.append(web)
        wait_http(
            f"http://127.0.0.1:{port}/login", web, timeout=240, log_file=work / "gunicorn.log"
        )
        for key_type in KEY_TYPES:
            log(f"{key_type}: warming up")
            certwright_run(port, world, key_type, make_csrs(key_type, 8), 4)
            log(f"{key_type}: Certwright, {count} enroll -> collect, {clients} clients")
            spies = (
                profile(args.profile, key_type, {"web": web.pid, "workers": workers.pid})
                if args.profile
                else []
            )
            meter = CpuMeter({"web": web.pid, "workers": workers.pid}, db_name)
            ours = certwright_run(port, world, key_type, csrs[key_type], clients)
            ours.update(meter.stop(count))
            for spy in spies:
                spy.send_signal(signal.SIGINT)
                spy.wait(60)
            ours["verified"] = verified(ours.pop("results"), world["issuing_der"][key_type], None)
            ca = reference_ca(key_type, work)
            cport = free_port()
            cfssl = start_cfssl(cport, ca, work)
            procs.append(cfssl)
            wait_http(
                f"http://127.0.0.1:{cport}/api/v1/cfssl/info",
                cfssl,
                log_file=work / f"cfssl-{cport}.log",
            )
            log(f"{key_type}: cfssl serve")
            cfssl_run(cport, make_csrs(key_type, 8), 4)
            meter = CpuMeter({"cfssl": cfssl.pid})
            theirs = cfssl_run(cport, csrs[key_type], clients)
            theirs.update(meter.stop(count))
            theirs["verified"] = verified(theirs.pop("results"), None, ca[0])
            stop(cfssl)
            bport = free_port()
            bare = start_bare(bport, ca, work)
            procs.append(bare)
            wait_http(f"http://127.0.0.1:{bport}/", bare, log_file=work / f"bare-{bport}.log")
            log(f"{key_type}: bare Flask")
            bare_run(bport, make_csrs(key_type, 8), 4)
            meter = CpuMeter({"bare": bare.pid})
            plain = bare_run(bport, csrs[key_type], clients)
            plain.update(meter.stop(count))
            plain["verified"] = verified(plain.pop("results"), None, ca[0])
            stop(bare)
            results["runs"][key_type] = {"certwright": ours, "cfssl": theirs, "bare_flask": plain}
    finally:
        for proc in reversed(procs):
            stop(proc)
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(10)
        drop_database(db_name)
        shutil.rmtree(work, ignore_errors=True)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def report(results: dict[str, Any]) -> None:
    m = results["machine"]
    print(
        f"\nAPI benchmark, {m['date']}: {m['cpu']}, Python {m['python']}, cryptography {m['cryptography']}"
    )
    print(
        f"{results['count']} certificates per run, {results['clients']} keep-alive clients, machine idle before: {results['idle_before']:.0%}\n"
    )
    print(
        f"{'key type':<10} {'system':<12} {'certs/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'failures':>9} {'verified':>9} {'CPU ms/cert':>12}"
    )
    for key_type, runs in results["runs"].items():
        for system, fig in runs.items():
            print(
                f"{key_type:<10} {system:<12} {fig['per_second']:>9} {fig['p50_ms']:>8} {fig['p99_ms']:>8} {fig['failures']:>9} {fig['verified']:>9} {fig['cpu_ms_total']:>12}"
            )
    for key_type, runs in results["runs"].items():
        parts = {k[7:]: v for k, v in runs["certwright"].items() if k.startswith("cpu_ms_")}
        shown = ", ".join(f"{k} {v}" for k, v in parts.items() if k != "total")
        print(f"{key_type}: Certwright's CPU ms per certificate: {shown}")
    for key_type, runs in results["runs"].items():
        ours = runs["certwright"]
        print(
            f"{key_type}: Certwright's enroll call alone: p50 {ours['enroll_p50_ms']} ms, p99 {ours['enroll_p99_ms']} ms"
        )
    rsa, ec = results["runs"]["RSA-2048"], results["runs"]["EC-P256"]
    ratio_rsa = rsa["certwright"]["per_second"] / max(rsa["cfssl"]["per_second"], 0.001)
    ratio_ec = ec["certwright"]["per_second"] / max(ec["bare_flask"]["per_second"], 0.001)
    results["targets"] = {
        "rsa_vs_cfssl": round(ratio_rsa, 2),
        "rsa_target": 1.0,
        "p256_vs_bare_flask": round(ratio_ec, 2),
        "p256_target": 0.5,
    }
    print(
        f"\nRSA-2048: Certwright / cfssl = {ratio_rsa:.2f} (target >= 1.0): {'PASS' if ratio_rsa >= 1.0 else 'FAIL'}"
    )
    print(
        f"P-256: Certwright / bare Flask = {ratio_ec:.2f} (target >= 0.5): {'PASS' if ratio_ec >= 0.5 else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
