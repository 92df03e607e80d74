"""Lock files: a recipe's sources resolved to exact, checkable values, and the lock policy.

`envbuild lock` writes `<recipes dir>/<recipe>.lock` next to the recipe: every
git source with the commit it resolves to (a branch resolved with
`git ls-remote`, a pinned commit checked by fetching it), every download with
the sha256 and size measured by downloading it, every pip requirement group
with the packages pip installs for it (dependencies included, versions and
sha256s measured; resolved in a container of the base image against what its
Python has installed, with what the group takes from the image named at the
versions it has there), the base image's digest, and the sha256 of every
patch text. What cannot be reached is recorded as such,
with the reason; nothing is ever guessed (resolving is `envbuild.resolve`).

A lock only fills in what the recipe leaves open (`sha256: unknown`, a git
source with a branch and no commit, the versions and hashes of pip
requirements); anything the recipe states and the lock contradicts is a
disagreement (`Lock.disagreements`), a warning of every command, refused by
`--require-lock` (`require`) and `envbuild lock --check`. `--strict` also
refuses what the lock could not settle (`Lock.unsettled`).

The document (`Lock.doc`, the YAML): `format`, `recipe`, `lock_hash`,
`base_image: {ref, digest, status, reason}`, `python: {version, platform,
from}` (from: `recipe`, or `host` when the recipe names no Python and the one
running pip was used) and `components: {name: {source: <entry or null>,
patches: {patch: sha256}, pip: [<group>, ...]}}`, source entries as
`envbuild.spec.sources` describes them, pip groups as `envbuild.wheels` does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from envbuild.errors import LockError
from envbuild.spec.model import Component, Recipe
from envbuild.spec.sources import UNRESOLVED, VERIFIED

LOCK_FORMAT = "envbuild-lock-v1"
SUFFIX = ".lock"


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
    """The comment a lock file starts with. It names no path (DIR stands for the directory of the
    lock), so that the same recipe locks to the same text wherever it is locked."""
    return (
        f"# envbuild lock file of recipe {recipe}: the exact sources it installs.\n"
        f"# Written by `envbuild lock --recipe {recipe} --recipes-dir DIR`, DIR being the directory of\n"
        "# this file (the default recipes directory needs no --recipes-dir); with --check, the same\n"
        "# command compares it with the recipe. Commit it next to the recipe; do not edit it by hand.\n"
        "# status: verified = measured from the source; unverified = the recipe's pin, not\n"
        "# checkable from where the lock was written (or pip packages resolved without the\n"
        "# base image's installed packages); unresolved = unknown (see reason).\n"
        "# lock_hash: sha256 of the canonical JSON of everything else but the reasons.\n"
    )


def dump(doc: dict) -> str:
    """The lock's text: a header comment, then YAML with sorted keys, one value per line."""
    doc = dict(doc, lock_hash=content_hash(doc))
    body = yaml.safe_dump(doc, sort_keys=True, default_flow_style=False, allow_unicode=False, width=100000)
    return header(doc["recipe"]) + body


def pip_lines(entry: dict) -> tuple[str, ...]:
    """A locked pip group's packages as pip's --require-hashes lines `name==version --hash=sha256:...`."""
    return tuple(f"{p['name']}=={p['version']} --hash=sha256:{p['sha256']}" for p in entry.get("packages") or ())


def base_pins(entry: dict) -> tuple[str, ...]:
    """What a locked pip group takes from the base image, as `name==version` at the versions it had there."""
    return tuple(f"{p['name']}=={p['version']}" for p in entry.get("base") or ())


def _pip_key(requirements, options) -> dict:
    return {"requirements": list(requirements or ()), "options": list(options or ())}


def _groups(groups: list[dict]) -> str:
    return "; ".join(" ".join(g["options"] + g["requirements"]) for g in groups) or "none"


@dataclass(frozen=True)
class Unsettled:
    """A value the lock could not settle: unverified or unresolved, and why."""

    what: str  # "base image REF", "component NAME source", "component NAME pip group N"
    status: str
    reason: str

    def __str__(self) -> str:
        return f"{self.what}: {self.status}: {self.reason}"


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

    def pip(self, name: str) -> list[dict]:
        entry = self.components.get(name) or {}
        return entry.get("pip") or []

    def unsettled(self) -> list[Unsettled]:
        """Each value the lock could not verify or resolve, in the lock's order."""
        found = []
        base = self.doc.get("base_image") or {}
        if base.get("status") != VERIFIED:
            found.append(Unsettled(f"base image {base.get('ref')}", base.get("status") or UNRESOLVED,
                                   base.get("reason") or ""))
        for name in sorted(self.components):
            source = self.source(name)
            if source and source.get("status") != VERIFIED:
                found.append(Unsettled(f"component {name} source", source.get("status") or UNRESOLVED,
                                       source.get("reason") or ""))
            for index, group in enumerate(self.pip(name), 1):
                if group.get("status") != VERIFIED:
                    found.append(Unsettled(f"component {name} pip group {index} ({' '.join(group.get('requirements') or ())})",
                                           group.get("status") or UNRESOLVED, group.get("reason") or ""))
        return found

    # --- using the lock ---------------------------------------------------------

    def apply(self, component: Component) -> Component:
        """The component with what the recipe leaves open filled in from the lock: a download's
        sha256, a branch's commit, and the packages of its pip groups with what they take from
        the base image (verified ones only: pins resolved without the base image's installed
        packages, or for another Python, would replace what the image has or not install there)."""
        entry = self.source(component.name)
        src = component.source
        if entry and src is not None and entry.get("kind") == src.kind and entry.get("url") == src.url:
            filled = src.with_lock(entry)
            if filled is not src:
                component = dataclasses.replace(component, source=filled)
        locked = self.pip(component.name)
        groups = tuple(
            dataclasses.replace(group, locked=pip_lines(entry), base=base_pins(entry))
            if entry.get("status") == VERIFIED and _pip_key(entry.get("requirements"), entry.get("options"))
            == _pip_key(group.requirements, group.options) else group
            for group, entry in zip(component.pip, locked)
        ) if len(locked) == len(component.pip) else component.pip
        return component if groups == component.pip else dataclasses.replace(component, pip=groups)

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
        if any(c.pip for c in components):
            ours = recipe.python and {"version": recipe.python.version, "platform": recipe.python.platform}
            locked_python = self.doc.get("python") or {}
            theirs = ({"version": locked_python.get("version"), "platform": locked_python.get("platform")}
                      if locked_python.get("from") == "recipe" else None)
            if ours != theirs:
                found.append(f"python: the recipe has {_python(ours)}, the lock has {_python(theirs)}")
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
            for key, ours, theirs in src.lock_fields(entry):
                if ours != theirs:
                    found.append(f"source.{key}: the recipe has {ours or 'none'}, the lock has {theirs or 'none'}")
        ours_pip = [_pip_key(g.requirements, g.options) for g in component.pip]
        theirs_pip = [_pip_key(g.get("requirements"), g.get("options")) for g in self.pip(component.name)]
        if ours_pip != theirs_pip:
            found.append(f"pip: the recipe has {_groups(ours_pip)}, the lock has {_groups(theirs_pip)}")
        ours, theirs = dict(component.patch_hashes), self.patches(component.name)
        for name in sorted(set(ours) | set(theirs)):
            if ours.get(name) != theirs.get(name):
                found.append(f"patches.{name}: the recipe's text has sha256 {ours.get(name) or 'none (not applied)'}, "
                             f"the lock has {theirs.get(name) or 'none (not applied)'}")
        return found


def _python(target: dict | None) -> str:
    return f"Python {target['version']} on {target['platform']}" if target else "no python block"


def _kind(source) -> str:
    if source is None:
        return "no source"
    kind = source.kind if not isinstance(source, dict) else source.get("kind")
    return f"a {kind} source"


def load(path: Path, display: str | None = None, command: str = "") -> Lock | None:
    """The lock at `path`, None when there is none; an unreadable lock is a LockError, which
    ends with `command` (what writes the lock, pipeline.command_line) when one is given and
    the file is there but is no lock."""
    display = display or str(path)
    again = f"; write it again with `{command}`" if command else ""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LockError(f"cannot read {display}: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LockError(f"{display}: not a valid lock file: {str(exc).splitlines()[0]}{again}") from None
    if not isinstance(doc, dict) or doc.get("format") != LOCK_FORMAT:
        raise LockError(f"{display}: not an envbuild lock file (format {LOCK_FORMAT} expected){again}")
    if not isinstance(doc.get("components"), dict) or not isinstance(doc.get("recipe"), str):
        raise LockError(f"{display}: malformed lock (no recipe or components){again}")
    return Lock(path, display, doc)


# --- policy ---------------------------------------------------------------------


# The policy's messages end with the command that writes the lock (`command`, as
# pipeline.command_line renders it for the recipe and options at hand).


def out_of_date(lock: Lock, problems: list[str] | tuple[str, ...], command: str) -> list[str]:
    """The lines that say a lock disagrees with its recipe, and how to fix it."""
    return [f"{lock.display}: {problem}" for problem in problems] + [
        f"{lock.display} is out of date: `{command}` writes it again"]


def source_warnings(components: list[Component], lock: Lock | None, command: str) -> list[str]:
    """What every command warns about the recipe's sources (unverified downloads, unpinned commits)."""
    display = lock.display if lock else None
    found = []
    for component in components:
        if component.source is not None:
            warning = component.source.warning(component.name, component.file, display, command)
            if warning:
                found.append(warning)
    return found


def require(lock: Lock | None, problems: list[str] | tuple[str, ...], recipe: Recipe, command: str,
            strict: bool = False) -> None:
    """--require-lock: refuse a recipe without a lock, or whose lock disagrees with it (LockError);
    with `strict`, also one whose lock has anything unverified or unresolved, each named."""
    if lock is None:
        path = lock_path(Path(recipe.file).parent, recipe.name)
        raise LockError(f"recipe {recipe.name} has no lock ({path}) and --require-lock was given; "
                        f"write it with `{command}`")
    if problems:
        raise LockError("\n".join([f"{lock.display}: {problem}" for problem in problems] + [
            f"{lock.display} disagrees with the recipe and --require-lock was given; "
            f"`{command}` writes it again"]))
    if strict:
        refuse_unsettled(lock, command)


def refuse_unsettled(lock: Lock, command: str) -> None:
    """--strict: a LockError naming each value of the lock that is unverified or unresolved."""
    unsettled = lock.unsettled()
    if unsettled:
        raise LockError("\n".join([f"{lock.display}: {item}" for item in unsettled] + [
            f"{lock.display}: {len(unsettled)} value{'s' if len(unsettled) > 1 else ''} unverified or unresolved and "
            f"--strict was given; `{command}` resolves what it can reach"]))
