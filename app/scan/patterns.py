"""Regular expressions for assignment rules, matched by RE2 in linear time. Pure.

Certificates are attacker-supplied, and a backtracking engine (Python's ``re``) takes years on
``(a+)+$`` against a hostile subject name. RE2 (the google-re2 package) runs in time linear in
the text whatever the pattern; the price is that it has no backreferences, lookaround,
conditionals, possessive quantifiers or atomic groups, which are refused with a message naming
the feature. Patterns are RE2 syntax (https://github.com/google/re2/wiki/Syntax), matched
ignoring case (``(?-i)`` turns that off). Where RE2 differs from ``re``:

- ``\\w \\d \\s \\b \\B`` are ASCII only; ``\\pL``, ``\\p{Greek}``, ``[[:alpha:]]`` go beyond.
- ``$`` without ``(?m)`` matches only at the very end, not before a final newline; the end of
  the text is ``\\z``, and ``re``'s spelling ``\\Z`` is accepted for it (rules written before
  RE2 keep working).
- Inline flags are ``i m s U``: no ``(?x)`` verbose mode, no ``(?#...)`` comments.

Patterns are capped at MAX_PATTERN characters and MAX_MEMORY bytes of RE2 memory (the compiled
program and its DFA cache); callers cap the subject length.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

# google-re2 ships no type information (no py.typed); its objects are handled as Any here.
import re2  # type: ignore[import-untyped]

MAX_PATTERN = 256
# RE2's max_mem (default 8 MiB): compiling a larger program fails, and the DFA cache is kept
# within what is left. A counted repetition copies its body, so `[a-z]{1000}` compiles but
# `\pL{100}` (a hundred copies of the ~1,200-instruction UTF-8 automaton for letters) does not.
MAX_MEMORY = 1 << 20

_TOO_COMPLEX = "regular expression is too complex (expand fewer repetitions)"
_UNSUPPORTED_OPERATORS = {
    "(?=": "lookahead/lookbehind",
    "(?!": "lookahead/lookbehind",
    "(?<=": "lookahead/lookbehind",
    "(?<!": "lookahead/lookbehind",
    "(?(": "conditional groups",
    "(?>": "atomic groups",
}
_BACKREFERENCE = re.compile(r"\\[1-9][0-9]*")
_POSSESSIVE = re.compile(r"(?:[*+?]|\{[0-9]+(?:,[0-9]*)?\})\+")
# RE2's error kind -> how Python's re starts its message for the same mistake. When both
# agree, re's wording is shown (it gives the position); otherwise RE2's own.
_SAME_MISTAKE = {
    "missing )": "missing ), unterminated subpattern",
    "unexpected )": "unbalanced parenthesis",
    "missing ]": "unterminated character set",
    "invalid character class range": "bad character range",
    "no argument for repetition operator": "nothing to repeat",
    "bad repetition operator": "multiple repeat",
    "invalid repetition size": "min repeat greater than max repeat",
    "trailing \\": "bad escape (end of pattern)",
}
# Python's \Z is RE2's \z (the very end of the text); an escaped backslash is skipped whole.
_PYTHON_END = re.compile(r"(\\\\)|\\Z")


def _as_re2(pattern: str) -> str:
    """The pattern in RE2 spelling: re's ``\\Z`` becomes ``\\z``; nothing else changes."""
    return _PYTHON_END.sub(lambda m: m.group(1) or r"\z", pattern)


class PatternError(ValueError):
    """The pattern cannot be used; the message is meant for the admin."""


def _options() -> Any:
    options = re2.Options()
    options.case_sensitive = False
    options.max_mem = MAX_MEMORY
    options.never_capture = True  # only whether it matches counts
    options.log_errors = False  # refusals are reported through PatternError, not stderr
    return options


_OPTIONS = _options()


class SafePattern:
    """A compiled rule pattern: ``search(text)`` is a case-insensitive RE2 search, linear time.

    Raises:
        PatternError: the pattern is too long, too complex, invalid, or needs a feature that
            cannot run in linear time.
    """

    def __init__(self, pattern: str) -> None:
        if len(pattern) > MAX_PATTERN:
            raise PatternError(f"regular expression is longer than {MAX_PATTERN} characters")
        try:
            self._regexp: Any = re2.compile(_as_re2(pattern), _OPTIONS)
        except UnicodeEncodeError as exc:  # RE2 takes UTF-8, which has no lone surrogates
            message = f"invalid regular expression: unpaired surrogate at position {exc.start}"
            raise PatternError(message) from None
        except re2.error as exc:
            raw = exc.args[0] if exc.args else b""
            message = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            raise PatternError(_explain(pattern, message)) from None
        self.pattern = pattern

    def search(self, text: str) -> bool:
        """Whether the pattern matches anywhere in ``text``; time linear in ``len(text)``."""
        # surrogatepass: a lone surrogate is no match for anything, not an exception.
        return self._regexp.search(text.encode("utf-8", "surrogatepass")) is not None


def _explain(pattern: str, message: str) -> str:
    """The admin's message for RE2's ``message`` ("<kind>: <offending text>")."""
    kind, _, arg = message.partition(": ")
    feature = _unsupported_feature(pattern, kind, arg)
    if feature:
        return f"regular expressions with {feature} are not supported"
    if kind == "pattern too large - compile failed":
        return _TOO_COMPLEX
    python = _python_error(pattern)
    if python is not None and kind in _SAME_MISTAKE and python.startswith(_SAME_MISTAKE[kind]):
        return f"invalid regular expression: {python}"
    if kind == "invalid repetition size":  # not min > max: a count over 1,000, or nested ones
        return _TOO_COMPLEX
    return f"invalid regular expression: {message}"


def _unsupported_feature(pattern: str, kind: str, arg: str) -> str | None:
    if kind == "invalid escape sequence" and _BACKREFERENCE.fullmatch(arg):
        return "backreferences"
    if kind == "invalid perl operator":
        if arg == "(?P" and "(?P=" in pattern:
            return "backreferences"
        return _UNSUPPORTED_OPERATORS.get(arg)
    if kind == "bad repetition operator" and _POSSESSIVE.fullmatch(arg):
        return "possessive quantifiers"
    return None


def _python_error(pattern: str) -> str | None:
    """Python's ``re`` message for the pattern ("... at position N"), None when it compiles."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FutureWarning on "[[" and the like: not our question
        try:
            re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            where = f" at position {exc.pos}" if exc.pos is not None else ""
            return f"{exc.msg}{where}"
    return None
