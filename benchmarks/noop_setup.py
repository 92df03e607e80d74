"""No-op setup time: envbuild's generated mi355x-moriio script vs the seed's check path,
and vs the same script rendered by another envbuild (a git ref, default main).

With every component present, all are run side by side, several times each, as
fresh `bash` processes (what a job start pays). The seed-style path is what
DESIGN.md §1 describes: `test -x` checks, `dpkg -l`, and python3 -c imports.
Its imports fail fast here (none of the packages exist on this machine), so
its figure is a lower bound of what it costs on a real node. The baseline
shows what a change to the engine costs the no-op path (issue 13: the journal
of killed runs is looked for there, with globs and `kill -0` only); strace, when
installed, counts the processes the no-op run starts (it must start none).

Usage: python benchmarks/noop_setup.py [--runs N] [--baseline REF]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from envbuild.formats import stamp_line  # noqa: E402
from envbuild.pipeline import load_plan  # noqa: E402
from envbuild.render.script import render_script  # noqa: E402
from envbuild.spec.loader import Library  # noqa: E402
from stamps import expected_stamp, expected_unit  # noqa: E402

NIC_FAMILY = "ionic"
SEED_CHECKS = """
test -x "${UCX_HOME:-/usr/local/ucx}/bin/ucx_info" || true
python3 -c "import rixl" 2>/dev/null || true
test -x /usr/local/bin/etcd/etcd || true
dpkg -l libionic1 2>/dev/null | grep -q '^ii' || true
python3 -c "import mori" 2>/dev/null || true
python3 -c "import quart, aiohttp, msgpack, zmq" 2>/dev/null || true
python3 -c "import vllm.model_executor.layers.fused_moe.layer" 2>/dev/null || true
python3 -c "import vllm.distributed.kv_transfer.kv_connector.v1.moriio.moriio_connector" 2>/dev/null || true
python3 -c "import vllm.distributed.kv_transfer.kv_connector.v1.moriio.moriio_engine" 2>/dev/null || true
python3 -c "import vllm.v1.core.sched.scheduler" 2>/dev/null || true
"""


def timed_runs(command: list[str], env: dict[str, str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def baseline_script(ref: str, into: Path) -> Path | None:
    """The script rendered by envbuild as of git `ref` from that ref's own recipes (both unpacked
    into `into`: a newer recipe may use keys the older envbuild does not know), or None."""
    repo = Path(__file__).resolve().parent.parent
    archive = subprocess.run(["git", "-C", str(repo), "archive", ref, "envbuild", "recipes"], capture_output=True)
    if archive.returncode != 0:
        print(f"baseline {ref}: {archive.stderr.decode().strip()}")
        return None
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    script = into / "setup_deps.sh"
    env = dict(os.environ, PYTHONPATH=str(into))
    # Run from `into`: `python -m` puts the working directory first on the path.
    subprocess.run([sys.executable, "-m", "envbuild", "runtime-script", "--recipes-dir", str(into / "recipes"),
                    "--recipe", "mi355x-moriio", "-o", str(script)], env=env, cwd=into, check=True, capture_output=True)
    return script


def processes_started(script: Path, env: dict[str, str], trace: Path) -> int | None:
    """How many processes the run starts besides bash itself (None without strace)."""
    if shutil.which("strace") is None:
        return None
    subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve,fork,vfork,clone,clone3", "-o", str(trace),
                    "bash", str(script)], env=env, check=True, stdout=subprocess.DEVNULL)
    calls = [line for line in trace.read_text().splitlines() if re.search(r"execve|fork|clone", line)]
    return len(calls) - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--baseline", default="main", help="git ref of the envbuild to compare with (default main)")
    args = parser.parse_args()
    library = Library()
    plan = load_plan(library.root, "mi355x-moriio")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        script = work / "setup_deps.sh"
        script.write_text(render_script(plan))
        stamps = work / "state" / "stamps"
        stamps.mkdir(parents=True)
        for step in plan.steps:
            (stamps / expected_unit(plan, step, NIC_FAMILY)).write_text(
                stamp_line(expected_stamp(plan, step, NIC_FAMILY)) + "\n")
        seed = work / "seed_checks.sh"
        seed.write_text(SEED_CHECKS)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "ENVBUILD_STATE_DIR": str(work / "state"),
               "ENVBUILD_NIC_FAMILY": NIC_FAMILY, "HOME": tmp}
        check = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=True)
        print(f"script says: {check.stdout.strip()}")
        (work / "baseline").mkdir()
        before = baseline_script(args.baseline, work / "baseline")
        if before is not None:
            said = subprocess.run(["bash", str(before)], env=env, capture_output=True, text=True).stdout.strip()
            if not said.startswith("envbuild: all "):
                print(f"baseline {args.baseline}: not a no-op with these stamps ({said.splitlines()[-1:]}); left out")
                before = None
        started = processes_started(script, env, work / "trace")
        size_kb = script.stat().st_size // 1024
        base_kb = before.stat().st_size // 1024 if before else 0
        ours = timed_runs(["bash", str(script)], env, args.runs)
        baseline = timed_runs(["bash", str(before)], env, args.runs) if before else None
        theirs = timed_runs(["bash", str(seed)], env, args.runs)
        bare = timed_runs(["bash", "-c", ":"], env, args.runs)
    ours_ms, theirs_ms, bare_ms = (statistics.median(t) * 1000 for t in (ours, theirs, bare))
    print(f"runs per variant:            {args.runs}")
    print(f"bash start alone (median):   {bare_ms:7.2f} ms")
    print(f"envbuild no-op (median):     {ours_ms:7.2f} ms   (goal <= 20 ms), script {size_kb} KB")
    if baseline:
        base_ms = statistics.median(baseline) * 1000
        print(f"  same, envbuild {args.baseline + ':':9} {base_ms:7.2f} ms   (difference {ours_ms - base_ms:+.2f} ms), "
              f"script {base_kb} KB")
    if started is not None:
        print(f"processes the no-op starts:  {started:7d}      (strace; goal 0)")
    print(f"seed-style checks (median):  {theirs_ms:7.2f} ms   (lower bound, see docstring)")
    print(f"ratio seed / envbuild:       {theirs_ms / ours_ms:7.1f}x")


if __name__ == "__main__":
    main()
