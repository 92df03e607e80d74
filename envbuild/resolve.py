"""Resolving a plan's sources into a lock document (`envbuild lock`): the network side of locks.

The plan must be made without the lock it will replace, so that every value
comes from the recipe and the sources themselves. The document's shape is
envbuild.spec.lock's.
"""

from __future__ import annotations

from envbuild.errors import LockError
from envbuild.plan import Plan
from envbuild.spec.lock import LOCK_FORMAT
from envbuild.spec.sources import Resolver


def resolve(plan: Plan, resolver: Resolver) -> dict:
    """The lock document of a plan made without a lock; LockError lists what the recipe gets wrong."""
    components: dict[str, dict] = {}
    problems: list[str] = []
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
        components[step.name] = entry
    if problems:
        raise LockError("\n".join(problems))
    return {
        "format": LOCK_FORMAT,
        "recipe": plan.recipe.name,
        "base_image": resolver.base_image(plan.recipe.base_image),
        "components": components,
    }
