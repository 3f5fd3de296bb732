"""Certwright's issuance pipeline, timed: approved requests -> stored certificates.

Run by bench/issuance.py as a child process, because the database and the broker are
chosen by environment variables before `app` is imported (DATABASE_URL, BROKER_URL).

Set-up (not timed): a fresh database built by the Alembic migrations; through the real
services an MRAO, an organization, a delegated domain, a root + issuing CA per key type
and one SSL profile per (key type, lint mode); one request validated by
enrollment.check_request(), then N approved copies bulk-inserted with distinct ids.

Timed: approvals.queue_issuance() (one job and one dramatiq message per batch) + commit,
until every job is finished. Then (not timed) the results are checked: every request is
Issued with its certificate row, audited (one event per batch and organization listing every certificate) and mailed (one collection mail per set of recipients),
and a sample of certificates verifies against its issuing CA.

Workers: with BROKER_URL set, `dramatiq app.actors --processes P --threads T` started
here; without it, the embedded worker (app.runtime.embedded.Embedded) in this process, as the
one-machine web process runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import raw
from bench.harness import (
    cpu_seconds,
    database_backends,
    machine_busy_seconds,
    migrate,
    process_tree,
    start_dramatiq,
    stop,
    wait_for_workers,
)


def make_world(specs: list[dict[str, Any]]) -> dict[str, Any]:
    """MRAO, org, domain; per key type a root and an issuing CA; a profile per run."""
    from app.extensions import db
    from app.models import CertType, LintMode, Role
    from app.services.accounts import admins
    from app.services.ca import authorities, profiles
    from app.services.scope import SYSTEM
    from app.services.structure import domains, orgs

    mrao = admins.create_admin(
        actor=SYSTEM,
        login="bench",
        email="bench@bench.example",
        role=Role.MRAO,
        password="a-long-timing-password-1",
    )
    org = orgs.create_org(
        actor=SYSTEM, data=orgs.OrgData(name="Bench", country="DE", city="Berlin", state="Berlin")
    )
    db.session.flush()
    domains.create_domain(
        actor=mrao, name="bench.example", organization_id=org.id, types=(CertType.SSL,)
    )
    issuing: dict[str, int] = {}
    for key_type in sorted({s["key_type"] for s in specs}):
        root = authorities.create_ca(
            actor=SYSTEM,
            spec=authorities.CaSpec(
                name=f"Bench Root {key_type}",
                key_type=key_type,
                customer_name=f"Bench {key_type}",
                country="DE",
            ),
        )
        sub = authorities.create_ca(
            actor=SYSTEM,
            spec=authorities.CaSpec(
                name=f"Bench Issuing {key_type}",
                key_type=key_type,
                customer_name=f"Bench {key_type}",
                country="DE",
                parent_id=root.id,
            ),
        )
        issuing[key_type] = sub.id
    profile_of: dict[str, int] = {}
    for spec in specs:
        every = spec["lint"] == "every"
        profile = profiles.create_profile(
            actor=SYSTEM,
            data=profiles.ProfileData(
                name=f"Bench {spec['name']}",
                cert_type=CertType.SSL,
                ca_id=issuing[spec["key_type"]],
                terms=(90,),
                key_types=(spec["key_type"],),
                requires_approval=True,
                lint_mode=LintMode.EVERY if every else LintMode.SAMPLE,
                # sample mode with the largest N allowed: of N < 100,000 only the first is linted
                lint_sample_n=100 if every else 100_000,
            ),
        )
        profile_of[spec["name"]] = profile.id
    db.session.commit()
    return {"admin_id": mrao.id, "org_id": org.id, "issuing": issuing, "profiles": profile_of}


def approved_requests(world: dict[str, Any], spec: dict[str, Any], n: int) -> list[int]:
    """One request validated by the real service, then n approved copies (bulk insert)."""
    from cryptography.hazmat.primitives.serialization import Encoding
    from sqlalchemy import insert, select

    from app.extensions import db
    from app.models import Admin, CertificateRequest, CertType, RequestMode, RequestStatus
    from app.models.types import utcnow
    from app.pki import csr as pki_csr
    from app.pki import keys, names
    from app.services.certificates import enrollment

    admin = db.session.get(Admin, world["admin_id"])
    key = keys.generate_private_key(keys.parse_key_type(spec["key_type"]))
    cn = "www.bench.example"
    csr = pki_csr.build_csr(
        key,
        subject=names.build_subject(common_name=cn),
        alt_names=names.parse_alt_names([cn, "api.bench.example"]),
    ).public_bytes(Encoding.PEM)
    data = enrollment.RequestData(
        organization_id=world["org_id"],
        profile_id=world["profiles"][spec["name"]],
        term_days=90,
        mode=RequestMode.CSR,
        csr=csr,
        eula_accepted=True,
        requester_email="bench@bench.example",
    )
    checked = enrollment.check_request(actor=admin, data=data)  # type: ignore[arg-type]
    now = utcnow()
    row = {
        "cert_type": CertType.SSL,
        "profile_id": checked.profile.id,
        "organization_id": checked.org.id,
        "department_id": None,
        "status": RequestStatus.APPROVED,
        "mode": RequestMode.CSR,
        "csr_der": checked.csr_der,
        "public_key_der": checked.public_key_der,
        "key_type": checked.key_type,
        "common_name": checked.common_name,
        "sans": checked.sans,
        "subject": checked.subject,
        "term_days": 90,
        "requester_id": admin.id,  # type: ignore[union-attr]
        "requester_email": "bench@bench.example",
        "external_requesters": [],
        "comments": "",
        "auto_renew": False,
        "renew_days_before": 30,
        "eula_accepted_at": now,
        "created_at": now,
        "decided_by_id": admin.id,  # type: ignore[union-attr]
        "decided_at": now,
        "decision_message": "bench",
        "failure_reason": "",
        "issue_attempts": 0,
    }
    table = CertificateRequest.__table__
    first = db.session.execute(select(db.func.coalesce(db.func.max(table.c.id), 0))).scalar_one()
    step = 5000
    for start in range(0, n, step):
        db.session.execute(insert(table), [row] * min(step, n - start))
    db.session.commit()
    ids = list(
        db.session.execute(
            select(table.c.id)
            .where(table.c.id > first, table.c.profile_id == row["profile_id"])
            .order_by(table.c.id)
        ).scalars()
    )
    assert len(ids) == n, (len(ids), n)
    return ids


def counts(since_cert_id: int) -> dict[str, int]:
    from sqlalchemy import func, select

    from app.extensions import db
    from app.models import AuditEvent, Certificate, OutboxMessage

    return {
        "certificates": db.session.execute(
            select(func.count()).select_from(Certificate).where(Certificate.id > since_cert_id)
        ).scalar_one(),
        "audit_issue": db.session.execute(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "certificate.issue")
        ).scalar_one(),
        "mails": db.session.execute(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.category == "issuance")
        ).scalar_one(),
    }


def timed_run(
    world: dict[str, Any], spec: dict[str, Any], timeout: float, worker_root: int
) -> dict[str, Any]:
    from sqlalchemy import func, select

    from app.extensions import db
    from app.models import Certificate, CertificateRequest, Job, JobStatus, RequestStatus
    from app.services.certificates import approvals

    n = int(spec["n"])
    ids = approved_requests(world, spec, n)
    last_cert = db.session.execute(select(func.coalesce(func.max(Certificate.id), 0))).scalar_one()
    before = counts(last_cert)
    db.session.commit()
    ended = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)

    workers = process_tree(worker_root)
    backends = database_backends()
    cpu0 = cpu_seconds(workers), cpu_seconds(backends), machine_busy_seconds()
    t0 = time.perf_counter()
    wall0 = time.time()
    job_ids = approvals.queue_issuance(
        ids, **({"batch_size": spec["batch"]} if spec.get("batch") else {})
    )
    db.session.commit()
    t_queued = time.perf_counter()
    deadline = t0 + timeout
    finished = 0
    claimed = select(func.count()).select_from(Job).where(Job.id.in_(job_ids), Job.attempts > 0)
    while time.perf_counter() < deadline:
        if time.perf_counter() - t0 > 30 and not db.session.execute(claimed).scalar_one():
            print("no job claimed within 30 s: are the workers consuming?", file=sys.stderr)
            break
        finished = db.session.execute(
            select(func.count()).select_from(Job).where(Job.id.in_(job_ids), Job.status.in_(ended))
        ).scalar_one()
        db.session.commit()
        if finished == len(job_ids):
            break
        # Watching costs CPU the workers would use (a query and a commit each time): look
        # rarely while many batches remain, and more often as the expected end nears.
        elapsed = time.perf_counter() - t0
        left = (len(job_ids) - finished) * elapsed / finished if finished else 1.0
        time.sleep(min(0.25, max(0.005, left / 8)))
    t1 = time.perf_counter()
    backends = sorted(set(backends) | set(database_backends()))  # the pool may have grown
    cpu1 = cpu_seconds(workers), cpu_seconds(backends), machine_busy_seconds()
    worker_cpu, db_cpu, busy = (b - a for a, b in zip(cpu0, cpu1, strict=True))

    issued = db.session.execute(
        select(func.count())
        .select_from(CertificateRequest)
        .where(
            CertificateRequest.id.in_(ids),
            CertificateRequest.status == RequestStatus.ISSUED,
            CertificateRequest.certificate_id.is_not(None),
        )
    ).scalar_one()
    after = counts(last_cert)
    started, ended_at = db.session.execute(
        select(func.min(Job.started_at), func.max(Job.finished_at)).where(Job.id.in_(job_ids))
    ).one()
    failed_jobs = db.session.execute(
        select(Job.message).where(Job.id.in_(job_ids), Job.status != JobStatus.DONE)
    ).all()
    verified = verify_sample(ids, spec["key_type"])
    seconds = t1 - t0
    return {
        "name": spec["name"],
        "key_type": spec["key_type"],
        "lint": spec["lint"],
        "n": n,
        "batches": len(job_ids),
        "seconds": round(seconds, 3),
        "queue_seconds": round(t_queued - t0, 3),
        # from queueing to the first job claimed, and to the last job finished
        "first_claim_seconds": round(started.timestamp() - wall0, 3) if started else None,
        "last_finish_seconds": round(ended_at.timestamp() - wall0, 3) if ended_at else None,
        "rate": round(issued / seconds, 1) if finished == len(job_ids) else 0.0,
        "issued": issued,
        "certificates": after["certificates"] - before["certificates"],
        "audit_events": after["audit_issue"] - before["audit_issue"],
        "mails": after["mails"] - before["mails"],
        "unfinished_or_failed_jobs": len(job_ids) - finished + len(failed_jobs),
        "job_problems": [m for (m,) in failed_jobs][:3],
        "verified_sample": verified,
        "complete": issued == n and finished == len(job_ids),
        # CPU seconds in the timed span: worker processes, PostgreSQL backends of this
        # database, and everything the machine did (other = busy - workers - database).
        "cpu": {
            "workers": round(worker_cpu, 2),
            "database": round(db_cpu, 2),
            "machine": round(busy, 2),
            "other": round(busy - worker_cpu - db_cpu, 2),
        },
    }


def verify_sample(request_ids: list[int], key_type: str, k: int = 20) -> int:
    """Parse k stored certificates and check each signature against its issuing CA."""
    from cryptography import x509
    from sqlalchemy import select

    from app.extensions import db
    from app.models import Certificate, CertificateAuthority, CertificateRequest

    step = max(1, len(request_ids) // k)
    sample = request_ids[::step][:k]
    rows = db.session.execute(
        select(Certificate.der, CertificateAuthority.cert_der, Certificate.serial_hex)
        .join(CertificateRequest, CertificateRequest.certificate_id == Certificate.id)
        .join(CertificateAuthority, CertificateAuthority.id == Certificate.ca_id)
        .where(CertificateRequest.id.in_(sample))
    ).all()
    ok = 0
    for der, ca_der, serial_hex in rows:
        cert = x509.load_der_x509_certificate(der)
        cert.verify_directly_issued_by(x509.load_der_x509_certificate(ca_der))
        assert f"{cert.serial_number:x}" == serial_hex
        ok += 1
    return ok


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", required=True, help="JSON list of run specs")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--embedded-threads", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--raw-seconds", type=float, default=0.0, help="(a) before/after")
    parser.add_argument("--raw-lint-seconds", type=float, default=0.0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--log-dir", required=True)
    args = parser.parse_args()
    specs: list[dict[str, Any]] = json.loads(args.runs)

    from app import create_app
    from app.extensions import db

    app = create_app()
    results: dict[str, Any] = {"runs": []}
    with app.app_context():
        migrate()
        world = make_world(specs)
        results["world"] = world
        workers: subprocess.Popen[bytes] | None = None
        embedded = None
        try:
            if os.environ.get("BROKER_URL"):
                workers = start_dramatiq(
                    args.processes, args.threads, Path(args.log_dir) / "dramatiq.log", poll_ms=50
                )
                wait_for_workers(args.processes, workers)
            else:
                from app.runtime.embedded import Embedded

                embedded = Embedded(app, threads=args.embedded_threads, scheduler=False).start()
            root = workers.pid if workers is not None else os.getpid()
            materials: dict[str, Any] = {}
            for spec in specs:
                reference = raw.RawReference(
                    spec, materials, args.raw_seconds, args.raw_lint_seconds
                )
                reference.measure("before")
                result = timed_run(world, spec, args.timeout, root)
                reference.measure("after")
                result["raw"] = reference.figures
                print(json.dumps(result), file=sys.stderr, flush=True)
                results["runs"].append(result)
        finally:
            if workers is not None:
                stop(workers)
            if embedded is not None:
                embedded.stop()
            db.session.remove()
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
