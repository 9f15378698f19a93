"""Offline evaluation data for the zoo: Fashion-MNIST (Debian's ``dataset-fashion-mnist``), seeded synthetic
classification blobs, and seeded synthetic feeds. numpy only (no torch)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from onnxq.core.errors import OnnxqError

FASHION_MNIST_ENV = "ONNXQ_FASHION_MNIST_DIR"
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")


def fashion_mnist_dir() -> Path:
    """Where the Fashion-MNIST idx files are (``$ONNXQ_FASHION_MNIST_DIR`` overrides)."""
    candidates = [os.environ[FASHION_MNIST_ENV]] if os.environ.get(FASHION_MNIST_ENV) else []
    candidates += list(FASHION_MNIST_DIRS)
    for c in candidates:
        if (Path(c) / "t10k-labels-idx1-ubyte.gz").is_file():
            return Path(c)
    raise OnnxqError("Fashion-MNIST not found: `apt-get install dataset-fashion-mnist` (puts it in "
                     f"{FASHION_MNIST_DIRS[0]}) or set {FASHION_MNIST_ENV} to a directory with its idx .gz files")


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise OnnxqError(f"{path}: not an unsigned-byte idx file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise OnnxqError(f"{path}: truncated ({data.size} values, header says {dims})")
    return data.reshape(dims)


def load_fashion_mnist(split: str, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images float32 [N, 1, 28, 28], normalised; labels int64 [N]) for ``split`` ``train`` or ``test``."""
    prefix = {"train": "train", "test": "t10k"}[split]
    d = fashion_mnist_dir()
    images = _read_idx(d / f"{prefix}-images-idx3-ubyte.gz")
    labels = _read_idx(d / f"{prefix}-labels-idx1-ubyte.gz")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = (images.astype(np.float32) / 255.0 - FASHION_MNIST_MEAN) / FASHION_MNIST_STD
    return x[:, None, :, :].astype(np.float32), labels.astype(np.int64)


BLOB_SPLITS = {"train": 1, "calibration": 2, "test": 3}


def blobs(n: int, split: str, dim: int = 64, classes: int = 10, seed: int = 0, noise: float = 7.0
          ) -> tuple[np.ndarray, np.ndarray]:
    """Seeded Gaussian blobs: class centres from ``seed``; each split draws its samples from its own stream."""
    centres = np.random.default_rng(seed).standard_normal((classes, dim)).astype(np.float32)
    rng = np.random.default_rng([seed, BLOB_SPLITS[split]])
    y = rng.integers(0, classes, n)
    x = centres[y] + noise * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim / 8)
    return x.astype(np.float32), y.astype(np.int64)


def token_feeds(input_names: tuple[str, ...], batch: int, seq: int, seed: int, vocab: int = 30000
                ) -> dict[str, np.ndarray]:
    """Seeded transformer inputs by name: random token ids, all-ones masks, zero token types."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name in input_names:
        if "mask" in name:
            out[name] = np.ones((batch, seq), np.int64)
        elif "type" in name:
            out[name] = np.zeros((batch, seq), np.int64)
        else:
            out[name] = rng.integers(1000, min(vocab, 5000), (batch, seq)).astype(np.int64)
    return out
