"""A small recipe with local sources that exercises every kind of component.

- libhello: a make-style C build from a git repository, into HELLO_HOME
- greet: a pip-installable package from a git repository, needs libhello
- dataset: a tarball with a sha256, served over HTTP from 127.0.0.1
- rank0-tool: no source, only on NODE_RANK 0

Each build appends its name to $EB_TEST_BUILDS, so tests count real builds.

HttpRecipe is the same recipe for image builds, whose steps see neither the
host's files nor its environment: git repositories are served over git's dumb
HTTP protocol by the same 127.0.0.1 FileServer as the tarball (build with
network_mode="host"), prefixes are under /opt and the build log is a file in
the image.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from localsources import GIT_BASE, FileServer, commit_files, git, git_redirect_env, make_tarball, sha256

HELLO_C = """#include <stdio.h>
int main(void) { printf("hello %d\\n", VERSION); return 0; }
"""
HELLO_MAKEFILE = """PREFIX ?= /usr/local
hello: hello.c
\t$(CC) -DVERSION=$(shell cat VERSION) -o $@ hello.c
install: hello
\tmkdir -p $(PREFIX)/bin
\tinstall -m 755 hello $(PREFIX)/bin/hello
"""
GREET_PYPROJECT = """[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "greet"
version = "{version}"
"""

COMPONENTS = {
    "libhello": """name: libhello
description: A make-style C build from git.
source:
  git: {git_base}libhello.git
  commit: {libhello_commit}
prefix:
  HELLO_HOME: {install_root}/opt/hello
build: |
  echo libhello >> {builds_log}
  make -j"$EB_JOBS"
  make install PREFIX="$HELLO_HOME"
check: |
  "$HELLO_HOME/bin/hello" | grep -qx 'hello {hello_version}'
env:
  set:
    HELLO_HOME: ${{HELLO_HOME}}
  path:
    PATH:
      - ${{HELLO_HOME}}/bin
""",
    "greet": """name: greet
description: A pip package from git, built after libhello.
source:
  git: {git_base}greet.git
  commit: {greet_commit}
depends:
  - libhello
build: |
  echo greet >> {builds_log}
  _eb_pip --no-build-isolation --no-deps .
check: |
  "$EB_PYTHON" -c 'import greet; assert greet.WORD == "greetings"'
""",
    "dataset": """name: dataset
description: A tarball checked against its sha256.
source:
  url: {server}/dataset-1.0.tar.gz
  sha256: {dataset_sha256}
prefix:
  DATA_HOME: {install_root}/opt/data
build: |
  echo dataset >> {builds_log}
  mkdir -p "$DATA_HOME"
  tar -xzf "$EB_DOWNLOAD" --strip-components=1 -C "$DATA_HOME"
check: |
  test -f "$DATA_HOME/README"
""",
    "rank0-tool": """name: rank0-tool
description: Only the first node needs it.
prefix:
  TOOLS_HOME: {install_root}/opt/tools
when:
  node_rank: 0
build: |
  echo rank0-tool >> {builds_log}
  mkdir -p "$TOOLS_HOME"
  echo ready > "$TOOLS_HOME/rank0"
env:
  set:
    RANK0_TOOL: ${{TOOLS_HOME}}/rank0
""",
}

# Built per NIC family (tests of the image for every cluster): a Python package and a
# command, each saying the family it was built for, installed into a prefix that
# holds a directory per family; and a component that needs it, so is built per family too.
NICDRV = """name: nicdrv
description: Built per NIC family; says which it was built for.
nic_specific: true
prefix:
  NICDRV_HOME: {install_root}/opt/nicdrv
build: |
  echo "nicdrv-$EB_NIC_FAMILY" >> {builds_log}
  mkdir -p nicdrv "$NICDRV_HOME/bin"
  printf 'FAMILY = "%s"\\n' "$EB_NIC_FAMILY" > nicdrv/__init__.py
  printf '[project]\\nname = "nicdrv"\\nversion = "1.0"\\n' > pyproject.toml
  _eb_pip_into "$NICDRV_HOME/python" --no-build-isolation .
  printf '#!/bin/sh\\necho "nicdrv for %s"\\n' "$EB_NIC_FAMILY" > "$NICDRV_HOME/bin/nicdrv"
  chmod +x "$NICDRV_HOME/bin/nicdrv"
check: |
  "$EB_PYTHON" -c 'import nicdrv, os; assert nicdrv.FAMILY == os.environ["EB_NIC_FAMILY"], nicdrv.__file__'
env:
  set:
    NICDRV_HOME: ${{NICDRV_HOME}}
  path:
    PATH:
      - ${{NICDRV_HOME}}/bin
    PYTHONPATH:
      - ${{NICDRV_HOME}}/python
"""
NICDEP = """name: nicdep
description: Needs nicdrv, so it is built per NIC family too.
depends:
  - nicdrv
prefix:
  NICDEP_HOME: {install_root}/opt/nicdep
build: |
  echo "nicdep-$EB_NIC_FAMILY" >> {builds_log}
  mkdir -p "$NICDEP_HOME"
  nicdrv > "$NICDEP_HOME/made-with"
check: |
  grep -qx "nicdrv for $EB_NIC_FAMILY" "$NICDEP_HOME/made-with"
"""

# A component whose build fails after printing, for the failure paths.
BROKEN = """name: broken
description: A build that fails.
depends:
  - libhello
build: |
  echo "compiling broken"
  echo "fatal: something is wrong" >&2
  exit 3
"""

RECIPE = """name: testrecipe
description: Local test recipe for envbuild's runtime script.
base_image: envbuild-test/base:latest
components:
{listing}
env:
  set:
    TEST_RECIPE_ENV: "on"
"""


@dataclass
class LocalRecipe:
    """Recipes dir, local sources and the environment a run needs."""

    root: Path
    server: FileServer
    hello_version: int = 1
    greet_version: str = "1.0"
    extra_components: dict[str, str] = field(default_factory=dict)
    components: list[str] = field(default_factory=lambda: ["libhello", "greet", "dataset", "rank0-tool"])
    recipe_extra: str = ""  # YAML added to the recipe file

    def __post_init__(self):
        self.repos = self.root / "repos"
        self.recipes = self.root / "recipes"
        self.state = self.root / "state"
        self.builds_file = self.root / "builds.log"
        self.python = self._venv()
        self.libhello_commit = self.set_hello_version(self.hello_version)
        self.greet_commit = self.commit("greet", {
            "pyproject.toml": GREET_PYPROJECT.format(version=self.greet_version),
            "greet/__init__.py": 'WORD = "greetings"\n',
        })
        tarball = make_tarball({"README": "data\n"}, "dataset-1.0")
        (self.server.root / "dataset-1.0.tar.gz").write_bytes(tarball)
        self.dataset_sha256 = sha256(tarball)
        self.write()

    def _venv(self) -> Path:
        venv = self.root / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
        return venv / "bin" / "python"

    def set_hello_version(self, version: int) -> str:
        self.hello_version = version
        self.libhello_commit = self.commit("libhello", {
            "hello.c": HELLO_C, "Makefile": HELLO_MAKEFILE, "VERSION": f"{version}\n",
        }, f"version {version}")
        return self.libhello_commit

    def commit(self, name: str, files: dict[str, str], message: str = "update") -> str:
        """Commits files to source repository `name` (see GIT_BASE) and returns the commit."""
        return commit_files(self.repos / f"{name}.git", files, message)

    def values(self) -> dict:
        """What the component templates are formatted with."""
        return dict(vars(self), git_base=GIT_BASE, server=self.server.url, install_root=self.root,
                    builds_log='"$EB_TEST_BUILDS"')

    def write(self) -> None:
        (self.recipes / "components").mkdir(parents=True, exist_ok=True)
        values = self.values()
        for name, text in {**COMPONENTS, **self.extra_components}.items():
            (self.recipes / "components" / f"{name}.yaml").write_text(text.format(**values))
        listing = "\n".join(f"  - {name}" for name in self.components)
        (self.recipes / "testrecipe.yaml").write_text(RECIPE.format(listing=listing) + self.recipe_extra)

    def render(self, path: Path | None = None) -> Path:
        path = path or self.root / "setup_deps.sh"
        subprocess.run(
            [sys.executable, "-m", "envbuild", "runtime-script", "--recipes-dir", str(self.recipes),
             "--recipe", "testrecipe", "-o", str(path)],
            check=True, capture_output=True, text=True,
        )
        return path

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.root),
            "TMPDIR": str(self.root / "tmp"),
            "ENVBUILD_STATE_DIR": str(self.state),
            "ENVBUILD_PYTHON": str(self.python),
            "ENVBUILD_NIC_FAMILY": "none",
            "EB_TEST_BUILDS": str(self.builds_file),
            **git_redirect_env(self.repos),
        }
        if "PYTHONPATH" in os.environ:  # envbuild run from this environment is the tree under test
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        (self.root / "tmp").mkdir(exist_ok=True)
        env.update(extra)
        return env

    def run(self, script: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(script), *args], env=self.env(**extra_env),
                              capture_output=True, text=True, cwd=self.root)

    def builds(self) -> list[str]:
        return self.builds_file.read_text().split() if self.builds_file.exists() else []


class HttpRecipe(LocalRecipe):
    """The test recipe with every source at a plain http://127.0.0.1 URL, for image builds.

    Git repositories are served over the dumb HTTP protocol (no shallow fetch by
    SHA, so the steps take _eb_git's full-fetch fallback). Builds append to
    BUILDS_LOG inside the image.
    """

    BUILDS_LOG = "/var/tmp/envbuild-test-builds.log"

    def commit(self, name: str, files: dict[str, str], message: str = "update") -> str:
        commit = super().commit(name, files, message)
        repo = self.repos / f"{name}.git"
        git(repo, "update-server-info")
        served = self.server.root / "git" / f"{name}.git"
        if not served.exists():
            served.parent.mkdir(parents=True, exist_ok=True)
            served.symlink_to(repo / ".git")
        return commit

    def values(self) -> dict:
        return dict(super().values(), git_base=f"{self.server.url}/git/", install_root="",
                    builds_log=self.BUILDS_LOG)
