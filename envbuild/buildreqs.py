"""Build requirements of Python packages built from source (PEP 517/518), for `envbuild fetch`.

pip builds a source tree (a git source whose step runs `_eb_pip ... .`, an
sdist) in an isolated environment into which it first installs the tree's
build requirements: the static ones of `[build-system] requires` in
pyproject.toml (without that table, pip's fallback: setuptools and wheel with
setuptools' legacy backend), then the dynamic ones the build backend's
`get_requires_for_build_wheel` hook returns (setuptools' `setup_requires`,
a CMake that scikit-build-core does not find, ...). Offline, pip takes both
from the fetch directory's pip/ (`--no-index --find-links`), so fetch
downloads them there. The hook is run here, on this machine, with the static
requirements installed into a scratch directory for the Python that runs pip
here: a backend that answers differently on the target (one that looks for
tools installed there) may want more than what was fetched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from envbuild.net import DownloadFailed, last_line

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - depends on the Python running envbuild
    import tomli as tomllib

# pip's build system for a tree whose pyproject.toml has no [build-system] table (or which has none).
FALLBACK_REQUIRES = ("setuptools>=40.8.0", "wheel")
FALLBACK_BACKEND = "setuptools.build_meta:__legacy__"
HOOK_TIMEOUT = 600  # seconds; a setup.py runs at import

# Imports the backend as pip's hook runner does (backend-path first, the tree on
# sys.path for setup.py), asks it, and writes the answer to a file: setup.py may print.
HOOK_PROGRAM = """\
import importlib, json, os, sys
backend, answer = sys.argv[1], sys.argv[2]
sys.path[:0] = [os.path.abspath(path) for path in sys.argv[3:]]
module, _, attributes = backend.partition(":")
hooks = importlib.import_module(module.strip())
for attribute in filter(None, attributes.strip().split(".")):
    hooks = getattr(hooks, attribute)
hook = getattr(hooks, "get_requires_for_build_wheel", None)
requires = list(hook({})) if hook is not None else []
with open(answer, "w") as out:
    json.dump(requires, out)
"""


@dataclass(frozen=True)
class BuildSystem:
    """A source tree's build system: its static requirements and backend."""

    requires: tuple[str, ...]
    backend: str
    backend_path: tuple[str, ...] = ()


def build_system(pyproject: str | None) -> BuildSystem:
    """The build system a pyproject.toml text declares (None: no such file), as pip reads it.

    Raises ValueError when the text is not TOML or the table is malformed.
    """
    try:
        table = tomllib.loads(pyproject).get("build-system") if pyproject is not None else None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"pyproject.toml is not TOML: {exc}") from None
    if table is None:
        return BuildSystem(FALLBACK_REQUIRES, FALLBACK_BACKEND)
    requires = table.get("requires")
    backend_path = table.get("backend-path", [])
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires) \
            or not isinstance(backend_path, list):
        raise ValueError("pyproject.toml: [build-system] requires must be a list of strings")
    # Without build-backend, pip uses setuptools' legacy backend with the requirements given.
    return BuildSystem(tuple(requires), table.get("build-backend") or FALLBACK_BACKEND, tuple(backend_path))


def dynamic_requires(tree: Path, system: BuildSystem, python: str, index_options: Sequence[str]) -> list[str]:
    """What the backend's get_requires_for_build_wheel returns for `tree`, run by `python` with the
    static requirements installed into a scratch directory (pip, from the index `index_options` say).

    Raises DownloadFailed (one line) when the requirements cannot be installed or the hook fails.
    """
    with tempfile.TemporaryDirectory(prefix="envbuild-buildreqs.") as scratch:
        site, answer = Path(scratch) / "site", Path(scratch) / "requires.json"
        if system.requires:
            install = subprocess.run(
                [python, "-m", "pip", "install", "--no-input", "--disable-pip-version-check", "--quiet",
                 "--target", str(site), *index_options, *system.requires],
                capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if install.returncode != 0:
                raise DownloadFailed(f"cannot install its build requirements {' '.join(system.requires)} to ask "
                                     f"{system.backend}: {last_line(install.stderr or install.stdout)}")
        try:
            hook = subprocess.run([python, "-c", HOOK_PROGRAM, system.backend, str(answer), *system.backend_path],
                                  cwd=tree, env=_hook_environment(site), capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, timeout=HOOK_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise DownloadFailed(f"{system.backend}: get_requires_for_build_wheel ran over {HOOK_TIMEOUT} s") from None
        if hook.returncode != 0:
            raise DownloadFailed(f"{system.backend}: get_requires_for_build_wheel failed: "
                                 f"{last_line(hook.stderr or hook.stdout)}")
        return [str(requirement) for requirement in json.loads(answer.read_text(encoding="utf-8"))]


def _hook_environment(site: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}
