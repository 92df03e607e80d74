"""Formats the runtime script writes and envbuild reads back, each defined once.

- The unit: what a stamp is of, a component, or `<component>@<family>` for a
  NIC-specific component's build for one NIC family (builds for several
  families live side by side, each in its own prefixes). `unit_name` writes it,
  `parse_unit` reads it; the engine's `_eb_key` sets it (_EB_UNIT).
- The stamp (`$ENVBUILD_STATE_DIR/stamps/<unit>`): one line, the stamp key:
  the content hash, then ` nic=<family>` for NIC-specific builds, then a
  ` VAR=/prefix` pair per install prefix of the component and its dependencies,
  sorted by name. The engine's `_eb_key` writes it; `parse_stamp` reads it.
- The provenance record (`provenance/<unit>`): `key=value` lines, the
  fields of PROVENANCE_RECORD in that order. The engine's `_eb_stamp` is
  rendered from PROVENANCE_RECORD; `parse_provenance` reads it.
- A patches field (`name=sha256,...`), in provenance and image labels.
- The state dir, where the stamps, provenance, journals and logs live:
  `ENVBUILD_STATE_DIR`, by default STATE_DIR_DEFAULT (the engine's
  _EB_STATE_DEFAULT is rendered from it).
"""

from __future__ import annotations

import re

STATE_DIR_DEFAULT = "/var/lib/envbuild"

# Each field of the provenance record, with the bash expression _eb_stamp writes for it
# ($1 is the component, $now the install time).
PROVENANCE_RECORD = (
    ("component", "$1"),
    ("hash", "${_EB_HASH[$1]}"),
    ("source", "${_EB_SOURCE[$1]:-}"),
    ("nic_family", "${_EB_NIC:-}"),
    ("installed_at", "$now"),
    ("recipe", "$_EB_RECIPE"),
    ("recipe_hash", "$_EB_RECIPE_HASH"),
    ("envbuild_version", "$_EB_VERSION"),
    ("patches", "${_EB_PATCHES[$1]:-}"),
)


def provenance_writer_words() -> str:
    """The words of the printf in the engine's _eb_stamp, one per field."""
    return " ".join(f'"{name}={expression}"' for name, expression in PROVENANCE_RECORD)


def patches_field(hashes) -> str:
    """`name=sha256,...` of (patch name, sha256) pairs in applying order."""
    return ",".join(f"{name}={digest}" for name, digest in hashes)


def parse_patches(text: str) -> dict[str, str]:
    """`name=sha256,name=sha256` as a dict; empty text is no patches."""
    patches = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, digest = item.partition("=")
        patches[name] = digest
    return patches


UNIT_SEPARATOR = "@"  # never in a component name (lowercase letters, digits and dashes)


def unit_name(component: str, nic_family: str | None = None) -> str:
    """The unit a stamp is of: `component`, or `component@family` for a build per NIC family."""
    return f"{component}{UNIT_SEPARATOR}{nic_family}" if nic_family else component


def parse_unit(unit: str) -> tuple[str, str | None]:
    """(component, NIC family or None) of a unit name."""
    component, separator, family = unit.partition(UNIT_SEPARATOR)
    return component, (family if separator else None)


# Where a stamp key's fields start: a space before NAME=. A prefix may hold spaces itself.
_STAMP_FIELD = re.compile(r" (?=[A-Za-z_][A-Za-z0-9_]*=)")


def parse_stamp(line: str) -> dict:
    """A stamp key as {"hash", "nic_family" (None unless NIC-specific), "prefixes": {VAR: path}}."""
    words = _STAMP_FIELD.split(line.strip()) if line.strip() else []
    if not words:
        return {"hash": None, "nic_family": None, "prefixes": {}}
    nic, prefixes = None, {}
    for word in words[1:]:
        name, _, value = word.partition("=")
        if name == "nic":
            nic = value
        else:
            prefixes[name] = value
    return {"hash": words[0], "nic_family": nic, "prefixes": prefixes}


def stamp_line(stamp: dict) -> str:
    """The stamp key `parse_stamp` reads, from its dict: for writing stamps outside the engine
    (benchmarks that pretend a component is installed)."""
    words = [stamp["hash"]] + ([f"nic={stamp['nic_family']}"] if stamp.get("nic_family") else [])
    return " ".join(words + [f"{name}={value}" for name, value in sorted(stamp["prefixes"].items())])


def parse_provenance(text: str) -> dict[str, str]:
    """The `key=value` lines of a provenance record."""
    facts = {}
    for line in text.splitlines():
        if "=" in line:
            key, _, value = line.partition("=")
            facts[key.strip()] = value
    return facts


# The time every file an image build writes carries, and the image's creation
# time, so that the same recipe on the same base gives the same image ID
# (SOURCE_DATE_EPOCH for the steps). 1980-01-01: zip, and so wheels, cannot
# store earlier times.
IMAGE_EPOCH = 315532800
