"""One family of user-facing errors.

An error is a value with context (file, key path or line, hint) until the CLI turns it into a message and an
exit code. Nothing in here prints.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class Problem:
    """One thing wrong with the input, located as precisely as we can."""

    message: str
    key: str | None = None
    line: int | None = None
    column: int | None = None

    def render(self) -> str:
        where = self.key or ""
        if self.line is not None:
            where = f"line {self.line}" + (f", column {self.column}" if self.column else "") + (
                f" ({where})" if where else ""
            )
        return f"{where}: {self.message}" if where else self.message


class LoraforgeError(Exception):
    """Base of every error the CLI reports as a user error (exit 2)."""

    kind = "error"

    def __init__(
        self,
        message: str | list[Problem],
        *,
        file: object | None = None,
        key: str | None = None,
        line: int | None = None,
        column: int | None = None,
        hint: str | None = None,
    ) -> None:
        if isinstance(message, str):
            self.problems = [Problem(message, key=key, line=line, column=column)]
        else:
            self.problems = list(message)
        self.file = str(file) if file is not None else None
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.file}: " if self.file else ""
        if len(self.problems) == 1:
            text = head + self.problems[0].render()
        else:
            text = head + f"{len(self.problems)} problems\n" + "\n".join(
                f"  {p.render()}" for p in self.problems
            )
        if self.hint:
            text += f"\n{self.hint}"
        return text


class RecipeError(LoraforgeError):
    kind = "recipe error"


class DataError(LoraforgeError):
    kind = "data error"


class PluginError(LoraforgeError):
    kind = "plugin error"


class ModelError(LoraforgeError):
    kind = "model error"


class RunError(LoraforgeError):
    kind = "run error"


class Interrupted(LoraforgeError):
    """Ctrl-C during training: a checkpoint was saved and the run can be resumed."""

    kind = "interrupted"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A short suffix suggesting the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def known(choices: Iterable[str]) -> str:
    names = sorted(choices)
    return ", ".join(names) if names else "(none)"
