"""The in-memory data set every method receives, and the errors raised when one cannot be loaded.

:class:`Dataset` is what :func:`dcrepro.data.load_dataset` returns and what the runner hands to a
method (after an optional :meth:`Dataset.subset`). The error classes carry one human-readable
message: which files are missing or corrupt, where they must go, and where they come from.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Dataset", "DataNotAvailable", "ChecksumMismatch", "MODALITIES"]

MODALITIES = ("grey", "rgb", "text", "features")


class DataNotAvailable(RuntimeError):
    """A data set's files are missing or unreadable; the message says what to do about it."""


class ChecksumMismatch(DataNotAvailable):
    """A data set's file is present but its size or hash differs from the registry's."""


@dataclass
class Dataset:
    """A labelled data set held in memory.

    Parameters
    ----------
    name : str
        Canonical id (``'mnist'``, ``'snips'``, ...), see :func:`dcrepro.data.list_datasets`.
    modality : str
        ``'grey'`` | ``'rgb'`` | ``'text'`` | ``'features'``.
    X : numpy.ndarray
        Images: uint8 ``N×H×W×C``; text: 1-d object array of ``str``; features: float32 ``N×D``.
    y : numpy.ndarray
        int64 labels in ``0..n_classes-1``.
    n_classes : int
        Number of ground-truth classes K.
    splits : dict of str to numpy.ndarray
        Named int64 index arrays into ``X`` ('train', 'test', 'dev', ...); always has 'all'.
    meta : dict
        Provenance and facts: display name, source, files, whether sha256 was verified, class names.
    """

    name: str
    modality: str
    X: np.ndarray
    y: np.ndarray
    n_classes: int
    splits: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}; got {self.modality!r}")
        self.y = np.asarray(self.y, dtype=np.int64)
        if len(self.X) != len(self.y):
            raise ValueError(f"{self.name}: X has {len(self.X)} rows but y has {len(self.y)}")
        if self.y.ndim != 1:
            raise ValueError(f"{self.name}: y must be 1-d; got shape {self.y.shape}")
        if len(self.y) and (self.y.min() < 0 or self.y.max() >= self.n_classes):
            raise ValueError(f"{self.name}: labels must lie in 0..{self.n_classes - 1}; "
                             f"got {self.y.min()}..{self.y.max()}")
        self.splits = {k: np.asarray(v, dtype=np.int64) for k, v in self.splits.items()}
        self.splits["all"] = np.arange(len(self.y), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.y)

    def __repr__(self) -> str:
        splits = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())
        return (f"Dataset({self.name!r}, modality={self.modality!r}, n={len(self)}, "
                f"n_classes={self.n_classes}, X={getattr(self.X, 'shape', None)}, splits: {splits})")

    def subset(self, idx) -> "Dataset":
        """Rows ``idx`` of this data set, with every split re-based onto the new rows.

        Parameters
        ----------
        idx : array-like of int, or boolean mask of length N
            Rows to keep, in the order given (no duplicates).

        Returns
        -------
        Dataset
            New arrays (fancy indexing copies). A split keeps the entries that fall inside ``idx``,
            in their original order, renumbered to positions in the subset; 'all' becomes
            ``arange(len(idx))``. ``meta`` is copied and records the parent's size and the subset size.
        """
        idx = np.asarray(idx)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(f"boolean mask must have shape ({len(self)},); got {idx.shape}")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64, copy=False).ravel()
        if len(idx) and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"subset index out of range for a data set of {len(self)} rows")
        idx = np.where(idx < 0, idx + len(self), idx)
        if len(np.unique(idx)) != len(idx):
            raise ValueError("subset indices must be unique")
        position = np.full(len(self), -1, dtype=np.int64)
        position[idx] = np.arange(len(idx))
        splits = {}
        for key, rows in self.splits.items():
            if key == "all":
                continue
            new = position[rows]
            splits[key] = new[new >= 0]
        meta = dict(self.meta)
        meta["subset_of"] = int(meta.get("subset_of", len(self)))
        meta["subset_size"] = int(len(idx))
        return Dataset(self.name, self.modality, self.X[idx], self.y[idx], self.n_classes, splits, meta)
