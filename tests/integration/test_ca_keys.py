"""CA keys are sealed with the configured key-encryption keys and can be rotated."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from app.extensions import db
from app.models import CertificateAuthority, CrlPublication
from app.models.types import utcnow
from app.pki import keystore
from app.pki.errors import SealError
from app.services.ca import crl, signing
from tests.factories import make_pki


def test_keys_are_sealed_and_rotation_reseals_under_the_new_key(app):
    _root, issuing, _ = make_pki()
    old_key = app.config["CW_KEK"]
    assert b"PRIVATE KEY" not in issuing.sealed_key
    new_key = Fernet.generate_key().decode()
    app.config["CW_KEK"] = f"{new_key},{old_key}"
    signing.ISSUERS.clear()
    assert (
        app.test_cli_runner()
        .invoke(args=["ca", "rotate-kek"])
        .output.startswith("Re-sealed 2 keys")
    )
    app.config["CW_KEK"] = new_key  # the old key is gone
    signing.ISSUERS.clear()
    db.session.expire_all()
    authority = db.session.get(CertificateAuthority, issuing.id)
    assert signing.load_issuer(authority).certificate.serial_number == int(authority.serial_hex, 16)
    with pytest.raises(SealError):
        keystore.unseal(authority.sealed_key, keystore.parse_keks(old_key))


def test_wrong_kek_gives_a_clear_message(app):
    _, issuing, _ = make_pki()
    app.config["CW_KEK"] = Fernet.generate_key().decode()
    signing.ISSUERS.clear()
    with pytest.raises(Exception, match="cannot be unsealed"):
        signing.load_issuer(issuing)


def test_crl_refresh_publishes_before_expiry(app):
    _, issuing, _ = make_pki()
    before = issuing.crl_number
    assert crl.refresh_crls().published == []  # fresh CRLs: nothing to do
    issuing.crl_next_update = utcnow() + timedelta(days=1)
    db.session.commit()
    assert crl.refresh_crls().published == [issuing.id]
    db.session.commit()
    assert issuing.crl_number == before + 1 and issuing.crl_next_update > utcnow() + timedelta(
        days=6
    )
    triggers = list(
        db.session.execute(
            select(CrlPublication.trigger).where(CrlPublication.ca_id == issuing.id)
        ).scalars()
    )
    assert triggers == ["created", "schedule"]
