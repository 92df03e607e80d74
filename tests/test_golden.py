"""Golden output of the built-in recipes' components: any change in generated text is a reviewable diff.

The engine around them is covered by executing scripts (test_runtime_script.py),
the Dockerfiles by dockerfiles/ (test_dockerfiles.py).

Refresh after an intended change with: ENVBUILD_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from envbuild.spec.loader import Library
from envbuild.pipeline import load_plan
from envbuild.render.script import render_fragment

GOLDEN = Path(__file__).parent / "golden"
LIBRARY = Library()
RECIPES = LIBRARY.recipe_names()


def check_golden(path: Path, text: str) -> None:
    if os.environ.get("ENVBUILD_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing; run with ENVBUILD_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{path} differs; review and refresh with ENVBUILD_UPDATE_GOLDEN=1"


@pytest.mark.parametrize("recipe", RECIPES)
def test_component_fragments_match_golden(recipe):
    # A fragment depends on its component and dependencies only, so recipes share one golden file.
    plan = load_plan(LIBRARY.root, recipe)
    for step in plan.steps:
        check_golden(GOLDEN / f"{step.name}.sh", render_fragment(plan, step))


@pytest.mark.parametrize("recipe", RECIPES)
def test_rendering_is_byte_identical_across_processes(recipe, tmp_path):
    outputs = []
    for seed, umask in (("1", "022"), ("2", "077")):
        out = tmp_path / f"{seed}.sh"
        env = dict(os.environ, PYTHONHASHSEED=seed, LC_ALL="C")
        subprocess.run(["bash", "-c", f"umask {umask}; exec \"$@\"", "_", sys.executable, "-m", "envbuild",
                        "runtime-script", "--recipe", recipe, "-o", str(out)],
                       env=env, check=True, capture_output=True, cwd=tmp_path)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
