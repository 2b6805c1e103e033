"""Reusable array transforms: BERT-whitening, stratified subsets, image → float conversion.

* :class:`Whitening` / :func:`whiten` — BERT-whitening (Su et al. 2021, "Whitening Sentence
  Representations for Better Semantics and Faster Retrieval"): DCGLU feeds 64-d whitened BERT
  features to DeepDPM (DCGLU App. B.3). Fit on one set, apply to another with ``transform``.
* :func:`stratified_subset` — the runner's fixed-seed subset of a data set for reduced budgets.
* :func:`images_to_float` — uint8 N×H×W×C → float32 in [0, 1], in the layout a model wants.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Whitening", "whiten", "stratified_subset", "images_to_float"]


@dataclass
class Whitening:
    """BERT-whitening to ``k`` dimensions: ``x̃ = (x − μ) W[:, :k]`` with ``W = U S^{-1/2}``.

    ``μ`` is the mean and ``Σ = U S Uᵀ`` the SVD of the covariance of the fitting data
    (Su et al. 2021, eqs. 4-6).
    """

    k: int
    """Output dimension (DCGLU: 64, App. B.3)."""
    eps: float = 1e-12
    """Floor on the eigenvalues before ``S^{-1/2}`` (guards rank-deficient inputs; inference)."""
    mu: np.ndarray | None = None
    W: np.ndarray | None = None

    def fit(self, X) -> "Whitening":
        """Estimate ``μ`` and ``W`` from ``X`` (N×D, N ≥ 2); computed in float64."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or len(X) < 2:
            raise ValueError(f"whitening needs an N×D array with N >= 2; got shape {X.shape}")
        if not 1 <= self.k <= X.shape[1]:
            raise ValueError(f"k must be in 1..{X.shape[1]} (the input dimension); got {self.k}")
        self.mu = X.mean(axis=0)
        cov = np.cov(X - self.mu, rowvar=False)
        U, S, _ = np.linalg.svd(cov)
        self.W = U[:, : self.k] / np.sqrt(np.maximum(S[: self.k], self.eps))
        return self

    def transform(self, X) -> np.ndarray:
        """Whiten ``X`` with the fitted ``μ, W``; returns float32 N×k."""
        if self.W is None:
            raise RuntimeError("Whitening.transform called before fit")
        return ((np.asarray(X, dtype=np.float64) - self.mu) @ self.W).astype(np.float32)

    def fit_transform(self, X) -> np.ndarray:
        return self.fit(X).transform(X)


def whiten(X, k: int) -> tuple[np.ndarray, dict]:
    """BERT-whitening of ``X`` to ``k`` dimensions (fit and apply on the same data).

    Parameters
    ----------
    X : array-like, N×D
    k : int
        Number of leading whitened directions kept, ``1 <= k <= D``.

    Returns
    -------
    Xw : numpy.ndarray
        float32 N×k; its covariance is the identity (up to the ``eps`` floor).
    params : dict
        ``{'mu': D-vector, 'W': D×k matrix, 'k': k}``: apply to new data as ``(x - mu) @ W``.
    """
    w = Whitening(k).fit(X)
    return w.transform(X), {"mu": w.mu, "W": w.W, "k": k}


def stratified_subset(y, n: int, seed: int = 0) -> np.ndarray:
    """Indices of a class-stratified random subset of size ``n``.

    Each class gets ``floor(n · n_c / N)`` rows, and the rows left over go to the classes with the largest
    remainders (ties: lower class id), so proportions are kept to within one row per class.

    Parameters
    ----------
    y : array-like of int
        Labels of the full set.
    n : int
        Subset size; ``n >= len(y)`` returns every index.
    seed : int
        Seed of the ``numpy.random.default_rng`` that picks the rows inside each class.

    Returns
    -------
    numpy.ndarray
        Sorted int64 indices into ``y``.
    """
    y = np.asarray(y)
    N = len(y)
    if n < 0:
        raise ValueError(f"subset size must be >= 0; got {n}")
    if n >= N:
        return np.arange(N, dtype=np.int64)
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    exact = n * counts / N
    take = np.floor(exact).astype(np.int64)
    order = np.lexsort((np.arange(len(classes)), -(exact - take)))
    take[order[: n - take.sum()]] += 1
    rng = np.random.default_rng(seed)
    # Random rank of every row inside its class: sort by (class, random key), then keep the first take[c].
    keys = rng.random(N)
    by_class = np.lexsort((keys, inverse))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(N, dtype=np.int64)
    rank[by_class] = np.arange(N) - np.repeat(starts, counts)
    return np.flatnonzero(rank < take[inverse]).astype(np.int64)


def images_to_float(X, layout: str = "nchw") -> np.ndarray:
    """uint8 images N×H×W×C → float32 in [0, 1].

    Parameters
    ----------
    X : numpy.ndarray
        uint8 N×H×W×C (as in :class:`~dcrepro.data.Dataset`).
    layout : {'nchw', 'nhwc', 'flat'}
        'nchw' for torch convolutions, 'nhwc' unchanged, 'flat' = N×(H·W·C) for MLPs
        (row-major over H, W, C, so grey images flatten exactly like the raw 28×28 arrays).
    """
    X = np.asarray(X)
    if X.ndim != 4:
        raise ValueError(f"expected N×H×W×C images; got shape {X.shape}")
    out = X.astype(np.float32) / 255.0 if X.dtype == np.uint8 else X.astype(np.float32)
    if layout == "nchw":
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2))
    if layout == "nhwc":
        return out
    if layout == "flat":
        return out.reshape(len(out), -1)
    raise ValueError(f"layout must be one of 'nchw', 'nhwc', 'flat'; got {layout!r}")
