"""ResNet-18/34 encoders for small images (own code; torchvision is never imported).

Used by :mod:`dcrepro.backbones.simclr` and :mod:`dcrepro.backbones.moco`. The encoder maps uint8-derived
float images (N×3×H×W in [0, 1]) to the pooled feature vector "h" (N×8·width; 512-d at the standard width
64): the "H space" of DCSS §4.8.2.

Stems (the first layers, chosen by image side with ``stem='auto'``):

* ``'cifar'`` (side <= 64): 3×3 conv, stride 1, no max-pool: the usual CIFAR variant of SimCLR / MoCo /
  SCAN / SPICE code (He et al.'s 7×7/2 + max-pool would shrink 32×32 images to 8×8 before the first stage).
* ``'stl'`` (64 < side <= 128, STL-10's 96×96): the same 3×3/1 conv followed by a 3×3/2 max-pool, so the stages
  see 48×48 (as SCAN's STL ResNet). A declared choice: the DCSS paper does not give its STL-10 backbone.
* ``'imagenet'`` (side > 128, ImageNet-10 at 224): He et al.'s 7×7/2 conv + 3×3/2 max-pool.

BatchNorm is a parameter (``norm``) so that MoCo can use split ("shuffle") BatchNorm.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ["ARCHS", "STEMS", "BasicBlock", "ResNet", "Encoder", "SplitBatchNorm", "build_encoder", "stem_for_size"]

ARCHS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
"""Blocks per stage (He et al. 2016, Table 1)."""
STEMS = ("auto", "cifar", "stl", "imagenet")

Norm = Callable[[int], nn.Module]


class SplitBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose training statistics are computed over ``splits`` interleaved sub-batches.

    Sample ``n`` falls in group ``n mod splits``. On one device this emulates MoCo's multi-GPU "shuffle BN"
    (the key batch is permuted before the key encoder), so a query and its key never share statistics.
    Evaluation uses the running statistics as usual.
    """

    def __init__(self, num_features: int, splits: int):
        super().__init__(num_features)
        self.splits = int(splits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = self.splits
        if not self.training or g <= 1 or n % g or n // g < 2:
            return super().forward(x)
        rm, rv = self.running_mean.repeat(g), self.running_var.repeat(g)
        out = nn.functional.batch_norm(x.reshape(n // g, c * g, h, w), rm, rv, self.weight.repeat(g),
                                       self.bias.repeat(g), True, self.momentum, self.eps)
        with torch.no_grad():
            self.running_mean.copy_(rm.view(g, c).mean(0))
            self.running_var.copy_(rv.view(g, c).mean(0))
        self.num_batches_tracked += 1
        return out.view(n, c, h, w)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with BatchNorm and an identity (or 1×1 projection) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, norm: Norm):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = norm(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), norm(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet with basic blocks: stem, four stages (width, 2w, 4w, 8w; strides 1, 2, 2, 2), global average pool.

    Parameters
    ----------
    blocks : tuple of int
        Blocks per stage, e.g. ``ARCHS['resnet34']``.
    stem : {'cifar', 'stl', 'imagenet'}
    width : int
        Channels of the first stage (64 in the standard networks); smaller values are for tests only.
    norm : callable, optional
        ``norm(channels) -> module``; default ``nn.BatchNorm2d``.
    """

    def __init__(self, blocks: tuple[int, ...], stem: str = "cifar", width: int = 64, norm: Norm | None = None):
        super().__init__()
        norm = norm or nn.BatchNorm2d
        if stem == "imagenet":
            layers = [nn.Conv2d(3, width, 7, 2, 3, bias=False), norm(width), nn.ReLU(inplace=True),
                      nn.MaxPool2d(3, 2, 1)]
        elif stem in ("cifar", "stl"):
            layers = [nn.Conv2d(3, width, 3, 1, 1, bias=False), norm(width), nn.ReLU(inplace=True)]
            if stem == "stl":
                layers.append(nn.MaxPool2d(3, 2, 1))
        else:
            raise ValueError(f"unknown stem {stem!r}; valid stems: {list(STEMS[1:])}")
        cin = width
        for i, n in enumerate(blocks):
            cout = width * 2 ** i
            for j in range(n):
                layers.append(BasicBlock(cin, cout, 2 if (j == 0 and i > 0) else 1, norm))
                cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.net = nn.Sequential(*layers)
        self.out_dim = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Encoder(nn.Module):
    """Channel normalisation (fixed mean/std buffers) followed by a :class:`ResNet`; ``out_dim`` = feature size."""

    def __init__(self, resnet: ResNet, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)):
        super().__init__()
        self.resnet = resnet
        self.out_dim = resnet.out_dim
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resnet((x - self.mean) / self.std)


def stem_for_size(side: int) -> str:
    """'cifar' up to 64 px, 'stl' up to 128 px, 'imagenet' above (see the module docstring)."""
    return "cifar" if side <= 64 else "stl" if side <= 128 else "imagenet"


def build_encoder(arch: str, side: int, stem: str = "auto", width: int = 64, mean=(0.5,) * 3, std=(0.25,) * 3,
                  bn_splits: int = 1) -> Encoder:
    """An :class:`Encoder` for ``side``×``side`` RGB images.

    Parameters
    ----------
    arch : {'resnet18', 'resnet34'}
    side : int
        Image side length (picks the stem when ``stem='auto'``).
    stem : {'auto', 'cifar', 'stl', 'imagenet'}
    width : int
        First-stage channels (64 standard).
    mean, std : sequence of 3 floats
        Channel statistics of the training images (inputs in [0, 1]).
    bn_splits : int
        > 1: :class:`SplitBatchNorm` with that many groups (MoCo's shuffle BN); 1: plain BatchNorm.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; valid archs: {list(ARCHS)}")
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r}; valid stems: {list(STEMS)}")
    if width < 1:
        raise ValueError(f"width must be >= 1; got {width}")
    norm = (lambda c: SplitBatchNorm(c, bn_splits)) if bn_splits > 1 else None
    resnet = ResNet(ARCHS[arch], stem_for_size(side) if stem == "auto" else stem, width, norm)
    return Encoder(resnet, mean, std)
