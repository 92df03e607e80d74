"""Components built at the same time (issue 15): the runtime script's scheduler.

Builds prove they ran at the same time by waiting for each other's marks (a
build that waits for a mark its partner writes only while it runs cannot
finish when the two run one after the other), and say when they started and
ended ($EPOCHREALTIME, appended to $EB_TEST_MARKS) and the job budget they had.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

# A component that marks its start, waits (at most 20 s) for the marks named in
# WAIT_FOR, runs ACTION, and marks its end.
MARKED = """name: {name}
description: Marks its start and end{depends_doc}.
{depends}prefix:
  {var}: {{install_root}}/opt/{name}
build: |
  echo "{name} start $EPOCHREALTIME $EB_JOBS" >> "$EB_TEST_MARKS"
  for mark in {wait_for}; do
    for _ in $(seq 200); do
      grep -q "^$mark " "$EB_TEST_MARKS" && break
      sleep 0.1
    done
    grep -q "^$mark " "$EB_TEST_MARKS"
  done
  {action}
  mkdir -p "${var}"
  echo "{name} end $EPOCHREALTIME $EB_JOBS" >> "$EB_TEST_MARKS"
check: |
  test -d "${var}"
"""


def marked(name: str, wait_for: tuple[str, ...] = (), depends: tuple[str, ...] = (), action: str = ":") -> str:
    return MARKED.format(
        name=name, var=name.upper().replace("-", "_") + "_HOME", wait_for=" ".join(f"'{m}'" for m in wait_for),
        depends="".join(f"depends: [{', '.join(depends)}]\n" for _ in depends[:1]),
        depends_doc=f" after {', '.join(depends)}" if depends else "", action=action)


def marks(recipe) -> dict[str, tuple[float, int]]:
    """{'left start': (time, jobs), ...}"""
    found = {}
    for line in (recipe.root / "marks").read_text().splitlines():
        name, what, when, jobs = line.split()
        found[f"{name} {what}"] = (float(when), int(jobs))
    return found


def use(recipe, components: dict[str, str]) -> Path:
    recipe.extra_components.update(components)
    recipe.components[:] = list(components)
    recipe.write()
    return recipe.render()


def test_independent_components_build_at_the_same_time_sharing_the_jobs(test_recipe):
    # left and right each wait for the other's start: they pass only when both run at once.
    script = use(test_recipe, {
        "left": marked("left", wait_for=("right start",)),
        "right": marked("right", wait_for=("left start",)),
        "joined": marked("joined", depends=("left", "right")),
    })
    result = test_recipe.run(script, EB_TEST_MARKS=str(test_recipe.root / "marks"),
                             ENVBUILD_PARALLEL="2", ENVBUILD_JOBS="4")
    assert result.returncode == 0, result.stdout + result.stderr
    found = marks(test_recipe)
    assert found["left start"][0] < found["right end"][0] and found["right start"][0] < found["left end"][0]
    # joined waits for both; alone, it has the whole budget, which the two shared.
    assert found["joined start"][0] > max(found["left end"][0], found["right end"][0])
    assert {name: jobs for name, (_, jobs) in found.items()} == {
        "left start": 2, "left end": 2, "right start": 2, "right end": 2, "joined start": 4, "joined end": 4}
    for name in ("left", "right", "joined"):
        assert f"envbuild: {name}: installing (log: {test_recipe.state}/logs/{name}.log)\n" in result.stdout
        assert re.search(rf"^envbuild: {name}: installed in \d+\.\d{{3}} s$", result.stdout, re.M)
        assert (test_recipe.state / "stamps" / name).exists()
    assert result.stdout.endswith("envbuild: installed 3, present 0, skipped 0 of 3 components"
                                  + result.stdout.rsplit("components", 1)[1])


def test_one_at_a_time_when_parallel_is_one(test_recipe):
    script = use(test_recipe, {"first": marked("first"), "second": marked("second")})
    result = test_recipe.run(script, EB_TEST_MARKS=str(test_recipe.root / "marks"), ENVBUILD_PARALLEL="1",
                             ENVBUILD_JOBS="3")
    assert result.returncode == 0, result.stderr
    found = marks(test_recipe)
    assert found["first end"][0] < found["second start"][0]
    assert {jobs for _, jobs in found.values()} == {3}


def test_a_failure_stops_its_dependents_and_the_independent_ones_finish(test_recipe):
    # bad fails while good runs (good waits for bad's last mark), and never-built needs bad.
    script = use(test_recipe, {
        "bad": marked("bad", wait_for=("good start",), action='echo "bad failing 0 0" >> "$EB_TEST_MARKS"; exit 3'),
        "good": marked("good", wait_for=("bad failing",)),
        "needs-bad": marked("needs-bad", depends=("bad",)),
        "needs-needs": marked("needs-needs", depends=("needs-bad", "good")),
    })
    result = test_recipe.run(script, EB_TEST_MARKS=str(test_recipe.root / "marks"), ENVBUILD_PARALLEL="2")
    assert result.returncode == 1, result.stdout + result.stderr
    logs = test_recipe.state / "logs"
    errors = [line for line in result.stderr.splitlines() if line.startswith("envbuild: error: ")]
    assert errors[0].startswith("envbuild: error: bad failed (exit 3) after ") and errors[0].endswith(
        f" s; log: {logs}/bad.log")
    assert errors[1:] == [
        "envbuild: error: needs-bad is not installed: it needs bad, which failed",
        "envbuild: error: needs-needs is not installed: it needs needs-bad, which is not installed",
        f"envbuild: error: not installed: bad (exit 3; log: {logs}/bad.log); needs-bad (it needs bad, which failed); "
        "needs-needs (it needs needs-bad, which is not installed)",
    ]
    assert re.search(r"^envbuild: installed 1, present 0, skipped 0, not installed 3 of 4 components \(\d+\.\d{3} s\)$",
                     result.stdout, re.M), result.stdout
    assert sorted(p.name for p in (test_recipe.state / "stamps").iterdir()) == ["good"]
    assert "good end" in (test_recipe.root / "marks").read_text()
    assert not (logs / "needs-bad.log").exists() and not (logs / "needs-needs.log").exists()
    assert not (test_recipe.root / "opt/bad").exists()
    # The next run installs what is missing only (and fails on bad again).
    again = test_recipe.run(script, EB_TEST_MARKS=str(test_recipe.root / "marks"), ENVBUILD_PARALLEL="2")
    assert again.returncode == 1
    assert "good:" not in again.stdout


PACKAGE_SETUP = """import os, sys, time
from setuptools import setup
with open(os.environ["EB_TEST_MARKS"], "a") as marks:
    marks.write("{name} pip-in %r 0\\n" % time.time())
time.sleep(0.5)
with open(os.environ["EB_TEST_MARKS"], "a") as marks:
    marks.write("{name} pip-out %r 0\\n" % time.time())
setup(name="{name}", version="1.0", py_modules=["{name}"])
"""

# A stand-in dpkg (first on PATH) that marks when it runs; dpkg -i of a .deb otherwise.
STANDIN_DPKG = """#!/bin/sh
echo "$EB_NAME_FOR_TEST dpkg-in $(date +%s.%N) 0" >> "$EB_TEST_MARKS"
sleep 0.5
echo "$EB_NAME_FOR_TEST dpkg-out $(date +%s.%N) 0" >> "$EB_TEST_MARKS"
"""


@pytest.mark.parametrize("tool", ["pip", "dpkg"])
def test_two_components_pip_or_dpkg_never_overlap(test_recipe, tool):
    bin_dir = test_recipe.root / "bin"
    bin_dir.mkdir()
    (bin_dir / "dpkg").write_text(STANDIN_DPKG)
    (bin_dir / "dpkg").chmod(0o755)
    components = {}
    for name, other in (("alpha", "beta"), ("beta", "alpha")):
        package = test_recipe.root / f"pkg-{name}"
        package.mkdir()
        (package / "setup.py").write_text(PACKAGE_SETUP.format(name=name))
        (package / f"{name}.py").write_text("")
        action = (f"_eb_pip --no-build-isolation --no-deps {package}" if tool == "pip"
                  else f"EB_NAME_FOR_TEST={name} dpkg -i {name}.deb")
        components[name] = marked(name, wait_for=(f"{other} start",), action=action)
    script = use(test_recipe, components)
    result = test_recipe.run(script, EB_TEST_MARKS=str(test_recipe.root / "marks"), ENVBUILD_PARALLEL="2",
                             PATH=f"{bin_dir}:{test_recipe.env()['PATH']}")
    assert result.returncode == 0, result.stdout + result.stderr
    found = marks(test_recipe)
    # Both builds ran at once; their pip (dpkg) runs one after the other.
    assert found["alpha start"][0] < found["beta end"][0] and found["beta start"][0] < found["alpha end"][0]
    runs = sorted((when, name, what) for name_what, (when, _) in found.items()
                  for name, what in [name_what.split()] if what.startswith(tool))
    names = [name for _, name, _ in runs]
    assert names == sorted(names, key=names[0].__ne__), runs  # all of one component's, then the other's
    waited = [name for name in ("alpha", "beta")
              if f"waiting for the lock on {test_recipe.state}/run." in (test_recipe.state / "logs" / f"{name}.log").read_text()]
    assert waited == [names[-1]], waited
    lock = "pip" if tool == "pip" else "apt"
    log = (test_recipe.state / "logs" / f"{names[-1]}.log").read_text()
    assert re.search(rf"waiting for the lock on {test_recipe.state}/run\.\d+/{lock}\.lock \({lock} for {names[-1]}\), "
                     rf"held by pid \d+ on \S+ since \S+ \({lock} for {names[0]}\)", log), log


def test_a_step_takes_the_package_locks_again_for_each_call(test_recipe):
    """Each apt-get, dpkg or pip call of a step takes the run's lock and gives it back, so the
    step's next call gets it again (a lock never released would hold the step for ENVBUILD_LOCK_TIMEOUT)."""
    bin_dir = test_recipe.root / "bin"
    bin_dir.mkdir()
    (bin_dir / "dpkg").write_text(STANDIN_DPKG)
    (bin_dir / "dpkg").chmod(0o755)
    package = test_recipe.root / "pkg-solo"
    package.mkdir()
    (package / "setup.py").write_text(PACKAGE_SETUP.format(name="solo"))
    (package / "solo.py").write_text("")
    twice = "\n  ".join([f"EB_NAME_FOR_TEST=solo dpkg -i solo.deb",
                         f"_eb_pip --no-build-isolation --no-deps {package}"] * 2)
    script = use(test_recipe, {"solo": marked("solo", action=twice)})
    result = test_recipe.run(script, EB_TEST_MARKS=str(test_recipe.root / "marks"), ENVBUILD_LOCK_TIMEOUT="20",
                             PATH=f"{bin_dir}:{test_recipe.env()['PATH']}")
    assert result.returncode == 0, result.stdout + result.stderr
    calls = [line.split()[1] for line in (test_recipe.root / "marks").read_text().splitlines()]
    # pip runs the package's setup.py more than once per install: its marks are counted apart.
    assert [call for call in calls if not call.startswith("pip")] == [
        "start", "dpkg-in", "dpkg-out", "dpkg-in", "dpkg-out", "end"]
    assert calls.index("pip-in") > calls.index("dpkg-out") and calls.count("pip-in") >= 2
    assert "waiting for the lock" not in (test_recipe.state / "logs/solo.log").read_text()
