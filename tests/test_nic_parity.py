"""One NIC detector, two users: `envbuild detect-nic` and `setup_deps.sh --detect-nic`
print the same bytes and exit with the same status on every fixture node, with and
without a cluster profile."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nic_fixtures import SCENARIOS, ionic_rails, make_node, mlx5_rails, pod_two_of_eight_node, rail


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
    assert (cli.returncode, cli.stdout, cli.stderr) == (script.returncode, script.stdout, script.stderr)
    assert cli.stdout  # a result, even with no NIC at all
    if fmt == "env":
        assert "export NCCL_IB_GID_INDEX=5\n" in cli.stdout  # the environment wins, in both
    else:
        # mia1 expects 8 rails: any other count is a mismatch, in both.
        rails = json.loads(cli.stdout)["rails"]
        assert cli.returncode == (3 if cluster and rails != 8 else 0), cli.stderr
        assert cli.stderr == (f"detect-nic: expected 8 rails (cluster profile mia1), found {rails}\n"
                              if cli.returncode else "")


@pytest.mark.parametrize("args, status", [(["--expect-rails", "8"], 3), (["--expect-rails", "2"], 0),
                                          (["--root", "/nonexistent/root"], 2)])
def test_cli_and_script_exit_alike(args, status, scripts, tmp_path):
    node = pod_two_of_eight_node(tmp_path)
    env = node.environ(ENVBUILD_PYTHON=sys.executable)
    args = ["--root", str(node.root), *args]
    cli = subprocess.run([sys.executable, "-m", "envbuild", "detect-nic", *args], env=env, capture_output=True,
                         text=True)
    script = subprocess.run(["/bin/bash", str(scripts[None]), "--detect-nic", *args], env=env, capture_output=True,
                            text=True)
    assert (cli.returncode, cli.stdout, cli.stderr) == (script.returncode, script.stdout, script.stderr)
    assert cli.returncode == status
    assert len(cli.stderr.splitlines()) == (1 if status else 0)


def test_script_uses_detection_for_nic_conditions_and_caches_it(tmp_path, scripts):
    # Mixed vendors: bash does not decide (tests/test_fleet.py), the detector does.
    node = make_node(tmp_path, mlx5_rails(3) + [rail("ionic", "ionic_0", 7, "enp8s0")])
    assert node.detect()["family"] == "mlx5"
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
    # --check says where the family came from: detection, then its cache.
    family = "envbuild: NIC family mlx5 (from detection{}); built for it: mori"
    assert listing.stdout.splitlines()[1] == family.format("")
    assert again.stdout.splitlines()[1] == family.format(f" (cached in {state}/nic-family)")
    first, second = listing.stdout.splitlines(), again.stdout.splitlines()
    assert second[:1] + second[2:-1] == first[:1] + first[2:-1]  # the rest is the same, but the timing line


def test_a_rail_count_mismatch_does_not_stop_the_install_needing_the_family(tmp_path):
    """The family comes from detection when the profile names none; a profile rail count
    the node does not meet is said on stderr (exit 3 of the detector), the family still holds."""
    recipes = tmp_path / "recipes"
    (recipes / "components").mkdir(parents=True)
    (recipes / "clusters").mkdir()
    (recipes / "components" / "a.yaml").write_text("name: a\ndescription: A.\nbuild: 'true'\nwhen: {nic: ionic}\n")
    (recipes / "clusters" / "c.yaml").write_text("name: c\ndescription: C.\nrail_count: 8\n")
    (recipes / "r.yaml").write_text("name: r\ndescription: R.\nbase_image: debian:bookworm\ncomponents: [a]\ncluster: c\n")
    script = tmp_path / "setup_deps.sh"
    subprocess.run([sys.executable, "-m", "envbuild", "runtime-script", "--recipes-dir", str(recipes), "--recipe", "r",
                    "-o", str(script)], check=True, capture_output=True)
    node = make_node(tmp_path, ionic_rails(4))
    state = tmp_path / "state"
    env = node.environ(ENVBUILD_PYTHON=sys.executable, ENVBUILD_ROOT=str(node.root), ENVBUILD_STATE_DIR=str(state))
    env["PATH"] += ":/usr/bin:/bin"
    check = subprocess.run(["/bin/bash", str(script), "--check"], env=env, capture_output=True, text=True)
    assert "envbuild: a: missing" in check.stdout, check.stdout + check.stderr
    assert "detect-nic: expected 8 rails (cluster profile c), found 4\n" in check.stderr
    assert (state / "nic-family").read_text().endswith("\tionic\n")
