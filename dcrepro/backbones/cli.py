"""``dcrepro backbone``: train SimCLR or MoCo on a registered image set and write its feature sets.

The lead's ``dcrepro/cli.py`` calls :func:`register` with its argparse sub-parsers (the command sets
``func``: ``args -> exit code``). :func:`run_backbone` is the same thing as a function::

    dcrepro backbone --dataset cifar10 --method simclr --arch resnet34 --epochs 500 --batch-size 512 \\
        --device cuda --out $DCREPRO_DATA

writes ``$DCREPRO_DATA/features/cifar10/simclr_h.npz`` and ``simclr_z.npz`` (MoCo: ``moco.npz``), each with a
JSON recipe beside it, and the trained backbone ``<method>_backbone.pt``. The backbone trains on the images
of ``--train-split`` ('all' = train + test, DCSS's protocol) and every image of the set is encoded.
Full-size runs need a GPU (hours); a CPU run is only good for smoke tests (``--width 8 --epochs 1``).
"""
from __future__ import annotations

import datetime
import math
import sys
from dataclasses import asdict

from ..data.feature_sets import FEATURE_SPACES, split_feature_name
from ..errors import choice_error

__all__ = ["METHODS", "register", "run_backbone", "main"]

METHODS = ("simclr", "moco")


def _params_cls(method: str):
    if method == "simclr":
        from .simclr import SimCLRParams
        return SimCLRParams
    if method == "moco":
        from .moco import MoCoParams
        return MoCoParams
    raise choice_error("backbone method", method, list(METHODS))


def _build(method: str, p, side: int, mean, std):
    from .moco import MoCo
    from .resnet import build_encoder, stem_for_size
    from .simclr import SimCLR

    stem = stem_for_size(side) if p.stem == "auto" else p.stem
    if method == "simclr":
        enc = build_encoder(p.arch, side, stem, p.width, mean, std)
        return SimCLR(enc, p.proj_hidden, p.proj_dim, p.temperature), stem
    if p.queue_size < p.batch_size:
        raise ValueError(f"queue_size ({p.queue_size}) must be >= batch_size ({p.batch_size})")
    enc = build_encoder(p.arch, side, stem, p.width, mean, std, bn_splits=p.bn_splits)
    return MoCo(enc, p.proj_hidden, p.proj_dim, p.queue_size, p.moco_momentum, p.temperature), stem


CHANCE_SHARE = 0.98
"""A final loss at or above this share of its chance level counts as 'views not aligned' (recipe
``views_aligned``; the log warns)."""


def loss_at_chance(method: str, p, n_train: int) -> float:
    """The contrastive loss of features that do not tell an image's other view from the negatives: ln of the
    number of candidates per query (MoCo: its key + the queue; SimCLR: the 2B - 1 other views of the batch)."""
    if method == "moco":
        return math.log(p.queue_size + 1)
    return math.log(2 * min(p.batch_size, n_train) - 1)


def run_backbone(dataset: str, method: str = "simclr", out=None, data_root=None, device: str = "auto",
                 seed: int = 0, verify: bool = True, image_size: int | None = None, train_split: str = "all",
                 log=print, **params) -> dict:
    """Train a backbone on ``dataset`` and write its feature sets.

    Parameters
    ----------
    dataset : str
        A registered image data set (``cifar10``, ``stl10``, ``cifar100_20``, ``imagenet10``, ...).
    method : {'simclr', 'moco'}
    out : path-like, optional
        Root the feature sets are written under (``<out>/features/<set>/``); default ``$DCREPRO_FEATURES``
        if set, else the data root's ``features/``.
    data_root : path-like, optional
        Where the images are read from; default ``$DCREPRO_DATA``.
    device : {'auto', 'cpu', 'cuda'}
    seed : int
        Seeds torch / numpy / python (initialisation, batch order, augmentations).
    verify : bool
        Check the image files' checksums before training (recorded in the recipe).
    image_size : int, optional
        Resize ImageFolder sets (ImageNet-10) to this side instead of the registry default.
    train_split : str
        Split of the image set the backbone trains on ('all' = every image).
    **params
        Fields of :class:`~dcrepro.backbones.simclr.SimCLRParams` / :class:`~dcrepro.backbones.moco.MoCoParams`
        (None values are ignored); unknown names raise with the valid list.

    Returns
    -------
    dict
        ``written`` ({feature-set name: path}), ``checkpoint`` (path), ``recipe``.
    """
    import torch

    from ..data import load_dataset
    from ..envinfo import device_name, git_revision, resolve_device, versions
    from ..methods import params_from_dict
    from ..seeding import seed_everything
    from .augment import ContrastiveAugment, channel_stats
    from .features import encode_images, save_checkpoint, write_features
    from .resnet import ARCHS, STEMS
    from .train import check_params, train_contrastive

    cls = _params_cls(method)
    p = params_from_dict(cls, {k: v for k, v in params.items() if v is not None}, f"dcrepro backbone --method {method}")
    check_params(p)
    if p.arch not in ARCHS or p.stem not in STEMS:
        raise ValueError(f"arch must be one of {list(ARCHS)} and stem one of {list(STEMS)}; got {p.arch!r}, {p.stem!r}")
    space = next(s for s in FEATURE_SPACES.values() if s.method == method).name
    base, _ = split_feature_name(f"{dataset}@{space}")  # a registered image set, or a clear error
    device = resolve_device(device)
    out_root = out if out is not None else data_root  # None: $DCREPRO_FEATURES, else the data root
    seed_everything(seed)

    data = load_dataset(base, data_root, verify=verify, image_size=image_size)
    if train_split not in data.splits:
        raise ValueError(f"unknown split {train_split!r} of {base}; valid splits: {', '.join(data.splits)}")
    X = data.X if data.X.ndim == 4 else data.X[..., None]
    if X.shape[1] != X.shape[2]:
        raise ValueError(f"{base}: square images expected; got {X.shape[1]}×{X.shape[2]} (use --image-size)")
    side = int(X.shape[1])
    images = torch.from_numpy(X).to(device)
    train_images = images[torch.as_tensor(data.splits[train_split], device=device)]
    mean, std = channel_stats(train_images)
    model, stem = _build(method, p, side, mean, std)
    model = model.to(device)
    blur = p.blur == "yes" or (p.blur == "auto" and side > 64)
    augment = ContrastiveAugment(side, (p.crop_scale_min, 1.0), blur=blur).to(device)
    log(f"{method} {p.arch} (stem {stem}, width {p.width}) on {base}[{train_split}]: {len(train_images)} images "
        f"{side}×{side}, {p.epochs} epochs, batch {p.batch_size}, device {device}")
    hist = train_contrastive(model, train_images, p, augment, device, log)
    chance = loss_at_chance(method, p, len(train_images))
    aligned = hist["loss"][-1] < CHANCE_SHARE * chance
    if not aligned:
        log(f"warning: the final contrastive loss {hist['loss'][-1]:.4f} is at its chance level ln(candidates) = "
            f"{chance:.4f}: the two views of an image are not told apart from the negatives, so the features "
            f"carry little; try a milder crop (--crop-scale-min) or more epochs")
    feats = encode_images(model, images, p.encode_batch_size)

    recipe = {"method": method, **asdict(p), "stem": stem, "blur": blur, "seed": seed, "device": device_name(device),
              "image_size": side, "train_split": train_split, "n_train_images": len(train_images),
              "n_images": len(images), "channel_mean": mean, "channel_std": std,
              "base": {"name": base, "display_name": data.meta.get("display_name"), "root": data.meta.get("root"),
                       "checksums_verified": bool(verify), "checksum_states": data.meta.get("checksum_states")},
              "loss": hist["loss"], "loss_chance_level": chance, "views_aligned": aligned,
              "lr_effective": hist["lr_effective"], "steps": hist["steps"],
              "time_train_s": hist["time_train_s"], "images_per_s": hist["images_per_s"],
              "versions": versions(), "git_rev": git_revision(),
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    written = write_features(base, feats, data, recipe, out_root)
    ckpt = save_checkpoint(model, base, method, recipe, out_root)
    return {"written": written, "checkpoint": ckpt, "recipe": recipe}


_OPTIONAL = {  # CLI flag -> params field (default None = the method's dataclass default)
    "--arch": ("arch", str), "--epochs": ("epochs", int), "--batch-size": ("batch_size", int),
    "--lr": ("lr", float), "--temperature": ("temperature", float), "--optimizer": ("optimizer", str),
    "--width": ("width", int), "--stem": ("stem", str), "--queue-size": ("queue_size", int),
    "--moco-momentum": ("moco_momentum", float), "--warmup-epochs": ("warmup_epochs", int),
    "--crop-scale-min": ("crop_scale_min", float),
}


def _cmd_backbone(args) -> int:
    from ..data import DataNotAvailable

    params = {field: getattr(args, field) for field, _ in _OPTIONAL.values()}
    params["amp"] = False if args.no_amp else None
    log = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    try:
        result = run_backbone(args.dataset, args.method, args.out, args.data_root, args.device, args.seed,
                              not args.no_verify, args.image_size, args.train_split, log, **params)
    except (DataNotAvailable, ValueError, RuntimeError, FloatingPointError) as e:
        print(f"dcrepro backbone: error: {e}", file=sys.stderr)
        return 2
    for name, path in result["written"].items():
        print(f"wrote {name}: {path}")
    print(f"backbone checkpoint: {result['checkpoint']}")
    return 0


def register(subparsers) -> None:
    """Add ``backbone`` to an argparse sub-parsers object (sets ``func``: call ``args.func(args)``)."""
    from .resnet import ARCHS, STEMS
    from .train import OPTIMIZERS

    p = subparsers.add_parser(
        "backbone", help="train SimCLR / MoCo on an image set and write its feature sets (GPU)",
        description="Train a self-supervised backbone and write <out>/features/<set>/<space>.npz "
                    "(simclr: simclr_h and simclr_z; moco: moco). Defaults not given here are the method's "
                    "recipe (dcrepro.backbones.simclr.SimCLRParams / moco.MoCoParams).")
    p.add_argument("--dataset", required=True, help="registered image data set (cifar10, stl10, cifar100_20, ...)")
    p.add_argument("--method", required=True, choices=METHODS)
    choices = {"--arch": list(ARCHS), "--stem": list(STEMS), "--optimizer": list(OPTIMIZERS)}
    for flag, (field, typ) in _OPTIONAL.items():
        unit = " (per 256 images: effective lr = lr x batch / 256)" if field == "lr" else ""
        p.add_argument(flag, dest=field, type=typ, default=None, choices=choices.get(flag),
                       help=f"default: the method's {field}{unit}")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", default=None, help="root the features go under, as <out>/features/ (default: $DCREPRO_FEATURES if set, else the data root)")
    p.add_argument("--data-root", default=None, help="image data root (default: $DCREPRO_DATA or ~/.cache/dcrepro)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=None, help="resize ImageFolder sets (ImageNet-10) to this side")
    p.add_argument("--train-split", default="all", help="split the backbone trains on (default: all images)")
    p.add_argument("--no-verify", action="store_true", help="skip the image files' checksum check")
    p.add_argument("--no-amp", action="store_true", help="float32 forward passes on the GPU")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_backbone)


def main(argv=None) -> int:
    """Stand-alone entry (``python -m dcrepro.backbones.cli --dataset ...``) until the main CLI is wired."""
    import argparse

    parser = argparse.ArgumentParser(prog="dcrepro")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["backbone", *(argv if argv is not None else sys.argv[1:])])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
