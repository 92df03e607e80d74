"""Source kinds: one class per kind, and everything the tool does with a source.

A component's `source:` is a git repository, a tarball or a `.deb`. Each kind
says here, and nowhere else, how it is declared (its schema shape and the key
that tells it apart), how it is pinned (`pin`), how the install step gets it
(`prelude`, a call of the engine's bash helper `_eb_git` / `_eb_download`),
how its default check reads, what to warn about, how `envbuild lock` resolves
it and how a lock entry fills it in or contradicts it, how `envbuild fetch`
collects it for an offline install, and how a lock entry reads as a pin.

Adding a kind: a class here registered in KINDS, plus its bash helper in
`envbuild/runtime/engine/` when the step needs a new one.

Lock entries are plain dicts (the lock file's YAML): `kind`, `url`, then per
kind `commit`, `branch`, `resolved` (git) or `sha256`, `size` (downloads), and
`status` (verified | unverified | unresolved), `verified` and `reason`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar

from envbuild import mirror
from envbuild.errors import LockError
from envbuild.net import DownloadFailed, download_verified, fetch_url, file_sha256, last_line, run_git
from envbuild.shell import quote
from envbuild.spec import schema
from envbuild.spec.schema import APT_RE, COMMIT_RE, UNKNOWN_CHECKSUM, Field, Shape

# status of a resolved value in a lock
VERIFIED = "verified"  # measured from the source itself
UNVERIFIED = "unverified"  # the recipe's own pin, which could not be checked
UNRESOLVED = "unresolved"  # no value known: the source could not be reached

Say = Callable[[str], None]


def url_basename(url: str) -> str:
    """The last path component of a URL: the file name a download is saved as."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def offline_git_name(url: str) -> str:
    """The name of a git URL's bare mirror in an offline source directory (`git/<name>.git`).

    The repository's name keeps it readable; the hash prefix keeps two URLs
    that end alike apart.
    """
    name = url_basename(url)
    name = name[: -len(".git")] if name.endswith(".git") else name
    return f"{name}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


class GitShape(Shape):
    """A git source: `commit` is required unless a `branch` is given for `envbuild lock` to resolve."""

    def __call__(self, checker: schema.Checker, data, line: int, key: str) -> bool:
        ok = super().__call__(checker, data, line, key)
        if isinstance(data, dict) and "commit" not in data and "branch" not in data:
            checker.add(getattr(data, "line", line), schema._join(key, "commit"),
                        "missing required key (or give a branch, which `envbuild lock` resolves to a commit)")
            ok = False
        return ok


@dataclass(frozen=True)
class Source:
    """What every kind has: where it comes from."""

    url: str
    kind: ClassVar[str]
    key: ClassVar[str]  # the YAML key that tells this kind apart
    shape: ClassVar[Shape]

    @classmethod
    def from_yaml(cls, data: dict) -> Source:
        raise NotImplementedError

    def identity(self) -> dict:
        """What the component's content hash covers of the source."""
        return {"kind": self.kind, **{k: v for k, v in vars(self).items()}}

    @property
    def pin(self) -> str:
        raise NotImplementedError

    def prelude(self) -> str:
        """The engine call that puts the source in place at the start of the install step."""
        raise NotImplementedError

    def default_check(self) -> str | None:
        """Check text for a component that gives none; None: nothing to check."""
        return None

    def warning(self, component: str, file: str, lock_display: str | None, lock_command: str) -> str | None:
        """What every command warns about this source (unverified, unpinned); None if nothing.
        `lock_display` is the lock's file, None without a lock; `lock_command` writes it."""
        return None

    # --- locks -----------------------------------------------------------------------

    def resolve(self, component: str, resolver: Resolver) -> dict:
        """The lock entry, measured from the source (network); LockError if the recipe is wrong."""
        raise NotImplementedError

    def with_lock(self, entry: dict) -> Source:
        """The source with what the recipe leaves open filled in from its lock entry."""
        return self

    def lock_fields(self, entry: dict) -> list[tuple[str, str | None, str | None]]:
        """(key, the recipe's value, the lock's value) of each value both state."""
        return [("url", self.url, entry.get("url"))]

    @staticmethod
    def lock_pin(entry: dict) -> str:
        """A lock entry of this kind as the pin a plan gives once the lock is applied."""
        raise NotImplementedError

    # --- offline sources ----------------------------------------------------------------

    @property
    def offline_path(self) -> str:
        """Where `envbuild fetch` puts it in an offline source directory (relative)."""
        raise NotImplementedError

    def fetch(self, component: str, into: Path, timeout: float, say: Say) -> tuple[str, dict]:
        """Collects the source into an offline source directory: (manifest section, entry).

        Raises DownloadFailed.
        """
        raise NotImplementedError


@dataclass(frozen=True)
class GitSource(Source):
    """A git repository at a commit (or, unpinned until locked, a branch)."""
    commit: str = ""  # "" when the recipe gives only a branch and no lock resolves it
    branch: str = ""
    submodules: bool = False
    kind: ClassVar[str] = "git"
    key: ClassVar[str] = "git"
    shape: ClassVar[Shape] = GitShape({
        "git": Field(schema.url(("https", "http", "file", "ssh", "git")), required=True, doc="repository URL"),
        "commit": Field(schema.string(COMMIT_RE, "a full commit (40 lowercase hex digits)"),
                        doc="the pinned commit (40 hex digits)"),
        "branch": Field(schema.string(re.compile(r"^[A-Za-z0-9._/-]+$"), "a branch name"),
                        doc="the branch the commit is on; alone, `envbuild lock` resolves it"),
        "submodules": Field(schema.boolean, doc="also check out the submodules the commit pins"),
    }, doc="a git repository at a pinned commit")

    @classmethod
    def from_yaml(cls, data: dict) -> GitSource:
        return cls(data["git"], data.get("commit", ""), data.get("branch", ""), data.get("submodules", False))

    @property
    def pinned(self) -> bool:
        return bool(self.commit)

    @property
    def pin(self) -> str:
        return f"{self.url}@{self.commit}" if self.commit else f"{self.url}#branch={self.branch}"

    @property
    def offline_name(self) -> str:
        return offline_git_name(self.url)

    @property
    def offline_path(self) -> str:
        return f"git/{self.offline_name}.git"

    def prelude(self) -> str:
        line = f"_eb_git {quote(self.url)} {quote(self.commit)} {int(self.submodules)} {quote(self.offline_name)}"
        # Unpinned (a branch and no lock): the commit is empty and the branch comes last.
        return line if self.pinned else f"{line} {quote(self.branch)}"

    def warning(self, component: str, file: str, lock_display: str | None, lock_command: str) -> str | None:
        if self.pinned:
            return None
        return (f"{file}: source.commit: {component} is unpinned (branch {self.branch}, "
                + (f"unresolved in {lock_display})" if lock_display else f"no lock); `{lock_command}` resolves it"))

    def resolve(self, component: str, resolver: Resolver) -> dict:
        entry = {"kind": "git", "url": self.url, "commit": self.commit or None, "branch": self.branch or None}
        if self.commit:
            return {**entry, **self._verify_commit(component)}
        return {**entry, **self._resolve_branch(component)}

    def _verify_commit(self, component: str) -> dict:
        commit = self.commit
        with tempfile.TemporaryDirectory(prefix="envbuild-lock.") as tmp:
            run_git("init", "-q", "--bare", tmp)
            how = "fetched by its commit"
            if run_git("fetch", "-q", "--depth", "1", self.url, commit, cwd=Path(tmp)).returncode != 0:
                full = run_git("fetch", "-q", self.url, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*",
                               cwd=Path(tmp))
                if full.returncode != 0:
                    return {"resolved": commit, "status": UNVERIFIED, "verified": False,
                            "reason": f"pinned in the recipe; cannot fetch from {self.url}: {last_line(full.stderr)}"}
                how = "found among its branches and tags"
            if run_git("cat-file", "-e", f"{commit}^{{commit}}", cwd=Path(tmp)).returncode != 0:
                raise LockError(f"component {component}: source.commit {commit} is not in {self.url} "
                                "(not among its branches and tags); fix the recipe's commit")
        return {"resolved": commit, "status": VERIFIED, "verified": True, "reason": f"commit {how} in {self.url}"}

    def _resolve_branch(self, component: str) -> dict:
        listing = run_git("ls-remote", self.url, self.branch)
        if listing.returncode != 0:
            return {"resolved": None, "status": UNRESOLVED, "verified": False,
                    "reason": f"git ls-remote {self.url} failed: {last_line(listing.stderr)}"}
        refs = dict(reversed(line.split("\t", 1)) for line in listing.stdout.splitlines() if "\t" in line)
        for ref in (f"refs/heads/{self.branch}", f"refs/tags/{self.branch}^{{}}", f"refs/tags/{self.branch}"):
            if ref in refs:
                return {"resolved": refs[ref], "status": VERIFIED, "verified": True,
                        "reason": f"{ref.replace('^{}', '')} of {self.url}, by git ls-remote"}
        raise LockError(f"component {component}: source.branch: no branch or tag {self.branch!r} in {self.url}")

    def with_lock(self, entry: dict) -> Source:
        if not self.commit and entry.get("resolved") and (entry.get("branch") or "") == self.branch:
            return GitSource(self.url, entry["resolved"], self.branch, self.submodules)
        return self

    def lock_fields(self, entry: dict) -> list[tuple[str, str | None, str | None]]:
        return super().lock_fields(entry) + [("commit", self.commit or None, entry.get("commit")),
                                             ("branch", self.branch or None, entry.get("branch"))]

    @staticmethod
    def lock_pin(entry: dict) -> str:
        if entry.get("resolved"):
            return f"{entry['url']}@{entry['resolved']}"
        return f"{entry['url']}#branch={entry.get('branch')}"

    def fetch(self, component: str, into: Path, timeout: float, say: Say) -> tuple[str, dict]:
        """Mirrors the repository (or updates the mirror); its submodules and wraps are envbuild.fetch's."""
        relative = self.offline_path
        commit, action = mirror.ensure(self.url, into / relative, self.commit, self.branch)
        entry = {"component": component, "url": self.url, "mirror": relative, "commit": commit or None,
                 "branch": self.branch or None}
        if action == "kept":
            say(f"{component}: {relative} holds {commit[:12]}; kept")
        else:
            say(f"{component}: {action} {self.url} into {relative}")
        return "git", entry


@dataclass(frozen=True)
class TarballSource(Source):
    """A download checked against its sha256; the step finds it at $EB_DOWNLOAD."""
    sha256: str = UNKNOWN_CHECKSUM
    kind: ClassVar[str] = "tarball"
    key: ClassVar[str] = "url"
    shape: ClassVar[Shape] = Shape({
        "url": Field(schema.url(), required=True, doc="download URL"),
        "sha256": Field(schema.sha256, required=True, doc=f"its sha256, or {UNKNOWN_CHECKSUM!r} until locked"),
    }, doc="a download checked against its sha256")

    @classmethod
    def from_yaml(cls, data: dict) -> TarballSource:
        return cls(data["url"], data["sha256"])

    @property
    def pin(self) -> str:
        return f"{self.url}#sha256={self.sha256}"

    @property
    def filename(self) -> str:
        return url_basename(self.url)

    @property
    def verified(self) -> bool:
        return self.sha256 != UNKNOWN_CHECKSUM

    @property
    def offline_path(self) -> str:
        return f"downloads/{self.filename}"

    def prelude(self) -> str:
        return f"_eb_download {quote(self.url)} {quote(self.sha256)} {quote(self.filename)}"

    def warning(self, component: str, file: str, lock_display: str | None, lock_command: str) -> str | None:
        if self.verified:
            return None
        return (f"{file}: source.sha256: the download of {component} is unverified "
                + (f"(sha256 unknown, unresolved in {lock_display})" if lock_display else
                   f"(sha256 unknown); `{lock_command}` records it"))

    def resolve(self, component: str, resolver: Resolver) -> dict:
        entry = {"kind": self.kind, "url": self.url}
        try:
            digest, size = fetch_url(self.url, None, resolver.timeout)
        except DownloadFailed as exc:
            if self.verified:
                return {**entry, "sha256": self.sha256, "size": None, "status": UNVERIFIED, "verified": False,
                        "reason": f"the recipe's sha256; {exc}"}
            return {**entry, "sha256": None, "size": None, "status": UNRESOLVED, "verified": False, "reason": str(exc)}
        if self.verified and digest != self.sha256:
            raise LockError(f"component {component}: sha256 mismatch for {self.url}: the recipe expects "
                            f"{self.sha256}, the download has {digest}")
        return {**entry, "sha256": digest, "size": size, "status": VERIFIED, "verified": True,
                "reason": "downloaded and measured" + (", equal to the recipe's sha256" if self.verified else "")}

    def with_lock(self, entry: dict) -> Source:
        if not self.verified and entry.get("sha256"):
            return dataclasses.replace(self, sha256=entry["sha256"])
        return self

    def lock_fields(self, entry: dict) -> list[tuple[str, str | None, str | None]]:
        fields = super().lock_fields(entry)
        return fields + [("sha256", self.sha256, entry.get("sha256"))] if self.verified else fields

    @staticmethod
    def lock_pin(entry: dict) -> str:
        return f"{entry['url']}#sha256={entry.get('sha256') or UNKNOWN_CHECKSUM}"

    def fetch(self, component: str, into: Path, timeout: float, say: Say) -> tuple[str, dict]:
        """Downloads to downloads/<file name>, checked against the sha256 when known."""
        relative = self.offline_path
        path = into / relative
        expected = self.sha256 if self.verified else None
        entry = {"component": component, "url": self.url, "file": relative, "verified": expected is not None}
        if path.is_file():
            actual = file_sha256(path)
            if expected is None or actual == expected:
                say(f"{component}: {relative} is there"
                    + (", sha256 verified; kept" if expected else " (no sha256 to check); kept"))
                return "downloads", {**entry, "sha256": actual, "size": path.stat().st_size}
            say(f"{component}: {relative} has sha256 {actual}, expected {expected}; downloading it again")
        actual, size = download_verified(self.url, path, expected, timeout)
        say(f"{component}: downloaded {self.url}"
            + (" (sha256 verified)" if expected else f" (unverified: sha256 {actual})"))
        return "downloads", {**entry, "sha256": actual, "size": size}


@dataclass(frozen=True)
class DebSource(TarballSource):
    """A .deb download; checked with dpkg by default."""
    package: str = ""
    version: str = ""
    kind: ClassVar[str] = "deb"
    key: ClassVar[str] = "deb"
    shape: ClassVar[Shape] = Shape({
        "deb": Field(schema.url(), required=True, doc="download URL of the .deb"),
        "sha256": Field(schema.sha256, required=True, doc=f"its sha256, or {UNKNOWN_CHECKSUM!r} until locked"),
        "package": Field(schema.string(APT_RE, "a Debian package name"), required=True,
                         doc="the package it installs (checked with dpkg)"),
        "version": Field(schema.string(re.compile(r"^[A-Za-z0-9.+~:-]+$"), "a Debian version"), required=True,
                         doc="the version it installs (checked with dpkg)"),
    }, doc="a Debian package file, installed with dpkg -i")

    @classmethod
    def from_yaml(cls, data: dict) -> DebSource:
        return cls(data["deb"], data["sha256"], data["package"], data["version"])

    def default_check(self) -> str | None:
        return f"_eb_deb_installed {quote(self.package)} {quote(self.version)}"


# The registry: each kind by the key that tells it apart in YAML, in the order messages list them.
KINDS: dict[str, type[Source]] = {cls.key: cls for cls in (GitSource, TarballSource, DebSource)}
BY_KIND: dict[str, type[Source]] = {cls.kind: cls for cls in KINDS.values()}
SHAPE = schema.OneOfShapes({key: cls.shape for key, cls in KINDS.items()}, "a source")


def from_yaml(data: dict | None) -> Source | None:
    """The source a validated `source:` mapping declares; None for no source."""
    if not data:
        return None
    return next(cls for key, cls in KINDS.items() if key in data).from_yaml(data)


def lock_pin(entry: dict | None) -> str:
    """A lock entry's source as a pin; "" for no source."""
    if not entry:
        return ""
    return BY_KIND[entry.get("kind", "tarball")].lock_pin(entry)


@dataclass
class Resolver:
    """What resolving needs besides the sources: download timeout (seconds) and the
    base image's digest lookup (`image_digest(ref) -> (digest or None, reason)`)."""

    timeout: float = 60.0
    image_digest: Callable[[str], tuple[str | None, str]] | None = None

    def base_image(self, ref: str) -> dict:
        digest, reason = self.image_digest(ref) if self.image_digest else (None, "no Docker engine asked")
        return {"ref": ref, "digest": digest, "status": VERIFIED if digest else UNRESOLVED, "reason": reason}
