"""CAA (RFC 8659): which record sets allow this CA to issue; the parameters accounturi and
validationmethods of RFC 8657."""

from __future__ import annotations

import pytest

from app.acme import caa

R = caa.Record
US = ("pki.certwright.test",)
ACCOUNT = "https://pki.certwright.test/acme/tls/acct/5"
OTHER_ACCOUNT = "https://pki.certwright.test/acme/tls/acct/6"


def forbids(records, *, wildcard=False, account_url=ACCOUNT, method="http-01"):
    return caa.forbids(
        records, identities=US, wildcard=wildcard, account_url=account_url, method=method
    )


def test_climbing_stops_before_the_root():
    assert caa.climb("www.Example.COM.") == ["www.example.com", "example.com", "com"]


@pytest.mark.parametrize(
    ("records", "wildcard", "allowed"),
    [
        ([], False, True),  # no CAA anywhere: anyone
        ([R(0, "iodef", "mailto:sec@example.com")], False, True),  # no issue property
        ([R(0, "issue", "pki.certwright.test")], False, True),
        ([R(0, "issue", "PKI.Certwright.Test.")], False, True),  # case, trailing dot
        ([R(0, "issue", f"pki.certwright.test; accounturi={ACCOUNT}")], False, True),
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
    why = forbids(records, wildcard=wildcard)
    assert (why is None) == allowed, why


def test_the_refusal_names_who_is_allowed():
    why = forbids([R(0, "issue", "letsencrypt.org"), R(0, "issue", ";")])
    assert why == "CAA issue allows 'letsencrypt.org', nobody, not this CA (pki.certwright.test)"


# --- RFC 8659 §4.2: the issue value's grammar ------------------------------------------


@pytest.mark.parametrize(
    ("value", "issuer", "parameters"),
    [
        ("pki.example", "pki.example", ()),
        ("PKI.Example.", "pki.example", ()),
        ("", "", ()),
        (";", "", ()),
        ("pki.example;", "pki.example", ()),
        (" \tpki.example \t", "pki.example", ()),
        ("pki.example; a=b", "pki.example", (("a", "b"),)),
        ("pki.example;a=b;c=d", "pki.example", (("a", "b"), ("c", "d"))),
        # *WSP around the name, the ';' separators and the '='; trailing *WSP
        (
            " pki.example \t;\t accounturi = https://x/acct/1 ;  validationmethods=dns-01 \t",
            "pki.example",
            (("accounturi", "https://x/acct/1"), ("validationmethods", "dns-01")),
        ),
        # nobody, with parameters
        ("; accounturi=https://x/acct/1", "", (("accounturi", "https://x/acct/1"),)),
        # a value may hold '=' (and any printable character but ';'); it may be empty
        ("pki.example; key=a=b,c", "pki.example", (("key", "a=b,c"),)),
        ("pki.example; key=", "pki.example", (("key", ""),)),
        ("pki.example; a--b=1", "pki.example", (("a--b", "1"),)),  # inner hyphens
        ("xn--bcher-kva.example", "xn--bcher-kva.example", ()),
    ],
)
def test_issue_values_are_parsed_by_the_grammar(value, issuer, parameters):
    parsed = caa.parse_issue_value(value)
    assert (parsed.issuer, parsed.parameters) == (issuer, parameters)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("pki example", "'pki example' is not an issuer domain name"),
        ("-pki.example", "is not an issuer domain name"),
        ("pki-.example", "is not an issuer domain name"),
        ("pki..example", "is not an issuer domain name"),
        ("pki.example; accounturi", "'accounturi' is not a parameter (tag=value)"),
        ("pki.example; =x", "is not a parameter"),
        ("pki.example; accounturi=a b", "'accounturi=a b' is not a parameter"),
        ("pki.example; a=b;", "a ';' with no parameter after it"),  # none after the last
        ("pki.example; a=b;; c=d", "a ';' with no parameter after it"),
        ("pki.example; -a=b", "is not a parameter"),
        ("pki.example; a-=b", "is not a parameter"),
        ("pki.example; a_b=c", "is not a parameter"),
        ("pki.example; a=b\x7f", "is not a parameter"),  # DEL is not a value character
        ("pki.example; a=caf\u00e9", "is not a parameter"),
        (
            f"pki.example; accounturi={ACCOUNT}; AccountURI={OTHER_ACCOUNT}",
            "the parameter AccountURI is given twice",
        ),
    ],
)
def test_malformed_issue_values_say_why(value, message):
    with pytest.raises(ValueError) as raised:
        caa.parse_issue_value(value)
    assert message in str(raised.value)


def test_parameter_tags_are_looked_up_ignoring_case():
    parsed = caa.parse_issue_value(f"pki.example; AccountUri={ACCOUNT}")
    assert parsed.parameter("accounturi") == ACCOUNT
    assert parsed.parameter("validationmethods") is None


# --- RFC 8657: accounturi and validationmethods ----------------------------------------


def issue(*values):
    return [R(0, "issue", v) for v in values]


@pytest.mark.parametrize(
    ("records", "method", "allowed"),
    [
        # §3 accounturi: exactly the requesting account's URL
        (issue(f"pki.certwright.test; accounturi={ACCOUNT}"), "http-01", True),
        (issue(f"pki.certwright.test; accounturi={OTHER_ACCOUNT}"), "http-01", False),
        (issue(f"pki.certwright.test; accounturi={ACCOUNT}0"), "http-01", False),  # acct/50
        (issue(f"pki.certwright.test; accounturi={ACCOUNT}/"), "http-01", False),
        (issue(f"pki.certwright.test; accounturi={ACCOUNT.upper()}"), "http-01", False),
        (
            issue(f"pki.certwright.test; accounturi={ACCOUNT.replace('/acme', ':443/acme')}"),
            "http-01",
            False,
        ),
        # §4 validationmethods: the challenge type used must be listed
        (issue("pki.certwright.test; validationmethods=http-01"), "http-01", True),
        (issue("pki.certwright.test; validationmethods=dns-01,http-01"), "http-01", True),
        (issue("pki.certwright.test; validationmethods=dns-01,http-01"), "tls-alpn-01", False),
        (issue("pki.certwright.test; validationmethods=tls-alpn-01"), "tls-alpn-01", True),
        (issue("pki.certwright.test; validationmethods=dns-01"), "http-01", False),
        (issue("pki.certwright.test; validationmethods=HTTP-01"), "http-01", False),
        (issue("pki.certwright.test; validationmethods="), "http-01", False),  # no method
        # a method of some other CA's in the list is no harm
        (issue("pki.certwright.test; validationmethods=ca-phone,dns-01"), "dns-01", True),
        # both: both must admit the request
        (
            issue(f"pki.certwright.test; accounturi={ACCOUNT}; validationmethods=dns-01"),
            "dns-01",
            True,
        ),
        (
            issue(f"pki.certwright.test; accounturi={ACCOUNT}; validationmethods=dns-01"),
            "http-01",
            False,
        ),
        (
            issue(f"pki.certwright.test; accounturi={OTHER_ACCOUNT}; validationmethods=dns-01"),
            "dns-01",
            False,
        ),
        # unknown parameters are ignored
        (issue("pki.certwright.test; policy=ev; x-y=1"), "http-01", True),
        (issue(f"pki.certwright.test; policy=ev; accounturi={ACCOUNT}"), "http-01", True),
        # tags ignoring case
        (issue(f"pki.certwright.test; AccountURI={OTHER_ACCOUNT}"), "http-01", False),
        (issue("pki.certwright.test; ValidationMethods=dns-01"), "http-01", False),
        # malformed: refuses for that record
        (issue("pki.certwright.test; accounturi=acct-5"), "http-01", False),  # not a URI
        (issue("pki.certwright.test; accounturi="), "http-01", False),
        (issue("pki.certwright.test; validationmethods=http-01,"), "http-01", False),
        (issue("pki.certwright.test; validationmethods=,http-01"), "http-01", False),
        (issue("pki.certwright.test; validationmethods=http_01"), "http-01", False),
        (issue("pki.certwright.test; accounturi"), "http-01", False),
        (issue(f"pki.certwright.test; accounturi={ACCOUNT};"), "http-01", False),
        # several records: any one admitting the request is enough
        (
            issue(f"pki.certwright.test; accounturi={OTHER_ACCOUNT}", "pki.certwright.test"),
            "http-01",
            True,
        ),
        (
            issue(
                f"pki.certwright.test; accounturi={OTHER_ACCOUNT}",
                f"pki.certwright.test; accounturi={ACCOUNT}",
            ),
            "http-01",
            True,
        ),
        (
            issue(
                "pki.certwright.test; validationmethods=dns-01",
                "pki.certwright.test; validationmethods=http-01",
            ),
            "http-01",
            True,
        ),
        (
            issue("pki.certwright.test; accounturi=acct-5", "pki.certwright.test"),
            "http-01",
            True,
        ),
        (
            issue(
                f"pki.certwright.test; accounturi={OTHER_ACCOUNT}",
                "pki.certwright.test; validationmethods=dns-01",
            ),
            "http-01",
            False,
        ),
        # our account's URL on another CA's record admits nothing here
        (issue(f"letsencrypt.org; accounturi={ACCOUNT}"), "http-01", False),
    ],
)
def test_rfc8657_parameters_restrict_our_records(records, method, allowed):
    why = forbids(records, method=method)
    assert (why is None) == allowed, why


def test_an_unknown_account_url_matches_no_accounturi():
    records = issue(f"pki.certwright.test; accounturi={ACCOUNT}")
    assert forbids(records, account_url="") is not None
    assert forbids(issue("pki.certwright.test"), account_url="") is None


def test_parameters_apply_to_the_deciding_property_only():
    records = [
        R(0, "issue", "pki.certwright.test"),
        R(0, "issuewild", f"pki.certwright.test; accounturi={OTHER_ACCOUNT}"),
    ]
    assert forbids(records, wildcard=False, method="dns-01") is None
    why = forbids(records, wildcard=True, method="dns-01")
    assert why is not None and why.startswith("CAA issuewild allows"), why


def test_the_refusal_names_the_parameter_that_refused():
    why = forbids(issue(f"pki.certwright.test; accounturi={OTHER_ACCOUNT}"))
    assert why == (
        f"CAA issue allows 'pki.certwright.test' only for account {OTHER_ACCOUNT} "
        f"(accounturi); this request is account {ACCOUNT} by http-01"
    )
    why = forbids(issue("pki.certwright.test; validationmethods=dns-01,tls-alpn-01"))
    assert why == (
        "CAA issue allows 'pki.certwright.test' only by dns-01, tls-alpn-01 "
        f"(validationmethods); this request is account {ACCOUNT} by http-01"
    )
    why = forbids(
        issue(
            "letsencrypt.org",
            f"pki.certwright.test; accounturi={OTHER_ACCOUNT}; validationmethods=dns-01",
        )
    )
    assert why == (
        f"CAA issue allows 'letsencrypt.org'; 'pki.certwright.test' only for account "
        f"{OTHER_ACCOUNT} (accounturi) and by dns-01 (validationmethods); this request is "
        f"account {ACCOUNT} by http-01"
    )


def test_the_refusal_names_a_malformed_value_and_why():
    why = forbids(issue("pki.certwright.test; validationmethods=http-01,"))
    assert why == (
        "CAA issue allows nothing by the malformed 'pki.certwright.test; "
        "validationmethods=http-01,' (validationmethods 'http-01,' is not a comma separated "
        f"list of method names); this request is account {ACCOUNT} by http-01"
    )
    why = forbids(issue("pki.certwright.test; accounturi=acct-5"))
    assert why is not None and "(accounturi 'acct-5' is not a URI)" in why
