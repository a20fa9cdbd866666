"""Datasets for the supervised K-FAC examples: scikit-learn's digits and MNIST from IDX files.

Both loaders return :class:`Dataset` with images as float32 in ``[0, 1]``, shaped
``(n, 1, side, side)``, and integer labels. Nothing is downloaded: digits ships with
scikit-learn, and MNIST is read from the four standard IDX files in a directory the user gives.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

# IDX magic numbers: 0x0000 + type code 0x08 (unsigned byte) + number of dimensions.
IDX_UBYTE_MAGIC = {1: 0x00000801, 3: 0x00000803}

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class Dataset:
    """A train/test split of images and labels.

    Attributes:
        x_train: ``(n_train, 1, side, side)`` float32 in ``[0, 1]``.
        y_train: ``(n_train,)`` int64 class labels.
        x_test: ``(n_test, 1, side, side)`` float32 in ``[0, 1]``.
        y_test: ``(n_test,)`` int64 class labels.
        name: ``"digits"`` or ``"mnist"``.
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    name: str

    @property
    def side(self) -> int:
        """Image height (= width) in pixels."""
        return int(self.x_train.shape[-1])

    @property
    def n_pixels(self) -> int:
        """Pixels per image (the autoencoder's input size)."""
        return self.side * self.side


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits (1797 images), scaled to ``[0, 1]``, split by a seeded shuffle.

    Args:
        test_fraction: fraction of the images held out for the test split. Default 0.2.
        seed: seed of the permutation that makes the split. Default 0.

    Returns:
        The dataset, images ``(n, 1, 8, 8)``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    from sklearn.datasets import load_digits as sk_load_digits  # optional dependency

    digits = sk_load_digits()
    x = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.as_tensor(digits.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * len(y)))
    test, train = perm[:n_test], perm[n_test:]
    return Dataset(x[train], y[train], x[test], y[test], "digits")


def _open(path: Path) -> bytes:
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
        return f.read()


def find_idx_file(directory: str | Path, stem: str) -> Path:
    """The path of ``stem`` or ``stem.gz`` in ``directory``.

    Raises:
        FileNotFoundError: naming both paths that were tried.
    """
    directory = Path(directory)
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"MNIST file not found: expected {directory / stem} or {directory / stem}.gz "
        "(the standard IDX files from the MNIST distribution)"
    )


def read_idx(path: str | Path) -> np.ndarray:
    """Read an unsigned-byte IDX file (plain or ``.gz``) into a uint8 array.

    Supports the 1-d (labels) and 3-d (images) files MNIST uses.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: on a bad magic number or a size that disagrees with the header.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    data = _open(path)
    if len(data) < 4:
        raise ValueError(f"{path}: too short to be an IDX file ({len(data)} bytes)")
    (magic,) = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    if magic not in IDX_UBYTE_MAGIC.values():
        expected = ", ".join(f"0x{m:08x}" for m in IDX_UBYTE_MAGIC.values())
        raise ValueError(
            f"{path}: bad magic number 0x{magic:08x} (expected one of {expected}: an unsigned-byte "
            "IDX file with 1 or 3 dimensions); is this an MNIST file?"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected_bytes = int(np.prod(shape))
    if len(data) - header != expected_bytes:
        raise ValueError(
            f"{path}: header says shape {shape} ({expected_bytes} bytes) but the file holds "
            f"{len(data) - header} bytes of data"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array (1-d or 3-d) as an IDX file, gzipped if ``path`` ends in ``.gz``.

    The inverse of :func:`read_idx`, used by the tests to make small MNIST-like files.
    """
    array = np.ascontiguousarray(array, dtype=np.uint8)
    if array.ndim not in IDX_UBYTE_MAGIC:
        raise ValueError(f"IDX writer supports 1-d and 3-d arrays, got {array.ndim}-d")
    payload = struct.pack(">I", IDX_UBYTE_MAGIC[array.ndim])
    payload += struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path = Path(path)
    with gzip.open(path, "wb") if path.suffix == ".gz" else open(path, "wb") as f:
        f.write(payload)


def _load_split(directory: Path, split: str) -> tuple[Tensor, Tensor]:
    image_stem, label_stem = MNIST_FILES[split]
    image_path = find_idx_file(directory, image_stem)
    label_path = find_idx_file(directory, label_stem)
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3:
        raise ValueError(f"{image_path}: expected 3-d images, got shape {images.shape}")
    if labels.ndim != 1:
        raise ValueError(f"{label_path}: expected 1-d labels, got shape {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(
            f"{image_path} holds {len(images)} images but {label_path} {len(labels)} labels"
        )
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def load_mnist(directory: str | Path) -> Dataset:
    """MNIST from its standard IDX files in ``directory`` (each plain or gzipped).

    Expects ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
    and ``t10k-labels-idx1-ubyte`` (or the same names ending in ``.gz``).

    Raises:
        FileNotFoundError: naming the first missing file's expected path.
        ValueError: on a malformed file (bad magic number, wrong size, count mismatch).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"MNIST directory not found: {directory}")
    x_train, y_train = _load_split(directory, "train")
    x_test, y_test = _load_split(directory, "test")
    return Dataset(x_train, y_train, x_test, y_test, "mnist")
