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
EMPTY = (ZERO_GID, None)  # an empty GID slot (or one of another network namespace)


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
    model: str | None = None  # PCI device id (<pci>/device), like 0x1021 for a ConnectX-7
    uverbs: int | None = None  # N of <pci>/infiniband_verbs/uverbsN; None: sysfs names no node
    virtual: bool = False  # the netdev is a macvlan or bond (devices/virtual/net), not the function's
    slaves: tuple = ()  # netdevs of the PCI function besides a virtual one: a bond's members


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


def _pci_function(sys: Path, pci: str, vendor: str, driver: str, model: str | None = None) -> Path:
    function = sys / "devices" / "pci0000:00" / "0000:00:01.1" / pci
    _write(function / "vendor", vendor)
    if model is not None:
        _write(function / "device", model)
    (sys / "bus" / "pci" / "drivers" / driver).mkdir(parents=True, exist_ok=True)
    if not (function / "driver").is_symlink():
        _symlink(function / "driver", sys / "bus" / "pci" / "drivers" / driver)
    return function


def _netdev(sys: Path, parent: Path, name: str, mtu: int, trust: str | None = None) -> None:
    """A netdev under `parent`: a PCI function, or sys/devices/virtual for a veth, macvlan or bond."""
    device = parent / "net" / name
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
    if nic.uverbs is not None:
        _write(function / "infiniband_verbs" / f"uverbs{nic.uverbs}" / "ibdev", nic.name)


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
               uverbs=True, veth: str | None = None) -> Path:
    """A node: the RDMA NICs, a plain management netdev, proc/net/route and dev/infiniband.

    `uverbs`: True gives dev/infiniband/uverbs0..N-1 for N NICs, False none, a list of
    numbers those only (a pod gets the nodes of its own devices). `veth` names a
    container's or pod's own non-RDMA interface.
    """
    sys = root / "sys"
    (sys / "class" / "infiniband").mkdir(parents=True, exist_ok=True)
    if management:
        function = _pci_function(sys, "0000:02:00.0", "0x8086", "igb")
        _netdev(sys, function, management, 1500)
    if veth:
        _netdev(sys, sys / "devices" / "virtual", veth, 1500)
    for card in nics:
        vendor, driver = VENDORS[card.family]
        function = _pci_function(sys, card.pci, vendor, driver, card.model)
        _netdev(sys, sys / "devices" / "virtual" if card.virtual else function, card.netdev, card.mtu, card.trust)
        for slave in card.slaves:
            _netdev(sys, function, slave, card.mtu)
        _rdma_device(sys, function, card)
    _write(root / "proc" / "net" / "route", route_table(default_route, nics))
    (root / "dev" / "infiniband").mkdir(parents=True, exist_ok=True)
    numbers = range(len(nics)) if uverbs is True else uverbs or ()
    for number in numbers:
        (root / "dev" / "infiniband" / f"uverbs{number}").touch()
    if numbers:
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


def values(result: dict, *variables: str) -> list:
    """The detected values of these variables, None for those not set."""
    return [result["env"].get(variable) for variable in variables]


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


# --- the machines people really run: containers, pods, mixed fabrics (issue #12) ---------------

CX7, CX6DX, MLX5_VF = "0x1021", "0x101d", "0x101e"  # PCI device ids: ConnectX-7, ConnectX-6 Dx, a VF


def ib_port(name: str, index: int) -> Nic:
    """A ConnectX-7 InfiniBand port: GID 0 is the fe80 default subnet prefix and the port GUID."""
    guid = full_gid(f"fe80::58a2:e103:0:{index + 1:x}")
    return Nic(name, "mlx5", f"0000:{0x11 + 0x10 * index:02x}:00.0", f"ibp{index + 1}s0", [(guid, ROCE_V1)],
               link_layer="InfiniBand", mtu=2044, model=CX7)


def ib_and_roce(ib_count: int, roce_count: int) -> list:
    """InfiniBand ports mlx5_0.., then ConnectX-6 Dx RoCE ports (MTU 9000, 172.16/16) named on from there."""
    roce = [Nic(f"mlx5_{ib_count + i}", "mlx5", f"0000:{0x11 + 0x10 * (ib_count + i):02x}:00.0",
                f"ens{ib_count + i + 1}f0np0", v1_v2_table(f"172.16.{i}.21", ib_count + i + 1), model=CX6DX)
            for i in range(roce_count)]
    return [ib_port(f"mlx5_{i}", i) for i in range(ib_count)] + roce


def vf(index: int, netdev: str, ipv4: str, mtu: int = 9000, table=v1_v2_table) -> Nic:
    """An SR-IOV VF handed to a pod: its own PCI function and dev/infiniband/uverbs<index>."""
    return Nic(f"mlx5_{index}", "mlx5", f"0000:3b:00.{index + 2}", netdev, table(ipv4, index + 1), mtu=mtu,
               model=MLX5_VF, uverbs=index)


def pod_sole_vf_node(directory):
    """A pod whose only interface, eth0, is its VF's netdev, so eth0 also carries the default route."""
    return make_node(directory, [vf(0, "eth0", "10.56.0.7", mtu=1500)], management=None, default_route="eth0")


def container_macvlan_node(directory):
    """A container whose only interface eth0 is a macvlan on the host's RoCE bond. GID slots
    0-11 hold other network namespaces' addresses and read empty here; its own start at 12."""
    card = Nic("mlx5_bond_0", "mlx5", "0000:3b:00.0", "eth0", [EMPTY] * 12 + v1_v2_table("192.168.40.22", 0x22),
               table_size=32, mtu=1500, virtual=True, uverbs=0)
    return make_node(directory, [card], management=None, default_route="eth0")


def bond_node(directory):
    """Bare metal with one bonded RoCE pair, mlx5_bond_0 on bond0, which also carries the default route."""
    card = Nic("mlx5_bond_0", "mlx5", "0000:3b:00.0", "bond0", v1_v2_table("10.20.0.5", 5), model=CX6DX,
               virtual=True, slaves=("ens1f0np0", "ens1f1np1"), uverbs=0)
    return make_node(directory, [card], management=None, default_route="bond0")


def frontend_model_node(directory):
    """Four ConnectX-7 rails and a ConnectX-6 Dx frontend port, same MTU, on the default route."""
    frontend = Nic("mlx5_4", "mlx5", "0000:c2:00.0", "eno1np0", v1_v2_table("10.0.0.5", 0xcc), model=CX6DX)
    return make_node(directory, mlx5_rails(4, model=CX7) + [frontend], management=None, default_route="eno1np0")


def management_roce_v1_node(directory):
    """Two ConnectX-7 rails and a management ConnectX-7 of the same MTU whose GIDs are RoCE v1 only."""
    v1_only = [entry for entry in v1_v2_table("10.0.0.5", 0xcc) if entry[1] == ROCE_V1]
    management = Nic("mlx5_0", "mlx5", "0000:c2:00.0", "eno1np0", v1_only, model=CX7)
    return make_node(directory, mlx5_rails(2, model=CX7) + [management], management=None, default_route="eno1np0")


def pod_frontend_vf_node(directory):
    """A Multus pod: eth0 is a VF on the 1500-MTU frontend with the default route, net1 and
    net2 are VFs on the 9000-MTU RoCE backend."""
    vfs = [vf(0, "eth0", "10.56.0.7", mtu=1500), vf(1, "net1", "192.168.0.7"), vf(2, "net2", "192.168.1.7")]
    return make_node(directory, vfs, management=None, default_route="eth0")


def rail_on_default_route_node(directory):
    """Four ionic rails and no management NIC: the first rail's netdev carries the default route."""
    node = make_node(directory, ionic_rails(4), management=None, default_route="enp1s0")
    node.tool("nicctl", nicctl_show_qos(cards=4))
    return node


def apipa_bnxt_node(directory):
    """Four Broadcom ports (upstream v1/v2 tables); bnxt_re3 got no DHCP lease, so its only IPv4 is 169.254/16."""
    apipa = Nic("bnxt_re3", "bnxt", "0000:41:00.0", "ens4f0np0", v1_v2_table("169.254.12.7", 4),
                configfs={"roce_dscp": "0x1a", "roce_prio": "0x3"})
    return make_node(directory, bnxt_rails(v1_v2_table, count=3, configfs=apipa.configfs) + [apipa])


def pod_apipa_node(directory):
    """A pod with a veth eth0 (default route) and two ionic VFs; net2's address plugin failed,
    leaving it 169.254.3.9."""
    vfs = [Nic("ionic_0", "ionic", "0000:11:00.1", "net1", v2_only_table("10.224.1.5", 1), uverbs=0),
           Nic("ionic_1", "ionic", "0000:21:00.1", "net2", v2_only_table("169.254.3.9", 2), uverbs=1)]
    return make_node(directory, vfs, management=None, veth="eth0", default_route="eth0")


def bnxt_ula_node(directory):
    """Broadcom's own driver (RoCE v2 only) on an IPv6-only fabric: link-local and a ULA per port."""
    rails = [Nic(f"bnxt_re{i}", "bnxt", f"0000:{0x11 + 0x10 * i:02x}:00.0", f"ens{i + 1}f0np0",
                 [(link_local_gid(i + 1), ROCE_V2), (full_gid(f"fd00:10:{i}::36"), ROCE_V2)]) for i in range(2)]
    node = make_node(directory, rails)
    node.tool("niccli", niccli_getqos())
    return node


def odd_scopes_node(directory):
    """GID entries no peer can reach before ionic_0's real IPv4 (slot 4): IPv4 loopback,
    IPv6 multicast, IPv4 unspecified; ionic_1 has nothing else but IPv6 loopback and IPv4 multicast."""
    odd = [(link_local_gid(1), ROCE_V2), (full_gid("127.0.0.1"), ROCE_V2), (full_gid("ff02::1"), ROCE_V2),
           (full_gid("0.0.0.0"), ROCE_V2)]
    cards = [Nic("ionic_0", "ionic", "0000:11:00.0", "enp1s0", odd + [(full_gid("192.168.0.36"), ROCE_V2)]),
             Nic("ionic_1", "ionic", "0000:21:00.0", "enp2s0",
                 odd + [(full_gid("::1"), ROCE_V2), (full_gid("239.1.1.1"), ROCE_V2)])]
    return make_node(directory, cards)


def ib_plus_roce_node(directory):
    """Four InfiniBand compute ports and two RoCE storage ports; the default route is on the management eth0."""
    return make_node(directory, ib_and_roce(4, 2))


def fabric_tie_node(directory):
    """Two InfiniBand ports and two RoCE ports: no fabric is the larger."""
    return make_node(directory, ib_and_roce(2, 2))


def pod_storage_vf_node(directory):
    """A pod with a veth eth0 (default route), four VFs on the 9000-MTU RoCE backend and one on
    the 1500-MTU storage network, whose table also holds a global IPv6 (its IPv4 RoCE v2 is slot 5)."""
    def with_ipv6(ipv4, mac_suffix):
        ipv6 = full_gid("2001:db8:5::7")
        table = v1_v2_table(ipv4, mac_suffix)
        return table[:2] + [(ipv6, ROCE_V1), (ipv6, ROCE_V2)] + table[2:]
    vfs = [vf(i, f"net{i + 1}", f"192.168.{i}.7") for i in range(4)] + [
        vf(4, "net5", "172.16.5.7", mtu=1500, table=with_ipv6)]
    return make_node(directory, vfs, management=None, veth="eth0", default_route="eth0")


def pod_two_of_eight_node(directory):
    """A pod that sees all eight ionic HCAs in sysfs but was given uverbs2 and uverbs5 only."""
    cards = [rail("ionic", f"ionic_{i}", i, f"enp{i + 1}s0", uverbs=i) for i in range(8)]
    return make_node(directory, cards, management=None, veth="eth0", default_route="eth0", uverbs=[2, 5])


def udev_missed_node(directory):
    """Bare metal, four mlx5 rails; udev never made dev/infiniband/uverbs1."""
    cards = [rail("mlx5", f"rdma{i}", i, f"ens{i + 1}np0", table=v1_v2_table, uverbs=i) for i in range(4)]
    return make_node(directory, cards, uverbs=[0, 2, 3])


def container_without_devices_node(directory):
    """A container started without --device=/dev/infiniband: sysfs shows both HCAs, dev/infiniband is empty."""
    cards = [rail("ionic", f"ionic_{i}", i, f"enp{i + 1}s0", uverbs=i) for i in range(2)]
    return make_node(directory, cards, management=None, veth="eth0", default_route="eth0", uverbs=False)


# Every whole-node fixture, by name: each builds a node under the directory it is given.
SCENARIOS = {
    "ionic": ionic_node,
    "ionic-without-tools": ionic_without_tools_node,
    "mia1": mia1_node,
    "bnxt-upstream": bnxt_upstream_node,
    "bnxt-v2-only": bnxt_v2_only_node,
    "no-nic": no_nic_node,
    "pod-sole-vf": pod_sole_vf_node,
    "container-macvlan": container_macvlan_node,
    "bond": bond_node,
    "frontend-model": frontend_model_node,
    "management-roce-v1": management_roce_v1_node,
    "pod-frontend-vf": pod_frontend_vf_node,
    "rail-on-default-route": rail_on_default_route_node,
    "apipa-bnxt": apipa_bnxt_node,
    "pod-apipa": pod_apipa_node,
    "bnxt-ula": bnxt_ula_node,
    "odd-scopes": odd_scopes_node,
    "ib-plus-roce": ib_plus_roce_node,
    "fabric-tie": fabric_tie_node,
    "pod-storage-vf": pod_storage_vf_node,
    "pod-two-of-eight": pod_two_of_eight_node,
    "udev-missed": udev_missed_node,
    "container-without-devices": container_without_devices_node,
}
