"""Loaders of the supervised examples: IDX round trip and errors, digits shapes."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from acktr.examples.data import MNIST_FILES, load_digits, load_mnist, read_idx, write_idx


def _write_mnist(directory, n_train=5, n_test=3, side=4, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, side, side), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        image_stem, label_stem = MNIST_FILES[split]
        suffix = ".gz" if gz else ""
        write_idx(directory / f"{image_stem}{suffix}", images)
        write_idx(directory / f"{label_stem}{suffix}", labels)
        arrays[split] = (images, labels)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    arrays = _write_mnist(tmp_path, gz=gz)
    data = load_mnist(tmp_path)
    images, labels = arrays["train"]
    assert data.name == "mnist"
    assert data.x_train.shape == (5, 1, 4, 4) and data.x_train.dtype == torch.float32
    assert data.x_test.shape == (3, 1, 4, 4)
    np.testing.assert_allclose(data.x_train[:, 0].numpy(), images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(data.y_train.numpy(), labels)
    np.testing.assert_array_equal(data.y_test.numpy(), arrays["test"][1])
    assert data.y_train.dtype == torch.int64
    assert float(data.x_train.min()) >= 0.0 and float(data.x_train.max()) <= 1.0


def test_idx_header_is_big_endian_standard(tmp_path):
    path = tmp_path / "labels"
    write_idx(path, np.arange(7, dtype=np.uint8))
    raw = path.read_bytes()
    assert raw[:8] == b"\x00\x00\x08\x01\x00\x00\x00\x07"
    np.testing.assert_array_equal(read_idx(path), np.arange(7))


def test_missing_file_names_expected_path(tmp_path):
    arrays_dir = tmp_path / "mnist"
    arrays_dir.mkdir()
    _write_mnist(arrays_dir)
    (arrays_dir / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte") as info:
        load_mnist(arrays_dir)
    assert str(arrays_dir / "t10k-labels-idx1-ubyte") in str(info.value)


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_mnist(tmp_path / "nowhere")


@pytest.mark.parametrize("gz", [False, True])
def test_bad_magic_number(tmp_path, gz):
    _write_mnist(tmp_path)
    name = "train-images-idx3-ubyte"
    payload = struct.pack(">IIII", 0x00000D03, 1, 2, 2) + bytes(4)  # float type code
    (tmp_path / name).unlink()
    if gz:
        with gzip.open(tmp_path / f"{name}.gz", "wb") as f:
            f.write(payload)
    else:
        (tmp_path / name).write_bytes(payload)
    with pytest.raises(ValueError, match="bad magic number 0x00000d03"):
        load_mnist(tmp_path)


def test_truncated_file(tmp_path):
    path = tmp_path / "images"
    write_idx(path, np.zeros((2, 3, 3), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="holds 17 bytes"):
        read_idx(path)


def test_image_label_count_mismatch(tmp_path):
    _write_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, dtype=np.uint8))
    with pytest.raises(ValueError, match="5 images but"):
        load_mnist(tmp_path)


def test_digits_shapes_and_split():
    data = load_digits(test_fraction=0.2, seed=0)
    assert data.x_train.shape == (1438, 1, 8, 8)
    assert data.x_test.shape == (359, 1, 8, 8)
    assert data.y_train.shape == (1438,) and data.y_train.dtype == torch.int64
    assert data.side == 8 and data.n_pixels == 64
    assert float(data.x_train.min()) == 0.0 and float(data.x_train.max()) == 1.0
    again = load_digits(test_fraction=0.2, seed=0)
    assert torch.equal(again.x_test, data.x_test)
    other = load_digits(test_fraction=0.2, seed=1)
    assert not torch.equal(other.y_test, data.y_test)
