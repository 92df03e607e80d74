"""Reaching sources from the host: git without prompts, bounded downloads, checksums.

Used by `envbuild lock` (to resolve) and `envbuild fetch` (to collect); the
runtime script has its own bash helpers for the same jobs on the target.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from envbuild.errors import EnvbuildError

GIT_TIMEOUT = 3600  # seconds; a first mirror of a large repository takes a while
CHUNK = 1 << 20


class DownloadFailed(Exception):
    """A source could not be reached or did not match; the message says why, in one line."""


def run_git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """git without prompts (a private URL fails instead of waiting for a password)."""
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="true")
    try:
        return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=GIT_TIMEOUT)
    except FileNotFoundError:
        raise EnvbuildError("git is not installed; envbuild needs it for git sources") from None
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, 1, "", f"git {args[0]} timed out after {GIT_TIMEOUT} s")


def fetch_url(url: str, destination: Path | None, timeout: float) -> tuple[str, int]:
    """Downloads `url` (to `destination` when given); returns its sha256 and size in bytes.

    `timeout` (seconds) bounds the connection and each read. Raises DownloadFailed.
    """
    digest, size = hashlib.sha256(), 0
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "envbuild"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            out = open(destination, "wb") if destination is not None else None
            try:
                while chunk := response.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    if out is not None:
                        out.write(chunk)
            finally:
                if out is not None:
                    out.close()
    except urllib.error.HTTPError as exc:
        raise DownloadFailed(f"download failed: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DownloadFailed(f"download failed: {exc.reason}") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise DownloadFailed(f"download failed: {exc}") from None
    return digest.hexdigest(), size


def download_verified(url: str, path: Path, expected: str | None, timeout: float) -> tuple[str, int]:
    """Downloads `url` to `path` through a temporary file, which replaces `path` only when its
    sha256 is `expected` (any, when None); returns the sha256 and size. Raises DownloadFailed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    try:
        actual, size = fetch_url(url, partial, timeout)
    except DownloadFailed:
        partial.unlink(missing_ok=True)
        raise
    if expected is not None and actual != expected:
        partial.unlink(missing_ok=True)
        raise DownloadFailed(f"sha256 mismatch for {url}: expected {expected}, got {actual}")
    partial.replace(path)
    return actual, size


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def last_line(text: str) -> str:
    """The last non-blank line of a command's output: what a one-line error quotes."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
