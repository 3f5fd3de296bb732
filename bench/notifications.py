"""Issue 12's notification sweep benchmark on PostgreSQL, against a reference measured in
the same run on the same data.

    python -m bench.notifications [--count N] [--smoke] [--json FILE]

The data: N certificates (synthetic rows copied in SQL from one real certificate, default
1,000,000) with expiries spread over two years (from 30 days ago), 10 organizations with
two departments each, an MRAO, an RAO per organization and a DRAO per department, and 20
expiry rules: one per certificate type for the whole account, one per organization, six
for departments (two of them daily), with role and subscriber recipients.

(ref) one hand-written INSERT ... SELECT ... ON CONFLICT DO NOTHING computing every due
      delivery of the 20 rules (into a copy of notification_deliveries with its indexes and
      unique key), timed twice (before and after the sweeps), the faster one counts;
(1w)  the full sweep with 1 dramatiq worker process: start_sweep() -> every id-range job
      done (the time the inventory's due deliveries take to be written; composing mail
      comes after and is not timed); its deliveries are checked against the reference's,
      row for row;
(2w)  the same on an emptied deliveries table with 2 worker processes;
(2nd) a second sweep the same day (as of the same instant) with 2 worker processes: it
      must create nothing.

Targets (issue 12): (2w) <= 2 x (ref); (2nd) <= 0.5 x (ref); (1w) / (2w) >= 1.6.
It needs PostgreSQL (BENCH_POSTGRES_URL, where it creates and drops a database) and
`redis-server` (a private one on a unix socket).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.harness import (
    POSTGRES,
    app_env,
    idle_fraction,
    log,
    machine,
    start_dramatiq,
    start_redis,
    stop,
    wait_for_workers,
)

ORGS = 10
PASSWORD = "Bench-notify-2026!pw"
SPREAD_MINUTES = 730 * 24 * 60  # expiries over two years
KEY = ("rule_id", "subject_key", "threshold", "occurrence", "stage", "channel", "recipient")


def create_database() -> tuple[str, str]:
    import secrets

    import psycopg

    name = f"cw_bench_notify_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return name, f"{base}/{name}"


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- the data ---------------------------------------------------------------------------


def seed(count: int) -> dict[str, Any]:
    """Organizations, administrators, N certificates, 20 rules; what the reference needs."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from sqlalchemy import text

    from app.extensions import db
    from app.models import Certificate, CertOrigin, CertStatus, CertType, Role
    from app.models.types import utcnow
    from app.services.accounts import admins
    from app.services.notifications import rules
    from app.services.scope import SYSTEM
    from app.services.structure import orgs

    org_ids, dept_ids = [], []
    admins.create_admin(
        actor=SYSTEM, login="bench-mrao", email="mrao@bench.example", role=Role.MRAO,
        password=PASSWORD,
    )  # fmt: skip
    for i in range(ORGS):
        org = orgs.create_org(actor=SYSTEM, data=orgs.OrgData(name=f"Org {i}", country="DE"))
        org_ids.append(org.id)
        admins.create_admin(
            actor=SYSTEM, login=f"rao{i}", email=f"rao{i}@bench.example", role=Role.RAO,
            password=PASSWORD,
            grants=[admins.Grant(org.id, None, frozenset({CertType.SSL, CertType.CLIENT}))],
        )  # fmt: skip
        for name in ("IT", "Web"):
            dept = orgs.create_dept(actor=SYSTEM, organization_id=org.id, name=name)
            dept_ids.append(dept.id)
            admins.create_admin(
                actor=SYSTEM, login=f"drao{i}{name.lower()}",
                email=f"drao{i}{name.lower()}@bench.example", role=Role.DRAO, password=PASSWORD,
                grants=[admins.Grant(org.id, dept.id, frozenset({CertType.SSL}))],
            )  # fmt: skip
    db.session.commit()

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "template.bench.example")])
    now = utcnow()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3000))
        .sign(key, hashes.SHA256())
    )
    template = Certificate(
        fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
        der=cert.public_bytes(serialization.Encoding.DER),
        cert_type=CertType.SSL,
        origin=CertOrigin.DISCOVERED,
        status=CertStatus.EXTERNAL,
        organization_id=org_ids[0],
        serial_hex=f"{cert.serial_number:x}",
        subject_dn="CN=template.bench.example",
        common_name="template.bench.example",
        issuer_dn="CN=template.bench.example",
        issuer_cn="template.bench.example",
        sans=["template.bench.example"],
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=3000),  # outside every window
        is_self_signed=True,
    )
    db.session.add(template)
    db.session.commit()

    overrides = {
        "fingerprint": "lpad(to_hex(g), 64, '0')",
        "serial_hex": "to_hex(g)",
        "common_name": "'host' || g || '.bench.example'",
        "cert_type": "(CASE g % 10 WHEN 0 THEN 'client' WHEN 1 THEN 'device' "
        "WHEN 2 THEN 'code_signing' ELSE 'ssl' END)",
        "status": "(CASE WHEN g % 25 = 0 THEN 'Revoked' WHEN g % 5 = 0 THEN 'Issued' "
        "ELSE 'External' END)",
        "organization_id": "(:orgs)[g % 10 + 1]",
        "department_id": "(CASE (g / 10) % 3 WHEN 2 THEN NULL "
        "ELSE (:depts)[(g % 10) * 2 + (g / 10) % 3 + 1] END)",
        # A permutation of the minutes of two years, so that id ranges and expiries are
        # unrelated; from 30 days ago (some expired already).
        "not_after": "(:start + ((g::bigint * 7919) % :spread) * interval '1 minute')",
        "origin": "'Discovered'",
    }
    columns = [c.name for c in Certificate.__table__.columns if c.name != "id"]
    values = ", ".join(overrides.get(c, f"t.{c}") for c in columns)
    log(f"inserting {count:,} certificates")
    started = time.perf_counter()
    db.session.execute(
        text(
            f"INSERT INTO certificates ({', '.join(columns)}) SELECT {values} "
            "FROM certificates t, generate_series(1, :count) g WHERE t.id = :template"
        ),
        {
            "orgs": org_ids,
            "depts": dept_ids,
            "start": now - timedelta(days=30),
            "spread": SPREAD_MINUTES,
            "count": count,
            "template": template.id,
        },
    )
    db.session.commit()
    log(f"    {time.perf_counter() - started:.1f} s")

    specs: list[dict[str, Any]] = []
    for kind in ("ssl", "client", "device", "code_signing"):
        specs.append(
            {"name": f"Account {kind}", "type": f"{kind}_expiration", "applies_to_all": True,
             "days": (60, 30, 14, 7, 1, 0), "roles": ["mrao"],
             "subscribers": [f"pki-{kind}@bench.example"]}
        )  # fmt: skip
    for i, org_id in enumerate(org_ids):
        specs.append(
            {"name": f"Org {i} SSL", "type": "ssl_expiration", "places": [(org_id, None)],
             "days": (30, 7, 1), "roles": ["admins"], "subscribers": [f"ops{i}@bench.example"]}
        )  # fmt: skip
    for i, dept_id in enumerate(dept_ids[:6]):
        org_id = org_ids[i // 2]
        specs.append(
            {"name": f"Dept {i}", "type": "ssl_expiration", "places": [(org_id, dept_id)],
             "days": (14, 7), "frequency": "daily" if i < 2 else "threshold",
             "roles": ["admins"],
             "subscribers": [f"team{i}@bench.example", f"lead{i}@bench.example"]}
        )  # fmt: skip
    for spec in specs:
        rules.save_rule(actor=SYSTEM, data=rules.RuleData(**spec))
    db.session.commit()
    db.session.execute(text("ANALYZE"))
    db.session.commit()
    return {"orgs": org_ids, "depts": dept_ids, "rules": len(specs)}


# --- the reference: one hand-written statement -------------------------------------------

REFERENCE = """
WITH r AS (
    SELECT id AS rule_id,
           replace(type, '_expiration', '') AS cert_type,
           applies_to_all,
           ARRAY(SELECT p.organization_id FROM notification_rule_places p
                 WHERE p.rule_id = nr.id AND p.department_id IS NULL) AS orgs,
           ARRAY(SELECT p.department_id FROM notification_rule_places p
                 WHERE p.rule_id = nr.id AND p.department_id IS NOT NULL) AS depts,
           ARRAY(SELECT json_array_elements_text(nr.days)::int) AS days,
           frequency = 'daily' AS daily,
           roles::jsonb ? 'mrao' AS to_mrao,
           roles::jsonb ? 'admins' AS to_admins,
           ARRAY(SELECT json_array_elements_text(nr.subscribers)) AS subs
    FROM notification_rules nr
    WHERE enabled AND deleted_at IS NULL
      AND type IN ('ssl_expiration', 'client_expiration', 'device_expiration',
                   'code_signing_expiration')
),
due AS (
    SELECT r.rule_id, r.cert_type, r.to_mrao, r.to_admins, r.subs,
           c.id AS cid, c.organization_id AS org, c.department_id AS dept,
           (SELECT min(t) FROM unnest(r.days) t
             WHERE c.not_after <= :now + t * interval '1 day') AS threshold,
           CASE WHEN r.daily AND c.not_after > :now THEN :day ELSE 0 END AS occurrence
    FROM r JOIN certificates c
      ON c.cert_type = r.cert_type
     AND (r.applies_to_all OR c.organization_id = ANY (r.orgs) OR c.department_id = ANY (r.depts))
     AND c.not_after > (CASE WHEN 0 = ANY (r.days) THEN :now - interval '7 days' ELSE :now END)
     AND c.not_after <= :now + (SELECT max(t) FROM unnest(r.days) t) * interval '1 day'
    WHERE c.status IN ('Issued', 'External', 'Expired')
      AND NOT EXISTS (SELECT 1 FROM notification_acks a
                       WHERE a.rule_id = r.rule_id AND a.certificate_id = c.id
                         AND (a.state = 'acknowledged' OR a.until > :now))
)
INSERT INTO bench_reference (rule_id, subject_key, certificate_id, threshold, occurrence,
                             stage, channel, recipient, status, error, organization_id,
                             department_id, created_at)
SELECT d.rule_id, d.cid, d.cid, d.threshold, d.occurrence, 0, 'email', x.recipient,
       'pending', '', d.org, d.dept, now()
FROM due d CROSS JOIN LATERAL (
    SELECT s AS recipient FROM unnest(d.subs) s
    UNION ALL
    SELECT lower(a.email) FROM admins a
     WHERE d.to_mrao AND a.role = 'MRAO' AND a.active
    UNION ALL
    SELECT lower(a.email) FROM admin_scopes sc JOIN admins a ON a.id = sc.admin_id
     WHERE d.to_admins AND sc.organization_id = d.org
       AND (sc.department_id IS NULL OR sc.department_id = d.dept)
       AND a.active AND a.role <> 'MRAO'
       AND CASE d.cert_type WHEN 'ssl' THEN sc.ssl WHEN 'client' THEN sc.client
                            WHEN 'device' THEN sc.device ELSE sc.code_signing END
) x
ON CONFLICT DO NOTHING
"""


def reference(as_of: Any) -> tuple[float, int]:
    from sqlalchemy import text

    from app.extensions import db
    from app.notices import thresholds

    db.session.execute(text("TRUNCATE bench_reference"))
    db.session.commit()
    started = time.perf_counter()
    result = db.session.execute(
        text(REFERENCE),
        {"now": as_of, "day": thresholds.occurrence(as_of, daily=True, threshold=1)},
    )
    db.session.commit()
    return time.perf_counter() - started, int(result.rowcount or 0)


# --- the sweep over dramatiq workers ------------------------------------------------------


def flush_broker(url: str) -> None:
    """Drop every message left (the composition jobs of a timed sweep, killed with its
    workers): the next run starts on an empty broker."""
    import redis

    redis.Redis.from_url(url).flushall()


def kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def timed_sweep(processes: int, as_of: Any, work: Path, broker: str) -> dict[str, Any]:
    """start_sweep() -> every range job done, with ``processes`` worker processes."""
    from sqlalchemy import select

    from app.extensions import db
    from app.models import NotificationSweep
    from app.services.notifications import sweep

    workers = start_dramatiq(
        processes, 1, work / f"workers-{processes}-{time.time():.0f}.log", "default", 50
    )
    try:
        wait_for_workers(processes, workers, timeout=120)
        started = time.perf_counter()
        record = sweep.start_sweep(as_of=as_of, trigger="bench")
        db.session.commit()  # the range messages go out after commit
        sweep_id = record.id
        while True:
            done, failed, total, created = db.session.execute(
                select(
                    NotificationSweep.ranges_done,
                    NotificationSweep.ranges_failed,
                    NotificationSweep.ranges_total,
                    NotificationSweep.created,
                ).where(NotificationSweep.id == sweep_id)
            ).one()
            db.session.commit()
            if len(done or []) + len(failed or []) >= total:
                break
            if workers.poll() is not None:
                raise RuntimeError(f"the workers exited; see {work}")
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
    finally:
        kill(workers)  # before it composes mail for every delivery (not timed)
        stop(workers)
        flush_broker(broker)
    if failed:
        raise RuntimeError(f"ranges failed: {failed}; see the worker logs in {work}")
    return {"processes": processes, "seconds": elapsed, "ranges": total, "created": created}


def compare_with_reference() -> dict[str, int]:
    """Rows only the sweep wrote, and only the reference (both must be 0)."""
    from sqlalchemy import text

    from app.extensions import db

    cols = ", ".join(KEY)
    only_sweep = db.session.execute(
        text(
            f"SELECT count(*) FROM (SELECT {cols} FROM notification_deliveries "
            f"EXCEPT SELECT {cols} FROM bench_reference) x"
        )
    ).scalar_one()
    only_reference = db.session.execute(
        text(
            f"SELECT count(*) FROM (SELECT {cols} FROM bench_reference "
            f"EXCEPT SELECT {cols} FROM notification_deliveries) x"
        )
    ).scalar_one()
    db.session.commit()
    return {"only_sweep": int(only_sweep), "only_reference": int(only_reference)}


def empty_deliveries() -> None:
    from sqlalchemy import text

    from app.extensions import db

    db.session.execute(text("TRUNCATE notification_deliveries, notification_sweeps, jobs CASCADE"))
    db.session.commit()
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE notification_deliveries"))


def run(count: int, work: Path) -> dict[str, Any]:
    name, url = create_database()
    redis_server, broker = start_redis(work)
    os.environ.update(app_env(work, DATABASE_URL=url, BROKER_URL=broker))
    try:
        from sqlalchemy import text

        from app import create_app
        from app.config import Config
        from app.extensions import db
        from app.models.types import utcnow
        from bench.harness import migrate

        app = create_app(Config())
        with app.app_context():
            migrate()
            data = seed(count)
            db.session.execute(
                text(
                    "CREATE TABLE bench_reference (LIKE notification_deliveries "
                    "INCLUDING DEFAULTS INCLUDING INDEXES INCLUDING CONSTRAINTS)"
                )
            )
            db.session.commit()
            as_of = utcnow()
            idle = idle_fraction()
            log("(ref) the hand-written INSERT ... SELECT")
            ref_first, ref_rows = reference(as_of)
            log(f"    {ref_first:.2f} s, {ref_rows:,} deliveries")
            runs = {}
            for processes in (1, 2):
                empty_deliveries()
                log(f"({processes}w) full sweep, {processes} worker process(es)")
                runs[processes] = timed_sweep(processes, as_of, work, broker)
                log(f"    {runs[processes]['seconds']:.2f} s, {runs[processes]['created']:,} new")
            diff = compare_with_reference()
            # Again as of the same instant: with expiries on every minute, any later instant
            # makes some certificates newly due, and the figure is about finding nothing.
            log("(2nd) the same day again, 2 worker processes")
            second = timed_sweep(2, as_of, work, broker)
            log(f"    {second['seconds']:.2f} s, {second['created']:,} new")
            ref_again, _ = reference(as_of)
            log(f"(ref) again: {ref_again:.2f} s")
            db.session.remove()
            db.engine.dispose()
    finally:
        drop_database(name)
        if redis_server is not None:
            redis_server.terminate()
            redis_server.wait(10)
    ref = min(ref_first, ref_again)
    full, one = runs[2]["seconds"], runs[1]["seconds"]
    return {
        "machine": machine(),
        "idle_before": idle,
        "certificates": count,
        "rules": data["rules"],
        "deliveries": ref_rows,
        "reference_seconds": [ref_first, ref_again],
        "sweep_1_worker": runs[1],
        "sweep_2_workers": runs[2],
        "second_sweep": second,
        "same_as_reference": diff,
        "ratios": {
            "full_2w_to_reference": full / ref,
            "second_to_reference": second["seconds"] / ref,
            "speedup_1_to_2": one / full,
        },
        "targets": {
            "full sweep (2 workers) <= 2 x reference": full <= 2 * ref,
            "second sweep the same day <= 0.5 x reference, creates nothing": (
                second["seconds"] <= 0.5 * ref and second["created"] == 0
            ),
            "1 -> 2 workers >= 1.6x": one / full >= 1.6,
        },
        "checks": {
            "deliveries equal the reference's": diff == {"only_sweep": 0, "only_reference": 0}
            and runs[1]["created"] == runs[2]["created"] == ref_rows,
            "second sweep created nothing": second["created"] == 0,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--smoke", action="store_true", help="5,000 certificates: every part runs")
    parser.add_argument("--json", type=Path, default=None)
    options = parser.parse_args()
    count = 5_000 if options.smoke else options.count
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"cw-bench-notify-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    figures = run(count, work)
    for target, met in figures["targets"].items():
        print(f"{'PASS' if met else 'FAIL':12} {target}")
    for check, ok in figures["checks"].items():
        print(f"{'ok' if ok else 'WRONG':12} {check}")
    r = figures["ratios"]
    print(
        f"{figures['certificates']:,} certificates, {figures['rules']} rules, "
        f"{figures['deliveries']:,} deliveries; reference "
        f"{min(figures['reference_seconds']):.2f} s; full sweep 1 worker "
        f"{figures['sweep_1_worker']['seconds']:.2f} s, 2 workers "
        f"{figures['sweep_2_workers']['seconds']:.2f} s ({r['full_2w_to_reference']:.2f}x ref, "
        f"speed-up {r['speedup_1_to_2']:.2f}x); second sweep "
        f"{figures['second_sweep']['seconds']:.2f} s ({r['second_to_reference']:.2f}x ref)"
    )
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2, default=str))
    if not all(figures["checks"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
