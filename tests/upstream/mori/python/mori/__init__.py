"""Stand-in for the `mori` package (tests/standins.py)."""

import ctypes
from pathlib import Path

_lib = ctypes.CDLL(str(Path(__file__).with_name("libmori.so")))
for _name in ("mori_device_nic", "mori_gpu_archs"):
    getattr(_lib, _name).restype = ctypes.c_char_p


def build_info() -> dict:
    """What the library was compiled with, e.g.
    {"device_nic": "bnxt", "host_nics": ["ionic"], "gpu_archs": ["gfx942"]}."""
    host = [nic for nic, on in (("bnxt", _lib.mori_host_bnxt()), ("ionic", _lib.mori_host_ionic())) if on]
    return {
        "device_nic": _lib.mori_device_nic().decode(),
        "host_nics": host,
        "gpu_archs": _lib.mori_gpu_archs().decode().split(","),
    }
