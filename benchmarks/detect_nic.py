"""NIC detection time on a 10-device node (goal: under 100 ms).

The fixture is the mia1 shape: eight mlx5 rails renamed rdma0..7, a DOWN port
and a management ConnectX on the default route, each with a full 256-slot GID
table (the worst case a real mlx5 port shows). Timed three ways: in-process
without a vendor tool, in-process with a fake `mlnx_qos` on PATH (one process
spawn), and the runtime script's way, `python3 -I -S -` with the source on stdin,
next to bare interpreter starts for scale, with and without the site module.

Usage: python benchmarks/detect_nic.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from nic_fixtures import build_tree, mia1_nics, mlnx_qos_output, write_tool  # noqa: E402

from envbuild.runtime import nic  # noqa: E402

GOAL_MS = 100.0
TABLE_SIZE = 256


def milliseconds(action, runs: int) -> list:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return times


def report(label: str, times: list) -> None:
    verdict = "ok" if statistics.median(times) < GOAL_MS else "OVER GOAL"
    print(f"{label:<50} median {statistics.median(times):7.1f} ms   "
          f"min {min(times):7.1f}   max {max(times):7.1f}   {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    source = Path(nic.__file__).read_text()
    with tempfile.TemporaryDirectory() as tmp:
        root = build_tree(Path(tmp) / "node", mia1_nics(table_size=TABLE_SIZE), management=None, default_route="eno1")
        empty_bin, tool_bin = Path(tmp) / "empty", Path(tmp) / "bin"
        empty_bin.mkdir()
        write_tool(tool_bin, "mlnx_qos", mlnx_qos_output())
        profile = {"dscp": 26, "service_level": 3}
        result = nic.detect(str(root), environ={"PATH": str(tool_bin)})
        print(f"fixture: 10 devices x {TABLE_SIZE} GID slots -> {nic.summary(result)}")
        report("in-process, no vendor tool (sysfs + profile)",
               milliseconds(lambda: nic.detect(str(root), environ={"PATH": str(empty_bin)}, profile=profile),
                            args.runs))
        report("in-process, mlnx_qos on PATH",
               milliseconds(lambda: nic.detect(str(root), environ={"PATH": str(tool_bin)}), args.runs))
        script_env = {"PATH": f"{tool_bin}:/usr/bin:/bin"}
        # What any python3 run costs here; the script's figure includes it.
        for flags in (["-I"], ["-I", "-S"]):
            report(f"python3 {' '.join(flags)} -c pass (interpreter start alone)",
                   milliseconds(lambda: subprocess.run([sys.executable, *flags, "-c", "pass"], env=script_env,
                                                       check=True), args.runs))
        report("python3 -I -S - (runtime script), mlnx_qos on PATH",
               milliseconds(lambda: subprocess.run(
                   [sys.executable, "-I", "-S", "-", "--root", str(root)], input=source, text=True, env=script_env,
                   stdout=subprocess.DEVNULL, check=True), args.runs))


if __name__ == "__main__":
    main()
