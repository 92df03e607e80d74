"""The envbuild command line: a thin layer over the library (pipeline, render, run)."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import textwrap
from functools import reduce
from pathlib import Path
from typing import Callable

import click
import yaml
from click.shell_completion import CompletionItem

from envbuild import __version__, outfile
from envbuild.errors import EXIT_INTERRUPTED, EXIT_MISMATCH, EXIT_STATUSES, EXIT_USAGE, EnvbuildError, MismatchError, \
    RecipeError, UsageError, counted
from envbuild.pipeline import command_line, load_plan, open_library
from envbuild.plan import Plan
from envbuild.runtime.nic import NIC_FAMILIES
from envbuild.shell import quote
from envbuild.spec.schema import ENV_NAME_RE, Checker, image_reference
from envbuild.spec.loader import RECIPE_VARIABLE, RECIPES_VARIABLE, Library
from envbuild.spec.yamlfile import display_path


class Output:
    """What a command prints besides its result, all on stderr: warnings (each distinct one
    once per command) and progress; --quiet silences both. Results go to stdout."""

    def __init__(self):
        self.quiet = False
        self._warned: set[str] = set()

    def warn(self, text: str) -> None:
        if text in self._warned:
            return
        self._warned.add(text)
        if not self.quiet:
            click.echo(f"envbuild: warning: {text}", err=True)

    def say(self, text: str) -> None:
        if not self.quiet:
            click.echo(f"envbuild: {text}", err=True)


def output() -> Output:
    """The current command's Output (one per invocation)."""
    return click.get_current_context().find_root().ensure_object(Output)


def emit_json(doc) -> None:
    """A --format json result: one JSON document on stdout, keys sorted."""
    click.echo(json.dumps(doc, indent=2, sort_keys=True))


def _quiet(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_root().ensure_object(Output).quiet = True


class Command(click.Command):
    """Every command takes --quiet."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.params.append(click.Option(["--quiet", "-q"], is_flag=True, expose_value=False, callback=_quiet,
                                        help="Print errors only: no warnings, no progress (results still go to stdout)."))


class Group(click.Group):
    """Prints errors as plain lines on stderr with their exit code, never a traceback.

    Recipe problems come one per line as `file:line: key: message`, like a
    compiler's, each distinct one once. Ctrl-C ends any command with status 130.
    """

    command_class = Command
    group_class = type  # subgroups are Groups too

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RecipeError as exc:
            for problem in dict.fromkeys(exc.problems):
                click.echo(str(problem), err=True)
            sys.exit(exc.exit_code)
        except EnvbuildError as exc:
            for line in dict.fromkeys(str(exc).splitlines() or [""]):
                click.echo(f"envbuild: error: {line}", err=True)
            sys.exit(exc.exit_code)
        except (KeyboardInterrupt, click.Abort):
            click.echo("\nenvbuild: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)


# --- completion of recipe, cluster and patch names ------------------------------------------


def _library(ctx: click.Context) -> Library | None:
    try:
        return Library(ctx.params.get("recipes_dir"))
    except RecipeError:
        return None


def _complete(names: Callable[[Library], list[str]], files: bool = False):
    """A shell_complete function offering the names of a library (and files, for recipes given as paths)."""
    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        if files and (incomplete.startswith((".", "/", "~")) or "/" in incomplete):
            return [CompletionItem(incomplete, type="file")]
        library = _library(ctx)
        found = [CompletionItem(name) for name in names(library) if name.startswith(incomplete)] if library else []
        return found + ([CompletionItem(incomplete, type="file")] if files else [])
    return complete


complete_recipe = _complete(Library.recipe_names, files=True)
complete_cluster = _complete(Library.cluster_names)
complete_patch = _complete(lambda library: sorted(library.patch_catalog()))

# --- options -----------------------------------------------------------------------------------

recipes_dir_option = click.option(
    "--recipes-dir", type=click.Path(path_type=Path), envvar=RECIPES_VARIABLE,
    help=f"Directory of recipes, components/ and clusters/ (default: the built-in recipes; or {RECIPES_VARIABLE}).",
)
recipe_option = click.option(
    "--recipe", "-r", metavar="NAME|FILE", envvar=RECIPE_VARIABLE, shell_complete=complete_recipe,
    help=f"A recipe name in the recipes directory, or a recipe file (default: {RECIPE_VARIABLE}, else the "
         "one the recipes directory names in its `default` file; the built-in default is mi355x-moriio).")
cluster_option = click.option("--cluster", metavar="PROFILE", shell_complete=complete_cluster,
                              help="Cluster profile from clusters/ (NIC family, QoS fallbacks, env).")
nic_family_option = click.option("--nic-family", type=click.Choice(NIC_FAMILIES),
                                 help="Build NIC-specific components (MoRI) for this family; overrides the profile's.")


def _base_image(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--base-image, checked as a recipe's base_image is (UsageError)."""
    checker = Checker(f"--{param.name.replace('_', '-')}")
    if value is not None and not image_reference(checker, value, 0, ""):
        raise UsageError(str(checker.problems[0]))
    return value


base_image_option = click.option("--base-image", metavar="IMAGE", callback=_base_image,
                                 help="Use this base image instead of the recipe's.")
require_lock_option = click.option("--require-lock", is_flag=True,
                                   help="Refuse to render unless <recipes-dir>/<recipe>.lock exists and agrees with the recipe.")
strict_option = click.option("--strict", is_flag=True,
                             help="With --require-lock (implied): also refuse a lock in which anything is unverified "
                                  "or unresolved, naming each.")


def format_option(*choices: str, default: str = "text"):
    return click.option("--format", "fmt", type=click.Choice(choices or ("text", "json")), default=default,
                        show_default=True, help="text for people; json for programs (README: JSON output).")


def plan_options(*extra):
    """The options every command that makes a plan takes, in one decorator."""
    options = (recipe_option, recipes_dir_option, cluster_option, nic_family_option, *extra)
    return lambda command: reduce(lambda decorated, option: option(decorated), reversed(options), command)


def make_plan(recipes_dir: Path | None, recipe: str | None, cluster: str | None = None,
              nic_family: str | None = None, base_image: str | None = None, require_lock: bool = False,
              strict: bool = False) -> Plan:
    """The plan a command works on, its warnings printed on stderr."""
    plan = load_plan(recipes_dir, recipe, cluster, nic_family, base_image)
    if require_lock or strict:
        plan.require_lock(strict)
    for warning in plan.warnings():
        output().warn(warning)
    return plan


def write_output(text: str, output_path: str | None, mode: int = 0o644) -> None:
    """Writes a command's result (outfile.write) and says where on stderr (unless --quiet)."""
    written = outfile.write(text, output_path, mode)
    if written is not None:
        output().say(f"wrote {written}")


output_option = click.option(
    "-o", "--output", metavar="FILE",
    help="Write here instead of stdout ('-' is stdout). Written whole or not at all (temporary file and rename); "
         "a new file is executable, an existing one keeps its mode, a device such as /dev/null is written as is.")

EXIT_STATUS_HELP = "\b\nExit status (the same for setup_deps.sh):\n" + "\n".join(
    f"  {code:<4} {meaning}" for code, meaning in EXIT_STATUSES)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_STATUS_HELP)
@click.version_option(__version__, prog_name="envbuild")
def main():
    """Declarative recipes for the GPU-cluster communication stack.

    A recipe says which components (UCX, RIXL, MoRI, etcd, ...) go on top of
    which base image. envbuild renders it as an idempotent runtime script or
    bakes it into an image, and detects the node's RDMA NICs:

    \b
      envbuild runtime-script > setup_deps.sh
      envbuild image --recipe mi355x-moriio
      envbuild detect-nic

    Every command takes --quiet (errors only); those that report take
    --format json. Shell completion of commands, recipes and cluster profiles:

    \b
      eval "$(_ENVBUILD_COMPLETE=bash_source envbuild)"    # in ~/.bashrc
      eval "$(_ENVBUILD_COMPLETE=zsh_source envbuild)"     # in ~/.zshrc
    """


@main.command("list")
@recipes_dir_option
@format_option()
def list_recipes(recipes_dir, fmt):
    """List the recipes, one line each; the default one is marked."""
    library = Library(recipes_dir)
    default = library.default_recipe()
    rows = []
    for name in library.recipe_names():
        recipe = library.recipe(name)
        rows.append({"name": name, "summary": recipe.description.splitlines()[0], "description": recipe.description,
                     "file": recipe.file, "base_image": recipe.base_image, "default": name == default})
    if fmt == "json":
        emit_json({"recipes_dir": display_path(library.root), "default": default, "recipes": rows})
        return
    for row in rows:
        click.echo(f"{row['name']:<20} {row['summary']}" + ("  (default)" if row["default"] else ""))


@main.command()
@click.argument("target", required=False, metavar="[RECIPE|PATH]", shell_complete=complete_recipe)
@recipes_dir_option
@cluster_option
@nic_family_option
@format_option()
def validate(target, recipes_dir, cluster, nic_family, fmt):
    """Check recipes, components and cluster profiles; exit 2 on any problem.

    RECIPE is a recipe name or file; PATH a recipes directory. With no argument,
    the recipes directory is checked: every recipe, and every component and
    cluster profile even if no recipe uses it. All problems are reported, each once.
    """
    if target and Path(target).is_dir():
        recipes_dir, target = Path(target), None
    library = Library(recipes_dir)
    problems = []
    valid = []
    for name in [target] if target else library.recipe_names():
        try:
            plan = make_plan(recipes_dir, name, cluster, nic_family)
        except RecipeError as exc:
            problems.extend(exc.problems)
            continue
        valid.append({"name": plan.recipe.name, "file": plan.recipe.file, "components": len(plan.steps),
                      "hash": plan.hash})
    if not target:
        try:
            library.default_recipe()
        except RecipeError as exc:
            problems.extend(exc.problems)
        loaders = [(library.component, library.component_names()), (library.cluster, library.cluster_names())]
        for load, names in loaders:
            for name in names:
                try:
                    load(name)
                except RecipeError as exc:
                    problems.extend(exc.problems)
    problems = list(dict.fromkeys(problems))
    if fmt == "json":
        emit_json({"ok": not problems, "recipes": valid, "problems": [dataclasses.asdict(p) for p in problems]})
        if problems:
            sys.exit(EXIT_USAGE)
        return
    for row in valid:
        click.echo(f"{row['name']}: ok ({counted(row['components'], 'component')}, hash {row['hash'][:12]})")
    if problems:
        raise RecipeError(problems)


@main.command()
@plan_options(require_lock_option, strict_option, format_option())
def plan(recipe, recipes_dir, cluster, nic_family, require_lock, strict, fmt):
    """Show the install order, content hashes, conditions and reasons."""
    the_plan = make_plan(recipes_dir, recipe, cluster, nic_family, require_lock=require_lock, strict=strict)
    rows = [
        {
            "name": s.name,
            "hash": s.hash,
            "depends": list(s.component.depends),
            "condition": s.component.when.describe(),
            "nic_specific": s.nic_specific,
            "source": s.component.source.pin if s.component.source else None,
            "pip": [{"requirements": list(g.requirements), "options": list(g.options), "locked": list(g.locked),
                     "base": list(g.base)} for g in s.component.pip],
            "reason": s.reason,
        }
        for s in the_plan.steps
    ]
    lock = the_plan.lock
    recipe_ = the_plan.recipe
    if fmt == "json":
        emit_json({
            "recipe": recipe_.name,
            "hash": the_plan.hash,
            "base_image": recipe_.base_image,
            "python": dataclasses.asdict(recipe_.python) if recipe_.python else None,
            "gpu_target": recipe_.gpu_target or None,
            "cluster": recipe_.cluster.name if recipe_.cluster and recipe_.cluster.name else None,
            "nic_family": the_plan.nic_family or None,
            "nic_families": list(the_plan.nic_families),
            "lock": {"file": lock.display, "hash": lock.hash} if lock else None,
            "components": rows,
        })
        return
    click.echo(f"recipe {recipe_.name} (hash {the_plan.hash[:12]}) on {recipe_.base_image}")
    if lock:
        click.echo(f"lock {lock.display} (hash {lock.hash[:12]})")
    if recipe_.cluster and recipe_.cluster.name:
        click.echo(f"cluster profile {recipe_.cluster.name}")
    if the_plan.nic_family:
        click.echo(f"NIC family {the_plan.nic_family}")
    elif the_plan.nic_families:
        click.echo(f"NIC families {', '.join(the_plan.nic_families)}: an image builds each component built per "
                   "NIC family once for each")
    for index, row in enumerate(rows, 1):
        flavour = ", built per NIC family" if row["nic_specific"] else ""
        click.echo(f"{index}. {row['name']:<20} {row['hash'][:12]}  when {row['condition']}{flavour}")
        click.echo(f"   {row['reason']}" + (f"; needs {', '.join(row['depends'])}" if row["depends"] else ""))
        if row["source"]:
            click.echo(f"   source {row['source']}")


@main.command("runtime-script")
@plan_options(require_lock_option, strict_option, output_option)
def runtime_script(recipe, recipes_dir, cluster, nic_family, require_lock, strict, output):
    """Write the standalone, idempotent setup script for a recipe.

    The script needs only bash (and what the install steps themselves use).
    Run it, or source it so that the components' environment is exported:

    \b
      envbuild runtime-script > setup_deps.sh
      bash setup_deps.sh --check
    """
    from envbuild.render.script import render_script

    plan = make_plan(recipes_dir, recipe, cluster, nic_family, require_lock=require_lock, strict=strict)
    write_output(render_script(plan), output, 0o755)


@main.command()
@plan_options(base_image_option, require_lock_option, strict_option)
@click.option("--check", "check_dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Exit 3 if DIR/<recipe>.<cluster or family>.Dockerfile is missing or differs from what would be "
                   "rendered; the message gives the command that writes it.")
def dockerfile(recipe, recipes_dir, cluster, nic_family, base_image, require_lock, strict, check_dir):
    """Print the Dockerfile that `envbuild image` builds.

    One layer per component in plan order, each running the same install step
    as the runtime script; the build context holds the engine, one file per
    component and the runtime script itself.
    """
    from envbuild.render.dockerfile import render_dockerfile

    plan = make_plan(recipes_dir, recipe, cluster, nic_family, base_image, require_lock, strict)
    text = render_dockerfile(plan)
    if check_dir is None:
        click.echo(text, nl=False)
        return
    path = check_dir / dockerfile_name(plan)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        click.echo(f"{path}: up to date")
        return
    command = command_line("dockerfile", recipes_dir, recipe or plan.recipe.name, cluster, nic_family,
                           ["--base-image", base_image] if base_image else [])
    command += f" > {quote(path)}"
    if path.exists():
        raise MismatchError(f"{path} is out of date; render it again with: {command}")
    if check_dir.is_dir():
        raise MismatchError(f"{path} does not exist; write it with: {command}")
    raise MismatchError(f"{path} does not exist, nor does its directory; write it with: "
                        f"mkdir -p {quote(check_dir)} && {command}")


def dockerfile_name(plan: Plan) -> str:
    """<recipe>.<cluster or NIC family>.Dockerfile, as dockerfiles/ names them."""
    cluster = plan.recipe.cluster
    suffix = cluster.name if cluster and cluster.name else plan.nic_family or "any-nic"
    return f"{plan.recipe.name}.{suffix}.Dockerfile"


def _image_tags(ctx: click.Context, param: click.Parameter, tags: tuple[str, ...]) -> tuple[str, ...]:
    """--tag values, each checked as an image reference before anything is planned (UsageError)."""
    from envbuild.run.registry import parse_reference

    for tag in tags:
        parse_reference(tag)
    return tags


@main.command()
@plan_options(base_image_option, require_lock_option, strict_option)
@click.option("--tag", "-t", "tags", multiple=True, metavar="TAG", callback=_image_tags,
              help="Image tag; give it again for more tags (default: envbuild/<recipe>:<recipe hash prefix>).")
@click.option("--no-cache", is_flag=True, help="Build every layer again, even if the tagged image exists.")
@click.option("--pull/--no-pull", default=None,
              help="--pull refreshes the base image; --no-pull refuses to build when it is not local. "
                   "Default: the engine pulls it only when missing.")
@click.option("--dry-run", is_flag=True, help="Print the Dockerfile and the build context's files; build nothing.")
@click.option("--network", metavar="MODE",
              help="Network of the RUN steps, as for `docker build --network` (e.g. host, none). "
                   "Default: the engine's bridge.")
@click.option("--verbose", "-v", is_flag=True, help="Show every line the build steps print.")
@click.option("--build-env", "build_env", multiple=True, metavar="NAME=VALUE",
              help="A setting the steps see (a proxy, a package index), over the recipe's build_env; "
                   "never in the image's ENV, labels or hashes. Repeatable.")
@click.option("--build-secret", "build_secrets", multiple=True, metavar="NAME",
              help="Like --build-env, with the value of NAME in envbuild's environment, shown as *** in "
                   "the output. Repeatable.")
@click.option("--push", is_flag=True, help="After a successful build, push every tag to its registry and print "
                                            "TAG@DIGEST for each.")
@click.option("--sources", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="DIR",
              help="Install from DIR (written by envbuild fetch, on the engine's machine) with no network: the "
                   "steps reach DIR, served read-only, and nothing else; nothing of it stays in the image.")
@format_option()
def image(recipe, recipes_dir, cluster, nic_family, base_image, require_lock, strict, tags, no_cache, pull, dry_run,
          network, verbose, build_env, build_secrets, push, sources, fmt):
    """Bake a recipe into an image on the local Docker engine (DOCKER_HOST is honoured).

    Each component gets its own layer, in plan order, running the same step as
    the runtime script and writing the same stamps, so `setup_deps.sh` inside
    the image finds nothing to install. Without --cluster or --nic-family, what
    is built per NIC family (MoRI) is built for each family the recipe lists
    (nic_families), and sourcing setup_deps.sh at container start activates the
    node's. An image whose tag exists and holds the same recipe hash (label
    io.envbuild.recipe-hash) is reused. With --sources
    DIR the steps install from an `envbuild fetch` directory and have no
    network (the base image needs python3 and git to serve it to them).
    """
    from envbuild.render.dockerfile import build_context
    from envbuild.run.docker_engine import BuildProgress
    from envbuild.run.image import bake, default_tag, push_tags, step_settings, summary_lines

    plan = make_plan(recipes_dir, recipe, cluster, nic_family, base_image, require_lock, strict)
    tags = list(tags) or [default_tag(plan)]
    settings = _build_settings(build_env, build_secrets)
    if dry_run:
        files = build_context(plan, list(step_settings(settings, sources)))
        click.echo(files["Dockerfile"][0].decode(), nl=False)
        click.echo(f"\n# build context of {', '.join(tags)}:")
        for path, (data, mode) in files.items():
            click.echo(f"#   {mode:04o} {len(data):>8} {path}")
        return
    say, quiet = output().say, output().quiet
    try:
        secrets = [settings[name] for name in build_secrets]
        baked = bake(plan, tags, no_cache=no_cache, pull=pull, network=network, say=say, build_env=settings,
                     progress=BuildProgress(verbose=verbose, quiet=quiet, redact=secrets), sources=sources)
    except KeyboardInterrupt:
        click.echo("envbuild: build interrupted; the engine cancelled it", err=True)
        sys.exit(130)
    if fmt != "json":
        if baked.reused:
            click.echo(f"envbuild: {tags[0]} already exists (same recipe hash); reusing it. "
                       "--no-cache builds it again.")
        else:
            for line in summary_lines(baked):
                say(line)
            say(f"built {', '.join(tags)} ({baked.image_id[:19]}) in {baked.seconds:.1f} s")
    pushed = push_tags(tags, say=say, quiet=quiet) if push else []
    if fmt == "json":
        doc = dataclasses.asdict(baked)
        if push:
            doc["pushed"] = [dataclasses.asdict(each) for each in pushed]
        emit_json(doc)
        return
    for each in pushed:
        click.echo(f"{each.tag}@{each.digest}")


def _build_settings(assignments: tuple[str, ...], secrets: tuple[str, ...]) -> dict[str, str]:
    """--build-env NAME=VALUE and --build-secret NAME (from the environment) as {NAME: VALUE}."""
    settings = {}
    for assignment in assignments:
        name, equals, value = assignment.partition("=")
        if not equals or not ENV_NAME_RE.match(name):
            raise UsageError(f"--build-env {assignment!r}: expected NAME=VALUE with NAME a variable name")
        settings[name] = value
    for name in secrets:
        if not ENV_NAME_RE.match(name):
            raise UsageError(f"--build-secret {name!r}: expected the name of a variable of envbuild's environment")
        if name not in os.environ:
            raise UsageError(f"--build-secret {name}: {name} is not set in envbuild's environment")
        settings[name] = os.environ[name]
    return settings


@main.command("detect-nic")
@click.option("--root", default="/", show_default=True, metavar="DIR",
              help="Filesystem root every read goes through (sys/class/infiniband, sys/class/net, proc/net/route, "
                   "dev/infiniband, ...).")
@format_option("env", "json", "text", default="env")
@recipe_option
@cluster_option
@recipes_dir_option
@click.option("--expect-rails", type=click.IntRange(min=0), metavar="N",
              help="Exit 3 unless the node has N rails (default: the cluster profile's rail_count).")
@click.option("--no-respect-env", is_flag=True, help="Print detected values even for variables already set.")
def detect_nic(root, fmt, recipe, cluster, recipes_dir, expect_rails, no_respect_env):
    """Detect the RDMA rails, GID index and QoS; print NCCL/RCCL, UCX and MoRI variables.

    The family comes from PCI vendor ids or drivers, never from device names.
    Rails are usable (dev/infiniband/uverbsN present), ACTIVE ports with a
    routable GID, on one fabric; the device on the default route is left out
    when other rails remain. Use it as:

      eval "$(envbuild detect-nic)"

    The recipe says what its software needs of the result (its nic block:
    UCX_NET_DEVICES also lists lo for NIXL/RIXL); without a default recipe,
    only the cluster profile applies.

    Exit 0 with a result; 3 when the rails are not what --expect-rails or the
    cluster profile expects (the result is still printed, one line on stderr
    says expected and found); 2 for a --root that does not exist.
    setup_deps.sh --detect-nic runs the very same detector.
    """
    from envbuild.runtime import nic

    if recipe:
        library, name = open_library(recipes_dir, recipe)
    else:
        library = Library(recipes_dir)
        name = library.default_recipe()
    if name:
        profile = library.recipe(name, cluster).nic_profile()
    else:
        profile = library.cluster_by_name(cluster).profile() if cluster else {}
    args = ["--root", root, "--format", fmt]
    if profile:
        args += ["--profile-json", json.dumps(profile, sort_keys=True)]
    if expect_rails is not None:
        args += ["--expect-rails", str(expect_rails)]
    if no_respect_env:
        args.append("--no-respect-env")
    sys.exit(nic.main(args))


@main.group()
def patches():
    """Inspect the source patches recipes apply (vLLM, RIXL)."""


@patches.command("list")
@recipes_dir_option
@format_option()
def patches_list(recipes_dir, fmt):
    """List the patches of the recipes directory: name, target distribution and versions, summary."""
    catalog = Library(recipes_dir).patch_catalog()
    rows = [{"name": spec.name, "dist": spec.dist, "specifier": spec.specifier, "optional": spec.optional,
             "depends": list(spec.depends),
             "summary": textwrap.shorten(spec.description.strip().splitlines()[0], 72, placeholder="..."),
             "file": display_path(spec.path)} for spec in catalog.values()]
    if fmt == "json":
        emit_json({"patches": rows})
        return
    targets = [f"{row['dist']} {row['specifier'] or '(any version)'}" for row in rows]
    name_width = max((len(row["name"]) for row in rows), default=0)
    target_width = max(map(len, targets), default=0)
    for row, target in zip(rows, targets):
        click.echo(f"{row['name']:<{name_width}}  {target:<{target_width}}  {row['summary']}")


@patches.command("check")
@plan_options()
@click.option("--python", "python", envvar="ENVBUILD_PYTHON", default="python3", show_default=True, metavar="PY",
              help="The Python whose installed distributions are checked (its sys.path), as the runtime script's "
                   "ENVBUILD_PYTHON; default: ENVBUILD_PYTHON, else python3.")
@click.option("--site-packages", type=click.Path(file_okay=False, exists=True, path_type=Path), metavar="DIR",
              help="Check the distributions in DIR only (the applier still runs under --python).")
@format_option()
def patches_check(recipe, recipes_dir, cluster, nic_family, python, site_packages, fmt):
    """Report each patch of a recipe: applied, applicable, conflict, version mismatch.

    Changes nothing. Exit 3 when applying would fail.
    """
    from envbuild.spec import patches as patch_library

    plan = make_plan(recipes_dir, recipe, cluster, nic_family)
    chosen = list({spec.name: spec for step in plan.steps for spec in step.component.patch_specs}.values())
    outcomes = patch_library.check(chosen, python, site_packages) if chosen else []
    blocking = any(outcome.blocking for outcome in outcomes)
    if fmt == "json":
        emit_json({"recipe": plan.recipe.name, "python": python,
                   "site_packages": str(site_packages) if site_packages else None, "ok": not blocking,
                   "patches": [dict(dataclasses.asdict(o), blocking=o.blocking) for o in outcomes]})
    elif not chosen:
        click.echo(f"recipe {plan.recipe.name} applies no patches")
    else:
        click.echo(patch_library.format_check(outcomes), nl=False)
    sys.exit(EXIT_MISMATCH if blocking else 0)


@patches.command("show")
@click.argument("name", shell_complete=complete_patch)
@recipes_dir_option
def patches_show(name, recipes_dir):
    """Print a patch with its metadata (target, versions, why it exists)."""
    from envbuild.spec import patches as patch_library

    catalog = Library(recipes_dir).patch_catalog()
    if name not in catalog:
        raise UsageError(f"no patch named {name!r}; known patches: {', '.join(sorted(catalog))}")
    click.echo(patch_library.show(catalog[name]), nl=False)


@main.command()
@plan_options()
@click.option("--check", is_flag=True, help="Change nothing: exit 3 when the lock and the recipe disagree.")
@click.option("--strict", is_flag=True,
              help="Fail, naming each, when anything is unverified or unresolved (nothing is written then); "
                   "with --check, when the lock holds such values.")
@click.option("--timeout", default=60.0, show_default=True, metavar="SECONDS", help="Timeout of each download.")
@click.option("--network", metavar="MODE",
              help="Network of the base image's containers pip resolves in, as for `docker run --network` "
                   "(e.g. host: 127.0.0.1 is this machine's). Default: the engine's.")
@format_option()
def lock(recipe, recipes_dir, cluster, nic_family, check, strict, timeout, network, fmt):
    """Resolve every source of a recipe into <recipes-dir>/<recipe>.lock.

    Git branches become commits (git ls-remote), pinned commits are fetched to
    prove they exist, downloads are measured (sha256, size), pip requirements
    are resolved by pip in a container of the base image (pulled if the
    engine lacks it), against what its Python has installed, with every
    package to install measured (version, sha256) and what is taken from the
    image named with its version; without the image, for the recipe's Python
    (its python: block) alone, unverified. The base image tag becomes a digest
    when a registry answers. What cannot be reached is written as unverified
    or unresolved with the reason, never guessed.

    --check also compares what pip groups took from the base image with the
    image the Docker engine has now, when it has it (never pulled).

    Once the lock exists, plan, runtime-script, dockerfile and image use it: it
    fills `sha256: unknown`, branch-only git sources and pip versions and
    hashes (installed with --require-hashes). --require-lock makes them refuse
    a recipe whose lock is missing or out of date; --strict, one whose lock
    has anything unverified or unresolved.
    """
    from envbuild import wheels
    from envbuild.resolve import base_disagreements, open_base_image, resolve
    from envbuild.spec import lock as lockfile
    from envbuild.spec.sources import Resolver

    library, reference = open_library(recipes_dir, recipe)
    the_recipe = library.recipe(reference)
    path = lockfile.lock_path(Path(the_recipe.file).parent, the_recipe.name)
    shown = display_path(path)
    if check:
        the_plan = load_plan(recipes_dir, recipe, cluster, nic_family)
        if the_plan.lock is None:
            raise MismatchError(f"{shown} does not exist; write it with `{the_plan.lock_command}`")
        # What pip groups took from the base image, compared with the image the engine has (never pulled).
        image_problems, why_not = base_disagreements(
            the_plan.lock, lambda: open_base_image(the_plan.recipe.base_image, network, pull=False))
        if why_not:
            output().say(f"{shown}: pip groups not compared with the base image's installed packages: {why_not}")
        problems = [*the_plan.lock_problems, *image_problems]
        report = _lock_report(the_plan.lock, False, problems)
        if fmt == "json":
            emit_json(report)
            sys.exit(EXIT_MISMATCH if problems else 1 if strict and report["unsettled"] else 0)
        if problems:
            raise MismatchError("\n".join(lockfile.out_of_date(the_plan.lock, problems, the_plan.lock_command)))
        if strict:
            lockfile.refuse_unsettled(the_plan.lock, the_plan.lock_command)
        for item in the_plan.lock.unsettled():
            output().warn(f"{shown}: {item}")
        click.echo(f"{shown}: agrees with recipe {the_plan.recipe.name} ({counted(len(the_plan.steps), 'component')})")
        return
    resolver = Resolver(timeout=timeout, image_digest=_image_digest)
    the_plan = load_plan(recipes_dir, recipe, cluster, nic_family, use_lock=False)
    image = open_base_image(the_plan.recipe.base_image, network, output().say) \
        if any(step.component.pip for step in the_plan.steps) else None
    doc = resolve(the_plan, resolver, image)
    text = lockfile.dump(doc)
    written = lockfile.Lock(path, shown, yaml.safe_load(text))
    # Only groups resolved here (no base image to run pip in) were resolved for the Python running pip.
    if image is not None and image.run is None and (doc.get("python") or {}).get("from") == wheels.FROM_HOST:
        output().warn(wheels.host_warning(the_plan.recipe, wheels.target_of(the_plan.recipe)))
    if strict:
        lockfile.refuse_unsettled(written, the_plan.lock_command)
    for item in written.unsettled():
        output().warn(f"{shown}: {item}")
    changed = not (path.exists() and path.read_text(encoding="utf-8") == text)
    if changed:
        outfile.write(text, str(path))
    if fmt == "json":
        emit_json(_lock_report(written, changed, ()))
    else:
        click.echo(f"{shown}: {'written' if changed else 'up to date'}")


def _lock_report(lock, written: bool, disagreements) -> dict:
    """The --format json document of `envbuild lock` (README: JSON output)."""
    return {"recipe": lock.doc.get("recipe"), "lock": lock.display, "lock_hash": lock.hash, "written": written,
            "agrees": not disagreements, "disagreements": list(disagreements),
            "unsettled": [dataclasses.asdict(item) for item in lock.unsettled()]}


def _image_digest(ref: str) -> tuple[str | None, str]:
    if "@sha256:" in ref:
        return ref.split("@", 1)[1], "the reference is a digest"
    from envbuild.run import docker_engine

    try:
        client = docker_engine.connect()
    except EnvbuildError as exc:
        return None, str(exc)
    return docker_engine.image_digest(client, ref)


@main.command()
@plan_options(base_image_option)
@click.option("--into", required=True, type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="The source directory to fill (created if missing).")
@click.option("--timeout", default=60.0, show_default=True, metavar="SECONDS", help="Timeout of each download.")
@click.option("--python", "python", default=sys.executable, show_default="this Python", metavar="PY",
              help="The Python whose pip downloads the pip requirements (for the recipe's Python, its python: "
                   "block, unless --pip-option says otherwise) and asks build backends for their requirements.")
@click.option("--pip-option", "pip_options", multiple=True, metavar="OPTION",
              help="Passed to `pip download`, e.g. --pip-option=--index-url=URL; --python-version, --platform, "
                   "--implementation or --abi replace the recipe's Python. Repeatable.")
@click.option("--apt", is_flag=True,
              help="Also download the .debs of the components' apt packages, dependencies included, as the base "
                   "image needs them (resolved in a container of it: needs the Docker engine).")
@format_option()
def fetch(recipe, recipes_dir, cluster, nic_family, base_image, into, timeout, python, pip_options, apt, fmt):
    """Download everything a recipe's install needs into DIR, for clusters without network.

    DIR/git/ holds bare mirrors of the git sources, of their submodules
    (recursively, at the commits each pins) and of the repositories their meson
    wraps name; DIR/downloads/ the tarballs and .debs (checked against their
    sha256 from the recipe or its lock); DIR/meson/packagecache/ the archives of
    the meson wraps; DIR/pip/ the wheels and sdists of the pip requirements (the
    locked packages when the lock has them) for the recipe's Python, and the
    build requirements of every package pip builds from source; with --apt,
    DIR/apt/ the .debs the base image lacks; DIR/MANIFEST.json lists them all.
    Run it again to complete or refresh DIR: what is there and verified is
    kept. Then, on the cluster (or baked: envbuild image --sources DIR):

      ENVBUILD_SOURCE_DIR=DIR bash setup_deps.sh
    """
    from envbuild import fetch as fetching

    the_plan = make_plan(recipes_dir, recipe, cluster, nic_family, base_image)
    result = fetching.fetch(the_plan, into, timeout, python, tuple(pip_options), output().say, apt=apt)
    for warning in result.warnings:
        output().warn(warning)
    manifest = result.manifest
    if fmt == "json":
        emit_json(manifest)
    else:
        counts = [counted(len(manifest["git"]), "git mirror"), counted(len(manifest["downloads"]), "download"),
                  counted(len(manifest["meson"]), "meson archive"), counted(len(manifest["pip"]), "pip file")]
        if apt:
            counts.append(counted(len(manifest["apt"]), "apt package"))
        click.echo(f"{into}: {', '.join(counts)}; MANIFEST.json written")
    if result.missing:
        raise EnvbuildError("\n".join(["some sources could not be fetched:"] + result.missing))


@main.command()
@click.argument("target", metavar="IMAGE|STATE_DIR|LOCK|RECIPE", shell_complete=complete_recipe)
@recipes_dir_option
@format_option()
def inspect(target, recipes_dir, fmt):
    """Show what an image or a state directory holds, component by component.

    For an image, its labels (recipe, recipe hash, lock hash, each component's
    hash, source pin and patch hashes), read from its registry without pulling
    when the reference names one (HOST[:PORT]/NAME:TAG), else from the local
    engine; for a runtime script's state directory (ENVBUILD_STATE_DIR), its
    stamps and provenance records. A lock file or a recipe is shown the same way.
    """
    from envbuild import provenance

    facts = provenance.read(target, recipes_dir)
    for warning in facts.warnings:
        output().warn(warning)
    click.echo(provenance.format_json(facts) if fmt == "json" else provenance.format_text(facts), nl=False)


@main.command()
@click.argument("a", metavar="A", shell_complete=complete_recipe)
@click.argument("b", metavar="B", shell_complete=complete_recipe)
@recipes_dir_option
@format_option()
def diff(a, b, recipes_dir, fmt):
    """Compare two recipes, locks, images or state directories, component by component.

    Each of A and B is a recipe (name or file), a lock file (*.lock), a state
    directory or an image. Prints what B adds or removes, and the components
    whose pin, patches or build (content hash with the same pin) changed, or
    one line saying they are the same. Exit 0 when they are equal, 3 when they differ.
    """
    from envbuild import provenance

    first, second = provenance.read(a, recipes_dir), provenance.read(b, recipes_dir)
    for warning in first.warnings + second.warnings:
        output().warn(warning)
    changes = provenance.diff(first, second)
    if fmt == "json":
        emit_json({"a": first.origin, "b": second.origin, "equal": not changes,
                   "changes": [dataclasses.asdict(c) for c in changes]})
    elif changes:
        click.echo(f"--- {first.kind} {first.origin}\n+++ {second.kind} {second.origin}")
        for change in changes:
            click.echo(str(change))
    else:
        click.echo(f"{first.kind} {first.origin} and {second.kind} {second.origin} are the same "
                   f"({counted(len(first.components), 'component')})")
    sys.exit(EXIT_MISMATCH if changes else 0)


@main.command()
@click.argument("kind", type=click.Choice(["recipe", "component", "cluster"]))
def schema(kind):
    """Print the JSON Schema of a kind of recipe file, for editors.

    \b
    With the YAML language server (VS Code, neovim, ...), for example:
      envbuild schema component > .schemas/envbuild-component.json
      # yaml-language-server: $schema=../.schemas/envbuild-component.json
    """
    from envbuild.spec import model
    from envbuild.spec.schema import document

    shape = {"recipe": model.RECIPE, "component": model.COMPONENT, "cluster": model.CLUSTER}[kind]
    emit_json(document(f"envbuild {kind}", shape))
