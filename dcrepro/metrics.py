"""Clustering metrics: ACC (Hungarian), NMI (arithmetic or geometric normalisation), ARI.

Every metric is registered with the facts the table and band code need (its scale and that higher is
better), in the manner of lm-evaluation-harness's metric registry, so no caller guesses a direction.
All functions take integer label arrays of equal length; predicted labels may use any integers and
any number of clusters (ACC then matches on a rectangular confusion matrix).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from .errors import choice_error

__all__ = ["Metric", "METRICS", "get_metric", "display_name", "confusion", "acc", "nmi", "ari", "evaluate"]


def _encode(a: np.ndarray) -> tuple[np.ndarray, int]:
    """Map arbitrary integer labels to 0..n-1 (vectorised)."""
    a = np.asarray(a)
    if a.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {a.shape}")
    uniq, inv = np.unique(a, return_inverse=True)
    return inv.astype(np.int64), len(uniq)


def confusion(y_true, y_pred) -> np.ndarray:
    """Contingency matrix C[i, j] = #(true class i, predicted cluster j), via one bincount."""
    t, nt = _encode(y_true)
    p, np_ = _encode(y_pred)
    if len(t) != len(p):
        raise ValueError(f"y_true and y_pred differ in length: {len(t)} vs {len(p)}")
    return np.bincount(t * np_ + p, minlength=nt * np_).reshape(nt, np_)


def acc(y_true, y_pred) -> float:
    """Unsupervised clustering accuracy: the best one-to-one map of clusters to classes (Hungarian).

    With more clusters than classes the surplus clusters map to no class (their samples count as
    errors), with fewer the surplus classes stay unmatched: the rectangular assignment of DeepDPM's
    and CDAC+'s evaluation code.
    """
    c = confusion(y_true, y_pred)
    rows, cols = linear_sum_assignment(c, maximize=True)
    return float(c[rows, cols].sum() / c.sum())


def nmi(y_true, y_pred, average: str = "arithmetic") -> float:
    """Normalised mutual information. ``average``: 'arithmetic' (sklearn's default since 0.22; DCSS,
    DEC-CRL) or 'geometric' (Strehl & Ghosh; the CDAC+/SPICE code)."""
    if average not in ("arithmetic", "geometric"):
        raise ValueError(f"average must be one of ['arithmetic', 'geometric'], got {average!r}")
    return float(normalized_mutual_info_score(y_true, y_pred, average_method=average))


def ari(y_true, y_pred) -> float:
    """Adjusted Rand index (sklearn)."""
    return float(adjusted_rand_score(y_true, y_pred))


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[np.ndarray, np.ndarray], float] | None
    higher_is_better: bool = True
    scale: str = "fraction"
    """Scale of the value ``fn`` returns: 'fraction' (0-1), 'seconds', 'ratio', 'count', 'value' (a plain
    number shown as it is: a distance, a loss, a gradient ratio)."""
    description: str = ""
    display: str = ""
    """How table headers and reports name the metric (plain text; renderers escape it)."""


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("acc", acc, display="ACC", description="clustering accuracy, Hungarian matching"),
        Metric("nmi", lambda t, p: nmi(t, p, "arithmetic"), display="NMI",
               description="NMI, arithmetic mean normalisation"),
        Metric("nmi_geo", lambda t, p: nmi(t, p, "geometric"), display="NMI (geometric)",
               description="NMI, geometric mean normalisation"),
        Metric("ari", ari, display="ARI", description="adjusted Rand index"),
        # measured by the methods themselves (RowOutput.metrics), registered for their facts only
        Metric("time_s", None, higher_is_better=False, scale="seconds", display="time (s)",
               description="wall time of the run"),
        Metric("pu_time_s", None, higher_is_better=False, scale="seconds", display="PU time (s)",
               description="time in the PU term"),
        Metric("time_ratio", None, higher_is_better=False, scale="ratio", display="time ratio",
               description="time / base time"),
        Metric("k_found", None, higher_is_better=True, scale="count", display="K found",
               description="number of clusters inferred"),
        # run health (emitted by the methods; read by the spec's degenerate_if rules)
        Metric("defit_share", None, higher_is_better=False, display="defit share",
               description="share of PU steps on which the nnPU defitting branch (R-_u < pi_p R-_p) was active"),
        Metric("p_share", None, display="P share", description="share of the PU items above the threshold (P)"),
        Metric("u_share", None, display="U share", description="share of the PU items below the threshold (U)"),
        Metric("centroid_drift", None, scale="value", display="centroid drift",
               description="mean distance the cluster centroids moved from their k-means start"),
        Metric("final_l_cluster", None, higher_is_better=False, scale="value", display="final L_Cluster",
               description="cluster (KL) loss of the last training step"),
        Metric("grad_ratio_step1", None, higher_is_better=False, scale="value", display="CRL/cluster grad ratio",
               description="gradient norm on the centroids at step 1: extra (CRL) loss / lambda_c L_Cluster"),
        Metric("sharpness", None, scale="value", display="membership sharpness",
               description="mean sum_k u_ik^m of the fuzzy memberships (1/K^(m-1) uniform, 1 one-hot)"),
        Metric("similar_pair_share", None, display="similar-pair share",
               description="share of the B^2 pairs above zeta in MNet's last epoch"),
        Metric("similar_pair_share_u", None, display="similar-pair share (u space)",
               description="mean share of the B^2 pairs above zeta over MNet's u-space epochs (< T2)"),
    ]
}
LABEL_METRICS = ("acc", "nmi", "nmi_geo", "ari")


def get_metric(name: str) -> Metric:
    if name not in METRICS:
        raise choice_error("metric", name, list(METRICS))
    return METRICS[name]


def display_name(name: str) -> str:
    """The metric's name for people (table headers, reports): ``'pu_time_s'`` -> ``'PU time (s)'``."""
    return get_metric(name).display or name


def evaluate(y_true, y_pred) -> dict[str, float]:
    """All label metrics at once (fractions); NMI in both normalisations."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    out = {name: METRICS[name].fn(y_true, y_pred) for name in LABEL_METRICS}
    out["n_clusters_pred"] = float(len(np.unique(y_pred)))
    return out
