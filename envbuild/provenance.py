"""What was installed, read back: from recipes, locks, image labels and state directories.

Every kind of target becomes the same `Facts`: per component its content hash
(unknown for a lock), its source pin (`url@commit`, `url#sha256=...`) and the
sha256 of each patch text. `inspect` prints them, `diff` compares two.

A state directory is what the runtime script leaves: `stamps/<unit>` and
`provenance/<unit>`, in the formats of envbuild.formats (a unit is a component,
or `<component>@<family>` for its build for one NIC family: an image for every
cluster holds one per family).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from envbuild.errors import EnvbuildError, UsageError, counted
from envbuild.formats import parse_patches, parse_provenance, parse_stamp, parse_unit
from envbuild.pipeline import load_plan
from envbuild.plan import Plan
from envbuild.spec import lock as lockfile
from envbuild.spec.loader import SUFFIXES, Library
from envbuild.spec.sources import lock_pin
from envbuild.spec.yamlfile import display_path

LABEL_PREFIX = "io.envbuild."
COMPONENT_LABEL = "io.envbuild.component."


@dataclass
class ComponentFacts:
    """What a target says of one component."""
    name: str
    hash: str | None = None  # None: the target does not know it (a lock)
    source: str | None = None  # the pin; "" for a component without source, None when unknown
    patches: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)  # everything else the target says


@dataclass
class Facts:
    """What a recipe, lock, image or state directory says, per component (inspect prints it, diff compares)."""
    kind: str  # recipe, lock, image or state
    origin: str  # what was read: a recipe file, a lock file, an image reference, a directory
    recipe: str | None = None
    recipe_hash: str | None = None
    lock_hash: str | None = None
    details: dict[str, str] = field(default_factory=dict)
    components: dict[str, ComponentFacts] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # about reading it (a recipe's plan warnings)

    def to_json(self) -> dict:
        doc = asdict(self)
        del doc["warnings"]
        doc["components"] = [asdict(c) for c in self.components.values()]
        return doc


# --- readers ----------------------------------------------------------------------


def from_plan(plan: Plan) -> Facts:
    """A recipe's facts: each component's hash, pin and patch hashes as planned."""
    lock = plan.lock
    facts = Facts("recipe", plan.recipe.file, plan.recipe.name, plan.hash, lock.hash if lock else None,
                  {"base_image": plan.recipe.base_image, "lock": lock.display if lock else ""},
                  warnings=plan.warnings())
    for step in plan.steps:
        source = step.component.source
        facts.components[step.name] = ComponentFacts(step.name, step.hash, source.pin if source else "",
                                                     dict(step.component.patch_hashes))
    return facts


def from_lock(lock: lockfile.Lock) -> Facts:
    """A lock's facts: pins and patch hashes, no content hashes (a lock has none)."""
    base = lock.doc.get("base_image") or {}
    facts = Facts("lock", lock.display, lock.doc.get("recipe"), None, lock.hash,
                  {"base_image": base.get("ref") or "", "base_image_digest": base.get("digest") or ""})
    for name in sorted(lock.components):
        entry = lock.source(name)
        details = {}
        if entry:
            details = {"status": entry.get("status") or "", "reason": entry.get("reason") or ""}
        facts.components[name] = ComponentFacts(name, None, lock_pin(entry), dict(lock.patches(name)), details)
    return facts


def from_labels(ref: str, labels: dict[str, str]) -> Facts:
    """An image's facts from its io.envbuild.* labels; EnvbuildError if envbuild did not build it."""
    if "io.envbuild.recipe" not in labels:
        raise EnvbuildError(f"image {ref} was not built by envbuild (no io.envbuild.recipe label)")
    details = {key: value for key, value in sorted(labels.items())
               if not key.startswith(COMPONENT_LABEL) and key not in
               ("io.envbuild.recipe", "io.envbuild.recipe-hash", "io.envbuild.lock-hash", "io.envbuild.components")}
    facts = Facts("image", ref, labels["io.envbuild.recipe"], labels.get("io.envbuild.recipe-hash"),
                  labels.get("io.envbuild.lock-hash"), details)
    for name in filter(None, labels.get("io.envbuild.components", "").split(",")):
        prefix = f"{COMPONENT_LABEL}{name}."
        families = labels.get(prefix + "nic-families", "")
        facts.components[name] = ComponentFacts(name, labels.get(prefix + "hash"), labels.get(prefix + "source"),
                                                parse_patches(labels.get(prefix + "patches", "")),
                                                {"nic_families": families.replace(",", ", ")} if families else {})
    return facts


def from_state_dir(path: Path) -> Facts:
    """A runtime script's state directory: its stamps and provenance records (envbuild.formats)."""
    stamps, provenance = path / "stamps", path / "provenance"
    if not stamps.is_dir() and not provenance.is_dir():
        raise UsageError(f"{path} is not an envbuild state directory (no stamps/ or provenance/ in it)")

    def names(directory: Path) -> set[str]:
        if not directory.is_dir():
            return set()
        return {p.name for p in directory.iterdir() if p.is_file() and ".tmp." not in p.name}

    facts = Facts("state", str(path))
    # Installation order, as the provenance tells it; then the name.
    entries = []
    for unit in names(stamps) | names(provenance):
        stamp_file, provenance_file = stamps / unit, provenance / unit
        stamp = parse_stamp(stamp_file.read_text(encoding="utf-8").strip()) if stamp_file.is_file() else {}
        record = parse_provenance(provenance_file.read_text(encoding="utf-8")) if provenance_file.is_file() else {}
        entries.append((record.get("installed_at", ""), unit, stamp, record))
    for _, unit, stamp, record in sorted(entries):
        name, family = parse_unit(unit)
        details = {key: value for key, value in record.items()
                   if key not in ("component", "hash", "source", "patches", "recipe", "recipe_hash")}
        if stamp:
            details["stamp"] = " ".join(filter(None, [stamp["hash"]]
                                               + ([f"nic={stamp['nic_family']}"] if stamp["nic_family"] else [])
                                               + [f"{k}={v}" for k, v in stamp["prefixes"].items()]))
        else:
            details["stamp"] = "(none: not installed, or the stamp was removed)"
        if family:
            # One of the component's builds per NIC family: its details carry @family.
            details = {f"{key}@{family}": value for key, value in details.items() if key != "nic_family"}
            known = facts.components[name].details if name in facts.components else {}
            families = ", ".join(filter(None, (known.get("nic_families"), family)))
            details = {**known, **details, "nic_families": families}
        facts.components[name] = ComponentFacts(
            name,
            stamp.get("hash") or record.get("hash"),
            record.get("source"),
            parse_patches(record.get("patches", "")),
            details,
        )
        # The recipe of the state: the one named by the newest provenance.
        if record.get("recipe"):
            facts.recipe, facts.recipe_hash = record["recipe"], record.get("recipe_hash")
    return facts


# --- output ------------------------------------------------------------------------


def format_text(facts: Facts) -> str:
    """The facts as `envbuild inspect` prints them, one indented block per component."""
    what = {"recipe": "recipe file", "lock": "lock file", "image": "image", "state": "state directory"}[facts.kind]
    lines = [f"{what} {facts.origin}"]
    if facts.recipe:
        lines.append(f"recipe {facts.recipe}" + (f" (hash {facts.recipe_hash})" if facts.recipe_hash else ""))
    if facts.lock_hash:
        lines.append(f"lock hash {facts.lock_hash}")
    for key, value in facts.details.items():
        if value:
            lines.append(f"{key} {value}")
    lines.append(f"{counted(len(facts.components), 'component')}:")
    for component in facts.components.values():
        lines.append(f"  {component.name}")
        if component.hash:
            lines.append(f"    hash     {component.hash}")
        if component.source:
            lines.append(f"    source   {component.source}")
        for name, digest in component.patches.items():
            lines.append(f"    patch    {name} {digest}")
        for key, value in component.details.items():
            if value:
                lines.append(f"    {key:<8} {value}")
    return "\n".join(lines) + "\n"


def format_json(facts: Facts) -> str:
    """The facts as JSON: Facts.to_json(), sorted keys."""
    return json.dumps(facts.to_json(), indent=2, sort_keys=True) + "\n"


# --- diff --------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """How one component differs between two targets."""
    component: str
    kind: str  # added, removed, changed pin, changed build, changed patch
    detail: str

    def __str__(self) -> str:
        return f"{self.component}: {self.kind}" + (f": {self.detail}" if self.detail else "")


def diff(a: Facts, b: Facts) -> list[Change]:
    """Component by component (A's order, then what only B has), how B differs from A.

    A pin change is `changed pin`; a patch text change `changed patch`; a content
    hash that differs with the same pin and patches is `changed build`. A side
    that does not know a value (a lock has no hashes) is not compared on it.
    """
    changes = []
    for name, ours in a.components.items():
        theirs = b.components.get(name)
        if theirs is None:
            changes.append(Change(name, "removed", f"in {a.origin} only"))
            continue
        pin_changed = ours.source is not None and theirs.source is not None and ours.source != theirs.source
        if pin_changed:
            changes.append(Change(name, "changed pin", f"{ours.source or 'no source'} -> {theirs.source or 'no source'}"))
        patch_changes = [
            f"{patch} {ours.patches.get(patch) or 'not applied'} -> {theirs.patches.get(patch) or 'not applied'}"
            for patch in sorted(set(ours.patches) | set(theirs.patches))
            if ours.patches.get(patch) != theirs.patches.get(patch)
        ]
        changes += [Change(name, "changed patch", detail) for detail in patch_changes]
        if ours.hash and theirs.hash and ours.hash != theirs.hash and not pin_changed and not patch_changes:
            changes.append(Change(name, "changed build", f"hash {ours.hash[:12]} -> {theirs.hash[:12]} with the same pin"))
    for name, theirs in b.components.items():
        if name not in a.components:
            changes.append(Change(name, "added", theirs.source or "no source"))
    return changes


def read(target: str, recipes_dir: Path | None = None) -> Facts:
    """The facts of a lock file (*.lock), a state directory, a recipe (file or name) or an image.

    An image reference that names its registry (REGISTRY[:PORT]/NAME:TAG) is read
    from that registry without pulling; any other from the local Docker engine.
    UsageError (exit 2) when the target is none of them (a path that does not
    exist, a name that is no image reference, an image the engine does not
    have), naming what was tried; EnvbuildError (exit 1) when it could be an
    image of the local engine and no engine answers, saying so.
    """
    path = Path(target)
    if path.suffix == lockfile.SUFFIX and path.is_file():
        return from_lock(lockfile.load(path))
    if path.is_dir():
        return from_state_dir(path)
    if path.suffix in SUFFIXES:
        return from_plan(load_plan(recipes_dir, target))
    library = Library(recipes_dir)
    if target in library.recipe_names():
        return from_plan(load_plan(recipes_dir, target))
    # No image reference starts with / or . (nor names a .lock): such a target is a path, as is a file.
    if target.startswith(("/", ".")) or path.suffix == lockfile.SUFFIX or path.exists():
        if not path.exists():
            raise UsageError(f"{target}: no such file or directory")
        raise UsageError(f"{target}: neither a lock file (*{lockfile.SUFFIX}), a state directory nor a recipe file")
    from envbuild.run import registry

    tried = (f"{target} is not a recipe of {display_path(library.root)} (its recipes: "
             f"{', '.join(library.recipe_names()) or 'none'}), a lock file, a state directory or a file")
    why = registry.reference_problem(target)
    if why is not None:
        raise UsageError(f"{tried}, nor an image reference ({why})")
    reference = registry.parse_reference(target)
    if reference.explicit:
        # What the nodes will pull: the registry's, even when the engine has a copy.
        return from_labels(target, registry.registry_labels(reference))
    from envbuild.run import docker_engine  # only for local images: docker-py is slow to import

    try:
        client = docker_engine.connect()
    except docker_engine.EngineUnreachable as exc:
        raise EnvbuildError(f"{tried}; tried as an image of the local Docker engine: {exc}") from None
    labels = docker_engine.image_labels(client, target)
    if labels is None:
        raise UsageError(f"{tried}, nor an image of the local Docker engine")
    return from_labels(target, labels)
