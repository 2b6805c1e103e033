"""The statistics behind claim verdicts: paired one-sided tests, non-inferiority, Holm's adjustment.

Pure functions on arrays; :mod:`dcrepro.claims` decides outcomes with them. Nothing here reads a spec or
the store.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

from .errors import choice_error

__all__ = ["TESTS", "paired_test", "noninferiority_test", "holm", "cohen_dz"]

TESTS = ("paired_t", "wilcoxon")


def paired_test(a, b, test: str = "paired_t") -> tuple[float, float]:
    """One-sided p-values ``(p(a > b), p(b > a))`` for paired samples.

    With no variance in the differences the sign decides only when every pair agrees and is non-zero;
    fewer than two pairs give (1, 1).
    """
    if test not in TESTS:
        raise choice_error("test", test, TESTS)
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = a - b
    if len(d) < 2 or np.allclose(d, d[0]):
        if len(d) >= 2 and d[0] != 0:
            return (0.0, 1.0) if d[0] > 0 else (1.0, 0.0)
        return (1.0, 1.0)
    if test == "paired_t":
        return (float(stats.ttest_rel(a, b, alternative="greater").pvalue),
                float(stats.ttest_rel(a, b, alternative="less").pvalue))
    return (float(stats.wilcoxon(a, b, alternative="greater").pvalue),
            float(stats.wilcoxon(a, b, alternative="less").pvalue))


def noninferiority_test(a, b, margin: float, test: str = "paired_t") -> tuple[float, float]:
    """'a is not worse than b by more than ``margin``' over paired samples.

    Returns ``(p_not_worse, p_worse)``: the one-sided p of H1: mean(a - b) > -margin (non-inferiority:
    small p supports the claim) and of H1: mean(a - b) < -margin (small p: a is worse than b by more than
    the margin, which contradicts it). Both shift b by the margin and run :func:`paired_test`.
    """
    return paired_test(np.asarray(a, float), np.asarray(b, float) - float(margin), test)


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as given; NaN entries stay NaN and are not counted).

    >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(pvalues, float)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    if not len(idx):
        return out
    m = len(idx)
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def cohen_dz(d) -> float:
    """Cohen's d_z = mean(d) / sd(d) of paired differences (±inf when sd = 0 and the mean is not)."""
    d = np.asarray(d, float)
    if len(d) < 2:
        return math.nan
    sd = d.std(ddof=1)
    if sd > 0:
        return float(d.mean() / sd)
    return math.nan if d.mean() == 0 else math.copysign(math.inf, d.mean())
