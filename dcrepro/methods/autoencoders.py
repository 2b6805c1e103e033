"""Autoencoders shared by DCSS and the DEC family, and their cached reconstruction pre-training.

Called by :mod:`dcrepro.methods.dcss`, :mod:`~dcrepro.methods.dec`, :mod:`~dcrepro.methods.idec`,
:mod:`~dcrepro.methods.dcn` and :mod:`~dcrepro.methods.dkm`. It holds

* :class:`ConvAE28`, the official DCSS 28×28 convolutional AE (``Armanfard-Lab/DCSS Network.py``);
* :class:`MLPAE`, the DEC-style fully connected AE ``d-500-500-2000-z`` (Xie et al. 2016);
* :func:`build_autoencoder` (factory), :func:`prepare_inputs` (uint8 images -> float in [0, 1]);
* :func:`pretrain_autoencoder`: reconstruction pre-training (Adam 1e-3, MSE), cached on disk under
  ``ctx.cache_dir / "ae"`` so that all methods run on the same (data, seed, budget) share one AE;
* small helpers the methods share: :func:`batches`, :func:`encode`, :func:`kmeans_on`,
  :func:`labels_score`, :func:`sq_dist`;
* the seeds-batched start (S seeds in one process, stacked parameters, :mod:`~dcrepro.methods.stacked`):
  :func:`pretrained_start_batched`, :func:`pretrain_autoencoder_batched` (same cache files as the one-seed
  path), :func:`encode_stacked`, :func:`seed_batches` and :func:`reseed_after_pretrain`.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import nn

from ..seeding import derive_seed, seed_everything
from .stacked import Stacked

__all__ = [
    "AEParams", "MLPAEParams", "ConvAE28", "MLPAE", "build_autoencoder", "resolve_arch", "prepare_inputs",
    "pretrain_autoencoder", "pretrained_start", "batches", "sq_dist", "encode", "kmeans_on", "labels_score",
    "selection_labels", "x_method_info", "ARCHS", "pretrain_autoencoder_batched", "pretrained_start_batched",
    "encode_stacked", "seed_batches", "reseed_after_pretrain",
]

ARCHS = ("auto", "conv28", "mlp")
_CACHE_FORMAT = 1  # bump when the stored content or the training code changes meaningfully


@dataclass
class AEParams:
    """Hyper-parameters of the autoencoder and its reconstruction pre-training (shared by all AE methods).

    Methods with identical values of these fields on the same data and seed share one cached AE.
    """

    arch: str = "auto"
    """'conv28' (official DCSS conv AE, 28×28 grey only), 'mlp' (d-500-500-2000-z) or 'auto' (conv28 for
    28×28×1 images, else mlp). Source: DCSS code (MNIST); MLP for USPS/features is an inference (notes §2)."""
    latent_dim: int = 10
    """Dimension d of the latent u space. Source: DCSS ``train.py`` (latent_size = 10); DEC/IDEC/DKM use 10."""
    pretrain_epochs: int = 200
    """Reconstruction pre-training epochs. Source: DCSS ``DCSS.py`` class default (pretraining_epoch = 200)."""
    pretrain_lr: float = 1e-3
    """Adam learning rate of pre-training. Source: DCSS ``DCSS.py pretrain`` (Adam defaults)."""
    pretrain_batch_size: int = 500
    """Mini-batch size of pre-training. Source: DCSS ``train.py`` (batch_size = 500)."""
    kmeans_n_init: int = 10
    """k-means restarts for AE + k-means and centre initialisation. Source: sklearn default of 2021 used by
    the DCSS code (n_init = 10); passed explicitly because sklearn >= 1.4 changed the default."""
    select_by_labels: bool | None = None
    """Code-faithful label-based model selection (best k-means-ACC epoch in pre-training, best-ACC epoch in
    DCSS phase 1), done by the official DCSS code and not mentioned in the paper. None (default): follow the
    spec, i.e. select by labels exactly when the runner passes ``ctx.labels_for_selection`` (spec key
    ``select_by_labels = true``, which also declares the deviation); False: never; True: require the labels.
    Label-free selection = the last epoch."""


@dataclass
class MLPAEParams(AEParams):
    """AE defaults of the DEC family (DEC, IDEC, DCN, DKM): the DEC-style MLP and DEC's mini-batch of 256.

    Pre-training itself is the shared reconstruction recipe (Adam 1e-3, MSE, 200 epochs), a declared
    deviation from DEC's layer-wise denoising pre-training; DEC-keras/IDEC pre-train end to end the same way.
    """

    arch: str = "mlp"
    """DEC-family architecture d-500-500-2000-10. Source: DEC paper §4.3; IDEC and DKM papers/code."""
    pretrain_batch_size: int = 256
    """Pre-training mini-batch. Source: DEC paper §4.3 (256); DKM ``dkm.py`` (256)."""


# ----------------------------------------------------------------------------------------------------
# architectures


def _xavier_init(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for Linear and Conv2d (not ConvTranspose2d): DCSS ``weights_init``."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class _Bottleneck(nn.Module):
    """ResNet-style bottleneck with a 64-channel inner width and an identity shortcut (DCSS ``myBottleneck``)."""

    def __init__(self, channels: int, width: int = 64):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, channels, 1, bias=False), nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + x)


class ConvAE28(nn.Module):
    """The official DCSS convolutional AE for 1×28×28 inputs (notes §2).

    Encoder: conv5×5/2 (1→32, no bias) + BN + ReLU, bottleneck(32), conv5×5/2 (32→64) + ReLU, bottleneck(64),
    conv3×3/2 (64→128) + ReLU, bottleneck(128), flatten 1152, linear -> z. Decoder: linear z→1152 + ReLU,
    convT3×3/2 (128→64) + ReLU [7], convT5×5/2 p1 (64→32) + ReLU [15], convT4×4/2 p2 (32→1) [28], no output
    activation. The three decoder bottlenecks the official file defines but never calls are left out.
    """

    def __init__(self, latent_dim: int = 10):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(32), nn.ReLU(), _Bottleneck(32),
            nn.Conv2d(32, 64, 5, stride=2, padding=2), nn.ReLU(), _Bottleneck(64),
            nn.Conv2d(64, 128, 3, stride=2), nn.ReLU(), _Bottleneck(128),
            nn.Flatten(), nn.Linear(128 * 3 * 3, latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 128 * 3 * 3), nn.ReLU(), nn.Unflatten(1, (128, 3, 3)),
            nn.ConvTranspose2d(128, 64, 3, stride=2), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 5, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 4, stride=2, padding=2),
        )
        self.apply(_xavier_init)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        return self.decoder(z), z


class MLPAE(nn.Module):
    """DEC-style fully connected AE ``d-500-500-2000-z`` / ``z-2000-500-500-d``, ReLU, linear code and output."""

    def __init__(self, input_dim: int, latent_dim: int = 10, hidden: tuple[int, ...] = (500, 500, 2000)):
        super().__init__()
        self.latent_dim = latent_dim
        dims = [input_dim, *hidden, latent_dim]
        self.encoder = _mlp(dims)
        self.decoder = _mlp(dims[::-1])
        self.apply(_xavier_init)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        return self.decoder(z), z


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def resolve_arch(arch: str, input_shape: tuple[int, ...]) -> str:
    """Resolve 'auto' and check that the architecture fits the input shape (``(C, H, W)`` or ``(D,)``)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; valid choices: {list(ARCHS)}")
    is_28 = tuple(input_shape) == (1, 28, 28)
    if arch == "auto":
        return "conv28" if is_28 else "mlp"
    if arch == "conv28" and not is_28:
        raise ValueError(f"arch 'conv28' needs 1×28×28 grey images; got input shape {tuple(input_shape)}. "
                         f"Use arch='mlp' (valid choices: {list(ARCHS)})")
    return arch


def build_autoencoder(arch: str, input_shape: tuple[int, ...], latent_dim: int = 10) -> nn.Module:
    """Build an AE for inputs of shape ``input_shape`` (``(C, H, W)`` images or ``(D,)`` vectors).

    Parameters
    ----------
    arch : str
        One of :data:`ARCHS`.
    input_shape : tuple of int
        Shape of one prepared sample (see :func:`prepare_inputs`).
    latent_dim : int
        Size of the code z.

    Returns
    -------
    torch.nn.Module
        A module with ``encode(x) -> z`` and ``forward(x) -> (x_hat, z)``, ``x_hat`` shaped like ``x``.
    """
    if latent_dim < 1:
        raise ValueError(f"latent_dim must be >= 1; got {latent_dim}")
    arch = resolve_arch(arch, input_shape)
    if arch == "conv28":
        return ConvAE28(latent_dim)
    return _ShapedMLPAE(MLPAE(int(np.prod(input_shape)), latent_dim), tuple(input_shape))


class _ShapedMLPAE(nn.Module):
    """An MLP AE that flattens its input and gives the reconstruction back in the input's shape."""

    def __init__(self, ae: MLPAE, input_shape: tuple[int, ...]):
        super().__init__()
        self.ae = ae
        self.input_shape = input_shape
        self.latent_dim = ae.latent_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.ae.encode(x.flatten(1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_hat, z = self.ae(x.flatten(1))
        return x_hat.view(x.shape), z


# ----------------------------------------------------------------------------------------------------
# data


def prepare_inputs(data) -> torch.Tensor:
    """Turn ``data.X`` into a tensor of torch's default dtype (float32 unless a test sets float64): images ->
    ``N×C×H×W`` in [0, 1]; features as they are.

    uint8 images are divided by 255 (``ToTensor()`` of the official code); float images are kept as they
    are (USPS in [0, 1]). Text data are rejected: these AEs take images or feature vectors.
    """
    modality = getattr(data, "modality", None)
    X = np.asarray(data.X)
    dtype = torch.empty((), dtype=torch.get_default_dtype()).numpy().dtype
    if modality in ("grey", "rgb"):
        if X.ndim == 3:  # N×H×W
            X = X[..., None]
        if X.ndim != 4:
            raise ValueError(f"{data.name}: images must be N×H×W×C; got shape {X.shape}")
        Xf = X.astype(dtype) / 255.0 if X.dtype == np.uint8 else X.astype(dtype)
        return torch.from_numpy(np.ascontiguousarray(Xf.transpose(0, 3, 1, 2)))
    if modality == "features":
        return torch.from_numpy(np.ascontiguousarray(X.reshape(len(X), -1), dtype=dtype))
    raise ValueError(f"{getattr(data, 'name', '?')}: modality {modality!r} is not supported by the AE methods; "
                     "valid modalities: ['grey', 'rgb', 'features']")


def data_digest(data, X: torch.Tensor) -> str:
    """A hash of the data set's name and the exact prepared input (sample set, order, values)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str(getattr(data, "name", "")).encode())
    h.update(str(tuple(X.shape)).encode())
    h.update(X.numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------
# shared helpers


def batches(n: int, batch_size: int, rng: np.random.Generator, shuffle: bool = True) -> list[np.ndarray]:
    """Index batches covering all ``n`` samples once: ``n // batch_size`` near-equal batches (>= batch_size each).

    No sample is dropped and no batch is tiny (BatchNorm in train mode needs > 1 sample); with
    ``n <= batch_size`` there is one batch of all samples.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    idx = rng.permutation(n) if shuffle else np.arange(n)
    return np.array_split(idx, max(1, n // batch_size))


def sq_dist(z: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``||z_i − c_k||²`` (N×K), exact and with finite gradients at 0."""
    return (z[:, None, :] - centres[None, :, :].to(z.dtype)).pow(2).sum(-1)


@torch.no_grad()
def encode(model: nn.Module, X: torch.Tensor, device: str = "cpu", batch_size: int = 2000) -> torch.Tensor:
    """Latent codes ``model.encode(x)`` of all samples in eval mode (BatchNorm running statistics), on CPU.

    The module's train/eval state is restored afterwards.
    """
    was = model.training
    model.eval()
    out = torch.cat([model.encode(X[i:i + batch_size].to(device)).cpu() for i in range(0, len(X), batch_size)])
    model.train(was)
    return out


def kmeans_on(Z: torch.Tensor | np.ndarray, n_clusters: int, seed: int, n_init: int = 10) -> KMeans:
    """sklearn k-means on latent codes with an explicit ``n_init`` (its default changed in sklearn 1.4)."""
    Z = Z.numpy() if isinstance(Z, torch.Tensor) else np.asarray(Z)
    return KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed % 2**32).fit(Z.astype(np.float64))


def labels_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """ACC used for label-based model selection (only when the spec enables it)."""
    from dcrepro.metrics import acc

    return acc(y_true, y_pred)


def selection_labels(params: AEParams, ctx) -> np.ndarray | None:
    """The labels for label-based model selection, or None (label-free); see ``AEParams.select_by_labels``."""
    if params.select_by_labels is False:
        return None
    if ctx.labels_for_selection is None:
        if params.select_by_labels:
            raise ValueError("select_by_labels = true needs ctx.labels_for_selection: set select_by_labels = true "
                             "in the spec (job or data-set layer), or set the parameter to false or leave it unset")
        return None
    return np.asarray(ctx.labels_for_selection)


# ----------------------------------------------------------------------------------------------------
# pre-training with a disk cache


def _cache_key(digest: str, arch: str, params: AEParams, seed: int, labels: np.ndarray | None) -> str:
    fields = {k: v for k, v in asdict(params).items() if k in AEParams.__dataclass_fields__}
    fields.pop("kmeans_n_init")
    fields["arch"] = arch
    key = {"format": _CACHE_FORMAT, "data": digest, "params": fields, "seed": int(seed),
           "labels": None if labels is None else hashlib.blake2b(np.asarray(labels, np.int64).tobytes(),
                                                                 digest_size=16).hexdigest()}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def pretrain_autoencoder(data, X: torch.Tensor, params: AEParams, ctx) -> tuple[nn.Module, dict]:
    """Build the AE and pre-train it on reconstruction (MSE, Adam), or load it from the disk cache.

    The cache file is ``ctx.cache_dir / "ae" / <key>.pt``, the key hashing the data set's name and exact
    prepared input, the resolved architecture, the :class:`AEParams` pre-training fields and the seed
    (and the selection labels when label-based selection is on). It is written atomically (temporary
    file + ``os.replace``). Before building the AE, torch/numpy are seeded from the run seed; afterwards
    they are re-seeded from another derived seed, so what follows is identical on a cache hit or miss.

    Parameters
    ----------
    data : Dataset
        Used for its name (cache key) only.
    X : torch.Tensor
        Prepared inputs (:func:`prepare_inputs`), on CPU.
    params : AEParams
        Architecture and pre-training hyper-parameters (an :class:`AEParams` or a subclass).
    ctx : RunContext
        Seed, device, cache directory, selection labels.

    Returns
    -------
    ae : torch.nn.Module
        The pre-trained AE on ``ctx.device``, in eval mode.
    info : dict
        ``arch``, ``cache_hit``, ``cache_key``, ``label_selection`` (whether the pre-training epoch was picked
        with labels), per-epoch ``pretrain_loss`` (mean MSE), ``pretrain_selected_epoch`` and
        ``time_pretrain_s`` (time spent here, loading included).
    """
    t0 = time.perf_counter()
    _check_pretrain_params(params)
    arch = resolve_arch(params.arch, tuple(X.shape[1:]))
    labels = selection_labels(params, ctx)
    ae, key, path, hist = _cached_start(data_digest(data, X), arch, X, params, ctx.seed, labels, ctx.cache_dir,
                                        ctx.device)
    cache_hit = hist is not None
    if not cache_hit:
        hist = _pretrain(ae, X, params, ctx, labels)
        _atomic_save({"state_dict": ae.state_dict(), **hist}, path)
    ae.eval()
    seed_everything(derive_seed(ctx.seed, "after_pretrain"))
    info = {"arch": arch, "cache_hit": cache_hit, "cache_key": key, "label_selection": labels is not None, **hist,
            "time_pretrain_s": time.perf_counter() - t0}
    return ae, info


def _cached_start(digest: str, arch: str, X: torch.Tensor, params: AEParams, seed: int, labels, cache_dir,
                  device) -> tuple[nn.Module, str, Path, dict | None]:
    """Seed ``seed``'s AE, initialised under ``derive_seed(seed, "ae_init")`` and loaded from its cache file
    when that exists: (ae, cache key, cache path, the stored history or None on a miss)."""
    key = _cache_key(digest, arch, params, seed, labels)
    path = Path(cache_dir) / "ae" / f"{key}.pt"
    seed_everything(derive_seed(seed, "ae_init"))
    ae = build_autoencoder(arch, tuple(X.shape[1:]), params.latent_dim).to(device)
    if not path.exists():
        return ae, key, path, None
    stored = torch.load(path, map_location=device, weights_only=True)
    ae.load_state_dict(stored["state_dict"])
    return ae, key, path, {k: stored[k] for k in ("pretrain_loss", "pretrain_selected_epoch")}


def _pretrain(ae: nn.Module, X: torch.Tensor, params: AEParams, ctx, labels: np.ndarray | None) -> dict:
    """The pre-training loop; keeps the last epoch, or the best k-means-ACC epoch when ``labels`` is given."""
    rng = np.random.default_rng(derive_seed(ctx.seed, "pretrain_batches"))
    opt = torch.optim.Adam(ae.parameters(), lr=params.pretrain_lr)
    losses: list[float] = []
    best = (-1.0, None, -1)
    for epoch in range(params.pretrain_epochs):
        ae.train()
        total, count = 0.0, 0
        for idx in batches(len(X), params.pretrain_batch_size, rng):
            x = X[idx].to(ctx.device)
            x_hat, _ = ae(x)
            loss = nn.functional.mse_loss(x_hat, x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            count += len(idx)
        losses.append(total / count)
        if labels is not None:
            pred = kmeans_on(encode(ae, X, ctx.device), ctx.n_clusters, ctx.seed, params.kmeans_n_init).labels_
            score = labels_score(labels, pred)
            if score > best[0]:
                best = (score, {k: v.detach().clone() for k, v in ae.state_dict().items()}, epoch)
    selected = params.pretrain_epochs - 1
    if labels is not None and best[1] is not None:
        ae.load_state_dict(best[1])
        selected = best[2]
    return {"pretrain_loss": losses, "pretrain_selected_epoch": selected}


def x_method_info(X: torch.Tensor, ae_info: dict, hist: dict) -> dict:
    """The ``info`` of a DEC-family row: AE facts, how the pre-training epoch was selected, and ``hist``."""
    return {"arch": ae_info["arch"], "n_samples": len(X), "pretrain_cache_hit": ae_info["cache_hit"],
            "model_selection": "best_kmeans_acc_pretrain_epoch (labels)" if ae_info["label_selection"]
            else "last_epoch", **hist}


def pretrained_start(data, params: AEParams, ctx) -> tuple[torch.Tensor, nn.Module, dict, KMeans]:
    """Common start of every AE method: prepared inputs, the (cached) pre-trained AE and k-means on its codes.

    Returns
    -------
    X, ae, ae_info, kmeans
        Inputs (CPU tensor), the AE (eval mode), the :func:`pretrain_autoencoder` info, the fitted sklearn
        ``KMeans`` (``labels_`` = the AE + k-means row, ``cluster_centers_`` = initial centres).
    """
    X = prepare_inputs(data)
    ae, info = pretrain_autoencoder(data, X, params, ctx)
    km = kmeans_on(encode(ae, X, ctx.device), ctx.n_clusters, ctx.seed, params.kmeans_n_init)
    return X, ae, info, km


# ----------------------------------------------------------------------------------------------------
# seeds-batched pre-training (S seeds' AEs trained at once with stacked parameters; methods/stacked.py)


def reseed_after_pretrain(seed: int) -> None:
    """Seed the global RNGs as :func:`pretrain_autoencoder` leaves them for ``seed`` (cache hit or miss).

    The batched path leaves them so for its first seed only; a batched caller that draws from the global
    RNGs afterwards (e.g. initialises a layer) reproduces each seed's draws by calling this before that
    seed's draws, seed after seed, or uses explicit generators seeded from ``derive_seed``.
    """
    seed_everything(derive_seed(seed, "after_pretrain"))


def _one_device(ctxs) -> str:
    devices = {str(c.device) for c in ctxs}
    if len(devices) != 1:
        raise ValueError(f"a seeds batch runs on one device; got {sorted(devices)}")
    return ctxs[0].device


@torch.no_grad()
def encode_stacked(aes: Stacked, X: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """S×N×d codes of all S stacked AEs in eval mode, on ``X``'s device (``X``: N×..., shared by the seeds).

    The batched :func:`encode`; the train/eval state is restored afterwards.
    """
    was = aes.training
    aes.eval()
    out = torch.cat([aes.call("encode", X[i:i + batch_size], in_dims=None) for i in range(0, len(X), batch_size)],
                    dim=1)
    aes.train(was)
    return out


def seed_batches(n: int, batch_size: int, rngs: list[np.random.Generator], device) -> tuple[torch.Tensor, ...]:
    """One epoch of :func:`batches` for S seeds at once: S×B index tensors on ``device``, seed s's row drawn
    from ``rngs[s]`` exactly as :func:`batches` draws (the batch sizes depend on ``n`` only, so all seeds
    share them)."""
    perm = torch.from_numpy(np.stack([rng.permutation(n) for rng in rngs])).to(device)
    return torch.tensor_split(perm, max(1, n // batch_size), dim=1)


def _check_pretrain_params(params: AEParams) -> None:
    for name in ("pretrain_epochs", "pretrain_batch_size"):
        if getattr(params, name) < (0 if name == "pretrain_epochs" else 1):
            raise ValueError(f"{name} must be {'>= 0' if name == 'pretrain_epochs' else '>= 1'}; "
                             f"got {getattr(params, name)}")


def _pretrain_stacked(aes: Stacked, X: torch.Tensor, params: AEParams, seeds: list[int]) -> list[list[float]]:
    """:func:`_pretrain` (last epoch kept) for S stacked AEs, ``X`` on their device; per-seed epoch losses."""
    rngs = [np.random.default_rng(derive_seed(s, "pretrain_batches")) for s in seeds]
    opt = torch.optim.Adam(aes.parameters(), lr=params.pretrain_lr)
    totals = torch.zeros(params.pretrain_epochs, aes.n, dtype=torch.float64, device=X.device)
    aes.train()
    for epoch in range(params.pretrain_epochs):
        for idx in seed_batches(len(X), params.pretrain_batch_size, rngs, X.device):
            x = X[idx]
            x_hat, _ = aes(x)
            loss = (x_hat - x).pow(2).flatten(1).mean(1)  # each seed's mse_loss
            opt.zero_grad()
            loss.sum().backward()
            opt.step()
            totals[epoch] += loss.detach() * idx.shape[1]
    return (totals / len(X)).T.tolist()


def pretrain_autoencoder_batched(data, X: torch.Tensor, params: AEParams, ctxs) -> tuple[Stacked, list[dict]]:
    """:func:`pretrain_autoencoder` for S seeds at once (one context per seed, one device).

    Per seed exactly the one-seed recipe: the AE initialised under ``derive_seed(seed, "ae_init")``, its own
    batch order, the same cache file (same key and format, written atomically per seed; a seed whose file
    exists is loaded, the others are trained together). Label-based selection (k-means per epoch and seed)
    runs the one-seed path per seed. The global RNGs are left as the one-seed path leaves them for
    ``ctxs[0]``; see :func:`reseed_after_pretrain` for the other seeds.

    Returns
    -------
    aes : Stacked
        The S pre-trained AEs on the device, in eval mode.
    infos : list of dict
        :func:`pretrain_autoencoder`'s info per seed; ``time_pretrain_s`` is the batch's time / S and
        ``seeds_per_process`` says S.
    """
    t0 = time.perf_counter()
    device = _one_device(ctxs)
    if any(selection_labels(params, c) is not None for c in ctxs):
        pairs = [pretrain_autoencoder(data, X, params, c) for c in ctxs]
        modules, infos = [ae for ae, _ in pairs], [info for _, info in pairs]
    else:
        _check_pretrain_params(params)
        arch = resolve_arch(params.arch, tuple(X.shape[1:]))
        digest = data_digest(data, X)
        modules, infos, todo = [], [], []
        for i, c in enumerate(ctxs):
            ae, key, path, hist = _cached_start(digest, arch, X, params, c.seed, None, c.cache_dir, device)
            if hist is None:
                todo.append((i, path))
            modules.append(ae)
            infos.append({"arch": arch, "cache_hit": hist is not None, "cache_key": key, "label_selection": False,
                          **(hist or {})})
        if todo:
            training = Stacked([modules[i] for i, _ in todo])
            losses = _pretrain_stacked(training, X.to(device), params, [ctxs[i].seed for i, _ in todo])
            for j, (i, path) in enumerate(todo):
                hist = {"pretrain_loss": losses[j], "pretrain_selected_epoch": params.pretrain_epochs - 1}
                state = training.state_dict(j)
                modules[i].load_state_dict(state)
                _atomic_save({"state_dict": state, **hist}, path)
                infos[i].update(hist)
    for ae in modules:
        ae.eval()
    reseed_after_pretrain(ctxs[0].seed)
    share = (time.perf_counter() - t0) / len(ctxs)
    for info in infos:
        info.update(time_pretrain_s=share, seeds_per_process=len(ctxs))
    return Stacked(modules).eval(), infos


def pretrained_start_batched(data, params: AEParams, ctxs) -> tuple[torch.Tensor, Stacked, list[dict], list[KMeans],
                                                                      nn.Module]:
    """:func:`pretrained_start` for S seeds (one context per seed): the seeds-batched common start.

    Returns
    -------
    X, aes, ae_infos, kmeans, template
        Inputs (CPU tensor), the S pre-trained AEs stacked on ``ctxs[0].device`` (eval mode), one
        :func:`pretrain_autoencoder` info and one fitted sklearn ``KMeans`` per seed, and a one-seed module of
        the architecture on the device for ``aes.module(s, template)`` (its own weights are meaningless).
        The global RNGs are left as :func:`pretrain_autoencoder_batched` leaves them.
    """
    X = prepare_inputs(data)
    aes, infos = pretrain_autoencoder_batched(data, X, params, ctxs)
    device = _one_device(ctxs)
    Z = encode_stacked(aes, X.to(device)).cpu()
    kms = [kmeans_on(Z[s], c.n_clusters, c.seed, params.kmeans_n_init) for s, c in enumerate(ctxs)]
    with torch.random.fork_rng(devices=[]):  # the template's random init must not move the global RNG
        template = build_autoencoder(infos[0]["arch"], tuple(X.shape[1:]), params.latent_dim).to(device).eval()
    return X, aes, infos, kms, template
