"""The REST API's shared rows on PostgreSQL under concurrent web threads: enrolls racing with
one Idempotency-Key (or one body) create exactly one request and all get its id; the per-
administrator rate limit counts every concurrent call exactly once."""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.extensions import db
from app.models import AdminKind, CertificateRequest, CertType, Role
from app.services.accounts import admins
from app.services.scope import SYSTEM
from app.services.structure import domains, orgs
from tests.factories import make_csr

PASSWORD = "an-api-script-password-1"


def world(pg: Flask) -> dict[str, object]:
    tag = secrets.token_hex(3)
    bot = admins.create_admin(
        actor=SYSTEM,
        login=f"bot-{tag}",
        email=f"bot-{tag}@example.com",
        role=Role.MRAO,
        password=PASSWORD,
        kind=AdminKind.API,
    )
    org = orgs.create_org(
        actor=SYSTEM, data=orgs.OrgData(name=f"Org {tag}", country="DE", city="Berlin")
    )
    domains.create_domain(
        actor=bot, name=f"{tag}.example", organization_id=org.id, types=[CertType.SSL]
    )
    from app.services.ca import authorities, profiles

    root = authorities.create_ca(
        actor=SYSTEM,
        spec=authorities.CaSpec(
            name=f"Root {tag}", key_type="EC-P256", customer_name="Test", country="DE"
        ),
    )
    issuing = authorities.create_ca(
        actor=SYSTEM,
        spec=authorities.CaSpec(
            name=f"Issuing {tag}",
            key_type="EC-P256",
            customer_name="Test",
            country="DE",
            parent_id=root.id,
        ),
    )
    profile = profiles.create_profile(
        actor=SYSTEM,
        data=profiles.ProfileData(
            name=f"TLS {tag}",
            cert_type=CertType.SSL,
            ca_id=issuing.id,
            terms=(90,),
            key_types=("EC-P256",),
            requires_approval=True,
        ),
    )
    db.session.commit()
    return {"tag": tag, "login": bot.login, "org": org.id, "profile": profile.id}


def call(app: Flask, method: str, path: str, headers: dict[str, str], **kwargs: object):
    client = FlaskClient(app, app.response_class)  # each thread its own request context
    return client.open(path, method=method, headers=headers, **kwargs)


def count(cn: str) -> int:
    db.session.expire_all()
    return db.session.execute(
        select(func.count())
        .select_from(CertificateRequest)
        .where(CertificateRequest.common_name == cn)
    ).scalar_one()


def test_concurrent_enrolls_with_one_key_or_one_body_make_one_request(pg: Flask) -> None:
    w = world(pg)
    headers = {"login": w["login"], "password": PASSWORD, "customerUri": "certwright"}
    for variant in ("key", "body"):
        cn = f"{variant}.{w['tag']}.example"
        csr, _ = make_csr(cn)
        body = {"orgId": w["org"], "csr": csr.decode(), "certType": w["profile"], "term": 90}
        sent = {**headers, "Idempotency-Key": f"k-{cn}"} if variant == "key" else headers
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(
                pool.map(
                    lambda _, sent=sent, body=body: call(
                        pg, "POST", "/api/ssl/v1/enroll", sent, json=body
                    ),
                    range(16),
                )
            )
        assert [a.status_code for a in answers] == [200] * 16, [
            a.get_data(as_text=True) for a in answers
        ]
        assert len({a.get_json()["sslId"] for a in answers}) == 1
        assert count(cn) == 1, variant


def test_the_rate_limit_counts_concurrent_calls_exactly(pg: Flask) -> None:
    w = world(pg)
    headers = {"login": w["login"], "password": PASSWORD, "customerUri": "certwright"}
    pg.config["CW_API_RATE_LIMIT"] = 10
    try:
        for _ in range(3):  # a run that straddles a minute boundary counts in two windows
            minute = int(time.time() // 60)
            with ThreadPoolExecutor(max_workers=8) as pool:
                answers = list(
                    pool.map(lambda _: call(pg, "GET", "/api/organization/v1", headers), range(20))
                )
            if int(time.time() // 60) == minute:
                break
            time.sleep(1)
    finally:
        pg.config["CW_API_RATE_LIMIT"] = 600
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == 10 and statuses.count(429) == 10, statuses
    assert all(1 <= int(a.headers["Retry-After"]) <= 60 for a in answers if a.status_code == 429)
