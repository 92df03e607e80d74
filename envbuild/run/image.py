"""Baking a plan into an image on the Docker engine: reuse, pull policy, build, report.

The CLI's `envbuild image` is this module plus option parsing; a Python caller
(CI) builds the same way with `bake`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from envbuild.errors import EnvbuildError
from envbuild.plan import Plan
from envbuild.render.dockerfile import build_context
from envbuild.run import docker_engine


@dataclass(frozen=True)
class Baked:
    """The outcome of `bake`; seconds of wall time."""
    tag: str
    image_id: str  # sha256:... of the image; "" when an existing image was reused
    seconds: float
    reused: bool


def default_tag(plan: Plan) -> str:
    """envbuild/<recipe>:<first 12 hex of the recipe hash>."""
    return f"envbuild/{plan.recipe.name}:{plan.hash[:12]}"


def bake(plan: Plan, tag: str, *, no_cache: bool = False, pull: bool | None = None, network: str | None = None,
         verbose: bool = False, say: Callable[[str], None] = lambda line: None) -> Baked:
    """Builds (or reuses) the image of `plan` tagged `tag`.

    `pull`: True refreshes the base image, False refuses to build without it
    locally, None lets the engine pull it only when missing. Raises
    EnvbuildError (engine unreachable, build failed, base image missing) and
    lets KeyboardInterrupt through once the engine has cancelled the build.
    """
    client = docker_engine.connect()
    existing = None if no_cache else docker_engine.image_labels(client, tag)
    if existing is not None:
        if existing.get("io.envbuild.recipe-hash") == plan.hash:
            return Baked(tag, "", 0.0, True)
        say(f"{tag} exists but was not built from this recipe (hash {plan.hash[:12]}); building it again")
    base = plan.recipe.base_image
    if pull is False and not docker_engine.base_image_present(client, base):
        raise EnvbuildError(f"base image {base} is not present locally and --no-pull was given; "
                            f"pull or build it first, or drop --no-pull")
    say(f"building {tag} from {base} ({len(plan.steps)} components)")
    started = time.monotonic()
    labels = {"org.opencontainers.image.created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    progress = docker_engine.BuildProgress(verbose=verbose)
    image_id = docker_engine.build(client, docker_engine.make_context_tar(build_context(plan)), tag, labels=labels,
                                   nocache=no_cache, pull=bool(pull), on_event=progress, network_mode=network)
    return Baked(tag, image_id, time.monotonic() - started, False)
