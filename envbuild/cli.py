"""The envbuild command line: a thin layer over the library (pipeline, render, run)."""

from __future__ import annotations

import dataclasses
import json
import sys
from functools import reduce
from pathlib import Path

import click

from envbuild import __version__, outfile
from envbuild.errors import EnvbuildError, LockError, RecipeError
from envbuild.pipeline import load_plan, open_library
from envbuild.plan import Plan
from envbuild.runtime.nic import NIC_FAMILIES
from envbuild.spec.loader import RECIPE_VARIABLE, RECIPES_VARIABLE, Library
from envbuild.spec.yamlfile import display_path


class Group(click.Group):
    """Prints errors as plain lines on stderr with their exit code, never a traceback.

    Recipe problems come one per line as `file:line: key: message`, like a compiler's.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RecipeError as exc:
            for problem in exc.problems:
                click.echo(str(problem), err=True)
            sys.exit(exc.exit_code)
        except EnvbuildError as exc:
            for line in str(exc).splitlines() or [""]:
                click.echo(f"envbuild: error: {line}", err=True)
            sys.exit(exc.exit_code)


recipes_dir_option = click.option(
    "--recipes-dir", type=click.Path(path_type=Path), envvar=RECIPES_VARIABLE,
    help=f"Directory of recipes, components/ and clusters/ (default: the built-in recipes; or {RECIPES_VARIABLE}).",
)
recipe_option = click.option(
    "--recipe", "-r", metavar="NAME|FILE", envvar=RECIPE_VARIABLE,
    help=f"A recipe name in the recipes directory, or a recipe file (default: {RECIPE_VARIABLE}, else the "
         "one the recipes directory names in its `default` file; the built-in default is mi355x-moriio).")
cluster_option = click.option("--cluster", metavar="PROFILE",
                              help="Cluster profile from clusters/ (NIC family, QoS fallbacks, env).")
nic_family_option = click.option("--nic-family", type=click.Choice(NIC_FAMILIES),
                                 help="Build NIC-specific components (MoRI) for this family; overrides the profile's.")
base_image_option = click.option("--base-image", metavar="IMAGE", help="Use this base image instead of the recipe's.")
require_lock_option = click.option("--require-lock", is_flag=True,
                                   help="Refuse to render unless <recipes-dir>/<recipe>.lock exists and agrees with the recipe.")


def plan_options(*extra):
    """The options every command that makes a plan takes, in one decorator."""
    options = (recipe_option, recipes_dir_option, cluster_option, *extra)
    return lambda command: reduce(lambda decorated, option: option(decorated), reversed(options), command)


def make_plan(recipes_dir: Path | None, recipe: str | None, cluster: str | None = None,
              nic_family: str | None = None, base_image: str | None = None, require_lock: bool = False) -> Plan:
    """The plan a command works on, its warnings printed on stderr."""
    plan = load_plan(recipes_dir, recipe, cluster, nic_family, base_image)
    if require_lock:
        plan.require_lock()
    for warning in plan.warnings():
        click.echo(f"envbuild: warning: {warning}", err=True)
    return plan


def write_output(text: str, output: str | None, mode: int = 0o644) -> None:
    """Writes a command's result (outfile.write) and says where on stderr."""
    written = outfile.write(text, output, mode)
    if written is not None:
        click.echo(f"envbuild: wrote {written}", err=True)


output_option = click.option(
    "-o", "--output", metavar="FILE",
    help="Write here instead of stdout ('-' is stdout). Written whole or not at all (temporary file and rename); "
         "a new file is executable, an existing one keeps its mode, a device such as /dev/null is written as is.")


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
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
    """


@main.command("list")
@recipes_dir_option
def list_recipes(recipes_dir):
    """List the recipes, one line each; the default one is marked."""
    library = Library(recipes_dir)
    default = library.default_recipe()
    for name in library.recipe_names():
        recipe = library.recipe(name)
        mark = "  (default)" if name == default else ""
        click.echo(f"{name:<20} {recipe.description.splitlines()[0]}{mark}")


@main.command()
@click.argument("target", required=False, metavar="[RECIPE|PATH]")
@recipes_dir_option
@cluster_option
def validate(target, recipes_dir, cluster):
    """Check recipes, components and cluster profiles; exit 2 on any problem.

    RECIPE is a recipe name or file; PATH a recipes directory. With no argument,
    the recipes directory is checked: every recipe, and every component and
    cluster profile even if no recipe uses it. All problems are reported.
    """
    if target and Path(target).is_dir():
        recipes_dir, target = Path(target), None
    library = Library(recipes_dir)
    problems = []
    for name in [target] if target else library.recipe_names():
        try:
            plan = make_plan(recipes_dir, name, cluster)
        except RecipeError as exc:
            problems.extend(exc.problems)
            continue
        click.echo(f"{plan.recipe.name}: ok ({len(plan.steps)} components, hash {plan.hash[:12]})")
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
                    problems.extend(p for p in exc.problems if p not in problems)
    if problems:
        raise RecipeError(problems)


@main.command()
@plan_options(require_lock_option)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def plan(recipe, recipes_dir, cluster, require_lock, fmt):
    """Show the install order, content hashes, conditions and reasons."""
    the_plan = make_plan(recipes_dir, recipe, cluster, require_lock=require_lock)
    rows = [
        {
            "name": s.name,
            "hash": s.hash,
            "depends": list(s.component.depends),
            "condition": s.component.when.describe(),
            "nic_specific": s.nic_specific,
            "source": s.component.source.pin if s.component.source else None,
            "reason": s.reason,
        }
        for s in the_plan.steps
    ]
    lock = the_plan.lock
    if fmt == "json":
        doc = {
            "recipe": the_plan.recipe.name,
            "hash": the_plan.hash,
            "base_image": the_plan.recipe.base_image,
            "cluster": the_plan.recipe.cluster.name if the_plan.recipe.cluster else None,
            "nic_family": the_plan.nic_family or None,
            "lock": {"file": lock.display, "hash": lock.hash} if lock else None,
            "components": rows,
        }
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
        return
    recipe_ = the_plan.recipe
    click.echo(f"recipe {recipe_.name} (hash {the_plan.hash[:12]}) on {recipe_.base_image}")
    if lock:
        click.echo(f"lock {lock.display} (hash {lock.hash[:12]})")
    if recipe_.cluster:
        click.echo(f"cluster profile {recipe_.cluster.name}" + (f", NIC family {the_plan.nic_family}" if the_plan.nic_family else ""))
    for index, row in enumerate(rows, 1):
        flavour = ", built per NIC family" if row["nic_specific"] else ""
        click.echo(f"{index}. {row['name']:<20} {row['hash'][:12]}  when {row['condition']}{flavour}")
        click.echo(f"   {row['reason']}" + (f"; needs {', '.join(row['depends'])}" if row["depends"] else ""))
        if row["source"]:
            click.echo(f"   source {row['source']}")


@main.command("runtime-script")
@plan_options(nic_family_option, require_lock_option, output_option)
def runtime_script(recipe, recipes_dir, cluster, nic_family, require_lock, output):
    """Write the standalone, idempotent setup script for a recipe.

    The script needs only bash (and what the install steps themselves use).
    Run it, or source it so that the components' environment is exported:

    \b
      envbuild runtime-script > setup_deps.sh
      bash setup_deps.sh --check
    """
    from envbuild.render.script import render_script

    write_output(render_script(make_plan(recipes_dir, recipe, cluster, nic_family, require_lock=require_lock)),
                 output, 0o755)


@main.command()
@plan_options(nic_family_option, base_image_option, require_lock_option)
@click.option("--check", "check_dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Exit 1 if DIR/<recipe>.<cluster>.Dockerfile differs from what would be rendered.")
def dockerfile(recipe, recipes_dir, cluster, nic_family, base_image, require_lock, check_dir):
    """Print the Dockerfile that `envbuild image` builds.

    One layer per component in plan order, each running the same install step
    as the runtime script; the build context holds the engine, one file per
    component and the runtime script itself.
    """
    from envbuild.render.dockerfile import render_dockerfile

    plan = make_plan(recipes_dir, recipe, cluster, nic_family, base_image, require_lock)
    text = render_dockerfile(plan)
    if check_dir is None:
        click.echo(text, nl=False)
        return
    path = check_dir / dockerfile_name(plan)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        raise EnvbuildError(f"{path} is out of date; render it again with: envbuild dockerfile --recipe {plan.recipe.name}"
                            + (f" --cluster {cluster}" if cluster else "") + f" > {path}")
    click.echo(f"{path}: up to date")


def dockerfile_name(plan: Plan) -> str:
    """<recipe>.<cluster or NIC family>.Dockerfile, as dockerfiles/ names them."""
    cluster = plan.recipe.cluster
    suffix = cluster.name if cluster and cluster.name else plan.nic_family or "any-nic"
    return f"{plan.recipe.name}.{suffix}.Dockerfile"


@main.command()
@plan_options(nic_family_option, base_image_option, require_lock_option)
@click.option("--tag", "-t", help="Image tag (default: envbuild/<recipe>:<recipe hash prefix>).")
@click.option("--no-cache", is_flag=True, help="Build every layer again, even if the tagged image exists.")
@click.option("--pull/--no-pull", default=None,
              help="--pull refreshes the base image; --no-pull refuses to build when it is not local. "
                   "Default: the engine pulls it only when missing.")
@click.option("--dry-run", is_flag=True, help="Print the Dockerfile and the build context's files; build nothing.")
@click.option("--network", metavar="MODE",
              help="Network of the RUN steps, as for `docker build --network` (e.g. host, none). "
                   "Default: the engine's bridge.")
@click.option("--verbose", "-v", is_flag=True, help="Show every line the build steps print.")
def image(recipe, recipes_dir, cluster, nic_family, base_image, require_lock, tag, no_cache, pull, dry_run, network,
          verbose):
    """Bake a recipe into an image on the local Docker engine (DOCKER_HOST is honoured).

    Each component gets its own layer, in plan order, running the same step as
    the runtime script and writing the same stamps, so `setup_deps.sh` inside
    the image finds nothing to install. An image whose tag exists and holds the
    same recipe hash (label io.envbuild.recipe-hash) is reused.
    """
    from envbuild.render.dockerfile import build_context
    from envbuild.run.image import bake, default_tag

    plan = make_plan(recipes_dir, recipe, cluster, nic_family, base_image, require_lock)
    tag = tag or default_tag(plan)
    if dry_run:
        files = build_context(plan)
        click.echo(files["Dockerfile"][0].decode(), nl=False)
        click.echo(f"\n# build context of {tag}:")
        for path, (data, mode) in files.items():
            click.echo(f"#   {mode:04o} {len(data):>8} {path}")
        return
    try:
        baked = bake(plan, tag, no_cache=no_cache, pull=pull, network=network, verbose=verbose,
                     say=lambda line: click.echo(f"envbuild: {line}", err=True))
    except KeyboardInterrupt:
        click.echo("envbuild: build interrupted; the engine cancelled it", err=True)
        sys.exit(130)
    if baked.reused:
        click.echo(f"envbuild: {tag} already exists (same recipe hash); reusing it. --no-cache builds it again.")
        return
    click.echo(f"envbuild: built {tag} ({baked.image_id[:19]}) in {baked.seconds:.1f} s", err=True)


@main.command("detect-nic")
@click.option("--root", default="/", show_default=True, metavar="DIR",
              help="Filesystem root every read goes through (sys/class/infiniband, sys/class/net, proc/net/route, "
                   "dev/infiniband, ...).")
@click.option("--format", "fmt", type=click.Choice(["env", "json", "text"]), default="env", show_default=True)
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


@patches.command("check")
@recipe_option
@recipes_dir_option
@click.option("--site-packages", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Check the distributions in this directory (default: this Python's).")
def patches_check(recipe, recipes_dir, site_packages):
    """Report each patch of a recipe: applied, applicable, conflict, version mismatch.

    Changes nothing. Exit 1 when applying would fail.
    """
    from envbuild.spec import patches as patch_library

    plan = load_plan(recipes_dir, recipe)
    chosen = list({spec.name: spec for step in plan.steps for spec in step.component.patch_specs}.values())
    if not chosen:
        click.echo(f"recipe {plan.recipe.name} applies no patches")
        return
    outcomes = patch_library.check(chosen, site_packages)
    click.echo(patch_library.format_check(outcomes), nl=False)
    sys.exit(1 if any(outcome.blocking for outcome in outcomes) else 0)


@patches.command("show")
@click.argument("name")
@recipes_dir_option
def patches_show(name, recipes_dir):
    """Print a patch with its metadata (target, versions, why it exists)."""
    from envbuild.spec import patches as patch_library

    catalog = Library(recipes_dir).patch_catalog()
    if name not in catalog:
        raise EnvbuildError(f"no patch named {name!r}; known patches: {', '.join(sorted(catalog))}")
    click.echo(patch_library.show(catalog[name]), nl=False)


@main.command()
@recipe_option
@recipes_dir_option
@click.option("--check", is_flag=True, help="Change nothing: exit 1 when the lock and the recipe disagree.")
@click.option("--timeout", default=60.0, show_default=True, metavar="SECONDS", help="Timeout of each download.")
def lock(recipe, recipes_dir, check, timeout):
    """Resolve every source of a recipe into <recipes-dir>/<recipe>.lock.

    Git branches become commits (git ls-remote), pinned commits are fetched to
    prove they exist, downloads are measured (sha256, size), the base image tag
    becomes a digest when a registry answers. What cannot be reached is written
    as unverified or unresolved with the reason, never guessed.

    Once the lock exists, plan, runtime-script, dockerfile and image use it: it
    fills `sha256: unknown` and branch-only git sources. --require-lock makes
    them refuse a recipe whose lock is missing or out of date.
    """
    from envbuild.resolve import resolve
    from envbuild.spec import lock as lockfile
    from envbuild.spec.sources import UNRESOLVED, UNVERIFIED, Resolver

    library, reference = open_library(recipes_dir, recipe)
    the_recipe = library.recipe(reference)
    path = lockfile.lock_path(Path(the_recipe.file).parent, the_recipe.name)
    shown = display_path(path)
    if check:
        the_plan = load_plan(recipes_dir, recipe)
        if the_plan.lock is None:
            raise LockError(f"{shown} does not exist; write it with `envbuild lock --recipe {the_recipe.name}`")
        if the_plan.lock_problems:
            raise LockError("\n".join(lockfile.out_of_date(the_plan.lock, the_recipe.name, the_plan.lock_problems)))
        for note in the_plan.lock.unresolved():
            click.echo(f"envbuild: note: {shown}: unresolved: {note}", err=True)
        click.echo(f"{shown}: agrees with recipe {the_plan.recipe.name} ({len(the_plan.steps)} components)")
        return
    resolver = Resolver(timeout=timeout, image_digest=_image_digest)
    doc = resolve(load_plan(recipes_dir, recipe, use_lock=False), resolver)
    text = lockfile.dump(doc)
    for name, entry in sorted(doc["components"].items()):
        source = entry.get("source") or {}
        if source.get("status") in (UNVERIFIED, UNRESOLVED):
            click.echo(f"envbuild: warning: {name}: {source['status']}: {source['reason']}", err=True)
    if doc["base_image"]["status"] == UNRESOLVED:
        click.echo(f"envbuild: warning: base image {doc['base_image']['ref']}: unresolved: "
                   f"{doc['base_image']['reason']}", err=True)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        click.echo(f"envbuild: {shown} is up to date", err=True)
        return
    write_output(text, str(path))


def _image_digest(ref: str) -> tuple[str | None, str]:
    from envbuild.run import docker_engine

    try:
        client = docker_engine.connect()
    except EnvbuildError as exc:
        return None, str(exc)
    return docker_engine.image_digest(client, ref)


@main.command()
@recipe_option
@recipes_dir_option
@click.option("--into", required=True, type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="The source directory to fill (created if missing).")
@click.option("--timeout", default=60.0, show_default=True, metavar="SECONDS", help="Timeout of each download.")
@click.option("--python", "python", default=sys.executable, show_default="this Python",
              help="The Python whose pip downloads the pip requirements.")
@click.option("--pip-option", "pip_options", multiple=True, metavar="OPTION",
              help="Passed to `pip download`, e.g. --pip-option=--platform=manylinux2014_x86_64 "
                   "--pip-option=--only-binary=:all: for another platform. Repeatable.")
@click.option("--quiet", "-q", is_flag=True, help="Print only problems and the summary.")
def fetch(recipe, recipes_dir, into, timeout, python, pip_options, quiet):
    """Download every source of a recipe into DIR, for clusters without network.

    DIR/git/<name>-<hash>.git are bare mirrors of the git sources, DIR/downloads/
    the tarballs and .debs (checked against their sha256 from the recipe or its
    lock), DIR/pip/ the wheels and sdists of the pip requirements, and
    DIR/MANIFEST.json lists them all. Run it again to complete or refresh DIR:
    what is there and verified is kept. Then, on the cluster:

      ENVBUILD_SOURCE_DIR=DIR bash setup_deps.sh
    """
    from envbuild import fetch as fetching

    the_plan = make_plan(recipes_dir, recipe)
    say = (lambda line: None) if quiet else (lambda line: click.echo(f"envbuild: {line}", err=True))
    result = fetching.fetch(the_plan, into, timeout, python, tuple(pip_options), say)
    manifest = result.manifest
    click.echo(f"envbuild: {into}: {len(manifest['git'])} git mirrors, {len(manifest['downloads'])} downloads, "
               f"{len(manifest['pip'])} pip files; MANIFEST.json written", err=True)
    if result.missing:
        raise EnvbuildError("\n".join(["some sources could not be fetched:"] + result.missing))


@main.command()
@click.argument("target", metavar="IMAGE|STATE_DIR|LOCK|RECIPE")
@recipes_dir_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def inspect(target, recipes_dir, fmt):
    """Show what an image or a state directory holds, component by component.

    For an image, its labels (recipe, recipe hash, lock hash, each component's
    hash, source pin and patch hashes); for a runtime script's state directory
    (ENVBUILD_STATE_DIR), its stamps and provenance records. A lock file or a
    recipe is shown the same way.
    """
    from envbuild import provenance

    facts = provenance.read(target, recipes_dir)
    for warning in facts.warnings:
        click.echo(f"envbuild: warning: {warning}", err=True)
    click.echo(provenance.format_json(facts) if fmt == "json" else provenance.format_text(facts), nl=False)


@main.command()
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@recipes_dir_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def diff(a, b, recipes_dir, fmt):
    """Compare two recipes, locks, images or state directories, component by component.

    Each of A and B is a recipe (name or file), a lock file (*.lock), a state
    directory or an image. Prints what B adds or removes, and the components
    whose pin, patches or build (content hash with the same pin) changed.
    Exit 0 when they are equal, 1 when they differ, like diff.
    """
    from envbuild import provenance

    first, second = provenance.read(a, recipes_dir), provenance.read(b, recipes_dir)
    for warning in first.warnings + second.warnings:
        click.echo(f"envbuild: warning: {warning}", err=True)
    changes = provenance.diff(first, second)
    if fmt == "json":
        click.echo(json.dumps({"a": first.origin, "b": second.origin,
                               "changes": [dataclasses.asdict(c) for c in changes]}, indent=2, sort_keys=True))
    elif changes:
        click.echo(f"--- {first.kind} {first.origin}\n+++ {second.kind} {second.origin}")
        for change in changes:
            click.echo(str(change))
    sys.exit(1 if changes else 0)


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
    click.echo(json.dumps(document(f"envbuild {kind}", shape), indent=2, sort_keys=True))
