"""DCSS (Sadeghi & Armanfard): AE pre-training, cluster-specific AE training (DCSSu), MNet (DCSS).

Registered as method ``dcss``. One run yields up to three table rows, so nothing is trained twice:

* ``ae_kmeans`` -- k-means on the latent codes of the reconstruction-only AE (phase 0, Table 1);
* ``dcssu`` -- nearest centre after phase 1 (eqs. 1-3); with ``phase1_mode = "aggregated"`` the row is
  called ``dcssagg`` (Table 2: the K cluster losses summed into one step per batch, K× the epochs);
* ``dcss`` -- argmax of MNet after phase 2 (eqs. 4-5, :mod:`dcrepro.methods.mnet`); skipped when
  ``with_mnet = false``.

Model selection is label-free (last epoch) unless the spec enables ``select_by_labels`` and the runner
passes ``ctx.labels_for_selection`` (the official code's best-ACC checkpointing; notes §6 pitfall 1); the
rows' ``info['model_selection']`` says which was used.
Equations and values: ``shared/notes/dcss.md`` §1-2; official code ``Armanfard-Lab/DCSS@21663bc``.

:func:`run_dcss_batched` (``dcrepro run --seeds-per-process S``) trains S seeds at once with stacked
parameters and gives each seed the rows :func:`run_dcss` gives it (``tests/test_batched.py``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from ..seeding import derive_seed, seed_everything
from . import RowOutput, RunContext, params_from_dict, register_batched, register_method
from .autoencoders import (AEParams, batches, encode, encode_stacked, labels_score, pretrained_start,
                           pretrained_start_batched, seed_batches, selection_labels, sq_dist)
from .mnet import (MNetParams, check_mnet_params, fuzzy_memberships, membership_sharpness, memberships_stacked,
                   mnet_health, train_mnet, train_mnet_batched, update_centres, update_centres_stacked)
from .stacked import Stacked

__all__ = ["DCSSParams", "run_dcss", "run_dcss_batched", "PHASE1_MODES"]

PHASE1_MODES = ("successive", "aggregated")


@dataclass
class DCSSParams(MNetParams, AEParams):
    """DCSS hyper-parameters (defaults = the paper's full budget; AE and phase-2 fields are inherited)."""

    phase1_epochs: int = 200
    """Phase-1 epochs (DCSSu). Source: DCSS ``train.py`` (MaxIter1 = 200); also DSSL ``train.py``."""
    phase1_lr: float = 1e-6
    """SGD learning rate of phase 1 (on summed losses). Source: DCSS ``first_phase``; DSSL identical."""
    phase1_momentum: float = 0.9
    """SGD momentum of phase 1. Source: DCSS ``first_phase``."""
    batch_size: int = 500
    """Phase-1 mini-batch size. Source: DCSS ``train.py``."""
    beta: float = 0.1
    """Weight β of the centring loss (1c). Source: paper §4.8.5 ("from 0 to 0.1") and ``clustering_cost``."""
    t1: int = 2
    """Centre update (3) every T1 epochs, first before the 2nd epoch. Source: paper Fig. 10(c) text; ``train.py``."""
    phase1_mode: str = "successive"
    """'successive' (DCSSu: K optimiser steps per batch, one per cluster loss) or 'aggregated' (DCSSagg,
    Table 2: one step on the summed losses per batch, K× the epochs so the step counts match)."""

    def __post_init__(self) -> None:
        _check(self)


def _check(p: DCSSParams) -> None:
    if p.phase1_mode not in PHASE1_MODES:
        raise ValueError(f"phase1_mode must be one of {list(PHASE1_MODES)}; got {p.phase1_mode!r}")
    if p.t1 < 1:
        raise ValueError(f"t1 must be >= 1 (epochs between centre updates); got {p.t1}")
    if p.phase1_epochs < 0:
        raise ValueError(f"phase1_epochs must be >= 0; got {p.phase1_epochs}")
    if p.batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 (BatchNorm in train mode); got {p.batch_size}")
    if p.beta < 0:
        raise ValueError(f"beta must be >= 0; got {p.beta}")
    check_mnet_params(p)


@torch.no_grad()
def _nearest_centre(ae, X: torch.Tensor, centres: torch.Tensor, m: float, device: str) -> np.ndarray:
    """DCSSu prediction: argmax_k u_ik (= the nearest centre)."""
    return fuzzy_memberships(encode(ae, X, device), centres.cpu(), m).argmax(1).numpy()


def _cluster_loss(x, x_hat, z, w, centres, beta: float, k: int | None):
    """Eq. (1a) of cluster ``k`` with ``w = u^m`` (sums over samples and pixels), or the sum over all
    clusters when ``k`` is None (DCSSagg). Returns (loss, weighted reconstruction (1b), centring (1c))."""
    rec = (x_hat - x).pow(2).flatten(1).sum(1)
    if k is None:
        rec_t, cen_t = (w.sum(1) * rec).sum(), (w * sq_dist(z, centres)).sum()
    else:
        rec_t, cen_t = (w[:, k] * rec).sum(), (w[:, k] * (z - centres[k]).pow(2).sum(1)).sum()
    return rec_t + beta * cen_t, rec_t, cen_t


def _phase1(ae, X: torch.Tensor, centres: torch.Tensor, p: DCSSParams, ctx: RunContext,
            labels: np.ndarray | None) -> tuple[torch.Tensor, dict]:
    """Phase 1 (eqs. 1-3), in place on ``ae``; returns the centres and per-epoch history."""
    K = centres.shape[0]
    aggregated = p.phase1_mode == "aggregated"
    n_epochs = p.phase1_epochs * (K if aggregated else 1)
    opt = torch.optim.SGD(ae.parameters(), lr=p.phase1_lr, momentum=p.phase1_momentum)
    rng = np.random.default_rng(derive_seed(ctx.seed, "phase1_batches"))
    centres = centres.clone().to(ctx.device)
    hist: dict = {"phase1_loss": [], "phase1_rec": [], "phase1_centring": [], "phase1_centre_updates": []}
    best = (-1.0, None, None, -1)
    for epoch in range(n_epochs):
        if epoch >= 1 and (epoch - 1) % p.t1 == 0:  # the code's `T % T1 == 1`, generalised to T1 = 1
            centres = update_centres(ae, X, centres, p.m, ctx.device)
            hist["phase1_centre_updates"].append(epoch)
        ae.train()
        sums = np.zeros(3)
        steps = 0
        for idx in batches(len(X), p.batch_size, rng):
            x = X[idx].to(ctx.device)
            x_hat, z = ae(x)
            w = fuzzy_memberships(z.detach(), centres, p.m).pow(p.m)  # u^m, frozen for the whole batch
            # DCSSu: K successive runs, one optimiser step each (notes §6 pitfall 3); DCSSagg: one summed step
            for j, k in enumerate([None] if aggregated else range(K)):
                if j > 0:
                    x_hat, z = ae(x)
                loss, rec_t, cen_t = _cluster_loss(x, x_hat, z, w, centres, p.beta, k)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sums += [loss.item(), rec_t.item(), cen_t.item()]
                steps += 1
        for key, v in zip(("phase1_loss", "phase1_rec", "phase1_centring"), sums / max(steps, 1)):
            hist[key].append(float(v))
        if labels is not None:
            score = labels_score(labels, _nearest_centre(ae, X, centres, p.m, ctx.device))
            if score > best[0]:
                best = (score, {k: v.detach().clone() for k, v in ae.state_dict().items()}, centres.clone(), epoch)
        ctx.log(f"dcss phase 1 epoch {epoch + 1}/{n_epochs}: loss {hist['phase1_loss'][-1]:.4g}")
    hist["phase1_selected_epoch"] = n_epochs - 1
    if labels is not None and best[1] is not None:
        ae.load_state_dict(best[1])
        centres = best[2]
        hist["phase1_selected_epoch"] = best[3]
    hist["phase1_epochs_run"] = n_epochs
    return centres, hist


@register_method("dcss", params=DCSSParams)
def run_dcss(data, params: dict, ctx: RunContext) -> dict[str, RowOutput]:
    """Run DCSS phases 0, 1 (and 2) on ``data``; see the module docstring for the outputs."""
    p = params_from_dict(DCSSParams, params, "dcss")
    sel = selection_labels(p, ctx)
    t0 = time.perf_counter()
    X, ae, ae_info, km = pretrained_start(data, p, ctx)
    t_ae = time.perf_counter() - t0
    common = {"arch": ae_info["arch"], "n_samples": len(X), "pretrain_cache_hit": ae_info["cache_hit"],
              "model_selection": "best_acc_epoch (labels)" if sel is not None else "last_epoch"}
    out = {"ae_kmeans": RowOutput(
        labels=km.labels_.astype(np.int64),
        metrics={"time_s": t_ae, "time_pretrain_s": ae_info["time_pretrain_s"]},
        info={**common, "pretrain_loss": ae_info["pretrain_loss"],
              "pretrain_selected_epoch": ae_info["pretrain_selected_epoch"], "cache_key": ae_info["cache_key"]})}

    t1 = time.perf_counter()
    centres = torch.as_tensor(km.cluster_centers_, dtype=torch.float32)
    centres, h1 = _phase1(ae, X, centres, p, ctx, sel)
    u_labels = _nearest_centre(ae, X, centres, p.m, ctx.device)
    t_p1 = time.perf_counter() - t1
    row1 = "dcssagg" if p.phase1_mode == "aggregated" else "dcssu"
    out[row1] = RowOutput(labels=u_labels.astype(np.int64),
                          metrics={"time_s": t_ae + t_p1, "time_phase1_s": t_p1,
                                   "sharpness": membership_sharpness(ae, X, centres, p.m, ctx.device)},
                          info={**common, **h1, "phase1_mode": p.phase1_mode})
    if p.with_mnet:
        q_labels, h2 = train_mnet(ae, X, centres, ctx.n_clusters, p, ctx.seed, ctx.device, ctx.log)
        out["dcss"] = RowOutput(labels=q_labels.astype(np.int64),
                                metrics={"time_s": t_ae + t_p1 + h2["time_mnet_s"], "time_phase2_s": h2["time_mnet_s"],
                                         **mnet_health(h2)},
                                info={**common, **h2, "phase1_mode": p.phase1_mode})
    return out


# ----------------------------------------------------------------------------------------------------
# seeds-batched DCSS: S seeds in one process, stacked parameters (methods/stacked.py)


def _phase1_stacked(aes: Stacked, X: torch.Tensor, centres: torch.Tensor, p: DCSSParams, seeds: list[int],
                    log) -> tuple[torch.Tensor, list[dict]]:
    """:func:`_phase1` (label-free) for S stacked AEs; ``X`` on the device, ``centres`` S×K×d. The K successive
    one-step updates per batch run on all seeds at once (per-seed losses summed; SGD is element-wise, so each
    seed takes its own step). Loss sums stay on the device until the end."""
    K = centres.shape[1]
    aggregated = p.phase1_mode == "aggregated"
    n_epochs = p.phase1_epochs * (K if aggregated else 1)
    opt = torch.optim.SGD(aes.parameters(), lr=p.phase1_lr, momentum=p.phase1_momentum)
    rngs = [np.random.default_rng(derive_seed(s, "phase1_batches")) for s in seeds]
    losses = {k: torch.vmap(partial(_cluster_loss, beta=p.beta, k=k)) for k in ([None] if aggregated else range(K))}
    sums = torch.zeros(n_epochs, 3, aes.n, dtype=torch.float64, device=X.device)  # loss, (1b), (1c)
    updates, steps = [], 0
    for epoch in range(n_epochs):
        if epoch >= 1 and (epoch - 1) % p.t1 == 0:
            centres = update_centres_stacked(aes, X, centres, p.m)
            updates.append(epoch)
        aes.train()
        steps = 0
        for idx in seed_batches(len(X), p.batch_size, rngs, X.device):
            x = X[idx]
            x_hat, z = aes(x)
            w = memberships_stacked(z.detach(), centres, p.m).pow(p.m)
            for j, cluster_loss in enumerate(losses.values()):
                if j > 0:
                    x_hat, z = aes(x)
                loss, rec_t, cen_t = cluster_loss(x, x_hat, z, w, centres)
                opt.zero_grad()
                loss.sum().backward()
                opt.step()
                sums[epoch] += torch.stack([loss, rec_t, cen_t]).detach()
                steps += 1
        log(f"dcss phase 1 epoch {epoch + 1}/{n_epochs} ({aes.n} seeds)")
    means = (sums / max(steps, 1)).cpu().numpy()
    hists = [{"phase1_loss": means[:, 0, s].tolist(), "phase1_rec": means[:, 1, s].tolist(),
              "phase1_centring": means[:, 2, s].tolist(), "phase1_centre_updates": list(updates),
              "phase1_selected_epoch": n_epochs - 1, "phase1_epochs_run": n_epochs} for s in range(aes.n)]
    return centres, hists


@register_batched("dcss")
def run_dcss_batched(data, params: dict, ctxs: list[RunContext]) -> list[dict[str, RowOutput]]:
    """:func:`run_dcss` for S seeds (one context each) in one process: the same rows per seed, the AEs and
    MNets of all seeds trained at once with stacked parameters and the data kept on the device.

    Times are the batch's time / S per phase (``info['seeds_per_process']`` says S). With label-based
    selection (best-ACC epochs need k-means/ACC per epoch and seed) each seed runs :func:`run_dcss`.
    """
    p = params_from_dict(DCSSParams, params, "dcss")
    if any(selection_labels(p, c) is not None for c in ctxs):
        outs = []
        for c in ctxs:
            seed_everything(c.seed)
            outs.append(run_dcss(data, params, c))
        return outs
    if len({c.n_clusters for c in ctxs}) != 1:
        raise ValueError(f"a seeds batch needs one K; got n_clusters {sorted({c.n_clusters for c in ctxs})}")
    S, device, seeds = len(ctxs), ctxs[0].device, [c.seed for c in ctxs]
    t0 = time.perf_counter()
    X, aes, ae_infos, kms, template = pretrained_start_batched(data, p, ctxs)
    t_ae = (time.perf_counter() - t0) / S
    Xd = X.to(device)
    common = [{"arch": i["arch"], "n_samples": len(X), "pretrain_cache_hit": i["cache_hit"],
               "model_selection": "last_epoch", "seeds_per_process": S} for i in ae_infos]
    outs = [{"ae_kmeans": RowOutput(
        labels=km.labels_.astype(np.int64),
        metrics={"time_s": t_ae, "time_pretrain_s": info["time_pretrain_s"]},
        info={**c, "pretrain_loss": info["pretrain_loss"], "pretrain_selected_epoch": info["pretrain_selected_epoch"],
              "cache_key": info["cache_key"]})} for km, info, c in zip(kms, ae_infos, common)]

    t1 = time.perf_counter()
    centres = torch.stack([torch.as_tensor(km.cluster_centers_, dtype=torch.float32) for km in kms]).to(device)
    centres, hists = _phase1_stacked(aes, Xd, centres, p, seeds, ctxs[0].log)
    u = memberships_stacked(encode_stacked(aes, Xd), centres, p.m)
    u_labels, sharpness = u.argmax(2).cpu().numpy(), u.pow(p.m).sum(2).mean(1).tolist()
    t_p1 = (time.perf_counter() - t1) / S
    row1 = "dcssagg" if p.phase1_mode == "aggregated" else "dcssu"
    for s, out in enumerate(outs):
        out[row1] = RowOutput(labels=u_labels[s].astype(np.int64),
                              metrics={"time_s": t_ae + t_p1, "time_phase1_s": t_p1, "sharpness": sharpness[s]},
                              info={**common[s], **hists[s], "phase1_mode": p.phase1_mode})
    if p.with_mnet:
        q_labels, h2s = train_mnet_batched(aes, Xd, centres, ctxs[0].n_clusters, p, seeds, device, ctxs[0].log,
                                           template)
        for s, out in enumerate(outs):
            h2 = h2s[s]
            out["dcss"] = RowOutput(labels=q_labels[s].astype(np.int64),
                                    metrics={"time_s": t_ae + t_p1 + h2["time_mnet_s"],
                                             "time_phase2_s": h2["time_mnet_s"], **mnet_health(h2)},
                                    info={**common[s], **h2, "phase1_mode": p.phase1_mode})
    return outs
