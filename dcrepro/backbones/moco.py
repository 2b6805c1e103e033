"""MoCo-v2 (He et al. 2020; Chen et al. 2020 "Improved baselines"): query/key encoders, queue, InfoNCE.

Used by ``dcrepro backbone --method moco`` (:mod:`dcrepro.backbones.cli`) to make the ``<set>@moco``
feature sets of DCSS Table 5 ("MoCo + Kmeans", "MoCo + MNet"); the DCSS paper gives no MoCo recipe.
The stored features are the query encoder's pooled output h, L2-normalised (as SPICE's
``feas_moco_512_l2``, the MoCo features RPSC/SPICE cluster).

One device has no multi-GPU "shuffle BN": :class:`~dcrepro.backbones.resnet.SplitBatchNorm` (``bn_splits``
groups) plus a random permutation of the key batch emulates it, as the MoCo authors' CIFAR demo does.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .resnet import Encoder
from .train import BackboneParams

__all__ = ["MoCoParams", "MoCo"]


@dataclass
class MoCoParams(BackboneParams):
    """MoCo-v2 hyper-parameters.

    Sources: ResNet-18 (SPICE CIFAR-10 config ``resnet18_cifar``); 1,000 epochs (SPICE ``train_moco.py``
    CIFAR checkpoints); batch 256, SGD momentum 0.9, lr 0.03 per 256 images, weight decay 1e-4, cosine schedule,
    τ = 0.2, MLP head, "aug+" crop scale (0.2, 1) (MoCo-v2 paper; SPICE uses the same ratio, 0.015 at 128).
    Key-encoder momentum 0.99 and queue 4,096 follow the small-data (CIFAR) MoCo setting of the brief;
    MoCo-v2 and SPICE use 0.999 and 65,536 (both are parameters).
    """

    arch: str = "resnet18"
    epochs: int = 1000
    batch_size: int = 256
    optimizer: str = "sgd"
    lr: float = 0.03
    weight_decay: float = 1e-4
    warmup_epochs: int = 0
    temperature: float = 0.2
    crop_scale_min: float = 0.2
    moco_momentum: float = 0.99
    """Momentum m of the key encoder, θ_k ← m θ_k + (1 − m) θ_q."""
    queue_size: int = 4096
    """Number of negative keys kept (must be >= batch_size)."""
    bn_splits: int = 8
    """Groups of the split BatchNorm emulating shuffle BN (1 = plain BatchNorm)."""


class _EncoderWithHead(nn.Module):
    def __init__(self, encoder: Encoder, proj_hidden: int, proj_dim: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Linear(encoder.out_dim, proj_hidden), nn.ReLU(inplace=True),
                                  nn.Linear(proj_hidden, proj_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return h, self.head(h)


class MoCo(nn.Module):
    """Query encoder + MLP head (trained), momentum key encoder, queue of normalised keys.

    Parameters
    ----------
    encoder : Encoder
        The query backbone; the key backbone is a deep copy that receives no gradient.
    proj_hidden, proj_dim : int
        MLP head sizes (MoCo-v2: hidden = feature size, output 128).
    queue_size : int
    momentum : float
        Key-encoder momentum.
    temperature : float
    """

    def __init__(self, encoder: Encoder, proj_hidden: int = 512, proj_dim: int = 128, queue_size: int = 4096,
                 momentum: float = 0.99, temperature: float = 0.2):
        super().__init__()
        if queue_size < 1 or not 0 <= momentum < 1:
            raise ValueError(f"need queue_size >= 1 and 0 <= momentum < 1; got {queue_size}, {momentum}")
        self.query = _EncoderWithHead(encoder, proj_hidden, proj_dim)
        self.key = copy.deepcopy(self.query)
        self.key.requires_grad_(False)
        self.momentum, self.temperature = momentum, temperature
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def _momentum_update(self) -> None:
        q, k = list(self.query.parameters()), list(self.key.parameters())
        torch._foreach_mul_(k, self.momentum)
        torch._foreach_add_(k, q, alpha=1.0 - self.momentum)

    @torch.no_grad()
    def _keys(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised keys of a batch, the batch shuffled through the split BatchNorm and unshuffled after."""
        perm = torch.randperm(len(x), device=x.device)
        _, z = self.key(x[perm])
        k = torch.empty_like(z)
        k[perm] = z
        return F.normalize(k.float(), dim=1)

    @torch.no_grad()
    def _enqueue(self, k: torch.Tensor) -> None:
        n = len(self.queue)
        if len(k) > n:
            raise ValueError(f"batch of {len(k)} keys exceeds queue_size {n}; use queue_size >= batch_size")
        idx = (self.queue_ptr + torch.arange(len(k), device=k.device)) % n
        self.queue[idx] = k.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + len(k)) % n)

    def loss(self, xq: torch.Tensor, xk: torch.Tensor) -> torch.Tensor:
        """InfoNCE of queries vs. their keys (positives) and the queue (negatives); updates key encoder and queue."""
        _, zq = self.query(xq)
        q = F.normalize(zq.float(), dim=1)
        self._momentum_update()
        k = self._keys(xk)
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ self.queue.T.clone()], dim=1) / self.temperature
        loss = F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))
        self._enqueue(k)
        return loss

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The stored space of a batch: ``{'moco': L2-normalised pooled query-encoder output}``."""
        return {"moco": F.normalize(self.query.encoder(x).float(), dim=1)}
