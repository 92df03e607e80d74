"""The runtime script renderer: a pure function from a plan to a standalone bash script."""

from __future__ import annotations

import json
import re
from pathlib import Path

from envbuild import __version__
from envbuild.errors import EnvbuildError
from envbuild.formats import STATE_DIR_DEFAULT, patches_field, provenance_writer_words
from envbuild.plan import Plan, Step
from envbuild.runtime.nic import FAMILIES, NIC_FAMILIES, NO_NIC
from envbuild.render.templating import jinja, recipe_source, summary
from envbuild.shell import PATH_REFERENCE, env_word, identifier, quote, words
from envbuild.spec.model import Component, EnvSpec, PipGroup
from envbuild.spec.schema import PREFIX_RULE, SYSTEM_DIRECTORIES
from envbuild.spec.patches import manifest_text

RUNTIME = Path(__file__).resolve().parent.parent / "runtime"
ENGINE = RUNTIME / "engine"
NIC_DETECTOR = RUNTIME / "nic.py"
PATCH_APPLIER = RUNTIME / "patchapply.py"
PIP_GUARD = RUNTIME / "pipguard.py"
# The engine's source, by concern, in the order the script holds them.
ENGINE_PARTS = ("core.sh", "steps.sh", "needs.sh", "lock.sh", "cache.sh", "txn.sh", "main.sh")
MANIFEST_DELIMITER = "_EB_MANIFEST_"


def _embedded(path: Path, delimiter: str) -> str:
    """A stdlib-only program to embed in a quoted heredoc."""
    text = path.read_text(encoding="utf-8")
    if delimiter in text.splitlines():
        raise EnvbuildError(f"{path} holds the heredoc delimiter line {delimiter}")
    return text if text.endswith("\n") else text + "\n"


def _engine_file(name: str) -> str:
    """An engine source file with what envbuild's Python defines filled in."""
    families = NIC_FAMILIES
    return (
        (ENGINE / name).read_text(encoding="utf-8")
        .replace("@VERSION@", quote(__version__))
        .replace("@NIC_FAMILY_PATTERN@", " | ".join(families))
        .replace("@NIC_FAMILY_WORDS@", " ".join(families))
        .replace("@NIC_FAMILY_CHOICES@", "|".join(families))
        .replace("@NO_NIC@", NO_NIC)
        .replace("@STATE_DIR_DEFAULT@", quote(STATE_DIR_DEFAULT))
        .replace("@SYSTEM_DIRECTORIES@", _case_patterns(SYSTEM_DIRECTORIES))
        .replace("@PREFIX_RULE@", PREFIX_RULE)
        .replace("@PROVENANCE_RECORD@", provenance_writer_words())
        .replace("@NIC_VENDOR_CASES@", "\n      ".join(f"{quote(family.vendor_id)}) family={name} ;;"
                                                     for name, family in FAMILIES.items()))
    )


def _case_patterns(values, width: int = 96) -> str:
    """`a | b | ...` for a case branch of the engine, in lines of about `width` characters."""
    lines = [""]
    for word in map(quote, values):
        if lines[-1] and len(lines[-1]) + len(word) > width:
            lines.append("")
        lines[-1] += f"{word} | "
    return " \\\n    ".join(line.rstrip() for line in lines)[:-2]


def _programs(nic_detector: bool) -> str:
    """The embedded programs: the patch applier, the pip guard, and the NIC detector when wanted."""
    text = (_engine_file("programs.sh")
            .replace("@PATCH_APPLIER@", _embedded(PATCH_APPLIER, "_EB_PATCH_APPLY_PY_"))
            .replace("@PIP_GUARD@", _embedded(PIP_GUARD, "_EB_PIPGUARD_PY_")))
    if nic_detector:
        return text.replace("@NIC_DETECTOR@", _embedded(NIC_DETECTOR, "_EB_NIC_DETECT_PY_"))
    start = text.index("_eb_nic_detect() {")
    end = text.index("_EB_NIC_DETECT_PY_\n}\n", start) + len("_EB_NIC_DETECT_PY_\n}\n")
    return text[:start] + NO_NIC_DETECTOR + text[end:]


NO_NIC_DETECTOR = """# The recipe needs no NIC detection (no NIC-specific component, condition or
# cluster profile), so the detector was left out of this script.
_eb_nic_detect() {
  _eb_warn "this script was rendered without the NIC detector (its recipe needs none); use envbuild detect-nic"
  return 2
}
"""


def uses_python(component: Component) -> bool:
    """Whether the component installs Python packages (pip groups, or _eb_pip or _eb_pip_into in its build):
    what it builds then depends on the Python (the shared cache's key says which)."""
    return bool(component.pip) or "_eb_pip" in component.build


# An _eb_pip call, which installs into the Python's site-packages (not _eb_pip_into, _eb_pip_base).
_SITE_PACKAGES_PIP = re.compile(r"(?<![\w-])_eb_pip(?![\w-])")


def writes_site_packages(component: Component) -> bool:
    """Whether the component installs into the Python's site-packages, a place every component shares
    (pip groups, or _eb_pip in its build); _eb_pip_into installs into a prefix of its own."""
    return bool(component.pip) or bool(_SITE_PACKAGES_PIP.search(component.build))


def engine_text() -> str:
    """The whole recipe-independent engine, both programs embedded: what an image's layer holds."""
    return _engine_file("registry.sh") + "".join("\n" + _engine_file(part) for part in ENGINE_PARTS) \
        + "\n" + _programs(nic_detector=True)


def needs_nic_detector(plan: Plan) -> bool:
    """Whether the script must detect NICs: a NIC-specific build, a `when: nic` condition or a profile."""
    return plan.recipe.cluster is not None or any(s.nic_specific or s.component.when.nics for s in plan.steps)


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
        lines += _pip_lines(group)
    if c.patch_specs:
        lines.append(f"_eb_patch apply <(_eb_manifest_{identifier(step.name)})")
    if c.source is not None:
        lines.append(c.source.prelude())
    return lines


def _pip_lines(group: PipGroup) -> list[str]:
    """The engine calls of a pip group. A locked group installs exactly its locked packages,
    hash-checked, after checking that the base image has what the lock took from it. The
    group's package index options come first, counted (`_eb_pip_indexed N`), so that an
    install from offline sources leaves them out."""
    index, options = group.split_options()
    pip = f"_eb_pip_indexed {len(index)} {words(index)}" if index else "_eb_pip"
    if not group.locked and not group.base:
        return [f"{pip} {words(options + group.requirements)}"]
    lines = [f"_eb_pip_base {words(group.base)}"] if group.base else []
    if group.locked:
        options = ("--require-hashes", "--no-deps") + options
        lines.append(f"{pip} {words(options)} -r <(printf '%s\\n' {words(group.locked)})")
    return lines


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


def _needs(c: Component) -> list[str]:
    """The engine calls that check what the component needs of the base image."""
    lines = [f"_eb_need_command {quote(command)}" for command in c.needs.commands]
    for path in c.needs.files:
        word = env_word(path, PATH_REFERENCE)
        # A path with variables is also named as written, so a message can say which to set.
        lines.append(f"_eb_need_file {word}" + (f" {quote(path)}" if word != quote(path) else ""))
    if c.needs.python_headers:
        lines.append("_eb_need_python_headers")
    return lines


def render_fragment(plan: Plan, step: Step) -> str:
    """The component's registration, step, check, patches and env functions."""
    c = step.component
    closure = plan.closure(step.name)
    python = uses_python(c)
    manifest = manifest_text(c.patch_specs) if c.patch_specs else ""
    if MANIFEST_DELIMITER in manifest.splitlines():
        raise EnvbuildError(f"a patch of {step.name} holds the line {MANIFEST_DELIMITER}, which ends its heredoc")
    fields = {
        "hash": step.hash,
        "depends": " ".join(c.depends),
        "condition": c.when.describe(),
        "node_ranks": " ".join(map(str, c.when.node_ranks)),
        "nics": " ".join(c.when.nics),
        "nic_specific": "1" if step.nic_specific else "",
        "prefix_vars": " ".join(sorted({var for name in closure for var, _ in plan.step(name).component.prefix})),
        "own_prefixes": " ".join(var for var, _ in c.prefix),
        "env_chain": " ".join(name for name in closure if not plan.step(name).component.env.empty),
        "uses_python": "1" if python else "",
        "gpu_target": plan.recipe.gpu_target,
        "protected": " ".join(plan.recipe.python_protected) if python else "",
        "source": c.source.pin if c.source else "",
        "patches": patches_field(c.patch_hashes),
    }
    return jinja().get_template("component.sh.j2").render(
        step=step,
        c=c,
        id=identifier(step.name),
        summary=summary(c.description),
        fields=[(name, value) for name, value in fields.items() if value and (name, value) != ("condition", "always")],
        prelude=_prelude(step),
        check=_check(step),
        needs=_needs(c),
        env_lines=env_lines(c.env),
        manifest=manifest,
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
    """The _eb_ functions a script defines: what a sourced run unsets before it returns."""
    return sorted(set(re.findall(r"^(_eb_\w+)\(\) \{", text, flags=re.M)))


def render_script(plan: Plan) -> str:
    """The standalone runtime script: header, recipe and components, engine, programs, entry."""
    nic_detector = needs_nic_detector(plan)
    body = jinja().get_template("setup_deps.sh.j2").render(
        plan=plan,
        version=__version__,
        source=recipe_source(plan),
        summary=summary(plan.recipe.description),
        registry=_engine_file("registry.sh"),
        recipe_part=render_recipe_part(plan),
        fragments=[render_fragment(plan, step) for step in plan.steps],
        engine="\n".join(_engine_file(part) for part in ENGINE_PARTS),
        programs=_programs(nic_detector),
        program_names="patch applier, pip guard" + (", NIC detector" if nic_detector else ""),
        entry="@ENTRY@",
    )
    entry = (ENGINE / "entry.sh").read_text(encoding="utf-8")
    return body.replace("@ENTRY@\n", entry.replace("@FUNCTIONS@", " ".join(defined_functions(body + entry))))
