"""The runtime script renderer: a pure function from a plan to a standalone bash script."""

from __future__ import annotations

import json
import re
from pathlib import Path

from envbuild import __version__
from envbuild.errors import EnvbuildError
from envbuild.plan import Plan, Step
from envbuild.render.templating import jinja, recipe_source, summary
from envbuild.shell import env_word, identifier, quote, words
from envbuild.spec.model import Component, EnvSpec
from envbuild.spec.patches import manifest_json

RUNTIME = Path(__file__).resolve().parent.parent / "runtime"
ENGINE = RUNTIME / "engine"
NIC_DETECTOR = RUNTIME / "nic.py"
PATCH_APPLIER = RUNTIME / "patchapply.py"


def _embedded(path: Path, delimiter: str) -> str:
    """A stdlib-only program to embed in a quoted heredoc."""
    text = path.read_text(encoding="utf-8")
    if delimiter in text.splitlines():
        raise EnvbuildError(f"{path} holds the heredoc delimiter line {delimiter}")
    return text if text.endswith("\n") else text + "\n"


def engine_text() -> str:
    """The recipe-independent engine, with the NIC detector and the patch applier embedded."""
    return (
        (ENGINE / "engine.sh").read_text(encoding="utf-8")
        .replace("@NIC_DETECTOR@", _embedded(NIC_DETECTOR, "_EB_NIC_DETECT_PY_"))
        .replace("@PATCH_APPLIER@", _embedded(PATCH_APPLIER, "_EB_PATCH_APPLY_PY_"))
        .replace("@VERSION@", quote(__version__))
    )


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
    if c.patch_specs:
        lines.append(f"_eb_patch apply <(_eb_manifest_{identifier(step.name)})")
    if c.source is not None:
        lines.append(c.source.prelude())
    return lines


def patches_field(component: Component) -> str:
    """`name=sha256,...` of the component's patch texts in applying order (provenance, labels)."""
    return ",".join(f"{name}={digest}" for name, digest in component.patch_hashes)


def _check(step: Step) -> str:
    c = step.component
    if c.check:
        return c.check.rstrip("\n")
    default = c.source.default_check() if c.source is not None else None
    if default:
        return f"  {default}"
    if c.patch_specs:
        return f"  _eb_patch verify <(_eb_manifest_{identifier(step.name)})"
    return "  :"


def render_fragment(plan: Plan, step: Step) -> str:
    """The component's registration, step, check and env functions."""
    c = step.component
    closure = plan.closure(step.name)
    prefix_vars = sorted({var for name in closure for var, _ in plan.step(name).component.prefix})
    env_chain = [name for name in closure if not plan.step(name).component.env.empty]
    return jinja().get_template("component.sh.j2").render(
        step=step,
        c=c,
        id=identifier(step.name),
        summary=summary(c.description),
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
        manifest=manifest_json(c.patch_specs) if c.patch_specs else "",
    )


def _profile_json(plan: Plan) -> str:
    profile = plan.recipe.nic_profile()
    return json.dumps(profile, sort_keys=True) if profile else ""


def render_recipe_part(plan: Plan) -> str:
    """Recipe-level values: name, cluster profile, recipe env."""
    return jinja().get_template("recipe.sh.j2").render(
        plan=plan,
        profile_name=plan.recipe.cluster.name if plan.recipe.cluster else "",
        profile_json=_profile_json(plan),
        recipe_env_lines=env_lines(plan.recipe.env),
    )


def defined_functions(text: str) -> list[str]:
    return sorted(set(re.findall(r"^(_eb_\w+)\(\) \{", text, flags=re.M)))


def render_script(plan: Plan) -> str:
    body = jinja().get_template("setup_deps.sh.j2").render(
        plan=plan,
        version=__version__,
        source=recipe_source(plan),
        summary=summary(plan.recipe.description),
        engine=engine_text(),
        fragments=[render_fragment(plan, step) for step in plan.steps],
        recipe_part=render_recipe_part(plan),
        entry="@ENTRY@",
    )
    entry = (ENGINE / "entry.sh").read_text(encoding="utf-8")
    return body.replace("@ENTRY@\n", entry.replace("@FUNCTIONS@", " ".join(defined_functions(body + entry))))
