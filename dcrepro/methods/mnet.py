"""MNet and DCSS phase 2: pairwise self-supervision on top of any encoder and cluster centres.

Called by :mod:`dcrepro.methods.dcss` (phase 2 after DCSSu) and by the DEC family
(:mod:`~dcrepro.methods.dec`, :mod:`~dcrepro.methods.idec`, :mod:`~dcrepro.methods.dcn`,
:mod:`~dcrepro.methods.dkm`) for the "X + MNet" rows of DCSS Table 4, where X's latent space is the u
space and the memberships of the first T2 epochs are eq. (2) around X's centres (an inference, notes §4).

Equations (notes §1, rebuilt from ``Armanfard-Lab/DCSS Codes/DCSS.py``):

* (2) fuzzy memberships ``u_ik ∝ ||z_i − μ_k||^(−2/(m−1))``, rows summing to 1;
* (3) centres ``μ_k = Σ_i u_ik^m z_i / Σ_i u_ik^m`` over the whole data set;
* (4)/(5) ``L = 0.001 Σ_{i,j∈B} [1(S_ij > ζ)(1 − q_i·q_j) + 1(S_ij < γ) q_i·q_j]`` with ``S = u uᵀ`` for
  epochs < T2 and ``S = q qᵀ`` (no gradient) afterwards; entries of q above 0.99 (below 0.01) enter the
  products as the constant 1 (0), so saturated entries pass no gradient.

:func:`train_mnet_batched` is phase 2 for S seeds at once (stacked encoders and MNets).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..seeding import derive_seed, seed_everything
from . import RowOutput
from .autoencoders import _xavier_init, batches, encode, encode_stacked, seed_batches, sq_dist
from .stacked import Stacked

__all__ = ["MNetParams", "MNet", "fuzzy_memberships", "update_centres", "train_mnet", "check_mnet_params",
           "predict_mnet", "with_mnet_outputs", "membership_sharpness", "mnet_health", "train_mnet_batched",
           "memberships_stacked", "update_centres_stacked", "with_mnet_outputs_batched"]


@dataclass
class MNetParams:
    """Hyper-parameters of DCSS phase 2 (MNet), shared by DCSS and the "X + MNet" rows."""

    with_mnet: bool = True
    """Run phase 2 (MNet). False skips it: DCSSagg (Table 2), DCSSu-only sweeps, X without "+ MNet"."""
    m: float = 1.5
    """Fuzziness m of eq. (2) (and of phase 1 in DCSS). Source: DCSS paper §3.1 "1.5 in all experiments"."""
    mnet_epochs: int = 20
    """Phase-2 epochs. Source: DCSS ``train.py`` (MaxIter2 = 20)."""
    t2: int = 5
    """Epoch from which pairs are picked in q space instead of u space. Source: DCSS ``train.py`` (T2 = 5)."""
    zeta: float = 0.8
    """Similarity threshold ζ: pairs with S > ζ are pulled together. Source: DCSS paper §4.7 and code."""
    gamma: float = 0.2
    """Dissimilarity threshold γ: pairs with S < γ are pushed apart. Source: DCSS ``train.py``."""
    mnet_hidden: int = 128
    """Width of MNet's two hidden layers. Source: DCSS ``Network.py Mutual_net``."""
    mnet_lr: float = 1e-3
    """Adam learning rate of MNet. Source: DCSS ``second_phase`` (Adam defaults)."""
    mnet_encoder_lr: float = 1e-5
    """Adam learning rate of the encoder during phase 2. Source: DCSS ``second_phase``."""
    mnet_loss_scale: float = 1e-3
    """Factor on the summed pair loss. Source: DCSS ``second_phase`` (0.001 * sum)."""
    mnet_batch_size: int = 500
    """Phase-2 mini-batch (the loss sums over its B² ordered pairs). Source: DCSS ``train.py``."""
    q_saturation: float = 0.99
    """q entries above this (below 1 − this) enter the pair products as constant 1 (0). Source: DCSS code."""


def check_mnet_params(p: MNetParams) -> None:
    """Raise a ValueError naming the valid range of the first invalid phase-2 parameter."""
    if not p.m > 1:
        raise ValueError(f"m must be > 1 (fuzzy c-means exponent 1/(m-1)); got {p.m}")
    if not 0 <= p.gamma <= p.zeta <= 1:
        raise ValueError(f"thresholds must satisfy 0 <= gamma <= zeta <= 1; got gamma={p.gamma}, zeta={p.zeta}")
    for name in ("mnet_epochs", "t2"):
        if getattr(p, name) < 0:
            raise ValueError(f"{name} must be >= 0; got {getattr(p, name)}")
    if p.mnet_batch_size < 2:
        raise ValueError(f"mnet_batch_size must be >= 2 (BatchNorm); got {p.mnet_batch_size}")
    if not 0.5 < p.q_saturation <= 1:
        raise ValueError(f"q_saturation must lie in (0.5, 1]; got {p.q_saturation}")


class MNet(nn.Module):
    """MLP with softmax output, d→h→BN→ReLU→h→BN→ReLU→K→softmax (DCSS ``Mutual_net``); Xavier init."""

    def __init__(self, latent_dim: int, n_clusters: int, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Linear(hidden, n_clusters), nn.Softmax(dim=1),
        )
        self.apply(_xavier_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def fuzzy_memberships(z: torch.Tensor, centres: torch.Tensor, m: float, eps: float = 1e-12) -> torch.Tensor:
    """Eq. (2): ``u_ik = d_ik^(−1/(m−1)) / Σ_j d_ij^(−1/(m−1))`` with ``d`` the squared distance (+ eps).

    Computed as a softmax of ``−log(d)/(m−1)`` (the same numbers, without overflow when z sits on a centre).
    """
    d2 = sq_dist(z, centres)
    return torch.softmax(-torch.log(d2 + eps) / (m - 1.0), dim=1)


@torch.no_grad()
def update_centres(model: nn.Module, X: torch.Tensor, centres: torch.Tensor, m: float, device: str = "cpu",
                   Z: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. (3) over the whole data set, u from the current encoder (eval mode) and the old centres.

    ``Z`` may pass precomputed codes (then ``model`` and ``X`` are not used).
    """
    Z = encode(model, X, device) if Z is None else Z
    return _centres_from_codes(Z, centres.cpu(), m).to(centres.device, centres.dtype)


def _centres_from_codes(Z: torch.Tensor, centres: torch.Tensor, m: float) -> torch.Tensor:
    """Eq. (3) on codes ``Z`` (N×d) with memberships around ``centres`` (K×d)."""
    w = fuzzy_memberships(Z, centres, m).pow(m)  # N×K
    return (w.T @ Z) / w.sum(0).clamp_min(1e-12)[:, None]


@torch.no_grad()
def membership_sharpness(model: nn.Module, X: torch.Tensor, centres: torch.Tensor, m: float,
                         device: str = "cpu") -> float:
    """Mean over samples of sum_k u_ik^m (eq. 2 memberships around ``centres``): 1/K^(m-1) when uniform,
    1 when one-hot (K = 10, m = 1.5: 0.32 .. 1). Phase 2 finds similar pairs (u_i.u_j > zeta) only when
    the memberships are sharp."""
    w = fuzzy_memberships(encode(model, X, device), centres.cpu(), m).pow(m)
    return float(w.sum(1).mean())


def mnet_health(hist: dict) -> dict[str, float]:
    """Health metrics of phase 2 from :func:`train_mnet`'s history: ``sharpness`` at its start,
    ``similar_pair_share`` of the last epoch and ``similar_pair_share_u`` (mean over the u-space epochs)."""
    out = {"sharpness": hist["mnet_start_sharpness"]}
    shares = hist["mnet_similar_pair_share"]
    if shares:
        out["similar_pair_share"] = shares[-1]
    u_epochs = shares[:hist["mnet_u_epochs"]]
    if u_epochs:
        out["similar_pair_share_u"] = float(np.mean(u_epochs))
    return out


def _pair_loss(q: torch.Tensor, S: torch.Tensor, p: MNetParams) -> tuple[torch.Tensor, int, int]:
    """Eqs. (4)/(5) on one batch; returns the scaled loss and the numbers of similar / dissimilar pairs."""
    hi, lo = p.q_saturation, 1.0 - p.q_saturation
    qc = torch.where(q > hi, torch.ones_like(q), q)
    qc = torch.where(qc < lo, torch.zeros_like(qc), qc)
    P = qc @ qc.T
    similar, dissimilar = S > p.zeta, S < p.gamma
    loss = p.mnet_loss_scale * ((1.0 - P)[similar].sum() + P[dissimilar].sum())
    return loss, int(similar.sum()), int(dissimilar.sum())


def train_mnet(model: nn.Module, X: torch.Tensor, centres: torch.Tensor, n_clusters: int, p: MNetParams,
               seed: int, device: str = "cpu", log=None) -> tuple[np.ndarray, dict]:
    """Phase 2: append an MNet to ``model``'s encoder and train both with the pairwise loss.

    Parameters
    ----------
    model : torch.nn.Module
        Has ``encode(x) -> z`` (an AE: its decoder receives no gradient and is not used). Trained in place.
    X : torch.Tensor
        Prepared inputs of all N samples (CPU).
    centres : torch.Tensor
        K×d cluster centres in z space (from DCSSu, or X's centres for "X + MNet"); updated by eq. (3)
        after each of the first T2 epochs.
    n_clusters : int
        K, the MNet output size.
    p : MNetParams
        Phase-2 hyper-parameters.
    seed : int
        Run seed; MNet init and batch order derive from it.
    device : str
        torch device.

    Returns
    -------
    labels : numpy.ndarray
        argmax_k q_ik of every sample (eval mode), after the last epoch.
    info : dict
        Per-epoch ``mnet_loss``, ``mnet_pairs_similar`` / ``mnet_pairs_dissimilar`` (pairs entering (4)/(5),
        summed over batches; DCSS Fig. 11(a)), ``mnet_similar_pair_share`` (similar pairs / all B^2 pairs
        scored), ``mnet_start_sharpness`` (:func:`membership_sharpness` at the start), ``mnet_u_epochs``
        (epochs that picked pairs in u space), ``mnet_n_clusters_used`` and ``time_mnet_s``.
    """
    check_mnet_params(p)
    t0 = time.perf_counter()
    seed_everything(derive_seed(seed, "mnet_init"))
    latent_dim = centres.shape[1]
    mnet = MNet(latent_dim, n_clusters, p.mnet_hidden).to(device)
    opt_mnet = torch.optim.Adam(mnet.parameters(), lr=p.mnet_lr)
    opt_enc = torch.optim.Adam(model.parameters(), lr=p.mnet_encoder_lr)
    rng = np.random.default_rng(derive_seed(seed, "mnet_batches"))
    centres = centres.detach().clone().to(device)
    hist = {"mnet_loss": [], "mnet_pairs_similar": [], "mnet_pairs_dissimilar": [], "mnet_similar_pair_share": [],
            "mnet_start_sharpness": membership_sharpness(model, X, centres, p.m, device),
            "mnet_u_epochs": min(p.t2, p.mnet_epochs)}
    for epoch in range(p.mnet_epochs):
        model.train()
        mnet.train()
        tot, n_sim, n_dis, n_pairs = 0.0, 0, 0, 0
        for idx in batches(len(X), p.mnet_batch_size, rng):
            z = model.encode(X[idx].to(device))
            q = mnet(z)
            with torch.no_grad():
                u = fuzzy_memberships(z.detach(), centres, p.m)
                S = u @ u.T if epoch < p.t2 else q.detach() @ q.detach().T
            loss, s, d = _pair_loss(q, S, p)
            opt_mnet.zero_grad()
            opt_enc.zero_grad()
            loss.backward()
            opt_mnet.step()
            opt_enc.step()
            tot, n_sim, n_dis, n_pairs = tot + loss.item(), n_sim + s, n_dis + d, n_pairs + len(idx) ** 2
        if epoch < p.t2:
            centres = update_centres(model, X, centres, p.m, device)
        hist["mnet_loss"].append(tot)
        hist["mnet_pairs_similar"].append(n_sim)
        hist["mnet_pairs_dissimilar"].append(n_dis)
        hist["mnet_similar_pair_share"].append(n_sim / max(n_pairs, 1))
        if log is not None:
            log(f"mnet epoch {epoch + 1}/{p.mnet_epochs}: loss {tot:.4g}, pairs similar {n_sim}, dissimilar {n_dis}")
    labels = predict_mnet(model, mnet, X, device)
    hist["mnet_n_clusters_used"] = int(len(np.unique(labels)))
    hist["time_mnet_s"] = time.perf_counter() - t0
    return labels, hist


@torch.no_grad()
def predict_mnet(model: nn.Module, mnet: MNet, X: torch.Tensor, device: str = "cpu") -> np.ndarray:
    """argmax_k MNet(encode(x)) for all samples, both networks in eval mode."""
    mnet.eval()
    Z = encode(model, X, device)
    return np.concatenate([mnet(Z[i:i + 4096].to(device)).argmax(1).cpu().numpy() for i in range(0, len(Z), 4096)])


def with_mnet_outputs(name: str, model: nn.Module, X: torch.Tensor, centres: torch.Tensor, labels: np.ndarray,
                      p: MNetParams, ctx, t_start: float, info: dict) -> dict[str, RowOutput]:
    """The rows of an "X" method: ``name`` (X's own labels) and, unless ``with_mnet`` is false, ``name_mnet``.

    ``name_mnet`` is DCSS phase 2 run on X's trained encoder with X's latent space as the u space and
    memberships by eq. (2) (``p.m``) around X's ``centres`` (Table 4; notes §4, an inference).
    ``t_start`` is when the run began (``time.perf_counter()``); ``time_s`` is cumulative per row.
    """
    t_x = time.perf_counter() - t_start
    out = {name: RowOutput(labels=np.asarray(labels, np.int64), metrics={"time_s": t_x}, info=dict(info))}
    if p.with_mnet:
        q_labels, hist = train_mnet(model, X, centres, ctx.n_clusters, p, ctx.seed, ctx.device, ctx.log)
        out[f"{name}_mnet"] = _mnet_row(name, q_labels, hist, info, t_x)
    return out


def _mnet_row(name: str, q_labels: np.ndarray, hist: dict, info: dict, t_x: float, extra: dict | None = None) -> RowOutput:
    """The "X + MNet" row from phase 2's labels and history (``t_x``: X's own time, so ``time_s`` is cumulative)."""
    common = {k: info[k] for k in ("arch", "n_samples", "pretrain_cache_hit") if k in info}
    return RowOutput(labels=np.asarray(q_labels, np.int64),
                     metrics={"time_s": t_x + hist["time_mnet_s"], "time_phase2_s": hist["time_mnet_s"],
                              **mnet_health(hist)},
                     info={**common, **hist, **(extra or {}),
                           "u_space": f"{name} latent space, eq. (2) memberships around {name}'s centres"})


def with_mnet_outputs_batched(name: str, aes: Stacked, X: torch.Tensor, centres: torch.Tensor,
                              labels: list[np.ndarray], p: MNetParams, ctxs: list, t_start: float,
                              infos: list[dict], template: nn.Module) -> list[dict[str, RowOutput]]:
    """:func:`with_mnet_outputs` for S seeds: per seed the rows ``name`` and (unless ``with_mnet`` is false)
    ``name_mnet``, phase 2 trained for all seeds at once on the stacked encoders ``aes`` around the S×K×d
    ``centres``. Times are the batch's times / S; infos say ``seeds_per_process``."""
    n_seeds = len(ctxs)
    t_x = (time.perf_counter() - t_start) / n_seeds
    extra = {"seeds_per_process": n_seeds}
    outs = [{name: RowOutput(labels=np.asarray(lab, np.int64), metrics={"time_s": t_x}, info={**info, **extra})}
            for lab, info in zip(labels, infos)]
    if p.with_mnet:
        q_labels, hists = train_mnet_batched(aes, X, centres, ctxs[0].n_clusters, p, [c.seed for c in ctxs],
                                             ctxs[0].device, ctxs[0].log, template)
        for out, info, q, hist in zip(outs, infos, q_labels, hists):
            out[f"{name}_mnet"] = _mnet_row(name, q, hist, info, t_x, extra)
    return outs


# ----------------------------------------------------------------------------------------------------
# seeds-batched phase 2 (S seeds at once with stacked encoders and MNets; methods/stacked.py)


def memberships_stacked(Z: torch.Tensor, centres: torch.Tensor, m: float) -> torch.Tensor:
    """Eq. (2) per seed: S×N×K memberships of codes ``Z`` (S×N×d) around ``centres`` (S×K×d)."""
    return torch.vmap(fuzzy_memberships, in_dims=(0, 0, None))(Z, centres, m)


@torch.no_grad()
def update_centres_stacked(aes: Stacked, X: torch.Tensor, centres: torch.Tensor, m: float) -> torch.Tensor:
    """:func:`update_centres` per seed: eq. (3) over all of ``X`` (on the device) with each seed's encoder in eval
    mode; ``centres`` is S×K×d and keeps its dtype."""
    Z = encode_stacked(aes, X)
    return torch.vmap(_centres_from_codes, in_dims=(0, 0, None))(Z, centres, m).to(centres.dtype)


def _pair_terms(q: torch.Tensor, S: torch.Tensor, p: MNetParams) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`_pair_loss` without data-dependent shapes (vmap-able, no host sync): loss and pair counts as tensors."""
    hi, lo = p.q_saturation, 1.0 - p.q_saturation
    qc = torch.where(q > hi, torch.ones_like(q), q)
    qc = torch.where(qc < lo, torch.zeros_like(qc), qc)
    P = qc @ qc.T
    similar, dissimilar = S > p.zeta, S < p.gamma
    zero = torch.zeros_like(P)
    loss = p.mnet_loss_scale * (torch.where(similar, 1.0 - P, zero).sum() + torch.where(dissimilar, P, zero).sum())
    return loss, similar.sum(), dissimilar.sum()


def train_mnet_batched(aes: Stacked, X: torch.Tensor, centres: torch.Tensor, n_clusters: int, p: MNetParams,
                       seeds: list[int], device: str = "cpu", log=None,
                       template: nn.Module | None = None) -> tuple[list[np.ndarray], list[dict]]:
    """:func:`train_mnet` for S seeds at once: ``aes`` holds the S encoders (trained in place), ``centres`` is
    S×K×d, ``seeds[s]`` is seed s's run seed.

    Each seed's MNet is initialised under its own ``derive_seed(seed, "mnet_init")`` (so the global RNGs end
    as the one-seed path leaves them for the last seed) and draws its batches from its own
    ``derive_seed(seed, "mnet_batches")`` stream; the per-seed losses are summed into one backward pass
    (element-wise Adam, so each seed follows its own gradient). ``X`` may be on the CPU or the device; it is
    kept on the device. Losses and pair counts stay on the device until the end. ``template`` (a one-seed
    module of the encoder's architecture) is accepted for callers that pass it and is not needed here.

    Returns
    -------
    labels, infos
        Per seed, what :func:`train_mnet` returns; ``time_mnet_s`` is the batch's time / S.
    """
    check_mnet_params(p)
    t0 = time.perf_counter()
    n_seeds = aes.n
    if len(seeds) != n_seeds or centres.shape[0] != n_seeds:
        raise ValueError(f"train_mnet_batched: {n_seeds} stacked encoders need {n_seeds} seeds and centres; "
                         f"got {len(seeds)} seeds and centres of shape {tuple(centres.shape)}")
    mnets = []
    for seed in seeds:
        seed_everything(derive_seed(seed, "mnet_init"))
        mnets.append(MNet(centres.shape[2], n_clusters, p.mnet_hidden).to(device))
    mnet = Stacked(mnets)
    opt_mnet = torch.optim.Adam(mnet.parameters(), lr=p.mnet_lr)
    opt_enc = torch.optim.Adam(aes.parameters(), lr=p.mnet_encoder_lr)
    rngs = [np.random.default_rng(derive_seed(seed, "mnet_batches")) for seed in seeds]
    X = X.to(device)
    centres = centres.detach().clone().to(device)
    Z = encode_stacked(aes, X)
    start_sharpness = memberships_stacked(Z, centres, p.m).pow(p.m).sum(2).mean(1)
    losses = torch.zeros(p.mnet_epochs, n_seeds, dtype=torch.float64, device=device)
    counts = torch.zeros(p.mnet_epochs, 2, n_seeds, dtype=torch.int64, device=device)  # similar, dissimilar
    pair_terms = torch.vmap(lambda q, S: _pair_terms(q, S, p))
    n_pairs = []
    for epoch in range(p.mnet_epochs):
        aes.train()
        mnet.train()
        pairs = 0
        for idx in seed_batches(len(X), p.mnet_batch_size, rngs, device):
            z = aes.call("encode", X[idx])
            q = mnet(z)
            with torch.no_grad():
                v = memberships_stacked(z.detach(), centres, p.m) if epoch < p.t2 else q.detach()
                S = v @ v.transpose(1, 2)
            loss, s, d = pair_terms(q, S)
            opt_mnet.zero_grad()
            opt_enc.zero_grad()
            loss.sum().backward()
            opt_mnet.step()
            opt_enc.step()
            losses[epoch] += loss.detach()
            counts[epoch] += torch.stack([s, d])
            pairs += idx.shape[1] ** 2
        n_pairs.append(pairs)
        if epoch < p.t2:
            centres = update_centres_stacked(aes, X, centres, p.m)
        if log is not None:
            log(f"mnet epoch {epoch + 1}/{p.mnet_epochs} ({n_seeds} seeds)")
    labels = predict_mnet_stacked(aes, mnet, X)
    losses, counts, start_sharpness = losses.cpu().numpy(), counts.cpu().numpy(), start_sharpness.cpu().numpy()
    share = (time.perf_counter() - t0) / n_seeds
    infos = []
    for s in range(n_seeds):
        sim, dis = counts[:, 0, s].tolist(), counts[:, 1, s].tolist()
        infos.append({"mnet_loss": losses[:, s].tolist(), "mnet_pairs_similar": sim, "mnet_pairs_dissimilar": dis,
                      "mnet_similar_pair_share": [a / max(b, 1) for a, b in zip(sim, n_pairs)],
                      "mnet_start_sharpness": float(start_sharpness[s]), "mnet_u_epochs": min(p.t2, p.mnet_epochs),
                      "mnet_n_clusters_used": int(len(np.unique(labels[s]))), "time_mnet_s": share})
    return list(labels), infos


@torch.no_grad()
def predict_mnet_stacked(aes: Stacked, mnet: Stacked, X: torch.Tensor, batch_size: int = 4096) -> np.ndarray:
    """:func:`predict_mnet` per seed (S×N labels), both stacks in eval mode, ``X`` on their device."""
    mnet.eval()
    Z = encode_stacked(aes, X)
    return torch.cat([mnet(Z[:, i:i + batch_size]).argmax(2) for i in range(0, Z.shape[1], batch_size)], 1).cpu().numpy()
