"""One image for every cluster, on the real engine (issue 10, item 3).

The test recipe (tests/testrecipe.HttpRecipe) with nic_families [ionic, mlx5] and
two NIC-specific components: nicdrv, which says the family it was built for (a
command and a Python package installed with _eb_pip_into) and needs greet (pip
into site-packages, so it runs in the image), and nicdep, which needs nicdrv.
Without --nic-family the image holds a build of both for each family. Started
with a fixture sysfs tree of a family (tests/nic_fixtures.py, mounted at
/fixture, ENVBUILD_ROOT=/fixture), sourcing setup_deps.sh activates that
family's builds and installs nothing; a node of a family the image lacks (bnxt)
gets it built at start. Nothing here mocks docker-py; what is built is removed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from envbuild.pipeline import load_plan
from nic_fixtures import bnxt_v2_only_node, ionic_node, mia1_node
from test_image import build_plan, envbuild_cli, image_env
from testrecipe import NICDEP, NICDRV, HttpRecipe
from localsources import FileServer

FAMILIES = ["ionic", "mlx5"]
COMPONENTS = ["libhello", "greet", "nicdrv", "nicdep"]
NODES = {"ionic": ionic_node, "mlx5": mia1_node, "bnxt": bnxt_v2_only_node}
# nicdrv needs greet, which installs into site-packages and so runs in the image: each family's stage runs it too.
NICDRV_AFTER_GREET = NICDRV.replace("nic_specific: true\n", "nic_specific: true\ndepends:\n  - greet\n")
# What an activated container prints: the family's command, Python package and nicdep's record of nicdrv.
SHOW = ('nicdrv; python3 -c "import nicdrv; print(nicdrv.FAMILY, nicdrv.__file__)"; '
        'cat "/opt/nicdep/$(python3 -c "import nicdrv; print(nicdrv.FAMILY)")/made-with"; '
        'echo "builds:" $(cat /var/tmp/envbuild-test-builds.log)')


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet-image")
    (root / "www").mkdir()
    server = FileServer(root / "www")
    recipe = HttpRecipe(root / "t", server, components=list(COMPONENTS),
                        extra_components={"nicdrv": NICDRV_AFTER_GREET, "nicdep": NICDEP},
                        recipe_extra=f"nic_families: [{', '.join(FAMILIES)}]\n")
    yield recipe
    server.close()


@pytest.fixture(scope="module")
def fleet(engine, base_image, session, sources):
    # With the layer cache: greet's run is then one for the image and every family's stage. The
    # sources' commits are this session's, so no earlier build's layers can stand in.
    return build_plan(engine, session, load_plan(sources.recipes, "testrecipe", base_image=base_image),
                      session.tag("fleet"))


def start(engine, session, image: str, node_dir: Path | None, family: str | None, script: str) -> tuple[int, str, str]:
    """Runs `bash -c script` in a container without network, with the fixture node of `family` (built
    under `node_dir`) mounted at /fixture and ENVBUILD_ROOT=/fixture; (exit code, stdout, stderr)."""
    volumes, environment = {}, {}
    if family:
        node = NODES[family](node_dir)
        volumes = {str(node.root): {"bind": "/fixture", "mode": "ro"}}
        environment = {"ENVBUILD_ROOT": "/fixture"}
    container = engine.containers.create(image, ["bash", "-c", script], labels=session.labels, network_mode="none",
                                         environment=environment, volumes=volumes)
    try:
        container.start()
        code = container.wait(timeout=300)["StatusCode"]
        return code, container.logs(stderr=False).decode(), container.logs(stdout=False).decode()
    finally:
        container.remove(force=True)


@pytest.mark.docker
def test_each_family_builds_once_in_a_stage_of_its_own(fleet):
    assert fleet.component_steps(cached=False) == [
        "libhello", "greet", "nicdrv@ionic", "nicdrv@mlx5", "nicdep@ionic", "nicdep@mlx5"]
    # greet's run in the image and in the other stages is the first stage's, from the layer cache.
    assert fleet.component_steps(cached=True) == ["greet", "greet", "greet", "greet"]
    dockerfile = fleet.progress.lines()
    assert "nicdrv@ionic: built" in " ".join(dockerfile) and "nicdep@mlx5: built" in " ".join(dockerfile)


@pytest.mark.docker
def test_labels_and_inspect_list_the_families(engine, sources, fleet):
    labels = engine.api.inspect_image(fleet.tag)["Config"]["Labels"]
    assert (labels["io.envbuild.nic-family"], labels["io.envbuild.nic-families"]) == ("", "ionic,mlx5")
    assert labels["io.envbuild.component.nicdrv.nic-families"] == "ionic,mlx5"
    assert labels["io.envbuild.component.nicdep.nic-families"] == "ionic,mlx5"
    assert "io.envbuild.component.greet.nic-families" not in labels
    result = envbuild_cli("inspect", fleet.tag, "--format", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["details"]["io.envbuild.nic-families"] == "ionic,mlx5"
    components = {c["name"]: c for c in doc["components"]}
    assert components["nicdrv"]["details"] == {"nic_families": "ionic, mlx5"}
    assert components["greet"]["details"] == {}


@pytest.mark.docker
def test_the_image_env_leaves_the_family_to_setup_deps(engine, fleet):
    env = image_env(engine, fleet.tag)
    assert "NICDRV_HOME" not in env and "/opt/nicdrv" not in env.get("PYTHONPATH", "") + env["PATH"]
    assert env["HELLO_HOME"] == "/opt/hello"


@pytest.mark.docker
@pytest.mark.parametrize("family", FAMILIES)
def test_sourcing_at_start_activates_the_nodes_family_and_installs_nothing(engine, session, fleet, tmp_path, family):
    code, out, err = start(engine, session, fleet.tag, tmp_path, family,
                           f"source /opt/envbuild/setup_deps.sh && {SHOW}")
    assert code == 0, err
    lines = out.splitlines()
    assert re.fullmatch(r"envbuild: all 4 components present \(0\.\d{3} s\)", lines[0])
    assert lines[1:] == [
        f"nicdrv for {family}",
        f"{family} /opt/nicdrv/{family}/python/nicdrv/__init__.py",
        f"nicdrv for {family}",
        "builds: greet",  # what ran in the image itself; nothing since
    ]
    assert err == ""


@pytest.mark.docker
def test_check_says_the_family_came_from_the_nodes_nics(engine, session, fleet, tmp_path):
    code, out, err = start(engine, session, fleet.tag, tmp_path, "mlx5", "bash /opt/envbuild/setup_deps.sh --check")
    assert code == 0, err
    assert out.splitlines()[:5] == [
        "envbuild: NIC family mlx5 (from detection (PCI vendor 0x15b3 of every RDMA device)); built for it: nicdrv nicdep",
        *(f"envbuild: {name}: present" for name in COMPONENTS)]


@pytest.mark.docker
def test_a_family_the_image_lacks_is_built_at_start(engine, session, fleet, tmp_path):
    code, out, err = start(engine, session, fleet.tag, tmp_path, "bnxt", f"source /opt/envbuild/setup_deps.sh && {SHOW}")
    assert code == 0, err
    lines = out.splitlines()
    assert [line.split(" (log:")[0] for line in lines if ": installing" in line] == [
        "envbuild: nicdrv: installing", "envbuild: nicdep: installing"]
    assert lines[-4:] == ["nicdrv for bnxt", "bnxt /opt/nicdrv/bnxt/python/nicdrv/__init__.py", "nicdrv for bnxt",
                          "builds: greet nicdrv-bnxt nicdep-bnxt"]


@pytest.mark.docker
def test_the_image_for_every_cluster_is_reproducible(engine, session, base_image, sources, fleet):
    again = build_plan(engine, session, load_plan(sources.recipes, "testrecipe", base_image=base_image),
                       session.tag("fleet-again"), no_cache=True)
    assert again.image_id == fleet.image_id


def test_dry_run_of_the_builtin_recipe_renders_the_image_for_every_cluster():
    """`envbuild image --recipe mi355x-moriio --dry-run`, as issue 10 writes it: no engine needed."""
    result = envbuild_cli("image", "--recipe", "mi355x-moriio", "--dry-run", "--quiet",
                          env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert result.returncode == 0, result.stderr
    committed = (Path(__file__).resolve().parent.parent / "dockerfiles" / "mi355x-moriio.any-nic.Dockerfile").read_text()
    assert result.stdout.startswith(committed)
    listing = result.stdout[len(committed):].splitlines()
    assert listing[1].startswith("# build context of envbuild/mi355x-moriio:")
    assert listing[2].endswith(" Dockerfile") and len(listing) == 3 + 7 + 3
