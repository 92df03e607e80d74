"""Baking a plan into an image on the Docker engine: reuse, pull policy, build, report.

The CLI's `envbuild image` is this module plus option parsing; a Python caller
(CI) builds the same way with `bake`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence, TextIO

from envbuild.errors import EnvbuildError
from envbuild.formats import IMAGE_EPOCH
from envbuild.plan import Plan
from envbuild.render.dockerfile import build_context
from envbuild.run import docker_engine


@dataclass(frozen=True)
class Baked:
    """The outcome of `bake`; seconds of wall time."""
    tags: tuple[str, ...]
    image_id: str  # sha256:... of the image (of the existing one when reused)
    seconds: float
    reused: bool


def default_tag(plan: Plan) -> str:
    """envbuild/<recipe>:<first 12 hex of the recipe hash>."""
    return f"envbuild/{plan.recipe.name}:{plan.hash[:12]}"


def bake(plan: Plan, tags: Sequence[str], *, no_cache: bool = False, pull: bool | None = None,
         network: str | None = None, verbose: bool = False, say: Callable[[str], None] = lambda line: None,
         progress: docker_engine.BuildTranscript | None = None) -> Baked:
    """Builds (or reuses) the image of `plan` and gives it every tag in `tags` (at least one).

    The image is reproducible: the same plan on the same base image gives the
    same image ID (see docker_engine.settle_image). An image that the first tag
    names and that holds the plan's recipe hash is reused. `pull`: True
    refreshes the base image, False refuses to build without it locally, None
    lets the engine pull it only when missing. Raises EnvbuildError (engine
    unreachable, build failed, base image missing) and lets KeyboardInterrupt
    through once the engine has cancelled the build. `progress` receives the
    builder's events (default: a BuildProgress on stderr).
    """
    tags = list(dict.fromkeys(tags))
    client = docker_engine.connect()
    existing = None if no_cache else docker_engine.image_labels(client, tags[0])
    if existing is not None:
        if existing.get("io.envbuild.recipe-hash") == plan.hash:
            return Baked(tuple(tags), docker_engine.tag_image(client, tags[0], tags[1:]), 0.0, True)
        say(f"{tags[0]} exists but was not built from this recipe (hash {plan.hash[:12]}); building it again")
    base = plan.recipe.base_image
    if pull is False and not docker_engine.base_image_present(client, base):
        raise EnvbuildError(f"base image {base} is not present locally and --no-pull was given; "
                            f"pull or build it first, or drop --no-pull")
    say(f"building {', '.join(tags)} from {base} ({len(plan.steps)} components)")
    started = time.monotonic()
    progress = progress if progress is not None else docker_engine.BuildProgress(verbose=verbose)
    built = docker_engine.build(client, docker_engine.make_context_tar(build_context(plan)), None,
                                nocache=no_cache, pull=bool(pull), on_event=progress, network_mode=network)
    image_id = docker_engine.settle_image(client, built, base, tags, IMAGE_EPOCH)
    return Baked(tuple(tags), image_id, time.monotonic() - started, False)


@dataclass(frozen=True)
class Pushed:
    tag: str
    digest: str  # sha256:... of the manifest the registry stored
    seconds: float


def push_tags(tags: Sequence[str], *, say: Callable[[str], None] = lambda line: None,
              stream: TextIO | None = None) -> list[Pushed]:
    """Pushes every tag in `tags` to its registry, showing progress on `stream` (default stderr).

    Raises EnvbuildError (one line) at the first push that fails.
    """
    client = docker_engine.connect()
    pushed = []
    for tag in tags:
        started = time.monotonic()
        progress = docker_engine.PushProgress(tag, stream=stream)
        try:
            digest = docker_engine.push(client, tag, on_event=progress)
        finally:
            progress.close()
        pushed.append(Pushed(tag, digest, time.monotonic() - started))
        say(f"pushed {tag} ({digest}) in {pushed[-1].seconds:.1f} s")
    return pushed
