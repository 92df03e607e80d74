"""Errors that are part of the interface: each names the file, line and key."""

from __future__ import annotations

import re
from dataclasses import dataclass

CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def counted(count: int, noun: str) -> str:
    """`count` with its noun: 1 component, 2 components (the plural adds an s)."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def one_line(text: str) -> str:
    """`text` with its control characters escaped as Python writes them (a newline as \\n), so
    that a message naming a key or value that holds one stays on one line."""
    return CONTROL_RE.sub(lambda found: repr(found.group())[1:-1], text)


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
        return one_line(f"{where}:{key} {self.message}")


# Exit statuses, the same for every command and for the runtime script (README, `envbuild --help`).
EXIT_OK = 0  # done
EXIT_FAILED = 1  # something failed (a download, a build, a refusal such as --require-lock)
EXIT_USAGE = 2  # bad options or invalid input (recipe problems)
EXIT_MISMATCH = 3  # a check found a difference (lock --check, dockerfile --check, patches check, diff, detect-nic)
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT); SIGTERM ends a run as 143, as the shell reports it

EXIT_STATUSES = (
    (EXIT_OK, "done"),
    (EXIT_FAILED, "failed (a download, a build, a refusal such as --require-lock)"),
    (EXIT_USAGE, "usage or invalid input (a bad option, a recipe problem)"),
    (EXIT_MISMATCH, "mismatch: a check found a difference (--check, diff, patches check, detect-nic rails)"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C); 143 for SIGTERM"),
)


class EnvbuildError(Exception):
    """An error the user can act on; the CLI prints it without a traceback."""

    exit_code = EXIT_FAILED


class RecipeError(EnvbuildError):
    """One or more problems in recipe files."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class LockError(EnvbuildError):
    """A lock that cannot be read, or sources that contradict the recipe."""


class MismatchError(EnvbuildError):
    """A check found a difference: a stale lock or Dockerfile (exit 3)."""

    exit_code = EXIT_MISMATCH


class UsageError(EnvbuildError):
    """A command line that cannot work as given (a bad option value, a directory for a file)."""

    exit_code = EXIT_USAGE
