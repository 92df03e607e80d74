"""Image rebuild after a pin bump: a stage per component vs one layer chain vs one RUN.

A five-component recipe with local sources and real (small) builds is baked
side by side in three layouts running the very same steps: as `envbuild image`
renders it (components that write only their own prefixes build in stages of
their own, copied into the image), as the earlier linear chain (one RUN layer
per component in plan order, which envbuild rendered before) and as a single
RUN for all. Then a pin moves and all three are rebuilt. Printed per layout:
component RUN layers rebuilt, components whose step ran again, other layers
made again (copies), and seconds.

    libhello    C program, make, from git        own stage
    dataset     tarball checked against sha256   own stage, nothing depends on it
    greet       pip package from git, needs libhello   runs in the image
    wordcount   C program, make, from git        own stage
    rank0-tool  no source, NODE_RANK 0 only      own stage

--bump dataset (default) is the case of issue #15: a component with no
dependents early in the order (second of five); goal: 1 layer rebuilt.
--bump greet moves the pip package instead (third of five).

Sources are served from 127.0.0.1 (git over the dumb HTTP protocol), so the
builds use the host's network (`docker build --network host`). Needs a Docker
engine: run scripts/ensure-docker first. The base image is the tests' local
debootstrap one (built on first use, a minute or two). Every run uses fresh
sources on a fresh port, so nothing comes from an earlier run's cache; the
images built are removed at the end.

Usage: python benchmarks/rebuild.py [--runs N] [--bulk N]

--bulk N makes the two C builds heavier (N generated functions each), as
real components are: per-layer RUNs cost a container each, which only
pays off once the steps they save weigh more than that.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from docker_base import ImageSession, ensure_base_image  # noqa: E402
from localsources import FileServer  # noqa: E402
from localsources import make_tarball, sha256  # noqa: E402
from testrecipe import COMPONENTS as COMPONENTS_TEXT, HttpRecipe  # noqa: E402

from envbuild.formats import IMAGE_EPOCH  # noqa: E402
from envbuild.run.docker_engine import BuildTranscript, build, connect, make_context_tar, settle_image  # noqa: E402
from envbuild.pipeline import load_plan  # noqa: E402
from envbuild.plan import Plan  # noqa: E402
from envbuild.render.dockerfile import build_context  # noqa: E402

COMPONENTS = ["libhello", "dataset", "greet", "wordcount", "rank0-tool"]
WORDCOUNT = """name: wordcount
description: A second make-style C build from git.
source:
  git: {git_base}wordcount.git
  commit: {wordcount_commit}
prefix:
  WORDCOUNT_HOME: {install_root}/opt/wordcount
build: |
  echo wordcount >> {builds_log}
  make -j"$EB_JOBS"
  make install PREFIX="$WORDCOUNT_HOME"
check: |
  echo one two three | "$WORDCOUNT_HOME/bin/wordcount" | grep -qx 3
"""
WORDCOUNT_C = """#include <ctype.h>
#include <stdio.h>
int main(void) {
  int c, words = 0, in_word = 0;
  while ((c = getchar()) != EOF) {
    if (isspace(c)) in_word = 0;
    else if (!in_word) { in_word = 1; words++; }
  }
  printf("%d\\n", words);
  return 0;
}
"""
WORDCOUNT_MAKEFILE = """PREFIX ?= /usr/local
wordcount: wordcount.c
\t$(CC) -O2 -o $@ wordcount.c
install: wordcount
\tmkdir -p $(PREFIX)/bin
\tinstall -m 755 wordcount $(PREFIX)/bin/wordcount
"""
_INSTALLING = re.compile(r"^envbuild: (\S+): installing ", re.M)


def bulk_source(functions: int) -> str:
    """C code that keeps the optimiser busy for a while, to weigh the builds."""
    body = "".join(
        f"double f{i}(double x) {{ for (int k = 0; k < {i % 7 + 3}; k++) x = x * 1.0001 + {i}.5 / (x + 1); return x; }}\n"
        for i in range(functions)
    )
    return body + "int bulk_main(void) { return 0; }\n"


def make_recipe(root: Path, server: FileServer, bulk: int) -> HttpRecipe:
    recipe = HttpRecipe(root, server)
    wordcount_files = {"wordcount.c": WORDCOUNT_C, "Makefile": WORDCOUNT_MAKEFILE}
    if bulk:
        # Both C builds also compile a generated file: libhello stays cached, wordcount comes after the bump.
        recipe.libhello_commit = recipe.commit("libhello", {"bulk.c": bulk_source(bulk)}, "bulk")
        wordcount_files["bulk.c"] = bulk_source(bulk)
        compile_bulk = '  cc -O2 -c bulk.c\n'
        recipe.extra_components["libhello"] = COMPONENTS_TEXT["libhello"].replace(
            '  make -j"$EB_JOBS"\n', '  make -j"$EB_JOBS"\n' + compile_bulk)
        recipe.extra_components["wordcount"] = WORDCOUNT.replace('  make -j"$EB_JOBS"\n', '  make -j"$EB_JOBS"\n' + compile_bulk)
    else:
        recipe.extra_components["wordcount"] = WORDCOUNT
    recipe.wordcount_commit = recipe.commit("wordcount", wordcount_files)
    recipe.components[:] = COMPONENTS
    recipe.write()
    return recipe


def recipe_plan(recipe: HttpRecipe, base_image: str) -> Plan:
    return load_plan(recipe.recipes, "testrecipe", base_image=base_image)


def linear_dockerfile(staged: str) -> str:
    """The same build as the linear chain envbuild rendered before: every component's RUN in plan order in the image."""
    lines = staged.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("FROM envbuild-base AS component-"))
    image = next(i for i, line in enumerate(lines) if line == "FROM envbuild-base")
    components = sorted({line.split()[1].rstrip("/") for line in lines if line.startswith("COPY envbuild/components/")})
    chain = []
    for directory in components:
        name = directory.rsplit("/", 1)[-1].split("-", 1)[1]
        run = next(line for line in lines if line.startswith(f"RUN ENVBUILD_COMPONENT={name} "))
        chain += ["", f"COPY {directory}/ /", run.replace(" --stage ", " ")]
    rest = [line for line in lines[image + 1:] if not line.startswith(("COPY --from=", "COPY envbuild/components/", "RUN "))]
    return "\n".join(lines[:start] + ["FROM envbuild-base"] + chain + rest) + "\n"


def single_run_dockerfile(staged: str) -> str:
    """The linear chain with every component's COPY and RUN folded into one of each."""
    lines = linear_dockerfile(staged).splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("COPY envbuild/components/"))
    last = max(i for i, line in enumerate(lines) if line.startswith("RUN ENVBUILD_COMPONENT="))
    copies = [line.split()[1] for line in lines[first:last + 1] if line.startswith("COPY envbuild/components/")]
    runs = [line[len("RUN "):] for line in lines[first:last + 1] if line.startswith("RUN ENVBUILD_COMPONENT=")]
    assert len(runs) == len(COMPONENTS), runs
    folded = [
        "# every component in one layer, the same steps in the same order",
        f"COPY {' '.join(copies)} /",
        "RUN ENVBUILD_COMPONENT=all-components true \\\n && " + " \\\n && ".join(runs),
    ]
    return "\n".join(lines[:first] + folded + lines[last + 1:]) + "\n"


@dataclass
class Rebuild:
    seconds: float  # build, then the reproducible config (as `envbuild image` does)
    layers_rebuilt: int  # component RUN layers that ran instead of coming from the cache
    component_layers: int
    components_run: list[str]  # components whose step ran
    other_layers: int  # other instructions done again (copies, ENV, LABEL)


def timed_build(client, session: ImageSession, files: dict, tag: str, base_image: str) -> Rebuild:
    transcript = BuildTranscript()
    output: list[str] = []

    def on_event(event: dict) -> None:
        transcript.feed(event)
        output.append(event.get("stream", ""))

    started = time.monotonic()
    try:
        built = build(client, make_context_tar(files), None, on_event=on_event, network_mode="host")
        settle_image(client, built, base_image, [tag], IMAGE_EPOCH)
    finally:
        session.track(transcript)
    seconds = time.monotonic() - started
    component_steps = [step for step in transcript.steps if step.component]
    return Rebuild(
        seconds=seconds,
        layers_rebuilt=sum(not step.cached for step in component_steps),
        component_layers=len(component_steps),
        components_run=_INSTALLING.findall("".join(output)),
        other_layers=sum(not s.cached and not s.is_from and not s.component for s in transcript.steps),
    )


def variants(plan: Plan) -> dict[str, dict]:
    staged = build_context(plan)
    dockerfile = staged["Dockerfile"][0].decode()
    return {
        "stage per component": staged,
        "linear chain (before)": dict(staged, Dockerfile=(linear_dockerfile(dockerfile).encode(), 0o644)),
        "single RUN": dict(staged, Dockerfile=(single_run_dockerfile(dockerfile).encode(), 0o644)),
    }


def bump(recipe: HttpRecipe, name: str) -> None:
    if name == "greet":
        recipe.greet_commit = recipe.commit("greet", {"greet/news.py": "NEWS = 2\n"}, "greet: news")
    else:
        data = make_tarball({"README": "data 2\n"}, "dataset-1.0")
        (recipe.server.root / "dataset-1.0.tar.gz").write_bytes(data)
        recipe.dataset_sha256 = sha256(data)
    recipe.write()


def one_run(client, session: ImageSession, base_image: str, index: int, bulk: int,
            bumped: str) -> dict[str, tuple[Rebuild, Rebuild]]:
    with tempfile.TemporaryDirectory(prefix="envbuild-rebuild-") as tmp:
        (Path(tmp) / "www").mkdir()
        server = FileServer(Path(tmp) / "www")
        try:
            recipe = make_recipe(Path(tmp) / "t", server, bulk)
            cold = {name: timed_build(client, session, files, session.tag(f"run{index}-{slug(name)}"), base_image)
                    for name, files in variants(recipe_plan(recipe, base_image)).items()}
            bump(recipe, bumped)
            warm = {name: timed_build(client, session, files, session.tag(f"run{index}-{slug(name)}-bumped"),
                                      base_image)
                    for name, files in variants(recipe_plan(recipe, base_image)).items()}
        finally:
            server.close()
    return {name: (cold[name], warm[name]) for name in cold}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="fresh recipes built and bumped (default 3)")
    parser.add_argument("--bulk", type=int, default=0, metavar="N",
                        help="make libhello and wordcount also compile N generated C functions (default 0)")
    parser.add_argument("--bump", choices=["dataset", "greet"], default="dataset",
                        help="the component whose pin moves (default dataset)")
    args = parser.parse_args()
    client = connect()
    base_image = ensure_base_image(client)
    session = ImageSession()
    results: list[dict[str, tuple[Rebuild, Rebuild]]] = []
    try:
        for index in range(args.runs):
            results.append(one_run(client, session, base_image, index, args.bulk, args.bump))
            print(f"run {index + 1}/{args.runs}: " + ", ".join(
                f"{name} rebuild {warm.seconds:.1f} s" for name, (_, warm) in results[-1].items()), file=sys.stderr)
    finally:
        session.cleanup(client)

    print(f"Rebuild after bumping the pin of {args.bump} (component {COMPONENTS.index(args.bump) + 1} of "
          f"{len(COMPONENTS)}), median of {args.runs} run(s), base {base_image}"
          + (f", C builds weighed with {args.bulk} generated functions" if args.bulk else ""))
    print(f"{'layout':<22} {'component RUNs':>14} {'RUNs rebuilt':>13} {'steps re-run':>13} {'other layers':>13} "
          f"{'cold build s':>13} {'rebuild s':>10}")
    medians = {}
    for name in results[0]:
        cold = [run[name][0] for run in results]
        warm = [run[name][1] for run in results]
        medians[name] = statistics.median(w.seconds for w in warm)
        last = warm[-1]
        print(f"{name:<22} {last.component_layers:>14} {last.layers_rebuilt:>13} {len(last.components_run):>13} "
              f"{last.other_layers:>13} {statistics.median(c.seconds for c in cold):>13.1f} {medians[name]:>10.1f}")
        print(f"{'':<22} re-run: {', '.join(last.components_run)}")
    staged = medians["stage per component"]
    for name in list(medians)[1:]:
        print(f"rebuild time, {name} / stage per component: {medians[name] / staged:.2f}x")


if __name__ == "__main__":
    main()
