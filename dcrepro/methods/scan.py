"""SCAN (Van Gansbeke et al., ECCV 2020) on cached backbone features, with self-labelling by CE or by SCL.

RPSC's Table 5 and Fig. 4 swap SCAN's self-labelling cross-entropy for the soft contrastive loss (eq. 4). One run
here does SCAN's two learned stages once and then self-labels the selected head twice, so CE and SCL are paired
on the same SCAN result (outputs ``scan``, ``selflabel_ce``, ``selflabel_scl``):

1. neighbours: the ``n_neighbors`` cosine nearest neighbours of every image in the frozen backbone's clean
   features (SCAN mines them in its pretext features);
2. SCAN loss (``n_heads`` heads): −mean log⟨p(anchor), p(neighbour)⟩ − ``entropy_weight``·H(mean p), anchor and
   neighbour as strong views from the cached pool (SCAN's "ours" augmentation); the head with the lowest loss on
   the clean features is kept (SCAN ``scan_evaluate``), never by labels;
3. self-labelling: a weak view's prediction with confidence > ``threshold`` is the target of the strong view;
   'ce' = SCAN's class-balanced ``ConfidenceBasedCE``; 'scl' = eq. 4 on the confident samples, with d_ic per the
   reading ``scl_confidence`` ('none': SCAN has no prototypes, so eq. 3 is undefined; 'centre': distance to the
   mean clean feature of the batch's confident samples of that class, normalised by the class maximum).

Declared deviations: frozen backbone (SCAN fine-tunes it), so the heads are RPSC's BYOL MLP heads instead of a
linear layer; views come from a finite cached pool.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from . import RowOutput, RunContext, params_from_dict, register_method
from .rpsc import Heads, _view, load_inputs, scl_loss

SELFLABEL_LOSSES = ("ce", "scl")


@dataclass
class SCANParams:
    """Defaults: SCAN's CIFAR configs (``scan_cifar20.yml``, ``selflabel_cifar20.yml``; notes §4)."""

    n_neighbors: int = 20
    """Nearest neighbours mined per image (C)."""
    n_heads: int = 10
    """Clustering heads trained at once, lowest loss kept (C)."""
    head_hidden: int = 512
    """Hidden width of the MLP head (deviation: SCAN's head is linear on a fine-tuned backbone)."""
    entropy_weight: float = 5.0
    """Weight of the entropy term (C)."""
    scan_epochs: int = 100
    """SCAN-loss epochs (C)."""
    scan_batch: int = 512
    """SCAN-loss batch (C)."""
    scan_lr: float = 1e-4
    """Adam learning rate of the SCAN stage (C)."""
    scan_weight_decay: float = 1e-4
    """Adam weight decay of the SCAN stage (C)."""
    selflabel_losses: list = field(default_factory=lambda: ["ce", "scl"])
    """Self-labelling losses to run from the same SCAN head: any of 'ce', 'scl' (empty: SCAN stage only)."""
    selflabel_epochs: int = 200
    """Self-labelling epochs (C)."""
    selflabel_batch: int = 1000
    """Self-labelling batch (C)."""
    selflabel_lr: float = 1e-4
    """Adam learning rate of self-labelling (C)."""
    selflabel_weight_decay: float = 1e-4
    """Adam weight decay of self-labelling (C)."""
    threshold: float = 0.99
    """Confidence threshold of the self-labelling targets (C)."""
    class_balance: bool = True
    """Inverse-frequency class weights in the CE (C: ``apply_class_balancing``)."""
    tau: float = 0.5
    """SCL temperature (RPSC's)."""
    scl_confidence: str = "none"
    """d_ic of SCAN-SCL: 'none' or 'centre' (see the module docstring)."""
    scl_denominator: bool = True
    """Eq. 4's denominator."""

    def __post_init__(self) -> None:
        bad = [s for s in self.selflabel_losses if s not in SELFLABEL_LOSSES]
        if bad or self.scl_confidence not in ("none", "centre"):
            raise ValueError(f"selflabel_losses must be a subset of {list(SELFLABEL_LOSSES)} and scl_confidence one "
                             f"of ['none', 'centre']; got {self.selflabel_losses}, {self.scl_confidence!r}")
        for name in ("n_neighbors", "n_heads", "head_hidden", "scan_batch", "selflabel_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")


def mine_neighbors(X: torch.Tensor, k: int, batch: int = 2048) -> torch.Tensor:
    """N×k indices of each row's k cosine nearest neighbours (itself excluded)."""
    xn = F.normalize(X, dim=1)
    k = min(k, len(X) - 1)
    out = []
    for i in range(0, len(X), batch):
        s = xn[i:i + batch] @ xn.T
        s[torch.arange(len(s)), torch.arange(i, i + len(s))] = -float("inf")
        out.append(s.topk(k, dim=1).indices)
    return torch.cat(out)


def scan_loss(pa: torch.Tensor, pn: torch.Tensor, entropy_weight: float) -> torch.Tensor:
    """Per-head SCAN loss of probabilities …×B×C of anchors and neighbours: consistency − w·entropy."""
    cons = -torch.log((pa * pn).sum(-1).clamp_min(1e-8)).mean(-1)
    mean = pa.mean(-2).clamp_min(1e-8)
    return cons - entropy_weight * (-(mean * mean.log()).sum(-1))


def _selflabel(model, X, weak, strong, loss_name: str, p: SCANParams, gen: torch.Generator) -> tuple[np.ndarray, dict]:
    opt = torch.optim.Adam(model.parameters(), lr=p.selflabel_lr, weight_decay=p.selflabel_weight_decay)
    n, c = len(X), model[-1].out_features
    rate, share, epoch_loss = 0.0, torch.zeros(c), []
    for epoch in range(p.selflabel_epochs):
        tot, cnt, masked, seen, hits = 0.0, 0, 0, 0, torch.zeros(c)
        for idx in torch.randperm(n, generator=gen).split(p.selflabel_batch):
            if len(idx) < 2:
                continue
            model.train()
            logits = model(torch.cat([_view(weak, idx, gen), _view(strong, idx, gen)]))
            lw, ls = logits[:len(idx)], logits[len(idx):]
            with torch.no_grad():
                maxp, target = lw.softmax(-1).max(1)
                mask = maxp > p.threshold
            seen += len(idx)
            masked += int(mask.sum())
            hits += torch.bincount(target[mask], minlength=c).float()
            if mask.sum() < 2:
                continue
            t = target[mask]
            if loss_name == "ce":
                weight = None
                if p.class_balance:
                    cnts = torch.bincount(t, minlength=c).float()
                    weight = torch.where(cnts > 0, len(t) / cnts.clamp_min(1), torch.ones_like(cnts))
                loss = F.cross_entropy(ls[mask], t, weight=weight)
            else:
                w = None
                if p.scl_confidence == "centre":
                    f = X[idx[mask]]
                    centres = torch.zeros(c, f.shape[1]).index_add_(0, t, f) / \
                        torch.bincount(t, minlength=c).clamp_min(1)[:, None]
                    dist = (f - centres[t]).norm(dim=1)
                    dmax = torch.zeros(c).scatter_reduce(0, t, dist, "amax")
                    w = 1.0 - dist / dmax[t].clamp_min(1e-12)
                loss = scl_loss(ls[mask].softmax(-1), t, w, p.tau, p.scl_denominator).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot, cnt = tot + loss.item(), cnt + 1
        if cnt and not math.isfinite(tot):
            raise FloatingPointError(f"self-labelling loss is {tot} at epoch {epoch + 1}")
        epoch_loss.append(tot / max(cnt, 1))
        rate, share = masked / max(seen, 1), hits / hits.sum().clamp_min(1)
    model.eval()
    with torch.no_grad():
        labels = torch.cat([model(X[i:i + 8192]).argmax(1) for i in range(0, n, 8192)]).numpy()
    return labels, {"mask_rate": rate, "pl_share_min": float(share.min()), "pl_share_max": float(share.max()),
                    "epoch_loss": epoch_loss}


@register_method("scan", params=SCANParams)
def run_scan(data, params: dict, ctx: RunContext) -> dict[str, RowOutput]:
    p = params_from_dict(SCANParams, params, "scan")
    gen = torch.Generator().manual_seed(int(ctx.seed))
    X, weak, strong = load_inputs(data)
    if len(weak) == 0 or len(strong) == 0:
        raise ValueError("SCAN needs weak and strong views in the view pool")
    t0 = time.time()
    nbrs = mine_neighbors(X, p.n_neighbors)
    heads = Heads(p.n_heads, X.shape[1], p.head_hidden, ctx.n_clusters, gen)
    opt = torch.optim.Adam(heads.parameters(), lr=p.scan_lr, weight_decay=p.scan_weight_decay)
    epoch_loss, epoch_s = [], []
    for epoch in range(p.scan_epochs):
        t1, tot, cnt = time.perf_counter(), 0.0, 0
        for idx in torch.randperm(len(X), generator=gen).split(p.scan_batch):
            if len(idx) < 2:
                continue
            nb = nbrs[idx, torch.randint(nbrs.shape[1], (len(idx),), generator=gen)]
            heads.train()
            probs = heads(torch.cat([_view(strong, idx, gen), _view(strong, nb, gen)])).softmax(-1)
            loss = scan_loss(probs[:, :len(idx)], probs[:, len(idx):], p.entropy_weight).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot, cnt = tot + loss.item() / heads.n, cnt + 1
        epoch_loss.append(tot / max(cnt, 1))
        epoch_s.append(time.perf_counter() - t1)
    heads.eval()
    with torch.no_grad():
        probs = heads(X).softmax(-1)                                       # n_heads×N×C
        losses = torch.stack([scan_loss(probs, probs[:, nbrs[:, j]], p.entropy_weight)
                              for j in range(nbrs.shape[1])]).mean(0)
    best = int(torch.argmin(losses))
    spread = float(losses.max() - losses.min())
    info = {"epoch_loss": epoch_loss, "epoch_s": epoch_s, "head_losses": losses.tolist(), "selected_head": best,
            "params": asdict(p)}
    out = {"scan": RowOutput(labels=probs[best].argmax(1).numpy(), info=info,
                             metrics={"scl_head_spread": spread, "time_s": time.time() - t0,
                                      "epoch_s": float(np.mean(epoch_s)) if epoch_s else 0.0})}
    base = heads.single(best)
    for name in p.selflabel_losses:
        t1 = time.time()
        sub = torch.Generator().manual_seed(int(ctx.seed) * 7919 + SELFLABEL_LOSSES.index(name) + 1)
        labels, stats = _selflabel(copy.deepcopy(base), X, weak, strong, name, p, sub)
        loss_hist = stats.pop("epoch_loss")
        out[f"selflabel_{name}"] = RowOutput(labels=labels, metrics=stats | {"time_s": time.time() - t1},
                                             info={"epoch_loss": loss_hist, "from_head": best})
    return out
