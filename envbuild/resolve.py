"""Resolving a plan's sources into a lock document (`envbuild lock`): the network side of locks.

The plan must be made without the lock it will replace, so that every value
comes from the recipe and the sources themselves. The document's shape is
envbuild.spec.lock's; pip groups are resolved by envbuild.wheels for the
recipe's Python.
"""

from __future__ import annotations

import sys

from envbuild import wheels
from envbuild.errors import LockError
from envbuild.plan import Plan
from envbuild.spec.lock import LOCK_FORMAT
from envbuild.spec.sources import Resolver


def resolve(plan: Plan, resolver: Resolver, python: str = sys.executable) -> dict:
    """The lock document of a plan made without a lock; LockError lists what the recipe gets wrong.

    `python` runs `pip download` for the pip groups (aimed at the recipe's Python when it
    names one, else resolving for `python` itself: the document's `python.from` is then
    `host` and the groups unverified).
    """
    components: dict[str, dict] = {}
    problems: list[str] = []
    needs_pip = any(step.component.pip for step in plan.steps)
    target = wheels.target_of(plan.recipe, python) if needs_pip else None
    for step in plan.steps:
        component, source = step.component, step.component.source
        entry: dict = {"source": None}
        try:
            if source is not None:
                entry["source"] = source.resolve(step.name, resolver)
        except LockError as exc:
            problems.append(str(exc))
        if component.patch_hashes:
            entry["patches"] = dict(component.patch_hashes)
        if component.pip:
            entry["pip"] = [wheels.resolve_group(group, target, python) for group in component.pip]
        components[step.name] = entry
    if problems:
        raise LockError("\n".join(problems))
    doc = {
        "format": LOCK_FORMAT,
        "recipe": plan.recipe.name,
        "base_image": resolver.base_image(plan.recipe.base_image),
        "components": components,
    }
    if target is not None:
        doc["python"] = target.lock_entry()
    return doc
