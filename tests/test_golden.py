"""Golden output per renderer feature, hpc-container-maker style: one small fixture
component per feature (tests/golden/recipes), its exact rendered text in
tests/golden/features/. A change in generated text is a reviewable diff, and a
pin bump of a built-in recipe touches none of these files.

The engine around the fragments is covered by executing scripts
(test_runtime_script.py); the built-in recipes' Dockerfiles by dockerfiles/.

Refresh after an intended change with: ENVBUILD_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from envbuild.pipeline import load_plan
from envbuild.render.dockerfile import render_dockerfile
from envbuild.render.script import render_fragment, render_recipe_part, render_script
from envbuild.spec.loader import Library

GOLDEN = Path(__file__).parent / "golden"
FEATURES = GOLDEN / "recipes"
PLAN = load_plan(FEATURES, "features", cluster="lab")


def check_golden(path: Path, text: str) -> None:
    if os.environ.get("ENVBUILD_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing; run with ENVBUILD_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{path} differs; review and refresh with ENVBUILD_UPDATE_GOLDEN=1"


@pytest.mark.parametrize("name", [step.name for step in PLAN.steps])
def test_component_fragment_matches_golden(name):
    check_golden(GOLDEN / "features" / f"{name}.sh", render_fragment(PLAN, PLAN.step(name)))


def test_recipe_part_matches_golden():
    check_golden(GOLDEN / "features" / "recipe-part.sh", render_recipe_part(PLAN))


def test_dockerfile_matches_golden():
    check_golden(GOLDEN / "features" / "Dockerfile", render_dockerfile(PLAN))


def test_dockerfile_for_every_nic_family_matches_golden():
    """Without the cluster profile: the recipe's nic_families, nic-specific built once per family."""
    check_golden(GOLDEN / "features" / "any-nic.Dockerfile", render_dockerfile(load_plan(FEATURES, "features")))


def test_every_feature_component_has_a_golden_file_and_nothing_else_is_there():
    expected = {f"{s.name}.sh" for s in PLAN.steps} | {"recipe-part.sh", "Dockerfile", "any-nic.Dockerfile"}
    assert {p.name for p in (GOLDEN / "features").iterdir()} == expected


def test_the_script_shows_the_recipe_first_and_runs_only_from_its_last_line():
    script = render_script(PLAN)
    lines = script.splitlines()
    sections = [line for line in lines if line.startswith("# ==== ")]
    assert sections == ["# ==== 1. recipe features and its components ====", "# ==== 2. engine ====",
                        "# ==== 3. embedded programs ====", "# ==== 4. entry ===="]
    first_component = lines.index("# ---- component git-pinned: A git source at a pinned commit, built with make. ----")
    assert first_component < 120
    assert first_component < lines.index("# ==== 2. engine ====")
    assert lines[-1].startswith("if [[ ${BASH_SOURCE[0]} != \"$0\" ]]; then _eb_sourced \"$@\";")
    assert lines[-1].endswith("_eb_main \"$@\"; fi")
    # Top-level statements outside functions: only assignments, declarations and registrations.
    assert not [line for line in lines[:-1] if re.match(r"^_eb_main\s", line)]


def test_patches_are_embedded_as_plain_text():
    script = render_script(PLAN)
    first = (FEATURES / "patches/pkg-1.0/first.patch").read_text()
    second = (FEATURES / "patches/pkg-1.0/second.patch").read_text()
    assert first in script and second in script  # verbatim, quotes and $ included, not escaped
    assert '#%envbuild-patch {"depends": [], "dist": "pkg", "kind": "diff", "name": "first", ' in script


def test_nic_detector_is_embedded_only_when_the_recipe_needs_it():
    with_nic = render_script(PLAN)
    assert "_EB_NIC_DETECT_PY_" in with_nic
    bare = load_plan(FEATURES, "features")  # no profile
    assert "_EB_NIC_DETECT_PY_" in render_script(bare)  # nic-only and nic-specific need it
    plain = Library(FEATURES)
    assert plain  # the recipe below lists no NIC-dependent component
    no_nic = load_plan(FEATURES, str(FEATURES / "plain.yaml"))
    script = render_script(no_nic)
    assert "_EB_NIC_DETECT_PY_" not in script
    assert "rendered without the NIC detector" in script


@pytest.mark.parametrize("recipe", Library().recipe_names())
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
