"""`envbuild fetch`: every source of a recipe in one directory, for air-gapped clusters.

The layout is what the runtime script reads when ENVBUILD_SOURCE_DIR points at it:

    DIR/git/<offline_git_name(url)>.git   a bare mirror (git clone --mirror) of each git URL
    DIR/downloads/<file name of the URL>  each tarball and .deb, checked against its sha256
    DIR/pip/                              wheels and sdists of every `pip:` requirement
    DIR/MANIFEST.json                     all of the above, with commits and sha256s

Fetching again keeps what is there and verified (a mirror that holds its pinned
commit, a download whose sha256 matches) and fetches the rest.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from envbuild.lock import DownloadFailed, fetch_url, last_line, run_git
from envbuild.model import GitSource, TarballSource
from envbuild.plan import Plan

MANIFEST_FORMAT = "envbuild-sources-v1"


@dataclass
class FetchResult:
    manifest: dict
    missing: list[str] = field(default_factory=list)  # one line per source that could not be fetched


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _has_commit(mirror: Path, commit: str) -> bool:
    return run_git("cat-file", "-e", f"{commit}^{{commit}}", cwd=mirror).returncode == 0


def fetch_git(name: str, source: GitSource, into: Path, say: Callable[[str], None]) -> dict:
    """Mirrors the repository (or updates the mirror); DownloadFailed when it cannot."""
    relative = f"git/{source.offline_name}.git"
    mirror = into / relative
    entry = {"component": name, "url": source.url, "mirror": relative, "commit": source.commit or None,
             "branch": source.branch or None}
    if mirror.is_dir() and source.commit and _has_commit(mirror, source.commit):
        say(f"{name}: {relative} holds {source.commit[:12]}; kept")
        return entry
    if mirror.is_dir():
        result = run_git("remote", "update", "--prune", cwd=mirror)
        action = "updated"
    else:
        partial = mirror.with_name(mirror.name + ".part")
        shutil.rmtree(partial, ignore_errors=True)
        mirror.parent.mkdir(parents=True, exist_ok=True)
        result = run_git("clone", "-q", "--mirror", source.url, str(partial))
        if result.returncode == 0:
            partial.rename(mirror)
        else:
            shutil.rmtree(partial, ignore_errors=True)
        action = "mirrored"
    if result.returncode != 0:
        raise DownloadFailed(f"cannot mirror {source.url}: {last_line(result.stderr)}")
    if source.commit and not _has_commit(mirror, source.commit):
        raise DownloadFailed(f"{source.url} has no commit {source.commit} (mirrored into {relative})")
    if not source.commit:
        head = run_git("rev-parse", "--verify", "-q", f"refs/heads/{source.branch}^{{commit}}", cwd=mirror)
        entry["commit"] = head.stdout.strip() or None
    say(f"{name}: {action} {source.url} into {relative}")
    return entry


def fetch_download(name: str, source: TarballSource, into: Path, timeout: float, say: Callable[[str], None]) -> dict:
    """Downloads to downloads/<file name>, checked against the sha256 when known."""
    relative = f"downloads/{source.filename}"
    path = into / relative
    expected = source.sha256 if source.verified else None
    entry = {"component": name, "url": source.url, "file": relative, "verified": expected is not None}
    if path.is_file():
        actual = file_sha256(path)
        if expected is None or actual == expected:
            say(f"{name}: {relative} is there" + (", sha256 verified; kept" if expected else " (no sha256 to check); kept"))
            return {**entry, "sha256": actual, "size": path.stat().st_size}
        say(f"{name}: {relative} has sha256 {actual}, expected {expected}; downloading it again")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    try:
        actual, size = fetch_url(source.url, partial, timeout)
    except DownloadFailed:
        partial.unlink(missing_ok=True)
        raise
    if expected is not None and actual != expected:
        partial.unlink(missing_ok=True)
        raise DownloadFailed(f"sha256 mismatch for {source.url}: expected {expected}, got {actual}")
    partial.replace(path)
    say(f"{name}: downloaded {source.url}" + (" (sha256 verified)" if expected else f" (unverified: sha256 {actual})"))
    return {**entry, "sha256": actual, "size": size}


def fetch_pip(plan: Plan, into: Path, python: str, pip_options: tuple[str, ...],
              say: Callable[[str], None]) -> list[str]:
    """`pip download` of each component's pip requirement groups; the problems, one line each."""
    problems = []
    for step in plan.steps:
        for group in step.component.pip:
            command = [python, "-m", "pip", "download", "--no-input", "--disable-pip-version-check",
                       "-d", str(into / "pip"), *pip_options, *group.requirements]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                problems.append(f"{step.name}: pip download {' '.join(group.requirements)} failed: "
                                f"{last_line(result.stderr or result.stdout)}")
            else:
                say(f"{step.name}: pip download {' '.join(group.requirements)}")
    return problems


def fetch(plan: Plan, into: Path, timeout: float = 60.0, python: str = sys.executable,
          pip_options: tuple[str, ...] = (), say: Callable[[str], None] = lambda line: None) -> FetchResult:
    for directory in ("git", "downloads", "pip"):
        (into / directory).mkdir(parents=True, exist_ok=True)
    git_entries, downloads, missing = [], [], []
    owners: dict[str, str] = {}
    for step in plan.steps:
        source = step.component.source
        if source is None:
            continue
        if isinstance(source, TarballSource):
            other = owners.setdefault(source.filename, source.url)
            if other != source.url:
                missing.append(f"{step.name}: {source.url} and {other} would both be downloads/{source.filename}")
                continue
        try:
            if isinstance(source, GitSource):
                git_entries.append(fetch_git(step.name, source, into, say))
            else:
                downloads.append(fetch_download(step.name, source, into, timeout, say))
        except DownloadFailed as exc:
            missing.append(f"{step.name}: {exc}")
    missing += fetch_pip(plan, into, python, pip_options, say)
    pip_files = sorted(p for p in (into / "pip").iterdir() if p.is_file())
    manifest = {
        "format": MANIFEST_FORMAT,
        "recipe": plan.recipe.name,
        "recipe_hash": plan.hash,
        "lock_hash": plan.recipe.lock.hash if plan.recipe.lock else None,
        "git": git_entries,
        "downloads": downloads,
        "pip": [{"file": f"pip/{p.name}", "sha256": file_sha256(p), "size": p.stat().st_size} for p in pip_files],
        "missing": missing,
    }
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    partial = into / "MANIFEST.json.part"
    partial.write_text(text, encoding="utf-8")
    partial.replace(into / "MANIFEST.json")
    return FetchResult(manifest, missing)
