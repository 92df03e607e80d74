"""`envbuild fetch`: every source of a recipe in one directory, for air-gapped clusters.

The layout is what the runtime script reads when ENVBUILD_SOURCE_DIR points at it:

    DIR/git/<offline_git_name(url)>.git   a bare mirror (git clone --mirror) of each git URL
    DIR/downloads/<file name of the URL>  each tarball and .deb, checked against its sha256
    DIR/pip/                              wheels and sdists of every `pip:` requirement, for the
                                          recipe's Python (the locked packages when locked)
    DIR/MANIFEST.json                     all of the above, with commits and sha256s

Fetching again keeps what is there and verified (a mirror that holds its pinned
commit, a download whose sha256 matches) and fetches the rest.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from envbuild import wheels
from envbuild.net import DownloadFailed, file_sha256, last_line
from envbuild.plan import Plan

MANIFEST_FORMAT = "envbuild-sources-v1"


@dataclass
class FetchResult:
    """The MANIFEST.json written, and what could not be fetched."""
    manifest: dict
    missing: list[str] = field(default_factory=list)  # one line per source that could not be fetched
    warnings: list[str] = field(default_factory=list)


def fetch_pip(plan: Plan, into: Path, python: str, pip_options: tuple[str, ...],
              say: Callable[[str], None]) -> tuple[list[str], list[str]]:
    """`pip download` of each component's pip requirement groups, for the recipe's Python: a
    locked group's packages exactly (hash-checked), else the requirements and what they need.

    Returns the problems and the warnings, one line each. `pip_options` that choose a
    target themselves (--python-version, --platform, ...) replace the recipe's.
    """
    groups = [(step.name, group) for step in plan.steps for group in step.component.pip]
    if not groups:
        return [], []
    warnings = []
    if any(option.split("=", 1)[0] in wheels.TARGET_OPTIONS for option in pip_options):
        aim: list[str] = []
    else:
        target = wheels.target_of(plan.recipe, python)
        aim = target.pip_options()
        warnings += filter(None, [wheels.host_warning(plan.recipe, target)])
    problems = []
    with tempfile.TemporaryDirectory(prefix="envbuild-fetch.") as scratch:
        for index, (name, group) in enumerate(groups):
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
    return problems, warnings


def fetch(plan: Plan, into: Path, timeout: float = 60.0, python: str = sys.executable,
          pip_options: tuple[str, ...] = (), say: Callable[[str], None] = lambda line: None) -> FetchResult:
    for directory in ("git", "downloads", "pip"):
        (into / directory).mkdir(parents=True, exist_ok=True)
    sections: dict[str, list[dict]] = {"git": [], "downloads": []}
    missing: list[str] = []
    owners: dict[str, str] = {}
    for step in plan.steps:
        source = step.component.source
        if source is None:
            continue
        other = owners.setdefault(source.offline_path, source.url)
        if other != source.url:
            missing.append(f"{step.name}: {source.url} and {other} would both be {source.offline_path}")
            continue
        try:
            section, entry = source.fetch(step.name, into, timeout, say)
            sections[section].append(entry)
        except DownloadFailed as exc:
            missing.append(f"{step.name}: {exc}")
    pip_missing, warnings = fetch_pip(plan, into, python, pip_options, say)
    missing += pip_missing
    pip_files = sorted(p for p in (into / "pip").iterdir() if p.is_file())
    manifest = {
        "format": MANIFEST_FORMAT,
        "recipe": plan.recipe.name,
        "recipe_hash": plan.hash,
        "lock_hash": plan.lock.hash if plan.lock else None,
        **sections,
        "pip": [{"file": f"pip/{p.name}", "sha256": file_sha256(p), "size": p.stat().st_size} for p in pip_files],
        "missing": missing,
    }
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    partial = into / "MANIFEST.json.part"
    partial.write_text(text, encoding="utf-8")
    partial.replace(into / "MANIFEST.json")
    return FetchResult(manifest, missing, warnings)
