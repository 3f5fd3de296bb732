"""CAA (RFC 8659): which record sets allow this CA to issue."""

from __future__ import annotations

import pytest

from app.acme import caa

R = caa.Record
US = ("pki.certwright.test",)


def test_climbing_stops_before_the_root():
    assert caa.climb("www.Example.COM.") == ["www.example.com", "example.com", "com"]


@pytest.mark.parametrize(
    ("records", "wildcard", "allowed"),
    [
        ([], False, True),  # no CAA anywhere: anyone
        ([R(0, "iodef", "mailto:sec@example.com")], False, True),  # no issue property
        ([R(0, "issue", "pki.certwright.test")], False, True),
        ([R(0, "issue", "PKI.Certwright.Test.")], False, True),  # case, trailing dot
        ([R(0, "issue", "pki.certwright.test; accounturi=https://x/acct/1")], False, True),
        ([R(0, "issue", "letsencrypt.org")], False, False),
        ([R(0, "issue", ";")], False, False),  # nobody
        ([R(0, "issue", "letsencrypt.org"), R(0, "issue", "pki.certwright.test")], False, True),
        # A wildcard: issuewild decides when present...
        ([R(0, "issue", "pki.certwright.test"), R(0, "issuewild", ";")], True, False),
        ([R(0, "issue", ";"), R(0, "issuewild", "pki.certwright.test")], True, True),
        # ... and does not matter for a name that is not a wildcard.
        ([R(0, "issue", "pki.certwright.test"), R(0, "issuewild", ";")], False, True),
        # ... else issue decides.
        ([R(0, "issue", "letsencrypt.org")], True, False),
        # An unknown tag: ignored unless critical.
        ([R(0, "future", "x"), R(0, "issue", "pki.certwright.test")], False, True),
        ([R(128, "future", "x"), R(0, "issue", "pki.certwright.test")], False, False),
        ([R(128, "issue", "pki.certwright.test")], False, True),  # critical and understood
    ],
)
def test_which_record_sets_allow_us(records, wildcard, allowed):
    why = caa.forbids(records, identities=US, wildcard=wildcard)
    assert (why is None) == allowed, why


def test_the_refusal_names_who_is_allowed():
    why = caa.forbids(
        [R(0, "issue", "letsencrypt.org"), R(0, "issue", ";")], identities=US, wildcard=False
    )
    assert why == "CAA issue allows 'letsencrypt.org', nobody, not this CA (pki.certwright.test)"
