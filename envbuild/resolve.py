"""Resolving a plan's sources into a lock document (`envbuild lock`): the network side of locks.

The plan must be made without the lock it will replace, so that every value
comes from the recipe and the sources themselves. The document's shape is
envbuild.spec.lock's; pip groups are resolved by envbuild.wheels, against the
base image when the Docker engine has it or can pull it (`open_base_image`),
else for the recipe's Python alone; `base_disagreements` compares a lock with
the base image as it is now.
"""

from __future__ import annotations

import sys
from typing import Callable

from envbuild import wheels
from envbuild.errors import EnvbuildError, LockError
from envbuild.net import last_line
from envbuild.plan import Plan
from envbuild.spec import lock as lockfile
from envbuild.spec.lock import LOCK_FORMAT, Lock
from envbuild.spec.sources import VERIFIED, Resolver


def resolve(plan: Plan, resolver: Resolver, image: wheels.BaseImage | None = None,
            python: str = sys.executable) -> dict:
    """The lock document of a plan made without a lock; LockError lists what the recipe gets wrong.

    Pip groups are resolved in containers of `image` (the recipe's base image); without
    it (None: not asked) `python` runs `pip download` for them, aimed at the recipe's
    Python when it names one, else resolving for `python` itself (the document's
    `python.from` is then `host`), and the groups are unverified.
    """
    components: dict[str, dict] = {}
    problems: list[str] = []
    needs_pip = any(step.component.pip for step in plan.steps)
    target = wheels.target_of(plan.recipe, python) if needs_pip else None
    image = image or wheels.BaseImage(plan.recipe.base_image, None, "no Docker engine asked")
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
            entry["pip"] = [wheels.resolve_group(group, target, image, plan.recipe.python_protected, python,
                                                 resolver.timeout) for group in component.pip]
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


def base_disagreements(lock: Lock, open_image: Callable[[], wheels.BaseImage]) -> tuple[list[str], str]:
    """Where the base image's Python has other versions of what the lock's verified pip groups
    took from it, one line per group (`component NAME pip group N: ...`), and why they could
    not be compared ("" when they were). `open_image` is called only when some group took
    something from the image."""
    groups = [(name, index, lockfile.base_pins(entry)) for name in sorted(lock.components)
              for index, entry in enumerate(lock.pip(name), 1) if entry.get("status") == VERIFIED and entry.get("base")]
    if not groups:
        return [], ""
    image = open_image()
    if image.run is None:
        return [], image.why
    pins = sorted({pin for _, _, group_pins in groups for pin in group_pins})
    status, stdout, stderr = image.run(wheels.guard_command("expect", *pins))
    if status not in (0, 1):
        return [], f"the pip guard in a container of {image.ref} failed: {last_line(stderr or stdout)}"
    # Lines `name version (other here)`, keyed by `name version`.
    differ = {" ".join(line.split(" ", 2)[:2]): line for line in stdout.splitlines() if line}
    found = []
    for name, index, group_pins in groups:
        lines = [differ[key] for key in (pin.replace("==", " ", 1) for pin in group_pins) if key in differ]
        if lines:
            found.append(f"component {name} pip group {index}: locked against another {image.ref} than the "
                         f"Docker engine has now, which had {', '.join(lines)}")
    return found, ""


def open_base_image(ref: str, network: str | None = None, say: Callable[[str], None] = lambda line: None,
                    pull: bool = True) -> wheels.BaseImage:
    """Image `ref` on the local Docker engine, pulled when the engine does not have it (and `pull`),
    to run pip in (`network` as `docker run --network` takes it; None: the engine's default); when
    there is no engine or no image, a BaseImage that cannot run, saying why."""
    from envbuild.run import docker_engine

    try:
        client = docker_engine.connect()
        if not docker_engine.image_exists(client, ref):
            if not pull:
                return wheels.BaseImage(ref, None, f"the Docker engine does not have {ref}")
            say(f"pulling {ref} to resolve pip requirements against what its Python has installed")
            docker_engine.pull_image(client, ref)
    except EnvbuildError as exc:
        return wheels.BaseImage(ref, None, str(exc))

    def run(argv: list[str]) -> tuple[int, str, str]:
        try:
            return docker_engine.run_in_image(client, ref, argv, network_mode=network)
        except EnvbuildError as exc:  # no python3 in the image, the engine gone: that group is unresolved
            return 125, "", str(exc)

    return wheels.BaseImage(ref, run)
