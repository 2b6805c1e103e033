"""SPICE-Self (Niu et al., TIP 2022) as RPSC re-runs it for Table 5 (SPICE-CE, SPICE-SCL), on cached features.

SPICE-Self and RPSC-Self share the pseudo-labelling of eq. 1-2 (top-γ per cluster -> prototypes -> the M/C
nearest samples get the label; SPICE ``sem_head.py select_samples``), so this module reuses
:func:`dcrepro.methods.rpsc.train_self` with SPICE's settings: the pseudo-labelling branch sees a **weak** view
(SPICE ``train_self_v2.py``: scores of the weakly augmented images), the training branch a strong view, loss
cross-entropy (SPICE-CE) or SCL (SPICE-SCL, eq. 4 with d_ic). Declared choices: the CE is on the head's logits
(SPICE's code applies ``nn.CrossEntropyLoss`` to softmax outputs, a double softmax: notes pitfall 5); the head is
RPSC's BYOL head and M, epochs and optimiser are RPSC's, so that only the studied factor differs between the rows;
the head is selected by the minimum loss (SPICE's "select" checkpoint), never by ground-truth ACC (pitfall 4).
"""
from __future__ import annotations

from dataclasses import dataclass


from . import RowOutput, RunContext, params_from_dict, register_method
from .rpsc import SelfParams, fit_self


@dataclass
class SPICESelfParams(SelfParams):
    """RPSC-Self's parameters with SPICE's defaults: weak view in branch 1, cross-entropy."""

    branch1_aug: str = "weak"
    """SPICE pseudo-labels weakly augmented images (C: ``train_self_v2.py``)."""
    loss: str = "ce"
    """'ce' (SPICE-Self as published) or 'scl' (Table 5's SPICE-SCL)."""


@register_method("spice_self", params=SPICESelfParams)
def run_spice_self(data, params: dict, ctx: RunContext) -> dict[str, RowOutput]:
    p = params_from_dict(SPICESelfParams, params, "spice_self")
    return {"spice_self": fit_self(data, p, ctx)[-1]}
