"""Text that becomes a subject attribute (organization and department names): characters
refused, NFC normalisation, and a warning for names that mix scripts; no I/O.

A name is stored once and then appears in every certificate issued for it, in every list
and in every mail, so it is checked before it is saved (check_subject_text) and again when
a subject is built (names.build_subject uses refused_character). Refused, each named in the
message ("U+202E RIGHT-TO-LEFT OVERRIDE"):

* control characters: C0 (U+0000-U+001F, with TAB, LF, CR and NUL), DEL and C1
  (U+0080-U+009F): they split or end lines in logs, mails and CSV exports;
* bidirectional controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069): they make
  a name display in another order than it is stored ("Trojan Source", CVE-2021-42574);
* other invisible format characters (category Cf: soft hyphen, zero-width space, word
  joiner, byte order mark, tags ...), except the zero-width joiner and non-joiner that
  Arabic and Indic scripts need: two names that look identical must be identical;
* line and paragraph separators, surrogates, private-use and unassigned code points.

Names are normalised to NFC (RFC 5280 §7.1 and RFC 4518 prepare names for comparison; a
name saved in NFC compares and displays the same everywhere). A name whose letters come
from scripts that are not normally written together (Latin with Cyrillic or Greek look-
alikes, say) is accepted with a warning, following the "Highly Restrictive" level of
Unicode TS #39 §5.2: one script, or Latin with Han and Hiragana/Katakana (Japanese),
Bopomofo (Chinese) or Hangul (Korean).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Final

from app.pki.errors import NamePolicyError

# Unicode's names for the control characters (NameAliases.txt, type "control"), which
# unicodedata.name() does not give.
_C0_NAMES: Final = (
    "NULL", "START OF HEADING", "START OF TEXT", "END OF TEXT", "END OF TRANSMISSION",
    "ENQUIRY", "ACKNOWLEDGE", "ALERT", "BACKSPACE", "CHARACTER TABULATION", "LINE FEED",
    "LINE TABULATION", "FORM FEED", "CARRIAGE RETURN", "SHIFT OUT", "SHIFT IN",
    "DATA LINK ESCAPE", "DEVICE CONTROL ONE", "DEVICE CONTROL TWO", "DEVICE CONTROL THREE",
    "DEVICE CONTROL FOUR", "NEGATIVE ACKNOWLEDGE", "SYNCHRONOUS IDLE",
    "END OF TRANSMISSION BLOCK", "CANCEL", "END OF MEDIUM", "SUBSTITUTE", "ESCAPE",
    "INFORMATION SEPARATOR FOUR", "INFORMATION SEPARATOR THREE",
    "INFORMATION SEPARATOR TWO", "INFORMATION SEPARATOR ONE",
)  # fmt: skip
_C1_NAMES: Final = (
    "PADDING CHARACTER", "HIGH OCTET PRESET", "BREAK PERMITTED HERE", "NO BREAK HERE",
    "INDEX", "NEXT LINE", "START OF SELECTED AREA", "END OF SELECTED AREA",
    "CHARACTER TABULATION SET", "CHARACTER TABULATION WITH JUSTIFICATION",
    "LINE TABULATION SET", "PARTIAL LINE FORWARD", "PARTIAL LINE BACKWARD",
    "REVERSE LINE FEED", "SINGLE SHIFT TWO", "SINGLE SHIFT THREE", "DEVICE CONTROL STRING",
    "PRIVATE USE ONE", "PRIVATE USE TWO", "SET TRANSMIT STATE", "CANCEL CHARACTER",
    "MESSAGE WAITING", "START OF GUARDED AREA", "END OF GUARDED AREA", "START OF STRING",
    "SINGLE GRAPHIC CHARACTER INTRODUCER", "SINGLE CHARACTER INTRODUCER",
    "CONTROL SEQUENCE INTRODUCER", "STRING TERMINATOR", "OPERATING SYSTEM COMMAND",
    "PRIVACY MESSAGE", "APPLICATION PROGRAM COMMAND",
)  # fmt: skip

# Unicode's bidirectional formatting characters (UAX #9 §2): marks, embeddings,
# overrides and isolates.
BIDI_CONTROLS: Final = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
# The space separators (general category Zs), trimmed from either end of a name.
_SPACES: Final = "\u0020\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
# Format characters that some scripts need inside words (UAX #31 §2.3).
_JOINERS: Final = frozenset("\u200c\u200d")

# UTS #39 §5.2 "Highly Restrictive": the script sets a name may use besides a single one.
_SCRIPT_COMBINATIONS: Final = (
    frozenset({"Latin", "Han", "Hiragana", "Katakana"}),
    frozenset({"Latin", "Han", "Bopomofo"}),
    frozenset({"Latin", "Han", "Hangul"}),
)
_SCRIPT_PREFIXES: Final = (
    ("CJK ", "Han"),
    ("HANGUL ", "Hangul"),
    ("HIRAGANA ", "Hiragana"),
    ("KATAKANA ", "Katakana"),
    ("BOPOMOFO ", "Bopomofo"),
)


@dataclass(frozen=True)
class CheckedText:
    """A name fit to save: ``value`` is stripped and NFC-normalised; ``warnings`` are for
    the person saving it (the name is accepted)."""

    value: str
    warnings: tuple[str, ...] = ()


def check_subject_text(value: str, *, label: str = "name") -> CheckedText:
    """Check an organization or department name before it is saved.

    Raises:
        NamePolicyError: empty, or a refused character, e.g. "organization name contains
            the bidirectional control character U+202E RIGHT-TO-LEFT OVERRIDE at position
            5: it can make the name display differently from what it is".
    """
    # Only spaces are trimmed: a control character at either end is refused like any other.
    text = unicodedata.normalize("NFC", value.strip(_SPACES))
    if not text:
        raise NamePolicyError(f"{label} is empty")
    refused = refused_character(text)
    if refused is not None:
        position, reason = refused
        described, _, why = reason.partition(": ")
        raise NamePolicyError(f"{label} contains {described} at position {position + 1}: {why}")
    return CheckedText(text, tuple(filter(None, [_mixed_script_warning(text, label)])))


def refused_character(text: str) -> tuple[int, str] | None:
    """The first character a subject attribute may not contain, as (index, "the <kind>
    <U+XXXX NAME>: <why>"), or None."""
    for index, char in enumerate(text):
        reason = _refusal(char)
        if reason is not None:
            return index, reason
    return None


def describe_character(char: str) -> str:
    """ "U+202E RIGHT-TO-LEFT OVERRIDE", "U+000A LINE FEED", "U+E000 <private use>"."""
    code = ord(char)
    if code < 0x20:
        name = _C0_NAMES[code]
    elif code == 0x7F:
        name = "DELETE"
    elif 0x80 <= code <= 0x9F:
        name = _C1_NAMES[code - 0x80]
    else:
        category = unicodedata.category(char)
        name = unicodedata.name(char, "") or f"<{_CATEGORY_NAMES.get(category, 'unnamed')}>"
    return f"U+{code:04X} {name}"


def scripts_of(text: str) -> dict[str, str]:
    """The scripts of ``text``'s letters, the most used first, each with its first letter
    (digits, punctuation, spaces and marks belong to every script and are left out).
    Compatibility forms count as the script they stand for (FULLWIDTH LATIN CAPITAL
    LETTER A: Latin)."""
    first: dict[str, str] = {}
    counts: dict[str, int] = {}
    for char in text:
        if not unicodedata.category(char).startswith("L"):
            continue
        script = _script(char)
        if script is not None:
            first.setdefault(script, char)
            counts[script] = counts.get(script, 0) + 1
    ranked = sorted(first, key=lambda script: -counts[script])  # stable: first seen wins ties
    return {script: first[script] for script in ranked}


_CATEGORY_NAMES: Final = {
    "Co": "private use",
    "Cs": "surrogate",
    "Cn": "unassigned",
}


def _refusal(char: str) -> str | None:
    category = unicodedata.category(char)
    described = describe_character(char)
    if category == "Cc":
        return f"the control character {described}: it breaks lines, logs and exports"
    if char in BIDI_CONTROLS:
        return (
            f"the bidirectional control character {described}: it can make the name "
            "display differently from what it is"
        )
    if category == "Cf" and char not in _JOINERS:
        return (
            f"the invisible format character {described}: two names that look the same "
            "must be the same"
        )
    if category in ("Zl", "Zp"):
        return f"the line break {described}: a name is one line"
    if category in _CATEGORY_NAMES:
        return f"the {_CATEGORY_NAMES[category]} code point {described}: it has no meaning here"
    return None


def _script(char: str) -> str | None:
    base = unicodedata.normalize("NFKD", char)[:1] or char
    name = unicodedata.name(base, "")
    for prefix, script in _SCRIPT_PREFIXES:
        if name.startswith(prefix):
            return script
    if not name or name.startswith(("MODIFIER ", "MATHEMATICAL ")):
        return None  # letters of no particular script
    return name.split(" ", 1)[0].title()


def _mixed_script_warning(text: str, label: str) -> str | None:
    found = scripts_of(text)
    if len(found) < 2 or any(set(found) <= allowed for allowed in _SCRIPT_COMBINATIONS):
        return None
    # Name a letter of every script but the most used one (usually the intended one).
    first, *others = found
    examples = ", ".join(describe_character(found[script]) for script in others)
    return (
        f"{label} mixes {' and '.join([first, *others])} letters ({examples}): letters "
        "that look alike in different scripts can imitate another name; check that this "
        "is the name as written"
    )
