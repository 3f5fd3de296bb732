"""Issue 13's reports benchmark on PostgreSQL with synthetic certificates, against raw
references measured in the same run.

    python -m bench.reports [--count N] [--smoke] [--json FILE]

(a) dashboard: the dashboard's numbers (app.services.reports.dashboard.certificate_overview,
    which reads the summary tables kept by triggers, folded once after the fill as the
    dashboard_counts job does) for an MRAO and for an RAO of an organization holding 10% of
    the certificates, p95 of repeated calls, against the same numbers computed by
    hand-written SQL over the certificates through psycopg (the run first asserts that the
    summary's numbers equal dashboard.direct_overview's);
(b) the SSL certificates report to CSV: start_report + every chunk built in this process
    (generation.build_here, what the report_chunk actor runs) + the download stream written
    to a file, against a raw psycopg server-side cursor of the same columns written with
    csv.writer (and, for information, COPY ... TO STDOUT WITH CSV); with the process's
    memory growth;
(c) the same report's chunks built by one process and by two (each a fresh process with
    its own app, as two worker processes would run the report_chunk jobs).

Targets (issue 13): (a) p95 <= 5x the raw queries; (b) <= 2x the raw reference, memory
growth <= 100 MB; (c) 1 -> 2 processes >= 1.6x.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import multiprocessing
import os
import random
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import (
    POSTGRES,
    REPO,
    app_env,
    cpu_seconds,
    log,
    machine,
    machine_busy_seconds,
)

ORGS = 10  # the first holds 10% of the certificates, the others share the rest
ISSUERS = ("Acme Issuing CA", "Let's Encrypt R11", "DigiCert TLS RSA", "Sectigo RSA DV", "Self")
KEYS = (("EC-P256", "ecdsa-with-SHA256"), ("RSA-2048", "sha256WithRSAEncryption"))
TYPES = (("ssl", 80), ("client", 10), ("device", 5), ("code_signing", 5))
RAW_SELECT = """
SELECT c.id, c.common_name, o.name, d.name,
       CASE WHEN c.status = 'Issued' AND c.not_after < %(now)s THEN 'Expired' ELSE c.status END,
       c.origin, p.name, c.issuer_cn, c.serial_hex, c.not_before, c.not_after, c.key_type,
       c.signature_algorithm, c.sans, c.revoked_at, c.revocation_reason, c.auto_renew,
       c.fingerprint
FROM certificates c
LEFT JOIN organizations o ON o.id = c.organization_id
LEFT JOIN departments d ON d.id = c.department_id
LEFT JOIN certificate_profiles p ON p.id = c.profile_id
WHERE c.cert_type = 'ssl'
ORDER BY c.id
"""


class RssPeak:
    """The process's resident memory, sampled every 20 ms while a block runs."""

    def __init__(self) -> None:
        import threading

        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def now() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def __enter__(self) -> RssPeak:
        self.start = self.now()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.now())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def create_database() -> tuple[str, str]:
    """A fresh database named after BENCH_POSTGRES_URL's (``<name>_reports_<hex>``), so a
    run stays inside the names it was given."""
    import psycopg

    base_name = POSTGRES.rsplit("/", 1)[1].split("?", 1)[0] or "bench"
    name = f"{base_name}_reports_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES.rsplit("/", 1)[0]
    return name, f"{base}/{name}"


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fill(count: int) -> tuple[list[int], int]:
    """``count`` synthetic certificates spread over ORGS organizations, types, issuers,
    keys and expiries (a year past to two years ahead); the org ids and the 10% one."""
    from app.extensions import db
    from app.models import Certificate, CertOrigin, CertStatus
    from app.models.types import utcnow
    from app.services import bulk
    from app.services.scope import SYSTEM
    from app.services.structure import orgs

    org_ids = []
    for i in range(ORGS):
        org = orgs.create_org(actor=SYSTEM, data=orgs.OrgData(name=f"Bench Org {i}", country="DE"))
        org_ids.append(org.id)
    db.session.commit()
    rng = random.Random(13)
    weights = [10] + [90 / (ORGS - 1)] * (ORGS - 1)
    type_names = [t for t, _ in TYPES]
    type_weights = [w for _, w in TYPES]
    now = utcnow()
    batch: list[dict[str, Any]] = []
    for i in range(count):
        name = f"host{i}.bench.example"
        key_type, signature = KEYS[i % len(KEYS)]
        not_after = now + dt.timedelta(days=rng.randint(-365, 730), seconds=i % 86_400)
        status = (
            CertStatus.REVOKED
            if i % 50 == 0
            else (CertStatus.ISSUED if i % 3 == 0 else CertStatus.EXTERNAL)
        )
        batch.append(
            {
                "fingerprint": hashlib.sha256(name.encode()).hexdigest(),
                "der": b"\x30\x00",
                "cert_type": rng.choices(type_names, type_weights)[0],
                "origin": CertOrigin.ISSUED
                if status != CertStatus.EXTERNAL
                else CertOrigin.DISCOVERED,
                "status": status,
                "organization_id": rng.choices(org_ids, weights)[0],
                "serial_hex": f"{i:016x}",
                "subject_dn": f"CN={name}",
                "common_name": name,
                "issuer_cn": ISSUERS[i % len(ISSUERS)],
                "issuer_dn": f"CN={ISSUERS[i % len(ISSUERS)]}",
                "sans": [name],
                "not_before": not_after - dt.timedelta(days=90),
                "not_after": not_after,
                "key_type": key_type,
                "key_algorithm": key_type.split("-")[0],
                "signature_algorithm": signature,
                # added over the last fourteen months ("requests vs issued")
                "created_at": now - dt.timedelta(days=rng.randint(0, 425), seconds=i % 86_400),
            }
        )
        if len(batch) == 20_000:
            bulk.insert_rows(Certificate.__table__, batch)
            db.session.commit()
            batch = []
    if batch:
        bulk.insert_rows(Certificate.__table__, batch)
        db.session.commit()
    db.session.execute(db.text("ANALYZE certificates"))
    db.session.commit()
    return org_ids, org_ids[0]


def backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a PostgreSQL backend so far, from /proc."""
    return cpu_seconds([pid])


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1] if len(samples) >= 2 else samples[0]


def raw_dashboard(url: str, org_ids: list[int] | None) -> None:
    """Every number of the dashboard page (dashboard.page) by hand-written SQL over the
    base tables, the certificates included (what certificate_overview and
    requests_vs_issued read from their summaries; dashboard.direct_overview and
    direct_requests_vs_issued are the same in SQLAlchemy): each group by an indexed or
    sequential scan, the expiry windows and weeks as indexed range counts over whole UTC
    days, certificates added per month by a scan (created_at has no index), and the
    number cards, welcome checklist, delegations, requests, discovery trend and top risks
    over their own tables."""
    import psycopg

    now = dt.datetime.now(dt.UTC)
    today = dt.datetime(now.year, now.month, now.day, tzinfo=dt.UTC)
    where = "organization_id IS NOT NULL"
    params: dict[str, Any] = {"now": now}
    scoped = "TRUE"
    if org_ids is not None:
        where = "organization_id = ANY(%(orgs)s)"
        scoped = where
        params["orgs"] = org_ids
    with psycopg.connect(url) as conn:
        # Number cards (and, for an MRAO, the jobs under way).
        conn.execute(
            "SELECT count(*) FROM organizations WHERE "
            + ("TRUE" if org_ids is None else "id = ANY(%(orgs)s)"),
            params,
        ).fetchone()
        conn.execute(f"SELECT count(*) FROM departments WHERE {scoped}", params).fetchone()
        conn.execute(
            "SELECT count(*) FROM domains d WHERE "
            + (
                "TRUE"
                if org_ids is None
                else "EXISTS (SELECT 1 FROM delegations g WHERE g.domain_id = d.id "
                "AND g.organization_id = ANY(%(orgs)s))"
            ),
            params,
        ).fetchone()
        conn.execute(
            f"SELECT count(*) FROM delegations WHERE status = 'Requested' AND {scoped}", params
        ).fetchone()
        conn.execute(
            "SELECT count(*) FROM admins a WHERE "
            + (
                "TRUE"
                if org_ids is None
                else "EXISTS (SELECT 1 FROM admin_scopes s WHERE s.admin_id = a.id) AND NOT "
                "EXISTS (SELECT 1 FROM admin_scopes s WHERE s.admin_id = a.id "
                "AND NOT s.organization_id = ANY(%(orgs)s))"
            ),
            params,
        ).fetchone()
        conn.execute(
            "SELECT count(DISTINCT f.certificate_id) FROM certificate_findings f "
            "JOIN certificates c ON c.id = f.certificate_id WHERE f.code = ANY(%(codes)s) "
            f"AND c.{where}",
            {**params, "codes": ["weak_key_size", "roca", "close_primes", "blocked_key"]},
        ).fetchone()
        if org_ids is None:
            conn.execute(
                "SELECT count(*) FROM jobs WHERE status IN ('pending', 'running')"
            ).fetchone()
        # The welcome checklist: one row or none each.
        for query in (
            "SELECT id FROM organizations WHERE coalesce(city, '') = '' "
            "AND coalesce(state, '') = '' "
            + ("" if org_ids is None else "AND id = ANY(%(orgs)s) ")
            + "ORDER BY id LIMIT 1",
            "SELECT id FROM organizations "
            + ("" if org_ids is None else "WHERE id = ANY(%(orgs)s) ")
            + "LIMIT 1",
            "SELECT id FROM domains LIMIT 1",
            f"SELECT id FROM delegations WHERE status = 'Approved' AND ssl AND {scoped} LIMIT 1",
            "SELECT id FROM certificate_authorities WHERE status = 'Active' "
            "AND parent_id IS NULL LIMIT 1",
            "SELECT id FROM certificate_authorities WHERE status = 'Active' "
            "AND parent_id IS NOT NULL LIMIT 1",
            "SELECT id FROM certificate_profiles WHERE cert_type = 'ssl' AND active LIMIT 1",
            f"SELECT id FROM certificate_requests WHERE cert_type = 'ssl' AND {scoped} LIMIT 1",
            f"SELECT id FROM certificates WHERE cert_type = 'ssl' AND origin = 'Issued' "
            f"AND {where} LIMIT 1",
        ):
            conn.execute(query, params).fetchone()
        # Certificate numbers.
        conn.execute(
            "SELECT CASE WHEN status = 'Issued' AND not_after < %(now)s THEN 'Expired' "
            f"ELSE status END, count(*) FROM certificates WHERE {where} GROUP BY 1",
            params,
        ).fetchall()
        for column in ("cert_type", "key_type", "issuer_cn", "signature_algorithm", "origin"):
            conn.execute(
                f"SELECT {column}, count(*) FROM certificates WHERE {where} GROUP BY 1", params
            ).fetchall()
        live = f"{where} AND status IN ('Issued', 'External') AND not_after >= %(now)s"
        for start, end in ((0, 7), (7, 30), (30, 60), (60, 90)):
            conn.execute(
                f"SELECT count(*) FROM certificates WHERE {live} "
                "AND not_after >= %(a)s AND not_after < %(b)s",
                {
                    **params,
                    "a": today + dt.timedelta(days=start),
                    "b": today + dt.timedelta(days=end),
                },
            ).fetchone()
        conn.execute(
            "SELECT floor(extract(epoch FROM not_after - %(today)s) / 604800), count(*) "
            f"FROM certificates WHERE {live} AND not_after < %(horizon)s GROUP BY 1",
            {**params, "today": today, "horizon": today + dt.timedelta(days=364)},
        ).fetchall()
        conn.execute(
            f"SELECT count(*) FROM certificate_requests WHERE status = 'Requested' AND {scoped}",
            params,
        )
        # Delegations by state.
        conn.execute(
            f"SELECT status, count(*) FROM delegations WHERE {scoped} GROUP BY 1", params
        ).fetchall()
        # Requests vs issued: the last twelve UTC months.
        first = dt.date(today.year, today.month, 1)
        for _ in range(11):
            first = (first - dt.timedelta(days=1)).replace(day=1)
        since = dt.datetime(first.year, first.month, 1, tzinfo=dt.UTC)
        month = "date_trunc('month', created_at AT TIME ZONE 'UTC')"
        conn.execute(
            f"SELECT {month}, count(*) FROM certificate_requests WHERE {scoped} "
            "AND created_at >= %(since)s GROUP BY 1",
            {**params, "since": since},
        ).fetchall()
        conn.execute(
            f"SELECT {month}, count(*) FROM certificates WHERE {where} AND origin = 'Issued' "
            "AND created_at >= %(since)s GROUP BY 1",
            {**params, "since": since},
        ).fetchall()
        # Pending approvals by type and wait.
        conn.execute(
            "SELECT cert_type, CASE WHEN created_at > %(now)s - interval '1 day' THEN 0 "
            "WHEN created_at > %(now)s - interval '7 days' THEN 1 "
            "WHEN created_at > %(now)s - interval '30 days' THEN 2 ELSE 3 END, count(*) "
            f"FROM certificate_requests WHERE status = 'Requested' AND {scoped} GROUP BY 1, 2",
            params,
        ).fetchall()
        # Discovery trend: the last 30 finished runs.
        conn.execute(
            "SELECT r.id, t.name, r.finished_at, r.counts FROM scan_runs r "
            "JOIN discovery_tasks t ON t.id = r.task_id WHERE r.finished_at IS NOT NULL "
            + ("" if org_ids is None else "AND t.organization_id = ANY(%(orgs)s) ")
            + "ORDER BY r.finished_at DESC, r.id DESC LIMIT 30",
            params,
        ).fetchall()
        # Top risks, by type.
        served = (
            "c.id IN (SELECT e.certificate_id FROM endpoints e LEFT JOIN (SELECT task_id, "
            "max(id) AS run_id FROM scan_runs WHERE finished_at IS NOT NULL GROUP BY task_id) l "
            "ON l.task_id = e.task_id WHERE e.certificate_id IS NOT NULL AND e.last_run_id "
            "IS NOT NULL AND e.last_run_id >= coalesce(l.run_id, 0))"
        )
        for risk in (
            f"c.not_after < %(now)s AND {served}",
            "c.id IN (SELECT certificate_id FROM certificate_findings WHERE code = ANY("
            "ARRAY['weak_key_size', 'roca', 'close_primes', 'blocked_key', 'debian_weak_key']))",
            "c.id IN (SELECT certificate_id FROM certificate_findings "
            "WHERE code = 'weak_signature')",
            f"c.is_self_signed AND {served}",
        ):
            conn.execute(
                f"SELECT c.cert_type, count(*) FROM certificates c WHERE c.{where} AND {risk} "
                "GROUP BY 1",
                params,
            ).fetchall()


def timed(fn: Any, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return samples


def raw_report(url: str, out: Path) -> dict[str, float]:
    """The reference: a server-side cursor + csv.writer; and COPY TO STDOUT (information).
    Seconds, rows, and the CPU seconds of this process and of its PostgreSQL backend."""
    import psycopg

    now = dt.datetime.now(dt.UTC)
    rows = 0
    with psycopg.connect(url) as conn, out.open("w", newline="", encoding="utf-8") as f:
        backend = conn.info.backend_pid
        started, cpu, db_cpu = time.perf_counter(), time.process_time(), backend_cpu(backend)
        writer = csv.writer(f, lineterminator="\r\n")
        with conn.cursor(name="bench") as cursor:
            cursor.itersize = 2000
            cursor.execute(RAW_SELECT, {"now": now})
            for row in cursor:
                writer.writerow(row)
                rows += 1
        f.flush()
        reference = time.perf_counter() - started
        reference_cpu = time.process_time() - cpu
        reference_db_cpu = backend_cpu(backend) - db_cpu
    started = time.perf_counter()
    with psycopg.connect(url) as conn, out.open("wb") as f:
        cursor = conn.cursor()
        query = RAW_SELECT.replace("%(now)s", "now()")
        with cursor.copy(f"COPY ({query}) TO STDOUT WITH CSV") as copy:
            for block in copy:
                f.write(block)
    return {
        "seconds": reference,
        "cpu": reference_cpu,
        "database_cpu": reference_db_cpu,
        "copy_seconds": time.perf_counter() - started,
        "rows": rows,
    }


def _build_share(
    env: dict[str, str], report_id: int, seqs: list[int], ready: Any, results: Any
) -> None:
    """A worker process's share of a report's chunks: its own app (started before the
    clock: both processes wait at ``ready``), build_chunk per seq. Puts its wall-clock
    span and the CPU seconds it and its PostgreSQL backend spent on ``results``."""
    os.environ.update(env)
    sys.path.insert(0, str(REPO))
    from app import create_app
    from app.config import Config
    from app.extensions import db
    from app.services.reports import generation

    app = create_app(Config())
    with app.app_context():
        backend = int(db.session.execute(db.text("SELECT pg_backend_pid()")).scalar_one())
        db.session.commit()
        ready.wait()
        busy = machine_busy_seconds()
        started, cpu, db_cpu = time.time(), time.process_time(), backend_cpu(backend)
        for seq in seqs:
            generation.build_chunk(report_id=report_id, seq=seq)
            db.session.commit()
        results.put(
            (
                started,
                time.time(),
                time.process_time() - cpu,
                backend_cpu(backend) - db_cpu,
                busy,
                machine_busy_seconds(),
            )
        )


def parallel_build(env: dict[str, str], processes: int, chunk_rows: int) -> dict[str, float]:
    """The report's chunks shared by ``processes`` fresh processes, timed from when all
    are ready (as long-running workers would be): the wall-clock span, the workers' CPU
    seconds and their PostgreSQL backends' CPU seconds (summed)."""
    from app.extensions import db
    from app.models import Report
    from app.services.reports import generation
    from app.services.scope import SYSTEM

    report = generation.start_report(
        actor=SYSTEM, report_type="ssl_certificates", fmt="csv", chunk_rows=chunk_rows
    )
    db.session.commit()
    shares = [list(range(p, report.chunks_total, processes)) for p in range(processes)]
    context = multiprocessing.get_context("spawn")
    ready, results = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=_build_share, args=(env, report.id, share, ready, results))
        for share in shares
    ]
    for worker in workers:
        worker.start()
    spans = [results.get(timeout=3600) for _ in workers]
    for worker in workers:
        worker.join()
        assert worker.exitcode == 0, worker.exitcode
    db.session.expire_all()
    assert db.session.get(Report, report.id).status == "done"
    seconds = max(s[1] for s in spans) - min(s[0] for s in spans)
    ours = sum(s[2] + s[3] for s in spans)
    busy = max(s[5] for s in spans) - min(s[4] for s in spans)
    return {
        "seconds": seconds,
        "worker_cpu": sum(s[2] for s in spans),
        "database_cpu": sum(s[3] for s in spans),
        "busiest_worker_seconds": max(s[1] - s[0] for s in spans),
        # CPU the machine's other processes used meanwhile (all cores busy minus ours)
        "others_cpu": max(0.0, busy - ours),
        "others_cores": max(0.0, busy - ours) / seconds if seconds else 0.0,
    }


def run(count: int, runs: int, chunk_rows: int, work: Path) -> dict[str, Any]:
    load_before = os.getloadavg()
    log(f"load average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    name, url = create_database()
    env = app_env(
        work,
        DATABASE_URL=url.replace("postgresql://", "postgresql+psycopg://"),
        CW_REPORT_CHUNK_ROWS=str(chunk_rows),
    )
    os.environ.update(env)
    try:
        from sqlalchemy import select

        from app import create_app
        from app.config import Config
        from app.extensions import db
        from app.models import Admin, CertType, Report, Role
        from app.services.accounts import admins
        from app.services.reports import counts, dashboard, generation
        from app.services.scope import SYSTEM
        from bench.harness import database_backends, migrate

        app = create_app(Config())
        with app.app_context():
            migrate()
            log(f"filling {count:,} synthetic certificates")
            started = time.perf_counter()
            _org_ids, ten = fill(count)
            fill_seconds = time.perf_counter() - started
            log(f"    {fill_seconds:.1f} s (the summary tables' triggers included)")
            mrao = admins.create_admin(
                actor=SYSTEM,
                login="bench-mrao",
                email="m@example.com",
                role=Role.MRAO,
                password="bench-password-1",
                grants=[],
            )
            rao = admins.create_admin(
                actor=SYSTEM,
                login="bench-rao",
                email="r@example.com",
                role=Role.RAO,
                password="bench-password-1",
                grants=[admins.Grant(ten, None, frozenset(CertType))],
            )
            db.session.commit()
            mrao = db.session.execute(select(Admin).where(Admin.login == "bench-mrao")).scalar_one()
            rao = db.session.execute(select(Admin).where(Admin.login == "bench-rao")).scalar_one()
            started = time.perf_counter()
            folded = counts.fold()  # what the dashboard_counts job does every ten minutes
            db.session.commit()
            fold_seconds = time.perf_counter() - started
            # The fold rewrote every summary row; autovacuum (5,000 dead rows, migration
            # 0026) would vacuum both tables within its next nap: do it now.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(db.text("VACUUM ANALYZE certificate_counts"))
                conn.execute(db.text("VACUUM ANALYZE certificate_expiry_counts"))
            log(
                f"    summary rows folded in {fold_seconds:.1f} s: "
                f"{folded['rows_before']:,} -> {folded['rows_after']:,}, expiry "
                f"{folded['expiry_rows_before']:,} -> {folded['expiry_rows_after']:,}"
            )
            # As a web process does once started (gunicorn.conf.py): what start-up built is
            # kept out of the garbage collector's full collections, which otherwise take
            # 150 ms now and then in this process (the fill's and the app's objects).
            from app.runtime.context import freeze_startup_objects

            freeze_startup_objects()
            log(f"(a) dashboard, {runs} calls each")
            figures_a = {}
            for label, who, raw_orgs in (("mrao", mrao, None), ("rao_10pct", rao, [ten])):
                now = dt.datetime.now(dt.UTC)
                summed = dashboard.certificate_overview(actor=who, now=now)
                direct = dashboard.direct_overview(actor=who, now=now)
                summed.awaiting_approval = direct.awaiting_approval
                assert summed == direct, (label, summed, direct)  # same numbers, or no figure
                months = dashboard.requests_vs_issued(actor=who)
                assert months == dashboard.direct_requests_vs_issued(actor=who), label
                assert sum(m.issued for m in months) > 0, label
                # The whole page's data: every panel the admin sees.
                ours = timed(lambda who=who: dashboard.page(actor=who), runs)
                raw = timed(lambda o=raw_orgs: raw_dashboard(url, o), runs)
                figures_a[label] = {
                    "p50_ms": statistics.median(ours) * 1000,
                    "raw_p50_ms": statistics.median(raw) * 1000,
                    "p95_ms": p95(ours) * 1000,
                    "raw_p95_ms": p95(raw) * 1000,
                    "ratio": p95(ours) / p95(raw),
                }
                log(
                    f"    {label}: p95 {p95(ours) * 1000:.1f} ms "
                    f"(median {statistics.median(ours) * 1000:.1f}), "
                    f"raw {p95(raw) * 1000:.1f} ms (median {statistics.median(raw) * 1000:.1f})"
                )
            db.session.commit()
            log("(b) SSL certificates report to CSV")
            raw_b = raw_report(url, work / "raw.csv")
            reference, copy_seconds, raw_rows = (
                raw_b["seconds"],
                raw_b["copy_seconds"],
                raw_b["rows"],
            )
            log(
                f"    raw csv.writer {reference:.2f} s ({raw_rows:,} rows; CPU "
                f"{raw_b['cpu'] / raw_rows * 1e6:.1f} us/row here + "
                f"{raw_b['database_cpu'] / raw_rows * 1e6:.1f} us/row PostgreSQL), "
                f"COPY {copy_seconds:.2f} s"
            )
            backends = database_backends()
            with RssPeak() as memory:
                db_cpu = cpu_seconds(backends)
                cpu = time.process_time()
                started = time.perf_counter()
                report = generation.start_report(
                    actor=SYSTEM, report_type="ssl_certificates", fmt="csv"
                )
                db.session.commit()
                report = generation.build_here(report_id=report.id)
                download = generation.download(actor=SYSTEM, report_id=report.id)
                db.session.commit()
                written = 0
                with (work / "report.csv").open("wb") as f:
                    for block in download.chunks:
                        f.write(block)
                        written += len(block)
                ours = time.perf_counter() - started
                ours_cpu = time.process_time() - cpu
                ours_db_cpu = cpu_seconds(backends) - db_cpu
            rows = db.session.get(Report, report.id).row_count
            assert rows == raw_rows, (rows, raw_rows)
            growth = memory.peak - memory.start
            log(
                f"    Certwright {ours:.2f} s, {written / 1e6:,.0f} MB, memory +{growth / 1e6:.0f} MB"
                f" (CPU {ours_cpu / rows * 1e6:.1f} us/row here + "
                f"{ours_db_cpu / rows * 1e6:.1f} us/row PostgreSQL)"
            )
            log("(c) the report's chunks built by 1 and by 2 processes")
            built = {n: parallel_build(env, n, chunk_rows) for n in (1, 2)}
            one, two = built[1]["seconds"], built[2]["seconds"]
            for n, figures in built.items():
                log(
                    f"    {n} process(es) {figures['seconds']:.2f} s: CPU workers "
                    f"{figures['worker_cpu']:.2f} s ({figures['worker_cpu'] / rows * 1e6:.1f} us/row),"
                    f" PostgreSQL {figures['database_cpu']:.2f} s "
                    f"({figures['database_cpu'] / rows * 1e6:.1f} us/row); other processes used "
                    f"{figures['others_cores']:.2f} of the cores meanwhile"
                )
            db.session.remove()
            db.engine.dispose()
    finally:
        drop_database(name)
    load_after = os.getloadavg()
    log(f"load average {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    return {
        "machine": machine(),
        "load_before": load_before,
        "load_after": load_after,
        "count": count,
        "ssl_rows": raw_rows,
        "chunk_rows": chunk_rows,
        "dashboard": figures_a,
        "fill_seconds": fill_seconds,
        "fold_seconds": fold_seconds,
        "summary_rows": folded,
        "report_seconds": ours,
        "raw_csv_writer_seconds": reference,
        "raw_copy_seconds": copy_seconds,
        "report_ratio": ours / reference,
        "report_bytes": written,
        "memory_growth_bytes": growth,
        "report_cpu_seconds": ours_cpu,
        "report_database_cpu_seconds": ours_db_cpu,
        "raw_csv_writer_cpu_seconds": raw_b["cpu"],
        "raw_csv_writer_database_cpu_seconds": raw_b["database_cpu"],
        "one_process_seconds": one,
        "two_processes_seconds": two,
        "processes": built,
        "speedup": one / two,
        "targets": {
            "(a) dashboard MRAO p95 <= 5x raw": figures_a["mrao"]["ratio"] <= 5,
            "(a) dashboard RAO 10% p95 <= 5x raw": figures_a["rao_10pct"]["ratio"] <= 5,
            "(a) dashboard MRAO p95 < 100 ms": figures_a["mrao"]["p95_ms"] < 100,
            "(a) dashboard RAO 10% p95 < 100 ms": figures_a["rao_10pct"]["p95_ms"] < 100,
            "(b) report <= 2x raw csv.writer": ours / reference <= 2,
            "(b) memory growth <= 100 MB": growth <= 100e6,
            "(c) 1 -> 2 processes >= 1.6x": one / two >= 1.6,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20, help="dashboard calls per viewer")
    parser.add_argument("--chunk-rows", type=int, default=20_000)
    parser.add_argument("--smoke", action="store_true", help="3,000 certificates: every part runs")
    parser.add_argument("--json", type=Path, default=None)
    options = parser.parse_args()
    count, runs, chunk = (
        (3000, 3, 500) if options.smoke else (options.count, options.runs, options.chunk_rows)
    )
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"cw-bench-reports-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    figures = run(count, runs, chunk, work)
    for target, met in figures["targets"].items():
        print(f"{'PASS' if met else 'FAIL':6} {target}")
    dash = figures["dashboard"]
    print(
        f"dashboard p95 MRAO {dash['mrao']['p95_ms']:.1f} ms (raw {dash['mrao']['raw_p95_ms']:.1f}),"
        f" RAO {dash['rao_10pct']['p95_ms']:.1f} ms (raw {dash['rao_10pct']['raw_p95_ms']:.1f}); "
        f"report {figures['ssl_rows']:,} rows {figures['report_seconds']:.2f} s "
        f"({figures['report_ratio']:.2f}x raw {figures['raw_csv_writer_seconds']:.2f} s, COPY "
        f"{figures['raw_copy_seconds']:.2f} s), memory +{figures['memory_growth_bytes'] / 1e6:.0f} MB;"
        f" 1 -> 2 processes {figures['speedup']:.2f}x"
    )
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
