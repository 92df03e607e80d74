import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from envbuild.spec import patches  # noqa: E402
from envbuild.spec.loader import builtin_recipes_dir  # noqa: E402
from docker_base import ImageSession, engine_or_skip, ensure_base_image  # noqa: E402
from localsources import FileServer  # noqa: E402
from testrecipe import LocalRecipe  # noqa: E402


@pytest.fixture(scope="session")
def catalog():
    """The built-in patches by name."""
    return patches.load_catalog(builtin_recipes_dir() / "patches")


@pytest.fixture
def file_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = FileServer(root)
    yield server
    server.close()


@pytest.fixture
def test_recipe(tmp_path, file_server):
    return LocalRecipe(tmp_path / "t", file_server)


# Docker: one engine check, cached base image and throwaway image session per module.
@pytest.fixture(scope="module")
def engine():
    return engine_or_skip()


@pytest.fixture(scope="module")
def base_image(engine):
    return ensure_base_image(engine)


@pytest.fixture(scope="module")
def session(engine):
    image_session = ImageSession()
    yield image_session
    image_session.cleanup(engine)


@pytest.fixture
def scratch(tmp_path):
    """A fresh directory, on tmpfs when there is one: a NIC fixture tree is hundreds of tiny
    files, which tmpfs writes about ten times faster than this machine's disk."""
    if not os.access("/dev/shm", os.W_OK):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="envbuild-nic-") as directory:
        yield Path(directory)
