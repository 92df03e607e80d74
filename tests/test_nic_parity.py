"""One NIC detector, two users: `envbuild detect-nic` and `setup_deps.sh --detect-nic`
print the same bytes on every fixture node, with and without a cluster profile."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nic_fixtures import SCENARIOS


@pytest.fixture(scope="module")
def scripts(tmp_path_factory):
    directory = tmp_path_factory.mktemp("scripts")
    rendered = {}
    for cluster in (None, "mia1"):
        path = directory / f"setup_deps.{cluster or 'plain'}.sh"
        extra = ["--cluster", cluster] if cluster else []
        subprocess.run([sys.executable, "-m", "envbuild", "runtime-script", "--recipe", "mi355x-moriio",
                        "-o", str(path), *extra], check=True, capture_output=True)
        rendered[cluster] = path
    return rendered


@pytest.mark.parametrize("cluster", [None, "mia1"])
@pytest.mark.parametrize("fmt", ["env", "json"])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_cli_and_script_print_the_same_detection(scenario, fmt, cluster, scripts, tmp_path):
    node = SCENARIOS[scenario](tmp_path)
    env = node.environ(ENVBUILD_PYTHON=sys.executable, NCCL_IB_GID_INDEX="5")
    args = ["--root", str(node.root), "--format", fmt]
    cli = subprocess.run([sys.executable, "-m", "envbuild", "detect-nic", *args,
                          *(["--cluster", cluster] if cluster else [])],
                         env=env, capture_output=True, text=True)
    script = subprocess.run(["/bin/bash", str(scripts[cluster]), "--detect-nic", *args],
                            env=env, capture_output=True, text=True)
    assert cli.returncode == 0 and script.returncode == 0, cli.stderr + script.stderr
    assert cli.stdout == script.stdout
    assert cli.stdout  # a result, even with no NIC at all
    if fmt == "env":
        assert "export NCCL_IB_GID_INDEX=5\n" in cli.stdout  # the environment wins, in both


def test_script_uses_detection_for_nic_conditions_and_caches_it(tmp_path, scripts):
    node = SCENARIOS["mia1"](tmp_path)
    state = tmp_path / "state"
    env = node.environ(ENVBUILD_PYTHON=sys.executable, ENVBUILD_ROOT=str(node.root), ENVBUILD_STATE_DIR=str(state))
    env["PATH"] += ":/usr/bin:/bin"
    listing = subprocess.run(["/bin/bash", str(scripts[None]), "--check"], env=env, capture_output=True, text=True)
    assert "envbuild: mori: missing" in listing.stdout
    cache = (state / "nic-family").read_text()
    assert cache.endswith("\tmlx5\n")
    # The second look reads the cache: no detector runs (python is not even reachable).
    env["ENVBUILD_PYTHON"] = "/nonexistent/python"
    again = subprocess.run(["/bin/bash", str(scripts[None]), "--check"], env=env, capture_output=True, text=True)
    assert again.stdout.splitlines()[:-1] == listing.stdout.splitlines()[:-1]
