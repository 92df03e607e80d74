"""The command line itself: help everywhere, version, list, plan output."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from envbuild import __version__
from envbuild.cli import main


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


def test_cluster_profile_changes_the_recipe_hash_but_not_the_components():
    plans = {}
    for cluster in ("ionic-4n", "mia1"):
        result = CliRunner().invoke(main, ["plan", "--recipe", "mi355x-moriio", "--format", "json", "--cluster", cluster])
        plans[cluster] = json.loads(result.stdout)
    ionic, mlx5 = plans["ionic-4n"], plans["mia1"]
    assert (ionic["nic_family"], mlx5["nic_family"]) == ("ionic", "mlx5")
    assert ionic["hash"] != mlx5["hash"]
    assert [c["hash"] for c in ionic["components"]] == [c["hash"] for c in mlx5["components"]]
