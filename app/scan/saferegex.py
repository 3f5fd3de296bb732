"""Linear-time, case-insensitive regular expression search for assignment rules.

Python's ``re`` backtracks: ``(a+)+$`` or even ``.*a.*a.*b`` takes seconds to centuries on a
hostile subject name, and certificates are attacker-supplied. So ``re`` only checks the
syntax (its error messages are good); matching runs a Thompson/Pike NFA over ``re``'s own
parse tree, which takes O(len(pattern) x len(text)) whatever the input. Patterns are capped
at MAX_PATTERN characters and MAX_PROGRAM instructions; callers cap the subject length.

Supported: literals, ``.``, classes and ``\\d\\w\\s`` (and negations), alternation, groups,
greedy/lazy ``* + ? {m,n}``, anchors ``^ $ \\A \\Z \\b \\B``, inline flags i/s/m/x.
Refused with a message: backreferences, lookaround, conditionals, possessive quantifiers,
atomic groups (they need backtracking or change what matches).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_PATTERN = 256
MAX_PROGRAM = 2_000

_parser: Any = importlib.import_module("re._parser")  # sre_parse moved here in 3.11
_MAXREPEAT = int(importlib.import_module("re._constants").MAXREPEAT)

CharTest = Callable[[str], bool]
_UNSUPPORTED = {
    "GROUPREF": "backreferences",
    "GROUPREF_EXISTS": "conditional groups",
    "ASSERT": "lookahead/lookbehind",
    "ASSERT_NOT": "lookahead/lookbehind",
    "POSSESSIVE_REPEAT": "possessive quantifiers",
    "ATOMIC_GROUP": "atomic groups",
}


class PatternError(ValueError):
    """The pattern cannot be used; the message is meant for the admin."""


def _name(op: Any) -> str:
    return str(getattr(op, "name", op))


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


_CATEGORIES: dict[str, CharTest] = {
    "CATEGORY_DIGIT": str.isdecimal,
    "CATEGORY_NOT_DIGIT": lambda ch: not ch.isdecimal(),
    "CATEGORY_SPACE": str.isspace,
    "CATEGORY_NOT_SPACE": lambda ch: not ch.isspace(),
    "CATEGORY_WORD": _is_word,
    "CATEGORY_NOT_WORD": lambda ch: not _is_word(ch),
}


def _variants(ch: str) -> set[str]:
    """The character and its single-character case mappings (re.IGNORECASE, simplified)."""
    return {v for v in (ch, ch.lower(), ch.upper()) if len(v) == 1}


def _literal(code: int, negate: bool = False) -> CharTest:
    wanted = _variants(chr(code))
    if negate:
        return lambda ch: ch not in wanted and ch.lower() not in wanted
    return lambda ch: ch in wanted or ch.lower() in wanted


def _range(low: int, high: int) -> CharTest:
    return lambda ch: any(low <= ord(v) <= high for v in _variants(ch))


def _class(items: list[tuple[Any, Any]]) -> CharTest:
    negate = False
    tests: list[CharTest] = []
    for op, av in items:
        name = _name(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            tests.append(_literal(av))
        elif name == "RANGE":
            tests.append(_range(*av))
        elif name == "CATEGORY":
            tests.append(_CATEGORIES[_name(av)])
        else:
            raise PatternError(f"character class item {name.lower()} is not supported")
    if negate:
        return lambda ch: not any(test(ch) for test in tests)
    return lambda ch: any(test(ch) for test in tests)


@dataclass
class _Flags:
    dotall: bool
    multiline: bool


class _Compiler:
    """Parse tree -> instructions: ('char', test) ('split', a, b) ('jmp', a) ('at', kind)."""

    def __init__(self) -> None:
        self.program: list[list[Any]] = []

    def add(self, *instruction: Any) -> int:
        if len(self.program) >= MAX_PROGRAM:
            raise PatternError("regular expression is too complex (expand fewer repetitions)")
        self.program.append(list(instruction))
        return len(self.program) - 1

    def sequence(self, items: Any, flags: _Flags) -> None:
        for op, av in items:
            self.item(_name(op), av, flags)

    def item(self, name: str, av: Any, flags: _Flags) -> None:
        if name in _UNSUPPORTED:
            raise PatternError(f"regular expressions with {_UNSUPPORTED[name]} are not supported")
        if name == "LITERAL":
            self.add("char", _literal(av))
        elif name == "NOT_LITERAL":
            self.add("char", _literal(av, negate=True))
        elif name == "ANY":
            self.add("char", (lambda ch: True) if flags.dotall else (lambda ch: ch != "\n"))
        elif name == "IN":
            self.add("char", _class(av))
        elif name == "AT":
            self.add("at", _name(av), flags.multiline)
        elif name == "BRANCH":
            self.branch(av[1], flags)
        elif name == "SUBPATTERN":
            _, add_flags, del_flags, body = av
            scoped = _Flags(
                dotall=(flags.dotall or bool(add_flags & re.S)) and not del_flags & re.S,
                multiline=(flags.multiline or bool(add_flags & re.M)) and not del_flags & re.M,
            )
            self.sequence(body, scoped)
        elif name in ("MAX_REPEAT", "MIN_REPEAT"):
            low, high, body = av
            self.repeat(low, high, body, flags)
        else:
            raise PatternError(f"regular expression item {name.lower()} is not supported")

    def branch(self, alternatives: list[Any], flags: _Flags) -> None:
        exits: list[int] = []
        for alternative in alternatives[:-1]:
            split = self.add("split", len(self.program) + 1, None)
            self.sequence(alternative, flags)
            exits.append(self.add("jmp", None))
            self.program[split][2] = len(self.program)
        self.sequence(alternatives[-1], flags)
        for jump in exits:
            self.program[jump][1] = len(self.program)

    def repeat(self, low: int, high: int, body: Any, flags: _Flags) -> None:
        for _ in range(low):
            self.sequence(body, flags)
        if high == _MAXREPEAT:
            loop = self.add("split", len(self.program) + 1, None)
            self.sequence(body, flags)
            self.add("jmp", loop)
            self.program[loop][2] = len(self.program)
            return
        splits = []
        for _ in range(high - low):
            splits.append(self.add("split", len(self.program) + 1, None))
            self.sequence(body, flags)
        for split in splits:
            self.program[split][2] = len(self.program)


def _at(kind: str, multiline: bool, text: str, pos: int) -> bool:
    end = len(text)
    if kind == "AT_BEGINNING_STRING" or (kind == "AT_BEGINNING" and not multiline):
        return pos == 0
    if kind == "AT_BEGINNING":
        return pos == 0 or text[pos - 1] == "\n"
    if kind == "AT_END_STRING":
        return pos == end
    if kind == "AT_END":
        if multiline:
            return pos == end or text[pos] == "\n"
        return pos == end or (pos == end - 1 and text[pos] == "\n")
    before = pos > 0 and _is_word(text[pos - 1])
    after = pos < end and _is_word(text[pos])
    if kind == "AT_BOUNDARY":
        return before != after
    return before == after and end > 0  # like re: \B never matches an empty string


class SafePattern:
    """A compiled rule pattern: ``search(text)`` like ``re.search(..., re.I)``, but linear."""

    def __init__(self, pattern: str) -> None:
        if len(pattern) > MAX_PATTERN:
            raise PatternError(f"regular expression is longer than {MAX_PATTERN} characters")
        try:
            re.compile(pattern, re.IGNORECASE)
            tree = _parser.parse(pattern, re.IGNORECASE)
        except re.error as exc:
            where = f" at position {exc.pos}" if exc.pos is not None else ""
            raise PatternError(f"invalid regular expression: {exc.msg}{where}") from None
        global_flags = int(tree.state.flags)
        compiler = _Compiler()
        compiler.sequence(tree, _Flags(bool(global_flags & re.S), bool(global_flags & re.M)))
        compiler.add("match")
        self.pattern = pattern
        self._program = compiler.program

    def search(self, text: str) -> bool:
        """Whether the pattern matches anywhere in ``text``; O(len(program) x len(text))."""
        program = self._program
        current: list[int] = []
        if self._follow(current, set(), 0, text, 0):
            return True
        for pos, ch in enumerate(text):
            following: list[int] = []
            seen: set[int] = set()
            for pc in current:
                if program[pc][1](ch) and self._follow(following, seen, pc + 1, text, pos + 1):
                    return True
            if self._follow(following, seen, 0, text, pos + 1):
                return True
            current = following
        return False

    def _follow(self, out: list[int], seen: set[int], start: int, text: str, pos: int) -> bool:
        """Add ``start``'s epsilon closure at ``pos`` to ``out``; True when it reaches match."""
        stack = [start]
        program = self._program
        while stack:
            pc = stack.pop()
            if pc in seen:
                continue
            seen.add(pc)
            kind = program[pc][0]
            if kind == "char":
                out.append(pc)
            elif kind == "match":
                return True
            elif kind == "jmp":
                stack.append(program[pc][1])
            elif kind == "split":
                stack.extend((program[pc][2], program[pc][1]))
            elif _at(program[pc][1], program[pc][2], text, pos):
                stack.append(pc + 1)
        return False
