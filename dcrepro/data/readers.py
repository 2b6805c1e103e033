"""Readers for the standard file formats of the benchmark data sets, in plain numpy/pandas/h5py.

One function per format: IDX (MNIST family, optionally gzip), CIFAR python pickles, STL-10
binaries, the USPS HDF5 file, text TSV/line files, and ImageFolder trees of JPEG/PNG images.
They return arrays and raise ``ValueError`` / ``OSError`` on malformed input; the data-set loaders
in :mod:`dcrepro.data.loaders` turn those into one :class:`~dcrepro.data.DataNotAvailable` message.
torchvision is deliberately not used (it does not import with the CPU torch build here).
"""
from __future__ import annotations

import csv
import gzip
import pickle
from pathlib import Path

import numpy as np

__all__ = [
    "read_idx", "read_cifar_pickle", "read_cifar100_pickle", "read_stl_images", "read_stl_labels", "read_usps_h5",
    "read_text_label_tsv", "read_lines", "read_label_text", "read_image_folder", "list_image_files",
    "labels_to_index", "IMAGE_SUFFIXES",
]

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".webp")

# IDX type codes -> numpy dtypes (big-endian for the multi-byte ones), from LeCun's format description.
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: Path) -> bytes:
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        return f.read()


def read_idx(path) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into an array of its declared shape and type.

    Parameters
    ----------
    path : path-like
        e.g. ``train-images-idx3-ubyte.gz`` (uint8 N×28×28) or ``train-labels-idx1-ubyte.gz`` (uint8 N).

    Returns
    -------
    numpy.ndarray
        A read-only view on the decompressed bytes (``np.frombuffer``); copy before writing.
    """
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02x}")
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path}: IDX header declares shape {shape} ({expected} bytes) but the "
                         f"file holds {len(raw) - header} bytes of data (truncated or corrupt)")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _load_cifar_entry(path) -> dict:
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    if not isinstance(entry, dict) or "data" not in entry:
        keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise ValueError(f"{path}: not a CIFAR batch (no 'data'; found {keys})")
    data = np.asarray(entry["data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: CIFAR 'data' must be N×3072; got {data.shape}")
    entry["data"] = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return entry


def _cifar_labels(entry: dict, key: str, path) -> np.ndarray:
    if key not in entry:
        raise ValueError(f"{path}: CIFAR batch has no {key!r} (found {sorted(entry)})")
    labels = np.asarray(entry[key], dtype=np.int64)
    if len(labels) != len(entry["data"]):
        raise ValueError(f"{path}: {len(entry['data'])} images but {len(labels)} {key!r}")
    return labels


def read_cifar_pickle(path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python-version batch (``data_batch_1`` .. ``data_batch_5``, ``test_batch``).

    Returns
    -------
    images : numpy.ndarray
        uint8 N×32×32×3 (the pickle stores N×3072, channel-major).
    labels : numpy.ndarray
        int64 N, from the ``labels`` entry.
    """
    entry = _load_cifar_entry(path)
    return entry["data"], _cifar_labels(entry, "labels", path)


def read_cifar100_pickle(path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read the CIFAR-100 python-version ``train`` or ``test`` file.

    Returns
    -------
    images : numpy.ndarray
        uint8 N×32×32×3.
    fine : numpy.ndarray
        int64 N, fine labels 0..99.
    coarse : numpy.ndarray or None
        int64 N, the stored super-class labels when the file has them.
    """
    entry = _load_cifar_entry(path)
    coarse = _cifar_labels(entry, "coarse_labels", path) if "coarse_labels" in entry else None
    return entry["data"], _cifar_labels(entry, "fine_labels", path), coarse


def read_stl_images(path, size: int = 96) -> np.ndarray:
    """Read an STL-10 ``*_X.bin`` file: uint8, each image 3×size×size stored column-major.

    Returns
    -------
    numpy.ndarray
        uint8 N×size×size×3 (rows = image rows).
    """
    raw = np.fromfile(path, dtype=np.uint8)
    per = 3 * size * size
    if raw.size == 0 or raw.size % per:
        raise ValueError(f"{path}: {raw.size} bytes is not a whole number of {size}×{size} RGB images")
    # Stored as (N, C, W, H) in C order, i.e. each channel column-major: transpose to (N, H, W, C).
    return raw.reshape(-1, 3, size, size).transpose(0, 3, 2, 1)


def read_stl_labels(path) -> np.ndarray:
    """Read an STL-10 ``*_y.bin`` file (uint8 labels 1..10) as int64 labels 0..9."""
    raw = np.fromfile(path, dtype=np.uint8).astype(np.int64)
    if raw.size == 0 or raw.min() < 1 or raw.max() > 10:
        raise ValueError(f"{path}: STL-10 labels must be 1..10")
    return raw - 1


def read_usps_h5(path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read ``usps.h5``: groups ``train`` and ``test`` with ``data`` (n×256 floats in [0,1]) and ``target``.

    Returns
    -------
    dict
        ``{'train': (uint8 n×16×16×1, int64 n), 'test': (...)}``; pixels are ``round(255·x)``.
    """
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        for split in ("train", "test"):
            if split not in f or "data" not in f[split] or "target" not in f[split]:
                raise ValueError(f"{path}: expected groups /train and /test with 'data' and 'target'")
            data = np.asarray(f[split]["data"][:], dtype=np.float64)
            target = np.asarray(f[split]["target"][:], dtype=np.int64).ravel()
            if data.ndim != 2 or data.shape[1] != 256 or len(target) != len(data):
                raise ValueError(f"{path}: /{split}/data must be n×256 with n targets; got {data.shape}")
            if data.min() < -1e-6 or data.max() > 1 + 1e-6:
                raise ValueError(f"{path}: /{split}/data must lie in [0, 1]")
            images = np.clip(np.rint(data * 255.0), 0, 255).astype(np.uint8).reshape(-1, 16, 16, 1)
            out[split] = (images, target)
    return out


def read_text_label_tsv(path) -> tuple[np.ndarray, np.ndarray]:
    """Read a CDAC+-style TSV with header ``text<TAB>label`` (pandas default quoting).

    Returns
    -------
    texts : numpy.ndarray of str (object)
    labels : numpy.ndarray of str (object)
        Raw labels as written (intent names or integers as strings).
    """
    import pandas as pd

    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_filter=False)
    if list(frame.columns) != ["text", "label"]:
        raise ValueError(f"{path}: expected header 'text<TAB>label'; got {list(frame.columns)}")
    return frame["text"].to_numpy(dtype=object), frame["label"].to_numpy(dtype=object)


def read_lines(path) -> np.ndarray:
    """Read a UTF-8 file with one record per ``\\n``-terminated line (``\\r`` stripped).

    Only ``\\n`` separates records: titles may contain other Unicode line breaks that
    ``str.splitlines`` would split on, which would shift every later label.
    """
    text = Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return np.array([ln[:-1] if ln.endswith("\r") else ln for ln in lines], dtype=object)


def read_label_text(path) -> tuple[np.ndarray, np.ndarray]:
    """Read ``label<TAB>text`` lines without header or quoting (the AgNews-8000 file).

    Returns
    -------
    texts : numpy.ndarray of str (object)
    labels : numpy.ndarray of str (object)
    """
    import pandas as pd

    frame = pd.read_csv(path, sep="\t", header=None, names=["label", "text"], dtype=str,
                        quoting=csv.QUOTE_NONE, keep_default_na=False, na_filter=False)
    return frame["text"].to_numpy(dtype=object), frame["label"].to_numpy(dtype=object)


def labels_to_index(raw, classes: list | None = None, base: int | None = None) -> tuple[np.ndarray, list]:
    """Turn raw labels (names or integers, any base) into int64 ids 0..K-1.

    Parameters
    ----------
    raw : array-like
        Labels as read from the file.
    classes : list, optional
        Raw label values in id order; a value outside it is an error. Default: sorted unique values.
    base : int, optional
        For integer labels: the smallest valid label (1 for 1-based files). Overrides ``classes``.

    Returns
    -------
    y : numpy.ndarray (int64)
    classes : list
        The raw value of each id.
    """
    raw = np.asarray(raw)
    if base is not None:
        try:
            ints = raw.astype(np.int64)
        except ValueError as e:
            raise ValueError(f"labels are not integers: {e}") from None
        if ints.min() < base:
            raise ValueError(f"integer labels must be >= {base}; found {ints.min()}")
        return ints - base, list(range(base, int(ints.max()) + 1))
    values, inverse = np.unique(raw, return_inverse=True)
    if classes is None:
        return inverse.astype(np.int64), values.tolist()
    lookup = {c: i for i, c in enumerate(classes)}
    unknown = [v for v in values.tolist() if v not in lookup]
    if unknown:
        raise ValueError(f"unknown label(s) {unknown[:5]}; expected one of {list(classes)}")
    return np.array([lookup[v] for v in values.tolist()], dtype=np.int64)[inverse], list(classes)


def list_image_files(folder) -> list[Path]:
    """Image files directly under ``folder`` or below it, sorted by path."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _decode(path: Path, size: int | None) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if size is not None and im.size != (size, size):
            # Shorter side to `size`, then centre crop (the usual ImageNet evaluation resize).
            w, h = im.size
            scale = size / min(w, h)
            im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            im = im.crop((left, top, left + size, top + size))
        return np.asarray(im, dtype=np.uint8)


def read_image_folder(root, classes: list[str], image_size: int | None = None,
                      files: dict[str, list[Path]] | None = None, progress: bool = False,
                      allow_empty: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read an ImageFolder tree ``root/<class>/**/<image>`` into one uint8 array.

    Parameters
    ----------
    root : path-like
    classes : list of str
        Sub-folder names in label order (label = position in this list).
    image_size : int, optional
        Resize (shorter side) and centre-crop every image to ``image_size``²; None keeps the
        native size, which must then be the same for every image.
    files : dict, optional
        Pre-listed files per class (skips the directory walk).
    progress : bool
        Show a tqdm bar (decoding is the slow part: about 1-3 ms per small JPEG).
    allow_empty : bool
        Accept classes without images (a validation set need not cover every class).

    Returns
    -------
    images : numpy.ndarray
        uint8 N×H×W×3, ordered by class then path.
    labels : numpy.ndarray
        int64 N.
    """
    root = Path(root)
    if files is None:
        files = {c: list_image_files(root / c) for c in classes}
    empty = [c for c in classes if not files.get(c)]
    if empty and (not allow_empty or len(empty) == len(classes)):
        raise ValueError(f"{root}: no images for class folder(s) {empty[:5]}")
    paths = [p for c in classes for p in files.get(c, [])]
    labels = np.repeat(np.arange(len(classes), dtype=np.int64), [len(files.get(c, [])) for c in classes])
    iterator = paths
    if progress:
        from tqdm import tqdm

        iterator = tqdm(paths, desc=f"decode {root.name}", unit="img")
    first = _decode(paths[0], image_size)
    images = np.empty((len(paths),) + first.shape, dtype=np.uint8)
    for i, p in enumerate(iterator):  # one file per iteration: decoding cannot be vectorised
        img = first if i == 0 else _decode(p, image_size)
        if img.shape != first.shape:
            raise ValueError(f"{p}: image shape {img.shape} differs from {first.shape}; pass image_size")
        images[i] = img
    return images, labels
