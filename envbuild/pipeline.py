"""recipe → plan, as one call: what every command (and a Python caller) starts from.

Rendering is envbuild.render, running envbuild.run; this module only ties the
loader to the planner.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from envbuild.plan import Plan, make_plan
from envbuild.spec.loader import Library, check_recipe_file, is_recipe_path


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
    lock = library.lock_for(the_recipe) if use_lock else None
    plan = make_plan(the_recipe, library.components_for(the_recipe), lock)
    if base_image:
        plan = dataclasses.replace(plan, recipe=plan.recipe.with_base_image(base_image))
    return plan
