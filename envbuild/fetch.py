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

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from envbuild.net import DownloadFailed, file_sha256, last_line
from envbuild.plan import Plan

MANIFEST_FORMAT = "envbuild-sources-v1"


@dataclass
class FetchResult:
    """The MANIFEST.json written, and what could not be fetched."""
    manifest: dict
    missing: list[str] = field(default_factory=list)  # one line per source that could not be fetched


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
    missing += fetch_pip(plan, into, python, pip_options, say)
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
    return FetchResult(manifest, missing)
