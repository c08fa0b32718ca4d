import os
from pathlib import Path

import pytest
import torch

from tests.mnist_files import write_mnist

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolate_env(monkeypatch, tmp_path):
    # Tests never touch the user's cache or runs folder.
    monkeypatch.setenv("ELUREPRO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ELUREPRO_RUNS", str(tmp_path / "runs"))
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory) -> Path:
    return write_mnist(tmp_path_factory.mktemp("mnist"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data of ../shared/data, when this machine has it."""
    root = os.environ.get("ELUREPRO_DATA")
    if not root or not Path(root).is_dir():
        pytest.skip("ELUREPRO_DATA not set or missing: real-data test skipped")
    return Path(root)
