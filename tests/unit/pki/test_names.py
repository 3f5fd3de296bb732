"""DNS names, IPs, emails, delegated-domain matching and subject building."""

from __future__ import annotations

import ipaddress
import re

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from app.pki import names
from app.pki.errors import NamePolicyError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("www.Example.COM", "www.example.com"),
        ("  host.example.com.  ", "host.example.com"),
        ("*.example.com", "*.example.com"),
        ("printer1", "printer1"),
        ("a-b.c0.example", "a-b.c0.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("*.Example.COM.", "*.example.com"),
        ("x" * 63 + ".example", "x" * 63 + ".example"),
        (".".join(["a" * 63] * 4)[:253], ".".join(["a" * 63] * 4)[:253]),  # the longest
        ("host.b1", "host.b1"),
    ],
)
def test_dns_names_are_normalised(raw: str, expected: str) -> None:
    assert names.normalize_dns_name(raw) == expected


def test_unicode_names_become_a_labels() -> None:
    assert names.normalize_dns_name("Bücher.example") == "xn--bcher-kva.example"
    # IDNA 2008 keeps sharp s (IDNA 2003 would have mapped it to "ss").
    assert names.normalize_dns_name("faß.de") == "xn--fa-hia.de"
    assert names.normalize_dns_name("*.bücher.example") == "*.xn--bcher-kva.example"


def test_invalid_idn_is_refused() -> None:
    with pytest.raises(NamePolicyError, match="is not a valid IDNA 2008 name"):
        names.normalize_dns_name("☃.net")
    with pytest.raises(NamePolicyError, match="is not a valid IDNA 2008 name"):
        names.normalize_dns_name("xn--abc.example")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "DNS name is empty"),
        (".", "DNS name is empty"),
        ("a..example.com", "DNS name has an empty label"),
        ("a_b.example.com", "DNS labels may contain only letters, digits and hyphens"),
        ("-a.example.com", "DNS label must not start or end with a hyphen"),
        ("a-.example.com", "DNS label must not start or end with a hyphen"),
        ("ab--c.example.com", "DNS label has reserved hyphens in positions 3-4"),
        ("x" * 64 + ".example.com", "DNS label is longer than 63 characters"),
        (".".join(["a" * 60] * 5), "DNS name is longer than 253 characters"),
        (".".join(["a" * 63] * 4)[:254], "DNS name is longer than 253 characters"),
        ("*.a", "a wildcard must be followed by at least two labels"),
        ("a.*.example.com", "'*' is allowed only as the whole left-most label"),
        ("w*.example.com", "'*' is allowed only as the whole left-most label"),
        ("*.com", "a wildcard must be followed by at least two labels"),
        ("10.0.0.1", "DNS name cannot end in an all-numeric label"),
        ("host.123", "DNS name cannot end in an all-numeric label"),
    ],
)
def test_bad_dns_names_are_refused(raw: str, message: str) -> None:
    with pytest.raises(NamePolicyError, match=message.replace("*", r"\*")):
        names.normalize_dns_name(raw)


def test_wildcard_can_be_forbidden() -> None:
    with pytest.raises(NamePolicyError, match="wildcard names are not allowed here"):
        names.normalize_dns_name("*.example.com", allow_wildcard=False)


def test_ip_addresses() -> None:
    assert names.normalize_ip_address(" 10.0.0.1 ") == ipaddress.ip_address("10.0.0.1")
    assert names.normalize_ip_address("[2001:db8::1]") == ipaddress.ip_address("2001:db8::1")
    with pytest.raises(NamePolicyError, match=r"'10.0.0' is not an IP address"):
        names.normalize_ip_address("10.0.0")
    with pytest.raises(NamePolicyError, match="with a zone index cannot be certified"):
        names.normalize_ip_address("fe80::1%eth0")


def test_emails() -> None:
    assert names.normalize_email("John.Doe+tls@Example.COM") == "John.Doe+tls@example.com"
    with pytest.raises(NamePolicyError, match="is not an email address"):
        names.normalize_email("nobody")
    with pytest.raises(NamePolicyError, match="must be plain ASCII dot-atom text"):
        names.normalize_email("jöhn@example.com")
    with pytest.raises(NamePolicyError, match="must be plain ASCII dot-atom text"):
        names.normalize_email("a..b@example.com")
    with pytest.raises(NamePolicyError, match="is longer than 64 characters"):
        names.normalize_email("a" * 65 + "@example.com")
    with pytest.raises(NamePolicyError, match="wildcard names are not allowed here"):
        names.normalize_email("a@*.example.com")
    with pytest.raises(NamePolicyError, match="email address is longer than 254 characters"):
        names.normalize_email("a" * 10 + "@" + ".".join(["b" * 61] * 4) + ".com")


@pytest.mark.parametrize(
    ("name", "domain", "allow_wildcard", "expected"),
    [
        ("example.com", "example.com", False, True),
        ("www.example.com", "example.com", False, True),
        ("a.b.example.com", "EXAMPLE.com.", False, True),
        ("badexample.com", "example.com", False, False),
        ("example.org", "example.com", False, False),
        ("example.com", "*.example.com", False, False),
        ("www.example.com", "*.example.com", False, True),
        ("a.b.example.com", "*.example.com", False, True),
        ("*.example.com", "example.com", False, False),
        ("*.example.com", "example.com", True, True),
        ("*.a.example.com", "example.com", True, True),
        ("*.example.com", "*.example.com", True, True),
        ("*.a.example.com", "*.example.com", True, True),
        ("*.example.com", "a.example.com", True, False),
        ("*.example.org", "example.com", True, False),
    ],
)
def test_is_name_within_domain(
    name: str, domain: str, allow_wildcard: bool, expected: bool
) -> None:
    assert names.is_name_within_domain(name, domain, allow_wildcard=allow_wildcard) is expected


def test_is_name_within_domain_rejects_invalid_names() -> None:
    with pytest.raises(NamePolicyError, match="DNS labels may contain only"):
        names.is_name_within_domain("a_b.example.com", "example.com")


def test_build_alt_names_normalises_and_deduplicates() -> None:
    alt = names.build_alt_names(
        dns_names=["WWW.example.com", "www.example.com.", "api.example.com"],
        ip_addresses=["10.0.0.1", ipaddress.ip_address("10.0.0.1"), "::1"],
        emails=["a@Example.com", "a@example.com"],
    )
    assert alt.dns_names == ("www.example.com", "api.example.com")
    assert alt.ip_addresses == (ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("::1"))
    assert alt.emails == ("a@example.com",)
    assert [type(n) for n in alt.general_names()] == [
        x509.DNSName,
        x509.DNSName,
        x509.IPAddress,
        x509.IPAddress,
        x509.RFC822Name,
    ]
    assert not alt.is_empty
    assert names.AltNames().is_empty


def test_parse_alt_names_sorts_free_form_input() -> None:
    alt = names.parse_alt_names(["a.example.com", " 10.1.2.3", "2001:db8::5", "x@example.com", ""])
    assert alt.dns_names == ("a.example.com",)
    assert alt.ip_addresses == (
        ipaddress.ip_address("10.1.2.3"),
        ipaddress.ip_address("2001:db8::5"),
    )
    assert alt.emails == ("x@example.com",)
    with pytest.raises(NamePolicyError, match=r"'1.2.3' is not an IP address"):
        names.parse_alt_names(["1.2.3"])
    with pytest.raises(NamePolicyError, match="wildcard names are not allowed here"):
        names.parse_alt_names(["*.example.com"], allow_wildcard=False)


def test_with_common_name() -> None:
    alt = names.build_alt_names(dns_names=["b.example.com"])
    assert alt.with_common_name("A.example.com").dns_names == ("a.example.com", "b.example.com")
    assert alt.with_common_name("b.example.com") == alt
    assert alt.with_common_name("John Doe") == alt
    assert alt.with_common_name(None) == alt
    assert alt.with_common_name("printer1") == alt
    assert alt.with_common_name("printer1", single_label=True).dns_names[0] == "printer1"
    with_ip = alt.with_common_name("192.0.2.7")
    assert with_ip.ip_addresses == (ipaddress.ip_address("192.0.2.7"),)
    assert with_ip.with_common_name("192.0.2.7") == with_ip


@pytest.mark.parametrize(
    ("cn", "single_label", "expected"),
    [
        ("WWW.Example.com.", False, "www.example.com"),
        ("Bücher.example", False, "xn--bcher-kva.example"),
        ("*.example.com", False, "*.example.com"),
        ("10.0.0.1", False, ipaddress.ip_address("10.0.0.1")),
        ("[2001:db8::1]", False, ipaddress.ip_address("2001:db8::1")),
        ("printer1", False, None),
        ("printer1", True, "printer1"),
        ("John Doe", True, None),
        ("1.2.3", False, None),
        ("", False, None),
        (None, False, None),
    ],
)
def test_common_name_host(
    cn: str | None, single_label: bool, expected: str | names.IPAddress | None
) -> None:
    assert names.common_name_host(cn, single_label=single_label) == expected


def test_build_subject_orders_c_st_l_o_ou_cn() -> None:
    subject = names.build_subject(
        common_name="www.example.com",
        organization="Acme",
        organizational_unit="IT",
        locality="Austin",
        state="Texas",
        country="us",
    )
    oids = [attribute.oid for attribute in subject]
    assert oids == [
        NameOID.COUNTRY_NAME,
        NameOID.STATE_OR_PROVINCE_NAME,
        NameOID.LOCALITY_NAME,
        NameOID.ORGANIZATION_NAME,
        NameOID.ORGANIZATIONAL_UNIT_NAME,
        NameOID.COMMON_NAME,
    ]
    assert subject.rfc4514_string() == "CN=www.example.com,OU=IT,O=Acme,L=Austin,ST=Texas,C=US"
    assert len(subject.rdns) == 6
    assert names.build_subject(common_name="  ", organization="Acme") == x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme")]
    )


@pytest.mark.parametrize(
    ("field", "limit", "label"),
    [
        ("common_name", 64, "common name (CN)"),
        ("organization", 64, "organization (O)"),
        ("organizational_unit", 64, "organizational unit (OU)"),
        ("locality", 128, "locality (L)"),
        ("state", 128, "state or province (ST)"),
    ],
)
def test_subject_length_limits(field: str, limit: int, label: str) -> None:
    names.build_subject(**{field: "x" * limit})
    with pytest.raises(NamePolicyError, match=rf"^{re.escape(label)} is longer than {limit}"):
        names.build_subject(**{field: "x" * (limit + 1)})


def test_country_must_be_iso_alpha2() -> None:
    with pytest.raises(NamePolicyError, match="two-letter ISO 3166-1 code, not 'USA'"):
        names.build_subject(country="USA")
    with pytest.raises(NamePolicyError, match="two-letter ISO 3166-1 code, not 'QQ'"):
        names.build_subject(country="QQ")


def test_control_characters_are_refused() -> None:
    with pytest.raises(
        NamePolicyError,
        match=r"organization \(O\) contains the control character U\+000A LINE FEED",
    ):
        names.build_subject(organization="Acme\nEvil")
    with pytest.raises(
        NamePolicyError, match=r"common name \(CN\) contains the control character U\+007F DELETE"
    ):
        names.build_subject(common_name="www\x7fexample")


def test_invisible_and_bidi_characters_are_refused_in_subjects() -> None:
    # A name stored before these rules still cannot reach a certificate.
    with pytest.raises(
        NamePolicyError,
        match=r"organizational unit \(OU\) contains the bidirectional control character "
        r"U\+202E RIGHT-TO-LEFT OVERRIDE",
    ):
        names.build_subject(organizational_unit="Sales\u202eselaS")
    with pytest.raises(NamePolicyError, match=r"U\+0085 NEXT LINE"):
        names.build_subject(organization="Acme\x85Evil")


def test_subject_fields_round_trip() -> None:
    fields = names.SubjectFields(
        common_name="a.example.com", organization="Acme", country="DE", locality="Berlin"
    )
    assert names.subject_fields(fields.to_name()) == fields
    assert names.subject_fields(x509.Name([])) == names.SubjectFields()


def test_uris_for_device_certificates() -> None:
    alt = names.parse_alt_names(
        ["urn:dev:ops:cam-1", "https://cam.example.com:8443/api", "fe80::1", "cam.example.com"]
    )
    assert alt.uris == ("urn:dev:ops:cam-1", "https://cam.example.com:8443/api")
    assert [str(ip) for ip in alt.ip_addresses] == ["fe80::1"]
    assert alt.dns_names == ("cam.example.com",)
    assert names.uri_host("https://user@cam.example.com:8443/x") == "cam.example.com"
    assert names.uri_host("https://[2001:db8::1]:443/") == "[2001:db8::1]"
    assert names.uri_host("urn:dev:ops:cam-1") is None
    for bad, message in (
        ("urn:x:", "is not a URN"),
        ("https://bad_host.example/", "letters, digits and hyphens"),
        ("https://ex ample.com/", "not a URN"),
    ):
        with pytest.raises(NamePolicyError, match=message):
            names.normalize_uri(bad)
    # "host:8443" is a typo, not a URI with the scheme "host".
    with pytest.raises(NamePolicyError):
        names.parse_alt_names(["host:8443"])
