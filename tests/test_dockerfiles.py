"""dockerfiles/ holds the rendered Dockerfile of every built-in recipe for every cluster profile,
and for no cluster (R.any-nic.Dockerfile: one image for every cluster, a MoRI build per NIC family).

Refresh after an intended change with:
    envbuild dockerfile --recipe R --cluster C > dockerfiles/R.C.Dockerfile
    envbuild dockerfile --recipe R > dockerfiles/R.any-nic.Dockerfile
"""

from __future__ import annotations

import itertools
import os
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
ANY_NIC = "any-nic"  # no cluster profile: the name `dockerfile --check` gives the image for every cluster


def check(recipe: str, cluster: str, directory: Path):
    cluster_args = [] if cluster == ANY_NIC else ["--cluster", cluster]
    return CliRunner().invoke(main, ["dockerfile", "--recipe", recipe, *cluster_args, "--check", str(directory)])


def test_every_recipe_and_cluster_has_a_dockerfile_and_nothing_else_is_there():
    assert PAIRS, "no built-in recipes or cluster profiles found"
    expected = {f"{recipe}.{cluster}.Dockerfile" for recipe, cluster in PAIRS}
    expected |= {f"{recipe}.{ANY_NIC}.Dockerfile" for recipe in LIBRARY.recipe_names()}
    assert {path.name for path in DOCKERFILES.iterdir()} == expected


@pytest.mark.parametrize("recipe,cluster", PAIRS + [(recipe, ANY_NIC) for recipe in LIBRARY.recipe_names()])
def test_committed_dockerfile_is_up_to_date(recipe, cluster):
    result = check(recipe, cluster, DOCKERFILES)
    assert result.exit_code == 0, result.output
    assert f"{DOCKERFILES / f'{recipe}.{cluster}.Dockerfile'}: up to date" in result.output


@pytest.mark.parametrize("recipe", LIBRARY.recipe_names())
def test_the_image_for_every_cluster_builds_mori_once_per_nic_family(recipe):
    """A stage per family, each running libionic (which MoRI needs, and which runs in the image) before
    MoRI; the image copies the three builds in, and its ENV leaves MoRI's environment to setup_deps.sh."""
    text = (DOCKERFILES / f"{recipe}.{ANY_NIC}.Dockerfile").read_text()
    for family in ("ionic", "mlx5", "bnxt"):
        stage = text[text.index(f"\nFROM envbuild-base AS component-mori.{family}\n"):]
        stage = stage[:stage.index("\nFROM ", 1)]
        assert [line for line in stage.splitlines() if line.startswith(("RUN ", "COPY "))] == [
            "COPY envbuild/components/04-libionic/ /",
            "RUN ENVBUILD_COMPONENT=libionic bash /opt/envbuild/lib/run-component.sh libionic",
            "COPY envbuild/components/05-mori/ /",
            f"RUN ENVBUILD_COMPONENT=mori@{family} ENVBUILD_NIC_FAMILY={family} bash "
            "/opt/envbuild/lib/run-component.sh --stage mori",
        ]
    image = text[text.index("\nFROM envbuild-base\n"):]
    assert [line for line in image.splitlines() if line.startswith("COPY --from=component-mori")] == [
        f"COPY --from=component-mori.{family} /envbuild-out/ /" for family in ("ionic", "mlx5", "bnxt")]
    # libionic comes first in the image as in the stages: the builder runs it once for all four.
    assert image.split("\n")[3:5] == ["COPY envbuild/components/04-libionic/ /",
                                      "RUN ENVBUILD_COMPONENT=libionic bash /opt/envbuild/lib/run-component.sh libionic"]
    assert "/opt/mori" not in image[image.index("\nENV "):image.index("\nLABEL ")]
    assert '      io.envbuild.nic-families="ionic,mlx5,bnxt" \\\n' in text
    assert '      io.envbuild.component.mori.nic-families="ionic,mlx5,bnxt" \\\n' in text


def test_check_fails_on_a_stale_or_missing_dockerfile(tmp_path):
    recipe, cluster = PAIRS[0]
    name = f"{recipe}.{cluster}.Dockerfile"
    missing = check(recipe, cluster, tmp_path)
    assert missing.exit_code == 3
    # ENVBUILD_RECIPES, if set, is the directory the printed command reads by default: not named.
    assert missing.stderr.splitlines()[-1] == (f"envbuild: error: {tmp_path / name} does not exist; write it with: "
                                               f"envbuild dockerfile --recipe {recipe} --cluster {cluster} "
                                               f"> {tmp_path / name}")
    nowhere = check(recipe, cluster, tmp_path / "new dir")
    assert (nowhere.exit_code, nowhere.stderr.splitlines()[-1]) == (3, (
        f"envbuild: error: {tmp_path / 'new dir' / name} does not exist, nor does its directory; write it with: "
        f"mkdir -p '{tmp_path / 'new dir'}' && envbuild dockerfile --recipe {recipe} --cluster {cluster} "
        f"> '{tmp_path / 'new dir' / name}'"))

    shutil.copy(DOCKERFILES / name, tmp_path / name)
    assert check(recipe, cluster, tmp_path).exit_code == 0
    stale = tmp_path / name
    stale.write_text(stale.read_text().replace("RUN ENVBUILD_COMPONENT=", "RUN  ENVBUILD_COMPONENT=", 1))
    result = check(recipe, cluster, tmp_path)
    assert result.exit_code == 3
    assert result.stderr.splitlines()[-1].startswith(f"envbuild: error: {stale} is out of date; render it again with: ")


@pytest.mark.parametrize("exists", [True, False], ids=["directory", "no directory"])
def test_the_fix_command_works_as_printed(tmp_path, exists):
    """The command --check suggests, run by a shell as printed, writes what --check then accepts, also into
    a directory that does not exist yet."""
    directory = tmp_path / "docker files"
    if exists:
        directory.mkdir()
    args = ["dockerfile", "--recipe", "mi355x-moriio", "--nic-family", "ionic", "--base-image", "debian:bookworm"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("ENVBUILD_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    first = subprocess.run([sys.executable, "-m", "envbuild", *args, "--check", str(directory)], env=env,
                           capture_output=True, text=True)
    assert first.returncode == 3
    command = first.stderr.strip().split(" with: ", 1)[1]
    fix = "envbuild dockerfile --recipe mi355x-moriio --nic-family ionic --base-image debian:bookworm"
    assert command.startswith(fix if exists else f"mkdir -p '{directory}' && {fix}")
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "envbuild").write_text(f"#!/bin/sh\nexec {sys.executable} -m envbuild \"$@\"\n")
    (shim / "envbuild").chmod(0o755)
    fixed = subprocess.run(["sh", "-c", command], env=dict(env, PATH=f"{shim}:{env['PATH']}"), capture_output=True,
                           text=True)
    assert fixed.returncode == 0, fixed.stderr
    again = subprocess.run([sys.executable, "-m", "envbuild", *args, "--check", str(directory)], env=env,
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"{directory / 'mi355x-moriio.ionic.Dockerfile'}: up to date\n"


def test_check_does_not_depend_on_the_working_directory(tmp_path):
    """The Dockerfile names its recipe file; that name must not change with where envbuild runs."""
    recipe, cluster = PAIRS[0]
    result = subprocess.run(
        [sys.executable, "-m", "envbuild", "dockerfile", "--recipe", recipe, "--cluster", cluster,
         "--check", str(DOCKERFILES)],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr


def test_what_a_ucx_bump_runs_again_in_the_image_is_what_needs_ucx():
    """UCX builds in a stage of its own; in the image, what needs no stage's output comes before its copy."""
    text = (DOCKERFILES / "mi355x-moriio.mia1.Dockerfile").read_text()
    image = text[text.index("\nFROM envbuild-base\n"):]
    steps = [line.split()[1] for line in image.splitlines() if line.startswith(("RUN ", "COPY --from="))]
    assert steps == [
        "ENVBUILD_COMPONENT=libionic", "ENVBUILD_COMPONENT=mori", "ENVBUILD_COMPONENT=moriio-proxy-deps",
        "--from=component-ucx", "ENVBUILD_COMPONENT=rixl", "ENVBUILD_COMPONENT=moriio-patches",
        "--from=component-etcd",
    ]
    assert "FROM envbuild-base AS component-ucx\n" in text and "FROM envbuild-base AS component-etcd\n" in text
