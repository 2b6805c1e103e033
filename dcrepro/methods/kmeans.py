"""k-means on the raw input (pixels scaled to [0, 1], flattened; or feature vectors).

The "k-means" rows of the image papers' tables. scikit-learn's ``KMeans``; ``n_init`` is always
passed explicitly because its default changed in scikit-learn 1.4 (10 -> 'auto', i.e. 1 run).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans

from . import RowOutput, RunContext, params_from_dict, register_method


@dataclass
class KMeansParams:
    n_init: int = 10
    """Restarts; 10 = scikit-learn's default before 1.4 (the papers' era)."""
    max_iter: int = 300
    """scikit-learn default."""
    algorithm: str = "lloyd"
    """'lloyd' or 'elkan' (same result, different speed)."""


def flat_inputs(data) -> np.ndarray:
    """Images -> float32 N×D in [0, 1]; feature arrays as float32."""
    X = np.asarray(data.X)
    if X.dtype == np.uint8:
        return X.reshape(len(X), -1).astype(np.float32) / 255.0
    return X.reshape(len(X), -1).astype(np.float32)


@register_method("kmeans", params=KMeansParams)
def run_kmeans(data, params: dict, ctx: RunContext) -> dict[str, RowOutput]:
    p = params_from_dict(KMeansParams, params, "kmeans")
    km = KMeans(ctx.n_clusters, n_init=p.n_init, max_iter=p.max_iter, algorithm=p.algorithm, random_state=ctx.seed)
    labels = km.fit_predict(flat_inputs(data))
    return {"kmeans": RowOutput(labels=labels, info={"inertia": float(km.inertia_), "n_iter": int(km.n_iter_)})}
