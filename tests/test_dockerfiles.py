"""dockerfiles/ holds the rendered Dockerfile of every built-in recipe for every cluster profile.

Refresh after an intended change with:
    envbuild dockerfile --recipe R --cluster C > dockerfiles/R.C.Dockerfile
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from envbuild.cli import main
from envbuild.spec.loader import Library

DOCKERFILES = Path(__file__).resolve().parent.parent / "dockerfiles"
LIBRARY = Library()
PAIRS = list(itertools.product(LIBRARY.recipe_names(), LIBRARY.cluster_names()))


def check(recipe: str, cluster: str, directory: Path):
    return CliRunner().invoke(main, ["dockerfile", "--recipe", recipe, "--cluster", cluster, "--check", str(directory)])


def test_every_recipe_and_cluster_has_a_dockerfile_and_nothing_else_is_there():
    assert PAIRS, "no built-in recipes or cluster profiles found"
    expected = {f"{recipe}.{cluster}.Dockerfile" for recipe, cluster in PAIRS}
    assert {path.name for path in DOCKERFILES.iterdir()} == expected


@pytest.mark.parametrize("recipe,cluster", PAIRS)
def test_committed_dockerfile_is_up_to_date(recipe, cluster):
    result = check(recipe, cluster, DOCKERFILES)
    assert result.exit_code == 0, result.output
    assert f"{DOCKERFILES / f'{recipe}.{cluster}.Dockerfile'}: up to date" in result.output


def test_check_fails_on_a_stale_or_missing_dockerfile(tmp_path):
    recipe, cluster = PAIRS[0]
    name = f"{recipe}.{cluster}.Dockerfile"
    missing = check(recipe, cluster, tmp_path)
    assert missing.exit_code == 1
    assert f"envbuild: error: {tmp_path / name} is out of date; render it again with: " \
           f"envbuild dockerfile --recipe {recipe} --cluster {cluster} > {tmp_path / name}" in missing.output

    shutil.copy(DOCKERFILES / name, tmp_path / name)
    assert check(recipe, cluster, tmp_path).exit_code == 0
    stale = tmp_path / name
    stale.write_text(stale.read_text().replace("RUN ENVBUILD_COMPONENT=", "RUN  ENVBUILD_COMPONENT=", 1))
    assert check(recipe, cluster, tmp_path).exit_code == 1


def test_check_does_not_depend_on_the_working_directory(tmp_path):
    """The Dockerfile names its recipe file; that name must not change with where envbuild runs."""
    recipe, cluster = PAIRS[0]
    result = subprocess.run(
        [sys.executable, "-m", "envbuild", "dockerfile", "--recipe", recipe, "--cluster", cluster,
         "--check", str(DOCKERFILES)],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
