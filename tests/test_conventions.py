"""Conventions users expect of the CLI and the script: quiet, machine-readable, one exit-code table,
the same options wherever a plan is made, completion, and a script that works sourced."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from envbuild import __version__
from envbuild.cli import main
from envbuild.errors import EXIT_STATUSES
from envbuild.pipeline import load_plan
from envbuild.spec.loader import Library
from test_cli import walk
from test_lock import NO_DOCKER, PATCH, PATCHES_YAML, _edit

README = Path(__file__).resolve().parent.parent / "README.md"
UNVERIFIED = """name: shared
description: A download both recipes use, its sha256 unknown.
source:
  url: https://example.invalid/shared-1.0.tar.gz
  sha256: unknown
"""


def without_envbuild_settings() -> dict[str, str]:
    """This environment without ENVBUILD_* settings, but for where the built-in recipes are (ENVBUILD_RECIPES)."""
    return {key: value for key, value in os.environ.items()
            if not key.startswith("ENVBUILD_") or key == "ENVBUILD_RECIPES"}


def envbuild(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = without_envbuild_settings()
    return subprocess.run([sys.executable, "-m", "envbuild", *args], cwd=cwd, capture_output=True, text=True,
                          env={**environment, **NO_DOCKER, **(env or {})})


def two_recipes(root: Path) -> Path:
    """Recipes r and s sharing component `shared`, whose download is unverified; no locks."""
    (root / "components").mkdir(parents=True)
    (root / "components" / "shared.yaml").write_text(UNVERIFIED)
    for name in ("r", "s"):
        (root / f"{name}.yaml").write_text(f"name: {name}\ndescription: {name.upper()}.\nbase_image: debian:bookworm\n"
                                           "components:\n  - shared\n")
    return root


# --- 1. warnings once, --quiet --------------------------------------------------------------------


@pytest.mark.parametrize("command", [c for c in walk(main) if c != ("patches",)], ids=" ".join)
def test_every_command_takes_quiet(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert "-q, --quiet" in result.output


def test_each_warning_once_and_quiet_silences_them(tmp_path):
    recipes = two_recipes(tmp_path / "recipes")
    warning = ("envbuild: warning: recipes/components/shared.yaml: source.sha256: the download of shared is "
               "unverified (sha256 unknown); `envbuild lock --recipe {} --recipes-dir recipes` records it\n")
    result = envbuild("validate", "--recipes-dir", str(recipes), cwd=tmp_path)
    assert result.returncode == 0
    # Both recipes use it: said once for each, naming the command that writes each one's lock.
    assert result.stderr == warning.format("r") + warning.format("s")
    assert result.stdout.splitlines()[0].startswith("r: ok (1 component, hash ")
    quiet = envbuild("validate", "--recipes-dir", str(recipes), "--quiet", cwd=tmp_path)
    assert (quiet.returncode, quiet.stderr, quiet.stdout) == (0, "", result.stdout)
    plan = envbuild("plan", "-q", "--recipes-dir", str(recipes), "-r", "r", "--format", "json", cwd=tmp_path)
    assert plan.stderr == "" and json.loads(plan.stdout)["recipe"] == "r"
    script = envbuild("runtime-script", "-q", "--recipes-dir", str(recipes), "-r", "r", "-o",
                      str(tmp_path / "s.sh"), cwd=tmp_path)
    assert (script.returncode, script.stderr, script.stdout) == (0, "", "")


def test_the_same_problem_is_printed_once(tmp_path):
    recipes = two_recipes(tmp_path / "recipes")
    (recipes / "components" / "shared.yaml").write_text(UNVERIFIED.replace("https://example.invalid/", "/srv/"))
    result = envbuild("validate", "--recipes-dir", str(recipes), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == ("recipes/components/shared.yaml:4: source.url: '/srv/shared-1.0.tar.gz' is not a valid "
                             "https/http/file URL; a path on this machine is written as a file URL: "
                             "file:///srv/shared-1.0.tar.gz\n")


# --- 2. --format json ---------------------------------------------------------------------------


def test_list_and_validate_as_json(tmp_path):
    recipes = two_recipes(tmp_path / "recipes")
    (recipes / "default").write_text("s\n")
    listing = json.loads(envbuild("list", "--recipes-dir", str(recipes), "--format", "json", cwd=tmp_path).stdout)
    assert listing == {"recipes_dir": "recipes", "default": "s", "recipes": [
        {"name": name, "summary": f"{name.upper()}.", "description": f"{name.upper()}.",
         "file": f"recipes/{name}.yaml", "base_image": "debian:bookworm", "default": name == "s"}
        for name in ("r", "s")]}

    valid = json.loads(envbuild("validate", "--recipes-dir", str(recipes), "--format", "json", cwd=tmp_path).stdout)
    assert valid["ok"] is True and valid["problems"] == []
    assert [(r["name"], r["components"]) for r in valid["recipes"]] == [("r", 1), ("s", 1)]
    (recipes / "s.yaml").write_text("name: s\ndescription: S.\ncomponents:\n  - shared\n  - nope\n")
    invalid = envbuild("validate", "--recipes-dir", str(recipes), "--format", "json", cwd=tmp_path)
    assert invalid.returncode == 2
    doc = json.loads(invalid.stdout)
    assert doc["ok"] is False and [r["name"] for r in doc["recipes"]] == ["r"]
    assert doc["problems"] == [{"file": "recipes/s.yaml", "line": 1, "key": "base_image",
                                "message": "missing required key (and no recipe it extends sets one)"}]


def test_plan_patches_and_diff_as_json(tmp_path):
    plan = json.loads(envbuild("plan", "--nic-family", "bnxt", "--format", "json").stdout)
    assert plan["nic_family"] == "bnxt" and plan["cluster"] is None
    assert plan["python"] == {"version": "3.12", "platform": "manylinux_2_35_x86_64", "protected": [
        "torch", "torchvision", "torchaudio", "triton", "pytorch-triton-rocm", "vllm", "numpy"]}
    assert plan["gpu_target"] == "gfx950"
    proxy = next(c for c in plan["components"] if c["name"] == "moriio-proxy-deps")
    assert [group["requirements"] for group in proxy["pip"]] == [["blinker"], ["quart", "aiohttp", "msgpack", "pyzmq"]]
    # Their lock was made without the base image (it cannot be pulled here): unverified, not applied.
    assert [(group["locked"], group["base"]) for group in proxy["pip"]] == [([], []), ([], [])]

    patches = json.loads(envbuild("patches", "list", "--format", "json").stdout)["patches"]
    assert {p["name"] for p in patches} >= {"idle-kv-reaper", "rixl-ucx-error-mode"}
    checked = envbuild("patches", "check", "--site-packages", str(tmp_path), "--format", "json")
    assert checked.returncode == 3
    doc = json.loads(checked.stdout)
    assert doc["ok"] is False and doc["site_packages"] == str(tmp_path)
    assert {p["status"] for p in doc["patches"]} == {"not-installed", "blocked"}

    same = envbuild("diff", "mi355x-moriio", "mi355x-moriio", "--format", "json")
    assert same.returncode == 0 and json.loads(same.stdout)["equal"] is True
    differ = envbuild("diff", "mi355x-moriio", "mi355x-nixl", "--format", "json")
    assert differ.returncode == 3
    assert {"component": "vllm-router", "kind": "added", "detail": "no source"} in json.loads(differ.stdout)["changes"]


@pytest.mark.docker
def test_image_summary_as_json(tmp_path, engine, base_image, session):
    recipes = tmp_path / "recipes"
    (recipes / "components").mkdir(parents=True)
    (recipes / "components" / "hello.yaml").write_text("name: hello\ndescription: H.\nbuild: |\n  echo hello\n")
    (recipes / "tiny.yaml").write_text(f"name: tiny\ndescription: T.\nbase_image: {base_image}\n"
                                       "components:\n  - hello\n")
    tag = session.tag("json")  # removed with the session's images
    args = ["image", "--recipes-dir", str(recipes), "-r", "tiny", "--tag", tag, "--no-pull", "--format", "json"]
    docker = {"DOCKER_HOST": os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")}
    built = envbuild(*args, env=docker)
    assert built.returncode == 0, built.stderr
    doc = json.loads(built.stdout)
    assert (doc["tags"], doc["reused"]) == ([tag], False)
    assert doc["image_id"] == engine.api.inspect_image(tag)["Id"] and doc["seconds"] > 0
    [hello] = doc["components"]
    # seconds: null when an earlier run's layer was reused (this recipe is the same in every run)
    assert hello["name"] == "hello" and (hello["seconds"] is None or hello["seconds"] > 0)
    assert hello["added_bytes"] > 0
    assert doc["added_bytes"] > hello["added_bytes"]  # the engine and setup_deps.sh too
    again = envbuild(*args, env=docker)
    assert json.loads(again.stdout) == {"tags": [tag], "image_id": doc["image_id"], "seconds": 0.0, "reused": True,
                                        "components": [], "added_bytes": 0}


# --- 3. one exit-code table ------------------------------------------------------------------------


def test_the_exit_code_table_is_in_help_and_readme():
    helptext = CliRunner().invoke(main, ["--help"]).output
    readme = README.read_text()
    for code, meaning in EXIT_STATUSES:
        assert re.search(rf"^\s+{code}\s+{re.escape(meaning)}$", helptext, re.M), code
        assert f"| {code} | {meaning} |" in readme, code


def test_usage_errors_exit_two_and_mismatches_three(tmp_path):
    assert envbuild("plan", "--nic-family", "token-ring").returncode == 2
    assert envbuild("patches", "show", "nope").returncode == 2
    assert envbuild("patches", "check", "--python", "/nonexistent/python").returncode == 2
    lock_check = envbuild("lock", "--check", "--recipes-dir", str(two_recipes(tmp_path / "recipes")), "-r", "r",
                          cwd=tmp_path)
    assert lock_check.returncode == 3
    assert lock_check.stderr.endswith("envbuild: error: recipes/r.lock does not exist; "
                                      "write it with `envbuild lock --recipe r --recipes-dir recipes`\n")


class SilentServer:
    """Accepts connections on 127.0.0.1 and never answers: a download that hangs."""

    def __init__(self):
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.held.append(self.socket.accept()[0])
            except OSError:
                return

    def close(self):
        self.socket.close()
        for connection in self.held:
            connection.close()


@pytest.mark.parametrize("command", [["lock", "--timeout", "60"], ["fetch", "--into", "sources"]])
def test_ctrl_c_exits_130(tmp_path, command):
    server = SilentServer()
    try:
        recipes = two_recipes(tmp_path / "recipes")
        (recipes / "components" / "shared.yaml").write_text(
            UNVERIFIED.replace("https://example.invalid", server.url))
        environment = without_envbuild_settings()
        run = subprocess.Popen([sys.executable, "-m", "envbuild", *command, "--recipes-dir", str(recipes), "-r", "r"],
                               cwd=tmp_path, env=dict(environment, **NO_DOCKER), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not server.held:  # the download has started and hangs
            assert time.monotonic() < deadline and run.poll() is None
            time.sleep(0.02)
        run.send_signal(signal.SIGINT)
        stdout, stderr = run.communicate(timeout=30)
    finally:
        server.close()
    assert run.returncode == 130
    assert stderr.endswith("envbuild: interrupted\n") and "Traceback" not in stderr and "Aborted" not in stderr


def shell_status(returncode: int) -> int:
    """The status a shell reports for a child: 128+N when signal N ended it."""
    return 128 - returncode if returncode < 0 else returncode


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_the_script_ends_130_or_143_on_a_signal(test_recipe, sig, status):
    test_recipe.extra_components["sleeper"] = ("name: sleeper\ndescription: Sleeps.\nbuild: |\n"
                                               "  echo started\n  sleep 60\n")
    test_recipe.components[:] = ["sleeper"]
    test_recipe.write()
    run = subprocess.Popen(["bash", str(test_recipe.render())], env=test_recipe.env(), start_new_session=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = test_recipe.state / "logs" / "sleeper.log"
    deadline = time.monotonic() + 30
    while not (log.exists() and "started" in log.read_text()):
        assert time.monotonic() < deadline and run.poll() is None
        time.sleep(0.02)
    os.killpg(run.pid, sig)  # as a terminal's Ctrl-C does: the whole process group
    run.communicate(timeout=30)
    assert shell_status(run.returncode) == status


# --- 5. the target's Python ---------------------------------------------------------------------------


def test_patches_check_looks_in_the_python_it_is_given(test_recipe, tmp_path):
    patches = test_recipe.recipes / "patches" / "greet-1.0"
    patches.mkdir(parents=True)
    (patches / "patches.yaml").write_text(PATCHES_YAML)
    (patches / "greet-fix.patch").write_text(PATCH.format(word="hello"))
    (test_recipe.recipes / "components" / "greet-patches.yaml").write_text(
        "name: greet-patches\ndescription: Patches greet once installed.\ndepends:\n  - greet\n"
        "patches:\n  - greet-fix\n")
    _edit(test_recipe.recipes / "testrecipe.yaml", "  - greet\n", "  - greet\n  - greet-patches\n")
    installed = test_recipe.run(test_recipe.render())
    assert installed.returncode == 0, installed.stderr

    def check(*args: str, **env: str) -> subprocess.CompletedProcess:
        return envbuild("patches", "check", "-r", "testrecipe", "--recipes-dir", str(test_recipe.recipes), *args,
                        cwd=tmp_path, env=env)

    python = str(test_recipe.python)
    told = check("--python", python)
    assert told.returncode == 0, told.stderr
    assert told.stdout == "greet-fix  applied           greet 1.0\n"
    assert check(ENVBUILD_PYTHON=python).stdout == told.stdout
    # By default python3 from PATH, as the runtime script: here the venv's, never envbuild's own.
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "python3").write_text(f'#!/bin/sh\nexec {python} "$@"\n')
    (shims / "python3").chmod(0o755)
    assert check(PATH=f"{shims}:{os.environ['PATH']}").stdout == told.stdout
    own = check("--python", sys.executable)
    assert own.returncode == 3
    assert own.stdout == ("greet-fix  not-installed     distribution greet is not installed "
                          f"(looked in the sys.path of {sys.executable})\n")
    missing = check("--python", str(tmp_path / "nope"))
    assert (missing.returncode, missing.stdout) == (2, "")
    assert missing.stderr == f"envbuild: error: cannot run the Python {tmp_path / 'nope'}: No such file or directory\n"


# --- 6. the script's interface --------------------------------------------------------------------------


def test_sourced_options_work_and_a_launchers_own_arguments_are_not_read(test_recipe):
    script = test_recipe.render()

    def sourced(body: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", body], env=test_recipe.env(), capture_output=True, text=True)

    check = sourced(f'source {script} --check; echo "rc=$?"')
    assert "envbuild: libhello: missing\n" in check.stdout and check.stdout.endswith("rc=3\n")
    assert test_recipe.builds() == []
    for option, expected in (("--list", "libhello "), ("--help", "Usage: bash setup_deps.sh"),
                             ("--version", "setup_deps.sh: recipe testrecipe (hash "), ("--env", "export ")):
        result = sourced(f'source {script} {option}; echo "rc=$?"')
        assert expected in result.stdout and result.stdout.endswith("rc=0\n"), option
    assert sourced(f"source {script} --only nope").returncode == 2
    assert test_recipe.builds() == []

    launcher = sourced(f'launch() {{ source {script}; echo "rc=$? HELLO_HOME=$HELLO_HOME"; }}; launch --port 8000')
    assert launcher.stdout.endswith(f"rc=0 HELLO_HOME={test_recipe.root}/opt/hello\n"), launcher.stderr
    assert sorted(test_recipe.builds()) == ["dataset", "greet", "libhello", "rank0-tool"]


def test_help_names_every_variable_the_script_reads_and_version_says_what_it_is(test_recipe):
    script = test_recipe.render()
    helptext = test_recipe.run(script, "--help").stdout
    read = set(re.findall(r"\bENVBUILD_[A-Z_]+\b", script.read_text())) | {"NODE_RANK", "SLURM_NODEID", "TMPDIR"}
    assert read >= {"ENVBUILD_CACHE_DIR", "ENVBUILD_SOURCE_DIR", "ENVBUILD_JOBS", "ENVBUILD_ROOT",
                    "ENVBUILD_LOCK_TIMEOUT"}
    for variable in sorted(read):
        assert re.search(rf"^  {variable} ", helptext, re.M), variable
    prefixes = next(line for line in helptext.splitlines() if line.endswith("  install prefixes (absolute paths)"))
    assert sorted(prefixes.split()[:-4]) == ["DATA_HOME", "HELLO_HOME", "TOOLS_HOME"]
    version = test_recipe.run(script, "--version")
    assert version.stdout == (f"setup_deps.sh: recipe testrecipe (hash {load_plan(test_recipe.recipes, 'testrecipe').hash}),"
                              f" written by envbuild {__version__}\n")


def test_check_and_list_say_the_nic_family_and_where_it_came_from(test_recipe):
    test_recipe.extra_components["flavoured"] = ("name: flavoured\ndescription: Built per NIC family.\n"
                                                 "nic_specific: true\nbuild: |\n  echo \"$EB_NIC_FAMILY\"\n")
    test_recipe.components.append("flavoured")
    test_recipe.write()
    script = test_recipe.render()
    line = "envbuild: NIC family none (from ENVBUILD_NIC_FAMILY); built for it: flavoured"
    check = test_recipe.run(script, "--check")
    assert check.stdout.splitlines()[1] == line
    listing = test_recipe.run(script, "--list")
    assert listing.stdout.splitlines()[1] == line
    quiet = test_recipe.run(script, "--check", "--quiet")
    assert (quiet.returncode, quiet.stdout) == (3, "")


# --- 7. consistent options, paths ---------------------------------------------------------------------


@pytest.mark.parametrize("command", [["plan"], ["runtime-script"], ["dockerfile"], ["image"], ["lock"], ["fetch"],
                                     ["validate"], ["patches", "check"]])
def test_nic_family_and_cluster_wherever_a_plan_is_made(command):
    helptext = CliRunner().invoke(main, [*command, "--help"]).output
    assert "--nic-family [ionic|mlx5|bnxt|none]" in helptext and "--cluster PROFILE" in helptext


def test_a_prefix_with_spaces_and_letters_of_any_script_installs_and_reads_back(test_recipe, tmp_path):
    prefix = test_recipe.root / "opt" / "mes outils ü"
    test_recipe.extra_components["spaced"] = (
        f"name: spaced\ndescription: Installs into a path with a space.\nprefix:\n  SPACED_HOME: {prefix}\n"
        "build: |\n  mkdir -p \"$SPACED_HOME\"\n  echo ok > \"$SPACED_HOME/ok\"\n"
        "check: |\n  test -f \"$SPACED_HOME/ok\"\n")
    test_recipe.components[:] = ["spaced"]
    test_recipe.write()
    script = test_recipe.render()
    check = test_recipe.run(script, "--check")
    assert check.returncode == 3 and re.search(r"^envbuild: 1 of 1 component to install \(\d+\.\d+ s\)$", check.stdout, re.M)
    installed = test_recipe.run(script)
    assert installed.returncode == 0
    assert re.search(r"^envbuild: installed 1, present 0, skipped 0 of 1 component \(\d+\.\d+ s\)$", installed.stdout, re.M)
    assert (prefix / "ok").read_text() == "ok\n"
    again = test_recipe.run(script)
    assert re.fullmatch(r"envbuild: 1 component present \(\d+\.\d+ s\)\n", again.stdout)  # not "all 1 components"
    facts = json.loads(envbuild("inspect", str(test_recipe.state), "--format", "json", cwd=tmp_path).stdout)
    assert facts["components"][0]["details"]["stamp"].endswith(f" SPACED_HOME={prefix}")


def test_etcd_has_a_directory_of_its_own_on_path():
    etcd = Library().component("etcd")
    assert etcd.prefix == (("ETCD_HOME", "/usr/local/etcd"),)
    assert etcd.env.path == (("PATH", ("${ETCD_HOME}",)),)


# --- 8. completion ------------------------------------------------------------------------------------


def complete(words: str) -> list[str]:
    result = envbuild(env={"_ENVBUILD_COMPLETE": "bash_complete", "COMP_WORDS": words,
                           "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1))})
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_completion_of_commands_recipes_clusters_and_patches():
    assert "plain,plan" in complete("envbuild pl")
    assert complete("envbuild plan --recipe mi355x-n") == ["plain,mi355x-nixl", "file,mi355x-n"]
    assert {"plain,mi355x-moriio", "plain,mi355x-nixl"} <= set(complete("envbuild runtime-script -r "))
    assert complete("envbuild image --cluster m") == ["plain,mia1"]
    assert complete("envbuild detect-nic --cluster ") == ["plain,ionic-4n", "plain,mia1"]
    assert complete("envbuild patches show idle") == ["plain,idle-kv-reaper"]
    assert complete("envbuild plan -r ./rec") == ["file,./rec"]
