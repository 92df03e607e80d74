"""envbuild installed the way users install it: a wheel in a fresh virtual environment,
every command run from an empty directory, the requester's three lines verbatim."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the venv's envbuild executable, an empty working directory) of a wheel built from this tree."""
    root = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(root / "dist"), str(REPO)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    wheels = list((root / "dist").glob("envbuild-*.whl"))
    assert len(wheels) == 1
    venv.EnvBuilder(with_pip=True).create(root / "venv")
    pip = subprocess.run([str(root / "venv/bin/python"), "-m", "pip", "install", "-q", str(wheels[0])],
                         capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr
    empty = root / "empty"
    empty.mkdir()
    return root / "venv/bin/envbuild", empty


def run(installed, *args, env=None):
    executable, cwd = installed
    environment = {key: value for key, value in os.environ.items() if not key.startswith("ENVBUILD_")}
    return subprocess.run([str(executable), *args], cwd=cwd, capture_output=True, text=True,
                          env=dict(environment, **(env or {})))


def test_the_wheel_carries_the_builtin_recipes(installed):
    listing = run(installed, "list")
    assert listing.returncode == 0, listing.stderr
    names = [line.split()[0] for line in listing.stdout.splitlines()]
    assert names == ["mi355x-moriio", "mi355x-nixl"]
    assert listing.stdout.splitlines()[0].endswith("(default)")
    validate = run(installed, "validate")
    assert validate.returncode == 0, validate.stderr
    assert validate.stdout.startswith("mi355x-moriio: ok (7 components, hash ")


def test_runtime_script_to_stdout_is_the_default_recipes_script(installed):
    executable, cwd = installed
    script = subprocess.run(f"{executable} runtime-script > setup_deps.sh", shell=True, cwd=cwd,
                            capture_output=True, text=True)
    assert script.returncode == 0, script.stderr
    text = (cwd / "setup_deps.sh").read_text()
    assert text.startswith("#!/usr/bin/env bash\n# setup_deps.sh for recipe mi355x-moriio: ")
    named = run(installed, "runtime-script", "--recipe", "mi355x-moriio")
    assert named.stdout == text
    listed = subprocess.run(["bash", str(cwd / "setup_deps.sh"), "--list"], capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines() if not line.startswith("envbuild:")] == [
        "ucx", "rixl", "etcd", "libionic", "mori", "moriio-proxy-deps", "moriio-patches"]


@pytest.mark.parametrize("args", [
    ["plan", "--format", "json"],
    ["dockerfile", "--cluster", "mia1"],
    ["image", "--cluster", "ionic-4n", "--dry-run"],
    ["image", "--recipe", "mi355x-moriio", "--dry-run"],
    ["lock", "--check"],
    ["inspect", "mi355x-nixl", "--format", "json"],
    ["diff", "mi355x-moriio", "mi355x-nixl"],
    ["patches", "show", "idle-kv-reaper"],
    ["schema", "component"],
    ["detect-nic"],
    ["detect-nic", "--format", "json"],
])
def test_every_command_works_from_an_empty_directory(installed, args):
    result = run(installed, *args)
    assert "Traceback" not in result.stderr
    assert result.returncode == (3 if args[0] == "diff" else 0), result.stderr
    assert result.stdout


def test_patches_check_looks_where_it_is_told(installed, tmp_path):
    result = run(installed, "patches", "check", "--site-packages", str(tmp_path))
    assert result.returncode == 3
    assert "moriep-fp8-compat" in result.stdout and "not-installed" in result.stdout


def test_environment_names_the_recipe(installed):
    plan = json.loads(run(installed, "plan", "--format", "json", env={"ENVBUILD_RECIPE": "mi355x-nixl"}).stdout)
    assert plan["recipe"] == "mi355x-nixl"
