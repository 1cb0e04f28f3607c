"""The run filter and order-by grammar: a regex tokenizer and a recursive-descent parser.

Grammar (keywords are case-insensitive)::

    filter    := condition ( "and" condition )*
    condition := key op value | key ["not"] "in" "(" value ( "," value )* ")"
    key       := type "." name ( "." name )*       type: params, metrics, tags, attributes
    name      := word characters (letters, digits, _) | `any text but a backquote`
    op        := "=" | "!=" | "<" | "<=" | ">" | ">=" | "like" | "ilike"
    value     := number | 'text' | "text"          (backslash escapes the quote)
    order_by  := key [ "asc" | "desc" ] ( "," key [ "asc" | "desc" ] )*

What a key may be compared with is checked here, so that a filter which parses can
always be compiled: metrics and the numeric attributes compare with numbers, tags and the
text attributes with text, params with either (numbers compare numerically). Errors are
:class:`~sweep.errors.FilterError` with the character offset (from 0) of the bad token.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sweep.errors import FilterError
from sweep.tracking._entities import RunStatus
from sweep.tracking._filter_limits import check_length, check_size

KeyType = Literal["params", "metrics", "tags", "attributes"]
Value = float | str

#: Attribute name -> whether it holds a number (else text).
ATTRIBUTES: dict[str, bool] = {
    "run_id": False,
    "name": False,
    "status": False,
    "start_time": True,
    "end_time": True,
    "parent_run_id": False,
    "experiment_id": True,
}
_PREFIXES: dict[str, KeyType] = {
    "params": "params",
    "param": "params",
    "metrics": "metrics",
    "metric": "metrics",
    "tags": "tags",
    "tag": "tags",
    "attributes": "attributes",
    "attribute": "attributes",
    "attr": "attributes",
}
_COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")
_TEXT_OPS = ("=", "!=", "like", "ilike", "in", "not in")
OPERATORS_HINT = "an operator (=, !=, <, <=, >, >=, like, ilike, in, not in)"
KEY_HINT = "a key like params.lr, metrics.val_acc, tags.model_type or attributes.status"
VALUE_HINT = "a value (a number, or a quoted string like 'sgd')"


@dataclass(frozen=True)
class Key:
    type: KeyType
    name: str
    text: str  # as written, for messages
    position: int


@dataclass(frozen=True)
class Condition:
    key: Key
    op: str  # one of _COMPARISONS, "like", "ilike", "in", "not in"
    value: Value | tuple[Value, ...]

    @property
    def numeric(self) -> bool:
        """Whether the value (every value of an in-list) is a number."""
        values = self.value if isinstance(self.value, tuple) else (self.value,)
        return isinstance(values[0], float)


@dataclass(frozen=True)
class OrderKey:
    key: Key
    descending: bool


# -- tokenizer -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # key, word, number, string, op, punct, end
    text: str
    position: int
    value: object = None  # key: list of name parts; number: float; string: its text


_SCANNER = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)(?P<tail>[\w.]*)
  | (?P<op><=|>=|!=|<>|==|=|<|>)
  | (?P<punct>[(),])
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    """,
    re.VERBOSE | re.DOTALL,
)
_WORD = re.compile(r"[^\W\d]\w*")  # a letter or _, then letters, digits, _
_SEGMENT = re.compile(r"\w+|`[^`]*`")
_ESCAPED_QUOTE = re.compile(r"""\\(['"\\])""")


class _Scanner:
    def __init__(self, text: str, what: str) -> None:
        self.text = text
        self.what = what

    def error(self, reason: str, position: int, length: int = 1) -> FilterError:
        return FilterError(reason, text=self.text, position=position, length=length, what=self.what)

    def tokens(self) -> list[_Token]:
        text, pos, found = self.text, 0, []
        while pos < len(text):
            if _WORD.match(text, pos):
                token = self._key(pos)
                found.append(token)
                pos += len(token.text)
                continue
            match = _SCANNER.match(text, pos)
            if match is None:
                raise self._unexpected(pos)
            if match.group("number") is not None:
                if match.group("tail"):  # a number run on into letters or dots: 1e, 0.0.1
                    bad = match.group(0)
                    raise self.error(
                        f"invalid number {bad!r} at position {pos}; "
                        "expected a number like 0.01, -3 or 1e-3",
                        pos,
                        len(bad),
                    )
                found.append(_Token("number", match.group(0), pos, float(match.group(0))))
            elif match.group("string") is not None:
                raw = match.group(0)
                found.append(_Token("string", raw, pos, _ESCAPED_QUOTE.sub(r"\1", raw[1:-1])))
            elif match.group("op") is not None:
                op = {"==": "=", "<>": "!="}.get(match.group(0), match.group(0))
                found.append(_Token("op", match.group(0), pos, op))
            elif match.group("punct") is not None:
                found.append(_Token("punct", match.group(0), pos))
            pos = match.end()
        found.append(_Token("end", "", len(text)))
        return found

    def _key(self, start: int) -> _Token:
        """A word, or a dotted key whose segments may be backquoted: tags.`my-key`."""
        text = self.text
        word = _WORD.match(text, start)
        assert word is not None
        parts, pos = [word.group(0)], word.end()
        while pos < len(text) and text[pos] == ".":
            segment = _SEGMENT.match(text, pos + 1)
            if segment is None:
                if text.startswith("`", pos + 1):
                    raise self.error(
                        f"unterminated backquoted key starting at position {pos + 1}; "
                        "close it with a backquote (`)",
                        pos + 1,
                        len(text) - pos - 1,
                    )
                raise self.error(
                    f"expected a key name after {text[start : pos + 1]!r} at position {pos + 1}; "
                    "put names with dashes, spaces or other symbols in backquotes: "
                    f"{text[start:pos]}.`my-key`",
                    pos + 1,
                )
            raw = segment.group(0)
            parts.append(raw[1:-1] if raw.startswith("`") else raw)
            pos = segment.end()
        kind = "key" if len(parts) > 1 else "word"
        return _Token(kind, text[start:pos], start, parts)

    def _unexpected(self, pos: int) -> FilterError:
        char = self.text[pos]
        if char in "'\"":
            return self.error(
                f"unterminated string starting at position {pos}; close it with {char}",
                pos,
                len(self.text) - pos,
            )
        if char == "`":
            return self.error(
                f"unexpected backquote at position {pos}; backquotes quote a key name after "
                "its type, like params.`my.key`",
                pos,
            )
        return self.error(
            f"unexpected character {char!r} at position {pos}; names with dashes, dots or "
            "spaces go in backquotes, like params.`my-key`, and text values in quotes, "
            "like 'sgd'",
            pos,
        )


# -- parser --------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, what: str) -> None:
        self.scanner = _Scanner(text, what)
        self.tokens = self.scanner.tokens()
        self.index = 0

    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        self.index = min(self.index + 1, len(self.tokens) - 1)
        return token

    def is_word(self, *words: str) -> bool:
        return self.current.kind == "word" and self.current.text.lower() in words

    def fail(self, expected: str, after: _Token | None, extra: str = "") -> FilterError:
        token = self.current
        where = f" after {after.text!r}" if after is not None else ""
        got = f"the end of the {self.scanner.what}" if token.kind == "end" else repr(token.text)
        return self.scanner.error(
            f"expected {expected}{where} at position {token.position}, got {got}{extra}",
            token.position,
            max(len(token.text), 1),
        )

    # key --------------------------------------------------------------------------

    def key(self, after: _Token | None) -> Key:
        token = self.current
        if token.kind == "word" and token.text.lower() not in ("and", "in", "not", "like"):
            name = token.text
            raise self.scanner.error(
                f"{name!r} at position {token.position} has no type; expected "
                f"params.{name}, metrics.{name}, tags.{name} or attributes.{name}",
                token.position,
                len(name),
            )
        if token.kind != "key":
            raise self.fail(KEY_HINT, after)
        parts: list[str] = token.value  # type: ignore[assignment]
        key_type = _PREFIXES.get(parts[0].lower())
        if key_type is None:
            raise self.scanner.error(
                f"unknown key type {parts[0]!r} in {token.text!r} at position {token.position}; "
                "expected params., metrics., tags. or attributes.",
                token.position,
                len(parts[0]),
            )
        name = ".".join(parts[1:])
        if key_type == "attributes" and name not in ATTRIBUTES:
            raise self.scanner.error(
                f"unknown attribute {name!r} at position {token.position}; expected one of "
                + ", ".join(ATTRIBUTES),
                token.position,
                len(token.text),
            )
        self.advance()
        return Key(key_type, name, token.text, token.position)

    # filter -----------------------------------------------------------------------

    def filter(self) -> list[Condition]:
        conditions: list[Condition] = []
        if self.current.kind == "end":
            return conditions
        after: _Token | None = None
        while True:
            conditions.append(self.condition(after))
            last = self.tokens[self.index - 1]
            if self.current.kind == "end":
                return conditions
            if self.is_word("or"):
                raise self.scanner.error(
                    f"'or' at position {self.current.position} is not supported; conditions "
                    "combine with 'and' only (run one search per alternative, or use 'in')",
                    self.current.position,
                    2,
                )
            if not self.is_word("and"):
                raise self.fail("'and' or the end of the filter", last)
            after = self.advance()

    def condition(self, after: _Token | None) -> Condition:
        key = self.key(after)
        key_token = self.tokens[self.index - 1]
        op, op_token = self.operator(key_token)
        if op in ("in", "not in"):
            value: Value | tuple[Value, ...] = self.value_list(op_token)
        else:
            value = self.value(op_token)
        condition = Condition(key, op, value)
        self.check_types(condition, op_token)
        return condition

    def operator(self, after: _Token) -> tuple[str, _Token]:
        token = self.current
        if token.kind == "op":
            self.advance()
            return str(token.value), token
        if self.is_word("like", "ilike", "in"):
            self.advance()
            return token.text.lower(), token
        if self.is_word("not"):
            self.advance()
            if not self.is_word("in"):
                raise self.fail("'in'", token)
            in_token = self.advance()
            return "not in", _Token("word", f"{token.text} {in_token.text}", token.position)
        raise self.fail(OPERATORS_HINT, after)

    def value(self, after: _Token) -> Value:
        token = self.current
        if token.kind in ("number", "string"):
            self.advance()
            return token.value  # type: ignore[return-value]
        extra = ""
        if token.kind in ("word", "key"):
            extra = f"; quote text values: '{token.text}'"
        raise self.fail(VALUE_HINT, after, extra)

    def value_list(self, after: _Token) -> tuple[Value, ...]:
        if not (self.current.kind == "punct" and self.current.text == "("):
            raise self.fail("'(' to open the list of values, like in ('sgd', 'adam'),", after)
        previous = self.advance()
        values = [self.value(previous)]
        while True:
            token = self.current
            if token.kind == "punct" and token.text == ")":
                self.advance()
                break
            if not (token.kind == "punct" and token.text == ","):
                raise self.fail("',' or ')' in the list of values", self.tokens[self.index - 1])
            values.append(self.value(self.advance()))
        kinds = {isinstance(v, float) for v in values}
        if len(kinds) > 1:
            raise self.scanner.error(
                f"the list after {after.text!r} at position {after.position} mixes numbers and "
                "text; use only numbers or only quoted strings",
                after.position,
                len(after.text),
            )
        return tuple(values)

    def check_types(self, condition: Condition, op_token: _Token) -> None:
        key, op = condition.key, condition.op
        value_token = self.tokens[self.index - 1]
        if key.type == "metrics" or (key.type == "attributes" and ATTRIBUTES[key.name]):
            what = "metrics are" if key.type == "metrics" else f"{key.text} is"
            if op in ("like", "ilike"):
                raise self.scanner.error(
                    f"{what} numbers; {op!r} at position {op_token.position} works on params, "
                    "tags and text attributes only",
                    op_token.position,
                    len(op_token.text),
                )
            if not condition.numeric:
                raise self._value_error(f"{what} numbers; expected a number", value_token)
        elif key.type == "tags" or key.type == "attributes":
            what = "tags are" if key.type == "tags" else f"{key.text} is"
            if op not in _TEXT_OPS:
                raise self.scanner.error(
                    f"{what} text; {op!r} at position {op_token.position} compares numbers; "
                    "use =, !=, like, ilike, in or not in",
                    op_token.position,
                    len(op_token.text),
                )
            if condition.numeric:
                raise self._value_error(
                    f"{what} text; expected a quoted value",
                    value_token,
                    f"; write '{value_token.text}'",
                )
        elif op in ("like", "ilike") and condition.numeric:
            raise self._value_error(
                f"{op!r} needs a quoted pattern like 'trial-%'; expected a string", value_token
            )
        elif op in ("<", "<=", ">", ">=") and not condition.numeric:
            raise self._value_error(
                f"{op!r} compares numbers; expected a number",
                value_token,
                "; use =, like or in for text",
            )
        if op in ("like", "ilike") and _ends_with_escape(str(condition.value)):
            raise self._value_error(
                "a like pattern cannot end with an escaping backslash; expected a character "
                "after it (match one literal backslash with \\\\\\\\ in the filter)",
                value_token,
            )
        if key.type == "attributes" and key.name == "status" and op not in ("like", "ilike"):
            values = condition.value if isinstance(condition.value, tuple) else (condition.value,)
            allowed = [s.value for s in RunStatus]
            if any(v not in allowed for v in values):
                raise self._value_error(f"expected a status ({', '.join(allowed)})", value_token)

    def _value_error(self, reason: str, token: _Token, hint: str = "") -> FilterError:
        return self.scanner.error(
            f"{reason} at position {token.position}, got {token.text}{hint}",
            token.position,
            len(token.text),
        )

    # order by -------------------------------------------------------------------------

    def order_by(self) -> list[OrderKey]:
        keys: list[OrderKey] = []
        after: _Token | None = None
        while True:
            key = self.key(after)
            last = self.tokens[self.index - 1]
            descending = False
            if self.is_word("asc", "desc"):
                descending = self.current.text.lower() == "desc"
                last = self.advance()
            keys.append(OrderKey(key, descending))
            if self.current.kind == "end":
                return keys
            if not (self.current.kind == "punct" and self.current.text == ","):
                expected = (
                    "'asc', 'desc', ',' or the end" if last.kind == "key" else "',' or the end"
                )
                raise self.fail(expected, last)
            after = self.advance()


def _ends_with_escape(pattern: str) -> bool:
    trailing = len(pattern) - len(pattern.rstrip("\\"))
    return trailing % 2 == 1


def parse_filter(text: str | None) -> list[Condition]:
    """The conditions of ``text`` (all must hold); none for an empty filter.

    A filter too long, with too many conditions or in-list values (the limits are in
    :mod:`sweep.tracking._filter_limits`) is refused with a
    :class:`~sweep.errors.FilterError`, so that no search can hold the database."""
    if text is None:
        return []
    check_length(text)
    conditions = _Parser(text, "filter").filter()
    check_size(text, conditions)
    return conditions


def parse_order_by(clauses: Sequence[str] | None) -> list[OrderKey]:
    """The sort keys of ``clauses``, each like ``metrics.val_acc desc`` (or several
    separated by commas)."""
    keys: list[OrderKey] = []
    for clause in clauses or ():
        parser = _Parser(clause, "order-by")
        if parser.current.kind == "end":
            raise parser.fail(
                "a key like metrics.val_acc, optionally followed by asc or desc,", None
            )
        keys.extend(parser.order_by())
    return keys
