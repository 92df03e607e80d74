"""`envbuild fetch`: everything a recipe's install needs, in one directory, for air-gapped clusters.

The layout is what the runtime script reads when ENVBUILD_SOURCE_DIR points at it:

    DIR/git/<offline_git_name(url)>.git   a bare mirror (git clone --mirror) of each git URL: the git
                                          sources, their submodules (recursively, as each commit pins
                                          them) and the repositories of their meson wraps
    DIR/git/urls                          `<mirror name> <url>` per mirror, for the runtime script
    DIR/downloads/<file name of the URL>  each tarball and .deb, checked against its sha256
    DIR/meson/packagecache/<file>         the archives the meson wraps of git sources name, checked
    DIR/pip/                              wheels and sdists of every `pip:` requirement, for the
                                          recipe's Python (the locked packages when locked), and the
                                          build requirements of every package pip builds from source
    DIR/apt/                              with --apt: the .debs of the apt packages, for the base image
    DIR/MANIFEST.json                     all of the above, with commits and sha256s

Fetching again keeps what is there and verified (a mirror that holds its pinned
commit, a download whose sha256 matches) and fetches the rest.
"""

from __future__ import annotations

import json
import re
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from packaging.utils import InvalidSdistFilename, parse_sdist_filename

from envbuild import buildreqs, mirror, wheels, wraps
from envbuild.errors import EnvbuildError
from envbuild.net import DownloadFailed, download_verified, file_sha256, last_line
from envbuild.plan import Plan
from envbuild.spec.sources import GitSource, offline_git_name

MANIFEST_FORMAT = "envbuild-sources-v2"
COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass
class FetchResult:
    """The MANIFEST.json written, and what could not be fetched."""
    manifest: dict
    missing: list[str] = field(default_factory=list)  # one line per source that could not be fetched
    warnings: list[str] = field(default_factory=list)


def fetch_pip(plan: Plan, into: Path, python: str, aim: list[str], pip_options: tuple[str, ...],
              say: Callable[[str], None]) -> list[str]:
    """`pip download` of each component's pip requirement groups, aimed with `aim` (the target's
    options): a locked group's packages exactly (hash-checked), else the requirements and what they need.

    Returns the problems, one line each.
    """
    problems = []
    with tempfile.TemporaryDirectory(prefix="envbuild-fetch.") as scratch:
        for index, (name, group) in enumerate((s.name, g) for s in plan.steps for g in s.component.pip):
            args = [*aim, *wheels.download_options(group.options), *pip_options]
            if group.locked:
                requirements = Path(scratch) / f"{index}.txt"
                requirements.write_text("".join(line + "\n" for line in group.locked), encoding="utf-8")
                args += ["--no-deps", "--require-hashes", "-r", str(requirements)]
            else:
                args += group.requirements
            what = " ".join(group.requirements) + (" (locked)" if group.locked else "")
            result = wheels.download(python, into / "pip", args)
            if result.returncode != 0:
                problems.append(f"{name}: pip download {what} failed: {last_line(result.stderr or result.stdout)}")
            else:
                say(f"{name}: pip download {what}")
    return problems


def fetch(plan: Plan, into: Path, timeout: float = 60.0, python: str = sys.executable,
          pip_options: tuple[str, ...] = (), say: Callable[[str], None] = lambda line: None,
          apt: bool = False) -> FetchResult:
    """Fills `into` (see the module's docstring) and writes its MANIFEST.json.

    `apt` also downloads the apt packages' .debs for the recipe's base image
    (needs the Docker engine). What cannot be fetched is reported, not raised.
    """
    return _Fetch(plan, into, timeout, python, pip_options, say).run(apt)


class _Fetch:
    """One fetch: the directory, what is collected so far, and the problems."""

    def __init__(self, plan: Plan, into: Path, timeout: float, python: str, pip_options: tuple[str, ...],
                 say: Callable[[str], None]):
        self.plan, self.into, self.timeout, self.python, self.pip_options, self.say = \
            plan, into, timeout, python, pip_options, say
        self.sections: dict[str, list[dict]] = {"git": [], "downloads": [], "meson": [], "build_requirements": [],
                                                "apt": []}
        self.missing: list[str] = []
        self.warnings: list[str] = []
        self.mirrors: dict[str, str] = {}  # URL -> mirror name, for git/urls
        self.pinned: set[tuple[str, str]] = set()  # (URL, commit) whose submodules were walked

    def run(self, apt: bool) -> FetchResult:
        for directory in ("git", "downloads", "pip"):
            (self.into / directory).mkdir(parents=True, exist_ok=True)
        self._sources()
        for entry in list(self.sections["git"]):
            source = self.plan.step(entry["component"]).component.source
            if entry["commit"]:
                self._submodules(entry["component"], entry["url"], entry["commit"], source.submodules)
                self._wraps(entry["component"], entry["url"], entry["commit"])
        aim = self._aim()
        self.missing += fetch_pip(self.plan, self.into, self.python, aim, self.pip_options, self.say)
        self._build_requirements(aim)
        if apt:
            self._apt()
        mirror.write_urls(self.into, self.mirrors)
        return self._manifest(apt)

    def _sources(self) -> None:
        owners: dict[str, str] = {}
        for step in self.plan.steps:
            source = step.component.source
            if source is None:
                continue
            other = owners.setdefault(source.offline_path, source.url)
            if other != source.url:
                self.missing.append(f"{step.name}: {source.url} and {other} would both be {source.offline_path}")
                continue
            try:
                section, entry = source.fetch(step.name, self.into, self.timeout, self.say)
            except DownloadFailed as exc:
                self.missing.append(f"{step.name}: {exc}")
                continue
            self.sections[section].append({**entry, "via": None} if section == "git" else entry)
            if section == "git":
                self.mirrors[source.url] = offline_git_name(source.url)

    def _mirror(self, component: str, url: str, revision: str, via: str) -> str:
        """Mirrors `url` at `revision` (a commit, or a branch or tag to resolve) for `component`
        and returns the commit; DownloadFailed when it cannot (the caller reports it)."""
        relative = f"git/{offline_git_name(url)}.git"
        commit, branch = (revision, "") if COMMIT.match(revision) else ("", revision)
        commit, action = mirror.ensure(url, self.into / relative, commit, branch)
        if not commit:
            raise DownloadFailed(f"{url} has no branch or tag {revision}")
        self.mirrors[url] = offline_git_name(url)
        self.sections["git"].append({"component": component, "url": url, "mirror": relative, "commit": commit,
                                     "branch": branch or None, "via": via})
        self.say(f"{component}: {via}: {action} {url} at {commit[:12]}")
        return commit

    def _submodules(self, component: str, url: str, commit: str, required: bool) -> None:
        """Mirrors the submodules `commit` of `url` pins, recursively. A source that does not ask for
        its submodules (submodules: false) may still get them from its build: failures only warn."""
        report = self.missing if required else self.warnings
        if (url, commit) in self.pinned:
            return
        self.pinned.add((url, commit))
        found, problems = mirror.submodules(self.into / f"git/{offline_git_name(url)}.git", commit, url)
        report += [f"{component}: {problem}" for problem in problems]
        for submodule in found:
            via = f"submodule {submodule.path} of {url}"
            try:
                self._mirror(component, submodule.url, submodule.commit, via)
            except DownloadFailed as exc:
                report.append(f"{component}: {via}: {exc}")
                continue
            self._submodules(component, submodule.url, submodule.commit, required)

    def _wraps(self, component: str, url: str, commit: str) -> None:
        """The archives and repositories the meson wraps under subprojects/ at `commit` name."""
        source_mirror = self.into / f"git/{offline_git_name(url)}.git"
        for name in mirror.list_dir(source_mirror, commit, "subprojects"):
            if not name.endswith(".wrap"):
                continue
            where = f"subprojects/{name}"
            wrap = wraps.parse(mirror.read_file(source_mirror, commit, where) or "", f"{component}: {where}")
            self.missing += wrap.problems
            for archive in wrap.archives:
                self._wrap_archive(component, where, archive)
            for repository in wrap.repositories:
                via = f"wrap {where} of {url}"
                try:
                    found = self._mirror(component, repository.url, repository.revision, via)
                except DownloadFailed as exc:
                    self.missing.append(f"{component}: {via}: {exc}")
                    continue
                if repository.recursive:
                    self._submodules(component, repository.url, found, True)

    def _wrap_archive(self, component: str, where: str, archive: wraps.Archive) -> None:
        relative = f"{wraps.PACKAGECACHE}/{archive.filename}"
        path = self.into / relative
        entry = {"component": component, "wrap": where, "file": relative, "url": archive.urls[0],
                 "sha256": archive.sha256}
        if path.is_file() and file_sha256(path) == archive.sha256:
            self.sections["meson"].append({**entry, "size": path.stat().st_size})
            self.say(f"{component}: {relative} is there, sha256 verified; kept")
            return
        failures = []
        for url in archive.urls:
            try:
                _, size = download_verified(url, path, archive.sha256, self.timeout)
            except DownloadFailed as exc:
                failures.append(str(exc) if url in str(exc) else f"{url}: {exc}")
                continue
            self.sections["meson"].append({**entry, "url": url, "size": size})
            self.say(f"{component}: {where}: downloaded {url} (sha256 verified)")
            return
        self.missing.append(f"{component}: {where}: " + "; ".join(failures))

    def _aim(self) -> list[str]:
        """The pip options that aim downloads at the recipe's Python (none when --pip-option does)."""
        if any(option.split("=", 1)[0] in wheels.TARGET_OPTIONS for option in self.pip_options):
            return []
        needs_pip = any(s.component.pip for s in self.plan.steps) or any(
            isinstance(s.component.source, GitSource) and "_eb_pip" in s.component.build for s in self.plan.steps)
        if not needs_pip:
            return []
        target = wheels.target_of(self.plan.recipe, self.python)
        self.warnings += filter(None, [wheels.host_warning(self.plan.recipe, target)])
        return target.pip_options()

    def _build_requirements(self, aim: list[str]) -> None:
        """The build requirements of every tree pip builds: git sources whose step runs _eb_pip
        (their root), then each sdist in pip/, again while downloading them brings new sdists."""
        pip_dir = self.into / "pip"
        trees: list[tuple[str, Callable[[Path], Path], str | Path | None]] = []
        for entry in self.sections["git"]:
            component = self.plan.step(entry["component"]).component
            if entry["via"] is not None or "_eb_pip" not in component.build or not entry["commit"]:
                continue
            source_mirror, commit = self.into / entry["mirror"], entry["commit"]
            pyproject = mirror.read_file(source_mirror, commit, "pyproject.toml")
            if pyproject is None and mirror.read_file(source_mirror, commit, "setup.py") is None:
                continue
            trees.append((entry["component"],
                          lambda scratch, m=source_mirror, c=commit: _checked_out(m, c, scratch), pyproject))
        seen: set[str] = set()
        while True:
            for sdist in sorted(p for p in pip_dir.iterdir() if _is_sdist(p) and p.name not in seen):
                seen.add(sdist.name)
                trees.append((f"pip/{sdist.name}", lambda scratch, s=sdist: _unpacked(s, scratch), sdist))
            if not trees:
                return
            for what, tree, pyproject in trees:
                # One download per tree: two trees may pin their backends apart.
                requirements = self._tree_requirements(what, tree, pyproject)
                if not requirements:
                    continue
                result = wheels.download(self.python, pip_dir, [*aim, *self.pip_options, *requirements])
                if result.returncode != 0:
                    self.missing.append(f"{what}: pip download of its build requirements {' '.join(requirements)} "
                                        f"failed: {last_line(result.stderr or result.stdout)}")
            trees = []

    def _tree_requirements(self, what: str, tree: Callable[[Path], Path], pyproject: str | Path | None) -> list[str]:
        """The static and dynamic build requirements of one tree (`pyproject`: the text of its
        pyproject.toml, or the sdist to read it from); recorded in the manifest."""
        try:
            if isinstance(pyproject, Path):
                pyproject = _sdist_member(pyproject, "pyproject.toml")
            system = buildreqs.build_system(pyproject)
        except (ValueError, OSError, tarfile.TarError, zipfile.BadZipFile) as exc:
            self.missing.append(f"{what}: {exc}")
            return []
        entry = {"of": what, "backend": system.backend, "requires": list(system.requires), "dynamic": None,
                 "note": None}
        with tempfile.TemporaryDirectory(prefix="envbuild-fetch-tree.") as scratch:
            try:
                entry["dynamic"] = buildreqs.dynamic_requires(
                    tree(Path(scratch)), system, self.python, wheels.download_options(self.pip_options))
            except DownloadFailed as exc:
                entry["note"] = f"dynamic build requirements unknown: {exc}"
                self.warnings.append(f"{what}: {entry['note']}; only the static ones ({', '.join(system.requires)}) "
                                     "were fetched")
        self.sections["build_requirements"].append(entry)
        requirements = list(dict.fromkeys([*system.requires, *(entry["dynamic"] or [])]))
        self.say(f"{what}: build requirements {' '.join(requirements) or '(none)'} ({system.backend})")
        return requirements

    def _apt(self) -> None:
        from envbuild.run import apt

        try:
            entries, problems = apt.fetch_apt(self.plan, self.into, self.say)
        except EnvbuildError as exc:
            entries, problems = [], [f"apt: {exc}"]
        self.sections["apt"] = entries
        self.missing += problems

    def _manifest(self, apt: bool) -> FetchResult:
        pip_files = sorted(p for p in (self.into / "pip").iterdir() if p.is_file())
        manifest = {
            "format": MANIFEST_FORMAT,
            "recipe": self.plan.recipe.name,
            "recipe_hash": self.plan.hash,
            "lock_hash": self.plan.lock.hash if self.plan.lock else None,
            **self.sections,
            "apt_base_image": self.plan.recipe.base_image if apt else None,
            "pip": [{"file": f"pip/{p.name}", "sha256": file_sha256(p), "size": p.stat().st_size} for p in pip_files],
            "missing": self.missing,
        }
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        partial = self.into / "MANIFEST.json.part"
        partial.write_text(text, encoding="utf-8")
        partial.replace(self.into / "MANIFEST.json")
        return FetchResult(manifest, self.missing, self.warnings)


def _checked_out(source_mirror: Path, commit: str, scratch: Path) -> Path:
    tree = scratch / "tree"
    mirror.checkout(source_mirror, commit, tree)
    return tree


def _is_sdist(path: Path) -> bool:
    try:
        parse_sdist_filename(path.name)
    except InvalidSdistFilename:
        return False
    return path.is_file()


def _sdist_member(sdist: Path, name: str) -> str | None:
    """The text of `name` at the top of the sdist's single top directory; None if there is none."""
    if sdist.name.endswith(".zip"):
        with zipfile.ZipFile(sdist) as archive:
            members = [m for m in archive.namelist() if PurePosixPath(m).parts[1:] == (name,)]
            return archive.read(members[0]).decode("utf-8", "replace") if members else None
    with tarfile.open(sdist) as archive:
        for member in archive:
            if member.isfile() and PurePosixPath(member.name).parts[1:] == (name,):
                handle = archive.extractfile(member)
                return handle.read().decode("utf-8", "replace") if handle else None
    return None


def _unpacked(sdist: Path, scratch: Path) -> Path:
    """The sdist's tree, unpacked under `scratch` (members that would land outside are refused)."""
    target = scratch / "sdist"
    if sdist.name.endswith(".zip"):
        with zipfile.ZipFile(sdist) as archive:
            names = archive.namelist()
            _check_members(sdist, names)
            archive.extractall(target)
    else:
        with tarfile.open(sdist) as archive:
            members = [m for m in archive.getmembers() if m.isfile() or m.isdir()]
            _check_members(sdist, [m.name for m in members])
            # The data filter where this Python has it; the members are checked either way.
            archive.extractall(target, members=members, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    tops = [p for p in target.iterdir() if p.is_dir()]
    if len(tops) != 1:
        raise DownloadFailed(f"{sdist.name} does not hold one top directory")
    return tops[0]


def _check_members(sdist: Path, names: list[str]) -> None:
    for name in names:
        if name.startswith("/") or ".." in PurePosixPath(name).parts:
            raise DownloadFailed(f"{sdist.name} holds {name}, outside its directory")

