"""Issue 11 benchmark: concurrent registrations on the enrollment portal over HTTP, beside
the raw `cryptography` rate of the same work, in one run on this machine (127.0.0.1 only):

  (a) raw: key generation + signing a client certificate + a PKCS#12 (AES-256, PBKDF2
      200,000 rounds, the portal's format) with plain `cryptography` in two processes (both
      cores), and the same with one pkilint S/MIME run per certificate (the reference of
      profiles that lint every certificate), measured right before and right after each
      (b) run; its reference is the faster of the two;
  (b) N people register at once over HTTP (GET the form, POST it, as a browser does)
      against two gunicorn web processes and two `dramatiq` worker processes (queue
      keygen) on PostgreSQL + Redis; throughput = N / (last PKCS#12 ready - first POST),
      per key type (EC-P256, RSA-2048) and lint mode (sample: the first certificate after a
      profile change and one in 100; every: each certificate), as a ratio to (a), with the
      CPU time per registration of the web processes, the workers and the bench's clients;
  (c) while (b) runs, two clients fetch the portal's other pages (the front page and the
      registration form, one request every 100 ms each); their p95 latency is compared
      with the p95 of the same pages on the idle server just before.

Targets: (b) >= 60% of (a); (c) p95 under load <= 3 x idle p95 (key generation never runs
on a request thread).

    .venv/bin/python -m bench.portal            # N = 50 per key type, about two minutes
    .venv/bin/python -m bench.portal --smoke    # N = 4: does every part work? (CI)

Needs PostgreSQL (BENCH_POSTGRES_URL, where it may create and drop a database;
BENCH_DATABASE names that database, dropped first if it exists, instead of one per run) and
redis-server (a private one on a unix socket). BENCH_PORTS ("5120-5130") keeps the web
server to a range of ports on a shared machine. Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.cookiejar
import json
import multiprocessing as mp
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.harness import (
    POSTGRES,
    REPO,
    app_env,
    cpu_seconds,
    idle_fraction,
    log,
    machine,
    process_tree,
    start_dramatiq,
    start_redis,
    stop,
)

KEY_TYPES = ("EC-P256", "RSA-2048")
# Profiles that lint the first certificate after a change and then one in 100 ("sample"),
# compared with raw keygen + sign + PKCS#12; and profiles that lint every certificate
# (the default), compared with the same plus one pkilint run per certificate.
LINT_MODES = ("sample", "every")
RUNS = [(kt, mode) for mode in LINT_MODES for kt in KEY_TYPES]
P12_PASSWORD = "Bench-password-2026"
PASSPHRASE = "a bench passphrase of some length"
TARGET_RATIO = 0.60
TARGET_LATENCY = 3.0
_REFRESH = re.compile(r'http-equiv="refresh" content="(\d+)"')
_CSRF = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


# --- (a) raw cryptography ---------------------------------------------------------------


def _raw_worker(key_type: str, lint_every: bool, seconds: float, out: Any) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from app.pki.lint import lint_certificate, warm_up
    from app.pki.profiles import CertKind

    if lint_every:
        warm_up()

    def new_key() -> Any:
        if key_type == "RSA-2048":
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return ec.generate_private_key(ec.SECP256R1())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench CA")])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    encryption = (
        PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(200_000)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(P12_PASSWORD.encode())
    )
    done, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        key = new_key()
        usage = x509.KeyUsage(
            True, False, key_type.startswith("RSA"), False, False, False, False, False, False
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"p{done}@bench.example")])
            )
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION]
                ),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName([x509.RFC822Name(f"p{done}@bench.example")]),
                critical=False,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        if lint_every:  # the S/MIME validators Certwright runs before it signs
            lint_certificate(cert, CertKind.CLIENT)
        pkcs12.serialize_key_and_certificates(b"bench", key, cert, [ca], encryption)
        done += 1
    out.put((done, time.perf_counter() - start, time.process_time() - cpu_start))


def raw_rate(
    key_type: str, lint_every: bool, seconds: float, processes: int = 2
) -> tuple[float, float]:
    """Keys + certificates (+ a pkilint run each) + PKCS#12 files per second over
    ``processes`` processes, and per CPU-second of those processes."""
    queue: Any = mp.get_context("spawn").Queue()
    procs = [
        mp.get_context("spawn").Process(
            target=_raw_worker, args=(key_type, lint_every, seconds, queue)
        )
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=seconds + 120) for _ in procs]
    for proc in procs:
        proc.join()
    return (
        sum(done / elapsed for done, elapsed, _ in results),
        sum(done for done, _, _ in results) / sum(cpu for _, _, cpu in results),
    )


# --- set-up (a child process inside the app) -------------------------------------------


def setup(n: int, out: Path) -> None:
    """Organization, delegated domain, CAs, a Client profile, and n invited persons per key
    type; writes [{email, code, key_type}] read from the outbox as people read their mail."""
    from sqlalchemy import select

    from app import create_app
    from app.extensions import db
    from app.models import CertType, LintMode, OutboxMessage
    from app.services.ca import authorities, profiles
    from app.services.persons import invitations, persons
    from app.services.scope import SYSTEM
    from app.services.structure import domains, orgs

    app = create_app()
    with app.app_context():
        org = orgs.create_org(actor=SYSTEM, data=orgs.OrgData(name="Bench", country="US"))
        domains.create_domain(
            actor=SYSTEM,
            name="bench.example",
            organization_id=org.id,
            department_id=None,
            types=[CertType.CLIENT],
        )
        root = authorities.create_ca(
            actor=SYSTEM,
            spec=authorities.CaSpec(
                name="Root", key_type="EC-P384", customer_name="Bench", country="US"
            ),
        )
        issuing = authorities.create_ca(
            actor=SYSTEM,
            spec=authorities.CaSpec(
                name="People",
                key_type="EC-P256",
                customer_name="Bench",
                country="US",
                parent_id=root.id,
                purpose="SMIME",
            ),
        )
        by_mode = {
            mode: profiles.create_profile(
                actor=SYSTEM,
                data=profiles.ProfileData(
                    name=f"People lint {mode}",
                    cert_type=CertType.CLIENT,
                    ca_id=issuing.id,
                    terms=(365,),
                    key_types=KEY_TYPES,
                    lint_mode=LintMode(mode),
                ),
            )
            for mode in LINT_MODES
        }
        db.session.commit()
        people = []
        for key_type, mode in RUNS:
            profile = by_mode[mode]
            for i in range(n):
                email = f"{key_type.lower()}-{mode}-{i}@bench.example"
                person = persons.create_person(
                    actor=SYSTEM,
                    data=persons.PersonData(
                        organization_id=org.id, email=email, first_name="P", last_name=str(i)
                    ),
                )
                invitations.send_invitation(
                    actor=SYSTEM,
                    person_id=person.id,
                    profile_id=profile.id,
                    term_days=365,
                    key_type=key_type,
                )
                people.append({"email": email, "key_type": key_type, "lint": mode})
        db.session.commit()
        for entry in people:
            body = db.session.execute(
                select(OutboxMessage.body).where(OutboxMessage.to == entry["email"])
            ).scalar_one()
            entry["code"] = re.search(r"one-time code: (\S+)", body).group(1)  # type: ignore[union-attr]
        out.write_text(json.dumps(people))


# --- (b) and (c) over HTTP -----------------------------------------------------------------


class Browser:
    """One person's browser: a cookie jar, no JavaScript."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> tuple[str, str]:
        with self.opener.open(self.base + path, timeout=120) as resp:
            return resp.read().decode(), resp.geturl()

    def post(self, path: str, form: dict[str, str]) -> tuple[bytes, str]:
        data = urllib.parse.urlencode(form).encode()
        with self.opener.open(self.base + path, data=data, timeout=120) as resp:
            return resp.read(), resp.geturl()


def register(base: str, person: dict[str, str]) -> dict[str, Any]:
    browser = Browser(base)
    page, _ = browser.get(f"/enroll/register?email={person['email']}")
    posted = time.time()
    body, progress = browser.post(
        "/enroll/register",
        {
            "csrf_token": _CSRF.search(page).group(1),  # type: ignore[union-attr]
            "email": person["email"],
            "code": person["code"],
            "pkcs12_password": P12_PASSWORD,
            "pkcs12_password_again": P12_PASSWORD,
            "passphrase": PASSPHRASE,
            "passphrase_again": PASSPHRASE,
            "eula": "y",
        },
    )
    answered = time.time()
    if "/enroll/progress/" not in progress:
        raise RuntimeError(f"registration refused for {person['email']}: {body[:400]!r}")
    polls = 0
    while True:  # the page reloads itself (meta refresh) until the file is ready
        page, _ = browser.get(urllib.parse.urlparse(progress).path)
        polls += 1
        if 'data-status="ready"' in page:
            break
        if 'data-status="pending"' not in page:
            raise RuntimeError(f"enrollment failed for {person['email']}: {page[:400]}")
        time.sleep(float(_REFRESH.search(page).group(1)))  # type: ignore[union-attr]
    action = re.search(r'action="(/enroll/download/[^"]+)"', page).group(1)  # type: ignore[union-attr]
    p12, _ = browser.post(action, {"csrf_token": _CSRF.search(page).group(1)})  # type: ignore[union-attr]
    if not p12.startswith(b"\x30"):  # a DER PKCS#12 (SEQUENCE), not an error page
        raise RuntimeError(f"no PKCS#12 for {person['email']}: {p12[:200]!r}")
    return {
        "posted": posted,
        "post_seconds": answered - posted,
        "p12": len(p12),
        "polls": polls,
        "collected": time.time(),
    }


def sample_pages(base: str, stop_at: threading.Event, out: list[float], clients: int = 2) -> None:
    """Fetch the portal's other pages until told to stop; seconds per request into out."""

    def client() -> None:
        browser = Browser(base)
        paths = ("/portal/", "/enroll/register")
        i = 0
        while not stop_at.is_set():
            start = time.perf_counter()
            browser.get(paths[i % 2])
            took = time.perf_counter() - start
            out.append(took)
            i += 1
            time.sleep(max(0.0, EVERY - took))  # a person clicking, not a load generator

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


EVERY = 0.1  # seconds between one sampling client's requests


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 20 else max(values)


def postgres_pids(database_url: str) -> list[int]:
    import psycopg

    with psycopg.connect(POSTGRES) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s",
            (database_url.rsplit("/", 1)[1],),
        ).fetchall()
    return [row[0] for row in rows]


def ready_times(database_url: str, emails: list[str]) -> list[float]:
    import psycopg

    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT e.ready_at FROM portal_enrollments e JOIN persons p ON p.id = e.person_id "
            "WHERE p.email = ANY(%s)",
            (emails,),
        ).fetchall()
    return [row[0].timestamp() for row in rows if row[0] is not None]


def job_runs(database_url: str, emails: list[str]) -> int:
    """How many portal_enrollment job runs packaged these registrations (a job adopted by
    another run counts for nothing): registrations / runs is the mean batch."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM jobs j WHERE j.id IN (SELECT e.job_id FROM portal_enrollments e "
            "JOIN persons p ON p.id = e.person_id WHERE p.email = ANY(%s)) "
            "AND j.status = 'done' AND (j.result -> 'adopted_by') IS NULL",
            (emails,),
        ).fetchone()
    return int(row[0]) if row else 0


def wait_for_workers(database_url: str, count: int, timeout: float = 60) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(database_url) as conn:
                alive = conn.execute(
                    "SELECT count(*) FROM worker_heartbeats WHERE kind = 'worker'"
                ).fetchone()[0]
            if alive >= count:
                return
        except psycopg.Error:
            pass
        time.sleep(0.2)
    raise RuntimeError("the dramatiq workers did not start in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, help="registrations per key type (default 50)")
    parser.add_argument("--smoke", action="store_true", help="N = 4, short windows (CI)")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--setup", help=argparse.SUPPRESS)  # child: write the invitations here
    args = parser.parse_args()
    n = args.n or (4 if args.smoke else 50)
    if args.setup:
        setup(n, Path(args.setup))
        return
    raw_seconds = 1.0 if args.smoke else 4.0
    info = machine()
    info["idle_before"] = round(idle_fraction(), 2)
    log(f"machine: {info['cpu']}, load {info['load_average']}, idle {info['idle_before']:.0%}")
    work = Path(tempfile.mkdtemp(prefix="cw-bench-portal-"))
    database = os.environ.get("BENCH_DATABASE") or f"cw_bench_portal_{os.getpid()}"
    import psycopg

    # Connected to the maintenance database when the run's database has a fixed name (it
    # may be the one BENCH_POSTGRES_URL names, and is dropped first).
    admin = psycopg.connect(
        f"{POSTGRES.rsplit('/', 1)[0]}/postgres" if os.environ.get("BENCH_DATABASE") else POSTGRES,
        autocommit=True,
    )
    if os.environ.get("BENCH_DATABASE"):
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    admin.execute(f'CREATE DATABASE "{database}"')
    redis_server, redis_url = start_redis(work)
    port = _free_port()
    database_url = f"{POSTGRES.rsplit('/', 1)[0]}/{database}"
    env = {
        **app_env(
            work,
            DATABASE_URL=database_url,
            BROKER_URL=redis_url,
            PORT=str(port),
            CW_WEB_WORKERS="2",
            CW_WEB_THREADS="32",  # docs/portal.md, "Running it"
        ),
        "CW_BASE_URL": f"http://127.0.0.1:{port}",
    }
    os.environ.update(env)
    base = env["CW_BASE_URL"]
    results: dict[str, Any] = {"machine": info, "n": n, "runs": []}
    web = workers = None
    try:
        flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
        subprocess.run(
            [*flask, "db", "upgrade"], cwd=REPO, env=env, check=True, capture_output=True
        )
        log(f"set-up: {n} invited persons per key type")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.portal",
                "--n",
                str(n),
                "--setup",
                str(work / "people.json"),
            ],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
        )
        people = json.loads((work / "people.json").read_text())
        web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=REPO,
            env=env,
            stdout=(work / "web.log").open("wb"),
            stderr=subprocess.STDOUT,
            process_group=0,  # in this session: see the workers below
        )
        # The deployment docs/portal.md recommends: keygen workers at a lower CPU priority
        # (nice 10), so that on shared cores the web processes answer first.
        workers = start_dramatiq(
            2, 1, work / "workers.log", queue="keygen", poll_ms=200, new_session=False
        )
        _wait_http(base + "/portal/")
        wait_for_workers(database_url, 2)
        for pid in process_tree(workers.pid):
            os.setpriority(os.PRIO_PROCESS, pid, 10)
        # With the kernel's autogroups (sched_autogroup_enabled, the default of most
        # distributions' kernels), a process's nice value only ranks it within its session,
        # and sessions share the CPU as equals: workers in a session of their own got half
        # of it against the web processes whatever their nice (docs/portal.md, "Running
        # it"). So the web processes and the workers run in this session, where nice 10
        # ranks the workers below the web processes; the session as a whole competes with
        # other users of a shared machine at its usual weight (niced as a session, the
        # workers got next to nothing there while other sessions were busy).
        for key_type, mode in RUNS:
            batch = [p for p in people if (p["key_type"], p["lint"]) == (key_type, mode)]
            raw_before, raw_cpu_before = raw_rate(key_type, mode == "every", raw_seconds)
            idle: list[float] = []
            stop_idle = threading.Event()
            timer = threading.Timer(2.0 if args.smoke else 8.0, stop_idle.set)
            timer.start()
            web_idle_before = cpu_seconds(process_tree(web.pid))
            sample_pages(base, stop_idle, idle)
            # The web processes' CPU per sampled page, on the idle server: the sampling
            # clients' pages during the run are charged to the registrations below, and
            # their number grows with the run's length (so with other load on the machine).
            page_cpu = (cpu_seconds(process_tree(web.pid)) - web_idle_before) / len(idle)
            loaded: list[float] = []
            stop_load = threading.Event()
            sampler = threading.Thread(target=sample_pages, args=(base, stop_load, loaded))
            sampler.start()
            web_tree, worker_tree = process_tree(web.pid), process_tree(workers.pid)
            pg = postgres_pids(database_url)
            cpu_before = (
                cpu_seconds(web_tree),
                cpu_seconds(worker_tree),
                time.process_time(),
                cpu_seconds(pg),
            )
            with ThreadPoolExecutor(max_workers=len(batch)) as pool:
                done = list(pool.map(lambda p: register(base, p), batch))
            stop_load.set()
            sampler.join()
            cpu = [
                cpu_seconds(web_tree) - cpu_before[0],
                cpu_seconds(worker_tree) - cpu_before[1],
                time.process_time() - cpu_before[2],
                cpu_seconds(pg) - cpu_before[3],
            ]
            ready = ready_times(database_url, [p["email"] for p in batch])
            runs = job_runs(database_url, [p["email"] for p in batch])
            raw_after, raw_cpu_after = raw_rate(key_type, mode == "every", raw_seconds)
            first = min(d["posted"] for d in done)
            rate = len(ready) / (max(ready) - first)
            raw = max(raw_before, raw_after)
            # CPU-normalised: registrations per CPU-second of web + workers + PostgreSQL
            # (the sampling clients' page loads included), against raw per CPU-second;
            # other load on a shared machine moves the wall-clock figures, hardly these.
            ours_cpu = len(done) / (cpu[0] + cpu[1] + cpu[3])
            raw_cpu = max(raw_cpu_before, raw_cpu_after)
            run = {
                "key_type": key_type,
                "lint": mode,
                "cpu_per_registration": {
                    "web": cpu[0] / len(done),
                    "web_without_sampling": max(0.0, cpu[0] - page_cpu * len(loaded)) / len(done),
                    "workers": cpu[1] / len(done),
                    "postgres": cpu[3] / len(done),
                    "bench_clients": cpu[2] / len(done),
                },
                "cpu_rate": ours_cpu,
                "raw_cpu_rate": raw_cpu,
                "cpu_ratio": ours_cpu / raw_cpu,
                "registrations": len(done),
                "job_runs": runs,
                "rate": rate,
                "raw_before": raw_before,
                "raw_after": raw_after,
                "ratio": rate / raw,
                "post_p95": p95([d["post_seconds"] for d in done]),
                # What a person sees: progress page loads, and POST -> file in hand.
                "polls_per_registration": sum(d["polls"] for d in done) / len(done),
                "collected_p95": p95([d["collected"] - d["posted"] for d in done]),
                "idle_p95": p95(idle),
                "idle_requests": len(idle),
                "load_p95": p95(loaded),
                "load_requests": len(loaded),
            }
            run["latency_ratio"] = run["load_p95"] / run["idle_p95"]
            results["runs"].append(run)
            log(
                f"{key_type} lint {mode}: {rate:.1f} registrations/s vs raw {raw:.1f}/s = {run['ratio']:.0%}; "
                f"other pages p95 {run['idle_p95'] * 1000:.0f} ms idle, {run['load_p95'] * 1000:.0f} ms under load; "
                f"CPU ms per registration: web {cpu[0] / len(done) * 1000:.0f} "
                f"({run['cpu_per_registration']['web_without_sampling'] * 1000:.0f} without the sampling clients' "
                f"{len(loaded)} pages at {page_cpu * 1000:.1f} ms each), workers {cpu[1] / len(done) * 1000:.0f}, "
                f"PostgreSQL {cpu[3] / len(done) * 1000:.0f}, bench clients {cpu[2] / len(done) * 1000:.0f}; "
                f"CPU-normalised {ours_cpu:.1f} vs raw {raw_cpu:.1f} per CPU-s = {ours_cpu / raw_cpu:.0%}; "
                f"{run['polls_per_registration']:.1f} progress page loads per registration, "
                f"POST to file in hand p95 {run['collected_p95']:.1f} s; "
                f"{runs} job runs (mean batch {len(done) / max(1, runs):.1f})"
            )
    finally:
        for proc in (workers, web):
            if proc is not None:
                stop(proc)
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.close()
        if redis_server is not None:
            redis_server.terminate()
            redis_server.wait(10)
    report(results, smoke=args.smoke)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    shutil.rmtree(work, ignore_errors=True)


def report(results: dict[str, Any], *, smoke: bool) -> None:
    print(
        f"\nPortal benchmark, {results['machine']['date']}, {results['machine']['cpu']}, N = {results['n']}"
    )
    print(
        "key type, lint | registrations/s | raw/s (before, after) | ratio | target | "
        "CPU-normalised ratio | other pages p95 idle -> load | x | target"
    )
    for run in results["runs"]:
        ok_rate = run["ratio"] >= TARGET_RATIO
        ok_latency = run["latency_ratio"] <= TARGET_LATENCY
        print(
            f"{run['key_type']}, {run['lint']} | {run['rate']:.1f} | {max(run['raw_before'], run['raw_after']):.1f} "
            f"({run['raw_before']:.1f}, {run['raw_after']:.1f}) | {run['ratio']:.0%} | "
            f"{'PASS' if ok_rate else 'FAIL'} (>= {TARGET_RATIO:.0%}) | {run['cpu_ratio']:.0%} | "
            f"{run['idle_p95'] * 1000:.0f} ms -> {run['load_p95'] * 1000:.0f} ms | "
            f"{run['latency_ratio']:.1f} | {'PASS' if ok_latency else 'FAIL'} (<= {TARGET_LATENCY:.0f}x)"
        )
    if smoke:
        print("(smoke run: every part works; the figures mean nothing at this size)")


def _free_port() -> int:
    """The first free port of BENCH_PORTS ("5120-5130", on a shared machine), else any the
    kernel gives."""
    import socket

    wanted = os.environ.get("BENCH_PORTS")
    for port in range(*(int(v) for v in wanted.split("-"))) if wanted else ():
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


if __name__ == "__main__":
    main()
