"""DEC (Xie, Girshick & Farhadi, ICML 2016), with the "DEC + MNet" row of DCSS Table 4.

Registered as method ``dec`` with outputs ``dec`` and ``dec_mnet`` (``with_mnet = false`` skips the
latter). The AE is the shared reconstruction-pre-trained AE of :mod:`dcrepro.methods.autoencoders`
(declared deviation: DEC pre-trains a stacked denoising AE layer-wise, then end to end). The clustering
stage follows the paper and its reference implementation ``XifengGuo/DEC-keras``: Student's t soft
assignment q (α = 1), target p = q²/f renormalised and refreshed every ``update_interval`` iterations,
KL(P‖Q) minimised by SGD on the encoder and the centres, stop when fewer than ``tol`` of the labels
change between two target updates. :func:`fit_dec` is shared with :mod:`dcrepro.methods.idec`.
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

__all__ = ["DECStageParams", "DECParams", "run_dec", "fit_dec", "soft_assign", "target_distribution",
           "effective_update_interval", "UPDATE_INTERVAL_RULES"]

UPDATE_INTERVAL_RULES = ("fixed", "subset_scaled")


@dataclass
class DECStageParams(MNetParams, MLPAEParams):
    """Fields shared by DEC and IDEC's clustering stage (AE and MNet fields inherited)."""

    kmeans_n_init: int = 20
    """k-means restarts for the centre initialisation. Source: DEC paper §3.2 / DEC-keras and IDEC code (20)."""
    batch_size: int = 256
    """Mini-batch size. Source: DEC paper §4.3; IDEC paper §4 (256)."""
    update_interval: int = 140
    """Iterations between target-distribution updates. Source: DEC-keras and IDEC code (140 for MNIST and
    Fashion-MNIST, 30 for USPS: set per data set in the spec)."""
    update_interval_rule: str = "fixed"
    """'fixed': ``update_interval`` iterations whatever the number of samples. 'subset_scaled': on a subset
    of the data set, ``update_interval`` x N_subset / N_full (at least 1), so that a target update covers
    the same share of an epoch as the published setting (140 iterations at batch 256 was set for MNIST's
    70,000 samples, 0.51 epochs; on a 10,000 subset it is 3.6 epochs, and 300 iterations make 3 updates)."""
    tol: float = 0.001
    """Stop when the fraction of changed labels between two target updates is below tol. Source: DEC paper
    §4.3 and IDEC paper §4 (0.1 %)."""
    maxiter: int = 20000
    """Maximum number of iterations (mini-batches). Source: DEC-keras and IDEC code default (2e4)."""
    alpha: float = 1.0
    """Degrees of freedom of the Student's t kernel. Source: DEC paper §3.1.1 (α = 1)."""


@dataclass
class DECParams(DECStageParams):
    """DEC hyper-parameters (defaults = the published values)."""

    lr: float = 0.01
    """SGD learning rate of the clustering stage. Source: DEC paper §4.3; DEC-keras ``SGD(0.01, 0.9)``."""
    momentum: float = 0.9
    """SGD momentum. Source: DEC-keras ``run_exp.py`` (``SGD(0.01, 0.9)``)."""


def soft_assign(z: torch.Tensor, centres: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """DEC eq. (1): ``q_ij ∝ (1 + ||z_i − μ_j||²/α)^(−(α+1)/2)``, rows summing to 1."""
    q = (1.0 + sq_dist(z, centres) / alpha).pow(-(alpha + 1.0) / 2.0)
    return q / q.sum(1, keepdim=True)


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """DEC eq. (3): ``p_ij = (q_ij² / f_j) / Σ_j' (q_ij'² / f_j')`` with ``f_j = Σ_i q_ij``."""
    w = q.pow(2) / q.sum(0)
    return w / w.sum(1, keepdim=True)


def effective_update_interval(p, data) -> int:
    """Iterations between target updates under ``p.update_interval_rule`` for ``data`` (a Dataset that
    records in ``meta['subset_of']`` the size of the data set it was drawn from)."""
    if p.update_interval_rule == "fixed":
        return int(p.update_interval)
    n_full = int(getattr(data, "meta", {}).get("subset_of", len(data)))
    return max(1, int(round(p.update_interval * len(data) / n_full)))


def _check_dec(p) -> None:
    if p.update_interval_rule not in UPDATE_INTERVAL_RULES:
        raise ValueError(f"update_interval_rule must be one of {list(UPDATE_INTERVAL_RULES)}; "
                         f"got {p.update_interval_rule!r}")
    for name in ("batch_size", "update_interval"):
        if getattr(p, name) < 1:
            raise ValueError(f"{name} must be >= 1; got {getattr(p, name)}")
    if p.maxiter < 0 or p.tol < 0 or p.alpha <= 0:
        raise ValueError(f"need maxiter >= 0, tol >= 0, alpha > 0; got maxiter={p.maxiter}, tol={p.tol}, "
                         f"alpha={p.alpha}")
    check_mnet_params(p)


def fit_dec(ae: nn.Module, X: torch.Tensor, centres0: np.ndarray, p, ctx: RunContext, optimizer: str = "sgd",
            lr: float = 0.01, momentum: float = 0.9, rec_weight: float = 0.0, cluster_weight: float = 1.0,
            update_interval: int | None = None) -> tuple[np.ndarray, torch.Tensor, dict]:
    """DEC/IDEC clustering stage, in place on ``ae``.

    Loss per batch: ``cluster_weight · KL(P‖Q)`` (sum over clusters, mean over the batch, as Keras 'kld')
    ``+ rec_weight · MSE(x̂, x)`` (IDEC; 0 for DEC, where the decoder is not used).

    Parameters
    ----------
    ae : torch.nn.Module
        Pre-trained AE (``encode``, ``forward -> (x_hat, z)``).
    X : torch.Tensor
        Prepared inputs.
    centres0 : numpy.ndarray
        K×d initial centres (k-means on the pre-trained codes).
    p : DECStageParams
        Uses ``batch_size``, ``update_interval``, ``tol``, ``maxiter``, ``alpha``.
    optimizer : str
        'sgd' (DEC) or 'adam' (IDEC on MNIST).
    update_interval : int, optional
        Iterations between target updates (default ``p.update_interval``; see
        :func:`effective_update_interval`).

    Returns
    -------
    labels, centres, hist
        argmax q at the end (eval mode), the trained K×d centres, and the history (iterations run,
        whether the tol criterion stopped it, the fraction of changed labels at each target update).
    """
    centres = nn.Parameter(torch.as_tensor(centres0, dtype=torch.float32, device=ctx.device).clone())
    params = list(ae.parameters()) + [centres]
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    elif optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr)
    else:
        raise ValueError(f"optimizer must be one of ['sgd', 'adam']; got {optimizer!r}")
    rng = np.random.default_rng(derive_seed(ctx.seed, "dec_batches"))
    queue: list[np.ndarray] = []
    P = None
    last = None
    interval = int(p.update_interval if update_interval is None else update_interval)
    hist: dict = {"delta_label": [], "loss": [], "stopped_by_tol": False, "iterations": 0,
                  "update_interval_used": interval}
    for ite in range(p.maxiter):
        if ite % interval == 0:
            with torch.no_grad():
                q_all = soft_assign(encode(ae, X, ctx.device).to(ctx.device), centres, p.alpha)
            P = target_distribution(q_all)
            pred = q_all.argmax(1).cpu().numpy()
            if last is not None:
                delta = float(np.mean(pred != last))
                hist["delta_label"].append(delta)
                if delta < p.tol:
                    hist["stopped_by_tol"] = True
                    break
            last = pred
        if not queue:
            queue = batches(len(X), p.batch_size, rng)
        idx = queue.pop()
        x = X[idx].to(ctx.device)
        ae.train()
        if rec_weight > 0:
            x_hat, z = ae(x)
            rec = nn.functional.mse_loss(x_hat, x)
        else:
            z, rec = ae.encode(x), torch.zeros((), device=ctx.device)
        q = soft_assign(z, centres, p.alpha)
        Pb = P[idx]
        kl = (Pb * (torch.log(Pb.clamp_min(1e-12)) - torch.log(q.clamp_min(1e-12)))).sum(1).mean()
        loss = cluster_weight * kl + rec_weight * rec
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist["iterations"] += 1
        if ite % interval == 0:
            hist["loss"].append(loss.item())
    with torch.no_grad():
        labels = soft_assign(encode(ae, X, ctx.device).to(ctx.device), centres, p.alpha).argmax(1).cpu().numpy()
    return labels, centres.detach(), hist


@register_method("dec", params=DECParams)
def run_dec(data, params: dict, ctx: RunContext) -> dict[str, RowOutput]:
    """DEC on ``data``; outputs ``dec`` and (unless ``with_mnet`` is false) ``dec_mnet``."""
    p = params_from_dict(DECParams, params, "dec")
    _check_dec(p)
    t0 = time.perf_counter()
    X, ae, ae_info, km = pretrained_start(data, p, ctx)
    labels, centres, hist = fit_dec(ae, X, km.cluster_centers_, p, ctx, "sgd", p.lr, p.momentum,
                                    update_interval=effective_update_interval(p, data))
    info = x_method_info(X, ae_info, hist)
    return with_mnet_outputs("dec", ae, X, centres, labels, p, ctx, t0, info)
