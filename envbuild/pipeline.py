"""recipe → plan, as one call: what every command (and a Python caller) starts from.

Rendering is envbuild.render, running envbuild.run; this module only ties the
loader to the planner.
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Sequence

from envbuild.plan import Plan, make_plan
from envbuild.spec.loader import Library, check_recipe_file, default_recipes_dir, is_recipe_path
from envbuild.spec.yamlfile import display_path


def command_line(subcommand: str, recipes_dir: Path | None, recipe: str, cluster: str | None = None,
                 nic_family: str | None = None, more: Sequence[str] = ()) -> str:
    """The command a message tells the user to run, as one shell-quoted line that works as printed
    (from the same directory, in the same environment):
    `envbuild SUBCOMMAND --recipe RECIPE [--recipes-dir DIR] [--cluster C] [--nic-family F] MORE...`.

    RECIPE is a name or a file, as the user gave it; DIR (display_path) is named unless it is
    the directory the command reads by default (ENVBUILD_RECIPES, else the built-in recipes).
    Every hint of the CLI and of the lock policy is rendered here.
    """
    words = ["envbuild", *subcommand.split(), "--recipe", recipe]
    if recipes_dir is not None and Path(recipes_dir).resolve() != default_recipes_dir().resolve():
        words += ["--recipes-dir", display_path(recipes_dir)]
    words += [word for option, value in (("--cluster", cluster), ("--nic-family", nic_family)) if value
              for word in (option, value)]
    return shlex.join([*words, *more])


def open_library(recipes_dir: Path | None, recipe: str | None) -> tuple[Library, str]:
    """The library a recipe is read with, and the recipe (name or file) to read.

    A recipe file takes its components from `recipes_dir` when given, else from
    its own directory; with no recipe, the directory's default recipe. A recipe
    file that is missing or no recipe is refused first (loader.check_recipe_file),
    before its directory is taken for a recipes directory.
    """
    if recipe and is_recipe_path(recipe):
        check_recipe_file(Path(recipe))
        if recipes_dir is None:
            return Library(Path(recipe).parent), recipe
    library = Library(recipes_dir)
    return library, library.chosen_recipe(recipe)


def load_plan(recipes_dir: Path | None, recipe: str | None, cluster: str | None = None,
              nic_family: str | None = None, base_image: str | None = None, use_lock: bool = True) -> Plan:
    """The plan of a recipe (name, file, or None for the default) with its lock applied.

    `base_image` replaces the recipe's after the lock was compared with the
    recipe's own. Raises RecipeError (invalid recipes, exit 2) or LockError
    (unreadable lock).
    """
    library, reference = open_library(recipes_dir, recipe)
    the_recipe = library.recipe(reference, cluster)
    if nic_family:
        the_recipe = the_recipe.with_nic_family(nic_family)
    # What the messages about the lock tell the user to run. A cluster profile or NIC family
    # changes no source, so the lock is the same without them.
    lock_command = command_line("lock", recipes_dir, reference)
    lock = library.lock_for(the_recipe, lock_command) if use_lock else None
    plan = make_plan(the_recipe, library.components_for(the_recipe), lock, lock_command=lock_command)
    if base_image:
        plan = dataclasses.replace(plan, recipe=plan.recipe.with_base_image(base_image))
    return plan
