"""Revocation reasons: who may choose which reason for which certificate, and what a CRL or
OCSP response may carry (TLS BR 4.9.1.1, 4.9.1.2, 4.9.13, 7.2.2, 7.3)."""

from __future__ import annotations

import pytest
from cryptography import x509

from app.pki import crl, revocation
from app.pki.errors import ProfileError, RevocationPolicyError
from app.pki.profiles import CertKind
from app.pki.revocation import Revoker

R = x509.ReasonFlags
ADMIN, SUBSCRIBER = Revoker.ADMINISTRATOR, Revoker.SUBSCRIBER


@pytest.mark.parametrize("kind", list(CertKind))
def test_leaf_reasons(kind: CertKind) -> None:
    # BR 4.9.1.1 / 7.2.2: the subscriber chooses among these, "no reason" by default ...
    assert revocation.allowed_reasons(kind, SUBSCRIBER) == (
        R.unspecified,
        R.key_compromise,
        R.affiliation_changed,
        R.superseded,
        R.cessation_of_operation,
    )
    # ... and privilegeWithdrawn is the CA's (BR 7.2.2: SHOULD NOT be offered to them).
    assert revocation.allowed_reasons(kind, ADMIN) == (
        *revocation.allowed_reasons(kind, SUBSCRIBER),
        R.privilege_withdrawn,
    )


def test_ca_certificate_reasons() -> None:
    assert revocation.allowed_reasons(None, ADMIN) == (
        R.ca_compromise,
        R.affiliation_changed,
        R.superseded,
        R.cessation_of_operation,
        R.privilege_withdrawn,
    )
    assert revocation.allowed_reasons(None, SUBSCRIBER) == ()


@pytest.mark.parametrize("kind", [*CertKind, None])
@pytest.mark.parametrize("revoker", list(Revoker))
def test_certificate_hold_is_never_allowed(kind: CertKind | None, revoker: Revoker) -> None:
    with pytest.raises(RevocationPolicyError) as refused:
        revocation.check_revocation_reason("certificateHold", kind=kind, revoker=revoker)
    if kind is not None or revoker is ADMIN:
        assert "certificateHold is not allowed" in str(refused.value)
        assert "does not suspend" in str(refused.value)
        assert "TLS BR 4.9.13 and 7.2.2" in str(refused.value)
        assert "choose one of " in str(refused.value)


@pytest.mark.parametrize(
    ("reason", "kind", "revoker", "message"),
    [
        (
            "cACompromise",
            CertKind.SSL,
            ADMIN,
            "cACompromise is not allowed for SSL certificates: cACompromise is for authority "
            "certificates (RFC 5280 §5.3.1); a compromised key of this certificate is "
            "keyCompromise; choose one of unspecified, keyCompromise, affiliationChanged, "
            "superseded, cessationOfOperation, privilegeWithdrawn",
        ),
        (
            "aACompromise",
            CertKind.DEVICE,
            ADMIN,
            "aACompromise is not allowed for Device certificates: aACompromise is for "
            "authority certificates",
        ),
        (
            "privilegeWithdrawn",
            CertKind.CLIENT,
            SUBSCRIBER,
            "privilegeWithdrawn is not allowed to the subscriber of Client certificates: "
            "privilegeWithdrawn is the CA's to choose, not the subscriber's (TLS BR 7.2.2)",
        ),
        (
            "removeFromCRL",
            CertKind.CODE_SIGNING,
            ADMIN,
            "removeFromCRL is not allowed for CodeSigning certificates: it is only valid in "
            "delta CRLs (RFC 5280 §5.3.1)",
        ),
        (
            "keyCompromise",
            None,
            ADMIN,
            "keyCompromise is not allowed for a CA certificate: a CA certificate whose key is "
            "compromised is revoked with cACompromise",
        ),
        (
            "unspecified",
            None,
            ADMIN,
            "unspecified is not allowed for a CA certificate: a CA certificate is revoked with "
            "a stated reason (CA/B Forum BR 7.2.2, 7.3)",
        ),
        (
            "superseded",
            None,
            SUBSCRIBER,
            "only an administrator of the CA can revoke a CA certificate",
        ),
    ],
)
def test_refusals_say_why_and_what_to_choose(
    reason: str, kind: CertKind | None, revoker: Revoker, message: str
) -> None:
    with pytest.raises(RevocationPolicyError) as refused:
        revocation.check_revocation_reason(reason, kind=kind, revoker=revoker)
    assert str(refused.value).startswith(message)


def test_allowed_reasons_are_returned_as_flags() -> None:
    assert (
        revocation.check_revocation_reason("key compromise", kind=CertKind.SSL, revoker=SUBSCRIBER)
        is R.key_compromise
    )
    assert revocation.check_revocation_reason(2, kind=None, revoker=ADMIN) is R.ca_compromise
    assert (
        revocation.check_revocation_reason(R.superseded, kind=CertKind.DEVICE, revoker=ADMIN)
        is R.superseded
    )
    with pytest.raises(ProfileError, match="unknown revocation reason 'stolen'"):
        revocation.check_revocation_reason("stolen", kind=CertKind.SSL, revoker=ADMIN)


def test_what_may_be_published() -> None:
    # BR 7.2.2 (pkilint's cabf.crl_prohibited_reason_code) and 7.3.
    for reason in (R.certificate_hold, R.remove_from_crl, R.aa_compromise, R.ca_compromise):
        assert not revocation.is_publishable_reason(reason, is_ca=False)
    for reason in (R.certificate_hold, R.remove_from_crl, R.aa_compromise, R.unspecified):
        assert not revocation.is_publishable_reason(reason, is_ca=True)
    assert revocation.is_publishable_reason(R.unspecified, is_ca=False)  # as no reasonCode
    assert revocation.is_publishable_reason(R.ca_compromise, is_ca=True)
    with pytest.raises(
        RevocationPolicyError, match=r"certificateHold cannot be published .*4.9.13"
    ):
        revocation.check_publishable_reason(R.certificate_hold, is_ca=False)
    with pytest.raises(RevocationPolicyError, match="must be published with its reason"):
        revocation.check_publishable_reason(R.unspecified, is_ca=True)


def test_every_reason_is_described_and_the_vocabulary_is_shared() -> None:
    assert set(revocation.REASON_DESCRIPTIONS) == set(revocation.REASON_CODES)
    # crl keeps re-exporting the vocabulary its callers have always used.
    assert crl.parse_reason is revocation.parse_reason
    assert crl.REASON_NAMES == revocation.REASON_NAMES
