"""The linear-time regex engine agrees with re and refuses what it cannot do in linear time."""

from __future__ import annotations

import random
import re
import time

import pytest

from app.scan.saferegex import MAX_PATTERN, PatternError, SafePattern

ATOMS = ["a", "b", "A", ".", "[a-c]", "[^ab]", r"\d", r"\w", r"\s", r"\W", "x", "(a|b)",
         "(?:ab|c)", r"\.", "-", "[A-Z0-9]", "é", r"\b", r"\B", "^", "$", "(a|)"]  # fmt: skip
QUANTIFIERS = ["", "", "", "*", "+", "?", "{2}", "{1,3}", "{0,2}", "*?", "+?"]
ALPHABET = "abcAB.x- 1é_\n"


def test_agrees_with_re_on_random_patterns() -> None:
    rng = random.Random(2024)
    checked = 0
    for _ in range(3_000):
        size = rng.randint(1, 5)
        pattern = "".join(rng.choice(ATOMS) + rng.choice(QUANTIFIERS) for _ in range(size))
        try:
            reference = re.compile(pattern, re.IGNORECASE)
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
        (r"a$", "a\n", True),
        (r"a\Z", "a\n", False),
        (r"\Aa", "ba", False),
        (r"(?x) a  b  # comment", "ab", True),
        (r"[^\d]+", "123", False),
        (r"\bcorp\b", "my corp net", True),
        (r"\bcorp\b", "mycorpnet", False),
        (r"x{3}", "xx", False),
        (r"x{2,}", "xxxxx", True),
        (r"(?:ab){2,3}?c", "ABABc", True),
        (r"[k]", "\u212a", True),  # Kelvin sign folds to k, as in re
    ],
)
def test_examples(pattern: str, text: str, expected: bool) -> None:
    assert SafePattern(pattern).search(text) is expected
    assert bool(re.search(pattern, text, re.IGNORECASE)) is expected


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"(a)\1", "regular expressions with backreferences are not supported"),
        (r"a(?=b)", "regular expressions with lookahead/lookbehind are not supported"),
        (r"(?<!a)b", "regular expressions with lookahead/lookbehind are not supported"),
        (r"(a)?(?(1)b|c)", "regular expressions with conditional groups are not supported"),
        (r"a*+", "regular expressions with possessive quantifiers are not supported"),
        (r"(?>ab)", "regular expressions with atomic groups are not supported"),
        ("(x", "invalid regular expression: missing ), unterminated subpattern at position 0"),
        ("*x", "invalid regular expression: nothing to repeat at position 0"),
        (r"[a-z]{3000}", "regular expression is too complex (expand fewer repetitions)"),
        ("a" * (MAX_PATTERN + 1), f"regular expression is longer than {MAX_PATTERN} characters"),
    ],
)
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
