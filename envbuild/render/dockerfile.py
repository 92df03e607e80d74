"""The Dockerfile renderer: a pure function from a plan to a Dockerfile and its build context.

Layout (steps as data, one template): `envbuild-base` is the base image plus
the engine and the apt packages of every component (the most stable layers).
A component that writes only its own prefixes gets a stage of its own, FROM
envbuild-base plus the outputs of its dependencies; run-component.sh --stage
moves what it installed (prefixes, stamp, provenance, fragment) under
/envbuild-out, which the image copies in. So a pin bump rebuilds that stage,
the stages of its dependents and a copy, not every later layer. Components
that write shared places (site-packages, dpkg, patched files) run in the
image itself, dependencies first and those that need no stage's output before
those that do, each after the copies of what it needs; the copies nothing
there needs come last.

An image for every cluster (no cluster profile or --nic-family: the recipe's
nic_families) builds each NIC-specific component once per family, each in a
stage of its own (its prefixes hold a directory per family, its stamp is named
<component>@<family>): the stage starts from envbuild-base, takes the same
family's builds of its NIC-specific dependencies and the stages of the others,
and runs again, in itself, those that run in the image (the layer cache shares
those runs with the image's). The image copies every family's build in; the
runtime script activates the node's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from envbuild import __version__
from envbuild.errors import EnvbuildError
from envbuild.formats import IMAGE_EPOCH, patches_field, unit_name
from envbuild.plan import Plan, Step
from envbuild.render.script import RUNTIME, engine_text, render_fragment, render_script, writes_site_packages
from envbuild.render.templating import jinja, recipe_source, summary
from envbuild.runtime.nic import NIC_FAMILIES
from envbuild.shell import ENV_REFERENCE, quote
from envbuild.spec.sources import DebSource

BASE_STAGE = "envbuild-base"
# Where an own-stage component's outputs wait, at their image paths, to be copied in.
STAGE_OUTPUT = "/envbuild-out/"
RUN_COMPONENT = "/opt/envbuild/lib/run-component.sh"


# The instructions that work for one component (or one family's build of it), whichever stage they are in.
_COMPONENT_INSTRUCTION = re.compile(
    r"^(?:RUN ENVBUILD_COMPONENT=(?P<run>[a-z0-9-]+(?:@[a-z0-9]+)?) "
    r"|COPY --from=component-(?P<copy>[a-z0-9-]+)(?:\.(?P<family>[a-z0-9]+))? "
    r"|COPY envbuild/components/[0-9]+-(?P<fragment>[a-z0-9-]+)/ )"
)


def instruction_component(instruction: str) -> str | None:
    """The unit (a component, or component@family: envbuild.formats.unit_name) an instruction of a
    rendered Dockerfile builds or copies in, if any."""
    match = _COMPONENT_INSTRUCTION.match(instruction)
    if not match:
        return None
    if match["copy"]:
        return unit_name(match["copy"], match["family"])
    return match["run"] or match["fragment"]


@dataclass(frozen=True)
class ImageLayer:
    """How one component (or one NIC family's build of it) reaches the image: baked in (in a stage
    of its own or not) or left to the script."""

    name: str
    baked: bool
    note: str
    context_dir: str  # copied to /: holds the component's fragment at its image path
    run: str  # the RUN instruction's command
    own_stage: bool  # built in a stage of its own, its outputs copied into the image
    family: str = ""  # set on each of the per-family builds of a NIC-specific component in an image for every cluster

    @property
    def unit(self) -> str:
        return unit_name(self.name, self.family)

    @property
    def stage(self) -> str:
        return f"component-{self.name}" + (f".{self.family}" if self.family else "")

    @property
    def fragment_path(self) -> str:
        return f"{self.context_dir}/opt/envbuild/lib/components/{self.context_dir.rsplit('/', 1)[-1]}.sh"


@dataclass(frozen=True)
class Stage:
    """One FROM block of the Dockerfile: its name ("" for the image), what it starts from, its lines."""

    name: str
    base: str
    comment: str
    lines: tuple[str, ...]
    args: tuple[str, ...] = ()  # build settings its steps see (an ARG holds for one stage only)


def docker_quote(value: str) -> str:
    """A double-quoted Dockerfile word in which nothing expands."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def _writes_only_own_prefixes(step: Step) -> bool:
    """Whether a component's install stays inside its own prefixes, as far as the recipe tells.

    pip (site-packages), a .deb (dpkg's database) and patches (files of other
    components) write shared places; apt packages are installed in envbuild-base
    beforehand. run-component.sh --stage refuses a build that writes elsewhere.
    """
    c = step.component
    return bool(c.prefix) and not writes_site_packages(c) and not isinstance(c.source, DebSource) and not c.patches


def per_family(plan: Plan, step: Step) -> bool:
    """Whether an image of the plan builds the step once per NIC family: a NIC-specific component
    in an image for every cluster (the plan names no one family, the recipe lists families)."""
    return step.nic_specific and not plan.nic_family and bool(plan.nic_families)


def _run(assignments: dict[str, str], stage: bool, name: str) -> str:
    run = " ".join(f"{k}={quote(v)}" for k, v in assignments.items())
    return run + f" bash {RUN_COMPONENT}{' --stage' if stage else ''} {quote(name)}"


def _image_layers(plan: Plan) -> list[ImageLayer]:
    """A layer per component in plan order; per family for those an image for every cluster builds per family."""
    families = plan.nic_families
    layers: list[ImageLayer] = []
    own_stage: set[str] = set()
    for index, step in enumerate(plan.steps, 1):
        when = step.component.when
        context_dir = f"envbuild/components/{index:02d}-{step.name}"
        # The image's families the component is for.
        matching = [f for f in families if f in when.nics] if when.nics else list(families)
        if per_family(plan, step):
            if not _writes_only_own_prefixes(step):
                raise EnvbuildError(
                    f"{step.name} is built per NIC family and writes outside prefixes of its own (site-packages, "
                    "dpkg or other components' files), so one image cannot hold a build for each family: give it "
                    "a prefix and install into it (_eb_pip_into for Python packages), or build the image for one "
                    "family with --cluster PROFILE or --nic-family")
            for family in matching:
                note = f"built for NIC family {family}, one of the image's builds per family; setup_deps.sh " \
                       "activates the node's"
                assignments = {"ENVBUILD_COMPONENT": unit_name(step.name, family), "ENVBUILD_NIC_FAMILY": family}
                if when.node_ranks:
                    assignments["NODE_RANK"] = str(when.node_ranks[0])
                layers.append(ImageLayer(step.name, True, note, context_dir, _run(assignments, True, step.name), True,
                                         family))
            own_stage.add(step.name)
            continue
        assignments = {"ENVBUILD_COMPONENT": step.name}
        note, baked = "", True
        if when.nics and not matching:
            baked = False
            note = (f"left to setup_deps.sh: needs NIC family {', '.join(when.nics)}, the image is built for "
                    f"{', '.join(families) or 'no family'}")
        elif when.node_ranks:
            note = f"baked in for every node; at run time setup_deps.sh skips it unless NODE_RANK is {', '.join(map(str, when.node_ranks))}"
            assignments["NODE_RANK"] = str(when.node_ranks[0])
        elif when.nics:
            note = (f"baked in for NIC famil{'y' if len(matching) == 1 else 'ies'} {', '.join(matching)}; at run time "
                    f"setup_deps.sh skips it unless the NIC family is {', '.join(when.nics)}")
        if step.nic_specific or when.nics:
            # The build cannot detect the cluster's NICs (it would find none and skip
            # a NIC-conditional component): the family is the image's.
            assignments["ENVBUILD_NIC_FAMILY"] = matching[0] if matching else plan.nic_family
        if step.nic_specific:
            note = note or f"built for NIC family {plan.nic_family}; setup_deps.sh rebuilds it on other NICs"
        alone = baked and _writes_only_own_prefixes(step) and all(d in own_stage for d in step.component.depends)
        if alone:
            own_stage.add(step.name)
        layers.append(ImageLayer(step.name, baked, note, context_dir, _run(assignments, alone, step.name), alone))
    return layers


def image_units(plan: Plan) -> list[str]:
    """What an image of the plan builds, in plan order: each component, or each of its builds per NIC
    family (component@family, envbuild.formats.unit_name)."""
    return [layer.unit for layer in _image_layers(plan)]


def _apt_packages(plan: Plan, layers: list[ImageLayer]) -> list[str]:
    """The apt packages of every baked component, first mention first."""
    baked = {layer.name for layer in layers if layer.baked}
    return list(dict.fromkeys(p for s in plan.steps if s.name in baked for p in s.component.apt))


def _component_lines(layer: ImageLayer) -> list[str]:
    return [f"COPY {layer.context_dir}/ /", f"RUN {layer.run}"]


def _header(layer: ImageLayer, note: str) -> list[str]:
    note = "; ".join(filter(None, (note, layer.note)))
    return ["", f"# envbuild component: {layer.unit}{f' ({note})' if note else ''}"]


def _copy_lines(layer: ImageLayer) -> list[str]:
    return _header(layer, f"built in stage {layer.stage}") + [f"COPY --from={layer.stage} {STAGE_OUTPUT} /"]


def _layer_of(layers: list[ImageLayer], name: str, family: str) -> ImageLayer:
    """Component `name`'s layer, its build for `family` when it has one per family."""
    layer = next((layer for layer in layers if layer.name == name and layer.family in ("", family)), None)
    if layer is None:
        raise EnvbuildError(f"{name} is built per NIC family, but not for {family}, which what depends on it is built for")
    return layer


def _stage_lines(plan: Plan, layers: list[ImageLayer], layer: ImageLayer) -> list[str]:
    """A stage's lines: its dependencies' outputs (copies of their stages; the same family's builds for a
    per-family build, whose dependencies that run in the image run here again), then its own step."""
    lines: list[str] = []
    for name in plan.closure(layer.name)[:-1]:
        dep = _layer_of(layers, name, layer.family)
        if dep.own_stage:
            lines += _copy_lines(dep)
        elif dep.baked:
            lines += _header(dep, "runs in the image: here again, for what needs it") + _component_lines(dep)
    return lines[1:] + [""] + _component_lines(layer) if lines else _component_lines(layer)


def _stages(plan: Plan, layers: list[ImageLayer], args: tuple[str, ...]) -> list[Stage]:
    base_lines = ["# The engine depends on envbuild's version only, never on the recipe.", "COPY envbuild/engine/ /"]
    packages = _apt_packages(plan, layers)
    if packages:
        base_lines += ["", "# The apt packages of every component, before any of them: they change least.",
                       f"RUN bash {RUN_COMPONENT} --apt {' '.join(quote(p) for p in packages)}"]
    stages = [Stage(BASE_STAGE, plan.recipe.base_image, "The base image and what every component needs.",
                    tuple(base_lines), args)]
    for layer in layers:
        if layer.own_stage:
            comment = _header(layer, "writes only its own prefixes: built alone, copied into the image")[1][2:]
            stages.append(Stage(layer.stage, BASE_STAGE, comment, tuple(_stage_lines(plan, layers, layer)), args))
    image: list[str] = []
    copied: set[str] = set()

    def copy_in(units: list[ImageLayer]) -> None:
        for dep in units:
            if dep.own_stage and dep.unit not in copied:
                copied.add(dep.unit)
                image.extend(_copy_lines(dep))

    for layer in _image_order(plan, layers):
        if not layer.baked:
            image += _header(layer, "")
        else:
            # Nothing that runs in the image is built per family (per_family), so its dependencies are not.
            copy_in([_layer_of(layers, name, "") for name in plan.closure(layer.name)])
            image += _header(layer, "") + _component_lines(layer)
    copy_in(layers)
    return stages + [Stage("", BASE_STAGE, "The image: what needs no stage first, each copy right before what "
                                           "needs it, the other copies last.", tuple(image[1:]), args)]


def _image_order(plan: Plan, layers: list[ImageLayer]) -> list[ImageLayer]:
    """The components that run in the image itself (or are left to the script), dependencies first.

    Among those whose dependencies are in place, one that needs no stage's
    output goes first (plan order otherwise): a rebuilt stage then runs again
    only the components after its copy, which are those that need it and
    what depends on them.
    """
    own_stage = {layer.name for layer in layers if layer.own_stage}
    pending = [layer for layer in layers if not layer.own_stage]
    in_image = {layer.name for layer in pending}
    placed: set[str] = set()
    order = []
    while pending:
        ready = [layer for layer in pending
                 if all(d in placed or d not in in_image for d in plan.step(layer.name).component.depends)]
        pick = next((layer for layer in ready if not own_stage.intersection(plan.closure(layer.name))), ready[0])
        order.append(pick)
        placed.add(pick.name)
        pending.remove(pick)
    return order


def _dockerfile_env(plan: Plan, layers: list[ImageLayer]) -> list[str]:
    """ENV assignments with the default prefixes, equal to what setup_deps.sh exports.

    Like _eb_prepend, each env block prepends its values in plan order, so the last
    component's entries come first and a value already present is not repeated.
    A NIC-specific component's prefixes are the family's directory in each (as
    the engine's _eb_prefix_defaults makes them); an image for every cluster
    cannot know the node's family, so their environment is left to sourcing
    setup_deps.sh at container start.
    """
    prefixes = {var: f"{path}/{plan.nic_family}" if step.nic_specific and plan.nic_family else path
                for step in plan.steps for var, path in step.component.prefix}
    baked = {layer.name for layer in layers if layer.baked and not layer.family}
    blocks = [s.component.env for s in plan.steps if s.name in baked] + [plan.recipe.env]
    sets: dict[str, str] = {}
    paths: dict[str, list[str]] = {}

    def literal(template: str) -> str:
        return ENV_REFERENCE.sub(lambda m: prefixes.get(m.group(1), sets.get(m.group(1), "")), template)

    for block in blocks:
        for name, value in block.set:
            sets[name] = literal(value)
        for name, values in block.path:
            current = paths.setdefault(name, [])
            for value in reversed(values):
                if literal(value) not in current:
                    current.insert(0, literal(value))
    lines = [f"{name}={docker_quote(value)}" for name, value in sets.items()]
    lines += [f'{name}={docker_quote(":".join(values))[:-1]}${{{name}:+:${{{name}}}}}"' for name, values in paths.items()]
    return lines


def image_labels(plan: Plan) -> dict[str, str]:
    """The image's labels, all from the plan: no build time, so equal plans give equal images.

    io.envbuild.nic-families names the NIC families the image is built for (one,
    or every family the recipe lists), `.nic-families` of a NIC-specific
    component the families it holds a build for. No org.opencontainers.image.source:
    that label is a URL, and a recipe names none.
    """
    layers = _image_layers(plan)
    labels = {
        "org.opencontainers.image.title": f"envbuild/{plan.recipe.name}",
        "org.opencontainers.image.version": plan.hash[:12],
        "org.opencontainers.image.base.name": plan.recipe.base_image,
        "io.envbuild.recipe": plan.recipe.name,
        "io.envbuild.recipe-hash": plan.hash,
        "io.envbuild.nic-family": plan.nic_family,
        "io.envbuild.nic-families": ",".join(plan.nic_families),
        "io.envbuild.components": ",".join(s.name for s in plan.steps),
    }
    if plan.lock is not None:
        labels["io.envbuild.lock-hash"] = plan.lock.hash
    for step in plan.steps:
        source = step.component.source
        labels[f"io.envbuild.component.{step.name}.hash"] = step.hash
        labels[f"io.envbuild.component.{step.name}.source"] = source.pin if source else ""
        if step.component.patch_hashes:
            labels[f"io.envbuild.component.{step.name}.patches"] = patches_field(step.component.patch_hashes)
        if step.nic_specific:
            built = [layer.family or plan.nic_family for layer in layers if layer.name == step.name and layer.baked]
            labels[f"io.envbuild.component.{step.name}.nic-families"] = ",".join(filter(None, built))
    return labels


def render_dockerfile(plan: Plan, build_settings: Sequence[str] = ()) -> str:
    """The Dockerfile `envbuild image` builds: stages, copies, ENV, labels last.

    `build_settings` are the names of build settings given on the command line
    besides the recipe's build_env (their values go to the builder as build
    arguments, never into this text).
    """
    layers = _image_layers(plan)
    unflavoured = [layer.name for layer in layers
                   if plan.step(layer.name).nic_specific and layer.baked and not layer.family and not plan.nic_family]
    if unflavoured:
        raise EnvbuildError(
            f"{', '.join(unflavoured)} {'is' if len(unflavoured) == 1 else 'are'} built per NIC family and an image "
            "build cannot detect the cluster's NICs: give --cluster PROFILE or --nic-family "
            + "|".join(NIC_FAMILIES) + f", or list the families in recipe {plan.recipe.name}'s nic_families for an "
            "image that serves them all"
        )
    return jinja().get_template("Dockerfile.j2").render(
        plan=plan,
        version=__version__,
        source=recipe_source(plan),
        summary=summary(plan.recipe.description),
        stages=_stages(plan, layers, _build_args(plan, build_settings)),
        env=_dockerfile_env(plan, layers),
        labels=[f"{key}={docker_quote(value)}" for key, value in image_labels(plan).items()],
    )


def _build_args(plan: Plan, build_settings: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([name for name, _ in plan.recipe.build_env] + list(build_settings)))


def build_context(plan: Plan, build_settings: Sequence[str] = ()) -> dict[str, tuple[bytes, int]]:
    """Every file the Dockerfile copies, by context path, with its mode (`build_settings`: see render_dockerfile).

    Each COPY takes a directory holding its files at their image paths: the
    builder then gives the image's directories the context's fixed times,
    where a COPY of files would stamp them with the time of the build.
    """
    run_component = (RUNTIME / "run-component.sh").read_text(encoding="utf-8").replace("@IMAGE_EPOCH@", str(IMAGE_EPOCH))
    files = {
        "Dockerfile": (render_dockerfile(plan, build_settings).encode(), 0o644),
        "envbuild/engine/opt/envbuild/lib/engine.sh": (engine_text().encode(), 0o644),
        f"envbuild/engine{RUN_COMPONENT}": (run_component.encode(), 0o755),
        "envbuild/setup_deps/opt/envbuild/setup_deps.sh": (render_script(plan).encode(), 0o755),
    }
    for layer in _image_layers(plan):
        if layer.baked:
            files[layer.fragment_path] = (render_fragment(plan, plan.step(layer.name)).encode(), 0o644)
    return dict(sorted(files.items()))
