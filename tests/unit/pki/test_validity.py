"""Times in certificates: the notBefore backdate and the validity period it leaves intact."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pytest

from app.pki import issue, names, validity
from app.pki.errors import ProfileError
from app.pki.profiles import LEAF_PROFILES, CertKind

if TYPE_CHECKING:
    from conftest import Hierarchy, KeyCache, Openssl, ReadyIssuer, WritePem

SIGNED = dt.datetime(2026, 5, 4, 12, 30, 15, tzinfo=dt.UTC)


def test_backdate_is_within_what_the_brs_allow() -> None:
    # BR 7.1.2.7: a subscriber notBefore within 48 hours of signing; BR 7.1.2.10.1 and
    # 7.1.2.1.1: a CA notBefore no earlier than one day before signing.
    assert dt.timedelta(0) < validity.BACKDATE <= dt.timedelta(days=1)


def test_window_is_backdated_and_spans_exactly_the_term() -> None:
    not_before, not_after = validity.validity_window(90, now=SIGNED)
    assert not_before == SIGNED - validity.BACKDATE
    # BR 6.3.2 counts the validity period from notBefore to notAfter inclusive, and
    # RFC 5280 §4.1.2.5 makes notAfter inclusive: 90 days exactly, backdate included.
    assert not_after - not_before + dt.timedelta(seconds=1) == dt.timedelta(days=90)


def test_window_stays_inside_the_issuer() -> None:
    issuer_start = SIGNED - dt.timedelta(minutes=10)
    issuer_end = SIGNED + dt.timedelta(days=30)
    not_before, not_after = validity.validity_window(
        90, now=SIGNED, not_before_limit=issuer_start, not_after_limit=issuer_end
    )
    assert (not_before, not_after) == (issuer_start, issuer_end)
    with pytest.raises(ProfileError, match="the issuing CA expired on"):
        validity.validity_window(90, now=issuer_end, not_after_limit=issuer_end)


def test_leaf_from_a_fast_ca_clock_is_valid_for_a_correct_client(
    hierarchy: Hierarchy, key_cache: KeyCache, openssl: Openssl, write_pem: WritePem
) -> None:
    # The CA's clock runs 40 seconds ahead of the client's (openssl here, on the real
    # clock): without a backdate the client sees a notBefore in its future and refuses.
    ahead = validity.utc_now() + dt.timedelta(seconds=40)
    key = key_cache.get("RSA-2048" if hierarchy.name == "RSA" else "EC-P256")
    leaf = issue.issue_leaf(
        hierarchy.issuing,
        public_key=key.public_key(),
        subject=names.build_subject(common_name="clock.certwright.test"),
        alt_names=names.build_alt_names(dns_names=["clock.certwright.test"]),
        profile=LEAF_PROFILES[CertKind.SSL],
        serial=issue.new_serial(),
        term_days=30,
        now=ahead,
    )
    assert leaf.not_valid_before_utc < validity.utc_now()
    result = openssl(
        "verify", "-x509_strict", "-purpose", "sslserver",
        "-CAfile", str(write_pem("root.pem", [hierarchy.root.certificate])),
        "-untrusted", str(write_pem("issuing.pem", [hierarchy.issuing.certificate])),
        str(write_pem("leaf.pem", [leaf])),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_ca_certificates_are_backdated_inside_their_parent(
    key_cache: KeyCache, ready_issuer: ReadyIssuer
) -> None:
    root_key = key_cache.get("EC-P256", 20)
    root_cert = issue.create_root_ca(root_key, customer_name="Clock", country="US", now=SIGNED)
    assert root_cert.not_valid_before_utc == SIGNED - validity.BACKDATE
    start = root_cert.not_valid_before_utc
    assert root_cert.not_valid_after_utc == start.replace(year=start.year + 20) - dt.timedelta(
        seconds=1
    )
    root = ready_issuer(root_cert, root_key, "clock")
    later = SIGNED + dt.timedelta(minutes=10)
    child = issue.create_issuing_ca(
        key_cache.get("EC-P256", 21).public_key(), root, customer_name="Clock", now=later
    )
    assert child.not_valid_before_utc == later - validity.BACKDATE
    # Signed half an hour into the root's backdate (say, on a clock behind the root's):
    # the child's backdate stops at the root's own notBefore.
    early = SIGNED - dt.timedelta(minutes=30)
    child = issue.create_issuing_ca(
        key_cache.get("EC-P256", 21).public_key(), root, customer_name="Clock", now=early
    )
    assert child.not_valid_before_utc == root_cert.not_valid_before_utc
