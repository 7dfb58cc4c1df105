"""The well-formed answers of the NER task, as byte automata for constrained decoding.

`MentionLines` accepts `none` or `LABEL: mention` lines (a declared label, a mention copied from the text);
`MarkedCopy` accepts the text written again with `[LABEL mention]` marks. docs/tasks.md says what each allows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ...constraints import ByteAutomaton, Choice


def normalize(mention: str) -> str:
    """Single-spaced mention: a target line can never contain a newline, whatever the text holds."""
    return " ".join(mention.split())


_LEAD, _TEXT, _HEAD, _INSIDE, _NONE, _LINE, _MENTION = range(7)
_SPACE = frozenset(b" \t\n\r")
_BLANK, _NEWLINE, _OPEN, _CLOSE = 0x20, 0x0A, 0x5B, 0x5D  # ' ', '\n', '[', ']'


class MarkedCopy(ByteAutomaton):
    """Inline answers: `text` (whitespace normalised) written out exactly, with `[LABEL mention]` marks around
    non-empty spans. The model still decides where entities are and what they are, but cannot misspell, skip or
    invent text. States are (mode, position in the text, detail); whitespace before the answer is allowed."""

    def __init__(self, text: str, labels: Sequence[str]) -> None:
        self.text = normalize(text).encode()
        self.heads = Choice(f"{label} " for label in labels)

    def initial(self) -> Iterable[tuple]:
        return [(_LEAD, 0, 0)]

    def step(self, state: tuple, byte: int) -> Iterator[tuple]:
        mode, i, detail = state
        text = self.text
        if mode == _HEAD:
            for typed in self.heads.step(detail, byte):
                if self.heads.accepts(typed):
                    yield _INSIDE, i, 0
                if typed in self.heads.partial:  # a longer label may start the same way
                    yield _HEAD, i, typed
            return
        if mode == _LEAD and byte in _SPACE:
            yield _LEAD, i, 0
        if i < len(text) and text[i] == byte:
            yield (_INSIDE, i + 1, detail + 1) if mode == _INSIDE else (_TEXT, i + 1, 0)
        if mode == _INSIDE:
            if byte == _CLOSE and detail:  # closes a non-empty mention
                yield _TEXT, i, 0
        elif byte == _OPEN and i < len(text):
            yield _HEAD, i, b""

    def accepts(self, state: tuple) -> bool:
        mode, i, _ = state
        return mode in (_LEAD, _TEXT) and i == len(self.text)

    def next_bytes(self, state: frozenset) -> set[int]:
        allowed: set[int] = set()
        for mode, i, detail in state:
            if mode == _HEAD:
                allowed |= self.heads.next_bytes([detail])
                continue
            if i < len(self.text):
                allowed.add(self.text[i])
            if mode == _LEAD:
                allowed |= _SPACE
            if mode == _INSIDE:
                if detail:
                    allowed.add(_CLOSE)
            elif i < len(self.text):
                allowed.add(_OPEN)
        return allowed


class MentionLines(ByteAutomaton):
    """Line answers: `none`, or lines `LABEL: mention` where each mention is a non-empty piece of `text`
    (whitespace normalised), so no line names a label that is not declared or a mention that is not in the text.
    States are (mode, detail): the label typed so far, or the text positions where the mention so far ends."""

    def __init__(self, text: str, labels: Sequence[str]) -> None:
        self.text = normalize(text).encode()
        self.heads = Choice(f"{label}: " for label in labels)
        self.ends_after: dict[int, frozenset[int]] = {}  # first byte of a mention -> where it can end
        for i, byte in enumerate(self.text):
            if byte != _BLANK:  # mentions are stripped, as in the targets
                self.ends_after[byte] = self.ends_after.get(byte, frozenset()) | {i + 1}

    def initial(self) -> Iterable[tuple]:
        return [(_LEAD, b"")]

    def step(self, state: tuple, byte: int) -> Iterator[tuple]:
        mode, detail = state
        if mode == _MENTION:
            text = self.text
            if not detail:
                ends = self.ends_after.get(byte)
            else:
                ends = frozenset(e + 1 for e in detail if e < len(text) and text[e] == byte)
                if byte == _NEWLINE and self._complete(detail):
                    yield _LINE, b""
            if ends:
                yield _MENTION, ends
            return
        if mode == _NONE:
            if len(detail) < 4 and b"none"[len(detail)] == byte:
                yield _NONE, detail + bytes([byte])
            return
        if mode == _LEAD:
            if byte in _SPACE:
                yield _LEAD, b""
            if byte == b"n"[0]:
                yield _NONE, b"n"
        for typed in self.heads.step(detail if mode == _HEAD else b"", byte):
            if self.heads.accepts(typed):
                yield _MENTION, frozenset()
            if typed in self.heads.partial:
                yield _HEAD, typed

    def accepts(self, state: tuple) -> bool:
        mode, detail = state
        return (mode == _NONE and detail == b"none") or (mode == _MENTION and self._complete(detail))

    def _complete(self, ends: frozenset[int]) -> bool:
        """A mention typed so far may end here: it is not empty and does not end in a space."""
        return bool(ends) and self.text[next(iter(ends)) - 1] != _BLANK

    def next_bytes(self, state: frozenset) -> set[int]:
        allowed: set[int] = set()
        for mode, detail in state:
            if mode == _MENTION:
                if not detail:
                    allowed |= set(self.ends_after)
                else:
                    allowed |= {self.text[e] for e in detail if e < len(self.text)}
                    if self._complete(detail):
                        allowed.add(_NEWLINE)
            elif mode == _NONE:
                allowed |= {b"none"[len(detail)]} if len(detail) < 4 else set()
            else:
                allowed |= self.heads.next_bytes([detail if mode == _HEAD else b""])
                if mode == _LEAD:
                    allowed |= _SPACE | {b"n"[0]}
        return allowed
