"""Seeding and determinism: one call seeds python, numpy and torch (CPU and CUDA).

The seed of a run is its seed index (0..n-1 by default): both arms of a paired comparison share it,
which is what the claims checker's paired tests rely on. Everything else a run does is fixed by its
identity (paper, job, data set, budget, resolved config), see :mod:`dcrepro.spec`.
"""
from __future__ import annotations

import os
import random

import numpy as np

__all__ = ["seed_everything", "derive_seed"]


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch; ask cuDNN/cuBLAS for deterministic kernels when ``deterministic``."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch
    except ImportError:  # torch is a dependency, but metrics-only use works without it
        return
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def derive_seed(seed: int, *names: str) -> int:
    """A stable 31-bit seed derived from a base seed and names (e.g. a sub-stage of a run)."""
    import hashlib

    h = hashlib.sha256(("/".join([str(seed), *names])).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF
