"""One loader per data set: file readers → :class:`~dcrepro.data.Dataset` with the papers' splits.

Each loader takes the data root and returns a ``Dataset``; it is referenced from its entry in
:mod:`dcrepro.data.registry`, which has already checked that the files exist (and their
checksums, when asked) and which turns any reading error into one ``DataNotAvailable`` message.

Split conventions ('all' is always added by ``Dataset``):

* MNIST / Fashion-MNIST / 2MNIST / USPS / CIFAR / STL-10: 'train' and 'test' as released; the
  deep-clustering papers (DCSS) pool them, i.e. use 'all'. 2MNIST also has 'mnist' and 'fashion_mnist'.
* ImageNet-10 / ImageNet-Dogs: no split (the papers cluster all 13,000 / 19,500 images).
* Tiny-ImageNet: 'train' (100,000) and 'test' (the 10,000 labelled validation images).
* SNIPS, DBPedia: the CDAC+ 'train' / 'dev' / 'test' files, in that order.
* StackOverflow, Biomedical, AgNews: one file, no split (SCCL and DEC-CRL cluster all texts).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from . import classes as C
from .dataset import Dataset
from .readers import (labels_to_index, list_image_files, read_cifar100_pickle, read_cifar_pickle, read_idx, read_image_folder,
                      read_label_text, read_lines, read_stl_images, read_stl_labels, read_text_label_tsv,
                      read_usps_h5)

__all__ = ["LOADERS"]


def _concat_splits(*parts: tuple[str, int]) -> dict[str, np.ndarray]:
    """Consecutive index ranges: ``_concat_splits(('train', 60000), ('test', 10000))``."""
    out, start = {}, 0
    for name, n in parts:
        out[name] = np.arange(start, start + n, dtype=np.int64)
        start += n
    return out


def _idx_pair(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    if images.ndim != 3 or len(images) != len(labels):
        raise ValueError(f"{folder}/{prefix}: {images.shape} images vs {labels.shape} labels")
    return images, labels


def _mnist_like(spec, root: Path, folder: str, class_names: list[str]) -> Dataset:
    xtr, ytr = _idx_pair(root / folder, "train")
    xte, yte = _idx_pair(root / folder, "t10k")
    X = np.concatenate([xtr, xte])[..., None]
    y = np.concatenate([ytr, yte])
    return Dataset(spec.name, spec.modality, X, y, spec.n_classes,
                   _concat_splits(("train", len(ytr)), ("test", len(yte))), {"class_names": class_names})


def load_mnist(spec, root: Path) -> Dataset:
    return _mnist_like(spec, root, "mnist", C.MNIST_CLASSES)


def load_fashion_mnist(spec, root: Path) -> Dataset:
    return _mnist_like(spec, root, "fashion_mnist", C.FASHION_MNIST_CLASSES)


def load_2mnist(spec, root: Path) -> Dataset:
    """MNIST ∪ Fashion-MNIST (DCSS §4.1): 140,000 images, Fashion-MNIST labels shifted by 10."""
    m = _mnist_like(spec, root, "mnist", C.MNIST_CLASSES)
    f = _mnist_like(spec, root, "fashion_mnist", C.FASHION_MNIST_CLASSES)
    n = len(m)
    splits = {"train": np.concatenate([m.splits["train"], n + f.splits["train"]]),
              "test": np.concatenate([m.splits["test"], n + f.splits["test"]]),
              "mnist": np.arange(n), "fashion_mnist": n + np.arange(len(f))}
    names = [f"digit {c}" for c in C.MNIST_CLASSES] + C.FASHION_MNIST_CLASSES
    return Dataset(spec.name, spec.modality, np.concatenate([m.X, f.X]), np.concatenate([m.y, f.y + 10]),
                   spec.n_classes, splits, {"class_names": names})


def load_usps(spec, root: Path) -> Dataset:
    parts = read_usps_h5(root / "usps" / "usps.h5")
    X = np.concatenate([parts["train"][0], parts["test"][0]])
    y = np.concatenate([parts["train"][1], parts["test"][1]])
    meta = {"class_names": C.MNIST_CLASSES,
            "pixels": "uint8 = round(255 * x) of the float [0,1] values in usps.h5 (max error 1/510)"}
    return Dataset(spec.name, spec.modality, X, y, spec.n_classes,
                   _concat_splits(("train", len(parts["train"][1])), ("test", len(parts["test"][1]))), meta)


def load_cifar10(spec, root: Path) -> Dataset:
    folder = root / "cifar10" / "cifar-10-batches-py"
    batches = [read_cifar_pickle(folder / f"data_batch_{i}") for i in range(1, 6)]
    test = read_cifar_pickle(folder / "test_batch")
    X = np.concatenate([b[0] for b in batches] + [test[0]])
    y = np.concatenate([b[1] for b in batches] + [test[1]])
    n_train = sum(len(b[1]) for b in batches)
    return Dataset(spec.name, spec.modality, X, y, spec.n_classes,
                   _concat_splits(("train", n_train), ("test", len(test[1]))), {"class_names": C.CIFAR10_CLASSES})


def load_cifar100_20(spec, root: Path) -> Dataset:
    """CIFAR-100 with the 20 super-classes as labels (fine labels mapped by :func:`classes.cifar100_to_20`)."""
    folder = root / "cifar100" / "cifar-100-python"
    mapping = C.cifar100_to_20()
    Xs, ys, sizes = [], [], []
    for part in ("train", "test"):
        X, fine, stored = read_cifar100_pickle(folder / part)
        if len(fine) and (fine.min() < 0 or fine.max() > 99):
            raise ValueError(f"{folder / part}: fine labels must be 0..99")
        coarse = mapping[fine]
        # The pickle carries its own coarse labels: they must agree with the mapping.
        if stored is not None and not np.array_equal(stored, coarse):
            raise ValueError(f"{folder / part}: 'coarse_labels' disagree with the 100→20 mapping "
                             f"on {int((stored != coarse).sum())} images")
        Xs.append(X), ys.append(coarse), sizes.append((part, len(coarse)))
    return Dataset(spec.name, spec.modality, np.concatenate(Xs), np.concatenate(ys), spec.n_classes,
                   _concat_splits(*sizes), {"class_names": sorted(C.CIFAR100_SUPERCLASSES)})


def load_stl10(spec, root: Path) -> Dataset:
    folder = root / "stl10" / "stl10_binary"
    parts = []
    for split in ("train", "test"):
        X, y = read_stl_images(folder / f"{split}_X.bin"), read_stl_labels(folder / f"{split}_y.bin")
        if len(X) != len(y):
            raise ValueError(f"{folder}: {split}_X.bin has {len(X)} images but {split}_y.bin {len(y)} labels")
        parts.append((split, X, y))
    return Dataset(spec.name, spec.modality, np.concatenate([p[1] for p in parts]),
                   np.concatenate([p[2] for p in parts]), spec.n_classes,
                   _concat_splits(*[(p[0], len(p[2])) for p in parts]), {"class_names": C.STL10_CLASSES})


def _decode_cache_dir() -> Path:
    from ..paths import cache_root

    return cache_root() / "decoded"


def _read_folder_cached(name: str, folder: Path, classes: list[str], image_size: int | None,
                        files: dict[str, list[Path]] | None = None, allow_empty: bool = False
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Decode an ImageFolder tree once and keep the uint8 array under ``$DCREPRO_CACHE/decoded``.

    The cache key covers every file's relative path and size and the target size, so adding,
    removing or replacing an image gives a new key.
    """
    if files is None:
        files = {c: list_image_files(folder / c) for c in classes}
    h = hashlib.sha256(f"{name}|{image_size}".encode())
    for c in classes:
        for p in files.get(c, []):
            h.update(f"{p.relative_to(folder)}|{p.stat().st_size}\n".encode())
    path = _decode_cache_dir() / f"{name}-{image_size or 'native'}-{h.hexdigest()[:16]}.npz"
    if path.exists():
        with np.load(path) as z:
            return z["X"], z["y"]
    X, y = read_image_folder(folder, classes, image_size, files=files, progress=True, allow_empty=allow_empty)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, X=X, y=y)
    os.replace(tmp, path)
    return X, y


def _imagenet_subset(spec, root: Path, wnids: dict[str, str], image_size: int | None) -> Dataset:
    folder = root / spec.folder
    classes = sorted(wnids)
    X, y = _read_folder_cached(spec.name, folder, classes, image_size)
    meta = {"class_names": [wnids[w] for w in classes], "wnids": classes, "image_size": image_size}
    return Dataset(spec.name, spec.modality, X, y, spec.n_classes, {}, meta)


def load_imagenet10(spec, root: Path, image_size: int | None = None) -> Dataset:
    return _imagenet_subset(spec, root, C.IMAGENET10_WNIDS, image_size or spec.image_size)


def load_imagenet_dogs(spec, root: Path, image_size: int | None = None) -> Dataset:
    return _imagenet_subset(spec, root, C.IMAGENET_DOGS_WNIDS, image_size or spec.image_size)


def load_tiny_imagenet(spec, root: Path, image_size: int | None = None) -> Dataset:
    """Tiny-ImageNet-200 in its released layout: train/<wnid>/images/*.JPEG, val/ + val_annotations.txt."""
    base = root / "tiny_imagenet" / "tiny-imagenet-200"
    wnids = sorted(w for w in read_lines(base / "wnids.txt") if w.strip())
    size = image_size or spec.image_size
    Xtr, ytr = _read_folder_cached(spec.name + "-train", base / "train", wnids, size)
    ann = np.array([ln.split("\t")[:2] for ln in read_lines(base / "val" / "val_annotations.txt") if ln],
                   dtype=object).reshape(-1, 2)
    val_files = {w: [] for w in wnids}
    for fname, wnid in ann:  # group the validation images by class (a bookkeeping loop over 10k names)
        if wnid not in val_files:
            raise ValueError(f"val_annotations.txt names {wnid!r}, which is not in wnids.txt")
        val_files[wnid].append(base / "val" / "images" / fname)
    Xte, yte = _read_folder_cached(spec.name + "-val", base / "val", wnids, size, files=val_files,
                                   allow_empty=True)
    return Dataset(spec.name, spec.modality, np.concatenate([Xtr, Xte]), np.concatenate([ytr, yte]),
                   spec.n_classes, _concat_splits(("train", len(ytr)), ("test", len(yte))),
                   {"class_names": wnids, "image_size": size})


def _cdac_split(spec, root: Path, folder: str, base: int | None, class_names: list[str] | None) -> Dataset:
    texts, raw, sizes = [], [], []
    for split in ("train", "dev", "test"):
        t, lab = read_text_label_tsv(root / folder / f"{split}.tsv")
        texts.append(t), raw.append(lab), sizes.append((split, len(t)))
    y, raw_classes = labels_to_index(np.concatenate(raw), base=base)
    names = class_names if class_names is not None else [str(c) for c in raw_classes]
    return Dataset(spec.name, spec.modality, np.concatenate(texts), y, spec.n_classes,
                   _concat_splits(*sizes), {"class_names": names})


def load_snips(spec, root: Path) -> Dataset:
    """SNIPS, CDAC+ split; intent names → ids in alphabetical order."""
    return _cdac_split(spec, root, "snips", base=None, class_names=None)


def load_dbpedia(spec, root: Path) -> Dataset:
    """DBPedia-14 subset, CDAC+ split; labels 1..14 → 0..13."""
    return _cdac_split(spec, root, "dbpedia", base=1, class_names=C.DBPEDIA_CLASSES)


def _stc2(spec, root: Path, folder: str, stem: str, class_names: list[str] | None) -> Dataset:
    texts = read_lines(root / folder / f"{stem}.txt")
    raw = read_lines(root / folder / f"{stem}_gnd.txt")
    if len(texts) != len(raw):
        raise ValueError(f"{stem}.txt has {len(texts)} lines but {stem}_gnd.txt has {len(raw)}")
    y, _ = labels_to_index(raw, base=1)
    meta = {"class_names": class_names, "text_version": f"STC2 {stem}.txt (jacoxu/STC2)"}
    return Dataset(spec.name, spec.modality, texts, y, spec.n_classes, {}, meta)


def load_stackoverflow(spec, root: Path) -> Dataset:
    return _stc2(spec, root, "stackoverflow", "StackOverflow", C.STACKOVERFLOW_CLASSES)


def load_biomedical(spec, root: Path) -> Dataset:
    return _stc2(spec, root, "biomedical", "Biomedical", None)


def load_agnews(spec, root: Path) -> Dataset:
    texts, raw = read_label_text(root / "agnews" / "agnewsdataraw-8000")
    y, _ = labels_to_index(raw, base=1)
    return Dataset(spec.name, spec.modality, texts, y, spec.n_classes, {},
                   {"class_names": C.AGNEWS_CLASSES, "text_version": "lower-cased, stop-words removed"})


LOADERS = {
    "mnist": load_mnist, "fashion_mnist": load_fashion_mnist, "2mnist": load_2mnist, "usps": load_usps,
    "cifar10": load_cifar10, "cifar100_20": load_cifar100_20, "stl10": load_stl10,
    "imagenet10": load_imagenet10, "imagenet_dogs": load_imagenet_dogs, "tiny_imagenet": load_tiny_imagenet,
    "snips": load_snips, "dbpedia": load_dbpedia, "stackoverflow": load_stackoverflow,
    "biomedical": load_biomedical, "agnews": load_agnews,
}
