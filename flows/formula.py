"""The formula language: strings such as ``"scale-hh*10-loc"`` parsed into a tree.

Grammar (whitespace is ignored everywhere, names are case-insensitive)::

    formula := step ("-" step)*
    step    := name ["(" option ("," option)* ")"] ["*" count]
             | "(" formula ")" "*" count
    option  := key "=" number | key "=" word

The leftmost step is applied first to z0 ~ N(0, I) (PyMC3's order), so
``"scale-loc"`` is ``loc(scale(z0)) = mu + sigma * z0``.

Every malformed input raises :class:`FormulaError`, whose message repeats the
formula with a caret under the offending column; no other exception escapes
:func:`parse`.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass

from flows import registry

MAX_COUNT = 100_000
"""Largest repeat count accepted; beyond it a formula is surely a typo."""

MAX_DEPTH = 32
"""Deepest nesting of groups accepted; it keeps the recursive parser off Python's stack limit."""

OptionValue = int | float | str | bool


class FormulaError(ValueError):
    """A formula string that does not parse.

    Attributes:
        formula: the string as given.
        column: 0-based column in ``formula`` of the offending character.
        reason: the message without the caret drawing.
    """

    def __init__(self, reason: str, formula: str, column: int):
        self.reason = reason
        self.formula = formula
        self.column = max(0, min(column, len(formula)))
        shown = formula.replace("\n", " ").replace("\t", " ").replace("\r", " ")
        super().__init__(f"{reason}\n  {shown}\n  {' ' * self.column}^")


@dataclass(frozen=True)
class Step:
    """One named step with its options (sorted by key) repeated ``count`` times."""

    name: str
    options: tuple[tuple[str, OptionValue], ...] = ()
    count: int = 1

    def __str__(self) -> str:
        text = self.name
        if self.options:
            text += "(" + ",".join(f"{k}={_format_value(v)}" for k, v in self.options) + ")"
        return text + (f"*{self.count}" if self.count != 1 else "")


@dataclass(frozen=True)
class Group:
    """A parenthesised sub-formula repeated ``count`` times: ``(a-b)*k``."""

    body: Formula
    count: int

    def __str__(self) -> str:
        return f"({self.body})*{self.count}"


@dataclass(frozen=True)
class Formula:
    """A parsed formula: its items in the order they are applied to z0."""

    items: tuple[Step | Group, ...]

    def __str__(self) -> str:
        return "-".join(str(item) for item in self.items)

    def steps(self) -> list[Step]:
        """Every :class:`Step` in application order, groups and repeats unrolled."""
        out: list[Step] = []
        for item in self.items:
            if isinstance(item, Step):
                out.extend([item] * item.count)
            else:
                out.extend(item.body.steps() * item.count)
        return out


def _format_value(value: OptionValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


_TOKEN = re.compile(
    r"(?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<punct>[-()*,=])",
    re.ASCII,
)


@dataclass(frozen=True)
class _Token:
    kind: str  # "number", "name", "punct" or "end"
    text: str
    column: int  # column in the original string


class _Parser:
    def __init__(self, formula: str):
        self.formula = formula
        self.tokens = self._tokenize(formula)
        self.pos = 0

    def error(self, reason: str, column: int) -> FormulaError:
        return FormulaError(reason, self.formula, column)

    def _tokenize(self, formula: str) -> list[_Token]:
        # Whitespace is ignored everywhere (PyMC3 strips it), so "pla nar" is
        # "planar": tokenise the text without it, mapping columns back.
        kept = [(i, c) for i, c in enumerate(formula) if not c.isspace()]
        text = "".join(c for _, c in kept)
        columns = [i for i, _ in kept] + [len(formula)]
        tokens, i = [], 0
        while i < len(text):
            match = _TOKEN.match(text, i)
            if match is None:
                raise self.error(f"unexpected character {text[i]!r}", columns[i])
            tokens.append(_Token(match.lastgroup or "", match.group(), columns[i]))
            i = match.end()
        tokens.append(_Token("end", "", columns[len(text)]))
        return tokens

    @property
    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def at(self, text: str) -> bool:
        return self.peek.kind == "punct" and self.peek.text == text

    def parse(self) -> Formula:
        if self.peek.kind == "end":
            raise self.error("the formula is empty; write steps such as 'planar*8'", 0)
        formula = self.formula_(depth=0)
        if self.peek.kind != "end":
            raise self.error(self._unexpected_after_step(), self.peek.column)
        return formula

    def _unexpected_after_step(self) -> str:
        token = self.peek
        if token.text == ")":
            return "unbalanced parenthesis: this ')' closes nothing"
        if token.text == "*":
            return "a step takes a single count: write 'name*6', not 'name*2*3'"
        return f"expected '-' between steps, found {token.text!r}"

    def formula_(self, depth: int) -> Formula:
        items = [self.step(depth)]
        while self.at("-"):
            self.take()
            items.append(self.step(depth))
        return Formula(tuple(items))

    def step(self, depth: int) -> Step | Group:
        token = self.peek
        if token.kind == "punct" and token.text == "(":
            open_paren = self.take()
            if depth >= MAX_DEPTH:
                raise self.error(f"groups are nested deeper than {MAX_DEPTH} levels",
                                 open_paren.column)
            if self.at(")"):
                raise self.error("empty group '()': put steps inside", self.peek.column)
            body = self.formula_(depth + 1)
            if not self.at(")"):
                if self.peek.kind == "end":
                    raise self.error("unbalanced parenthesis: this '(' is never closed",
                                     open_paren.column)
                raise self.error(self._unexpected_after_step(), self.peek.column)
            close = self.take()
            if not self.at("*"):
                raise self.error("a group needs a count: write '(a-b)*k'", close.column + 1)
            return Group(body, self.count())
        if token.kind == "name":
            self.take()
            name = self.resolve(token)
            options = self.options(name) if self.at("(") else ()
            count = self.count() if self.at("*") else 1
            return Step(name, options, count)
        if token.kind == "end" or (token.kind == "punct" and token.text in "-)"):
            raise self.error("empty step: expected a flow name here", token.column)
        raise self.error(f"expected a flow name, found {token.text!r}", token.column)

    def resolve(self, token: _Token) -> str:
        name = token.text.lower()
        canonical = registry.canonical_name(name)
        if canonical is not None:
            return canonical
        known = registry.known_names()
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else \
            f"; known flows: {', '.join(registry.available())}"
        raise self.error(f"{token.text!r} is not a flow{hint}", token.column)

    def count(self) -> int:
        star = self.take()  # the '*'
        token = self.peek
        if token.kind != "number":
            what = "nothing" if token.kind == "end" else repr(token.text)
            raise self.error(f"'*' must be followed by a positive integer count, found {what}",
                             token.column if token.kind != "end" else star.column + 1)
        self.take()
        if not token.text.isdigit():
            raise self.error(f"count must be a positive integer, not {token.text}",
                             token.column)
        if len(token.text.lstrip("0")) > len(str(MAX_COUNT)):
            raise self.error(f"count is larger than the limit {MAX_COUNT}", token.column)
        value = int(token.text)
        if value < 1:
            raise self.error("count must be a positive integer, not 0", token.column)
        if value > MAX_COUNT:
            raise self.error(f"count {value} is larger than the limit {MAX_COUNT}",
                             token.column)
        return value

    def options(self, name: str) -> tuple[tuple[str, OptionValue], ...]:
        spec = registry.lookup(name).options
        open_paren = self.take()
        values: dict[str, OptionValue] = {}
        while True:
            key_token = self.peek
            if key_token.kind != "name":
                if key_token.kind == "end":
                    raise self.error("unbalanced parenthesis: this '(' is never closed",
                                     open_paren.column)
                raise self.error(f"expected an option name such as 'jitter=0.1', "
                                 f"found {key_token.text!r}", key_token.column)
            self.take()
            key = key_token.text.lower()
            if key not in spec:
                close = difflib.get_close_matches(key, list(spec), n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else \
                    f"{name!r} takes: {', '.join(sorted(spec))}"
                raise self.error(f"unknown option {key_token.text!r} for {name!r}; {hint}",
                                 key_token.column)
            if key in values:
                raise self.error(f"option {key!r} is given twice", key_token.column)
            if not self.at("="):
                raise self.error(f"expected '=' after option {key!r}", self.peek.column)
            self.take()
            value_column = self.peek.column
            raw = self.value()
            try:
                values[key] = spec[key].convert(raw)
            except ValueError as err:
                raise self.error(f"option {key!r} of {name!r}: {err}", value_column) from None
            if self.at(","):
                self.take()
                continue
            if self.at(")"):
                self.take()
                return tuple(sorted(values.items()))
            if self.peek.kind == "end":
                raise self.error("unbalanced parenthesis: this '(' is never closed",
                                 open_paren.column)
            raise self.error(f"expected ',' or ')' after an option, found {self.peek.text!r}",
                             self.peek.column)

    def value(self) -> int | float | str:
        sign = 1
        if self.at("-"):
            self.take()
            sign = -1
        token = self.peek
        if token.kind == "number":
            self.take()
            if token.text.isdigit() and len(token.text) <= 18:
                return sign * int(token.text)
            value = sign * float(token.text)
            if not math.isfinite(value):
                raise self.error(f"{token.text} is not a finite number", token.column)
            return value
        if token.kind == "name" and sign == 1:
            self.take()
            return token.text.lower()
        raise self.error("expected a number or a word as the option's value", token.column)


def parse(formula: str | Formula) -> Formula:
    """Parse a formula string into a :class:`Formula`.

    ``parse("Scale - HH*3 - loc")`` gives the canonical ``scale-hh*3-loc``;
    ``str(parse(f))`` is canonical and ``parse(str(parse(f))) == parse(f)``.
    A :class:`Formula` is returned unchanged.

    Raises:
        FormulaError: for any malformed formula (a ``ValueError``).
    """
    if isinstance(formula, Formula):
        return formula
    if not isinstance(formula, str):
        raise FormulaError(f"a formula is a string, not {type(formula).__name__}", "", 0)
    return _Parser(formula).parse()
