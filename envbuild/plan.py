"""The plan: a recipe's components in install order, each with its content hash."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from envbuild.errors import Problem, RecipeError
from envbuild.model import Component, Library, Recipe

HASH_FORMAT = "envbuild-component-v1"
# Variables the runtime script itself provides, which env values may refer to.
RUNTIME_VARIABLES = ("HOME", "ENVBUILD_STATE_DIR", "ENVBUILD_NIC_FAMILY", "NODE_RANK")


@dataclass(frozen=True)
class Step:
    component: Component
    hash: str
    reason: str
    nic_specific: bool  # the component or one of its dependencies is built for one NIC family

    @property
    def name(self) -> str:
        return self.component.name

    @property
    def short_hash(self) -> str:
        return self.hash[:12]


@dataclass(frozen=True)
class Plan:
    recipe: Recipe
    steps: tuple[Step, ...]
    # Where the recipe and its lock disagree (see Lock.disagreements); empty without a lock.
    lock_problems: tuple[str, ...] = ()

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
        return _digest(doc)

    @property
    def nic_family(self) -> str:
        cluster = self.recipe.cluster
        return cluster.nic_family if cluster and cluster.nic_family else ""

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    def stamp_key(self, step: Step, nic_family: str = "", prefixes: dict[str, str] | None = None) -> str:
        """The line the runtime script writes to a component's stamp (see _eb_key in engine.sh)."""
        closure = self.closure(step.name)
        values = dict(p for name in closure for p in self.step(name).component.prefix)
        values.update(prefixes or {})
        key = step.hash
        if step.nic_specific:
            key += f" nic={nic_family or self.nic_family}"
        return key + "".join(f" {var}={values[var]}" for var in sorted(values))

    def closure(self, name: str) -> list[str]:
        """A component and everything it depends on, in plan order."""
        needed = {name}
        for step in reversed(self.steps):
            if step.name in needed:
                needed.update(step.component.depends)
        return [s.name for s in self.steps if s.name in needed]

    def warnings(self) -> list[str]:
        found = []
        lock = self.recipe.lock
        for step in self.steps:
            source = step.component.source
            if source is not None and source.kind in ("tarball", "deb") and not source.verified:
                found.append(
                    f"{step.component.file}: source.sha256: the download of {step.name} is unverified "
                    + (f"(sha256 unknown, unresolved in {lock.display})" if lock else
                       "(sha256 unknown); `envbuild lock` records it")
                )
            elif source is not None and source.kind == "git" and not source.pinned:
                found.append(
                    f"{step.component.file}: source.commit: {step.name} is unpinned (branch {source.branch}, "
                    + (f"unresolved in {lock.display})" if lock else "no lock); `envbuild lock` resolves it")
                )
        if self.lock_problems:
            found += [f"{lock.display}: {problem}" for problem in self.lock_problems]
            found.append(f"{lock.display} is out of date: `envbuild lock --recipe {self.recipe.name}` writes it again")
        return found

    def require_lock(self) -> None:
        """Refuse a recipe without a lock, or whose lock disagrees with it (EnvbuildError)."""
        from envbuild.lock import LockError, lock_path

        lock = self.recipe.lock
        if lock is None:
            path = lock_path(Path(self.recipe.file).parent, self.recipe.name)
            raise LockError(f"recipe {self.recipe.name} has no lock ({path}) and --require-lock was given; "
                            f"write it with `envbuild lock --recipe {self.recipe.name}`")
        if self.lock_problems:
            raise LockError("\n".join([f"{lock.display}: {problem}" for problem in self.lock_problems] + [
                f"{lock.display} disagrees with the recipe and --require-lock was given; "
                f"`envbuild lock --recipe {self.recipe.name}` writes it again"]))


def _digest(doc) -> str:
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def component_hash(component: Component, dependency_hashes: dict[str, str]) -> str:
    return _digest({
        "format": HASH_FORMAT,
        "component": component.identity(),
        "dependencies": {name: dependency_hashes[name] for name in component.depends},
    })


def make_plan(library: Library, recipe: Recipe) -> Plan:
    """Order the recipe's components so that dependencies come first, and hash them."""
    problems: list[Problem] = []
    components: dict[str, Component] = {}
    listed = {name for name, _, _ in recipe.component_lines}
    known = set(library.component_names())

    def load(name: str, file: str, line: int, key: str) -> Component | None:
        if name in components:
            return components[name]
        if name not in known:
            problems.append(Problem(file, line, key, f"unknown component {name!r} (known: {', '.join(sorted(known))})"))
            return None
        try:
            components[name] = library.component(name)
        except RecipeError as exc:
            problems.extend(exc.problems)
            return None
        return components[name]

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
            dep_component = load(dep, component.file, component.line("depends"), "depends")
            if dep_component is not None:
                if dep not in listed:
                    reasons.setdefault(dep, f"needed by {component.name}")
                visit(dep_component)
        visiting.pop()
        if component.name not in order:
            order.append(component.name)

    for name, file, line in recipe.component_lines:
        reasons.setdefault(name, f"listed in recipe {recipe.name}" if file == recipe.file else f"listed in {file}")
        component = load(name, file, line, "components")
        if component is not None:
            visit(component)
    if problems:
        raise RecipeError(problems)

    _check_prefixes_and_references(recipe, [components[n] for n in order])

    lock_problems: list[str] = []
    if recipe.lock is not None:
        lock_problems = recipe.lock.disagreements(recipe, [components[n] for n in order])
        components = {name: recipe.lock.apply(component) for name, component in components.items()}
        recipe = recipe.with_base_image(recipe.lock.base_image(recipe.base_image))

    hashes: dict[str, str] = {}
    nic_specific: dict[str, bool] = {}
    steps = []
    for name in order:
        component = components[name]
        hashes[name] = component_hash(component, hashes)
        nic_specific[name] = component.nic_specific or any(nic_specific[d] for d in component.depends)
        steps.append(Step(component, hashes[name], reasons[name], nic_specific[name]))
    return Plan(recipe, tuple(steps), tuple(lock_problems))


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
    if problems:
        raise RecipeError(problems)
