"""Batched image augmentations for contrastive pre-training (kornia, on the training device).

Used by :mod:`dcrepro.backbones.train`. Images stay uint8 N×H×W×C on the device; :func:`to_float` turns a
batch into float N×3×H×W in [0, 1] (grey images repeated to three channels) and :class:`ContrastiveAugment`
draws one random view per image, with independent parameters per image. The two views of a pair are two
calls. The recipe is SimCLR's (Chen et al. 2020, App. A): random resized crop, horizontal flip (p 0.5), colour
jitter (brightness, contrast, saturation 0.4, hue 0.1; p 0.8: strength s = 0.5, the paper's CIFAR-10 value),
grayscale (p 0.2), and Gaussian blur (p 0.5, σ ∈ [0.1, 2], kernel ≈ 10 % of the side) for images larger than
CIFAR's (STL-10, ImageNet-10). MoCo-v2's "aug+" is the same list with crop scale (0.2, 1).
"""
from __future__ import annotations

import kornia.augmentation as K
import torch
from torch import nn

__all__ = ["ContrastiveAugment", "to_float", "channel_stats"]


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 N×H×W×C (C = 1 or 3) -> float32 N×3×H×W in [0, 1], on the same device."""
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"expected uint8 N×H×W×C images with C in (1, 3); got shape {tuple(images.shape)}")
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    return x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x.contiguous()


@torch.no_grad()
def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 N×H×W×C images scaled to [0, 1] (chunked)."""
    s = torch.zeros(3, dtype=torch.float64, device=images.device)
    s2 = torch.zeros(3, dtype=torch.float64, device=images.device)
    count = 0
    for i in range(0, len(images), chunk):
        x = to_float(images[i:i + chunk]).double()
        s += x.sum((0, 2, 3))
        s2 += x.pow(2).sum((0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = s / count
    std = (s2 / count - mean.pow(2)).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.clamp_min(1e-3).tolist()


class ContrastiveAugment(nn.Module):
    """One random augmented view per image of a float N×3×H×W batch in [0, 1]; output has the same shape.

    Parameters
    ----------
    size : int
        Output side (= input side: views keep the image size).
    crop_scale : tuple of float
        Area range of the random resized crop: SimCLR (0.08, 1), MoCo-v2 (0.2, 1).
    jitter : tuple of 4 floats
        Brightness, contrast, saturation, hue of the colour jitter (SimCLR CIFAR: 0.4, 0.4, 0.4, 0.1).
    p_jitter, p_gray : float
        Probabilities of colour jitter (0.8) and grayscale (0.2).
    blur : bool
        Add Gaussian blur (p 0.5, σ ∈ [0.1, 2], odd kernel ≈ size / 10).
    """

    def __init__(self, size: int, crop_scale: tuple[float, float] = (0.08, 1.0),
                 jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1), p_jitter: float = 0.8,
                 p_gray: float = 0.2, blur: bool = False):
        super().__init__()
        if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1; got {crop_scale}")
        ops = [K.RandomResizedCrop((size, size), scale=tuple(crop_scale)), K.RandomHorizontalFlip(),
               K.ColorJitter(*jitter, p=p_jitter), K.RandomGrayscale(p=p_gray)]
        if blur:
            k = max(3, int(0.1 * size) // 2 * 2 + 1)
            ops.append(K.RandomGaussianBlur((k, k), (0.1, 2.0), p=0.5))
        self.ops = K.AugmentationSequential(*ops)
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected float N×3×H×W images; got shape {tuple(x.shape)}")
        return self.ops(x).clamp_(0.0, 1.0)
