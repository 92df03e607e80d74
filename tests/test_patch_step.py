"""The patch step of the runtime script, run for real on vLLM 0.17.1's own files.

The script applies patches through its embedded applier with the Python of
ENVBUILD_PYTHON, which finds the installed distributions itself.
"""

from __future__ import annotations

import ast
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

import vllm_wheel
from patching import RIXL_API, fake_distribution

REPO_PATCHES = Path(__file__).resolve().parent.parent / "recipes" / "patches"
VLLM_PATCHES = ["moriep-fp8-compat", "moriio-save-kv-bounded-wait", "moriio-load-kv-bounded-wait",
                "moriio-engine-timeouts", "scheduler-read-mode", "idle-kv-reaper"]
PATCHED_FILES = [
    "vllm/model_executor/layers/fused_moe/layer.py",
    "vllm/model_executor/layers/fused_moe/mori_prepare_finalize.py",
    "vllm/distributed/kv_transfer/kv_connector/v1/moriio/moriio_connector.py",
    "vllm/distributed/kv_transfer/kv_connector/v1/moriio/moriio_engine.py",
    "vllm/v1/core/sched/scheduler.py",
]


class Node:
    """A Python environment holding vLLM's real files and a RIXL of the right shape."""

    def __init__(self, root: Path):
        self.root = root
        venv = root / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        self.python = venv / "bin" / "python"
        self.site = Path(subprocess.run([str(self.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        capture_output=True, text=True, check=True).stdout.strip())
        vllm_wheel.site_packages(self.site, PATCHED_FILES)
        fake_distribution(self.site, "rixl", "0.1.0", {"rixl/__init__.py": "", "rixl/_api.py": RIXL_API})
        recipes = root / "recipes"
        (recipes / "components").mkdir(parents=True)
        (recipes / "patches").symlink_to(REPO_PATCHES)
        (recipes / "components" / "vllm-patches.yaml").write_text(
            "name: vllm-patches\ndescription: vLLM 0.17.1 patches.\npatches:\n"
            + "".join(f"  - {name}\n" for name in VLLM_PATCHES))
        (recipes / "components" / "rixl-patch.yaml").write_text(
            "name: rixl-patch\ndescription: RIXL's UCX error mode.\npatches:\n  - rixl-ucx-error-mode\n")
        (recipes / "patched.yaml").write_text(
            "name: patched\ndescription: Patches only.\nbase_image: debian:bookworm\n"
            "components:\n  - vllm-patches\n  - rixl-patch\n")
        self.script = root / "setup_deps.sh"
        subprocess.run([sys.executable, "-m", "envbuild", "runtime-script", "--recipes-dir", str(recipes),
                        "--recipe", "patched", "-o", str(self.script)], check=True, capture_output=True)

    def run(self, *args: str) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/bin:/bin", "ENVBUILD_STATE_DIR": str(self.root / "state"),
               "ENVBUILD_PYTHON": str(self.python), "ENVBUILD_NIC_FAMILY": "none", "TMPDIR": str(self.root)}
        return subprocess.run(["bash", str(self.script), *args], env=env, capture_output=True, text=True)

    def digest(self) -> dict[str, str]:
        return {str(p.relative_to(self.site)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(self.site.rglob("*")) if p.is_file()}

    def log(self, name: str) -> str:
        return (self.root / "state" / "logs" / f"{name}.log").read_text()

    def function(self, relative: str, name: str) -> ast.AST:
        tree = ast.parse((self.site / relative).read_text())
        return next(node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name == name)


@pytest.fixture
def node(tmp_path):
    return Node(tmp_path)


def test_script_applies_every_patch_then_finds_them_applied(node):
    first = node.run()
    assert first.returncode == 0, first.stderr + node.log("vllm-patches")
    assert "installed 2, present 0, skipped 0 of 2 components" in first.stdout
    for name in VLLM_PATCHES:
        assert f"envbuild-patch: {name}: applied to vllm 0.17.1" in node.log("vllm-patches")
    for relative in PATCHED_FILES:
        compile((node.site / relative).read_text(), relative, "exec")
    # The bounded waits replaced the busy spins, and the scheduler has its reaper.
    save_kv = node.function(PATCHED_FILES[2], "save_kv_layer")
    assert not any(isinstance(n, ast.While) and isinstance(n.test, ast.Constant) and n.test.value is True
                   for n in ast.walk(save_kv))
    assert "VLLM_MORIIO_HANDSHAKE_TIMEOUT" in (node.site / PATCHED_FILES[2]).read_text()
    assert '                init["ucx_error_handling_mode"] = "none"\n                self.create_backend(bknd, init)\n' \
        in (node.site / "rixl/_api.py").read_text()
    patched = node.digest()

    second = node.run()
    assert second.returncode == 0 and "all 2 components present" in second.stdout
    forced = node.run("--force", "vllm-patches")
    assert forced.returncode == 0, forced.stderr
    assert "already applied" in node.log("vllm-patches")
    assert node.digest() == patched


def test_drifted_file_fails_its_component_and_changes_none_of_its_files(node):
    scheduler = node.site / PATCHED_FILES[4]
    text = scheduler.read_text()
    anchor = "for req_id in kv_connector_output.finished_sending or ():"
    assert anchor in text
    scheduler.write_text(text.replace(anchor, anchor + "  # drifted", 1))
    before = node.digest()
    result = node.run()
    assert result.returncode == 1
    log = node.log("vllm-patches")
    assert "envbuild: error: vllm-patches failed" in result.stderr
    assert "scheduler-read-mode" in log and "vllm/v1/core/sched/scheduler.py" in log
    assert "nothing was changed" in log
    # vLLM's files are as they were; rixl-patch, which does not depend on it, is installed (a failure stops
    # only the components that depend on it).
    after = node.digest()
    assert after["rixl/_api.py"] != before["rixl/_api.py"]
    assert after == {**before, "rixl/_api.py": after["rixl/_api.py"]}
    assert not (node.root / "state" / "stamps" / "vllm-patches").exists()
    assert (node.root / "state" / "stamps" / "rixl-patch").exists()


def test_wrong_vllm_version_is_refused(node):
    metadata = node.site / vllm_wheel.DIST_INFO / "METADATA"
    metadata.write_text(metadata.read_text().replace("Version: 0.17.1", "Version: 0.18.0", 1))
    before = node.digest()
    result = node.run("--only", "vllm-patches")
    assert result.returncode == 1
    log = node.log("vllm-patches")
    assert "moriep-fp8-compat" in log and "0.18.0" in log and "==0.17.1" in log
    assert node.digest() == before
