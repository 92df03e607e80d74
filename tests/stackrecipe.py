"""The built-in recipes' UCX, RIXL and MoRI components built from the stand-in
upstream projects (tests/standins.py) by the generated runtime script.

The components are the repository's own files (recipes/components/*.yaml) with
only what the real platform has swapped out, so that tests exercise the real
build, check and needs text:
- source: the stand-in's URL and commit (reached through git_redirect_env);
- apt and pip: left out, since tests never install packages on the machine
  (it has what the stand-ins build with: cmake, ninja, meson, meson-python,
  patchelf, setuptools);
- libionic: the .deb from AMD's repository becomes a component that installs
  nothing; a test's build host has libionic.so.1 (what libionic1 ships) or not.
The recipe takes gpu_target and the python block (protected distributions
included) from the built-in mi355x-moriio.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from envbuild.spec.loader import Library
from localsources import git_redirect_env
from standins import LOG, MORI_URL, RIXL_URL, UCX_URL

BUILTIN = Path(__file__).resolve().parent.parent / "recipes"
BUILTIN_RECIPE = Library(BUILTIN).recipe("mi355x-moriio")
URLS = {"ucx": UCX_URL, "rixl": RIXL_URL, "mori": MORI_URL}
LIBIONIC = """name: libionic
description: |
  Stand-in for the libionic1 .deb: installs nothing (the build host has libionic.so.1 or not).
"""


def builtin_component(name: str) -> dict:
    return yaml.safe_load((BUILTIN / "components" / f"{name}.yaml").read_text())


@dataclass
class StackRecipe:
    """Recipe `stack` under `root`/recipes: `components` of the built-in ones on the
    stand-ins at `commits` (name -> commit), minus the `needs` of those in `without_needs`."""

    root: Path
    commits: dict[str, str]
    components: list[str]
    without_needs: tuple[str, ...] = ()
    recipes: Path = field(init=False)

    def __post_init__(self):
        self.recipes = self.root / "recipes"
        (self.recipes / "components").mkdir(parents=True)
        for name, commit in self.commits.items():
            data = builtin_component(name)
            data["source"].update(git=URLS[name], commit=commit)
            data.pop("apt", None)
            data.pop("pip", None)
            if name in self.without_needs:
                data.pop("needs")
            (self.recipes / "components" / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        (self.recipes / "components" / "libionic.yaml").write_text(LIBIONIC)
        recipe = {"name": "stack", "description": "The built-in components on the stand-ins.",
                  "base_image": BUILTIN_RECIPE.base_image, "gpu_target": BUILTIN_RECIPE.gpu_target,
                  "python": yaml.safe_load((BUILTIN / "mi355x-moriio.yaml").read_text())["python"],
                  "components": self.components}
        (self.recipes / "stack.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))

    def render(self) -> Path:
        script = self.root / "setup_deps.sh"
        subprocess.run([sys.executable, "-m", "envbuild", "runtime-script", "--recipes-dir", str(self.recipes),
                        "--recipe", "stack", "-o", str(script)], check=True, capture_output=True, text=True)
        return script

    def env(self, repos: Path, rocm: Path, python: Path, **extra: str) -> dict[str, str]:
        """A run's environment: ROCm at `rocm` (hipify-perl on PATH), pip offline and without
        build isolation, the stand-ins logging to root/upstream.log."""
        (self.root / "tmp").mkdir(exist_ok=True)
        return {
            "PATH": f"{rocm / 'bin'}:{os.environ['PATH']}", "HOME": str(self.root), "TMPDIR": str(self.root / "tmp"),
            "ROCM_PATH": str(rocm), "ENVBUILD_STATE_DIR": str(self.root / "state"), "ENVBUILD_PYTHON": str(python),
            LOG: str(self.root / "upstream.log"), "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1",
            "PIP_NO_BUILD_ISOLATION": "0", **git_redirect_env(repos), **extra,
        }
