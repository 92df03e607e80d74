"""The generated runtime script, executed for real on a recipe with local sources."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from stamps import expected_stamp, stamp_of
from envbuild.pipeline import load_plan
from testrecipe import BROKEN


def test_first_run_installs_everything_and_writes_stamps(test_recipe):
    script = test_recipe.render()
    result = test_recipe.run(script)
    assert result.returncode == 0, result.stderr
    # Independent components build at the same time: greet, which needs libhello, after it.
    builds = test_recipe.builds()
    assert sorted(builds) == ["dataset", "greet", "libhello", "rank0-tool"]
    assert builds.index("libhello") < builds.index("greet")
    assert (test_recipe.root / "opt/hello/bin/hello").exists()
    assert (test_recipe.root / "opt/data/README").read_text() == "data\n"
    assert (test_recipe.root / "opt/tools/rank0").read_text() == "ready\n"
    assert subprocess.run([str(test_recipe.python), "-c", "import greet"]).returncode == 0
    stamps = sorted(p.name for p in (test_recipe.state / "stamps").iterdir())
    assert stamps == ["dataset", "greet", "libhello", "rank0-tool"]
    assert "installed 4, present 0, skipped 0 of 4 components" in result.stdout
    for name in stamps:
        assert re.search(rf"^envbuild: {name}: installed in \d+\.\d{{3}} s$", result.stdout, re.M)


def test_stamp_holds_the_key_the_library_computes(test_recipe):
    script = test_recipe.render()
    assert test_recipe.run(script).returncode == 0
    plan = load_plan(test_recipe.recipes, "testrecipe")
    for step in plan.steps:
        stamp = (test_recipe.state / "stamps" / step.name).read_text()
        assert stamp.endswith("\n") and stamp.count("\n") == 1
        assert stamp_of(stamp) == expected_stamp(plan, step)
        facts = dict(line.split("=", 1) for line in (test_recipe.state / "provenance" / step.name).read_text().splitlines())
        assert facts["component"] == step.name and facts["hash"] == step.hash
        assert facts["source"] == (step.component.source.pin if step.component.source else "")
        assert facts["recipe"] == "testrecipe" and facts["recipe_hash"] == plan.hash
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", facts["installed_at"])


def test_second_run_installs_nothing_and_starts_no_process(test_recipe):
    script = test_recipe.render()
    assert test_recipe.run(script).returncode == 0
    second = test_recipe.run(script)
    assert second.returncode == 0, second.stderr
    assert re.fullmatch(r"envbuild: all 4 components present \(0\.0\d\d s\)\n", second.stdout)
    assert sorted(test_recipe.builds()) == ["dataset", "greet", "libhello", "rank0-tool"]
    # strace sees every fork and exec: the skip path must have none beyond bash itself.
    trace = test_recipe.root / "trace"
    traced = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=execve,fork,vfork,clone,clone3", "-o", str(trace), "bash", str(script)],
        env=test_recipe.env(), capture_output=True, text=True,
    )
    assert traced.returncode == 0, traced.stderr
    calls = [line for line in trace.read_text().splitlines() if "---" not in line and "+++" not in line]
    assert len(calls) == 1, calls
    assert re.match(r'^\d+ +execve\("[^"]*/bash", \["bash", ', calls[0]), calls


def test_pin_change_reinstalls_the_component_and_its_dependents_only(test_recipe):
    script = test_recipe.render()
    assert test_recipe.run(script).returncode == 0
    test_recipe.set_hello_version(2)
    test_recipe.write()
    script = test_recipe.render()
    result = test_recipe.run(script)
    assert result.returncode == 0, result.stderr
    assert test_recipe.builds()[4:] == ["libhello", "greet"]
    assert "installed 2, present 2, skipped 0 of 4 components" in result.stdout
    out = subprocess.run([str(test_recipe.root / "opt/hello/bin/hello")], capture_output=True, text=True).stdout
    assert out == "hello 2\n"


def test_failing_step_leaves_no_stamp_and_names_component_and_log(test_recipe):
    test_recipe.extra_components["broken"] = BROKEN
    test_recipe.components.append("broken")
    test_recipe.write()
    script = test_recipe.render()
    result = test_recipe.run(script)
    assert result.returncode == 1
    log = test_recipe.state / "logs" / "broken.log"
    assert "envbuild: error: broken failed (exit 3) after " in result.stderr
    assert f"; log: {log}\n" in result.stderr
    assert "  | fatal: something is wrong\n" in result.stderr
    assert not (test_recipe.state / "stamps" / "broken").exists()
    assert (test_recipe.state / "stamps" / "libhello").exists()
    assert "fatal: something is wrong" in log.read_text()
    assert not list((test_recipe.root / "tmp").iterdir()), "work directories must be removed"


def test_a_failing_line_stops_the_step_even_when_later_lines_succeed(test_recipe):
    test_recipe.extra_components["half"] = """name: half
description: Its first command fails, its last succeeds.
build: |
  false
  echo "must not get here"
"""
    test_recipe.components[:] = ["half"]
    test_recipe.write()
    result = test_recipe.run(test_recipe.render())
    assert result.returncode == 1
    assert "envbuild: error: half failed (exit 1)" in result.stderr
    assert "must not get here" not in (test_recipe.state / "logs" / "half.log").read_text()
    assert not (test_recipe.state / "stamps" / "half").exists()


def test_failing_check_leaves_no_stamp(test_recipe):
    test_recipe.extra_components["unchecked"] = """name: unchecked
description: Builds, but its check fails.
build: |
  true
check: |
  test -x /nonexistent/tool
"""
    test_recipe.components[:] = ["unchecked"]
    test_recipe.write()
    result = test_recipe.run(test_recipe.render())
    assert result.returncode == 1
    assert "envbuild: error: unchecked failed (exit 1)" in result.stderr
    assert not (test_recipe.state / "stamps" / "unchecked").exists()


def test_node_rank_one_skips_rank_zero_component(test_recipe):
    script = test_recipe.render()
    result = test_recipe.run(script, NODE_RANK="1")
    assert result.returncode == 0, result.stderr
    assert "envbuild: rank0-tool: skipped (node rank 1 (from NODE_RANK); runs on NODE_RANK 0)\n" in result.stdout
    assert "rank0-tool" not in test_recipe.builds()
    assert "installed 3, present 0, skipped 1 of 4 components" in result.stdout
    again = test_recipe.run(script, NODE_RANK="1")
    assert re.search(r"^envbuild: all 3 components present, 1 skipped \(0\.0\d\d s\)$", again.stdout, re.M)


def test_slurm_node_id_is_the_rank_when_node_rank_is_unset(test_recipe):
    script = test_recipe.render()
    result = test_recipe.run(script, SLURM_NODEID="3")
    assert result.returncode == 0, result.stderr
    assert "envbuild: rank0-tool: skipped (node rank 3 (from SLURM_NODEID); runs on NODE_RANK 0)\n" in result.stdout
    assert "rank0-tool" not in test_recipe.builds()
    # NODE_RANK wins over Slurm's; --check and --list say which one was used.
    check = test_recipe.run(script, "--check", NODE_RANK="0", SLURM_NODEID="3")
    assert check.stdout.splitlines()[0] == "envbuild: node rank 0 (from NODE_RANK)"
    assert "envbuild: rank0-tool: missing" in check.stdout
    listing = test_recipe.run(script, "--list", SLURM_NODEID="3")
    assert listing.stdout.splitlines()[0] == "envbuild: node rank 3 (from SLURM_NODEID)"
    bad = test_recipe.run(script, SLURM_NODEID="x")
    assert bad.returncode == 2
    assert "envbuild: error: SLURM_NODEID='x' is not a whole number (the node's rank)" in bad.stderr


def test_bad_node_rank_is_refused(test_recipe):
    result = test_recipe.run(test_recipe.render(), NODE_RANK="first")
    assert result.returncode == 2
    assert "envbuild: error: NODE_RANK='first' is not a whole number" in result.stderr


def test_sourcing_exports_env_and_leaves_caller_options_alone(test_recipe):
    script = test_recipe.render()
    caller = f"""
set +e
trap 'echo caller-trap' USR1
source {script}
echo "rc=$?"
echo "HELLO_HOME=$HELLO_HOME"
echo "RANK0_TOOL=$RANK0_TOOL"
echo "TEST_RECIPE_ENV=$TEST_RECIPE_ENV"
echo "PATH_HEAD=${{PATH%%:*}}"
echo "opts=$-"
shopt -qo pipefail && echo pipefail-on || echo pipefail-off
trap -p USR1
declare -F _eb_main || echo "no engine functions left"
compgen -v _EB_ || echo "no engine variables left"
hello
"""
    result = subprocess.run(["bash", "-c", caller], env=test_recipe.env(), capture_output=True, text=True)
    out = result.stdout
    assert "rc=0\n" in out, result.stderr
    assert f"HELLO_HOME={test_recipe.root}/opt/hello\n" in out
    assert f"RANK0_TOOL={test_recipe.root}/opt/tools/rank0\n" in out
    assert "TEST_RECIPE_ENV=on\n" in out
    assert f"PATH_HEAD={test_recipe.root}/opt/hello/bin\n" in out
    assert "e" not in re.search(r"^opts=(\w*)$", out, re.M).group(1)
    assert "pipefail-off\n" in out
    assert "trap -- 'echo caller-trap' SIGUSR1\n" in out
    assert "no engine functions left\n" in out and "no engine variables left\n" in out
    assert out.endswith("hello 1\n")


def test_sourced_failure_returns_to_the_caller(test_recipe):
    test_recipe.extra_components["broken"] = """name: broken
description: A build that fails.
build: |
  exit 4
"""
    test_recipe.components[:] = ["broken"]
    test_recipe.write()
    script = test_recipe.render()
    caller = f"source {script}; echo \"caller still here, rc=$?\"; echo \"TEST_RECIPE_ENV=${{TEST_RECIPE_ENV:-unset}}\""
    result = subprocess.run(["bash", "-c", caller], env=test_recipe.env(), capture_output=True, text=True)
    assert "caller still here, rc=1\n" in result.stdout
    assert "TEST_RECIPE_ENV=unset\n" in result.stdout
    assert "envbuild: error: broken failed (exit 4)" in result.stderr
    # A caller with `set -e` gets the failure from its own `source` line, as with any command.
    strict = f"set -e; trap 'echo \"caller stopped at line $LINENO\"' EXIT; source {script}; echo not-reached"
    result = subprocess.run(["bash", "-c", strict], env=test_recipe.env(), capture_output=True, text=True)
    assert result.returncode == 1
    assert "not-reached" not in result.stdout and "caller stopped at line 1" in result.stdout


def test_check_mode_reports_and_exits_three_until_installed(test_recipe):
    script = test_recipe.render()
    check = test_recipe.run(script, "--check")
    assert check.returncode == 3
    assert check.stdout.startswith("envbuild: node rank 0 (from the default; neither NODE_RANK nor SLURM_NODEID "
                                   "is set)\nenvbuild: libhello: missing\nenvbuild: greet: missing\n")
    assert "envbuild: 4 of 4 components to install" in check.stdout
    assert test_recipe.builds() == []
    assert test_recipe.run(script).returncode == 0
    check = test_recipe.run(script, "--check")
    assert check.returncode == 0
    assert "envbuild: libhello: present\n" in check.stdout


def test_outdated_stamp_is_reported_as_outdated(test_recipe):
    script = test_recipe.render()
    assert test_recipe.run(script).returncode == 0
    check = test_recipe.run(script, "--check", HELLO_HOME=str(test_recipe.root / "elsewhere"))
    assert check.returncode == 3
    assert "envbuild: libhello: outdated\nenvbuild: greet: outdated\n" in check.stdout


def test_force_reinstalls_component_and_dependents(test_recipe):
    script = test_recipe.render()
    assert test_recipe.run(script).returncode == 0
    result = test_recipe.run(script, "--force", "libhello")
    assert result.returncode == 0, result.stderr
    assert test_recipe.builds()[4:] == ["libhello", "greet"]


def test_only_installs_one_component_and_needs_its_dependencies(test_recipe):
    script = test_recipe.render()
    refused = test_recipe.run(script, "--only", "greet")
    assert refused.returncode == 1
    assert "envbuild: error: greet needs libhello, which is missing; install it first" in refused.stderr
    assert test_recipe.run(script, "--only", "libhello").returncode == 0
    assert test_recipe.builds() == ["libhello"]
    assert test_recipe.run(script, "--only", "greet").returncode == 0
    assert test_recipe.builds() == ["libhello", "greet"]


def test_usage_errors_exit_two(test_recipe):
    script = test_recipe.render()
    cases = {
        ("--bogus",): "envbuild: error: unknown option '--bogus' (see --help)\n",
        ("--only",): "envbuild: error: --only needs a component name (see --help)\n",
        ("--force", "nope"): "envbuild: error: unknown component 'nope' (components: libhello greet dataset rank0-tool)\n",
    }
    for args, message in cases.items():
        result = test_recipe.run(script, *args)
        assert (result.returncode, result.stderr, result.stdout) == (2, message, ""), args
    relative = test_recipe.run(script, "--check", HELLO_HOME="opt/hello")
    assert relative.returncode == 2
    assert relative.stderr == (f"envbuild: error: HELLO_HOME='opt/hello' is not an absolute path (an install prefix; "
                               f"the default is {test_recipe.root}/opt/hello)\n")
    by_sh = subprocess.run(["sh", str(script)], env=test_recipe.env(), capture_output=True, text=True)
    assert by_sh.returncode == 2
    assert by_sh.stderr == "envbuild: error: this script runs under bash 4 or newer, not sh: bash setup_deps.sh\n"
    assert test_recipe.builds() == []


def test_env_prints_exports_that_eval_back(test_recipe):
    script = test_recipe.render()
    result = test_recipe.run(script, "--env", NODE_RANK="1")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert f"export HELLO_HOME={test_recipe.root}/opt/hello" in lines
    assert "export TEST_RECIPE_ENV=on" in lines
    assert not any(line.startswith("export RANK0_TOOL=") for line in lines)
    assert test_recipe.builds() == []


def test_list_and_help(test_recipe):
    script = test_recipe.render()
    header, *listing = test_recipe.run(script, "--list").stdout.splitlines()
    assert header == "envbuild: node rank 0 (from the default; neither NODE_RANK nor SLURM_NODEID is set)"
    assert [line.split()[0] for line in listing] == ["libhello", "greet", "dataset", "rank0-tool"]
    assert "needs libhello" in listing[1] and "NODE_RANK in 0" in listing[3]
    helptext = test_recipe.run(script, "--help").stdout
    assert "--check" in helptext and "ENVBUILD_STATE_DIR" in helptext and "HELLO_HOME" in helptext


def test_tarball_checksum_mismatch_stops_the_install(test_recipe):
    (test_recipe.server.root / "dataset-1.0.tar.gz").write_bytes(b"tampered")
    result = test_recipe.run(test_recipe.render(), "--only", "dataset")
    assert result.returncode == 1
    assert f"sha256 mismatch for {test_recipe.server.url}/dataset-1.0.tar.gz: expected {test_recipe.dataset_sha256}" in result.stderr
    assert not (test_recipe.root / "opt/data").exists()


def test_wrong_commit_in_repository_is_refused(test_recipe):
    test_recipe.libhello_commit = "ab" * 20
    test_recipe.write()
    result = test_recipe.run(test_recipe.render(), "--only", "libhello")
    assert result.returncode == 1
    assert "envbuild: error: libhello failed" in result.stderr
    log = (test_recipe.state / "logs" / "libhello.log").read_text()
    assert "fetching abababababababababababababababababababab by itself failed" in log
    assert not (test_recipe.state / "stamps" / "libhello").exists()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is installed by scripts/test")
def test_generated_script_is_shellcheck_clean(test_recipe):
    result = subprocess.run(["shellcheck", str(test_recipe.render())], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_force_rebuilds_from_source_even_with_a_cache_entry(test_recipe):
    script = test_recipe.render()
    cache = str(test_recipe.root / "cache")
    assert test_recipe.run(script, ENVBUILD_CACHE_DIR=cache).returncode == 0
    result = test_recipe.run(script, "--force", "libhello", ENVBUILD_CACHE_DIR=cache)
    assert result.returncode == 0, result.stderr
    assert "envbuild: libhello: installing" in result.stdout
    # Its dependent is reinstalled too; the same build of it is in the cache.
    assert "envbuild: greet: restored from the shared cache" in result.stdout
    assert test_recipe.builds()[4:] == ["libhello"]


def libhello_with(test_recipe, build_prefix: str) -> None:
    """libhello at version 2 whose build starts with `build_prefix` (bash lines)."""
    from testrecipe import COMPONENTS

    test_recipe.extra_components["libhello"] = COMPONENTS["libhello"].replace("build: |\n", "build: |\n" + build_prefix)
    test_recipe.set_hello_version(2)
    test_recipe.write()


def hello_output(test_recipe) -> str:
    hello = test_recipe.root / "opt/hello/bin/hello"
    return subprocess.run([str(hello)], capture_output=True, text=True).stdout if hello.exists() else ""


def test_a_failed_reinstall_puts_the_previous_install_back(test_recipe):
    assert test_recipe.run(test_recipe.render()).returncode == 0
    old_stamp = (test_recipe.state / "stamps" / "libhello").read_text()
    # Version 2 installs its files, then fails: its half-done install must not stay.
    libhello_with(test_recipe, '  make -j"$EB_JOBS"\n  make install PREFIX="$HELLO_HOME"\n  exit 5\n')
    result = test_recipe.run(test_recipe.render())
    assert result.returncode == 1
    assert "envbuild: error: libhello failed (exit 5)" in result.stderr
    assert hello_output(test_recipe) == "hello 1\n"
    assert (test_recipe.state / "stamps" / "libhello").read_text() == old_stamp
    assert sorted(p.name for p in (test_recipe.root / "opt").iterdir()) == ["data", "hello", "tools"]
    assert sorted(p.name for p in (test_recipe.state / "stamps").iterdir()) == ["dataset", "greet", "libhello", "rank0-tool"]


def test_a_killed_reinstall_is_undone_by_the_next_run(test_recipe):
    import os
    import signal
    import time

    first = test_recipe.render(test_recipe.root / "v1.sh")
    assert test_recipe.run(first).returncode == 0
    libhello_with(test_recipe, '  make -j"$EB_JOBS"\n  make install PREFIX="$HELLO_HOME"\n  sleep 60\n')
    run = subprocess.Popen(["bash", str(test_recipe.render())], env=test_recipe.env(), start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while hello_output(test_recipe) != "hello 2\n":  # version 2's files are in place, its stamp is not
        assert time.monotonic() < deadline and run.poll() is None
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert not (test_recipe.state / "stamps" / "libhello").exists()  # no stamp without its files
    # The recipe back at version 1: the old install is put back, and nothing is built.
    again = test_recipe.run(first)
    assert again.returncode == 0, again.stderr
    assert again.stdout == (f"envbuild: libhello: a run killed while replacing it (pid {run.pid}) is undone: "
                            "the previous install is back\n") + again.stdout.splitlines(keepends=True)[-1]
    assert re.fullmatch(r"envbuild: all 4 components present \(0\.\d+ s\)\n", again.stdout.splitlines(keepends=True)[-1])
    assert hello_output(test_recipe) == "hello 1\n"
    assert test_recipe.builds().count("libhello") == 1  # the first install; the killed one died before counting
    assert sorted(p.name for p in (test_recipe.root / "opt").iterdir()) == ["data", "hello", "tools"]
    assert sorted(p.name for p in (test_recipe.state / "stamps").iterdir()) == ["dataset", "greet", "libhello", "rank0-tool"]
    assert list((test_recipe.state / "txn").iterdir()) == []
