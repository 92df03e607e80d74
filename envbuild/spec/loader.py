"""Reading a recipe directory into the model: the only place recipe files are read.

A recipe directory holds `<recipe>.yaml` (or `.yml`) files, `components/`,
`clusters/`, `patches/`, the recipes' locks (`<recipe>.lock`) and `default`,
which names the recipe used when none is given. Everything is validated on
load; a problem anywhere raises RecipeError naming file, line and key.
"""

from __future__ import annotations

import os
from pathlib import Path

from envbuild.errors import Problem, RecipeError, UsageError
from envbuild.spec import lock as lockfile
from envbuild.spec import patches, schema
from envbuild.spec.lock import Lock
from envbuild.spec.model import CLUSTER, COMPONENT, RECIPE, Cluster, Component, EnvSpec, Recipe, RecipeFile, from_yaml
from envbuild.spec.yamlfile import LocatedDict, display_path, load_mapping

SUFFIXES = (".yaml", ".yml")
DEFAULT_FILE = "default"
RECIPE_VARIABLE = "ENVBUILD_RECIPE"
RECIPES_VARIABLE = "ENVBUILD_RECIPES"


def builtin_recipes_dir() -> Path:
    """The recipes shipped with envbuild: the package envbuild.recipes (the repository's recipes/)."""
    from importlib.resources import files

    return Path(str(files("envbuild.recipes")))


def default_recipes_dir() -> Path:
    return Path(os.environ.get(RECIPES_VARIABLE) or builtin_recipes_dir())


def _yaml_files(directory: Path) -> dict[str, Path]:
    """name -> file of the .yaml/.yml files in `directory` (.yaml wins when both exist)."""
    found: dict[str, Path] = {}
    for suffix in reversed(SUFFIXES):
        found.update({path.stem: path for path in directory.glob(f"*{suffix}") if path.is_file()})
    return dict(sorted(found.items()))


def is_recipe_path(reference: str) -> bool:
    """Whether --recipe names a file (a path or a .yaml/.yml name) rather than a recipe of the directory."""
    return "/" in reference or reference.endswith(SUFFIXES)


class Library:
    """A directory of recipes, components, cluster profiles and patches.

    Raises RecipeError (exit 2) when the directory is missing, unreadable or
    holds neither recipes nor components.
    """

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else default_recipes_dir()
        self._components: dict[str, Component] = {}
        self._patches: dict | None = None
        shown = display_path(self.root)
        if not self.root.is_dir():
            what = "not a directory" if self.root.exists() else "no such directory"
            raise RecipeError([Problem(shown, None, "", f"{what}; give a recipes directory "
                                                        f"(--recipes-dir or {RECIPES_VARIABLE})")])
        try:
            empty = not _yaml_files(self.root) and not _yaml_files(self.root / "components")
        except OSError as exc:
            raise RecipeError([Problem(shown, None, "", f"cannot read the recipes directory: {exc.strerror}")]) from None
        if empty:
            raise RecipeError([Problem(shown, None, "", "no recipes or components here: a recipes directory holds "
                                                        "<recipe>.yaml files, components/ and clusters/")])

    # --- names -----------------------------------------------------------------------

    def recipe_names(self) -> list[str]:
        """Names of the recipe files (.yaml, .yml), sorted."""
        return list(_yaml_files(self.root))

    def component_names(self) -> list[str]:
        return list(_yaml_files(self.root / "components"))

    def cluster_names(self) -> list[str]:
        return list(_yaml_files(self.root / "clusters"))

    def default_recipe(self) -> str | None:
        """The recipe named by the directory's `default` file (first line that is not a comment)."""
        path = self.root / DEFAULT_FILE
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise RecipeError([Problem(display_path(path), None, "", f"cannot read: {exc}")]) from None
        for number, line in enumerate(lines, 1):
            name = line.strip()
            if name and not name.startswith("#"):
                if name not in self.recipe_names():
                    known = ", ".join(self.recipe_names()) or "none"
                    raise RecipeError([Problem(display_path(path), number, "",
                                               f"names recipe {name!r}, which is not here (known recipes: {known})")])
                return name
        return None

    def chosen_recipe(self, given: str | None) -> str:
        """--recipe (or ENVBUILD_RECIPE) when given, else the directory's default recipe."""
        if given:
            return given
        default = self.default_recipe()
        if default is None:
            raise RecipeError([Problem(display_path(self.root), None, "",
                                       f"no recipe given and no {DEFAULT_FILE} file names one; "
                                       f"give --recipe NAME or set {RECIPE_VARIABLE}")])
        return default

    # --- files -------------------------------------------------------------------------

    def _load(self, path: Path, shape: schema.Shape, expected_name: str) -> LocatedDict:
        display = display_path(path)
        data = load_mapping(path, display)
        checker = schema.Checker(display, data.written)
        shape(checker, data, data.line, "")
        name = data.get("name")
        if isinstance(name, str) and name != expected_name:
            checker.add(data.line_of("name"), "name", f"{name!r} does not match the file name {expected_name!r}")
        if checker.problems:
            raise RecipeError(sorted(checker.problems, key=lambda p: p.line or 0))
        return data

    def patch_catalog(self) -> dict[str, patches.PatchSpec]:
        if self._patches is None:
            self._patches = patches.load_catalog(self.root / "patches")
        return self._patches

    def component(self, name: str) -> Component:
        """The component of components/<name>.yaml, validated, its patches selected (RecipeError)."""
        if name not in self._components:
            path = _yaml_files(self.root / "components").get(name, self.root / "components" / f"{name}.yaml")
            data = self._load(path, COMPONENT, name)
            chosen = ()
            if data.get("patches"):
                chosen = tuple(patches.select(self.patch_catalog(), data["patches"], display_path(path),
                                              data.line_of("patches")))
            self._components[name] = from_yaml(Component, data, file=display_path(path), patch_specs=chosen,
                                               key_lines=tuple(data.key_lines.items()))
        return self._components[name]

    def cluster_by_name(self, name: str) -> Cluster:
        """A cluster profile asked for by name, refusing unknown names with the known ones."""
        if name not in self.cluster_names():
            known = ", ".join(self.cluster_names()) or "none"
            raise RecipeError([Problem(display_path(self.root / "clusters"), None, "",
                                       f"no cluster profile named {name!r} (known: {known})")])
        return self.cluster(name)

    def cluster(self, name: str) -> Cluster:
        """The profile of clusters/<name>.yaml, validated (RecipeError)."""
        path = _yaml_files(self.root / "clusters").get(name, self.root / "clusters" / f"{name}.yaml")
        return from_yaml(Cluster, self._load(path, CLUSTER, name), file=display_path(path))

    # --- recipes -------------------------------------------------------------------------

    def recipe_path(self, reference: str) -> Path:
        """The file of a recipe given by name or path (it may not exist)."""
        if is_recipe_path(reference):
            return Path(reference)
        return _yaml_files(self.root).get(reference, self.root / f"{reference}.yaml")

    def recipe(self, reference: str, cluster: str | None = None) -> Recipe:
        """Load a recipe (name or file) with its `extends` chain and cluster profile applied.

        A recipe file elsewhere takes its `extends` recipes, components and
        profiles from this library.
        """
        path = self.recipe_path(reference)
        if is_recipe_path(reference):
            check_recipe_file(path)
        chain: list[tuple[Path, LocatedDict]] = []
        current = path.stem
        while True:
            if not path.exists():
                if chain:
                    parent_path, parent = chain[-1]
                    raise RecipeError([Problem(display_path(parent_path), parent.line_of("extends"), "extends",
                                               f"no recipe named {current!r} in {display_path(self.root)}")])
                known = ", ".join(self.recipe_names()) or "none"
                raise RecipeError([Problem(display_path(path), None, "",
                                           f"no recipe named {current!r} (known recipes: {known})")])
            data = self._load(path, RECIPE, current)
            if any(current == p.stem for p, _ in chain):
                cycle = " -> ".join([p.stem for p, _ in chain] + [current])
                raise RecipeError([Problem(display_path(chain[-1][0]), chain[-1][1].line_of("extends"), "extends",
                                           f"recipes extend each other in a cycle: {cycle}")])
            chain.append((path, data))
            if "extends" not in data:
                break
            current = data["extends"]
            path = self.recipe_path(current)
        return self._combine(chain, cluster)

    def _combine(self, chain: list[tuple[Path, LocatedDict]], cluster_name: str | None) -> Recipe:
        base_image, cluster_from, env, ucx_extra, python, gpu_target = "", None, EnvSpec(), (), None, ""
        nic_families: tuple[str, ...] = ()
        build_env: dict[str, str] = {}
        listings: list[tuple[str, str, int]] = []
        for path, data in reversed(chain):  # the root of the chain first
            file = from_yaml(RecipeFile, data)
            base_image = file.base_image or base_image
            if file.cluster:
                cluster_from = (file.cluster, path, data.line_of("cluster"))
            env = env.merged(file.env)
            build_env.update(file.build_env)
            if file.nic.ucx_net_devices_extra is not None:
                ucx_extra = file.nic.ucx_net_devices_extra
            python = file.python or python
            gpu_target = file.gpu_target or gpu_target
            nic_families = file.nic_families or nic_families
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
            ucx_net_devices_extra=ucx_extra,
            python=python,
            gpu_target=gpu_target,
            build_env=tuple(build_env.items()),
            nic_families=nic_families,
        )

    def components_for(self, recipe: Recipe) -> dict[str, Component]:
        """Every component the recipe lists and everything they depend on, by name.

        An unknown name is reported where it is written (the recipe's listing or
        the component's `depends`); all problems at once.
        """
        problems: list[Problem] = []
        found: dict[str, Component] = {}
        known = set(self.component_names())
        pending = [(name, file, line, "components") for name, file, line in recipe.component_lines]
        while pending:
            name, file, line, key = pending.pop(0)
            if name in found:
                continue
            if name not in known:
                problems.append(Problem(file, line, key,
                                        f"unknown component {name!r} (known: {', '.join(sorted(known)) or 'none'})"))
                continue
            try:
                component = found[name] = self.component(name)
            except RecipeError as exc:
                problems.extend(p for p in exc.problems if p not in problems)
                continue
            pending += [(dep, component.file, component.line("depends"), "depends") for dep in component.depends]
        if problems:
            raise RecipeError(problems)
        return found

    def lock_for(self, recipe: Recipe, command: str) -> Lock | None:
        """The lock next to the recipe's file (`<recipe>.lock`), None when there is none; `command`
        writes it (named when the file there is no lock: lockfile.load)."""
        path = lockfile.lock_path(Path(recipe.file).parent, recipe.name)
        return lockfile.load(path, display_path(path), command)


def check_recipe_file(path: Path) -> None:
    """Refuses what --recipe names as a file when it is no recipe file: UsageError when there
    is no such file or it is not a regular one (a device, a FIFO), RecipeError when it is a
    directory, not .yaml/.yml, or a component file or cluster profile."""
    shown = display_path(path)
    if not path.exists():
        raise UsageError(f"{shown}: no such recipe file")
    if path.is_dir():
        raise RecipeError([Problem(shown, None, "", "is a directory, not a recipe file "
                                                    "(a recipes directory is given with --recipes-dir)")])
    if not path.is_file():
        raise UsageError(f"{shown}: not a regular file; a recipe is a .yaml or .yml file")
    if path.suffix not in SUFFIXES:
        raise RecipeError([Problem(shown, None, "", "is not a recipe file (recipes are .yaml or .yml files)")])
    kind = _other_kind(path)
    if kind is not None:
        raise RecipeError([Problem(shown, None, "", f"is {kind}, not a recipe; "
                                                    "a recipe lists components under `components:`")])


def _other_kind(path: Path) -> str | None:
    """'a component file' or 'a cluster profile' when the file is one (by its directory or
    by keys only those have), else None."""
    kinds = {"components": "a component file", "clusters": "a cluster profile"}
    if path.resolve().parent.name in kinds:
        return kinds[path.resolve().parent.name]
    try:
        data = load_mapping(path)
    except RecipeError:
        return None
    for kind, shape in (("a component file", COMPONENT), ("a cluster profile", CLUSTER)):
        if set(data) - set(RECIPE.fields) and set(data) <= set(shape.fields):
            return kind
    return None
