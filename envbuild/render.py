"""Renderers: pure functions from a plan to text (runtime script, fragments)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jinja2

from envbuild import __version__
from envbuild.errors import EnvbuildError
from envbuild.model import ENV_REFERENCE, Component, EnvSpec
from envbuild.plan import Plan, Step
from envbuild.shell import env_word, identifier, quote, words

TEMPLATES = Path(__file__).resolve().parent / "templates"
NIC_DETECTOR = Path(__file__).resolve().parent / "nic.py"
PATCH_APPLIER = Path(__file__).resolve().parent / "patchapply.py"


@lru_cache(maxsize=None)
def _jinja() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.globals["q"] = quote
    return env


def _embedded(path: Path, delimiter: str) -> str:
    """A stdlib-only program to embed in a quoted heredoc."""
    text = path.read_text(encoding="utf-8")
    if delimiter in text.splitlines():
        raise EnvbuildError(f"{path} holds the heredoc delimiter line {delimiter}")
    return text if text.endswith("\n") else text + "\n"


def engine_text() -> str:
    """The recipe-independent engine, with the NIC detector and the patch applier embedded."""
    return (
        (TEMPLATES / "engine.sh").read_text(encoding="utf-8")
        .replace("@NIC_DETECTOR@", _embedded(NIC_DETECTOR, "_EB_NIC_DETECT_PY_"))
        .replace("@PATCH_APPLIER@", _embedded(PATCH_APPLIER, "_EB_PATCH_APPLY_PY_"))
        .replace("@VERSION@", quote(__version__))
    )


def recipe_source(plan: Plan) -> str:
    """The recipe file as generated files name it: `<its directory>/<its name>`.

    Recipe.file is relative to the working directory (for messages), and generated
    text must not depend on where envbuild was run.
    """
    path = Path(plan.recipe.file).resolve()
    return f"{path.parent.name}/{path.name}"


def _summary(text: str) -> str:
    return text.strip().splitlines()[0]


def env_lines(env: EnvSpec) -> list[str]:
    """Shell lines that set and prepend the variables of an env block, in order."""
    lines = [f"_eb_set {name} {env_word(value)}" for name, value in env.set]
    for name, values in env.path:
        # Prepend in reverse so that the first value listed ends up first.
        lines += [f"_eb_prepend {name} {env_word(value)}" for value in reversed(values)]
    return lines


def _prelude(step: Step) -> list[str]:
    """The engine calls that come before the component's own build text."""
    c = step.component
    lines = []
    if c.apt:
        lines.append(f"_eb_apt {words(c.apt)}")
    for group in c.pip:
        lines.append(f"_eb_pip {words(group.options + group.requirements)}")
    if c.patch_manifest:
        lines.append(f"_eb_patch apply <(_eb_manifest_{identifier(step.name)})")
    source = c.source
    if source is not None and source.kind == "git":
        line = f"_eb_git {quote(source.url)} {quote(source.commit)} {int(source.submodules)} {quote(source.offline_name)}"
        # Unpinned (a branch and no lock): the commit is empty and the branch comes last.
        lines.append(line if source.pinned else f"{line} {quote(source.branch)}")
    elif source is not None:
        lines.append(f"_eb_download {quote(source.url)} {quote(source.sha256)} {quote(source.filename)}")
    return lines


def patches_field(component: Component) -> str:
    """`name=sha256,...` of the component's patch texts in applying order (provenance, labels)."""
    return ",".join(f"{name}={digest}" for name, digest in component.patch_hashes)


def _check(step: Step) -> str:
    c = step.component
    if c.check:
        return c.check.rstrip("\n")
    if c.source is not None and c.source.kind == "deb":
        return f"  _eb_deb_installed {quote(c.source.package)} {quote(c.source.version)}"
    if c.patch_manifest:
        return f"  _eb_patch verify <(_eb_manifest_{identifier(step.name)})"
    return "  :"


def render_fragment(plan: Plan, step: Step) -> str:
    """The component's registration, step, check and env functions."""
    c = step.component
    closure = plan.closure(step.name)
    prefix_vars = sorted({var for name in closure for var, _ in plan.step(name).component.prefix})
    env_chain = [name for name in closure if not plan.step(name).component.env.empty]
    return _jinja().get_template("component.sh.j2").render(
        step=step,
        c=c,
        id=identifier(step.name),
        summary=_summary(c.description),
        deps=" ".join(c.depends),
        ranks=" ".join(map(str, c.when.node_ranks)),
        nics=" ".join(c.when.nics),
        prefix_vars=" ".join(prefix_vars),
        env_chain=" ".join(env_chain),
        own_prefixes=" ".join(var for var, _ in c.prefix),
        uses_python=bool(c.pip) or "_eb_pip" in c.build,
        patch_hashes=patches_field(c),
        prelude=_prelude(step),
        check=_check(step),
        env_lines=env_lines(c.env),
    )


def _profile_json(plan: Plan) -> str:
    cluster = plan.recipe.cluster
    return json.dumps(cluster.profile(), sort_keys=True) if cluster is not None else ""


def render_recipe_part(plan: Plan) -> str:
    """Recipe-level values: name, cluster profile, recipe env."""
    return _jinja().get_template("recipe.sh.j2").render(
        plan=plan,
        profile_name=plan.recipe.cluster.name if plan.recipe.cluster else "",
        profile_json=_profile_json(plan),
        recipe_env_lines=env_lines(plan.recipe.env),
    )


def defined_functions(text: str) -> list[str]:
    return sorted(set(re.findall(r"^(_eb_\w+)\(\) \{", text, flags=re.M)))


def render_script(plan: Plan) -> str:
    body = _jinja().get_template("setup_deps.sh.j2").render(
        plan=plan,
        version=__version__,
        source=recipe_source(plan),
        summary=_summary(plan.recipe.description),
        engine=engine_text(),
        fragments=[render_fragment(plan, step) for step in plan.steps],
        recipe_part=render_recipe_part(plan),
        entry="@ENTRY@",
    )
    entry = (TEMPLATES / "entry.sh").read_text(encoding="utf-8")
    return body.replace("@ENTRY@\n", entry.replace("@FUNCTIONS@", " ".join(defined_functions(body + entry))))


@dataclass(frozen=True)
class ImageLayer:
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
    if plan.recipe.lock is not None:
        labels["io.envbuild.lock-hash"] = plan.recipe.lock.hash
    for step in plan.steps:
        source = step.component.source
        labels[f"io.envbuild.component.{step.name}.hash"] = step.hash
        labels[f"io.envbuild.component.{step.name}.source"] = source.pin if source else ""
        if step.component.patch_hashes:
            labels[f"io.envbuild.component.{step.name}.patches"] = patches_field(step.component)
    return labels


def render_dockerfile(plan: Plan) -> str:
    layers = _image_layers(plan)
    unflavoured = [s.name for s, layer in zip(plan.steps, layers) if s.nic_specific and layer.baked and not plan.nic_family]
    if unflavoured:
        raise EnvbuildError(
            f"{', '.join(unflavoured)} {'is' if len(unflavoured) == 1 else 'are'} built per NIC family and an image "
            "build cannot detect the cluster's NICs: give --cluster PROFILE or --nic-family ionic|mlx5|bnxt|none"
        )
    return _jinja().get_template("Dockerfile.j2").render(
        plan=plan,
        version=__version__,
        source=recipe_source(plan),
        summary=_summary(plan.recipe.description),
        layers=layers,
        env=_dockerfile_env(plan, layers),
        labels=[f"{key}={docker_quote(value)}" for key, value in image_labels(plan).items()],
    )


def build_context(plan: Plan) -> dict[str, tuple[bytes, int]]:
    """Every file the Dockerfile copies, by context path, with its mode."""
    files = {
        "Dockerfile": (render_dockerfile(plan).encode(), 0o644),
        "envbuild/engine.sh": (engine_text().encode(), 0o644),
        "envbuild/run-component.sh": ((TEMPLATES / "run-component.sh").read_bytes(), 0o755),
        "envbuild/setup_deps.sh": (render_script(plan).encode(), 0o755),
    }
    for layer, step in zip(_image_layers(plan), plan.steps):
        if layer.baked:
            files[layer.context_path] = (render_fragment(plan, step).encode(), 0o644)
    return dict(sorted(files.items()))
