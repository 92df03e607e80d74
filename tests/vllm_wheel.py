"""The real vLLM 0.17.1 files, laid out as an installed distribution for tests.

The wheel (~433 MB) is downloaded once with pip into ~/.cache/envbuild/wheels
(or $ENVBUILD_CACHE/wheels) and its Python files and .dist-info are extracted
once next to it; each test then copies the files it needs into a throwaway
site-packages. The compiled extensions (~1.1 GB) are left in the wheel: patching
and compiling Python files does not need them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

VERSION = "0.17.1"
DIST_INFO = f"vllm-{VERSION}.dist-info"


def cache_dir() -> Path:
    return Path(os.environ.get("ENVBUILD_CACHE") or Path.home() / ".cache" / "envbuild")


def wheel() -> Path:
    """The cached wheel, downloaded first if missing."""
    wheels = cache_dir() / "wheels"
    found = sorted(wheels.glob(f"vllm-{VERSION}-*.whl"))
    if not found:
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
             f"vllm=={VERSION}", "-d", str(wheels)],
            check=True,
        )
        found = sorted(wheels.glob(f"vllm-{VERSION}-*.whl"))
    if not found:
        raise RuntimeError(f"pip download left no vllm-{VERSION} wheel in {wheels}")
    return found[0]


def extracted() -> Path:
    """A cached tree holding the wheel's vllm/ package (without extensions) and .dist-info."""
    tree = cache_dir() / f"vllm-{VERSION}-site"
    if (tree / DIST_INFO / "RECORD").is_file():
        return tree
    source = wheel()
    tree.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=tree.name + ".", dir=tree.parent))
    with zipfile.ZipFile(source) as archive:
        members = [
            name for name in archive.namelist()
            if not name.endswith(".so") and (name.startswith("vllm/") or name.startswith(DIST_INFO + "/"))
        ]
        archive.extractall(staging, members)
    try:
        os.rename(staging, tree)
    except OSError:  # another process finished first
        shutil.rmtree(staging)
    return tree


def site_packages(destination: Path, files: list[str] | None = None) -> Path:
    """Lay vLLM into `destination` as a site-packages dir; returns it.

    `files` are paths relative to site-packages (vllm/...); by default the
    whole extracted vllm/ package is copied. The .dist-info always is.
    """
    source = extracted()
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source / DIST_INFO, destination / DIST_INFO)
    if files is None:
        shutil.copytree(source / "vllm", destination / "vllm")
    else:
        for relative in files:
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / relative, target)
    return destination
