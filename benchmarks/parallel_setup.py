"""Cold install, one component at a time against components built at the same time (issue 15).

A recipe with the built-in mi355x-moriio's dependency shape, each step real C
compilation (generated translation units, tests' cluster_setup generator):

    ucx -> rixl -> moriio-patches      libionic -> mori      etcd      moriio-proxy-deps

Each step has a serial part (like configure: --serial units compiled one after
the other) and a parallel one (make -j"$EB_JOBS" of --units units); the
defaults keep the proportions of the real stack (UCX ~3 min and RIXL ~3.5 min
on 2 cores, MoRI a little more; etcd, libionic, the proxy deps and the patches
seconds), scaled down to seconds.

Runs alternate (--runs times, medians printed): serial (ENVBUILD_PARALLEL=1,
each component alone with all of ENVBUILD_JOBS) and parallel (the default).
From the serial runs, each component's time alone gives the critical path
(the longest chain of dependencies, summed). Its CPU seconds over the
machine's cores give the other lower bound: no schedule ends before the
machine has done the work. The goal (wall <= 1.2 x critical path) can only be
met when the work fits: on a machine whose cores the serial run already keeps
busy (make -j), what parallel builds win is the serial parts.

Usage: python benchmarks/parallel_setup.py [--runs N] [--jobs N] [--scale F]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster_setup import generated_sources  # noqa: E402

# name: (dependencies, serial units, parallel units); about 1 CPU second per unit.
SHAPE = {
    "ucx": ((), 2, 8),
    "rixl": (("ucx",), 2, 10),
    "etcd": ((), 1, 0),
    "libionic": ((), 1, 0),
    "mori": (("libionic",), 2, 12),
    "moriio-proxy-deps": ((), 2, 0),
    "moriio-patches": (("rixl",), 1, 0),
}
COMPONENT = """name: {name}
description: Stands in for {name}; real compilation.
{depends}prefix:
  {var}: {root}/opt/{name}
build: |
  cp -r {src}/. .
  for i in $(seq {serial}); do cc -O2 -g -fPIC -c u000.c -o conf$i.o; done
  {make}
  mkdir -p "${var}"
  cp *.o "${var}"/
check: |
  ls "${var}"/conf1.o >/dev/null
"""
RECIPE = "name: shape\ndescription: The built-in recipes' dependency shape.\nbase_image: debian:bookworm\ncomponents: [{}]\n"


def write_recipe(root: Path, scale: float) -> Path:
    recipes = root / "recipes"
    (recipes / "components").mkdir(parents=True)
    for name, (deps, serial, parallel) in SHAPE.items():
        serial, parallel = max(1, round(serial * scale)), round(parallel * scale)
        src = root / "src" / name
        src.mkdir(parents=True)
        for file, text in generated_sources(max(parallel, 1)).items():
            (src / file).write_text(text)
        make = 'make -j"$EB_JOBS" $(ls u*.c | sed "s/\\.c$/.o/")' if parallel else ":"
        var = name.upper().replace("-", "_") + "_HOME"
        depends = f"depends: [{', '.join(deps)}]\n" if deps else ""
        (recipes / "components" / f"{name}.yaml").write_text(COMPONENT.format(
            name=name, depends=depends, var=var, root=root, src=src, serial=serial, make=make))
    (recipes / "shape.yaml").write_text(RECIPE.format(", ".join(SHAPE)))
    script = root / "setup_deps.sh"
    subprocess.run([sys.executable, "-m", "envbuild", "runtime-script", "--recipes-dir", str(recipes), "--recipe",
                    "shape", "-o", str(script)], check=True, capture_output=True)
    return script


def cold_run(root: Path, script: Path, **env: str) -> tuple[float, float, dict[str, float]]:
    """Wall seconds, CPU seconds and each component's install time of a run from nothing."""
    subprocess.run(["rm", "-rf", str(root / "state"), str(root / "opt"), str(root / "tmp")], check=True)
    (root / "tmp").mkdir()
    environment = {"PATH": os.environ["PATH"], "HOME": str(root), "TMPDIR": str(root / "tmp"),
                   "ENVBUILD_STATE_DIR": str(root / "state"), "ENVBUILD_NIC_FAMILY": "none", **env}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(["bash", str(script)], env=environment, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"the run failed:\n{result.stdout}{result.stderr}")
    times = {name: float(seconds) for name, seconds in re.findall(r"^envbuild: (\S+): installed in ([\d.]+) s",
                                                                  result.stdout, re.M)}
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, times


def critical_path(times: dict[str, float]) -> tuple[float, list[str]]:
    """The longest chain of dependencies by the components' times alone, and its components."""
    best: dict[str, tuple[float, list[str]]] = {}
    for name, (deps, _, _) in SHAPE.items():  # dependencies come first
        before = max((best[dep] for dep in deps), default=(0.0, []))
        best[name] = (before[0] + times[name], before[1] + [name])
    return max(best.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="serial and parallel runs, alternated (default 3)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="ENVBUILD_JOBS (default: the CPUs)")
    parser.add_argument("--scale", type=float, default=1.0, help="units per component x F (default 1)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    jobs = {"ENVBUILD_JOBS": str(args.jobs)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        script = write_recipe(root, args.scale)
        serial, parallel = [], []
        for run in range(args.runs):
            serial.append(cold_run(root, script, ENVBUILD_PARALLEL="1", **jobs))
            parallel.append(cold_run(root, script, **jobs))
            print(f"run {run + 1}: serial {serial[-1][0]:.2f} s, parallel {parallel[-1][0]:.2f} s", flush=True)
    alone = {name: statistics.median(run[2][name] for run in serial) for name in SHAPE}
    path, chain = critical_path(alone)
    s_wall, p_wall = (statistics.median(run[0] for run in runs) for runs in (serial, parallel))
    s_cpu, p_cpu = (statistics.median(run[1] for run in runs) for runs in (serial, parallel))
    cores = os.cpu_count() or 1
    bound = max(path, p_cpu / min(cores, args.jobs))
    print(f"machine: {cores} CPUs, load average {load:.1f} at the start; ENVBUILD_JOBS={args.jobs}; "
          f"medians of {args.runs} runs")
    print("each component alone (serial runs): " + ", ".join(f"{name} {alone[name]:.2f} s" for name in SHAPE))
    print(f"{'':34}{'wall s':>8}{'CPU s':>8}{'x critical path':>17}")
    print(f"{'serial (ENVBUILD_PARALLEL=1)':34}{s_wall:8.2f}{s_cpu:8.1f}{s_wall / path:17.2f}")
    print(f"{'parallel (default)':34}{p_wall:8.2f}{p_cpu:8.1f}{p_wall / path:17.2f}")
    print(f"critical path {' -> '.join(chain)}: {path:.2f} s; CPU work / {min(cores, args.jobs)} cores: "
          f"{p_cpu / min(cores, args.jobs):.2f} s; no schedule beats {bound:.2f} s ({bound / path:.2f} x critical path)")
    print(f"parallel / serial: {p_wall / s_wall:.2f}; parallel / lower bound: {p_wall / bound:.2f}")
    goal = p_wall <= 1.2 * path
    print(f"goal (wall <= 1.2 x critical path): {'met' if goal else 'NOT met'}"
          + ("" if goal else f", by {p_wall / (1.2 * path) - 1:.0%}; the machine's own bound is "
                             f"{bound / path:.2f} x critical path"))


if __name__ == "__main__":
    main()
