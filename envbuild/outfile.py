"""Writing a command's output file (`-o FILE`) without ever leaving half of it, or harming what is there.

A regular file (new, existing, or the target of a symlink) is written to a
temporary file in the same directory, flushed to disk and renamed over it: a
reader sees the old content or the new, never a part. A new file gets the
command's mode (less the umask); an existing one keeps its own. A device or
FIFO is written to as it is (`-o /dev/null`, `-o /dev/stdout`), never replaced
or chmod'ed. `-` is standard output.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path

from envbuild.errors import EnvbuildError, UsageError


def write(text: str, output: str | Path | None, mode: int = 0o644) -> Path | None:
    """Writes `text` to `output` (None or "-": standard output); the path written, None for stdout.

    `mode` is for a file this call creates. Raises UsageError for a directory or
    an empty name, EnvbuildError when the file cannot be written.
    """
    if output is None or str(output) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return None
    if not str(output):
        raise UsageError("the output file name is empty; give a file name, or - for standard output")
    path = Path(os.path.realpath(output))
    try:
        existing = os.stat(path)
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise EnvbuildError(f"cannot write {output}: {exc.strerror}") from None
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        raise UsageError(f"{output} is a directory; give a file name")
    try:
        if existing is not None and not stat.S_ISREG(existing.st_mode):
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
        else:
            _replace(path, text, stat.S_IMODE(existing.st_mode) if existing else mode & ~_umask())
    except OSError as exc:
        raise EnvbuildError(f"cannot write {output}: {exc.strerror}") from None
    return Path(output)


def _replace(path: Path, text: str, mode: int) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
