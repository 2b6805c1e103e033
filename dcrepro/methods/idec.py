"""IDEC (Guo, Gao, Liu & Yin, IJCAI 2017), with the "IDEC + MNet" row of DCSS Table 4.

Registered as method ``idec`` with outputs ``idec`` and ``idec_mnet``. IDEC is DEC with the decoder kept:
``L = L_r + γ L_c`` (reconstruction MSE plus γ times DEC's KL clustering loss), which preserves the local
structure of the embedding. The clustering stage is :func:`dcrepro.methods.dec.fit_dec`; the AE is the
shared pre-trained AE (:mod:`dcrepro.methods.autoencoders`). Values from the paper and its code
``XifengGuo/IDEC`` (``IDEC.py``: gamma 0.1, batch 256, maxiter 2e4, update_interval 140, tol 0.001,
Adam for MNIST, SGD(0.1, 0.99) for USPS).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from . import RowOutput, RunContext, params_from_dict, register_batched, register_method
from .autoencoders import pretrained_start, pretrained_start_batched, x_method_info
from .dec import DECStageParams, _check_dec, effective_update_interval, fit_dec, fit_dec_batched
from .mnet import with_mnet_outputs, with_mnet_outputs_batched

__all__ = ["IDECParams", "run_idec", "run_idec_batched", "IDEC_OPTIMIZERS"]

IDEC_OPTIMIZERS = ("adam", "sgd")


@dataclass
class IDECParams(DECStageParams):
    """IDEC hyper-parameters (DEC's clustering-stage fields plus γ and the optimiser; defaults = MNIST values)."""

    idec_gamma: float = 0.1
    """Weight γ of the clustering loss against the reconstruction loss. Source: IDEC paper §4 / ``IDEC.py``."""
    optimizer: str = "adam"
    """'adam' (MNIST) or 'sgd' (USPS, REUTERS-10K). Source: IDEC paper §4 / ``IDEC.py``."""
    lr: float = 1e-3
    """Learning rate: 1e-3 with Adam (MNIST); 0.1 with SGD (USPS). Source: IDEC paper §4 / ``IDEC.py``."""
    momentum: float = 0.99
    """SGD momentum (only with optimizer = 'sgd'). Source: ``IDEC.py`` (``SGD(lr=0.1, momentum=0.99)``)."""


def _idec_params(params: dict) -> IDECParams:
    p = params_from_dict(IDECParams, params, "idec")
    _check_dec(p)
    if p.optimizer not in IDEC_OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(IDEC_OPTIMIZERS)}; got {p.optimizer!r}")
    if p.idec_gamma < 0:
        raise ValueError(f"idec_gamma must be >= 0; got {p.idec_gamma}")
    return p


@register_method("idec", params=IDECParams)
def run_idec(data, params: dict, ctx: RunContext) -> dict[str, RowOutput]:
    """IDEC on ``data``; outputs ``idec`` and (unless ``with_mnet`` is false) ``idec_mnet``."""
    p = _idec_params(params)
    t0 = time.perf_counter()
    X, ae, ae_info, km = pretrained_start(data, p, ctx)
    labels, centres, hist = fit_dec(ae, X, km.cluster_centers_, p, ctx, p.optimizer, p.lr, p.momentum,
                                    rec_weight=1.0, cluster_weight=p.idec_gamma,
                                    update_interval=effective_update_interval(p, data))
    info = x_method_info(X, ae_info, hist)
    return with_mnet_outputs("idec", ae, X, centres, labels, p, ctx, t0, info)


@register_batched("idec")
def run_idec_batched(data, params: dict, ctxs: list[RunContext]) -> list[dict[str, RowOutput]]:
    """:func:`run_idec` for S seeds at once (one context per seed): the same outputs per seed."""
    p = _idec_params(params)
    t0 = time.perf_counter()
    X, aes, ae_infos, kms, template = pretrained_start_batched(data, p, ctxs)
    Xd = X.to(ctxs[0].device)
    labels, centres, hists = fit_dec_batched(aes, Xd, np.stack([km.cluster_centers_ for km in kms]), p, ctxs,
                                             p.optimizer, p.lr, p.momentum, rec_weight=1.0,
                                             cluster_weight=p.idec_gamma,
                                             update_interval=effective_update_interval(p, data))
    infos = [x_method_info(X, i, h) for i, h in zip(ae_infos, hists)]
    return with_mnet_outputs_batched("idec", aes, Xd, centres, labels, p, ctxs, t0, infos, template)
