"""DKM, Deep k-Means (Moradi Fard, Thonet & Gaussier, Pattern Recognition Letters 2020), and "DKM + MNet".

Registered as method ``dkm`` with outputs ``dkm`` and ``dkm_mnet``. Loss per batch (paper eq. 4, official
code ``MaziarMF/deep-k-means compgraph.py``):
``mean_i ||x_i − x̂_i||² + λ mean_i Σ_k G_k(z_i, α) ||z_i − r_k||²`` with
``G_k = softmax_k(−α ||z_i − r_k||²)``; the AE and the representatives r are learned jointly by Adam.
α follows a schedule: the official pre-trained variant (DKMp: pre-trained AE, k-means-initialised r) keeps
α = 1000 for 20 α-steps of 5 epochs; the annealed variant (DKMa) uses ``α_1 = 0.1``,
``α_i = 2^(1/log(i)²) α_{i−1}`` over 40 steps and in the paper starts from a random AE (here it starts
from the shared pre-trained AE: declared deviation). Prediction: the nearest representative.
:func:`fit_dkm_batched` trains S seeds at once with stacked parameters (``--seeds-per-process``).
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

__all__ = ["DKMParams", "run_dkm", "run_dkm_batched", "fit_dkm", "fit_dkm_batched", "dkm_loss", "alpha_schedule",
           "ALPHA_SCHEDULES"]

ALPHA_SCHEDULES = ("constant", "annealing")


@dataclass
class DKMParams(MNetParams, MLPAEParams):
    """DKM hyper-parameters (AE and MNet fields inherited); defaults = the official pre-trained variant."""

    dkm_lambda: float = 1.0
    """λ, weight of the k-means term. Source: official ``dkm.py`` default (--lambda 1.0)."""
    alpha_schedule: str = "constant"
    """'constant' (DKMp: α = alpha_value throughout) or 'annealing' (DKMa schedule from alpha_start).
    Source: official ``dkm.py`` (-p vs -a)."""
    alpha_value: float = 1000.0
    """α of the constant schedule. Source: official ``dkm.py`` (1000 with pre-training)."""
    alpha_start: float = 0.1
    """α_1 of the annealing schedule. Source: DKM paper §4 / official ``dkm.py``."""
    n_alphas: int = 20
    """Number of α steps: 20 for the constant schedule, 40 for annealing. Source: official ``dkm.py`` (max_n)."""
    epochs_per_alpha: int = 5
    """Epochs per α step. Source: official ``dkm.py`` (--f_epochs 5)."""
    lr: float = 1e-3
    """Adam learning rate. Source: official ``compgraph.py`` (``AdamOptimizer()`` defaults)."""
    batch_size: int = 256
    """Mini-batch size. Source: official ``dkm.py`` (--batch_size 256)."""


def alpha_schedule(p: DKMParams) -> np.ndarray:
    """The α value of every α step (constant, or ``α_i = 2^(1/log(i)²) α_{i−1}`` with natural log)."""
    if p.alpha_schedule == "constant":
        return np.full(p.n_alphas, p.alpha_value, dtype=float)
    i = np.arange(2, p.n_alphas + 1, dtype=float)
    factors = np.concatenate([[1.0], 2.0 ** (1.0 / np.log(i) ** 2)])
    return p.alpha_start * np.cumprod(factors)[: p.n_alphas]


def _check_dkm(p: DKMParams) -> None:
    if p.alpha_schedule not in ALPHA_SCHEDULES:
        raise ValueError(f"alpha_schedule must be one of {list(ALPHA_SCHEDULES)}; got {p.alpha_schedule!r}")
    if p.dkm_lambda < 0 or p.n_alphas < 0 or p.epochs_per_alpha < 0 or p.batch_size < 1:
        raise ValueError(f"need dkm_lambda >= 0, n_alphas >= 0, epochs_per_alpha >= 0, batch_size >= 1; got "
                         f"{p.dkm_lambda}, {p.n_alphas}, {p.epochs_per_alpha}, {p.batch_size}")
    if p.alpha_value <= 0 or p.alpha_start <= 0:
        raise ValueError(f"alpha_value and alpha_start must be > 0; got {p.alpha_value}, {p.alpha_start}")
    check_mnet_params(p)


def dkm_loss(x: torch.Tensor, x_hat: torch.Tensor, z: torch.Tensor, reps: torch.Tensor, alpha: float,
             lam: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch's loss (paper eq. 4): ``mean_i ||x_i − x̂_i||² + λ mean_i Σ_k G_k ||z_i − r_k||²`` with
    ``G = softmax_k(−α ||z_i − r_k||²)`` (shifted by the row minimum); returns (loss, rec, k-means term)."""
    rec = (x_hat - x).pow(2).flatten(1).sum(1).mean()
    d = sq_dist(z, reps)
    g = torch.softmax(-alpha * (d - d.min(1, keepdim=True).values), dim=1)
    km = (g * d).sum(1).mean()
    return rec + lam * km, rec, km


def fit_dkm(ae: nn.Module, X: torch.Tensor, centres0: np.ndarray, p: DKMParams,
            ctx: RunContext) -> tuple[np.ndarray, torch.Tensor, dict]:
    """DKM training, in place on ``ae``; returns nearest-representative labels (eval mode), r and history."""
    reps = nn.Parameter(torch.as_tensor(centres0, dtype=X.dtype, device=ctx.device).clone())
    opt = torch.optim.Adam(list(ae.parameters()) + [reps], lr=p.lr)
    rng = np.random.default_rng(derive_seed(ctx.seed, "dkm_batches"))
    alphas = alpha_schedule(p)
    hist: dict = {"alphas": alphas.tolist(), "loss": [], "rec": [], "kmeans": []}
    for alpha in alphas:
        sums, n_b = np.zeros(3), 0
        for _ in range(p.epochs_per_alpha):
            ae.train()
            for idx in batches(len(X), p.batch_size, rng):
                x = X[idx].to(ctx.device)
                x_hat, z = ae(x)
                loss, rec, km = dkm_loss(x, x_hat, z, reps, alpha, p.dkm_lambda)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sums += [loss.item(), rec.item(), km.item()]
                n_b += 1
        for key, v in zip(("loss", "rec", "kmeans"), sums / max(n_b, 1)):
            hist[key].append(float(v))
    with torch.no_grad():
        labels = sq_dist(encode(ae, X, ctx.device).to(ctx.device), reps).argmin(1).cpu().numpy()
    return labels, reps.detach(), hist


def fit_dkm_batched(aes: Stacked, X: torch.Tensor, centres0: np.ndarray, p: DKMParams,
                    ctxs: list[RunContext]) -> tuple[list[np.ndarray], torch.Tensor, list[dict]]:
    """:func:`fit_dkm` for S seeds at once, in place on the stacked AEs ``aes`` (seed s = ``ctxs[s]``).

    ``X`` is on the AEs' device and shared by the seeds; ``centres0`` (the initial representatives) is
    S×K×d. Batch orders as in :func:`fit_dkm`, per-seed losses summed (element-wise Adam on the AEs and the
    representatives); the per-α means stay on the device (no per-step host sync; the batch indices go up once
    per epoch).
    """
    n_seeds = aes.n
    reps = torch.as_tensor(np.asarray(centres0), dtype=X.dtype, device=X.device).clone().requires_grad_(True)
    opt = torch.optim.Adam(aes.parameters() + [reps], lr=p.lr)
    rngs = [np.random.default_rng(derive_seed(c.seed, "dkm_batches")) for c in ctxs]
    losses_of = torch.vmap(dkm_loss, in_dims=(0, 0, 0, 0, None, None))
    alphas = alpha_schedule(p)
    means = []  # per α step S×3 (loss, rec, kmeans), float64 on the device
    for alpha in alphas:
        sums, n_b = torch.zeros(n_seeds, 3, dtype=torch.float64, device=X.device), 0
        for _ in range(p.epochs_per_alpha):
            aes.train()
            for idx in seed_batches(len(X), p.batch_size, rngs, X.device):
                x = X[idx]
                x_hat, z = aes(x)
                loss, rec, km = losses_of(x, x_hat, z, reps, float(alpha), p.dkm_lambda)
                opt.zero_grad()
                loss.sum().backward()
                opt.step()
                sums += torch.stack([loss, rec, km], 1).detach().double()
                n_b += 1
        means.append(sums / max(n_b, 1))
    with torch.no_grad():
        labels = torch.vmap(sq_dist)(encode_stacked(aes, X), reps).argmin(2).cpu().numpy()
    means = torch.stack(means).cpu().numpy() if means else np.zeros((0, n_seeds, 3))
    keys = ("loss", "rec", "kmeans")
    hists = [{"alphas": alphas.tolist(), **{k: means[:, s, j].tolist() for j, k in enumerate(keys)}}
             for s in range(n_seeds)]
    return list(labels), reps.detach(), hists


@register_method("dkm", params=DKMParams)
def run_dkm(data, params: dict, ctx: RunContext) -> dict[str, RowOutput]:
    """DKM on ``data``; outputs ``dkm`` and (unless ``with_mnet`` is false) ``dkm_mnet``."""
    p = params_from_dict(DKMParams, params, "dkm")
    _check_dkm(p)
    t0 = time.perf_counter()
    X, ae, ae_info, km = pretrained_start(data, p, ctx)
    labels, centres, hist = fit_dkm(ae, X, km.cluster_centers_, p, ctx)
    info = x_method_info(X, ae_info, hist)
    return with_mnet_outputs("dkm", ae, X, centres, labels, p, ctx, t0, info)


@register_batched("dkm")
def run_dkm_batched(data, params: dict, ctxs: list[RunContext]) -> list[dict[str, RowOutput]]:
    """:func:`run_dkm` for S seeds at once (one context per seed): the same outputs per seed."""
    p = params_from_dict(DKMParams, params, "dkm")
    _check_dkm(p)
    t0 = time.perf_counter()
    X, aes, ae_infos, kms, template = pretrained_start_batched(data, p, ctxs)
    Xd = X.to(ctxs[0].device)
    labels, centres, hists = fit_dkm_batched(aes, Xd, np.stack([km.cluster_centers_ for km in kms]), p, ctxs)
    infos = [x_method_info(X, i, h) for i, h in zip(ae_infos, hists)]
    return with_mnet_outputs_batched("dkm", aes, Xd, centres, labels, p, ctxs, t0, infos, template)
