"""DAC on text (the unsupervised stage of the CDAC+ code), its DAC-KM / DAC-DEC variants, and DCGLU on it.

Registered as method ``dac``; called by the runner (:mod:`dcrepro.runner`) for DCGLU Tables 1, 3, 4
and Figure 2. One run trains DAC on the 'train' split and predicts the 'test' split (the CDAC+ protocol,
notes ``dcglu.md`` §3); with ``variant='dac_km'`` or ``'dac_dec'`` the same run continues with the
second stage of the CDAC+ script, so a ``dac_dec`` run yields the rows ``dac``, ``dac_km`` and
``dac_dec`` without training anything twice.

Model (CDAC+ ``model.py``): encoder -> mean over all token states (padding included) -> Linear H->H ->
tanh -> dropout -> Linear H->K. ``finetune_encoder=True`` trains the encoder's last layer with the head
(CDAC+ trains bert-base-uncased layer 11; here the same recipe on whatever encoder is given).
``finetune_encoder=False`` (the reduced budget) trains the head on frozen, cached sentence embeddings
from :func:`dcrepro.data.embed.embed_texts`.

DAC loss (CDAC+ "semi" branch with no labels): S = cosine similarities of the K logits within the
batch; L = mean(-log S * [S > u]) + mean(-log(1 - S) * [S < l]) + (u - l), means over all B^2 entries.
Thresholds start at u = 0.95, l = 0.455; after each epoch eta += 1.1 * 0.009, u = 0.95 - eta,
l = 0.455 + 0.1 eta; training stops when u < l (46 epochs). Prediction: argmax of the logits.

DCGLU (``pu=True``, paper App. B.3; notes §1.3): items are the ordered pairs i != j of the batch, the
confidence and score of a pair is S_ij, pairs with S_ij > t are labeled "same cluster"; the nnPU term of
:mod:`dcrepro.methods.pu` is added with weight lambda. It is active in the DAC stage only (whether the
paper kept it during DEC is not stated).

DAC-KM: k-means on the train logits; test texts go to their nearest centre. DAC-DEC: DEC refinement
from those centres (Student-t q, target p recomputed once per epoch on the train split, KL(p || q)),
stopped when fewer than 0.1 % of the train labels change. The CDAC+ code also stops when train NMI has
not improved for 5 epochs and restores the best model; that uses labels and runs only with
``early_stop_on_labels=True`` (a declared deviation from label-free clustering).
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import nn

from dcrepro.seeding import seed_everything

from . import RowOutput, RunContext, params_from_dict, register_method
from .pu import PUFields, PURegulariser, binary_items

__all__ = ["DACParams", "dac_loss", "pair_items", "pu_health", "run_dac", "load_text_embeddings", "bert_adam"]

VARIANTS = ("dac", "dac_km", "dac_dec")
EPS = 1e-10


@dataclass
class DACParams(PUFields):
    """Hyper-parameters of DAC (+ DCGLU, + KM / DEC). Defaults: the paper's full budget (CDAC+ code)."""

    variant: str = "dac"
    """Last stage to run: 'dac', 'dac_km' or 'dac_dec' (Table 3); every earlier stage is output too."""
    finetune_encoder: bool = True
    """Train the encoder's last layer with the head (CDAC+ ``experiment.py``); False: frozen cached
    sentence embeddings, head only (reduced budget, a declared deviation)."""
    encoder: str = "all-MiniLM-L6-v2"
    """Sentence encoder: a name understood by :func:`dcrepro.data.embed.embed_texts` (frozen) or, when
    fine-tuning, 'all-MiniLM-L6-v2' or a local Hugging Face model folder (e.g. bert-base-uncased).
    CDAC+ uses bert-base-uncased; MiniLM is the only encoder available offline (declared)."""
    max_seq_length: int = 64
    """Tokens per text when fine-tuning (padding to this length is part of the mean pooling). CDAC+:
    35 for SNIPS, 54 for DBPedia (set per data set in the spec)."""
    batch_size: int = 256
    """Mini-batch size (CDAC+ ``train_batch_size``)."""
    lr: float = 2e-5
    """Peak learning rate of the DAC stage (CDAC+ BertAdam 2e-5)."""
    warmup_proportion: float = 0.1
    """Linear warm-up share of the optimisation steps, then linear decay to 0 (CDAC+ BertAdam)."""
    weight_decay: float = 0.01
    """Decoupled weight decay, not on biases / LayerNorm (CDAC+)."""
    max_epochs: int = 46
    """Epoch cap of the DAC stage (CDAC+ ``num_train_epochs``; the threshold schedule stops at 46)."""
    u0: float = 0.95
    """Initial upper threshold u (CDAC+)."""
    l0: float = 0.455
    """Initial lower threshold l (CDAC+)."""
    eta_step: float = 1.1 * 0.009
    """Threshold step per epoch (CDAC+ ``eta += 1.1 * 0.009``)."""
    l_slope: float = 0.1
    """l grows by l_slope * eta (CDAC+)."""
    dropout: float = 0.1
    """Head dropout (BERT ``hidden_dropout_prob``, CDAC+)."""
    km_n_init: int = 10
    """k-means restarts for DAC-KM (sklearn's default when the CDAC+ code was written)."""
    dec_lr: float = 5e-5
    """Peak learning rate of the DEC stage (CDAC+ BertAdam 5e-5, warm-up 0.1)."""
    dec_max_epochs: int = 100
    """Epoch cap of the DEC stage (CDAC+)."""
    dec_tol: float = 0.001
    """DEC stops when fewer than this fraction of train labels change between epochs (CDAC+)."""
    early_stop_on_labels: bool = False
    """CDAC+'s label-based DEC stop (best train NMI, patience 5, restore best). Needs the spec's
    ``select_by_labels = true``; uses ground truth, so it is a declared deviation."""
    dec_patience: int = 5
    """Patience (epochs without a better train NMI) of the label-based stop (CDAC+)."""
    train_split: str = "train"
    """Split DAC and DEC are trained on (CDAC+: train)."""
    eval_split: str = "test"
    """Split the rows are evaluated on (CDAC+: the 700-text test split)."""

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {list(VARIANTS)}, got {self.variant!r}")
        for name in ("batch_size", "max_epochs", "km_n_init", "max_seq_length", "dec_patience"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.dec_max_epochs < 0:
            raise ValueError(f"dec_max_epochs must be >= 0, got {self.dec_max_epochs}")
        if not 0.0 <= self.warmup_proportion < 1.0:
            raise ValueError(f"warmup_proportion must lie in [0, 1), got {self.warmup_proportion}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if not self.u0 > self.l0:
            raise ValueError(f"u0 must exceed l0, got u0={self.u0}, l0={self.l0}")
        self.pu_params()  # validates the PU fields


# ----------------------------------------------------------------------------------------------------
# Helpers shared with dcrepro.methods.deepdpm (embeddings) and the DEC stage (optimiser)


def load_text_embeddings(texts: np.ndarray, encoder: str, dataset: str) -> np.ndarray:
    """Cached sentence embeddings (N, D) float32 of ``texts`` from :func:`dcrepro.data.embed.embed_texts`.

    Looked up at call time so that tests can monkeypatch ``dcrepro.data.embed.embed_texts``.
    """
    from dcrepro.data import embed as _embed

    emb = np.asarray(_embed.embed_texts(texts, encoder, dataset=dataset, view="original"), dtype=np.float32)
    if emb.ndim != 2 or len(emb) != len(texts):
        raise ValueError(f"embed_texts returned shape {emb.shape} for {len(texts)} texts")
    return emb


def _load_finetune_encoder(encoder: str):
    """(tokenizer, Hugging Face model, name prefix of its last layer) (see :func:`dcrepro.encoders.finetune_encoder`)."""
    from ..encoders import finetune_encoder

    return finetune_encoder(encoder)


def bert_adam(net: nn.Module, lr: float, warmup: float, t_total: int, weight_decay: float, exclude=()):
    """AdamW + BertAdam's warm-up-linear schedule (pytorch-pretrained-bert 0.6.1), as CDAC+ uses it.

    Decay on every trainable parameter except biases and LayerNorm (and names starting with ``exclude``).
    BertAdam itself skips Adam's bias correction; AdamW keeps it (a small, declared difference).
    """
    decay, no_decay = [], []
    for name, prm in net.named_parameters():
        if prm.requires_grad and not name.startswith(tuple(exclude)):
            (no_decay if ("bias" in name or "LayerNorm" in name) else decay).append(prm)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, eps=1e-6, fused=True)

    def factor(step: int) -> float:
        x = step / t_total
        return x / warmup if x < warmup else max((x - 1.0) / (warmup - 1.0), 0.0)

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


# ----------------------------------------------------------------------------------------------------
# DAC


def dac_loss(logits: torch.Tensor, u: float, l: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The DAC pairwise loss of one batch (CDAC+ ``model.py``, labels all -1).

    Returns the loss and the (B, B) cosine-similarity matrix (reused by the DCGLU term).
    """
    z = F.normalize(logits, p=2, dim=1)
    sim = z @ z.T
    pos = (sim.detach() > u).to(sim.dtype)
    neg = (sim.detach() < l).to(sim.dtype)
    pos_ent = -torch.log(sim.clamp(EPS, 1.0)) * pos
    neg_ent = -torch.log((1.0 - sim).clamp(EPS, 1.0)) * neg
    return pos_ent.mean() + neg_ent.mean() + (u - l), sim


def pair_items(sim: torch.Tensor, loss: str = "log") -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """DCGLU items of DAC: the off-diagonal ordered pairs (i != j) of a (B, B) similarity matrix.

    Returns the confidences (= S_ij) and the binary per-pair losses of :func:`pu.binary_items` (``loss``
    'log' or 'sigmoid'). The diagonal is left out: S_ii = 1 would put -log(1e-10) = 23 into R-_p (notes
    pitfall 5).
    """
    b = sim.shape[0]
    off = ~torch.eye(b, dtype=torch.bool, device=sim.device)
    s = sim[off]
    return s, binary_items(s, loss)


class _DACNet(nn.Module):
    """Optional trainable encoder + the CDAC+ head (dense, tanh, dropout, classifier) + DEC centres."""

    def __init__(self, dim: int, k: int, dropout: float, encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.dense = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(dim, k)
        for lin in (self.dense, self.classifier):  # BERT init_bert_weights: N(0, 0.02), zero bias
            nn.init.normal_(lin.weight, std=0.02)
            nn.init.zeros_(lin.bias)
        self.centres = nn.Parameter(torch.zeros(k, k))

    def forward(self, batch) -> torch.Tensor:
        h = self.encoder(*batch) if self.encoder is not None else batch
        return self.classifier(self.dropout(torch.tanh(self.dense(h))))

    def soft_assign(self, logits: torch.Tensor) -> torch.Tensor:
        """DEC's Student-t (alpha = 1) assignment of logits to the centres."""
        q = 1.0 / (1.0 + torch.cdist(logits, self.centres).pow(2))
        return q / q.sum(dim=1, keepdim=True)


class _MeanPoolEncoder(nn.Module):
    """A Hugging Face encoder whose sentence vector is the mean over ALL positions (CDAC+)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids, attention_mask=mask).last_hidden_state.mean(dim=1)


class _Inputs:
    """Row access to either cached embeddings (N, D) or token ids + masks (N, L), on the device."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], frozen: bool) -> None:
        self.tensors, self.frozen = tensors, frozen

    def take(self, idx: np.ndarray):
        rows = tuple(t[torch.as_tensor(idx, device=t.device)] for t in self.tensors)
        return rows[0] if self.frozen else rows


def _build(p: DACParams, data, k: int, device: str) -> tuple[_DACNet, _Inputs, float]:
    """The network and its inputs; returns also the seconds spent obtaining embeddings / tokens."""
    t0 = time.perf_counter()
    texts = np.asarray(data.X, dtype=object)
    if not p.finetune_encoder:
        emb = load_text_embeddings(texts, p.encoder, data.name)
        net = _DACNet(emb.shape[1], k, p.dropout)
        return net.to(device), _Inputs((torch.as_tensor(emb, device=device),), True), time.perf_counter() - t0
    tokenizer, hf_model, trainable_prefix = _load_finetune_encoder(p.encoder)
    tok = tokenizer(list(map(str, texts)), padding="max_length", truncation=True,
                    max_length=p.max_seq_length, return_tensors="pt")
    for name, prm in hf_model.named_parameters():  # CDAC+: freeze all but the last layer and the pooler
        prm.requires_grad = name.startswith(trainable_prefix) or name.startswith("pooler")
    net = _DACNet(hf_model.config.hidden_size, k, p.dropout, _MeanPoolEncoder(hf_model))
    inputs = _Inputs((tok["input_ids"].to(device), tok["attention_mask"].to(device)), False)
    return net.to(device), inputs, time.perf_counter() - t0


@torch.no_grad()
def _logits(net: _DACNet, inputs: _Inputs, idx: np.ndarray, batch: int) -> torch.Tensor:
    net.eval()
    return torch.cat([net(inputs.take(idx[s:s + batch])) for s in range(0, len(idx), batch)])


def _train_dac(net, inputs, train_idx, p: DACParams, reg: PURegulariser | None, gen, log) -> list[dict]:
    """The DAC stage: epochs with the adaptive thresholds until u < l (or max_epochs)."""
    steps_per_epoch = int(np.ceil(len(train_idx) / p.batch_size))
    t_total = max(1, (len(train_idx) // p.batch_size) * p.max_epochs)  # CDAC+ t_total
    opt, sched = bert_adam(net, p.lr, p.warmup_proportion, t_total, p.weight_decay, exclude=("centres",))
    u, l, eta, history = p.u0, p.l0, 0.0, []
    for epoch in range(p.max_epochs):
        net.train()
        order = train_idx[torch.randperm(len(train_idx), generator=gen).numpy()]
        tot, tot_pu, n_def, n_p, n_u = 0.0, 0.0, 0, 0, 0
        for s in range(steps_per_epoch):
            logits = net(inputs.take(order[s * p.batch_size:(s + 1) * p.batch_size]))
            loss, sim = dac_loss(logits, u, l)
            if reg is not None:
                with reg.timer:
                    conf, items = pair_items(sim, reg.params.loss)
                    term = reg.risk(conf, *items, base_count=sim.numel())  # DAC averages over all B^2 entries
                loss = loss + term.objective
                tot_pu += term.risk
                n_def += term.defitting
                n_p, n_u = n_p + term.n_p, n_u + term.n_u
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach())
        history.append({"epoch": epoch, "u": round(u, 4), "l": round(l, 4), "loss": tot / steps_per_epoch,
                        "pu_risk": tot_pu / steps_per_epoch, "pu_defitting_steps": n_def, "steps": steps_per_epoch,
                        "pu_n_p": n_p, "pu_n_u": n_u})
        eta += p.eta_step
        u, l = p.u0 - eta, p.l0 + p.l_slope * eta
        if u < l:
            break
    log(f"DAC stage: {len(history)} epochs, last loss {history[-1]['loss']:.4f}")
    return history


def _dec_stage(net, inputs, train_idx, p: DACParams, y_train, log) -> dict:
    """CDAC+'s DEC refinement from the k-means centres already in ``net.centres``."""
    from dcrepro.metrics import nmi

    t_total = max(1, (len(train_idx) // p.batch_size) * p.dec_max_epochs)
    opt, sched = bert_adam(net, p.dec_lr, p.warmup_proportion, t_total, p.weight_decay)
    last, best, best_state, wait, stop = None, -1.0, None, 0, "max_epochs"
    epochs = 0
    for epoch in range(p.dec_max_epochs):
        with torch.no_grad():
            q = net.soft_assign(_logits(net, inputs, train_idx, p.batch_size))
            weight = q.pow(2) / q.sum(dim=0)
            target = weight / weight.sum(dim=1, keepdim=True)
        pred = q.argmax(dim=1).cpu().numpy()
        if p.early_stop_on_labels:
            score = nmi(y_train, pred, "geometric")
            if score > best:
                best, best_state, wait = score, copy.deepcopy(net.state_dict()), 0
            else:
                wait += 1
                if wait > p.dec_patience:
                    net.load_state_dict(best_state)
                    stop = "label_patience"
                    break
        delta = 1.0 if last is None else float(np.mean(pred != last))
        last = pred
        if epoch > 0 and delta < p.dec_tol:
            stop = "delta_label"
            break
        net.train()
        for s in range(0, len(train_idx), p.batch_size):  # sequential batches, as CDAC+
            qb = net.soft_assign(net(inputs.take(train_idx[s:s + p.batch_size])))
            tb = target[s:s + p.batch_size]
            loss = (torch.special.xlogy(tb, tb) - tb * torch.log(qb)).mean()  # F.kl_div, element mean
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        epochs += 1
    log(f"DEC stage: {epochs} epochs, stop: {stop}")
    return {"dec_epochs": epochs, "dec_stop": stop, "dec_best_train_nmi": best if best >= 0 else None}


def pu_health(history: list[dict]) -> dict[str, float]:
    """DCGLU health of the DAC stage: ``defit_share`` (share of steps on which R-_u - pi_p R-_p < 0, i.e.
    the nnPU branch was active), ``p_share`` / ``u_share`` (share of all scored pairs in P / in U)."""
    steps = sum(h["steps"] for h in history)
    n_p, n_u = sum(h["pu_n_p"] for h in history), sum(h["pu_n_u"] for h in history)
    return {"defit_share": sum(h["pu_defitting_steps"] for h in history) / max(steps, 1),
            "p_share": n_p / max(n_p + n_u, 1), "u_share": n_u / max(n_p + n_u, 1)}


@register_method("dac", params=DACParams)
def run_dac(data, params: dict, ctx: RunContext) -> dict[str, RowOutput]:
    """Train DAC (optionally + DCGLU, + KM, + DEC) on ``train`` and predict ``test``.

    Returns the rows 'dac' and, with the variants, 'dac_km' and 'dac_dec'; each carries ``time_s``
    (wall time from the start of the run to the end of that stage) and ``pu_time_s`` (the PU term alone).
    numpy/sklearn thread pools are limited to torch's thread count for the run.
    """
    with threadpool_limits(limits=max(1, torch.get_num_threads())):
        return _run_dac(data, params, ctx)


def _run_dac(data, params: dict, ctx: RunContext) -> dict[str, RowOutput]:
    t_start = time.perf_counter()
    p = params_from_dict(DACParams, params, where="method 'dac'")
    if data.modality != "text":
        raise ValueError(f"method 'dac' needs a text data set; {data.name!r} has modality {data.modality!r}")
    for split in (p.train_split, p.eval_split):
        if split not in data.splits:
            raise ValueError(f"{data.name!r} has no split {split!r}; available: {sorted(data.splits)}")
    if p.early_stop_on_labels and p.variant == "dac_dec" and ctx.labels_for_selection is None:
        raise ValueError("early_stop_on_labels=True needs labels: set select_by_labels = true in the spec")
    seed_everything(ctx.seed)
    gen = torch.Generator().manual_seed(int(ctx.seed))
    train_idx, eval_idx = data.splits[p.train_split], data.splits[p.eval_split]
    k = int(ctx.n_clusters)

    net, inputs, embed_s = _build(p, data, k, ctx.device)
    pu_params = p.pu_params()
    reg = PURegulariser(pu_params, ctx.device) if p.pu else None
    history = _train_dac(net, inputs, train_idx, p, reg, gen, ctx.log)
    pu_s = reg.timer.seconds if reg is not None else 0.0
    info = {"params": asdict(p), "dac_epochs": len(history), "history": history, "embed_time_s": embed_s}
    health = pu_health(history) if reg is not None else {}

    def row(labels, stage_info=None) -> RowOutput:
        elapsed = time.perf_counter() - t_start
        metrics = {"time_s": elapsed, "pu_time_s": pu_s, "time_ratio": pu_s / elapsed, "embed_time_s": embed_s,
                   **health}
        return RowOutput(labels=labels, eval_index=eval_idx, metrics=metrics, info=info | (stage_info or {}))

    test_logits = _logits(net, inputs, eval_idx, p.batch_size)
    out = {"dac": row(test_logits.argmax(dim=1).cpu().numpy())}
    if p.variant == "dac":
        return out

    from sklearn.cluster import KMeans

    train_logits = _logits(net, inputs, train_idx, p.batch_size)
    km = KMeans(n_clusters=k, n_init=p.km_n_init, random_state=int(ctx.seed)).fit(train_logits.cpu().numpy())
    with torch.no_grad():
        net.centres.copy_(torch.as_tensor(km.cluster_centers_, dtype=net.centres.dtype))
        out["dac_km"] = row(net.soft_assign(test_logits).argmax(dim=1).cpu().numpy())
    if p.variant == "dac_km":
        return out

    y_train = None if ctx.labels_for_selection is None else np.asarray(ctx.labels_for_selection)[train_idx]
    dec_info = _dec_stage(net, inputs, train_idx, p, y_train if p.early_stop_on_labels else None, ctx.log)
    with torch.no_grad():
        q_test = net.soft_assign(_logits(net, inputs, eval_idx, p.batch_size))
    out["dac_dec"] = row(q_test.argmax(dim=1).cpu().numpy(), dec_info)
    return out
