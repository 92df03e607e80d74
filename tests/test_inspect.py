"""envbuild inspect and diff on recipes, locks, state directories and (with an engine) images."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from envbuild.pipeline import load_plan
from stamps import expected_stamp, stamp_of
from envbuild.provenance import parse_provenance, parse_stamp
from test_lock import NO_DOCKER, PATCH, PATCHES_YAML, _edit
from test_pip_lock import NO_ENGINE

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
BUILTIN_RECIPES = "its recipes: mi355x-moriio, mi355x-nixl"
UCX_HASH = "a1" * 32
UCX_SOURCE = "https://github.com/ROCm/ucx.git@da3fac2afcb55df7605f619ee19b37f4505bd4e4"
PATCH_A, PATCH_B = "b2" * 32, "c3" * 32


def envbuild(*args: str, cwd: Path, recipes: Path | None = None, docker: bool = False) -> subprocess.CompletedProcess:
    """envbuild in a subprocess; no Docker engine unless `docker`."""
    extra = ["--recipes-dir", str(recipes)] if recipes else []
    environment = {key: value for key, value in os.environ.items() if not key.startswith("ENVBUILD_")}
    return subprocess.run([sys.executable, "-m", "envbuild", *args, *extra], cwd=cwd, capture_output=True, text=True,
                          env=environment if docker else dict(environment, **NO_DOCKER))


def write_state(state: Path, name: str, stamp: str, **facts: str) -> None:
    """A component's stamp and provenance, in the format the runtime script writes."""
    (state / "stamps").mkdir(parents=True, exist_ok=True)
    (state / "provenance").mkdir(parents=True, exist_ok=True)
    (state / "stamps" / name).write_text(stamp + "\n")
    record = {"component": name, "hash": stamp.split()[0], "source": "", "nic_family": "",
              "installed_at": "2026-01-01T00:00:00Z", "recipe": "r", "recipe_hash": "d4" * 32,
              "envbuild_version": "0.1.0", "patches": "", **facts}
    (state / "provenance" / name).write_text("".join(f"{key}={value}\n" for key, value in record.items()))


@pytest.fixture
def state(tmp_path):
    state = tmp_path / "state"
    write_state(state, "ucx", f"{UCX_HASH} UCX_HOME=/usr/local/ucx", source=UCX_SOURCE,
                installed_at="2026-01-01T00:00:01Z")
    write_state(state, "mori", f"{'e5' * 32} nic=ionic UCX_HOME=/usr/local/ucx", source="https://x/mori.git@" + "f6" * 20,
                nic_family="ionic", installed_at="2026-01-01T00:00:02Z")
    write_state(state, "patches", "07" * 32, patches=f"fix-a={PATCH_A},fix-b={PATCH_B}",
                installed_at="2026-01-01T00:00:03Z")
    (state / "stamps" / "ucx.tmp.123").write_text("half-written\n")  # left by a killed run: ignored
    return state


def test_parsers_read_the_documented_formats():
    assert parse_stamp(f"{UCX_HASH} nic=mlx5 RIXL_HOME=/opt/rixl UCX_HOME=/usr/local/ucx") == {
        "hash": UCX_HASH, "nic_family": "mlx5", "prefixes": {"RIXL_HOME": "/opt/rixl", "UCX_HOME": "/usr/local/ucx"}}
    assert parse_stamp(UCX_HASH) == {"hash": UCX_HASH, "nic_family": None, "prefixes": {}}
    facts = parse_provenance("component=ucx\nsource=https://h/x.tar.gz#sha256=ab\npatches=a=1,b=2\nrecipe=\n")
    assert facts == {"component": "ucx", "source": "https://h/x.tar.gz#sha256=ab", "patches": "a=1,b=2", "recipe": ""}


def test_inspect_a_state_directory(state, tmp_path):
    result = envbuild("inspect", str(state), "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["kind"], doc["recipe"], doc["recipe_hash"]) == ("state", "r", "d4" * 32)
    components = {c["name"]: c for c in doc["components"]}
    assert [c["name"] for c in doc["components"]] == ["ucx", "mori", "patches"]  # in installation order
    assert components["ucx"]["hash"] == UCX_HASH and components["ucx"]["source"] == UCX_SOURCE
    assert components["mori"]["details"]["nic_family"] == "ionic"
    assert components["mori"]["details"]["stamp"] == f"{'e5' * 32} nic=ionic UCX_HOME=/usr/local/ucx"
    assert components["patches"]["patches"] == {"fix-a": PATCH_A, "fix-b": PATCH_B}
    assert components["ucx"]["details"]["installed_at"] == "2026-01-01T00:00:01Z"

    text = envbuild("inspect", str(state), cwd=tmp_path).stdout
    assert text.startswith(f"state directory {state}\nrecipe r (hash {'d4' * 32})\n3 components:\n  ucx\n")
    assert f"    hash     {UCX_HASH}\n    source   {UCX_SOURCE}\n" in text
    assert f"    patch    fix-a {PATCH_A}\n    patch    fix-b {PATCH_B}\n" in text


def test_inspect_refuses_what_it_cannot_read(tmp_path):
    (tmp_path / "empty").mkdir()
    result = envbuild("inspect", str(tmp_path / "empty"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"envbuild: error: {tmp_path / 'empty'} is not an envbuild state directory (no stamps/ or provenance/ in it)\n"
    result = envbuild("inspect", "no-such/image:tag", cwd=tmp_path, recipes=RECIPES)
    assert (result.returncode, result.stderr) == (1, (
        f"envbuild: error: no-such/image:tag is not a recipe of {RECIPES} ({BUILTIN_RECIPES}), a lock file, a state "
        f"directory or a file; tried as an image of the local Docker engine: {NO_ENGINE}\n"))


@pytest.mark.parametrize("target, message", [
    ("/nonexistent", "/nonexistent: no such file or directory"),
    ("./missing", "./missing: no such file or directory"),
    ("../missing", "../missing: no such file or directory"),
    ("missing.lock", "missing.lock: no such file or directory"),
    ("missing.yaml", "missing.yaml: no such recipe file"),
    ("/dev/null", "/dev/null: neither a lock file (*.lock), a state directory nor a recipe file"),
    ("notes", "notes: neither a lock file (*.lock), a state directory nor a recipe file"),
])
def test_inspect_and_diff_of_what_is_not_there_exit_two_naming_it(state, tmp_path, target, message):
    """A path, or a file there, is never taken for an image reference (no Docker engine is asked: NO_DOCKER)."""
    (tmp_path / "notes").write_text("not a recipe\n")
    for command in (["inspect", target], ["diff", target, str(state)], ["diff", str(state), target]):
        result = envbuild(*command, cwd=tmp_path)
        assert (result.returncode, result.stderr, result.stdout) == (2, f"envbuild: error: {message}\n", ""), command


def demo_recipes(root: Path) -> Path:
    """A recipes directory of one recipe, demo."""
    (root / "components").mkdir(parents=True)
    (root / "components" / "a.yaml").write_text("name: a\ndescription: A.\n")
    (root / "demo.yaml").write_text("name: demo\ndescription: D.\nbase_image: debian:bookworm\ncomponents: [a]\n")
    return root


UPPERCASE = "uppercase letters are not allowed in a repository name"
NOT_A_REFERENCE = ("expected [REGISTRY[:PORT]/]NAME[:TAG][@sha256:DIGEST], lowercase, with a tag of letters, digits, "
                   "'_', '.' and '-'")


@pytest.mark.parametrize("name, status, then", [
    *[(name, 1, f"; tried as an image of the local Docker engine: {NO_ENGINE}")
      for name in ("mi355x-moriio", "nope", "team/nope:1")],
    ("Nope", 2, f", nor an image reference ({UPPERCASE})"),
    ("Bad Ref", 2, f", nor an image reference ({UPPERCASE})"),
    ("nope:a:b", 2, f", nor an image reference ({NOT_A_REFERENCE})"),
])
def test_a_name_that_is_nothing_inspect_and_diff_read_says_what_was_tried(tmp_path, name, status, then):
    """Not a bare Docker error: a name that is no image reference either exits 2; one that could be an image
    of the local engine, when no engine answers, exits 1 saying it was tried as one."""
    demo_recipes(tmp_path / "r1")
    for command in (["inspect", name], ["diff", "demo", name], ["diff", name, "demo"]):
        result = envbuild(*command, cwd=tmp_path, recipes=tmp_path / "r1")
        assert (result.returncode, result.stdout, result.stderr) == (status, "", (
            f"envbuild: error: {name} is not a recipe of r1 (its recipes: demo), a lock file, a state directory or "
            f"a file{then}\n")), command


@pytest.mark.docker
def test_diff_of_images_the_engine_does_not_have_exits_two_naming_the_first(engine, tmp_path):
    result = envbuild("diff", "envbuild-test/nosuch1", "envbuild-test/nosuch2", cwd=tmp_path, recipes=RECIPES,
                      docker=True)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (f"envbuild: error: envbuild-test/nosuch1 is not a recipe of {RECIPES} ({BUILTIN_RECIPES}), "
                             "a lock file, a state directory or a file, nor an image of the local Docker engine\n")


def test_diff_state_directories(state, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(state, other)
    same = envbuild("diff", str(state), str(other), cwd=tmp_path)
    assert (same.returncode, same.stdout, same.stderr) == (
        0, f"state {state} and state {other} are the same (3 components)\n", "")

    write_state(other, "ucx", f"{'99' * 32} UCX_HOME=/usr/local/ucx", source=UCX_SOURCE)  # rebuilt, same pin
    write_state(other, "mori", "e5" * 32, source="https://x/mori.git@" + "aa" * 20)  # moved
    write_state(other, "patches", "07" * 32, patches=f"fix-a={PATCH_B}")  # one changed, one gone
    write_state(other, "etcd", "08" * 32, source="https://e/etcd.tar.gz#sha256=" + "09" * 32)
    result = envbuild("diff", str(state), str(other), cwd=tmp_path)
    assert result.returncode == 3
    assert result.stdout.splitlines() == [
        f"--- state {state}",
        f"+++ state {other}",
        f"ucx: changed build: hash {UCX_HASH[:12]} -> {'99' * 6} with the same pin",
        f"mori: changed pin: https://x/mori.git@{'f6' * 20} -> https://x/mori.git@{'aa' * 20}",
        f"patches: changed patch: fix-a {PATCH_A} -> {PATCH_B}",
        f"patches: changed patch: fix-b {PATCH_B} -> not applied",
        f"etcd: added: https://e/etcd.tar.gz#sha256={'09' * 32}",
    ]
    removed = envbuild("diff", str(other), str(state), cwd=tmp_path)
    assert f"etcd: removed: in {other} only" in removed.stdout.splitlines()


def test_diff_recipes_by_file(test_recipe, tmp_path):
    old = test_recipe.recipes
    new = tmp_path / "new-recipes"
    shutil.copytree(old, new)
    same = envbuild("diff", str(old / "testrecipe.yaml"), str(new / "testrecipe.yaml"), cwd=tmp_path)
    assert (same.returncode, same.stdout) == (
        0, "recipe t/recipes/testrecipe.yaml and recipe new-recipes/testrecipe.yaml are the same (4 components)\n"
    ), same.stderr

    _edit(new / "components" / "libhello.yaml", test_recipe.libhello_commit, "ab" * 20)
    _edit(new / "components" / "rank0-tool.yaml", "echo ready", "echo steady")
    _edit(new / "testrecipe.yaml", "  - dataset\n", "  - extra\n")
    (new / "components" / "extra.yaml").write_text("name: extra\ndescription: New.\n")
    for recipes, word in ((old, "hello"), (new, "bonjour")):
        (recipes / "patches" / "greet-1.0").mkdir(parents=True)
        (recipes / "patches" / "greet-1.0" / "patches.yaml").write_text(PATCHES_YAML)
        (recipes / "patches" / "greet-1.0" / "greet-fix.patch").write_text(PATCH.format(word=word))
        _edit(recipes / "components" / "greet.yaml", "depends:", "patches:\n  - greet-fix\ndepends:")
    plans = [load_plan(r, "testrecipe") for r in (old, new)]
    patch_hashes = [dict(p.step("greet").component.patch_hashes)["greet-fix"] for p in plans]
    rank0 = [p.step("rank0-tool").hash[:12] for p in plans]
    git = test_recipe.values()["git_base"]

    result = envbuild("diff", str(old / "testrecipe.yaml"), str(new / "testrecipe.yaml"), cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert result.stdout.splitlines()[2:] == [
        f"libhello: changed pin: {git}libhello.git@{test_recipe.libhello_commit} -> {git}libhello.git@{'ab' * 20}",
        f"greet: changed patch: greet-fix {patch_hashes[0]} -> {patch_hashes[1]}",
        "dataset: removed: in t/recipes/testrecipe.yaml only",
        f"rank0-tool: changed build: hash {rank0[0]} -> {rank0[1]} with the same pin",
        "extra: added: no source",
    ]


def test_diff_locks_and_a_recipe_against_its_lock(test_recipe, tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:  # with the git redirect, for the lock
        return subprocess.run([sys.executable, "-m", "envbuild", *args, "--recipes-dir", str(test_recipe.recipes)],
                              cwd=tmp_path, capture_output=True, text=True, env=dict(test_recipe.env(), **NO_DOCKER))

    assert run("lock", "--recipe", "testrecipe").returncode == 0
    lock = test_recipe.recipes / "testrecipe.lock"
    same = run("diff", "testrecipe", str(lock))
    assert (same.returncode, same.stdout) == (  # the recipe's pins are the lock's
        0, f"recipe t/recipes/testrecipe.yaml and lock {lock} are the same (4 components)\n"), same.stderr

    old_lock = tmp_path / "old.lock"
    shutil.copy(lock, old_lock)
    old_commit = test_recipe.libhello_commit
    test_recipe.set_hello_version(2)
    test_recipe.write()
    stale = run("diff", "testrecipe", str(lock))
    assert stale.returncode == 3
    assert "envbuild: warning: t/recipes/testrecipe.lock: component libhello: source.commit" in stale.stderr
    assert run("lock", "--recipe", "testrecipe").returncode == 0
    result = run("diff", str(old_lock), str(lock))
    assert result.returncode == 3
    git = test_recipe.values()["git_base"]
    assert result.stdout.splitlines() == [
        f"--- lock {old_lock}",
        f"+++ lock {lock}",
        f"libhello: changed pin: {git}libhello.git@{old_commit} -> {git}libhello.git@{test_recipe.libhello_commit}",
    ]  # a lock has no content hashes, so greet (rebuilt on top of libhello) is not reported from locks
    as_json = json.loads(run("diff", str(old_lock), str(lock), "--format", "json").stdout)
    assert as_json["changes"] == [{"component": "libhello", "kind": "changed pin",
                                   "detail": result.stdout.splitlines()[2].split(": ", 2)[2]}]


def test_inspect_and_diff_the_state_the_script_writes(test_recipe, tmp_path):
    result = test_recipe.run(test_recipe.render())
    assert result.returncode == 0, result.stderr
    plan = load_plan(test_recipe.recipes, "testrecipe")
    doc = json.loads(envbuild("inspect", str(test_recipe.state), "--format", "json", cwd=tmp_path).stdout)
    assert (doc["recipe"], doc["recipe_hash"]) == ("testrecipe", plan.hash)
    assert {c["name"]: (c["hash"], c["source"]) for c in doc["components"]} == {
        s.name: (s.hash, s.component.source.pin if s.component.source else "") for s in plan.steps}
    assert [stamp_of(c["details"]["stamp"]) for c in doc["components"]] == [
        expected_stamp(plan, plan.step(c["name"])) for c in doc["components"]]

    same = envbuild("diff", "testrecipe", str(test_recipe.state), cwd=tmp_path, recipes=test_recipe.recipes)
    assert (same.returncode, same.stdout) == (
        0, f"recipe t/recipes/testrecipe.yaml and state {test_recipe.state} are the same (4 components)\n"
    ), same.stderr
    old_commit = test_recipe.libhello_commit
    test_recipe.set_hello_version(2)
    test_recipe.write()
    moved = envbuild("diff", str(test_recipe.state), "testrecipe", cwd=tmp_path, recipes=test_recipe.recipes)
    assert moved.returncode == 3
    git = test_recipe.values()["git_base"]
    assert moved.stdout.splitlines()[2:] == [
        f"libhello: changed pin: {git}libhello.git@{old_commit} -> {git}libhello.git@{test_recipe.libhello_commit}",
        f"greet: changed build: hash {plan.step('greet').hash[:12]} -> "
        f"{load_plan(test_recipe.recipes, 'testrecipe').step('greet').hash[:12]}"
        " with the same pin",
    ]


@pytest.mark.docker
def test_inspect_and_diff_an_image_built_with_the_recipe_labels(test_recipe, tmp_path):
    from docker_base import ImageSession, engine_or_skip

    from envbuild.run.docker_engine import build, make_context_tar
    from envbuild.render.dockerfile import image_labels

    engine = engine_or_skip()
    session = ImageSession()
    try:
        plan = load_plan(test_recipe.recipes, "testrecipe")
        tag = session.tag("labels-only")
        context = make_context_tar({"Dockerfile": (b"FROM scratch\nLABEL envbuild-test=labels-only\n", 0o644)})
        build(engine, context, tag, labels={**session.labels, **image_labels(plan)})
        inspected = envbuild("inspect", tag, "--format", "json", cwd=tmp_path, docker=True)
        assert inspected.returncode == 0, inspected.stderr
        doc = json.loads(inspected.stdout)
        assert (doc["kind"], doc["recipe"], doc["recipe_hash"]) == ("image", "testrecipe", plan.hash)
        assert [c["name"] for c in doc["components"]] == [s.name for s in plan.steps]
        assert all(c["hash"] == plan.step(c["name"]).hash for c in doc["components"])
        same = envbuild("diff", "testrecipe", tag, cwd=tmp_path, recipes=test_recipe.recipes, docker=True)
        assert (same.returncode, same.stdout) == (
            0, f"recipe t/recipes/testrecipe.yaml and image {tag} are the same (4 components)\n"
        ), same.stderr
    finally:
        session.cleanup(engine)
