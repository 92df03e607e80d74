"""`envbuild image` for real: the test recipe baked onto the local base image.

The steps of an image build see neither the host's files nor its environment,
so the recipe is tests/testrecipe.HttpRecipe: git repositories and the tarball
at plain http://127.0.0.1 URLs of a FileServer, built with network_mode="host".
One image is built per module and shared by the assertions that only read it;
the pin-bump, failure and CLI tests build on top of its cached layers.
Nothing here mocks docker-py; every image and container is removed afterwards.
"""

from __future__ import annotations

import contextlib
import io
import os
import pty
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from docker_base import ImageSession
from envbuild.run.docker_engine import BuildFailed, BuildProgress, build, image_exists, make_context_tar
from envbuild.run.image import bake
from envbuild.pipeline import load_plan
from envbuild.plan import Plan
from envbuild.render.dockerfile import build_context, render_dockerfile
from localsources import FileServer, make_tarball, sha256
from stamps import expected_stamp, stamp_of
from testrecipe import BROKEN, HttpRecipe

REPO_ROOT = Path(__file__).resolve().parent.parent
NIC_FAMILY = "ionic"
# Applies only on ionic nodes and is not built per family: the image build must
# be told the family (it cannot detect the cluster's NICs) to bake it in.
IONIC_TOOL = """name: ionic-tool
description: Only nodes with ionic NICs need it.
when:
  nic: [ionic]
prefix:
  IONIC_TOOL_HOME: /opt/ionic
build: |
  echo ionic-tool >> {builds_log}
  mkdir -p "$IONIC_TOOL_HOME/bin"
  printf '#!/bin/sh\\necho ionic tool\\n' > "$IONIC_TOOL_HOME/bin/ionic-tool"
  chmod +x "$IONIC_TOOL_HOME/bin/ionic-tool"
env:
  path:
    PATH:
      - ${{IONIC_TOOL_HOME}}/bin
"""
COMPONENTS = ["libhello", "greet", "dataset", "rank0-tool", "ionic-tool"]
# greet installs with pip (site-packages, a shared place): it runs in the image
# itself. The others write only their own prefixes: each builds in a stage of
# its own, which the builder runs first.
OWN_STAGE = ["libhello", "dataset", "rank0-tool", "ionic-tool"]
BUILD_ORDER = OWN_STAGE + ["greet"]


# --- helpers (fixtures engine, base_image, session: conftest.py) ---------------


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("image")
    (root / "www").mkdir()
    server = FileServer(root / "www")
    recipe = HttpRecipe(root / "t", server)
    recipe.extra_components["ionic-tool"] = IONIC_TOOL
    recipe.components.append("ionic-tool")
    recipe.write()
    yield recipe
    server.close()


def image_plan(recipe: HttpRecipe, base_image: str) -> Plan:
    return load_plan(recipe.recipes, "testrecipe", nic_family=NIC_FAMILY, base_image=base_image)


class RecordingProgress(BuildProgress):
    def __init__(self):
        self.shown = io.StringIO()
        super().__init__(stream=self.shown)

    def lines(self) -> list[str]:
        return untimed(self.shown.getvalue())


def untimed(text: str) -> list[str]:
    """The lines of progress output, without the time stamps of plain (not a terminal) output."""
    return [re.sub(r"^\[ *[\d.]+s\] ", "", line) for line in text.splitlines()]


@dataclass
class Built:
    plan: Plan
    tag: str
    image_id: str
    progress: RecordingProgress
    seconds: float

    def component_steps(self, cached: bool) -> list[str]:
        return [s.component for s in self.progress.steps if s.component and s.cached == cached]


def build_plan(engine, session: ImageSession, plan: Plan, tag: str, no_cache: bool = False) -> Built:
    """run.image.bake, as `envbuild image` does, on the host's network."""
    progress = RecordingProgress()
    try:
        baked = bake(plan, [tag], no_cache=no_cache, network="host", progress=progress)
    finally:
        session.track(progress)
    return Built(plan, tag, baked.image_id, progress, baked.seconds)


@pytest.fixture(scope="module")
def baked(engine, base_image, session, sources):
    # Without the layer cache: the stages of components without sources would come from earlier runs'.
    return build_plan(engine, session, image_plan(sources, base_image), session.tag("testrecipe"), no_cache=True)


def run_in(engine, session: ImageSession, image: str, script: str, **environment: str) -> tuple[int, str, str]:
    """Runs `bash -c script` in a throwaway container without network; (exit code, stdout, stderr).

    Not `bash -l`: Debian's /etc/profile resets PATH, which would hide the image's ENV.
    """
    container = engine.containers.create(image, ["bash", "-c", script], labels=session.labels,
                                         network_mode="none", environment=environment)
    try:
        container.start()
        code = container.wait(timeout=300)["StatusCode"]
        out = container.logs(stdout=True, stderr=False).decode()
        err = container.logs(stdout=False, stderr=True).decode()
    finally:
        container.remove(force=True)
    return code, out, err


def image_env(engine, image: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in engine.api.inspect_image(image)["Config"]["Env"])


def envbuild_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "envbuild", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=REPO_ROOT, timeout=900)


def image_args(recipe: HttpRecipe, base_image: str, *more: str) -> list[str]:
    return ["image", "--recipes-dir", str(recipe.recipes), "--recipe", "testrecipe", "--base-image", base_image,
            "--nic-family", NIC_FAMILY, "--network", "host", *more]


@contextlib.contextmanager
def recipe_of(recipe: HttpRecipe, names: list[str], extra: dict[str, str] | None = None, recipe_yaml: str = ""):
    """The recipe listing `names` (with the components `extra` added, and `recipe_yaml` in its file) for the duration."""
    saved = list(recipe.components), recipe.recipe_extra
    extra = extra or {}
    recipe.extra_components.update(extra)
    recipe.components[:] = names
    recipe.recipe_extra = recipe_yaml
    recipe.write()
    try:
        yield recipe
    finally:
        recipe.components[:], recipe.recipe_extra = saved
        for name in extra:
            del recipe.extra_components[name]
            (recipe.recipes / "components" / f"{name}.yaml").unlink()
        recipe.write()


def broken_recipe(recipe: HttpRecipe):
    """The recipe as [libhello, broken] for the duration; libhello's layer is the module image's."""
    return recipe_of(recipe, ["libhello", "broken"], {"broken": BROKEN})


# --- the baked image ----------------------------------------------------------


@pytest.mark.docker
def test_one_layer_per_component_each_built_once(baked):
    assert baked.component_steps(cached=False) == BUILD_ORDER
    assert baked.component_steps(cached=True) == []
    shown = baked.progress.lines()
    assert [line.split(" in ")[0] for line in shown if ": built" in line] == [f"{n}: built" for n in BUILD_ORDER]


@pytest.mark.docker
def test_components_are_installed_and_env_is_set(engine, session, baked):
    code, out, err = run_in(engine, session, baked.tag, """
        set -e
        hello
        echo "HELLO_HOME=$HELLO_HOME"
        python3 -c 'import greet; print("greet", greet.WORD)'
        cat /opt/data/README
        cat "$RANK0_TOOL"
        ionic-tool
        echo "TEST_RECIPE_ENV=$TEST_RECIPE_ENV"
        echo "PATH=$PATH"
        echo "builds:" $(cat /var/tmp/envbuild-test-builds.log)
        test -e /envbuild-out || echo "no /envbuild-out"
        ls -A /opt/envbuild/lib/components
    """)
    assert code == 0, err
    assert out.splitlines() == [
        "hello 1",
        "HELLO_HOME=/opt/hello",
        "greet greetings",
        "data",
        "ready",
        "ionic tool",
        "TEST_RECIPE_ENV=on",
        "PATH=/opt/ionic/bin:/opt/hello/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        # What the stages write outside their prefixes (this log in /var/tmp) stays in the stages.
        "builds: greet",
        "no /envbuild-out",
        "01-libhello.sh", "02-greet.sh", "03-dataset.sh", "04-rank0-tool.sh", "05-ionic-tool.sh",
    ]



@pytest.mark.docker
def test_runtime_script_in_the_image_installs_nothing(engine, session, baked):
    # No network in the container: anything it tried to fetch would fail.
    code, out, err = run_in(engine, session, baked.tag, """
        bash /opt/envbuild/setup_deps.sh || exit
        bash /opt/envbuild/setup_deps.sh --check || exit
        NODE_RANK=1 bash /opt/envbuild/setup_deps.sh --check || exit
        echo "builds:" $(cat /var/tmp/envbuild-test-builds.log)
        ls /var/lib/envbuild/logs
    """)
    assert code == 0, err
    lines = out.splitlines()
    assert re.fullmatch(r"envbuild: all 5 components present \(0\.\d{3} s\)", lines[0])
    assert lines[1] == "envbuild: node rank 0 (from the default; neither NODE_RANK nor SLURM_NODEID is set)"
    assert lines[2:7] == [f"envbuild: {name}: present" for name in COMPONENTS]
    assert re.fullmatch(r"envbuild: all 5 components present \(0\.\d{3} s\)", lines[7])
    assert lines[8] == "envbuild: node rank 1 (from NODE_RANK)"
    assert "envbuild: rank0-tool: skipped (node rank 1 (from NODE_RANK); runs on NODE_RANK 0)" in lines[9:14]
    assert re.fullmatch(r"envbuild: all 4 components present, 1 skipped \(0\.\d{3} s\)", lines[14])
    assert lines[15] == "builds: greet"  # no step ran again
    # The build's logs went to its output, not into a layer, and nothing was installed since.
    assert lines[16:] == []
    assert err == ""


@pytest.mark.docker
def test_stamps_in_the_image_are_the_plan_stamp_keys(engine, session, baked):
    names = " ".join(COMPONENTS)
    code, out, err = run_in(engine, session, baked.tag, f"for n in {names}; do cat /var/lib/envbuild/stamps/$n; done")
    assert code == 0, err
    assert [stamp_of(line) for line in out.splitlines()] == [
        expected_stamp(baked.plan, baked.plan.step(name)) for name in COMPONENTS]
    labels = engine.api.inspect_image(baked.tag)["Config"]["Labels"]
    assert labels["io.envbuild.recipe-hash"] == baked.plan.hash
    assert labels["io.envbuild.components"] == ",".join(COMPONENTS)
    for step in baked.plan.steps:
        assert labels[f"io.envbuild.component.{step.name}.hash"] == step.hash


@pytest.mark.docker
def test_runtime_script_env_equals_the_image_env(engine, session, base_image, baked):
    """`setup_deps.sh --env`, started from the base image's environment, exports the image's ENV."""
    base_env, env = image_env(engine, base_image), image_env(engine, baked.tag)
    code, out, err = run_in(
        engine, session, baked.tag, 'env -i PATH="$BASE_PATH" bash /opt/envbuild/setup_deps.sh --env',
        BASE_PATH=base_env["PATH"],
    )
    assert code == 0, err
    exported = {}
    for line in out.splitlines():
        word = shlex.split(line)
        assert word[0] == "export", line
        name, _, value = word[1].partition("=")
        exported[name] = value
    assert set(exported) == {"HELLO_HOME", "RANK0_TOOL", "TEST_RECIPE_ENV", "PATH"}
    assert exported == {name: env[name] for name in exported}
    added = {name for name in env if env.get(name) != base_env.get(name)}
    assert added == set(exported)


@contextlib.contextmanager
def bumped_pin(recipe: HttpRecipe, name: str):
    """Moves the pin of component `name` for the duration; yields (a command run in the image, what it prints)."""
    saved = dict(vars(recipe))
    tarball = recipe.server.root / "dataset-1.0.tar.gz"
    old_tarball = tarball.read_bytes()
    if name == "greet":
        recipe.greet_commit = recipe.commit("greet", {"greet/news.py": "NEWS = 2\n"}, "greet news")
        shows = ("python3 -c 'import greet.news; print(greet.news.NEWS)'", "2")
    elif name == "libhello":
        recipe.set_hello_version(2)
        shows = ("hello", "hello 2")
    else:
        data = make_tarball({"README": "data 2\n"}, "dataset-1.0")
        tarball.write_bytes(data)
        recipe.dataset_sha256 = sha256(data)
        shows = ("cat /opt/data/README", "data 2")
    recipe.write()
    try:
        yield shows
    finally:
        tarball.write_bytes(old_tarball)
        vars(recipe).update(saved)
        recipe.write()


@pytest.mark.docker
@pytest.mark.parametrize("bumped_name, rebuilt", [
    ("dataset", ["dataset"]),  # its own stage, nothing depends on it
    ("libhello", ["libhello", "greet"]),  # its own stage, and greet, which depends on it
    ("greet", ["greet"]),  # runs in the image: what comes after it there are copies
])
def test_pin_bump_rebuilds_that_component_and_its_dependents_only(engine, session, base_image, sources, baked,
                                                                   bumped_name, rebuilt):
    with bumped_pin(sources, bumped_name) as (command, shows):
        bumped = build_plan(engine, session, image_plan(sources, base_image), session.tag(f"bumped-{bumped_name}"))

    assert bumped.component_steps(cached=False) == rebuilt
    assert bumped.component_steps(cached=True) == [name for name in BUILD_ORDER if name not in rebuilt]
    shown = bumped.progress.lines()
    assert [line for line in shown if line.endswith(": cached")] == [
        f"{name}: cached" for name in BUILD_ORDER if name not in rebuilt]
    runs = [step for step in bumped.progress.rebuilt_steps if step.startswith("RUN ")]
    assert [run.split()[1] for run in runs] == [f"ENVBUILD_COMPONENT={name}" for name in rebuilt]
    if bumped_name == "dataset":
        # After the stage, only copies: its own and those that come after it in the image.
        assert [step for step in bumped.progress.rebuilt_steps if step.startswith("COPY")] == [
            "COPY envbuild/components/03-dataset/ /",
            "COPY --from=component-dataset /envbuild-out/ /",
            "COPY --from=component-rank0-tool /envbuild-out/ /",
            "COPY --from=component-ionic-tool /envbuild-out/ /",
            "COPY envbuild/setup_deps/ /",
        ]

    code, out, err = run_in(engine, session, bumped.tag,
                            f"{command} && bash /opt/envbuild/setup_deps.sh --check >/dev/null && echo parity")
    assert code == 0, err
    assert out.splitlines() == [shows, "parity"]


@pytest.mark.docker
def test_failing_step_fails_the_build_naming_the_component(engine, session, base_image, sources, baked):
    tag = session.tag("broken")
    with broken_recipe(sources):
        plan = image_plan(sources, base_image)
        with pytest.raises(BuildFailed) as failure:
            build_plan(engine, session, plan, tag)
        cli = envbuild_cli(*image_args(sources, base_image, "--tag", session.tag("broken-cli")))

    error = failure.value
    assert error.component == "broken"
    assert re.fullmatch(r"image build failed in component 'broken' \(step \d+/\d+\): the command exited with code 1",
                        str(error))
    tail = "\n".join(error.output_tail)
    assert re.search(r"envbuild: error: broken failed \(exit 3\) after [\d.]+ s; log: "
                     r"/var/lib/envbuild/logs/broken\.log", tail)
    assert "  | compiling broken" in tail
    assert "  | fatal: something is wrong" in tail
    assert not image_exists(engine, tag)

    assert cli.returncode == 1, cli.stderr
    assert "libhello: cached\n" in cli.stderr
    assert "broken: FAILED after " in cli.stderr
    assert "      | fatal: something is wrong\n" in cli.stderr
    assert re.search(r"^envbuild: error: image build failed in component 'broken' \(step \d+/\d+\): "
                     r"the command exited with code 1$", cli.stderr, re.M)
    assert "Traceback" not in cli.stderr
    assert not image_exists(engine, session.tag("broken-cli"))


FAILING = """name: failing
description: A build that fails at once.
build: |
  echo "compiling failing"
  echo "fatal: failing on purpose" >&2
  exit 3
"""


@pytest.mark.docker
def test_a_failing_step_shows_its_log_tail_once(engine, session, base_image, sources):
    with recipe_of(sources, ["failing"], {"failing": FAILING}):
        cli = envbuild_cli(*image_args(sources, base_image, "--tag", session.tag("failing-cli")))
    assert cli.returncode == 1, cli.stderr
    shown = untimed(cli.stderr)
    failed = next(index for index, line in enumerate(shown) if line.startswith("failing: FAILED after "))
    # The engine's report holds the log's last lines: shown once, not after the same lines as the step printed them.
    assert shown[failed + 1] == "--- last 5 output lines of failing ---", "\n".join(shown)
    assert re.fullmatch(r"    envbuild: error: failing failed \(exit 3\) after [\d.]+ s; log: "
                        r"/var/lib/envbuild/logs/failing\.log", shown[failed + 2])
    assert shown[failed + 3:failed + 5] == ["      | compiling failing", "      | fatal: failing on purpose"]
    # The run's summary (the scheduler's: what was not installed, and why).
    assert re.fullmatch(r"    envbuild: installed 0, present 0, skipped 0, not installed 1 of 1 component \([\d.]+ s\)",
                        shown[failed + 5])
    assert shown[failed + 6:-1] == [
        "    envbuild: error: not installed: failing (exit 3; log: /var/lib/envbuild/logs/failing.log)", "---",
        "error: the command exited with code 1"]
    assert re.fullmatch(r"envbuild: error: image build failed in component 'failing' \(step \d+/\d+\): the command "
                        r"exited with code 1", shown[-1])
    assert not image_exists(engine, session.tag("failing-cli"))


STRAY = """name: stray
description: Declares a prefix and writes outside it too.
prefix:
  STRAY_HOME: /opt/stray
build: |
  mkdir -p "$STRAY_HOME" /usr/local/share/stray
  echo in > "$STRAY_HOME/in"
  echo out > /usr/local/share/stray/out
"""


@pytest.mark.docker
def test_an_own_stage_component_writing_outside_its_prefixes_fails_the_build(engine, session, base_image, sources):
    """Only its prefixes would reach the image: the rest would be lost without a word."""
    with recipe_of(sources, ["stray"], {"stray": STRAY}), pytest.raises(BuildFailed) as failure:
        build_plan(engine, session, image_plan(sources, base_image), session.tag("stray"))
    assert failure.value.component == "stray"
    assert "envbuild: error: stray wrote outside its prefixes (STRAY_HOME): /usr/local/share/stray/out; an image " \
           "builds it in a stage of its own, from which only its prefixes reach the image" in failure.value.output_tail


# --- the CLI ------------------------------------------------------------------


@pytest.mark.docker
def test_cli_builds_reuses_the_tag_and_rebuilds_with_no_cache(engine, session, base_image, sources, baked):
    tag = session.tag("cli")
    first = envbuild_cli(*image_args(sources, base_image, "--tag", tag))
    assert first.returncode == 0, first.stderr
    assert f"envbuild: building {tag} from {base_image} (5 components)" in first.stderr
    # Same recipe, same rendering: every component layer is the library build's.
    assert [f"{name}: cached" for name in BUILD_ORDER] == [
        line for line in untimed(first.stderr) if line.endswith(": cached")
    ]
    assert re.search(rf"^envbuild: built {re.escape(tag)} \(sha256:[0-9a-f]{{12}}\) in [\d.]+ s$", first.stderr, re.M)
    # The summary: each component's build (all cached here) and what it adds to the image.
    summary = first.stderr[first.stderr.index("envbuild: component "):].splitlines()
    assert re.fullmatch(r"envbuild: component +build +adds", summary[0])
    assert [line.split()[1:3] for line in summary[1:6]] == [[name, "cached"] for name in COMPONENTS]
    assert all(re.fullmatch(r"[\d.]+ (B|kB|MB)", " ".join(line.split()[3:])) for line in summary[1:6])
    assert re.fullmatch(r"envbuild: the image adds [\d.]+ kB to its base", summary[6])
    first_id = engine.api.inspect_image(tag)["Id"]
    assert first_id == baked.image_id

    again = envbuild_cli(*image_args(sources, base_image, "--tag", tag))
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"envbuild: {tag} already exists (same recipe hash); reusing it. --no-cache builds it again.\n"
    assert "building" not in again.stderr
    assert engine.api.inspect_image(tag)["Id"] == first_id

    before = {image.id for image in engine.images.list(all=True)}
    try:
        rebuilt = envbuild_cli(*image_args(sources, base_image, "--tag", tag, "--no-cache", "--verbose"))
    finally:
        session.adopt_new_images(engine, before)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "cached" not in rebuilt.stderr
    # --verbose shows what the steps print (make's install line), live from the engine's stream.
    assert "install -m 755 hello" in rebuilt.stderr
    for name in COMPONENTS:
        assert f"building {name}...\n" in rebuilt.stderr
        assert re.search(rf"^\[ *[\d.]+s\] {name}: built in [\d.]+s$", rebuilt.stderr, re.M)
    # Reproducible: every step ran again, and the image is the same, to the byte of its config.
    assert engine.api.inspect_image(tag)["Id"] == first_id


@pytest.mark.docker
def test_cli_on_a_terminal_shows_a_live_line_and_quiet_shows_only_the_result(engine, session, base_image, sources,
                                                                             baked):
    tag = session.tag("tty")
    before = {image.id for image in engine.images.list(all=True)}
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-m", "envbuild", *image_args(sources, base_image, "-t", tag,
                                                                                  "--no-cache")],
                                   stdout=subprocess.DEVNULL, stderr=terminal, cwd=REPO_ROOT)
        os.close(terminal)
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the process has closed the terminal
            while chunk := os.read(controller, 65536):
                shown += chunk
        assert process.wait(timeout=300) == 0, shown.decode()
    finally:
        os.close(controller)
        session.adopt_new_images(engine, before)
    text = shown.decode()
    # greet's live line: its name, the seconds it has run, its last output line (pip's).
    assert re.search(r"\r\x1b\[K  greet +[\d.]+s \| \S", text), text
    assert "\r\x1b[Kgreet: built in " in text
    assert "building greet..." not in text

    quiet = envbuild_cli(*image_args(sources, base_image, "-t", tag, "-t", session.tag("tty-2"), "--quiet"))
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == f"envbuild: {tag} already exists (same recipe hash); reusing it. --no-cache builds it again.\n"
    assert quiet.stderr == ""
    assert engine.api.inspect_image(session.tag("tty-2"))["Id"] == engine.api.inspect_image(tag)["Id"]


@pytest.mark.docker
def test_cli_does_not_reuse_a_tag_that_holds_another_image(engine, session, base_image, sources, baked):
    """A tag given with --tag may name an image of another recipe (or an older pin): that is no reuse."""
    tag = session.tag("taken")
    other = make_context_tar({"Dockerfile": (f"FROM {base_image}\nLABEL io.envbuild.recipe-hash=older\n".encode(), 0o644)})
    progress = RecordingProgress()
    try:
        other_id = build(engine, other, tag, labels=session.labels, on_event=progress)
    finally:
        session.track(progress)

    result = envbuild_cli(*image_args(sources, base_image, "--tag", tag))
    assert result.returncode == 0, result.stderr
    assert "reusing" not in result.stdout
    assert (f"envbuild: {tag} exists but was not built from this recipe (hash {baked.plan.hash[:12]}); "
            "building it again\n") in result.stderr
    labels = engine.api.inspect_image(tag)["Config"]["Labels"]
    assert labels["io.envbuild.recipe-hash"] == baked.plan.hash
    assert engine.api.inspect_image(tag)["Id"] != other_id


@pytest.mark.docker
def test_no_pull_with_a_missing_base_names_the_base(engine, session, sources):
    missing = f"envbuild-test/absent:{session.id}"
    tag = session.tag("no-pull")
    result = envbuild_cli(*image_args(sources, missing, "--no-pull", "--tag", tag))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"envbuild: error: base image {missing} is not present locally and --no-pull was given; "
        "pull or build it first, or drop --no-pull"
    )
    assert "building" not in result.stderr
    assert not image_exists(engine, tag)


@pytest.mark.parametrize("command", ["image", "dry-run"])
def test_unreachable_engine_is_one_line_and_dry_run_needs_no_engine(sources, command):
    env = {"DOCKER_HOST": "unix:///nonexistent.sock"}
    if command == "image":
        result = envbuild_cli(*image_args(sources, "envbuild-test/base:any"), env=env)
        assert result.returncode == 1
        assert result.stdout == ""
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith(
            "envbuild: error: no Docker engine answers on DOCKER_HOST=unix:///nonexistent.sock (")
        assert "Traceback" not in result.stderr
        return
    result = envbuild_cli(*image_args(sources, "envbuild-test/base:any", "--dry-run"), env=env)
    assert result.returncode == 0, result.stderr
    plan = image_plan(sources, "envbuild-test/base:any")
    dockerfile = render_dockerfile(plan)
    assert result.stdout.startswith(dockerfile)
    # A NIC-conditional component is baked for the image's family, which the build is told.
    assert ("# envbuild component: ionic-tool (built in stage component-ionic-tool; baked in for NIC family ionic; "
            "at run time setup_deps.sh skips it unless the NIC family is ionic)\n") in dockerfile
    assert "RUN ENVBUILD_COMPONENT=ionic-tool ENVBUILD_NIC_FAMILY=ionic bash " in dockerfile
    listing = result.stdout[len(dockerfile):].splitlines()
    assert listing[:2] == ["", f"# build context of envbuild/testrecipe:{plan.hash[:12]}:"]
    files = build_context(plan)
    assert listing[2:] == [f"#   {mode:04o} {len(data):>8} {path}" for path, (data, mode) in files.items()]
    assert list(files) == [
        "Dockerfile",
        *(f"envbuild/components/{n:02d}-{name}/opt/envbuild/lib/components/{n:02d}-{name}.sh"
          for n, name in enumerate(COMPONENTS, 1)),
        "envbuild/engine/opt/envbuild/lib/engine.sh",
        "envbuild/engine/opt/envbuild/lib/run-component.sh",
        "envbuild/setup_deps/opt/envbuild/setup_deps.sh",
    ]


def test_build_context_tar_is_byte_identical_across_renders(sources, tmp_path):
    """Two renders in this process, and two in fresh processes with other working directories and umasks."""
    assert make_context_tar(build_context(image_plan(sources, "b:1"))) == make_context_tar(
        build_context(image_plan(sources, "b:1")))
    program = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from pathlib import Path; from envbuild.pipeline import load_plan;"
        "from envbuild.render.dockerfile import build_context; from envbuild.run.docker_engine import make_context_tar;"
        "plan = load_plan(Path(sys.argv[2]), 'testrecipe', nic_family='ionic', base_image='b:1');"
        "sys.stdout.buffer.write(make_context_tar(build_context(plan)))"
    )
    tars = []
    for seed, umask, cwd in (("1", "022", tmp_path), ("2", "077", sources.recipes)):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        result = subprocess.run(["bash", "-c", f'umask {umask}; exec "$@"', "_", sys.executable, "-c", program,
                                 str(REPO_ROOT), str(sources.recipes)], env=env, cwd=cwd, capture_output=True)
        assert result.returncode == 0, result.stderr.decode()
        tars.append(result.stdout)
    assert tars[0] == tars[1]
    assert tars[0] == make_context_tar(build_context(image_plan(sources, "b:1")))


# --- apt packages ---------------------------------------------------------------


APT_TOOL = """name: apt-tool
description: An apt package, used by a build into its own prefix.
apt:
  - jq
prefix:
  APT_TOOL_HOME: /opt/apt-tool
build: |
  mkdir -p "$APT_TOOL_HOME"
  jq -n '"from jq"' > "$APT_TOOL_HOME/made-by"
"""
# What downloads and builds leave behind, if anything does.
LEFTOVERS = "ls -A /var/lib/apt/lists /var/cache/apt/archives /tmp /var/log/apt; ls -A /root/.cache 2>/dev/null; true"


# Last in the module: its build without the layer cache makes new engine layers
# (the same files), from which the builder would start the later builds here.
@pytest.mark.docker
def test_apt_packages_come_first_no_cache_or_build_tree_stays_and_the_image_is_reproducible(engine, session, base_image, sources):
    with recipe_of(sources, ["libhello", "greet", "apt-tool"], {"apt-tool": APT_TOOL}):
        built = build_plan(engine, session, image_plan(sources, base_image), session.tag("apt"))
        again = build_plan(engine, session, image_plan(sources, base_image), session.tag("apt-again"), no_cache=True)
    # dpkg's database, debconf and ldconfig's caches included, the same image.
    assert again.image_id == built.image_id
    assert "RUN bash /opt/envbuild/lib/run-component.sh --apt jq" in [s.instruction for s in built.progress.steps]
    assert built.component_steps(cached=False) == ["libhello", "apt-tool", "greet"]
    code, out, err = run_in(engine, session, built.tag, "cat /opt/apt-tool/made-by && "
                            "bash /opt/envbuild/setup_deps.sh >/dev/null && echo nothing to install")
    assert (code, out) == (0, '"from jq"\nnothing to install\n'), err
    # apt lists and archives, pip's cache and work directories: as in the base image.
    assert run_in(engine, session, built.tag, LEFTOVERS) == run_in(engine, session, base_image, LEFTOVERS)
