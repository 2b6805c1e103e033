"""Writers of small synthetic files in the real on-disk formats of the benchmark data sets.

Used by tests/test_data_readers.py so that every reader and loader is exercised on bytes laid out
exactly as the published files are (IDX gz, CIFAR pickles, STL binaries, USPS HDF5, CDAC+ TSV,
STC2 line files, AgNews label<TAB>text, ImageFolder trees, the Tiny-ImageNet layout). Each writer
takes the data root (laid out like shared/data) and returns what it wrote, for the test to compare.
"""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """IDX file: magic (0, 0, 0x08, ndim), big-endian uint32 dims, then uint8 data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    (gzip.open if compress else open)(path, "wb").write(header + array.tobytes())
    return path


def write_mnist_like(root: Path, folder: str, n_train: int, n_test: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        X = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = np.arange(n, dtype=np.uint8) % 10
        write_idx(root / folder / f"{prefix}-images-idx3-ubyte.gz", X)
        write_idx(root / folder / f"{prefix}-labels-idx1-ubyte.gz", y)
        out[prefix] = (X, y)
    return out


def write_usps_h5(root: Path, n_train: int = 12, n_test: int = 5, seed: int = 0) -> dict:
    import h5py

    rng = np.random.default_rng(seed)
    out = {}
    (root / "usps").mkdir(parents=True, exist_ok=True)
    with h5py.File(root / "usps" / "usps.h5", "w") as f:
        for split, n in (("train", n_train), ("test", n_test)):
            data = rng.random((n, 256)).astype(np.float32)
            target = (np.arange(n) % 10).astype(np.int32)
            g = f.create_group(split)
            g.create_dataset("data", data=data)
            g.create_dataset("target", data=target)
            out[split] = (data, target)
    return out


def cifar_rows(images_hwc: np.ndarray) -> np.ndarray:
    """N×32×32×3 → the N×3072 channel-major rows of the CIFAR pickles."""
    return images_hwc.transpose(0, 3, 1, 2).reshape(len(images_hwc), -1)


def write_cifar10(root: Path, per_batch: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    Xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        X = rng.integers(0, 256, size=(per_batch, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, 10, size=per_batch)
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": y.tolist(), "data": cifar_rows(X),
                         "filenames": [f"{i}.png" for i in range(per_batch)]}, f)
        Xs.append(X), ys.append(y)
    return np.concatenate(Xs), np.concatenate(ys)


def write_cifar100(root: Path, fine: dict[str, np.ndarray], coarse: dict[str, np.ndarray], seed: int = 0) -> dict:
    """CIFAR-100 ``train`` / ``test`` pickles with the given fine and coarse labels per split."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar100" / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    images = {}
    for split in ("train", "test"):
        n = len(fine[split])
        X = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        with open(folder / split, "wb") as f:
            pickle.dump({"filenames": [f"{i}.png" for i in range(n)], "batch_label": split,
                         "fine_labels": list(map(int, fine[split])), "coarse_labels": list(map(int, coarse[split])),
                         "data": cifar_rows(X)}, f)
        images[split] = X
    return images


def write_stl10(root: Path, n_train: int = 3, n_test: int = 2, seed: int = 0) -> dict:
    """STL-10 binaries: each image stored as 3×96×96 with every channel column-major."""
    rng = np.random.default_rng(seed)
    folder = root / "stl10" / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        X = rng.integers(0, 256, size=(n, 96, 96, 3), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).astype(np.uint8)
        X.transpose(0, 3, 2, 1).tofile(folder / f"{split}_X.bin")   # (N, C, W, H): column-major channels
        y.tofile(folder / f"{split}_y.bin")
        out[split] = (X, y)
    return out


def write_tsv(path: Path, rows: list[tuple[str, str]]) -> Path:
    """CDAC+ TSV with header text<TAB>label; texts with a double quote are CSV-quoted like the originals."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["text\tlabel"]
    for text, label in rows:
        if '"' in text:
            text = '"' + text.replace('"', '""') + '"'
        lines.append(f"{text}\t{label}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_stc2(root: Path, folder: str, stem: str, texts: list[str], labels_1based: list[int]) -> None:
    (root / folder).mkdir(parents=True, exist_ok=True)
    (root / folder / f"{stem}.txt").write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    (root / folder / f"{stem}_gnd.txt").write_text("".join(f"{v}\n" for v in labels_1based))


def write_png(path: Path, array: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def write_image_folder(folder: Path, classes: list[str], per_class: int, sizes=((20, 30), (30, 20)),
                       seed: int = 0, subdir: str = "") -> int:
    """PNG images of varying sizes under ``folder/<class>/<subdir>/``; returns the number written."""
    rng = np.random.default_rng(seed)
    n = 0
    for c in classes:
        for i in range(per_class):
            h, w = sizes[i % len(sizes)]
            write_png(folder / c / subdir / f"{c}_{i}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            n += 1
    return n
