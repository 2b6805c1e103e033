"""MNet on cached backbone features: DCSS Table 5 ("MoCo + Kmeans", "MoCo + MNet").

Registered as method ``mnet_on_features``; it takes a feature data set (``cifar10@moco``, modality
'features') and yields two rows:

* ``kmeans`` -- k-means on the features (``n_init`` explicit), i.e. "MoCo + Kmeans". Its centres seed MNet.
* ``mnet`` -- DCSS phase 2 (:func:`dcrepro.methods.mnet.train_mnet`, eqs. 4-5) on top of the features,
  i.e. "MoCo + MNet". For the first T2 epochs the pairs are picked with eq. (2) fuzzy memberships
  (m = 1.5) around the k-means centres, updated by eq. (3) after each of those epochs (notes §4 Table 5:
  the paper does not say where u comes from; an inference).

Declared deviation: the paper fine-tunes the MoCo encoder together with MNet. On cached features the
backbone is fixed; with ``encoder = "linear"`` (default) a D×D linear map initialised as the identity
stands in for it and is trained with the phase-2 encoder learning rate (1e-5, DCSS code), so the u space
starts exactly at the MoCo features and may drift as the encoder's would; ``encoder = "fixed"`` trains
MNet alone on the fixed features.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import RowOutput, RunContext, params_from_dict, register_method
from .autoencoders import kmeans_on
from .kmeans import flat_inputs
from .mnet import MNetParams, train_mnet

__all__ = ["MNetOnFeaturesParams", "FeatureEncoder", "run_mnet_on_features", "ENCODERS"]

ENCODERS = ("linear", "fixed")


@dataclass
class MNetOnFeaturesParams(MNetParams):
    """Phase-2 hyper-parameters (inherited from :class:`~dcrepro.methods.mnet.MNetParams`: the DCSS code's
    values) plus the stand-in encoder and the k-means that gives the initial centres."""

    encoder: str = "linear"
    """'linear' (trainable identity-initialised D×D map, lr ``mnet_encoder_lr``) or 'fixed' (no encoder update).
    Source: inference; the paper updates the MoCo encoder itself (declared deviation)."""
    kmeans_n_init: int = 10
    """k-means restarts for the "MoCo + Kmeans" row and MNet's initial centres. Source: scikit-learn's
    pre-1.4 default, the papers' era (passed explicitly)."""


class FeatureEncoder(nn.Module):
    """``encode(x) = W x + b`` with W = I and b = 0 at the start; frozen when ``trainable`` is False."""

    def __init__(self, dim: int, trainable: bool = True):
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(dim))
            self.linear.bias.zero_()
        self.linear.requires_grad_(trainable)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


@register_method("mnet_on_features", params=MNetOnFeaturesParams)
def run_mnet_on_features(data, params: dict, ctx: RunContext) -> dict[str, RowOutput]:
    """k-means and MNet on a feature data set; see the module docstring for the rows."""
    p = params_from_dict(MNetOnFeaturesParams, params, "mnet_on_features")
    if p.encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {list(ENCODERS)}; got {p.encoder!r}")
    if getattr(data, "modality", None) != "features":
        raise ValueError(f"{getattr(data, 'name', '?')}: mnet_on_features needs a feature data set "
                         f"(modality 'features', e.g. cifar10@moco); got modality {getattr(data, 'modality', None)!r}")
    t0 = time.perf_counter()
    X = torch.from_numpy(flat_inputs(data))
    km = kmeans_on(X, ctx.n_clusters, ctx.seed, p.kmeans_n_init)
    t_km = time.perf_counter() - t0
    common = {"n_samples": len(X), "feature_dim": int(X.shape[1]), "feature_set": str(getattr(data, "name", ""))}
    out = {"kmeans": RowOutput(labels=km.labels_.astype(np.int64), metrics={"time_s": t_km},
                               info={**common, "inertia": float(km.inertia_), "n_iter": int(km.n_iter_)})}
    encoder = FeatureEncoder(X.shape[1], trainable=p.encoder == "linear").to(ctx.device)
    centres = torch.as_tensor(km.cluster_centers_, dtype=torch.float32)
    labels, hist = train_mnet(encoder, X, centres, ctx.n_clusters, p, ctx.seed, ctx.device, ctx.log)
    out["mnet"] = RowOutput(
        labels=labels.astype(np.int64),
        metrics={"time_s": t_km + hist["time_mnet_s"], "time_phase2_s": hist["time_mnet_s"]},
        info={**common, **hist, "encoder": p.encoder,
              "u_space": "the features (through the identity-initialised encoder); eq. (2) memberships around "
                         "the k-means centres for the first T2 epochs"})
    return out
