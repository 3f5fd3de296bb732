"""The sign-in throttle on PostgreSQL: concurrent failures from many web threads are all
counted (the counter rows are created once and locked while counting), and the audit
chain stays intact and authenticated under that load."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import SignInThrottle
from app.services import audit
from app.services.accounts import sessions


def fail_once(app: Flask, login: str, ip: str) -> str:
    with app.app_context():
        try:
            sessions.authenticate(login=login, password="wrong-password-123", ip=ip)
        except sessions.SignInThrottled:
            db.session.commit()
            return "throttled"
        except sessions.SignInRefused:
            db.session.commit()
            return "refused"
        finally:
            db.session.remove()
    return "signed in"


def test_concurrent_failures_are_all_counted(pg: Flask) -> None:
    login, ip = (
        f"nobody-{secrets.token_hex(3)}",
        f"10.9.{secrets.randbelow(250)}.{secrets.randbelow(250)}",
    )
    pg.config["CW_LOGIN_MAX_FAILURES"] = 100  # count without waits
    pg.config["CW_LOGIN_IP_MAX_FAILURES"] = 100
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda _: fail_once(pg, login, ip), range(24)))
    finally:
        pg.config["CW_LOGIN_MAX_FAILURES"] = 5
        pg.config["CW_LOGIN_IP_MAX_FAILURES"] = 20
    assert answers == ["refused"] * 24
    counts = dict(
        db.session.execute(
            select(SignInThrottle.login, SignInThrottle.failures).where(
                SignInThrottle.address == ip
            )
        ).all()
    )
    assert counts == {"": 24, login: 24}
    assert fail_once(pg, login, ip) == "refused"  # 25 < 100: still no wait
    verdict = audit.verify()
    assert verdict.ok and verdict.expected == verdict.rows, verdict.summary()


@pytest.mark.parametrize("free", [3])
def test_waits_start_after_the_threshold(pg: Flask, free: int) -> None:
    login, ip = (
        f"nobody-{secrets.token_hex(3)}",
        f"10.8.{secrets.randbelow(250)}.{secrets.randbelow(250)}",
    )
    pg.config["CW_LOGIN_MAX_FAILURES"] = free
    try:
        answers = [fail_once(pg, login, ip) for _ in range(free + 1)]
    finally:
        pg.config["CW_LOGIN_MAX_FAILURES"] = 5
    assert answers == ["refused"] * free + ["throttled"]
