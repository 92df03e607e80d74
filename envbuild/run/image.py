"""Baking a plan into an image on the Docker engine: reuse, pull policy, build, report.

The CLI's `envbuild image` is this module plus option parsing; a Python caller
(CI) builds the same way with `bake`.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence, TextIO

from envbuild.errors import EnvbuildError, UsageError, counted
from envbuild.formats import IMAGE_EPOCH
from envbuild.plan import Plan
from envbuild.render.dockerfile import build_context, image_units, instruction_component
from envbuild.render.script import RUNTIME
from envbuild.run import docker_engine

# The runtime script's variable for offline sources: a build setting of the steps of a build from sources.
SOURCE_DIR = "ENVBUILD_SOURCE_DIR"


@dataclass(frozen=True)
class ComponentReport:
    """What a build did for one component (or one NIC family's build of it): how long its step ran,
    what it adds to the image."""

    name: str  # the component, or component@family (envbuild.formats.unit_name)
    seconds: float | None  # how long its step ran; None when it came from the layer cache
    added_bytes: int  # what its layers in the image hold (its copy, or its fragment and step)


@dataclass(frozen=True)
class Baked:
    """The outcome of `bake`; seconds of wall time."""
    tags: tuple[str, ...]
    image_id: str  # sha256:... of the image (of the existing one when reused)
    seconds: float
    reused: bool
    components: tuple[ComponentReport, ...] = ()  # plan order, each family's build apart; empty when reused
    added_bytes: int = 0  # every layer the image has over its base


def default_tag(plan: Plan) -> str:
    """envbuild/<recipe>:<first 12 hex of the recipe hash>."""
    return f"envbuild/{plan.recipe.name}:{plan.hash[:12]}"


def step_settings(build_env: Mapping[str, str] | None, sources: Path | None) -> dict[str, str]:
    """The build settings a bake gives its steps over the recipe's build_env, {NAME: VALUE}.

    They are `build_env` and, when building from `sources`, ENVBUILD_SOURCE_DIR:
    the URL at which the sources server answers the steps. Raises UsageError
    when `build_env` sets ENVBUILD_SOURCE_DIR too.
    """
    settings = dict(build_env or {})
    if sources is not None:
        if SOURCE_DIR in settings:
            raise UsageError(f"--build-env {SOURCE_DIR} and --sources exclude each other: --sources sets it")
        settings[SOURCE_DIR] = f"http://127.0.0.1:{docker_engine.SOURCES_PORT}"
    return settings


def bake(plan: Plan, tags: Sequence[str], *, no_cache: bool = False, pull: bool | None = None,
         network: str | None = None, verbose: bool = False, say: Callable[[str], None] = lambda line: None,
         progress: docker_engine.BuildTranscript | None = None, build_env: Mapping[str, str] | None = None,
         sources: Path | None = None) -> Baked:
    """Builds (or reuses) the image of `plan` and gives it every tag in `tags` (at least one).

    The image is reproducible: the same plan on the same base image gives the
    same image ID (see docker_engine.settle_image). An image that the first tag
    names and that holds the plan's recipe hash is reused. `pull`: True
    refreshes the base image, False refuses to build without it locally, None
    lets the engine pull it only when missing. Raises EnvbuildError (engine
    unreachable, build failed, base image missing, sources server down) and
    lets KeyboardInterrupt through once the engine has cancelled the build.
    `progress` receives the builder's events (default: a BuildProgress on
    stderr). The steps see the recipe's build_env and `build_env` over it, as
    build arguments: not in the image's ENV, labels or config, nor in the
    recipe hash; the engine's layer cache does key on them, so a changed value
    runs the steps again.

    `sources`, a directory `envbuild fetch` wrote on the engine's machine, is
    what the steps install from, with no network: a container of the base
    image with no network serves it read-only on its own loopback, the only
    network the steps share (the build setting ENVBUILD_SOURCE_DIR is its
    URL), so nothing of it enters the build context or a layer. `network`
    must then be None and `build_env` must not set ENVBUILD_SOURCE_DIR
    (UsageError).
    """
    if sources is not None and network is not None:
        raise UsageError("--sources and --network exclude each other: the steps of a build from sources "
                         "reach the sources and nothing else")
    settings = step_settings(build_env, sources)
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
    say(f"building {', '.join(tags)} from {base} ({counted(len(plan.steps), 'component')})"
        + (f", from {sources}" if sources else ""))
    started = time.monotonic()
    progress = progress if progress is not None else docker_engine.BuildProgress(verbose=verbose)
    with contextlib.ExitStack() as stack:
        if sources is not None:
            if pull is not False and not docker_engine.base_image_present(client, base):
                docker_engine.pull_image(client, base)
            network = stack.enter_context(docker_engine.sources_server(
                client, base, sources, (RUNTIME / "serve_sources.py").read_text(encoding="utf-8")))
        stack.callback(progress.close)  # before the sources server goes
        built = docker_engine.build(client, docker_engine.make_context_tar(build_context(plan, list(settings))), None,
                                    nocache=no_cache, pull=bool(pull), on_event=progress, network_mode=network,
                                    buildargs={**dict(plan.recipe.build_env), **settings})
    image_id = docker_engine.settle_image(client, built, base, tags, IMAGE_EPOCH)
    components, added = _report(plan, docker_engine.layer_sizes(client, built, base), progress)
    return Baked(tuple(tags), image_id, time.monotonic() - started, False, components, added)


def _report(plan: Plan, sizes: dict[str, int], transcript: docker_engine.BuildTranscript
            ) -> tuple[tuple[ComponentReport, ...], int]:
    """Each component's (each family's build's) build time and the bytes its layers add, from the build's
    steps and the image's layers."""
    seconds: dict[str, float] = {}
    added: dict[str, int] = {}
    for step in transcript.steps:
        name = instruction_component(step.instruction)
        if name is None:
            continue
        if step.component and not step.cached and step.elapsed is not None:
            seconds[name] = step.elapsed
        layer = next((size for layer_id, size in sizes.items() if step.image_id and layer_id.startswith(step.image_id)), 0)
        added[name] = added.get(name, 0) + layer
    return (tuple(ComponentReport(unit, seconds.get(unit), added.get(unit, 0)) for unit in image_units(plan)),
            sum(sizes.values()))


def summary_lines(baked: Baked) -> list[str]:
    """The build summary: a line per component with its time and the size it adds, then the total."""
    width = max([len("component")] + [len(c.name) for c in baked.components])
    lines = [f"{'component':<{width}}  {'build':>9}  {'adds':>9}"]
    for c in baked.components:
        took = f"{c.seconds:.1f} s" if c.seconds is not None else "cached"
        lines.append(f"{c.name:<{width}}  {took:>9}  {docker_engine.human_bytes(c.added_bytes):>9}")
    lines.append(f"the image adds {docker_engine.human_bytes(baked.added_bytes)} to its base")
    return lines


@dataclass(frozen=True)
class Pushed:
    """One tag pushed: the digest its registry stored, seconds of wall time."""

    tag: str
    digest: str  # sha256:... of the manifest the registry stored
    seconds: float


def push_tags(tags: Sequence[str], *, say: Callable[[str], None] = lambda line: None,
              stream: TextIO | None = None, quiet: bool = False) -> list[Pushed]:
    """Pushes every tag in `tags` to its registry, showing progress on `stream` (default stderr) unless quiet.

    Raises EnvbuildError (one line) at the first push that fails.
    """
    client = docker_engine.connect()
    pushed = []
    for tag in tags:
        started = time.monotonic()
        progress = None if quiet else docker_engine.PushProgress(tag, stream=stream)
        try:
            digest = docker_engine.push(client, tag, on_event=progress)
        finally:
            if progress is not None:
                progress.close()
        pushed.append(Pushed(tag, digest, time.monotonic() - started))
        say(f"pushed {tag} ({digest}) in {pushed[-1].seconds:.1f} s")
    return pushed
