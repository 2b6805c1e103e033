"""DAC on text (the unsupervised stage of the CDAC+ code), its DAC-KM / DAC-DEC variants, and DCGLU on it.

Registered as method ``dac``; called by the runner (:mod:`dcrepro.runner`) for DCGLU Tables 1, 3, 4
and Figure 2. :func:`run_dac_batched` trains several seeds' heads at once on frozen embeddings
(``dcrepro run --seeds-per-process S``), each with its one-seed random streams. One run trains DAC on the 'train' split and predicts the 'test' split (the CDAC+ protocol,
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

from . import RowOutput, RunContext, params_from_dict, register_batched, register_method
from .pu import PUFields, PURegulariser, binary_items
from .stacked import Stacked

__all__ = ["DACParams", "dac_loss", "pair_items", "pu_health", "run_dac", "run_dac_batched", "load_text_embeddings",
           "bert_adam"]

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

    def head(self, h: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`forward` on embeddings ``h`` with the dropout noise given (mask / (1 - p); None: none), for
        the seeds-batched path, whose masks are drawn outside ``vmap`` from each seed's own stream."""
        z = torch.tanh(self.dense(h))
        return self.classifier(z if noise is None else z * noise)

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
        history.append(_epoch_record(epoch, u, l, tot, tot_pu, n_def, n_p, n_u, steps_per_epoch))
        eta += p.eta_step
        u, l = p.u0 - eta, p.l0 + p.l_slope * eta
        if u < l:
            break
    log(f"DAC stage: {len(history)} epochs, last loss {history[-1]['loss']:.4f}")
    return history


def _epoch_record(epoch: int, u: float, l: float, tot: float, tot_pu: float, n_def: int, n_p: int, n_u: int,
                  steps: int) -> dict:
    """One DAC-stage epoch of the run's history (loss sums over the epoch's steps -> means)."""
    return {"epoch": epoch, "u": round(u, 4), "l": round(l, 4), "loss": tot / steps, "pu_risk": tot_pu / steps,
            "pu_defitting_steps": n_def, "steps": steps, "pu_n_p": n_p, "pu_n_u": n_u}


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
    _check_run(data, p, ctx)
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


# ----------------------------------------------------------------------------------------------------
# Seeds-batched DAC on frozen embeddings (``dcrepro run --seeds-per-process S``)


def _check_run(data, p: DACParams, ctx: RunContext) -> None:
    """The checks :func:`run_dac` makes before it trains (data modality, splits, labels for the DEC stop)."""
    if data.modality != "text":
        raise ValueError(f"method 'dac' needs a text data set; {data.name!r} has modality {data.modality!r}")
    for split in (p.train_split, p.eval_split):
        if split not in data.splits:
            raise ValueError(f"{data.name!r} has no split {split!r}; available: {sorted(data.splits)}")
    if p.early_stop_on_labels and p.variant == "dac_dec" and ctx.labels_for_selection is None:
        raise ValueError("early_stop_on_labels=True needs labels: set select_by_labels = true in the spec")


class _SeedStreams:
    """Each seed's copy of the default generator of ``device``, the global stream the one-seed path's dropout
    draws from. :meth:`noise` swaps seed s's state in, draws with the same call (``F.dropout``), saves it back
    and restores the global state, so seed s gets exactly the masks of its one-seed run, in the same order."""

    def __init__(self, device: str) -> None:
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.states: list[torch.Tensor] = []

    def _get(self) -> torch.Tensor:
        return torch.cuda.get_rng_state(self.device) if self.cuda else torch.get_rng_state()

    def _set(self, state: torch.Tensor) -> None:
        torch.cuda.set_rng_state(state, self.device) if self.cuda else torch.set_rng_state(state)

    def capture(self) -> None:
        """Append the current global state as the next seed's stream."""
        self.states.append(self._get())

    def noise(self, shape: tuple[int, ...], p: float, dtype: torch.dtype) -> torch.Tensor:
        """(S, *shape): seed s's next dropout noise (mask / (1 - p)) for a tensor of ``shape``."""
        saved, ones, out = self._get(), torch.ones(shape, dtype=dtype, device=self.device), []
        for s, state in enumerate(self.states):
            self._set(state)
            out.append(F.dropout(ones, p, True))
            self.states[s] = self._get()
        self._set(saved)
        return torch.stack(out)


def _dac_loss_stacked(logits: torch.Tensor, u: float, l: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`dac_loss` of S batches (logits (S, B, K)): per-seed losses (S,) and similarities (S, B, B)."""
    z = F.normalize(logits, p=2, dim=2)
    sim = z @ z.transpose(1, 2)
    pos = (sim.detach() > u).to(sim.dtype)
    neg = (sim.detach() < l).to(sim.dtype)
    pos_ent = -torch.log(sim.clamp(EPS, 1.0)) * pos
    neg_ent = -torch.log((1.0 - sim).clamp(EPS, 1.0)) * neg
    return pos_ent.mean(dim=(1, 2)) + neg_ent.mean(dim=(1, 2)) + (u - l), sim


def _logits_stacked(st: Stacked, emb: torch.Tensor, idx: np.ndarray, batch: int) -> torch.Tensor:
    """(S, len(idx), K) eval-mode logits of every seed on the same rows."""
    st.eval()
    with torch.no_grad():
        return torch.cat([st.call("head", emb[torch.as_tensor(idx[i:i + batch], device=emb.device)], in_dims=None)
                          for i in range(0, len(idx), batch)], dim=1)


def _soft_assign_stacked(st: Stacked, logits: torch.Tensor) -> torch.Tensor:
    """:meth:`_DACNet.soft_assign` of every seed: logits (S, N, K) against its own centres (S, K, K)."""
    q = 1.0 / (1.0 + torch.cdist(logits, st.params["centres"]).pow(2))
    return q / q.sum(dim=2, keepdim=True)


def _train_dac_stacked(st: Stacked, emb, train_idx, p: DACParams, reg: PURegulariser | None, gens,
                       streams: _SeedStreams, log) -> list[list[dict]]:
    """:func:`_train_dac` for S seeds at once; one history per seed. Each seed draws its batch order from its
    own ``gens[s]`` and its dropout masks from its own stream; the schedule (u, l, epochs) is seed-free."""
    n_seeds, steps_per_epoch = st.n, int(np.ceil(len(train_idx) / p.batch_size))
    t_total = max(1, (len(train_idx) // p.batch_size) * p.max_epochs)
    opt, sched = bert_adam(st, p.lr, p.warmup_proportion, t_total, p.weight_decay, exclude=("centres",))
    dtype, dim = st.params["dense.weight"].dtype, emb.shape[1]
    u, l, eta, histories = p.u0, p.l0, 0.0, [[] for _ in range(n_seeds)]
    for epoch in range(p.max_epochs):
        st.train()
        orders = np.stack([train_idx[torch.randperm(len(train_idx), generator=g).numpy()] for g in gens])
        per_step = []  # (loss, pu risk, defitting, n_p, n_u) per step, each (S,)
        for s in range(steps_per_epoch):
            rows = orders[:, s * p.batch_size:(s + 1) * p.batch_size]
            x = emb[torch.as_tensor(rows, device=emb.device)]
            if p.dropout > 0:
                logits = st.call("head", x, streams.noise((rows.shape[1], dim), p.dropout, dtype))
            else:
                logits = st.call("head", x)
            loss, sim = _dac_loss_stacked(logits, u, l)
            stats = []
            if reg is not None:
                with reg.timer:
                    b = sim.shape[1]
                    conf = sim[:, ~torch.eye(b, dtype=torch.bool, device=sim.device)]  # pair_items, per seed
                    term = reg.risk_stacked(conf, *binary_items(conf, reg.params.loss), base_count=b * b)
                loss = loss + term.objective
                stats = [term.risk, term.defitting, term.n_p, term.n_u]
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()  # the sum of the seeds' losses: each seed gets its own gradient
            opt.step()
            sched.step()
            per_step.append(torch.stack([loss.detach(), *[t.to(loss.dtype) for t in stats]], dim=1))
        table = torch.stack(per_step).tolist()  # steps x S x fields, one device sync per epoch
        for seed, hist in enumerate(histories):
            tot = tot_pu = 0.0
            n_def = n_p = n_u = 0
            for row in table:
                tot += row[seed][0]
                if reg is not None:
                    tot_pu += row[seed][1]
                    n_def, n_p, n_u = n_def + int(row[seed][2]), n_p + int(row[seed][3]), n_u + int(row[seed][4])
            hist.append(_epoch_record(epoch, u, l, tot, tot_pu, n_def, n_p, n_u, steps_per_epoch))
        eta += p.eta_step
        u, l = p.u0 - eta, p.l0 + p.l_slope * eta
        if u < l:
            break
    log(f"DAC stage ({n_seeds} seeds): {len(histories[0])} epochs")
    return histories


def _dec_stage_stacked(st: Stacked, emb, train_idx, p: DACParams, y_train, streams: _SeedStreams, log) -> list[dict]:
    """:func:`_dec_stage` for S seeds at once; one info dict per seed. A seed that meets its stop rule keeps
    the state it stopped with (restored at the end); the others train on, the stopped one's later updates
    are discarded."""
    from dcrepro.metrics import nmi

    n_seeds, dtype, dim = st.n, st.params["dense.weight"].dtype, emb.shape[1]
    t_total = max(1, (len(train_idx) // p.batch_size) * p.dec_max_epochs)
    opt, sched = bert_adam(st, p.dec_lr, p.warmup_proportion, t_total, p.weight_decay)
    last, best, best_state, wait = [None] * n_seeds, [-1.0] * n_seeds, [None] * n_seeds, [0] * n_seeds
    stop, epochs, final = ["max_epochs"] * n_seeds, [0] * n_seeds, [None] * n_seeds
    for epoch in range(p.dec_max_epochs):
        with torch.no_grad():
            q = _soft_assign_stacked(st, _logits_stacked(st, emb, train_idx, p.batch_size))
            weight = q.pow(2) / q.sum(dim=1, keepdim=True)
            target = weight / weight.sum(dim=2, keepdim=True)
        preds = q.argmax(dim=2).cpu().numpy()
        for s in (s for s in range(n_seeds) if final[s] is None):
            if p.early_stop_on_labels:
                score = nmi(y_train, preds[s], "geometric")
                if score > best[s]:
                    best[s], best_state[s], wait[s] = score, st.state_dict(s), 0
                else:
                    wait[s] += 1
                    if wait[s] > p.dec_patience:
                        final[s], stop[s] = best_state[s], "label_patience"
                        continue
            delta = 1.0 if last[s] is None else float(np.mean(preds[s] != last[s]))
            last[s] = preds[s]
            if epoch > 0 and delta < p.dec_tol:
                final[s], stop[s] = st.state_dict(s), "delta_label"
                continue
            epochs[s] += 1  # this seed trains the epoch below
        if all(f is not None for f in final):
            break
        st.train()
        for i in range(0, len(train_idx), p.batch_size):  # sequential batches, as CDAC+
            x = emb[torch.as_tensor(train_idx[i:i + p.batch_size], device=emb.device)]
            if p.dropout > 0:
                out = st.call("head", x, streams.noise(tuple(x.shape[:1]) + (dim,), p.dropout, dtype), in_dims=(None, 0))
            else:
                out = st.call("head", x, in_dims=None)
            qb = _soft_assign_stacked(st, out)
            tb = target[:, i:i + p.batch_size]
            loss = (torch.special.xlogy(tb, tb) - tb * torch.log(qb)).mean(dim=(1, 2))
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
            sched.step()
    for s, state in enumerate(final):
        if state is not None:
            st.load_state_dict(s, state)
    log(f"DEC stage ({n_seeds} seeds): epochs {epochs}, stops {stop}")
    return [{"dec_epochs": e, "dec_stop": why, "dec_best_train_nmi": b if b >= 0 else None}
            for e, why, b in zip(epochs, stop, best)]


@register_batched("dac")
def run_dac_batched(data, params: dict, ctxs: list[RunContext]) -> list[dict[str, RowOutput]]:
    """:func:`run_dac` for several seeds of one config: the heads of all seeds train at once with stacked
    parameters (:class:`dcrepro.methods.stacked.Stacked`), for DAC and DAC* (the PU term per seed via
    :meth:`PURegulariser.risk_stacked`), DAC-KM and DAC-DEC.

    Each seed gets the labels its one-seed run gets, up to float reassociation (stacked matmuls, fused AdamW
    on stacked tensors): its initialisation (global RNG after ``seed_everything``), its batch order (its own
    ``torch.Generator``) and its dropout masks (drawn from its own copy of the global stream, in the one-seed
    order; :class:`_SeedStreams`) are those of the one-seed path. ``tests/test_batched_dac.py`` checks equal
    labels in float64. In float32 the quick budget's labels matched bit for bit (3 seeds, DAC and DAC*), but
    longer runs drift apart from float rounding: on SNIPS at the reduced budget (46 + 10 epochs, 4 seeds) DAC's
    'dac' labels agreed on >= 99.7 % of the test texts and DAC-KM / DAC-DEC had equal ACC on every seed, while the
    degenerate DAC* (ACC ~0.3) ended in other partitions (equal in distribution, not per seed). DAC-KM's k-means runs per seed (sklearn, CPU). The
    DEC stage stops per seed.

    ``finetune_encoder=True`` (the full budget: the encoder's last layer trains, per seed a different encoder)
    is not batched: it calls :func:`run_dac` once per seed. Timings (``time_s``, ``pu_time_s``,
    ``embed_time_s``) are the batch's seconds divided by the number of seeds.
    """
    p = params_from_dict(DACParams, params, where="method 'dac'")
    if p.finetune_encoder:
        out = []
        for ctx in ctxs:
            seed_everything(ctx.seed)
            out.append(run_dac(data, params, ctx))
        return out
    with threadpool_limits(limits=max(1, torch.get_num_threads())):
        return _run_dac_batched(data, p, ctxs)


def _run_dac_batched(data, p: DACParams, ctxs: list[RunContext]) -> list[dict[str, RowOutput]]:
    t_start = time.perf_counter()
    ctx0, n_seeds = ctxs[0], len(ctxs)
    if any((c.n_clusters, c.device) != (ctx0.n_clusters, ctx0.device) for c in ctxs):
        raise ValueError("run_dac_batched: the contexts must share n_clusters and device (they differ in the seed)")
    _check_run(data, p, ctx0)
    train_idx, eval_idx = data.splits[p.train_split], data.splits[p.eval_split]
    k, device = int(ctx0.n_clusters), ctx0.device
    t0 = time.perf_counter()
    emb = torch.as_tensor(load_text_embeddings(np.asarray(data.X, dtype=object), p.encoder, data.name), device=device)
    embed_s = time.perf_counter() - t0
    gens, nets, streams = [], [], _SeedStreams(device)
    for ctx in ctxs:  # each seed initialised as its one-seed run does it
        seed_everything(ctx.seed)
        gens.append(torch.Generator().manual_seed(int(ctx.seed)))
        nets.append(_DACNet(emb.shape[1], k, p.dropout).to(device))
        streams.capture()
    st = Stacked(nets)
    reg = PURegulariser(p.pu_params(), device) if p.pu else None
    histories = _train_dac_stacked(st, emb, train_idx, p, reg, gens, streams, ctx0.log)
    pu_s = (reg.timer.seconds if reg is not None else 0.0) / n_seeds
    infos = [{"params": asdict(p), "dac_epochs": len(h), "history": h, "embed_time_s": embed_s / n_seeds}
             for h in histories]
    healths = [pu_health(h) if reg is not None else {} for h in histories]

    def row(s: int, labels, stage_info=None) -> RowOutput:
        elapsed = (time.perf_counter() - t_start) / n_seeds
        metrics = {"time_s": elapsed, "pu_time_s": pu_s, "time_ratio": pu_s / elapsed,
                   "embed_time_s": embed_s / n_seeds, **healths[s]}
        return RowOutput(labels=labels, eval_index=eval_idx, metrics=metrics, info=infos[s] | (stage_info or {}))

    test_logits = _logits_stacked(st, emb, eval_idx, p.batch_size)
    dac_labels = test_logits.argmax(dim=2).cpu().numpy()
    outs = [{"dac": row(s, dac_labels[s])} for s in range(n_seeds)]
    if p.variant == "dac":
        return outs

    from sklearn.cluster import KMeans

    train_logits = _logits_stacked(st, emb, train_idx, p.batch_size).cpu().numpy()
    with torch.no_grad():
        for s, ctx in enumerate(ctxs):
            km = KMeans(n_clusters=k, n_init=p.km_n_init, random_state=int(ctx.seed)).fit(train_logits[s])
            st.params["centres"][s].copy_(torch.as_tensor(km.cluster_centers_, dtype=st.params["centres"].dtype))
        km_labels = _soft_assign_stacked(st, test_logits).argmax(dim=2).cpu().numpy()
    for s, out in enumerate(outs):
        out["dac_km"] = row(s, km_labels[s])
    if p.variant == "dac_km":
        return outs

    y_train = None if ctx0.labels_for_selection is None else np.asarray(ctx0.labels_for_selection)[train_idx]
    dec_infos = _dec_stage_stacked(st, emb, train_idx, p, y_train if p.early_stop_on_labels else None, streams,
                                   ctx0.log)
    with torch.no_grad():
        dec_labels = _soft_assign_stacked(st, _logits_stacked(st, emb, eval_idx, p.batch_size)).argmax(dim=2)
    dec_labels = dec_labels.cpu().numpy()
    for s, out in enumerate(outs):
        out["dac_dec"] = row(s, dec_labels[s], dec_infos[s])
    return outs
