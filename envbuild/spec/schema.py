"""Schema checks for recipe files: closed vocabularies, types, formats.

Every check reports a Problem naming the file, the line and the dotted key,
and checking goes on so that one run shows every problem of a file. Each check
also describes itself as JSON Schema (`json_schema()`), so the same
declarations give `envbuild schema`, the schema editors complete recipes with.

A check is called as `check(checker, value, line, key) -> bool`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence
from urllib.parse import urlparse

from packaging.requirements import InvalidRequirement, Requirement

from envbuild.errors import CONTROL_RE, Problem
from envbuild.formats import STATE_DIR_DEFAULT
from envbuild.runtime.nic import NIC_FAMILIES
from envbuild.shell import PATH_REFERENCE
from envbuild.spec.yamlfile import LocatedDict, LocatedList, misread, read_as

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
APT_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]*(=[A-Za-z0-9.+~:-]+)?$")
PIP_OPTION_RE = re.compile(r"^--[a-z][a-z-]*(=[^\s]+)?$")
IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]*$")
# A netdev (lo, eth0) or an RDMA device port (mlx5_0:1), as UCX_NET_DEVICES lists them.
NET_DEVICE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@:-]*$")
GPU_ARCH_RE = re.compile(r"^gfx[0-9a-f]+$")
# A Python distribution's name (PEP 508).
DIST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
COMMAND_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]*$")
# An absolute path whose parts may be ${NAME} or ${NAME:-/default}.
NEEDED_PATH_RE = re.compile(rf"^(?:/|{PATH_REFERENCE.pattern})(?:[A-Za-z0-9._/+@-]|{PATH_REFERENCE.pattern})*$")
UNKNOWN_CHECKSUM = "unknown"
SHOWN_LIMIT = 60  # characters of a value a message quotes; the rest is cut


def shown(value: Any) -> str:
    """A value as a message quotes it: repr, cut after SHOWN_LIMIT characters with its length said."""
    if isinstance(value, str) and len(value) > SHOWN_LIMIT:
        return f"{value[:SHOWN_LIMIT]!r}... ({len(value)} characters)"
    return repr(value)
# Control characters (CONTROL_RE: C0, DEL, C1) are refused in every value: bash
# drops a NUL from a value and refuses a script that holds one; the others
# corrupt what prints them. Multi-line text may hold newlines and tabs.
TEXT_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class Checker:
    """Collects the problems of one file; `written` is the file's LocatedDict.written, which
    lets a message quote a value as the file writes it."""

    def __init__(self, file: str, written: dict | None = None):
        self.file = file
        self.written = written or {}
        self.problems: list[Problem] = []

    def add(self, line: int | None, key: str, message: str) -> None:
        self.problems.append(Problem(self.file, line, key, message))

    def read_as_no_string(self, value: Any, line: int, key: str) -> bool:
        """Whether YAML read `value`, where a string is expected, as a number, true/false or a
        date (reported, with the text to put in quotes: yamlfile.read_as)."""
        message = read_as(value, self.written.get((line, repr(value))))
        if message:
            self.add(line, key, message)
        return message is not None


class Check:
    """A value check that can also describe itself as JSON Schema."""

    def __call__(self, checker: Checker, value: Any, line: int, key: str) -> bool:
        raise NotImplementedError

    def json_schema(self) -> dict:
        raise NotImplementedError


@dataclass
class Field:
    """A key of a mapping: its check, whether it is required, what it means."""

    check: Check
    required: bool = False
    doc: str = ""


@dataclass
class Shape(Check):
    """A mapping with a closed set of keys."""

    fields: dict[str, Field] = field(default_factory=dict)
    doc: str = ""

    def __call__(self, checker: Checker, data: Any, line: int, key: str) -> bool:
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
                ok &= spec.check(checker, data[name], _line(data, name), _join(key, name))
            elif spec.required:
                checker.add(getattr(data, "line", line), _join(key, name), "missing required key")
                ok = False
        return ok

    def json_schema(self) -> dict:
        properties = {}
        for name, spec in self.fields.items():
            properties[name] = dict(spec.check.json_schema(), **({"description": spec.doc} if spec.doc else {}))
        schema = {"type": "object", "properties": properties, "additionalProperties": False}
        required = [name for name, spec in self.fields.items() if spec.required]
        if required:
            schema["required"] = required
        if self.doc:
            schema["description"] = self.doc
        return schema


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _line(data: Any, key: str) -> int:
    return data.line_of(key) if isinstance(data, LocatedDict) else 0


def _item_line(data: Any, index: int) -> int:
    if isinstance(data, LocatedList) and index < len(data.item_lines):
        return data.item_lines[index]
    return getattr(data, "line", 0)


def _control_character(checker: Checker, value: str, line: int, key: str, refused: re.Pattern = CONTROL_RE) -> bool:
    """Whether `value` holds a control character that `refused` matches (reported as a problem)."""
    found = refused.search(value)
    if found:
        rule = ("text may hold newlines and tabs, no other control character" if refused is TEXT_CONTROL_RE
                else "a one-line value holds no control character")
        checker.add(line, key, f"{shown(value)} holds the control character U+{ord(found.group()):04X} "
                               f"(character {found.start() + 1}); {rule}")
    return found is not None


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {
        str: "a string", int: "a number", float: "a number", bool: "true/false",
        LocatedDict: "a mapping", dict: "a mapping", LocatedList: "a list", list: "a list",
    }.get(type(value), type(value).__name__)


@dataclass
class String(Check):
    pattern: re.Pattern | None = None
    what: str = ""
    choices: tuple = ()

    def __call__(self, checker: Checker, value: Any, line: int, key: str) -> bool:
        if checker.read_as_no_string(value, line, key):
            return False
        if not isinstance(value, str):
            checker.add(line, key, f"must be a string, not {_type_name(value)}")
            return False
        if _control_character(checker, value, line, key):
            return False
        if self.choices and value not in self.choices:
            checker.add(line, key, f"{shown(value)} is not one of: {', '.join(self.choices)}")
            return False
        if self.pattern is not None and not self.pattern.match(value):
            checker.add(line, key, f"{shown(value)} is not {self.what}")
            return False
        return True

    def json_schema(self) -> dict:
        schema: dict = {"type": "string"}
        if self.choices:
            schema["enum"] = list(self.choices)
        if self.pattern is not None:
            schema["pattern"] = self.pattern.pattern
        return schema


def string(pattern: re.Pattern | None = None, what: str = "", choices: tuple = ()) -> String:
    return String(pattern, what, tuple(choices))


class Text(Check):
    """Non-empty text; may span lines (and hold tabs), no other control character."""

    def __call__(self, checker: Checker, value: Any, line: int, key: str) -> bool:
        if checker.read_as_no_string(value, line, key):
            return False
        if not isinstance(value, str) or not value.strip():
            checker.add(line, key, f"must be non-empty text, not {_type_name(value)}")
            return False
        return not _control_character(checker, value, line, key, TEXT_CONTROL_RE)

    def json_schema(self) -> dict:
        return {"type": "string", "minLength": 1}


text = Text()


@dataclass
class Integer(Check):
    minimum: int = 0
    maximum: int | None = None

    def __call__(self, checker: Checker, value: Any, line: int, key: str) -> bool:
        if isinstance(value, bool) or not isinstance(value, int):
            checker.add(line, key, f"must be a whole number, not {_type_name(value)}")
            return False
        if value < self.minimum or (self.maximum is not None and value > self.maximum):
            bounds = f"from {self.minimum} to {self.maximum}" if self.maximum is not None else f"at least {self.minimum}"
            checker.add(line, key, f"must be {bounds}, not {value}")
            return False
        return True

    def json_schema(self) -> dict:
        schema = {"type": "integer", "minimum": self.minimum}
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        return schema


def integer(minimum: int = 0, maximum: int | None = None) -> Integer:
    return Integer(minimum, maximum)


class Boolean(Check):
    def __call__(self, checker: Checker, value: Any, line: int, key: str) -> bool:
        if not isinstance(value, bool):
            checker.add(line, key, f"must be true or false, not {_type_name(value)}")
            return False
        return True

    def json_schema(self) -> dict:
        return {"type": "boolean"}


boolean = Boolean()


@dataclass
class ListOf(Check):
    item: Check
    allow_single: bool = False

    def __call__(self, checker: Checker, value: Any, line: int, key: str) -> bool:
        if self.allow_single and not isinstance(value, list):
            return self.item(checker, value, line, key)
        if not isinstance(value, list):
            checker.add(line, key, f"must be a list, not {_type_name(value)}")
            return False
        ok = True
        seen = set()
        for index, item in enumerate(value):
            item_key = f"{key}[{index}]"
            ok &= self.item(checker, item, _item_line(value, index), item_key)
            if isinstance(item, (str, int)) and not isinstance(item, bool):
                if item in seen:
                    checker.add(_item_line(value, index), item_key, f"{item!r} is listed twice")
                    ok = False
                seen.add(item)
        return ok

    def json_schema(self) -> dict:
        schema = {"type": "array", "items": self.item.json_schema(), "uniqueItems": True}
        return {"anyOf": [self.item.json_schema(), schema]} if self.allow_single else schema


def list_of(item: Check, allow_single: bool = False) -> ListOf:
    return ListOf(item, allow_single)


@dataclass
class MappingOf(Check):
    key: String
    value: Check

    def __call__(self, checker: Checker, value: Any, line: int, key: str) -> bool:
        if not isinstance(value, dict):
            checker.add(line, key, f"must be a mapping, not {_type_name(value)}")
            return False
        ok = True
        for name, item in value.items():
            ok &= self.key(checker, name, _line(value, name), _join(key, str(name)))
            ok &= self.value(checker, item, _line(value, name), _join(key, str(name)))
        return ok

    def json_schema(self) -> dict:
        return {"type": "object", "propertyNames": self.key.json_schema(),
                "additionalProperties": self.value.json_schema()}


def mapping_of(key: String, value: Check) -> MappingOf:
    return MappingOf(key, value)


@dataclass
class Url(Check):
    schemes: tuple = ("https", "http", "file")

    def __call__(self, checker: Checker, value: Any, line: int, key: str) -> bool:
        if checker.read_as_no_string(value, line, key):
            return False
        if not isinstance(value, str):
            checker.add(line, key, f"must be a URL string, not {_type_name(value)}")
            return False
        if _control_character(checker, value, line, key):
            return False
        parsed = urlparse(value)
        bad_chars = any(c.isspace() or c in "'\"`$\\" for c in value)
        if parsed.scheme not in self.schemes or bad_chars or not (parsed.netloc or parsed.scheme == "file") \
                or not parsed.path:
            hint = ""
            if value.startswith("/") and "file" in self.schemes and not bad_chars:
                hint = f"; a path on this machine is written as a file URL: file://{value}"
            checker.add(line, key, f"{shown(value)} is not a valid {'/'.join(self.schemes)} URL{hint}")
            return False
        return True

    def json_schema(self) -> dict:
        return {"type": "string", "format": "uri", "pattern": f"^({'|'.join(self.schemes)}):"}


def url(schemes: tuple = ("https", "http", "file")) -> Url:
    return Url(tuple(schemes))


class Sha256(Check):
    def __call__(self, checker: Checker, value: Any, line: int, key: str) -> bool:
        if value == UNKNOWN_CHECKSUM:
            return True
        if checker.read_as_no_string(value, line, key):
            return False
        if not isinstance(value, str) or not SHA256_RE.match(value):
            checker.add(line, key, f"{shown(value)} is not a sha256 (64 lowercase hex digits) or {UNKNOWN_CHECKSUM!r}")
            return False
        return True

    def json_schema(self) -> dict:
        return {"type": "string", "pattern": f"^([0-9a-f]{{64}}|{UNKNOWN_CHECKSUM})$"}


sha256 = Sha256()


class PipRequirement(Check):
    def __call__(self, checker: Checker, value: Any, line: int, key: str) -> bool:
        if checker.read_as_no_string(value, line, key):
            return False
        if not isinstance(value, str):
            checker.add(line, key, f"must be a pip requirement string, not {_type_name(value)}")
            return False
        if _control_character(checker, value, line, key):
            return False
        try:
            Requirement(value)
        except InvalidRequirement as exc:
            checker.add(line, key, f"{shown(value)} is not a valid pip requirement: {str(exc).splitlines()[0]}")
            return False
        return True

    def json_schema(self) -> dict:
        return {"type": "string", "description": "a pip requirement (PEP 508), e.g. quart or pyzmq>=25"}


requirement = PipRequirement()


@dataclass
class OneOfShapes(Check):
    """A mapping whose form is chosen by which distinguishing key it has."""

    shapes: dict[str, Shape]
    what: str

    def __call__(self, checker: Checker, value: Any, line: int, key: str) -> bool:
        if not isinstance(value, dict):
            checker.add(line, key, f"must be a mapping, not {_type_name(value)}")
            return False
        present = [name for name in self.shapes if name in value]
        if len(present) != 1:
            checker.add(line, key, f"{self.what} needs exactly one of: {', '.join(self.shapes)}")
            return False
        return self.shapes[present[0]](checker, value, line, key)

    def json_schema(self) -> dict:
        return {"oneOf": [shape.json_schema() for shape in self.shapes.values()]}


@dataclass
class Either(Check):
    """The first check if the value is a string (or what YAML read as a number, true/false or a
    date: yamlfile.misread), the second otherwise."""

    first: Check
    second: Check

    def __call__(self, checker: Checker, value: Any, line: int, key: str) -> bool:
        return (self.first if isinstance(value, str) or misread(value) else self.second)(checker, value, line, key)

    def json_schema(self) -> dict:
        return {"anyOf": [self.first.json_schema(), self.second.json_schema()]}


@dataclass
class Custom(Check):
    """A check written as a function, with its JSON Schema given."""

    function: Callable[[Checker, Any, int, str], bool]
    schema: dict

    def __call__(self, checker: Checker, value: Any, line: int, key: str) -> bool:
        return self.function(checker, value, line, key)

    def json_schema(self) -> dict:
        return dict(self.schema)


class AbsolutePath(Check):
    """An install prefix: absolute; spaces and any letters are fine (the script and the
    Dockerfile quote it), but not what cannot be carried where a prefix goes, nor a
    directory installing may not replace (prefix_problem)."""

    def __call__(self, checker: Checker, value: Any, line: int, key: str) -> bool:
        if checker.read_as_no_string(value, line, key):
            return False
        if not isinstance(value, str):
            checker.add(line, key, f"must be an absolute path, not {_type_name(value)}")
            return False
        if not value.startswith("/"):
            problem = "is not an absolute path: it must start with /"
        elif ":" in value:
            problem = (f"holds ':' (character {value.index(':') + 1}), which a prefix cannot: prefixes go into "
                       "PATH-like variables (PATH, LD_LIBRARY_PATH), where ':' separates entries")
        elif any(_is_control(c) for c in value):
            index = next(i for i, c in enumerate(value) if _is_control(c))
            problem = (f"holds the control character U+{ord(value[index]):04X} (character {index + 1}), which a "
                       "prefix cannot: the stamp holds it on one line")
        elif value[-1].isspace():
            problem = "ends with white space, which the stamp would lose when it is read back"
        else:
            problem = prefix_problem(value)
        if problem:
            checker.add(line, key, f"{shown(value)} {problem}")
            return False
        return True

    def json_schema(self) -> dict:
        systems = "|".join(_any_slashes(path) for path in SYSTEM_DIRECTORIES)
        return {"type": "string", "pattern": "^/[^:\\x00-\\x1f\\x7f]*$", "not": {"anyOf": [
            {"pattern": f"^(?:{systems})/*$"},
            {"pattern": f"^{_any_slashes(STATE_DIR_DEFAULT)}(?:/|$)"},
            {"pattern": "(?:^|/)[.][.]?(?:/|$)"},
        ]}}


def _any_slashes(path: str) -> str:
    """A pattern of absolute `path` as the runtime script takes it: each / may be repeated."""
    return "/+".join(re.escape(part) for part in path.split("/"))


# Directories an install prefix may not be (README: Recipes). A component's install sets
# its prefixes aside and replaces them whole (an upgrade, a restore from the shared cache,
# --force), so a prefix is a directory of its own (/usr/local/ucx, /opt/rocm), never one
# that the system or other programs keep files in: those the Filesystem Hierarchy
# Standard (3.0) names at the top and under /usr, /usr/local and /var, with the library
# directories of other architectures and Debian's /var/backups. The parent of each is
# one too, so a prefix that holds one is one. The runtime script refuses them from the
# environment; its list is rendered from this one.
SYSTEM_DIRECTORIES = (
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media", "/mnt",
    "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var",
    "/usr/bin", "/usr/games", "/usr/include", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libexec",
    "/usr/libx32", "/usr/local", "/usr/sbin", "/usr/share", "/usr/src",
    "/usr/local/bin", "/usr/local/etc", "/usr/local/games", "/usr/local/include", "/usr/local/lib",
    "/usr/local/lib64", "/usr/local/libexec", "/usr/local/man", "/usr/local/sbin", "/usr/local/share",
    "/usr/local/src",
    "/var/backups", "/var/cache", "/var/crash", "/var/lib", "/var/local", "/var/lock", "/var/log", "/var/mail",
    "/var/opt", "/var/run", "/var/spool", "/var/tmp",
)
# Why a prefix may not be what prefix_problem refuses: the end of its messages, and of the runtime script's.
PREFIX_RULE = "an install prefix is a directory of its own, which installing replaces whole"


def prefix_problem(path: str) -> str | None:
    """Why absolute path `path` may not be an install prefix, as a message's end after the path, else
    None: a `.` or `..` part, a SYSTEM_DIRECTORIES entry, the runtime script's default state dir or a
    directory inside it (its parents are system directories). Repeated and trailing slashes do not
    count, as in the runtime script, which refuses the same."""
    parts = path.split("/")
    if "." in parts or ".." in parts:
        return "has a . or .. part: an install prefix is written without them (where .. leads depends on symlinks)"
    normal = "/" + "/".join(part for part in parts if part)
    if normal in SYSTEM_DIRECTORIES:
        return f"is a system directory, which other programs share: {PREFIX_RULE}"
    if normal == STATE_DIR_DEFAULT:
        return f"is the runtime script's state dir (ENVBUILD_STATE_DIR by default): {PREFIX_RULE}"
    if normal.startswith(STATE_DIR_DEFAULT + "/"):
        return (f"lies inside the runtime script's state dir {STATE_DIR_DEFAULT} (ENVBUILD_STATE_DIR by "
                f"default): {PREFIX_RULE}")
    return None


def _is_control(character: str) -> bool:
    return CONTROL_RE.match(character) is not None


class EnvValue(Check):
    """One line in which variables are written as ${NAME} (the only expansion there is)."""

    def __call__(self, checker: Checker, value: Any, line: int, key: str) -> bool:
        if checker.read_as_no_string(value, line, key):
            return False
        if not isinstance(value, str):
            checker.add(line, key, f"must be a string, not {_type_name(value)}")
            return False
        problem = None
        if "\n" in value:
            problem = "spans lines; a value is one line"
        elif _control_character(checker, value, line, key):
            return False
        else:
            stray = ENV_STRAY_DOLLAR.search(value)
            if stray:
                problem = (f"has '$' not followed by {{NAME}} (character {stray.start() + 1}): values are not run "
                           "by a shell, and only references written as ${NAME} are expanded")
        if problem:
            checker.add(line, key, f"{shown(value)} {problem}")
            return False
        return True

    def json_schema(self) -> dict:
        return {"type": "string", "pattern": ENV_VALUE_RE.pattern}


ENV_VALUE_RE = re.compile(r"^(?:[^$\n]|\$\{[A-Za-z_][A-Za-z0-9_]*\})*$")
ENV_STRAY_DOLLAR = re.compile(r"\$(?!\{[A-Za-z_][A-Za-z0-9_]*\})")

# Variables a prefix may not be named (the keys of `prefix:`): the runtime script takes a
# prefix from the environment when it is set there and exports it to the steps, so
# a prefix named so would take the value the variable already has (HOME: /root) or change
# what reads it: (who uses it, exact names, name beginnings). README: Recipes.
RESERVED_VARIABLES = (
    ("the shell", ("PATH", "HOME", "SHELL", "IFS", "BASH_ENV", "ENV", "CDPATH", "PWD", "OLDPWD", "TMPDIR",
                   "SHELLOPTS", "BASHOPTS", "GLOBIGNORE", "PS4", "POSIXLY_CORRECT"), ("BASH_",)),
    ("the dynamic loader", (), ("LD_",)),
    ("Python and pip", (), ("PYTHON", "PIP_")),
    ("envbuild itself", (), ("ENVBUILD_", "EB_", "_EB_")),
)


def reserved_by(name: str) -> str | None:
    """Who uses variable `name` (the shell, the dynamic loader, ...) when a prefix may not take it, else None."""
    for user, names, beginnings in RESERVED_VARIABLES:
        if name in names or name.startswith(beginnings):
            return user
    return None


@dataclass
class PrefixName(String):
    """The variable of an install prefix: a variable name that the shell, the loader, Python or envbuild
    does not use (RESERVED_VARIABLES)."""

    def __call__(self, checker: Checker, value: Any, line: int, key: str) -> bool:
        if not super().__call__(checker, value, line, key):
            return False
        user = reserved_by(value)
        if user is not None:
            checker.add(line, key, f"{value} is used by {user}; a prefix may not take it (the script takes "
                                   "a prefix from the environment when set there and exports it to the steps): name it after "
                                   "the component, as UCX_HOME")
            return False
        return True

    def json_schema(self) -> dict:
        names = [name for _, exact, _ in RESERVED_VARIABLES for name in exact]
        beginnings = "|".join(re.escape(b) for _, _, starts in RESERVED_VARIABLES for b in starts)
        return dict(super().json_schema(), **{"not": {"anyOf": [{"enum": names}, {"pattern": f"^({beginnings})"}]}})


component_name = string(NAME_RE, "a valid name (lowercase letters, digits and dashes)")
env_name = string(ENV_NAME_RE, "a valid environment variable name")
image_reference = string(IMAGE_RE, "an image reference")  # a recipe's base_image, and --base-image
prefix_name = PrefixName(ENV_NAME_RE, "a valid environment variable name")
one_line = string(re.compile(r"^[^\n]*$"), "one line of text")
abs_path = AbsolutePath()
apt_package = string(APT_RE, "a Debian package name")
nic_family = string(choices=NIC_FAMILIES)
net_device = string(NET_DEVICE_RE, "a device name as UCX_NET_DEVICES takes it (lo, eth0)")
gpu_arch = string(GPU_ARCH_RE, "a GPU architecture like gfx950")
python_dist = string(DIST_RE, "a Python distribution name")
command_name = string(COMMAND_RE, "a command name")
needed_path = string(NEEDED_PATH_RE, "an absolute path, whose parts may be ${NAME} or ${NAME:-/default}")

@dataclass
class PipOptions(Check):
    """pip install options as pip takes them: `--flag`, `--name=value`, or `--name` and then its value."""

    def __call__(self, checker: Checker, value: Any, line: int, key: str) -> bool:
        if not isinstance(value, list):
            checker.add(line, key, f"must be a list, not {_type_name(value)}")
            return False
        ok, previous = True, None
        for index, item in enumerate(value):
            item_key, item_line = f"{key}[{index}]", _item_line(value, index)
            if checker.read_as_no_string(item, item_line, item_key):
                ok, previous = False, None
            elif not isinstance(item, str) or not item or "\n" in item:
                checker.add(item_line, item_key, "must be one line of text")
                ok, previous = False, None
            elif PIP_OPTION_RE.match(item):
                previous = None if "=" in item else item
            elif previous is not None and not item.startswith("-"):
                previous = None  # the value of the option before it
            else:
                checker.add(item_line, item_key, f"{item!r} is neither a pip option (--name or --name=value) nor "
                                                 "the value of the option before it, as in [--index-url, URL]")
                ok, previous = False, None
        return ok

    def json_schema(self) -> dict:
        return {"type": "array", "items": {"type": "string", "minLength": 1}}


# pip options that say where packages come from. With offline sources (ENVBUILD_SOURCE_DIR)
# a recipe's are left out: the fetched pip/ directory replaces every index and link page.
# (pip's short -i and -f are no options a recipe may write: PipOptions takes --name forms.)
PIP_INDEX_OPTIONS = ("--index-url", "--extra-index-url", "--find-links", "--trusted-host")


def pip_option_items(options: Sequence[str]) -> list[tuple[str, ...]]:
    """Valid pip options (PipOptions) one tuple per option, with its value when that is the next
    item: [--index-url, URL, --no-deps, --find-links=DIR] -> [(--index-url, URL), (--no-deps,),
    (--find-links=DIR,)]."""
    items: list[tuple[str, ...]] = []
    for option in options:
        if items and not option.startswith("-") and len(items[-1]) == 1 and "=" not in items[-1][0]:
            items[-1] += (option,)
        else:
            items.append((option,))
    return items


def pip_option_name(item: tuple[str, ...]) -> str:
    """The --name of an item of pip_option_items."""
    return item[0].split("=", 1)[0]


PIP_GROUP = Shape({
    "requirements": Field(list_of(requirement), required=True, doc="pip requirements installed together"),
    "options": Field(PipOptions(), doc="pip install options, e.g. --ignore-installed, --index-url=URL, "
                                       "or --index-url and then URL"),
})
PIP = list_of(Either(requirement, PIP_GROUP))

ENV_VALUE = EnvValue()
ENV = Shape({
    "set": Field(mapping_of(env_name, ENV_VALUE), doc="variables to set, in order"),
    "path": Field(mapping_of(env_name, list_of(ENV_VALUE)),
                  doc="path-like variables to prepend to (the first value listed comes first)"),
})

WHEN = Shape({
    "node_rank": Field(list_of(integer(0), allow_single=True), doc="only on these NODE_RANKs"),
    "nic": Field(list_of(nic_family, allow_single=True), doc="only on nodes of these NIC families"),
})

QOS = Shape({
    "dscp": Field(integer(0, 63), doc="RoCE DSCP (traffic class = DSCP << 2)"),
    "service_level": Field(integer(0, 7), doc="the PFC no-drop priority"),
})


def document(title: str, shape: Shape, definitions: dict[str, dict] | None = None) -> dict:
    """A JSON Schema document (draft 2020-12) for one kind of recipe file."""
    doc = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": title, **shape.json_schema()}
    if definitions:
        doc["$defs"] = definitions
    return doc
