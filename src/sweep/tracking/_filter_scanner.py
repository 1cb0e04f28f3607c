"""The run filter's tokenizer: a regex scanner turning filter text into tokens (keys,
words, numbers, quoted strings, operators, punctuation), with errors that point at the
character that broke it. The grammar it serves is in :mod:`sweep.tracking._filter`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sweep.errors import FilterError


@dataclass(frozen=True)
class Token:
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


class Scanner:
    def __init__(self, text: str, what: str) -> None:
        self.text = text
        self.what = what

    def error(self, reason: str, position: int, length: int = 1) -> FilterError:
        return FilterError(reason, text=self.text, position=position, length=length, what=self.what)

    def tokens(self) -> list[Token]:
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
                found.append(Token("number", match.group(0), pos, float(match.group(0))))
            elif match.group("string") is not None:
                raw = match.group(0)
                found.append(Token("string", raw, pos, _ESCAPED_QUOTE.sub(r"\1", raw[1:-1])))
            elif match.group("op") is not None:
                op = {"==": "=", "<>": "!="}.get(match.group(0), match.group(0))
                found.append(Token("op", match.group(0), pos, op))
            elif match.group("punct") is not None:
                found.append(Token("punct", match.group(0), pos))
            pos = match.end()
        found.append(Token("end", "", len(text)))
        return found

    def _key(self, start: int) -> Token:
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
        return Token(kind, text[start:pos], start, parts)

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
