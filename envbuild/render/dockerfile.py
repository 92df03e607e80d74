"""The Dockerfile renderer: a pure function from a plan to a Dockerfile and its build context."""

from __future__ import annotations

from dataclasses import dataclass

from envbuild import __version__
from envbuild.errors import EnvbuildError
from envbuild.plan import Plan
from envbuild.formats import patches_field
from envbuild.render.script import RUNTIME, engine_text, render_fragment, render_script
from envbuild.render.templating import jinja, recipe_source, summary
from envbuild.runtime.nic import NIC_FAMILIES
from envbuild.shell import ENV_REFERENCE, quote


@dataclass(frozen=True)
class ImageLayer:
    """One component's place in the Dockerfile: baked in or left to the script, and why."""
    name: str
    baked: bool
    note: str
    context_path: str
    run: str


def docker_quote(value: str) -> str:
    """A double-quoted Dockerfile word in which nothing expands."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def _image_layers(plan: Plan) -> list[ImageLayer]:
    family = plan.nic_family
    layers = []
    for index, step in enumerate(plan.steps, 1):
        when = step.component.when
        assignments = {"ENVBUILD_COMPONENT": step.name}
        note, baked = "", True
        if when.nics and family not in when.nics:
            baked = False
            note = f"left to setup_deps.sh: needs NIC family {', '.join(when.nics)}, the image is built for {family or 'no family'}"
        elif when.node_ranks:
            note = f"baked in for every node; at run time setup_deps.sh skips it unless NODE_RANK is {', '.join(map(str, when.node_ranks))}"
            assignments["NODE_RANK"] = str(when.node_ranks[0])
        elif when.nics:
            note = f"baked in for NIC family {family}; at run time setup_deps.sh skips it unless the NIC family is {', '.join(when.nics)}"
        if step.nic_specific or when.nics:
            # The build cannot detect the cluster's NICs (it would find none and skip
            # a NIC-conditional component): the family is the image's.
            assignments["ENVBUILD_NIC_FAMILY"] = family
        if step.nic_specific:
            note = note or f"built for NIC family {family}; setup_deps.sh rebuilds it on other NICs"
        run = " ".join(f"{k}={quote(v)}" for k, v in assignments.items())
        run += f" bash /opt/envbuild/lib/run-component.sh {quote(step.name)}"
        layers.append(ImageLayer(step.name, baked, note, f"envbuild/components/{index:02d}-{step.name}.sh", run))
    return layers


def _dockerfile_env(plan: Plan, layers: list[ImageLayer]) -> list[str]:
    """ENV assignments with the default prefixes, equal to what setup_deps.sh exports.

    Like _eb_prepend, each env block prepends its values in plan order, so the last
    component's entries come first and a value already present is not repeated.
    """
    prefixes = dict(p for step in plan.steps for p in step.component.prefix)
    baked = {layer.name for layer in layers if layer.baked}
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
    """Deterministic labels; the build adds the volatile `created` one."""
    labels = {
        "org.opencontainers.image.title": f"envbuild/{plan.recipe.name}",
        "org.opencontainers.image.version": plan.hash[:12],
        "org.opencontainers.image.source": recipe_source(plan),
        "org.opencontainers.image.base.name": plan.recipe.base_image,
        "io.envbuild.recipe": plan.recipe.name,
        "io.envbuild.recipe-hash": plan.hash,
        "io.envbuild.nic-family": plan.nic_family,
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
    return labels


def render_dockerfile(plan: Plan) -> str:
    """The Dockerfile `envbuild image` builds: engine layer, a layer per component, ENV, labels last."""
    layers = _image_layers(plan)
    unflavoured = [s.name for s, layer in zip(plan.steps, layers) if s.nic_specific and layer.baked and not plan.nic_family]
    if unflavoured:
        raise EnvbuildError(
            f"{', '.join(unflavoured)} {'is' if len(unflavoured) == 1 else 'are'} built per NIC family and an image "
            "build cannot detect the cluster's NICs: give --cluster PROFILE or --nic-family " + "|".join(NIC_FAMILIES)
        )
    return jinja().get_template("Dockerfile.j2").render(
        plan=plan,
        version=__version__,
        source=recipe_source(plan),
        summary=summary(plan.recipe.description),
        layers=layers,
        env=_dockerfile_env(plan, layers),
        labels=[f"{key}={docker_quote(value)}" for key, value in image_labels(plan).items()],
    )


def build_context(plan: Plan) -> dict[str, tuple[bytes, int]]:
    """Every file the Dockerfile copies, by context path, with its mode."""
    files = {
        "Dockerfile": (render_dockerfile(plan).encode(), 0o644),
        "envbuild/engine.sh": (engine_text().encode(), 0o644),
        "envbuild/run-component.sh": ((RUNTIME / "run-component.sh").read_bytes(), 0o755),
        "envbuild/setup_deps.sh": (render_script(plan).encode(), 0o755),
    }
    for layer, step in zip(_image_layers(plan), plan.steps):
        if layer.baked:
            files[layer.context_path] = (render_fragment(plan, step).encode(), 0o644)
    return dict(sorted(files.items()))
