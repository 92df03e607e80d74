"""NIC detection on fixture node trees, with fake vendor tools on PATH."""

from __future__ import annotations

import functools
import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from envbuild.runtime import nic
from envbuild.spec.loader import Library
from nic_fixtures import (
    ROCE_V1, ROCE_V2, SCENARIOS, UNREADABLE, Nic, Node, bnxt_upstream_node, bnxt_v2_only_node, full_gid,
    ionic_node, ionic_rails, link_local_gid, make_node, mia1_node, mlnx_qos_output, mlx5_rails, niccli_getqos,
    nicctl_show_qos, no_nic_node, rail, tool_calls, v1_v2_table, v2_only_table, values,
)

NIC_SOURCE = Path(nic.__file__).read_text()


def cluster_profile(name: str) -> dict:
    return Library().cluster(name).profile()


IONIC_4N = cluster_profile("ionic-4n")
MIA1 = cluster_profile("mia1")
NO_TOOL = "{} not found on PATH, so QoS cannot be read from it"
NO_QOS = ("no DSCP or service level found; the matching TC/SL variables are not set "
          "(set ENVBUILD_NIC_DSCP/ENVBUILD_NIC_SL or the cluster profile's qos)")
NO_SL = ("no service level found; the matching TC/SL variables are not set "
         "(set ENVBUILD_NIC_DSCP/ENVBUILD_NIC_SL or the cluster profile's qos)")
QOS_VARIABLES = ("NCCL_IB_TC", "NCCL_IB_SL", "UCX_IB_TRAFFIC_CLASS", "UCX_IB_SL",
                 "MORI_RDMA_TC", "MORI_RDMA_SL", "MORI_IO_TC", "MORI_IO_SL")


# --- the seed's clusters and the other families ------------------------------------------

IONIC_ENV_OUTPUT = """\
# envbuild detect-nic: family ionic, 8 rails, GID index 1, DSCP 24 (TC 96), SL 3, QoS from nicctl, socket eth0
export IBDEVICES=ionic_0,ionic_1,ionic_2,ionic_3,ionic_4,ionic_5,ionic_6,ionic_7
export NCCL_IB_HCA==ionic_0,ionic_1,ionic_2,ionic_3,ionic_4,ionic_5,ionic_6,ionic_7
export NCCL_IB_GID_INDEX=1
export NCCL_IB_TC=96
export NCCL_IB_SL=3
export NCCL_SOCKET_IFNAME=eth0
export GLOO_SOCKET_IFNAME=eth0
export UCX_NET_DEVICES=ionic_0:1,ionic_1:1,ionic_2:1,ionic_3:1,ionic_4:1,ionic_5:1,ionic_6:1,ionic_7:1
export UCX_IB_GID_INDEX=1
export UCX_IB_TRAFFIC_CLASS=96
export UCX_IB_SL=3
export MORI_RDMA_DEVICES=ionic_0,ionic_1,ionic_2,ionic_3,ionic_4,ionic_5,ionic_6,ionic_7
export MORI_IB_GID_INDEX=1
export MORI_RDMA_TC=96
export MORI_RDMA_SL=3
export MORI_IO_TC=96
export MORI_IO_SL=3
export MORI_SOCKET_IFNAME=eth0
"""


def test_ionic_eight_rails_with_nicctl(scratch):
    node = ionic_node(scratch)
    result = node.detect(profile=IONIC_4N)
    assert nic.render_env(result) == IONIC_ENV_OUTPUT
    assert result["family"] == "ionic"
    assert result["warnings"] == []
    assert result["qos"] == {"dscp": 24, "traffic_class": 96, "service_level": 3, "source": "nicctl",
                             "dscp_source": "nicctl", "service_level_source": "nicctl"}
    assert result["devices"][0] == {
        "name": "ionic_0", "port": 1, "netdev": "enp1s0", "state": "ACTIVE", "link_layer": "Ethernet",
        "gid_index": 1, "gid": "0000:0000:0000:0000:0000:ffff:c0a8:0024", "mtu": 9000, "vendor": "ionic",
        "role": "rail", "reason": None,
    }
    assert set(result["env_sources"].values()) == {"detected"}
    assert tool_calls(node.bin, "nicctl") == ["show qos"]


def test_mia1_mlx5_renamed_with_management_nic_and_down_port(scratch):
    node = mia1_node(scratch)
    result = node.detect(profile=MIA1)
    assert result["warnings"] == []
    assert (result["family"], result["rails"], result["gid_index"]) == ("mlx5", 8, 3)
    assert result["qos"]["source"] == "mlnx_qos"
    assert values(result, "IBDEVICES", "NCCL_IB_HCA", "NCCL_IB_TC", "NCCL_IB_SL", "NCCL_SOCKET_IFNAME") == [
        "rdma0,rdma1,rdma2,rdma3,rdma4,rdma5,rdma6,rdma7",
        "=rdma0,rdma1,rdma2,rdma3,rdma4,rdma5,rdma6,rdma7",
        "104", "3", "eno1",
    ]
    excluded = {d["name"]: d["reason"] for d in result["devices"] if d["role"] == "excluded"}
    assert excluded == {
        "mlx5_0": "eno1 carries the default route and its MTU 1500 differs from the rails' 9000 (management NIC)",
        "rdma8": "port state DOWN",
    }
    assert [d["name"] for d in result["devices"]] == ["mlx5_0"] + [f"rdma{i}" for i in range(9)]
    assert tool_calls(node.bin, "mlnx_qos") == ["-i ens1np0"]


def test_mlx5_without_mlnx_qos_reads_sysfs_traffic_class_and_profile_sl(scratch):
    node = make_node(scratch, mlx5_rails(traffic_class="Global tclass=106", trust="dscp"))
    result = node.detect(profile={"name": "mia1", "service_level": 3})
    assert result["qos"] == {"dscp": 26, "traffic_class": 104, "service_level": 3,
                             "source": "dscp: sysfs, service_level: profile",
                             "dscp_source": "sysfs", "service_level_source": "profile"}
    assert result["warnings"] == [NO_TOOL.format("mlnx_qos")]
    assert result["env_sources"]["NCCL_IB_TC"] == "detected"
    assert result["env_sources"]["NCCL_IB_SL"] == "profile"


def test_mlx5_sysfs_without_sl_leaves_sl_variables_unset(scratch):
    node = make_node(scratch, mlx5_rails(traffic_class="Global tclass=106", trust="pcp"))
    result = node.detect()
    assert values(result, "NCCL_IB_TC", "NCCL_IB_SL") == ["104", None]
    assert result["warnings"] == [
        NO_TOOL.format("mlnx_qos"),
        "ens1np0: qos/trust is pcp, so the DSCP does not choose the priority",
        NO_SL,
    ]


def test_bnxt_upstream_table_with_configfs_qos(scratch):
    result = bnxt_upstream_node(scratch).detect()
    assert (result["family"], result["rails"], result["gid_index"]) == ("bnxt", 8, 3)
    assert result["qos"]["source"] == "configfs"
    assert values(result, "UCX_IB_GID_INDEX", "UCX_IB_TRAFFIC_CLASS", "UCX_IB_SL", "IBDEVICES") == [
        "3", "104", "3", ",".join(f"bnxt_re{i}" for i in range(8))]
    assert result["warnings"] == [NO_TOOL.format("niccli")]


def test_bnxt_v2_only_table_with_niccli(scratch):
    node = bnxt_v2_only_node(scratch)
    result = node.detect()
    assert (result["family"], result["gid_index"], result["warnings"]) == ("bnxt", 1, [])
    assert (result["qos"]["dscp"], result["qos"]["service_level"], result["qos"]["source"]) == (26, 3, "niccli")
    assert tool_calls(node.bin, "niccli") == ["-dev 0000:11:00.0 getqos"]


NO_NIC_ENV_OUTPUT = """\
# envbuild detect-nic: family none, 0 rails, no QoS, socket eth0
# warning: no RDMA devices under sys/class/infiniband: family none, only the socket variables are set
export NCCL_SOCKET_IFNAME=eth0
export GLOO_SOCKET_IFNAME=eth0
export MORI_SOCKET_IFNAME=eth0
# not set (nothing detected): IBDEVICES NCCL_IB_HCA NCCL_IB_GID_INDEX NCCL_IB_TC NCCL_IB_SL UCX_NET_DEVICES \
UCX_IB_GID_INDEX UCX_IB_TRAFFIC_CLASS UCX_IB_SL MORI_RDMA_DEVICES MORI_IB_GID_INDEX MORI_RDMA_TC MORI_RDMA_SL \
MORI_IO_TC MORI_IO_SL
"""


def test_no_nic_is_a_normal_outcome(scratch):
    result = no_nic_node(scratch).detect()
    assert nic.render_env(result) == NO_NIC_ENV_OUTPUT
    assert (result["family"], result["devices"], result["qos"]["source"]) == ("none", [], "none")


def test_ionic_without_nicctl_falls_back_to_the_profile(scratch):
    node = make_node(scratch, ionic_rails())
    result = node.detect(profile=IONIC_4N)
    assert result["warnings"] == [NO_TOOL.format("nicctl")]
    assert (result["qos"]["traffic_class"], result["qos"]["service_level"], result["qos"]["source"]) == (
        96, 3, "profile")
    assert {result["env_sources"][v] for v in QOS_VARIABLES} == {"profile"}


def test_ionic_without_nicctl_or_profile_sets_no_qos(scratch):
    result = make_node(scratch, ionic_rails()).detect()
    assert result["warnings"] == [NO_TOOL.format("nicctl"), NO_QOS]
    assert values(result, *QOS_VARIABLES) == [None] * len(QOS_VARIABLES)
    assert result["env"]["NCCL_IB_GID_INDEX"] == "1"


def test_infiniband_port_uses_the_first_gid(scratch):
    ib = Nic("mlx5_ib0", "mlx5", "0000:11:00.0", "ib0", [(link_local_gid(1), ROCE_V1)], link_layer="InfiniBand")
    result = make_node(scratch, [ib]).detect()
    assert (result["devices"][0]["role"], result["devices"][0]["gid_index"]) == ("rail", 0)


# --- GID table details --------------------------------------------------------------------

def test_unreadable_types_of_a_filled_slot_count_as_empty(scratch):
    gids = v1_v2_table("192.168.0.36", 1)
    gids[3] = (gids[3][0], UNREADABLE)
    result = make_node(scratch, [Nic("rdma0", "mlx5", "0000:11:00.0", "ens1np0", gids)]).detect()
    assert (result["devices"][0]["gid_index"], result["devices"][0]["gid"]) == (2, full_gid("192.168.0.36"))


def test_link_local_only_table_has_no_routable_gid(scratch):
    gids = [(link_local_gid(1), ROCE_V1), (link_local_gid(1), ROCE_V2)]
    result = make_node(scratch, [Nic("rdma0", "mlx5", "0000:11:00.0", "ens1np0", gids)]).detect()
    assert result["devices"][0]["reason"] == "no routable GID (RoCE v2/v1 with an IPv4-mapped or global address)"
    assert result["warnings"] == ["every RDMA port was excluded, so there are no rails (see each device's reason)"]


def test_global_ipv6_v2_beats_ipv4_v1(scratch):
    gids = [(link_local_gid(1), ROCE_V2), (full_gid("192.168.0.36"), ROCE_V1), (full_gid("fd00::36"), ROCE_V2)]
    result = make_node(scratch, [Nic("rdma0", "mlx5", "0000:11:00.0", "ens1np0", gids)]).detect()
    assert result["gid_index"] == 2


def test_rails_disagreeing_on_gid_index_use_the_most_common(scratch):
    nics = mlx5_rails(3) + [rail("mlx5", "rdma3", 3, "ens4np0", table=v2_only_table)]
    result = make_node(scratch, nics).detect(profile=MIA1)
    assert result["gid_index"] == 3
    assert ("rails disagree on the GID index (rdma0:1=3, rdma1:1=3, rdma2:1=3, rdma3:1=1); using 3, the most common"
            in result["warnings"])


def test_natural_sort_puts_rdma10_after_rdma9(scratch):
    result = make_node(scratch, mlx5_rails(12)).detect()
    assert result["env"]["IBDEVICES"] == ",".join(f"rdma{i}" for i in range(12))
    assert sorted(["rdma10", "rdma9", "rdma1", "mlx5_10", "mlx5_2"], key=nic.natural_key) == [
        "mlx5_2", "mlx5_10", "rdma1", "rdma9", "rdma10"]


def test_mixed_vendors_take_the_majority_family(scratch):
    nics = ionic_rails(6) + [rail("bnxt", f"bnxt_re{i}", 6 + i, f"ens{i}f0np0") for i in range(2)]
    node = make_node(scratch, nics)
    node.tool("nicctl", nicctl_show_qos(cards=6))
    result = node.detect()
    assert (result["family"], result["rails"]) == ("ionic", 6)
    assert {d["name"]: d["reason"] for d in result["devices"] if d["role"] == "excluded"} == {
        "bnxt_re0": "family bnxt is not the rail family ionic",
        "bnxt_re1": "family bnxt is not the rail family ionic",
    }
    assert result["warnings"] == [
        "mixed NIC vendors (bnxt 2, ionic 6 devices); rails are the most common family, ionic"]


def test_unknown_vendor_is_excluded(scratch):
    result = make_node(scratch, [rail("intel", "irdma0", 0, "ens1f0")]).detect()
    assert result["family"] == "none"
    assert result["devices"][0]["reason"] == "vendor 0x8086 / driver irdma is not ionic, mlx5 or bnxt"
    assert result["warnings"] == ["no ionic, mlx5 or bnxt RDMA device (found irdma0): family none"]


def test_missing_uverbs_devices_warn(scratch):
    result = make_node(scratch, ionic_rails(), uverbs=False).detect(profile=IONIC_4N)
    assert ("no dev/infiniband/uverbs* devices: verbs are unusable here (a container needs --device=/dev/infiniband)"
            in result["warnings"])


def test_odd_files_become_warnings_not_tracebacks(scratch):
    node = make_node(scratch, ionic_rails(2))
    port = node.root / "sys/class/infiniband/ionic_0/ports/1"
    (port / "state").unlink()
    (port / "state").mkdir()
    (port / "gids" / "1").write_text("not a gid\n")
    (node.root / "sys/class/infiniband/ionic_1/ports/x").mkdir()
    (node.root / "sys/class/net/enp2s0/mtu").write_text("jumbo\n")
    (node.root / "proc/net/route").write_text("garbage\n\x00\xff odd line\n")
    result = node.detect(profile=IONIC_4N)
    assert [(d["name"], d["state"], d["mtu"], d["role"], d["reason"]) for d in result["devices"]] == [
        ("ionic_0", None, 9000, "excluded", "port state unreadable"),
        ("ionic_1", "ACTIVE", None, "rail", None),
    ]
    assert result["socket_ifname"] is None
    assert result["warnings"][:3] == [
        "no default route in proc/net/route: socket interface unknown",
        "ionic_0 port 1: cannot read state",
        "ionic_1: ignoring odd port directory 'x'",
    ]


def test_missing_root_gives_a_result(scratch):
    result = nic.detect(str(scratch / "nothing"), environ={})
    assert result["family"] == "none"
    assert result["warnings"][0] == "cannot read proc/net/route: socket interface unknown"


# --- vendor tool formats --------------------------------------------------------------------

def nicctl_qos(scratch, output: str, **tool_options) -> dict:
    node = make_node(scratch, ionic_rails(1))
    node.tool("nicctl", output, **tool_options)
    return node.detect(profile={"dscp": 10, "service_level": 0})


def test_nicctl_trailing_commas_and_comma_lists(scratch):
    dscp_map = (("0-23, 25-45, 47-63,", "0,"), ("24,", "3,"), ("46", 6))
    result = nicctl_qos(scratch, nicctl_show_qos(1, dscp_map, no_drop="0,3,"))
    assert (result["qos"]["dscp"], result["qos"]["service_level"], result["qos"]["source"]) == (24, 3, "nicctl")


def test_nicctl_single_no_drop_priority_zero(scratch):
    dscp_map = (("10", 0), ("0-9, 11-45, 47-63", 1), ("46", 6))
    result = nicctl_qos(scratch, nicctl_show_qos(1, dscp_map, no_drop="0"))
    assert (result["qos"]["dscp"], result["qos"]["service_level"]) == (10, 0)


def test_nicctl_prefers_dscp_26(scratch):
    dscp_map = (("0-23, 27-63", 0), ("24-26", 3))
    result = nicctl_qos(scratch, nicctl_show_qos(1, dscp_map, no_drop="3"))
    assert (result["qos"]["dscp"], result["qos"]["traffic_class"]) == (26, 104)


def test_nicctl_empty_no_drop_list_means_pfc_off(scratch):
    result = nicctl_qos(scratch, nicctl_show_qos(1, (("0-63", 0),), no_drop=""))
    assert result["warnings"] == ["nicctl: PFC is off (no no-drop priority)"]
    assert result["qos"]["source"] == "profile"


def test_nicctl_no_nic_text_with_exit_zero(scratch):
    result = nicctl_qos(scratch, "Error: no Pensando NIC found on this host")
    assert result["warnings"] == ["nicctl: no QoS in its output (Error: no Pensando NIC found on this host)"]
    assert result["qos"]["source"] == "profile"


def test_nicctl_nonzero_exit(scratch):
    result = nicctl_qos(scratch, "permission denied: run as root", status=1)
    assert result["warnings"] == ["nicctl show qos: exited with status 1: permission denied: run as root"]


def test_nicctl_nics_disagree(scratch):
    other = nicctl_show_qos(1, (("0-25, 27-63", 0), ("26", 3)))
    result = nicctl_qos(scratch, nicctl_show_qos(2) + "\n" + other)
    assert result["qos"]["dscp"] == 24
    assert result["warnings"] == ["nicctl: NICs disagree on QoS; using DSCP 24, priority 3"]


def test_tool_timeout_is_a_warning(scratch):
    node = make_node(scratch, ionic_rails(1))
    node.tool("nicctl", hang=True)
    result = nic.detect(str(node.root), environ=node.environ(), profile={"dscp": 24, "service_level": 3},
                        run=functools.partial(nic.run_tool, timeout=0.3))
    assert result["warnings"] == ["nicctl show qos: timed out after 0.3 s"]
    assert result["qos"]["source"] == "profile"


def test_mlnx_qos_pcp_trust_falls_through(scratch):
    node = make_node(scratch, mlx5_rails(1, traffic_class="Global tclass=106"))
    node.tool("mlnx_qos", mlnx_qos_output(trust="pcp"))
    result = node.detect(profile=MIA1)
    assert result["warnings"][0] == "mlnx_qos: priority trust state is pcp, not dscp"
    assert result["qos"]["source"] == "sysfs"


def test_parsers_on_real_formats():
    assert nic.parse_numbers("0-23, 25-45, 47-63,") == list(range(24)) + list(range(25, 46)) + list(range(47, 64))
    [mlnx] = nic.parse_mlnx_qos(mlnx_qos_output())
    assert (mlnx.trust, mlnx.no_drop, mlnx.dscp_priority[26], len(mlnx.dscp_priority)) == ("dscp", [3], 3, 64)
    [niccli] = nic.parse_niccli_qos(niccli_getqos())
    assert (niccli.no_drop, niccli.dscp_priority) == ([3], {48: 7, 26: 3})
    tables = nic.parse_nicctl_qos(nicctl_show_qos(8))
    assert len(tables) == 8 and tables[7].no_drop == [3] and tables[7].dscp_priority[46] == 6
    assert nic.reading_from_table(nic.QosTable({24: 3}, [4])) == (None, "no DSCP maps to the no-drop priority 4")


# --- overrides, environment, profile ---------------------------------------------------------

def test_qos_override_from_environment(scratch):
    node = ionic_node(scratch)
    result = node.detect(ENVBUILD_NIC_DSCP="26")
    assert result["qos"]["source"] == "dscp: override, service_level: nicctl"
    assert values(result, "MORI_RDMA_TC", "MORI_RDMA_SL") == ["104", "3"]
    assert (result["env_sources"]["MORI_RDMA_TC"], result["env_sources"]["MORI_RDMA_SL"]) == ("override", "detected")


def test_full_override_does_not_run_the_tool(scratch):
    node = ionic_node(scratch)
    result = node.detect(ENVBUILD_NIC_DSCP="24", ENVBUILD_NIC_SL="5")
    assert (result["qos"]["service_level"], result["qos"]["source"]) == (5, "override")
    assert tool_calls(node.bin, "nicctl") == []


def test_bad_override_is_ignored_with_a_warning(scratch):
    result = ionic_node(scratch).detect(ENVBUILD_NIC_DSCP="ninety", ENVBUILD_NIC_SL="9")
    assert result["warnings"] == ["ENVBUILD_NIC_DSCP='ninety' is not a number from 0 to 63; ignored",
                                  "ENVBUILD_NIC_SL='9' is not a number from 0 to 7; ignored"]
    assert result["qos"]["source"] == "nicctl"


def test_environment_wins_unless_told_otherwise(scratch):
    node = ionic_node(scratch)
    environ = node.environ(NCCL_IB_TC="106", NCCL_SOCKET_IFNAME="")
    result = nic.detect(str(node.root), environ=environ)
    assert (result["env"]["NCCL_IB_TC"], result["env_sources"]["NCCL_IB_TC"]) == ("106", "environment")
    assert result["env"]["NCCL_SOCKET_IFNAME"] == "eth0"
    assert "# NCCL_IB_TC from environment\nexport NCCL_IB_TC=106\n" in nic.render_env(result)
    ignored = nic.detect(str(node.root), environ=environ, respect_env=False)
    assert (ignored["env"]["NCCL_IB_TC"], ignored["env_sources"]["NCCL_IB_TC"]) == ("96", "detected")


def test_environment_values_are_shell_quoted(scratch):
    result = no_nic_node(scratch).detect(NCCL_IB_HCA="mlx5_0 mlx5_1'")
    assert "export NCCL_IB_HCA='mlx5_0 mlx5_1'\"'\"''\n" in nic.render_env(result)


def test_profile_expectations_that_disagree_warn(scratch):
    result = ionic_node(scratch).detect(profile=dict(MIA1, rail_count=4))
    assert result["warnings"] == ["cluster profile mia1 expects nic_family mlx5, but this node has ionic",
                                  "cluster profile mia1 expects 4 rails, but this node has 8"]


# --- main(), as the CLI and as the runtime script run it ------------------------------------------

def test_main_formats(scratch, capsys, monkeypatch):
    node = ionic_node(scratch)
    monkeypatch.setenv("PATH", f"{node.bin}:{os.environ['PATH']}")
    for variable in nic.ENV_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    outputs = {}
    for output_format in nic.FORMATS:
        assert nic.main(["--root", str(node.root), "--format", output_format]) == 0
        outputs[output_format] = capsys.readouterr().out
    assert outputs["family"] == "ionic\n"
    assert outputs["env"] == IONIC_ENV_OUTPUT
    assert json.loads(outputs["json"])["env"]["NCCL_IB_GID_INDEX"] == "1"
    assert outputs["text"].splitlines()[2:4] == [
        "NAME     PORT  NETDEV  STATE   LINK_LAYER  GID_INDEX  MTU   VENDOR  ROLE  REASON",
        "ionic_0  1     enp1s0  ACTIVE  Ethernet    1          9000  ionic   rail  -",
    ]


def test_main_with_profile_json(scratch, capsys, monkeypatch):
    node = make_node(scratch, ionic_rails())
    monkeypatch.setenv("PATH", str(node.bin))
    assert nic.main(["--root", str(node.root), "--format", "json", "--profile-json", json.dumps(IONIC_4N)]) == 0
    assert json.loads(capsys.readouterr().out)["qos"]["source"] == "profile"
    assert nic.main(["--root", str(node.root), "--format", "json", "--profile-json", "{oops"]) == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert warnings[0].startswith("--profile-json is not valid JSON (")


def run_as_script(python: str, node: Node, *args: str) -> subprocess.CompletedProcess:
    """The runtime script's way: source on stdin, isolated mode."""
    return subprocess.run(
        [python, "-I", "-", "--root", str(node.root), *args], input=NIC_SOURCE, capture_output=True, text=True,
        env={"PATH": f"{node.bin}:/usr/bin:/bin"}, check=False, timeout=30,
    )


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_script_run_matches_in_process_detection(scratch, scenario):
    node = SCENARIOS[scenario](scratch)
    expected = nic.detect(str(node.root), environ={"PATH": f"{node.bin}:/usr/bin:/bin"})
    env_run = run_as_script(sys.executable, node)
    json_run = run_as_script(sys.executable, node, "--format", "json")
    assert (env_run.returncode, env_run.stderr) == (0, "")
    assert env_run.stdout == nic.render_env(expected)
    assert json.loads(json_run.stdout) == expected


def test_bash_eval_sets_the_documented_variables(scratch):
    node = SCENARIOS["mia1"](scratch)
    output = run_as_script(sys.executable, node).stdout
    printed = subprocess.run(
        ["bash", "-c", 'eval "$1"; for name in "${@:2}"; do printf "%s=%s\\n" "$name" "${!name-<unset>}"; done',
         "bash", output, *nic.ENV_VARIABLES],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"},
    ).stdout
    expected = nic.detect(str(node.root), environ={"PATH": str(node.bin)})["env"]
    assert printed.splitlines() == [f"{name}={expected[name]}" for name in nic.ENV_VARIABLES]


def test_same_tree_same_bytes(scratch):
    node = mia1_node(scratch)
    first, second = run_as_script(sys.executable, node), run_as_script(sys.executable, node)
    assert first.stdout == second.stdout and first.stdout.startswith("# envbuild detect-nic: family mlx5")


def oldest_python() -> str | None:
    """A real Python 3.8 binary (pyenv's shims need pyenv's environment, so skip them)."""
    installed = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3")))
    return installed[0] if installed else shutil.which("python3.8")


@pytest.mark.skipif(oldest_python() is None, reason="no Python 3.8 on this machine")
def test_runs_under_python_3_8(scratch):
    node = ionic_node(scratch)
    result = run_as_script(oldest_python(), node)
    assert (result.returncode, result.stderr, result.stdout) == (0, "", IONIC_ENV_OUTPUT)


def test_module_is_stdlib_only():
    imports = [line for line in NIC_SOURCE.splitlines() if line.startswith(("import ", "from "))]
    assert not [line for line in imports if "envbuild" in line or "yaml" in line or "click" in line]
