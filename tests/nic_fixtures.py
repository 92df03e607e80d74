"""Fixture node trees and fake vendor tools for the NIC detection tests.

Trees mimic the kernel's sysfs layout with real symlinks:
`sys/class/infiniband/<dev> -> ../../devices/pci0000:00/<bridge>/<pci>/infiniband/<dev>`,
`<dev>/device -> ../../../<pci>`, `<pci>/driver -> .../bus/pci/drivers/<driver>`, and
the same for `sys/class/net/<netdev>`. Empty GID slots read as all zeros and their
`types`/`ndevs` entries cannot be opened, like the kernel's EINVAL (tests run as
root, so a directory stands in for the unreadable file).

Fake tools are shell scripts that print the real text formats and log their
arguments to `<bin>/<tool>.calls`.
"""

from __future__ import annotations

import ipaddress
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from envbuild.runtime import nic

ZERO_GID = "0000:0000:0000:0000:0000:0000:0000:0000"
ROCE_V1 = "IB/RoCE v1"
ROCE_V2 = "RoCE v2"
VENDORS = {  # family -> (PCI vendor id, PCI driver)
    "ionic": ("0x1dd8", "ionic"),
    "mlx5": ("0x15b3", "mlx5_core"),
    "bnxt": ("0x14e4", "bnxt_en"),
    "intel": ("0x8086", "irdma"),
}
UNREADABLE = object()  # a GID attribute that cannot be opened


def full_gid(address: str) -> str:
    """The kernel's spelling of a GID: eight 4-digit groups, IPv4 as ::ffff:a.b.c.d."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        ip = ipaddress.IPv6Address("::ffff:" + address)
    return ip.exploded


def link_local_gid(mac_suffix: int) -> str:
    return full_gid(f"fe80::a288:c2ff:fe00:{mac_suffix:x}")


def v2_only_table(ipv4: str, mac_suffix: int) -> list:
    """ionic and Broadcom's own bnxt_re driver: one v2 entry per address."""
    return [(link_local_gid(mac_suffix), ROCE_V2), (full_gid(ipv4), ROCE_V2)]


def v1_v2_table(ipv4: str, mac_suffix: int) -> list:
    """mlx5 and the upstream bnxt_re driver: a v1 and a v2 entry per address."""
    link_local = link_local_gid(mac_suffix)
    return [(link_local, ROCE_V1), (link_local, ROCE_V2), (full_gid(ipv4), ROCE_V1), (full_gid(ipv4), ROCE_V2)]


@dataclass
class Nic:
    """One RDMA device with one port and its netdev."""

    name: str
    family: str
    pci: str
    netdev: str
    gids: list = field(default_factory=list)  # (gid, type) per slot; type may be UNREADABLE
    table_size: int = 8
    state: str = "4: ACTIVE"
    link_layer: str = "Ethernet"
    mtu: int = 9000
    traffic_class: str | None = None  # MLNX_OFED tc/1/traffic_class text
    trust: str | None = None  # netdev qos/trust
    configfs: dict | None = None  # Broadcom configfs cc/<name> -> text


def rail(family: str, name: str, index: int, netdev: str, table=v2_only_table, **fields) -> Nic:
    """A rail NIC whose PCI address and IPv4 address follow from its index."""
    gids = table(f"192.168.{index}.36", index + 1)
    return Nic(name, family, f"0000:{0x11 + 0x10 * index:02x}:00.0", netdev, gids, **fields)


def _symlink(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def _unreadable(path: Path) -> None:
    """Opening fails: a directory for `types`, a dangling symlink for `ndevs`."""
    if path.parent.name == "types":
        path.mkdir(parents=True, exist_ok=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to("../../../../no-such-entry")


def _pci_function(sys: Path, pci: str, vendor: str, driver: str) -> Path:
    function = sys / "devices" / "pci0000:00" / "0000:00:01.1" / pci
    _write(function / "vendor", vendor)
    (sys / "bus" / "pci" / "drivers" / driver).mkdir(parents=True, exist_ok=True)
    if not (function / "driver").is_symlink():
        _symlink(function / "driver", sys / "bus" / "pci" / "drivers" / driver)
    return function


def _netdev(sys: Path, function: Path, name: str, mtu: int, trust: str | None = None) -> None:
    device = function / "net" / name
    _write(device / "operstate", "up")
    _write(device / "mtu", str(mtu))
    _write(device / "address", "04:90:81:00:00:01")
    if trust is not None:
        _write(device / "qos" / "trust", trust)
    _symlink(sys / "class" / "net" / name, device)


def _rdma_device(sys: Path, function: Path, nic: Nic) -> None:
    device = function / "infiniband" / nic.name
    device.mkdir(parents=True)
    _symlink(sys / "class" / "infiniband" / nic.name, device)
    # The kernel spells it ../../../<pci>, not the shorter ../.. a relative path would give.
    (device / "device").symlink_to(f"../../../{function.name}")
    port = device / "ports" / "1"
    _write(port / "state", nic.state)
    _write(port / "phys_state", "5: LinkUp" if "ACTIVE" in nic.state else "3: Disabled")
    _write(port / "link_layer", nic.link_layer)
    slots = list(nic.gids) + [(ZERO_GID, None)] * (nic.table_size - len(nic.gids))
    for index, (gid, gid_type) in enumerate(slots):
        _write(port / "gids" / str(index), gid)
        for attribute, value in (("types", gid_type), ("ndevs", nic.netdev)):
            path = port / "gid_attrs" / attribute / str(index)
            if gid_type is None or gid_type is UNREADABLE:
                _unreadable(path)
            else:
                _write(path, value)
    if nic.traffic_class is not None:
        _write(device / "tc" / "1" / "traffic_class", nic.traffic_class)
    if nic.configfs is not None:
        for name, text in nic.configfs.items():
            _write(sys / "kernel" / "config" / "bnxt_re" / nic.name / "ports" / "1" / "cc" / name, text)


def route_table(default_ifname: str | None, nics: list) -> str:
    """proc/net/route: the default route (if any) plus one /31 per rail, as the kernel prints it."""
    lines = ["Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT"]
    if default_ifname:
        lines.append(f"{default_ifname}\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0")
        lines.append(f"{default_ifname}\t0000000A\t00000000\t0001\t0\t0\t100\t0000FFFF\t0\t0\t0")
    for index, card in enumerate(nics):
        lines.append(f"{card.netdev}\t00{index:02X}A8C0\t00000000\t0001\t0\t0\t0\tFEFFFFFF\t0\t0\t0")
    return "\n".join(lines)


def build_tree(root: Path, nics: list, management: str | None = "eth0", default_route: str | None = "eth0",
               uverbs: bool = True) -> Path:
    """A node: the RDMA NICs, a plain management netdev, proc/net/route and dev/infiniband."""
    sys = root / "sys"
    (sys / "class" / "infiniband").mkdir(parents=True, exist_ok=True)
    if management:
        function = _pci_function(sys, "0000:02:00.0", "0x8086", "igb")
        _netdev(sys, function, management, 1500)
    for card in nics:
        vendor, driver = VENDORS[card.family]
        function = _pci_function(sys, card.pci, vendor, driver)
        _netdev(sys, function, card.netdev, card.mtu, card.trust)
        _rdma_device(sys, function, card)
    _write(root / "proc" / "net" / "route", route_table(default_route, nics))
    (root / "dev" / "infiniband").mkdir(parents=True, exist_ok=True)
    if uverbs:
        for index in range(len(nics)):
            (root / "dev" / "infiniband" / f"uverbs{index}").touch()
        (root / "dev" / "infiniband" / "rdma_cm").touch()
    return root


# --- fake vendor tools -----------------------------------------------------------------

def write_tool(bin_dir: Path, name: str, output: str, status: int = 0, hang: bool = False) -> Path:
    """An executable `name` that logs its arguments, prints `output` and exits `status`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    tool = bin_dir / name
    body = "exec sleep 30\n" if hang else f"cat <<'END_OF_TOOL_OUTPUT'\n{output}\nEND_OF_TOOL_OUTPUT\nexit {status}\n"
    tool.write_text(f'#!/bin/sh\necho "$*" >> "{bin_dir / (name + ".calls")}"\n{body}')
    tool.chmod(0o755)
    return tool


def tool_calls(bin_dir: Path, name: str) -> list:
    log = bin_dir / f"{name}.calls"
    return log.read_text().splitlines() if log.exists() else []


# The ionic cluster's mapping: DSCP 24 on no-drop priority 3, 46 for RDMA acks on 6.
IONIC_DSCP_MAP = (("0-23, 25-45, 47-63", 0), ("24", 3), ("46", 6))


def _numbers(text: str) -> list:
    numbers = []
    for token in text.replace(",", " ").split():
        low, _, high = token.partition("-")
        numbers.extend(range(int(low), int(high or low) + 1))
    return numbers


def nicctl_show_qos(cards: int = 8, dscp_map=IONIC_DSCP_MAP, no_drop: str = "3") -> str:
    """`nicctl show qos` for `cards` NICs, as AINIC firmware prints it."""
    blocks = []
    for card in range(cards):
        lines = [
            f"NIC  : 42424650-4c32-3533-3330-31304{card:07x}  (0000:{0x11 + 0x10 * card:02x}:00.0)",
            "",
            f"Port : 0490814a-6c40-4242-4242-00001101{card:04x}",
            "",
            "  Classification type         : DSCP",
            "",
            "  DSCP-to-priority :",
        ]
        for values, priority in dscp_map:
            bitmap = sum(1 << dscp for dscp in _numbers(values))
            lines.append(f"    DSCP bitmap               : 0x{bitmap:016x} ==> priority : {priority}")
            lines.append(f"    DSCP                      : {values} ==> priority : {priority}")
        pfc_bitmap = sum(1 << priority for priority in _numbers(no_drop))
        lines += [
            "",
            "",
            "  PFC :",
            f"    PFC priority bitmap       : 0x{pfc_bitmap:x}",
            f"    PFC no-drop priorities    : {no_drop}".rstrip(),
            "",
            "  Scheduling :",
            "    --------------------------------------------",
            "    Priority  Scheduling  Bandwidth Rate-limit",
            "              Type        (in %age) (in Gbps)",
            "    --------------------------------------------",
            "    0         DWRR        1         N/A",
            "    3         DWRR        99        N/A",
            "    6         strict      N/A       10",
            "",
        ]
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def mlnx_qos_output(trust: str = "dscp", pfc_enabled: str = "0   0   0   1   0   0   0   0") -> str:
    """`mlnx_qos -i <netdev>` with the default dscp2prio mapping."""
    prio_lines = "\n".join(
        f"        prio:{prio} dscp:" + "".join(f"{dscp:02d}," for dscp in range(8 * prio + 7, 8 * prio - 1, -1))
        for prio in range(8))
    tcs = "\n".join(f"tc: {tc} ratelimit: unlimited, tsa: vendor\n         priority:  {tc}" for tc in range(8))
    return (
        "DCBX mode: OS controlled\n"
        f"Priority trust state: {trust}\n"
        "dscp2prio mapping:\n"
        f"{prio_lines}\n"
        "default priority:\n"
        "Receive buffer size (bytes): 130944,130944,0,0,0,0,0,0,\n"
        "Cable len: 7\n"
        "PFC configuration:\n"
        "        priority    0   1   2   3   4   5   6   7\n"
        f"        enabled     {pfc_enabled}   \n"
        "        buffer      0   0   0   1   0   0   0   0   \n"
        f"{tcs}"
    )


def niccli_getqos(pfc_enabled: str = "3") -> str:
    """`niccli -dev <n> getqos` of the Broadcom Thor2 RoCE profile: DSCP 26 on priority 3, CNP 48 on 7."""
    return textwrap.dedent(f"""\
        IEEE 8021QAZ ETS Configuration TLV:
                 PRIO_MAP: 0:0 1:0 2:0 3:1 4:0 5:0 6:0 7:2
                 TC Bandwidth: 50% 50% 0%
                 TSA_MAP: 0:ets 1:ets 2:strict
        IEEE 8021QAZ PFC TLV:
                 PFC enabled: {pfc_enabled}
        IEEE 8021QAZ APP TLV:
                 APP#0:
                  Priority: 7
                  Sel: 5
                  DSCP: 48

                 APP#1:
                  Priority: 3
                  Sel: 5
                  DSCP: 26

                 APP#2:
                  Priority: 3
                  Sel: 3
                  UDP or DCCP: 4791

        TC Rate Limit: 100% 100% 100% 0% 0% 0% 0% 0%""")


# --- whole nodes ------------------------------------------------------------------------

@dataclass
class Node:
    """A fixture node: its tree and a bin directory for fake tools (alone on PATH)."""

    root: Path
    bin: Path

    def environ(self, **extra) -> dict:
        return {"PATH": str(self.bin), **extra}

    def detect(self, profile=None, **extra_env) -> dict:
        return nic.detect(str(self.root), environ=self.environ(**extra_env), profile=profile)

    def tool(self, name: str, output: str = "", **options) -> None:
        write_tool(self.bin, name, output, **options)


def make_node(directory: Path, nics: list, **tree_options) -> Node:
    node = Node(directory / "node", directory / "bin")
    node.bin.mkdir()
    build_tree(node.root, nics, **tree_options)
    return node


def ionic_rails(count: int = 8) -> list:
    return [rail("ionic", f"ionic_{i}", i, f"enp{i + 1}s0") for i in range(count)]


def mlx5_rails(count: int = 8, **fields) -> list:
    return [rail("mlx5", f"rdma{i}", i, f"ens{i + 1}np0", table=v1_v2_table, **fields) for i in range(count)]


def mia1_nics(**fields) -> list:
    """mia1's shape: eight rails, a DOWN port, a management ConnectX-6 (on the default route)."""
    management = Nic("mlx5_0", "mlx5", "0000:c2:00.0", "eno1", v1_v2_table("10.0.0.5", 0xcc), mtu=1500, **fields)
    down = rail("mlx5", "rdma8", 8, "ens9np0", table=v1_v2_table, state="1: DOWN", **fields)
    return mlx5_rails(**fields) + [down, management]


def bnxt_rails(table, count: int = 8, **fields) -> list:
    return [rail("bnxt", f"bnxt_re{i}", i, f"ens{i + 1}f0np0", table=table, **fields) for i in range(count)]


def ionic_node(directory):
    node = make_node(directory, ionic_rails())
    node.tool("nicctl", nicctl_show_qos())
    return node


def mia1_node(directory):
    node = make_node(directory, mia1_nics(), management=None, default_route="eno1")
    node.tool("mlnx_qos", mlnx_qos_output())
    return node


def bnxt_upstream_node(directory):
    return make_node(directory, bnxt_rails(v1_v2_table, configfs={"roce_dscp": "0x1a", "roce_prio": "0x3"}))


def bnxt_v2_only_node(directory):
    node = make_node(directory, bnxt_rails(v2_only_table))
    node.tool("niccli", niccli_getqos())
    return node


def no_nic_node(directory):
    return make_node(directory, [])


def ionic_without_tools_node(directory):
    return make_node(directory, ionic_rails())


# Every whole-node fixture, by name: each builds a node under the directory it is given.
SCENARIOS = {
    "ionic": ionic_node,
    "ionic-without-tools": ionic_without_tools_node,
    "mia1": mia1_node,
    "bnxt-upstream": bnxt_upstream_node,
    "bnxt-v2-only": bnxt_v2_only_node,
    "no-nic": no_nic_node,
}
