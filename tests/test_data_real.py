"""The real data sets under $DCREPRO_DATA (e.g. ../shared/data): counts, classes, splits, checksums.

Each test is skipped, with the reason, when its data set is not present. The expected numbers are
the sizes the papers state for their data (DCSS §4.1, DCGLU Table 2, DEC-CRL Table 1) and the
per-class counts in shared/data/*/PROVENANCE.txt; none is a result from a paper's table.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from dcrepro.data import data_root, dataset_status, is_available, load_dataset

pytestmark = pytest.mark.data

# name: (samples, classes, {split: size})
EXPECTED = {
    "mnist": (70_000, 10, {"train": 60_000, "test": 10_000}),
    "fashion_mnist": (70_000, 10, {"train": 60_000, "test": 10_000}),
    "2mnist": (140_000, 20, {"train": 120_000, "test": 20_000, "mnist": 70_000, "fashion_mnist": 70_000}),
    "usps": (9_298, 10, {"train": 7_291, "test": 2_007}),
    "snips": (14_484, 7, {"train": 13_084, "dev": 700, "test": 700}),
    "dbpedia": (14_000, 14, {"train": 12_600, "dev": 700, "test": 700}),
    "stackoverflow": (20_000, 20, {}),
    "biomedical": (20_000, 20, {}),
    "agnews": (8_000, 4, {}),
}


def _need(name: str) -> None:
    if not os.environ.get("DCREPRO_DATA"):
        pytest.skip("DCREPRO_DATA is not set (point it at shared/data to run the real-data tests)")
    if not is_available(name):
        pytest.skip(f"{name} is not present under {data_root()}")


@pytest.mark.parametrize("name", list(EXPECTED))
def test_real_counts_classes_splits(name):
    _need(name)
    n, k, splits = EXPECTED[name]
    ds = load_dataset(name, verify=True)                      # sha256 of every file checked
    assert len(ds) == n and ds.n_classes == k and ds.meta["sha256_verified"]
    assert np.array_equal(np.unique(ds.y), np.arange(k))      # 0-based, every class present
    for split, size in splits.items():
        assert len(ds.splits[split]) == size, split
    if splits:                                                # the named splits partition the set
        parts = [ds.splits[s] for s in splits if s not in ("mnist", "fashion_mnist")]
        assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(n))
    if ds.modality == "text":
        assert ds.X.dtype == object and all(isinstance(t, str) and t for t in ds.X[:50])
    else:
        assert ds.X.dtype == np.uint8 and ds.X.ndim == 4


def test_real_mnist_per_class_counts_and_2mnist_layout():
    _need("2mnist")
    ds = load_dataset("2mnist")
    # shared/data/mnist/PROVENANCE.txt, train per class 0..9
    assert list(np.bincount(ds.y[ds.splits["mnist"][:60_000]])) == [5923, 6742, 5958, 6131, 5842, 5421, 5918,
                                                                    6265, 5851, 5949]
    assert np.array_equal(np.bincount(ds.y[ds.splits["fashion_mnist"]], minlength=20)[10:], np.full(10, 7000))
    assert ds.X.shape[1:] == (28, 28, 1) and ds.X.max() == 255


def test_real_text_label_alignment():
    _need("stackoverflow")
    so = load_dataset("stackoverflow")
    assert np.array_equal(np.bincount(so.y), np.full(20, 1000))
    # the first title is a LINQ question; label 18 (1-based) = 'linq' in the STC2 tag order
    assert "LINQ" in so.X[0] and so.meta["class_names"][so.y[0]] == "linq"
    _need("snips")
    sn = load_dataset("snips")
    test_counts = dict(zip(sn.meta["class_names"], np.bincount(sn.y[sn.splits["test"]])))
    assert test_counts["AddToPlaylist"] == 124 and test_counts["RateBook"] == 80   # PROVENANCE counts


def test_real_usps_pixels():
    _need("usps")
    ds = load_dataset("usps")
    assert ds.X.shape[1:] == (16, 16, 1) and ds.X.min() == 0 and ds.X.max() == 255
    assert list(np.bincount(ds.y[:7291])) == [1194, 1005, 731, 658, 652, 556, 664, 645, 542, 644]


def test_absent_colour_sets_are_reported_missing():
    if not os.environ.get("DCREPRO_DATA"):
        pytest.skip("DCREPRO_DATA is not set")
    absent = [n for n in ("cifar10", "cifar100_20", "stl10", "imagenet10", "imagenet_dogs", "tiny_imagenet")
              if not is_available(n)]
    if not absent:
        pytest.skip("every colour data set is present")
    for name in absent:
        st = dataset_status(name, hashes=False)
        assert st["status"] == "missing" and "missing" in st["files"].values()
