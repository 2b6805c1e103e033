"""RPSC (Robust Pseudo-Labeling for Semantic Clustering, AAAI 2024): RPSC-Self (eq. 1-5) and RPSC-Semi (eq. 6-9).

Runs on a frozen backbone's cached features (``<set>@moco``, L2-normalised MoCo-v2 features as SPICE's) and
the cached features of a pool of weak and strong views (:mod:`dcrepro.backbones.views`); everything here is
tensors, no images. Notes: ``shared/notes/rpsc.md`` (P paper, C lineage code, I inference).

RPSC-Self, per epoch, for every large batch of M images (``big_batch``):

1. probabilities of each of the ``n_heads`` BYOL heads (Linear-BN-ReLU-Linear, softmax) on branch 1 (the clean
   features; Table 3 "1-Aug = Yes": a weak view), in eval mode;
2. eq. 1: per cluster the top n = γM/C samples; eq. 2: centre Γ_c = mean of their features;
3. pseudo-labels: the ``nc_ratio``·M/C nearest samples (cosine) of Γ_c get label c (SPICE ``select_samples``;
   a sample may be in several N_c: kept, pitfall 6); eq. 3: d_ic = ‖F_i − Γ_c‖ / max_{j∈N_c} ‖F_j − Γ_c‖;
4. ``num_repeat`` shuffled passes over the pseudo-labelled set in sub-batches of ``sub_batch`` on branch 2 (a
   strong view drawn from the pool; Table 3 "2-Aug = No": clean features), loss :func:`scl_loss` (eq. 4-5) or CE,
   mean over heads, Adam (SPICE ``train_self_v2.py``).

After training, the head with the minimum loss over the whole data set (same pseudo-labelling, clean features,
eval mode; never the labels) predicts. Eq. 4's d_ic sits inside a cosine similarity, where it has no effect
(cos(z, d·e_c) = cos(z, e_c)); the reading ``scl_confidence`` scales the numerator's logit instead: 'one_minus_d'
(default: the paper's stated intent, confident = near the centre, weighs more), 'd' (the printed value), 'none'.

RPSC-Semi (``semi = true``; output ``semi``): centres of the selected head over all N images (eq. 1-2), label
l_i = argmax_c cos(F_i, Γ_c), reliable if more than ``semi_tau_t`` of its ``semi_ne`` cosine neighbours share
it (eq. 6), then FreeMatch (self-adaptive thresholds; fairness term weight ``semi_fairness``) with the reliable
images as the labelled set and all images unlabelled, weak / strong views from the pool (eq. 7-9). Which network
is retrained is a reading (``semi_network``): 'head' = the selected head on the frozen backbone (Fig. 2's
caption), 'mlp' = a fresh head of the same shape. Predictions: the EMA model's argmax on the clean features.

Health signals (``RowOutput.metrics``): ``pl_share_min``/``pl_share_max`` (share of the pseudo-labels per
cluster; uniform by construction in RPSC-Self, whose N_c all have the same size), ``pl_coverage`` (distinct
images pseudo-labelled / N), ``scl_head_spread`` (max − min of the heads' selection losses), ``mask_rate``
(FreeMatch), ``reliable_frac``.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import RowOutput, RunContext, params_from_dict, register_method

__all__ = [
    "LOSSES",
    "SCL_CONFIDENCE",
    "Heads",
    "RPSCParams",
    "SelfParams",
    "run_rpsc",
    "run_semi",
    "scl_loss",
    "select_pseudo_labels",
    "train_self",
]

SCL_CONFIDENCE = ("none", "d", "one_minus_d")
LOSSES = ("scl", "ce")
BRANCH1 = ("none", "weak")
BRANCH2 = ("strong", "none")
SEMI_NETWORKS = ("head", "mlp")


@dataclass
class SelfParams:
    """The pseudo-labelling self-training stage shared by RPSC-Self and SPICE-Self (defaults: RPSC, CIFAR-10)."""

    n_heads: int = 10
    """Heads trained at once (P)."""
    head_hidden: int = 512
    """Hidden width h of the BYOL head Linear(D→h)-BN-ReLU-Linear(h→C) (?: SPICE's head MLP width 512)."""
    big_batch: int = 1000
    """M, images per pseudo-labelling batch (P: 1,000 for CIFAR-10 / STL-10 / ImageNet-10)."""
    gamma: float = 0.5
    """Confidence ratio γ of eq. 1: top γM/C per cluster (P)."""
    nc_ratio: float = 1.0
    """|N_c| = nc_ratio · M / C neighbours of each centre (?: SPICE ``select_samples`` ratio 1.0)."""
    tau: float = 0.5
    """SCL temperature τ (P)."""
    loss: str = "scl"
    """'scl' (eq. 4) or 'ce' (cross-entropy on the head's logits with the pseudo-labels: Table 5's *-CE rows)."""
    scl_confidence: str = "one_minus_d"
    """How d_ic enters eq. 4's numerator logit: 'one_minus_d' (weight 1 − d_ic), 'd' (weight d_ic), 'none'."""
    scl_denominator: bool = True
    """Eq. 4's denominator over the batch's other-label samples (Table 4: SCL-1/2 drop it)."""
    branch1_aug: str = "none"
    """Images pseudo-labelled: 'none' (clean; Table 3's default 1-Aug = No) or 'weak' (a weak view)."""
    branch2_aug: str = "strong"
    """Images trained: 'strong' (a view from the strong pool; 2-Aug = Yes) or 'none' (clean features)."""
    epochs: int = 100
    """Passes over the data (C: SPICE configs, 100; CIFAR-10 config 30)."""
    num_repeat: int = 8
    """Shuffled passes over each batch's pseudo-labelled set (C: SPICE ``num_repeat``)."""
    sub_batch: int = 128
    """Training sub-batch (C: SPICE ``train_sub_batch_size``)."""
    lr: float = 0.005
    """Adam learning rate (C: SPICE)."""
    weight_decay: float = 0.0
    """Adam weight decay (C: SPICE)."""

    def __post_init__(self) -> None:
        check_self(self)


@dataclass
class RPSCParams(SelfParams):
    """RPSC-Self plus the optional RPSC-Semi stage (FreeMatch defaults from USB's classic-CV configs)."""

    semi: bool = True
    """Run RPSC-Semi after RPSC-Self (output 'semi')."""
    semi_ne: int = 100
    """N_e, neighbours of the local-consistency test (P)."""
    semi_tau_t: float = 0.95
    """τ_t of the local-consistency test: reliable if the agreeing share exceeds it (P)."""
    semi_network: str = "head"
    """Network retrained: 'head' (the selected RPSC-Self head, frozen backbone) or 'mlp' (a fresh head)."""
    semi_iters: int = 1048576
    """FreeMatch iterations (C: 2^20)."""
    semi_batch: int = 64
    """Labelled batch B (C: FreeMatch)."""
    semi_uratio: int = 7
    """Unlabelled ratio μ (C: FreeMatch)."""
    semi_lr: float = 0.03
    """SGD learning rate, cosine-decayed as lr·cos(7πk/16K) (C: FreeMatch)."""
    semi_weight_decay: float = 5e-4
    """SGD weight decay (C: FreeMatch CIFAR-10)."""
    semi_ema: float = 0.999
    """EMA of the model weights used for prediction (C: FreeMatch)."""
    semi_sat_ema: float = 0.999
    """EMA momentum of FreeMatch's self-adaptive threshold statistics (C)."""
    semi_fairness: float = 0.001
    """Weight of FreeMatch's self-adaptive fairness term (C: USB classic-CV 0.001; 0 = eq. 9 literally)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.semi_network not in SEMI_NETWORKS:
            raise ValueError(f"unknown semi_network {self.semi_network!r}; valid: {list(SEMI_NETWORKS)}")
        if self.semi_iters < 1 or self.semi_batch < 1 or self.semi_uratio < 1 or self.semi_ne < 1:
            raise ValueError("semi_iters, semi_batch, semi_uratio and semi_ne must be >= 1")


def check_self(p: SelfParams) -> None:
    for name, valid in (("loss", LOSSES), ("scl_confidence", SCL_CONFIDENCE), ("branch1_aug", BRANCH1),
                        ("branch2_aug", BRANCH2)):
        if getattr(p, name) not in valid:
            raise ValueError(f"unknown {name} {getattr(p, name)!r}; valid: {list(valid)}")
    if not (0 < p.gamma <= 1 and p.nc_ratio > 0 and p.tau > 0):
        raise ValueError("need 0 < gamma <= 1, nc_ratio > 0, tau > 0")
    for name in ("n_heads", "head_hidden", "big_batch", "epochs", "num_repeat", "sub_batch"):
        if getattr(p, name) < 1:
            raise ValueError(f"{name} must be >= 1; got {getattr(p, name)}")


# ------------------------------------------------------------------------------------------------ heads
class Heads(nn.Module):
    """``n`` independent BYOL heads Linear(D→h)-BatchNorm-ReLU-Linear(h→C) evaluated as one batched module.

    ``forward(x)`` takes shared inputs B×D or per-head inputs n×B×D and returns logits n×B×C.
    """

    def __init__(self, n: int, d: int, h: int, c: int, gen: torch.Generator):
        super().__init__()

        def uni(*shape, fan_in):  # nn.Linear's default initialisation, drawn from ``gen``
            b = 1.0 / math.sqrt(fan_in)
            return nn.Parameter(torch.rand(*shape, generator=gen) * 2 * b - b)

        self.n, self.h, self.c = n, h, c
        self.w1, self.b1 = uni(n, d, h, fan_in=d), uni(n, h, fan_in=d)
        self.bn = nn.BatchNorm1d(n * h)
        self.w2, self.b2 = uni(n, h, c, fan_in=h), uni(n, c, fan_in=h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            hid = torch.einsum("bd,ndh->nbh", x, self.w1)
        else:
            hid = torch.einsum("nbd,ndh->nbh", x, self.w1)
        hid = hid + self.b1[:, None]
        n, b, h = hid.shape
        hid = self.bn(hid.permute(1, 0, 2).reshape(b, n * h)).reshape(b, n, h).permute(1, 0, 2)
        return torch.einsum("nbh,nhc->nbc", F.relu(hid), self.w2) + self.b2[:, None]

    def single(self, i: int) -> nn.Module:
        """Head ``i`` as a standalone nn.Sequential (weights copied)."""
        d = self.w1.shape[1]
        m = nn.Sequential(nn.Linear(d, self.h), nn.BatchNorm1d(self.h), nn.ReLU(), nn.Linear(self.h, self.c))
        with torch.no_grad():
            m[0].weight.copy_(self.w1[i].T), m[0].bias.copy_(self.b1[i])
            sl = slice(i * self.h, (i + 1) * self.h)
            m[1].weight.copy_(self.bn.weight[sl]), m[1].bias.copy_(self.bn.bias[sl])
            m[1].running_mean.copy_(self.bn.running_mean[sl]), m[1].running_var.copy_(self.bn.running_var[sl])
            m[3].weight.copy_(self.w2[i].T), m[3].bias.copy_(self.b2[i])
        return m


# ------------------------------------------------------------------------------------------------ losses
def scl_loss(probs: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None, tau: float,
             denominator: bool = True) -> torch.Tensor:
    """Soft contrastive loss (eq. 4) per sample, over the last two dims (…×B×C probabilities).

    ``loss_i = −w_i·cos(z_i, e_{c_i})/τ + log Σ_{k: c_k ≠ c_i} exp(cos(z_i, z_k)/τ)``; the denominator term is
    dropped when ``denominator`` is False (Table 4's SCL-1 / SCL-2) and is 0 for a sample whose batch holds no
    other label. ``weight`` None means w = 1.
    """
    z = F.normalize(probs, dim=-1)
    num = torch.gather(z, -1, labels.unsqueeze(-1)).squeeze(-1) / tau
    if weight is not None:
        num = num * weight
    if not denominator:
        return -num
    # cos ∈ [−1, 1], so exp((cos − 1)/τ) <= 1 cannot overflow; faster than a masked logsumexp
    other = (labels.unsqueeze(-1) != labels.unsqueeze(-2)).to(z.dtype)
    total = (torch.exp((z @ z.transpose(-1, -2) - 1.0) / tau) * other).sum(-1)
    lse = torch.log(total.clamp_min(1e-30)) + 1.0 / tau
    return -num + torch.where(total > 0, lse, torch.zeros_like(lse))


def _confidence(d: torch.Tensor, mode: str) -> torch.Tensor | None:
    return {"none": None, "d": d, "one_minus_d": 1.0 - d}[mode]


def head_losses(logits: torch.Tensor, labels: torch.Tensor, d: torch.Tensor, p: SelfParams) -> torch.Tensor:
    """Per-head mean loss (n,) of logits n×B×C with pseudo-labels n×B and d_ic n×B."""
    if p.loss == "ce":
        return F.cross_entropy(logits.transpose(1, 2), labels, reduction="none").mean(1)
    w = _confidence(d, p.scl_confidence)
    return scl_loss(logits.softmax(-1), labels, w, p.tau, p.scl_denominator).mean(-1)


# ------------------------------------------------------------------------------------------------ eq. 1-3
@torch.no_grad()
def select_pseudo_labels(probs: torch.Tensor, feats: torch.Tensor, gamma: float, nc_ratio: float
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 1-3 for each head: (indices n×P into ``feats``, labels n×P, d_ic n×P), P = C·|N_c|.

    ``probs`` n×M×C (softmax of each head), ``feats`` M×D (the backbone features of the same images).
    """
    n, m, c = probs.shape
    top_n = max(1, min(m, int(gamma * m / c)))
    k = max(1, min(m, int(nc_ratio * m / c)))
    top = probs.topk(top_n, dim=1).indices                     # n×top_n×C
    centres = feats[top].mean(1)                               # n×C×D (eq. 2)
    sim = torch.einsum("md,ncd->ncm", F.normalize(feats, dim=-1), F.normalize(centres, dim=-1))
    nbr = sim.topk(k, dim=2).indices                           # n×C×k
    dist = torch.cdist(centres, feats.expand(n, -1, -1))       # n×C×M, Euclidean
    dn = torch.gather(dist, 2, nbr)
    d = dn / dn.amax(2, keepdim=True).clamp_min(1e-12)         # eq. 3
    labels = torch.arange(c).repeat_interleave(k).expand(n, -1)
    return nbr.reshape(n, c * k), labels.contiguous(), d.reshape(n, c * k)


def _chunks(n: int, size: int, gen: torch.Generator | None) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
    return list(order.tensor_split(max(1, round(n / size))))


def _view(pool: torch.Tensor, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """For each index (any shape) a view drawn uniformly from ``pool`` (V×N×D)."""
    v = torch.randint(len(pool), idx.shape, generator=gen)
    return pool[v, idx]


@torch.no_grad()
def _probs(heads: nn.Module, x: torch.Tensor, batch: int = 8192) -> torch.Tensor:
    heads.eval()
    return torch.cat([heads(x[i:i + batch]).softmax(-1) for i in range(0, len(x), batch)], dim=-2)


@torch.no_grad()
def _selection_losses(heads: Heads, X: torch.Tensor, p: SelfParams, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
    """Each head's loss over the whole data set (clean features, eval mode), and pseudo-label statistics."""
    heads.eval()
    n_heads, c = heads.n, heads.c
    total, count = torch.zeros(n_heads), 0
    hits = torch.zeros(n_heads, c)
    covered = torch.zeros(n_heads, len(X), dtype=torch.bool)
    for chunk in _chunks(len(X), p.big_batch, None):
        f = X[chunk]
        idx, lab, d = select_pseudo_labels(heads(f).softmax(-1), f, p.gamma, p.nc_ratio)
        hits += F.one_hot(lab, c).sum(1).float()
        covered.scatter_(1, chunk[idx], True)
        order = torch.randperm(idx.shape[1], generator=gen)
        for sb in order.split(p.sub_batch):
            logits = heads(f[idx[:, sb]])
            total += head_losses(logits, lab[:, sb], d[:, sb], p) * len(sb)
            count += len(sb)
    share = hits / hits.sum(1, keepdim=True)
    return total / max(count, 1), {"share": share, "coverage": covered.float().mean(1)}


def train_self(X: torch.Tensor, weak: torch.Tensor, strong: torch.Tensor, n_clusters: int, p: SelfParams,
               gen: torch.Generator, log=None) -> tuple[Heads, int, dict]:
    """Train the heads (RPSC-Self / SPICE-Self); returns (heads, selected head, info)."""
    if p.branch1_aug == "weak" and len(weak) == 0 or p.branch2_aug == "strong" and len(strong) == 0:
        raise ValueError("the view pool lacks the weak or strong views these settings need")
    heads = Heads(p.n_heads, X.shape[1], p.head_hidden, n_clusters, gen)
    opt = torch.optim.Adam(heads.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    epoch_loss, epoch_s = [], []
    for epoch in range(p.epochs):
        t0, tot, cnt = time.perf_counter(), 0.0, 0
        for chunk in _chunks(len(X), p.big_batch, gen):
            f1 = X[chunk] if p.branch1_aug == "none" else _view(weak, chunk, gen)
            heads.eval()
            with torch.no_grad():
                idx, lab, d = select_pseudo_labels(heads(f1).softmax(-1), f1, p.gamma, p.nc_ratio)
            g = chunk[idx]                                     # n×P indices into the data set
            heads.train()
            for _ in range(p.num_repeat):
                order = torch.stack([torch.randperm(g.shape[1], generator=gen) for _ in range(heads.n)])
                for sb in order.split(p.sub_batch, dim=1):
                    if sb.shape[1] < 2:
                        continue
                    gi = torch.gather(g, 1, sb)
                    x = _view(strong, gi, gen) if p.branch2_aug == "strong" else X[gi]
                    loss = head_losses(heads(x), torch.gather(lab, 1, sb), torch.gather(d, 1, sb), p).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    tot, cnt = tot + loss.item(), cnt + 1
        mean = tot / max(cnt, 1)
        if not math.isfinite(mean):
            raise FloatingPointError(f"loss is {mean} at epoch {epoch + 1}")
        epoch_loss.append(mean)
        epoch_s.append(time.perf_counter() - t0)
        if log:
            log(f"epoch {epoch + 1}/{p.epochs}: loss {mean:.4f}")
    sel_gen = torch.Generator().manual_seed(int(torch.randint(2**31 - 1, (), generator=gen)))
    losses, stats = _selection_losses(heads, X, p, sel_gen)
    best = int(torch.argmin(losses))
    info = {"epoch_loss": epoch_loss, "epoch_s": epoch_s, "head_losses": losses.tolist(), "selected_head": best,
            "share": stats["share"][best].tolist(), "coverage": float(stats["coverage"][best])}
    return heads, best, info


def self_output(heads: Heads, best: int, X: torch.Tensor, info: dict, t0: float) -> RowOutput:
    labels = _probs(heads, X)[best].argmax(1).numpy()
    losses = info["head_losses"]
    metrics = {"pl_share_min": min(info["share"]), "pl_share_max": max(info["share"]),
               "pl_coverage": info["coverage"], "scl_head_spread": max(losses) - min(losses),
               "selected_loss": losses[best], "time_s": time.time() - t0,
               "epoch_s": float(np.mean(info["epoch_s"])) if info["epoch_s"] else 0.0}
    return RowOutput(labels=labels, metrics=metrics, info=info)


# ------------------------------------------------------------------------------------------------ RPSC-Semi
@torch.no_grad()
def reliable_labels(X: torch.Tensor, probs: torch.Tensor, gamma: float, ne: int, tau_t: float, batch: int = 2048
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 6: (labels l_i for all N, boolean reliable mask) from the selected head's probabilities N×C."""
    n, c = probs.shape
    top = probs.topk(max(1, min(n, int(gamma * n / c))), dim=0).indices      # top γN/C per cluster
    centres = X[top].mean(0)                                                  # C×D
    xn = F.normalize(X, dim=1)
    lab = (xn @ F.normalize(centres, dim=1).T).argmax(1)
    ne = min(ne, n - 1)
    agree = torch.empty(n)
    for i in range(0, n, batch):
        s = xn[i:i + batch] @ xn.T
        s[torch.arange(len(s)), torch.arange(i, i + len(s))] = -float("inf")  # not its own neighbour
        nb = s.topk(ne, dim=1).indices
        agree[i:i + batch] = (lab[nb] == lab[i:i + batch, None]).float().mean(1)
    return lab, agree > tau_t


def _fairness(logits_s: torch.Tensor, mask: torch.Tensor, p_model: torch.Tensor, label_hist: torch.Tensor
              ) -> torch.Tensor:
    """FreeMatch's self-adaptive fairness loss: −H-like cross term between the histogram-normalised
    EMA class distribution and the histogram-normalised mean prediction of the masked strong views."""
    prob = logits_s[mask].softmax(-1)
    hist = torch.bincount(prob.argmax(1), minlength=prob.shape[1]).float()
    hist = hist / hist.sum()
    target = p_model / label_hist.clamp_min(1e-12)
    target = target / target.sum()
    inv = torch.where(hist > 0, 1.0 / hist.clamp_min(1e-12), torch.zeros_like(hist))
    mean = prob.mean(0) * inv
    mean = mean / mean.sum()
    return (target * torch.log(mean + 1e-12)).sum()


def run_semi(X, weak, strong, heads: Heads, best: int, n_clusters: int, p: RPSCParams, gen: torch.Generator,
             log=None) -> RowOutput:
    """RPSC-Semi (eq. 6-9) on cached features; returns the 'semi' output."""
    if len(weak) == 0 or len(strong) == 0:
        raise ValueError("RPSC-Semi needs weak and strong views in the view pool")
    t0 = time.time()
    lab, reliable = reliable_labels(X, _probs(heads, X)[best], p.gamma, p.semi_ne, p.semi_tau_t)
    labelled = reliable.nonzero().squeeze(1)
    c = n_clusters
    counts = torch.bincount(lab[labelled], minlength=c).float()
    metrics = {"reliable_frac": float(reliable.float().mean()),
               "pl_share_min": float(counts.min() / counts.sum().clamp_min(1)),
               "pl_share_max": float(counts.max() / counts.sum().clamp_min(1))}
    if len(labelled) == 0:
        return RowOutput(labels=None, metrics=metrics, info={"error": "no reliable label (eq. 6)"})
    model = heads.single(best)
    if p.semi_network == "mlp":
        fresh = Heads(1, X.shape[1], p.head_hidden, c, gen)
        model = fresh.single(0)
    ema = copy.deepcopy(model).requires_grad_(False)
    decay, no_decay = [], []
    for name, w in model.named_parameters():
        (no_decay if w.ndim == 1 else decay).append(w)
    opt = torch.optim.SGD([{"params": decay, "weight_decay": p.semi_weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}], lr=p.semi_lr, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: math.cos(7 * math.pi * k / (16 * p.semi_iters)))
    time_p = torch.tensor(1.0 / c)
    p_model = torch.full((c,), 1.0 / c)
    label_hist = torch.full((c,), 1.0 / c)
    m = p.semi_sat_ema
    mask_sum, tail_sum, tail_n = 0.0, 0.0, 0
    ub = p.semi_batch * p.semi_uratio
    y = lab[labelled]
    t1 = time.perf_counter()
    for it in range(p.semi_iters):
        li = torch.randint(len(labelled), (p.semi_batch,), generator=gen)
        ui = torch.randint(len(X), (ub,), generator=gen)
        x = torch.cat([_view(weak, labelled[li], gen), _view(weak, ui, gen), _view(strong, ui, gen)])
        model.train()
        logits = model(x)
        lx, lw, ls = logits[:p.semi_batch], logits[p.semi_batch:p.semi_batch + ub], logits[p.semi_batch + ub:]
        loss_s = F.cross_entropy(lx, y[li])
        with torch.no_grad():
            pw = lw.detach().softmax(-1)
            maxp, pred = pw.max(1)
            time_p = m * time_p + (1 - m) * maxp.mean()
            p_model = m * p_model + (1 - m) * pw.mean(0)
            label_hist = m * label_hist + (1 - m) * torch.bincount(pred, minlength=c).float() / len(pred)
            mask = maxp >= time_p * p_model[pred] / p_model.max()
        loss_u = (F.cross_entropy(ls, pred, reduction="none") * mask.float()).mean()
        loss = loss_s + loss_u
        if p.semi_fairness > 0 and mask.any():
            loss = loss + p.semi_fairness * _fairness(ls, mask, p_model, label_hist)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            for we, wm in zip(ema.parameters(), model.parameters()):
                we.mul_(p.semi_ema).add_(wm, alpha=1 - p.semi_ema)
            for be, bm in zip(ema.buffers(), model.buffers()):
                be.copy_(bm)
        rate = float(mask.float().mean())
        mask_sum += rate
        if it >= p.semi_iters * 0.9:
            tail_sum, tail_n = tail_sum + rate, tail_n + 1
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"RPSC-Semi loss is {float(loss)} at iteration {it + 1}")
    iter_s = (time.perf_counter() - t1) / max(p.semi_iters, 1)
    ema.eval()
    with torch.no_grad():
        labels = torch.cat([ema(X[i:i + 8192]).argmax(1) for i in range(0, len(X), 8192)]).numpy()
    metrics |= {"mask_rate": mask_sum / max(p.semi_iters, 1), "mask_rate_final": tail_sum / max(tail_n, 1),
                "semi_iter_s": iter_s, "time_s": time.time() - t0}
    return RowOutput(labels=labels, metrics=metrics, info={"n_reliable": len(labelled)})


# ------------------------------------------------------------------------------------------------ entry points
def load_inputs(data) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clean N×D, weak W×N×D, strong S×N×D) float32 tensors of a feature set and its cached view pool.

    A data set whose ``meta['views']`` holds ``(weak, strong)`` arrays (tests, synthetic data) uses those.
    """
    X = np.asarray(data.X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"{data.name}: RPSC, SPICE and SCAN run on backbone features (N×D, '<set>@moco'); "
                         f"got an array of shape {X.shape}")
    if "views" in data.meta:
        weak, strong = data.meta["views"]
    else:
        from ..backbones.views import load_views
        weak, strong = load_views(data)
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    return as_t(X), as_t(weak), as_t(strong)


def fit_self(data, p, ctx: RunContext):
    """The self-training stage shared by RPSC and SPICE-Self on cached features: (generator, X, weak, strong,
    heads, best head, its RowOutput); all randomness from one generator seeded by the run seed."""
    gen = torch.Generator().manual_seed(int(ctx.seed))
    X, weak, strong = load_inputs(data)
    t0 = time.time()
    heads, best, info = train_self(X, weak, strong, ctx.n_clusters, p, gen, ctx.log)
    info["params"] = asdict(p)
    return gen, X, weak, strong, heads, best, self_output(heads, best, X, info, t0)


@register_method("rpsc", params=RPSCParams)
def run_rpsc(data, params: dict, ctx: RunContext) -> dict[str, RowOutput]:
    """Outputs 'self' (RPSC-Self, or its ablations / CE variant) and 'semi' (RPSC; no labels when ``semi`` is off)."""
    p = params_from_dict(RPSCParams, params, "rpsc")
    gen, X, weak, strong, heads, best, out_self = fit_self(data, p, ctx)
    out = {"self": out_self}
    out["semi"] = (run_semi(X, weak, strong, heads, best, ctx.n_clusters, p, gen, ctx.log) if p.semi else
                   RowOutput(info={"not_run": "semi = false"}))
    return out
