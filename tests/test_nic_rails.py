"""Which ports are rails on the machines people run: containers, pods, mixed fabrics (issue #12).

Each kind of rule is tried on bare metal and in a container or pod: the default route,
address scope, one fabric, usable devices; then UCX's own way to reach itself and the
exit status a job script can trust.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from envbuild.runtime import nic
from envbuild.spec.loader import Library
from nic_fixtures import (
    EMPTY, Nic, apipa_bnxt_node, bnxt_ula_node, bond_node, container_macvlan_node, container_without_devices_node,
    fabric_tie_node, frontend_model_node, full_gid, ib_plus_roce_node, ionic_node, make_node,
    management_roce_v1_node, no_nic_node, odd_scopes_node, pod_apipa_node, pod_frontend_vf_node, pod_sole_vf_node,
    pod_storage_vf_node, pod_two_of_eight_node, rail, rail_on_default_route_node, udev_missed_node, v2_only_table,
    values,
)

REPOSITORY = Path(__file__).resolve().parent.parent
NO_GID = "no routable GID (RoCE v2/v1 with an IPv4-mapped or global address)"
NO_QOS = ("no DSCP or service level found; the matching TC/SL variables are not set "
          "(set ENVBUILD_NIC_DSCP/ENVBUILD_NIC_SL or the cluster profile's qos)")
NO_TOOL = "{} not found on PATH, so QoS cannot be read from it"


def rails(result: dict) -> list:
    return [d["name"] for d in result["devices"] if d["role"] == "rail"]


def excluded(result: dict) -> dict:
    return {d["name"]: d["reason"] for d in result["devices"] if d["role"] == "excluded"}


def outcome(result: dict) -> tuple:
    """(family, rail names, GID index, fabric)."""
    return result["family"], rails(result), result["gid_index"], result["fabric"]


def envbuild(*args: str) -> subprocess.CompletedProcess:
    """The command line, run from this checkout."""
    environ = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPOSITORY)}
    return subprocess.run([sys.executable, "-m", "envbuild", *args], capture_output=True, text=True, env=environ,
                          cwd=REPOSITORY, check=False, timeout=60)


# --- 1. carrying the default route is not being the management NIC ---------------------------

def test_pod_whose_only_interface_is_its_vf_keeps_it_as_the_rail(scratch):
    result = pod_sole_vf_node(scratch).detect()
    assert outcome(result) == ("mlx5", ["mlx5_0"], 3, "Ethernet MTU 1500")
    assert excluded(result) == {}
    assert values(result, "NCCL_IB_HCA", "NCCL_IB_GID_INDEX", "UCX_NET_DEVICES", "NCCL_SOCKET_IFNAME") == [
        "=mlx5_0", "3", "mlx5_0:1", "eth0"]
    assert result["warnings"] == [NO_TOOL.format("mlnx_qos"), NO_QOS]


def test_container_macvlan_on_a_bond_with_its_gids_from_slot_12(scratch):
    result = container_macvlan_node(scratch).detect()
    assert outcome(result) == ("mlx5", ["mlx5_bond_0"], 15, "Ethernet MTU 1500")
    assert result["devices"][0]["gid"] == full_gid("192.168.40.22")
    assert values(result, "NCCL_IB_HCA", "UCX_IB_GID_INDEX", "MORI_IB_GID_INDEX") == ["=mlx5_bond_0", "15", "15"]


def test_bare_metal_bond_on_the_default_route_is_the_rail(scratch):
    result = bond_node(scratch).detect()
    assert outcome(result) == ("mlx5", ["mlx5_bond_0"], 3, "Ethernet MTU 9000")
    assert (result["devices"][0]["netdev"], result["socket_ifname"]) == ("bond0", "bond0")
    assert excluded(result) == {}


def test_management_port_told_apart_by_mtu(scratch):
    result = pod_frontend_vf_node(scratch).detect()
    assert outcome(result) == ("mlx5", ["mlx5_1", "mlx5_2"], 3, "Ethernet MTU 9000")
    assert excluded(result) == {
        "mlx5_0": "eth0 carries the default route and its MTU 1500 differs from the rails' 9000 (management NIC)"}


def test_management_port_told_apart_by_model(scratch):
    result = frontend_model_node(scratch).detect()
    assert outcome(result) == ("mlx5", ["rdma0", "rdma1", "rdma2", "rdma3"], 3, "Ethernet MTU 9000")
    assert excluded(result) == {"mlx5_4": "eno1np0 carries the default route and its model 0x15b3:0x101d differs "
                                          "from the rails' 0x15b3:0x1021 (management NIC)"}


def test_management_port_told_apart_by_having_no_roce_v2_gid(scratch):
    result = management_roce_v1_node(scratch).detect()
    assert outcome(result) == ("mlx5", ["rdma0", "rdma1"], 3, "Ethernet MTU 9000")
    assert excluded(result) == {"mlx5_0": "eno1np0 carries the default route and it has no routable RoCE v2 GID, "
                                          "unlike the rails (management NIC)"}


def test_rail_on_the_default_route_goes_when_others_of_its_fabric_remain(scratch):
    result = rail_on_default_route_node(scratch).detect()
    assert outcome(result) == ("ionic", ["ionic_1", "ionic_2", "ionic_3"], 1, "Ethernet MTU 9000")
    assert excluded(result) == {
        "ionic_0": "enp1s0 carries the default route and 3 other usable ports of its fabric remain (management NIC)"}
    assert values(result, "NCCL_IB_TC", "NCCL_IB_SL") == ["96", "3"]


def test_default_route_port_alone_on_its_link_layer_is_left_to_the_fabric_rule(scratch):
    # Its peers are InfiniBand: nothing to tell it apart from, so the fabric rule decides.
    nics = [Nic("mlx5_0", "mlx5", "0000:c2:00.0", "eno1np0", v2_only_table("10.0.0.5", 0xcc)),
            *[rail("mlx5", f"mlx5_{i}", i, f"ibp{i}s0", link_layer="InfiniBand") for i in (1, 2)]]
    result = make_node(scratch, nics, management=None, default_route="eno1np0").detect()
    assert outcome(result) == ("mlx5", ["mlx5_1", "mlx5_2"], 0, "InfiniBand")
    assert excluded(result) == {
        "mlx5_0": "on fabric Ethernet MTU 9000 (1 port), not the compute fabric InfiniBand (2 ports)"}


# --- 2. address scope: one judgment for IPv6 and IPv4-mapped GIDs -------------------------------

@pytest.mark.parametrize("address, scope", [
    ("192.168.1.36", "ipv4"),
    ("10.0.0.1", "ipv4"),
    ("2001:db8::36", "ipv6"),
    ("fd00:10::36", "ipv6"),  # ULA: routed within the site
    ("fe80::a288:c2ff:fe00:1", "link-local"),
    ("169.254.37.112", "link-local"),  # APIPA, mapped
    ("::1", "loopback"),
    ("127.0.0.1", "loopback"),
    ("0.0.0.0", "unspecified"),
    ("0.0.0.1", "unspecified"),  # RFC 1122 "this network"
    ("ff02::1", "multicast"),
    ("239.1.1.1", "multicast"),
])
def test_gid_scope(address, scope):
    assert nic.gid_scope(full_gid(address)) == scope


@pytest.mark.parametrize("text", [EMPTY[0], "", None, "not a gid", "fe80::1::2"])
def test_gid_scope_of_an_empty_or_garbled_slot(text):
    assert nic.gid_scope(text) is None


def test_bare_metal_port_whose_only_ipv4_is_link_local(scratch):
    result = apipa_bnxt_node(scratch).detect()
    assert outcome(result) == ("bnxt", ["bnxt_re0", "bnxt_re1", "bnxt_re2"], 3, "Ethernet MTU 9000")
    assert excluded(result) == {"bnxt_re3": NO_GID}
    assert result["devices"][3]["gid_index"] is None
    assert values(result, "NCCL_IB_HCA", "UCX_IB_TRAFFIC_CLASS") == ["=bnxt_re0,bnxt_re1,bnxt_re2", "104"]


def test_pod_vf_whose_address_plugin_failed(scratch):
    result = pod_apipa_node(scratch).detect()
    assert outcome(result) == ("ionic", ["ionic_0"], 1, "Ethernet MTU 9000")
    assert excluded(result) == {"ionic_1": NO_GID}
    assert values(result, "NCCL_IB_HCA", "NCCL_SOCKET_IFNAME") == ["=ionic_0", "eth0"]


def test_broadcom_ipv6_only_fabric_uses_the_ula_gid(scratch):
    result = bnxt_ula_node(scratch).detect()
    assert outcome(result) == ("bnxt", ["bnxt_re0", "bnxt_re1"], 1, "Ethernet MTU 9000")
    assert result["devices"][1]["gid"] == full_gid("fd00:10:1::36")
    assert (result["qos"]["traffic_class"], result["qos"]["service_level"], result["warnings"]) == (104, 3, [])


def test_loopback_multicast_and_unspecified_gids_are_skipped(scratch):
    result = odd_scopes_node(scratch).detect()
    assert outcome(result) == ("ionic", ["ionic_0"], 4, "Ethernet MTU 9000")
    assert result["devices"][0]["gid"] == full_gid("192.168.0.36")
    assert excluded(result) == {"ionic_1": NO_GID}


# --- 3. rails are one fabric ------------------------------------------------------------------

def test_infiniband_compute_fabric_beside_roce_storage_ports(scratch):
    result = ib_plus_roce_node(scratch).detect()
    assert outcome(result) == ("mlx5", ["mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3"], 0, "InfiniBand")
    other = "on fabric Ethernet MTU 9000 (2 ports), not the compute fabric InfiniBand (4 ports)"
    assert excluded(result) == {"mlx5_4": other, "mlx5_5": other}
    assert result["warnings"] == [NO_TOOL.format("mlnx_qos"), NO_QOS]  # no GID index disagreement
    assert values(result, "NCCL_IB_HCA", "UCX_NET_DEVICES") == [
        "=mlx5_0,mlx5_1,mlx5_2,mlx5_3", "mlx5_0:1,mlx5_1:1,mlx5_2:1,mlx5_3:1"]


def test_fabrics_of_equal_size_are_named_in_a_warning(scratch):
    result = fabric_tie_node(scratch).detect()
    assert outcome(result) == ("mlx5", ["mlx5_0", "mlx5_1"], 0, "InfiniBand")
    other = "on fabric Ethernet MTU 9000 (2 ports), not the compute fabric InfiniBand (2 ports)"
    assert excluded(result) == {"mlx5_2": other, "mlx5_3": other}
    assert result["warnings"][0] == (
        "fabrics tie at 2 ports each (InfiniBand: mlx5_0:1, mlx5_1:1; Ethernet MTU 9000: mlx5_2:1, mlx5_3:1); "
        "using InfiniBand, the first in name order")


def test_pod_storage_vf_is_another_fabric_and_its_gid_index_does_not_count(scratch):
    result = pod_storage_vf_node(scratch).detect()
    assert outcome(result) == ("mlx5", ["mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3"], 3, "Ethernet MTU 9000")
    assert excluded(result) == {
        "mlx5_4": "on fabric Ethernet MTU 1500 (1 port), not the compute fabric Ethernet MTU 9000 (4 ports)"}
    assert result["devices"][4]["gid_index"] == 5
    assert not [w for w in result["warnings"] if "disagree" in w]


def test_unreadable_mtu_joins_the_largest_fabric_of_its_link_layer(scratch):
    node = ionic_node(scratch)
    (node.root / "sys/class/net/enp3s0/mtu").write_text("jumbo\n")
    result = node.detect()
    assert (result["rails"], result["fabric"], excluded(result)) == (8, "Ethernet MTU 9000", {})


# --- 4. visible is not usable ---------------------------------------------------------------------

def test_pod_sees_eight_hcas_but_was_given_two(scratch):
    result = pod_two_of_eight_node(scratch).detect()
    assert outcome(result) == ("ionic", ["ionic_2", "ionic_5"], 1, "Ethernet MTU 9000")
    assert excluded(result) == {f"ionic_{i}": f"dev/infiniband/uverbs{i} is absent: visible in sysfs but not usable here"
                                for i in (0, 1, 3, 4, 6, 7)}
    assert values(result, "IBDEVICES", "UCX_NET_DEVICES") == ["ionic_2,ionic_5", "ionic_2:1,ionic_5:1"]


def test_bare_metal_node_where_udev_missed_one_device(scratch):
    result = udev_missed_node(scratch).detect()
    assert outcome(result) == ("mlx5", ["rdma0", "rdma2", "rdma3"], 3, "Ethernet MTU 9000")
    assert excluded(result) == {"rdma1": "dev/infiniband/uverbs1 is absent: visible in sysfs but not usable here"}


def test_container_without_its_devices_has_no_rails(scratch):
    result = container_without_devices_node(scratch).detect()
    assert outcome(result) == ("ionic", [], None, None)
    assert result["warnings"] == [
        "every RDMA port was excluded, so there are no rails (see each device's reason)",
        "no dev/infiniband/uverbs* devices: verbs are unusable here (a container needs --device=/dev/infiniband)",
    ]


def test_a_node_of_another_device_on_the_same_function_does_not_count(scratch):
    node = make_node(scratch, [rail("ionic", "ionic_0", 0, "enp1s0", uverbs=0)], uverbs=[9])
    verbs = node.root / "sys/class/infiniband/ionic_0/device/infiniband_verbs/uverbs9"
    verbs.mkdir()
    (verbs / "ibdev").write_text("ionic_sf9\n")
    assert excluded(node.detect()) == {"ionic_0": "dev/infiniband/uverbs0 is absent: visible in sysfs but not usable here"}


# --- 5. UCX needs a way to reach itself -------------------------------------------------------------

def test_ucx_extra_devices_follow_the_rails(scratch):
    node = ionic_node(scratch)
    result = node.detect(profile={"ucx_net_devices_extra": ["lo", "ionic_0:1"]})
    assert result["env"]["UCX_NET_DEVICES"] == ",".join(f"ionic_{i}:1" for i in range(8)) + ",lo"
    assert result["env"]["NCCL_IB_HCA"] == "=" + ",".join(f"ionic_{i}" for i in range(8))


def test_ucx_extra_devices_without_rails_leave_ucx_free(scratch):
    result = no_nic_node(scratch).detect(profile={"ucx_net_devices_extra": ["lo"]})
    assert "UCX_NET_DEVICES" not in result["env"]


def test_ucx_extra_devices_that_are_no_list_are_ignored(scratch):
    result = ionic_node(scratch).detect(profile={"ucx_net_devices_extra": "lo"})
    assert result["env"]["UCX_NET_DEVICES"] == ",".join(f"ionic_{i}:1" for i in range(8))
    assert result["warnings"] == ["profile ucx_net_devices_extra='lo' is not a list of device names; ignored"]


def test_builtin_recipes_use_rixl_and_give_ucx_lo():
    library = Library()
    for name in library.recipe_names():
        recipe = library.recipe(name)
        assert "rixl" in recipe.components
        assert recipe.nic_profile() == {"ucx_net_devices_extra": ["lo"]}
    assert library.recipe("mi355x-nixl", "ionic-4n").nic_profile() == {
        "name": "ionic-4n", "nic_family": "ionic", "rail_count": 8, "dscp": 24, "service_level": 3,
        "ucx_net_devices_extra": ["lo"]}


def test_a_recipe_inherits_nic_settings_and_may_replace_them(tmp_path):
    (tmp_path / "components").mkdir()
    (tmp_path / "components" / "a.yaml").write_text("name: a\ndescription: A.\n")
    base = "name: base\ndescription: B.\nbase_image: debian:bookworm\ncomponents: [a]\n"
    (tmp_path / "base.yaml").write_text(base + "nic:\n  ucx_net_devices_extra: [lo]\n")
    (tmp_path / "child.yaml").write_text("name: child\ndescription: C.\nextends: base\n")
    (tmp_path / "own.yaml").write_text("name: own\ndescription: O.\nextends: base\nnic:\n  ucx_net_devices_extra: []\n")
    library = Library(tmp_path)
    assert library.recipe("child").ucx_net_devices_extra == ("lo",)
    assert library.recipe("own").nic_profile() == {}


def test_detect_nic_takes_the_default_recipe_or_the_one_named(scratch, tmp_path):
    node = ionic_node(scratch)
    ports = ",".join(f"ionic_{i}:1" for i in range(8))
    args = ["detect-nic", "--root", str(node.root), "--format", "json", "--no-respect-env"]
    default = envbuild(*args)
    assert (default.returncode, default.stderr) == (0, "")
    assert json.loads(default.stdout)["env"]["UCX_NET_DEVICES"] == ports + ",lo"
    bare = tmp_path / "bare.yaml"
    bare.write_text("name: bare\ndescription: No nic settings.\nbase_image: debian:bookworm\n")
    named = envbuild(*args, "--recipe", str(bare))
    assert (named.returncode, named.stderr) == (0, "")
    assert json.loads(named.stdout)["env"]["UCX_NET_DEVICES"] == ports


# --- 6. an exit status a job script can trust -------------------------------------------------------

@pytest.fixture
def run_main(capsys, monkeypatch):
    """nic.main(args) as the command line runs it: (status, stdout, stderr)."""
    def run(node, *args):
        monkeypatch.setenv("PATH", str(node.bin))
        status = nic.main(["--root", str(node.root), "--no-respect-env", *args])
        out, err = capsys.readouterr()
        return status, out, err
    return run


def test_expected_rails_found_is_success(scratch, run_main):
    status, out, err = run_main(ionic_node(scratch), "--expect-rails", "8")
    assert (status, err) == (0, "")


def test_expect_rails_mismatch_exits_3_and_still_prints_the_result(scratch, run_main):
    status, out, err = run_main(pod_two_of_eight_node(scratch), "--expect-rails", "8", "--format", "json")
    assert (status, err) == (3, "detect-nic: expected 8 rails (--expect-rails), found 2\n")
    assert json.loads(out)["env"]["IBDEVICES"] == "ionic_2,ionic_5"


def test_profile_rail_count_mismatch_exits_3(scratch, run_main):
    profile = json.dumps({"name": "ionic-4n", "nic_family": "ionic", "rail_count": 8})
    node = udev_missed_node(scratch)
    status, out, err = run_main(node, "--profile-json", profile)
    assert (status, err) == (3, "detect-nic: expected 8 rails (cluster profile ionic-4n), found 3\n")
    assert out.startswith("# envbuild detect-nic: family mlx5, 3 rails, GID index 3,")
    # --expect-rails is the caller's word and comes first.
    status, _, err = run_main(node, "--profile-json", profile, "--expect-rails", "3")
    assert (status, err) == (0, "")


def test_no_rails_where_the_profile_expects_rdma_exits_3(scratch, run_main):
    node = container_without_devices_node(scratch)
    status, out, err = run_main(node, "--profile-json", json.dumps({"name": "pods", "nic_family": "ionic"}))
    assert (status, err) == (3, "detect-nic: expected ionic RDMA rails (cluster profile pods), found 0\n")
    assert "# warning: every RDMA port was excluded" in out
    status, _, err = run_main(node, "--profile-json", json.dumps({"name": "cpu", "nic_family": "none"}))
    assert (status, err) == (0, "")
    status, _, err = run_main(node)
    assert (status, err) == (0, "")


@pytest.mark.parametrize("what, make", [("does not exist", lambda d: d / "nothing"),
                                        ("is not a directory", lambda d: d / "file")])
def test_a_root_that_is_no_directory_exits_2(tmp_path, capsys, what, make):
    (tmp_path / "file").write_text("")
    root = make(tmp_path)
    assert nic.main(["--root", str(root)]) == nic.EXIT_USAGE
    assert capsys.readouterr() == ("", f"detect-nic: --root {root} {what}\n")


@pytest.mark.parametrize("value", ["-1", "eight"])
def test_a_bad_rail_count_is_a_usage_error(value, capsys):
    with pytest.raises(SystemExit) as stop:
        nic.main(["--expect-rails", value])
    assert stop.value.code == nic.EXIT_USAGE
    assert f"argument --expect-rails: {value!r} is not a number of rails (0 or more)" in capsys.readouterr().err


def test_cli_exit_statuses(scratch):
    node = pod_two_of_eight_node(scratch)
    mismatch = envbuild("detect-nic", "--root", str(node.root), "--expect-rails", "8")
    assert (mismatch.returncode, mismatch.stderr) == (3, "detect-nic: expected 8 rails (--expect-rails), found 2\n")
    assert "export NCCL_IB_HCA==ionic_2,ionic_5\n" in mismatch.stdout
    profile = envbuild("detect-nic", "--root", str(node.root), "--cluster", "ionic-4n", "--format", "json")
    assert (profile.returncode, profile.stderr) == (3, "detect-nic: expected 8 rails (cluster profile ionic-4n), found 2\n")
    assert json.loads(profile.stdout)["rails"] == 2
    missing = envbuild("detect-nic", "--root", str(scratch / "nothing"))
    assert (missing.returncode, missing.stdout, missing.stderr) == (
        2, "", f"detect-nic: --root {scratch / 'nothing'} does not exist\n")
