import numpy as np
import pytest

from elurepro.data.mnist import load_mnist
from elurepro.errors import DataError
from tests.mnist_files import write_mnist


def test_loads_official_layout(mnist_root):
    arrays = load_mnist(mnist_root, download=False)
    assert arrays.train_x.shape == (12000, 28, 28) and arrays.test_x.shape == (1000, 28, 28)
    raw = np.frombuffer(
        (mnist_root / "MNIST/raw/train-labels-idx1-ubyte").read_bytes()[8:], np.uint8
    )
    assert arrays.train_y.tolist() == raw.tolist()
    assert not arrays.official  # toy files are not the official release


def test_missing_files_name_folder_files_and_fix(tmp_path):
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path, download=False)
    msg = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in msg
    assert "train-images-idx3-ubyte" in msg and "ELUREPRO_DATA" in msg


def test_truncated_file_is_a_clear_error(tmp_path):
    root = write_mnist(tmp_path, n_train=50, n_test=20)
    path = root / "MNIST/raw/train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        load_mnist(root, download=False)


def test_wrong_magic_is_a_clear_error(tmp_path):
    root = write_mnist(tmp_path, n_train=50, n_test=20)
    (root / "MNIST/raw/t10k-labels-idx1-ubyte").write_bytes(b"<html>not found</html>")
    with pytest.raises(DataError, match="not an MNIST IDX file"):
        load_mnist(root, download=False)


def test_real_mnist_is_recognised(shared_data):
    arrays = load_mnist(shared_data, download=False)
    assert arrays.official and len(arrays.train_x) == 60000
    assert abs(arrays.train_x.float().div(255).mean().item() - 0.1307) < 1e-3
