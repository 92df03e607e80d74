"""What checking the base image's needs costs: the generated mi355x-moriio script on
a node where nothing is installed yet and ROCm is missing, so that the run stops at
its preflight (every component's needs checked, Python's headers included) before
any build. Side by side with bash starting alone, the script's --list (the
script parsed, nothing checked) and the preflight with a Python that does not run
(`false`: the builtin checks alone), each as fresh `bash` processes.

Usage: python benchmarks/preflight.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from envbuild.pipeline import load_plan
from envbuild.render.script import render_script
from envbuild.spec.loader import Library


def timed_runs(command: list[str], env: dict[str, str], runs: int, status: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
        assert result.returncode == status, command
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    plan = load_plan(Library().root, "mi355x-moriio")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "setup_deps.sh"
        script.write_text(render_script(plan))
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "ENVBUILD_STATE_DIR": f"{tmp}/state", "HOME": tmp,
               "ENVBUILD_NIC_FAMILY": "ionic", "ENVBUILD_PYTHON": sys.executable, "ROCM_PATH": f"{tmp}/no-rocm"}
        stopped = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
        print(f"script says: {stopped.stderr.strip()[:160]}...")
        preflight = timed_runs(["bash", str(script)], env, args.runs, 1)
        builtins = timed_runs(["bash", str(script)], dict(env, ENVBUILD_PYTHON="false"), args.runs, 1)
        listing = timed_runs(["bash", str(script), "--list"], env, args.runs, 0)
        bare = timed_runs(["bash", "-c", ":"], env, args.runs, 0)
    bare_ms, list_ms, builtins_ms, preflight_ms = (statistics.median(t) * 1000
                                                   for t in (bare, listing, builtins, preflight))
    print(f"runs per variant:                     {args.runs}")
    print(f"bash start alone (median):            {bare_ms:7.2f} ms")
    print(f"script --list (median):               {list_ms:7.2f} ms")
    print(f"preflight, Python not run (median):   {builtins_ms:7.2f} ms   (checks: {builtins_ms - list_ms:.2f} ms)")
    print(f"preflight with Python's headers:      {preflight_ms:7.2f} ms   (checks: {preflight_ms - list_ms:.2f} ms)")


if __name__ == "__main__":
    main()
