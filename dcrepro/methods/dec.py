"""DEC (Xie, Girshick & Farhadi, ICML 2016), with the "DEC + MNet" row of DCSS Table 4.

Registered as method ``dec`` with outputs ``dec`` and ``dec_mnet`` (``with_mnet = false`` skips the
latter). The AE is the shared reconstruction-pre-trained AE of :mod:`dcrepro.methods.autoencoders`
(declared deviation: DEC pre-trains a stacked denoising AE layer-wise, then end to end). The clustering
stage follows the paper and its reference implementation ``XifengGuo/DEC-keras``: Student's t soft
assignment q (α = 1), target p = q²/f renormalised and refreshed every ``update_interval`` iterations,
KL(P‖Q) minimised by SGD on the encoder and the centres, stop when fewer than ``tol`` of the labels
change between two target updates. :func:`fit_dec` is shared with :mod:`dcrepro.methods.idec`.

Seeds-batched path (``dcrepro run --seeds-per-process S``): :func:`fit_dec_batched` trains S seeds' AEs at
once with stacked parameters (:class:`~dcrepro.methods.stacked.Stacked`), each seed with its own batch order
and its own tol stop; :func:`~dcrepro.methods.mnet.with_mnet_outputs_batched` gives the rows of every DEC-family method.
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

__all__ = ["DECStageParams", "DECParams", "run_dec", "run_dec_batched", "fit_dec", "fit_dec_batched", "dec_loss",
           "soft_assign", "target_distribution", "effective_update_interval",
           "UPDATE_INTERVAL_RULES"]

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


def dec_loss(z: torch.Tensor, centres: torch.Tensor, Pb: torch.Tensor, rec: torch.Tensor, alpha: float,
             cluster_weight: float, rec_weight: float) -> torch.Tensor:
    """One batch's loss ``cluster_weight · KL(P‖Q) + rec_weight · rec``: KL summed over clusters and averaged
    over the batch (as Keras 'kld'), Q the soft assignment of the codes ``z``, ``Pb`` the batch's targets."""
    q = soft_assign(z, centres, alpha)
    kl = (Pb * (torch.log(Pb.clamp_min(1e-12)) - torch.log(q.clamp_min(1e-12)))).sum(1).mean()
    return cluster_weight * kl + rec_weight * rec


def _optimizer(params: list, optimizer: str, lr: float, momentum: float) -> torch.optim.Optimizer:
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"optimizer must be one of ['sgd', 'adam']; got {optimizer!r}")


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
    centres = nn.Parameter(torch.as_tensor(centres0, dtype=X.dtype, device=ctx.device).clone())
    opt = _optimizer(list(ae.parameters()) + [centres], optimizer, lr, momentum)
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
        loss = dec_loss(z, centres, P[idx], rec, p.alpha, cluster_weight, rec_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist["iterations"] += 1
        if ite % interval == 0:
            hist["loss"].append(loss.item())
    with torch.no_grad():
        labels = soft_assign(encode(ae, X, ctx.device).to(ctx.device), centres, p.alpha).argmax(1).cpu().numpy()
    return labels, centres.detach(), hist


def fit_dec_batched(aes: Stacked, X: torch.Tensor, centres0: np.ndarray, p, ctxs: list[RunContext],
                    optimizer: str = "sgd", lr: float = 0.01, momentum: float = 0.9, rec_weight: float = 0.0,
                    cluster_weight: float = 1.0, update_interval: int | None = None
                    ) -> tuple[list[np.ndarray], torch.Tensor, list[dict]]:
    """:func:`fit_dec` for S seeds at once, in place on the stacked AEs ``aes`` (seed s = ``ctxs[s]``).

    ``X`` is on the AEs' device and shared by the seeds; ``centres0`` is S×K×d. Each seed draws its batch
    order from its own stream, as :func:`fit_dec` does; the per-seed losses are summed (element-wise
    optimiser). Targets, labels and the tol test stay on the device: one host sync per target update, to
    learn which seeds stop. A seed that stops keeps its state at that point (restored after the loop) while
    the others go on; the loop ends when all have stopped or after ``p.maxiter`` iterations.

    Returns
    -------
    labels, centres, hists
        Per seed what :func:`fit_dec` returns (``centres`` stacked S×K×d).
    """
    n_seeds = aes.n
    centres = torch.as_tensor(np.asarray(centres0), dtype=X.dtype, device=X.device).clone().requires_grad_(True)
    opt = _optimizer(aes.parameters() + [centres], optimizer, lr, momentum)
    rngs = [np.random.default_rng(derive_seed(c.seed, "dec_batches")) for c in ctxs]
    interval = int(p.update_interval if update_interval is None else update_interval)
    assign = torch.vmap(soft_assign, in_dims=(0, 0, None))
    losses_of = torch.vmap(dec_loss, in_dims=(0, 0, 0, 0, None, None, None))
    mse = torch.vmap(nn.functional.mse_loss)
    queue: list[torch.Tensor] = []
    P = last = None
    losses, deltas = [], []  # one S-vector per target update, on the device
    stopped: dict[int, tuple[int, dict, torch.Tensor]] = {}  # seed -> (iteration, its state, its centres)
    for ite in range(p.maxiter):
        if ite % interval == 0:
            with torch.no_grad():
                q_all = assign(encode_stacked(aes, X), centres, p.alpha)
            P = torch.vmap(target_distribution)(q_all)
            pred = q_all.argmax(2)
            if last is not None:
                delta = (pred != last).double().mean(1)
                deltas.append(delta)
                for s in torch.nonzero(delta < p.tol).flatten().tolist():
                    if s not in stopped:
                        stopped[s] = (ite, aes.state_dict(s), centres[s].detach().clone())
                if len(stopped) == n_seeds:
                    break
            last = pred
        if not queue:
            queue = list(seed_batches(len(X), p.batch_size, rngs, X.device))
        idx = queue.pop()
        x = X[idx]
        aes.train()
        if rec_weight > 0:
            x_hat, z = aes(x)
            rec = mse(x_hat, x)
        else:
            z, rec = aes.call("encode", x), torch.zeros(n_seeds, device=X.device)
        loss = losses_of(z, centres, torch.take_along_dim(P, idx[..., None], 1), rec, p.alpha, cluster_weight,
                         rec_weight)
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
        if ite % interval == 0:
            losses.append(loss.detach())
    with torch.no_grad():
        for s, (_, state, c) in stopped.items():
            aes.load_state_dict(s, state)
            centres[s] = c
        labels = assign(encode_stacked(aes, X), centres, p.alpha).argmax(2).cpu().numpy()
    losses = torch.stack(losses).T.tolist() if losses else [[] for _ in range(n_seeds)]
    deltas = torch.stack(deltas).T.tolist() if deltas else [[] for _ in range(n_seeds)]
    hists = []
    for s in range(n_seeds):
        ite = stopped[s][0] if s in stopped else p.maxiter
        n_updates = ite // interval if s in stopped else len(deltas[s])
        hists.append({"delta_label": deltas[s][:n_updates], "loss": losses[s][:-(-ite // interval)],
                      "stopped_by_tol": s in stopped, "iterations": ite, "update_interval_used": interval})
    return list(labels), centres.detach(), hists


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


@register_batched("dec")
def run_dec_batched(data, params: dict, ctxs: list[RunContext]) -> list[dict[str, RowOutput]]:
    """:func:`run_dec` for S seeds at once (one context per seed): the same outputs per seed."""
    p = params_from_dict(DECParams, params, "dec")
    _check_dec(p)
    t0 = time.perf_counter()
    X, aes, ae_infos, kms, template = pretrained_start_batched(data, p, ctxs)
    Xd = X.to(ctxs[0].device)
    labels, centres, hists = fit_dec_batched(aes, Xd, np.stack([km.cluster_centers_ for km in kms]), p, ctxs,
                                             "sgd", p.lr, p.momentum,
                                             update_interval=effective_update_interval(p, data))
    infos = [x_method_info(X, i, h) for i, h in zip(ae_infos, hists)]
    return with_mnet_outputs_batched("dec", aes, Xd, centres, labels, p, ctxs, t0, infos, template)
