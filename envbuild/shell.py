"""Turning recipe values into shell words: every value is quoted, always."""

from __future__ import annotations

import re
import shlex

# How recipe env values refer to variables: ${NAME}, nothing else expands.
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# How `needs` paths refer to variables: ${NAME}, or ${NAME:-/default} where the
# default is a plain path (schema.NEEDED_PATH_RE).
PATH_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[A-Za-z0-9._/+@-]*)?\}")


def quote(value: str) -> str:
    return shlex.quote(str(value))


def words(values) -> str:
    return " ".join(quote(v) for v in values)


def env_word(template: str, references: re.Pattern = ENV_REFERENCE) -> str:
    """One shell word for an env value where only ${NAME} references expand (or
    what `references` matches, which must be safe inside double quotes)."""
    parts, position = [], 0
    for match in references.finditer(template):
        if match.start() > position:
            parts.append(quote(template[position:match.start()]))
        parts.append(f'"{match.group(0)}"')
        position = match.end()
    if position < len(template) or not parts:
        parts.append(quote(template[position:]))
    return "".join(parts)


def identifier(name: str) -> str:
    """A component name as part of a shell function name."""
    return name.replace("-", "_")
