"""What a stamp must say, as the tests expect it: read back with envbuild's one parser of the format."""

from __future__ import annotations

from envbuild.plan import Plan, Step
from envbuild.provenance import parse_stamp


def expected_stamp(plan: Plan, step: Step, nic_family: str = "") -> dict:
    """The step's content hash, the NIC family for NIC-specific builds, and the default
    prefixes of the step and its dependencies."""
    prefixes = dict(p for name in plan.closure(step.name) for p in plan.step(name).component.prefix)
    nic = (nic_family or plan.nic_family) if step.nic_specific else None
    return {"hash": step.hash, "nic_family": nic, "prefixes": dict(sorted(prefixes.items()))}


def stamp_of(text: str) -> dict:
    return parse_stamp(text.strip())
