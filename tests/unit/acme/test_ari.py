"""ACME renewal information (RFC 9773): certificate identifiers and suggested windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.acme import ari
from app.acme.problems import AcmeProblem

# RFC 9773 §4.1's own example: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4,
# serial 00:87:65:43:21.
RFC_AKI = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
RFC_SERIAL = 0x87654321
RFC_ID = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


def test_the_rfc_example_identifier():
    assert ari.serial_octets(RFC_SERIAL) == bytes.fromhex("0087654321")
    assert ari.cert_id(RFC_AKI, RFC_SERIAL) == RFC_ID
    parsed = ari.parse_cert_id(RFC_ID)
    assert parsed == ari.CertId(RFC_AKI, RFC_SERIAL)
    assert parsed.serial_hex == "87654321"


@pytest.mark.parametrize(
    "text",
    [
        "no-dot",
        "a.b.c",
        ".AIdlQyE",  # no keyIdentifier
        "aYhba4dGQEHhs3uEe6CuLN4ByNQ.",  # no serial
        "aYhba4dGQEHhs3uEe6CuLN4ByNQ=.AIdlQyE",  # padding
        "aYhba4dGQEHhs3uEe6CuLN4ByNQ.h2VDIQ",  # 87654321 without its 00: negative
        "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AAEC",  # 00 01 02: not minimal
        "aYhba4dGQEHhs3uEe6CuLN4ByNQ." + "AQ" * 30,  # longer than 21 octets
        12,
    ],
)
def test_malformed_identifiers_are_refused(text):
    with pytest.raises(AcmeProblem) as err:
        ari.parse_cert_id(text)
    assert err.value.kind == "malformed"


NB = datetime(2026, 1, 1, tzinfo=UTC)
NA = NB + timedelta(days=90)


def test_the_window_is_in_the_last_third_and_asks_again_in_six_hours():
    got = ari.suggested_window(not_before=NB, not_after=NA, now=NB + timedelta(days=1))
    assert (got.start, got.end) == (NB + timedelta(days=60), NB + timedelta(days=75))
    assert got.retry_after == timedelta(hours=6) and not got.urgent


def test_a_shorter_validity_cap_moves_the_window_earlier():
    got = ari.suggested_window(
        not_before=NB, not_after=NA, now=NB + timedelta(days=1), term_cap=timedelta(days=45)
    )
    assert (got.start, got.end) == (NB + timedelta(days=30), NB + timedelta(days=37, hours=12))
    # A longer cap changes nothing.
    longer = ari.suggested_window(not_before=NB, not_after=NA, now=NB, term_cap=timedelta(days=200))
    assert longer.start == NB + timedelta(days=60)


def test_a_cap_whose_window_has_passed_means_renew_now():
    now = NB + timedelta(days=50)
    got = ari.suggested_window(not_before=NB, not_after=NA, now=now, term_cap=timedelta(days=47))
    assert got.urgent and got.end == now and got.start < now


def test_a_certificate_that_must_be_replaced_gets_a_window_that_has_begun():
    now = NB + timedelta(days=3)
    got = ari.suggested_window(not_before=NB, not_after=NA, now=now, must_replace=True)
    assert got.start < now and got.end == now and got.urgent
    assert got.retry_after == timedelta(hours=1)
