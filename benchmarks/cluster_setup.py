"""Cold setup of 8 nodes at once, with and without the shared build cache (issue 6).

The nodes are simulated on this machine (tests/nodes.py): each is a mount and
UTS namespace with its own state dir, prefixes and Python venv at the same
paths, all of them sharing one cache dir. The recipe:

    libbig    generated C library (--units translation units of 120 functions,
              -O2 -g), shared + static library, headers and a tool; make -j
              from a local git repository: the expensive component
    libhello  small C program from git (greet depends on it)
    greet     pip package from git (setuptools build)
    dataset   tarball over HTTP, checked against its sha256

Three kinds of cold run, each from empty nodes (and an empty cache):

    single    one node alone, no cache: the reference a cluster should match
    cache     N nodes started together, ENVBUILD_CACHE_DIR shared
    no cache  N nodes started together, each building everything

Single and cache alternate --runs times (medians are printed, so load from
elsewhere on the machine hits both alike); no cache runs once, it is long.
Printed: builds of each component (counted by the steps themselves), wall time
until the last node is done, CPU seconds of all the runs together, and the
ratios to the single node. The goal: one build per component with the cache,
and a wall time within 1.3x of the single node.

Every node shares this machine's CPUs (a real cluster gives each node its
own), so the no-cache wall time here is inflated by CPU contention; its CPU
seconds show the work a cluster would repeat on every node.

Needs root (unshare, mount).
Usage: python benchmarks/cluster_setup.py [--nodes N] [--units N] [--runs N] [--no-nocache]
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from localsources import FileServer  # noqa: E402
from nodes import Cluster, NodeRecipe  # noqa: E402

FUNCTIONS = 120
LIBBIG = """name: libbig
description: A generated C library, compiled for real.
source:
  git: {git_base}libbig.git
  commit: {libbig_commit}
prefix:
  BIG_HOME: {install_root}/opt/big
build: |
  echo libbig >> {builds_log}
  make -j"$EB_JOBS"
  make install PREFIX="$BIG_HOME"
check: |
  "$BIG_HOME/bin/bigtool" | grep -q '^checksum '
"""
MAKEFILE = """UNITS := $(wildcard u*.c)
OBJS := $(UNITS:.c=.o)
CFLAGS := -O2 -g -fPIC
PREFIX ?= /usr/local
all: libbig.so libbig.a bigtool
%.o: %.c big.h
\t$(CC) $(CFLAGS) -c $< -o $@
libbig.so: $(OBJS)
\t$(CC) -shared -o $@ $(OBJS)
libbig.a: $(OBJS)
\tar rcs $@ $(OBJS)
bigtool: tool.c libbig.a
\t$(CC) $(CFLAGS) -o $@ tool.c libbig.a
install: all
\tmkdir -p $(PREFIX)/lib $(PREFIX)/include $(PREFIX)/bin
\tinstall -m 644 libbig.a $(PREFIX)/lib
\tinstall -m 755 libbig.so $(PREFIX)/lib
\tinstall -m 644 big.h $(PREFIX)/include
\tinstall -m 755 bigtool $(PREFIX)/bin
"""
FUNCTION = """unsigned big_{u}_{f}(unsigned x) {{
  unsigned acc = x ^ {f}u;
  for (int i = 0; i < 32; i++) {{
    switch ((acc + i) & 7) {{
      case 0: acc = acc * 31 + i; break;
      case 1: acc ^= acc << 3; break;
      case 2: acc += (acc >> 2) * {m13}; break;
      case 3: acc = (acc * 2654435761u) >> 7; break;
      case 4: acc -= i * {m7}; break;
      case 5: acc = ~acc + {f}u; break;
      default: acc += i * i;
    }}
  }}
  return acc;
}}
"""


def generated_sources(units: int) -> dict[str, str]:
    files = {"Makefile": MAKEFILE}
    header = ["unsigned unit_sum_%d(unsigned x);" % u for u in range(units)]
    files["big.h"] = "\n".join(header) + "\n"
    for u in range(units):
        body = [FUNCTION.format(u=u, f=f, m13=f % 13 + 1, m7=f % 7 + 3) for f in range(FUNCTIONS)]
        calls = " + ".join(f"big_{u}_{f}(x)" for f in range(FUNCTIONS))
        body.append(f"unsigned unit_sum_{u}(unsigned x) {{ return {calls}; }}\n")
        files[f"u{u:03d}.c"] = '#include "big.h"\n' + "\n".join(body)
    calls = " + ".join(f"unit_sum_{u}((unsigned)argc)" for u in range(units))
    files["tool.c"] = ('#include <stdio.h>\n#include "big.h"\n'
                       f'int main(int argc, char **argv) {{ (void)argv; printf("checksum %u\\n", {calls}); return 0; }}\n')
    return files


@dataclass
class BenchRecipe(NodeRecipe):
    units: int = 32

    def __post_init__(self):
        self.repos = self.root / "repos"
        self.libbig_commit = self.commit("libbig", generated_sources(self.units), "libbig")
        self.extra_components = {"libbig": LIBBIG}
        self.components = ["libbig", "greet", "dataset"]
        super().__post_init__()


@dataclass
class Outcome:
    wall: float
    cpu: float
    builds: dict[str, int]
    restored: int

    @staticmethod
    def median(outcomes: list[Outcome]) -> Outcome:
        middle = sorted(outcomes, key=lambda o: o.wall)[len(outcomes) // 2]
        return Outcome(statistics.median(o.wall for o in outcomes), statistics.median(o.cpu for o in outcomes),
                       middle.builds, middle.restored)


def cold_setup(work: Path, server: FileServer, nodes: int, units: int, cache: bool) -> Outcome:
    cluster = Cluster(work, server, recipe_class=BenchRecipe, units=units)
    try:
        for k in range(nodes):
            cluster.node_dir(k)
        extra = {} if cache else {"ENVBUILD_CACHE_DIR": ""}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        procs = [cluster.start(k, **extra) for k in range(nodes)]
        results = [cluster.finish(proc, timeout=3600) for proc in procs]
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        cluster.close()
    for k, result in enumerate(results):
        if result.returncode != 0:
            raise SystemExit(f"node{k} failed:\n{result.stdout}{result.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    restored = sum(result.stdout.count("restored from the shared cache in") for result in results)
    return Outcome(wall, cpu, dict(collections.Counter(cluster.recipe.builds())), restored)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--units", type=int, default=32, help="translation units of libbig (default 32)")
    parser.add_argument("--runs", type=int, default=3, help="single and cache runs, alternated (default 3)")
    parser.add_argument("--no-nocache", action="store_true", help="skip the (long) run without the cache")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root: nodes are mount namespaces (unshare, mount --bind)")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "www").mkdir()
        server = FileServer(root / "www")
        singles, shareds, separate = [], [], None
        try:
            for run in range(args.runs):
                singles.append(cold_setup(root / f"single{run}", server, 1, args.units, cache=False))
                shareds.append(cold_setup(root / f"cache{run}", server, args.nodes, args.units, cache=True))
                print(f"run {run + 1}: single {singles[-1].wall:.2f} s, {args.nodes} nodes with the cache "
                      f"{shareds[-1].wall:.2f} s", flush=True)
            if not args.no_nocache:
                separate = cold_setup(root / "nocache", server, args.nodes, args.units, cache=False)
        finally:
            server.close()
    single, shared = Outcome.median(singles), Outcome.median(shareds)
    components = list(single.builds)
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} at the start; libbig: {args.units} translation "
          f"units x {FUNCTIONS} functions, make -j{os.cpu_count()}; medians of {args.runs} runs")
    print(f"{'':28}{'wall s':>8}{'CPU s':>8}{'x single':>10}   builds per component")
    rows = [("single node, no cache", single), (f"{args.nodes} nodes, shared cache", shared)]
    rows += [(f"{args.nodes} nodes, no cache", separate)] if separate else []
    for label, outcome in rows:
        builds = ", ".join(f"{name} {outcome.builds.get(name, 0)}" for name in components)
        print(f"{label:28}{outcome.wall:8.2f}{outcome.cpu:8.1f}{outcome.wall / single.wall:10.2f}   {builds}")
    print(f"restores with the cache: {shared.restored} (of {args.nodes - 1} nodes x {len(components)} components)")
    if separate:
        print(f"no cache / cache: wall {separate.wall / shared.wall:.1f}x, CPU {separate.cpu / shared.cpu:.1f}x")
    ok = all(o.builds.get(name) == 1 for o in shareds for name in components) and shared.wall <= 1.3 * single.wall
    print(f"goal (one build per component, cache wall <= 1.3x single): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
