"""SCCL (Zhang et al., NAACL 2021): contrastive instance loss + Student-t cluster head, for DEC-CRL's Table 2.

Registered as method ``sccl`` with outputs ``sccl`` (argmax of the cluster head, SCCL's "[Model]"
prediction) and ``sccl_km`` (k-means on the representation, SCCL's "[Representation]" prediction).
:mod:`dcrepro.methods.deccrl` builds DEC-CRL from the pieces here (model, losses, training loop).

Model, per step on a batch of M texts and their two augmented views (``shared/notes/deccrl.md`` §1):

* h = encoder(x) (SCCL: mean-pooled transformer output; DEC-CRL adds FC_e on top);
* contrastive head g = Linear(L, L)-ReLU-Linear(L, 128), L2-normalised; loss on the two views:
  NT-Xent with tau = 0.5 over the 2M views as the SCCL code runs it (``contrastive="ntxent"``), or the
  form printed in DEC-CRL eq. 2-4 (``contrastive="printed"``: cross-view negatives only, the positive
  left out of the denominator);
* cluster head o_ik = Student-t(h_i, c_k; alpha) on the original texts, target t_ik computed per batch
  (SCCL), loss KL(t || o) averaged over the batch, weight ``lambda_c``;
* centroids initialised by k-means on the initial h of all texts (SCCL ``utils/kmeans.py``).

Two encoder settings:

* ``finetune_encoder=True`` (full budget): the sentence transformer (``model[0].auto_model``) runs in
  train mode on the texts and views (max length 32, mean pooling), Adam lr ``lr_encoder`` for it and
  ``lr_head`` for the heads and centroids (SCCL's 1e-5 and x100);
* ``finetune_encoder=False`` (reduced budget): the encoder is frozen and its embeddings of the texts
  and of the two views come from the on-disk cache (:func:`dcrepro.methods.text_views.view_embeddings`);
  a trainable ``adapter`` (Linear(D, D), identity-initialised, as in SCCL's own ``SCCLMatrix`` for
  pre-computed embeddings) stands in for the fine-tuned encoder, otherwise the contrastive loss could
  not change h at all.

Training runs a fixed number of iterations and reports the last one (SCCL has no stopping rule).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from torch import nn

from dcrepro.methods import RowOutput, RunContext, params_from_dict, register_method
from dcrepro.methods.text_views import make_views, view_embeddings
from dcrepro.seeding import derive_seed

__all__ = [
    "SCCLParams",
    "ContrastiveClusterer",
    "ntxent_loss",
    "printed_contrastive_loss",
    "target_distribution",
    "cluster_kl",
    "build_clusterer",
    "train_and_predict",
    "module_rng",
    "stream_generator",
    "sccl",
]

CONTRASTIVE = ("ntxent", "printed")
ADAPTERS = ("none", "linear")
AUGMENTATIONS = ("worddel",)
CENTROID_GROUPS = ("shared", "own")
RNG_STREAMS = ("global", "per_module")


@dataclass
class SCCLParams:
    """SCCL hyper-parameters. Defaults are the full budget (DEC-CRL's settings, SCCL code where DEC-CRL is silent)."""

    encoder: str = "all-MiniLM-L6-v2"
    """Sentence encoder. Paper: distilbert-base-nli-stsb-mean-tokens (§4.3); MiniLM is the only offline
    encoder (deviation). Any local SentenceTransformer path works with ``finetune_encoder``."""
    finetune_encoder: bool = True
    """Fine-tune the transformer (paper, SCCL). False: frozen encoder + cached embeddings (reduced)."""
    adapter: str = "none"
    """Trainable layer on the encoder output: 'none' (paper) or 'linear' (identity-initialised
    Linear(D, D), SCCL's ``SCCLMatrix``; the reduced budget's stand-in for fine-tuning)."""
    augmentation: str = "worddel"
    """Augmented views: 'worddel' (SCCL's word deletion, aug_p 0.2). The paper's contextual augmenter
    needs a masked LM, none is available offline (deviation)."""
    max_length: int = 32
    """Maximum input tokens when the transformer runs (paper §4.3)."""
    batch_size: int = 200
    """Texts per step (paper §4.3)."""
    max_iter: int = 3000
    """Training iterations; not in the paper, SCCL README's 3000 (explicit augmentation)."""
    lr_encoder: float = 1e-5
    """Adam learning rate of the transformer (SCCL code; not in the paper)."""
    lr_head: float = 1e-3
    """Adam learning rate of adapter, heads, centroids (SCCL: 100 x lr_encoder)."""
    alpha: float = 1.0
    """Student-t degrees of freedom: 1 (AgNews, StackOverflow), 10 (Biomedical) (paper §4.3)."""
    temperature: float = 0.5
    """Contrastive temperature tau (paper §4.3)."""
    contrastive: str = "ntxent"
    """'ntxent' (SCCL code: positive + 2M-2 negatives) or 'printed' (DEC-CRL eq. 2-4)."""
    lambda_c: float = 0.1
    """Weight of the cluster loss relative to the contrastive loss: not in the paper; SCCL's
    loss = 10 * L_CL + L_Cluster, the same direction under Adam."""
    head_dim: int = 128
    """Output size of the contrastive head (SCCL code)."""
    kmeans_n_init: int = 10
    """k-means restarts for the centroid initialisation and the k-means output (SCCL's sklearn 0.24 default)."""
    log_every: int = 100
    """Record the losses every this many iterations (0: never)."""
    eval_batch_size: int = 1000
    """Texts per forward pass when embedding all texts (no effect on results)."""
    centroid_group: str = "shared"
    """Optimiser placement of the centroids c_k: 'shared' (one Adam group with the heads at ``lr_head``,
    as built so far) or 'own' (their own Adam group at ``centroid_lr``; SCCL's optimizer.py gives them
    their own group at the heads' lr). Adam's update is per parameter, so 'own' at the same lr is the same
    computation; the option matters with a different ``centroid_lr``."""
    centroid_lr: float = 0.0
    """Learning rate of the centroids' own group (``centroid_group = 'own'``); 0 = ``lr_head``."""
    rng_streams: str = "global"
    """'global': every module draws from torch's global RNG (seeded by the runner), so rows with extra
    modules (DEC-CRL's CRL/LSR) consume it differently and seeds are not common random numbers across
    arms. 'per_module': module initialisation, batch order and the CRL's noise / sampling each draw from
    their own generator derived from the run seed and the stream's name (dropout stays on the global RNG)."""

    def __post_init__(self) -> None:
        """Raise ValueError naming the valid choices for a bad field."""
        for name, choices in (("contrastive", CONTRASTIVE), ("adapter", ADAPTERS), ("augmentation", AUGMENTATIONS),
                              ("centroid_group", CENTROID_GROUPS), ("rng_streams", RNG_STREAMS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {list(choices)}, got {getattr(self, name)!r}")
        for name in ("max_iter", "head_dim", "kmeans_n_init", "eval_batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ValueError("batch_size must be >= 2 for the contrastive loss")
        if self.alpha <= 0 or self.temperature <= 0:
            raise ValueError("alpha and temperature must be > 0")
        if self.centroid_lr < 0:
            raise ValueError(f"centroid_lr must be >= 0, got {self.centroid_lr}")


def module_rng(p: SCCLParams, seed: int, name: str):
    """Context for building a module: under ``rng_streams='per_module'`` torch's CPU RNG is seeded from
    (run seed, ``name``) inside and restored after; under 'global' nothing changes."""
    if p.rng_streams == "global":
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.random.fork_rng(devices=[]))
    torch.manual_seed(derive_seed(seed, "stream", name))
    return stack


def stream_generator(p: SCCLParams, seed: int, name: str, device: str) -> torch.Generator | None:
    """The generator of stream ``name`` under 'per_module' (on ``device``); None (global RNG) otherwise."""
    if p.rng_streams == "global":
        return None
    return torch.Generator(device=device).manual_seed(derive_seed(seed, "stream", name))


# ----------------------------------------------------------------------------------------- losses
def ntxent_loss(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """NT-Xent over the 2M views (SCCL's PairConLoss): each view against its positive and 2M-2 negatives.

    ``z1``, ``z2``: (M, d) L2-normalised features of the two views. Returns the mean over the 2M anchors.
    """
    m = z1.shape[0]
    z = torch.cat([z1, z2], dim=0)
    sim = z @ z.T / tau
    sim = sim.masked_fill(torch.eye(2 * m, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(m, 2 * m), torch.arange(0, m)]).to(z.device)
    return F.cross_entropy(sim, target)


def printed_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """DEC-CRL eq. 2-4 as printed: l_i1 = -s_ii/tau + log sum_{m != i} exp(s(v_i1, v_m2)/tau), and
    symmetrically; L = sum_i (l_i1 + l_i2) / M."""
    m = z1.shape[0]
    s = z1 @ z2.T / tau
    off = s.masked_fill(torch.eye(m, dtype=torch.bool, device=s.device), float("-inf"))
    pos = s.diagonal()
    return (torch.logsumexp(off, dim=1) - pos).mean() + (torch.logsumexp(off, dim=0) - pos).mean()


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """t_ik = (q_ik^2 / f_k) / sum_k' (q_ik'^2 / f_k'), f_k = sum_i q_ik over the batch (+1e-9, SCCL)."""
    w = q.pow(2) / (q.sum(0) + 1e-9)
    return w / w.sum(1, keepdim=True)


def cluster_kl(q: torch.Tensor) -> torch.Tensor:
    """(1/M) sum_i KL(t_i || q_i) with the target t detached (eq. 8-9)."""
    t = target_distribution(q).detach()
    return F.kl_div(torch.log(q + 1e-8), t, reduction="sum") / q.shape[0]


# ------------------------------------------------------------------------------------------ model
class CachedBackbone(nn.Module):
    """Frozen-encoder embeddings of the texts (view 0) and two views (1, 2), plus an optional adapter."""

    def __init__(self, views: tuple[np.ndarray, np.ndarray, np.ndarray], adapter: str):
        super().__init__()
        self.register_buffer("emb", torch.as_tensor(np.stack(views), dtype=torch.float32))
        self.out_dim = self.emb.shape[-1]
        if adapter == "linear":
            self.adapter = nn.Linear(self.out_dim, self.out_dim)
            with torch.no_grad():
                self.adapter.weight.copy_(torch.eye(self.out_dim))
                self.adapter.bias.zero_()
        else:
            self.adapter = nn.Identity()

    def encoder_parameters(self) -> list[nn.Parameter]:
        return []

    def eval_order(self) -> torch.Tensor:
        """Order in which :meth:`ContrastiveClusterer.embed_all` visits the texts (any order: no padding)."""
        return torch.arange(self.emb.shape[1])

    def forward(self, view: int, idx: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.emb[view, idx])


class TransformerBackbone(nn.Module):
    """A sentence transformer run on the texts (view 0) and two views, mean-pooled over real tokens.

    Every view is tokenised once, up front, to ``max_length`` (buffers ``input_ids`` and
    ``attention_mask`` of shape (3, N, max_length)); a step gathers its rows and trims the padding to
    the batch's longest text, which is what tokenising the batch with ``padding=True`` gives, without
    the tokeniser in the training loop (``perf/deccrl_full_step.py`` times both).
    """

    def __init__(self, st_model, texts: list[np.ndarray], max_length: int, adapter: str):
        super().__init__()
        self.transformer = st_model[0].auto_model
        self.max_length = max_length
        if getattr(st_model.tokenizer, "padding_side", "right") != "right":
            raise ValueError("TransformerBackbone trims right padding; the tokenizer pads on the "
                             f"{st_model.tokenizer.padding_side!r} side")
        tok = [st_model.tokenizer([str(t) for t in view], max_length=max_length, padding="max_length",
                                  truncation=True, return_tensors="pt") for view in texts]
        self.register_buffer("input_ids", torch.stack([t["input_ids"] for t in tok]), persistent=False)
        self.register_buffer("attention_mask", torch.stack([t["attention_mask"] for t in tok]), persistent=False)
        self.out_dim = self.transformer.config.hidden_size
        self.adapter = nn.Linear(self.out_dim, self.out_dim) if adapter == "linear" else nn.Identity()
        if adapter == "linear":
            with torch.no_grad():
                self.adapter.weight.copy_(torch.eye(self.out_dim))
                self.adapter.bias.zero_()

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.transformer.parameters())

    def eval_order(self) -> torch.Tensor:
        """The texts by token count, so that :meth:`ContrastiveClusterer.embed_all`'s batches pad little."""
        return torch.argsort(self.attention_mask[0].sum(1).cpu(), stable=True)

    def tokens(self, view: int, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask of texts ``idx`` of ``view``, padded to the batch's longest."""
        mask = self.attention_mask[view, idx]
        width = int(mask.sum(1).max())
        return self.input_ids[view, idx, :width], mask[:, :width]

    def forward(self, view: int, idx: torch.Tensor) -> torch.Tensor:
        ids, mask = self.tokens(view, idx)
        out = self.transformer(input_ids=ids, attention_mask=mask)[0]
        m = mask.unsqueeze(-1).to(out.dtype)
        return self.adapter((out * m).sum(1) / m.sum(1).clamp_min(1.0))


class ContrastiveClusterer(nn.Module):
    """h = latent(backbone(x)); contrastive head g(h); Student-t cluster head with centroids c_k."""

    def __init__(self, backbone: nn.Module, n_clusters: int, alpha: float, head_dim: int,
                 latent: nn.Module | None = None, latent_dim: int | None = None):
        super().__init__()
        self.backbone = backbone
        self.latent = latent if latent is not None else nn.Identity()
        dim = latent_dim if latent is not None else backbone.out_dim
        self.dim = dim
        self.alpha = float(alpha)
        self.contrast_head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, head_dim))
        self.centroids = nn.Parameter(torch.zeros(n_clusters, dim))

    def embed(self, view: int, idx: torch.Tensor) -> torch.Tensor:
        return self.latent(self.backbone(view, idx))

    def cluster_prob(self, h: torch.Tensor) -> torch.Tensor:
        """o_ik: Student-t kernel between h_i and c_k, normalised over k (eq. 5)."""
        c = self.centroids
        d2 = (h.pow(2).sum(1, keepdim=True) - 2.0 * h @ c.T + c.pow(2).sum(1)).clamp_min(0.0)
        num = (1.0 + d2 / self.alpha).pow(-(self.alpha + 1.0) / 2.0)
        return num / num.sum(1, keepdim=True)

    def contrast_features(self, h: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.contrast_head(h), dim=1)

    @torch.no_grad()
    def embed_all(self, n: int, batch_size: int, device: str) -> np.ndarray:
        """h of all ``n`` texts (view 0) in eval mode, in batches taken in the backbone's ``eval_order``."""
        was = self.training
        self.eval()
        order = self.backbone.eval_order()
        if order.numel() != n:
            raise ValueError(f"embed_all: the backbone holds {order.numel()} texts, asked for {n}")
        parts = [self.embed(0, order[s:s + batch_size].to(device)) for s in range(0, n, batch_size)]
        self.train(was)
        h = torch.empty((n, parts[0].shape[1]), dtype=parts[0].dtype)
        h[order] = torch.cat(parts).cpu()
        return h.numpy()


def _load_sentence_transformer(name: str, device: str):
    """A trainable SentenceTransformer (see :func:`dcrepro.encoders.sentence_transformer`)."""
    from ..encoders import sentence_transformer

    return sentence_transformer(name, device)


def build_clusterer(data, p: SCCLParams, ctx: RunContext, make_latent: Callable[[int], nn.Module] | None = None,
                    latent_dim: int | None = None, embed_fn: Callable | None = None) -> ContrastiveClusterer:
    """Build the encoder (cached or transformer), the heads and, when ``make_latent`` is given, the
    layer FC_e = ``make_latent(encoder output size)`` with output size ``latent_dim`` (DEC-CRL)."""
    if getattr(data, "modality", "text") != "text":
        raise ValueError(f"SCCL/DEC-CRL need a text data set, got modality {data.modality!r} ({data.name})")
    texts = np.asarray(data.X, dtype=object)
    if p.finetune_encoder:
        st = _load_sentence_transformer(p.encoder, ctx.device)
        views = [texts, *make_views(texts).values()]
        backbone = TransformerBackbone(st, views, p.max_length, p.adapter)
    else:
        hits: dict[str, bool] = {}
        views = view_embeddings(texts, p.encoder, data.name, max_length=p.max_length, embed_fn=embed_fn,
                                log=ctx.log, hits=hits)
        backbone = CachedBackbone(views, p.adapter)
        backbone.cache_hits = hits
    latent = make_latent(backbone.out_dim) if make_latent is not None else None
    return ContrastiveClusterer(backbone, ctx.n_clusters, p.alpha, p.head_dim, latent, latent_dim).to(ctx.device)


ExtraLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], "tuple[torch.Tensor, dict[str, torch.Tensor]]"]
"""``extra(idx, h0, q) -> (weighted loss, {name: detached scalar tensor})``: DEC-CRL's CRL or LSR term.
The parts are read (``.item()``, a device sync) only on logging steps."""

Calibrate = Callable[[float, float], float]
"""``calibrate(g_extra, g_cluster) -> factor``, called once at step 1 with the gradient norms on the
centroids of the extra loss and of lambda_c L_Cluster; the step-1 extra loss is multiplied by the factor
(DEC-CRL's label-free lambda_r rule, which also sets the weight of the later steps)."""


def _batches(n: int, batch_size: int, device: str, generator: torch.Generator | None = None):
    """Endless shuffled batches (torch's global RNG, seeded by the runner, unless ``generator``); the
    short tail is dropped."""
    bs = min(batch_size, n)
    while True:
        perm = torch.randperm(n, device=device) if generator is None else \
            torch.randperm(n, device=device, generator=generator)
        for s in range(0, n - bs + 1, bs):
            yield perm[s:s + bs]


def _grad_norm(loss: torch.Tensor, param: torch.Tensor) -> float:
    """||d loss / d param|| without touching ``.grad`` (0 when the loss does not depend on ``param``)."""
    if not loss.requires_grad:
        return 0.0
    g = torch.autograd.grad(loss, param, retain_graph=True, allow_unused=True)[0]
    return 0.0 if g is None else float(g.norm())


def train_and_predict(model: ContrastiveClusterer, n: int, p: SCCLParams, ctx: RunContext,
                      extra_modules: tuple[nn.Module, ...] = (), extra_loss: ExtraLoss | None = None,
                      calibrate: Calibrate | None = None,
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Initialise the centroids by k-means, train for ``p.max_iter`` steps, predict on all ``n`` texts.

    Health facts go into ``info``: ``centroid_drift`` (mean over k of ||c_k(end) - c_k(k-means)||),
    ``final_l_cluster`` (L_Cluster of the last step) and, with an extra loss, ``grad_ratio_step1`` =
    ||d(extra)/dc|| / ||d(lambda_c L_Cluster)/dc|| on the first batch (measured with ``autograd.grad``,
    which leaves the training step unchanged).

    Returns
    -------
    labels_model : (n,) argmax of the cluster head
    labels_km : (n,) k-means (``p.kmeans_n_init`` restarts) on the final h
    h : (n, L) final representation
    info : dict with the loss history and timings
    """
    t0 = time.perf_counter()
    h_init = model.embed_all(n, p.eval_batch_size, ctx.device)
    km = KMeans(ctx.n_clusters, n_init=p.kmeans_n_init, random_state=ctx.seed).fit(h_init)
    with torch.no_grad():
        model.centroids.copy_(torch.as_tensor(km.cluster_centers_, dtype=torch.float32))
    c_init = model.centroids.detach().clone()
    t_init = time.perf_counter() - t0

    enc = {id(q) for q in model.backbone.encoder_parameters()}
    own = p.centroid_group == "own"
    head = [q for q in model.parameters() if id(q) not in enc and not (own and q is model.centroids)]
    for m in extra_modules:
        head += list(m.parameters())
    groups = [{"params": head, "lr": p.lr_head}]
    if enc:
        groups.append({"params": model.backbone.encoder_parameters(), "lr": p.lr_encoder})
    if own:
        groups.append({"params": [model.centroids], "lr": p.centroid_lr or p.lr_head})
    opt = torch.optim.Adam(groups)
    con = ntxent_loss if p.contrastive == "ntxent" else printed_contrastive_loss

    history: list[dict[str, float]] = []
    health: dict[str, float] = {}
    model.train()
    batches = _batches(n, p.batch_size, ctx.device, stream_generator(p, ctx.seed, "batches", ctx.device))
    for step in range(1, p.max_iter + 1):
        idx = next(batches)
        h0, h1, h2 = (model.embed(v, idx) for v in range(3))
        l_cl = con(model.contrast_features(h1), model.contrast_features(h2), p.temperature)
        q = model.cluster_prob(h0)
        l_c = cluster_kl(q)
        loss = l_cl + p.lambda_c * l_c
        parts = {}
        if extra_loss is not None:
            l_x, parts = extra_loss(idx, h0, q)
            if step == 1:
                g_x, g_c = (_grad_norm(t, model.centroids) for t in (l_x, p.lambda_c * l_c))
                if calibrate is not None:
                    factor = calibrate(g_x, g_c)
                    l_x, g_x = l_x * factor, g_x * factor
                health["grad_ratio_step1"] = g_x / g_c if g_c > 0 else float("inf")
            loss = loss + l_x
        if step == p.max_iter:
            health["final_l_cluster"] = l_c.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if p.log_every and (step % p.log_every == 0 or step == p.max_iter):
            history.append({"step": step, "loss": loss.item(), "contrastive": l_cl.item(), "cluster": l_c.item(),
                            **{k: v.item() for k, v in parts.items()}})
    t_train = time.perf_counter() - t0 - t_init

    h = model.embed_all(n, p.eval_batch_size, ctx.device)
    with torch.no_grad():
        labels_model = model.cluster_prob(torch.as_tensor(h, device=ctx.device)).argmax(1).cpu().numpy()
    labels_km = KMeans(ctx.n_clusters, n_init=p.kmeans_n_init, random_state=ctx.seed).fit_predict(h)
    health["centroid_drift"] = float((model.centroids.detach() - c_init).norm(dim=1).mean())
    info = {
        "health": health,
        "history": history,
        "train_s": t_train,
        "predict_s": time.perf_counter() - t0 - t_init - t_train,
        "latent_dim": int(h.shape[1]),
        "encoder_params_trained": int(sum(q.numel() for q in model.backbone.encoder_parameters())),
    }
    if getattr(model.backbone, "cache_hits", None) is not None:
        info["embedding_cache_hits"] = model.backbone.cache_hits
    if history:
        ctx.log(f"final losses: { {k: round(v, 4) for k, v in history[-1].items()} }")
    return labels_model, labels_km.astype(np.int64), h, info


def outputs_for(name: str, labels_model: np.ndarray, labels_km: np.ndarray, info: dict, p, elapsed: float) -> dict[str, RowOutput]:
    """The two rows of a run: ``name`` (cluster-head argmax) and ``name + '_km'`` (k-means on h); both carry
    the run's health metrics (``info['health']``: centroid drift, final L_Cluster, step-1 gradient ratio)."""
    bulky = ("history", "topic_top_words")  # kept with the primary row only
    shared = {"params": asdict(p), **{k: v for k, v in info.items() if k not in bulky}}
    health = dict(info.get("health", {}))
    metrics = {"time_s": elapsed, "k_found": float(len(np.unique(labels_model))), **health}
    return {
        name: RowOutput(labels=labels_model.astype(np.int64), metrics=metrics,
                        info={**shared, "prediction": "argmax_k o_ik (cluster head)",
                              **{k: info[k] for k in bulky if k in info}}),
        f"{name}_km": RowOutput(labels=labels_km, metrics={"time_s": elapsed, **health},
                                info={**shared, "prediction": f"k-means (n_init={p.kmeans_n_init}) on h"}),
    }


@register_method("sccl", params=SCCLParams)
def sccl(data, params: dict, ctx: RunContext, embed_fn: Callable | None = None) -> dict[str, RowOutput]:
    """Run SCCL on all texts of ``data``; outputs ``sccl`` and ``sccl_km``.

    ``embed_fn`` replaces :func:`dcrepro.data.embed.embed_texts` (tests).
    """
    t0 = time.perf_counter()
    p = params_from_dict(SCCLParams, params, "sccl")
    with module_rng(p, ctx.seed, "model"):
        model = build_clusterer(data, p, ctx, embed_fn=embed_fn)
    labels_model, labels_km, _, info = train_and_predict(model, len(data.X), p, ctx)
    return outputs_for("sccl", labels_model, labels_km, info, p, time.perf_counter() - t0)
