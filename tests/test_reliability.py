"""Installs that survive anything (issue 13), beyond the crash points of test_crash_points.py:
signals in the middle of real steps, locks taken before changes, a best-effort cache,
corrupt entries of every form, bounded downloads, heartbeats, clock-safe sweeping.

Everything runs for real: the generated script on the local test recipe, nodes in
namespaces sharing one cache (tests/nodes.py), misbehaving servers on 127.0.0.1
(tests/badnet.py). Every wait has a timeout.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from badnet import Answer, ScriptedServer, UnreachablePort
from localsources import make_tarball, sha256
from nodes import ARCHIVE, Cluster, lock_waiters, wait_until, write_wrappers

HELLO = "opt/hello/bin/hello"
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def hello(root: Path) -> str:
    path = root / HELLO
    return subprocess.run([str(path)], capture_output=True, text=True).stdout if path.exists() else ""


@contextlib.contextmanager
def lock_held(path: Path):
    """Another program (flock) holds the lock on `path` meanwhile."""
    holder = subprocess.Popen(["flock", str(path), "sleep", "300"], start_new_session=True)
    try:
        wait_until(lambda: subprocess.run(["flock", "-n", str(path), "true"]).returncode != 0, [holder],
                   f"flock holding {path}")
        yield
    finally:
        os.killpg(holder.pid, signal.SIGKILL)  # flock and the sleep that holds the lock with it
        holder.wait()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


# --- SIGINT and SIGTERM in the middle of a step -------------------------------------------


@pytest.fixture
def reinstall(test_recipe, tmp_path):
    """libhello 1 installed; version 2's script, whose `make install` hangs (tests/nodes.py wrappers)."""
    first = test_recipe.render(test_recipe.root / "v1.sh")
    assert test_recipe.run(first).returncode == 0
    test_recipe.set_hello_version(2)
    test_recipe.write()
    wrappers = write_wrappers(tmp_path / "bin")
    marks = tmp_path / "marks"
    marks.mkdir()
    env = test_recipe.env(PATH=f"{wrappers}:{test_recipe.env()['PATH']}", EB_TEST_HANG="make install*",
                          EB_TEST_HANG_MARKS=str(marks))
    return first, test_recipe.render(), env, marks


def start_hanging(test_recipe, script: Path, env: dict, marks: Path, argv: list[str] | None = None
                  ) -> tuple[subprocess.Popen, int]:
    """The run (`bash SCRIPT`, or argv), once its step hangs; and the pid of the hanging wrapper."""
    proc = subprocess.Popen(argv or ["bash", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=test_recipe.root, start_new_session=True)
    wait_until(lambda: any(marks.iterdir()), [proc], "the step hanging in make install")
    return proc, int(next(marks.iterdir()).name)


@pytest.mark.parametrize("how", ["SIGINT to the process group (Ctrl-C)", "SIGTERM to the main process alone"])
def test_an_interrupted_reinstall_puts_the_old_install_back_and_says_so(test_recipe, reinstall, how):
    first, script, env, marks = reinstall
    state = test_recipe.state
    old_stamp = (state / "stamps/libhello").read_text()
    proc, wrapper = start_hanging(test_recipe, script, env, marks)
    started = time.monotonic()
    if how.startswith("SIGINT"):
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    # A signal to the main process alone ends the step at once, not when the step would have ended.
    assert time.monotonic() - started < 15
    name, status = ("SIGINT", 130) if how.startswith("SIGINT") else ("SIGTERM", 143)
    assert proc.returncode == status
    assert err == f"envbuild: error: interrupted by {name} while installing libhello: the previous install is in place\n"
    assert not alive(wrapper), "the step's processes must be stopped"
    assert hello(test_recipe.root) == "hello 1\n"
    assert (state / "stamps/libhello").read_text() == old_stamp
    assert list((state / "txn").iterdir()) == []
    assert sorted(p.name for p in state.iterdir()) == ["install.lock", "logs", "provenance", "stamps", "txn"]
    assert list((test_recipe.root / "tmp").iterdir()) == []
    assert sorted(p.name for p in (test_recipe.root / "opt").iterdir()) == ["data", "hello", "tools"]
    again = test_recipe.run(first)
    assert re.fullmatch(r"envbuild: all 4 components present \(0\.\d+ s\)\n", again.stdout), again.stdout


@pytest.mark.parametrize("caller,signal_to,status,said", [
    ("source {script} && echo launched", "caller", 143, ""),
    ("trap 'echo caller-trap; exit 7' TERM; source {script}; echo launched", "caller", 7, "caller-trap\n"),
    ("source {script} && echo launched", "group", 130, ""),
])
def test_a_sourced_install_stops_when_its_caller_is_signalled(test_recipe, reinstall, caller, signal_to, status, said):
    """`docker stop` sends SIGTERM to PID 1 only: the caller that sources the script. The install, which
    runs in a child of it, is stopped and undone at once; then the caller's trap runs, or it ends as the
    signal ends it. Ctrl-C (SIGINT to the process group) reaches both, with the same result."""
    first, script, env, marks = reinstall
    proc, wrapper = start_hanging(test_recipe, script, env, marks, ["bash", "-c", caller.format(script=script)])
    started = time.monotonic()
    if signal_to == "group":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - started < 15
    assert proc.returncode == status
    assert out.endswith(said) and "launched" not in out
    name = "SIGINT" if signal_to == "group" else "SIGTERM"
    assert err == f"envbuild: error: interrupted by {name} while installing libhello: the previous install is in place\n"
    assert not alive(wrapper)
    assert hello(test_recipe.root) == "hello 1\n"
    assert list((test_recipe.state / "txn").iterdir()) == []


def test_a_step_left_running_by_a_main_process_killed_alone_is_stopped_by_the_next_run(test_recipe, reinstall):
    """kill -9 of the main process alone (the OOM killer's way): its step goes on, orphaned. The
    next run stops it before it puts the old install back, so that it cannot write over it."""
    first, script, env, marks = reinstall
    proc, wrapper = start_hanging(test_recipe, script, env, marks)
    # --check names the open transaction: while its run lives, and once it is gone.
    check = test_recipe.run(script, "--check")
    assert check.returncode == 3
    assert f"envbuild: libhello: missing (run {proc.pid} is installing it)\n" in check.stdout, check.stdout
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert alive(wrapper), "the step goes on without its run"
    check = test_recipe.run(script, "--check")
    assert check.returncode == 3
    assert (f"envbuild: libhello: missing (run {proc.pid} was stopped while installing it; the next run "
            "finishes or undoes that)\n") in check.stdout, check.stdout
    again = test_recipe.run(first)
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert re.fullmatch(r"envbuild: libhello: stopping the step a killed run left running \(pid \d+\)", lines[0])
    assert lines[1] == (f"envbuild: libhello: a run killed while replacing it (pid {proc.pid}) is undone: "
                        "the previous install is back")
    assert re.fullmatch(r"envbuild: all 4 components present \(\d+\.\d+ s\)", lines[2]) and len(lines) == 3
    assert not alive(wrapper)
    assert hello(test_recipe.root) == "hello 1\n"
    assert list((test_recipe.state / "txn").iterdir()) == []
    assert sorted(p.name for p in (test_recipe.root / "opt").iterdir()) == ["data", "hello", "tools"]


def test_a_signal_during_a_lock_wait_ends_the_wait(test_recipe, tmp_path):
    """Nothing is replaced yet: the run says it was interrupted, and changed nothing."""
    script = test_recipe.render()
    (test_recipe.state).mkdir(parents=True)
    lock = test_recipe.state / "install.lock"
    with lock_held(lock):
        proc = subprocess.Popen(["bash", str(script)], env=test_recipe.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        wait_until(lambda: lock_waiters(str(lock)) == 1, [proc], "the run waiting for the install lock")
        started = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert time.monotonic() - started < 15
    assert proc.returncode == 143
    assert err == "envbuild: error: interrupted by SIGTERM\n"
    assert lock_waiters(str(lock)) == 0
    assert test_recipe.builds() == []
    assert not (test_recipe.state / "stamps").exists() or list((test_recipe.state / "stamps").iterdir()) == []


# --- locks before changes -------------------------------------------------------------------


def test_a_lock_timeout_after_a_corrupt_entry_keeps_the_old_install(tmp_path, file_server):
    """The restore of version 2 fails (corrupt entry) and is undone before the run waits for the
    entry's lock, held by another node; giving up leaves version 1 in place, stamped."""
    cluster = Cluster(tmp_path / "c", file_server, components=["libhello"])
    try:
        cluster.recipe.set_hello_version(2)
        cluster.recipe.write()
        cluster.recipe.render()
        assert cluster.run(1).returncode == 0  # node 1 stores version 2
        v2 = cluster.script.read_text()
        cluster.recipe.set_hello_version(1)
        cluster.recipe.write()
        cluster.recipe.render()
        assert cluster.run(0, ENVBUILD_CACHE_DIR="").returncode == 0  # node 0 has version 1
        stamp = (cluster.node_dir(0) / "state/stamps/libhello").read_text()
        cluster.script.write_text(v2)
        entry = next((cluster.cache / "entries").iterdir())
        with open(entry / ARCHIVE, "ab") as archive:
            archive.write(b"junk")
        with lock_held(cluster.cache / "locks" / f"{entry.name}.lock"):
            result = cluster.run(0, ENVBUILD_LOCK_TIMEOUT="1")
        lock = cluster.cache / "locks" / f"{entry.name}.lock"
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            f"envbuild: warning: libhello: cache entry {entry} is corrupt or incomplete (its files do not match its "
            f"SHA256SUMS); it will be rebuilt (details in {cluster.mount}/state/logs/libhello.log)",
            f"envbuild: error: gave up after 1 s waiting for the lock on {lock} (building libhello for the shared "
            "cache), held by an unknown process; raise ENVBUILD_LOCK_TIMEOUT or stop that process"]
        assert hello(cluster.node_dir(0)) == "hello 1\n"
        assert (cluster.node_dir(0) / "state/stamps/libhello").read_text() == stamp
        assert sorted(p.name for p in (cluster.node_dir(0) / "opt").iterdir()) == ["hello"]
        assert list((cluster.node_dir(0) / "state/txn").iterdir()) == []
    finally:
        cluster.close()


# --- the shared cache is best-effort --------------------------------------------------------


def only_libhello(cluster: Cluster) -> None:
    assert hello(cluster.node_dir(0)) == "hello 1\n"
    assert sorted(p.name for p in (cluster.node_dir(0) / "state/stamps").iterdir()) == ["libhello"]


@pytest.fixture
def one_component(tmp_path, file_server):
    cluster = Cluster(tmp_path / "c", file_server, components=["libhello"])
    yield cluster
    cluster.close()


def test_a_full_cache_is_a_warning_and_the_install_goes_on(one_component):
    cluster = one_component
    cluster.cache.mkdir()
    full = 'mount -t tmpfs -o size=256k tmpfs "$1" && { dd if=/dev/zero of="$1/fill" bs=4k 2>/dev/null; shift; exec "$@"; }'
    result = subprocess.run(cluster.command(0, "bash", "-c", full, "full", str(cluster.cache), "bash", str(cluster.script)),
                            env=cluster.env(0), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    capture = re.escape(f"{cluster.cache}/tmp/libhello-") + r"\w+\.node0\.\d+"
    assert re.fullmatch(rf"envbuild: warning: libhello: not stored in the shared cache: writing {capture} failed "
                        rf"\(details in {cluster.mount}/state/logs/libhello\.log\); it is installed on this node only\n",
                        result.stderr), result.stderr
    assert re.search(r"^envbuild: libhello: installed in \d+\.\d+ s$", result.stdout, re.M)
    assert "installed 1 (shared cache: 0 restored, 0 stored)" in result.stdout
    assert "No space left on device" in (cluster.node_dir(0) / "state/logs/libhello.log").read_text()
    only_libhello(cluster)


def test_a_cache_removed_during_the_run_is_a_warning(one_component):
    cluster = one_component
    cluster.recipe.extra_components["vandal"] = """name: vandal
description: Removes the shared cache while the run goes on.
build: |
  rm -rf "$ENVBUILD_CACHE_DIR"
"""
    cluster.recipe.components[:] = ["vandal", "libhello"]
    cluster.recipe.write()
    cluster.recipe.render()
    # One at a time: the cache is gone before libhello starts.
    result = cluster.run(0, ENVBUILD_PARALLEL="1")
    assert result.returncode == 0, result.stdout + result.stderr
    lock = re.escape(f"{cluster.cache}/locks/libhello-") + r"\w+\.lock"
    capture = re.escape(f"{cluster.cache}/tmp/libhello-") + r"\w+\.node0\.\d+"
    assert re.fullmatch(
        rf"envbuild: warning: cannot open the lock file {lock}; going on without the lock for building libhello for the "
        rf"shared cache\nenvbuild: warning: libhello: not stored in the shared cache: cannot create {capture}; it is "
        r"installed on this node only\n", result.stderr), result.stderr
    assert "installed 2 (shared cache: 0 restored, 0 stored)" in result.stdout
    assert hello(cluster.node_dir(0)) == "hello 1\n"


# --- corrupt entries of every form: found, checked again under the lock, replaced once -----


def wrong_build(entry: Path) -> None:
    """An archive that verifies and unpacks, holding a hello that prints the wrong version."""
    archive = entry / ARCHIVE
    if ARCHIVE.endswith(".zst"):
        plain = subprocess.run(["zstd", "-dc", str(archive)], capture_output=True, check=True).stdout
        source = tarfile.open(fileobj=io.BytesIO(plain))
    else:
        source = tarfile.open(archive)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as target:
        for member in source.getmembers():
            data = source.extractfile(member).read() if member.isfile() else None
            if member.name.endswith("bin/hello"):
                data = b"#!/bin/sh\necho hello 9\n"
                member.size = len(data)
            target.addfile(member, io.BytesIO(data) if data is not None else None)
    compress = ["zstd", "-c"] if ARCHIVE.endswith(".zst") else ["gzip", "-c"]
    archive.write_bytes(subprocess.run(compress, input=buffer.getvalue(), capture_output=True, check=True).stdout)
    resum(entry)


def resum(entry: Path) -> None:
    subprocess.run(f"sha256sum {ARCHIVE} removed.txt >SHA256SUMS", shell=True, cwd=entry, check=True)


def flip_a_byte(entry: Path) -> None:
    data = bytearray((entry / ARCHIVE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (entry / ARCHIVE).write_bytes(bytes(data))


def cut_short(entry: Path) -> None:
    archive = entry / ARCHIVE
    archive.write_bytes(archive.read_bytes()[:len(archive.read_bytes()) // 2])
    resum(entry)


def an_extra_line(entry: Path) -> None:
    with open(entry / "SHA256SUMS", "a") as sums:
        sums.write(f"{'0' * 64}  stray\n")


def a_file(entry: Path) -> None:
    shutil.rmtree(entry)
    entry.write_text("not a directory\n")


CORRUPTIONS = {
    "a file, not a directory": (a_file, "it is a file, not a directory", "structure"),
    "no SHA256SUMS": (lambda e: (e / "SHA256SUMS").unlink(), "it has no file SHA256SUMS", "structure"),
    "no removed.txt": (lambda e: (e / "removed.txt").unlink(), "it has no file removed.txt", "structure"),
    "an extra file": (lambda e: (e / "stray").write_text("x\n"), "it holds more than its three files: stray",
                      "structure"),
    "an extra checksum line": (an_extra_line, f"its SHA256SUMS is not one line for {ARCHIVE} and one for removed.txt",
                               "structure"),
    "a flipped byte": (flip_a_byte, "its files do not match its SHA256SUMS", "restore"),
    "an archive cut short": (cut_short, "its archive cannot be unpacked", "restore"),
    "a build that fails the check": (wrong_build, "the check failed after restoring it", "restore"),
}


@pytest.mark.parametrize("form", CORRUPTIONS)
def test_a_corrupt_entry_is_found_by_every_node_and_replaced_once(one_component, form):
    cluster = one_component
    nodes = 4
    assert cluster.run(0).returncode == 0
    entry = next((cluster.cache / "entries").iterdir())
    corrupt, why, found_by = CORRUPTIONS[form]
    corrupt(entry)
    # Another process holds the entry's lock until every node has found the entry corrupt and waits for it.
    lock = cluster.cache / "locks" / f"{entry.name}.lock"
    with lock_held(lock):
        procs = [cluster.start(k) for k in range(1, nodes + 1)]
        wait_until(lambda: lock_waiters(str(lock)) == nodes, procs, f"{nodes} nodes waiting for {lock.name}")
    results = [cluster.finish(proc) for proc in procs]
    warning = (f"envbuild: warning: libhello: cache entry {entry} is corrupt or incomplete ({why}); it will be rebuilt "
               f"(details in {cluster.mount}/state/logs/libhello.log)\n")
    for result in results:
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stderr == warning
    assert collections.Counter(cluster.recipe.builds()) == {"libhello": 2}, "".join(r.stdout for r in results)
    builders = [r.stdout for r in results if re.search(r"^envbuild: libhello: installed in .* \(stored in the shared "
                                                       r"cache\)$", r.stdout, re.M)]
    assert len(builders) == 1
    assert "installed 1 (shared cache: 0 restored, 1 stored)" in builders[0]
    # The builder tried to restore the entry (once, and again under its lock) only if it looked whole;
    # the others restored its replacement.
    assert builders[0].count("envbuild: libhello: restoring from the shared cache") == (2 if found_by == "restore" else 0)
    others = [r.stdout for r in results if r.stdout not in builders]
    for out in others:
        assert re.search(r"^envbuild: libhello: restored from the shared cache in ", out, re.M)
        assert "installed 1 (shared cache: 1 restored, 0 stored)" in out
    for k in range(1, nodes + 1):
        assert hello(cluster.node_dir(k)) == "hello 1\n"
    assert sorted(p.name for p in entry.iterdir()) == ["SHA256SUMS", ARCHIVE, "removed.txt"]
    assert subprocess.run(["sha256sum", "--quiet", "--strict", "-c", "SHA256SUMS"], cwd=entry).returncode == 0
    assert list((cluster.cache / "tmp").iterdir()) == []


# --- bounded downloads ----------------------------------------------------------------------


@pytest.fixture
def download(test_recipe):
    """Renders the test recipe with one component downloading `url` (checked against `data`)."""

    def render(url: str, data: bytes = b"") -> Path:
        test_recipe.extra_components["dl"] = f"""name: dl
description: A download.
source:
  url: {url}
  sha256: {sha256(data)}
build: |
  echo dl >> "$EB_TEST_BUILDS"
"""
        test_recipe.components[:] = ["dl"]
        test_recipe.write()
        return test_recipe.render()

    return render


BOUNDS = {"ENVBUILD_DOWNLOAD_CONNECT_TIMEOUT": "2", "ENVBUILD_DOWNLOAD_STALL_TIMEOUT": "2"}


def without(*tools: str, into: Path) -> str:
    """A PATH with every command of /usr/bin and /bin but `tools`."""
    into.mkdir()
    for directory in ("/usr/bin", "/bin"):
        for tool in Path(directory).iterdir():
            if tool.name not in tools and not (into / tool.name).exists():
                (into / tool.name).symlink_to(tool)
    return str(into)


def timed(test_recipe, script: Path, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    """The run and how many seconds it took."""
    started = time.monotonic()
    result = test_recipe.run(script, **env)
    return result, time.monotonic() - started


@pytest.mark.parametrize("tool", ["curl", "wget", "python"])
def test_a_server_that_never_answers_fails_the_download_after_the_stall_timeout(test_recipe, download, tmp_path, tool):
    missing = {"curl": (), "wget": ("curl",), "python": ("curl", "wget")}[tool]
    path = without(*missing, into=tmp_path / "tools") if missing else os.environ["PATH"]
    with ScriptedServer([Answer(silent=True)]) as server:
        result, elapsed = timed(test_recipe, download(f"{server.url}/x.tar.gz"), PATH=path, **BOUNDS)
    assert result.returncode == 1
    assert 2 <= elapsed < 10
    assert server.requests == ["/x.tar.gz"], "a server that hangs is not asked again"
    assert (f"  | envbuild: error: download of {server.url}/x.tar.gz failed: no answer within 2 s "
            "(ENVBUILD_DOWNLOAD_CONNECT_TIMEOUT) or 2 s (ENVBUILD_DOWNLOAD_STALL_TIMEOUT)\n") in result.stderr
    assert test_recipe.builds() == []


def test_a_connection_that_cannot_be_made_fails_after_the_connect_timeout(test_recipe, download):
    with UnreachablePort() as port:
        result, elapsed = timed(test_recipe, download(f"http://127.0.0.1:{port.port}/x.tar.gz"), **BOUNDS)
    assert result.returncode == 1
    assert 2 <= elapsed < 8
    assert "failed: no answer within 2 s (ENVBUILD_DOWNLOAD_CONNECT_TIMEOUT)" in result.stderr


def test_a_download_that_never_ends_stops_at_the_total_timeout(test_recipe, download):
    data = b"x" * 1000
    with ScriptedServer([Answer(body=data, trickle=0.2)]) as server:
        result, elapsed = timed(test_recipe, download(f"{server.url}/slow.tar.gz", data), ENVBUILD_DOWNLOAD_TIMEOUT="3",
                                **BOUNDS)
    assert result.returncode == 1
    assert 3 <= elapsed < 10
    assert f"download of {server.url}/slow.tar.gz failed: not done within ENVBUILD_DOWNLOAD_TIMEOUT\n" in result.stderr


def retries_said(test_recipe) -> list[str]:
    return [line for line in (test_recipe.state / "logs/dl.log").read_text().splitlines() if "trying again" in line]


def test_passing_failures_are_tried_again_with_backoff(test_recipe, download):
    data = make_tarball({"a": "a\n"}, "a")
    with ScriptedServer([Answer(503), Answer(503), Answer(body=data)]) as server:
        result = test_recipe.run(download(f"{server.url}/a.tar.gz", data), **BOUNDS)
    assert result.returncode == 0, result.stderr
    assert server.requests == ["/a.tar.gz"] * 3
    assert retries_said(test_recipe) == [
        f"envbuild: {server.url}/a.tar.gz: HTTP status 503; trying again in 1 s (attempt 2 of 4)",
        f"envbuild: {server.url}/a.tar.gz: HTTP status 503; trying again in 2 s (attempt 3 of 4)"]
    assert test_recipe.builds() == ["dl"]


def test_a_transfer_cut_off_after_data_came_is_tried_again(test_recipe, download):
    data = make_tarball({"b": "".join(sha256(str(n).encode()) for n in range(200))}, "b")  # does not compress
    with ScriptedServer([Answer(body=data, cut=len(data) // 2), Answer(body=data)]) as server:
        result = test_recipe.run(download(f"{server.url}/b.tar.gz", data), **BOUNDS)
    assert result.returncode == 0, result.stderr
    assert server.requests == ["/b.tar.gz"] * 2
    assert retries_said(test_recipe) == [
        f"envbuild: {server.url}/b.tar.gz: no data for 2 s after the transfer began; trying again in 1 s (attempt 2 of 4)"]


def test_a_missing_file_is_not_asked_for_again(test_recipe, download):
    with ScriptedServer([Answer(404)]) as server:
        result = test_recipe.run(download(f"{server.url}/gone.tar.gz"), **BOUNDS)
    assert result.returncode == 1
    assert server.requests == ["/gone.tar.gz"]
    assert f"download of {server.url}/gone.tar.gz failed: HTTP status 404\n" in result.stderr


def test_retries_stop_at_their_number(test_recipe, download):
    with ScriptedServer([Answer(503)]) as server:
        result = test_recipe.run(download(f"{server.url}/busy.tar.gz"), ENVBUILD_DOWNLOAD_RETRIES="1", **BOUNDS)
    assert result.returncode == 1
    assert server.requests == ["/busy.tar.gz"] * 2
    assert f"download of {server.url}/busy.tar.gz failed: HTTP status 503 (2 attempts)\n" in result.stderr


def git_source(test_recipe, url: str) -> Path:
    test_recipe.extra_components["repo"] = f"""name: repo
description: A git source on a server that misbehaves.
source:
  git: {url}
  commit: {'a' * 40}
build: |
  echo repo >> "$EB_TEST_BUILDS"
"""
    test_recipe.components[:] = ["repo"]
    test_recipe.write()
    return test_recipe.render()


def test_a_git_server_that_never_answers_fails_after_the_stall_timeout(test_recipe):
    with ScriptedServer([Answer(silent=True)]) as server:
        result, elapsed = timed(test_recipe, git_source(test_recipe, f"{server.url}/repo.git"), **BOUNDS)
    assert result.returncode == 1
    assert elapsed < 10
    assert (f"  | {server.url}/repo.git accepted the connection and sent nothing for 2 s "
            "(ENVBUILD_DOWNLOAD_STALL_TIMEOUT)\n") in result.stderr
    assert len(server.requests) == 1


def test_a_git_server_that_stalls_after_answering_fails_after_the_stall_timeout(test_recipe):
    """It answers the first request (envbuild's connection check) and hangs on git's own."""
    with ScriptedServer([Answer(404), Answer(silent=True)]) as server:
        result, elapsed = timed(test_recipe, git_source(test_recipe, f"{server.url}/repo.git"), **BOUNDS)
    assert result.returncode == 1
    assert elapsed < 15
    assert "Operation too slow" in result.stderr
    assert len(server.requests) == 2, "a stalled git transfer is not tried again"


def test_a_git_server_that_fails_for_a_while_is_asked_again(test_recipe):
    with ScriptedServer([Answer(503)]) as server:
        result = test_recipe.run(git_source(test_recipe, f"{server.url}/repo.git"), ENVBUILD_DOWNLOAD_RETRIES="1",
                                 **BOUNDS)
    assert result.returncode == 1
    # Each attempt: envbuild's connection check, then git's own request.
    assert len(server.requests) == 4
    log = (test_recipe.state / "logs/repo.log").read_text()
    assert f"envbuild: git fetch from {server.url}/repo.git failed; trying again in 1 s (attempt 2 of 2)\n" in log
    assert f"envbuild: error: {server.url}/repo.git: fetching {'a' * 40} failed\n" in log


def test_a_git_fetch_that_never_ends_stops_at_the_total_timeout(test_recipe):
    with ScriptedServer([Answer(body=b"x" * 1000, trickle=0.2)]) as server:
        result, elapsed = timed(test_recipe, git_source(test_recipe, f"{server.url}/repo.git"),
                                ENVBUILD_DOWNLOAD_TIMEOUT="6", **BOUNDS)
    assert result.returncode == 1
    assert 6 <= elapsed < 15
    assert "not done within ENVBUILD_DOWNLOAD_TIMEOUT (6 s)" in result.stderr


@pytest.mark.parametrize("name,value,what", [
    ("ENVBUILD_DOWNLOAD_STALL_TIMEOUT", "0", "a whole number of seconds (at least 1)"),
    ("ENVBUILD_DOWNLOAD_TIMEOUT", "1h", "a whole number of seconds (at least 1)"),
    ("ENVBUILD_DOWNLOAD_RETRIES", "-1", "a whole number"),
    ("ENVBUILD_LOCK_HEARTBEAT", "0.5", "a whole number of seconds (at least 1)"),
])
def test_settings_are_checked_before_anything_is_installed(test_recipe, name, value, what):
    result = test_recipe.run(test_recipe.render(), **{name: value})
    assert result.returncode == 2
    assert result.stderr == f"envbuild: error: {name}='{value}' is not {what}\n"
    assert test_recipe.builds() == []


@pytest.mark.parametrize("option", [[], ["--check"], ["--list"]])
@pytest.mark.parametrize("name,value,message", [
    ("ENVBUILD_JOBS", "abc", "ENVBUILD_JOBS='abc' is not a whole number of jobs (at least 1)"),
    ("ENVBUILD_JOBS", "0", "ENVBUILD_JOBS='0' is not a whole number of jobs (at least 1)"),
    ("ENVBUILD_JOBS", "1 2", "ENVBUILD_JOBS='1 2' is not a whole number of jobs (at least 1)"),
    ("ENVBUILD_NIC_FAMILY", "IONIC", "ENVBUILD_NIC_FAMILY='IONIC' is not one of: ionic mlx5 bnxt none"),
    ("NODE_RANK", "abc", "NODE_RANK='abc' is not a whole number (the node's rank)"),
    ("HELLO_HOME", "/opt/a:b", "HELLO_HOME='/opt/a:b' holds ':', which would split PATH and the other lists it "
                               "goes into (an install prefix)"),
    ("HELLO_HOME", "/opt/a\nb", "HELLO_HOME holds a control character (an install prefix)"),
])
def test_a_bad_value_in_the_environment_is_a_usage_error_in_every_mode(test_recipe, option, name, value, message):
    result = test_recipe.run(test_recipe.render(), *option, **{name: value})
    assert (result.returncode, result.stdout, result.stderr) == (2, "", f"envbuild: error: {message}\n")
    assert test_recipe.builds() == []


def test_a_prefix_with_a_trailing_slash_is_the_same_install(test_recipe):
    script = test_recipe.render()
    assert test_recipe.run(script).returncode == 0
    again = test_recipe.run(script, HELLO_HOME=f"{test_recipe.root}/opt/hello//")
    assert re.fullmatch(r"envbuild: all 4 components present \(\d+\.\d+ s\)\n", again.stdout), again.stdout


# --- prefixes that hold someone else's files ----------------------------------------------


def foreign_files(directory: Path) -> dict[str, str]:
    (directory / "projects").mkdir(parents=True)
    (directory / "projects/thesis.tex").write_text("important\n")
    return files_in(directory)


def files_in(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


@pytest.mark.parametrize("when", ["first install", "prefix moved after an install"])
def test_a_prefix_holding_files_no_install_made_is_refused_and_kept(test_recipe, tmp_path, when):
    script = test_recipe.render()
    data = tmp_path / "mydata"
    before = foreign_files(data)
    if when == "prefix moved after an install":
        assert test_recipe.run(script).returncode == 0
    built = test_recipe.builds()
    result = test_recipe.run(script, HELLO_HOME=str(data))
    assert result.returncode == 1
    assert (
        f"envbuild: error: libhello: HELLO_HOME={data} holds files no install of libhello made (its stamp does not "
        f"record that prefix), which installing would delete; move them away, set HELLO_HOME to another "
        f"directory, or replace them with --force libhello\n") in result.stderr, result.stderr
    # libhello fails alone: what needs it is stopped, the others are installed (issue 15).
    assert result.stderr.endswith("envbuild: error: not installed: libhello (its prefix holds files no install of it "
                                  "made); greet (it needs libhello, which failed)\n"), result.stderr
    assert files_in(data) == before
    assert not {"libhello", "greet"} & set(test_recipe.builds()[len(built):])


def test_an_empty_prefix_directory_or_force_is_installed_into(test_recipe, tmp_path):
    script = test_recipe.render()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert test_recipe.run(script, HELLO_HOME=str(empty)).returncode == 0
    assert (empty / "bin/hello").exists()
    data = tmp_path / "mydata"
    foreign_files(data)
    forced = test_recipe.run(script, "--force", "libhello", HELLO_HOME=str(data))
    assert forced.returncode == 0, forced.stderr
    assert sorted(files_in(data)) == ["bin/hello"]


def test_a_state_dir_that_cannot_be_made_is_one_error_line(test_recipe):
    result = test_recipe.run(test_recipe.render(), ENVBUILD_STATE_DIR="/proc/envbuild-state")
    assert result.returncode == 1
    assert result.stderr == ("envbuild: error: cannot create the state dir /proc/envbuild-state "
                             "(ENVBUILD_STATE_DIR): No such file or directory\n")
    assert test_recipe.builds() == []


# --- prefixes installing may not replace -------------------------------------------------------

RULE = "an install prefix is a directory of its own, which installing replaces whole"
MODES = ([], ["--check"], ["--list"], ["--env"], "sourced")


def run_in(test_recipe, script: Path, mode, **env: str) -> tuple[int, str, str]:
    """(status, stdout, stderr) of the script run with options `mode`, or sourced without options."""
    if mode != "sourced":
        result = test_recipe.run(script, *mode, **env)
        return result.returncode, result.stdout, result.stderr
    result = subprocess.run(["bash", "-c", 'source "$1"; echo "rc=$?"', "bash", str(script)],
                            env=test_recipe.env(**env), capture_output=True, text=True, cwd=test_recipe.root)
    status = re.fullmatch(r"(?s)(.*)rc=(\d+)\n", result.stdout)
    assert status, result.stdout
    return int(status.group(2)), status.group(1), result.stderr


def test_force_on_a_prefix_holding_the_state_dir_is_refused_before_anything_moves(test_recipe):
    """--force moved the prefix aside with the state dir in it: the run lost its journal, and the next
    run could not put anything back."""
    script = test_recipe.render()
    home = test_recipe.root / "opt/hello"
    state = home / "state"
    (state / "stamps").mkdir(parents=True)
    (state / "stamps/libhello").write_text("a stamp of an earlier run\n")
    (home / "bin").mkdir()
    (home / "bin/hello").write_text("an earlier install\n")
    before = files_in(test_recipe.root / "opt")
    for args in ([], ["--force", "libhello"]):
        result = test_recipe.run(script, *args, ENVBUILD_STATE_DIR=str(state))
        assert (result.returncode, result.stdout, result.stderr) == (
            2, "", f"envbuild: error: HELLO_HOME='{home}' holds the state dir {state} (ENVBUILD_STATE_DIR): {RULE}\n")
    assert files_in(test_recipe.root / "opt") == before
    assert sorted(path.name for path in (test_recipe.root / "opt").iterdir()) == ["hello"]
    assert test_recipe.builds() == []


@pytest.mark.parametrize("env,message", [
    ({"HELLO_HOME": "/usr"}, f"HELLO_HOME='/usr' is a system directory, which other programs share: {RULE}"),
    ({"HELLO_HOME": "/"}, f"HELLO_HOME='/' is a system directory, which other programs share: {RULE}"),
    ({"HELLO_HOME": "//usr/local//bin/"},
     f"HELLO_HOME='/usr/local/bin' is a system directory, which other programs share: {RULE}"),
    ({"HELLO_HOME": "/tmp/"}, f"HELLO_HOME='/tmp' is a system directory, which other programs share: {RULE}"),
    ({"HELLO_HOME": "/opt/hello/../../usr"}, "HELLO_HOME='/opt/hello/../../usr' has a . or .. part: an install "
                                             "prefix is written without them (where .. leads depends on symlinks)"),
    ({"HELLO_HOME": "{root}/state"}, f"HELLO_HOME='{{root}}/state' is the state dir (ENVBUILD_STATE_DIR): {RULE}"),
    ({"HELLO_HOME": "{root}/state/hello"},
     f"HELLO_HOME='{{root}}/state/hello' lies inside the state dir {{root}}/state (ENVBUILD_STATE_DIR): {RULE}"),
    ({"HELLO_HOME": "{root}", "ENVBUILD_STATE_DIR": "{root}//state/"},
     f"HELLO_HOME='{{root}}' holds the state dir {{root}}/state (ENVBUILD_STATE_DIR): {RULE}"),
    ({"HELLO_HOME": "/var/lib/envbuild/hello", "ENVBUILD_STATE_DIR": ""},
     f"HELLO_HOME='/var/lib/envbuild/hello' lies inside the state dir /var/lib/envbuild (ENVBUILD_STATE_DIR): {RULE}"),
    ({"HELLO_HOME": "{root}/me/", "HOME": "{root}/me"},
     f"HELLO_HOME='{{root}}/me' is the home directory (HOME): {RULE}"),
    ({"HELLO_HOME": "{root}/homes", "HOME": "{root}/homes/me/"},
     f"HELLO_HOME='{{root}}/homes' holds the home directory {{root}}/homes/me (HOME): {RULE}"),
    ({"HELLO_HOME": "{root}/cache", "ENVBUILD_CACHE_DIR": "cache/"},  # runs in {root}
     f"HELLO_HOME='{{root}}/cache' is the shared cache (ENVBUILD_CACHE_DIR): {RULE}"),
    ({"HELLO_HOME": "{root}/cache/hello", "ENVBUILD_CACHE_DIR": "{root}//cache"},
     f"HELLO_HOME='{{root}}/cache/hello' lies inside the shared cache {{root}}/cache (ENVBUILD_CACHE_DIR): {RULE}"),
    ({"HELLO_HOME": "{root}/shared", "ENVBUILD_CACHE_DIR": "shared/cache"},
     f"HELLO_HOME='{{root}}/shared' holds the shared cache {{root}}/shared/cache (ENVBUILD_CACHE_DIR): {RULE}"),
    ({"HELLO_HOME": "{root}/sources/", "ENVBUILD_SOURCE_DIR": "{root}/sources"},
     f"HELLO_HOME='{{root}}/sources' is the source dir (ENVBUILD_SOURCE_DIR): {RULE}"),
    ({"HELLO_HOME": "{root}/sources/hello", "ENVBUILD_SOURCE_DIR": "{root}/sources/"},
     f"HELLO_HOME='{{root}}/sources/hello' lies inside the source dir {{root}}/sources (ENVBUILD_SOURCE_DIR): {RULE}"),
    ({"HELLO_HOME": "{root}/air", "ENVBUILD_SOURCE_DIR": "{root}/air//gapped"},
     f"HELLO_HOME='{{root}}/air' holds the source dir {{root}}/air/gapped (ENVBUILD_SOURCE_DIR): {RULE}"),
    ({"ENVBUILD_STATE_DIR": "state"},
     "ENVBUILD_STATE_DIR='state' is not an absolute path (the state dir; the default is /var/lib/envbuild)"),
    ({"ENVBUILD_STATE_DIR": "{root}/./state"}, "ENVBUILD_STATE_DIR='{root}/./state' has a . or .. part: the state "
                                               "dir is written without them (where .. leads depends on symlinks)"),
])
def test_a_prefix_installing_may_not_replace_is_a_usage_error_in_every_mode(test_recipe, env, message):
    script = test_recipe.render()
    root = str(test_recipe.root)
    env = {name: value.format(root=root) for name, value in env.items()}
    for mode in MODES:
        assert run_in(test_recipe, script, mode, **env) == (2, "", f"envbuild: error: {message.format(root=root)}\n"), mode
    assert not (test_recipe.state.exists() or (test_recipe.root / "opt").exists())
    assert test_recipe.builds() == []


def test_the_script_refuses_every_system_directory_validation_refuses_and_no_other(test_recipe):
    """Its list is rendered from the one validation uses (SYSTEM_DIRECTORIES)."""
    from envbuild.spec.schema import SYSTEM_DIRECTORIES

    script = test_recipe.render()
    each = 'for dir in "${@:2}"; do HELLO_HOME=$dir bash "$1" --list >/dev/null 2>&1; echo "$dir: $?"; done'
    own = ["/opt/rocm", "/usr/local/hello", "/usr/local/bin/hello", "/var/lib/envbuilder", "/tmpdir"]
    result = subprocess.run(["bash", "-c", each, "bash", str(script), *SYSTEM_DIRECTORIES, *own],
                            env=test_recipe.env(ENVBUILD_STATE_DIR=""), capture_output=True, text=True)
    assert result.stdout.splitlines() == [f"{d}: 2" for d in SYSTEM_DIRECTORIES] + [f"{d}: 0" for d in own]



@pytest.mark.parametrize("env", [
    {"ENVBUILD_SOURCE_DIR": "http://127.0.0.1:9/"}, {"ENVBUILD_SOURCE_DIR": "hello"},
    {"ENVBUILD_CACHE_DIR": "{root}/opt/elsewhere/../hello"}, {"ENVBUILD_CACHE_DIR": "{root}/opt/hello-cache"},
])
def test_a_url_a_relative_source_dir_or_a_dir_with_dot_dot_parts_is_not_compared_as_written(test_recipe, env):
    """A URL is no directory here, the script reads a relative source dir nowhere (it refuses it where it
    would), and where .. leads depends on symlinks: an install compares that one resolved."""
    script = test_recipe.render()
    env = {name: value.format(root=test_recipe.root) for name, value in env.items()}
    assert run_in(test_recipe, script, ["--list"], **env)[0] == 0
    assert run_in(test_recipe, script, ["--check"], **env)[0] == 3


def test_a_prefix_reaching_the_shared_cache_through_dot_dot_is_refused_when_installing(test_recipe):
    script = test_recipe.render()
    (test_recipe.root / "opt/elsewhere").mkdir(parents=True)
    result = test_recipe.run(script, ENVBUILD_CACHE_DIR=str(test_recipe.root / "opt/elsewhere/../hello"))
    home = test_recipe.root / "opt/hello"
    assert result.returncode == 1
    assert (f"envbuild: error: libhello: HELLO_HOME='{home}' resolves to {home}, which is the shared cache "
            f"(ENVBUILD_CACHE_DIR): {RULE}\n") in result.stderr, result.stderr
    assert sorted(path.name for path in home.iterdir()) == ["downloads", "entries", "locks", "tmp"]


def symlinked_prefix_runs(test_recipe, target: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """A run with HELLO_HOME a symbolic link to `target`."""
    link = test_recipe.root / "opt/hello-link"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return test_recipe.run(test_recipe.render(), *args, HELLO_HOME=str(link), **env)


@pytest.mark.parametrize("args", [[], ["--force", "libhello"]])
@pytest.mark.parametrize("target,env,why", [
    ("state", {}, "is the state dir (ENVBUILD_STATE_DIR)"),
    ("state/stamps", {}, "lies inside the state dir {root}/state (ENVBUILD_STATE_DIR)"),
    ("", {}, "holds the state dir {root}/state (ENVBUILD_STATE_DIR)"),
    ("me", {"HOME": "{root}/me", "ENVBUILD_STATE_DIR": "{root}/var/state"}, "is the home directory (HOME)"),
    ("homes", {"HOME": "{root}/homes/me", "ENVBUILD_STATE_DIR": "{root}/var/state"},
     "holds the home directory {root}/homes/me (HOME)"),
    ("cache", {"ENVBUILD_CACHE_DIR": "cache"}, "is the shared cache (ENVBUILD_CACHE_DIR)"),
    ("shared", {"ENVBUILD_CACHE_DIR": "{root}/shared/cache"}, "holds the shared cache {root}/shared/cache "
                                                                "(ENVBUILD_CACHE_DIR)"),
])
def test_a_prefix_that_is_a_symlink_to_a_directory_installing_may_not_replace_fails_alone(
        test_recipe, target, env, why, args):
    """Prefixes are compared as written in every mode (no process on the no-op path); an install compares
    each that exists again with every symbolic link followed, before anything moves."""
    root = test_recipe.root
    env = {name: value.format(root=root) for name, value in env.items()}
    (root / target).mkdir(parents=True, exist_ok=True)
    (root / target / "precious").write_text("not libhello's\n")
    resolved = root / target if target else root
    result = symlinked_prefix_runs(test_recipe, resolved, *args, **env)
    assert result.returncode == 1
    assert os.readlink(root / "opt/hello-link") == str(resolved)
    assert (f"envbuild: error: libhello: HELLO_HOME='{root}/opt/hello-link' resolves to {resolved}, which "
            f"{why.format(root=root)}: {RULE}\n") in result.stderr, result.stderr
    assert result.stderr.endswith(f"envbuild: error: not installed: libhello (HELLO_HOME resolves to {resolved}); "
                                  "greet (it needs libhello, which failed)\n"), result.stderr
    assert (root / target / "precious").read_text() == "not libhello's\n"
    assert not {"libhello", "greet"} & set(test_recipe.builds())
    assert {"dataset", "rank0-tool"} <= set(test_recipe.builds())


def test_a_prefix_that_is_a_symlink_to_a_system_directory_fails_before_anything_moves(test_recipe):
    """/srv stands for every system directory: a component whose step and check do nothing owns the
    prefix, so even a run that did not refuse would only rename the link (mv -T moves a link, not what
    it points to) and write nothing through it."""
    test_recipe.extra_components["idle"] = """name: idle
description: Writes nothing.
prefix:
  IDLE_HOME: {install_root}/opt/idle
build: |
  true
check: |
  true
"""
    test_recipe.components[:] = ["idle"]
    test_recipe.write()
    link = test_recipe.root / "opt/idle-link"
    link.parent.mkdir(parents=True)
    link.symlink_to("/srv")
    result = test_recipe.run(test_recipe.render(), "--force", "idle", IDLE_HOME=str(link))
    assert (result.returncode, result.stderr) == (1, (
        f"envbuild: error: idle: IDLE_HOME='{link}' resolves to /srv, which is a system directory, which other "
        f"programs share: {RULE}\n"
        "envbuild: error: not installed: idle (IDLE_HOME resolves to /srv)\n"))
    assert link.is_symlink() and os.readlink(link) == "/srv"
    assert not (test_recipe.state / "txn").exists() and not (test_recipe.state / "stamps/idle").exists()


def test_a_prefix_that_is_a_symlink_to_a_directory_of_its_own_is_installed_into(test_recipe):
    real = test_recipe.root / "real/hello"
    real.mkdir(parents=True)
    result = symlinked_prefix_runs(test_recipe, real)
    assert result.returncode == 0, result.stderr
    assert (test_recipe.root / "opt/hello-link/bin/hello").is_file()

# --- heartbeats and clock-safe sweeping -----------------------------------------------------


def test_a_lock_holder_keeps_its_note_fresh_and_waiters_say_how_stale_it_is(test_recipe, tmp_path):
    wrappers = write_wrappers(tmp_path / "bin")
    mark = tmp_path / "hang"
    env = test_recipe.env(PATH=f"{wrappers}:{test_recipe.env()['PATH']}", EB_TEST_HANG="make install*",
                          EB_TEST_HANG_MARK=str(mark), ENVBUILD_LOCK_HEARTBEAT="1")
    script = test_recipe.render()
    holder = subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    note = test_recipe.state / "install.lock.holder"
    try:
        wait_until(mark.exists, [holder], "the holder's step")
        first = note.stat().st_mtime
        wait_until(lambda: note.stat().st_mtime > first, [holder], "a heartbeat", timeout=10)
        waiter = test_recipe.run(script, ENVBUILD_LOCK_TIMEOUT="1")
        assert waiter.returncode == 1
        assert re.search(rf"held by pid {holder.pid} on \S+ since \S+ \(installing into {test_recipe.state}\), "
                         r"last heartbeat [01] s ago; raise", waiter.stderr), waiter.stderr
        if Path(LIBFAKETIME).exists():
            # A waiter whose clock runs three days ahead judges by the filesystem's clock too.
            ahead = test_recipe.run(script, ENVBUILD_LOCK_TIMEOUT="1", LD_PRELOAD=LIBFAKETIME, FAKETIME="+3d")
            assert re.search(r", last heartbeat [01] s ago; raise", ahead.stderr), ahead.stderr
        # The holder's main process is killed alone: its heartbeat, still running, stops touching the note.
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        time.sleep(2.5)
        stopped = note.stat().st_mtime
        time.sleep(1.5)
        assert note.stat().st_mtime == stopped
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
    old = time.time() - 300
    os.utime(note, (old, old))
    with lock_held(test_recipe.state / "install.lock"):
        stale = test_recipe.run(script, ENVBUILD_LOCK_TIMEOUT="1")
    assert re.search(r", last heartbeat 30\d s ago; raise ENVBUILD_LOCK_TIMEOUT", stale.stderr), stale.stderr


def test_a_node_whose_clock_runs_ahead_sweeps_nothing_that_is_recent_or_locked(cluster_with_leftovers):
    cluster, recent, old_locked, old_free, lock = cluster_with_leftovers
    with lock_held(lock):
        # Three days ahead: by its own clock, everything in the cache is old.
        result = cluster.run(0, LD_PRELOAD=LIBFAKETIME, FAKETIME="+3d")
    assert result.returncode == 0, result.stdout + result.stderr
    assert recent.exists(), "another node's capture in progress"
    assert old_locked.exists(), "an old capture whose lock is held: its builder is alive"
    assert not old_free.exists()


@pytest.fixture
def cluster_with_leftovers(tmp_path, file_server):
    """Another host's capture from now, one from three days ago whose entry's lock is held, one
    from three days ago whose lock is free; and that lock."""
    if not Path(LIBFAKETIME).exists():
        pytest.skip("libfaketime (Debian's faketime) is installed by scripts/test")
    cluster = Cluster(tmp_path / "c", file_server, components=["libhello"])
    tmp = cluster.cache / "tmp"
    tmp.mkdir(parents=True)
    (cluster.cache / "locks").mkdir()
    recent, old_locked, old_free = (tmp / f"other-{n:032x}.elsewhere.{n}" for n in (1, 2, 3))
    three_days_ago = time.time() - 3 * 86400
    for path in (recent, old_locked, old_free):
        path.mkdir()
        (path / "files.tar.gz").write_bytes(b"partial")
    for path in (old_locked, old_free):
        os.utime(path, (three_days_ago, three_days_ago))
    lock = cluster.cache / "locks" / f"{old_locked.name.split('.')[0]}.lock"
    lock.touch()
    yield cluster, recent, old_locked, old_free, lock
    cluster.close()


# --- values the script cannot carry ----------------------------------------------------------


def test_a_control_character_is_refused_and_no_script_is_written(tmp_path):
    recipes = tmp_path / "r"
    (recipes / "components").mkdir(parents=True)
    (recipes / "r.yaml").write_text('name: r\ndescription: "x\\0y"\nbase_image: debian:12\ncomponents: [c]\n')
    (recipes / "components" / "c.yaml").write_text('name: c\ndescription: x\nenv:\n  set:\n    "V\\nW": "a\\0b"\n')
    result = subprocess.run(["python3", "-m", "envbuild", "runtime-script", "--recipes-dir", str(recipes), "--recipe", "r",
                             "-o", str(tmp_path / "s.sh")], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == ("r/r.yaml:2: description: 'x\\x00y' holds the control character U+0000 (character 2); "
                             "text may hold newlines and tabs, no other control character\n")
    assert not (tmp_path / "s.sh").exists()
    (recipes / "r.yaml").write_text("name: r\ndescription: x\nbase_image: debian:12\ncomponents: [c]\n")
    result = subprocess.run(["python3", "-m", "envbuild", "validate", str(recipes)], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 2
    one_line = "a one-line value holds no control character"
    assert result.stderr == (f"r/components/c.yaml:5: env.set.V\\nW: 'V\\nW' holds the control character U+000A "
                             f"(character 2); {one_line}\n"
                             f"r/components/c.yaml:5: env.set.V\\nW: 'a\\x00b' holds the control character U+0000 "
                             f"(character 2); {one_line}\n")
