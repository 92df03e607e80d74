"""`envbuild fetch --apt`: the .debs of a recipe's apt packages, resolved on its base image.

The machine running fetch is not the target (another distribution, other
packages installed), so apt runs where the answer is right: in a container of
the recipe's base image (envbuild/runtime/apt-download.sh), which downloads
into the fetch directory's apt/ what installing each component's packages
there would fetch, dependencies included, and indexes it as a flat repository.
The runtime script's _eb_apt installs from it (ENVBUILD_SOURCE_DIR) with no
other source.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from envbuild.errors import counted
from envbuild.net import file_sha256, last_line
from envbuild.plan import Plan
from envbuild.render.script import RUNTIME
from envbuild.run import docker_engine

SCRIPT = RUNTIME / "apt-download.sh"
MOUNT = "/envbuild-apt"


def fetch_apt(plan: Plan, into: Path, say: Callable[[str], None]) -> tuple[list[dict], list[str]]:
    """Downloads the .debs of every component's `apt:` packages into `into`/apt/ (a flat repository).

    Returns the manifest entries (`{file, sha256, size}` per .deb) and the
    problems, one line each. Raises EnvbuildError when the Docker engine cannot
    be reached or run the base image.
    """
    groups = [" ".join(step.component.apt) for step in plan.steps if step.component.apt]
    if not groups:
        return [], []
    base = plan.recipe.base_image
    directory = (into / "apt").resolve()
    directory.mkdir(parents=True, exist_ok=True)
    client = docker_engine.connect()
    if not docker_engine.base_image_present(client, base):
        docker_engine.pull_image(client, base)
    packages = counted(sum(len(g.split()) for g in groups), "package")
    say(f"apt: resolving {packages} of {counted(len(groups), 'component')} on {base}")
    status, out, err = docker_engine.run_in_image(
        client, base, ["bash", "-c", SCRIPT.read_text(encoding="utf-8"), "apt-download.sh",
                       f"{os.getuid()}:{os.getgid()}", *groups], binds={str(directory): MOUNT})
    if status != 0:
        return [], [f"apt: downloading the apt packages on {base} failed (exit {status}): {last_line(err or out)}"]
    debs = sorted(directory.glob("*.deb"))
    say(f"apt: {len(debs)} .debs in apt/ for {base}")
    return [{"file": f"apt/{deb.name}", "sha256": file_sha256(deb), "size": deb.stat().st_size} for deb in debs], []
