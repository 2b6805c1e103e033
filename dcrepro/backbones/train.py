"""The contrastive training loop shared by SimCLR and MoCo: optimiser (LARS / SGD), warm-up + cosine schedule.

Called by :func:`dcrepro.backbones.cli.run_backbone`. The images live on the training device as uint8
(CIFAR-10: 184 MB); every step draws a batch, makes two augmented views on the device
(:mod:`~dcrepro.backbones.augment`) and calls ``model.loss(view1, view2)``. With ``amp`` on a GPU the
forward passes run in bfloat16 autocast; losses are computed in float32.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # kornia is imported only when a backbone is trained, not by `dcrepro --help`
    from .augment import ContrastiveAugment


__all__ = ["BackboneParams", "check_params", "LARS", "build_optimizer", "warmup_cosine", "train_contrastive",
           "OPTIMIZERS"]

OPTIMIZERS = ("lars", "sgd")


@dataclass
class BackboneParams:
    """Hyper-parameters shared by the SimCLR and MoCo backbones (each method's subclass sets its defaults)."""

    arch: str = "resnet34"
    """'resnet18' or 'resnet34'."""
    epochs: int = 500
    """Training epochs over the training images."""
    batch_size: int = 512
    """Images per step (each gives two views)."""
    optimizer: str = "lars"
    """'lars' (momentum SGD with a layer-wise trust ratio; 1-d parameters excluded) or 'sgd' (momentum SGD)."""
    lr: float = 0.3
    """Learning rate per 256 images: the effective rate is ``lr × batch_size / 256``."""
    momentum: float = 0.9
    """Optimiser momentum."""
    weight_decay: float = 1e-6
    """L2 weight decay (not applied to biases and BatchNorm parameters under LARS)."""
    warmup_epochs: int = 10
    """Linear warm-up epochs before the cosine decay (to 0 at the last step)."""
    temperature: float = 0.5
    """Softmax temperature τ of the contrastive loss."""
    proj_hidden: int = 512
    """Hidden width of the projection head."""
    proj_dim: int = 128
    """Output size of the projection head (SimCLR's Z space)."""
    crop_scale_min: float = 0.08
    """Lower bound of the random-resized-crop area."""
    blur: str = "auto"
    """'auto' (Gaussian blur for images larger than 64 px), 'yes' or 'no'."""
    stem: str = "auto"
    """ResNet stem, see :mod:`dcrepro.backbones.resnet` ('auto' picks it from the image size)."""
    width: int = 64
    """First-stage channels (64 = the standard ResNet; smaller widths are for tests only)."""
    amp: bool = True
    """bfloat16 autocast for the forward passes on a GPU (ignored on CPU)."""
    encode_batch_size: int = 1024
    """Batch of the final feature extraction (eval mode, no augmentation)."""


def check_params(p: BackboneParams) -> None:
    """Raise a ValueError naming the valid choices / ranges of the first invalid field."""
    if p.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {p.optimizer!r}; valid optimizers: {list(OPTIMIZERS)}")
    if p.blur not in ("auto", "yes", "no"):
        raise ValueError(f"blur must be one of ['auto', 'yes', 'no']; got {p.blur!r}")
    for name in ("epochs", "batch_size", "encode_batch_size", "proj_hidden", "proj_dim"):
        if getattr(p, name) < 1:
            raise ValueError(f"{name} must be >= 1; got {getattr(p, name)}")
    if p.batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 (contrastive negatives, BatchNorm); got {p.batch_size}")
    if not (p.lr > 0 and p.temperature > 0 and p.warmup_epochs >= 0 and p.weight_decay >= 0):
        raise ValueError("lr and temperature must be > 0, warmup_epochs and weight_decay >= 0")


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling (You et al. 2017) as SimCLR uses it.

    For each parameter with more than one dimension: ``g ← g + wd·w``, then ``g ← η·‖w‖/‖g‖ · g``
    (when both norms are > 0); biases and BatchNorm parameters (1-d) get neither decay nor scaling. Then heavy-ball
    momentum: ``v ← μ v + g``, ``w ← w − lr·v``.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 1e-3):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for w in group["params"]:
                if w.grad is None:
                    continue
                g = w.grad
                if w.ndim > 1:
                    g = g.add(w, alpha=group["weight_decay"])
                    wn, gn = w.norm(), g.norm()
                    trust = torch.where((wn > 0) & (gn > 0), group["eta"] * wn / gn, torch.ones_like(wn))
                    g = g * trust
                state = self.state[w]
                if "v" not in state:
                    state["v"] = g.clone()
                else:
                    state["v"].mul_(group["momentum"]).add_(g)
                w.add_(state["v"], alpha=-group["lr"])
        return loss


def build_optimizer(model: nn.Module, p: BackboneParams) -> torch.optim.Optimizer:
    """LARS or momentum SGD over the trainable parameters, at ``lr × batch_size / 256``."""
    params = [w for w in model.parameters() if w.requires_grad]
    lr = p.lr * p.batch_size / 256
    if p.optimizer == "lars":
        return LARS(params, lr, p.momentum, p.weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=p.momentum, weight_decay=p.weight_decay)


def warmup_cosine(total_steps: int, warmup_steps: int):
    """Multiplier of the base rate at a step: linear warm-up to 1, then cosine decay to 0."""
    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))
    return f


def train_contrastive(model: nn.Module, images: torch.Tensor, p: BackboneParams, augment: "ContrastiveAugment",
                      device: str, log=None) -> dict:
    """Train ``model`` (with ``loss(view1, view2) -> scalar``) on ``images`` for ``p.epochs`` epochs.

    Parameters
    ----------
    model : torch.nn.Module
        SimCLR or MoCo module, already on ``device``; trained in place.
    images : torch.Tensor
        uint8 N×H×W×C training images, on ``device``.
    p : BackboneParams
    augment : ContrastiveAugment
    device : str
    log : callable, optional

    Returns
    -------
    dict
        ``loss`` (mean per epoch), ``lr_effective``, ``steps``, ``time_train_s``, ``images_per_s``.

    Raises
    ------
    FloatingPointError
        The loss became NaN or infinite.
    """
    check_params(p)
    n = len(images)
    steps_per_epoch = max(1, n // p.batch_size)   # last partial batch dropped; n < batch -> one batch of all
    total = steps_per_epoch * p.epochs
    opt = build_optimizer(model, p)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, steps_per_epoch * p.warmup_epochs))
    use_amp = p.amp and device.startswith("cuda")
    hist: dict = {"loss": [], "lr_effective": p.lr * p.batch_size / 256, "steps": total}
    t0 = time.perf_counter()
    from .augment import to_float

    for epoch in range(p.epochs):
        model.train()
        perm = torch.randperm(n, device=images.device)
        total_loss = torch.zeros((), device=device)
        for b in range(steps_per_epoch):
            idx = perm[b * p.batch_size:(b + 1) * p.batch_size] if n >= p.batch_size else perm
            x = to_float(images[idx])
            v1, v2 = augment(x), augment(x)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                loss = model.loss(v1, v2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.detach().float()
        mean = float(total_loss) / steps_per_epoch
        if not math.isfinite(mean):
            raise FloatingPointError(f"contrastive loss is {mean} at epoch {epoch + 1}; lower lr or check the data")
        hist["loss"].append(mean)
        if log is not None:
            log(f"epoch {epoch + 1}/{p.epochs}: loss {mean:.4f}, lr {sched.get_last_lr()[0]:.4g}")
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    hist["time_train_s"] = time.perf_counter() - t0
    hist["images_per_s"] = total * min(n, p.batch_size) / max(hist["time_train_s"], 1e-9)
    return hist
