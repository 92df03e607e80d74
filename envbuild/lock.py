"""Lock files: a recipe's sources resolved to exact, checkable values.

`envbuild lock` writes `<recipes dir>/<recipe>.lock` next to the recipe: every
git source with the commit it resolves to (a branch resolved with
`git ls-remote`, a pinned commit checked by fetching it), every download with
the sha256 and size measured by downloading it, the base image's digest, and
the sha256 of every patch text. What cannot be reached is recorded as such,
with the reason; nothing is ever guessed.

A lock only fills in what the recipe leaves open (`sha256: unknown`, a git
source with a branch and no commit); anything the recipe states and the lock
contradicts is a disagreement (`Lock.disagreements`), reported by
`envbuild lock --check` and refused by `--require-lock`.

Resolving (Resolver, resolve) is the only part that touches the network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import os
import subprocess
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from envbuild.errors import EnvbuildError
from envbuild.model import Component, GitSource, Library, Recipe, TarballSource, offline_git_name

__all__ = ["LOCK_FORMAT", "Lock", "LockError", "Resolver", "resolve", "dump", "load", "lock_path", "offline_git_name"]

LOCK_FORMAT = "envbuild-lock-v1"
SUFFIX = ".lock"
# status of a resolved value
VERIFIED = "verified"  # measured from the source itself
UNVERIFIED = "unverified"  # the recipe's own pin, which could not be checked
UNRESOLVED = "unresolved"  # no value known: the source could not be reached
GIT_TIMEOUT = 3600  # a first mirror of a large repository takes a while
CHUNK = 1 << 20


class LockError(EnvbuildError):
    """A lock that cannot be read, or sources that contradict the recipe."""


def lock_path(root: Path, recipe_name: str) -> Path:
    return Path(root) / f"{recipe_name}{SUFFIX}"


def content_hash(doc: dict) -> str:
    """sha256 over the canonical JSON of the lock, without its own hash and the `reason` texts.

    The reasons are explanations (an error message can differ from one machine
    to the next); the hash identifies the values a build uses.
    """
    def values(node):
        if isinstance(node, dict):
            return {key: values(value) for key, value in node.items() if key not in ("reason", "lock_hash")}
        return node

    text = json.dumps(values(doc), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def header(recipe: str) -> str:
    return (
        f"# envbuild lock file of recipe {recipe}: the exact sources it installs.\n"
        f"# Written by `envbuild lock --recipe {recipe}`; `envbuild lock --recipe {recipe} --check`\n"
        "# compares it with the recipe. Commit it next to the recipe and do not edit it by hand.\n"
        "# status: verified = measured from the source; unverified = the recipe's pin, not\n"
        "# checkable from where the lock was written; unresolved = unknown (see reason).\n"
        "# lock_hash: sha256 of the canonical JSON of everything else but the reasons.\n"
    )


def dump(doc: dict) -> str:
    """The lock's text: a header comment, then YAML with sorted keys, one value per line."""
    doc = dict(doc, lock_hash=content_hash(doc))
    body = yaml.safe_dump(doc, sort_keys=True, default_flow_style=False, allow_unicode=False, width=100000)
    return header(doc["recipe"]) + body


@dataclass(frozen=True)
class Lock:
    """A lock file as read back."""

    path: Path
    display: str
    doc: dict = field(compare=False, repr=False)

    @property
    def hash(self) -> str:
        return self.doc.get("lock_hash") or ""

    @property
    def components(self) -> dict:
        return self.doc.get("components") or {}

    def source(self, name: str) -> dict | None:
        entry = self.components.get(name) or {}
        return entry.get("source")

    def patches(self, name: str) -> dict:
        entry = self.components.get(name) or {}
        return entry.get("patches") or {}

    def unresolved(self) -> list[str]:
        """'component: reason' of each value the lock could not resolve."""
        found = []
        base = self.doc.get("base_image") or {}
        if base.get("status") == UNRESOLVED:
            found.append(f"base image {base.get('ref')}: {base.get('reason')}")
        for name in sorted(self.components):
            source = self.source(name)
            if source and source.get("status") == UNRESOLVED:
                found.append(f"{name}: {source.get('reason')}")
        return found

    # --- using the lock ---------------------------------------------------------

    def apply(self, component: Component) -> Component:
        """The component with what the recipe leaves open filled in from the lock."""
        entry = self.source(component.name)
        src = component.source
        if not entry or src is None or entry.get("kind") != src.kind or entry.get("url") != src.url:
            return component
        if isinstance(src, GitSource):
            if not src.commit and entry.get("resolved") and (entry.get("branch") or "") == src.branch:
                return dataclasses.replace(component, source=dataclasses.replace(src, commit=entry["resolved"]))
        elif not src.verified and entry.get("sha256"):
            return dataclasses.replace(component, source=dataclasses.replace(src, sha256=entry["sha256"]))
        return component

    def base_image(self, ref: str) -> str:
        """`ref` pinned to the locked digest (`name:tag@sha256:...`), when the lock has one for it."""
        base = self.doc.get("base_image") or {}
        if base.get("ref") == ref and base.get("digest") and "@" not in ref:
            return f"{ref}@{base['digest']}"
        return ref

    def disagreements(self, recipe: Recipe, components: list[Component]) -> list[str]:
        """Where the recipe (as written, before the lock is applied) and the lock differ, one line each."""
        found = []
        if self.doc.get("recipe") != recipe.name:
            found.append(f"recipe: the lock is for {self.doc.get('recipe')!r}, not {recipe.name!r}")
        if self.hash != content_hash(self.doc):
            found.append("lock_hash: does not match the lock's content (was it edited by hand?)")
        locked_ref = (self.doc.get("base_image") or {}).get("ref")
        if locked_ref != recipe.base_image:
            found.append(f"base_image: the recipe has {recipe.base_image}, the lock has {locked_ref}")
        names = [c.name for c in components]
        for name in names:
            if name not in self.components:
                found.append(f"component {name}: in the recipe, not in the lock")
        for name in sorted(set(self.components) - set(names)):
            found.append(f"component {name}: in the lock, not in the recipe")
        for component in components:
            if component.name in self.components:
                found += [f"component {component.name}: {line}" for line in self._component_disagreements(component)]
        return found

    def _component_disagreements(self, component: Component) -> list[str]:
        found = []
        entry = self.source(component.name)
        src = component.source
        if src is None or entry is None:
            if src is not None or entry is not None:
                found.append(f"source: the recipe has {_kind(src)}, the lock has {_kind(entry)}")
        elif entry.get("kind") != src.kind:
            found.append(f"source: the recipe has {_kind(src)}, the lock has {_kind(entry)}")
        else:
            fields = [("url", src.url, entry.get("url"))]
            if isinstance(src, GitSource):
                fields += [("commit", src.commit or None, entry.get("commit")),
                           ("branch", src.branch or None, entry.get("branch"))]
            elif src.verified:
                fields.append(("sha256", src.sha256, entry.get("sha256")))
            for key, ours, theirs in fields:
                if ours != theirs:
                    found.append(f"source.{key}: the recipe has {ours or 'none'}, the lock has {theirs or 'none'}")
        ours, theirs = dict(component.patch_hashes), self.patches(component.name)
        for name in sorted(set(ours) | set(theirs)):
            if ours.get(name) != theirs.get(name):
                found.append(f"patches.{name}: the recipe's text has sha256 {ours.get(name) or 'none (not applied)'}, "
                             f"the lock has {theirs.get(name) or 'none (not applied)'}")
        return found


def _kind(source) -> str:
    if source is None:
        return "no source"
    kind = source.kind if not isinstance(source, dict) else source.get("kind")
    return f"a {kind} source"


def load(path: Path, display: str | None = None) -> Lock | None:
    """The lock at `path`, None when there is none; an unreadable lock is a LockError."""
    display = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LockError(f"cannot read {display}: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LockError(f"{display}: not a valid lock file: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict) or doc.get("format") != LOCK_FORMAT:
        raise LockError(f"{display}: not an envbuild lock file (format {LOCK_FORMAT} expected); "
                        "write it again with `envbuild lock`")
    if not isinstance(doc.get("components"), dict) or not isinstance(doc.get("recipe"), str):
        raise LockError(f"{display}: malformed lock (no recipe or components); write it again with `envbuild lock`")
    return Lock(path, display, doc)


# --- resolving ------------------------------------------------------------------


@dataclass
class Resolver:
    """Resolves sources over the network. `image_digest` is given the base image reference."""

    timeout: float = 60.0
    image_digest: Callable[[str], tuple[str | None, str]] | None = None

    # git --------------------------------------------------------------------------

    def git(self, name: str, source: GitSource) -> dict:
        entry = {"kind": "git", "url": source.url, "commit": source.commit or None,
                 "branch": source.branch or None}
        if source.commit:
            return {**entry, **self._verify_commit(name, source)}
        return {**entry, **self._resolve_branch(name, source)}

    def _verify_commit(self, name: str, source: GitSource) -> dict:
        commit = source.commit
        with tempfile.TemporaryDirectory(prefix="envbuild-lock.") as tmp:
            run_git("init", "-q", "--bare", tmp)
            how = "fetched by its commit"
            if run_git("fetch", "-q", "--depth", "1", source.url, commit, cwd=Path(tmp)).returncode != 0:
                full = run_git("fetch", "-q", source.url, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*",
                               cwd=Path(tmp))
                if full.returncode != 0:
                    return {"resolved": commit, "status": UNVERIFIED, "verified": False,
                            "reason": f"pinned in the recipe; cannot fetch from {source.url}: {last_line(full.stderr)}"}
                how = "found among its branches and tags"
            if run_git("cat-file", "-e", f"{commit}^{{commit}}", cwd=Path(tmp)).returncode != 0:
                raise LockError(f"component {name}: source.commit {commit} is not in {source.url} "
                                "(not among its branches and tags); fix the recipe's commit")
        return {"resolved": commit, "status": VERIFIED, "verified": True, "reason": f"commit {how} in {source.url}"}

    def _resolve_branch(self, name: str, source: GitSource) -> dict:
        listing = run_git("ls-remote", source.url, source.branch)
        if listing.returncode != 0:
            return {"resolved": None, "status": UNRESOLVED, "verified": False,
                    "reason": f"git ls-remote {source.url} failed: {last_line(listing.stderr)}"}
        refs = dict(reversed(line.split("\t", 1)) for line in listing.stdout.splitlines() if "\t" in line)
        for ref in (f"refs/heads/{source.branch}", f"refs/tags/{source.branch}^{{}}", f"refs/tags/{source.branch}"):
            if ref in refs:
                return {"resolved": refs[ref], "status": VERIFIED, "verified": True,
                        "reason": f"{ref.replace('^{}', '')} of {source.url}, by git ls-remote"}
        raise LockError(f"component {name}: source.branch: no branch or tag {source.branch!r} in {source.url}")

    # downloads --------------------------------------------------------------------

    def download(self, name: str, source: TarballSource) -> dict:
        entry = {"kind": source.kind, "url": source.url}
        try:
            digest, size = fetch_url(source.url, None, self.timeout)
        except DownloadFailed as exc:
            if source.verified:
                return {**entry, "sha256": source.sha256, "size": None, "status": UNVERIFIED, "verified": False,
                        "reason": f"the recipe's sha256; {exc}"}
            return {**entry, "sha256": None, "size": None, "status": UNRESOLVED, "verified": False, "reason": str(exc)}
        if source.verified and digest != source.sha256:
            raise LockError(f"component {name}: sha256 mismatch for {source.url}: the recipe expects "
                            f"{source.sha256}, the download has {digest}")
        return {**entry, "sha256": digest, "size": size, "status": VERIFIED, "verified": True,
                "reason": "downloaded and measured" + (", equal to the recipe's sha256" if source.verified else "")}

    # base image -------------------------------------------------------------------

    def base_image(self, ref: str) -> dict:
        digest, reason = self.image_digest(ref) if self.image_digest else (None, "no Docker engine asked")
        return {"ref": ref, "digest": digest, "status": VERIFIED if digest else UNRESOLVED, "reason": reason}


class DownloadFailed(Exception):
    pass


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
    """Downloads `url` (to `destination` when given); returns its sha256 and size. DownloadFailed says why not."""
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


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def resolve(library: Library, recipe_name: str, resolver: Resolver) -> dict:
    """The lock document of a recipe, resolving every source (network access)."""
    from envbuild.plan import make_plan

    recipe = dataclasses.replace(library.recipe(recipe_name), lock=None)
    plan = make_plan(library, recipe)
    components: dict[str, dict] = {}
    problems: list[str] = []
    for step in plan.steps:
        component, source = step.component, step.component.source
        entry: dict = {"source": None}
        try:
            if isinstance(source, GitSource):
                entry["source"] = resolver.git(step.name, source)
            elif source is not None:
                entry["source"] = resolver.download(step.name, source)
        except LockError as exc:
            problems.append(str(exc))
        if component.patch_hashes:
            entry["patches"] = dict(component.patch_hashes)
        components[step.name] = entry
    if problems:
        raise LockError("\n".join(problems))
    return {
        "format": LOCK_FORMAT,
        "recipe": recipe.name,
        "base_image": resolver.base_image(recipe.base_image),
        "components": components,
    }
