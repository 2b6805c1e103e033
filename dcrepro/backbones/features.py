"""Encode a whole image set with a trained backbone and write its feature sets (and the checkpoint).

Called by :func:`dcrepro.backbones.cli.run_backbone` after training. Inference is batched, in eval mode
(BatchNorm running statistics), on the un-augmented images, in float32. Files are written atomically by
:func:`dcrepro.data.feature_sets.write_feature_set` (``<root>/features/<set>/<space>.npz`` + ``.json``), so a
killed run never leaves a half-written feature set that the runner would pick up.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.feature_sets import features_dir, write_feature_set
from .augment import to_float

__all__ = ["encode_images", "write_features", "save_checkpoint"]


@torch.no_grad()
def encode_images(model: nn.Module, images: torch.Tensor, batch_size: int = 1024) -> dict[str, np.ndarray]:
    """``model.features(x)`` of all images, in eval mode; returns ``{space: float32 N×D}`` on the CPU.

    ``images`` is uint8 N×H×W×C on the model's device. The module's train/eval state is restored afterwards.
    """
    was = model.training
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(images), batch_size):
        for space, v in model.features(to_float(images[i:i + batch_size])).items():
            parts.setdefault(space, []).append(v.float().cpu())
    model.train(was)
    return {space: torch.cat(v).numpy() for space, v in parts.items()}


def write_features(base: str, feats: dict[str, np.ndarray], data, recipe: dict, root) -> dict[str, Path]:
    """Write one feature set ``<base>@<space>`` per entry of ``feats``; returns ``{name: path}``.

    ``data`` is the image :class:`~dcrepro.data.Dataset` the features were computed from (labels, splits).
    """
    out = {}
    for space, X in feats.items():
        name = f"{base}@{space}"
        out[name] = write_feature_set(name, X, data.y, data.splits, {**recipe, "space": space}, root)
    return out


def save_checkpoint(model: nn.Module, base: str, method: str, recipe: dict, root) -> Path:
    """Atomically save the trained backbone (``state_dict`` + recipe).

    The file is ``<features dir>/<base>/<method>_backbone.pt`` (:func:`~dcrepro.data.feature_sets.features_dir`).
    """
    path = features_dir(root) / base / f"{method}_backbone.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save({"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "recipe": recipe}, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
