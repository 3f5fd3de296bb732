"""Organization and department names: refused characters, NFC, the mixed-script warning."""

from __future__ import annotations

import unicodedata

import pytest

from app.pki import names
from app.pki.errors import NamePolicyError
from app.pki.subject_text import (
    BIDI_CONTROLS,
    CheckedText,
    check_subject_text,
    describe_character,
    scripts_of,
)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Acme\u202eEvil", "the bidirectional control character U+202E RIGHT-TO-LEFT OVERRIDE at position 5: it can make the name display differently"),
        ("Acme\u2066Evil\u2069", "U+2066 LEFT-TO-RIGHT ISOLATE at position 5"),
        ("\u200fAcme", "U+200F RIGHT-TO-LEFT MARK at position 1"),
        ("Acme\u061c", "U+061C ARABIC LETTER MARK at position 5"),
        ("Acme\r\nEvil", "the control character U+000D CARRIAGE RETURN at position 5"),
        ("Acme\tSales", "the control character U+0009 CHARACTER TABULATION at position 5"),
        ("Acme\x00", "the control character U+0000 NULL at position 5"),
        ("Acme\x85", "the control character U+0085 NEXT LINE at position 5"),
        ("Acme\x9b", "the control character U+009B CONTROL SEQUENCE INTRODUCER at position 5"),
        ("Ac\u00adme", "the invisible format character U+00AD SOFT HYPHEN at position 3"),
        ("Ac\u200bme", "the invisible format character U+200B ZERO WIDTH SPACE at position 3"),
        ("Acme\u2028Evil", "the line break U+2028 LINE SEPARATOR at position 5"),
        ("Acme\ue000", "the private use code point U+E000 <private use> at position 5"),
    ],
)  # fmt: skip
def test_refused_characters_are_named(value: str, message: str) -> None:
    with pytest.raises(NamePolicyError) as refused:
        check_subject_text(value, label="organization name")
    assert str(refused.value).startswith("organization name contains ")
    assert message in str(refused.value)


def test_every_bidi_control_and_c0_c1_control_is_refused() -> None:
    refused = [
        *BIDI_CONTROLS,
        *(chr(c) for c in range(0x20)),
        "\x7f",
        *(chr(c) for c in range(0x80, 0xA0)),
    ]
    for char in refused:
        with pytest.raises(NamePolicyError):
            check_subject_text(f"Acme{char}Corp")
    assert {
        "\u202a", "\u202b", "\u202c", "\u202d", "\u202e",
        "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f", "\u061c",
    } == BIDI_CONTROLS  # fmt: skip


def test_only_spaces_are_trimmed() -> None:
    assert check_subject_text("\u3000 Acme\u00a0").value == "Acme"
    with pytest.raises(NamePolicyError, match="U\\+000A LINE FEED at position 5"):
        check_subject_text("Acme\n")


def test_names_are_normalised_to_nfc() -> None:
    decomposed = "Mu\u0308ller Gmbh"  # u + COMBINING DIAERESIS
    checked = check_subject_text(f"  {decomposed} ")
    assert checked == CheckedText("Müller Gmbh", ())
    assert unicodedata.is_normalized("NFC", checked.value)
    with pytest.raises(NamePolicyError, match="department name is empty"):
        check_subject_text("   ", label="department name")


def test_mixed_scripts_are_a_warning() -> None:
    # "Paypal" with U+0430 CYRILLIC SMALL LETTER A: accepted, with a warning that names it.
    checked = check_subject_text("P\u0430ypal Inc", label="organization name")
    assert checked.value == "P\u0430ypal Inc"
    (warning,) = checked.warnings
    assert warning.startswith(
        "organization name mixes Latin and Cyrillic letters "
        "(U+0430 CYRILLIC SMALL LETTER A): letters that look alike"
    )
    assert check_subject_text("\u0391cme").warnings  # GREEK CAPITAL LETTER ALPHA + Latin


@pytest.mark.parametrize(
    "value",
    [
        "Acme GmbH & Co. KG",
        "Société Générale",
        "Ελληνική Εταιρεία",  # Greek alone
        "\u041e\u041e\u041e \u0420\u043e\u043c\u0430\u0448\u043a\u0430",  # Cyrillic alone
        "株式会社カブシキ ACME",  # Japanese: Han, Katakana and Latin
        "삼성전자 Samsung 三星",  # Korean: Hangul, Han and Latin
        "\u0634\u0631\u0643\u0629\u200c\u0627\u0644\u0646\u0648\u0631",  # Arabic, with a ZWNJ
        "R&D 2",
    ],
)
def test_ordinary_names_pass_without_warning(value: str) -> None:
    assert check_subject_text(value).warnings == ()


def test_helpers() -> None:
    assert describe_character("\u202e") == "U+202E RIGHT-TO-LEFT OVERRIDE"
    assert describe_character("\n") == "U+000A LINE FEED"
    assert describe_character("\x7f") == "U+007F DELETE"
    assert list(scripts_of("P\u0430ypal")) == ["Latin", "Cyrillic"]
    assert list(scripts_of("\uff21\uff43\uff4d\uff45 123")) == ["Latin"]  # full-width forms


def test_build_subject_refuses_what_the_check_refuses() -> None:
    with pytest.raises(NamePolicyError, match=r"U\+202E RIGHT-TO-LEFT OVERRIDE"):
        names.build_subject(organization="Acme\u202eEvil")
