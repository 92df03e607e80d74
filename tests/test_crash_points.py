"""Crashes at every point (issue 13): the runtime script stopped at each of its changes of state.

The engine's test hook (ENVBUILD_TEST_CRASH_AT=N:SIGNAL:main|group, see txn.sh)
makes a run send itself a signal at its Nth change of state: SIGKILL (nothing
runs after it), SIGTERM or SIGINT (its trap finishes what it was replacing and
exits 143 or 130), to its main process alone or to its whole process group.
ENVBUILD_TEST_TRACE lists the changes of a run, so every N is tried, not a sample.

Five scenarios, of components `lib` and `app` (built on it):
- first install, with a shared cache (entry locks, the build stored in the cache);
- upgrade of lib from version 1 to 2 (app is reinstalled with it);
- failed upgrade: version 2 of lib installs its files, then fails (its rollback is crashed too);
- cache restore: version 1 installed, the cache holds version 2 of both;
- corrupt entry: as cache restore, but lib's entry unpacks badly: its restore is
  undone, the entry replaced under its lock, lib built and stored;
- parallel upgrade: lib and `tool` (independent of it) upgraded from 1 to 2 with
  both builds in flight at once (tool's ends once lib's install is done, so that
  the changes of state come in the same order in every run).

After each crash, whatever has a stamp has exactly the files of that stamp's
version; an interrupted run (TERM, INT) has already put things right and says
so. The next run then leaves every component complete with a true stamp,
installs again exactly the components whose stamp the crashed run had not
written (a committed install is never undone), and leaves nothing of the
crashed run behind.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from envbuild.pipeline import load_plan
from nodes import ARCHIVE
from stamps import expected_stamp, stamp_of

RECIPE = "name: r\ndescription: Crash test recipe.\nbase_image: debian:bookworm\ncomponents: [{components}]\n"
LIB = """name: lib
description: A library, version {version}.
prefix:
  LIB_HOME: {world}/opt/lib
build: |
  echo lib >> "$EB_TEST_BUILDS"
  mkdir -p "$LIB_HOME"
  echo {version} > "$LIB_HOME/VERSION"
  echo data > "$LIB_HOME/data"
  {wait}{fail}
check: |
  grep -qx {version} "$LIB_HOME/VERSION"
"""
APP = """name: app
description: An application built on lib.
depends: [lib]
prefix:
  APP_HOME: {world}/opt/app
build: |
  echo app >> "$EB_TEST_BUILDS"
  mkdir -p "$APP_HOME"
  cp "$LIB_HOME/VERSION" "$APP_HOME/built-with"
check: |
  test -f "$APP_HOME/built-with"
"""
# With tool in the recipe, lib's build ends once tool's has begun (each run appends a line of each).
WAIT_FOR_TOOL = """for _ in $(seq 100); do
    if (($(grep -cx tool "$EB_TEST_BUILDS") >= $(grep -cx lib "$EB_TEST_BUILDS"))); then break; fi
    sleep 0.1
  done
  """
TOOL = """name: tool
description: A tool independent of lib, version {version}.
prefix:
  TOOL_HOME: {world}/opt/tool
build: |
  echo tool >> "$EB_TEST_BUILDS"
  mkdir -p "$TOOL_HOME"
  echo {version} > "$TOOL_HOME/VERSION"
  for _ in $(seq 100); do
    if grep -qsx {version} {world}/opt/lib/VERSION && test ! -e "$ENVBUILD_STATE_DIR/txn/lib"; then break; fi
    sleep 0.1
  done
check: |
  grep -qx {version} "$TOOL_HOME/VERSION"
"""
MODES = [(signal, target) for target in ("group", "main") for signal in ("KILL", "TERM", "INT")]
EXIT_STATUS = {"KILL": -9, "TERM": 143, "INT": 130}


@dataclass
class Scenario:
    """Scripts for versions 1, 2 and a broken 2 at fixed paths under `world`, and what each run expects."""

    world: Path
    template: Path
    final: str  # the version every component must be at after the next run
    script: str  # the script the crashed run and the next run execute
    cache: bool

    def env(self, **extra: str) -> dict[str, str]:
        env = {"PATH": os.environ["PATH"], "HOME": str(self.world), "TMPDIR": str(self.world / "tmp"),
               "ENVBUILD_STATE_DIR": str(self.world / "state"), "ENVBUILD_NIC_FAMILY": "none",
               "ENVBUILD_LOCK_HEARTBEAT": "1", "EB_TEST_BUILDS": str(self.world / "builds")}
        if self.cache:
            env["ENVBUILD_CACHE_DIR"] = str(self.world / "cache")
        env.update(extra)
        return env

    def run(self, script: str | None = None, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(self.world.parent / f"{script or self.script}.sh")],
                              env=self.env(**extra), capture_output=True, text=True, timeout=60,
                              start_new_session=True)

    def reset(self) -> None:
        shutil.rmtree(self.world)
        shutil.copytree(self.template, self.world, symlinks=True)


def write_recipes(root: Path, world: Path, version: int, fail: bool, components: list[str]) -> Path:
    recipes = root / f"recipes-{version}{'-broken' if fail else ''}"
    (recipes / "components").mkdir(parents=True)
    (recipes / "r.yaml").write_text(RECIPE.format(components=", ".join(components)))
    (recipes / "components" / "lib.yaml").write_text(
        LIB.format(version=version, world=world, fail="exit 3" if fail else ":",
                   wait=WAIT_FOR_TOOL if "tool" in components else ""))
    (recipes / "components" / "app.yaml").write_text(APP.format(world=world))
    (recipes / "components" / "tool.yaml").write_text(TOOL.format(world=world, version=version))
    return recipes


def render(recipes: Path, path: Path) -> None:
    subprocess.run(["python3", "-m", "envbuild", "runtime-script", "--recipes-dir", str(recipes), "--recipe", "r",
                    "-o", str(path)], check=True, capture_output=True)


def keys(recipes: Path) -> dict[str, dict]:
    plan = load_plan(recipes, "r")
    return {step.name: expected_stamp(plan, step) for step in plan.steps}


@dataclass
class World(Scenario):
    """A scenario with its components and the stamp keys of each version of its recipe."""

    components: tuple[str, ...] = ()
    stamps: dict[str, dict[str, dict]] | None = None


def make_scenario(root: Path, name: str) -> World:
    """Scenario `name`'s world at root/world, set up once and kept as root/template. Restores
    go through the same transaction as builds: the cache scenarios have lib alone."""
    world = root / "world"
    components = {"cache-restore": ("lib",), "corrupt-entry": ("lib",), "parallel-upgrade": ("lib", "tool")}.get(
        name, ("lib", "app"))
    stamps = {}
    for script, version, fail in (("v1", 1, False), ("v2", 2, False), ("v2-broken", 2, True)):
        recipes = write_recipes(root, world, version, fail, list(components))
        render(recipes, root / f"{script}.sh")
        stamps[script] = keys(recipes)
    (world / "tmp").mkdir(parents=True)
    final, script, cache = {"first-install": ("v2", "v2", True), "upgrade": ("v2", "v2", False),
                            "failed-upgrade": ("v1", "v2-broken", False), "cache-restore": ("v2", "v2", True),
                            "corrupt-entry": ("v2", "v2", True), "parallel-upgrade": ("v2", "v2", False)}[name]
    scenario = World(world, root / "template", final, script, cache, components, stamps)
    if name in ("cache-restore", "corrupt-entry"):
        # Another node (other state dir, same paths) stored version 2; this one has version 1.
        other = scenario.run("v2", ENVBUILD_STATE_DIR=str(root / "other-state"))
        assert other.returncode == 0, other.stderr
        shutil.rmtree(root / "other-state")
        shutil.rmtree(world / "opt")
    if name == "corrupt-entry":
        # lib's archive cut short, its SHA256SUMS written after: it verifies, and tar fails.
        entry = next((world / "cache/entries").glob("lib-*"))
        archive = entry / ARCHIVE
        archive.write_bytes(archive.read_bytes()[:40])
        subprocess.run(f"sha256sum {ARCHIVE} removed.txt >SHA256SUMS", shell=True, cwd=entry, check=True)
    if name != "first-install":
        first = scenario.run("v1", ENVBUILD_CACHE_DIR="")
        assert first.returncode == 0, first.stderr
    shutil.copytree(world, scenario.template, symlinks=True)
    return scenario


def installed(scenario: World) -> dict[str, str]:
    """Each stamped component's version (v1 or v2), after checking that its files are that version's."""
    found = {}
    state = scenario.world / "state"
    for name in scenario.components:
        stamp = state / "stamps" / name
        if not stamp.exists():
            continue
        key = stamp_of(stamp.read_text())
        version = next((v for v in ("v1", "v2") if scenario.stamps[v][name] == key), None)
        assert version, f"stamp of {name} is no version's: {key}"
        number = version[1]
        if name == "lib":
            assert (scenario.world / "opt/lib/VERSION").read_text() == f"{number}\n", f"lib stamped {version}"
            assert (scenario.world / "opt/lib/data").read_text() == "data\n"
        elif name == "tool":
            assert (scenario.world / "opt/tool/VERSION").read_text() == f"{number}\n", f"tool stamped {version}"
        else:
            assert (scenario.world / "opt/app/built-with").read_text() == f"{number}\n", f"app stamped {version}"
        found[name] = version
    return found


def leftovers(scenario: Scenario) -> list[str]:
    """What a finished run must not leave: journals, set-aside copies, temporary files, cache temporaries."""
    world = scenario.world
    found = [str(p) for p in (world / "opt").iterdir() if p.name not in scenario.components] \
        if (world / "opt").exists() else []
    state = world / "state"
    allowed = {"stamps", "provenance", "logs", "txn", "install.lock"}
    found += [str(p) for p in state.iterdir() if p.name not in allowed]
    for kind in ("stamps", "provenance"):
        found += [str(p) for p in (state / kind).iterdir() if p.name not in scenario.components]
    found += [str(p) for p in (state / "txn").iterdir()] if (state / "txn").exists() else []
    found += [str(p) for p in (world / "tmp").iterdir()]
    cache = world / "cache"
    if cache.exists():
        found += [str(p) for p in (cache / "tmp").iterdir()]
        found += [str(p) for p in (cache / "locks").iterdir() if not p.name.endswith(".lock")]
        for entry in (cache / "entries").iterdir():
            sums = subprocess.run(["sha256sum", "--quiet", "--strict", "-c", "SHA256SUMS"], cwd=entry)
            if sums.returncode != 0 or sorted(p.name for p in entry.iterdir()) != ["SHA256SUMS", ARCHIVE, "removed.txt"]:
                found.append(f"bad entry {entry}")
    return found


def points(scenario: Scenario) -> list[str]:
    """The changes of state of the scenario's run, in order, from a run traced without a crash."""
    scenario.reset()
    trace = scenario.world.parent / "trace"
    trace.unlink(missing_ok=True)
    result = scenario.run(ENVBUILD_TEST_TRACE=str(trace))
    assert result.returncode == (1 if scenario.script == "v2-broken" else 0), result.stderr
    lines = trace.read_text().splitlines()
    assert [int(line.split()[0]) for line in lines] == list(range(1, len(lines) + 1))
    return [line.split(" ", 1)[1] for line in lines]


INTERRUPTED = re.compile(r"envbuild: error: interrupted by SIG(INT|TERM)"
                         r"(| after installing (lib|app|tool)| while installing (lib|app|tool): "
                         r"(the previous install is in place|it is not installed))\n")


def builds_of(scenario: World) -> list[str]:
    builds = scenario.world / "builds"
    return builds.read_text().split() if builds.exists() else []


def installs(scenario: World, result: subprocess.CompletedProcess, builds_before: list[str]) -> list[str]:
    """The components a run built or restored."""
    built = builds_of(scenario)[len(builds_before):]
    restored = re.findall(r"^envbuild: (\w+): restored from the shared cache in ", result.stdout, re.M)
    return sorted(built + restored)


@pytest.mark.parametrize("name", ["first-install", "upgrade", "failed-upgrade", "cache-restore", "corrupt-entry",
                                  "parallel-upgrade"])
def test_a_crash_at_every_point_is_survived(scratch, name):
    scenario = make_scenario(scratch, name)
    changes = points(scenario)
    assert len(changes) >= 8, changes
    if name == "parallel-upgrade":  # tool's install began before lib's build ended
        assert changes.index("journal tool") < changes.index("built lib (exit 0)"), changes
    tried = 0
    for signal, target in MODES:
        for n, change in enumerate(changes, 1):
            where = f"{signal} to the {target} process at point {n} ({change})"
            scenario.reset()
            crashed = scenario.run(ENVBUILD_TEST_CRASH_AT=f"{n}:{signal}:{target}")
            assert crashed.returncode == EXIT_STATUS[signal], f"{where}: {crashed.stdout}{crashed.stderr}"
            installed(scenario)
            if signal != "KILL":
                # The trap finished the transaction and said what became of the component.
                assert INTERRUPTED.fullmatch(crashed.stderr.splitlines(keepends=True)[-1]), f"{where}: {crashed.stderr}"
                assert f"SIG{signal}" in crashed.stderr
                assert not list((scenario.world / "state/txn").glob("*")), where
            builds = builds_of(scenario)
            after = scenario.run()
            expected_status = 1 if scenario.script == "v2-broken" else 0
            assert after.returncode == expected_status, f"{where}: {after.stdout}{after.stderr}"
            assert "waiting for the lock" not in after.stdout, f"{where}: a lock outlived the crashed run"
            assert installed(scenario) == {c: scenario.final for c in scenario.components}, where
            # What the crashed run had committed stays; the rest is installed once (lib's failure stops v2-broken).
            committed = {c for c in scenario.components if f"stamp {c}" in changes[:n]}
            expected = {"lib"} if scenario.script == "v2-broken" else set(scenario.components) - committed
            assert installs(scenario, after, builds) == sorted(expected), f"{where}: {after.stdout}"
            assert leftovers(scenario) == [], where
            tried += 1
    assert tried == len(changes) * len(MODES)
