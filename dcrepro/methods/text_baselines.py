"""k-means baselines for short-text clustering: BoW, TF-IDF and sentence-embedding k-means.

Registered methods (one output each, named like the method):

* ``bow_kmeans``, ``tfidf_kmeans``: k-means on the 1,500 most frequent terms (DEC-CRL Table 2's BoW
  and TF-IDF rows, cited there from SCCL: "the length of BoW or TF-IDF vectors is set to 1,500");
* ``embed_kmeans``: k-means on cached sentence embeddings (the "BERT-KM"/"SBERT-KM" style row, also
  DCGLU's BERT-KM re-run), optionally after BERT-whitening to ``whiten_dim`` dimensions.

All three cluster every text of the data set they are given.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from dcrepro.methods import RowOutput, RunContext, params_from_dict, register_method

__all__ = ["TermKMeansParams", "EmbedKMeansParams", "bow_kmeans", "tfidf_kmeans", "embed_kmeans"]

STOP_WORDS = ("english", "none")


@dataclass
class TermKMeansParams:
    """BoW / TF-IDF + k-means."""

    max_features: int = 1500
    """Vocabulary: the most frequent terms (SCCL/DEC-CRL §4.2: 1,500)."""
    stop_words: str = "english"
    """'english' (scikit-learn's list) or 'none' (the vectoriser's own default). Not stated by DEC-CRL or
    SCCL; the DEC-CRL spec runs 'none' and declares 'english' as a reading. This field default stays
    'english' so that runs stored without the key keep meaning what they computed."""
    n_init: int = 10
    """k-means restarts (explicit: scikit-learn's default changed from 10 to 'auto')."""
    max_iter: int = 300
    """k-means iterations per restart (scikit-learn default)."""

    def __post_init__(self) -> None:
        if self.stop_words not in STOP_WORDS:
            raise ValueError(f"stop_words must be one of {list(STOP_WORDS)}, got {self.stop_words!r}")
        if self.max_features < 1 or self.n_init < 1 or self.max_iter < 1:
            raise ValueError("max_features, n_init and max_iter must be >= 1")


@dataclass
class EmbedKMeansParams:
    """Sentence-embedding k-means."""

    encoder: str = "all-MiniLM-L6-v2"
    """Encoder name for :func:`dcrepro.data.embed.embed_texts` (the only offline encoder)."""
    whiten_dim: int = 0
    """BERT-whitening (:func:`dcrepro.data.transforms.whiten`) to this many dimensions before k-means
    (DCGLU: 64); 0 = raw embeddings."""
    max_length: int = 0
    """Encoder token limit; 0 = the encoder's default (MiniLM: 256). DEC-CRL/SCCL truncate at 32."""
    normalize: bool = True
    """L2-normalise the embeddings (sentence-transformers' MiniLM pipeline); False = plain mean pooling."""
    n_init: int = 10
    """k-means restarts."""
    max_iter: int = 300
    """k-means iterations per restart (scikit-learn default)."""

    def __post_init__(self) -> None:
        if self.whiten_dim < 0 or self.max_length < 0 or self.n_init < 1 or self.max_iter < 1:
            raise ValueError("whiten_dim and max_length must be >= 0, n_init and max_iter >= 1")


def _texts(data) -> list[str]:
    if getattr(data, "modality", "text") != "text":
        raise ValueError(f"text k-means needs a text data set, got modality {data.modality!r} ({data.name})")
    return [str(t) for t in data.X]


def _kmeans(x, k: int, n_init: int, max_iter: int, seed: int) -> np.ndarray:
    return KMeans(k, n_init=n_init, max_iter=max_iter, random_state=seed).fit_predict(x).astype(np.int64)


def _term_kmeans(name: str, vectoriser_cls, data, params: dict, ctx: RunContext) -> dict[str, RowOutput]:
    t0 = time.perf_counter()
    p = params_from_dict(TermKMeansParams, params, name)
    vec = vectoriser_cls(max_features=p.max_features, stop_words=None if p.stop_words == "none" else p.stop_words)
    x = vec.fit_transform(_texts(data))
    labels = _kmeans(x, ctx.n_clusters, p.n_init, p.max_iter, ctx.seed)
    info = {"params": asdict(p), "n_features": int(x.shape[1]), "empty_rows": int((x.getnnz(axis=1) == 0).sum())}
    return {name: RowOutput(labels=labels, metrics={"time_s": time.perf_counter() - t0}, info=info)}


@register_method("bow_kmeans", params=TermKMeansParams)
def bow_kmeans(data, params: dict, ctx: RunContext) -> dict[str, RowOutput]:
    """k-means on raw term counts of the ``max_features`` most frequent terms."""
    return _term_kmeans("bow_kmeans", CountVectorizer, data, params, ctx)


@register_method("tfidf_kmeans", params=TermKMeansParams)
def tfidf_kmeans(data, params: dict, ctx: RunContext) -> dict[str, RowOutput]:
    """k-means on L2-normalised TF-IDF vectors of the ``max_features`` most frequent terms."""
    return _term_kmeans("tfidf_kmeans", TfidfVectorizer, data, params, ctx)


@register_method("embed_kmeans", params=EmbedKMeansParams)
def embed_kmeans(data, params: dict, ctx: RunContext, embed_fn: Callable | None = None) -> dict[str, RowOutput]:
    """k-means on the cached sentence embeddings of the texts (optionally whitened).

    ``embed_fn`` replaces :func:`dcrepro.data.embed.embed_texts` (tests).
    """
    t0 = time.perf_counter()
    p = params_from_dict(EmbedKMeansParams, params, "embed_kmeans")
    texts = np.asarray(_texts(data), dtype=object)
    if embed_fn is None:
        from dcrepro.data import embed as _embed

        embed_fn = _embed.embed_texts
    x = np.asarray(embed_fn(texts, p.encoder, dataset=data.name, view="original", max_length=p.max_length or None,
                            normalize=p.normalize), dtype=np.float32)
    if p.whiten_dim:
        from dcrepro.data.transforms import whiten  # BERT-whitening, shared with DCGLU

        x, _ = whiten(x, p.whiten_dim)
    labels = _kmeans(x, ctx.n_clusters, p.n_init, p.max_iter, ctx.seed)
    info = {"params": asdict(p), "dim": int(x.shape[1])}
    return {"embed_kmeans": RowOutput(labels=labels, metrics={"time_s": time.perf_counter() - t0}, info=info)}
