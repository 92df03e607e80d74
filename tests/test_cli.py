"""The command line itself: help everywhere, version, list, plan output."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from envbuild import __version__
from envbuild.cli import main

REPO_ROOT = Path(__file__).resolve().parent.parent


def walk(group, prefix=()):
    for name, command in sorted(group.commands.items()):
        yield prefix + (name,)
        if hasattr(command, "commands"):
            yield from walk(command, prefix + (name,))


@pytest.mark.parametrize("command", list(walk(main)), ids=" ".join)
def test_every_command_explains_itself(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    assert result.output.startswith(f"Usage: main {' '.join(command)}")
    assert len(result.output.splitlines()) > 4


def test_version_and_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "envbuild", "--version"], capture_output=True, text=True)
    assert result.stdout == f"envbuild, version {__version__}\n"


def test_list_prints_one_line_per_recipe():
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == ["mi355x-moriio", "mi355x-nixl"]
    assert "MoRI-IO" in lines[0] and "NixlConnector" in lines[1]


def test_plan_json_orders_dependencies_first_and_explains_each():
    result = CliRunner().invoke(main, ["plan", "--recipe", "mi355x-moriio", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    names = [c["name"] for c in plan["components"]]
    assert names == ["ucx", "rixl", "etcd", "libionic", "mori", "moriio-proxy-deps", "moriio-patches"]
    mori = plan["components"][4]
    assert mori["nic_specific"] and mori["depends"] == ["libionic"]
    assert mori["source"] == "https://github.com/ROCm/mori.git@b645fc8bbc62287e2b939be1558deb16692385f1"
    assert plan["components"][5]["condition"] == "NODE_RANK in 0"
    assert all(len(c["hash"]) == 64 for c in plan["components"])
    # No cluster: what an image builds per NIC family, it builds for each the recipe lists.
    assert (plan["nic_family"], plan["nic_families"]) == (None, ["ionic", "mlx5", "bnxt"])


def test_cluster_profile_changes_the_recipe_hash_but_not_the_components():
    plans = {}
    for cluster in ("ionic-4n", "mia1"):
        result = CliRunner().invoke(main, ["plan", "--recipe", "mi355x-moriio", "--format", "json", "--cluster", cluster])
        plans[cluster] = json.loads(result.stdout)
    ionic, mlx5 = plans["ionic-4n"], plans["mia1"]
    assert (ionic["nic_family"], mlx5["nic_family"]) == ("ionic", "mlx5")
    assert (ionic["nic_families"], mlx5["nic_families"]) == (["ionic"], ["mlx5"])
    assert ionic["hash"] != mlx5["hash"]
    assert [c["hash"] for c in ionic["components"]] == [c["hash"] for c in mlx5["components"]]


# --- output files ----------------------------------------------------------------------


def envbuild(*args, cwd=None, env=None):
    environment = {key: value for key, value in os.environ.items() if not key.startswith("ENVBUILD_")}
    return subprocess.run([sys.executable, "-m", "envbuild", *args], capture_output=True, text=True, cwd=cwd,
                          env=dict(environment, **(env or {})))


def test_output_to_a_new_file_is_executable_and_whole(tmp_path):
    result = envbuild("runtime-script", "-o", str(tmp_path / "setup_deps.sh"))
    assert result.returncode == 0, result.stderr
    path = tmp_path / "setup_deps.sh"
    assert stat.S_IMODE(path.stat().st_mode) == 0o755 & ~current_umask()
    assert path.read_text() == envbuild("runtime-script").stdout
    assert [p.name for p in tmp_path.iterdir()] == ["setup_deps.sh"]  # no temporary file left


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_output_keeps_an_existing_files_mode(tmp_path):
    path = tmp_path / "setup_deps.sh"
    path.write_text("old")
    path.chmod(0o600)
    assert envbuild("runtime-script", "-o", str(path)).returncode == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("#!/usr/bin/env bash")


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_output_to_a_device_writes_through_and_leaves_it_alone(tmp_path):
    device = tmp_path / "null"
    os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a second /dev/null
    device.chmod(0o666)
    result = envbuild("runtime-script", "-o", str(device))
    assert result.returncode == 0, result.stderr
    mode = device.stat().st_mode
    assert stat.S_ISCHR(mode) and stat.S_IMODE(mode) == 0o666
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_output_to_a_fifo_writes_through(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    # The reader drains into a file: a script larger than two pipe buffers would otherwise block both ends.
    with open(tmp_path / "read", "wb") as sink:
        reader = subprocess.Popen(["cat", str(fifo)], stdout=sink)
        result = envbuild("runtime-script", "-o", str(fifo))
        assert reader.wait(timeout=30) == 0
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "read").read_text() == envbuild("runtime-script").stdout
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_output_through_a_symlink_replaces_the_target_and_keeps_the_link(tmp_path):
    target = tmp_path / "real.sh"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.sh"
    link.symlink_to(target)
    assert envbuild("runtime-script", "-o", str(link)).returncode == 0
    assert link.is_symlink() and target.read_text().startswith("#!/usr/bin/env bash")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_output_dash_is_stdout_and_a_directory_is_refused(tmp_path):
    dash = envbuild("runtime-script", "-o", "-", cwd=tmp_path)
    assert dash.returncode == 0 and dash.stdout.startswith("#!/usr/bin/env bash")
    assert not (tmp_path / "-").exists()
    directory = envbuild("runtime-script", "-o", str(tmp_path))
    assert directory.returncode == 2
    assert directory.stderr.splitlines()[-1] == f"envbuild: error: {tmp_path} is a directory; give a file name"
    empty = envbuild("runtime-script", "-q", "-o", "", cwd=tmp_path)
    assert (empty.returncode, empty.stdout, empty.stderr) == (
        2, "", "envbuild: error: the output file name is empty; give a file name, or - for standard output\n")
    assert list(tmp_path.iterdir()) == []


def test_a_failing_command_leaves_the_output_as_it_was(tmp_path):
    path = tmp_path / "setup_deps.sh"
    path.write_text("previous\n")
    result = envbuild("runtime-script", "--recipe", "no-such-recipe", "-o", str(path))
    assert result.returncode == 2
    assert path.read_text() == "previous\n"
    assert not envbuild("runtime-script", "--recipe", "nope", "-o", str(tmp_path / "new.sh")).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["setup_deps.sh"]


# --- default recipe and recipe directories ------------------------------------------------


def test_the_default_recipe_is_marked_and_used(tmp_path):
    listing = envbuild("list", cwd=tmp_path)
    assert listing.stdout.splitlines()[0].endswith("  (default)")
    assert not listing.stdout.splitlines()[1].endswith("(default)")
    default = json.loads(envbuild("plan", "--format", "json", cwd=tmp_path).stdout)
    assert default["recipe"] == "mi355x-moriio"
    chosen = json.loads(envbuild("plan", "--format", "json", env={"ENVBUILD_RECIPE": "mi355x-nixl"}).stdout)
    assert chosen["recipe"] == "mi355x-nixl"
    given = json.loads(envbuild("plan", "-r", "mi355x-moriio", "--format", "json",
                                env={"ENVBUILD_RECIPE": "mi355x-nixl"}).stdout)
    assert given["recipe"] == "mi355x-moriio"


def write_recipes(root: Path, default: str | None = None) -> Path:
    (root / "components").mkdir(parents=True)
    (root / "components" / "a.yaml").write_text("name: a\ndescription: A.\n")
    (root / "r.yaml").write_text("name: r\ndescription: R.\nbase_image: debian:bookworm\ncomponents:\n  - a\n")
    if default is not None:
        (root / "default").write_text(default)
    return root


def test_a_directory_without_a_default_asks_for_a_recipe(tmp_path):
    recipes = write_recipes(tmp_path / "recipes")
    result = envbuild("plan", "--recipes-dir", str(recipes))
    assert result.returncode == 2
    assert result.stderr == (f"{recipes}: no recipe given and no default file names one; "
                             "give --recipe NAME or set ENVBUILD_RECIPE\n")


def test_a_default_naming_no_recipe_is_an_error_with_its_line(tmp_path):
    recipes = write_recipes(tmp_path / "recipes", "# comment\nnope\n")
    result = envbuild("validate", str(recipes))
    assert result.returncode == 2
    assert f"{recipes}/default:2: names recipe 'nope', which is not here (known recipes: r)" in result.stderr


@pytest.mark.parametrize("command", [["validate"], ["list"], ["plan", "-r", "x"], ["runtime-script"]])
def test_a_missing_or_empty_recipes_directory_is_an_error(tmp_path, command):
    missing = envbuild(*command, "--recipes-dir", str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert missing.stderr == (f"{tmp_path / 'nope'}: no such directory; give a recipes directory "
                              "(--recipes-dir or ENVBUILD_RECIPES)\n")
    empty = envbuild(*command, "--recipes-dir", str(tmp_path))
    assert empty.returncode == 2
    assert empty.stderr == (f"{tmp_path}: no recipes or components here: a recipes directory holds "
                            "<recipe>.yaml files, components/ and clusters/\n")


def test_validate_a_path_that_is_no_recipes_directory(tmp_path):
    result = envbuild("validate", str(tmp_path))
    assert result.returncode == 2
    assert "no recipes or components here" in result.stderr


def test_a_recipe_file_takes_components_from_recipes_dir_when_given(tmp_path):
    recipes = write_recipes(tmp_path / "recipes")
    (tmp_path / "mine.yml").write_text("name: mine\ndescription: M.\nbase_image: debian:bookworm\ncomponents:\n  - a\n")
    result = envbuild("plan", "-r", str(tmp_path / "mine.yml"), "--recipes-dir", str(recipes), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert [c["name"] for c in json.loads(result.stdout)["components"]] == ["a"]
    alone = envbuild("plan", "-r", str(tmp_path / "mine.yml"))  # its own directory holds no components
    assert alone.returncode == 2
    assert alone.stderr == f"{tmp_path / 'mine.yml'}:5: components: unknown component 'a' (known: none)\n"


@pytest.mark.parametrize("relative, message", [
    ("recipes/components/a.yaml", "is a component file, not a recipe; a recipe lists components under `components:`"),
    ("recipes", "is a directory, not a recipe file (a recipes directory is given with --recipes-dir)"),
])
def test_what_is_not_a_recipe_is_named(tmp_path, relative, message):
    write_recipes(tmp_path / "recipes")
    result = envbuild("plan", "-r", str(tmp_path / relative), "--recipes-dir", str(tmp_path / "recipes"))
    assert result.returncode == 2
    assert result.stderr == f"{tmp_path / relative}: {message}\n"


RECIPE_COMMANDS = [["plan", "--recipe"], ["runtime-script", "--recipe"], ["dockerfile", "--recipe"],
                   ["image", "--dry-run", "--recipe"], ["lock", "--check", "--recipe"],
                   ["fetch", "--into", "out", "--recipe"], ["patches", "check", "--recipe"], ["detect-nic", "--recipe"],
                   ["validate"]]


@pytest.mark.parametrize("command", RECIPE_COMMANDS, ids=" ".join)
@pytest.mark.parametrize("given, message", [
    ("missing.yaml", "missing.yaml: no such recipe file"),
    ("sub/missing.yml", "sub/missing.yml: no such recipe file"),
    ("/nonexistent.yaml", "/nonexistent.yaml: no such recipe file"),
    ("/dev/null", "/dev/null: not a regular file; a recipe is a .yaml or .yml file"),
])
def test_a_recipe_file_that_is_not_there_is_named_as_such(tmp_path, command, given, message):
    """Not the directory it would be in, taken for a recipes directory ('.: no recipes or components here')."""
    result = envbuild(*command, given, cwd=tmp_path)
    assert (result.returncode, result.stderr, result.stdout) == (2, f"envbuild: error: {message}\n", "")
    with_dir = envbuild(*command, given, "--recipes-dir", str(REPO_ROOT / "recipes"), cwd=tmp_path)
    assert (with_dir.returncode, with_dir.stderr) == (2, f"envbuild: error: {message}\n")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [["image"], ["image", "--dry-run"], ["dockerfile"], ["fetch", "--into", "out"]],
                         ids=" ".join)
def test_a_base_image_that_is_no_image_reference_is_refused_as_a_recipes_would_be(tmp_path, command):
    result = envbuild(*command, "--base-image", "no such", cwd=tmp_path,
                      env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert (result.returncode, result.stderr, result.stdout) == (
        2, "envbuild: error: --base-image: 'no such' is not an image reference\n", "")
    recipes = write_recipes(tmp_path / "recipes")
    (recipes / "r.yaml").write_text("name: r\ndescription: R.\nbase_image: no such\n")
    recipe = envbuild("validate", str(recipes / "r.yaml"), "--recipes-dir", str(recipes))
    assert recipe.stderr == f"{recipes / 'r.yaml'}:3: base_image: 'no such' is not an image reference\n"
    assert not (tmp_path / "out").exists()


def test_a_bad_tag_exits_two_before_the_recipe_is_even_planned(tmp_path):
    result = envbuild("image", "-t", "Bad Tag", "--recipe", "nosuch", cwd=tmp_path,
                      env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert (result.returncode, result.stderr, result.stdout) == (
        2, "envbuild: error: invalid image reference 'Bad Tag': uppercase letters are not allowed in a repository "
           "name\n", "")
