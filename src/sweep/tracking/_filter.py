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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sweep.errors import FilterError
from sweep.tracking._entities import RunStatus
from sweep.tracking._filter_limits import check_length, check_size
from sweep.tracking._filter_scanner import Scanner, Token

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


# -- parser --------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, what: str) -> None:
        self.scanner = Scanner(text, what)
        self.tokens = self.scanner.tokens()
        self.index = 0

    @property
    def current(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index = min(self.index + 1, len(self.tokens) - 1)
        return token

    def is_word(self, *words: str) -> bool:
        return self.current.kind == "word" and self.current.text.lower() in words

    def fail(self, expected: str, after: Token | None, extra: str = "") -> FilterError:
        token = self.current
        where = f" after {after.text!r}" if after is not None else ""
        got = f"the end of the {self.scanner.what}" if token.kind == "end" else repr(token.text)
        return self.scanner.error(
            f"expected {expected}{where} at position {token.position}, got {got}{extra}",
            token.position,
            max(len(token.text), 1),
        )

    # key --------------------------------------------------------------------------

    def key(self, after: Token | None) -> Key:
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
        after: Token | None = None
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

    def condition(self, after: Token | None) -> Condition:
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

    def operator(self, after: Token) -> tuple[str, Token]:
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
            return "not in", Token("word", f"{token.text} {in_token.text}", token.position)
        raise self.fail(OPERATORS_HINT, after)

    def value(self, after: Token) -> Value:
        token = self.current
        if token.kind in ("number", "string"):
            self.advance()
            return token.value  # type: ignore[return-value]
        extra = ""
        if token.kind in ("word", "key"):
            extra = f"; quote text values: '{token.text}'"
        raise self.fail(VALUE_HINT, after, extra)

    def value_list(self, after: Token) -> tuple[Value, ...]:
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

    def check_types(self, condition: Condition, op_token: Token) -> None:
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

    def _value_error(self, reason: str, token: Token, hint: str = "") -> FilterError:
        return self.scanner.error(
            f"{reason} at position {token.position}, got {token.text}{hint}",
            token.position,
            len(token.text),
        )

    # order by -------------------------------------------------------------------------

    def order_by(self) -> list[OrderKey]:
        keys: list[OrderKey] = []
        after: Token | None = None
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
