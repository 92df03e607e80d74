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
import zipfile
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


def make_wheel(name: str, version: str, requires: tuple[str, ...] = (), value: str = "1") -> tuple[str, bytes]:
    """A minimal pure-Python wheel (py3-none-any) of package `name`, whose module sets VALUE;
    its file name and bytes (the same inputs give the same bytes)."""
    dist = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {requirement}\n" for requirement in requires)
    files = {
        f"{name}/__init__.py": f"VALUE = {value!r}\nVERSION = {version!r}\n",
        f"{dist}/METADATA": metadata,
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},,\n" for path in files) + f"{dist}/RECORD,,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, text in {**files, f"{dist}/RECORD": record}.items():
            archive.writestr(zipfile.ZipInfo(path, (2026, 1, 1, 0, 0, 0)), text)
    return f"{name}-{version}-py3-none-any.whl", buffer.getvalue()


class PackageIndex:
    """A PEP 503 simple package index under a FileServer: <url>/simple/<name>/ lists each
    published file of a project with its sha256, the files are under <url>/files/."""

    def __init__(self, server: "FileServer"):
        self.server = server
        self.url = f"{server.url}/simple"
        self.files: dict[str, dict[str, bytes]] = {}  # project -> file name -> bytes

    def publish(self, name: str, version: str, requires: tuple[str, ...] = (), value: str = "1") -> str:
        """Publishes a wheel of `name` `version`; returns its sha256."""
        filename, data = make_wheel(name, version, requires, value)
        self.replace(name, filename, data)
        return sha256(data)

    def replace(self, name: str, filename: str, data: bytes) -> None:
        """Puts `data` under `filename` (a new file, or other bytes for a published one)."""
        self.files.setdefault(name, {})[filename] = data
        (self.server.root / "files").mkdir(exist_ok=True)
        (self.server.root / "files" / filename).write_bytes(data)
        page = self.server.root / "simple" / name / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        links = "".join(f'<a href="../../files/{file}#sha256={sha256(body)}">{file}</a>\n'
                        for file, body in sorted(self.files[name].items()))
        page.write_text(f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n")


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
