"""Schema checks for recipe files: closed vocabularies, types, formats.

Every check reports a Problem naming the file, the line and the dotted key,
and checking goes on so that one run shows every problem of a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlparse

from packaging.requirements import InvalidRequirement, Requirement

from envbuild.errors import Problem
from envbuild.yamlfile import LocatedDict, LocatedList

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
APT_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]*(=[A-Za-z0-9.+~:-]+)?$")
PIP_OPTION_RE = re.compile(r"^--[a-z][a-z-]*(=[^\s]+)?$")
# Characters a path may hold so that it stays one word everywhere it is written.
PATH_RE = re.compile(r"^/[A-Za-z0-9._/+@-]*$")
UNKNOWN_CHECKSUM = "unknown"
NIC_FAMILIES = ("ionic", "mlx5", "bnxt", "none")


class Checker:
    """Collects the problems of one file."""

    def __init__(self, file: str):
        self.file = file
        self.problems: list[Problem] = []

    def add(self, line: int | None, key: str, message: str) -> None:
        self.problems.append(Problem(self.file, line, key, message))


@dataclass
class Field:
    kind: Callable[[Checker, Any, int, str], bool]
    required: bool = False
    doc: str = ""


@dataclass
class Shape:
    """A mapping with a closed set of keys."""

    fields: dict[str, Field] = field(default_factory=dict)

    def check(self, checker: Checker, data: Any, line: int, key: str) -> bool:
        if not isinstance(data, dict):
            checker.add(line, key, f"must be a mapping, not {_type_name(data)}")
            return False
        ok = True
        for name in data:
            if name not in self.fields:
                allowed = ", ".join(sorted(self.fields))
                checker.add(_line(data, name), _join(key, name), f"unknown key; allowed keys: {allowed}")
                ok = False
        for name, spec in self.fields.items():
            if name in data:
                ok &= spec.kind(checker, data[name], _line(data, name), _join(key, name))
            elif spec.required:
                checker.add(getattr(data, "line", line), _join(key, name), "missing required key")
                ok = False
        return ok


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _line(data: Any, key: str) -> int:
    return data.line_of(key) if isinstance(data, LocatedDict) else 0


def _item_line(data: Any, index: int) -> int:
    if isinstance(data, LocatedList) and index < len(data.item_lines):
        return data.item_lines[index]
    return getattr(data, "line", 0)


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {
        str: "a string", int: "a number", float: "a number", bool: "true/false",
        LocatedDict: "a mapping", dict: "a mapping", LocatedList: "a list", list: "a list",
    }.get(type(value), type(value).__name__)


def string(pattern: re.Pattern | None = None, what: str = "", choices: tuple = ()):
    def check(checker: Checker, value: Any, line: int, key: str) -> bool:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            checker.add(line, key, "must be a string, not a number; put it in quotes")
            return False
        if not isinstance(value, str):
            checker.add(line, key, f"must be a string, not {_type_name(value)}")
            return False
        if choices and value not in choices:
            checker.add(line, key, f"{value!r} is not one of: {', '.join(choices)}")
            return False
        if pattern is not None and not pattern.match(value):
            checker.add(line, key, f"{value!r} is not {what}")
            return False
        return True

    return check


def text(checker: Checker, value: Any, line: int, key: str) -> bool:
    if not isinstance(value, str) or not value.strip():
        checker.add(line, key, f"must be non-empty text, not {_type_name(value)}")
        return False
    return True


def integer(minimum: int = 0, maximum: int | None = None):
    def check(checker: Checker, value: Any, line: int, key: str) -> bool:
        if isinstance(value, bool) or not isinstance(value, int):
            checker.add(line, key, f"must be a whole number, not {_type_name(value)}")
            return False
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
            checker.add(line, key, f"must be {bounds}, not {value}")
            return False
        return True

    return check


def boolean(checker: Checker, value: Any, line: int, key: str) -> bool:
    if not isinstance(value, bool):
        checker.add(line, key, f"must be true or false, not {_type_name(value)}")
        return False
    return True


def list_of(item_check, allow_single: bool = False):
    def check(checker: Checker, value: Any, line: int, key: str) -> bool:
        if allow_single and not isinstance(value, list):
            return item_check(checker, value, line, key)
        if not isinstance(value, list):
            checker.add(line, key, f"must be a list, not {_type_name(value)}")
            return False
        ok = True
        seen = set()
        for index, item in enumerate(value):
            item_key = f"{key}[{index}]"
            ok &= item_check(checker, item, _item_line(value, index), item_key)
            if isinstance(item, (str, int)) and not isinstance(item, bool):
                if item in seen:
                    checker.add(_item_line(value, index), item_key, f"{item!r} is listed twice")
                    ok = False
                seen.add(item)
        return ok

    return check


def mapping_of(key_check, value_check):
    def check(checker: Checker, value: Any, line: int, key: str) -> bool:
        if not isinstance(value, dict):
            checker.add(line, key, f"must be a mapping, not {_type_name(value)}")
            return False
        ok = True
        for name, item in value.items():
            ok &= key_check(checker, name, _line(value, name), _join(key, str(name)))
            ok &= value_check(checker, item, _line(value, name), _join(key, str(name)))
        return ok

    return check


def url(schemes: tuple = ("https", "http", "file")):
    def check(checker: Checker, value: Any, line: int, key: str) -> bool:
        if not isinstance(value, str):
            checker.add(line, key, f"must be a URL string, not {_type_name(value)}")
            return False
        parsed = urlparse(value)
        bad_chars = any(c.isspace() or c in "'\"`$\\" for c in value)
        if parsed.scheme not in schemes or bad_chars or not (parsed.netloc or parsed.scheme == "file") or not parsed.path:
            checker.add(line, key, f"{value!r} is not a valid {'/'.join(schemes)} URL")
            return False
        return True

    return check


def sha256(checker: Checker, value: Any, line: int, key: str) -> bool:
    if value == UNKNOWN_CHECKSUM:
        return True
    if not isinstance(value, str) or not SHA256_RE.match(value):
        checker.add(line, key, f"{value!r} is not a sha256 (64 lowercase hex digits) or {UNKNOWN_CHECKSUM!r}")
        return False
    return True


def requirement(checker: Checker, value: Any, line: int, key: str) -> bool:
    if not isinstance(value, str):
        checker.add(line, key, f"must be a pip requirement string, not {_type_name(value)}")
        return False
    try:
        Requirement(value)
    except InvalidRequirement as exc:
        checker.add(line, key, f"{value!r} is not a valid pip requirement: {str(exc).splitlines()[0]}")
        return False
    return True


def one_of_shapes(shapes: dict[str, Shape], what: str):
    """A mapping whose form is chosen by which distinguishing key it has."""

    def check(checker: Checker, value: Any, line: int, key: str) -> bool:
        if not isinstance(value, dict):
            checker.add(line, key, f"must be a mapping, not {_type_name(value)}")
            return False
        present = [name for name in shapes if name in value]
        if len(present) != 1:
            checker.add(line, key, f"{what} needs exactly one of: {', '.join(shapes)}")
            return False
        return shapes[present[0]].check(checker, value, line, key)

    return check


def either(first, second):
    """The first check if the value is a string, the second otherwise."""

    def check(checker: Checker, value: Any, line: int, key: str) -> bool:
        return (first if isinstance(value, str) else second)(checker, value, line, key)

    return check


component_name = string(NAME_RE, "a valid name (lowercase letters, digits and dashes)")
env_name = string(ENV_NAME_RE, "a valid environment variable name")
abs_path = string(PATH_RE, "an absolute path (starting with /, no spaces or shell characters)")

class GitShape(Shape):
    """A git source: `commit` is required unless a `branch` is given for `envbuild lock` to resolve."""

    def check(self, checker: Checker, data: Any, line: int, key: str) -> bool:
        ok = super().check(checker, data, line, key)
        if isinstance(data, dict) and "commit" not in data and "branch" not in data:
            checker.add(getattr(data, "line", line), _join(key, "commit"),
                        "missing required key (or give a branch, which `envbuild lock` resolves to a commit)")
            ok = False
        return ok


GIT_SOURCE = GitShape({
    "git": Field(url(("https", "http", "file", "ssh", "git")), required=True),
    "commit": Field(string(COMMIT_RE, "a full commit (40 lowercase hex digits)")),
    "branch": Field(string(re.compile(r"^[A-Za-z0-9._/-]+$"), "a branch name")),
    "submodules": Field(boolean),
})
TARBALL_SOURCE = Shape({
    "url": Field(url(), required=True),
    "sha256": Field(sha256, required=True),
})
DEB_SOURCE = Shape({
    "deb": Field(url(), required=True),
    "sha256": Field(sha256, required=True),
    "package": Field(string(APT_RE, "a Debian package name"), required=True),
    "version": Field(string(re.compile(r"^[A-Za-z0-9.+~:-]+$"), "a Debian version"), required=True),
})
SOURCE = one_of_shapes({"git": GIT_SOURCE, "url": TARBALL_SOURCE, "deb": DEB_SOURCE}, "a source")

PIP_GROUP = Shape({
    "requirements": Field(list_of(requirement), required=True),
    "options": Field(list_of(string(PIP_OPTION_RE, "a pip option like --ignore-installed"))),
})
PIP = list_of(either(requirement, PIP_GROUP.check))

ENV_VALUE = string(re.compile(r"^(?:[^$\n]|\$\{[A-Za-z_][A-Za-z0-9_]*\})*$"),
                   "one line where variables are written as ${NAME}")
ENV = Shape({
    "set": Field(mapping_of(env_name, ENV_VALUE)),
    "path": Field(mapping_of(env_name, list_of(ENV_VALUE))),
})

WHEN = Shape({
    "node_rank": Field(list_of(integer(0), allow_single=True)),
    "nic": Field(list_of(string(choices=NIC_FAMILIES), allow_single=True)),
})

COMPONENT = Shape({
    "name": Field(component_name, required=True),
    "description": Field(text, required=True),
    "source": Field(SOURCE),
    "apt": Field(list_of(string(APT_RE, "a Debian package name"))),
    "pip": Field(PIP),
    "depends": Field(list_of(component_name)),
    "prefix": Field(mapping_of(env_name, abs_path)),
    "build": Field(text),
    "check": Field(text),
    "env": Field(ENV.check),
    "when": Field(WHEN.check),
    "nic_specific": Field(boolean),
    "patches": Field(list_of(string(NAME_RE, "a patch name"))),
    "notes": Field(text),
})

RECIPE = Shape({
    "name": Field(component_name, required=True),
    "description": Field(text, required=True),
    "base_image": Field(string(re.compile(r"^[a-z0-9][a-z0-9._/:@-]*$"), "an image reference")),
    "extends": Field(component_name),
    "cluster": Field(component_name),
    "components": Field(list_of(component_name)),
    "env": Field(ENV.check),
    "notes": Field(text),
})

QOS = Shape({
    "dscp": Field(integer(0, 63)),
    "service_level": Field(integer(0, 7)),
})

CLUSTER = Shape({
    "name": Field(component_name, required=True),
    "description": Field(text, required=True),
    "nic_family": Field(string(choices=NIC_FAMILIES)),
    "rail_count": Field(integer(0)),
    "qos": Field(QOS.check),
    "env": Field(ENV.check),
    "notes": Field(text),
})
