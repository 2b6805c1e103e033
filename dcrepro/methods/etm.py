"""Embedded topic model (ETM) pieces for DEC-CRL's cluster-level representation learning (CRL) module.

Called by :mod:`dcrepro.methods.deccrl`. DEC-CRL (COLING 2022, §3.3) reconstructs each text's bag of
words with an ETM (Dieng et al. 2020) whose topic embeddings are generated from the cluster centroids:

* word embeddings ``rho`` (V x 2L): skip-gram word2vec trained on the data set's own texts with gensim
  and kept fixed (the ETM code's default ``train_embeddings 0``); the paper does not say whether they
  were pre-trained. Cached on disk, they are computed once per (data set, vocabulary, settings);
* topic embeddings ``alpha_k^t = FC_g(c_k ⊕ u_t)`` (eq. 10), ``beta_k = softmax(rho alpha_k)`` over the
  vocabulary, one softmax per topic (eq. 11);
* an inference network on the normalised BoW giving ``(mu, log sigma^2)`` of the logistic-normal topic
  proportions ``theta = softmax(mu + eps sigma)`` (eq. 14; ETM's V -> 800 -> 800 ReLU encoder);
* the negative ELBO (eq. 15): ``-sum_v bow_v log p_v + KL(q || N(0, I))``, one Monte-Carlo sample,
  averaged over the texts of a batch.

How the cluster of a text enters the likelihood is only implicit in the paper (notes, pitfall 4), so
:func:`reconstruction_nll` offers four modes: ``"sample"`` (k_i drawn from s_i = softmax(o_i), the
literal reading), ``"sample_o"`` (k_i drawn from o_i itself), ``"argmax"`` (k_i = argmax_k o_ik) and
``"soft"`` (the mixture sum_k o_ik beta_k theta_i).

Bags of words travel as sparse batches (:class:`BowBatch`) and the first encoder layer is an
``EmbeddingBag``, so a step costs O(non-zeros) there instead of O(batch x V).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from sklearn.feature_extraction.text import CountVectorizer
from torch import nn

__all__ = [
    "CRL_MODES",
    "BowCorpus",
    "BowBatch",
    "build_bow",
    "word2vec_embeddings",
    "TopicInference",
    "ClusterTopicDecoder",
    "reconstruction_nll",
    "gaussian_kl",
]

CRL_MODES = ("sample", "sample_o", "argmax", "soft")
"""How a text's cluster selects the topic-word distributions beta_k (notes, pitfall 4)."""


@dataclass
class BowCorpus:
    """Bag-of-words view of a text set."""

    counts: sp.csr_matrix
    """(N, V) word counts, float32 CSR."""
    vocab: np.ndarray
    """(V,) the words, in column order."""
    tokens: list[list[str]]
    """Each text's tokens after the vectoriser's analyser (the word2vec training corpus)."""

    def batch(self, idx: np.ndarray, device: str | torch.device = "cpu") -> "BowBatch":
        """The sparse batch of rows ``idx``."""
        return BowBatch.from_csr(self.counts[idx], device)


@dataclass
class BowBatch:
    """The non-zeros of a (B, V) count matrix, ready for ``EmbeddingBag`` and per-word likelihoods."""

    doc: torch.Tensor
    """(nnz,) row of each non-zero."""
    word: torch.Tensor
    """(nnz,) vocabulary index of each non-zero."""
    count: torch.Tensor
    """(nnz,) the count."""
    offsets: torch.Tensor
    """(B,) start of each row in ``word`` (CSR indptr without its last entry)."""
    n_docs: int

    @classmethod
    def from_csr(cls, m: sp.csr_matrix, device: str | torch.device = "cpu") -> "BowBatch":
        m = sp.csr_matrix(m)
        m.sort_indices()
        lengths = np.diff(m.indptr)
        to = lambda a, dt: torch.as_tensor(np.asarray(a), dtype=dt, device=device)  # noqa: E731
        return cls(
            doc=to(np.repeat(np.arange(m.shape[0]), lengths), torch.long),
            word=to(m.indices, torch.long),
            count=to(m.data, torch.float32),
            offsets=to(m.indptr[:-1], torch.long),
            n_docs=m.shape[0],
        )

    def normalised_weights(self) -> torch.Tensor:
        """Counts divided by each text's total count (ETM's ``bow_norm``)."""
        totals = torch.zeros(self.n_docs, device=self.count.device).index_add_(0, self.doc, self.count)
        return self.count / totals[self.doc]


def build_bow(texts, min_df: int = 2, max_features: int | None = None, stop_words: str | None = "english") -> BowCorpus:
    """Count the words of ``texts`` with scikit-learn's ``CountVectorizer``.

    Parameters
    ----------
    texts : sequence of str
    min_df : int, default 2
        Keep words occurring in at least this many texts.
    max_features : int or None
        Keep only the most frequent words (None: all).
    stop_words : 'english' or None
        Stop-word list removed before counting.
    """
    vec = CountVectorizer(min_df=min_df, max_features=max_features, stop_words=stop_words, dtype=np.float32)
    counts = vec.fit_transform(list(texts)).tocsr()
    analyse = vec.build_analyzer()
    tokens = [analyse(t) for t in texts]
    return BowCorpus(counts=counts, vocab=vec.get_feature_names_out(), tokens=tokens)


def _stable_hash(s: str) -> int:
    """Interpreter-independent string hash for gensim (its default ``hash`` depends on PYTHONHASHSEED)."""
    return zlib.crc32(s.encode("utf-8"))


def word2vec_embeddings(
    tokens: list[list[str]],
    vocab: np.ndarray,
    dim: int,
    cache_dir: Path | str | None,
    window: int = 5,
    epochs: int = 20,
    negative: int = 5,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Skip-gram word2vec vectors of ``vocab`` trained on ``tokens`` (gensim, one worker: deterministic).

    The result is cached as ``<cache_dir>/word2vec/<sha256>.npy``, keyed by the corpus, the
    vocabulary and every setting, so all seeds of a data set share one training.

    Returns
    -------
    numpy.ndarray
        (V, dim) float32, row v is the vector of ``vocab[v]``.
    """
    h = hashlib.sha256()
    for part in (repr((dim, window, epochs, negative, seed)), "\x00".join(vocab)):
        h.update(part.encode("utf-8"))
    for toks in tokens:
        h.update(("\x01" + " ".join(toks)).encode("utf-8"))
    path = Path(cache_dir) / "word2vec" / f"{h.hexdigest()[:24]}.npy" if cache_dir is not None else None
    if path is not None and path.exists():
        if log:
            log(f"word2vec cache hit: {path}")
        return np.load(path)

    try:
        from gensim.models import Word2Vec
    except ImportError as e:
        raise ImportError(
            f"DEC-CRL's word embeddings rho need gensim (pip install 'dcrepro[text]'), or a cached copy at "
            f"{path or '<cache_dir>/word2vec/<hash>.npy'} made where gensim is installed ({e})") from None

    model = Word2Vec(
        sentences=[t for t in tokens if t],
        vector_size=dim,
        window=window,
        min_count=1,
        sg=1,
        negative=negative,
        epochs=epochs,
        seed=seed,
        workers=1,
        hashfxn=_stable_hash,
    )
    rho = np.stack([model.wv[w] for w in vocab]).astype(np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy.tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, rho)
        os.replace(tmp, path)  # atomic: parallel workers never read a half-written file
        if log:
            log(f"word2vec trained and cached: {path} ({rho.shape})")
    return rho


class TopicInference(nn.Module):
    """q(x_hat | bow*): normalised BoW -> hidden -> hidden -> (mu, log sigma^2) in R^T (ETM's encoder).

    The first layer is ``Linear(V, hidden)`` written as an ``EmbeddingBag`` weighted by the
    normalised counts, initialised like ``nn.Linear``.
    """

    def __init__(self, vocab_size: int, n_topics: int, hidden: int = 800):
        super().__init__()
        bound = 1.0 / np.sqrt(vocab_size)
        self.first = nn.EmbeddingBag(vocab_size, hidden, mode="sum")
        nn.init.uniform_(self.first.weight, -bound, bound)
        self.first_bias = nn.Parameter(torch.empty(hidden).uniform_(-bound, bound))
        self.second = nn.Linear(hidden, hidden)
        self.mu = nn.Linear(hidden, n_topics)
        self.logvar = nn.Linear(hidden, n_topics)

    def forward(self, bow: BowBatch) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.first(bow.word, bow.offsets, per_sample_weights=bow.normalised_weights()) + self.first_bias
        x = F.relu(self.second(F.relu(x)))
        return self.mu(x), self.logvar(x)


class ClusterTopicDecoder(nn.Module):
    """beta_k = softmax(rho' FC_g(c_k ⊕ u_t)): topic-word distributions generated from the centroids.

    Parameters
    ----------
    rho : numpy.ndarray
        (V, 2L) fixed word embeddings.
    latent_dim : int
        L, the size of a centroid and of each u_t.
    n_topics : int
        T.
    hidden : int
        Width of FC_g's single hidden layer (ReLU); FC_g's architecture is not given in the paper.
    """

    def __init__(self, rho: np.ndarray, latent_dim: int, n_topics: int, hidden: int):
        super().__init__()
        if rho.shape[1] != 2 * latent_dim:
            raise ValueError(f"rho must have 2L = {2 * latent_dim} columns, got {rho.shape[1]}")
        self.register_buffer("rho", torch.as_tensor(rho, dtype=torch.float32))
        self.u = nn.Parameter(torch.randn(n_topics, latent_dim) / np.sqrt(latent_dim))
        self.fcg = nn.Sequential(nn.Linear(2 * latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent_dim))

    def topic_embeddings(self, centroids: torch.Tensor) -> torch.Tensor:
        """alpha: (K, T, 2L)."""
        k, t = centroids.shape[0], self.u.shape[0]
        z = torch.cat([centroids[:, None, :].expand(k, t, -1), self.u[None].expand(k, t, -1)], dim=-1)
        return self.fcg(z)

    def log_beta(self, centroids: torch.Tensor) -> torch.Tensor:
        """log beta: (K, T, V), each (k, t) row a log-distribution over the vocabulary."""
        return torch.log_softmax(self.topic_embeddings(centroids) @ self.rho.T, dim=-1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) per row: -1/2 sum(1 + log sigma^2 - mu^2 - sigma^2)."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)


def reconstruction_nll(
    bow: BowBatch, log_theta: torch.Tensor, log_beta: torch.Tensor, q: torch.Tensor, mode: str,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """-sum_v bow_iv log p_i(v) per text, with p_i = beta_{k_i} theta_i (or the ``"soft"`` mixture).

    Parameters
    ----------
    bow : BowBatch
        The batch's words.
    log_theta : torch.Tensor
        (B, T) log topic proportions.
    log_beta : torch.Tensor
        (K, T, V) log topic-word distributions of every cluster.
    q : torch.Tensor
        (B, K) Student-t cluster probabilities o_ik.
    mode : {'sample', 'sample_o', 'argmax', 'soft'}
        ``'sample'``: k_i ~ Cat(softmax(o_i)) (eq. 6 read literally; nearly uniform, no gradient reaches o);
        ``'sample_o'``: k_i ~ Cat(o_i); ``'argmax'``: k_i = argmax_k o_ik; ``'soft'``:
        p_i = sum_k o_ik beta_k theta_i (gradients reach o).
    generator : torch.Generator, optional
        Source of the sampled clusters (None: torch's global RNG).

    Returns
    -------
    torch.Tensor
        (B,) negative log-likelihood of each text (exact log-sum-exp; ETM adds 1e-6 inside the log).
    """
    if mode not in CRL_MODES:
        raise ValueError(f"crl_mode must be one of {list(CRL_MODES)}, got {mode!r}")
    lt = log_theta[bow.doc]  # (nnz, T)
    if mode == "soft":
        lb = log_beta[:, :, bow.word].permute(2, 0, 1)  # (nnz, K, T)
        logp = torch.logsumexp(lb + lt[:, None, :] + torch.log(q[bow.doc] + 1e-12)[:, :, None], dim=(1, 2))
    else:
        with torch.no_grad():
            if mode in ("sample", "sample_o"):
                k = torch.multinomial(torch.softmax(q, dim=1) if mode == "sample" else q, 1,
                                      generator=generator).squeeze(1)
            else:
                k = q.argmax(dim=1)
        lb = log_beta[k[bow.doc], :, bow.word]  # (nnz, T)
        logp = torch.logsumexp(lb + lt, dim=1)
    nll = torch.zeros(bow.n_docs, device=log_theta.device, dtype=log_theta.dtype)
    return nll.index_add(0, bow.doc, -bow.count * logp)
