"""Simulated cluster nodes on one machine, sharing one build cache (issue 6).

Binaries embed their install prefixes, and prefixes are part of the stamp and
cache keys, so separate nodes must use the same paths. Each node here is a
mount and UTS namespace (`unshare`, as root) in which the node's own directory
is bind-mounted at one fixed path, `Cluster.mount`: its state dir, prefixes,
Python venv and TMPDIR are there, at the same paths on every node, in
different files; its hostname is node<K>. The cache dir, the sources and the
build counter ($EB_TEST_BUILDS) are shared.

Outside the namespaces a node's files are under `Cluster.node_dir(k)`.

`Cluster.bin` comes first on the nodes' PATH and holds wrappers for `tar` and
`make` that pass through to the real command, unless EB_TEST_HANG is a bash
pattern matching "<command> <arguments>": then they touch EB_TEST_HANG_MARK
(and EB_TEST_HANG_MARKS/<pid>) and sleep before the real command
(EB_TEST_HANG_WHEN=before, the default) or after it (after): until the file
EB_TEST_HANG_UNTIL exists if that is set, else EB_TEST_HANG_SECONDS (default
300). Tests kill a run while it sleeps there, or hold it until the other runs
have reached a given point (`lock_waiters`, `wait_until`).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from localsources import FileServer
from testrecipe import LocalRecipe

# The archive of the cache entries a node stores: zstd's when it has zstd, else gzip's (issue 15).
ARCHIVE = "files.tar.zst" if shutil.which("zstd") else "files.tar.gz"

NAMESPACE = 'mount --bind "$1" "$2" && hostname "$3" && shift 3 && exec "$@"'

WRAPPER = r"""#!/bin/bash
# Test wrapper (tests/nodes.py): may hang before or after the real command.
name=${0##*/}
self=$(cd "${0%/*}" && pwd)
real=''
IFS=: read -ra dirs <<<"$PATH"
for dir in "${dirs[@]}"; do
  if [[ $dir != "$self" && -x $dir/$name ]]; then real=$dir/$name; break; fi
done
# shellcheck disable=SC2053
if [[ -n ${EB_TEST_HANG:-} && "$name $*" == $EB_TEST_HANG ]]; then
  if [[ ${EB_TEST_HANG_WHEN:-before} == after ]]; then
    "$real" "$@" || exit
  fi
  [[ -z ${EB_TEST_HANG_MARK:-} ]] || : >"$EB_TEST_HANG_MARK"
  [[ -z ${EB_TEST_HANG_MARKS:-} ]] || : >"$EB_TEST_HANG_MARKS/$$"
  if [[ -n ${EB_TEST_HANG_UNTIL:-} ]]; then
    for ((i = 0; i < 12000; i++)); do
      [[ ! -e $EB_TEST_HANG_UNTIL ]] || break
      sleep 0.01
    done
  else
    sleep "${EB_TEST_HANG_SECONDS:-300}"
  fi
  [[ ${EB_TEST_HANG_WHEN:-before} != after ]] || exit 0
fi
exec "$real" "$@"
"""


def lock_waiters(prefix: str) -> int:
    """How many processes are blocked in `flock -w` on a file whose path starts with `prefix`."""
    count = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")[:-1]
            if Path(args[0].decode()).name != "flock" or b"-w" not in args:
                continue
            target = os.readlink(proc / "fd" / args[-1].decode())
        except (OSError, IndexError, UnicodeDecodeError):
            continue
        count += target.startswith(prefix)
    return count


def wait_until(condition, procs: list[subprocess.Popen], what: str, timeout: float = 60) -> None:
    """Waits until condition() holds, failing if it takes `timeout` seconds or one of `procs` ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        ended = [proc for proc in procs if proc.poll() is not None]
        if ended:
            out, err = ended[0].communicate()
            raise AssertionError(f"a run ended (exit {ended[0].returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.02)


def write_wrappers(path: Path) -> Path:
    """Writes the hanging `tar` and `make` wrappers (see the module docstring) into directory `path`."""
    path.mkdir(parents=True, exist_ok=True)
    for name in ("tar", "make"):
        (path / name).write_text(WRAPPER)
        (path / name).chmod(0o755)
    return path


@dataclass
class NodeRecipe(LocalRecipe):
    """The test recipe with its prefixes under `mount`, the path every node sees as its own."""

    mount: Path | None = None

    def values(self) -> dict:
        return dict(super().values(), install_root=self.mount)


class Cluster:
    """One recipe and script, nodes in namespaces, one cache dir."""

    def __init__(self, root: Path, server: FileServer, recipe_class: type[NodeRecipe] = NodeRecipe, **recipe_options):
        self.root = root
        self.mount = root / "node"
        self.mount.mkdir(parents=True)
        self.cache = root / "cache"
        self.bin = write_wrappers(root / "bin")
        self.recipe = recipe_class(root / "t", server, mount=self.mount, **recipe_options)
        self.script = self.recipe.render()
        self.procs: list[subprocess.Popen] = []

    def node_dir(self, k: int, venv: str = "venv") -> Path:
        """The node's files (its view of `mount`), with a Python venv named `venv`."""
        path = self.root / "nodes" / f"node{k}"
        (path / "tmp").mkdir(parents=True, exist_ok=True)
        if not (path / venv).exists():
            subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(path / venv)],
                           check=True)
        return path

    def env(self, k: int, **extra: str) -> dict[str, str]:
        env = self.recipe.env()
        env.update({
            "PATH": f"{self.bin}:{env['PATH']}",
            "TMPDIR": str(self.mount / "tmp"),
            "ENVBUILD_STATE_DIR": str(self.mount / "state"),
            "ENVBUILD_PYTHON": str(self.mount / "venv" / "bin" / "python"),
            "ENVBUILD_CACHE_DIR": str(self.cache),
            "NODE_RANK": str(k),
        })
        env.update(extra)
        return env

    def command(self, k: int, *argv: str, venv: str = "venv") -> list[str]:
        """`argv` run on node k."""
        return ["unshare", "--mount", "--uts", "--propagation", "private", "--", "bash", "-c", NAMESPACE, "node",
                str(self.node_dir(k, venv)), str(self.mount), f"node{k}", *argv]

    def start(self, k: int, *args: str, venv: str = "venv", without: tuple[str, ...] = (),
              **extra: str) -> subprocess.Popen:
        """The setup script on node k, in a session of its own (its process group is the node's).
        The commands named in `without` are not installed on the node (/dev/null, which cannot
        run, is mounted over each)."""
        argv = ["bash", str(self.script), *args]
        if without:
            paths = [shutil.which(name) for name in without]
            mounts = " && ".join(f"mount --bind /dev/null {shlex.quote(path)}" for path in paths)
            argv = ["bash", "-c", f"{mounts} && exec \"$@\"", "hide", *argv]
        proc = subprocess.Popen(self.command(k, *argv, venv=venv),
                                env=self.env(k, **extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=self.root, start_new_session=True)
        self.procs.append(proc)
        return proc

    def finish(self, proc: subprocess.Popen, timeout: float = 120) -> subprocess.CompletedProcess:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(proc)
            raise AssertionError(f"{proc.args} did not finish within {timeout} s") from None
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def run(self, k: int, *args: str, timeout: float = 120, venv: str = "venv", without: tuple[str, ...] = (),
            **extra: str) -> subprocess.CompletedProcess:
        return self.finish(self.start(k, *args, venv=venv, without=without, **extra), timeout)

    def kill(self, proc: subprocess.Popen) -> None:
        """kill -9 of the run and everything it started, as when a node or job dies."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()

    def wait_for(self, path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
        """Waits until `path` exists (a wrapper reached its hang), failing if `proc` ends first."""
        deadline = time.monotonic() + timeout
        while not path.exists():
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"the run ended (exit {proc.returncode}) before {path.name}:\n{out}\n{err}")
            if time.monotonic() > deadline:
                self.kill(proc)
                raise AssertionError(f"{path} did not appear within {timeout} s")
            time.sleep(0.02)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.kill(proc)
