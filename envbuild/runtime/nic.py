"""RDMA NIC detection: rails, GID index, QoS and the variables NCCL/RCCL, UCX and MoRI read.

The runtime script embeds this file's text and runs it with the image's python3 as
`python3 -I -S - ARGS` (source on stdin, no site module), so it imports only the standard library,
stays Python 3.8 compatible and never relies on `__file__`.

Every file read goes through `root`, so a captured or fixture tree can stand in for
a node; vendor QoS tools run from PATH. Anything odd becomes a warning in the
result, never an exception: a degraded answer beats no answer at container start.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

UNKNOWN_VENDOR = "unknown"
NO_NIC = "none"
RAIL = "rail"
EXCLUDED = "excluded"
ROCE_V2 = "RoCE v2"
INFINIBAND = "InfiniBand"
LINK_LAYERS = ("Ethernet", INFINIBAND)
TOOL_TIMEOUT = 5.0
# The usual RoCE marking (NVIDIA and Broadcom defaults); when several DSCPs map to
# the no-drop priority, this is the one the switches are most likely set up for.
PREFERRED_DSCP = 26
DSCP_OVERRIDE = "ENVBUILD_NIC_DSCP"
SL_OVERRIDE = "ENVBUILD_NIC_SL"
FORMATS = ("env", "json", "text", "family")
UCX_EXTRA = "ucx_net_devices_extra"  # the profile key: devices UCX_NET_DEVICES lists after the rails
# Exit statuses of main(), as envbuild's table has them (0 done, 1 failed).
EXIT_USAGE = 2  # bad arguments, or a --root that is not a directory
EXIT_MISMATCH = 3  # the node is not what --expect-rails or the cluster profile expects; output still printed

# Every variable `--format env` prints, in print order, with the value it carries.
VARIABLES = (
    ("IBDEVICES", "devices"),
    ("NCCL_IB_HCA", "exact_devices"),
    ("NCCL_IB_GID_INDEX", "gid_index"),
    ("NCCL_IB_TC", "traffic_class"),
    ("NCCL_IB_SL", "service_level"),
    ("NCCL_SOCKET_IFNAME", "socket_ifname"),
    ("GLOO_SOCKET_IFNAME", "socket_ifname"),
    ("UCX_NET_DEVICES", "device_ports"),
    ("UCX_IB_GID_INDEX", "gid_index"),
    ("UCX_IB_TRAFFIC_CLASS", "traffic_class"),
    ("UCX_IB_SL", "service_level"),
    ("MORI_RDMA_DEVICES", "devices"),
    ("MORI_IB_GID_INDEX", "gid_index"),
    ("MORI_RDMA_TC", "traffic_class"),
    ("MORI_RDMA_SL", "service_level"),
    ("MORI_IO_TC", "traffic_class"),
    ("MORI_IO_SL", "service_level"),
    ("MORI_SOCKET_IFNAME", "socket_ifname"),
)
ENV_VARIABLES = tuple(name for name, _ in VARIABLES)


def natural_key(name: str) -> list:
    """Sort key that puts rdma10 after rdma9."""
    return [int(part) if index % 2 else part for index, part in enumerate(re.split(r"([0-9]+)", name))]


class Tree:
    """The node's files under `root`; absent or unreadable files read as None."""

    def __init__(self, root: str):
        self.root = root

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def read(self, *parts: str) -> str | None:
        try:
            with open(self.path(*parts), encoding="utf-8", errors="replace") as handle:
                return handle.read().strip()
        except OSError:
            return None

    def listdir(self, *parts: str) -> list[str]:
        try:
            return sorted(os.listdir(self.path(*parts)), key=natural_key)
        except OSError:
            return []

    def exists(self, *parts: str) -> bool:
        return os.path.exists(self.path(*parts))

    def link_name(self, *parts: str) -> str | None:
        """The name a symlink leads to: a driver's or a PCI device's; None if not a symlink."""
        path = self.path(*parts)
        if not os.path.islink(path):
            return None
        return os.path.basename(os.path.realpath(path))


class ToolFailure(Exception):
    """A vendor tool could not give its output."""


def run_tool(argv: Sequence[str], timeout: float = TOOL_TIMEOUT) -> str:
    """Run a vendor tool and return its standard output; raise ToolFailure if it fails."""
    try:
        # A session of its own, so that a timeout kills whatever the tool started too.
        process = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, env=dict(os.environ, LC_ALL="C"),
        )
    except OSError as error:
        raise ToolFailure(f"cannot run: {error.strerror}") from None
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.communicate()
        raise ToolFailure(f"timed out after {timeout:g} s") from None
    if process.returncode != 0:
        detail = _first_line(err.decode("utf-8", "replace")) or _first_line(out.decode("utf-8", "replace"))
        raise ToolFailure(f"exited with status {process.returncode}" + (f": {detail}" if detail else ""))
    return out.decode("utf-8", "replace")


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


@dataclass
class Port:
    """One port of one RDMA device, as read from sysfs."""

    device: str
    number: int
    vendor: str
    vendor_id: str | None
    driver: str | None
    model: str | None  # PCI vendor:device, like 0x15b3:0x1021
    pci: str | None
    state: str | None
    link_layer: str | None
    netdev: str | None
    netdevs: list[str]
    gid_index: int | None
    gid: str | None
    gid_type: str | None
    mtu: int | None
    missing_verbs: str | None  # dev/infiniband/uverbsN that sysfs names for the device but the root lacks
    reason: str | None = None

    @property
    def is_rail(self) -> bool:
        return self.reason is None

    def as_json(self) -> dict:
        return {
            "name": self.device,
            "port": self.number,
            "netdev": self.netdev,
            "state": self.state,
            "link_layer": self.link_layer,
            "gid_index": self.gid_index,
            "gid": self.gid,
            "mtu": self.mtu,
            "vendor": self.vendor,
            "role": RAIL if self.is_rail else EXCLUDED,
            "reason": self.reason,
        }


@dataclass
class QosTable:
    """What a vendor tool says about one NIC: DSCP -> priority, no-drop priorities, trust."""

    dscp_priority: dict[int, int] = field(default_factory=dict)
    no_drop: list[int] | None = None
    trust: str | None = None


@dataclass
class QosReading:
    dscp: int | None = None
    service_level: int | None = None


class Probe:
    """What one detection run reads from and reports to."""

    def __init__(self, tree: Tree, environ: Mapping[str, str], which: Callable, run: Callable):
        self.tree = tree
        self.environ = environ
        self.which = which
        self.run = run
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        # One line each: warnings become `# warning:` comments in shell output.
        self.warnings.append(" ".join(message.split()))

    def tool(self, name: str, *args: str) -> str | None:
        path = self.which(name, path=self.environ.get("PATH", os.defpath))
        if path is None:
            self.warn(f"{name} not found on PATH, so QoS cannot be read from it")
            return None
        try:
            return self.run([path, *args])
        except ToolFailure as failure:
            self.warn(f"{' '.join([name, *args])}: {failure}")
            return None


# --- devices, GIDs, rails -------------------------------------------------------------

ROUTABLE = ("ipv4", "ipv6")
# "This network" (RFC 1122): no IPv4 address in it is ever routed to.
IPV4_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")


def gid_scope(text: str | None) -> str | None:
    """The scope of the address a GID holds, or None for an empty (all-zero) or garbled slot.

    'ipv4' (IPv4-mapped) and 'ipv6' are routable (ULA fd00::/8 too: sites route it);
    'link-local', 'loopback', 'unspecified' and 'multicast' are not. An IPv4-mapped
    GID is judged by its IPv4 address, so ::ffff:169.254.0.0/112 is link-local like
    fe80::/10 and ::ffff:127.0.0.1 is loopback like ::1.
    """
    try:
        address = ipaddress.IPv6Address(text or "")
    except ValueError:
        return None
    if not int(address):
        return None
    mapped = address.ipv4_mapped
    ip = mapped or address
    if ip.is_link_local:
        return "link-local"
    if ip.is_loopback:
        return "loopback"
    if ip.is_unspecified or (mapped is not None and mapped in IPV4_THIS_NETWORK):
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    return "ipv4" if mapped else "ipv6"


def choose_gid(tree: Tree, port_dir: tuple, link_layer: str | None):
    """Scan the GID table; return (index, gid, netdev, type) of the best entry, or Nones.

    RoCE: RoCE v2 before v1, IPv4-mapped before global IPv6; unroutable scopes never
    (see gid_scope). Native InfiniBand: the first entry, where the fe80 default subnet
    prefix is normal (an IB GID is a subnet prefix and a port GUID, not an IP address).
    Slots whose types/ndevs cannot be read (EINVAL on an empty slot) are empty.
    """
    best = None
    for entry in tree.listdir(*port_dir, "gids"):
        if not _is_index(entry):
            continue
        gid = tree.read(*port_dir, "gids", entry)
        scope = gid_scope(gid)
        if scope is None:
            continue
        netdev = tree.read(*port_dir, "gid_attrs", "ndevs", entry)
        gid_type = tree.read(*port_dir, "gid_attrs", "types", entry)
        if link_layer == INFINIBAND:
            return int(entry), gid, netdev, gid_type
        if scope not in ROUTABLE or gid_type is None or netdev is None:
            continue
        rank = (gid_type != ROCE_V2, scope != "ipv4")
        if best is None or rank < best[0]:
            best = (rank, int(entry), gid, netdev, gid_type)
        if rank == (False, False):
            break
    return best[1:] if best else (None, None, None, None)


def _state_word(text: str | None) -> str | None:
    """'4: ACTIVE' -> 'ACTIVE'."""
    if not text:
        return None
    return text.split(":", 1)[-1].strip() or None


def _is_index(name: str) -> bool:
    return re.fullmatch(r"[0-9]+", name) is not None


def _int_or_none(text: str | None) -> int | None:
    """Decimal or 0x-hex (Broadcom's configfs prints hex); None for anything else."""
    text = (text or "").strip()
    if _is_index(text):
        return int(text)
    return int(text, 16) if re.fullmatch(r"0[xX][0-9a-fA-F]+", text) else None


def missing_verbs_node(tree: Tree, device: str) -> str | None:
    """The device's dev/infiniband/uverbsN when sysfs names it and the root lacks it, else None.

    A pod sees every HCA in sysfs but gets only its own nodes. When sysfs names no node
    (ib_uverbs not loaded, a tree captured without it), the node-wide check warns instead.
    """
    verbs = ("sys", "class", "infiniband", device, "device", "infiniband_verbs")
    # A PCI function can carry several RDMA devices; each uverbsN/ibdev says whose it is.
    nodes = [name for name in tree.listdir(*verbs)
             if name.startswith("uverbs") and tree.read(*verbs, name, "ibdev") in (device, None)]
    if not nodes or any(tree.exists("dev", "infiniband", name) for name in nodes):
        return None
    return f"dev/infiniband/{nodes[0]}"


def read_ports(probe: Probe, device: str) -> list[Port]:
    tree = probe.tree
    base = ("sys", "class", "infiniband", device)
    vendor_id = (tree.read(*base, "device", "vendor") or "").lower() or None
    driver = tree.link_name(*base, "device", "driver")
    vendor = family_of(vendor_id, driver)
    device_id = (tree.read(*base, "device", "device") or "").lower() or None
    model = f"{vendor_id or '?'}:{device_id}" if device_id else None
    missing_verbs = missing_verbs_node(tree, device)
    pci = tree.link_name(*base, "device")
    netdevs = tree.listdir(*base, "device", "net")
    port_names = tree.listdir(*base, "ports")
    if not port_names:
        probe.warn(f"{device}: no ports under sys/class/infiniband/{device}/ports")
    ports = []
    for name in port_names:
        if not _is_index(name):
            probe.warn(f"{device}: ignoring odd port directory {name!r}")
            continue
        port_dir = base + ("ports", name)
        state = _state_word(tree.read(*port_dir, "state"))
        link_layer = tree.read(*port_dir, "link_layer")
        for what, value in (("state", state), ("link_layer", link_layer)):
            if value is None:
                probe.warn(f"{device} port {name}: cannot read {what}")
        gid_index, gid, gid_netdev, gid_type = choose_gid(tree, port_dir, link_layer)
        netdev = gid_netdev or (netdevs[0] if netdevs else None)
        mtu = _int_or_none(tree.read("sys", "class", "net", netdev, "mtu")) if netdev else None
        ports.append(Port(device, int(name), vendor, vendor_id, driver, model, pci, state, link_layer,
                          netdev, netdevs, gid_index, gid, gid_type, mtu, missing_verbs))
    return ports


def exclusion_reason(port: Port) -> str | None:
    """Why a port cannot be a rail, judged on the port alone; None if it can."""
    if port.vendor == UNKNOWN_VENDOR:
        return f"vendor {port.vendor_id or '?'} / driver {port.driver or '?'} is not {family_names()}"
    if port.missing_verbs:
        return f"{port.missing_verbs} is absent: visible in sysfs but not usable here"
    if port.state != "ACTIVE":
        return f"port state {port.state or 'unreadable'}"
    if port.link_layer not in LINK_LAYERS:
        return f"link layer {port.link_layer or 'unreadable'}"
    if port.gid_index is None:
        return "no routable GID (RoCE v2/v1 with an IPv4-mapped or global address)"
    return None


def fabric_key(port: Port) -> tuple:
    """What the rails of one fabric share: the link layer, and on Ethernet (RoCE) the MTU.

    The subnet is not compared: rail-optimised fabrics give each rail a subnet of its own.
    """
    return (port.link_layer, None if port.link_layer == INFINIBAND else port.mtu)


def fabric_name(key: tuple) -> str:
    """'InfiniBand' or 'Ethernet MTU 9000'."""
    link_layer, mtu = key
    if link_layer == INFINIBAND:
        return link_layer
    return f"{link_layer} MTU {'unknown' if mtu is None else mtu}"


def group_fabrics(ports: list[Port]) -> dict[tuple, list[Port]]:
    """Ports by fabric_key, in the order first met (device name order).

    A RoCE port whose MTU cannot be read joins the largest group of its link layer:
    an unreadable file is no evidence of another fabric.
    """
    unknown = [p for p in ports if p.link_layer != INFINIBAND and p.mtu is None]
    groups: dict[tuple, list[Port]] = {}
    for port in ports:
        if port not in unknown:
            groups.setdefault(fabric_key(port), []).append(port)
    for port in unknown:
        same = [key for key in groups if key[0] == port.link_layer]
        key = max(same, key=lambda k: len(groups[k])) if same else fabric_key(port)
        groups.setdefault(key, []).append(port)
    return groups


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def told_apart(port: Port, peers: list[Port]) -> str | None:
    """How a port differs from its peers (the other rails of its link layer), or None.

    By MTU, by model (PCI vendor:device), or by having no routable RoCE v2 GID where
    they have one; values a port cannot read are no difference.
    """
    for what, mine, theirs in (("MTU", port.mtu, {p.mtu for p in peers}),
                               ("model", port.model, {p.model for p in peers})):
        known = sorted(value for value in theirs if value is not None)
        if mine is not None and known and mine not in known:
            return f"its {what} {mine} differs from the rails' {'/'.join(str(value) for value in known)}"
    if port.gid_type != ROCE_V2 and any(p.gid_type == ROCE_V2 for p in peers):
        return "it has no routable RoCE v2 GID, unlike the rails"
    return None


def exclude_default_route(ports: list[Port], socket_ifname: str | None) -> None:
    """Exclude a rail whose netdev carries the default route, if other rails are there to use.

    It goes when it is told apart from the other rails of its link layer (told_apart) or
    when other rails of its fabric remain; the reason says which. Without such rails it
    stays: a container's or pod's only interface carries the default route and is its
    RDMA netdev too.
    """
    if not socket_ifname:
        return
    candidates = [p for p in ports if p.is_rail]
    on_route = [p for p in candidates if socket_ifname in {p.netdev, *p.netdevs}]
    fabrics = group_fabrics(candidates)
    for port in on_route:
        peers = [p for p in candidates if p.link_layer == port.link_layer and p not in on_route]
        if not peers:
            continue
        difference = told_apart(port, peers)
        if difference is None:
            fabric = next(members for members in fabrics.values() if port in members)
            others = len([p for p in fabric if p not in on_route])
            difference = f"{_counted(others, 'other usable port')} of its fabric remain" + ("s" if others == 1 else "")
        port.reason = f"{socket_ifname} carries the default route and {difference} (management NIC)"


def choose_fabric(probe: Probe, ports: list[Port]) -> str | None:
    """Keep the rails of one fabric, the one with the most ports (the compute fabric).

    The others' ports get a reason; a tie is warned about and goes to the fabric met
    first in device name order. Returns the chosen fabric's name, None without rails.
    """
    fabrics = group_fabrics([p for p in ports if p.is_rail])
    if not fabrics:
        return None
    largest = max(len(members) for members in fabrics.values())
    tied = [key for key, members in fabrics.items() if len(members) == largest]
    chosen = tied[0]
    if len(tied) > 1:
        listed = "; ".join(f"{fabric_name(key)}: " + ", ".join(f"{p.device}:{p.number}" for p in fabrics[key])
                           for key in tied)
        probe.warn(f"fabrics tie at {_counted(largest, 'port')} each ({listed}); "
                   f"using {fabric_name(chosen)}, the first in name order")
    for key, members in fabrics.items():
        for port in members if key != chosen else ():
            port.reason = (f"on fabric {fabric_name(key)} ({_counted(len(members), 'port')}), "
                           f"not the compute fabric {fabric_name(chosen)} ({_counted(largest, 'port')})")
    return fabric_name(chosen)


def select_rails(probe: Probe, ports: list[Port], socket_ifname: str | None) -> tuple[str, str | None]:
    """Give every port that is not a rail its reason; return (rail family, rails' fabric or None).

    In order: what the port alone says (exclusion_reason), the majority family, the
    default route (exclude_default_route), one fabric (choose_fabric).
    """
    for port in ports:
        port.reason = exclusion_reason(port)
    family = rail_family(ports)
    for port in ports:
        if port.is_rail and port.vendor != family:
            port.reason = f"family {port.vendor} is not the rail family {family}"
    exclude_default_route(ports, socket_ifname)
    return family, choose_fabric(probe, ports)


def rail_family(ports: list[Port]) -> str:
    """The family most devices have, among possible rails (else among all known devices)."""
    candidates = [p for p in ports if p.is_rail] or [p for p in ports if p.vendor != UNKNOWN_VENDOR]
    devices: dict[str, dict[str, None]] = {}
    for port in candidates:
        devices.setdefault(port.vendor, {})[port.device] = None
    if not devices:
        return NO_NIC
    # max() keeps the first of equals: on a tie, the family met first in name order.
    return max(devices, key=lambda family: len(devices[family]))


def default_route_ifname(probe: Probe) -> str | None:
    """The interface of the lowest-metric IPv4 default route in proc/net/route."""
    text = probe.tree.read("proc", "net", "route")
    if text is None:
        probe.warn("cannot read proc/net/route: socket interface unknown")
        return None
    best = None
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8 or fields[1] != "00000000" or fields[7] != "00000000":
            continue
        try:
            up, metric = int(fields[3], 16) & 1, int(fields[6])
        except ValueError:
            continue
        if up and (best is None or metric < best[0]):
            best = (metric, fields[0])
    if best is None:
        probe.warn("no default route in proc/net/route: socket interface unknown")
        return None
    return best[1]


def common_gid_index(probe: Probe, rails: list[Port]) -> int | None:
    counts = Counter(port.gid_index for port in rails)
    if not counts:
        return None
    index = min(counts, key=lambda i: (-counts[i], i))
    if len(counts) > 1:
        each = ", ".join(f"{p.device}:{p.number}={p.gid_index}" for p in rails)
        probe.warn(f"rails disagree on the GID index ({each}); using {index}, the most common")
    return index


def report_rail_problems(probe: Probe, ports: list[Port], rails: list[Port], family: str) -> None:
    known = [p for p in ports if p.vendor != UNKNOWN_VENDOR]
    if not ports:
        probe.warn("no RDMA devices under sys/class/infiniband: family none, only the socket variables are set")
    elif not known:
        found = ", ".join(sorted({p.device for p in ports}, key=natural_key))
        probe.warn(f"no {family_names()} RDMA device (found {found}): family none")
    elif not rails:
        probe.warn("every RDMA port was excluded, so there are no rails (see each device's reason)")
    families = Counter(vendor for _, vendor in {(p.device, p.vendor) for p in known})
    if len(families) > 1:
        listed = ", ".join(f"{name} {families[name]}" for name in sorted(families))
        probe.warn(f"mixed NIC vendors ({listed} devices); rails are the most common family, {family}")
    if known and not any(name.startswith("uverbs") for name in probe.tree.listdir("dev", "infiniband")):
        probe.warn("no dev/infiniband/uverbs* devices: verbs are unusable here "
                   "(a container needs --device=/dev/infiniband)")


# --- QoS ---------------------------------------------------------------------------------

def parse_numbers(text: str) -> list[int]:
    """'0-23, 25-45, 47-63,' -> the numbers; raise ValueError on anything else."""
    numbers: list[int] = []
    for token in re.split(r"[,\s]+", text.strip()):
        if not token:
            continue
        low, _, high = token.partition("-")
        numbers.extend(range(int(low), int(high or low) + 1))
    return numbers


NICCTL_NIC = re.compile(r"^\s*NIC\s*:")
NICCTL_DSCP = re.compile(r"^\s*DSCP\s*:\s*(?P<dscps>[0-9,\s-]*?)\s*==>\s*priority\s*:\s*(?P<priority>\d+)")
NICCTL_NO_DROP = re.compile(r"^\s*PFC no-drop priorities\s*:(?P<priorities>.*)$")


def parse_nicctl_qos(text: str) -> list[QosTable]:
    """`nicctl show qos`: one table per `NIC :` block."""
    tables: list[QosTable] = []
    current: QosTable | None = None
    for line in text.splitlines():
        if NICCTL_NIC.match(line) or current is None:
            current = QosTable()
            tables.append(current)
        dscp = NICCTL_DSCP.match(line)
        no_drop = NICCTL_NO_DROP.match(line)
        try:
            if dscp:
                for value in parse_numbers(dscp.group("dscps")):
                    current.dscp_priority[value] = int(dscp.group("priority"))
            elif no_drop:
                current.no_drop = parse_numbers(no_drop.group("priorities"))
        except ValueError:
            continue
    return [t for t in tables if t.dscp_priority or t.no_drop is not None]


MLNX_TRUST = re.compile(r"^\s*Priority trust state:\s*(?P<trust>\S+)")
MLNX_PRIO = re.compile(r"^\s*prio:\s*(?P<priority>\d+)\s+dscp:\s*(?P<dscps>[0-9,\s]*)$")
MLNX_PFC_ROW = re.compile(r"^\s*(?P<label>priority|enabled)\s+(?P<values>[0-9\s]+)$")


def parse_mlnx_qos(text: str) -> list[QosTable]:
    """`mlnx_qos -i <netdev>`: trust state, dscp2prio mapping and the PFC table."""
    table = QosTable()
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        trust = MLNX_TRUST.match(line)
        prio = MLNX_PRIO.match(line)
        row = MLNX_PFC_ROW.match(line)
        if trust:
            table.trust = trust.group("trust")
        elif prio:
            for value in parse_numbers(prio.group("dscps")):
                table.dscp_priority[value] = int(prio.group("priority"))
        elif row:
            rows.setdefault(row.group("label"), row.group("values").split())
    if "priority" in rows and "enabled" in rows:
        table.no_drop = [int(p) for p, on in zip(rows["priority"], rows["enabled"]) if on == "1"]
    return [table] if table.dscp_priority or table.no_drop is not None else []


NICCLI_PFC = re.compile(r"^\s*PFC enabled\s*:(?P<priorities>.*)$")
NICCLI_APP = re.compile(r"^\s*APP#\d+")
NICCLI_PRIORITY = re.compile(r"^\s*Priority\s*:\s*(?P<priority>\d+)\s*$")
NICCLI_DSCP = re.compile(r"^\s*DSCP\s*:\s*(?P<dscps>[0-9,\s-]+)$")


def parse_niccli_qos(text: str) -> list[QosTable]:
    """`niccli -dev <pci> getqos`: the PFC TLV and the APP TLV entries that carry a DSCP."""
    table = QosTable()
    priority: int | None = None
    for line in text.splitlines():
        pfc = NICCLI_PFC.match(line)
        app_priority = NICCLI_PRIORITY.match(line)
        dscp = NICCLI_DSCP.match(line)
        try:
            if pfc:
                words = pfc.group("priorities").strip()
                table.no_drop = [] if words.lower() in ("", "none") else parse_numbers(words)
            elif NICCLI_APP.match(line):
                priority = None
            elif app_priority:
                priority = int(app_priority.group("priority"))
            elif dscp and priority is not None:
                for value in parse_numbers(dscp.group("dscps")):
                    table.dscp_priority[value] = priority
        except ValueError:
            continue
    return [table] if table.dscp_priority or table.no_drop is not None else []


def reading_from_table(table: QosTable):
    """(QosReading, None) or (None, why not): the no-drop priority and its DSCP."""
    if table.trust and table.trust.lower() != "dscp":
        return None, f"priority trust state is {table.trust}, not dscp"
    if not table.no_drop:
        return None, "PFC is off (no no-drop priority)"
    dscps_of: dict[int, list[int]] = {}
    for dscp, priority in sorted(table.dscp_priority.items()):
        if priority in table.no_drop:
            dscps_of.setdefault(priority, []).append(dscp)
    if not dscps_of:
        listed = ",".join(str(p) for p in table.no_drop)
        return None, f"no DSCP maps to the no-drop priority {listed}"
    # With several no-drop priorities, the RDMA class is the one with the fewest DSCPs:
    # the catch-all class gets the ranges.
    priority = min(dscps_of, key=lambda p: (len(dscps_of[p]), p))
    dscps = dscps_of[priority]
    return QosReading(PREFERRED_DSCP if PREFERRED_DSCP in dscps else dscps[0], priority), None


@dataclass(frozen=True)
class QosTool:
    command: str
    arguments: Callable[[Port], list[str] | None]
    parse: Callable[[str], list[QosTable]]

    def read(self, probe: Probe, rail: Port) -> QosReading | None:
        arguments = self.arguments(rail)
        if arguments is None:
            return None
        output = probe.tool(self.command, *arguments)
        if output is None:
            return None
        tables = self.parse(output)
        if not tables:
            probe.warn(f"{self.command}: no QoS in its output ({_first_line(output) or 'empty'})")
            return None
        results = [reading_from_table(table) for table in tables]
        readings = [(r.dscp, r.service_level) for r, _ in results if r is not None]
        if not readings:
            probe.warn(f"{self.command}: {results[0][1]}")
            return None
        counts = Counter(readings)
        dscp, service_level = max(counts, key=lambda r: counts[r])
        if len(counts) > 1 or len(readings) < len(results):
            probe.warn(f"{self.command}: NICs disagree on QoS; using DSCP {dscp}, priority {service_level}")
        return QosReading(dscp, service_level)


def _in_range(value: int | None, high: int) -> int | None:
    return value if value is not None and 0 <= value <= high else None


def read_mlx5_sysfs_qos(probe: Probe, rail: Port) -> QosReading | None:
    """MLNX_OFED's tc/1/traffic_class (`Global tclass=106`) and the netdev's qos/trust."""
    trust = probe.tree.read("sys", "class", "net", rail.netdev, "qos", "trust") if rail.netdev else None
    if trust and trust != "dscp":
        probe.warn(f"{rail.netdev}: qos/trust is {trust}, so the DSCP does not choose the priority")
    text = probe.tree.read("sys", "class", "infiniband", rail.device, "tc", "1", "traffic_class")
    if not text:
        return None
    match = re.search(r"tclass=(\d+)", text)
    if not match:
        probe.warn(f"{rail.device}: unreadable tc/1/traffic_class ({text!r})")
        return None
    return QosReading(dscp=_in_range(int(match.group(1)) >> 2, 63))


def read_bnxt_configfs_qos(probe: Probe, rail: Port) -> QosReading | None:
    """Broadcom's configfs cc/roce_dscp and cc/roce_prio (hex or decimal)."""
    cc = ("sys", "kernel", "config", "bnxt_re", rail.device, "ports", "1", "cc")
    texts = [probe.tree.read(*cc, name) for name in ("roce_dscp", "roce_prio")]
    if texts == [None, None]:
        return None
    reading = QosReading(_in_range(_int_or_none(texts[0]), 63), _in_range(_int_or_none(texts[1]), 7))
    if (reading.dscp, reading.service_level) == (None, None):
        probe.warn(f"{rail.device}: unreadable configfs roce_dscp/roce_prio ({texts[0]!r}, {texts[1]!r})")
        return None
    return reading


def override_qos(probe: Probe) -> QosReading | None:
    values = []
    for name, high in ((DSCP_OVERRIDE, 63), (SL_OVERRIDE, 7)):
        text = probe.environ.get(name, "").strip()
        value = _in_range(_int_or_none(text), high)
        if text and value is None:
            probe.warn(f"{name}={text!r} is not a number from 0 to {high}; ignored")
        values.append(value)
    return QosReading(*values)


def profile_qos(probe: Probe, profile: Mapping) -> QosReading | None:
    values = []
    for key, high in (("dscp", 63), ("service_level", 7)):
        value = profile.get(key)
        checked = _in_range(value, high) if isinstance(value, int) and not isinstance(value, bool) else None
        if value is not None and checked is None:
            probe.warn(f"cluster profile {key}={value!r} is not a number from 0 to {high}; ignored")
        values.append(checked)
    return QosReading(*values)


def detect_qos(probe: Probe, family: str, rails: list[Port], profile: Mapping) -> dict:
    """Each of DSCP and service level comes from the first source that knows it."""
    sources = [("override", lambda: override_qos(probe))]
    known = FAMILIES.get(family)
    if rails and known and known.qos_tool:
        tool = known.qos_tool
        sources.append((tool.command, lambda: tool.read(probe, rails[0])))
    if rails and known and known.qos_files:
        name, read_files = known.qos_files
        sources.append((name, lambda: read_files(probe, rails[0])))
    sources.append(("profile", lambda: profile_qos(probe, profile)))
    dscp = service_level = dscp_source = sl_source = None
    for name, read in sources:
        if dscp is not None and service_level is not None:
            break
        reading = read()
        if reading is None:
            continue
        if dscp is None and reading.dscp is not None:
            dscp, dscp_source = reading.dscp, name
        if service_level is None and reading.service_level is not None:
            service_level, sl_source = reading.service_level, name
    if rails:
        missing = [what for what, value in (("DSCP", dscp), ("service level", service_level)) if value is None]
        if missing:
            probe.warn(f"no {' or '.join(missing)} found; the matching TC/SL variables are not set "
                       f"(set {DSCP_OVERRIDE}/{SL_OVERRIDE} or the cluster profile's qos)")
    if dscp_source and sl_source and dscp_source != sl_source:
        source = f"dscp: {dscp_source}, service_level: {sl_source}"
    else:
        source = dscp_source or sl_source or "none"
    return {
        "dscp": dscp,
        "traffic_class": dscp << 2 if dscp is not None else None,
        "service_level": service_level,
        "source": source,
        "dscp_source": dscp_source,
        "service_level_source": sl_source,
    }


# --- NIC families ------------------------------------------------------------------------

@dataclass(frozen=True)
class Family:
    """How a NIC family is recognised and where its QoS is read.

    `vendor_id` is the PCI vendor id as sysfs spells it (`device/vendor`), `driver` the
    PCI driver (`device/driver` link's basename); the vendor id is asked first.
    `qos_tool` reads the vendor's tool, `qos_files` is (source name, reader) for what
    the driver exposes in files. Both are asked about one rail only: the tools are slow
    and the rails share one fabric policy.
    """

    vendor_id: str
    driver: str
    qos_tool: QosTool | None = None
    qos_files: tuple[str, Callable[[Probe, Port], QosReading | None]] | None = None


# Every family envbuild knows, in the order messages list them. Adding one is one entry
# here (plus a QoS parser); NIC_FAMILIES, the recipe schema's and the CLI's choices, follow.
FAMILIES = {
    "ionic": Family("0x1dd8", "ionic", QosTool("nicctl", lambda rail: ["show", "qos"], parse_nicctl_qos)),
    "mlx5": Family("0x15b3", "mlx5_core",
                   QosTool("mlnx_qos", lambda rail: ["-i", rail.netdev] if rail.netdev else None, parse_mlnx_qos),
                   ("sysfs", read_mlx5_sysfs_qos)),
    "bnxt": Family("0x14e4", "bnxt_en",
                   QosTool("niccli", lambda rail: ["-dev", rail.pci, "getqos"] if rail.pci else None, parse_niccli_qos),
                   ("configfs", read_bnxt_configfs_qos)),
}
# The families a recipe may name: each RDMA family, and none.
NIC_FAMILIES = (*FAMILIES, NO_NIC)


def family_of(vendor_id: str | None, driver: str | None) -> str:
    """The family of a PCI function, by vendor id, else by driver; UNKNOWN_VENDOR if neither is known."""
    by_vendor = (name for name, family in FAMILIES.items() if family.vendor_id == vendor_id)
    by_driver = (name for name, family in FAMILIES.items() if family.driver == driver)
    return next(by_vendor, None) or next(by_driver, None) or UNKNOWN_VENDOR


def family_names() -> str:
    """'ionic, mlx5 or bnxt', for messages."""
    *others, last = FAMILIES
    return f"{', '.join(others)} or {last}" if others else last


# --- the result ------------------------------------------------------------------------

def check_profile(probe: Probe, profile: Mapping, family: str, rails: list[Port]) -> None:
    name = profile.get("name") or "(unnamed)"
    expected_family = profile.get("nic_family")
    if expected_family and expected_family != family:
        probe.warn(f"cluster profile {name} expects nic_family {expected_family}, but this node has {family}")
    expected_rails = profile.get("rail_count")
    if expected_rails is not None and expected_rails != len(rails):
        probe.warn(f"cluster profile {name} expects {expected_rails} rails, but this node has {len(rails)}")


def ucx_extra_devices(probe: Probe, profile: Mapping) -> list[str]:
    """The profile's ucx_net_devices_extra (like ['lo']), or [] with a warning if it is not a list of names."""
    value = profile.get(UCX_EXTRA, [])
    if isinstance(value, list) and all(isinstance(name, str) and name for name in value):
        return value
    probe.warn(f"profile {UCX_EXTRA}={value!r} is not a list of device names; ignored")
    return []


def _env_source(qos_source: str | None) -> str:
    return qos_source if qos_source in ("override", "profile") else "detected"


def build_env(rails: list[Port], gid_index: int | None, qos: dict, socket_ifname: str | None,
              ucx_extra: list[str], environ: Mapping[str, str], respect_env: bool):
    names = list(dict.fromkeys(port.device for port in rails))
    # UCX_NET_DEVICES limits every UCX transport, tcp and loopback too: NIXL/RIXL need `lo`
    # (ucx_extra) to reach themselves. Without rails it stays unset, and UCX uses everything.
    device_ports = list(dict.fromkeys([f"{p.device}:{p.number}" for p in rails] + ucx_extra)) if rails else []
    values = {
        "devices": ",".join(names) or None,
        "exact_devices": "=" + ",".join(names) if names else None,  # '=': mlx5_1 must not match mlx5_10
        "device_ports": ",".join(device_ports) or None,
        "gid_index": None if gid_index is None else str(gid_index),
        "traffic_class": None if qos["traffic_class"] is None else str(qos["traffic_class"]),
        "service_level": None if qos["service_level"] is None else str(qos["service_level"]),
        "socket_ifname": socket_ifname,
    }
    origin = {kind: "detected" for kind in values}
    origin["traffic_class"] = _env_source(qos["dscp_source"])
    origin["service_level"] = _env_source(qos["service_level_source"])
    env: dict[str, str] = {}
    sources: dict[str, str] = {}
    for variable, kind in VARIABLES:
        # Like the seed's ${VAR:-...}: an empty value counts as unset.
        current = environ.get(variable) if respect_env else None
        if current:
            env[variable], sources[variable] = current, "environment"
        elif values[kind] is not None:
            env[variable], sources[variable] = values[kind], origin[kind]
    return env, sources


def detect(root: str = "/", environ: Mapping[str, str] | None = None, profile: Mapping | None = None,
           respect_env: bool = True, which: Callable = shutil.which, run: Callable = run_tool) -> dict:
    """Detect the node's RDMA rails, GID index and QoS, and the variables that follow.

    `profile` is a plain dict, every key optional: a cluster profile's name, nic_family,
    rail_count, dscp and service_level (expectations become warnings, the QoS is the
    fallback) and a recipe's ucx_net_devices_extra (netdevs UCX_NET_DEVICES lists after
    the rails). `which(name, path=...)` finds vendor tools; `run(argv)` runs one and
    returns its output or raises ToolFailure.

    Returns family, rails (the number of rail ports), fabric (the rails' fabric name or
    None), gid_index, devices (one dict per port with its role and, if excluded, the
    reason), qos, socket_ifname, warnings, env and env_sources.
    """
    environ = os.environ if environ is None else environ
    profile = profile or {}
    probe = Probe(Tree(root), environ, which, run)
    socket_ifname = default_route_ifname(probe)
    ports = [port for device in probe.tree.listdir("sys", "class", "infiniband") for port in read_ports(probe, device)]
    family, fabric = select_rails(probe, ports, socket_ifname)
    rails = [port for port in ports if port.is_rail]
    report_rail_problems(probe, ports, rails, family)
    gid_index = common_gid_index(probe, rails)
    qos = detect_qos(probe, family, rails, profile)
    check_profile(probe, profile, family, rails)
    env, env_sources = build_env(rails, gid_index, qos, socket_ifname, ucx_extra_devices(probe, profile),
                                 environ, respect_env)
    return {
        "family": family,
        "rails": len(rails),
        "fabric": fabric,
        "gid_index": gid_index,
        "devices": [port.as_json() for port in ports],
        "qos": qos,
        "socket_ifname": socket_ifname,
        "warnings": probe.warnings,
        "env": env,
        "env_sources": env_sources,
    }


# --- output ------------------------------------------------------------------------------

def summary(result: dict) -> str:
    qos = result["qos"]
    parts = [f"family {result['family']}", f"{result['rails']} rails"]
    if result["gid_index"] is not None:
        parts.append(f"GID index {result['gid_index']}")
    if qos["dscp"] is not None:
        parts.append(f"DSCP {qos['dscp']} (TC {qos['traffic_class']})")
    if qos["service_level"] is not None:
        parts.append(f"SL {qos['service_level']}")
    parts.append("no QoS" if qos["source"] == "none" else f"QoS from {qos['source']}")
    parts.append(f"socket {result['socket_ifname'] or 'unknown'}")
    return ", ".join(parts)


def render_env(result: dict) -> str:
    lines = [f"# envbuild detect-nic: {summary(result)}"]
    lines += [f"# warning: {warning}" for warning in result["warnings"]]
    for variable in ENV_VARIABLES:
        if variable not in result["env"]:
            continue
        if result["env_sources"][variable] == "environment":
            lines.append(f"# {variable} from environment")
        lines.append(f"export {variable}={shlex.quote(result['env'][variable])}")
    missing = [variable for variable in ENV_VARIABLES if variable not in result["env"]]
    if missing:
        lines.append("# not set (nothing detected): " + " ".join(missing))
    return "\n".join(lines) + "\n"


def render_json(result: dict) -> str:
    return json.dumps(result, indent=2) + "\n"


def render_text(result: dict) -> str:
    columns = ("name", "port", "netdev", "state", "link_layer", "gid_index", "mtu", "vendor", "role", "reason")
    rows = [[column.upper() for column in columns]]
    rows += [["-" if device[c] is None else str(device[c]) for c in columns] for device in result["devices"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = [summary(result), ""]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    if result["warnings"]:
        lines += ["", "warnings:"] + [f"  - {warning}" for warning in result["warnings"]]
    lines += ["", "variables:"]
    lines += [f"  {name}={value}  ({result['env_sources'][name]})" for name, value in result["env"].items()]
    return "\n".join(lines) + "\n"


def render_family(result: dict) -> str:
    return result["family"] + "\n"


RENDERERS = {"env": render_env, "json": render_json, "text": render_text, "family": render_family}


def load_profile_json(text: str | None):
    """(profile dict, problem or None) from --profile-json."""
    if text is None:
        return {}, None
    try:
        profile = json.loads(text)
    except ValueError as error:
        return {}, f"--profile-json is not valid JSON ({error}); profile ignored"
    if not isinstance(profile, dict):
        return {}, "--profile-json is not a JSON object; profile ignored"
    return profile, None


def expectation_failure(result: dict, profile: Mapping, expect_rails: int | None) -> str | None:
    """One line saying what was expected and what was found, or None when the node is as expected.

    --expect-rails comes first, then the profile's rail_count; a profile that names an
    RDMA family (not none) expects at least one rail.
    """
    found = result["rails"]
    name = profile.get("name") or "(unnamed)"
    rail_count = profile.get("rail_count")
    if expect_rails is not None:
        expected, source = expect_rails, "--expect-rails"
    elif isinstance(rail_count, int) and not isinstance(rail_count, bool):
        expected, source = rail_count, f"cluster profile {name}"
    elif profile.get("nic_family") not in (None, "", NO_NIC) and found == 0:
        return f"expected {profile['nic_family']} RDMA rails (cluster profile {name}), found 0"
    else:
        return None
    return None if found == expected else f"expected {expected} rails ({source}), found {found}"


def _rail_count(text: str) -> int:
    if not _is_index(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of rails (0 or more)")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line of `envbuild detect-nic` and `setup_deps.sh --detect-nic`.

    Prints the result on stdout and returns 0; EXIT_MISMATCH (3), with one line on
    stderr, when the rails are not what --expect-rails or the profile expects (the
    result is still printed); EXIT_USAGE (2) for bad arguments or a missing --root.
    """
    parser = argparse.ArgumentParser(
        prog="detect-nic", description="Detect RDMA rails, GID index and QoS; print the variables that follow.")
    parser.add_argument("--root", default="/", help="filesystem root every read goes through (default /)")
    parser.add_argument("--format", choices=FORMATS, default="env", help="output format (default env)")
    parser.add_argument("--profile-json",
                        help="profile as a JSON object: the cluster's expectations and QoS fallback, the recipe's "
                             f"{UCX_EXTRA}")
    parser.add_argument("--expect-rails", type=_rail_count, metavar="N",
                        help=f"exit {EXIT_MISMATCH} unless there are N rails (default: the profile's rail_count)")
    parser.add_argument("--no-respect-env", dest="respect_env", action="store_false",
                        help="print detected values even for variables already set in the environment")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.root):
        what = "is not a directory" if os.path.exists(args.root) else "does not exist"
        print(f"detect-nic: --root {args.root} {what}", file=sys.stderr)
        return EXIT_USAGE
    profile, problem = load_profile_json(args.profile_json)
    result = detect(root=args.root, profile=profile, respect_env=args.respect_env)
    if problem:
        result["warnings"].insert(0, problem)
    sys.stdout.write(RENDERERS[args.format](result))
    failure = expectation_failure(result, profile, args.expect_rails)
    if failure:
        sys.stdout.flush()
        print(f"detect-nic: {failure}", file=sys.stderr)
        return EXIT_MISMATCH
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
