"""Restore of a ~1 GB cache entry on 8 simulated nodes at once: gzip against zstd (issue 15).

One component, `blob`, installs a copy of real files of this machine (shared
libraries, executables, Python modules from /usr: what install prefixes hold,
compressing as they do) into its prefix, --size MB in all. For each format,
one node builds it and stores the entry (gzip: a node without zstd, which then
stores gzip; zstd: a node with it, zstd -T0), then --nodes nodes restore it at
once (tests/nodes.py: mount namespaces sharing the cache). Printed per format:
the entry's size, the store's seconds, and the wall time until the last node
has restored (median of --runs, formats alternated).

The nodes share this machine's CPUs and disk (a real cluster gives each node
its own): with 8 nodes on 2 cores, each decompressor gets a quarter of a core,
and all of them write 8 x the data to one disk (--dir /dev/shm takes the disk
out), so what the format changes is CPU time per byte, next to costs both
formats pay (checking SHA256SUMS, tar creating the files, the check); the
per-node figure a real cluster would see is the single node's restore.

Needs root (unshare, mount).
Usage: python benchmarks/cache_restore.py [--size MB] [--nodes N] [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
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

BLOB = """name: blob
description: A copy of real binaries and libraries, ~1 GB.
prefix:
  BLOB_HOME: {{install_root}}/opt/blob
build: |
  mkdir -p "$BLOB_HOME"
  cp -a {payload}/. "$BLOB_HOME"/
check: |
  test -d "$BLOB_HOME/usr"
"""


def make_payload(path: Path, size: int) -> int:
    """Copies regular files from /usr into `path` until `size` bytes; returns the bytes copied."""
    total = 0
    for top in ("/usr/lib", "/usr/bin", "/usr/libexec", "/usr/local/lib", "/usr/share"):
        for directory, _, files in sorted(os.walk(top)):
            for name in sorted(files):
                source = Path(directory) / name
                if source.is_symlink() or not source.is_file():
                    continue
                target = path / source.relative_to("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                total += target.stat().st_size
                if total >= size:
                    return total
    return total


@dataclass
class BlobRecipe(NodeRecipe):
    payload: Path | None = None

    def __post_init__(self):
        self.extra_components = {"blob": BLOB.format(payload=self.payload)}
        self.components = ["blob"]
        super().__post_init__()


@dataclass
class Outcome:
    entry_mb: float
    store: float
    single: float
    together: float


def one_format(work: Path, server: FileServer, payload: Path, nodes: int, fmt: str) -> Outcome:
    cluster = Cluster(work, server, recipe_class=BlobRecipe, payload=payload)
    try:
        for k in range(nodes + 2):
            cluster.node_dir(k)
        without = ("zstd",) if fmt == "gzip" else ()
        start = time.perf_counter()
        stored = cluster.run(0, without=without, timeout=3600)
        store = time.perf_counter() - start
        assert stored.returncode == 0 and "stored in the shared cache" in stored.stdout, stored.stdout + stored.stderr
        entry = next((cluster.cache / "entries").iterdir())
        archive = next(p for p in entry.iterdir() if p.name.startswith("files.tar."))
        assert archive.name == ("files.tar.gz" if fmt == "gzip" else "files.tar.zst"), archive
        # Restorers all have zstd; gzip's marker would only change what they store.
        shutil.rmtree(cluster.cache / "no-zstd", ignore_errors=True)
        start = time.perf_counter()
        alone = cluster.run(1, timeout=3600)
        single = time.perf_counter() - start
        start = time.perf_counter()
        procs = [cluster.start(k) for k in range(2, nodes + 2)]
        results = [cluster.finish(proc, timeout=3600) for proc in procs]
        together = time.perf_counter() - start
        for result in [alone, *results]:
            assert result.returncode == 0 and "restored from the shared cache" in result.stdout, \
                result.stdout + result.stderr
        return Outcome(archive.stat().st_size / 1e6, store, single, together)
    finally:
        cluster.close()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000, help="MB the component installs (default 1000)")
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--runs", type=int, default=1, help="runs of each format, alternated (default 1)")
    parser.add_argument("--dir", default="/var/tmp", help="where the nodes and the cache live (default /var/tmp; "
                        "/dev/shm takes the disk out: ~10 GB of memory)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root: nodes are mount namespaces (unshare, mount --bind)")
    if shutil.which("zstd") is None:
        raise SystemExit("zstd is not installed: nothing to compare")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        (root / "www").mkdir()
        server = FileServer(root / "www")
        size = make_payload(root / "payload", args.size * 1_000_000)
        outcomes: dict[str, list[Outcome]] = {"gzip": [], "zstd": []}
        try:
            for run in range(args.runs):
                for fmt in outcomes:
                    outcomes[fmt].append(one_format(root / f"{fmt}{run}", server, root / "payload", args.nodes, fmt))
                    o = outcomes[fmt][-1]
                    print(f"run {run + 1} {fmt}: store {o.store:.2f} s, 1 node {o.single:.2f} s, "
                          f"{args.nodes} nodes {o.together:.2f} s", flush=True)
        finally:
            server.close()
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} at the start; payload {size / 1e6:.0f} MB "
          f"(files of /usr) in {args.dir}; medians of {args.runs} runs")
    print(f"{'':8}{'entry MB':>10}{'store s':>9}{'1 node s':>10}{f'{args.nodes} nodes s':>12}")
    median = {fmt: Outcome(*(statistics.median(getattr(o, field) for o in runs)
                             for field in ("entry_mb", "store", "single", "together")))
              for fmt, runs in outcomes.items()}
    for fmt, o in median.items():
        print(f"{fmt:8}{o.entry_mb:10.0f}{o.store:9.2f}{o.single:10.2f}{o.together:12.2f}")
    gz, zst = median["gzip"], median["zstd"]
    ratio = gz.together / zst.together
    print(f"zstd against gzip: {args.nodes} nodes at once {ratio:.2f}x faster, one node {gz.single / zst.single:.2f}x, "
          f"store {gz.store / zst.store:.2f}x")
    print(f"goal (>= 3x faster, {args.nodes} nodes at once): "
          + ("met" if ratio >= 3 else f"NOT met, by {1 - ratio / 3:.0%}"))


if __name__ == "__main__":
    main()
