"""What a stamp must say, as the tests expect it: read back with envbuild's one parser of the format."""

from __future__ import annotations

from envbuild.formats import unit_name
from envbuild.plan import Plan, Step
from envbuild.provenance import parse_stamp


def expected_stamp(plan: Plan, step: Step, nic_family: str = "") -> dict:
    """The step's content hash, the NIC family for NIC-specific builds, and the default
    prefixes of the step and its dependencies (those NIC-specific components own: the
    family's directory in each)."""
    nic = (nic_family or plan.nic_family) if step.nic_specific else None
    prefixes = {var: f"{path}/{nic}" if plan.step(name).nic_specific else path
                for name in plan.closure(step.name) for var, path in plan.step(name).component.prefix}
    return {"hash": step.hash, "nic_family": nic, "prefixes": dict(sorted(prefixes.items()))}


def expected_unit(plan: Plan, step: Step, nic_family: str = "") -> str:
    """The name the step's stamp goes by: the component, with @family for a NIC-specific one."""
    return unit_name(step.name, (nic_family or plan.nic_family) if step.nic_specific else None)


def stamp_of(text: str) -> dict:
    return parse_stamp(text.strip())
