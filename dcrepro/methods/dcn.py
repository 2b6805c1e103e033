"""DCN, Deep Clustering Network (Yang, Fu, Sidiropoulos & Hong, ICML 2017), and "DCN + MNet" (DCSS Table 4).

Registered as method ``dcn`` with outputs ``dcn`` and ``dcn_mnet``. Objective (paper eq. 5):
``L = ℓ(g(f(x)), x) + (λ/2) ||f(x) − M s||²`` with hard assignments s. Alternating per mini-batch
(paper Algorithm 1): one gradient step on the AE with the assignments fixed, then re-assign the batch to
the nearest centre, then move each centre by the running-mean rule ``m_k ← m_k − (1/c_k)(m_k − z_i)``
(paper eq. 8, counts starting at 100 as in the official code ``boyangumn/DCN``). The per-sample rule
is applied in closed form per batch: ``m_k ← (c_k m_k + Σ z_i) / (c_k + n_k)``, identical to the
sequential updates. The AE is the shared pre-trained AE (:mod:`dcrepro.methods.autoencoders`).
:func:`fit_dcn_batched` trains S seeds at once with stacked parameters (``--seeds-per-process``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..seeding import derive_seed
from . import RowOutput, RunContext, params_from_dict, register_batched, register_method
from .autoencoders import (MLPAEParams, batches, encode, encode_stacked, pretrained_start, pretrained_start_batched,
                           seed_batches, sq_dist, x_method_info)
from .mnet import MNetParams, check_mnet_params, with_mnet_outputs, with_mnet_outputs_batched
from .stacked import Stacked

__all__ = ["DCNParams", "run_dcn", "run_dcn_batched", "fit_dcn", "fit_dcn_batched", "dcn_loss", "dcn_centre_step"]


@dataclass
class DCNParams(MNetParams, MLPAEParams):
    """DCN hyper-parameters (AE and MNet fields inherited)."""

    dcn_lambda: float = 0.05
    """λ, weight of the k-means term ``(λ/2)||z − m_s||²`` against the reconstruction MSE. Source: 0.05 in the
    official raw-MNIST script (``run_raw_mnist.py`` lbd = .05) and ClustPy's DCN default; note that the
    official Theano code puts its lbd on the reconstruction term instead (inference: ClustPy's reading)."""
    epochs: int = 50
    """Clustering epochs. Source: official ``run_raw_mnist.py`` (training_epochs = 50); ClustPy default."""
    lr: float = 1e-4
    """Adam learning rate. Source: ClustPy DCN default (the official code's SGD lr 0.05 is tied to its
    sigmoid/BCE AE and is not transferable; declared deviation)."""
    batch_size: int = 256
    """Mini-batch size. Source: ClustPy DCN default (official raw-MNIST script: 128)."""
    initial_count: float = 100.0
    """Initial per-cluster count of the centre step size 1/c_k. Source: official DCN code (via ClustPy)."""


def _check_dcn(p: DCNParams) -> None:
    if p.dcn_lambda < 0 or p.epochs < 0 or p.batch_size < 1 or p.initial_count <= 0:
        raise ValueError(f"need dcn_lambda >= 0, epochs >= 0, batch_size >= 1, initial_count > 0; got "
                         f"{p.dcn_lambda}, {p.epochs}, {p.batch_size}, {p.initial_count}")
    check_mnet_params(p)


def dcn_loss(x: torch.Tensor, x_hat: torch.Tensor, z: torch.Tensor, m: torch.Tensor,
             lam: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch's loss ``MSE(x̂, x) + (λ/2) mean_i ||z_i − m_i||²`` (``m_i`` = the centre sample i is assigned
    to); returns (loss, reconstruction term, k-means term)."""
    rec = nn.functional.mse_loss(x_hat, x)
    km = (z - m).pow(2).sum(1).mean()
    return rec + 0.5 * lam * km, rec, km


def dcn_centre_step(z: torch.Tensor, centres: torch.Tensor,
                    counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Assignment and centre step of one batch of codes ``z``: nearest centres s, then eq. (8) in closed form
    ``m_k ← (c_k m_k + Σ_{s_i=k} z_i) / (c_k + n_k)``; returns (s, new centres, new counts)."""
    s = sq_dist(z, centres).argmin(1)
    n_k = torch.zeros_like(counts).index_add_(0, s, torch.ones_like(s, dtype=counts.dtype))
    sum_k = torch.zeros_like(centres).index_add_(0, s, z)
    return s, (counts[:, None] * centres + sum_k) / (counts + n_k)[:, None], counts + n_k


def fit_dcn(ae: nn.Module, X: torch.Tensor, centres0: np.ndarray, assign0: np.ndarray, p: DCNParams,
            ctx: RunContext) -> tuple[np.ndarray, torch.Tensor, dict]:
    """DCN training, in place on ``ae``; returns nearest-centre labels (eval mode), centres, history."""
    centres = torch.as_tensor(centres0, dtype=X.dtype, device=ctx.device).clone()
    assign = torch.as_tensor(assign0, dtype=torch.long)
    counts = torch.full(centres.shape[:1], float(p.initial_count), dtype=centres.dtype, device=ctx.device)
    opt = torch.optim.Adam(ae.parameters(), lr=p.lr)
    rng = np.random.default_rng(derive_seed(ctx.seed, "dcn_batches"))
    hist: dict = {"loss": [], "rec": [], "kmeans": []}
    for _ in range(p.epochs):
        ae.train()
        sums, n_b = np.zeros(3), 0
        for idx in batches(len(X), p.batch_size, rng):
            x = X[idx].to(ctx.device)
            x_hat, z = ae(x)
            loss, rec, km = dcn_loss(x, x_hat, z, centres[assign[idx].to(ctx.device)], p.dcn_lambda)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():  # assignment and centre steps with the updated network
                s, centres, counts = dcn_centre_step(ae.encode(x), centres, counts)
                assign[idx] = s.cpu()
            sums += [loss.item(), rec.item(), km.item()]
            n_b += 1
        for key, v in zip(("loss", "rec", "kmeans"), sums / max(n_b, 1)):
            hist[key].append(float(v))
    with torch.no_grad():
        labels = sq_dist(encode(ae, X, ctx.device).to(ctx.device), centres).argmin(1).cpu().numpy()
    return labels, centres, hist


def fit_dcn_batched(aes: Stacked, X: torch.Tensor, centres0: np.ndarray, assign0: np.ndarray, p: DCNParams,
                    ctxs: list[RunContext]) -> tuple[list[np.ndarray], torch.Tensor, list[dict]]:
    """:func:`fit_dcn` for S seeds at once, in place on the stacked AEs ``aes`` (seed s = ``ctxs[s]``).

    ``X`` is on the AEs' device and shared by the seeds; ``centres0`` is S×K×d, ``assign0`` S×N. Batch orders
    as in :func:`fit_dcn`, per-seed losses summed (element-wise Adam); assignments, centres, counts and the
    epoch means stay on the device (no per-step host sync; the batch indices go up once per epoch).
    """
    n_seeds = aes.n
    centres = torch.as_tensor(np.asarray(centres0), dtype=X.dtype, device=X.device).clone()
    assign = torch.as_tensor(np.asarray(assign0), dtype=torch.long, device=X.device).clone()
    counts = torch.full(centres.shape[:2], float(p.initial_count), dtype=centres.dtype, device=X.device)
    opt = torch.optim.Adam(aes.parameters(), lr=p.lr)
    rngs = [np.random.default_rng(derive_seed(c.seed, "dcn_batches")) for c in ctxs]
    losses_of = torch.vmap(dcn_loss, in_dims=(0, 0, 0, 0, None))
    step = torch.vmap(dcn_centre_step)
    means = []  # per epoch S×3 (loss, rec, kmeans), float64 on the device
    for _ in range(p.epochs):
        aes.train()
        sums, n_b = torch.zeros(n_seeds, 3, dtype=torch.float64, device=X.device), 0
        for idx in seed_batches(len(X), p.batch_size, rngs, X.device):
            x = X[idx]
            x_hat, z = aes(x)
            m = torch.take_along_dim(centres, assign.gather(1, idx)[..., None], 1)
            loss, rec, km = losses_of(x, x_hat, z, m, p.dcn_lambda)
            opt.zero_grad()
            loss.sum().backward()
            opt.step()
            with torch.no_grad():
                s, centres, counts = step(aes.call("encode", x), centres, counts)
                assign.scatter_(1, idx, s)
            sums += torch.stack([loss, rec, km], 1).detach().double()
            n_b += 1
        means.append(sums / max(n_b, 1))
    with torch.no_grad():
        labels = torch.vmap(sq_dist)(encode_stacked(aes, X), centres).argmin(2).cpu().numpy()
    means = torch.stack(means).cpu().numpy() if means else np.zeros((0, n_seeds, 3))
    hists = [{key: means[:, s, j].tolist() for j, key in enumerate(("loss", "rec", "kmeans"))}
             for s in range(n_seeds)]
    return list(labels), centres, hists


@register_method("dcn", params=DCNParams)
def run_dcn(data, params: dict, ctx: RunContext) -> dict[str, RowOutput]:
    """DCN on ``data``; outputs ``dcn`` and (unless ``with_mnet`` is false) ``dcn_mnet``."""
    p = params_from_dict(DCNParams, params, "dcn")
    _check_dcn(p)
    t0 = time.perf_counter()
    X, ae, ae_info, km = pretrained_start(data, p, ctx)
    labels, centres, hist = fit_dcn(ae, X, km.cluster_centers_, km.labels_, p, ctx)
    info = x_method_info(X, ae_info, hist)
    return with_mnet_outputs("dcn", ae, X, centres, labels, p, ctx, t0, info)


@register_batched("dcn")
def run_dcn_batched(data, params: dict, ctxs: list[RunContext]) -> list[dict[str, RowOutput]]:
    """:func:`run_dcn` for S seeds at once (one context per seed): the same outputs per seed."""
    p = params_from_dict(DCNParams, params, "dcn")
    _check_dcn(p)
    t0 = time.perf_counter()
    X, aes, ae_infos, kms, template = pretrained_start_batched(data, p, ctxs)
    Xd = X.to(ctxs[0].device)
    labels, centres, hists = fit_dcn_batched(aes, Xd, np.stack([km.cluster_centers_ for km in kms]),
                                             np.stack([km.labels_ for km in kms]), p, ctxs)
    infos = [x_method_info(X, i, h) for i, h in zip(ae_infos, hists)]
    return with_mnet_outputs_batched("dcn", aes, Xd, centres, labels, p, ctxs, t0, infos, template)
