"""Builds per NIC family side by side, and activating the node's family (issue 10, item 3), with the
real runtime script on this machine; tests/test_fleet_image.py does it in an image.

A NIC-specific component's prefixes hold a directory per family and its stamp is
stamps/<component>@<family>, so the builds for several families live in one state
directory; the skip path finds the node's family's stamp, and sourcing the script
exports that build's environment. The family comes from the node's sysfs (fixture
trees under ENVBUILD_ROOT, tests/nic_fixtures.py), in bash when the PCI vendor ids
decide it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from envbuild.pipeline import load_plan
from envbuild.render.dockerfile import image_units, instruction_component, render_dockerfile
from envbuild.runtime.nic import FAMILIES, NO_NIC
from localsources import FileServer
from nic_fixtures import SCENARIOS, ionic_node, ionic_rails, make_node, mia1_node, mlx5_rails, rail
from stamps import expected_stamp, stamp_of
from testrecipe import NICDEP, NICDRV, LocalRecipe

COMPONENTS = ["libhello", "nicdrv", "nicdep"]
# Prints what the environment resolves: the command, the Python package, the prefix.
SHOW = 'nicdrv; "$ENVBUILD_PYTHON" -c "import nicdrv; print(nicdrv.FAMILY, nicdrv.__file__)"; echo "$NICDRV_HOME"'


@pytest.fixture
def fleet(tmp_path, file_server):
    return LocalRecipe(tmp_path / "t", file_server, components=list(COMPONENTS),
                       extra_components={"nicdrv": NICDRV, "nicdep": NICDEP},
                       recipe_extra="nic_families: [ionic, mlx5]\n")


def shown(recipe: LocalRecipe, family: str) -> list[str]:
    """What SHOW prints when `family`'s build is active."""
    home = recipe.root / "opt" / "nicdrv" / family
    return [f"nicdrv for {family}", f"{family} {home}/python/nicdrv/__init__.py", str(home)]


def sourced(recipe: LocalRecipe, script, command: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f'source "$1" && {command}', "_", str(script)], env=recipe.env(**env),
                          capture_output=True, text=True, cwd=recipe.root)


def test_builds_for_several_families_live_side_by_side(fleet):
    script = fleet.render()
    for family in ("ionic", "mlx5"):
        result = fleet.run(script, ENVBUILD_NIC_FAMILY=family)
        assert result.returncode == 0, result.stderr
    # Back on ionic: its build is there, nothing runs.
    again = fleet.run(script, ENVBUILD_NIC_FAMILY="ionic")
    assert again.returncode == 0, again.stderr
    assert re.fullmatch(r"envbuild: all 3 components present \(0\.\d{3} s\)\n", again.stdout)
    assert sorted(fleet.builds()) == ["libhello", "nicdep-ionic", "nicdep-mlx5", "nicdrv-ionic", "nicdrv-mlx5"]

    stamps = fleet.state / "stamps"
    assert sorted(path.name for path in stamps.iterdir()) == [
        "libhello", "nicdep@ionic", "nicdep@mlx5", "nicdrv@ionic", "nicdrv@mlx5"]
    plan = load_plan(fleet.recipes, "testrecipe")
    for family in ("ionic", "mlx5"):
        for name in ("nicdrv", "nicdep"):
            assert stamp_of((stamps / f"{name}@{family}").read_text()) == expected_stamp(plan, plan.step(name), family)
            assert (fleet.root / "opt" / name / family).is_dir()
    # The defaults are the recipe's prefixes with the family as their last directory.
    assert stamp_of((stamps / "nicdep@mlx5").read_text())["prefixes"] == {
        "NICDEP_HOME": f"{fleet.root}/opt/nicdep/mlx5", "NICDRV_HOME": f"{fleet.root}/opt/nicdrv/mlx5"}
    assert (fleet.root / "opt" / "nicdep" / "mlx5" / "made-with").read_text() == "nicdrv for mlx5\n"
    assert sorted(path.name for path in (fleet.state / "provenance").iterdir()) == sorted(path.name for path in stamps.iterdir())


def test_sourcing_activates_the_build_of_the_family_the_nodes_nics_have(fleet, scratch):
    script = fleet.render()
    for family in ("ionic", "mlx5"):
        assert fleet.run(script, ENVBUILD_NIC_FAMILY=family).returncode == 0
    before = fleet.builds()
    (scratch / "ionic").mkdir()
    (scratch / "mia1").mkdir()
    nodes = {"ionic": ionic_node(scratch / "ionic"), "mlx5": mia1_node(scratch / "mia1")}
    for family, node in nodes.items():
        # No ENVBUILD_NIC_FAMILY: the family comes from the node's devices.
        result = sourced(fleet, script, f"bash {script} --check --quiet; echo check $?; {SHOW}",
                         ENVBUILD_NIC_FAMILY="", ENVBUILD_ROOT=str(node.root))
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert re.fullmatch(r"envbuild: all 3 components present \(0\.\d{3} s\)", lines[0])
        assert lines[1:] == ["check 0", *shown(fleet, family)]
        assert result.stderr == ""
    assert fleet.builds() == before


def test_env_prints_the_environment_of_the_nodes_family(fleet, scratch):
    script = fleet.render()
    (scratch / "node").mkdir()
    node = mia1_node(scratch / "node")
    result = fleet.run(script, "--env", ENVBUILD_NIC_FAMILY="", ENVBUILD_ROOT=str(node.root))
    assert result.returncode == 0, result.stderr
    home = fleet.root / "opt" / "nicdrv" / "mlx5"
    assert f"export NICDRV_HOME={home}\n" in result.stdout
    assert f"export PYTHONPATH={home}/python" in result.stdout  # before what the environment had


def test_a_family_not_built_yet_is_built_at_start_and_activated(fleet, scratch):
    script = fleet.render()
    assert fleet.run(script, ENVBUILD_NIC_FAMILY="ionic").returncode == 0
    node = make_node(scratch, mlx5_rails(2))  # a family the state has no build for
    result = sourced(fleet, script, SHOW, ENVBUILD_NIC_FAMILY="", ENVBUILD_ROOT=str(node.root))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-3:] == shown(fleet, "mlx5")
    assert sorted(fleet.builds()) == ["libhello", "nicdep-ionic", "nicdep-mlx5", "nicdrv-ionic", "nicdrv-mlx5"]


def test_a_prefix_exported_for_another_family_moves_to_this_family(fleet):
    """An image's ENV, or a shell that sourced the script on an ionic node, exports ionic's directory:
    on an mlx5 node that is not a setting, and mlx5's build goes to its own directory."""
    script = fleet.render()
    assert fleet.run(script, ENVBUILD_NIC_FAMILY="ionic").returncode == 0
    ionic_home = str(fleet.root / "opt" / "nicdrv" / "ionic")
    result = sourced(fleet, script, SHOW, ENVBUILD_NIC_FAMILY="mlx5", NICDRV_HOME=ionic_home)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-3:] == shown(fleet, "mlx5")
    assert (fleet.root / "opt" / "nicdrv" / "ionic" / "bin" / "nicdrv").read_text().endswith('"nicdrv for ionic"\n')
    assert stamp_of((fleet.state / "stamps" / "nicdrv@ionic").read_text())["prefixes"] == {"NICDRV_HOME": ionic_home}


def test_a_prefix_set_to_anything_else_is_used_as_it_is(fleet):
    script = fleet.render()
    custom = fleet.root / "custom"
    result = sourced(fleet, script, SHOW, ENVBUILD_NIC_FAMILY="mlx5", NICDRV_HOME=str(custom))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-3:] == [
        "nicdrv for mlx5", f"mlx5 {custom}/python/nicdrv/__init__.py", str(custom)]
    assert stamp_of((fleet.state / "stamps" / "nicdrv@mlx5").read_text())["prefixes"] == {"NICDRV_HOME": str(custom)}
    assert not (fleet.root / "opt" / "nicdrv").exists()


def test_activation_starts_no_process(fleet, scratch, tmp_path):
    """The skip path with the family read from sysfs: bash alone, as with ENVBUILD_NIC_FAMILY."""
    script = fleet.render()
    assert fleet.run(script, ENVBUILD_NIC_FAMILY="ionic").returncode == 0
    trace = tmp_path / "trace"
    node = ionic_node(scratch)
    result = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=execve,fork,vfork,clone,clone3", "-o", str(trace), "bash", str(script)],
        env=fleet.env(ENVBUILD_NIC_FAMILY="", ENVBUILD_ROOT=str(node.root)), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    calls = trace.read_text().splitlines()
    assert len(calls) == 1 and "execve(" in calls[0] and "bash" in calls[0], calls
    assert not (fleet.state / "nic-family").exists()  # decided, not cached


@pytest.fixture(scope="module")
def detecting(tmp_path_factory):
    """A recipe with one NIC-specific component, and its script."""
    root = tmp_path_factory.mktemp("detecting")
    (root / "www").mkdir()
    server = FileServer(root / "www")
    recipe = LocalRecipe(root / "t", server, components=["flavoured"], extra_components={
        "flavoured": "name: flavoured\ndescription: Built per NIC family.\nnic_specific: true\nbuild: ':'\n"})
    yield recipe, recipe.render()
    server.close()


def read_in_bash(root: Path) -> str | None:
    """The rule the runtime script decides by without the detector: every RDMA device has a port and
    the PCI vendor id of one and the same family (that family), or there is none (none); else None."""
    families = set()
    for device in (root / "sys" / "class" / "infiniband").glob("*"):
        vendor = device / "device" / "vendor"
        vendor_id = vendor.read_text().strip().lower() if vendor.is_file() else ""
        ports = [port for port in (device / "ports").glob("*") if port.name.isdigit()]
        families.add(next((name for name, family in FAMILIES.items() if family.vendor_id == vendor_id and ports), None))
    return NO_NIC if not families else families.pop() if len(families) == 1 and None not in families else None


# Whole nodes of one vendor, as clusters have them: bash decides.
DECIDED_IN_BASH = {"ionic", "ionic-without-tools", "mia1", "bnxt-upstream", "bnxt-v2-only", "no-nic"}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_the_family_read_in_bash_is_the_detectors(detecting, scratch, scenario):
    recipe, script = detecting
    node = SCENARIOS[scenario](scratch)
    state = scratch / "state"
    result = recipe.run(script, "--check", ENVBUILD_NIC_FAMILY="", ENVBUILD_ROOT=str(node.root),
                        ENVBUILD_STATE_DIR=str(state), PATH=f"{node.bin}:/usr/bin:/bin")
    said = re.search(r"^envbuild: NIC family (\S+) \(from (.*)\); built for it: flavoured$", result.stdout, re.M)
    assert said, result.stdout + result.stderr
    family, source = said.groups()
    assert family == node.detect()["family"]
    decided = read_in_bash(node.root)
    assert decided or scenario not in DECIDED_IN_BASH
    if decided == NO_NIC:
        assert source == "detection (no RDMA device)"
    elif decided:
        assert source == f"detection (PCI vendor {FAMILIES[decided].vendor_id} of every RDMA device)"
    else:
        assert source == "detection"
    # Only the detector's answer is kept (per hardware fingerprint).
    assert (state / "nic-family").exists() == (decided is None)


def test_mixed_vendors_are_left_to_the_detector(detecting, scratch):
    recipe, script = detecting
    node = make_node(scratch, ionic_rails(3) + [rail("mlx5", f"rdma{i}", i, f"ens{i + 1}np0") for i in (3, 4)])
    result = recipe.run(script, "--check", ENVBUILD_NIC_FAMILY="", ENVBUILD_ROOT=str(node.root),
                        ENVBUILD_STATE_DIR=str(scratch / "state"))
    family = node.detect()["family"]
    assert f"envbuild: NIC family {family} (from detection); built for it: flavoured\n" in result.stdout


def test_inspect_lists_the_families_of_a_state(fleet):
    script = fleet.render()
    for family in ("ionic", "mlx5"):
        assert fleet.run(script, ENVBUILD_NIC_FAMILY=family).returncode == 0
    result = subprocess.run([sys.executable, "-m", "envbuild", "inspect", str(fleet.state), "--format", "json"],
                            capture_output=True, text=True, env=fleet.env())
    assert result.returncode == 0, result.stderr
    components = {c["name"]: c for c in json.loads(result.stdout)["components"]}
    assert sorted(components) == sorted(COMPONENTS)
    nicdrv = components["nicdrv"]["details"]
    assert nicdrv["nic_families"] == "ionic, mlx5"
    assert stamp_of(nicdrv["stamp@ionic"])["prefixes"] == {"NICDRV_HOME": str(fleet.root / "opt/nicdrv/ionic")}
    assert stamp_of(nicdrv["stamp@mlx5"])["nic_family"] == "mlx5"
    assert "nic_family" not in nicdrv and "stamp" not in nicdrv
    assert "nic_families" not in components["libhello"]["details"]
    # A stamp an earlier envbuild wrote (one per component, the family in it) reads along.
    (fleet.state / "stamps" / "nicdrv").write_text("ab" * 32 + " nic=bnxt\n")
    older = subprocess.run([sys.executable, "-m", "envbuild", "inspect", str(fleet.state), "--format", "json"],
                           capture_output=True, text=True, env=fleet.env())
    nicdrv = next(c for c in json.loads(older.stdout)["components"] if c["name"] == "nicdrv")["details"]
    assert (nicdrv["nic_families"], nicdrv["stamp"]) == ("ionic, mlx5", "ab" * 32 + " nic=bnxt")


def write_recipe(root: Path, nic_families: str, build: str) -> Path:
    (root / "components").mkdir(parents=True)
    (root / "components" / "drv.yaml").write_text(
        f"name: drv\ndescription: Built per NIC family.\nnic_specific: true\nprefix:\n  DRV_HOME: /opt/drv\n"
        f"build: |\n  {build}\n")
    (root / "r.yaml").write_text(f"name: r\ndescription: R.\nbase_image: debian:bookworm\ncomponents: [drv]\n"
                                 f"{nic_families}")
    return root


def dockerfile(recipes: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "envbuild", "dockerfile", "--recipes-dir", str(recipes),
                           "--recipe", "r", *args], capture_output=True, text=True)


def test_an_image_for_every_cluster_needs_the_families_and_builds_into_prefixes(tmp_path):
    unsaid = dockerfile(write_recipe(tmp_path / "unsaid", "", "true"))
    assert (unsaid.returncode, unsaid.stdout) == (1, "")
    assert unsaid.stderr == (
        "envbuild: error: drv is built per NIC family and an image build cannot detect the cluster's NICs: give "
        "--cluster PROFILE or --nic-family ionic|mlx5|bnxt|none, or list the families in recipe r's nic_families "
        "for an image that serves them all\n")
    shared = write_recipe(tmp_path / "shared", "nic_families: [ionic, bnxt]\n", "_eb_pip .")
    refused = dockerfile(shared)
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr == (
        "envbuild: error: drv is built per NIC family and writes outside prefixes of its own (site-packages, dpkg or "
        "other components' files), so one image cannot hold a build for each family: give it a prefix and install "
        "into it (_eb_pip_into for Python packages), or build the image for one family with --cluster PROFILE or "
        "--nic-family\n")
    # For one family it runs in the image, as before.
    one = dockerfile(shared, "--nic-family", "bnxt")
    assert one.returncode == 0, one.stderr
    assert "RUN ENVBUILD_COMPONENT=drv ENVBUILD_NIC_FAMILY=bnxt bash /opt/envbuild/lib/run-component.sh drv\n" in one.stdout
    fleet = dockerfile(write_recipe(tmp_path / "fleet", "nic_families: [ionic, bnxt]\n", "_eb_pip_into \"$DRV_HOME\" ."))
    assert fleet.returncode == 0, fleet.stderr
    assert [line for line in fleet.stdout.splitlines() if line.startswith(("FROM", "RUN ENVBUILD", "COPY --from"))] == [
        "FROM debian:bookworm AS envbuild-base",
        "FROM envbuild-base AS component-drv.ionic",
        "RUN ENVBUILD_COMPONENT=drv@ionic ENVBUILD_NIC_FAMILY=ionic bash /opt/envbuild/lib/run-component.sh --stage drv",
        "FROM envbuild-base AS component-drv.bnxt",
        "RUN ENVBUILD_COMPONENT=drv@bnxt ENVBUILD_NIC_FAMILY=bnxt bash /opt/envbuild/lib/run-component.sh --stage drv",
        "FROM envbuild-base",
        "COPY --from=component-drv.ionic /envbuild-out/ /",
        "COPY --from=component-drv.bnxt /envbuild-out/ /",
    ]


def test_the_build_report_names_each_build_per_family(tmp_path):
    """What run.image reports a build time and size for: each family's build apart."""
    recipes = write_recipe(tmp_path / "fleet", "nic_families: [ionic, bnxt]\n", "_eb_pip_into \"$DRV_HOME\" .")
    plan = load_plan(recipes, "r")
    assert image_units(plan) == ["drv@ionic", "drv@bnxt"]
    assert image_units(load_plan(recipes, "r", nic_family="ionic")) == ["drv"]
    text = render_dockerfile(plan)
    steps = [line for line in text.splitlines() if line.startswith(("RUN ENVBUILD", "COPY --from", "COPY envbuild/c"))]
    assert [instruction_component(step) for step in steps] == ["drv", "drv@ionic", "drv", "drv@bnxt", "drv@ionic",
                                                               "drv@bnxt"]


def test_the_shared_cache_keeps_a_build_per_family(fleet):
    """A node restores its family's build that another node stored; a node of another family builds its own."""
    script = fleet.render()
    cache = fleet.root / "cache"
    first = fleet.run(script, ENVBUILD_NIC_FAMILY="ionic", ENVBUILD_CACHE_DIR=str(cache))
    assert first.returncode == 0, first.stderr
    for family, state in (("ionic", "state-ionic"), ("mlx5", "state-mlx5")):
        shutil.rmtree(fleet.root / "opt")  # a fresh node: nothing installed, its own state dir
        result = fleet.run(script, ENVBUILD_NIC_FAMILY=family, ENVBUILD_CACHE_DIR=str(cache),
                           ENVBUILD_STATE_DIR=str(fleet.root / state))
        assert result.returncode == 0, result.stderr
        restored = re.findall(r"^envbuild: (\S+): restored from the shared cache", result.stdout, re.M)
        assert sorted(restored) == (["libhello", "nicdep", "nicdrv"] if family == "ionic" else ["libhello"])
        assert sorted(p.name for p in (fleet.root / state / "stamps").iterdir()) == [
            "libhello", f"nicdep@{family}", f"nicdrv@{family}"]
        assert sourced(fleet, script, SHOW, ENVBUILD_NIC_FAMILY=family,
                       ENVBUILD_STATE_DIR=str(fleet.root / state)).stdout.splitlines()[-3:] == shown(fleet, family)
    assert sorted(fleet.builds()) == ["libhello", "nicdep-ionic", "nicdep-mlx5", "nicdrv-ionic", "nicdrv-mlx5"]
