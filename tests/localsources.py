"""Local stand-ins for remote sources, reached through the same code paths as real URLs.

Git URLs stay https://git.example.invalid/... in recipes (and https://github.com/...
in the stand-in upstream projects' .gitmodules) and are redirected to local
repositories with git's `url.<base>.insteadOf`; tarballs are served over
HTTP from 127.0.0.1.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import subprocess
import tarfile
import threading
from pathlib import Path

GIT_BASE = "https://git.example.invalid/"
# Upstream projects' own git submodules point here (tests/standins.py).
GITHUB = "https://github.com/"


def git(cwd: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
           "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z", "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def commit_files(repo: Path, files: dict[str, str], message: str = "update") -> str:
    """Writes files into a (new or existing) repository and returns the new commit."""
    if not (repo / ".git").exists():
        repo.mkdir(parents=True, exist_ok=True)
        git(repo, "init", "-q", "-b", "main")
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def git_redirect_env(repos_dir: Path) -> dict[str, str]:
    """Environment that makes git fetch GIT_BASE/<name> from repos_dir/<name> and
    GITHUB/<path> from repos_dir/github.com/<path>, git submodules included."""
    config = {
        f"url.file://{repos_dir}/.insteadOf": GIT_BASE,
        f"url.file://{repos_dir}/github.com/.insteadOf": GITHUB,
        # git refuses file:// submodules unless told (CVE-2022-39253); these are our own.
        "protocol.file.allow": "always",
    }
    env = {"GIT_CONFIG_COUNT": str(len(config))}
    for index, (key, value) in enumerate(config.items()):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def make_tarball(files: dict[str, str], top: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for name, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FileServer:
    """Serves a directory over HTTP on 127.0.0.1 and counts the requests."""

    def __init__(self, root: Path):
        self.root = root
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                server.requests.append(self.path)

        handler = functools.partial(Handler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
