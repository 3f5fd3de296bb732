"""The untimed checks after each timed discovery run: that what the run reported is what it
stored (every bed endpoint with its certificate, certificates deduplicated, the rule's
placements, the empty /16 refused everywhere and nothing stored)."""

from __future__ import annotations

from typing import Any

from bench.discovery_bed import ORG_A, SHARE, addresses, sni_name


def expected(world: dict[str, Any]) -> dict[str, int]:
    """What a complete scan of the bed stores (see bench/discovery_bed.py)."""
    distinct = -(-world["count"] // SHARE)
    return {
        "endpoints": world["count"] + world["names"],
        "certificates": distinct + world["names"],
        # certificate j is Corp A when j is even; every SNI certificate is Corp A
        "assigned": (distinct + 1) // 2 + world["names"],
    }


def verify_tls(world: dict[str, Any], task_id: int, result: dict[str, Any]) -> dict[str, Any]:
    """Untimed: every bed endpoint stored with its certificate, one row per certificate,
    the rule's assignments present, the run's counters equal to what is stored."""
    from sqlalchemy import func, select

    from app.extensions import db
    from app.models import Certificate, CertOrigin, Endpoint

    want = expected(world)
    stored = {
        (ip, host): (cert, error)
        for ip, host, cert, error in db.session.execute(
            select(Endpoint.ip, Endpoint.host_name, Endpoint.certificate_id, Endpoint.error).where(
                Endpoint.task_id == task_id
            )
        )
    }
    hosts = addresses(world["count"])
    wanted = {(h, "") for h in hosts} | {(hosts[i], sni_name(i)) for i in range(world["names"])}
    missing = wanted - set(stored)
    without_cert = [k for k, (cert, error) in stored.items() if cert is None or error]
    certs = db.session.execute(
        select(func.count(), func.count(Certificate.organization_id)).where(
            Certificate.origin == CertOrigin.DISCOVERED
        )
    ).one()
    assigned_to_org = db.session.execute(
        select(func.count()).where(
            Certificate.origin == CertOrigin.DISCOVERED,
            Certificate.organization_id == world["org_id"],
            Certificate.assigned_rule_id == world["rule_id"],
            Certificate.subject_o == ORG_A,
        )
    ).scalar_one()
    distinct_on_endpoints = db.session.execute(
        select(func.count(func.distinct(Endpoint.certificate_id))).where(
            Endpoint.task_id == task_id
        )
    ).scalar_one()
    db.session.commit()
    checks = {
        "every bed endpoint stored": not missing and len(stored) == want["endpoints"],
        "every endpoint has its certificate": not without_cert,
        "certificates deduplicated": certs[0] == distinct_on_endpoints == want["certificates"],
        "rule assignments present": certs[1] == assigned_to_org == want["assigned"],
        "run counters agree": (
            result["status"] == "Successful"
            and result["tls_endpoints"] == want["endpoints"]
            and result["certificates"] == want["certificates"]
            and result["new_certificates"] == want["certificates"]
            and result["assigned"] == want["assigned"]
        ),
    }
    return {
        "expected": want,
        "stored_endpoints": len(stored),
        "missing": len(missing),
        "certificates": certs[0],
        "assigned": certs[1],
        "checks": checks,
        "ok": all(checks.values()),
    }


def verify_sweep(result: dict[str, Any]) -> dict[str, Any]:
    from sqlalchemy import func, select

    from app.extensions import db
    from app.models import Endpoint, ScanRun

    run = db.session.get(ScanRun, result["run_id"])
    stored = db.session.execute(
        select(func.count()).select_from(Endpoint).where(Endpoint.last_run_id == run.id)
    ).scalar_one()
    db.session.commit()
    checks = {
        "run successful": result["status"] == "Successful",
        "every address done": result["targets_done"] == result["targets"] == 65536,
        "every address refused": result["outcomes"] == {"refused": 65536},
        "nothing stored": stored == 0,
    }
    return {"checks": checks, "ok": all(checks.values())}
