"""What the patch tests share: the applier run as the runtime script runs it, manifests, snapshots."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from envbuild.runtime import patchapply
from envbuild.spec import patches

APPLIER = Path(patchapply.__file__).read_text(encoding="utf-8")


def run_applier(command, manifest, site_packages=None, env=None, python_flags=("-I",)):
    """The applier as the runtime script runs it: program on stdin, isolated mode."""
    args = [sys.executable, *python_flags, "-", command, "--manifest", str(manifest)]
    if site_packages is not None:
        args += ["--site-packages", str(site_packages)]
    return subprocess.run(args, input=APPLIER, capture_output=True, text=True, env=env)


def write_manifest(path: Path, specs) -> Path:
    path.write_text(patches.manifest_text(specs))
    return path


def snapshot(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def fake_distribution(site: Path, name: str, version: str, files: dict) -> Path:
    """An installed distribution: its files, METADATA and a RECORD listing them."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    for relative, text in files.items():
        (site / relative).parent.mkdir(parents=True, exist_ok=True)
        (site / relative).write_text(text)
    records = list(files) + [f"{info.name}/METADATA", f"{info.name}/RECORD"]
    (info / "RECORD").write_text("".join(f"{record},,\n" for record in records))
    return site


RIXL_API = '''\
import logging

logger = logging.getLogger("rixl")


class nixl_agent_config:
    def __init__(self, backends=("UCX",), num_threads=0):
        self.backends = list(backends)
        self.num_threads = num_threads


class nixl_agent:
    def __init__(self, agent_name, nixl_conf=None, plugin_list=("UCX", "GDS")):
        self.name = agent_name
        self.plugin_list = list(plugin_list)
        self.backends = {}
        nixl_conf = nixl_conf or nixl_agent_config()
        for bknd in nixl_conf.backends:
            if bknd not in self.plugin_list:
                logger.warning(
                    "Skipping backend registration %s due to the missing plugin.",
                    bknd,
                )
            else:
                # TODO: improve population of init from nixl_conf
                init: dict = {}
                if nixl_conf.num_threads > 0:
                    init["num_threads"] = str(nixl_conf.num_threads)
                self.create_backend(bknd, init)

        logger.info("Initialized NIXL agent: %s", agent_name)

    def create_backend(self, backend, initParams={}):
        self.backends[backend] = dict(initParams)
'''
