"""Constrained greedy decoding: a task may say which answers are well-formed, and generation keeps to them.

A task returns a `Constraint` for a record (`Task.constraint`): a small automaton over the UTF-8 bytes of the
answer. At each step `ConstrainedGreedy` takes the highest-scoring token whose bytes the automaton accepts, so the
model still makes every choice the constraint leaves open, and never one it rules out. The fast path checks only
the top few tokens; the full vocabulary is searched, by first byte, only when none of those fits.

It works on bytes rather than tokens, so one constraint serves every tokenizer (byte-level BPE, SentencePiece);
`vocabulary_bytes` maps each token id to the bytes it writes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

#: a token's worth of answer bytes, or None for special tokens (never generated under a constraint)
TokenBytes = Sequence[bytes | None]


class Constraint(ABC):
    """An automaton over answer bytes. States are any immutable value; `advance` returns None on a dead end."""

    @abstractmethod
    def start(self) -> Any:
        """The state before the first answer byte."""

    @abstractmethod
    def advance(self, state: Any, data: bytes) -> Any | None:
        """The state after `data`, or None when no well-formed answer continues this way."""

    @abstractmethod
    def can_end(self, state: Any) -> bool:
        """Whether the answer may stop here (end-of-sequence is allowed)."""

    @abstractmethod
    def next_bytes(self, state: Any) -> set[int]:
        """Every byte `advance` could accept next: the search of the full vocabulary starts from these."""


class ByteAutomaton(Constraint):
    """A nondeterministic automaton given byte by byte: `step(state, byte)` yields the states that byte can lead
    to. The constraint's state is the frozenset of states the automaton may be in, so ambiguous answers (a '[' that
    is text or the start of a mark) need no look-ahead."""

    @abstractmethod
    def initial(self) -> Iterable[Any]:
        """The automaton's states before the first byte."""

    @abstractmethod
    def step(self, state: Any, byte: int) -> Iterable[Any]:
        """States after `byte` from `state`; none when the byte is not allowed there."""

    @abstractmethod
    def accepts(self, state: Any) -> bool:
        """Whether a complete answer may end in `state`."""

    def start(self) -> frozenset:
        return frozenset(self.initial())

    def advance(self, state: frozenset, data: bytes) -> frozenset | None:
        for byte in data:
            state = frozenset(after for s in state for after in self.step(s, byte))
            if not state:
                return None
        return state

    def can_end(self, state: frozenset) -> bool:
        return any(self.accepts(s) for s in state)

    def next_bytes(self, state: frozenset) -> set[int]:
        """Tries every byte; override with a direct answer where the automaton makes that easy."""
        return {b for b in range(256) if any(True for s in state for _ in self.step(s, b))}


class Choice(ByteAutomaton):
    """Exactly one of a few strings (a class label, say); states are the bytes written so far. Other automata use
    one to type a keyword from a fixed set (`accepts`: a whole option; `partial`: one that can still grow)."""

    def __init__(self, options: Iterable[str]) -> None:
        self.options = frozenset(o.encode() for o in options)
        self.partial = frozenset(o[:n] for o in self.options for n in range(len(o)))

    def initial(self) -> Iterable[bytes]:
        return [b""]

    def step(self, state: bytes, byte: int) -> Iterable[bytes]:
        typed = state + bytes([byte])
        return [typed] if typed in self.partial or typed in self.options else []

    def accepts(self, state: bytes) -> bool:
        return state in self.options

    def next_bytes(self, state: Iterable[bytes]) -> set[int]:
        return {o[len(s)] for s in state for o in self.options if len(o) > len(s) and o.startswith(s)}


@dataclass(frozen=True)
class Vocabulary:
    """What each token id writes, and the ids grouped by their first byte."""

    bytes: TokenBytes
    by_first_byte: dict[int, list[int]]

    def token(self, token_id: int) -> bytes | None:
        """What `token_id` writes; None for special tokens and for ids past the tokenizer (models often have
        more output rows than the tokenizer has tokens)."""
        return self.bytes[token_id] if token_id < len(self.bytes) else None

    @classmethod
    def of(cls, tokenizer: Any) -> Vocabulary:
        table = vocabulary_bytes(tokenizer)
        groups: dict[int, list[int]] = {}
        for token_id, data in enumerate(table):
            if data:
                groups.setdefault(data[0], []).append(token_id)
        return cls(table, groups)


def _byte_level_alphabet() -> dict[str, int]:
    """The printable stand-ins byte-level BPE (GPT-2, Llama 3) writes for each byte, mapped back to the byte."""
    visible = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted, extra = list(visible), 0
    for b in range(256):
        if b not in visible:
            visible.append(b)
            shifted.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(visible, shifted)}


def vocabulary_bytes(tokenizer: Any) -> list[bytes | None]:
    """Bytes each token id writes into decoded text; None for special tokens.

    Byte-level BPE maps bytes to printable characters, SentencePiece writes spaces as '▁' and unknown bytes as
    `<0xNN>`; anything else is decoded one token at a time.
    """
    size = len(tokenizer)
    special = set(tokenizer.all_special_ids)
    special |= {i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if t.special}
    pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
    backend = getattr(tokenizer, "backend_tokenizer", None)
    byte_level = backend is not None and "ByteLevel" in repr(backend.decoder)
    alphabet = _byte_level_alphabet() if byte_level else {}
    table: list[bytes | None] = []
    for token_id, piece in enumerate(pieces):
        if token_id in special or piece is None:
            table.append(None)
        elif byte_level and all(ch in alphabet for ch in piece):
            table.append(bytes(alphabet[ch] for ch in piece))
        elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            table.append(bytes([int(piece[3:5], 16)]))
        elif "▁" in piece:
            table.append(piece.replace("▁", " ").encode())
        else:
            table.append(tokenizer.decode([token_id]).encode())
    return table


class ConstrainedGreedy:
    """A transformers logits processor for greedy generation: each row keeps to its own constraint.

    Rows whose constraint is None generate freely. Every other row gets one finite score, its best allowed
    token, so greedy search takes it; a row with nothing allowed ends (end-of-sequence).
    """

    def __init__(self, constraints: Sequence[Constraint | None], vocabulary: Vocabulary, eos_ids: Iterable[int],
                 prompt_length: int, top: int = 8) -> None:
        self.constraints = list(constraints)
        self.vocabulary = vocabulary
        self.eos = set(eos_ids)
        self.first_eos = min(self.eos)
        self.prompt_length = prompt_length
        self.top = top
        self.states: list[Any] = [c.start() if c is not None else None for c in self.constraints]
        self.chosen: list[tuple[int, Any] | None] = [None] * len(self.constraints)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if input_ids.shape[1] > self.prompt_length:
            self._take(input_ids[:, -1].tolist())
        rows = [r for r, state in enumerate(self.states) if state is not None]
        if not rows:
            return scores
        top = scores[rows].topk(min(self.top, scores.shape[1]), dim=-1).indices.tolist()
        picks = [self._pick(r, candidates, scores[r]) for r, candidates in zip(rows, top)]
        constrained = torch.full_like(scores[rows], float("-inf"))
        constrained[torch.arange(len(rows)), torch.tensor(picks)] = 0.0
        scores = scores.clone()
        scores[rows] = constrained
        return scores

    def _take(self, tokens: list[int]) -> None:
        """Advance each constrained row by the token generation appended."""
        for row, token in enumerate(tokens):
            state = self.states[row]
            if state is None:
                continue
            chosen = self.chosen[row]
            if token in self.eos:
                self.states[row] = None  # finished: generation pads this row from now on
            elif chosen is not None and chosen[0] == token:
                self.states[row] = chosen[1]
            else:  # another processor overrode the pick; follow what was generated, or stop constraining
                data = self.vocabulary.token(token)
                self.states[row] = self.constraints[row].advance(state, data) if data else None

    def _pick(self, row: int, candidates: list[int], row_scores: Any) -> int:
        constraint, state = self.constraints[row], self.states[row]
        found = self._first_allowed(constraint, state, candidates)
        if found is None:
            allowed = [t for b in constraint.next_bytes(state) for t in self.vocabulary.by_first_byte.get(b, ())]
            allowed += [t for t in self.eos if constraint.can_end(state)]
            if allowed:
                ranked = row_scores[allowed].argsort(descending=True).tolist()
                found = self._first_allowed(constraint, state, [allowed[i] for i in ranked])
        if found is None:
            self.chosen[row] = None
            return self.first_eos
        token, after = found
        self.chosen[row] = (token, after)
        return token

    def _first_allowed(self, constraint: Constraint, state: Any, candidates: Iterable[int]) -> tuple[int, Any] | None:
        for token in candidates:
            if token in self.eos:
                if constraint.can_end(state):
                    return token, state
                continue
            data = self.vocabulary.token(token)
            if data:
                after = constraint.advance(state, data)
                if after is not None:
                    return token, after
        return None
