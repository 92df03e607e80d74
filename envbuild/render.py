"""Renderers: pure functions from a plan to text (runtime script, fragments)."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import jinja2

from envbuild import __version__
from envbuild.model import EnvSpec
from envbuild.plan import Plan, Step
from envbuild.shell import env_word, identifier, quote, words

TEMPLATES = Path(__file__).resolve().parent / "templates"
NIC_DETECTOR = Path(__file__).resolve().parent / "nic.py"
STATE_DEFAULT = "/var/lib/envbuild"


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


def engine_text() -> str:
    return (TEMPLATES / "engine.sh").read_text(encoding="utf-8")


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
    source = c.source
    if source is not None and source.kind == "git":
        lines.append(f"_eb_git {quote(source.url)} {quote(source.commit)} {int(source.submodules)}")
    elif source is not None:
        filename = source.url.rstrip("/").rsplit("/", 1)[-1]
        lines.append(f"_eb_download {quote(source.url)} {quote(source.sha256)} {quote(filename)}")
    return lines


def _check(step: Step) -> str:
    c = step.component
    if c.check:
        return c.check.rstrip("\n")
    if c.source is not None and c.source.kind == "deb":
        return f"  _eb_deb_installed {quote(c.source.package)} {quote(c.source.version)}"
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
        prelude=_prelude(step),
        check=_check(step),
        env_lines=env_lines(c.env),
    )


def _nic_source() -> str:
    text = NIC_DETECTOR.read_text(encoding="utf-8") if NIC_DETECTOR.exists() else "raise SystemExit('envbuild: NIC detection is not available')\n"
    return text if text.endswith("\n") else text + "\n"


def _nic_args(plan: Plan) -> str:
    cluster = plan.recipe.cluster
    if cluster is None:
        return ""
    profile = {
        "name": cluster.name,
        "nic_family": cluster.nic_family or None,
        "rail_count": cluster.rail_count,
        "dscp": cluster.dscp,
        "service_level": cluster.service_level,
    }
    profile = {k: v for k, v in profile.items() if v is not None}
    return f"--profile-json {quote(json.dumps(profile, sort_keys=True))} "


def render_script(plan: Plan) -> str:
    fragments = [render_fragment(plan, step) for step in plan.steps]
    prefixes = sorted({p for step in plan.steps for p in step.component.prefix})
    text = _jinja().get_template("setup_deps.sh.j2").render(
        plan=plan,
        version=__version__,
        summary=_summary(plan.recipe.description),
        profile_name=plan.recipe.cluster.name if plan.recipe.cluster else "",
        state_default=STATE_DEFAULT,
        all_prefix_vars=" ".join(var for var, _ in prefixes),
        engine=engine_text(),
        prefixes=prefixes,
        recipe_env_lines=env_lines(plan.recipe.env),
        nic_args=_nic_args(plan),
        nic_source=_nic_source(),
        fragments=fragments,
        functions="__FUNCTIONS__",
    )
    functions = sorted(set(re.findall(r"^(_eb_\w+)\(\) \{", text, flags=re.M)))
    return text.replace("__FUNCTIONS__", " ".join(functions))
