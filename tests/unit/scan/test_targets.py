"""Range and port parsing: every entry form, every message, counting without expansion."""

from __future__ import annotations

import json

import pytest

from app.scan.addresses import AddressBlock, PortRange, parse_deny_list
from app.scan.errors import TargetSpecError
from app.scan.targets import (
    TargetSpec,
    normalize_host_name,
    parse_host_overrides,
    parse_ports,
    parse_target_spec,
    validate_targets,
)


def block(first: str, last: str | None = None) -> AddressBlock:
    import ipaddress

    a = ipaddress.ip_address(first)
    b = ipaddress.ip_address(last or first)
    return AddressBlock(int(a), int(b), a.version)


def messages(ranges: str, ports: str = "443", **kwargs: object) -> tuple[str, ...]:
    with pytest.raises(TargetSpecError) as info:
        parse_target_spec(ranges, ports, **kwargs)  # type: ignore[arg-type]
    return info.value.messages


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1", block("10.0.0.1")),
        ("2001:db8::1", block("2001:db8::1")),
        ("[2001:db8::2]", block("2001:db8::2")),
        ("10.1.0.0/16", block("10.1.0.0", "10.1.255.255")),
        ("2001:db8::/120", block("2001:db8::", "2001:db8::ff")),
        ("10.0.0.1-10.0.0.50", block("10.0.0.1", "10.0.0.50")),
        ("10.0.0.1 - 10.0.0.50", block("10.0.0.1", "10.0.0.50")),
        ("10.0.0.1-50", block("10.0.0.1", "10.0.0.50")),
        ("10.0.0.7-7", block("10.0.0.7")),
        ("2001:db8::1-2001:db8::9", block("2001:db8::1", "2001:db8::9")),
        ("127.0.0.0/8", block("127.0.0.0", "127.255.255.255")),
        ("::1", block("::1")),
    ],
)
def test_each_address_form_parses_to_one_block(text: str, expected: AddressBlock) -> None:
    spec = parse_target_spec(text, max_addresses=1 << 24)
    assert spec.blocks == (expected,)
    assert spec.host_names == ()
    assert spec.ports == (PortRange(443, 443),)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("www.example.com", "www.example.com"),
        ("WWW.Example.COM.", "www.example.com"),
        ("intranet", "intranet"),
        ("web-01.corp", "web-01.corp"),
        ("bücher.example", "xn--bcher-kva.example"),
    ],
)
def test_host_names_are_normalised(text: str, expected: str) -> None:
    assert parse_target_spec(text).host_names == (expected,)


def test_entries_split_by_lines_commas_spaces_and_comments() -> None:
    text = "10.0.0.1, 10.0.0.2\n# a comment line\n\n10.0.0.3 web.example  # trailing\n"
    spec = parse_target_spec(text, "443, 8443;9000-9002")
    assert spec.blocks == (block("10.0.0.1", "10.0.0.3"),)  # adjacent entries merge
    assert spec.host_names == ("web.example",)
    assert spec.ports == (PortRange(443, 443), PortRange(8443, 8443), PortRange(9000, 9002))
    assert spec.port_count == 5
    assert spec.target_count == (3 + 1) * 5


def test_overlaps_merge_and_duplicates_collapse() -> None:
    spec = parse_target_spec("10.0.0.0/24\n10.0.0.5\n10.0.0.200-10.0.1.10\nA.test\na.test")
    assert spec.blocks == (block("10.0.0.0", "10.0.1.10"),)
    assert spec.address_count == 256 + 11
    assert spec.host_names == ("a.test",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.300", "is not an IPv4/IPv6 address, CIDR block, range or host name"),
        ("not_a_host!", "is not an IPv4/IPv6 address, CIDR block, range or host name"),
        ("-leading.example", "is not an IPv4/IPv6 address, CIDR block, range or host name"),
        ("10.0.0.5/24", "has host bits set; did you mean 10.0.0.0/24?"),
        ("10.0.0.0/33", "has an invalid prefix length (/0-/32)"),
        ("2001:db8::/129", "has an invalid prefix length (/0-/128)"),
        ("10.0.0.0/x", "has an invalid prefix length (/0-/32)"),
        ("10.0.0.0/²", "has an invalid prefix length (/0-/32)"),
        ("10.0.0.1-²", "has an invalid range end '²' (a full address, or for IPv4 the last octet)"),
        ("10.0.0.300/24", "is not an IPv4/IPv6 address, CIDR block, range or host name"),
        ("10.0.0.50-10.0.0.1", "ends before it starts"),
        ("10.0.0.50-7", "ends before it starts"),
        ("10.0.0.1-2001:db8::1", "mixes IPv4 and IPv6"),
        ("10.0.0.1-256", "has an invalid range end '256' (last octet 0-255)"),
        (
            "10.0.0.1-x",
            "has an invalid range end 'x' (a full address, or for IPv4 the last octet)",
        ),
        (
            "2001:db8::1-ff",
            "has an invalid range end 'ff' (a full address, or for IPv4 the last octet)",
        ),
        ("*.example.com", "is a wildcard; list the host names to scan"),
        ("https://example.com/", "is a URL; enter the host name only"),
        ("fe80::1%eth0", "has a zone index; scoped IPv6 addresses cannot be scanned"),
    ],
)
def test_bad_entries_name_line_and_reason(text: str, message: str) -> None:
    found = messages(f"10.0.0.1\n10.0.0.2\n{text}")
    assert found == (f"line 3: '{text}' {message}",)


def test_exact_message_from_the_issue() -> None:
    assert messages("a.example\nb.example\n10.0.0.300") == (
        "line 3: '10.0.0.300' is not an IPv4/IPv6 address, CIDR block, range or host name",
    )


def test_every_bad_entry_is_reported_at_once() -> None:
    found = messages("10.0.0.300, 10.0.0.1\n10.0.0.9-1\n\n*.x.example", "0,443,99999,9-8,x,4²")
    assert found == (
        "line 1: '10.0.0.300' is not an IPv4/IPv6 address, CIDR block, range or host name",
        "line 2: '10.0.0.9-1' ends before it starts",
        "line 4: '*.x.example' is a wildcard; list the host names to scan",
        "ports: '0' is outside 1-65535",
        "ports: '99999' is outside 1-65535",
        "ports: '9-8' ends before it starts",
        "ports: 'x' is not a port number or range (1-65535)",
        "ports: '4²' is not a port number or range (1-65535)",
    )


@pytest.mark.parametrize(
    ("text", "denied"),
    [
        ("169.254.169.254", "169.254.0.0/16 (link-local, cloud metadata)"),
        ("169.254.0.0/16", "169.254.0.0/16 (link-local, cloud metadata)"),
        ("169.253.255.250-169.254.0.3", "169.254.0.0/16 (link-local, cloud metadata)"),
        ("0.0.0.0", "0.0.0.0/8 ('this network', unspecified)"),
        ("224.0.0.1", "224.0.0.0/4 (multicast)"),
        ("239.255.255.250", "224.0.0.0/4 (multicast)"),
        ("255.255.255.255", "240.0.0.0/4 (reserved, limited broadcast)"),
        ("192.0.0.0/2", "224.0.0.0/4 (multicast)"),
        ("::", ":: (unspecified)"),
        ("::ffff:10.0.0.1", "::ffff:0.0.0.0/96 (IPv4-mapped IPv6; write the IPv4 address)"),
        ("fe80::1", "fe80::/10 (link-local)"),
        ("ff02::1", "ff00::/8 (multicast)"),
    ],
)
def test_deny_list_refuses_the_task(text: str, denied: str) -> None:
    found = messages(text, max_addresses=1 << 31)
    assert found == (f"line 1: '{text}' includes denied addresses ({denied})",)


def test_loopback_is_allowed() -> None:
    spec = parse_target_spec("127.0.0.0/8\n::1", max_addresses=(1 << 24) + 1)
    assert spec.address_count == (1 << 24) + 1


def test_custom_deny_list() -> None:
    deny = parse_deny_list(["10.0.0.0/8 corporate core", "192.168.1.1"])
    assert messages("10.2.3.4", deny=deny) == (
        "line 1: '10.2.3.4' includes denied addresses (10.0.0.0/8 (corporate core))",
    )
    assert messages("192.168.1.0/24", deny=deny) == (
        "line 1: '192.168.1.0/24' includes denied addresses (192.168.1.1 (denied))",
    )
    assert parse_target_spec("169.254.1.1", deny=deny).address_count == 1
    with pytest.raises(ValueError, match="deny list entry 'nonsense'"):
        parse_deny_list(["nonsense"])


def test_cap_counts_addresses_and_host_names() -> None:
    assert parse_target_spec("10.0.0.0/24", max_addresses=256).address_count == 256
    assert messages("10.0.0.0/24\nextra.example", max_addresses=256) == (
        "the task covers 257 addresses and host names; the limit is 256 per task",
    )
    assert messages("10.0.0.0/16\n10.1.0.0/16") == (
        "the task covers 131,072 addresses and host names; the limit is 65,536 per task",
    )


def test_an_entry_alone_over_the_cap_is_named_with_what_would_fit() -> None:
    assert messages("10.0.0.0/8") == (
        "line 1: '10.0.0.0/8' covers 2^24 addresses; the limit is 65,536 per task "
        "(CW_SCAN_MAX_ADDRESSES): split it over several tasks, or list prefixes of /16 or longer",
    )
    assert messages("::1\n2001:db8::/64") == (
        "line 2: '2001:db8::/64' covers 2^64 addresses; the limit is 65,536 per task "
        "(CW_SCAN_MAX_ADDRESSES): an IPv6 network cannot be swept; list the addresses in use, "
        "ranges, or prefixes of /112 or longer",
    )
    assert messages("2001:db8::1-2001:db8::3e9", max_addresses=1000) == (
        "line 1: '2001:db8::1-2001:db8::3e9' covers 1,001 addresses; the limit is 1,000 per "
        "task (CW_SCAN_MAX_ADDRESSES): an IPv6 network cannot be swept; list the addresses in "
        "use, ranges, or prefixes of /119 or longer",
    )
    spec = parse_target_spec("2001:db8::/112, 2001:db8:1::5, ::1", max_addresses=65_538)
    assert spec.address_count == 65_538


def test_empty_task_is_refused() -> None:
    assert messages("  \n# only a comment\n") == (
        "no targets: enter at least one address, CIDR block, range or host name",
    )


def test_a_slash_16_counts_without_a_list() -> None:
    spec = parse_target_spec("10.20.0.0/16", "443,8443")
    assert spec.address_count == 65_536
    assert spec.target_count == 131_072
    assert spec.blocks == (block("10.20.0.0", "10.20.255.255"),)  # three integers, no list


def test_ports_blank_means_443_and_ranges_merge() -> None:
    assert parse_ports("") == (PortRange(443, 443),)
    assert parse_ports("8443, 443, 9000-9010, 9005-9020, 8444") == (
        PortRange(443, 443),
        PortRange(8443, 8444),
        PortRange(9000, 9020),
    )
    assert parse_ports("1-65535") == (PortRange(1, 65535),)


def test_spec_round_trips_through_json() -> None:
    spec = parse_target_spec(
        "10.0.0.0/30, 2001:db8::1, app.example",
        "443,8443",
        host_overrides={"app.example": ["10.9.9.9", "2001:db8::9"]},
    )
    again = TargetSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert again.overrides == {"app.example": ("10.9.9.9", "2001:db8::9")}


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"blocks": [[5, 1, 4]], "ports": [[443, 443]]},
        {"blocks": [[1, 2, 5]], "ports": [[443, 443]]},
        {"blocks": [[0, 1 << 33, 4]], "ports": [[443, 443]]},
        {"blocks": [], "ports": [[0, 443]]},
        {"blocks": "nope", "ports": []},
    ],
)
def test_from_dict_rejects_malformed_data(data: dict[str, object]) -> None:
    with pytest.raises(TargetSpecError, match="not a serialised target spec"):
        TargetSpec.from_dict(data)


def test_host_overrides_are_validated() -> None:
    overrides = {
        "app.example": ["10.0.0.5", "10.0.0.5", "[2001:db8::5]"],
        "other.example": ["10.0.0.6"],
        "bad.example": ["10.0.0.999", "169.254.169.254"],
    }
    found = messages("app.example, bad.example", host_overrides=overrides)
    assert found == (
        "override 'other.example' is not one of the task's host names",
        "override 'bad.example': '10.0.0.999' is not an IPv4/IPv6 address",
        "override 'bad.example': '169.254.169.254' is denied "
        "(169.254.0.0/16 (link-local, cloud metadata))",
        "override 'bad.example' lists no usable address",
    )
    spec = parse_target_spec("APP.example", host_overrides={"app.example.": ["10.0.0.5"]})
    assert spec.overrides == {"app.example": ("10.0.0.5",)}


def test_override_text() -> None:
    text = "app.example = 10.0.0.5, 2001:db8::5\n# comment\nweb.example=10.0.0.6 10.0.0.7\n"
    assert parse_host_overrides(text) == {
        "app.example": ["10.0.0.5", "2001:db8::5"],
        "web.example": ["10.0.0.6", "10.0.0.7"],
    }
    with pytest.raises(TargetSpecError) as info:
        parse_host_overrides("ok.example = 10.0.0.1\njust-a-name\n")
    assert info.value.messages == ("overrides line 2: expected 'host name = address, ...'",)


def test_validate_targets_returns_messages_for_forms() -> None:
    assert validate_targets("10.0.0.1", "443") == []
    assert validate_targets("10.0.0.300", "443") == [
        "line 1: '10.0.0.300' is not an IPv4/IPv6 address, CIDR block, range or host name"
    ]


@pytest.mark.parametrize("text", ["", ".", "a..b", "x" * 64 + ".example", "a.b." + "c" * 250])
def test_normalize_host_name_refuses_non_names(text: str) -> None:
    assert normalize_host_name(text) is None


def test_block_description() -> None:
    assert block("10.0.0.0", "10.0.0.255").describe() == "10.0.0.0/24"
    assert block("10.0.0.1", "10.0.0.50").describe() == "10.0.0.1-10.0.0.50"
    assert block("2001:db8::1").describe() == "2001:db8::1"
    assert block("2001:db8::", "2001:db8::ffff").describe() == "2001:db8::/112"
