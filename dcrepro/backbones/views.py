"""Cached features of augmented views: a pool of weak and strong views per image, encoded once.

RPSC, SPICE and SCAN train their heads on augmented images through a frozen backbone. With the backbone
frozen, the features of a view do not change during training, so ``dcrepro backbone ... --views W S`` (or
:func:`cache_views` on a trained checkpoint) encodes ``W`` weak and ``S`` strong views of every image once, and
the methods draw from that finite pool (a declared deviation: the lineage draws a fresh view every step).

* weak (SPICE ``transformations.py`` "weak", FixMatch): random crop with padding side/8 (4 px at 32 px) + horizontal flip.
* strong (SCAN's "ours", which RPSC names: "Cutout + 4 RandAugment operations"): horizontal flip, kornia
  ``RandAugment(n=4)`` and Cutout (one square of side/2, 16 px at 32 px, filled with the channel mean so it
  reads 0 after normalisation as in SCAN). kornia's RandAugment draws its operations once per call, so views are
  made in chunks of ``chunk`` images, each with its own draw and a magnitude m uniform in 1..29 (SCAN draws the
  operations and magnitudes per image).

Stored as ``<root>/features/<set>/<space>_views.npz``: ``weak`` (W×N×D float16), ``strong`` (S×N×D float16),
``X`` (the clean features, float32, to align subsets) and the recipe.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data.feature_sets import _atomic_write, feature_path, features_dir, split_feature_name, views_command
from .augment import to_float

__all__ = [
    "StrongAugment",
    "cache_views",
    "encode_views",
    "load_views",
    "views_path",
    "weak_augment",
    "write_views",
]


def weak_augment(size: int) -> nn.Module:
    """Random crop (zero padding side/8) + horizontal flip, per image."""
    import kornia.augmentation as K

    return K.AugmentationSequential(K.RandomCrop((size, size), padding=max(1, size // 8)), K.RandomHorizontalFlip())


class StrongAugment(nn.Module):
    """SCAN's strong augmentation: flip, 4 RandAugment operations, Cutout (side/2, filled with ``fill``)."""

    def __init__(self, size: int, fill=(0.5, 0.5, 0.5), n_ops: int = 4, chunk: int = 32):
        super().__init__()
        import kornia.augmentation as K

        self.flip = K.RandomHorizontalFlip()
        self.size, self.n_ops, self.chunk = size, n_ops, chunk
        self.cut = max(1, size // 2)
        self.register_buffer("fill", torch.as_tensor(fill, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from kornia.augmentation.auto import RandAugment

        x = self.flip(x)
        parts = []
        for i in range(0, len(x), self.chunk):
            m = int(torch.randint(1, 30, ()).item())
            parts.append(RandAugment(n=self.n_ops, m=m)(x[i:i + self.chunk]).clamp(0, 1))
        x = torch.cat(parts)
        n, _, h, w = x.shape
        cy, cx = torch.randint(0, h, (n,), device=x.device), torch.randint(0, w, (n,), device=x.device)
        ys, xs = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
        half = self.cut // 2
        iny = ((ys[None] >= cy[:, None] - half) & (ys[None] < cy[:, None] - half + self.cut))
        inx = ((xs[None] >= cx[:, None] - half) & (xs[None] < cx[:, None] - half + self.cut))
        hole = (iny[:, :, None] & inx[:, None, :])[:, None]
        return torch.where(hole, self.fill.to(x.dtype), x)


@torch.no_grad()
def encode_views(model: nn.Module, images: torch.Tensor, space: str, n_weak: int, n_strong: int,
                 fill=(0.5, 0.5, 0.5), batch_size: int = 1024) -> dict[str, np.ndarray]:
    """``{'weak': W×N×D, 'strong': S×N×D}`` (float16) of ``model.features(view)[space]``, in eval mode.

    Randomness comes from torch's global generator: the caller seeds it (``dcrepro backbone --seed``).
    """
    side = images.shape[1]
    weak, strong = weak_augment(side).to(images.device), StrongAugment(side, fill).to(images.device)
    was = model.training
    model.eval()
    out = {}
    for kind, aug, n in (("weak", weak, n_weak), ("strong", strong, n_strong)):
        views = []
        for _ in range(n):
            parts = [model.features(aug(to_float(images[i:i + batch_size])))[space].float().cpu()
                     for i in range(0, len(images), batch_size)]
            views.append(torch.cat(parts).numpy().astype(np.float16))
        out[kind] = np.stack(views) if views else np.zeros((0, len(images), 0), np.float16)
    model.train(was)
    return out


def views_path(name: str, root=None) -> Path:
    """``<root>/features/<set>/<space>_views.npz`` beside the feature set ``name``."""
    p = feature_path(name, root)
    return p.with_name(f"{p.stem}_views.npz")


def write_views(name: str, views: dict[str, np.ndarray], clean: np.ndarray, recipe: dict, root=None) -> Path:
    """Write the view pool of feature set ``name`` atomically (with the clean features, for subset alignment)."""
    path = views_path(name, root)
    text = json.dumps({"name": name, **recipe}, sort_keys=True, default=str)
    arrays = {"weak": views["weak"], "strong": views["strong"], "X": np.asarray(clean, np.float32),
              "recipe": np.array(text)}
    _atomic_write(path, lambda f: np.savez(f, **arrays))
    return path


def cache_views(dataset: str, method: str = "moco", n_weak: int = 4, n_strong: int = 8, root=None,
                seed: int = 0, device: str = "cpu", space: str | None = None, subset: int | None = None,
                log=print) -> Path:
    """Encode the view pool of ``<dataset>@<space>`` with the trained ``<method>_backbone.pt`` under ``root``.

    ``subset``: encode only the stratified ``subset``-image subset the runner draws for a job with that
    ``subset`` (``subset_seed`` 0), e.g. the reduced budget's 10,000 MNIST images; runs on other rows then
    ask for the full pool."""
    from ..data import load_dataset
    from ..data.feature_sets import load_feature_set
    from ..methods import params_from_dict
    from ..seeding import seed_everything
    from .cli import _build, _params_cls

    ckpt = features_dir(root) / dataset / f"{method}_backbone.pt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"no trained backbone at {ckpt}; run `dcrepro backbone --dataset {dataset} "
                                f"--method {method} ...` first")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    recipe = state["recipe"]
    cls = _params_cls(method)
    names = {f for f in cls.__dataclass_fields__}
    p = params_from_dict(cls, {k: v for k, v in recipe.items() if k in names})
    p.stem = recipe["stem"]
    model, _ = _build(method, p, recipe["image_size"], recipe["channel_mean"], recipe["channel_std"])
    model.load_state_dict(state["state_dict"])
    model = model.to(device)
    space = space or ("moco" if method == "moco" else "simclr_h")
    name = f"{dataset}@{space}"
    split_feature_name(name)
    data = load_dataset(dataset, root, verify=False, image_size=recipe["image_size"]
                        if dataset in ("imagenet10", "imagenet_dogs", "tiny_imagenet") else None)
    X = data.X if data.X.ndim == 4 else data.X[..., None]
    clean = load_feature_set(name, root).X  # the stored clean features, which the runner hands the methods
    rows = np.arange(len(X))
    if subset is not None and subset < len(X):
        from ..data import stratified_subset

        rows = stratified_subset(data.y, subset, seed=0)
        X, clean = X[rows], clean[rows]
    images = torch.from_numpy(np.ascontiguousarray(X)).to(device)
    seed_everything(seed)
    import time
    t0 = time.perf_counter()
    views = encode_views(model, images, space, n_weak, n_strong, recipe["channel_mean"], p.encode_batch_size)
    dt = time.perf_counter() - t0
    log(f"encoded {n_weak} weak + {n_strong} strong views of {len(images)} images in {dt:.1f} s")
    return write_views(name, views, clean, {"backbone": str(ckpt.name), "n_weak": n_weak, "n_strong": n_strong,
                                            "seed": seed, "time_s": dt, "n_images": len(rows),
                                            "subset": subset if len(rows) < len(data.y) else None,
                                            "weak": "crop(pad side/8)+flip",
                                            "strong": "flip+RandAugment(4)+Cutout(side/2)"}, root)


def load_views(data, root=None) -> tuple[np.ndarray, np.ndarray]:
    """(weak W×n×D, strong S×n×D) float32 view features aligned with the rows of feature set ``data``.

    ``data`` is a feature :class:`~dcrepro.data.Dataset` (possibly a subset: rows are matched to the cached clean
    features by value). Raises DataNotAvailable with the command that makes the pool when it is missing.
    """
    base, space = data.meta.get("base"), data.meta.get("space")
    if base is None or space is None:
        raise ValueError(f"{data.name}: view features exist only for feature sets '<image set>@<space>'")
    path = (views_path(f"{base}@{space}", root) if root is not None or "features_dir" not in data.meta
            else Path(data.meta["features_dir"]) / base / f"{space}_views.npz")
    if not path.is_file():
        from ..data import DataNotAvailable

        raise DataNotAvailable(f"view features of {base}@{space} are missing ({path}); make them with the trained "
                               f"backbone:\n  {views_command(f'{base}@{space}')}")
    with np.load(path, allow_pickle=False) as z:
        weak, strong, clean = z["weak"], z["strong"], z["X"]
    X = np.asarray(data.X, np.float32)
    if len(clean) == len(X) and np.array_equal(clean, X):
        idx = np.arange(len(X))
    else:
        pos = {row.tobytes(): i for i, row in enumerate(clean)}
        try:
            idx = np.array([pos[row.tobytes()] for row in X])
        except KeyError:
            if len(clean) < len(X):
                from ..data import DataNotAvailable

                raise DataNotAvailable(f"{path} holds the views of {len(clean)} of {data.name}'s images (made with "
                                       f"--subset) and this run uses {len(X)}; encode the full pool:\n  "
                                       f"{views_command(f'{base}@{space}')}") from None
            raise ValueError(f"{path}: the cached views belong to other features than {data.name}'s; "
                             f"re-create them") from None
    return weak[:, idx].astype(np.float32), strong[:, idx].astype(np.float32)


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m dcrepro.backbones.views",
                                 description="encode a pool of weak and strong views with a trained backbone")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--method", default="moco", choices=["moco", "simclr"])
    ap.add_argument("--weak", type=int, default=4)
    ap.add_argument("--strong", type=int, default=8)
    ap.add_argument("--root", default=None, help="data root: images from <root>, backbone and features under "
                    "<root>/features (default: images from $DCREPRO_DATA, features under $DCREPRO_FEATURES if set, "
                    "else $DCREPRO_DATA/features)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--subset", type=int, default=None,
                    help="encode only the stratified subset of this size that the runner draws (subset_seed 0): "
                    "the spec's reduced-budget subset; default all images")
    a = ap.parse_args(argv)
    if a.subset is not None and a.subset < 1:
        ap.error(f"--subset must be a positive number of images; got {a.subset}")
    from ..data import DataNotAvailable
    from ..envinfo import resolve_device

    try:
        path = cache_views(a.dataset, a.method, a.weak, a.strong, a.root, a.seed, resolve_device(a.device),
                           subset=a.subset)
    except (DataNotAvailable, FileNotFoundError, ValueError) as e:
        print(f"python -m dcrepro.backbones.views: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
