"""scikit-learn's bundled 8×8 digits, scaled to uint8 with a fixed 80/20 train/test split."""

from __future__ import annotations

import numpy as np
import torch

from .arrays import array_data
from .base import ArrayData
from .errors import DataNotFoundError

SPLIT_SEED = 0
TEST_FRACTION = 0.2


def load_digits_data(_path: object, limit: int | None) -> ArrayData:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataNotFoundError(
            "data set 'digits' comes with scikit-learn, which is not installed: pip install 'ntlr[bench]'"
        ) from None
    bunch = load_digits()
    # Pixel values are 0..16; scaling to 0..255 makes them look like every other image set here.
    images = np.rint(bunch.images.astype(np.float64) * (255.0 / 16.0)).astype(np.uint8)
    targets = bunch.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(targets))
    n_test = round(TEST_FRACTION * len(targets))
    test_idx, train_idx = np.sort(order[:n_test]), np.sort(order[n_test:])
    inputs = torch.from_numpy(images).unsqueeze(1)
    labels = torch.from_numpy(targets)
    return array_data(
        "digits",
        (inputs[train_idx], labels[train_idx]),
        (inputs[test_idx], labels[test_idx]),
        num_classes=10,
        limit=limit,
        source="sklearn.datasets.load_digits",
        meta={"format": "sklearn", "split_seed": SPLIT_SEED, "test_fraction": TEST_FRACTION},
    )
