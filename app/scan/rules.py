"""Assignment rules: which organization/department a discovered certificate belongs to. Pure.

A rule has a name, a match mode (``all`` / ``any``), conditions and an opaque target
(organization id, optional department id). Rules are tried in order; the first that matches
wins. Text comparisons ignore case; multi-valued fields (several OUs, SANs) match when any
value does; a missing value (no host name for an IP target) never matches.

``ip`` and ``port`` with ``equals`` test membership: the value is an address, CIDR block or
range (``10.0.0.0/8``, ``10.1.0.5-10.1.0.9``) / a port list or range (``443,8000-8100``).
Their other operators compare the text form. ``matches`` is a case-insensitive regex search
in RE2 syntax, run by RE2 through app.scan.patterns in linear time (no catastrophic
backtracking). A value longer than MAX_VALUE characters never matches a text condition: no
real name is that long, and matching a cut-off prefix could wrongly satisfy an anchored
pattern.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from app.pki import algorithms
from app.scan.addresses import AddressBlock, PortRange, address_to_int
from app.scan.errors import RuleError, TargetSpecError
from app.scan.patterns import PatternError, SafePattern
from app.scan.targets import parse_entry, parse_ports

MAX_VALUE = 4_096
MAX_CONDITION_VALUE = 256
MAX_NAME = 200


class Field(StrEnum):
    SUBJECT_CN = "subject_cn"
    SUBJECT_O = "subject_o"
    SUBJECT_OU = "subject_ou"
    SAN = "san"
    ISSUER = "issuer"
    HOST_NAME = "host_name"
    IP = "ip"
    PORT = "port"
    KEY_TYPE = "key_type"


class Operator(StrEnum):
    EQUALS = "equals"
    CONTAINS = "contains"
    STARTS_WITH = "starts_with"
    ENDS_WITH = "ends_with"
    MATCHES = "matches"


class MatchMode(StrEnum):
    ALL = "all"
    ANY = "any"


@dataclass(frozen=True)
class Observation:
    """What a rule sees: the leaf certificate's fields plus the endpoint it was found on.

    ``issuer`` holds the issuer's CN and O values and its full RFC 4514 name; ``key_type``
    holds the key's family and type in the vocabulary of app.pki.algorithms, e.g.
    ("RSA", "RSA-2048") or ("EC", "EC-P256"). Build it with
    app.scan.observation.observe().
    """

    subject_cn: tuple[str, ...] = ()
    subject_o: tuple[str, ...] = ()
    subject_ou: tuple[str, ...] = ()
    san: tuple[str, ...] = ()
    issuer: tuple[str, ...] = ()
    host_name: str | None = None
    ip: str | None = None
    port: int | None = None
    key_type: tuple[str, ...] = ()

    def values(self, field: Field) -> tuple[str, ...]:
        raw = getattr(self, field.value)
        if raw is None:
            return ()
        if isinstance(raw, tuple):
            return raw
        return (str(raw),)


@dataclass(frozen=True)
class Condition:
    field: Field
    operator: Operator
    value: str


@dataclass(frozen=True)
class AssignmentTarget:
    """Where a matching certificate goes; the ids are opaque to this package."""

    organization_id: int
    department_id: int | None = None


@dataclass(frozen=True)
class Rule:
    name: str
    match: MatchMode
    conditions: tuple[Condition, ...]
    target: AssignmentTarget
    rule_id: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        """parse_rule(data); raises RuleError."""
        return parse_rule(data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "name": self.name,
            "match": self.match.value,
            "conditions": [
                {"field": c.field.value, "operator": c.operator.value, "value": c.value}
                for c in self.conditions
            ],
            "organization_id": self.target.organization_id,
            "department_id": self.target.department_id,
        }


@dataclass(frozen=True)
class RuleMatch:
    """The winning rule, its position in the ordered list, and where it assigns."""

    rule: Rule
    index: int

    @property
    def target(self) -> AssignmentTarget:
        return self.rule.target


def _check_condition(number: int, data: Mapping[str, Any], errors: list[str]) -> Condition | None:
    prefix = f"condition {number}"
    try:
        field = Field(str(data.get("field", "")))
    except ValueError:
        choices = ", ".join(f.value for f in Field)
        errors.append(f"{prefix}: unknown field '{data.get('field')}' (one of: {choices})")
        return None
    try:
        operator = Operator(str(data.get("operator", "")))
    except ValueError:
        choices = ", ".join(o.value for o in Operator)
        errors.append(f"{prefix}: unknown operator '{data.get('operator')}' (one of: {choices})")
        return None
    value = str(data.get("value") if data.get("value") is not None else "").strip()
    if not value:
        errors.append(f"{prefix}: a value is required")
        return None
    if len(value) > MAX_CONDITION_VALUE:
        errors.append(f"{prefix}: the value is longer than {MAX_CONDITION_VALUE} characters")
        return None
    if field is Field.KEY_TYPE and operator is Operator.EQUALS:
        # Loose or older spellings ("ECDSA-256", "ec p-256") mean EC-P256, the name lists show.
        value = algorithms.canonical_key_type(value) or value
    condition = Condition(field, operator, value)
    try:
        _Matcher(condition)
    except ValueError as exc:
        errors.append(f"{prefix}: {exc}")
        return None
    return condition


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def parse_rule(data: Mapping[str, Any]) -> Rule:
    """A Rule from form/JSON data (the shape Rule.to_dict produces).

    Raises:
        RuleError: every problem, e.g. "condition 2: invalid regular expression: missing ),
            unterminated subpattern at position 0".
    """
    errors: list[str] = []
    name = str(data.get("name") or "").strip()
    if not name:
        errors.append("a rule name is required")
    elif len(name) > MAX_NAME:
        errors.append(f"the rule name is longer than {MAX_NAME} characters")
    try:
        match = MatchMode(str(data.get("match", "all")))
    except ValueError:
        errors.append("match must be 'all' or 'any'")
        match = MatchMode.ALL
    raw_conditions = data.get("conditions") or []
    if not raw_conditions:
        errors.append("add at least one condition")
    conditions = [
        _check_condition(number, item, errors)
        for number, item in enumerate(raw_conditions, start=1)
    ]
    organization_id = _positive_int(data.get("organization_id"))
    if organization_id is None:
        errors.append("choose the organization matching certificates are assigned to")
    department_id = data.get("department_id")
    if department_id not in (None, "") and _positive_int(department_id) is None:
        errors.append("the department is not valid")
    if errors:
        raise RuleError(errors)
    assert organization_id is not None
    return Rule(
        name=name,
        match=match,
        conditions=tuple(c for c in conditions if c is not None),
        target=AssignmentTarget(organization_id, _positive_int(department_id)),
        rule_id=_positive_int(data.get("rule_id")),
    )


def validate_rule(data: Mapping[str, Any]) -> list[str]:
    """The messages parse_rule would raise (empty when valid), for form feedback."""
    try:
        parse_rule(data)
    except RuleError as exc:
        return list(exc.messages)
    return []


class _Matcher:
    """One condition, compiled: regexes and IP/port sets are built once."""

    def __init__(self, condition: Condition) -> None:
        self.condition = condition
        self.field = condition.field
        self.operator = condition.operator
        self.needle = condition.value.casefold()
        self.pattern: SafePattern | None = None
        self.blocks: tuple[AddressBlock, ...] = ()
        self.ports: tuple[PortRange, ...] = ()
        if self.operator is Operator.MATCHES:
            try:
                self.pattern = SafePattern(condition.value)
            except PatternError as exc:
                raise ValueError(str(exc)) from None
        elif self.operator is Operator.EQUALS and self.field is Field.IP:
            self.blocks = tuple(self._blocks(condition.value))
        elif self.operator is Operator.EQUALS and self.field is Field.PORT:
            try:
                self.ports = parse_ports(condition.value)
            except TargetSpecError:
                raise ValueError(
                    f"'{condition.value}' is not a port, port list or range (1-65535)"
                ) from None

    @staticmethod
    def _blocks(text: str) -> Iterable[AddressBlock]:
        for entry in text.replace(",", " ").split():
            try:
                parsed = parse_entry(entry)
            except ValueError:
                parsed = ""
            if isinstance(parsed, str):
                raise ValueError(f"'{entry}' is not an IP address, CIDR block or range")
            yield parsed

    def test(self, observation: Observation) -> bool:
        values = observation.values(self.field)
        if self.blocks:
            return any(self._in_blocks(value) for value in values)
        if self.ports:
            return any(self._in_ports(value) for value in values)
        return any(self._test_text(value) for value in values if len(value) <= MAX_VALUE)

    def _in_blocks(self, value: str) -> bool:
        try:
            number, version = address_to_int(value)
        except ValueError:
            return False
        return any(block.contains(number, version) for block in self.blocks)

    def _in_ports(self, value: str) -> bool:
        return (
            value.isascii()
            and value.isdigit()
            and any(p.first <= int(value) <= p.last for p in self.ports)
        )

    def _test_text(self, value: str) -> bool:
        if self.pattern is not None:
            return self.pattern.search(value)
        folded = value.casefold()
        if self.operator is Operator.EQUALS:
            return folded == self.needle
        if self.operator is Operator.CONTAINS:
            return self.needle in folded
        if self.operator is Operator.STARTS_WITH:
            return folded.startswith(self.needle)
        return folded.endswith(self.needle)


class RuleSet:
    """Ordered rules compiled once; ``first_match`` is cheap enough per certificate."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)
        self._compiled = [
            (rule, [_Matcher(condition) for condition in rule.conditions]) for rule in self.rules
        ]

    def first_match(self, observation: Observation) -> RuleMatch | None:
        """The first rule (in order) whose conditions hold, or None."""
        for index, (rule, matchers) in enumerate(self._compiled):
            results = (matcher.test(observation) for matcher in matchers)
            if all(results) if rule.match is MatchMode.ALL else any(results):
                return RuleMatch(rule, index)
        return None


def first_match(rules: Sequence[Rule], observation: Observation) -> RuleMatch | None:
    """RuleSet(rules).first_match(observation); build a RuleSet to evaluate many."""
    return RuleSet(rules).first_match(observation)
