"""DEC-CRL (Yin et al., COLING 2022): SCCL + FC_e + a cluster-conditioned embedded topic model (CRL).

Registered as method ``deccrl`` with outputs ``deccrl`` (argmax of the cluster head, the primary
prediction) and ``deccrl_km`` (k-means on h). No official code exists; every unknown is a field of
:class:`DECCRLParams` whose docstring says what was chosen and why (``shared/notes/deccrl.md``).

Objective (eq. 16): L = L_CL + lambda_c L_Cluster + lambda_r L_RC, with h = FC_e(encoder(x)) and
L_RC the NELBO of an ETM whose topic embeddings are FC_g(c_k ⊕ u_t) (:mod:`dcrepro.methods.etm`).
The contrastive and cluster parts, the encoder settings and the training loop are SCCL's
(:mod:`dcrepro.methods.sccl`), so SCCL and DEC-CRL differ only in what this module adds.

Table 3 ablations are parameter settings of the same method:

* "Ours w/o CRL": ``lambda_r = 0`` (FC_e + contrastive + cluster loss);
* "Ours w/o CRL w LSR": ``lambda_r = 0, lsr = true``: an auto-encoder L -> L/2 -> L on h with an
  MSE reconstruction loss weighted by ``lambda_lsr`` replaces the CRL (§5.2).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dcrepro.methods import RowOutput, RunContext, params_from_dict, register_method
from dcrepro.methods.etm import (
    CRL_MODES,
    BowBatch,
    ClusterTopicDecoder,
    TopicInference,
    build_bow,
    gaussian_kl,
    reconstruction_nll,
    word2vec_embeddings,
)
from dcrepro.methods.sccl import SCCLParams, build_clusterer, module_rng, outputs_for, stream_generator, train_and_predict

__all__ = ["DECCRLParams", "CRLModule", "LatentAE", "deccrl"]

STOP_WORDS = ("english", "none")


@dataclass
class DECCRLParams(SCCLParams):
    """DEC-CRL hyper-parameters: SCCL's (inherited) plus FC_e, CRL and ablation switches.

    Defaults are the full budget; P = paper, C = lineage code (SCCL / ETM), I = our inference.
    """

    latent_dim: int = 150
    """L, the size of h and c_k. Not given; 2L must equal the word-embedding size, and 300-d word2vec
    (ETM's default ``rho_size``) gives L = 150 (I)."""
    fce_hidden: int = 0
    """FC_e hidden width; 0 = a single Linear(D, L) layer (orthogonal init). Depth and width not given (I)."""
    lambda_r: float | str = 0.01
    """Weight of L_RC. Not given; the middle of the notes' range {1e-3, 1e-2, 1e-1}: the word-summed
    NELBO (~10^2) is far larger than the other losses (I, not tuned). 'auto': the label-free rule
    lambda_r = ||d(lambda_c L_Cluster)/dc|| / ||d L_RC/dc||, both measured on the centroids at
    initialisation on the first batch, so that the CRL's gradient on the centroids does not exceed the
    cluster loss's; the chosen value is recorded as ``info['lambda_r_used']``."""
    lsr_detach_target: bool = False
    """LSR ("w/o CRL w LSR"): False (as built) = MSE(AE(h), h) with gradients through both the
    reconstruction and the target h, which also rewards shrinking h; True = the target h is detached."""
    crl_mode: str = "argmax"
    """Which cluster reconstructs a text: 'sample' (k_i ~ softmax(o_i), eq. 6 read literally), 'sample_o'
    (k_i ~ Cat(o_i), o_i being already a distribution over clusters), 'argmax' (k_i = argmax o_i) or
    'soft' (mixture sum_k o_ik beta_k theta_i) (notes, pitfall 4). Default
    'argmax' by the notes' rule "(b) if (a) does not train", decided label-free: with 'sample' the
    clusters' word distributions stay identical (``beta_js_across_clusters`` ~0.005 nats vs ~0.9 with
    'argmax' on StackOverflow, reduced budget) and the NELBO is the highest, because softmax over
    probabilities is nearly uniform and k_i is almost random (I)."""
    n_topics: int = 5
    """T topics per cluster: 5 (AgNews, StackOverflow), 20 (Biomedical) (P §5.4)."""
    etm_hidden: int = 800
    """Width of the inference network's two hidden layers (C: ETM's t_hidden_size)."""
    fcg_hidden: int = 300
    """FC_g = Linear(2L, fcg_hidden)-ReLU-Linear(fcg_hidden, 2L); architecture not given (I)."""
    bow_min_df: int = 2
    """Vocabulary: words in at least this many texts (I; notes §7)."""
    bow_max_features: int = 0
    """Keep only the most frequent words; 0 = all (the paper's vocabularies are 10-21k words, Table 1)."""
    bow_stop_words: str = "english"
    """'english' (scikit-learn's list; ETM's pre-processing removes stop words) or 'none' (I)."""
    w2v_window: int = 5
    """word2vec context window (C: ETM's skip-gram script; gensim default)."""
    w2v_epochs: int = 20
    """word2vec epochs over the corpus (I: short texts, few tokens)."""
    w2v_negative: int = 5
    """word2vec negative samples (gensim default)."""
    w2v_seed: int = 0
    """word2vec seed; fixed so that rho is shared by all run seeds (I)."""
    lsr: bool = False
    """Table 3 "w/o CRL w LSR": latent-space reconstruction L -> L/2 -> L instead of the CRL (P §5.2)."""
    lambda_lsr: float = 1.0
    """Weight of the LSR's MSE loss; not given (I)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.crl_mode not in CRL_MODES:
            raise ValueError(f"crl_mode must be one of {list(CRL_MODES)}, got {self.crl_mode!r}")
        if self.bow_stop_words not in STOP_WORDS:
            raise ValueError(f"bow_stop_words must be one of {list(STOP_WORDS)}, got {self.bow_stop_words!r}")
        for name in ("latent_dim", "n_topics", "etm_hidden", "fcg_hidden", "bow_min_df", "w2v_window", "w2v_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if isinstance(self.lambda_r, str):
            if self.lambda_r != "auto":
                raise ValueError(f"lambda_r must be a number >= 0 or 'auto', got {self.lambda_r!r}")
        elif self.lambda_r < 0:
            raise ValueError("lambda_r must be >= 0 (or 'auto')")
        if self.lambda_lsr < 0:
            raise ValueError("lambda_lsr must be >= 0")
        if self.lsr and self.crl_on:
            raise ValueError("lsr = true replaces the CRL (Table 3 'w/o CRL w LSR'): set lambda_r = 0 with it")

    @property
    def crl_on(self) -> bool:
        """The CRL term is part of the objective (lambda_r > 0 or 'auto')."""
        return self.lambda_r == "auto" or self.lambda_r > 0


class CRLModule(nn.Module):
    """The CRL: ETM inference network + centroid-conditioned decoder; returns the batch NELBO."""

    def __init__(self, vocab_size: int, rho: np.ndarray, p: DECCRLParams, generator: torch.Generator | None = None):
        super().__init__()
        self.inference = TopicInference(vocab_size, p.n_topics, p.etm_hidden)
        self.decoder = ClusterTopicDecoder(rho, p.latent_dim, p.n_topics, p.fcg_hidden)
        self.mode = p.crl_mode
        self.generator = generator
        """Source of the reparameterisation noise and of sampled clusters (None: torch's global RNG)."""

    def forward(self, bow: BowBatch, centroids: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean over the batch of (NELBO, reconstruction NLL, KL)."""
        mu, logvar = self.inference(bow)
        eps = torch.randn_like(mu) if self.generator is None else \
            torch.randn(mu.shape, generator=self.generator, device=mu.device, dtype=mu.dtype)
        x_hat = mu + eps * torch.exp(0.5 * logvar)
        log_theta = torch.log_softmax(x_hat, dim=1)
        nll = reconstruction_nll(bow, log_theta, self.decoder.log_beta(centroids), q, self.mode, self.generator)
        kl = gaussian_kl(mu, logvar)
        return (nll + kl).mean(), nll.mean(), kl.mean()


class LatentAE(nn.Module):
    """Latent-space reconstruction (LSR): L -> L/2 (ReLU) -> L."""

    def __init__(self, dim: int, detach_target: bool = False):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim // 2), nn.ReLU(), nn.Linear(dim // 2, dim))
        self.detach_target = detach_target

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Mean squared reconstruction error of h (gradients reach h through the input, and through the
        target unless ``detach_target``)."""
        return F.mse_loss(self.net(h), h.detach() if self.detach_target else h)


@torch.no_grad()
def topic_summary(crl: CRLModule, centroids: torch.Tensor, vocab: np.ndarray, n_words: int = 4) -> dict:
    """Label-free facts about the learned CRL.

    ``beta_js_across_clusters``: generalised Jensen-Shannon divergence (nats) between the clusters'
    word distributions p_k = mean_t beta_k^t; 0 when every cluster reconstructs with the same words,
    i.e. when the CRL learned nothing cluster-specific. ``topic_top_words``: the ``n_words`` most
    probable words of every (cluster, topic), as in the paper's Table 4.
    """
    log_beta = crl.decoder.log_beta(centroids)  # (K, T, V)
    p = log_beta.exp().mean(1)  # (K, V)
    entropy = lambda x: -(x * torch.log(x.clamp_min(1e-30))).sum(-1)  # noqa: E731
    js = entropy(p.mean(0)) - entropy(p).mean()
    top = log_beta.topk(n_words, dim=-1).indices.cpu().numpy()  # (K, T, n_words)
    return {"beta_js_across_clusters": float(js), "topic_top_words": vocab[top].tolist()}


def _make_fce(p: DECCRLParams) -> Callable[[int], nn.Module]:
    """FC_e factory. Weights get an orthogonal initialisation and biases zero (I), so that at the start
    h is an isometric projection of the encoder output and the k-means initialisation of the centroids
    sees the encoder's geometry (a default-initialised square layer distorts it)."""

    def make(in_dim: int) -> nn.Module:
        if p.fce_hidden:
            net = nn.Sequential(nn.Linear(in_dim, p.fce_hidden), nn.ReLU(), nn.Linear(p.fce_hidden, p.latent_dim))
        else:
            net = nn.Linear(in_dim, p.latent_dim)
        for m in net.modules():
            if isinstance(m, nn.Linear):
                nn.init.orthogonal_(m.weight)
                nn.init.zeros_(m.bias)
        return net

    return make


@register_method("deccrl", params=DECCRLParams)
def deccrl(data, params: dict, ctx: RunContext, embed_fn: Callable | None = None) -> dict[str, RowOutput]:
    """Run DEC-CRL (or a Table 3 ablation) on all texts of ``data``; outputs ``deccrl`` and ``deccrl_km``.

    ``embed_fn`` replaces :func:`dcrepro.data.embed.embed_texts` (tests).
    """
    t0 = time.perf_counter()
    p = params_from_dict(DECCRLParams, params, "deccrl")
    texts = np.asarray(data.X, dtype=object)
    with module_rng(p, ctx.seed, "model"):
        model = build_clusterer(data, p, ctx, make_latent=_make_fce(p), latent_dim=p.latent_dim, embed_fn=embed_fn)

    extra_modules: tuple[nn.Module, ...] = ()
    extra_loss = calibrate = None
    info_extra: dict = {"variant": "lsr" if p.lsr else ("crl" if p.crl_on else "no_crl")}
    if p.crl_on:
        corpus = build_bow(texts, p.bow_min_df, p.bow_max_features or None,
                           None if p.bow_stop_words == "none" else p.bow_stop_words)
        if corpus.counts.shape[1] == 0:
            raise ValueError(f"empty BoW vocabulary for {data.name} with bow_min_df={p.bow_min_df}")
        t_w2v = time.perf_counter()
        rho = word2vec_embeddings(corpus.tokens, corpus.vocab, 2 * p.latent_dim, ctx.cache_dir,
                                  window=p.w2v_window, epochs=p.w2v_epochs, negative=p.w2v_negative,
                                  seed=p.w2v_seed, log=ctx.log)
        info_extra.update(vocab_size=int(corpus.counts.shape[1]), word2vec_s=time.perf_counter() - t_w2v,
                          texts_without_vocab_words=int((corpus.counts.getnnz(axis=1) == 0).sum()))
        with module_rng(p, ctx.seed, "crl"):
            crl = CRLModule(corpus.counts.shape[1], rho, p, stream_generator(p, ctx.seed, "crl_noise", ctx.device))
        crl = crl.to(ctx.device)
        extra_modules = (crl,)
        weight = {"lambda_r": 1.0 if p.lambda_r == "auto" else p.lambda_r}

        def extra_loss(idx, h0, q):
            nelbo, nll, kl = crl(corpus.batch(idx.cpu().numpy(), ctx.device), model.centroids, q)
            return weight["lambda_r"] * nelbo, {"nelbo": nelbo.detach(), "recon": nll.detach(), "kl": kl.detach()}

        if p.lambda_r == "auto":
            def calibrate(g_crl: float, g_cluster: float) -> float:
                """Label-free lambda_r: the CRL's gradient on the centroids equals the cluster loss's."""
                weight["lambda_r"] = g_cluster / g_crl if g_crl > 0 else 0.0
                return weight["lambda_r"]

    elif p.lsr:
        with module_rng(p, ctx.seed, "lsr"):
            ae = LatentAE(p.latent_dim, p.lsr_detach_target)
        ae = ae.to(ctx.device)
        extra_modules = (ae,)

        def extra_loss(idx, h0, q):
            mse = ae(h0)
            return p.lambda_lsr * mse, {"lsr_mse": mse.detach()}

    labels_model, labels_km, _, info = train_and_predict(model, len(texts), p, ctx, extra_modules, extra_loss,
                                                         calibrate)
    if p.crl_on:
        info_extra.update(topic_summary(crl, model.centroids, corpus.vocab), lambda_r_used=weight["lambda_r"])
    info.update(info_extra)
    return outputs_for("deccrl", labels_model, labels_km, info, p, time.perf_counter() - t0)
