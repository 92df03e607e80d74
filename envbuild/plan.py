"""The plan: a recipe's components in install order, each with its content hash.

`make_plan(recipe, components, lock)` is a pure function of the model: it
orders (dependencies first), refuses cycles and clashing prefixes, fills in
what the lock resolves, and hashes each component with its dependencies'
hashes. Nothing here reads a file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Mapping

from envbuild.errors import Problem, RecipeError
from envbuild.spec import lock as lockfile
from envbuild.spec.lock import Lock
from envbuild.spec.model import Component, Recipe

HASH_FORMAT = "envbuild-component-v1"
# Variables the runtime script itself provides, which env values may refer to.
RUNTIME_VARIABLES = ("HOME", "ENVBUILD_STATE_DIR", "ENVBUILD_NIC_FAMILY", "NODE_RANK")


@dataclass(frozen=True)
class Step:
    """One component in the plan: its content hash and why it is there."""
    component: Component
    hash: str  # sha256 hex of the component's identity and its dependencies' hashes
    reason: str  # why it is in the plan: listed in the recipe, or needed by another
    nic_specific: bool  # the component or one of its dependencies is built for one NIC family

    @property
    def name(self) -> str:
        return self.component.name


@dataclass(frozen=True)
class Plan:
    """A recipe's components in install order (dependencies first), with the lock it was made with."""
    recipe: Recipe
    steps: tuple[Step, ...]
    lock: Lock | None = None
    # Where the recipe and its lock disagree (see Lock.disagreements); empty without a lock.
    lock_problems: tuple[str, ...] = ()
    # The command that writes the recipe's lock, as the messages about it tell the user to run it.
    lock_command: str = field(default="", compare=False)

    @property
    def hash(self) -> str:
        """Identity of the whole recipe: its steps, base image, env and cluster."""
        doc = {
            "format": HASH_FORMAT,
            "base_image": self.recipe.base_image,
            "steps": [[s.name, s.hash] for s in self.steps],
            "env": [list(self.recipe.env.set), [[n, list(v)] for n, v in self.recipe.env.path]],
            "nic_family": self.nic_family,
        }
        # Only when set, so that recipes without them keep their hashes.
        if self.recipe.gpu_target:
            doc["gpu_target"] = self.recipe.gpu_target
        if self.recipe.python_protected:
            doc["python_protected"] = list(self.recipe.python_protected)
        if self.recipe.nic_families:
            doc["nic_families"] = list(self.recipe.nic_families)
        return _digest(doc)

    @property
    def nic_family(self) -> str:
        """The one NIC family of every node (the cluster profile's, or --nic-family); "" when not known."""
        cluster = self.recipe.cluster
        return cluster.nic_family if cluster and cluster.nic_family else ""

    @property
    def nic_families(self) -> tuple[str, ...]:
        """The NIC families an image of the plan is built for: the plan's one family, else every
        family the recipe lists (one image for every cluster); () when neither says."""
        return (self.nic_family,) if self.nic_family else self.recipe.nic_families

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    def closure(self, name: str) -> list[str]:
        """A component and everything it depends on, in plan order."""
        needed = {name}
        for step in reversed(self.steps):
            if step.name in needed:
                needed.update(step.component.depends)
        return [s.name for s in self.steps if s.name in needed]

    def warnings(self) -> list[str]:
        """One line each: unverified or unpinned sources, a lock that disagrees with the recipe."""
        found = lockfile.source_warnings([s.component for s in self.steps], self.lock, self.lock_command)
        if self.lock_problems:
            found += lockfile.out_of_date(self.lock, self.lock_problems, self.lock_command)
        return found

    def require_lock(self, strict: bool = False) -> None:
        """Refuse a recipe without a lock, or whose lock disagrees with it (LockError); `strict`
        also refuses a lock with anything unverified or unresolved."""
        lockfile.require(self.lock, self.lock_problems, self.recipe, self.lock_command, strict)


def _digest(doc) -> str:
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def component_hash(component: Component, dependency_hashes: Mapping[str, str], gpu_target: str = "") -> str:
    """sha256 hex of what defines the component's install, of its dependencies' hashes and
    of the recipe's GPU target (every step builds for it), when the recipe gives one."""
    doc = {
        "format": HASH_FORMAT,
        "component": component.identity(),
        "dependencies": {name: dependency_hashes[name] for name in component.depends},
    }
    if gpu_target:
        doc["gpu_target"] = gpu_target
    return _digest(doc)


def make_plan(recipe: Recipe, components: Mapping[str, Component], lock: Lock | None = None, *,
              lock_command: str) -> Plan:
    """Order the recipe's components so that dependencies come first, and hash them.

    `components` holds every component the recipe needs by name (loader.Library.
    components_for); `lock_command` is what messages about the lock tell the user
    to run (pipeline.command_line). Raises RecipeError on a dependency cycle,
    clashing prefixes or env references to nothing.
    """
    problems: list[Problem] = []
    listed = {name for name, _, _ in recipe.component_lines}
    order: list[str] = []
    reasons: dict[str, str] = {}
    visiting: list[str] = []

    def visit(component: Component) -> None:
        if component.name in order:
            return
        if component.name in visiting:
            cycle = " -> ".join(visiting[visiting.index(component.name):] + [component.name])
            problems.append(Problem(component.file, component.line("depends"), "depends",
                                    f"dependency cycle: {cycle}"))
            return
        visiting.append(component.name)
        for dep in component.depends:
            if dep not in listed:
                reasons.setdefault(dep, f"needed by {component.name}")
            visit(components[dep])
        visiting.pop()
        if component.name not in order:
            order.append(component.name)

    for name, file, _ in recipe.component_lines:
        reasons.setdefault(name, f"listed in recipe {recipe.name}" if file == recipe.file else f"listed in {file}")
        visit(components[name])
    if problems:
        raise RecipeError(problems)

    ordered = [components[n] for n in order]
    _check_prefixes_and_references(recipe, ordered)

    lock_problems: list[str] = []
    if lock is not None:
        lock_problems = lock.disagreements(recipe, ordered)
        ordered = [lock.apply(component) for component in ordered]
        recipe = recipe.with_base_image(lock.base_image(recipe.base_image))

    hashes: dict[str, str] = {}
    nic_specific: dict[str, bool] = {}
    steps = []
    for component in ordered:
        name = component.name
        hashes[name] = component_hash(component, hashes, recipe.gpu_target)
        nic_specific[name] = component.nic_specific or any(nic_specific[d] for d in component.depends)
        steps.append(Step(component, hashes[name], reasons[name], nic_specific[name]))
    return Plan(recipe, tuple(steps), lock, tuple(lock_problems), lock_command)


def _check_prefixes_and_references(recipe: Recipe, components: list[Component]) -> None:
    problems: list[Problem] = []
    owners: dict[str, tuple[Component, str]] = {}
    for component in components:
        for var, path in component.prefix:
            if var in owners and owners[var][1] != path:
                other = owners[var][0]
                problems.append(Problem(component.file, component.line("prefix"), f"prefix.{var}",
                                        f"{path!r} clashes with {other.name}'s {var}={owners[var][1]!r}"))
            owners.setdefault(var, (component, path))
    defined = set(owners) | set(RUNTIME_VARIABLES) | {n for n, _ in recipe.env.set}
    for component in components:
        defined |= {n for n, _ in component.env.set}
    owners_of_env = [(c.file, c.line("env"), c.env) for c in components]
    owners_of_env.append((recipe.file, recipe.line("env"), recipe.env))
    for file, line, env in owners_of_env:
        for ref in sorted(env.references() - defined):
            problems.append(Problem(file, line, "env", f"${{{ref}}} is not a prefix or variable the recipe defines"))
    for component in components:
        for ref in sorted(component.needs.references() - defined):
            problems.append(Problem(component.file, component.line("needs"), "needs.files",
                                    f"${{{ref}}} is not a prefix or variable the recipe defines; "
                                    f"give it a default (${{{ref}:-/path}})"))
    if problems:
        raise RecipeError(problems)
