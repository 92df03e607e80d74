"""pip groups locked against the base image (issue 17 item 4 with issue 11 item 3): resolved by
pip in a container of the image, against what its Python has installed, on the real engine.

The base image is the test base (Debian's python3 3.11 and pip) with a fake `torch
2.9.0+rocm` (protected) and `shared 1.0` installed; a PEP 503 index on 127.0.0.1
(reached from the containers with --network host) has `serving`, which needs
`torch>=2.0`, `shared>=1.0` and `helper`, and newer `shared` and other torches. The lock
must take torch and shared from the image and install only serving and helper; the
runtime script, run in a container of the image, installs exactly those, hash-checked,
and leaves torch untouched; on an image with another `shared` it refuses, saying so.
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

from envbuild.run.docker_engine import BuildTranscript, build, make_context_tar
from envbuild.shell import quote
from localsources import PackageIndex, make_wheel, sha256

PYTHON = "python:\n  version: '{version}'\n  platform: manylinux_2_36_x86_64\n  protected: [torch]\n"
RECIPE = "name: r\ndescription: R.\nbase_image: {image}\n{python}components: [{components}]\n"
COMPONENTS = {
    "serve": "pip:\n  - requirements: [serving]\n    options: ['--index-url={index}']\ncheck: python3 -c 'import serving'\n",
    "oldtorch": "pip:\n  - requirements: [oldtorch]\n    options: ['--index-url={index}']\n",
}
SITE = "/usr/local/lib/python3.11/dist-packages"
LISTING = ("python3 -c 'import importlib.metadata as m, json; "
           f"print(json.dumps(sorted((d.metadata[\"Name\"], d.version) for d in m.distributions(path=[\"{SITE}\"]))))'")
IMAGE_HAS = [["shared", "1.0"], ["torch", "2.9.0+rocm"]]


def derived_image(engine, base_image, session, name: str, wheels: list[tuple[str, str]]) -> str:
    """The test base image with `wheels` (name, version) pip-installed into its system Python."""
    files = {f"wheels/{filename}": (data, 0o644) for filename, data in (make_wheel(n, v) for n, v in wheels)}
    pins = " ".join(f"{n}=={v}" for n, v in wheels)
    files["Dockerfile"] = (f"FROM {base_image}\nCOPY wheels /tmp/wheels\n"
                           f"RUN PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --no-index "
                           f"--find-links /tmp/wheels {pins} && rm -r /tmp/wheels\n").encode(), 0o644
    transcript = BuildTranscript()
    session.track(transcript)
    tag = session.tag(name)
    build(engine, make_context_tar(files), tag, labels=session.labels, on_event=transcript)
    return tag


def retag(engine, image: str, tag: str) -> None:
    repository, name = tag.rsplit(":", 1)
    engine.api.tag(image, repository, name, force=True)


@pytest.fixture(scope="module")
def images(engine, base_image, session):
    """The image the lock is made against, and one whose `shared` is another."""
    return (derived_image(engine, base_image, session, "piplock", [("torch", "2.9.0+rocm"), ("shared", "1.0")]),
            derived_image(engine, base_image, session, "piplock-other", [("torch", "2.9.0+rocm"), ("shared", "2.0")]))


@pytest.fixture
def index(file_server) -> PackageIndex:
    index = PackageIndex(file_server)
    for name, version, requires in [("torch", "2.8.0", ()), ("shared", "1.0", ()), ("shared", "2.0", ()),
                                    ("helper", "1.0", ()), ("oldtorch", "1.0", ("torch==2.8.0",)),
                                    ("serving", "1.0", ("torch>=2.0", "shared>=1.0", "helper"))]:
        index.publish(name, version, requires)
    return index


class Recipes:
    def __init__(self, root: Path, index: PackageIndex):
        self.root, self.index = root, index
        (root / "recipes" / "components").mkdir(parents=True)
        for name, text in COMPONENTS.items():
            (root / "recipes" / "components" / f"{name}.yaml").write_text(
                f"name: {name}\ndescription: {name}.\n" + text.format(index=index.url))

    def write(self, image: str, version: str | None = "3.11", components: str = "serve") -> None:
        """The recipe on `image`, its python block for Python `version` (None: no python block)."""
        python = PYTHON.format(version=version) if version else ""
        (self.root / "recipes" / "r.yaml").write_text(RECIPE.format(image=image, python=python, components=components))

    def envbuild(self, *args: str) -> subprocess.CompletedProcess:
        env = {"PATH": os.environ["PATH"], "HOME": str(self.root), "PIP_CONFIG_FILE": os.devnull,
               "PIP_NO_CACHE_DIR": "1", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
        return subprocess.run([sys.executable, "-m", "envbuild", *args, "--recipes-dir", "recipes", "--recipe", "r"],
                              env=env, capture_output=True, text=True, cwd=self.root)

    def lock(self) -> dict:
        return yaml.safe_load((self.root / "recipes" / "r.lock").read_text())

    def group(self, component: str = "serve") -> dict:
        return self.lock()["components"][component]["pip"][0]

    def script(self) -> str:
        result = self.envbuild("runtime-script", "-o", "setup_deps.sh")
        assert result.returncode == 0, result.stderr
        return (self.root / "setup_deps.sh").read_text()


@pytest.fixture
def recipes(tmp_path, index) -> Recipes:
    return Recipes(tmp_path, index)


def run_script(engine, session, image: str, recipes: Recipes) -> tuple[int, list, list[str], str]:
    """setup_deps.sh in a container of `image` (host network: the index is on 127.0.0.1); its exit
    status, its stderr, and then what the image's site-packages hold (a JSON listing) and the files
    under it changed since the run started, one per line."""
    shell = (f"touch /tmp/start; bash /work/setup_deps.sh >/tmp/out 2>/tmp/err; echo $?; {LISTING}; "
             f"find {SITE} -newer /tmp/start -path '*torch*'; cat /tmp/err >&2; "
             "cat /var/lib/envbuild/logs/serve.log >&2 2>/dev/null || :")
    container = engine.containers.create(image, ["bash", "-c", shell], labels=session.labels, network_mode="host",
                                         volumes={str(recipes.root): {"bind": "/work", "mode": "ro"}})
    try:
        container.start()
        assert container.wait(timeout=300)["StatusCode"] == 0
        out = container.logs(stdout=True, stderr=False).decode()
        err = container.logs(stdout=False, stderr=True).decode()
    finally:
        container.remove(force=True)
    status, listing, *changed = out.splitlines()
    return int(status), json.loads(listing), changed, err


def test_a_group_is_locked_against_what_the_image_has_and_installs_exactly_that(engine, session, images, recipes,
                                                                                 index):
    tagged, other = images
    image = session.tag("piplock-moving")  # the tag the lock is made against, moved to `other` at the end
    retag(engine, tagged, image)
    # The recipe's Python must be the image's: resolved there, but unverified, and not applied.
    recipes.write(image, version="3.12")
    assert recipes.envbuild("lock", "--network", "host").returncode == 0
    assert (recipes.group()["status"], recipes.group()["reason"]) == (
        "unverified", f"resolved in a container of {image}, whose python3 is Python 3.11, not the recipe's 3.12 "
                      "(python.version)")

    recipes.write(image)
    result = recipes.envbuild("lock", "--network", "host")
    assert result.returncode == 0, result.stderr
    files = index.files
    assert recipes.group() == {
        "requirements": ["serving"],
        "options": [f"--index-url={index.url}"],
        "packages": [
            {"name": "helper", "version": "1.0", "file": "helper-1.0-py3-none-any.whl",
             "sha256": sha256(files["helper"]["helper-1.0-py3-none-any.whl"])},
            {"name": "serving", "version": "1.0", "file": "serving-1.0-py3-none-any.whl",
             "sha256": sha256(files["serving"]["serving-1.0-py3-none-any.whl"])},
        ],
        "base": [{"name": "shared", "version": "1.0"}, {"name": "torch", "version": "2.9.0+rocm"}],
        "status": "verified",
        "reason": f"resolved by pip in a container of {image} against its installed packages; files measured",
    }
    # Only the base image's digest is unsettled (a local image has none).
    check = recipes.envbuild("lock", "--check", "--format", "json")
    assert [item["what"] for item in json.loads(check.stdout)["unsettled"]] == [f"base image {image}"]

    lines = [f"helper==1.0 --hash=sha256:{recipes.group()['packages'][0]['sha256']}",
             f"serving==1.0 --hash=sha256:{recipes.group()['packages'][1]['sha256']}"]
    assert (f"  _eb_pip_base shared==1.0 torch==2.9.0+rocm\n"
            f"  _eb_pip_indexed 1 {quote('--index-url=' + index.url)} --require-hashes --no-deps "
            f"-r <(printf '%s\\n' {' '.join(quote(line) for line in lines)})\n") in recipes.script()

    index.publish("serving", "2.0", ("torch>=2.0", "shared>=2.0", "helper>=2"))  # newer releases the lock ignores
    index.publish("helper", "2.0")
    status, listing, changed, err = run_script(engine, session, image, recipes)
    assert status == 0, err
    assert listing == [["helper", "1.0"], ["serving", "1.0"], *IMAGE_HAS]
    assert changed == []  # nothing of torch was touched

    # The image the lock was not made for: refused before pip runs, naming what differs.
    status, listing, changed, err = run_script(engine, session, other, recipes)
    assert status == 1
    headline = next(line for line in err.splitlines() if line.startswith("envbuild: error: "))
    assert re.fullmatch(r"envbuild: error: serve failed \(exit 1\) after \d+\.\d{3} s: the lock was made for another "
                        r"base image, which had shared 1\.0 \(2\.0 here\); lock the recipe again against this one; "
                        r"log: /var/lib/envbuild/logs/serve\.log", headline), err
    assert listing == [["shared", "2.0"], ["torch", "2.9.0+rocm"]]

    # Other bytes under a locked file name: pip refuses them and installs nothing.
    index.replace("helper", "helper-1.0-py3-none-any.whl", b"not the wheel that was locked")
    status, listing, changed, err = run_script(engine, session, image, recipes)
    assert status == 1
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in err
    assert listing == IMAGE_HAS

    # The base image changes under its tag: `lock --check` compares with what the engine has now.
    assert recipes.envbuild("lock", "--check").returncode == 0
    retag(engine, other, image)
    check = recipes.envbuild("lock", "--check")
    assert (check.returncode, check.stderr) == (3, (
        f"envbuild: error: recipes/r.lock: component serve pip group 1: locked against another {image} than the "
        "Docker engine has now, which had shared 1.0 (2.0 here)\n"
        "envbuild: error: recipes/r.lock is out of date: `envbuild lock --recipe r --recipes-dir recipes` writes it again\n"))
    engine.api.remove_image(image)  # only the tag: `other` keeps its own
    check = recipes.envbuild("lock", "--check")
    assert (check.returncode, check.stdout, check.stderr) == (
        0, "recipes/r.lock: agrees with recipe r (1 component)\n",
        f"envbuild: recipes/r.lock: pip groups not compared with the base image's installed packages: the Docker "
        f"engine does not have {image}\nenvbuild: warning: recipes/r.lock: base image {image}: unresolved: "
        f"{recipes.lock()['base_image']['reason']}\n")


def test_a_group_that_would_replace_a_protected_distribution_is_unresolved_at_lock_time(images, recipes):
    recipes.write(images[0], components="oldtorch")
    result = recipes.envbuild("lock", "--network", "host")
    assert result.returncode == 0, result.stderr
    assert recipes.group("oldtorch") == {
        "requirements": ["oldtorch"], "options": [f"--index-url={recipes.index.url}"], "packages": None,
        "status": "unresolved",
        "reason": f"pip install --dry-run in a container of {images[0]} failed: ERROR: Cannot install oldtorch==1.0 "
                  "because these package versions have conflicting dependencies. The conflict is caused by: "
                  "oldtorch 1.0 depends on torch==2.8.0; The user requested (constraint) torch==2.9.0+rocm",
    }


def test_a_recipe_without_its_python_block_locked_in_the_image_is_not_said_to_be_resolved_here(images, recipes):
    """The warning that pip resolved for the Python running it here is for groups resolved here only."""
    recipes.write(images[0], version=None)
    result = recipes.envbuild("lock", "--network", "host")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("envbuild: warning: ")]
    # The one about the base image's digest (a local image has none) only.
    assert [line.split(": unresolved: ")[0] for line in warnings] == [
        f"envbuild: warning: recipes/r.lock: base image {images[0]}"]
    assert (recipes.group()["status"], recipes.group()["reason"]) == (
        "verified", f"resolved by pip in a container of {images[0]} against its installed packages; files measured")


def test_without_the_image_groups_are_resolved_alone_unverified_and_strict_names_them(engine, session, recipes,
                                                                                       index):
    absent = session.tag("absent")  # no such image, and no registry has it
    recipes.write(absent)
    strict = recipes.envbuild("lock", "--network", "host", "--strict")
    assert strict.returncode == 1
    assert not (recipes.root / "recipes" / "r.lock").exists()
    assert f"envbuild: pulling {absent} to resolve pip requirements against what its Python has installed\n" \
        in strict.stderr
    errors = [line for line in strict.stderr.splitlines() if line.startswith("envbuild: error: ")]
    assert [line.split(": ")[3] for line in errors[:2]] == [f"base image {absent}", "component serve pip group 1 (serving)"]
    assert errors[1].startswith("envbuild: error: recipes/r.lock: component serve pip group 1 (serving): unverified: "
                                "resolved without the base image's installed packages: the Docker engine could not "
                                f"pull {absent}: ")
    assert errors[1].endswith("; downloaded by pip for Python 3.11 on manylinux_2_36_x86_64")
    assert errors[2] == ("envbuild: error: recipes/r.lock: 2 values unverified or unresolved and --strict was given; "
                         "`envbuild lock --recipe r --recipes-dir recipes` resolves what it can reach")

    assert recipes.envbuild("lock").returncode == 0
    group = recipes.group()
    # As if nothing were installed: the index's torch and newest shared, which the image would refuse.
    assert [(p["name"], p["version"]) for p in group["packages"]] == [
        ("helper", "1.0"), ("serving", "1.0"), ("shared", "2.0"), ("torch", "2.8.0")]
    assert (group["status"], "base" in group) == ("unverified", False)
    # Not applied: the step resolves at run time, under the guard.
    assert f"  _eb_pip_indexed 1 {quote('--index-url=' + index.url)} serving\n" in recipes.script()
