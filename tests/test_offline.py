"""Air-gapped installs: `envbuild fetch` collects everything, and the install uses no network at all.

The recipe's components, on local sources reached by the same paths as real ones
(git URLs https://git.example.invalid/... redirected by git's insteadOf,
archives on a FileServer at 127.0.0.1):
- subby: a git source with a submodule (absolute URL) that has a submodule of its
  own (relative URL), and two meson wraps (an archive, a git repository); its
  step runs meson (`pip: [meson]`) to download its subprojects and copies what
  every one of them holds;
- builtpkg: a pip package built from its git source under build isolation:
  setuptools comes from pyproject.toml's [build-system] requires, flit_core from
  setup.py's setup_requires (setuptools' backend returns it from
  get_requires_for_build_wheel), both from PyPI;
- jqtool: `apt: [jq]` (jq needs libjq1 and libonig5, which the test base image lacks);
- nonet: fails unless the only network interface is lo, so every install below
  proves it had no network; it unpacks a download into its own prefix only, so
  an image builds it in a stage of its own (which checks the step wrote
  nothing else).

fetch uses the network (PyPI; Debian, from a container of the test base image;
the local servers). The installs use none: on this machine in a network
namespace of their own (unshare --net, as root: lo only, nothing listening),
and in a container of the test base image with --network none.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from envbuild.mirror import absolute_url
from envbuild.run.docker_engine import SOURCES_LABEL
from envbuild.spec.sources import offline_git_name
from localsources import GIT_BASE, FileServer, commit_files, git, git_redirect_env, make_tarball, make_wheel, sha256

PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
RECIPE = """name: {name}
description: Air-gapped install test.
base_image: envbuild-test/base:latest
python:
  version: '{python}'
  platform: manylinux_2_36_x86_64
components:
{listing}
"""
COMPONENTS = {
    "subby": """name: subby
description: Submodules, recursively, and meson wraps.
source:
  git: {git_base}subby.git
  commit: {subby}
  submodules: true
pip:
  - meson
prefix:
  SUBBY_HOME: {root}/opt/subby
build: |
  "$EB_PYTHON" -m mesonbuild.mesonmain subprojects download
  mkdir -p "$SUBBY_HOME"
  cp leaf/leaf.txt leaf/deep/deep.txt subprojects/tinylib-1.0/tiny.txt subprojects/gitlib/gitlib.txt "$SUBBY_HOME/"
check: |
  test "$(cat "$SUBBY_HOME/leaf.txt" "$SUBBY_HOME/deep.txt" "$SUBBY_HOME/tiny.txt" "$SUBBY_HOME/gitlib.txt")" = \\
    "$(printf 'leaf\\ndeep\\ntiny\\ngitlib')"
""",
    "builtpkg": """name: builtpkg
description: Built from source by pip under build isolation.
source:
  git: {git_base}builtpkg.git
  commit: {builtpkg}
build: |
  _eb_pip --no-deps .
check: |
  "$EB_PYTHON" -c 'import builtpkg; assert builtpkg.WORD == "built"'
""",
    "jqtool": """name: jqtool
description: An apt package with dependencies the base image lacks.
apt:
  - jq
check: |
  test "$(echo '{{"a": 7}}' | jq .a)" = 7
""",
    "nonet": """name: nonet
description: Fails unless lo is the only network interface; unpacks a download.
source:
  url: {server_url}/nonet-1.0.tar.gz
  sha256: {nonet_sha256}
prefix:
  NONET_HOME: {root}/opt/nonet
build: |
  interfaces=$(awk -F: 'NR > 2 {{gsub(/ /, "", $1); print $1}}' /proc/net/dev)
  [[ $interfaces == lo ]] || {{ echo "network interfaces: $interfaces" >&2; exit 1; }}
  mkdir -p "$NONET_HOME"
  tar -xzf "$EB_DOWNLOAD" --strip-components=1 -C "$NONET_HOME"
  echo "$interfaces" > "$NONET_HOME/interfaces"
""",
}
BUILTPKG_PYPROJECT = """[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"
"""
# setup_requires is what setuptools' get_requires_for_build_wheel adds to the static requirements.
BUILTPKG_SETUP = """from setuptools import setup
setup(name="builtpkg", version="1.0", packages=["builtpkg"], setup_requires=["flit_core"])
"""


def add_submodule(repo: Path, path: str, url: str, commit: str) -> str:
    """Commits submodule `path` at `commit` (what `git submodule add` would, without cloning it); the new commit."""
    (repo / ".gitmodules").write_text(f'[submodule "{path}"]\n\tpath = {path}\n\turl = {url}\n')
    git(repo, "add", ".gitmodules")
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{commit},{path}")
    git(repo, "commit", "-q", "-m", f"add submodule {path}")
    return git(repo, "rev-parse", "HEAD")


@dataclass
class Offline:
    """The recipes, their local sources and what fetch wrote."""

    root: Path
    server: FileServer
    commits: dict[str, str]
    tiny_sha256: str

    @property
    def recipes(self) -> Path:
        return self.root / "recipes"

    @property
    def repos(self) -> Path:
        return self.root / "repos"

    @property
    def sources(self) -> Path:
        return self.root / "sources"

    def envbuild(self, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, **git_redirect_env(self.repos), "HOME": str(self.root)}
        return subprocess.run([sys.executable, "-m", "envbuild", *args, "--recipes-dir", str(self.recipes)],
                              capture_output=True, text=True, env=env, timeout=1800)

    def manifest(self) -> dict:
        return json.loads((self.sources / "MANIFEST.json").read_text())


def make_sources(root: Path, server: FileServer) -> Offline:
    repos = root / "repos"
    # deep's pinned commit is on no branch any more (as after a force-push): fetch asks for it by its id,
    # which the repository allows, as GitHub does.
    deep = repos / "deep.git"
    commit_files(deep, {"README": "deep\n"})
    git(deep, "checkout", "-q", "-b", "gone")
    commits = {"deep": commit_files(deep, {"deep.txt": "deep\n"})}
    git(deep, "checkout", "-q", "main")
    git(deep, "branch", "-q", "-D", "gone")
    git(deep, "config", "uploadpack.allowAnySHA1InWant", "true")
    leaf = repos / "leaf.git"
    commit_files(leaf, {"leaf.txt": "leaf\n"})
    commits["leaf"] = add_submodule(leaf, "deep", "../deep.git", commits["deep"])  # relative to leaf's own URL
    commits["gitlib"] = commit_files(repos / "gitlib.git", {"gitlib.txt": "gitlib\n",
                                                             "meson.build": "project('gitlib')\n"})
    tarball = make_tarball({"tiny.txt": "tiny\n", "meson.build": "project('tinylib')\n"}, "tinylib-1.0")
    (server.root / "tinylib-1.0.tar.gz").write_bytes(tarball)
    subby = repos / "subby.git"
    commit_files(subby, {
        "meson.build": "project('subby')\n",
        "subprojects/tinylib.wrap": (f"[wrap-file]\ndirectory = tinylib-1.0\nsource_url = {server.url}/tinylib-1.0.tar.gz\n"
                                     f"source_filename = tinylib-1.0.tar.gz\nsource_hash = {sha256(tarball)}\n"),
        "subprojects/gitlib.wrap": f"[wrap-git]\nurl = {GIT_BASE}gitlib.git\nrevision = main\ndepth = 1\n",
    })
    commits["subby"] = add_submodule(subby, "leaf", f"{GIT_BASE}leaf.git", commits["leaf"])
    commits["builtpkg"] = commit_files(repos / "builtpkg.git", {
        "pyproject.toml": BUILTPKG_PYPROJECT, "setup.py": BUILTPKG_SETUP, "builtpkg/__init__.py": 'WORD = "built"\n'})
    offline = Offline(root, server, commits, sha256(tarball))
    (offline.recipes / "components").mkdir(parents=True)
    payload = make_tarball({"payload.txt": "payload\n"}, "nonet-1.0")
    (server.root / "nonet-1.0.tar.gz").write_bytes(payload)
    values = {"git_base": GIT_BASE, "root": root, "server_url": server.url, "nonet_sha256": sha256(payload), **commits}
    for name, text in COMPONENTS.items():
        (offline.recipes / "components" / f"{name}.yaml").write_text(text.format(**values))
    write_recipe(offline.recipes, "offline", list(COMPONENTS))
    return offline


def write_recipe(recipes: Path, name: str, components: list[str]) -> None:
    listing = "".join(f"  - {component}\n" for component in components).rstrip("\n")
    (recipes / f"{name}.yaml").write_text(RECIPE.format(name=name, python=PYTHON, listing=listing))


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    root = tmp_path_factory.mktemp("offline")
    (root / "www").mkdir()
    server = FileServer(root / "www")
    yield make_sources(root, server)
    server.close()


@pytest.fixture(scope="module")
def fetched(offline):
    result = offline.envbuild("fetch", "--recipe", "offline", "--into", str(offline.sources))
    assert result.returncode == 0, result.stderr
    return result


def render(offline: Offline, name: str = "offline") -> Path:
    script = offline.root / f"{name}.sh"
    result = offline.envbuild("runtime-script", "--recipe", name, "-o", str(script))
    assert result.returncode == 0, result.stderr
    return script


def mirror_entry(offline: Offline, component: str, name: str, via: str | None) -> dict:
    url = f"{GIT_BASE}{name}.git"
    return {"component": component, "url": url, "mirror": f"git/{offline_git_name(url)}.git",
            "commit": offline.commits[name], "branch": "main" if via and via.startswith("wrap") else None, "via": via}


def test_fetch_collects_submodules_wraps_and_build_requirements(offline, fetched):
    manifest = offline.manifest()
    assert manifest["missing"] == [] and manifest["format"] == "envbuild-sources-v2"
    url = {name: f"{GIT_BASE}{name}.git" for name in offline.commits}
    assert sorted(manifest["git"], key=lambda e: e["url"]) == sorted([
        mirror_entry(offline, "subby", "subby", None),
        mirror_entry(offline, "subby", "leaf", f"submodule leaf of {url['subby']}"),
        mirror_entry(offline, "subby", "deep", f"submodule deep of {url['leaf']}"),
        mirror_entry(offline, "subby", "gitlib", f"wrap subprojects/gitlib.wrap of {url['subby']}"),
        mirror_entry(offline, "builtpkg", "builtpkg", None),
    ], key=lambda e: e["url"])
    assert (offline.sources / "git" / "urls").read_text() == "".join(
        sorted(f"{offline_git_name(u)} {u}\n" for u in url.values()))
    tiny = offline.sources / "meson/packagecache/tinylib-1.0.tar.gz"
    assert manifest["meson"] == [{
        "component": "subby", "wrap": "subprojects/tinylib.wrap", "file": "meson/packagecache/tinylib-1.0.tar.gz",
        "url": f"{offline.server.url}/tinylib-1.0.tar.gz", "sha256": offline.tiny_sha256, "size": tiny.stat().st_size}]
    assert manifest["build_requirements"] == [{"of": "builtpkg", "backend": "setuptools.build_meta",
                                               "requires": ["setuptools>=61"], "dynamic": ["flit_core"], "note": None}]
    wheels = sorted(re.sub(r"-[0-9][^-]*-py3-none-any\.whl$", "", entry["file"]) for entry in manifest["pip"])
    assert wheels == ["pip/flit_core", "pip/meson", "pip/setuptools"]
    assert "subby: submodule leaf of https://git.example.invalid/subby.git: mirrored " in fetched.stderr
    assert "builtpkg: build requirements setuptools>=61 flit_core (setuptools.build_meta)" in fetched.stderr


BROKEN = {
    "strict": """name: strict
description: Asks for its submodules, one of which is nowhere; its wraps are wrong.
source:
  git: {git_base}strict.git
  commit: {strict}
  submodules: true
""",
    "lenient": """name: lenient
description: Does not ask for its submodules; one of them is nowhere.
source:
  git: {git_base}lenient.git
  commit: {lenient}
""",
    "badtoml": """name: badtoml
description: pip builds it; its pyproject.toml is not TOML.
source:
  git: {git_base}badtoml.git
  commit: {badtoml}
build: |
  _eb_pip .
""",
    "hookfails": """name: hookfails
description: pip builds it; its setup.py fails when setuptools asks it for requirements.
source:
  git: {git_base}hookfails.git
  commit: {hookfails}
build: |
  _eb_pip .
""",
}


def test_fetch_names_what_it_cannot_collect(tmp_path, file_server):
    repos = tmp_path / "repos"
    nowhere = f"{GIT_BASE}nowhere.git"
    commits = {}
    for name in ("strict", "lenient"):
        commit_files(repos / f"{name}.git", {"README": name + "\n", "subprojects/hg.wrap": "[wrap-hg]\nurl = x\n",
                                             "subprojects/bad.wrap": (
                                                 f"[wrap-file]\nsource_url = {file_server.url}/bad.tar.gz\n"
                                                 f"source_filename = bad.tar.gz\nsource_hash = {'0' * 64}\n")})
        commits[name] = add_submodule(repos / f"{name}.git", "gone", nowhere, "1" * 40)
    (file_server.root / "bad.tar.gz").write_bytes(b"not what the wrap says")
    commits["badtoml"] = commit_files(repos / "badtoml.git", {"pyproject.toml": "[build-system\n"})
    commits["hookfails"] = commit_files(repos / "hookfails.git", {
        "pyproject.toml": BUILTPKG_PYPROJECT, "setup.py": "raise RuntimeError('no building here')\n"})
    recipes = tmp_path / "recipes"
    (recipes / "components").mkdir(parents=True)
    for name, text in BROKEN.items():
        (recipes / "components" / f"{name}.yaml").write_text(text.format(git_base=GIT_BASE, **commits))
    write_recipe(recipes, "broken", list(BROKEN))
    env = {**os.environ, **git_redirect_env(repos), "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "envbuild", "fetch", "--recipes-dir", str(recipes), "--recipe",
                             "broken", "--into", str(tmp_path / "sources")], capture_output=True, text=True, env=env)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("envbuild: error: ")]
    bad = f"{file_server.url}/bad.tar.gz"
    mismatch = f"sha256 mismatch for {bad}: expected {'0' * 64}, got {sha256(b'not what the wrap says')}"
    assert errors[0] == "envbuild: error: some sources could not be fetched:"
    assert errors[1].startswith(f"envbuild: error: strict: submodule gone of {GIT_BASE}strict.git: cannot mirror "
                                f"{nowhere}: ")
    assert errors[2:] == [
        f"envbuild: error: strict: subprojects/bad.wrap: {mismatch}",
        "envbuild: error: strict: subprojects/hg.wrap: wrap-hg is not fetched (only wrap-file and wrap-git are)",
        f"envbuild: error: lenient: subprojects/bad.wrap: {mismatch}",
        "envbuild: error: lenient: subprojects/hg.wrap: wrap-hg is not fetched (only wrap-file and wrap-git are)",
        "envbuild: error: badtoml: pyproject.toml is not TOML: Expected ']' at the end of a table declaration "
        "(at line 1, column 14)",
    ]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("envbuild: warning: ")]
    assert len(warnings) == 2
    assert warnings[0].startswith(f"envbuild: warning: lenient: submodule gone of {GIT_BASE}lenient.git: cannot mirror ")
    assert warnings[1] == (
        "envbuild: warning: hookfails: dynamic build requirements unknown: setuptools.build_meta: "
        "get_requires_for_build_wheel failed: RuntimeError: no building here; only the static ones (setuptools>=61) "
        "were fetched")
    assert not list((tmp_path / "sources" / "meson" / "packagecache").iterdir())  # the bad archive is not kept


@pytest.mark.skipif(os.geteuid() != 0, reason="unshare --net needs root")
def test_installs_in_a_network_namespace_without_network(offline, fetched):
    script = render(offline)
    env = {"PATH": os.environ["PATH"], "HOME": str(offline.root), "TMPDIR": str(offline.root),
           "ENVBUILD_STATE_DIR": str(offline.root / "state"), "ENVBUILD_PYTHON": str(_venv(offline.root)),
           "ENVBUILD_NIC_FAMILY": "none", "ENVBUILD_SOURCE_DIR": str(offline.sources)}
    only = [word for name in ("nonet", "subby", "builtpkg") for word in ("--only", name)]
    # The namespace's own lo, where nothing listens (the FileServer is on the machine's).
    result = subprocess.run(["unshare", "--net", "--", "bash", "-c", 'ip link set lo up && exec bash "$@"', "netns",
                             str(script), *only], capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr + _logs(offline.root / "state")
    assert "installed 3, present 0, skipped 0 of 3 components" in result.stdout
    nonet = offline.root / "opt/nonet"
    assert [(nonet / f).read_text() for f in ("interfaces", "payload.txt")] == ["lo\n", "payload\n"]
    home = offline.root / "opt/subby"
    assert [(home / f).read_text() for f in ("leaf.txt", "deep.txt", "tiny.txt", "gitlib.txt")] == [
        "leaf\n", "deep\n", "tiny\n", "gitlib\n"]
    log = (offline.root / "state/logs/builtpkg.log").read_text()
    assert "Successfully installed builtpkg-1.0" in log


INDEXED = """name: indexed
description: pip packages from a find-links page, its options written in both forms.
pip:
  - requirements: [tinyfirst]
    options: [--no-index, '--find-links={url}/dist/']
  - requirements: [tinysecond]
    options: [--no-index, --find-links, '{url}/dist/', --trusted-host, 127.0.0.1]
"""


class CountingListener:
    """Accepts connections on 127.0.0.1:`port` and closes them at once, counting them."""

    def __init__(self, port: int):
        self.socket = socket.create_server(("127.0.0.1", port))
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self.socket.accept()
                self.accepted += 1
                connection.close()

    def close(self) -> None:
        self.socket.close()


def test_an_offline_install_leaves_out_the_recipes_own_index_options(tmp_path):
    """The fetch directory replaces the recipe's --find-links (--index-url, ...): pip never tries its
    server, which is down by then."""
    (tmp_path / "www" / "dist").mkdir(parents=True)
    for name in ("tinyfirst", "tinysecond"):
        wheel, data = make_wheel(name, "1.0", value=name)
        (tmp_path / "www" / "dist" / wheel).write_bytes(data)
    server = FileServer(tmp_path / "www")
    recipes = tmp_path / "recipes"
    (recipes / "components").mkdir(parents=True)
    (recipes / "components" / "indexed.yaml").write_text(INDEXED.format(url=server.url))
    write_recipe(recipes, "indexed", ["indexed"])
    envbuild = [sys.executable, "-m", "envbuild"]
    try:
        fetched = subprocess.run([*envbuild, "fetch", "--recipes-dir", str(recipes), "--recipe", "indexed", "--into",
                                  str(tmp_path / "sources")], capture_output=True, text=True, timeout=600)
    finally:
        server.close()
    assert fetched.returncode == 0, fetched.stderr
    assert sorted(p.name for p in (tmp_path / "sources" / "pip").iterdir()) == [
        "tinyfirst-1.0-py3-none-any.whl", "tinysecond-1.0-py3-none-any.whl"]
    script = tmp_path / "setup_deps.sh"
    rendered = subprocess.run([*envbuild, "runtime-script", "--recipes-dir", str(recipes), "--recipe", "indexed",
                               "-o", str(script)], capture_output=True, text=True)
    assert rendered.returncode == 0, rendered.stderr
    assert (f"  _eb_pip_indexed 1 --find-links={server.url}/dist/ --no-index tinyfirst\n"
            f"  _eb_pip_indexed 4 --find-links {server.url}/dist/ --trusted-host 127.0.0.1 --no-index tinysecond\n"
            in script.read_text())
    down = CountingListener(int(server.url.rsplit(":", 1)[1]))  # where the recipe's server was
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TMPDIR": str(tmp_path),
           "ENVBUILD_STATE_DIR": str(tmp_path / "state"), "ENVBUILD_PYTHON": str(_venv(tmp_path)),
           "ENVBUILD_NIC_FAMILY": "none", "ENVBUILD_SOURCE_DIR": str(tmp_path / "sources")}
    try:
        result = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=600)
    finally:
        down.close()
    assert result.returncode == 0, result.stdout + result.stderr + _logs(tmp_path / "state")
    assert "installed 1, present 0, skipped 0 of 1 component (" in result.stdout
    assert down.accepted == 0
    assert server.url not in _logs(tmp_path / "state")
    imported = subprocess.run([str(_venv(tmp_path)), "-c", "import tinyfirst, tinysecond; "
                               "print(tinyfirst.VALUE, tinysecond.VALUE)"], capture_output=True, text=True)
    assert imported.stdout == "tinyfirst tinysecond\n", imported.stderr


@pytest.fixture(scope="module")
def fetched_apt(offline, fetched, engine, base_image):
    """The same directory, fetched again with --apt for the test base image."""
    result = offline.envbuild("fetch", "--recipe", "offline", "--into", str(offline.sources), "--apt",
                              "--base-image", base_image)
    assert result.returncode == 0, result.stderr
    return result


def test_fetch_again_keeps_everything_and_adds_the_debs_for_the_base_image(offline, base_image, fetched_apt):
    manifest = offline.manifest()
    assert manifest["missing"] == [] and manifest["apt_base_image"] == base_image
    debs = [re.sub(r"_.*", "", entry["file"]) for entry in manifest["apt"]]
    assert debs == ["apt/jq", "apt/libjq1", "apt/libonig5"]
    for entry in manifest["apt"]:
        assert sha256((offline.sources / entry["file"]).read_bytes()) == entry["sha256"]
    packages = (offline.sources / "apt/Packages").read_text()
    assert [line for line in packages.splitlines() if line.startswith("Package: ")] == [
        "Package: jq", "Package: libjq1", "Package: libonig5"]
    assert f"subby: {offline.sources.name}" not in fetched_apt.stderr
    assert f"subby: git/{offline_git_name(GIT_BASE + 'subby.git')}.git holds {offline.commits['subby'][:12]}; kept" \
        in fetched_apt.stderr
    assert "subby: meson/packagecache/tinylib-1.0.tar.gz is there, sha256 verified; kept" in fetched_apt.stderr
    assert f"{offline.sources}: 5 git mirrors, 1 download, 1 meson archive, 3 pip files, 3 apt packages" \
        in fetched_apt.stdout


def test_installs_in_a_container_without_network(offline, fetched_apt, engine, base_image, session):
    script = render(offline)
    environment = {"ENVBUILD_SOURCE_DIR": "/sources", "ENVBUILD_NIC_FAMILY": "none", "SUBBY_HOME": "/opt/subby",
                   "NONET_HOME": "/opt/nonet"}
    command = ("bash /setup_deps.sh && bash /setup_deps.sh --check && cat /opt/subby/*.txt /opt/nonet/interfaces "
               "/opt/nonet/payload.txt")
    status, output = run_without_network(engine, session, base_image, command, environment, {
        str(offline.sources): {"bind": "/sources", "mode": "ro"}, str(script): {"bind": "/setup_deps.sh", "mode": "ro"}})
    assert status == 0, output
    assert "installed 4, present 0, skipped 0 of 4 components" in output
    assert "all 4 components present" in output
    assert output.endswith("deep\ngitlib\nleaf\ntiny\nlo\npayload\n")


def test_image_from_sources_builds_without_network_and_keeps_no_source(offline, fetched_apt, engine, base_image,
                                                                       session):
    tag = session.tag("offline")
    image = ["image", "--recipe", "offline", "--base-image", base_image, "--sources", str(offline.sources)]
    dockerfile = offline.envbuild(*image, "--tag", tag, "--dry-run")
    assert dockerfile.returncode == 0, dockerfile.stderr
    # The steps of every stage get the sources' URL, a build setting; nonet builds in a stage of its own.
    assert re.findall(r"^FROM .*\n(.*)", dockerfile.stdout, re.M) == ["ARG ENVBUILD_SOURCE_DIR"] * 3
    assert "\nRUN ENVBUILD_COMPONENT=nonet bash /opt/envbuild/lib/run-component.sh --stage nonet\n" in dockerfile.stdout
    before = {each.id for each in engine.images.list(all=True)}
    result = offline.envbuild(*image, "--tag", tag)
    # Reproducible as a build with network is: the sources' URL, a build setting, is in no layer or config.
    again = offline.envbuild(*image, "--tag", session.tag("offline-again"), "--no-cache")
    session.adopt_new_images(engine, before)
    assert result.returncode == 0, result.stderr
    assert again.returncode == 0, again.stderr
    assert engine.api.inspect_image(session.tag("offline-again"))["Id"] == engine.api.inspect_image(tag)["Id"]
    assert f"from {offline.sources}" in result.stderr
    assert not engine.containers.list(all=True, filters={"label": f"{SOURCES_LABEL}={offline.sources}"})
    command = ("bash /opt/envbuild/setup_deps.sh --check && cat \"$SUBBY_HOME\"/*.txt \"$NONET_HOME/interfaces\" "
               "\"$NONET_HOME/payload.txt\" && jq --version && python3 -c 'import builtpkg'")
    status, output = run_without_network(engine, session, tag, command, {
        "SUBBY_HOME": f"{offline.root}/opt/subby", "NONET_HOME": f"{offline.root}/opt/nonet"})
    assert status == 0, output
    assert "all 4 components present" in output
    assert "deep\ngitlib\nleaf\ntiny\nlo\npayload\njq-1.6\n" in output  # the steps had lo and nothing else
    # Nothing of the source directory is in any layer of the image.
    fetched_names = {path.name for part in ("pip", "apt", "meson/packagecache", "git", "downloads")
                     for path in (offline.sources / part).iterdir()} - {"urls", "Packages"}
    assert len(fetched_names) == 3 + 3 + 1 + 5 + 1
    assert fetched_names & layer_file_names(engine, tag) == set()


def test_script_and_image_refuse_what_they_cannot_install_from(offline, fetched, engine, base_image, session, tmp_path):
    script = render(offline)
    (tmp_path / "MANIFEST.json").write_text("{}")
    command = ("bash /setup_deps.sh --only jqtool; echo status=$?; "
               "ENVBUILD_SOURCE_DIR=sources bash /setup_deps.sh --only jqtool; echo status=$?")
    status, output = run_without_network(engine, session, base_image, command, {
        "ENVBUILD_SOURCE_DIR": "/sources", "ENVBUILD_NIC_FAMILY": "none"}, {
        str(tmp_path): {"bind": "/sources", "mode": "ro"}, str(script): {"bind": "/setup_deps.sh", "mode": "ro"}})
    assert status == 0, output
    assert re.findall(r"envbuild: error: ENVBUILD_SOURCE_DIR[^\n]*|status=[0-9]+", output) == [
        "envbuild: error: ENVBUILD_SOURCE_DIR has no apt packages (no apt/Packages); run envbuild fetch --apt",
        "status=1",
        "envbuild: error: ENVBUILD_SOURCE_DIR must be an absolute directory or an http(s):// URL, not sources",
        "status=1"]

    empty = tmp_path / "empty"
    empty.mkdir()
    image = ["image", "--recipe", "offline", "--base-image", base_image, "--tag", session.tag("refused")]
    both = offline.envbuild(*image, "--sources", str(offline.sources), "--network", "host")
    assert (both.returncode, both.stderr) == (2, "envbuild: error: --sources and --network exclude each other: the "
                                                 "steps of a build from sources reach the sources and nothing else\n")
    given = offline.envbuild(*image, "--sources", str(offline.sources), "--build-env", "ENVBUILD_SOURCE_DIR=/x")
    assert (given.returncode, given.stderr) == (2, "envbuild: error: --build-env ENVBUILD_SOURCE_DIR and --sources "
                                                   "exclude each other: --sources sets it\n")
    unfetched = offline.envbuild(*image, "--sources", str(empty))
    assert unfetched.returncode == 1
    assert unfetched.stderr.endswith(f"envbuild: error: {empty} has no MANIFEST.json where the Docker engine sees it: "
                                     "give a directory written by envbuild fetch, on the engine's machine\n")
    assert not engine.containers.list(all=True, filters={"label": f"{SOURCES_LABEL}={empty}"})


def run_without_network(engine, session, image: str, command: str, environment: dict[str, str],
                        volumes: dict | None = None) -> tuple[int, str]:
    """`bash -c command` in a container of `image` with --network none; its exit status and output."""
    container = engine.containers.create(image, ["bash", "-c", command], network_mode="none", labels=session.labels,
                                         environment=environment, volumes=volumes or {})
    try:
        container.start()
        return container.wait(timeout=900)["StatusCode"], container.logs().decode()
    finally:
        container.remove(force=True)


def layer_file_names(engine, image: str) -> set[str]:
    """The base names of every file in every layer of `image` (docker save, read as it streams)."""
    names: set[str] = set()
    reader, writer = os.pipe()
    with os.fdopen(reader, "rb") as stream:
        thread = threading.Thread(target=_save, args=(engine, image, writer))
        thread.start()
        with tarfile.open(fileobj=stream, mode="r|") as saved:
            for member in saved:
                if member.name.endswith("/layer.tar"):
                    with tarfile.open(fileobj=saved.extractfile(member), mode="r|") as layer:
                        names |= {PurePosixPath(entry.name).name for entry in layer}
        thread.join()
    return names


def _save(engine, image: str, fd: int) -> None:
    with os.fdopen(fd, "wb") as out:
        for chunk in engine.api.get_image(image):
            out.write(chunk)


def _venv(root: Path) -> Path:
    """A Python of its own for the installs (pip from this one's site-packages)."""
    venv = root / "venv"
    if not venv.exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    return venv / "bin" / "python"


def _logs(state: Path) -> str:
    return "".join(f"\n--- {log.name}\n{log.read_text()[-3000:]}" for log in sorted((state / "logs").glob("*.log")))


def test_submodule_urls_are_made_absolute_as_git_does():
    base = "https://example.com/org/super.git"
    assert absolute_url("../leaf.git", base) == "https://example.com/org/leaf.git"
    assert absolute_url("../../other/leaf", base + "/") == "https://example.com/other/leaf"
    assert absolute_url("./vendored.git", base) == "https://example.com/org/super.git/vendored.git"
    assert absolute_url("git@example.com:org/leaf.git", base) == "git@example.com:org/leaf.git"
