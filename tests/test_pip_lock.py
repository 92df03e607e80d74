"""Strict locks and pip requirements without the base image: resolved for the recipe's Python,
unverified; and fetch of a group locked against the test base image.

The packages are tiny wheels served by a PEP 503 simple index on 127.0.0.1
(localsources.PackageIndex); pip runs for real, with no configuration file
(PIP_CONFIG_FILE=/dev/null) and no cache, so only that index answers. No
Docker engine is asked but by the fetch test: base images stay unresolved
unless given by digest. Groups locked against a base image, and installed
from such a lock with --require-hashes: tests/test_pip_lock_image.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from envbuild.shell import quote
from localsources import PackageIndex, sha256
from testrecipe import LocalRecipe

NO_DOCKER = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
PIP_ALONE = {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_CACHE_DIR": "1"}
PYTHON_BLOCK = "python:\n  version: '3.12'\n  platform: manylinux_2_35_x86_64\n"
TARGET = "Python 3.12 on manylinux_2_35_x86_64"
NO_ENGINE = ("no Docker engine answers on DOCKER_HOST=unix:///nonexistent/docker.sock (No such file or directory): "
             "start dockerd (sudo systemctl start docker, or sudo dockerd &) or point DOCKER_HOST at a running engine")
UNVERIFIED = f"resolved without the base image's installed packages: {NO_ENGINE}; downloaded by pip for {TARGET}"
PYDEPS = """name: pydeps
description: tinya from the local index; it needs tinyb.
pip:
  - requirements:
      - tinya
    options:
      - --index-url={index}
check: |
  "$EB_PYTHON" -c 'import tinya, tinyb'
"""
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def index(file_server) -> PackageIndex:
    index = PackageIndex(file_server)
    index.publish("tinyb", "1.0")
    index.publish("tinyb", "2.0")
    index.publish("tinya", "1.0", requires=("tinyb>=1",))
    return index


@pytest.fixture
def recipe(tmp_path, file_server, index) -> LocalRecipe:
    recipe = LocalRecipe(tmp_path / "p", file_server, extra_components={"pydeps": PYDEPS.replace("{index}", index.url)},
                         components=["pydeps"])
    set_python(recipe, PYTHON_BLOCK)
    return recipe


def set_python(recipe: LocalRecipe, block: str) -> None:
    """The recipe's python block replaced by `block` ("" for none)."""
    path = recipe.recipes / "testrecipe.yaml"
    text = path.read_text().replace(PYTHON_BLOCK, "")
    path.write_text(re.sub(r"^(base_image: .*\n)", lambda match: match.group(1) + block, text, count=1, flags=re.M))


def set_base_image(recipe: LocalRecipe, image: str) -> None:
    path = recipe.recipes / "testrecipe.yaml"
    path.write_text(path.read_text().replace("base_image: envbuild-test/base:latest", f"base_image: {image}"))


def envbuild(recipe: LocalRecipe, *args: str, docker: bool = False) -> subprocess.CompletedProcess:
    """The CLI on the recipe, without a Docker engine unless `docker`."""
    env = dict(recipe.env(), **PIP_ALONE, **({} if docker else NO_DOCKER))
    return subprocess.run([sys.executable, "-m", "envbuild", *args, "--recipes-dir", str(recipe.recipes)],
                          env=env, capture_output=True, text=True, cwd=recipe.root)


def run(recipe: LocalRecipe, script: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return recipe.run(script, *args, **PIP_ALONE, **env)


def installed(recipe: LocalRecipe, module: str) -> str:
    result = subprocess.run([str(recipe.python), "-c", f"import {module}; print({module}.VERSION)"],
                            capture_output=True, text=True)
    return result.stdout.strip() or result.stderr.strip().splitlines()[-1]


def lock_doc(recipe: LocalRecipe) -> dict:
    return yaml.safe_load((recipe.recipes / "testrecipe.lock").read_text())


def test_without_the_base_image_the_lock_pins_for_the_recipes_python_unverified(recipe, index):
    result = envbuild(recipe, "lock", "--recipe", "testrecipe")
    assert result.returncode == 0, result.stderr
    doc = lock_doc(recipe)
    assert doc["python"] == {"version": "3.12", "platform": "manylinux_2_35_x86_64", "from": "recipe"}
    a, b = index.files["tinya"]["tinya-1.0-py3-none-any.whl"], index.files["tinyb"]["tinyb-2.0-py3-none-any.whl"]
    assert doc["components"]["pydeps"]["pip"] == [{
        "requirements": ["tinya"],
        "options": [f"--index-url={index.url}"],
        "packages": [
            {"name": "tinya", "version": "1.0", "file": "tinya-1.0-py3-none-any.whl", "sha256": sha256(a)},
            {"name": "tinyb", "version": "2.0", "file": "tinyb-2.0-py3-none-any.whl", "sha256": sha256(b)},
        ],
        "status": "unverified",
        "reason": f"resolved without the base image's installed packages: {NO_ENGINE}; downloaded by pip for {TARGET}",
    }]
    # Not applied: the image may have other versions of them (tests/test_pip_lock_image.py locks against one).
    assert f"  _eb_pip_indexed 1 {quote('--index-url=' + index.url)} tinya\n" in recipe.render().read_text()


def test_strict_lock_names_everything_unsettled_and_writes_nothing(recipe):
    strict = envbuild(recipe, "lock", "--recipe", "testrecipe", "--strict")
    assert strict.returncode == 1
    assert not (recipe.recipes / "testrecipe.lock").exists()
    errors = [line for line in strict.stderr.splitlines() if line.startswith("envbuild: error: ")]
    assert errors == [
        f"envbuild: error: recipes/testrecipe.lock: base image envbuild-test/base:latest: unresolved: {NO_ENGINE}",
        f"envbuild: error: recipes/testrecipe.lock: component pydeps pip group 1 (tinya): unverified: {UNVERIFIED}",
        "envbuild: error: recipes/testrecipe.lock: 2 values unverified or unresolved and --strict was given; "
        "`envbuild lock --recipe testrecipe --recipes-dir recipes` resolves what it can reach"]

    # A base image given by digest needs no registry, but pip needs the image itself.
    set_base_image(recipe, f"envbuild-test/base@{DIGEST}")
    strict = envbuild(recipe, "lock", "--recipe", "testrecipe", "--strict")
    assert strict.returncode == 1
    assert [line for line in strict.stderr.splitlines() if line.startswith("envbuild: error: ")][1:] == [
        "envbuild: error: recipes/testrecipe.lock: 1 value unverified or unresolved and --strict was given; "
        "`envbuild lock --recipe testrecipe --recipes-dir recipes` resolves what it can reach"]
    written = envbuild(recipe, "lock", "--recipe", "testrecipe", "--format", "json")
    assert written.returncode == 0, written.stderr
    report = json.loads(written.stdout)
    assert (report["written"], report["agrees"], report["disagreements"]) == (True, True, [])
    assert report["unsettled"] == [{"what": "component pydeps pip group 1 (tinya)", "status": "unverified",
                                    "reason": UNVERIFIED}]
    assert report["lock_hash"] == lock_doc(recipe)["lock_hash"]
    assert envbuild(recipe, "lock", "--recipe", "testrecipe", "--check").returncode == 0
    assert envbuild(recipe, "lock", "--recipe", "testrecipe", "--check", "--strict").returncode == 1
    assert envbuild(recipe, "runtime-script", "--recipe", "testrecipe", "--strict", "-o", "-").returncode == 1


def test_without_the_recipes_python_pip_pins_are_unverified_and_strict_refuses_them(recipe, index):
    set_python(recipe, "")
    set_base_image(recipe, f"envbuild-test/base@{DIGEST}")
    result = envbuild(recipe, "lock", "--recipe", "testrecipe")
    assert result.returncode == 0, result.stderr
    here = f"Python {sys.version_info[0]}.{sys.version_info[1]} on "
    assert ("envbuild: warning: recipes/testrecipe.yaml: python: recipe testrecipe does not name its base image's "
            "Python (python: {version: 'X.Y', platform: TAG}); pip requirements are resolved for " + here) \
        in result.stderr
    group = lock_doc(recipe)["components"]["pydeps"]["pip"][0]
    assert group["status"] == "unverified"
    assert group["reason"].startswith(f"resolved without the base image's installed packages: {NO_ENGINE}; "
                                      f"downloaded by pip for {here}")
    assert group["reason"].endswith(", the Python running pip here: the recipe does not name its base image's "
                                    "(python: {version, platform})")
    assert lock_doc(recipe)["python"]["from"] == "host"
    # Not applied: pins for another Python may not install on the target.
    plain = envbuild(recipe, "runtime-script", "--recipe", "testrecipe", "-o", "-")
    assert f"  _eb_pip_indexed 1 {quote('--index-url=' + index.url)} tinya\n" in plain.stdout

    for args in (["lock", "--check", "--strict"], ["runtime-script", "--strict", "-o", "-"],
                 ["plan", "--require-lock", "--strict"]):
        refused = envbuild(recipe, *args, "--recipe", "testrecipe")
        assert refused.returncode == 1, args
        assert refused.stdout == ""
        assert (f"envbuild: error: recipes/testrecipe.lock: component pydeps pip group 1 (tinya): unverified: "
                f"resolved without the base image's installed packages: {NO_ENGINE}; downloaded by pip for {here}") \
            in refused.stderr
    check = envbuild(recipe, "lock", "--check", "--recipe", "testrecipe", "--format", "json")
    assert check.returncode == 0
    unsettled = json.loads(check.stdout)["unsettled"]
    assert [(u["what"], u["status"]) for u in unsettled] == [("component pydeps pip group 1 (tinya)", "unverified")]

    # Naming the Python afterwards is a disagreement until the lock is written again.
    set_python(recipe, PYTHON_BLOCK)
    stale = envbuild(recipe, "lock", "--check", "--recipe", "testrecipe")
    assert stale.returncode == 3
    assert (f"envbuild: error: recipes/testrecipe.lock: python: the recipe has {TARGET}, the lock has no python "
            "block\n") in stale.stderr


def test_a_requirement_pip_cannot_find_is_unresolved_with_pips_reason(recipe):
    (recipe.recipes / "components" / "pydeps.yaml").write_text(
        (recipe.recipes / "components" / "pydeps.yaml").read_text().replace("      - tinya\n", "      - nothere\n"))
    result = envbuild(recipe, "lock", "--recipe", "testrecipe")
    assert result.returncode == 0, result.stderr
    group = lock_doc(recipe)["components"]["pydeps"]["pip"][0]
    assert (group["packages"], group["status"]) == (None, "unresolved")
    assert group["reason"] == f"pip download for {TARGET} failed: ERROR: No matching distribution found for nothere"
    assert (f"envbuild: warning: recipes/testrecipe.lock: component pydeps pip group 1 (nothere): unresolved: "
            f"{group['reason']}\n") in result.stderr


def test_fetch_takes_the_locked_packages_for_the_recipes_python_and_installs_offline(recipe, index, base_image):
    """Locked against the test base image (its Python: 3.11 on glibc 2.36), which has neither package."""
    set_base_image(recipe, base_image)
    set_python(recipe, "python:\n  version: '3.11'\n  platform: manylinux_2_36_x86_64\n")
    locked = envbuild(recipe, "lock", "--recipe", "testrecipe", "--network", "host", docker=True)
    assert locked.returncode == 0, locked.stderr
    group = lock_doc(recipe)["components"]["pydeps"]["pip"][0]
    assert (group["status"], group["base"], [p["file"] for p in group["packages"]]) == (
        "verified", [], ["tinya-1.0-py3-none-any.whl", "tinyb-2.0-py3-none-any.whl"])
    index.publish("tinyb", "3.0")
    into = recipe.root / "sources"
    fetched = envbuild(recipe, "fetch", "--recipe", "testrecipe", "--into", str(into), "--format", "json")
    assert fetched.returncode == 0, fetched.stderr
    manifest = json.loads(fetched.stdout)
    assert [entry["file"] for entry in manifest["pip"]] == ["pip/tinya-1.0-py3-none-any.whl",
                                                             "pip/tinyb-2.0-py3-none-any.whl"]
    assert "pydeps: pip download tinya (locked)" in fetched.stderr
    assert manifest == json.loads((into / "MANIFEST.json").read_text())

    script = recipe.render()
    recipe.server.close()  # offline from here
    result = run(recipe, script, ENVBUILD_SOURCE_DIR=str(into))
    assert result.returncode == 0, result.stderr + (recipe.state / "logs" / "pydeps.log").read_text()
    assert (installed(recipe, "tinya"), installed(recipe, "tinyb")) == ("1.0", "2.0")


def test_fetch_without_the_recipes_python_says_whose_it_uses(recipe):
    set_python(recipe, "")
    into = recipe.root / "sources"
    fetched = envbuild(recipe, "fetch", "--recipe", "testrecipe", "--into", str(into))
    assert fetched.returncode == 0, fetched.stderr
    assert "does not name its base image's Python" in fetched.stderr
    assert fetched.stdout == f"{into}: 0 git mirrors, 0 downloads, 0 meson archives, 2 pip files; MANIFEST.json written\n"
    quiet = envbuild(recipe, "fetch", "--recipe", "testrecipe", "--into", str(into), "--quiet")
    assert (quiet.returncode, quiet.stderr) == (0, "")
