"""Assignment rules: every field and operator, all/any, order, validation messages."""

from __future__ import annotations

import time
from typing import Any

import pytest

from app.scan.errors import RuleError
from app.scan.rules import (
    AssignmentTarget,
    Field,
    MatchMode,
    Observation,
    Operator,
    Rule,
    RuleSet,
    first_match,
    parse_rule,
    validate_rule,
)

OBS = Observation(
    subject_cn=("www.Shop.example.com",),
    subject_o=("Example Corp",),
    subject_ou=("Web", "Payments"),
    san=("www.shop.example.com", "shop.example.com", "10.1.2.3"),
    issuer=("Example Issuing CA 1", "Example Corp", "CN=Example Issuing CA 1,O=Example Corp"),
    host_name="shop.example.com",
    ip="10.1.2.3",
    port=8443,
    key_type=("RSA", "RSA-2048"),
)


def rule(*conditions: tuple[str, str, str], match: str = "all", org: int = 7) -> Rule:
    return parse_rule(
        {
            "name": "r",
            "match": match,
            "conditions": [{"field": f, "operator": o, "value": v} for f, o, v in conditions],
            "organization_id": org,
        }
    )


def holds(field: str, operator: str, value: str, observation: Observation = OBS) -> bool:
    return first_match([rule((field, operator, value))], observation) is not None


@pytest.mark.parametrize(
    ("field", "operator", "value", "expected"),
    [
        ("subject_cn", "equals", "WWW.shop.EXAMPLE.com", True),
        ("subject_cn", "equals", "shop.example.com", False),
        ("subject_cn", "contains", "shop", True),
        ("subject_cn", "starts_with", "www.", True),
        ("subject_cn", "ends_with", ".example.com", True),
        ("subject_cn", "ends_with", ".example.org", False),
        ("subject_cn", "matches", r"^www\.[a-z]+\.example\.com$", True),
        ("subject_o", "equals", "example corp", True),
        ("subject_ou", "equals", "payments", True),  # any of several values
        ("subject_ou", "equals", "HR", False),
        ("san", "equals", "shop.example.com", True),
        ("san", "starts_with", "10.1.", True),
        ("issuer", "contains", "Issuing CA", True),
        ("issuer", "equals", "example corp", True),
        ("issuer", "starts_with", "CN=Example", True),
        ("host_name", "ends_with", "example.com", True),
        ("ip", "equals", "10.1.2.3", True),
        ("ip", "equals", "10.0.0.0/8", True),
        ("ip", "equals", "10.1.2.0-10.1.2.9", True),
        ("ip", "equals", "10.1.2.4-9", False),
        ("ip", "equals", "192.168.0.0/16, 10.1.0.0/16", True),
        ("ip", "equals", "2001:db8::/32", False),
        ("ip", "starts_with", "10.1.", True),
        ("ip", "matches", r"^10\.1\.", True),
        ("port", "equals", "8443", True),
        ("port", "equals", "443,8000-9000", True),
        ("port", "equals", "443", False),
        ("port", "ends_with", "43", True),
        ("key_type", "equals", "rsa", True),
        ("key_type", "equals", "RSA-2048", True),
        ("key_type", "equals", "EC", False),
        ("key_type", "equals", "ECDSA", False),  # read as EC
        ("key_type", "starts_with", "RSA-", True),
    ],
)
def test_each_field_and_operator(field: str, operator: str, value: str, expected: bool) -> None:
    assert holds(field, operator, value) is expected


def test_missing_values_never_match() -> None:
    ip_target = Observation(ip="10.0.0.1", port=443)
    for operator in Operator:
        value = r".*" if operator is Operator.MATCHES else "x"
        assert not holds("host_name", operator.value, value, ip_target)
        assert not holds("subject_cn", operator.value, value, ip_target)


def test_all_and_any() -> None:
    both = [("subject_o", "equals", "Example Corp"), ("port", "equals", "443")]
    assert first_match([rule(*both, match="all")], OBS) is None
    assert first_match([rule(*both, match="any")], OBS) is not None
    assert first_match([rule(both[0], ("subject_ou", "equals", "Web"))], OBS) is not None


def test_first_matching_rule_wins_and_is_reported() -> None:
    rules = [
        rule(("port", "equals", "443"), org=1),
        rule(("san", "ends_with", ".example.com"), org=2),
        rule(("subject_o", "equals", "Example Corp"), org=3),
    ]
    found = RuleSet(rules).first_match(OBS)
    assert found is not None
    assert (found.index, found.target) == (1, AssignmentTarget(2))
    assert found.rule is rules[1]
    assert RuleSet(rules[:1]).first_match(OBS) is None


def test_rule_round_trip_and_department() -> None:
    data = {
        "rule_id": 12,
        "name": "  Shop certificates ",
        "match": "any",
        "conditions": [{"field": "san", "operator": "matches", "value": r"shop\."}],
        "organization_id": "3",
        "department_id": 9,
    }
    parsed = parse_rule(data)
    assert parsed == Rule(
        name="Shop certificates",
        match=MatchMode.ANY,
        conditions=(parsed.conditions[0],),
        target=AssignmentTarget(3, 9),
        rule_id=12,
    )
    assert parsed.conditions[0].field is Field.SAN
    assert parse_rule(parsed.to_dict()) == parsed


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": " "}, "a rule name is required"),
        ({"name": "x" * 201}, "the rule name is longer than 200 characters"),
        ({"match": "most"}, "match must be 'all' or 'any'"),
        ({"conditions": []}, "add at least one condition"),
        (
            {"organization_id": None},
            "choose the organization matching certificates are assigned to",
        ),
        ({"organization_id": -1}, "choose the organization matching certificates are assigned to"),
        (
            {"organization_id": True},
            "choose the organization matching certificates are assigned to",
        ),
        ({"department_id": "sales"}, "the department is not valid"),
    ],
)
def test_rule_level_messages(changes: dict[str, Any], message: str) -> None:
    data = {
        "name": "ok",
        "conditions": [{"field": "port", "operator": "equals", "value": "443"}],
        "organization_id": 1,
        **changes,
    }
    assert validate_rule(data) == [message]


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        (
            {"field": "serial", "operator": "equals", "value": "1"},
            "condition 1: unknown field 'serial' (one of: subject_cn, subject_o, subject_ou, "
            "san, issuer, host_name, ip, port, key_type)",
        ),
        (
            {"field": "san", "operator": "like", "value": "1"},
            "condition 1: unknown operator 'like' (one of: equals, contains, starts_with, "
            "ends_with, matches)",
        ),
        ({"field": "san", "operator": "equals", "value": "  "}, "condition 1: a value is required"),
        (
            {"field": "san", "operator": "equals", "value": "x" * 257},
            "condition 1: the value is longer than 256 characters",
        ),
        (
            {"field": "san", "operator": "matches", "value": "(shop"},
            "condition 1: invalid regular expression: missing ), unterminated subpattern "
            "at position 0",
        ),
        (
            {"field": "san", "operator": "matches", "value": "[z-a]"},
            "condition 1: invalid regular expression: bad character range z-a at position 1",
        ),
        (
            {"field": "san", "operator": "matches", "value": r"(a)\1"},
            "condition 1: regular expressions with backreferences are not supported",
        ),
        (
            {"field": "ip", "operator": "equals", "value": "10.0.0.0/33"},
            "condition 1: '10.0.0.0/33' is not an IP address, CIDR block or range",
        ),
        (
            {"field": "ip", "operator": "equals", "value": "intranet"},
            "condition 1: 'intranet' is not an IP address, CIDR block or range",
        ),
        (
            {"field": "port", "operator": "equals", "value": "https"},
            "condition 1: 'https' is not a port, port list or range (1-65535)",
        ),
    ],
)
def test_condition_messages(condition: dict[str, str], message: str) -> None:
    data = {"name": "r", "conditions": [condition], "organization_id": 1}
    assert validate_rule(data) == [message]
    with pytest.raises(RuleError) as info:
        parse_rule(data)
    assert info.value.messages == (message,)


def test_every_problem_is_reported_with_its_condition_number() -> None:
    data = {
        "name": "",
        "conditions": [
            {"field": "san", "operator": "equals", "value": "ok"},
            {"field": "san", "operator": "matches", "value": "a{2,1}"},
        ],
    }
    assert validate_rule(data) == [
        "a rule name is required",
        "condition 2: invalid regular expression: min repeat greater than max repeat at position 2",
        "choose the organization matching certificates are assigned to",
    ]


def test_catastrophic_patterns_stay_fast() -> None:
    hostile = Observation(subject_cn=("a" * 4_000 + "!",), san=("a" * 200 + "!",))
    rules = RuleSet(
        [
            rule(("subject_cn", "matches", r"^(a+)+$")),
            rule(("san", "matches", r"^(a|aa)*$")),
            rule(("san", "matches", r".*a.*a.*a.*a.*b")),
            rule(("subject_cn", "matches", r"(\w+\s?)+$"), match="any"),
        ]
    )
    started = time.perf_counter()
    assert rules.first_match(hostile) is None
    assert time.perf_counter() - started < 1.0  # Python's re needs years for these
    oversized = Observation(subject_cn=("a" * 5_000,))
    assert not holds("subject_cn", "contains", "a", oversized)  # beyond MAX_VALUE: no match
