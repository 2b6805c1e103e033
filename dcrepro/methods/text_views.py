"""Word-deletion text views and the cached sentence embeddings of a text set and its views.

Used by the SCCL and DEC-CRL methods (:mod:`dcrepro.methods.sccl`, :mod:`dcrepro.methods.deccrl`)
and by the embedding k-means baseline (:mod:`dcrepro.methods.text_baselines`).

The papers augment each text twice with nlpaug's *Contextual Augmenter* (word substitution by a masked
language model). No masked LM is available offline (``shared/notes/offline.md``), so every budget here
uses SCCL's own fallback instead: random **word deletion** (nlpaug ``RandomWordAug(action="delete")``
with aug_p 0.2, aug_min 1, as in SCCL's ``AugData/nlpaug_explore.py``). nlpaug is not installed; the
deletion rule is re-implemented below from its documented behaviour: split on whitespace, delete
``ceil(aug_p * n_words)`` words, at least ``aug_min`` and at most ``aug_max``, chosen uniformly at
random. One difference is deliberate: a text never loses all of its words (nlpaug may empty a one-word
text, which leaves the encoder nothing to embed).

Each view has a fixed seed (:data:`VIEW_SEEDS`) independent of the run seed, so the views and their
embeddings are computed once per (data set, encoder, view) and shared by all seeds (the SCCL lineage
also generates its augmented texts once, offline, before training).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["VIEW_SEEDS", "word_deletion", "make_views", "view_embeddings"]

VIEW_SEEDS: dict[str, int] = {"worddel1": 1, "worddel2": 2}
"""Names of the two augmented views (the ``view`` key of the embedding cache) and their fixed seeds."""


def word_deletion(
    texts, seed: int, aug_p: float = 0.2, aug_min: int = 1, aug_max: int | None = 10
) -> np.ndarray:
    """Delete random words from every text (SCCL's ``word_deletion`` augmentation).

    Parameters
    ----------
    texts : sequence of str
        The texts; words are whitespace-separated tokens.
    seed : int
        Seed of this view: the same seed gives the same view.
    aug_p : float, default 0.2
        Fraction of the words to delete (rounded up), nlpaug's ``aug_p`` (SCCL: 0.2).
    aug_min : int, default 1
        Minimum number of deleted words (SCCL: 1).
    aug_max : int or None, default 10
        Maximum number of deleted words (nlpaug's default 10); None for no cap.

    Returns
    -------
    numpy.ndarray of object
        The augmented texts, same length and order as ``texts``. A text keeps at least one word.
    """
    if not 0.0 <= aug_p <= 1.0:
        raise ValueError(f"aug_p must lie in [0, 1], got {aug_p}")
    words = [str(t).split() for t in texts]
    n_words = np.fromiter((len(w) for w in words), dtype=np.int64, count=len(words))
    n_del = np.ceil(aug_p * n_words).astype(np.int64)
    n_del = np.maximum(n_del, aug_min)
    if aug_max is not None:
        n_del = np.minimum(n_del, aug_max)
    n_del = np.clip(n_del, 0, np.maximum(n_words - 1, 0))  # never empty a text

    # Rank the words of each text by a random key; the n_del lowest-ranked are deleted.
    flat = np.array([w for ws in words for w in ws], dtype=object)
    owner = np.repeat(np.arange(len(words)), n_words)
    keys = np.random.default_rng(seed).random(len(flat))
    order = np.lexsort((keys, owner))  # grouped by text, random within a text
    starts = np.concatenate([[0], np.cumsum(n_words)[:-1]])
    rank = np.empty(len(flat), dtype=np.int64)
    rank[order] = np.arange(len(flat)) - np.repeat(starts, n_words)
    keep = rank >= n_del[owner]
    kept_counts = np.bincount(owner[keep], minlength=len(words))
    pieces = np.split(flat[keep], np.cumsum(kept_counts)[:-1])
    return np.array([" ".join(p) for p in pieces], dtype=object)


def make_views(texts, aug_p: float = 0.2, aug_min: int = 1) -> dict[str, np.ndarray]:
    """The two word-deletion views of ``texts``, keyed by the names of :data:`VIEW_SEEDS`."""
    return {name: word_deletion(texts, seed, aug_p=aug_p, aug_min=aug_min) for name, seed in VIEW_SEEDS.items()}


def view_embeddings(
    texts, encoder: str, dataset: str, max_length: int | None = None, embed_fn: Callable | None = None,
    log: Callable[[str], None] | None = None, hits: dict | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cached sentence embeddings of the original texts and of the two word-deletion views.

    The embeddings are mean-pooled token states **without** L2 normalisation, as SCCL's
    ``get_mean_embeddings`` computes them: the Student-t cluster head is scale-dependent, and unit-norm
    vectors (squared distances <= 4) would make its assignments nearly uniform.

    Parameters
    ----------
    texts : sequence of str
        The texts, in data set order.
    encoder : str
        Encoder name understood by :func:`dcrepro.data.embed.embed_texts`.
    dataset : str
        Data set name, part of the embedding cache key.
    max_length : int, optional
        Encoder token limit (SCCL / DEC-CRL: 32); None keeps the encoder's default.
    embed_fn : callable, optional
        ``embed_fn(texts, encoder, dataset=..., view=..., max_length=..., normalize=False) -> (N, D)``; defaults to
        :func:`dcrepro.data.embed.embed_texts`, which caches on disk per (data set, encoder, view).
    log : callable, optional
        Where to report, per view, whether the on-disk cache already holds it (default ``embed_fn`` only).
    hits : dict, optional
        Filled with ``{view: cache hit?}`` (default ``embed_fn`` only).

    Returns
    -------
    tuple of three float32 arrays (N, D)
        Embeddings of the original texts, of view ``worddel1`` and of view ``worddel2``.
    """
    texts = np.asarray(texts, dtype=object)
    views = {"original": texts, **make_views(texts)}
    if embed_fn is None:
        from dcrepro.data import embed as _embed

        fn = _embed.embed_texts
        for name, t in views.items():  # report the cache state before embedding
            path = _embed.cache_path(t, encoder, dataset=dataset, view=name, max_length=max_length, normalize=False)
            if hits is not None:
                hits[name] = path.exists()
            if log is not None:
                log(f"embeddings {dataset}/{name}: {'cache hit' if path.exists() else 'cache miss, encoding'} ({path.name})")
    else:
        fn = embed_fn
    out = [np.asarray(fn(t, encoder, dataset=dataset, view=name, max_length=max_length, normalize=False),
                      dtype=np.float32) for name, t in views.items()]
    if any(o.shape != out[0].shape for o in out):
        raise ValueError(f"view embeddings differ in shape: {[o.shape for o in out]}")
    return out[0], out[1], out[2]
