"""Rule patterns run on RE2: they agree with re where the syntaxes meet, stay linear on hostile
input, and refuse what RE2 cannot do with a message naming it."""

from __future__ import annotations

import random
import re
import time

import pytest

from app.scan.patterns import MAX_PATTERN, PatternError, SafePattern

# RE2's \w \W \b are ASCII (re.ASCII below) and its $ is re's \Z. \B is left out: RE2 also
# finds it between the bytes of a non-ASCII character.
ATOMS = ["a", "b", "A", ".", "[a-c]", "[^ab]", r"\d", r"\w", r"\s", r"\W", "x", "(a|b)",
         "(?:ab|c)", r"\.", "-", "[A-Z0-9]", "é", r"\b", "^", "$", "(a|)"]  # fmt: skip
SPELLED_FOR_RE = {"$": r"\Z"}
QUANTIFIERS = ["", "", "", "*", "+", "?", "{2}", "{1,3}", "{0,2}", "*?", "+?"]
ALPHABET = "abcAB.x- 1é_\n"


def test_agrees_with_re_where_the_syntaxes_meet() -> None:
    rng = random.Random(2024)
    checked = 0
    for _ in range(3_000):
        parts = [(rng.choice(ATOMS), rng.choice(QUANTIFIERS)) for _ in range(rng.randint(1, 5))]
        pattern = "".join(atom + quantifier for atom, quantifier in parts)
        spelled_for_re = "".join(SPELLED_FOR_RE.get(a, a) + quantifier for a, quantifier in parts)
        try:
            reference = re.compile(spelled_for_re, re.IGNORECASE | re.ASCII)
        except re.error:
            continue
        safe = SafePattern(pattern)
        for _ in range(5):
            text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 8)))
            assert safe.search(text) is bool(reference.search(text)), (pattern, text)
            checked += 1
    assert checked > 10_000


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        (r"^shop\.example\.com$", "SHOP.example.COM", True),
        (r"(?s)a.b", "a\nb", True),
        (r"a.b", "a\nb", False),
        (r"(?m)^b$", "a\nb\nc", True),
        (r"^b$", "a\nb\nc", False),
        (r"\Aa", "ba", False),
        (r"[^\d]+", "123", False),
        (r"\bcorp\b", "my corp net", True),
        (r"\bcorp\b", "mycorpnet", False),
        (r"x{3}", "xx", False),
        (r"x{2,}", "xxxxx", True),
        (r"(?:ab){2,3}?c", "ABABc", True),
        (r"[k]", "\u212a", True),  # Kelvin sign folds to k
        ("é", "É", True),
        ("\u03c3", "\u03c2", True),  # sigma and final sigma fold together
        (r"(?P<label>www)\.", "WWW.example.com", True),  # named groups are only groups
    ],
)
def test_examples(pattern: str, text: str, expected: bool) -> None:
    assert SafePattern(pattern).search(text) is expected
    assert bool(re.search(pattern, text, re.IGNORECASE)) is expected


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        (r"a$", "a\n", False),  # re: True ($ also matches before a final newline)
        (r"a\z", "a\n", False),  # re spells \z as \Z
        (r"a\z", "xa", True),
        (r"\w", "é", False),  # \w \d \s \b are ASCII
        (r"\d", "\u0663", False),
        (r"\bé", "é", False),
        (r"\B", "é", True),  # between the two bytes of é, neither of them an ASCII word byte
        (r"\pL", "é", True),  # Unicode classes instead
        (r"^\p{Greek}+$", "ΑΒΓ", True),
        (r"^[[:alpha:]]+$", "Shop", True),
        (r"\Qa.b\E", "axb", False),
        (r"(?-i)Shop", "shop", False),  # ignoring case is a default, not a rule
    ],
)
def test_re2_syntax_where_it_differs_from_re(pattern: str, text: str, expected: bool) -> None:
    assert SafePattern(pattern).search(text) is expected


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"(a)\1", "regular expressions with backreferences are not supported"),
        (r"(?P<n>a)(?P=n)", "regular expressions with backreferences are not supported"),
        (r"a(?=b)", "regular expressions with lookahead/lookbehind are not supported"),
        (r"a(?!b)", "regular expressions with lookahead/lookbehind are not supported"),
        (r"(?<=a)b", "regular expressions with lookahead/lookbehind are not supported"),
        (r"(?<!a)b", "regular expressions with lookahead/lookbehind are not supported"),
        (r"(a)?(?(1)b|c)", "regular expressions with conditional groups are not supported"),
        (r"a*+", "regular expressions with possessive quantifiers are not supported"),
        (r"a{2,3}+", "regular expressions with possessive quantifiers are not supported"),
        (r"(?>ab)", "regular expressions with atomic groups are not supported"),
        ("(x", "invalid regular expression: missing ), unterminated subpattern at position 0"),
        ("*x", "invalid regular expression: nothing to repeat at position 0"),
        ("a**", "invalid regular expression: multiple repeat at position 2"),
        ("x)", "invalid regular expression: unbalanced parenthesis at position 1"),
        ("[a", "invalid regular expression: unterminated character set at position 0"),
        # re does not know \p, so RE2 says what is wrong:
        (r"\pL(", r"invalid regular expression: missing ): \pL("),
        (r"(?x) a b", "invalid regular expression: invalid perl operator: (?x"),
        (r"[a-z]{3000}", "regular expression is too complex (expand fewer repetitions)"),
        (r"(([a-z]{20}){20}){20}", "regular expression is too complex (expand fewer repetitions)"),
        (r"\pL{100}", "regular expression is too complex (expand fewer repetitions)"),
        ("a\ud800", "invalid regular expression: unpaired surrogate at position 1"),
        ("a" * (MAX_PATTERN + 1), f"regular expression is longer than {MAX_PATTERN} characters"),
    ],
)  # fmt: skip
def test_refusals_explain_themselves(pattern: str, message: str) -> None:
    with pytest.raises(PatternError) as info:
        SafePattern(pattern)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "pattern", [r"^(a+)+$", r"^(a|aa)*$", r"^(.*a){12}$", r".*a.*a.*a.*a.*b", r"^(\w+\s?)*$"]
)
def test_hostile_patterns_run_in_linear_time(pattern: str) -> None:
    safe = SafePattern(pattern)
    started = time.perf_counter()
    assert safe.search("a" * 2_000 + "!") is False
    assert time.perf_counter() - started < 1.0


def test_catastrophic_backtracking_pattern_answers_on_a_long_hostile_string() -> None:
    # re would try every way to split the a's between the two + (2**n of them) before
    # giving up on the "!"; at 100,000 a's it would never return.
    nested = SafePattern(r"(a+)+$")
    assert nested.search("a" * 100_000 + "!") is False
    assert nested.search("a" * 100_000) is True
    assert nested.search("!" + "a" * 100_000) is True


def test_large_patterns_within_the_limits_still_compile() -> None:
    assert SafePattern(r"[a-z]{1000}").search("x" * 1_000) is True
    assert SafePattern(r"^(\w{30}){30}$").search("a" * 899) is False


def test_a_lone_surrogate_is_no_match_rather_than_an_error() -> None:
    assert SafePattern("b").search("a\ud800b") is True
    assert SafePattern(r"^\w+$").search("\ud800") is False


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        (r"example\.com\Z", "www.example.com", True),  # re's \Z, as rules written before RE2 say
        (r"example\.com\Z", "www.example.com.evil", False),
        (r"example\.com\Z", "www.example.com\n", False),  # the very end, like re's \Z
        (r"a\\Z", "a\\Z", True),  # an escaped backslash then a plain Z is not \Z
        (r"a\\Z", "a", False),
    ],
)
def test_python_end_of_text_is_accepted(pattern, text, expected):
    assert SafePattern(pattern).search(text) is expected
    assert SafePattern(pattern).pattern == pattern
