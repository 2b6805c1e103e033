"""The DCGLU regulariser: a non-negative PU risk on confident vs unconfident items of any base model.

DCGLU (Deep Clustering optimisation from Generalized Labeled and Unlabeled data) splits the items a
deep-clustering model scores in a mini-batch (samples, or sample pairs) at a confidence threshold t:
items above t are "positive/labeled" (set P, with their generalized label y'+), the rest "unlabeled"
(set U). With a per-item loss L it adds, weighted by lambda, the non-negative PU risk of Kiryo et al.
(2017) to the base loss (paper eqs. 7, 8, 10, 11, 12 and Algorithm 1):

    R+_p = mean_P L(f(x), y'+)          R-_p = mean_P L(f(x), y'-)          R-_u = mean_U L(f_bar(x), -1)
    R_pu = pi_p * R+_p + max(0, R-_u - pi_p * R-_p)
    L_total = L_ori + lambda * R_pu

Gradient rule (Alg. 1, lines 12-16): when R-_u - pi_p R-_p >= 0 the objective is R_pu; otherwise the
"defitting" objective pi_p R-_p - R-_u is used (no R+_p term), as in nnPU. Lambda multiplies whichever
branch is active (the paper's Alg. 1 omits lambda; eq. 12 has it; notes ``dcglu.md`` pitfall 9). The
other reading, eq. 11-12 differentiated as written (the clipped part then has no gradient), is
``PUParams.negative_branch = 'clip'``.

The module knows nothing about DAC or DeepDPM: a base model hands per-item confidences and per-item
losses to :meth:`PURegulariser.risk`. Two adapters build those per-item losses for the two readings the
paper uses: :func:`binary_items` (a score in [0, 1], e.g. the cosine similarity of a DAC pair) and
:func:`multiclass_items` (a K-way probability vector with a target class, e.g. a DeepDPM sample).
:class:`PUTimer` measures the time spent in the PU term alone (DCGLU Table 4); it synchronises CUDA
before reading the clock. The methods time the term's forward computation (item losses, split, risk);
its share of the backward pass runs inside the base model's single backward and is not separable.

Callers: :mod:`dcrepro.methods.dac` and :mod:`dcrepro.methods.deepdpm`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

__all__ = ["PUParams", "PUFields", "PUTimer", "PURisk", "PURiskStacked", "PURegulariser", "binary_items", "multiclass_items", "sharpen"]

EPS = 1e-10
"""Clamp for the logs, the same 1e-10 DAC uses inside its BCE (CDAC+ ``model.py``)."""

UNLABELED_MODES = ("mean_binary", "literal")
NEGATIVE_BRANCHES = ("defit", "clip")
LOSSES = ("log", "sigmoid")
SCALES = ("pairs", "base")


@dataclass
class PUParams:
    """Hyper-parameters of the DCGLU term (shared by the DAC and DeepDPM modules)."""

    threshold: float = 0.8
    """Confidence threshold t: items with confidence > t form the labeled set P. Paper §3 footnote 3
    (0.8 for every data set and both models)."""
    prior: float = 0.5
    """Class prior pi_p of the positive (labeled) items. Paper App. C.2 (constant 0.5; Fig. 2 sweeps
    {0.1, 0.3, 0.5, 0.7, 0.9})."""
    weight: float = 1.0
    """Blend factor lambda of eq. 12. NOT reported in the paper; 1.0 is our choice (inference), shown with
    the tables as an open value."""
    negative_branch: str = "defit"
    """What happens when R-_u - pi_p R-_p < 0. 'defit' (default): Algorithm 1 lines 14-15, the nnPU step
    that follows the gradient of pi_p R-_p - R-_u (Kiryo et al. 2017 with gamma = 1). 'clip': eq. 11-12 as
    written, lambda * (pi_p R+_p + max{0, R-_u - pi_p R-_p}) differentiated as is (the negative part then
    has no gradient). The paper states both; they disagree."""
    loss: str = "log"
    """Per-item loss L. 'log' (default): the BCE the base model uses, -log s / -log(1 - s) clamped at
    1e-10 (unbounded up to 23; for a cosine score, pairs with s < 0 get zero loss and zero gradient).
    'sigmoid': Kiryo et al.'s bounded sigmoid loss sigma(-y g) on the decision value g = logit(p) of the
    item's probability p of being positive, i.e. L(+) = 1 - p and L(-) = p; see :func:`binary_items` and
    :func:`multiclass_items` for p."""
    scale: str = "pairs"
    """Normalisation of the three risks. 'pairs' (default): each is the mean over its own items (eqs. 7, 8,
    10; R+_p and R-_p average over the few items of P). 'base': each is the SUM over its items divided by
    the number of entries the base loss averages over (``base_count`` of :meth:`PURegulariser.risk`: B^2
    for DAC, whose BCE terms are masked means over all B^2 entries; B for DeepDPM's batch-mean KL), i.e.
    the PU risk on the base loss's per-entry scale. The nnPU condition is then evaluated on these
    rescaled risks."""

    def __post_init__(self) -> None:
        if self.negative_branch not in NEGATIVE_BRANCHES:
            raise ValueError(f"negative_branch must be one of {list(NEGATIVE_BRANCHES)}, got {self.negative_branch!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"PU loss must be one of {list(LOSSES)}, got {self.loss!r}")
        if self.scale not in SCALES:
            raise ValueError(f"PU scale must be one of {list(SCALES)}, got {self.scale!r}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"PU threshold must lie in [0, 1], got {self.threshold}")
        if not 0.0 < self.prior < 1.0:
            raise ValueError(f"PU class prior pi_p must lie in (0, 1), got {self.prior}")
        if self.weight < 0:
            raise ValueError(f"PU weight lambda must be >= 0, got {self.weight}")


@dataclass
class PUFields:
    """The DCGLU fields of a base method's parameters (DAC, DeepDPM): inherit it, call :meth:`pu_params`."""

    pu: bool = False
    """Add the DCGLU nnPU term (the starred rows of the tables)."""
    pu_threshold: float = 0.8
    """Confidence threshold t; see :attr:`PUParams.threshold`."""
    pu_prior: float = 0.5
    """Class prior pi_p; see :attr:`PUParams.prior` (Fig. 2 sweeps it)."""
    pu_weight: float = 1.0
    """Blend factor lambda; NOT reported in the paper, 1.0 is our choice; see :attr:`PUParams.weight`."""
    pu_negative_branch: str = "defit"
    """'defit' (Algorithm 1) or 'clip' (eq. 11-12 as written); see :attr:`PUParams.negative_branch`."""
    pu_loss: str = "log"
    """'log' (the base model's BCE, unbounded) or 'sigmoid' (Kiryo et al.'s bounded loss); see
    :attr:`PUParams.loss`."""
    pu_scale: str = "pairs"
    """'pairs' (means over P and U) or 'base' (sums over the base loss's entry count: B^2 for DAC);
    see :attr:`PUParams.scale`."""

    def pu_params(self) -> PUParams:
        """The validated :class:`PUParams` of these fields."""
        return PUParams(self.pu_threshold, self.pu_prior, self.pu_weight, self.pu_negative_branch,
                        self.pu_loss, self.pu_scale)


class PUTimer:
    """Accumulates the wall time spent inside ``with timer:`` blocks.

    On CUDA the device is synchronised before both clock reads, so the queued kernels of the timed code
    (and only those) are counted. Re-entrant use is not supported.
    """

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.cuda = torch.device(device).type == "cuda"
        self.seconds = 0.0
        self.calls = 0
        self._t0: float | None = None

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def __enter__(self) -> "PUTimer":
        self._sync()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self._sync()
        self.seconds += time.perf_counter() - self._t0
        self.calls += 1
        self._t0 = None


@dataclass
class PURisk:
    """The PU term of one batch."""

    objective: torch.Tensor
    """What to add to the base loss (already multiplied by lambda; the active branch of Alg. 1)."""
    risk: float
    """The non-negative risk R_pu of eq. 11 (the reported value, without lambda)."""
    r_pos_p: float
    """R+_p, eq. 7."""
    r_neg_p: float
    """R-_p, eq. 8."""
    r_neg_u: float
    """R-_u, eq. 10."""
    n_p: int
    """Number of labeled (confident) items."""
    n_u: int
    """Number of unlabeled items."""
    defitting: bool
    """True when R-_u - pi_p R-_p < 0 (the non-negative correction is active)."""


def _masked_mean(values: torch.Tensor, mask: torch.Tensor, denominator: int | None = None) -> torch.Tensor:
    """Mean of ``values`` over ``mask`` (0 with an intact graph when the mask is empty); with
    ``denominator`` the masked sum divided by it instead."""
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / (mask.sum().clamp(min=1) if denominator is None else denominator)


class PURegulariser:
    """The DCGLU non-negative PU risk, wrapped around a base model's per-item scores.

    Parameters
    ----------
    params : PUParams
        Threshold t, class prior pi_p and weight lambda.
    device : str
        Device of the tensors (used only to synchronise CUDA in the timer).

    Examples
    --------
    >>> reg = PURegulariser(PUParams(threshold=0.8, prior=0.5, weight=1.0))
    >>> s = torch.tensor([0.95, 0.9, 0.3, 0.1], requires_grad=True)
    >>> with reg.timer:
    ...     term = reg.risk(s, *binary_items(s))
    >>> term.n_p, term.n_u
    (2, 2)
    """

    def __init__(self, params: PUParams | None = None, device: str = "cpu") -> None:
        self.params = params or PUParams()
        self.timer = PUTimer(device)

    def risk(
        self,
        confidence: torch.Tensor,
        loss_pos: torch.Tensor,
        loss_neg: torch.Tensor,
        loss_unl: torch.Tensor,
        base_count: int | None = None,
    ) -> PURisk:
        """Split the items at the threshold and compute the lambda-weighted nnPU objective.

        Parameters
        ----------
        confidence : Tensor, shape (n,)
            Confidence that the item's generalized label is right (no gradient is taken through it).
        loss_pos : Tensor, shape (n,)
            L(f(x), y'+): the loss of each item against its generalized label.
        loss_neg : Tensor, shape (n,)
            L(f(x), y'-): the loss of each item against "not its generalized label".
        loss_unl : Tensor, shape (n,)
            L(f_bar(x), -1): the loss of each item treated as unlabeled.
        base_count : int, optional
            Number of entries the base loss averages over (B^2 for DAC, B for DeepDPM); required when
            ``params.scale == 'base'``, ignored otherwise.

        Returns
        -------
        PURisk
            ``objective`` to add to the base loss, and the batch statistics.
        """
        shapes = {t.shape for t in (confidence, loss_pos, loss_neg, loss_unl)}
        if len(shapes) != 1 or confidence.dim() != 1:
            raise ValueError(f"confidence and the three per-item losses must be 1-D of equal length, got {shapes}")
        p = self.params
        if p.scale == "base" and not base_count:
            raise ValueError("PU scale 'base' needs the base loss's entry count (base_count)")
        den = base_count if p.scale == "base" else None
        labeled = confidence.detach() > p.threshold
        unlabeled = ~labeled
        r_pos_p = _masked_mean(loss_pos, labeled, den)
        r_neg_p = _masked_mean(loss_neg, labeled, den)
        r_neg_u = _masked_mean(loss_unl, unlabeled, den)
        neg_part = r_neg_u - p.prior * r_neg_p
        defitting = bool(neg_part.detach() < 0)
        if defitting and p.negative_branch == "defit":
            objective = p.prior * r_neg_p - r_neg_u  # Alg. 1 line 15
        elif defitting:
            objective = p.prior * r_pos_p + 0.0 * neg_part  # eq. 11: max{0, .} = 0 (graph kept)
        else:
            objective = p.prior * r_pos_p + neg_part  # Alg. 1 line 13 (= R_pu, eq. 11)
        risk = p.prior * r_pos_p.detach() + neg_part.detach().clamp(min=0)
        return PURisk(
            objective=p.weight * objective,
            risk=float(risk),
            r_pos_p=float(r_pos_p.detach()),
            r_neg_p=float(r_neg_p.detach()),
            r_neg_u=float(r_neg_u.detach()),
            n_p=int(labeled.sum()),
            n_u=int(unlabeled.sum()),
            defitting=defitting,
        )

    def risk_stacked(
        self,
        confidence: torch.Tensor,
        loss_pos: torch.Tensor,
        loss_neg: torch.Tensor,
        loss_unl: torch.Tensor,
        base_count: int | None = None,
    ) -> PURiskStacked:
        """:meth:`risk` of S independent batches at once (row s of each (S, n) argument = seed s's items).

        Each row gets the objective :meth:`risk` gives it alone: the branch of Alg. 1 is picked per row with
        ``torch.where`` (the unchosen branches get zero gradient), so nothing waits for the device. The
        statistics stay tensors of shape (S,); only the objective carries a gradient."""
        shapes = {t.shape for t in (confidence, loss_pos, loss_neg, loss_unl)}
        if len(shapes) != 1 or confidence.dim() != 2:
            raise ValueError(f"confidence and the three per-item losses must be 2-D (S, n) of equal shape, got {shapes}")
        p = self.params
        if p.scale == "base" and not base_count:
            raise ValueError("PU scale 'base' needs the base loss's entry count (base_count)")
        labeled = confidence.detach() > p.threshold
        unlabeled = ~labeled

        def mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            total = torch.where(mask, values, torch.zeros_like(values)).sum(dim=1)
            return total / (mask.sum(dim=1).clamp(min=1) if p.scale != "base" else base_count)

        r_pos_p, r_neg_p, r_neg_u = mean(loss_pos, labeled), mean(loss_neg, labeled), mean(loss_unl, unlabeled)
        neg_part = r_neg_u - p.prior * r_neg_p
        defitting = neg_part.detach() < 0
        if p.negative_branch == "defit":
            other = p.prior * r_neg_p - r_neg_u  # Alg. 1 line 15
        else:
            other = p.prior * r_pos_p + 0.0 * neg_part  # eq. 11: max{0, .} = 0
        objective = torch.where(defitting, other, p.prior * r_pos_p + neg_part)
        risk = p.prior * r_pos_p.detach() + neg_part.detach().clamp(min=0)
        return PURiskStacked(p.weight * objective, risk, labeled.sum(dim=1), unlabeled.sum(dim=1), defitting)


@dataclass
class PURiskStacked:
    """The PU terms of S batches (:meth:`PURegulariser.risk_stacked`); every field has shape (S,)."""

    objective: torch.Tensor
    """What to add to each seed's base loss (lambda-weighted, the active branch per seed)."""
    risk: torch.Tensor
    """R_pu of eq. 11 per seed (detached, without lambda)."""
    n_p: torch.Tensor
    """Labeled items per seed."""
    n_u: torch.Tensor
    """Unlabeled items per seed."""
    defitting: torch.Tensor
    """Per seed: R-_u - pi_p R-_p < 0 (the non-negative correction is active)."""


def binary_items(score: torch.Tensor, loss: str = "log") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-item losses of a binary score s whose generalized label is "positive".

    ``loss='log'``: L(s, +1) = -log s and L(s, -1) = -log(1 - s), the BCE of DAC on s read as a
    probability (clamped to [1e-10, 1] as in CDAC+, so a cosine s < 0 gets zero L(s, -1) and no gradient).
    ``loss='sigmoid'``: Kiryo et al.'s bounded sigmoid loss on the score s in [-1, 1] (a cosine) mapped
    to the probability p = (1 + s) / 2: L(+1) = 1 - p, L(-1) = p, in [0, 1], with a gradient for every
    item. The unlabeled loss is L(s, -1) (for a binary score the "mean over categories" f_bar is s itself).

    Returns
    -------
    (loss_pos, loss_neg, loss_unl) : three tensors shaped like ``score``
    """
    if loss not in LOSSES:
        raise ValueError(f"PU loss must be one of {list(LOSSES)}, got {loss!r}")
    if loss == "sigmoid":
        prob = (1.0 + score) / 2.0
        return 1.0 - prob, prob, prob
    loss_pos = -torch.log(score.clamp(EPS, 1.0))
    loss_neg = -torch.log((1.0 - score).clamp(EPS, 1.0))
    return loss_pos, loss_neg, loss_neg


def multiclass_items(
    probs: torch.Tensor, target: torch.Tensor, unlabeled: str = "mean_binary", loss: str = "log"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-item losses of a K-way probability vector read as K binary problems (paper App. A.2).

    Parameters
    ----------
    probs : Tensor, shape (n, K)
        Predicted class probabilities f(x) (rows sum to 1).
    target : Tensor of int64, shape (n,)
        Generalized label y'+ of each item.
    unlabeled : {'mean_binary', 'literal'}
        How to read eq. 10's L(f_bar(x), -1).
        'mean_binary' (default, our reading): the mean over the K binary problems,
        (1/K) sum_k -log(1 - f_k(x)).
        'literal': -log(1 - f_bar(x)) with f_bar = (1/K) sum_k f_k(x); for softmax outputs this is the
        constant -log(1 - 1/K) and carries no gradient.
    loss : {'log', 'sigmoid'}
        'log' (default) as above; 'sigmoid': Kiryo et al.'s bounded loss, 1 - f_y(x), f_y(x) and the
        same unlabeled readings with p in place of -log(1 - p) (for softmax outputs both unlabeled
        readings are then the constant 1/K: R-_u carries no gradient).

    Returns
    -------
    (loss_pos, loss_neg, loss_unl) : three tensors of shape (n,)
        -log f_y(x), -log(1 - f_y(x)) and the unlabeled loss above.
    """
    if unlabeled not in UNLABELED_MODES:
        raise ValueError(f"unlabeled must be one of {list(UNLABELED_MODES)}, got {unlabeled!r}")
    if loss not in LOSSES:
        raise ValueError(f"PU loss must be one of {list(LOSSES)}, got {loss!r}")
    if probs.dim() != 2 or target.shape != probs.shape[:1]:
        raise ValueError(f"probs must be (n, K) and target (n,), got {tuple(probs.shape)} and {tuple(target.shape)}")
    p_y = probs.gather(1, target.view(-1, 1)).squeeze(1)
    if loss == "sigmoid":
        unl = probs.mean(dim=1)  # mean_k f_k and f_bar coincide for this linear loss
        return 1.0 - p_y, p_y, unl
    loss_pos = -torch.log(p_y.clamp(EPS, 1.0))
    loss_neg = -torch.log((1.0 - p_y).clamp(EPS, 1.0))
    if unlabeled == "mean_binary":
        loss_unl = -torch.log((1.0 - probs).clamp(EPS, 1.0)).mean(dim=1)
    else:
        loss_unl = -torch.log((1.0 - probs.mean(dim=1)).clamp(EPS, 1.0))
    return loss_pos, loss_neg, loss_unl


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Temperature sharpening p^(1/T) / sum_k p_k^(1/T), row-wise, computed in log space.

    DCGLU sharpens DeepDPM's E-step responsibilities before thresholding them (App. B.3); the function
    and temperature are not reported: T = 0.5 is our default choice. T = 1 returns ``probs`` unchanged.
    """
    if temperature <= 0:
        raise ValueError(f"sharpening temperature must be > 0, got {temperature}")
    logits = torch.log(probs.clamp_min(torch.finfo(probs.dtype).tiny)) / temperature
    return torch.softmax(logits, dim=1)
