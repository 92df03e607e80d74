import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from localsources import FileServer  # noqa: E402
from testrecipe import LocalRecipe  # noqa: E402


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
