"""The stand-in upstream projects (tests/standins.py) build as issue 11 reports
of the real ones: with nothing pinned, MoRI comes out as the lying build host
(tests/hostile.py) says, UCX without ROCm passes `ucx_info -v`, and RIXL is
compiled twice. Later tests use the same stand-ins to prove the recipes' pins.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from hostile import BROADCOM_ETHERNET, PENSANDO_ETHERNET, HostileHost
from localsources import git_redirect_env
from nic_fixtures import mlx5_rails, rail
from standins import (
    LOG, MORI_URL, RIXL_URL, UCX_URL, mori_build_info, mori_repo, rixl_repo, rocm_tree, ucx_repo, upstream_log,
)

FETCH = "mori fetch-submodules 3rdparty/spdlog 3rdparty/msgpack-c"
MORI_COMPILE = f"mori compile mori.c jobs={os.cpu_count()}"
FAT = "gfx942;gfx950"
# A build host that claims everything at once: two mlx5 ports in sysfs, Broadcom and Pensando
# Ethernet on lspci, both provider libraries, and two MI300X (gfx942) GPUs.
LIARS = dict(nics=mlx5_rails(2), lspci=[BROADCOM_ETHERNET, PENSANDO_ETHERNET],
             libraries=["libionic.so", "libbnxt_re.so"], gpus=["gfx000", "gfx942", "gfx942"])


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    root = tmp_path_factory.mktemp("upstream")
    repos = root / "repos"
    mori_repo(repos)
    ucx_repo(repos)
    rixl_repo(repos)
    return SimpleNamespace(repos=repos, rocm=rocm_tree(root / "rocm"))


def environ(tmp_path: Path, repos: Path, **extra: str) -> dict[str, str]:
    """A build's environment: no pins unless `extra` has them."""
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), LOG: str(tmp_path / "upstream.log"),
            **git_redirect_env(repos), **extra}


def clone(url: str, dest: Path, env: dict[str, str], *options: str) -> Path:
    subprocess.run(["git", "clone", "-q", *options, url, str(dest)], env=env, check=True)
    return dest


def venv_python(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


def pip_install(host: HostileHost, python: Path, source: Path, env: dict[str, str],
                *options: str) -> subprocess.CompletedProcess:
    """`pip install .` as the recipes do it, minus build isolation (no index here)."""
    return host.run(str(python), "-m", "pip", "install", "-v", "--no-build-isolation", "--no-deps", *options, ".",
                    env=env, cwd=source)


def cmake_lines(output: str) -> list[str]:
    return [line.split("-- ", 1)[1] for line in output.splitlines()
            if line.lstrip().startswith(("-- Host NIC:", "-- Device NIC:", "-- GPU archs:"))]


def site_packages(python: Path) -> Path:
    return next((python.parent.parent / "lib").glob("python*/site-packages"))


def build_mori(tmp_path: Path, host: HostileHost, env: dict[str, str], *clone_options: str):
    """The pip build of a fresh MoRI clone on `host`: (CMake's NIC and GPU lines, what was compiled in)."""
    source = clone(MORI_URL, tmp_path / "mori", env, *clone_options)
    python = venv_python(tmp_path / "venv")
    result = pip_install(host, python, source, env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = cmake_lines(result.stdout + result.stderr)
    assert (site_packages(python) / "mori" / "build_info.txt").read_text().splitlines() == lines
    return lines, mori_build_info(python)


def test_hostile_host_lies_inside_its_namespace_only(tmp_path):
    host = HostileHost(tmp_path / "host", **LIARS)
    probe = ("lspci -nn -d ::0200; rocm_agent_enumerator; ls /sys/class/infiniband; "
             "ls /usr/lib/x86_64-linux-gnu/libionic.so /lib/x86_64-linux-gnu/libbnxt_re.so")
    inside = host.run("bash", "-c", probe, env={"PATH": os.environ["PATH"]})
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout.splitlines() == [
        BROADCOM_ETHERNET, PENSANDO_ETHERNET, "gfx000", "gfx942", "gfx942", "rdma0", "rdma1",
        "/lib/x86_64-linux-gnu/libbnxt_re.so", "/usr/lib/x86_64-linux-gnu/libionic.so"]
    subprocess.run(["bash", "-c", probe], capture_output=True)
    assert host.calls("lspci") == ["-nn -d ::0200"]
    assert str(host.root) not in Path("/proc/self/mountinfo").read_text()


ASKS_LSPCI = ["-nn -d ::0200"]
# case: host, extra environment -> Device NIC (why), host NICs, GPU archs (why), lspci calls
MORI_CASES = {
    "clean host": ({}, {}, "mlx5 (default)", [], f"{FAT} (default)", ASKS_LSPCI),
    "Broadcom Ethernet on lspci": (
        dict(lspci=[BROADCOM_ETHERNET]), {}, "bnxt (lspci)", [], f"{FAT} (default)", ASKS_LSPCI),
    "libionic.so installed": (
        dict(libraries=["libionic.so"]), {}, "ionic (library /lib/x86_64-linux-gnu/libionic.so)", ["ionic"],
        f"{FAT} (default)", ASKS_LSPCI),
    "only versioned or plugin provider libraries": (
        dict(libraries=["libionic.so.1", "libibverbs/libbnxt_re-rdmav34.so"]), {}, "mlx5 (default)", [],
        f"{FAT} (default)", ASKS_LSPCI),
    "USE_IONIC and USE_BNXT set": (
        {}, dict(USE_IONIC="ON", USE_BNXT="ON"), "mlx5 (default)", [], f"{FAT} (default)", ASKS_LSPCI),
    "PYTORCH_ROCM_ARCH, no GPU": (
        {}, dict(PYTORCH_ROCM_ARCH="gfx950 gfx90a"), "mlx5 (default)", [], "gfx950 (PYTORCH_ROCM_ARCH)", ASKS_LSPCI),
    "every liar: sysfs and the enumerator win": (
        LIARS, dict(PYTORCH_ROCM_ARCH="gfx950", USE_IONIC="OFF"), "mlx5 (sysfs mlx5=2 bnxt=0 ionic=0)",
        ["bnxt", "ionic"], "gfx942 (rocm_agent_enumerator)", []),
    "every liar, MORI_DEVICE_NIC and MORI_GPU_ARCHS set": (
        LIARS, dict(MORI_DEVICE_NIC="ionic", MORI_GPU_ARCHS="gfx950"), "ionic (MORI_DEVICE_NIC)",
        ["bnxt", "ionic"], "gfx950 (MORI_GPU_ARCHS)", []),
}


@pytest.mark.parametrize("case", MORI_CASES)
def test_mori_builds_for_what_the_build_host_claims(tmp_path, upstream, case):
    host_options, extra, device, host_nics, archs, lspci_calls = MORI_CASES[case]
    host = HostileHost(tmp_path / "host", **host_options)
    env = environ(tmp_path, upstream.repos, **extra)
    lines, info = build_mori(tmp_path, host, env)
    assert lines == [f"Host NIC: {' '.join(host_nics) or 'none'}", f"Device NIC: {device}", f"GPU archs: {archs}"]
    assert info == {"device_nic": device.split()[0], "host_nics": host_nics,
                    "gpu_archs": archs.split()[0].split(";")}
    assert host.calls("lspci") == lspci_calls
    # As the real recipe does, the source comes without its submodules: setup.py fetches them.
    assert upstream_log(tmp_path / "upstream.log") == [FETCH, MORI_COMPILE]


def test_mori_device_nic_counts_sysfs_devices_by_name_then_driver(tmp_path, upstream):
    """Two renamed mlx5 ports (rdma0, rdma1, found by driver) outnumber one bnxt_re0 (by name)."""
    bnxt = rail("bnxt", "bnxt_re0", 2, "ens3f0np0")
    host = HostileHost(tmp_path / "host", nics=[*mlx5_rails(2), bnxt], libraries=["libbnxt_re.so"])
    lines, info = build_mori(tmp_path, host, environ(tmp_path, upstream.repos))
    assert lines[:2] == ["Host NIC: bnxt", "Device NIC: mlx5 (sysfs mlx5=2 bnxt=1 ionic=0)"]
    assert info["device_nic"] == "mlx5"


def test_mori_fetches_no_submodules_when_they_are_checked_out(tmp_path, upstream):
    env = environ(tmp_path, upstream.repos)
    build_mori(tmp_path, HostileHost(tmp_path / "host"), env, "--recurse-submodules")
    assert upstream_log(tmp_path / "upstream.log") == [MORI_COMPILE]


def test_mori_without_its_submodules_needs_github(tmp_path, upstream):
    """Offline (GitHub unreachable: no repositories behind its redirect), setup.py's fetch fails the build."""
    offline = tmp_path / "offline"
    offline.mkdir()
    (offline / "mori.git").symlink_to(upstream.repos / "mori.git")
    env = environ(tmp_path, offline)
    source = clone(MORI_URL, tmp_path / "mori", env)
    result = pip_install(HostileHost(tmp_path / "host"), venv_python(tmp_path / "venv"), source, env)
    assert result.returncode != 0
    assert "gabime/spdlog.git" in result.stderr
    assert upstream_log(tmp_path / "upstream.log") == [FETCH]


def build_ucx(tmp_path: Path, env: dict[str, str], rocm: Path, jobs: int) -> Path:
    """UCX built as the recipe builds it; returns the prefix."""
    source = clone(UCX_URL, tmp_path / "ucx", env)
    prefix = tmp_path / "ucx-install"
    script = f"""set -e
./autogen.sh
mkdir -p build
cd build
../configure --prefix={prefix} --enable-shared --disable-static --disable-doxygen-doc --enable-optimizations \
  --enable-devel-headers --enable-mt --with-rocm={rocm} --with-verbs --with-dm
make -j{jobs}
make install
"""
    result = subprocess.run(["bash", "-c", script], env=env, cwd=source, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("ROCm not found" in result.stderr) == (not (rocm / "lib").exists())
    return prefix


def ucx_info(prefix: Path, flag: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(prefix / "bin" / "ucx_info"), flag], capture_output=True, text=True)


@pytest.mark.parametrize("with_rocm", [False, True], ids=["ROCm missing", "ROCm present"])
def test_ucx_without_rocm_still_builds_and_passes_ucx_info_v(tmp_path, upstream, with_rocm):
    rocm = upstream.rocm if with_rocm else tmp_path / "no-rocm"
    prefix = build_ucx(tmp_path, environ(tmp_path, upstream.repos), rocm, jobs=3)
    version = ucx_info(prefix, "-v")
    assert version.returncode == 0 and version.stdout.startswith("# Library version: 1.19.0\n")
    rocm_defines = "#define HAVE_ROCM 1\n#define HAVE_HIP 1\n" if with_rocm else ""
    assert ucx_info(prefix, "-b").stdout == rocm_defines + "#define HAVE_IB 1\n#define HAVE_IBV_DM 1\n"
    assert (prefix / "lib" / "ucx" / "libuct_rocm.so").exists() == with_rocm
    compiled = ["ucx_info.c", "component.c", "component.c", "component.c"] + ["uct_rocm.c"] * with_rocm
    assert sorted(upstream_log(tmp_path / "upstream.log")) == sorted(f"ucx compile {name} jobs=3" for name in compiled)


def test_rixl_is_compiled_twice_by_ninja_install_then_pip(tmp_path, upstream):
    env = environ(tmp_path, upstream.repos, PATH=f"{upstream.rocm / 'bin'}:{os.environ['PATH']}")
    ucx = build_ucx(tmp_path, env, upstream.rocm, jobs=2)
    source = clone(RIXL_URL, tmp_path / "rixl", env)
    prefix = tmp_path / "rixl-install"
    (tmp_path / "upstream.log").unlink()
    options = [f"-Ducx_path={ucx}", f"-Drocm_path={upstream.rocm}"]
    subprocess.run(["meson", "setup", "build", f"--prefix={prefix}", *options], env=env, cwd=source, check=True,
                   capture_output=True)
    subprocess.run(["ninja", "-C", "build", "-j", "2", "install"], env=env, cwd=source, check=True,
                   capture_output=True)
    python = venv_python(tmp_path / "venv")
    result = pip_install(HostileHost(tmp_path / "host"), python, source, env,
                         *(f"--config-settings=setup-args={option}" for option in options))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    sources = ["agent.c", "bindings.c", "ucx_backend.c"]
    log = upstream_log(tmp_path / "upstream.log")
    assert sorted(log[:3]) == [f"rixl compile {name} jobs=2" for name in sources]
    assert sorted(log[3:]) == [f"rixl compile {name} jobs=default" for name in sources]
    assert (prefix / "lib" / "x86_64-linux-gnu" / "plugins" / "libplugin_UCX.so").is_file()
    imported = subprocess.run([str(python), "-c", "import rixl; print(rixl.nixl_agent('a').backends)"],
                              capture_output=True, text=True, cwd=tmp_path)
    assert imported.stdout == "{'UCX': {}}\n", imported.stderr
    api = (site_packages(python) / "rixl" / "_api.py").read_text()
    assert api.splitlines().count(" " * 16 + "self.create_backend(bknd, init)") == 1


def test_rixl_setup_needs_hipify_perl_on_path(tmp_path, upstream):
    env = environ(tmp_path, upstream.repos)
    assert shutil.which("hipify-perl", path=env["PATH"]) is None
    source = clone(RIXL_URL, tmp_path / "rixl", env)
    result = subprocess.run(["meson", "setup", "build", f"-Drocm_path={upstream.rocm}"], env=env, cwd=source,
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "Program 'hipify-perl' not found" in result.stdout
