"""pip requirements for the target's Python: resolving them for a lock, downloading them for fetch.

The target is the recipe's base image Python (its `python: {version, platform}`
block); pip is aimed at it with `--python-version`, `--platform`,
`--implementation cp` and `--only-binary=:all:` (pip cannot build an sdist for
another platform). A recipe that names no Python gets the running pip's own,
which `envbuild lock` records as unverified and both commands warn about.

A locked pip group (the lock's `components.<name>.pip[i]`) is
`{requirements, options, packages: [{name, version, file, sha256}], status, reason}`:
every package `pip download` fetched for the requirements and their
dependencies, measured (envbuild.spec.lock.pip_lines gives pip's `--require-hashes` form).
"""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from packaging.utils import InvalidSdistFilename, InvalidWheelFilename, canonicalize_name, parse_sdist_filename, \
    parse_wheel_filename

from envbuild.errors import UsageError
from envbuild.net import file_sha256, last_line
from envbuild.spec.model import PipGroup, Recipe
from envbuild.spec.sources import UNRESOLVED, UNVERIFIED, VERIFIED

# Options of a pip group that say where packages come from, which `pip download` takes too;
# the others (--ignore-installed, --force-reinstall, ...) are about installing.
DOWNLOAD_OPTIONS = ("--index-url", "--extra-index-url", "--no-index", "--find-links", "--pre", "--only-binary",
                    "--no-binary", "--prefer-binary", "--trusted-host")
# pip download options that choose the target themselves (given with --pip-option, they win).
TARGET_OPTIONS = ("--python-version", "--platform", "--implementation", "--abi")
FROM_RECIPE, FROM_HOST = "recipe", "host"


@dataclass(frozen=True)
class Target:
    """The Python pip resolves for: the recipe's (`from_` "recipe") or the running pip's ("host")."""

    version: str  # X.Y
    platform: str  # a wheel platform tag
    from_: str

    def pip_options(self) -> list[str]:
        """What aims `pip download` at it; nothing for the running pip's own Python."""
        if self.from_ != FROM_RECIPE:
            return []
        platforms = [word for tag in compatible_platforms(self.platform) for word in ("--platform", tag)]
        return ["--python-version", self.version, *platforms, "--implementation", "cp", "--only-binary=:all:"]

    def describe(self) -> str:
        return f"Python {self.version} on {self.platform}"

    def lock_entry(self) -> dict:
        return {"version": self.version, "platform": self.platform, "from": self.from_}


def compatible_platforms(tag: str) -> list[str]:
    """`tag` and the older tags whose wheels run there, newest first: pip takes a
    --platform literally, so manylinux_2_35_x86_64 alone would miss every wheel built
    for an older glibc (manylinux_2_17, manylinux2014, ...). Other tags stay as given."""
    manylinux = re.fullmatch(r"manylinux_2_([0-9]+)_(\w+)", tag)
    if manylinux:
        glibc, arch = int(manylinux.group(1)), manylinux.group(2)
        tags = [f"manylinux_2_{minor}_{arch}" for minor in range(glibc, 4, -1)]
        legacy = [("manylinux2014", 17), ("manylinux2010", 12), ("manylinux1", 5)]
        return tags + [f"{name}_{arch}" for name, minimum in legacy if glibc >= minimum]
    musllinux = re.fullmatch(r"musllinux_1_([0-9]+)_(\w+)", tag)
    if musllinux:
        return [f"musllinux_1_{minor}_{musllinux.group(2)}" for minor in range(int(musllinux.group(1)), 0, -1)]
    return [tag]


def target_of(recipe: Recipe, python: str = sys.executable) -> Target:
    """The recipe's Python when it names one, else the one `python` is (asked; UsageError if it cannot run)."""
    if recipe.python is not None:
        return Target(recipe.python.version, recipe.python.platform, FROM_RECIPE)
    if python == sys.executable:
        version, platform = f"{sys.version_info[0]}.{sys.version_info[1]}", sysconfig.get_platform()
    else:
        program = "import sys, sysconfig; print('%d.%d' % sys.version_info[:2]); print(sysconfig.get_platform())"
        version, platform = ask(python, program).splitlines()[:2]
    return Target(version, platform.replace("-", "_").replace(".", "_"), FROM_HOST)


def ask(python: str, program: str) -> str:
    """The output of `python -I -c program`; UsageError when that Python cannot run it."""
    try:
        result = subprocess.run([python, "-I", "-c", program], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"cannot run the Python {python}: {exc}") from None
    if result.returncode != 0:
        raise UsageError(f"cannot run the Python {python}: {last_line(result.stderr or result.stdout)}")
    return result.stdout


def host_warning(recipe: Recipe, target: Target) -> str | None:
    """What to say when pip requirements are resolved for the running pip's Python, not the recipe's."""
    if target.from_ == FROM_RECIPE:
        return None
    return (f"{recipe.file}: python: recipe {recipe.name} does not name its base image's Python "
            f"(python: {{version: 'X.Y', platform: TAG}}); pip requirements are resolved for "
            f"{target.describe()}, the one running pip here")


def download_options(options: Sequence[str]) -> list[str]:
    return [option for option in options if option.split("=", 1)[0] in DOWNLOAD_OPTIONS]


def download(python: str, into: Path, args: Sequence[str]) -> subprocess.CompletedProcess:
    """`python -m pip download -d into ARGS`, quietly, never prompting."""
    command = [python, "-m", "pip", "download", "--no-input", "--disable-pip-version-check", "-d", str(into), *args]
    return subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)


def resolve_group(group: PipGroup, target: Target, python: str = sys.executable) -> dict:
    """The lock entry of a pip group: what pip downloads for it (with dependencies) for `target`, measured."""
    entry: dict = {"requirements": list(group.requirements), "options": list(group.options)}
    with tempfile.TemporaryDirectory(prefix="envbuild-lock-pip.") as scratch:
        result = download(python, Path(scratch), [*target.pip_options(), *download_options(group.options),
                                                  *group.requirements])
        if result.returncode != 0:
            return {**entry, "packages": None, "status": UNRESOLVED,
                    "reason": f"pip download for {target.describe()} failed: {last_line(result.stderr or result.stdout)}"}
        try:
            packages = sorted((_package(path) for path in Path(scratch).iterdir()), key=lambda p: p["name"])
        except ValueError as exc:
            return {**entry, "packages": None, "status": UNRESOLVED, "reason": str(exc)}
    if target.from_ == FROM_RECIPE:
        return {**entry, "packages": packages, "status": VERIFIED,
                "reason": f"downloaded by pip for {target.describe()} and measured"}
    return {**entry, "packages": packages, "status": UNVERIFIED,
            "reason": f"downloaded by pip for {target.describe()}, the Python running pip here: the recipe does "
                      "not name its base image's (python: {version, platform})"}


def _package(path: Path) -> dict:
    """A downloaded file as a locked package; ValueError when its name says no version (not a wheel or sdist)."""
    try:
        name, version, _, _ = parse_wheel_filename(path.name)
    except InvalidWheelFilename:
        try:
            name, version = parse_sdist_filename(path.name)
        except InvalidSdistFilename:
            raise ValueError(f"pip downloaded {path.name}, which is neither a wheel nor an sdist; "
                             "its version cannot be locked") from None
    return {"name": str(canonicalize_name(name)), "version": str(version), "file": path.name,
            "sha256": file_sha256(path)}
