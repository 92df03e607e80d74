"""Stand-in for ROCm/mori's setup.py at b645fc8 (see tests/standins.py).

As in MoRI, setup.py only drives CMake: it fetches the git submodules itself
when they are missing, passes USE_BNXT/USE_IONIC from the environment (CMake
overrides both), builds with one job per CPU, and ships what CMake built.
"""

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).parent.resolve()
SUBMODULES = ["3rdparty/spdlog", "3rdparty/msgpack-c"]


def log(*words: str) -> None:
    if os.environ.get("EB_TEST_UPSTREAM_LOG"):
        with open(os.environ["EB_TEST_UPSTREAM_LOG"], "a") as out:
            print("mori", *words, file=out)


def ensure_submodules() -> None:
    missing = [path for path in SUBMODULES if not (ROOT / path).is_dir() or not any((ROOT / path).iterdir())]
    if missing:
        # The real setup.py reaches GitHub here, which a pinned source never covers.
        log("fetch-submodules", *missing)
        subprocess.check_call(["git", "submodule", "update", "--init", "--recursive", *missing], cwd=ROOT)


def on_off(name: str) -> str:
    return "ON" if os.environ.get(name, "OFF").upper() in {"1", "ON", "TRUE", "YES"} else "OFF"


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        ensure_submodules()
        build = ROOT / "build"
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        subprocess.check_call(["cmake", *generator, f"-DUSE_BNXT={on_off('USE_BNXT')}",
                               f"-DUSE_IONIC={on_off('USE_IONIC')}", "-S", str(ROOT), "-B", str(build)])
        subprocess.check_call(["cmake", "--build", str(build), "-j", str(os.cpu_count())])
        package = Path(self.build_lib) / "mori"
        package.mkdir(parents=True, exist_ok=True)
        for name in ("libmori.so", "build_info.txt"):
            shutil.copyfile(build / name, package / name)


setup(
    name="mori",
    version="0.0.0+standin",
    packages=["mori"],
    package_dir={"": "python"},
    ext_modules=[Extension("mori", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
)
