"""DCN, Deep Clustering Network (Yang, Fu, Sidiropoulos & Hong, ICML 2017), and "DCN + MNet" (DCSS Table 4).

Registered as method ``dcn`` with outputs ``dcn`` and ``dcn_mnet``. Objective (paper eq. 5):
``L = ℓ(g(f(x)), x) + (λ/2) ||f(x) − M s||²`` with hard assignments s. Alternating per mini-batch
(paper Algorithm 1): one gradient step on the AE with the assignments fixed, then re-assign the batch to
the nearest centre, then move each centre by the running-mean rule ``m_k ← m_k − (1/c_k)(m_k − z_i)``
(paper eq. 8, counts starting at 100 as in the official code ``boyangumn/DCN``). The per-sample rule
is applied in closed form per batch: ``m_k ← (c_k m_k + Σ z_i) / (c_k + n_k)``, identical to the
sequential updates. The AE is the shared pre-trained AE (:mod:`dcrepro.methods.autoencoders`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..seeding import derive_seed
from . import RowOutput, RunContext, params_from_dict, register_method
from .autoencoders import MLPAEParams, batches, encode, pretrained_start, sq_dist, x_method_info
from .mnet import MNetParams, check_mnet_params, with_mnet_outputs

__all__ = ["DCNParams", "run_dcn"]


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


def fit_dcn(ae: nn.Module, X: torch.Tensor, centres0: np.ndarray, assign0: np.ndarray, p: DCNParams,
            ctx: RunContext) -> tuple[np.ndarray, torch.Tensor, dict]:
    """DCN training, in place on ``ae``; returns nearest-centre labels (eval mode), centres, history."""
    centres = torch.as_tensor(centres0, dtype=torch.float32, device=ctx.device).clone()
    K = centres.shape[0]
    assign = torch.as_tensor(assign0, dtype=torch.long)
    counts = torch.full((K,), float(p.initial_count), device=ctx.device)
    opt = torch.optim.Adam(ae.parameters(), lr=p.lr)
    rng = np.random.default_rng(derive_seed(ctx.seed, "dcn_batches"))
    hist: dict = {"loss": [], "rec": [], "kmeans": []}
    for _ in range(p.epochs):
        ae.train()
        sums, n_b = np.zeros(3), 0
        for idx in batches(len(X), p.batch_size, rng):
            x = X[idx].to(ctx.device)
            x_hat, z = ae(x)
            rec = nn.functional.mse_loss(x_hat, x)
            km = (z - centres[assign[idx].to(ctx.device)]).pow(2).sum(1).mean()
            loss = rec + 0.5 * p.dcn_lambda * km
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():  # assignment and centre steps with the updated network
                zb = ae.encode(x)
                s = sq_dist(zb, centres).argmin(1)
                assign[idx] = s.cpu()
                n_k = torch.bincount(s, minlength=K).to(zb.dtype)
                sum_k = torch.zeros_like(centres).index_add_(0, s, zb)
                centres = (counts[:, None] * centres + sum_k) / (counts + n_k)[:, None]
                counts = counts + n_k
            sums += [loss.item(), rec.item(), km.item()]
            n_b += 1
        for key, v in zip(("loss", "rec", "kmeans"), sums / max(n_b, 1)):
            hist[key].append(float(v))
    with torch.no_grad():
        labels = sq_dist(encode(ae, X, ctx.device).to(ctx.device), centres).argmin(1).cpu().numpy()
    return labels, centres, hist


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
