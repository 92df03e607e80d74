"""Many nodes, one build (issue 6): the runtime script with a shared build cache,
concurrent runs, kill -9 at several points, corrupt entries and lock failures.

Everything runs for real: nodes are namespaces on this machine (tests/nodes.py)
with the same paths and their own files, sharing one cache dir; builds are
counted by the steps themselves ($EB_TEST_BUILDS). Every wait has a timeout, so
a hang fails the test instead of blocking.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import time

import pytest

from envbuild.pipeline import load_plan
from localsources import make_tarball, sha256
from stamps import expected_stamp, stamp_of
from nodes import ARCHIVE, Cluster, lock_waiters, wait_until, write_wrappers
from testrecipe import GREET_PYPROJECT

NODES = 8
COMPONENTS = ["libhello", "greet", "dataset", "rank0-tool"]
CACHED = ["libhello", "greet", "dataset"]  # rank0-tool runs on node 0 only


@pytest.fixture
def cluster(tmp_path, file_server):
    cluster = Cluster(tmp_path / "c", file_server)
    yield cluster
    cluster.close()


def stamp_keys(cluster: Cluster) -> dict[str, dict]:
    plan = load_plan(cluster.recipe.recipes, "testrecipe")
    return {step.name: expected_stamp(plan, step) for step in plan.steps}


def entries(cluster: Cluster) -> dict[str, list[str]]:
    """Cache entries by component."""
    found = collections.defaultdict(list)
    for path in sorted((cluster.cache / "entries").iterdir()):
        found[path.name.rsplit("-", 1)[0]].append(path.name)
    return dict(found)


def assert_installed(cluster: Cluster, k: int, rank: int | None = None) -> None:
    """Node k has every component's files, and a stamp (with the right key) exactly for those."""
    root = cluster.node_dir(k)
    hello = subprocess.run([str(root / "opt/hello/bin/hello")], capture_output=True, text=True)
    assert hello.stdout == "hello 1\n"
    assert (root / "opt/data/README").read_text() == "data\n"
    greet = subprocess.run([str(root / "venv/bin/python"), "-c", "import greet; assert greet.WORD == 'greetings'"])
    assert greet.returncode == 0
    rank0 = (k if rank is None else rank) == 0
    assert (root / "opt/tools/rank0").exists() == rank0
    keys = stamp_keys(cluster)
    expected = COMPONENTS if rank0 else CACHED
    assert sorted(p.name for p in (root / "state/stamps").iterdir()) == sorted(expected)
    for name in expected:
        assert stamp_of((root / "state/stamps" / name).read_text()) == keys[name]


def assert_consistent(cluster: Cluster, k: int) -> None:
    """Whatever node k has a stamp for is really installed (a kill never leaves a stamp without files)."""
    root = cluster.node_dir(k)
    stamps = root / "state/stamps"
    present = {p.name for p in stamps.iterdir() if ".tmp." not in p.name} if stamps.exists() else set()
    files = {
        "libhello": root / "opt/hello/bin/hello",
        "dataset": root / "opt/data/README",
        "rank0-tool": root / "opt/tools/rank0",
        "greet": next(iter((root / "venv/lib").glob("python*/site-packages/greet/__init__.py")), root / "none"),
    }
    for name in present & set(files):
        assert files[name].exists(), f"stamp of {name} without its files"


def assert_no_leftovers(cluster: Cluster, *nodes: int) -> None:
    """No temporary files anywhere: node TMPDIRs, state dirs, cache tmp/, locks/, entries/, downloads/."""
    for k in nodes:
        root = cluster.node_dir(k)
        assert list((root / "tmp").iterdir()) == [], f"node{k} TMPDIR"
        state = root / "state"
        assert {p.name for p in state.iterdir()} <= {"stamps", "provenance", "logs", "txn", "install.lock"}
        for kind in ("stamps", "provenance"):
            if (state / kind).exists():
                assert {p.name for p in (state / kind).iterdir()} <= set(COMPONENTS)
        assert not (state / "txn").exists() or list((state / "txn").iterdir()) == [], "an unfinished journal"
    if not cluster.cache.exists():
        return
    assert list((cluster.cache / "tmp").iterdir()) == [], "cache tmp/"
    for path in (cluster.cache / "locks").iterdir():
        assert path.name.endswith(".lock"), path
    for entry in (cluster.cache / "entries").iterdir():
        assert sorted(p.name for p in entry.iterdir()) == ["SHA256SUMS", ARCHIVE, "removed.txt"]
        assert subprocess.run(["sha256sum", "--quiet", "--strict", "-c", "SHA256SUMS"], cwd=entry).returncode == 0
    for download in (cluster.cache / "downloads").iterdir():
        assert sha256(download.read_bytes()) == download.name


def count(text: str, pattern: str) -> int:
    return len(re.findall(pattern, text, re.M))


def test_nodes_with_a_shared_cache_build_each_component_once(cluster, file_server):
    """N nodes start together: one builds each component, the others wait for it and restore."""
    # The builder's `make install` holds on until every other node waits for its lock.
    for k in range(NODES):
        cluster.node_dir(k)
    release = cluster.root / "release"
    procs = [cluster.start(k, EB_TEST_HANG="make install*", EB_TEST_HANG_UNTIL=str(release)) for k in range(NODES)]
    wait_until(lambda: lock_waiters(f"{cluster.cache}/locks/libhello-") == NODES - 1, procs,
               f"{NODES - 1} nodes waiting for the libhello lock")
    release.touch()
    results = [cluster.finish(proc) for proc in procs]
    for k, result in enumerate(results):
        assert result.returncode == 0, f"node{k}: {result.stdout}{result.stderr}"
        assert "warning" not in result.stderr, result.stderr
    assert collections.Counter(cluster.recipe.builds()) == {name: 1 for name in COMPONENTS}
    out = "".join(result.stdout for result in results)
    for name in CACHED:
        assert count(out, rf"^envbuild: {name}: restored from the shared cache in ") == NODES - 1
        assert count(out, rf"^envbuild: {name}: installed in .* \(stored in the shared cache\)$") == 1
    # Every other node waited for the builder (named unless it had not written its note yet).
    builder = next(k for k, r in enumerate(results) if "libhello: installed in" in r.stdout)
    waiting = re.findall(rf"^envbuild: waiting for the lock on {cluster.cache}/locks/libhello-\w+\.lock "
                         r"\(building libhello for the shared cache\), held by (.*)$", out, re.M)
    assert len(waiting) == NODES - 1, out
    named = [holder for holder in waiting if holder != "an unknown process"]
    assert named and all(holder.startswith(f"pid {procs[builder].pid} on node{builder} since ") for holder in named), waiting
    assert file_server.requests.count("/dataset-1.0.tar.gz") == 1
    assert sorted(entries(cluster)) == sorted(COMPONENTS) and all(len(v) == 1 for v in entries(cluster).values())
    for k in range(NODES):
        assert_installed(cluster, k)
    assert_no_leftovers(cluster, *range(NODES))
    # Installed, each node's next run is a no-op again.
    again = cluster.run(3)
    assert re.fullmatch(r"envbuild: rank0-tool: skipped \(node rank 3 \(from NODE_RANK\); runs on NODE_RANK 0\)\n"
                        r"envbuild: all 3 components present, 1 skipped \(0\.0\d\d s\)\n", again.stdout)


def test_concurrent_runs_on_one_node_end_with_one_install(test_recipe, tmp_path):
    """N runs on the same state dir and prefixes (ranks of one node): one installs, the others find it done."""
    wrappers = write_wrappers(tmp_path / "bin")
    release = tmp_path / "release"
    env = test_recipe.env(PATH=f"{wrappers}:{test_recipe.env()['PATH']}", ENVBUILD_CACHE_DIR=str(tmp_path / "cache"),
                          EB_TEST_HANG="make install*", EB_TEST_HANG_UNTIL=str(release))
    script = test_recipe.render()
    procs = [subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=test_recipe.root, start_new_session=True) for _ in range(NODES)]
    try:
        # The installer's `make install` holds on until every other run waits for the install lock.
        wait_until(lambda: lock_waiters(f"{test_recipe.state}/install.lock") == NODES - 1, procs,
                   f"{NODES - 1} runs waiting for the install lock")
        release.touch()
        results = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert [proc.returncode for proc in procs] == [0] * NODES, results
    assert collections.Counter(test_recipe.builds()) == {name: 1 for name in COMPONENTS}
    installers = [out for out, _ in results if "installed 4 (shared cache: 0 restored, 4 stored), present 0" in out]
    assert len(installers) == 1
    state = test_recipe.state
    others = [out for out, _ in results if out not in installers]
    for out in others:
        assert re.search(rf"^envbuild: waiting for the lock on {state}/install\.lock \(installing into {state}\), "
                         r"held by ", out, re.M), out
        assert "envbuild: libhello: installed meanwhile by another run\n" in out
        assert "envbuild: all 4 components present" in out
    plan = load_plan(test_recipe.recipes, "testrecipe")
    for step in plan.steps:
        assert stamp_of((state / "stamps" / step.name).read_text()) == expected_stamp(plan, step)
    assert sorted(p.name for p in (state / "stamps").iterdir()) == sorted(COMPONENTS)
    assert sorted(p.name for p in state.iterdir()) == ["install.lock", "logs", "provenance", "stamps", "txn"]
    assert list((test_recipe.root / "tmp").iterdir()) == []
    out = subprocess.run([str(test_recipe.root / "opt/hello/bin/hello")], capture_output=True, text=True).stdout
    assert out == "hello 1\n"


KILL_POINTS = {
    # during the step: make install has put files in the prefix, the check and stamp are to come
    "step": ("make install*", "after", False),
    # during the step, mid-compile
    "step-start": ("make -j*", "before", False),
    # during the restore: before and after the archive is unpacked into the prefix
    "restore-start": ("tar *-xf */entries/libhello-*", "before", True),
    "restore": ("tar *-xf */entries/libhello-*", "after", True),
}


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_in_a_step_or_restore_then_rerun_completes_the_install(cluster, point):
    """Inside the work of a transaction (a build or a restore) rather than between its changes of
    state, which tests/test_crash_points.py goes through one by one."""
    pattern, when, from_cache = KILL_POINTS[point]
    builds = []
    if from_cache:
        assert cluster.run(1).returncode == 0  # another node fills the cache
        builds = cluster.recipe.builds()
    mark = cluster.root / "hang"
    proc = cluster.start(0, EB_TEST_HANG=pattern, EB_TEST_HANG_WHEN=when, EB_TEST_HANG_MARK=str(mark))
    cluster.wait_for(mark, proc)
    cluster.kill(proc)
    assert_consistent(cluster, 0)
    assert not (cluster.node_dir(0) / "state/stamps/libhello").exists()
    if not from_cache:
        assert "libhello" not in entries(cluster), "an entry must appear whole or not at all"
    rerun = cluster.run(0)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "warning" not in rerun.stderr, rerun.stderr
    assert_installed(cluster, 0)
    assert_no_leftovers(cluster, 0, *([1] if from_cache else []))
    if from_cache:
        assert [b for b in cluster.recipe.builds() if b in CACHED] == builds, "restores must not build"
        assert "envbuild: libhello: restored from the shared cache" in rerun.stdout
    else:
        assert cluster.recipe.builds().count("libhello") == 2
        assert "envbuild: libhello: installed in" in rerun.stdout


def test_kill_while_storing_in_the_cache_keeps_the_install(cluster):
    """The store comes after the commit: a run killed while writing the archive has installed
    the component; its half-written capture is swept, and no entry appears."""
    mark = cluster.root / "hang"
    proc = cluster.start(0, EB_TEST_HANG="tar *-cf *libhello-*", EB_TEST_HANG_WHEN="after", EB_TEST_HANG_MARK=str(mark))
    cluster.wait_for(mark, proc)
    cluster.kill(proc)
    assert_consistent(cluster, 0)
    assert stamp_of((cluster.node_dir(0) / "state/stamps/libhello").read_text()) == stamp_keys(cluster)["libhello"]
    assert "libhello" not in entries(cluster), "an entry must appear whole or not at all"
    assert len(list((cluster.cache / "tmp").iterdir())) == 1
    rerun = cluster.run(0)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "warning" not in rerun.stderr, rerun.stderr
    assert "libhello:" not in rerun.stdout
    assert cluster.recipe.builds().count("libhello") == 1
    assert_installed(cluster, 0)
    assert_no_leftovers(cluster, 0)
    assert "libhello" not in entries(cluster)


def test_corrupt_or_partial_entries_are_rejected_and_rebuilt(cluster):
    assert cluster.run(0).returncode == 0
    found = {name: cluster.cache / "entries" / names[0] for name, names in entries(cluster).items()}
    # libhello: bytes flipped in the archive
    archive = found["libhello"] / ARCHIVE
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    # greet: a partial entry, its SHA256SUMS never written
    (found["greet"] / "SHA256SUMS").unlink()
    # dataset: a truncated archive whose SHA256SUMS was written after it (it verifies, tar fails)
    archive = found["dataset"] / ARCHIVE
    archive.write_bytes(archive.read_bytes()[:len(archive.read_bytes()) // 2])
    subprocess.run(f"sha256sum {ARCHIVE} removed.txt >SHA256SUMS", shell=True, cwd=found["dataset"], check=True)

    result = cluster.run(1)
    assert result.returncode == 0, result.stdout + result.stderr
    why = {"libhello": "its files do not match its SHA256SUMS", "greet": "it has no file SHA256SUMS",
           "dataset": "its archive cannot be unpacked"}
    log = cluster.mount / "state/logs"
    assert sorted(result.stderr.splitlines()) == sorted(
        f"envbuild: warning: {name}: cache entry {found[name]} is corrupt or incomplete ({why[name]}); "
        f"it will be rebuilt (details in {log}/{name}.log)" for name in CACHED)
    for name in CACHED:
        assert re.search(rf"^envbuild: {name}: installed in \d+\.\d+ s \(stored in the shared cache\)$", result.stdout, re.M)
    assert "envbuild: installed 3 (shared cache: 0 restored, 3 stored), present 0, skipped 1 of 4" in result.stdout
    log = (cluster.node_dir(1) / "state/logs/libhello.log").read_text()
    assert f"cache entry {found['libhello']} does not match its SHA256SUMS" in log
    assert collections.Counter(cluster.recipe.builds()) == {"libhello": 2, "greet": 2, "dataset": 2, "rank0-tool": 1}
    assert_installed(cluster, 1)
    assert_no_leftovers(cluster, 0, 1)  # the rebuilt entries verify, nothing is left in tmp/
    # The rebuilt entries serve the next node.
    result = cluster.run(2)
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
    assert len(cluster.recipe.builds()) == 7
    assert_installed(cluster, 2)


def test_corrupt_entry_found_by_many_nodes_at_once_is_rebuilt_once(cluster):
    assert cluster.run(0).returncode == 0
    entry = cluster.cache / "entries" / entries(cluster)["libhello"][0]
    archive = entry / ARCHIVE
    archive.write_bytes(archive.read_bytes()[:-20])
    subprocess.run(f"sha256sum {ARCHIVE} removed.txt >SHA256SUMS", shell=True, cwd=entry, check=True)
    # Every node's restore of libhello holds on until all of them are restoring:
    # they all find the entry corrupt before one of them replaces it.
    for k in range(1, NODES):
        cluster.node_dir(k)
    marks, release = cluster.root / "marks", cluster.root / "release"
    marks.mkdir()
    procs = [cluster.start(k, EB_TEST_HANG="* -xf */entries/libhello-*", EB_TEST_HANG_MARKS=str(marks),
                           EB_TEST_HANG_UNTIL=str(release)) for k in range(1, NODES)]
    wait_until(lambda: len(list(marks.iterdir())) == NODES - 1, procs, f"{NODES - 1} nodes restoring libhello")
    release.touch()
    results = [cluster.finish(proc) for proc in procs]
    for result in results:
        assert result.returncode == 0, result.stdout + result.stderr
    assert collections.Counter(cluster.recipe.builds()) == {"libhello": 2, "greet": 1, "dataset": 1, "rank0-tool": 1}
    out = "".join(result.stdout for result in results)
    err = "".join(result.stderr for result in results)
    assert count(err, rf"^envbuild: warning: libhello: cache entry {entry} is corrupt or incomplete "
                      r"\(its archive cannot be unpacked\)") == NODES - 1
    assert count(out, r"^envbuild: libhello: restored from the shared cache in ") == NODES - 2
    for k in range(1, NODES):
        assert_installed(cluster, k)
    assert_no_leftovers(cluster, *range(NODES))


def test_lock_timeout_names_the_node_and_pid_holding_it(cluster):
    mark = cluster.root / "hang"
    holder = cluster.start(0, EB_TEST_HANG="make install*", EB_TEST_HANG_MARK=str(mark))
    cluster.wait_for(mark, holder)
    started = time.monotonic()
    waiter = cluster.run(1, ENVBUILD_LOCK_TIMEOUT="1", timeout=30)
    assert time.monotonic() - started < 20
    assert waiter.returncode == 1
    lock = next((cluster.cache / "locks").glob("libhello-*.lock"))
    assert re.fullmatch(
        rf"envbuild: error: gave up after 1 s waiting for the lock on {lock} \(building libhello for the shared cache\), "
        rf"held by pid {holder.pid} on node0 since \d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(building libhello for the shared cache\), "
        r"last heartbeat \d+ s ago; "
        r"raise ENVBUILD_LOCK_TIMEOUT or stop that process\n", waiter.stderr)
    cluster.kill(holder)
    rerun = cluster.run(0)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert_installed(cluster, 0)
    assert_no_leftovers(cluster, 0, 1)


def test_lock_timeout_on_the_install_lock_held_by_another_program(cluster):
    state = cluster.node_dir(0) / "state"
    state.mkdir()
    lock = state / "install.lock"
    holder = subprocess.Popen(["flock", str(lock), "sleep", "60"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["flock", "-n", str(lock), "true"]).returncode == 0:
            assert time.monotonic() < deadline, "flock did not take the lock"
            time.sleep(0.02)
        result = cluster.run(0, ENVBUILD_LOCK_TIMEOUT="1", timeout=30)
    finally:
        holder.kill()
        holder.wait()
    shown = cluster.mount / "state/install.lock"
    assert result.returncode == 1
    assert f"envbuild: waiting for the lock on {shown} (installing into {cluster.mount}/state), held by an unknown process\n" in result.stdout
    assert result.stderr == (f"envbuild: error: gave up after 1 s waiting for the lock on {shown} (installing into "
                             f"{cluster.mount}/state), held by an unknown process; raise ENVBUILD_LOCK_TIMEOUT or stop that process\n")
    assert cluster.recipe.builds() == []
    assert_no_leftovers(cluster, 0)


def test_filesystem_refusing_locks_falls_back_with_a_warning(cluster):
    fake = cluster.root / "nolocks"
    fake.mkdir()
    (fake / "flock").write_text('#!/bin/sh\necho "flock: $*: No locks available" >&2\nexit 71\n')
    (fake / "flock").chmod(0o755)
    path = f"{fake}:{cluster.env(0)['PATH']}"
    first = cluster.run(0, PATH=path, timeout=60)
    assert first.returncode == 0, first.stdout + first.stderr
    state = cluster.mount / "state"
    assert (f"envbuild: warning: {state}/install.lock: the filesystem refuses locks (flock exit 71); "
            f"going on without the lock for installing into {state}\n") in first.stderr
    for name in CACHED:
        assert re.search(rf"^envbuild: warning: {cluster.cache}/locks/{name}-\w+\.lock: the filesystem refuses locks "
                         rf"\(flock exit 71\); going on without the lock for building {name} for the shared cache$",
                         first.stderr, re.M)
    second = cluster.run(1, PATH=path, timeout=60)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "installed 3 (shared cache: 3 restored, 0 stored)" in second.stdout
    assert collections.Counter(cluster.recipe.builds()) == {name: 1 for name in COMPONENTS}
    assert_installed(cluster, 0)
    assert_installed(cluster, 1)
    assert_no_leftovers(cluster, 0, 1)


def test_python_entries_are_per_interpreter_prefix(cluster):
    """A Python component's entry holds files under its venv: another venv path gets its own entry."""
    assert cluster.run(0).returncode == 0
    other = cluster.run(1, venv="venv2", ENVBUILD_PYTHON=str(cluster.mount / "venv2/bin/python"))
    assert other.returncode == 0, other.stdout + other.stderr
    assert "warning" not in other.stderr, other.stderr
    assert "envbuild: greet: installed in" in other.stdout
    assert "envbuild: libhello: restored from the shared cache" in other.stdout
    assert len(entries(cluster)["greet"]) == 2
    check = subprocess.run([str(cluster.node_dir(1, "venv2") / "venv2/bin/python"), "-c", "import greet"])
    assert check.returncode == 0


def test_read_only_cache_is_restored_from_and_never_written(cluster):
    """A cache mounted read-only on the node (filled elsewhere): restores work, what it lacks is built locally."""
    assert cluster.run(0).returncode == 0
    before = sorted(str(p.relative_to(cluster.cache)) for p in cluster.cache.rglob("*"))
    cluster.recipe.set_hello_version(2)  # new keys for libhello and greet
    cluster.recipe.write()
    cluster.recipe.render()
    remount = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    result = subprocess.run(cluster.command(1, "bash", "-c", remount, "ro", str(cluster.cache), "bash", str(cluster.script)),
                            env=cluster.env(1), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == (f"envbuild: warning: ENVBUILD_CACHE_DIR={cluster.cache} is not writable here; "
                             "restoring from it, building what it lacks without storing it\n")
    assert re.search(r"^envbuild: libhello: installed in \d+\.\d+ s$", result.stdout, re.M), result.stdout
    assert "envbuild: dataset: restored from the shared cache in" in result.stdout
    assert collections.Counter(cluster.recipe.builds()) == {"libhello": 2, "greet": 2, "dataset": 1, "rank0-tool": 1}
    assert sorted(str(p.relative_to(cluster.cache)) for p in cluster.cache.rglob("*")) == before
    hello = subprocess.run([str(cluster.node_dir(1) / "opt/hello/bin/hello")], capture_output=True, text=True)
    assert hello.stdout == "hello 2\n"
    assert list((cluster.node_dir(1) / "tmp").iterdir()) == []


def test_restored_pip_upgrade_removes_what_the_build_removed(cluster):
    """A Python entry is a delta: files pip removed on the builder (the old version) are removed on restore."""
    assert cluster.run(0).returncode == 0
    assert cluster.run(1).returncode == 0
    cluster.recipe.greet_commit = cluster.recipe.commit("greet", {
        "pyproject.toml": GREET_PYPROJECT.format(version="2.0"),
        "greet/__init__.py": 'WORD = "greetings"\n',
    })
    cluster.recipe.write()
    cluster.recipe.render()
    assert "envbuild: greet: installed in" in cluster.run(0).stdout
    upgrade = cluster.run(1)
    assert "envbuild: greet: restored from the shared cache" in upgrade.stdout, upgrade.stdout + upgrade.stderr
    site = next((cluster.node_dir(1) / "venv/lib").glob("python*/site-packages"))
    assert sorted(p.name for p in site.glob("greet-*")) == ["greet-2.0.dist-info"]
    version = subprocess.run([str(cluster.node_dir(1) / "venv/bin/python"), "-c",
                              "import importlib.metadata as m; print(m.version('greet'))"], capture_output=True, text=True)
    assert version.stdout == "2.0\n"


def test_verified_downloads_are_shared_and_checked_again(test_recipe, tmp_path):
    server = test_recipe.server
    blob = make_tarball({"x": "blob\n"}, "blob-1.0")
    (server.root / "blob-1.0.tar.gz").write_bytes(blob)
    (server.root / "loose-1.0.tar.gz").write_bytes(make_tarball({"y": "loose\n"}, "loose-1.0"))
    # No prefix and no Python: nothing for an entry; only the download is shared.
    for name, checksum in (("blob", sha256(blob)), ("loose", "unknown")):
        test_recipe.extra_components[name] = f"""name: {name}
description: A tarball used where it is.
source:
  url: {{server}}/{name}-1.0.tar.gz
  sha256: {checksum}
build: |
  echo {name} >> "$EB_TEST_BUILDS"
  tar -tzf "$EB_DOWNLOAD" >/dev/null
"""
    test_recipe.components[:] = ["blob", "loose"]
    test_recipe.write()
    script = test_recipe.render()
    cache = tmp_path / "cache"

    def run(node: str) -> subprocess.CompletedProcess:
        result = test_recipe.run(script, ENVBUILD_STATE_DIR=str(tmp_path / node), ENVBUILD_CACHE_DIR=str(cache))
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    run("a")
    cached = cache / "downloads" / sha256(blob)
    assert [p.name for p in (cache / "downloads").iterdir()] == [cached.name], "unverified downloads are not kept"
    assert cached.read_bytes() == blob
    run("b")
    assert server.requests.count("/blob-1.0.tar.gz") == 1
    assert server.requests.count("/loose-1.0.tar.gz") == 2
    assert f"verified copy from the shared cache ({cached})" in (tmp_path / "b/logs/blob.log").read_text()
    cached.write_bytes(b"garbage")
    run("c")
    assert server.requests.count("/blob-1.0.tar.gz") == 2
    assert f"warning: {cached} does not match its sha256" in (tmp_path / "c/logs/blob.log").read_text()
    assert cached.read_bytes() == blob
    assert list((cache / "tmp").iterdir()) == []
    assert collections.Counter(test_recipe.builds()) == {"blob": 3, "loose": 3}


def test_components_sharing_a_prefix_are_not_cached(test_recipe, tmp_path):
    """Restoring one would replace the other's files too, leaving its stamp without them."""
    test_recipe.extra_components["hello-plugin"] = """name: hello-plugin
description: Installs into libhello's prefix.
depends:
  - libhello
prefix:
  HELLO_HOME: {install_root}/opt/hello
build: |
  echo hello-plugin >> "$EB_TEST_BUILDS"
  echo plugin > "$HELLO_HOME/plugin"
"""
    test_recipe.components[:] = ["libhello", "hello-plugin", "dataset"]
    test_recipe.write()
    result = test_recipe.run(test_recipe.render(), ENVBUILD_CACHE_DIR=str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr
    home = test_recipe.root / "opt/hello"
    assert (f"envbuild: warning: libhello: not using the shared cache: its prefix HELLO_HOME={home} overlaps "
            f"HELLO_HOME={home} of hello-plugin, which a restore would replace too\n") in result.stderr
    assert "envbuild: warning: hello-plugin: not using the shared cache" in result.stderr
    assert [p.name.rsplit("-", 1)[0] for p in (tmp_path / "cache/entries").iterdir()] == ["dataset"]


def test_leftovers_of_hosts_gone_for_two_days_are_swept_from_the_cache(cluster):
    old, recent = (cluster.cache / "tmp" / f"libhello-{n}.gone-host.{n}" for n in (111, 222))
    for path in (old, recent):
        path.mkdir(parents=True)
        (path / "files.tar.gz").write_bytes(b"partial")
    three_days_ago = time.time() - 3 * 86400
    os.utime(old, (three_days_ago, three_days_ago))
    assert cluster.run(0).returncode == 0
    assert not old.exists()
    assert recent.exists(), "another host's recent run may still be writing it"


def test_relative_cache_dir_is_taken_from_the_working_directory(test_recipe):
    result = test_recipe.run(test_recipe.render(), ENVBUILD_CACHE_DIR="cache")  # runs in test_recipe.root
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(list((test_recipe.root / "cache/entries").iterdir())) == 4


def test_lock_timeout_must_be_a_number(test_recipe):
    result = test_recipe.run(test_recipe.render(), ENVBUILD_LOCK_TIMEOUT="1h")
    assert result.returncode == 2
    assert result.stderr == "envbuild: error: ENVBUILD_LOCK_TIMEOUT='1h' is not a number of seconds\n"
    assert test_recipe.builds() == []


def test_no_op_run_with_the_cache_set_starts_no_process_and_leaves_the_cache_alone(test_recipe, tmp_path):
    cache = tmp_path / "cache"
    script = test_recipe.render()
    assert test_recipe.run(script, ENVBUILD_CACHE_DIR=str(cache)).returncode == 0
    subprocess.run(["rm", "-rf", str(cache)], check=True)
    trace = tmp_path / "trace"
    traced = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=execve,fork,vfork,clone,clone3", "-o", str(trace), "bash", str(script)],
        env=test_recipe.env(ENVBUILD_CACHE_DIR=str(cache)), capture_output=True, text=True, timeout=60,
    )
    assert traced.returncode == 0, traced.stderr
    assert re.fullmatch(r"envbuild: all 4 components present \(0\.\d+ s\)\n", traced.stdout)
    calls = [line for line in trace.read_text().splitlines() if "---" not in line and "+++" not in line]
    assert len(calls) == 1, calls
    assert re.match(r'^\d+ +execve\("[^"]*/bash", \["bash", ', calls[0]), calls
    assert not cache.exists(), "the no-op path must not touch the cache"


# Cache formats (issue 15): zstd where the storing and the restoring node have it, gzip otherwise.
needs_zstd = pytest.mark.skipif(shutil.which("zstd") is None, reason="zstd is not installed")


def archives(cluster: Cluster) -> dict[str, str]:
    """Each cached component's archive name, after checking SHA256SUMS names it."""
    found = {}
    for name, paths in entries(cluster).items():
        entry = cluster.cache / "entries" / paths[0]
        archive = next(p.name for p in entry.iterdir() if p.name.startswith("files.tar."))
        assert (entry / "SHA256SUMS").read_text().splitlines()[0].endswith(f"  {archive}")
        found[name] = archive
    return {name: found[name] for name in CACHED}  # rank0-tool's too, when node 0 ran


@needs_zstd
def test_entries_are_stored_with_zstd_and_older_gzip_entries_still_restore(cluster):
    assert cluster.run(1).returncode == 0
    assert archives(cluster) == {name: "files.tar.zst" for name in CACHED}
    restored = cluster.run(0)
    assert restored.returncode == 0 and restored.stderr == "", restored.stderr
    assert "installed 4 (shared cache: 3 restored, 1 stored)" in restored.stdout
    assert_installed(cluster, 0)
    # An entry an earlier envbuild wrote: files.tar.gz, named in its SHA256SUMS.
    for paths in entries(cluster).values():
        entry = cluster.cache / "entries" / paths[0]
        subprocess.run("zstd -dcq files.tar.zst | gzip -c >files.tar.gz && rm files.tar.zst && "
                       "sha256sum files.tar.gz removed.txt >SHA256SUMS", shell=True, cwd=entry, check=True)
    assert archives(cluster) == {name: "files.tar.gz" for name in CACHED}
    old = cluster.run(2)
    assert old.returncode == 0 and old.stderr == "", old.stderr
    assert "installed 3 (shared cache: 3 restored, 0 stored)" in old.stdout
    assert_installed(cluster, 2)
    assert [b for b in cluster.recipe.builds() if b in CACHED] == sorted(CACHED, key=cluster.recipe.builds().index)


@needs_zstd
def test_a_node_without_zstd_rebuilds_zstd_entries_in_gzip_and_the_cluster_then_stores_gzip(cluster):
    assert cluster.run(1).returncode == 0  # node1 has zstd: its entries are zstd's
    assert archives(cluster) == {name: "files.tar.zst" for name in CACHED}
    plain = cluster.run(0, without=("zstd",))
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert sorted(plain.stderr.splitlines()) == sorted(
        f"envbuild: warning: {name}: cache entry {cluster.cache / 'entries' / entries(cluster)[name][0]} is "
        "zstd-compressed and this node has no zstd; it will be rebuilt and stored with gzip, which every node restores"
        for name in CACHED)
    assert "installed 4 (shared cache: 0 restored, 4 stored)" in plain.stdout
    assert_installed(cluster, 0)
    assert archives(cluster) == {name: "files.tar.gz" for name in CACHED}
    assert [p.name for p in (cluster.cache / "no-zstd").iterdir()] == ["node0"]
    # A node with zstd restores those; what it builds now, it stores with gzip for node0.
    shutil.rmtree(cluster.cache / "entries")
    stored = cluster.run(2)
    assert stored.returncode == 0 and stored.stderr == "", stored.stderr
    assert archives(cluster) == {name: "files.tar.gz" for name in CACHED}
    again = cluster.run(3, without=("zstd",))
    assert again.returncode == 0 and again.stderr == "", again.stderr
    assert "installed 3 (shared cache: 3 restored, 0 stored)" in again.stdout
    assert_installed(cluster, 3)
    assert sorted(p.name for p in (cluster.cache / "no-zstd").iterdir()) == ["node0", "node3"]
    # Once node0 and node3 have zstd, they say so: entries are zstd's again.
    assert cluster.run(0, "--force", "libhello").returncode == 0
    assert [p.name for p in (cluster.cache / "no-zstd").iterdir()] == ["node3"]
    assert cluster.run(3, "--force", "libhello").returncode == 0
    assert list((cluster.cache / "no-zstd").iterdir()) == []
    shutil.rmtree(cluster.cache / "entries")
    assert cluster.run(4).returncode == 0
    assert archives(cluster) == {name: "files.tar.zst" for name in CACHED}


def test_a_node_installs_other_components_while_another_builds_one_for_the_cache(cluster):
    """Parallel components (issue 15): node0 does not wait for the lock of libhello's entry, which
    node1 holds while building it, before installing what does not need libhello."""
    for k in range(2):
        cluster.node_dir(k)
    release = cluster.root / "release"
    hang = {"EB_TEST_HANG": "make install*", "EB_TEST_HANG_UNTIL": str(release),
            "EB_TEST_HANG_MARK": str(cluster.root / "hanging")}
    builder = cluster.start(1, ENVBUILD_PARALLEL="1", **hang)
    cluster.wait_for(cluster.root / "hanging", builder)
    other = cluster.start(0, ENVBUILD_PARALLEL="2")
    # node0 installs dataset and rank0-tool, then waits for the lock (nothing else is left to do).
    wait_until(lambda: lock_waiters(f"{cluster.cache}/locks/libhello-") == 1, [builder, other], "node0 waiting")
    state = cluster.node_dir(0) / "state/stamps"
    assert sorted(p.name for p in state.iterdir()) == ["dataset", "rank0-tool"]
    release.touch()
    results = [cluster.finish(proc) for proc in (builder, other)]
    assert [r.returncode for r in results] == [0, 0], results
    out = results[1].stdout
    assert out.index("envbuild: libhello: another run builds it for the shared cache; installing others meanwhile\n") \
        < out.index("envbuild: dataset: ") < out.index("envbuild: waiting for the lock on ")
    assert "envbuild: libhello: restored from the shared cache in " in out
    assert collections.Counter(cluster.recipe.builds())["libhello"] == 1
    assert_installed(cluster, 0)
