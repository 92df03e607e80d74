"""pip requirements for the target's Python: resolving them for a lock, downloading them for fetch.

A pip group is locked against the base image itself when the Docker engine has
it (or can pull it): pip runs in a throwaway container of the image
(`python3 -m pip install --dry-run --report`, through the runtime script's own
pip guard, so under the same constraints as the install step: see
envbuild/runtime/pipguard.py `report`), against what the image's Python has
installed. Its report names only what would be installed; those files are then
downloaded and measured here. What the group takes from the image instead
(requirements the image already satisfies) is recorded with the versions it
has, so an install on another image can say so.

Without the image, the group is resolved by `pip download` for the recipe's
Python (its `python: {version, platform}` block: `--python-version`,
`--platform`, `--implementation cp`, `--only-binary=:all:`, since pip cannot
build an sdist for another platform) as if nothing were installed, and is
unverified: the image may have other versions of the same packages. A recipe
that names no Python gets the running pip's own, which `envbuild lock` records
as unverified and both commands warn about.

A locked pip group (the lock's `components.<name>.pip[i]`) is
`{requirements, options, packages: [{name, version, file, sha256}],
base: [{name, version}], status, reason}`: `packages` is what pip installs
for the requirements (with their dependencies), measured; `base` what they
need that the base image has, at its versions (only when locked against the
image; envbuild.spec.lock.pip_lines gives pip's `--require-hashes` form,
base_pins the `name==version` pins the install expects).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import unquote, urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidSdistFilename, InvalidWheelFilename, canonicalize_name, parse_sdist_filename, \
    parse_wheel_filename

from envbuild.errors import UsageError
from envbuild.net import DownloadFailed, fetch_url, file_sha256, last_line
from envbuild.spec.model import PipGroup, Recipe
from envbuild.spec.schema import PIP_INDEX_OPTIONS, pip_option_items, pip_option_name
from envbuild.spec.sources import UNRESOLVED, UNVERIFIED, VERIFIED

# Options of a pip group that say where packages come from, which `pip download` takes too;
# the others (--ignore-installed, --force-reinstall, ...) are about installing.
DOWNLOAD_OPTIONS = (*PIP_INDEX_OPTIONS, "--no-index", "--pre", "--only-binary", "--no-binary", "--prefer-binary")
# pip download options that choose the target themselves (given with --pip-option, they win).
TARGET_OPTIONS = ("--python-version", "--platform", "--implementation", "--abi")
FROM_RECIPE, FROM_HOST = "recipe", "host"
# The Python a container of the base image is asked about: the runtime script's default (ENVBUILD_PYTHON).
IMAGE_PYTHON = "python3"
# The runtime script's pip guard; its `report` resolves a group in the image under the step's constraints.
PIP_GUARD = Path(__file__).resolve().parent / "runtime" / "pipguard.py"


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
    """The DOWNLOAD_OPTIONS of a pip group's options, each with its value ([--find-links, URL] too)."""
    return [word for item in pip_option_items(options) if pip_option_name(item) in DOWNLOAD_OPTIONS for word in item]


def download(python: str, into: Path, args: Sequence[str]) -> subprocess.CompletedProcess:
    """`python -m pip download -d into ARGS`, quietly, never prompting."""
    command = [python, "-m", "pip", "download", "--no-input", "--disable-pip-version-check", "-d", str(into), *args]
    return subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)


@dataclass(frozen=True)
class BaseImage:
    """The recipe's base image as `envbuild lock` has it: `run(argv)` runs a command in a throwaway
    container of the image and returns (exit status, stdout, stderr); None when the image cannot
    be had, and `why` says why not (one line)."""

    ref: str
    run: Callable[[list[str]], tuple[int, str, str]] | None
    why: str = ""


def guard_command(*args: str) -> list[str]:
    """The argv that runs the runtime script's pip guard with `args` under the base image's Python."""
    return [IMAGE_PYTHON, "-c", PIP_GUARD.read_text(encoding="utf-8"), *args]


def resolve_group(group: PipGroup, target: Target, image: BaseImage, protected: Sequence[str] = (),
                  python: str = sys.executable, timeout: float = 60.0) -> dict:
    """The lock entry of a pip group: against the base image's installed packages when `image`
    can be run (pip constrained by the `protected` distributions as the install step will be;
    files downloaded with `timeout` seconds per connection or read), else what `python`'s pip
    downloads for `target` as if nothing were installed (unverified)."""
    entry: dict = {"requirements": list(group.requirements), "options": list(group.options)}
    if image.run is not None:
        return {**entry, **_in_image(group, target, image, protected, timeout)}
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
    why = f"resolved without the base image's installed packages: {image.why}; downloaded by pip for " \
          f"{target.describe()}"
    if target.from_ != FROM_RECIPE:
        why += ", the Python running pip here: the recipe does not name its base image's (python: {version, platform})"
    return {**entry, "packages": packages, "status": UNVERIFIED, "reason": why}


def _in_image(group: PipGroup, target: Target, image: BaseImage, protected: Sequence[str], timeout: float) -> dict:
    """`packages`, `base`, `status` and `reason` of a group resolved by pip in a container of the image."""
    where = f"a container of {image.ref}"
    status, stdout, stderr = image.run(guard_command("report", *protected, "--", *group.options, *group.requirements))
    if status != 0:
        return {"packages": None, "status": UNRESOLVED,
                "reason": f"pip install --dry-run in {where} failed: {pip_error(stderr or stdout)}"}
    try:
        report = json.loads(stdout)
        items, environment = list(report["install"]), dict(report["environment"])
    except (ValueError, KeyError, TypeError):
        return {"packages": None, "status": UNRESOLVED,
                "reason": f"the pip guard in {where} printed no installation report: {last_line(stdout or stderr)}"}
    try:
        packages = sorted((_measured(item, timeout) for item in items), key=lambda p: p["name"])
    except (ValueError, DownloadFailed) as exc:
        return {"packages": None, "status": UNRESOLVED, "reason": f"pip in {where} would install {exc}"}
    base = _relied_on(group.requirements, report)
    found = {"packages": packages, "base": base}
    version = environment.get("python_version")
    if target.from_ == FROM_RECIPE and version != target.version:
        return {**found, "status": UNVERIFIED,
                "reason": f"resolved in {where}, whose {IMAGE_PYTHON} is Python {version}, not the recipe's "
                          f"{target.version} (python.version)"}
    return {**found, "status": VERIFIED,
            "reason": f"resolved by pip in {where} against its installed packages; files measured"}


def pip_error(text: str) -> str:
    """pip's failure in one line: its first ERROR line, with the conflict it names when it says one."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    if not errors:
        return last_line(text)
    if "The conflict is caused by:" not in lines:
        return errors[0]
    start = lines.index("The conflict is caused by:") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith(("To fix", "ERROR:"))), len(lines))
    return f"{errors[0]} The conflict is caused by: {'; '.join(lines[start:end])}"


def _measured(item: dict, timeout: float) -> dict:
    """An item of pip's installation report as a locked package, its file downloaded and measured.

    ValueError when it is no file of an index (a directory, a VCS checkout, a file inside the
    image) or its sha256 is not the index's, DownloadFailed when it cannot be downloaded; both
    say `name version from URL, ...` (what pip would install, and why it cannot be locked)."""
    name, version = str(canonicalize_name(item["metadata"]["name"])), item["metadata"]["version"]
    info = item.get("download_info") or {}
    url = info.get("url") or ""
    if "archive_info" not in info or urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"{name} {version} from {url or 'where pip does not say'}, which is no file of an index "
                         "over http(s) and cannot be locked")
    archive = info["archive_info"]
    said = (archive.get("hashes") or {}).get("sha256")
    if said is None and (archive.get("hash") or "").startswith("sha256="):
        said = archive["hash"].split("=", 1)[1]
    try:
        digest, _ = fetch_url(url, None, timeout)
    except DownloadFailed as exc:
        raise DownloadFailed(f"{name} {version} from {url}, which envbuild cannot download: {exc}") from None
    if said is not None and said != digest:
        raise ValueError(f"{name} {version} from {url}, whose sha256 is {digest} here and {said} on the index")
    return {"name": name, "version": version, "file": unquote(urlsplit(url).path.rsplit("/", 1)[-1]),
            "sha256": digest}


def _relied_on(requirements: Sequence[str], report: dict) -> list[dict]:
    """What the group's requirements and the packages to install require directly (markers and
    extras evaluated for the image's Python) that the image has, as `{name, version}` sorted by name."""
    environment, installed = report["environment"], report["installed"]
    to_install = {canonicalize_name(item["metadata"]["name"]): item for item in report["install"]}
    extras: dict[str, set[str]] = {}
    pending = [requirement for requirement in map(_requirement, requirements) if requirement is not None
               and (requirement.marker is None or requirement.marker.evaluate(dict(environment, extra="")))]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        known = extras.get(name)
        if known is not None and requirement.extras <= known:
            continue
        wanted = extras[name] = (known or set()) | requirement.extras
        item = to_install.get(name)
        for line in (item["metadata"].get("requires_dist") or ()) if item else ():
            dependency = _requirement(line)
            if dependency is not None and (dependency.marker is None or any(
                    dependency.marker.evaluate(dict(environment, extra=extra)) for extra in {"", *wanted})):
                pending.append(dependency)
    return [{"name": name, "version": installed[name]} for name in sorted(extras)
            if name not in to_install and name in installed]


def _requirement(text: str) -> Requirement | None:
    """A requirement string as packaging reads it; None for what is no named requirement (a path, a URL)."""
    try:
        return Requirement(text)
    except InvalidRequirement:
        return None


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
