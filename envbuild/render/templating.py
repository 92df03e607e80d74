"""What the renderers share: the jinja environment over templates/ and how a recipe is named."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

from envbuild.plan import Plan
from envbuild.shell import quote

TEMPLATES = Path(__file__).resolve().parent / "templates"


@lru_cache(maxsize=None)
def jinja() -> jinja2.Environment:
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


def recipe_source(plan: Plan) -> str:
    """The recipe file as generated files name it: `<its directory>/<its name>`.

    Recipe.file is relative to the working directory (for messages), and generated
    text must not depend on where envbuild was run.
    """
    path = Path(plan.recipe.file).resolve()
    return f"{path.parent.name}/{path.name}"


def summary(text: str) -> str:
    """The first line of a description."""
    return text.strip().splitlines()[0]
