"""The recipe model: components, recipes and cluster profiles, read from YAML.

A recipe directory holds `<recipe>.yaml` files, `components/<name>.yaml`,
`clusters/<name>.yaml` and `patches/`. Everything is validated on load; a
problem anywhere raises RecipeError naming file, line and key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from envbuild import schema
from envbuild.errors import Problem, RecipeError
from envbuild.yamlfile import LocatedDict, display_path, load_mapping

if TYPE_CHECKING:
    from envbuild.lock import Lock

BUILTIN_RECIPES = Path(__file__).resolve().parent.parent / "recipes"
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def default_recipes_dir() -> Path:
    return Path(os.environ.get("ENVBUILD_RECIPES") or BUILTIN_RECIPES)


def url_basename(url: str) -> str:
    """The last path component of a URL: the file name a download is saved as."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def offline_git_name(url: str) -> str:
    """The name of a git URL's bare mirror in an offline source directory (`git/<name>.git`).

    The repository's name keeps it readable; the hash prefix keeps two URLs
    that end alike apart.
    """
    name = url_basename(url)
    name = name[: -len(".git")] if name.endswith(".git") else name
    return f"{name}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class GitSource:
    url: str
    commit: str  # "" when the recipe gives only a branch and no lock resolves it
    branch: str = ""
    submodules: bool = False
    kind = "git"

    @property
    def pinned(self) -> bool:
        return bool(self.commit)

    @property
    def pin(self) -> str:
        return f"{self.url}@{self.commit}" if self.commit else f"{self.url}#branch={self.branch}"

    @property
    def offline_name(self) -> str:
        return offline_git_name(self.url)


@dataclass(frozen=True)
class TarballSource:
    url: str
    sha256: str
    kind = "tarball"

    @property
    def pin(self) -> str:
        return f"{self.url}#sha256={self.sha256}"

    @property
    def filename(self) -> str:
        return url_basename(self.url)

    @property
    def verified(self) -> bool:
        return self.sha256 != schema.UNKNOWN_CHECKSUM


@dataclass(frozen=True)
class DebSource(TarballSource):
    package: str = ""
    version: str = ""
    kind = "deb"


@dataclass(frozen=True)
class PipGroup:
    requirements: tuple[str, ...]
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class EnvSpec:
    """Variables to set and path-like variables to prepend to, in file order."""

    set: tuple[tuple[str, str], ...] = ()
    path: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def merged(self, other: "EnvSpec") -> "EnvSpec":
        sets = dict(self.set)
        sets.update(other.set)
        paths = {name: list(values) for name, values in self.path}
        for name, values in other.path:
            paths.setdefault(name, []).extend(v for v in values if v not in paths.get(name, ()))
        return EnvSpec(tuple(sets.items()), tuple((n, tuple(v)) for n, v in paths.items()))

    def references(self) -> set[str]:
        values = [v for _, v in self.set] + [v for _, vs in self.path for v in vs]
        return {ref for value in values for ref in ENV_REFERENCE.findall(value)}

    @property
    def empty(self) -> bool:
        return not self.set and not self.path


@dataclass(frozen=True)
class Condition:
    """When a component applies; evaluated at run time, empty means always."""

    node_ranks: tuple[int, ...] = ()
    nics: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = []
        if self.node_ranks:
            parts.append("NODE_RANK in " + ",".join(map(str, self.node_ranks)))
        if self.nics:
            parts.append("NIC family in " + ",".join(self.nics))
        return " and ".join(parts) or "always"


@dataclass(frozen=True)
class Component:
    name: str
    description: str
    file: str
    source: GitSource | TarballSource | DebSource | None = None
    apt: tuple[str, ...] = ()
    pip: tuple[PipGroup, ...] = ()
    depends: tuple[str, ...] = ()
    prefix: tuple[tuple[str, str], ...] = ()
    build: str = ""
    check: str = ""
    env: EnvSpec = EnvSpec()
    when: Condition = Condition()
    nic_specific: bool = False
    patches: tuple[str, ...] = ()
    patch_manifest: str = ""  # the applier's JSON manifest, patch texts included
    patch_hashes: tuple[tuple[str, str], ...] = ()  # (patch name, sha256 of its text), in applying order
    key_lines: tuple[tuple[str, int], ...] = ()

    def line(self, key: str) -> int:
        return dict(self.key_lines).get(key, 1)

    def identity(self) -> dict:
        """Everything that defines what gets installed (not how it is described)."""
        source = None
        if self.source is not None:
            source = {"kind": self.source.kind, **{k: v for k, v in vars(self.source).items()}}
        return {
            "name": self.name,
            "source": source,
            "apt": list(self.apt),
            "pip": [{"requirements": list(g.requirements), "options": list(g.options)} for g in self.pip],
            "depends": list(self.depends),
            "prefix": [list(p) for p in self.prefix],
            "build": self.build,
            "check": self.check,
            "nic_specific": self.nic_specific,
            "patches": self.patch_manifest,
        }


@dataclass(frozen=True)
class Cluster:
    name: str
    description: str
    file: str
    nic_family: str = ""
    rail_count: int | None = None
    dscp: int | None = None
    service_level: int | None = None
    env: EnvSpec = EnvSpec()

    def profile(self) -> dict:
        """The profile as NIC detection takes it (nic.detect's `profile`), unset fields left out."""
        fields = {"name": self.name, "nic_family": self.nic_family, "rail_count": self.rail_count,
                  "dscp": self.dscp, "service_level": self.service_level}
        return {key: value for key, value in fields.items() if value not in (None, "")}


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    file: str
    base_image: str
    components: tuple[str, ...]
    env: EnvSpec
    cluster: Cluster | None
    chain: tuple[str, ...]
    component_lines: tuple[tuple[str, str, int], ...]  # (name, file, line) of each listing
    key_lines: tuple[tuple[str, int], ...] = ()
    # envbuild.lock.Lock of <recipes dir>/<name>.lock, when there is one
    lock: Lock | None = dataclasses.field(default=None, compare=False)

    def line(self, key: str) -> int:
        return dict(self.key_lines).get(key, 1)

    def with_base_image(self, image: str) -> "Recipe":
        return dataclasses.replace(self, base_image=image)

    def with_nic_family(self, family: str) -> "Recipe":
        """The recipe for one NIC family, as if its cluster profile said so."""
        cluster = self.cluster or Cluster(name="", description="NIC family given on the command line", file="")
        return dataclasses.replace(self, cluster=dataclasses.replace(cluster, nic_family=family))


def _env(data: dict | None) -> EnvSpec:
    if not data:
        return EnvSpec()
    return EnvSpec(
        tuple((k, v) for k, v in (data.get("set") or {}).items()),
        tuple((k, tuple(v)) for k, v in (data.get("path") or {}).items()),
    )


def _as_tuple(value) -> tuple:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list) else (value,)


def _source(data: dict | None):
    if not data:
        return None
    if "git" in data:
        return GitSource(data["git"], data.get("commit", ""), data.get("branch", ""), data.get("submodules", False))
    if "deb" in data:
        return DebSource(data["deb"], data["sha256"], data["package"], data["version"])
    return TarballSource(data["url"], data["sha256"])


def _pip(data) -> tuple[PipGroup, ...]:
    if not data:
        return ()
    loose = tuple(item for item in data if isinstance(item, str))
    groups = tuple(
        PipGroup(tuple(item["requirements"]), tuple(item.get("options") or ()))
        for item in data if isinstance(item, dict)
    )
    return ((PipGroup(loose),) if loose else ()) + groups


def _manifest_json(chosen: list) -> str:
    if not chosen:
        return ""
    from envbuild import patches

    return patches.manifest_json(chosen)


class Library:
    """A directory of recipes, components and cluster profiles."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else default_recipes_dir()
        self._components: dict[str, Component] = {}
        self._patches = None

    def _load(self, path: Path, shape: schema.Shape, expected_name: str) -> LocatedDict:
        display = display_path(path)
        data = load_mapping(path, display)
        checker = schema.Checker(display)
        shape.check(checker, data, data.line, "")
        name = data.get("name")
        if isinstance(name, str) and name != expected_name:
            checker.add(data.line_of("name"), "name", f"{name!r} does not match the file name {expected_name!r}")
        if checker.problems:
            raise RecipeError(sorted(checker.problems, key=lambda p: p.line or 0))
        return data

    def recipe_names(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.yaml"))

    def component_names(self) -> list[str]:
        return sorted(p.stem for p in (self.root / "components").glob("*.yaml"))

    def cluster_names(self) -> list[str]:
        return sorted(p.stem for p in (self.root / "clusters").glob("*.yaml"))

    def component(self, name: str) -> Component:
        if name not in self._components:
            path = self.root / "components" / f"{name}.yaml"
            data = self._load(path, schema.COMPONENT, name)
            when = data.get("when") or {}
            chosen = self._patches_of(data, path)
            self._components[name] = Component(
                name=name,
                description=data["description"].strip(),
                file=display_path(path),
                source=_source(data.get("source")),
                apt=_as_tuple(data.get("apt")),
                pip=_pip(data.get("pip")),
                depends=_as_tuple(data.get("depends")),
                prefix=tuple((data.get("prefix") or {}).items()),
                build=data.get("build", ""),
                check=data.get("check", ""),
                env=_env(data.get("env")),
                when=Condition(_as_tuple(when.get("node_rank")), _as_tuple(when.get("nic"))),
                nic_specific=data.get("nic_specific", False),
                patches=_as_tuple(data.get("patches")),
                patch_manifest=_manifest_json(chosen),
                patch_hashes=tuple((p.name, hashlib.sha256(p.text.encode()).hexdigest()) for p in chosen),
                key_lines=tuple(data.key_lines.items()),
            )
        return self._components[name]

    def patch_catalog(self):
        from envbuild import patches

        if self._patches is None:
            self._patches = patches.load_catalog(self.root / "patches")
        return self._patches

    def _patches_of(self, data: LocatedDict, path: Path) -> list:
        """The component's patches (PatchSpecs) in applying order."""
        if not data.get("patches"):
            return []
        from envbuild import patches

        return patches.select(self.patch_catalog(), data["patches"], display_path(path), data.line_of("patches"))

    def cluster_by_name(self, name: str) -> Cluster:
        """A cluster profile asked for by name, refusing unknown names with the known ones."""
        if name not in self.cluster_names():
            known = ", ".join(self.cluster_names()) or "none"
            raise RecipeError([Problem(display_path(self.root / "clusters"), None, "",
                                       f"no cluster profile named {name!r} (known: {known})")])
        return self.cluster(name)

    def cluster(self, name: str) -> Cluster:
        path = self.root / "clusters" / f"{name}.yaml"
        data = self._load(path, schema.CLUSTER, name)
        qos = data.get("qos") or {}
        return Cluster(
            name=name,
            description=data["description"].strip(),
            file=display_path(path),
            nic_family=data.get("nic_family", ""),
            rail_count=data.get("rail_count"),
            dscp=qos.get("dscp"),
            service_level=qos.get("service_level"),
            env=_env(data.get("env")),
        )

    def recipe_path(self, name_or_path: str) -> Path:
        candidate = Path(name_or_path)
        if candidate.suffix in (".yaml", ".yml"):
            return candidate
        return self.root / f"{name_or_path}.yaml"

    def holding(self, name_or_path: str) -> "Library":
        """The library a recipe belongs to: this one, or the directory of a recipe file elsewhere."""
        path = self.recipe_path(name_or_path)
        if path.parent.resolve() != self.root.resolve() and path.exists():
            return Library(path.parent)
        return self

    def recipe(self, name: str, cluster: str | None = None) -> Recipe:
        """Load a recipe with its `extends` chain and cluster profile applied."""
        chain: list[tuple[Path, LocatedDict]] = []
        path = self.recipe_path(name)
        holder = self.holding(name)
        if holder is not self:
            return holder.recipe(path.stem, cluster)
        current = path.stem
        while True:
            path = self.root / f"{current}.yaml"
            if not path.exists():
                if chain:
                    parent_path, parent = chain[-1]
                    raise RecipeError([Problem(display_path(parent_path), parent.line_of("extends"), "extends",
                                               f"no recipe named {current!r} in {display_path(self.root)}")])
                known = ", ".join(self.recipe_names()) or "none"
                raise RecipeError([Problem(display_path(path), None, "",
                                           f"no recipe named {current!r} (known recipes: {known})")])
            data = self._load(path, schema.RECIPE, current)
            if any(current == p.stem for p, _ in chain):
                cycle = " -> ".join([p.stem for p, _ in chain] + [current])
                raise RecipeError([Problem(display_path(chain[-1][0]), chain[-1][1].line_of("extends"), "extends",
                                           f"recipes extend each other in a cycle: {cycle}")])
            chain.append((path, data))
            if "extends" not in data:
                break
            current = data["extends"]
        return self._combine(chain, cluster)

    def _combine(self, chain: list[tuple[Path, LocatedDict]], cluster_name: str | None) -> Recipe:
        base_image, cluster_from, env = "", None, EnvSpec()
        listings: list[tuple[str, str, int]] = []
        for path, data in reversed(chain):  # the root of the chain first
            base_image = data.get("base_image", base_image)
            if "cluster" in data:
                cluster_from = (data["cluster"], path, data.line_of("cluster"))
            env = env.merged(_env(data.get("env")))
            items = data.get("components") or []
            for index, item in enumerate(items):
                if item not in [n for n, _, _ in listings]:
                    listings.append((item, display_path(path), items.item_lines[index]))
        top_path, top = chain[0]
        if not base_image:
            raise RecipeError([Problem(display_path(top_path), top.line, "base_image",
                                       "missing required key (and no recipe it extends sets one)")])
        cluster = None
        if cluster_name:
            cluster = self.cluster_by_name(cluster_name)
        elif cluster_from:
            name, path, line = cluster_from
            if name not in self.cluster_names():
                raise RecipeError([Problem(display_path(path), line, "cluster", f"no cluster profile named {name!r}")])
            cluster = self.cluster(name)
        if cluster is not None:
            env = env.merged(cluster.env)
        from envbuild import lock

        lock_file = lock.lock_path(self.root, top_path.stem)
        return Recipe(
            name=top_path.stem,
            description=top["description"].strip(),
            file=display_path(top_path),
            base_image=base_image,
            components=tuple(n for n, _, _ in listings),
            env=env,
            cluster=cluster,
            chain=tuple(p.stem for p, _ in chain),
            component_lines=tuple(listings),
            key_lines=tuple(top.key_lines.items()),
            lock=lock.load(lock_file, display_path(lock_file)),
        )
