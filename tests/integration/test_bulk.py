"""Bulk writes read back exactly as ORM/Core inserts of the same rows (SQLite and, in the
services tier, PostgreSQL's binary COPY)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import StatementError

from app.extensions import db
from app.models import (
    AuditEvent,
    Certificate,
    CertOrigin,
    CertStatus,
    CertType,
    MailStatus,
    OutboxMessage,
)
from app.services import bulk

MOMENT = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


def certificate_rows(count: int, tag: str) -> list[dict]:
    return [
        {
            "fingerprint": f"{tag}{i:060d}",
            "der": bytes(range(256)) * 3 + bytes([i % 256]),  # every byte value, NUL included
            "cert_type": CertType.SSL,
            "origin": CertOrigin.ISSUED,
            "status": CertStatus.ISSUED,
            "serial_hex": f"{tag}{i:x}",
            "subject_dn": 'CN=www.example.com,O=Acme\\, "Labs"',
            "common_name": "www.example.com",
            "sans": ["www.example.com", "10.0.0.1", "ü.example"],
            "not_before": MOMENT,
            "not_after": MOMENT.replace(year=2027),
            "key_size": None,
            "auto_renew": i % 2 == 0,
            "renewal_state": "",
        }
        for i in range(count)
    ]


def described(table, ids):
    columns = [c for c in table.columns if c.key not in ("id", "created_at")]
    rows = db.session.execute(select(*columns).where(table.c.id.in_(ids)).order_by(table.c.id))
    return [tuple(row) for row in rows]


def check_bulk_matches_core_insert(count: int, tag: str) -> None:
    table = Certificate.__table__
    copied = bulk.insert_rows(table, certificate_rows(count, tag), return_ids=True)
    inserted = [
        db.session.execute(insert(table).returning(table.c.id), row).scalar_one()
        for row in certificate_rows(count, tag.upper())
    ]
    db.session.commit()
    assert len(set(copied)) == count and not set(copied) & set(inserted)
    got, want = described(table, copied), described(table, inserted)
    swap = lambda rows: [  # noqa: E731  (the tag differs on purpose: unique columns)
        tuple(str(v).replace(tag.upper(), tag) if isinstance(v, str) else v for v in row)
        for row in rows
    ]
    assert swap(got) == swap(want)
    row = db.session.get(Certificate, copied[0])
    assert row.der == certificate_rows(1, tag)[0]["der"] and row.sans[2] == "ü.example"
    assert row.status is CertStatus.ISSUED and row.not_before == MOMENT
    assert row.is_ca is False and row.revocation_reason == ""  # Python-side defaults applied
    assert row.created_at is not None


def check_defaults_and_json() -> None:
    ids = bulk.insert_rows(
        OutboxMessage.__table__,
        [{"to": "a@example.com", "subject": "s", "body": "b", "status": MailStatus.OUTBOX}],
        return_ids=True,
    )
    assert bulk.insert_rows(OutboxMessage.__table__, []) == []
    event = {
        "seq": 10**12,  # BIGINT on PostgreSQL
        "at": MOMENT,
        "actor": "system",
        "action": "test.bulk",
        "before": None,
        "after": {"nested": [1, "two", None]},
        "prev_hash": "0" * 64,
        "hash": "1" * 64,
    }
    assert bulk.insert_rows(AuditEvent.__table__, [event]) == []
    db.session.commit()
    mail = db.session.get(OutboxMessage, ids[0])
    assert (mail.attempts, mail.error, mail.sent_at) == (0, "", None)
    stored = db.session.execute(select(AuditEvent).where(AuditEvent.seq == 10**12)).scalar_one()
    assert stored.after == {"nested": [1, "two", None]} and stored.before is None
    assert stored.at == MOMENT and stored.message == ""
    # Column types apply as in an INSERT: a naive timestamp is refused, not stored as UTC.
    with pytest.raises((ValueError, StatementError), match="naive datetime"):
        bulk.insert_rows(
            OutboxMessage.__table__,
            [{"to": "b", "subject": "s", "body": "b", "created_at": datetime(2026, 1, 1)}],
        )
    db.session.rollback()


def test_bulk_insert_on_sqlite(app):
    check_bulk_matches_core_insert(5, "a")
    check_defaults_and_json()


@pytest.mark.services
def test_bulk_insert_on_postgresql(postgres_app):
    # Past FEW_ROWS: binary COPY; up to it: an INSERT. Both read back as a Core INSERT's.
    check_bulk_matches_core_insert(bulk.FEW_ROWS + 3, "a")
    check_bulk_matches_core_insert(2, "b")
    check_defaults_and_json()


def check_insert_ignoring_stages(tag: str) -> None:
    rows = certificate_rows(12, tag)
    fewer = [{k: v for k, v in row.items() if k != "common_name"} for row in rows[6:]]
    # Two shapes of rows for one table in one transaction, then again after a commit on the
    # same connection: each call stores its own rows, returns those it inserted, and skips
    # the ones stored already.
    first = bulk.insert_ignoring(
        Certificate.__table__, rows[:6], ["fingerprint"], returning=("fingerprint", "id")
    )
    second = bulk.insert_ignoring(Certificate.__table__, fewer, ["fingerprint"], returning="id")
    db.session.commit()
    again = bulk.insert_ignoring(
        Certificate.__table__, rows[4:6], ["fingerprint"], returning="fingerprint"
    ) + bulk.insert_ignoring(Certificate.__table__, fewer[-2:], ["fingerprint"], returning="id")
    db.session.commit()
    assert [f for f, _ in first] == [r["fingerprint"] for r in rows[:6]]
    assert len(second) == 6 and again == []
    stored = db.session.execute(
        select(Certificate.fingerprint, Certificate.common_name).where(
            Certificate.fingerprint.like(f"{tag}%")
        )
    ).all()
    assert sorted(stored) == sorted(
        [(r["fingerprint"], "www.example.com") for r in rows[:6]]
        + [(r["fingerprint"], "") for r in rows[6:]]
    )


def test_insert_ignoring_on_sqlite(app):
    check_insert_ignoring_stages("c")


@pytest.mark.services
def test_insert_ignoring_on_postgresql(postgres_app):
    check_insert_ignoring_stages("d")
