"""Image rebuild after a pin bump: one layer per component vs one RUN for all components.

A five-component recipe with local sources and real (small) builds is baked
twice side by side: as `envbuild image` renders it (one RUN layer per
component) and as a single-RUN Dockerfile running the very same steps. Then
the pin of the middle component (greet, third of five) moves to a new commit
and both are rebuilt. Printed: component layers rebuilt, components whose step
ran again, and seconds, per variant, with the ratio.

    libhello    C program, make, from git        (unchanged, stays cached)
    dataset     tarball checked against sha256   (unchanged, stays cached)
    greet       pip package from git             <- pin bumped
    wordcount   C program, make, from git
    rank0-tool  no source, NODE_RANK 0 only

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
from testrecipe import COMPONENTS as COMPONENTS_TEXT, HttpRecipe  # noqa: E402

from envbuild.run.docker_engine import BuildTranscript, build, connect, make_context_tar  # noqa: E402
from envbuild.pipeline import load_plan  # noqa: E402
from envbuild.plan import Plan  # noqa: E402
from envbuild.render.dockerfile import build_context  # noqa: E402

COMPONENTS = ["libhello", "dataset", "greet", "wordcount", "rank0-tool"]
BUMPED = "greet"
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


def single_run_dockerfile(layered: str) -> str:
    """The same Dockerfile with every component's RUN folded into one RUN after one COPY of all fragments."""
    lines = layered.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("COPY envbuild/components/"))
    last = max(i for i, line in enumerate(lines) if line.startswith("RUN ENVBUILD_COMPONENT="))
    runs = [line[len("RUN "):] for line in lines[first:last + 1] if line.startswith("RUN ENVBUILD_COMPONENT=")]
    assert len(runs) == len(COMPONENTS), runs
    folded = [
        "# every component in one layer, the same steps in the same order",
        "COPY envbuild/components/ /opt/envbuild/lib/components/",
        "RUN ENVBUILD_COMPONENT=all-components true \\\n && " + " \\\n && ".join(runs),
    ]
    return "\n".join(lines[:first] + folded + lines[last + 1:]) + "\n"


@dataclass
class Rebuild:
    seconds: float
    layers_rebuilt: int  # component RUN layers that ran instead of coming from the cache
    component_layers: int
    components_run: list[str]  # components whose step ran


def timed_build(client, session: ImageSession, files: dict, tag: str) -> Rebuild:
    transcript = BuildTranscript()
    output: list[str] = []

    def on_event(event: dict) -> None:
        transcript.feed(event)
        output.append(event.get("stream", ""))

    started = time.monotonic()
    try:
        build(client, make_context_tar(files), tag, labels=session.labels, on_event=on_event, network_mode="host")
    finally:
        session.track(transcript)
    seconds = time.monotonic() - started
    component_steps = [step for step in transcript.steps if step.component]
    return Rebuild(
        seconds=seconds,
        layers_rebuilt=sum(not step.cached for step in component_steps),
        component_layers=len(component_steps),
        components_run=_INSTALLING.findall("".join(output)),
    )


def variants(plan: Plan) -> dict[str, dict]:
    layered = build_context(plan)
    single = dict(layered)
    single["Dockerfile"] = (single_run_dockerfile(layered["Dockerfile"][0].decode()).encode(), 0o644)
    return {"per-component layers": layered, "single RUN": single}


def one_run(client, session: ImageSession, base_image: str, index: int, bulk: int) -> dict[str, tuple[Rebuild, Rebuild]]:
    with tempfile.TemporaryDirectory(prefix="envbuild-rebuild-") as tmp:
        (Path(tmp) / "www").mkdir()
        server = FileServer(Path(tmp) / "www")
        try:
            recipe = make_recipe(Path(tmp) / "t", server, bulk)
            cold = {name: timed_build(client, session, files, session.tag(f"run{index}-{slug(name)}"))
                    for name, files in variants(recipe_plan(recipe, base_image)).items()}
            recipe.greet_commit = recipe.commit("greet", {"greet/news.py": "NEWS = 2\n"}, "greet: news")
            recipe.write()
            warm = {name: timed_build(client, session, files, session.tag(f"run{index}-{slug(name)}-bumped"))
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
    args = parser.parse_args()
    client = connect()
    base_image = ensure_base_image(client)
    session = ImageSession()
    results: list[dict[str, tuple[Rebuild, Rebuild]]] = []
    try:
        for index in range(args.runs):
            results.append(one_run(client, session, base_image, index, args.bulk))
            print(f"run {index + 1}/{args.runs}: " + ", ".join(
                f"{name} rebuild {warm.seconds:.1f} s" for name, (_, warm) in results[-1].items()), file=sys.stderr)
    finally:
        session.cleanup(client)

    print(f"Rebuild after bumping the pin of {BUMPED} (component 3 of {len(COMPONENTS)}), "
          f"median of {args.runs} run(s), base {base_image}"
          + (f", C builds weighed with {args.bulk} generated functions" if args.bulk else ""))
    print(f"{'variant':<22} {'component layers':>16} {'layers rebuilt':>15} {'steps re-run':>13} "
          f"{'cold build s':>13} {'rebuild s':>10}")
    medians = {}
    for name in results[0]:
        cold = [run[name][0] for run in results]
        warm = [run[name][1] for run in results]
        medians[name] = statistics.median(w.seconds for w in warm)
        last = warm[-1]
        print(f"{name:<22} {last.component_layers:>16} {last.layers_rebuilt:>15} "
              f"{len(last.components_run):>13} {statistics.median(c.seconds for c in cold):>13.1f} "
              f"{medians[name]:>10.1f}")
        print(f"{'':<22} re-run: {', '.join(last.components_run)}")
    layered, single = medians["per-component layers"], medians["single RUN"]
    print(f"rebuild time, single RUN / per-component layers: {single / layered:.2f}x")


if __name__ == "__main__":
    main()
