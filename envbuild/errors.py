"""Errors that are part of the interface: each names the file, line and key."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One problem of a recipe file, printed as `file:line: key: message`."""
    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


class EnvbuildError(Exception):
    """An error the user can act on; the CLI prints it without a traceback."""

    exit_code = 1


class RecipeError(EnvbuildError):
    """One or more problems in recipe files."""

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class LockError(EnvbuildError):
    """A lock that cannot be read, or sources that contradict the recipe."""


class UsageError(EnvbuildError):
    """A command line that cannot work as given (a bad option value, a directory for a file)."""

    exit_code = 2
