"""The recipe model: components, recipes and cluster profiles as plain frozen types.

Nothing here reads a file: `envbuild.spec.loader` reads recipe directories into
these types. Each YAML key is declared once, on the type it fills, with
`yaml_key(check, ...)`: the declaration gives its validation (envbuild.spec.schema),
its JSON Schema and documentation (`shape_of`), and how its value is built
(`from_yaml`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from typing import Any, Callable

from envbuild.runtime.nic import UCX_EXTRA
from envbuild.shell import ENV_REFERENCE, PATH_REFERENCE
from envbuild.spec import schema, sources
from envbuild.spec.patches import PatchSpec, canonical_json
from envbuild.spec.sources import Source

_YAML = "envbuild.yaml"


@dataclass(frozen=True)
class YamlKey:
    check: schema.Check
    required: bool
    doc: str
    build: Callable[[Any], Any] | None


def yaml_key(check: schema.Check, *, default: Any = None, required: bool = False, doc: str = "",
             build: Callable[[Any], Any] | None = None) -> Any:
    """A dataclass field read from the YAML key of the same name."""
    return dataclasses.field(default=default, metadata={_YAML: YamlKey(check, required, doc, build)})


def _yaml_fields(cls) -> list[tuple[str, YamlKey]]:
    return [(f.name, f.metadata[_YAML]) for f in dataclasses.fields(cls) if _YAML in f.metadata]


def shape_of(cls, doc: str = "") -> schema.Shape:
    """The schema Shape of the YAML keys declared on `cls`."""
    return schema.Shape({name: schema.Field(key.check, key.required, key.doc) for name, key in _yaml_fields(cls)},
                        doc=doc)


def from_yaml(cls, data: dict, **derived: Any):
    """An instance of `cls` from validated YAML data; `derived` gives the fields YAML does not."""
    values = {}
    for name, key in _yaml_fields(cls):
        if name in data:
            values[name] = key.build(data[name]) if key.build else data[name]
    return cls(**values, **derived)


def _strip(text: str) -> str:
    return text.strip()


@dataclass(frozen=True)
class PipGroup:
    requirements: tuple[str, ...]
    options: tuple[str, ...] = ()
    # From the lock: every package pip installs for the requirements, as requirement
    # lines `name==version --hash=sha256:...` (pip's --require-hashes form); () unlocked.
    locked: tuple[str, ...] = ()
    # From a lock made against the base image: what those packages take from the image
    # instead, as `name==version` at the versions it had; the install expects them.
    base: tuple[str, ...] = ()

    def split_options(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(its package index options (schema.PIP_INDEX_OPTIONS, with their values), the other options)."""
        index: list[str] = []
        other: list[str] = []
        for item in schema.pip_option_items(self.options):
            (index if schema.pip_option_name(item) in schema.PIP_INDEX_OPTIONS else other).extend(item)
        return tuple(index), tuple(other)

    def identity(self) -> dict:
        doc = {"requirements": list(self.requirements), "options": list(self.options)}
        doc = dict(doc, locked=list(self.locked)) if self.locked else doc
        return dict(doc, base=list(self.base)) if self.base else doc


def _pip_groups(data: list) -> tuple[PipGroup, ...]:
    """Loose requirements form one group, first; each mapping is a group of its own."""
    loose = tuple(item for item in data if isinstance(item, str))
    groups = tuple(PipGroup(tuple(item["requirements"]), tuple(item.get("options") or ()))
                   for item in data if isinstance(item, dict))
    return ((PipGroup(loose),) if loose else ()) + groups


@dataclass(frozen=True)
class EnvSpec:
    """Variables to set and path-like variables to prepend to, in file order."""

    set: tuple[tuple[str, str], ...] = ()
    path: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def from_yaml(cls, data: dict | None) -> EnvSpec:
        if not data:
            return cls()
        return cls(tuple((k, v) for k, v in (data.get("set") or {}).items()),
                   tuple((k, tuple(v)) for k, v in (data.get("path") or {}).items()))

    def merged(self, other: EnvSpec) -> EnvSpec:
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


def _as_tuple(value) -> tuple:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list) else (value,)


@dataclass(frozen=True)
class Condition:
    """When a component applies; evaluated at run time, empty means always."""

    node_ranks: tuple[int, ...] = ()
    nics: tuple[str, ...] = ()

    @classmethod
    def from_yaml(cls, data: dict) -> Condition:
        return cls(_as_tuple(data.get("node_rank")), _as_tuple(data.get("nic")))

    def describe(self) -> str:
        parts = []
        if self.node_ranks:
            parts.append("NODE_RANK in " + ",".join(map(str, self.node_ranks)))
        if self.nics:
            parts.append("NIC family in " + ",".join(self.nics))
        return " and ".join(parts) or "always"


@dataclass(frozen=True)
class Needs:
    """What a component's step takes from the base image (its `needs:` block).

    The runtime script checks the needs of every component it is about to
    install before it installs anything, and names what is missing.
    """

    commands: tuple[str, ...] = yaml_key(schema.list_of(schema.command_name), default=(), build=tuple,
                                         doc="commands on PATH, e.g. hipify-perl or ninja")
    files: tuple[str, ...] = yaml_key(
        schema.list_of(schema.needed_path), default=(), build=tuple,
        doc="files, e.g. ${ROCM_PATH:-/opt/rocm}/lib/libhiprtc.so (${NAME} or ${NAME:-/default} expand)")
    python_headers: bool = yaml_key(schema.boolean, default=False,
                                    doc="the C headers (Python.h) of $EB_PYTHON, Debian's python3-dev")

    @property
    def empty(self) -> bool:
        return not (self.commands or self.files or self.python_headers)

    def references(self) -> set[str]:
        """Variables the files refer to without a default."""
        return {match.group(1) for path in self.files for match in PATH_REFERENCE.finditer(path)
                if ":-" not in match.group(0)}


NEEDS = shape_of(Needs, "what the step takes from the base image, checked before anything is installed")


@dataclass(frozen=True)
class Component:
    """One thing installed on top of the base image (a `components/<name>.yaml` file)."""

    name: str = yaml_key(schema.component_name, default="", required=True, doc="the file's name, without .yaml")
    description: str = yaml_key(schema.text, default="", required=True, build=_strip,
                                doc="what it is; the first line is its summary")
    source: Source | None = yaml_key(sources.SHAPE, doc="where its code comes from", build=sources.from_yaml)
    apt: tuple[str, ...] = yaml_key(schema.list_of(schema.apt_package), default=(), build=tuple,
                                    doc="Debian packages the step needs")
    pip: tuple[PipGroup, ...] = yaml_key(schema.PIP, default=(), build=_pip_groups,
                                         doc="pip requirements, or groups of them with options")
    depends: tuple[str, ...] = yaml_key(schema.list_of(schema.component_name), default=(), build=tuple,
                                        doc="components installed before it")
    prefix: tuple[tuple[str, str], ...] = yaml_key(
        schema.mapping_of(schema.prefix_name, schema.abs_path), default=(), build=lambda data: tuple(data.items()),
        doc="install prefixes it owns (VAR: /path), overridable from the environment at run time")
    build: str = yaml_key(schema.text, default="", doc="bash, run in the checked-out source")
    check: str = yaml_key(schema.text, default="", doc="bash that must succeed before the stamp is written")
    env: EnvSpec = yaml_key(schema.ENV, default=EnvSpec(), build=EnvSpec.from_yaml,
                            doc="environment exported once it is installed")
    when: Condition = yaml_key(schema.WHEN, default=Condition(), build=Condition.from_yaml,
                               doc="run-time condition; always when absent")
    nic_specific: bool = yaml_key(schema.boolean, default=False, doc="built per NIC family ($EB_NIC_FAMILY)")
    needs: Needs = yaml_key(NEEDS, default=Needs(), build=lambda data: from_yaml(Needs, data),
                            doc="what the step takes from the base image (commands, files, Python headers)")
    patches: tuple[str, ...] = yaml_key(schema.list_of(schema.string(schema.NAME_RE, "a patch name")), default=(),
                                        build=tuple, doc="patches (from patches/) it applies")
    notes: str = yaml_key(schema.text, default="", doc="for readers only")
    # Not from YAML:
    file: str = ""
    patch_specs: tuple[PatchSpec, ...] = ()  # `patches` with what they depend on, in applying order
    key_lines: tuple[tuple[str, int], ...] = ()

    def line(self, key: str) -> int:
        return dict(self.key_lines).get(key, 1)

    @property
    def patch_hashes(self) -> tuple[tuple[str, str], ...]:
        """(patch name, sha256 of its text), in applying order."""
        return tuple((p.name, hashlib.sha256(p.text.encode()).hexdigest()) for p in self.patch_specs)

    def identity(self) -> dict:
        """Everything that defines what gets installed (not how it is described, nor
        what it needs of the base image, which only decides whether it can be)."""
        return {
            "name": self.name,
            "source": self.source.identity() if self.source is not None else None,
            "apt": list(self.apt),
            "pip": [group.identity() for group in self.pip],
            "depends": list(self.depends),
            "prefix": [list(p) for p in self.prefix],
            "build": self.build,
            "check": self.check,
            "nic_specific": self.nic_specific,
            "patches": canonical_json(self.patch_specs) if self.patch_specs else "",
        }


@dataclass(frozen=True)
class QoS:
    dscp: int | None = None
    service_level: int | None = None

    @classmethod
    def from_yaml(cls, data: dict) -> QoS:
        return cls(data.get("dscp"), data.get("service_level"))


@dataclass(frozen=True)
class Cluster:
    """What a cluster's nodes share (a `clusters/<name>.yaml` profile)."""

    name: str = yaml_key(schema.component_name, default="", required=True, doc="the file's name, without .yaml")
    description: str = yaml_key(schema.text, default="", required=True, build=_strip, doc="which cluster")
    nic_family: str = yaml_key(schema.nic_family, default="", doc="the NIC family of every node")
    rail_count: int | None = yaml_key(schema.integer(0), doc="RDMA rails each node must have")
    qos: QoS = yaml_key(schema.QOS, default=QoS(), build=QoS.from_yaml,
                        doc="fallback QoS when the node's tools cannot tell")
    env: EnvSpec = yaml_key(schema.ENV, default=EnvSpec(), build=EnvSpec.from_yaml, doc="environment of every node")
    notes: str = yaml_key(schema.text, default="", doc="for readers only")
    file: str = ""

    def profile(self) -> dict:
        """The profile as NIC detection takes it (nic.detect's `profile`), unset fields left out."""
        fields = {"name": self.name, "nic_family": self.nic_family, "rail_count": self.rail_count,
                  "dscp": self.qos.dscp, "service_level": self.qos.service_level}
        return {key: value for key, value in fields.items() if value not in (None, "")}


@dataclass(frozen=True)
class NicNeeds:
    """What a recipe's software needs of NIC detection (the recipe's `nic:` block); None: not said."""

    ucx_net_devices_extra: tuple[str, ...] | None = yaml_key(
        schema.list_of(schema.net_device), build=tuple,
        doc="devices UCX_NET_DEVICES lists after the rails: lo for NIXL/RIXL, whose agent reaches itself through UCX")


NIC_NEEDS = shape_of(NicNeeds, "what the recipe's software needs of NIC detection")


@dataclass(frozen=True)
class TargetPython:
    """The base image's Python (a recipe's `python:` block): what `envbuild lock` and
    `envbuild fetch` resolve and download pip requirements for, and what of it pip
    steps may not replace."""

    version: str = yaml_key(schema.string(re.compile(r"^3\.[0-9]{1,2}$"), "a Python version written X.Y, like '3.12'"),
                            default="", required=True, doc="its version, X.Y in quotes ('3.12')")
    platform: str = yaml_key(
        schema.string(re.compile(r"^[a-z0-9_]+$"), "a wheel platform tag like manylinux_2_35_x86_64"), default="",
        required=True, doc="its wheel platform tag, e.g. manylinux_2_35_x86_64 (glibc 2.35 on x86-64)")
    protected: tuple[str, ...] = yaml_key(
        schema.list_of(schema.python_dist), default=(), build=tuple,
        doc="distributions it has that pip steps may not replace: they and what they require, at their "
            "installed versions, constrain every pip step")

    def describe(self) -> str:
        return f"Python {self.version} on {self.platform}"


TARGET_PYTHON = shape_of(TargetPython, "the base image's Python, for which pip requirements are locked and fetched")


@dataclass(frozen=True)
class RecipeFile:
    """A `<recipe>.yaml` file as written; loader.Library combines its `extends` chain into a Recipe."""

    name: str = yaml_key(schema.component_name, default="", required=True, doc="the file's name, without .yaml")
    description: str = yaml_key(schema.text, default="", required=True, build=_strip,
                                doc="what it installs; the first line is its summary")
    base_image: str = yaml_key(schema.image_reference, default="",
                               doc="the image it goes on top of")
    extends: str = yaml_key(schema.component_name, default="", doc="a recipe whose values this one starts from")
    cluster: str = yaml_key(schema.component_name, default="", doc="a cluster profile from clusters/")
    components: tuple[str, ...] = yaml_key(schema.list_of(schema.component_name), default=(), build=tuple,
                                           doc="what to install; dependencies are added and ordered")
    env: EnvSpec = yaml_key(schema.ENV, default=EnvSpec(), build=EnvSpec.from_yaml, doc="environment of the recipe")
    build_env: tuple[tuple[str, str], ...] = yaml_key(
        schema.mapping_of(schema.env_name, schema.one_line), default=(), build=lambda data: tuple(data.items()),
        doc="settings the install steps see (proxies, package indexes), in image builds and in the runtime "
            "script, where the environment overrides them; never in an image's ENV or labels, nor in any hash")
    nic: NicNeeds = yaml_key(NIC_NEEDS, default=NicNeeds(), build=lambda data: from_yaml(NicNeeds, data),
                             doc="what its software needs of NIC detection")
    python: TargetPython | None = yaml_key(TARGET_PYTHON, build=lambda data: from_yaml(TargetPython, data),
                                           doc="the base image's Python: what pip requirements are locked and "
                                               "fetched for")
    gpu_target: str = yaml_key(
        schema.gpu_arch, default="",
        doc="the GPU architecture every build targets ($EB_GPU_TARGET and PYTORCH_ROCM_ARCH in steps), "
            "whatever GPUs the build host has")
    nic_families: tuple[str, ...] = yaml_key(
        schema.list_of(schema.nic_family), default=(), build=tuple,
        doc="the NIC families of the nodes it serves: an image built for no one cluster or family holds a "
            "build of each NIC-specific component for each, and the runtime script activates the node's")
    notes: str = yaml_key(schema.text, default="", doc="for readers only")


@dataclass(frozen=True)
class Recipe:
    """A recipe with its `extends` chain and cluster profile applied."""

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
    ucx_net_devices_extra: tuple[str, ...] = ()  # nic.ucx_net_devices_extra of the chain, the last that says
    python: TargetPython | None = None  # the base image's Python, the last of the chain that says
    gpu_target: str = ""  # of the chain, the last that says
    build_env: tuple[tuple[str, str], ...] = ()  # build_env of the chain, later files overriding
    nic_families: tuple[str, ...] = ()  # of the chain, the last that says

    def line(self, key: str) -> int:
        return dict(self.key_lines).get(key, 1)

    @property
    def python_protected(self) -> tuple[str, ...]:
        """The distributions of the base image's Python that pip steps may not replace."""
        return self.python.protected if self.python is not None else ()

    def nic_profile(self) -> dict:
        """What NIC detection takes as its profile (nic.detect's `profile`): the cluster
        profile's fields and the recipe's nic settings, unset ones left out."""
        profile = self.cluster.profile() if self.cluster is not None else {}
        if self.ucx_net_devices_extra:
            profile[UCX_EXTRA] = list(self.ucx_net_devices_extra)
        return profile

    def with_base_image(self, image: str) -> Recipe:
        return dataclasses.replace(self, base_image=image)

    def with_nic_family(self, family: str) -> Recipe:
        """The recipe for one NIC family, as if its cluster profile said so."""
        cluster = self.cluster or Cluster(name="", description="NIC family given on the command line", file="")
        return dataclasses.replace(self, cluster=dataclasses.replace(cluster, nic_family=family))


COMPONENT = shape_of(Component, "an envbuild component: one thing installed on top of the base image")
CLUSTER = shape_of(Cluster, "an envbuild cluster profile")
RECIPE = shape_of(RecipeFile, "an envbuild recipe: components on top of a base image")
