"""Build hosts that lie about their hardware, for commands run as root in a
private mount namespace (`unshare --mount`), so the real machine never changes.

Upstream builds auto-detect from the build host (DESIGN.md §2): MoRI reads
/sys/class/infiniband, `lspci`, the provider libraries CMake can find and
`rocm_agent_enumerator`. A HostileHost decides each of those, together or
alone. Inside the namespace:
- /sys is a fixture tree (tests/nic_fixtures.py) holding exactly `nics`
  (none by default, so the real machine's devices never leak in);
- /usr/local/bin is an overlay whose top layer holds a fake `lspci` printing
  `lspci` lines and a fake `rocm_agent_enumerator` printing `gpus` (nothing by
  default): they shadow real tools in the directories after /usr/local/bin on
  the command's PATH (the usual PATH has it before /usr/bin);
- /usr/lib/x86_64-linux-gnu is an overlay that adds `libraries` (real, empty
  shared objects) where CMake's find_library looks; the real libraries stay
  visible (a real libionic.so is not hidden).

Fake tools log their arguments: `calls("lspci")` tells whether a build asked.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nic_fixtures import Nic, build_tree, tool_calls, write_tool
from standins import shared_object

# `lspci -nn` lines of Ethernet controllers (class 0200), one vendor each.
BROADCOM_ETHERNET = ("41:00.0 Ethernet controller [0200]: Broadcom Inc. and subsidiaries "
                     "BCM57608 10Gb/25Gb/50Gb/100Gb/200Gb/400Gb Ethernet [14e4:1760] (rev 11)")
PENSANDO_ETHERNET = ("09:00.0 Ethernet controller [0200]: Pensando Systems DSC Ethernet Controller "
                     "[1dd8:1002]")

LIBDIR = Path("/usr/lib/x86_64-linux-gnu")
BINDIR = Path("/usr/local/bin")

NAMESPACE = """set -e
mount -t overlay overlay -o "lowerdir=$1:$4" "$4"
mount -t overlay overlay -o "lowerdir=$2:$5" "$5"
mount --bind "$3" /sys
shift 5
exec "$@"
"""


@dataclass
class HostileHost:
    """What the build host claims to have; files under `root`.

    lspci: lines the fake `lspci` prints; nics: RDMA devices in /sys/class/infiniband;
    libraries: paths under /usr/lib/x86_64-linux-gnu, e.g. "libionic.so" (what MoRI's
    CMake finds), "libionic.so.1" (what libionic1 ships);
    gpus: lines `rocm_agent_enumerator` prints, e.g. ("gfx000", "gfx942").
    """

    root: Path
    lspci: Sequence[str] = ()
    nics: Sequence[Nic] = ()
    libraries: Sequence[str] = ()
    gpus: Sequence[str] = ()

    def __post_init__(self):
        self.bin = self.root / "bin"
        write_tool(self.bin, "lspci", "\n".join(self.lspci))
        write_tool(self.bin, "rocm_agent_enumerator", "\n".join(self.gpus))
        self.lib = self.root / "lib"
        self.lib.mkdir(parents=True)
        for name in self.libraries:
            (self.lib / name).parent.mkdir(parents=True, exist_ok=True)
            shared_object(self.lib / name)
        self.sys = build_tree(self.root / "node", list(self.nics), management=None, default_route=None) / "sys"

    def command(self, *argv: str) -> list[str]:
        """`argv` run on this host (an argv list to run as root)."""
        return ["unshare", "--mount", "--propagation", "private", "--", "bash", "-c", NAMESPACE, "hostile",
                str(self.bin), str(self.lib), str(self.sys), str(BINDIR), str(LIBDIR), *argv]

    def run(self, *argv: str, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*argv), env=env, cwd=cwd, capture_output=True, text=True,
                              timeout=timeout)

    def calls(self, tool: str) -> list[str]:
        """The arguments of each call of fake `tool` ("lspci" or "rocm_agent_enumerator"), in order."""
        return tool_calls(self.bin, tool)
