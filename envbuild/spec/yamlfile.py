"""YAML loading that remembers where each key was written."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from envbuild.errors import Problem, RecipeError

# What YAML makes of unquoted text that is no string (0123456, 3.10, yes, 2024-01-01).
_READ_AS = {int: "a number", float: "a number", bool: "true/false", date: "a date", datetime: "a date and time"}


def display_path(path: Path) -> str:
    """A path as messages show it: relative to the working directory when under it."""
    try:
        return str(Path(path).absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def misread(value: Any) -> bool:
    """Whether `value` is what YAML makes of unquoted text that is no string: a number, true/false, a date."""
    return type(value) in _READ_AS


def read_as(value: Any, text: str | None) -> str | None:
    """The message for a value YAML read as a number, true/false or a date where a string is
    expected, quoting `text`, the value as the file writes it, when known; None for any other value."""
    if not misread(value):
        return None
    kind = _READ_AS[type(value)]
    if text is None:
        return f"{value!r} was read as {kind}, not a string; put it in quotes"
    read = str(value).lower() if isinstance(value, bool) else str(value)
    return f"{text} was read as {kind}{'' if read == text else f' ({read})'}, not a string; put it in quotes: '{text}'"


class LocatedDict(dict):
    """A mapping from a YAML file that knows the line of itself and of each key.

    The top-level one (load_mapping) also has `written`: the text, as the file writes it, of each
    scalar YAML read as no string (read_as), by (line, repr(value)).
    """

    line: int = 0
    key_lines: dict
    written: dict

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class LocatedList(list):
    line: int = 0
    item_lines: list


class _Loader(yaml.SafeLoader):
    def __init__(self, stream):
        super().__init__(stream)
        self.written: dict[tuple[int, str], str] = {}


class _KeyNotAString(yaml.constructor.ConstructorError):
    """A mapping key YAML read as a number, true/false or a date."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LocatedDict:
    result = LocatedDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            message = read_as(key, key_node.value if isinstance(key_node, yaml.ScalarNode) else None)
            if message:
                raise _KeyNotAString(None, None, f"the key {message}", key_node.start_mark)
            raise yaml.constructor.ConstructorError(
                None, None, f"keys must be strings, not {type(key).__name__}", key_node.start_mark
            )
        if key in result:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        value = result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
        # Checks report a value at its key's line: its text is found there too.
        text = loader.written.get((value_node.start_mark.line + 1, repr(value)))
        if text is not None:
            loader.written[(result.key_lines[key], repr(value))] = text
    return result


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LocatedList:
    result = LocatedList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


def _keeping_text(construct):
    """A scalar constructor that also keeps, in loader.written, the text of what it reads."""
    def constructor(loader: _Loader, node: yaml.ScalarNode):
        value = construct(loader, node)
        loader.written[(node.start_mark.line + 1, repr(value))] = node.value
        return value
    return constructor


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)
for _tag in ("int", "float", "bool", "timestamp"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}",
                            _keeping_text(yaml.SafeLoader.yaml_constructors[f"tag:yaml.org,2002:{_tag}"]))


def load_mapping(path: Path, display: str | None = None) -> LocatedDict:
    """Load one YAML file whose top level must be a mapping."""
    display = display or str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RecipeError([Problem(display, None, "", "no such file")]) from None
    except OSError as exc:
        raise RecipeError([Problem(display, None, "", f"cannot read: {exc}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise RecipeError([Problem(display, line, "", f"not UTF-8 text (byte 0x{raw[exc.start]:02x}: "
                                                      f"{exc.reason}); save the file as UTF-8")]) from None
    loader = _Loader(text)
    try:
        data = loader.get_single_data()
    except _KeyNotAString as exc:
        raise RecipeError([Problem(display, exc.problem_mark.line + 1, "", exc.problem)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise RecipeError([Problem(display, line, "", f"invalid YAML: {exc.problem or exc}")]) from None
    except yaml.YAMLError as exc:
        raise RecipeError([Problem(display, None, "", f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if not isinstance(data, LocatedDict):
        raise RecipeError([Problem(display, 1, "", "the top level must be a mapping of keys")])
    data.written = loader.written
    return data
