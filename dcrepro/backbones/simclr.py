"""SimCLR (Chen et al. 2020): a ResNet encoder, a projection head and the NT-Xent loss.

Used by ``dcrepro backbone --method simclr`` (:mod:`dcrepro.backbones.cli`), which writes two feature
sets per image set (DCSS §4.8.2, Table 3): ``<set>@simclr_h``, the pooled encoder output h (512-d; the
"H space", DCSS's input for the colour sets), and ``<set>@simclr_z``, the projection-head output
z = g(h) (128-d; the "Z space"). Neither is normalised when stored.

Recipe choices (DCSS gives no SimCLR recipe; its Table 3 says only "ResNet-34"): see :class:`SimCLRParams`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .resnet import Encoder
from .train import BackboneParams

__all__ = ["SimCLRParams", "SimCLR", "nt_xent"]


@dataclass
class SimCLRParams(BackboneParams):
    """SimCLR hyper-parameters; defaults = the recipe recommended for the DCSS colour-set features.

    Sources: arch ResNet-34 (DCSS §4.8.2, paper); epochs 500 and batch 512 (SimCLR CIFAR-10 runs and SCAN's
    ``simclr_cifar10.yml``; DCSS states none: inference); LARS with lr 0.3 × batch/256, weight decay 1e-6,
    10 warm-up epochs then cosine decay (SimCLR paper App. B.1); τ = 0.5 (SimCLR App. B.9, CIFAR-10);
    head 512→512→128 with ReLU (SimCLR §2.1, hidden = feature size); crop scale (0.08, 1) (SimCLR App. A).
    """

    arch: str = "resnet34"
    epochs: int = 500
    batch_size: int = 512
    optimizer: str = "lars"
    lr: float = 0.3
    weight_decay: float = 1e-6
    warmup_epochs: int = 10
    temperature: float = 0.5
    crop_scale_min: float = 0.08


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Normalised-temperature cross-entropy over the 2B views of a batch (SimCLR eq. 1), mean over anchors.

    Row i of ``z1`` and row i of ``z2`` are the positive pair; the other 2B − 2 views are negatives.
    Computed in float32 whatever the input dtype.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be B×D; got {tuple(z1.shape)} and {tuple(z2.shape)}")
    b = len(z1)
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = (z @ z.T) / temperature
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, target)


class SimCLR(nn.Module):
    """Encoder f (pooled h) + projection head g (z); ``loss`` = NT-Xent of the two views' z.

    Both views go through the encoder as one batch, so BatchNorm sees all 2B images (global BN on one device).
    """

    def __init__(self, encoder: Encoder, proj_hidden: int = 512, proj_dim: int = 128, temperature: float = 0.5):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Linear(encoder.out_dim, proj_hidden), nn.ReLU(inplace=True),
                                  nn.Linear(proj_hidden, proj_dim))
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(h, z) of a float N×3×H×W batch."""
        h = self.encoder(x)
        return h, self.head(h)

    def loss(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        _, z = self(torch.cat([x1, x2]))
        z1, z2 = z.chunk(2)
        return nt_xent(z1, z2, self.temperature)

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The stored spaces of a batch: ``{'simclr_h': h, 'simclr_z': z}``."""
        h, z = self(x)
        return {"simclr_h": h, "simclr_z": z}
