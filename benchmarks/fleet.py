"""One image for every cluster: its build time against an image for one family, and activation at container start.

Build: the test recipe (tests/testrecipe.py: libhello, greet, and nicdrv and
nicdep, built per NIC family) with nic_families [ionic, mlx5, bnxt], baked side
by side as the image for every cluster (each family's nicdrv and nicdep in a
stage of its own) and as the image for ionic alone (`--nic-family ionic`), each
from fresh sources (so nothing comes from an earlier build) with the layer cache
on, as `envbuild image` builds. Printed per image: seconds, component steps run,
bytes it adds to the base. --bulk N makes nicdrv also compile N generated C
functions, so that the part built per family weighs as a real one (MoRI) does.

Activation: in a container of that image for every cluster, without network,
each run a fresh `bash -c 'source setup_deps.sh'` (what a job start pays,
bash's start included) with every build present; the node's family
- read from sysfs by bash: a fixture ionic node (tests/nic_fixtures.py) mounted
  at ENVBUILD_ROOT;
- given: ENVBUILD_NIC_FAMILY=ionic (no detection);
- from the Python detector: a node with mixed vendors, its cached answer
  removed before each run;
and the same three with the built-in mi355x-moriio script, every component
stamped as its image for every cluster holds them (MoRI for ionic, mlx5 and
bnxt). Sourcing an empty file is the floor. Goal: activation <= 50 ms, detection included.

Needs a Docker engine (scripts/ensure-docker) and the tests' base image (built on
first use). Sources are served from 127.0.0.1, so builds use the host's network.
Everything built is removed at the end.

Usage: python benchmarks/fleet.py [--runs N] [--activations N] [--bulk N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS.parent / "tests"))
sys.path.insert(0, str(BENCHMARKS))

from docker_base import ImageSession, ensure_base_image  # noqa: E402
from localsources import FileServer  # noqa: E402
from nic_fixtures import ionic_node, make_node, mlx5_rails, rail  # noqa: E402
from rebuild import bulk_source  # noqa: E402
from stamps import expected_stamp, expected_unit  # noqa: E402
from testrecipe import NICDEP, NICDRV, HttpRecipe  # noqa: E402

from envbuild.formats import stamp_line  # noqa: E402
from envbuild.pipeline import load_plan  # noqa: E402
from envbuild.render.script import render_script  # noqa: E402
from envbuild.run.docker_engine import BuildTranscript, connect  # noqa: E402
from envbuild.run.image import Baked, bake  # noqa: E402
from envbuild.spec.loader import Library  # noqa: E402

FAMILIES = ["ionic", "mlx5", "bnxt"]
COMPONENTS = ["libhello", "greet", "nicdrv", "nicdep"]
NICDRV_AFTER_GREET = NICDRV.replace("nic_specific: true\n", "nic_specific: true\ndepends:\n  - greet\n")
# Times `bash -c 'source SCRIPT'` N times in the container, with what the variant sets; one "start end" line each.
TIMING_LOOP = r"""
script=$1 runs=$2 forget=$3
for ((i = 0; i < runs; i++)); do
  [[ -z $forget ]] || rm -f "$forget"
  start=$EPOCHREALTIME
  bash -c 'source "$0" >/dev/null' "$script"
  end=$EPOCHREALTIME
  echo "$start $end"
done
"""


def make_recipe(root: Path, server: FileServer, bulk: int) -> HttpRecipe:
    nicdrv = NICDRV_AFTER_GREET
    if bulk:
        # A heredoc in the build text (a YAML block: two spaces in), braces doubled for the recipe's str.format.
        source = "".join(f"  {line}\n" for line in bulk_source(bulk).splitlines()).replace("{", "{{").replace("}", "}}")
        nicdrv = nicdrv.replace("  mkdir -p nicdrv", f"  cat > bulk.c <<'EOF'\n{source}  EOF\n  cc -O2 -c bulk.c\n"
                                "  mkdir -p nicdrv")
    return HttpRecipe(root, server, components=list(COMPONENTS), extra_components={"nicdrv": nicdrv, "nicdep": NICDEP},
                      recipe_extra=f"nic_families: [{', '.join(FAMILIES)}]\n")


def build(session: ImageSession, base_image: str, bulk: int, family: str | None, tag: str) -> Baked:
    """The test recipe baked from fresh sources: for `family` alone, or (None) for every family."""
    with tempfile.TemporaryDirectory(prefix="envbuild-fleet-") as tmp:
        (Path(tmp) / "www").mkdir()
        server = FileServer(Path(tmp) / "www")
        transcript = BuildTranscript()
        try:
            recipe = make_recipe(Path(tmp) / "t", server, bulk)
            plan = load_plan(recipe.recipes, "testrecipe", nic_family=family, base_image=base_image)
            return bake(plan, [tag], network="host", progress=transcript)
        finally:
            session.track(transcript)
            server.close()


def timed_activations(client, session: ImageSession, image: str, mounts: dict[str, str], script: str, runs: int,
                      environment: dict[str, str], forget: str = "") -> list[float]:
    """Milliseconds of each `bash -c 'source script'` in one container of `image` (`mounts`: host dir -> path)."""
    volumes = {host: {"bind": path, "mode": "rw"} for host, path in mounts.items()}
    container = client.containers.create(image, ["bash", "-c", TIMING_LOOP, "_", script, str(runs), forget],
                                         labels=session.labels, network_mode="none", environment=environment,
                                         volumes=volumes)
    try:
        container.start()
        status = container.wait(timeout=600)["StatusCode"]
        out = container.logs(stderr=False).decode()
        if status != 0:
            raise SystemExit(f"timing in {image} failed (exit {status}): {container.logs().decode()}")
    finally:
        container.remove(force=True)
    return [(float(end) - float(start)) * 1000 for start, end in (line.split() for line in out.splitlines())]


def builtin_state(directory: Path) -> Path:
    """The built-in mi355x-moriio script and a state dir stamped as its image for every cluster holds them."""
    plan = load_plan(Library().root, "mi355x-moriio")
    stamps = directory / "state" / "stamps"
    stamps.mkdir(parents=True)
    (directory / "setup_deps.sh").write_text(render_script(plan))
    for step in plan.steps:
        for family in FAMILIES if step.nic_specific else [""]:
            (stamps / expected_unit(plan, step, family)).write_text(
                stamp_line(expected_stamp(plan, step, family)) + "\n")
    return directory


def report(name: str, times: list[float]) -> str:
    ordered = sorted(times)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"  {name:<46} {statistics.median(times):7.1f} ms  (p90 {p90:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="builds of each image from fresh sources (default 1)")
    parser.add_argument("--activations", type=int, default=30, help="timed activations per variant (default 30)")
    parser.add_argument("--bulk", type=int, default=0, metavar="N",
                        help="make nicdrv also compile N generated C functions (default 0)")
    args = parser.parse_args()
    client = connect()
    base_image = ensure_base_image(client)
    session = ImageSession()
    builds: dict[str, list[Baked]] = {"every cluster (ionic, mlx5, bnxt)": [], "ionic alone": []}
    try:
        for index in range(args.runs):
            # Alternating which comes first: the engine's state must favour neither.
            order = list(builds.items()) if index % 2 == 0 else list(reversed(builds.items()))
            for name, baked in order:
                family = None if name.startswith("every") else "ionic"
                baked.append(build(session, base_image, args.bulk, family, session.tag(f"{family or 'fleet'}{index}")))
                print(f"run {index + 1}/{args.runs}: {name} built in {baked[-1].seconds:.1f} s", file=sys.stderr)
        fleet_image = builds["every cluster (ionic, mlx5, bnxt)"][0].tags[0]

        with tempfile.TemporaryDirectory(prefix="envbuild-fleet-nodes-", dir="/dev/shm") as tmp:
            nodes = Path(tmp)
            (nodes / "ionic").mkdir()
            (nodes / "mixed").mkdir()
            ionic = ionic_node(nodes / "ionic")
            mixed = make_node(nodes / "mixed", mlx5_rails(3) + [rail("ionic", "ionic_0", 7, "enp8s0")])
            builtin = builtin_state(nodes / "builtin")
            mounts = {str(ionic.root): "/ionic", str(mixed.root): "/mixed", str(builtin): "/builtin"}
            scripts = {
                "test recipe, image for every cluster": ("/opt/envbuild/setup_deps.sh", {}, "/var/lib/envbuild"),
                "mi355x-moriio, stamped for every family": ("/builtin/setup_deps.sh",
                                                            {"ENVBUILD_STATE_DIR": "/builtin/state"},
                                                            "/builtin/state"),
            }
            timings: dict[str, dict[str, list[float]]] = {}
            for title, (script, env, state) in scripts.items():
                timings[title] = {
                    "family read from sysfs by bash (ionic node)": timed_activations(
                        client, session, fleet_image, mounts, script, args.activations, {**env, "ENVBUILD_ROOT": "/ionic"}),
                    "family given (ENVBUILD_NIC_FAMILY=ionic)": timed_activations(
                        client, session, fleet_image, mounts, script, args.activations,
                        {**env, "ENVBUILD_NIC_FAMILY": "ionic"}),
                    "family from the Python detector (mixed node)": timed_activations(
                        client, session, fleet_image, mounts, script, args.activations,
                        {**env, "ENVBUILD_ROOT": "/mixed"}, forget=f"{state}/nic-family"),
                }
            floor = timed_activations(client, session, fleet_image, mounts, "/dev/null", args.activations, {})
    finally:
        session.cleanup(client)

    print(f"Build from fresh sources, layer cache on, base {base_image}"
          + (f", nicdrv compiling {args.bulk} generated C functions" if args.bulk else "")
          + f", median of {args.runs} run(s):")
    print(f"  {'image':<36} {'seconds':>8} {'steps run':>10} {'adds':>10}")
    for name, baked in builds.items():
        seconds = statistics.median(b.seconds for b in baked)
        steps = statistics.median(sum(c.seconds is not None for c in b.components) for b in baked)
        added = statistics.median(b.added_bytes for b in baked)
        print(f"  {name:<36} {seconds:8.1f} {steps:10.0f} {added / 1e3:8.0f} kB")
    ratio = (statistics.median(b.seconds for b in builds["every cluster (ionic, mlx5, bnxt)"])
             / statistics.median(b.seconds for b in builds["ionic alone"]))
    print(f"  every cluster / ionic alone: {ratio:.2f}x")
    print(f"Activation in the container (`bash -c 'source setup_deps.sh'`, {args.activations} runs each, median):")
    for title, variants in timings.items():
        print(f" {title}:")
        for name, times in variants.items():
            print(report(name, times))
    print(" the floor:\n" + report("sourcing an empty file", floor))
    print("goal: activation <= 50 ms, detection included")


if __name__ == "__main__":
    main()
