"""What every install step runs with, whatever its recipe says (issue 11): pip cannot
replace the base image's protected Python distributions; the job budget and the GPU
target reach the build tools; a check cannot fail by SIGPIPE; and what a step needs
of the base image is checked before anything is installed.

Python distributions are small wheels built here (a fake `torch 2.9.0+rocm` stands
for the base image's), served offline through ENVBUILD_SOURCE_DIR/pip.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml

from envbuild.spec import lock as lockfile

WHEELS = {  # (name, version): what it requires
    ("torch", "2.9.0+rocm"): [], ("torch", "2.8.0"): [],
    ("needs-old-torch", "1.0"): ["torch==2.8.0"], ("needs-any-torch", "1.0"): ["torch>=2.0"],
    ("servelib", "1.0"): ["helper==1.0"], ("helper", "1.0"): [], ("helper", "2.0"): [],
    ("wants-new-helper", "1.0"): ["helper>=2"],
}
# What the "base image's" Python has: torch and servelib are protected, helper as servelib's requirement.
BASE = ["torch==2.9.0+rocm", "servelib==1.0", "helper==1.0"]
PYPROJECT = """[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"
[project]
name = "{name}"
version = "{version}"
dependencies = {requires}
"""

RECIPE = """name: steps
description: Components that show what steps run with.
base_image: debian:bookworm
gpu_target: gfx950
python:
  version: '3.11'
  platform: manylinux_2_36_x86_64
  protected: [torch, servelib]
components: [{components}]
"""
COMPONENTS = {
    "old-torch": "pip: [needs-old-torch]",
    "any-torch": "pip: [needs-any-torch]",
    "torch-downgrade": "pip: ['torch==2.8.0']",
    "new-helper": "pip: [wants-new-helper]",
    "forced": "pip: [{requirements: [needs-any-torch], options: [--force-reinstall]}]",
    "forced-alone": "pip: [{requirements: [needs-any-torch], options: [--force-reinstall, --no-deps]}]",
    "environment": """build: |
  printf '%s\\n' "$EB_JOBS" "$MAKEFLAGS" "$CMAKE_BUILD_PARALLEL_LEVEL" "$MAX_JOBS" "$PYTHON_CPU_COUNT" \\
    "$EB_GPU_TARGET" "$PYTORCH_ROCM_ARCH" >"$EB_TEST_OUT"
""",
    # `yes` always dies of SIGPIPE here: grep stops reading at its first line.
    "sigpipe-check": "build: ':'\ncheck: yes | grep -qx y",
    "pipefail-step": "build: false | true",
    "plain": "build: echo plain >>\"$EB_TEST_OUT\"",
    "needy": """needs:
  commands: [no-such-tool, bash]
  files: [/nonexistent/file, '${EB_TEST_UNSET:-/nonexistent/default}/lib.so', /bin/sh]
  python_headers: true
build: echo needy >>"$EB_TEST_OUT"
""",
    "satisfied": """needs:
  commands: [bash]
  files: ['${EB_TEST_UNSET:-/bin}/sh']
  python_headers: true
build: echo satisfied >>"$EB_TEST_OUT"
""",
}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    """ENVBUILD_SOURCE_DIR with the wheels in pip/."""
    root = tmp_path_factory.mktemp("sources")
    for (name, version), requires in WHEELS.items():
        source = root / "src" / f"{name}-{version}"
        (source / name.replace("-", "_")).mkdir(parents=True)
        (source / name.replace("-", "_") / "__init__.py").write_text(f"VERSION = {version!r}\n")
        (source / "pyproject.toml").write_text(PYPROJECT.format(name=name, version=version, requires=requires))
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps",
                        "-w", str(root / "pip"), str(source)], check=True, env=pip_env())
    return root


def pip_env() -> dict[str, str]:
    """No pip configuration of this machine (its constraints, indexes) and no index."""
    return {"PATH": os.environ["PATH"], "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


@pytest.fixture
def steps(tmp_path, wheels):
    recipes = tmp_path / "recipes"
    (recipes / "components").mkdir(parents=True)
    for name, body in COMPONENTS.items():
        (recipes / "components" / f"{name}.yaml").write_text(f"name: {name}\ndescription: {name}.\n{body}\n")
    (recipes / "steps.yaml").write_text(RECIPE.format(components=", ".join(COMPONENTS)))
    script = tmp_path / "setup_deps.sh"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    render_env = dict(os.environ, DOCKER_HOST="unix:///nonexistent/docker.sock", **pip_env(),
                      PIP_FIND_LINKS=str(wheels / "pip"))

    def render(*, locked: bool = False) -> Path:
        """The script, from the recipe with its pip groups locked (`envbuild lock`) or not."""
        if locked:
            subprocess.run([sys.executable, "-m", "envbuild", "lock", "--recipes-dir", str(recipes), "--recipe",
                            "steps"], check=True, capture_output=True, env=render_env)
        subprocess.run([sys.executable, "-m", "envbuild", "runtime-script", "--recipes-dir", str(recipes),
                        "--recipe", "steps", "-o", str(script)], check=True, capture_output=True, env=render_env)
        return script

    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--find-links", str(wheels / "pip"), *BASE],
                   check=True, env=pip_env())
    render()
    (tmp_path / "tmp").mkdir()
    env = dict(pip_env(), HOME=str(tmp_path), TMPDIR=str(tmp_path / "tmp"), ENVBUILD_STATE_DIR=str(tmp_path / "state"),
               ENVBUILD_PYTHON=str(python), ENVBUILD_SOURCE_DIR=str(wheels), EB_TEST_OUT=str(tmp_path / "out"))

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(script), *args], env=dict(env, **extra), capture_output=True, text=True)

    def installed() -> dict[str, str]:
        code = ("import importlib.metadata as m, json; "
                "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
        listing = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
        found = json.loads(listing.stdout)
        return {name: found.get(name) for name in ("torch", "helper", "servelib", "needs-any-torch")}

    return SimpleNamespace(run=run, installed=installed, render=render, root=tmp_path, env=env, script=script,
                           out=tmp_path / "out", stamps=tmp_path / "state" / "stamps")


BASE_VERSIONS = {"torch": "2.9.0+rocm", "helper": "1.0", "servelib": "1.0", "needs-any-torch": None}


def failure(result: subprocess.CompletedProcess, name: str) -> str:
    """The reason in the one-line failure headline of component `name`."""
    match = re.fullmatch(rf"envbuild: error: {name} failed \(exit 1\) after \d+\.\d{{3}} s: (.*); log: \S+\.log",
                         result.stderr.splitlines()[0])
    assert match, result.stderr
    return match.group(1)


@pytest.mark.parametrize("name, reason", [
    ("old-torch", "torch 2.9.0+rocm would become 2.8.0 (required by needs-old-torch 1.0; protected)"),
    ("torch-downgrade", "torch 2.9.0+rocm would become 2.8.0 (requested; protected)"),
    ("new-helper", "helper 1.0 would become 2.0 (required by wants-new-helper 1.0; protected as needed by servelib)"),
])
def test_pip_may_not_replace_a_protected_distribution(steps, name, reason):
    result = steps.run("--only", name)
    assert result.returncode == 1
    assert failure(result, name) == f"pip may not replace the base image's Python distributions: {reason}"
    assert steps.installed() == BASE_VERSIONS
    assert not steps.stamps.joinpath(name).exists()


def test_a_group_locked_against_another_base_image_stops_before_pip_saying_so(steps, wheels):
    """The lock of old-torch as a base image with torch 2.8.0 gives it (verified: needs-old-torch
    to install, torch taken from the image): here, with torch 2.9.0+rocm, the step stops."""
    steps.render(locked=True)
    path = steps.root / "recipes" / "steps.lock"
    doc = yaml.safe_load(path.read_text())
    wheel = wheels / "pip" / "needs_old_torch-1.0-py3-none-any.whl"
    doc["components"]["old-torch"]["pip"][0].update(
        packages=[{"name": "needs-old-torch", "version": "1.0", "file": wheel.name,
                   "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest()}],
        base=[{"name": "torch", "version": "2.8.0"}], status="verified", reason="resolved in another image")
    path.write_text(lockfile.dump({key: value for key, value in doc.items() if key != "lock_hash"}))
    text = steps.render().read_text()
    assert "  _eb_pip_base torch==2.8.0\n  _eb_pip --require-hashes --no-deps -r <(printf" in text
    result = steps.run("--only", "old-torch")
    assert result.returncode == 1
    assert failure(result, "old-torch") == ("the lock was made for another base image, which had torch 2.8.0 "
                                            "(2.9.0+rocm here); lock the recipe again against this one")
    assert steps.installed() == BASE_VERSIONS
    assert not steps.stamps.joinpath("old-torch").exists()


def test_pip_installs_what_the_protected_versions_satisfy(steps):
    result = steps.run("--only", "any-torch")
    assert result.returncode == 0, result.stderr
    assert steps.installed() == dict(BASE_VERSIONS, **{"needs-any-torch": "1.0"})


def test_a_reinstall_of_every_dependency_is_refused_and_of_one_package_allowed(steps):
    result = steps.run("--only", "forced")
    assert result.returncode == 1
    assert failure(result, "forced") == (
        "pip --force-reinstall would reinstall every dependency too, the base image's protected ones "
        "(python.protected: torch servelib) included; add --no-deps")
    result = steps.run("--only", "forced-alone")
    assert result.returncode == 0, result.stderr
    assert steps.installed() == dict(BASE_VERSIONS, **{"needs-any-torch": "1.0"})


def test_steps_get_the_job_budget_and_the_recipes_gpu_target(steps):
    result = steps.run("--only", "environment", ENVBUILD_JOBS="3", PYTORCH_ROCM_ARCH="gfx942;gfx950",
                       MAKEFLAGS="-j64")
    assert result.returncode == 0, result.stderr
    assert steps.out.read_text().splitlines() == ["3", "-j3", "3", "3", "3", "gfx950", "gfx950"]


def test_a_check_cannot_fail_by_sigpipe_and_a_step_keeps_pipefail(steps):
    result = steps.run("--only", "sigpipe-check")
    assert result.returncode == 0, result.stderr
    assert steps.stamps.joinpath("sigpipe-check").exists()
    result = steps.run("--only", "pipefail-step")
    assert result.returncode == 1
    assert result.stderr.startswith("envbuild: error: pipefail-step failed (exit 1) after ")


def test_what_the_base_image_lacks_is_named_before_anything_is_installed(steps, tmp_path):
    headless = tmp_path / "python-without-headers"
    headless.write_text('#!/bin/sh\necho /nonexistent/include/Python.h\n')
    headless.chmod(0o755)
    result = steps.run("--only", "plain", "--only", "needy", ENVBUILD_PYTHON=str(headless))
    assert result.returncode == 1
    assert result.stderr == (
        "envbuild: error: the base image lacks what the components to install need (it must provide it): "
        "needy: command no-such-tool (not on PATH); needy: /nonexistent/file; "
        "needy: /nonexistent/default/lib.so (${EB_TEST_UNSET:-/nonexistent/default}/lib.so); "
        f"needy: the C headers of {headless} (/nonexistent/include/Python.h; Debian's python3-dev)\n")
    assert result.stdout == "" and not steps.out.exists()


def test_needs_are_checked_only_when_something_is_to_be_installed(steps, tmp_path):
    first = steps.run("--only", "satisfied")
    assert first.returncode == 0, first.stderr
    assert steps.out.read_text() == "satisfied\n"
    # Installed: the no-op run starts no process, the needs' Python check included.
    trace = tmp_path / "trace"
    traced = subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve,fork,vfork,clone,clone3", "-o", str(trace),
                             "bash", str(steps.script), "--only", "satisfied"], env=steps.env, capture_output=True,
                            text=True)
    assert traced.returncode == 0, traced.stderr
    calls = [line for line in trace.read_text().splitlines() if "---" not in line and "+++" not in line]
    assert len(calls) == 1 and re.match(r'^\d+ +execve\("[^"]*/bash", ', calls[0]), calls
