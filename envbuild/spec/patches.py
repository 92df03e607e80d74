"""Source patches of the recipes: their metadata, order, state and text.

Patches live under `<recipes>/patches/<package>-<version>/`, one `patches.yaml`
per directory listing its patches:

    patches:
      - name: idle-kv-reaper             # unique across all directories
        file: idle-kv-reaper.patch       # in the same directory
        kind: diff                       # diff (default) or anchored-insert
        dist: vllm                       # distribution whose files it changes
        specifier: "==0.17.1"            # PEP 440; "" for any version
        optional: false                  # skip instead of fail on a version mismatch
        depends: [scheduler-read-mode]   # patches applied before it
        description: What it fixes and why.

Everything is validated on load, every problem naming file, line and key. The
patches are applied by `envbuild.patchapply`, which runs without envbuild
wherever the patches go (runtime script or image); `manifest_text` is what it
reads, and a component's content hash covers `canonical_json`.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from envbuild.errors import EnvbuildError, Problem, RecipeError, UsageError
from envbuild.net import last_line
from envbuild.runtime import patchapply
from envbuild.spec import schema
from envbuild.spec.yamlfile import LocatedDict, display_path, load_mapping

METADATA_FILE = "patches.yaml"
KINDS = ("diff", "anchored-insert")
DIST_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _specifier(checker: schema.Checker, value: Any, line: int, key: str) -> bool:
    if not schema.string()(checker, value, line, key):
        return False
    try:
        SpecifierSet(value)
    except InvalidSpecifier:
        checker.add(line, key, f"{value!r} is not a version specifier")
        return False
    return True


PATCH = schema.Shape({
    "name": schema.Field(schema.string(schema.NAME_RE, "a name (lowercase letters, digits, dashes)"), required=True),
    "file": schema.Field(schema.string(FILE_NAME_RE, "a file name in this directory"), required=True),
    "kind": schema.Field(schema.string(choices=KINDS)),
    "dist": schema.Field(schema.string(DIST_RE, "a distribution name"), required=True),
    "specifier": schema.Field(schema.Custom(_specifier, {"type": "string"}), required=True),
    "optional": schema.Field(schema.boolean),
    "depends": schema.Field(schema.list_of(schema.string(schema.NAME_RE, "a patch name"))),
    "description": schema.Field(schema.text, required=True),
})
METADATA = schema.Shape({"patches": schema.Field(schema.list_of(PATCH), required=True)})


@dataclass(frozen=True)
class PatchSpec:
    """A patch as its metadata file declares it, with its text read."""
    name: str
    kind: str
    dist: str
    specifier: str
    optional: bool
    depends: tuple[str, ...]
    description: str
    path: Path
    text: str
    source: str  # the metadata file, as shown in messages
    line: int
    key_lines: dict = field(default_factory=dict, compare=False, repr=False)

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)

    def for_applier(self) -> patchapply.Patch:
        return patchapply.Patch(
            name=self.name, kind=self.kind, dist=self.dist, specifier=self.specifier,
            text=self.text, optional=self.optional, depends=self.depends,
        )


def load_patch_dir(directory: Path) -> list[PatchSpec]:
    """The patches listed in `directory`/patches.yaml, in file order, validated on their own."""
    metadata = directory / METADATA_FILE
    display = display_path(metadata)
    data = load_mapping(metadata, display)
    checker = schema.Checker(display, data.written)
    if not METADATA(checker, data, data.line, ""):
        raise RecipeError(sorted(checker.problems, key=lambda p: p.line or 0))
    specs = []
    for index, entry in enumerate(data["patches"]):
        spec = _spec(checker, directory, display, entry, f"patches[{index}]")
        if spec is not None:
            specs.append(spec)
    if checker.problems:
        raise RecipeError(sorted(checker.problems, key=lambda p: p.line or 0))
    return specs


def _spec(checker: schema.Checker, directory: Path, display: str, entry: LocatedDict, key: str) -> PatchSpec | None:
    path = directory / entry["file"]
    file_line = entry.line_of("file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        checker.add(file_line, f"{key}.file", f"no such file: {display_path(path)}")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        checker.add(file_line, f"{key}.file", f"cannot read {display_path(path)}: {exc}")
        return None
    spec = PatchSpec(
        name=entry["name"],
        kind=entry.get("kind", "diff"),
        dist=entry["dist"],
        specifier=entry["specifier"],
        optional=entry.get("optional", False),
        depends=tuple(entry.get("depends", ())),
        description=entry["description"].strip(),
        path=path,
        text=text,
        source=display,
        line=entry.line,
        key_lines=dict(entry.key_lines),
    )
    try:
        spec.for_applier().changes()
    except patchapply.UsageError as exc:
        checker.add(file_line, f"{key}.file", f"{display_path(path)} is not a valid {spec.kind}: {exc}")
        return None
    return spec


def load_catalog(root: Path) -> dict[str, PatchSpec]:
    """Every patch under `root` (a recipes directory's patches/) by name.

    Checks across directories too: names are unique, dependencies exist and
    form no cycle.
    """
    problems: list[Problem] = []
    catalog: dict[str, PatchSpec] = {}
    for metadata in sorted(root.glob(f"*/{METADATA_FILE}")):
        try:
            specs = load_patch_dir(metadata.parent)
        except RecipeError as exc:
            problems.extend(exc.problems)
            continue
        for spec in specs:
            if spec.name in catalog:
                first = catalog[spec.name]
                problems.append(Problem(spec.source, spec.line_of("name"), "name",
                                        f"patch {spec.name!r} is defined already in {first.source}:{first.line}"))
            else:
                catalog[spec.name] = spec
    for spec in catalog.values():
        for needed in spec.depends:
            if needed not in catalog:
                problems.append(Problem(spec.source, spec.line_of("depends"), "depends",
                                        f"patch {spec.name!r} depends on unknown patch {needed!r}"))
    problems.extend(_cycles(catalog))
    if problems:
        raise RecipeError(problems)
    return catalog


def _cycles(catalog: dict[str, PatchSpec]) -> list[Problem]:
    problems = []
    state: dict[str, str] = {}  # name -> "visiting" | "done"

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "visiting"
        for needed in catalog[name].depends:
            if needed not in catalog:
                continue
            if state.get(needed) == "visiting":
                cycle = trail[trail.index(needed):] + [needed]
                spec = catalog[needed]
                problems.append(Problem(spec.source, spec.line_of("depends"), "depends",
                                        f"dependency cycle: {' -> '.join(cycle)}"))
            elif needed not in state:
                visit(needed, trail + [needed])
        state[name] = "done"

    for name in catalog:
        if name not in state:
            visit(name, [name])
    return problems


def select(catalog: dict[str, PatchSpec], names: Iterable[str], display: str = "", line: int | None = None,
           key: str = "patches") -> list[PatchSpec]:
    """The named patches and everything they depend on, in the order to apply.

    An unknown name is a RecipeError at `display`:`line` `key` (the caller's
    recipe file).
    """
    names = list(names)
    unknown = [name for name in names if name not in catalog]
    if unknown:
        known = ", ".join(sorted(catalog)) or "none"
        raise RecipeError([Problem(display, line, key, f"unknown patch {name!r}; known patches: {known}")
                           for name in unknown])
    return order(catalog, names)


def order(catalog: dict[str, PatchSpec], names: Iterable[str]) -> list[PatchSpec]:
    """`names` with their dependencies, each after what it depends on.

    Ties keep catalog order, so the result does not depend on how `names`
    was written. The catalog must be free of cycles (load_catalog checks).
    """
    wanted: set[str] = set()

    def collect(name: str) -> None:
        if name not in wanted:
            wanted.add(name)
            for needed in catalog[name].depends:
                collect(needed)

    for name in names:
        collect(name)
    ordered: list[PatchSpec] = []
    placed: set[str] = set()

    def place(name: str) -> None:
        if name not in placed:
            for needed in catalog[name].depends:
                place(needed)
            placed.add(name)
            ordered.append(catalog[name])

    for name in catalog:
        if name in wanted:
            place(name)
    return ordered


def canonical_json(patches: Sequence[PatchSpec]) -> str:
    """The patches (already in order) as canonical JSON: what a component's content hash covers."""
    return json.dumps({"patches": [asdict(spec.for_applier()) for spec in patches]}, indent=2, sort_keys=True) + "\n"


def manifest_text(patches: Sequence[PatchSpec]) -> str:
    """What `patchapply --manifest` reads, for patches already in order: texts verbatim, readable."""
    return patchapply.manifest_text([spec.for_applier() for spec in patches])


def check(patches: Sequence[PatchSpec], python: str, site_packages: Path | None = None) -> list[patchapply.Outcome]:
    """The state of each patch (in order, as `select` returns them) against the distributions
    `python` has installed (its sys.path, or `site_packages` only); changes nothing.

    The applier runs under `python` itself, as the runtime script runs it, so it
    sees what that Python sees. Each outcome's status is one of patchapply's
    APPLIED, APPLICABLE, CONFLICT, VERSION_MISMATCH, NOT_INSTALLED or BLOCKED (a
    dependency is not applied); `blocking` tells whether applying would fail on
    it. Raises UsageError when `python` cannot run, EnvbuildError when the applier fails.
    """
    with tempfile.TemporaryDirectory(prefix="envbuild-patches.") as scratch:
        manifest = Path(scratch) / "manifest"
        manifest.write_text(manifest_text(patches), encoding="utf-8")
        command = [python, "-I", patchapply.__file__, "check", "--manifest", str(manifest), "--json"]
        if site_packages is not None:
            command += ["--site-packages", str(site_packages)]
        try:
            result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise UsageError(f"cannot run the Python {python}: {exc.strerror}") from None
    try:
        rows = json.loads(result.stdout)
    except ValueError:
        raise EnvbuildError(f"the patch applier under {python} failed (exit {result.returncode}): "
                            f"{last_line(result.stderr or result.stdout)}") from None
    return [patchapply.Outcome(**dict({key: value for key, value in row.items() if key != "blocking"},
                                      files=tuple(row["files"]))) for row in rows]


def format_check(outcomes: Sequence[patchapply.Outcome]) -> str:
    """One line per patch: name, state, and what was found."""
    width = max((len(outcome.name) for outcome in outcomes), default=0)
    lines = []
    for outcome in outcomes:
        status = outcome.status
        if outcome.optional and not outcome.blocking and status in patchapply.SKIPPABLE:
            status += " (optional: skipped)"
        detail = outcome.message if outcome.status not in (patchapply.APPLIED, patchapply.APPLICABLE) else ""
        if not detail and outcome.dist:
            detail = f"{outcome.dist} {outcome.version}"
        lines.append(f"{outcome.name:<{width}}  {status:<16}  {detail}".rstrip())
    return "\n".join(lines) + "\n"


def show(spec: PatchSpec) -> str:
    """The patch with its metadata, as `envbuild patches show NAME` prints it."""
    description = textwrap.fill(spec.description, width=78, initial_indent="  ", subsequent_indent="  ")
    header = [
        f"name:        {spec.name}",
        f"kind:        {spec.kind}",
        f"targets:     {spec.dist} {spec.specifier or '(any version)'}",
        f"optional:    {'yes' if spec.optional else 'no'}",
        f"depends:     {', '.join(spec.depends) or '-'}",
        f"file:        {display_path(spec.path)}",
        f"defined in:  {spec.source}:{spec.line}",
        "description:",
        description,
    ]
    return "\n".join(header) + "\n\n" + spec.text
