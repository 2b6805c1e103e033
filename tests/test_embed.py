"""Sentence embeddings (dcrepro.data.embed): cache keys, atomic cache, encoder resolution, whitening.

Most tests use a fake encoder (no model load); one test loads the bundled all-MiniLM-L6-v2 once
and encodes a handful of sentences (about 5-10 s on this CPU, mostly the model load).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from dcrepro.data import embed as E
from dcrepro.data.transforms import Whitening, whiten


class FakeEncoder:
    """Stands in for a SentenceTransformer: 4-d embeddings from text length and word count."""

    def __init__(self):
        self.calls = 0
        self.max_seq_length = 256

    def encode(self, texts, batch_size, show_progress_bar, convert_to_numpy, normalize_embeddings):
        self.calls += 1
        X = np.array([[len(t), len(t.split()), 1.0, self.max_seq_length] for t in texts], dtype=np.float64)
        if normalize_embeddings:
            X /= np.linalg.norm(X, axis=1, keepdims=True)
        return X


@pytest.fixture
def fake(monkeypatch):
    enc = FakeEncoder()
    monkeypatch.setattr(E, "_get_encoder", lambda name, device, normalize: (enc, 256))
    return enc


def test_cache_hit_miss_and_keys(tmp_path, fake, caplog):
    texts = ["a b", "c d e", "f"]
    caplog.set_level("INFO", logger="dcrepro.data.embed")
    X = E.embed_texts(texts, dataset="toy", cache_dir=tmp_path, device="cpu", progress=False)
    assert X.dtype == np.float32 and X.shape == (3, 4) and fake.calls == 1
    assert "computed" in caplog.text
    path = E.cache_path(texts, dataset="toy", cache_dir=tmp_path)
    assert path.exists() and path.name.startswith("toy__all-MiniLM-L6-v2__original__")
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["n"] == 3 and side["encoder"] == "all-MiniLM-L6-v2" and side["normalize"] is True
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]            # atomic: no temp files left
    # same request (other spelling of the encoder): cache hit, no encode call
    Y = E.embed_texts(np.array(texts, dtype=object), "sentence-transformers/all-MiniLM-L6-v2", dataset="toy",
                      cache_dir=tmp_path, progress=False)
    assert np.array_equal(X, Y) and fake.calls == 1 and "cache hit" in caplog.text
    # every key field gives a new entry
    variants = [dict(texts=texts[:2]), dict(texts=texts[::-1]), dict(view="del_a"), dict(max_length=8),
                dict(normalize=False), dict(dataset="other"), dict(encoder="bert-base-uncased")]
    paths = {path}
    for v in variants:
        kw = {"texts": texts, "dataset": "toy", "cache_dir": tmp_path, **v}
        paths.add(E.cache_path(kw.pop("texts"), kw.pop("encoder", E.DEFAULT_ENCODER), **kw))
    assert len(paths) == len(variants) + 1
    # a text list that differs only in where a separator falls must not collide
    assert E.cache_path(["a", "b c"], cache_dir=tmp_path) != E.cache_path(["a b", "c"], cache_dir=tmp_path)


def test_max_length_and_normalize_reach_the_encoder(tmp_path, fake):
    X = E.embed_texts(["one two"], max_length=7, normalize=False, cache_dir=tmp_path, device="cpu", progress=False)
    assert X[0, 3] == 7 and X[0, 0] == 7.0                                     # unnormalised, limit applied
    Y = E.embed_texts(["one two"], cache_dir=tmp_path, device="cpu", progress=False)
    assert Y[0, 3] < 1 and np.isclose(np.linalg.norm(Y[0]), 1.0)               # default limit restored


def test_stale_cache_with_wrong_rows_is_recomputed(tmp_path, fake):
    path = E.cache_path(["x", "y"], dataset="d", cache_dir=tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.zeros((5, 4), np.float32))
    assert E.embed_texts(["x", "y"], dataset="d", cache_dir=tmp_path, device="cpu", progress=False).shape == (2, 4)
    assert fake.calls == 1


def test_bad_inputs(tmp_path, fake):
    with pytest.raises(TypeError, match="str"):
        E.embed_texts(["ok", 3], cache_dir=tmp_path)
    with pytest.raises(ValueError, match="empty"):
        E.embed_texts([], cache_dir=tmp_path)


def test_encoder_substitution_and_offline_error(monkeypatch):
    assert E.encoder_substitution("all-MiniLM-L6-v2") is None
    assert E.encoder_substitution("sentence-transformers/all-MiniLM-L6-v2") is None
    from dcrepro import encoders

    if encoders._locally_loadable("bert-base-uncased"):
        pytest.skip("bert-base-uncased is in the local Hugging Face cache here")
    assert E.encoder_substitution("bert-base-uncased") == \
        "all-MiniLM-L6-v2 substituted for bert-base-uncased (not available offline)"

    import sentence_transformers

    def offline(*a, **k):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", offline)
    E._load_encoder.cache_clear()
    with pytest.raises(E.EncoderNotAvailable, match="only all-MiniLM-L6-v2 is available"):
        E._load_encoder("bert-base-uncased", "cpu")
    E._load_encoder.cache_clear()


def test_minilm_real_model(tmp_path):
    import torch

    torch.set_num_threads(1)
    texts = ["How do I fill a DataSet from a LINQ query?", "play some jazz music", "book a table for two"]
    X = E.embed_texts(texts, dataset="t", cache_dir=tmp_path, device="cpu", progress=False)
    assert X.shape == (3, 384) and X.dtype == np.float32
    assert np.allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    U = E.embed_texts(texts, dataset="t", normalize=False, cache_dir=tmp_path, device="cpu", progress=False)
    norms = np.linalg.norm(U, axis=1)
    assert np.all(norms > 1.5) and np.allclose(U / norms[:, None], X, atol=1e-5)  # same direction
    short = E.embed_texts(texts[:1], dataset="t", max_length=4, cache_dir=tmp_path, device="cpu", progress=False)
    assert not np.allclose(short[0], X[0], atol=1e-3)                            # truncation changes it
    again = E.embed_texts(texts, dataset="t", cache_dir=tmp_path, device="cpu", progress=False)
    assert np.array_equal(again, X)


# ---------------------------------------------------------------- BERT-whitening

def test_whiten_identity_covariance_and_reuse():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(8, 8))
    X = rng.normal(size=(500, 8)) @ A + 3.0
    Xw, p = whiten(X, 3)
    assert Xw.shape == (500, 3) and Xw.dtype == np.float32 and p["W"].shape == (8, 3)
    assert np.allclose(Xw.mean(0), 0, atol=1e-5)
    assert np.allclose(np.cov(Xw, rowvar=False), np.eye(3), atol=1e-4)
    assert np.allclose((X - p["mu"]) @ p["W"], Xw, atol=1e-4)
    # the leading direction carries the largest variance of the input
    lead = p["W"][:, 0] / np.linalg.norm(p["W"][:, 0])
    top = np.linalg.eigh(np.cov(X, rowvar=False))[1][:, -1]
    assert abs(lead @ top) > 0.999
    w = Whitening(3).fit(X)
    assert np.allclose(w.transform(X[:10]), Xw[:10], atol=1e-5)


def test_whiten_bad_k():
    X = np.random.default_rng(0).normal(size=(20, 4))
    with pytest.raises(ValueError, match="1..4"):
        whiten(X, 5)
    with pytest.raises(RuntimeError, match="before fit"):
        Whitening(2).transform(X)
