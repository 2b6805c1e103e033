"""Feature data sets: N×D vectors a self-supervised backbone computed from a registered image set.

A feature set is named ``<image set>@<space>`` (``cifar10@simclr_h``, ``cifar100_20@moco``) and lives in
``<data root>/features/<image set>/<space>.npz`` (arrays ``X`` float32 N×D, ``y`` int64, ``split_<name>``
index arrays copied from the image set, ``recipe`` = the backbone recipe as a JSON string) with a
readable copy of the recipe in ``<space>.json`` beside it. ``dcrepro backbone`` (:mod:`dcrepro.backbones`)
writes them with :func:`write_feature_set`; the registry (:mod:`dcrepro.data.registry`) sends every name
containing ``@`` here, so :func:`~dcrepro.data.load_dataset`, :func:`~dcrepro.data.is_available`,
:func:`~dcrepro.data.dataset_status` and ``dcrepro data list`` treat them like any other data set.
A missing feature set raises :class:`DataNotAvailable` with the command that makes it.

This module imports no torch: the data layer stays light.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dataset import DataNotAvailable, Dataset

__all__ = ["FeatureSpace", "FEATURE_SPACES", "list_feature_sets", "is_feature_name",
           "split_feature_name", "resolve_feature_name", "feature_path", "is_feature_available", "feature_status",
           "make_command", "views_command", "SET_RECIPES", "backbone_recipe", "backbone_device", "features_dir",
           "load_feature_set", "write_feature_set"]

FEATURES_DIR = "features"
IMAGE_MODALITIES = ("grey", "rgb")


@dataclass(frozen=True)
class FeatureSpace:
    """One kind of feature vector a backbone yields, and the recipe recommended to make it."""

    name: str
    label: str
    """How tables and listings name the space."""
    method: str
    """``dcrepro backbone --method`` value that writes it ('simclr' writes both SimCLR spaces)."""
    description: str
    arch: str
    """Recommended backbone. SimCLR: ResNet-34 (DCSS §4.8.2, P). MoCo: ResNet-18 (SPICE CIFAR configs, I)."""
    epochs: int
    """Recommended epochs. SimCLR: 500 (SimCLR CIFAR runs / SCAN pretext, I: DCSS gives none).
    MoCo: 1,000 (SPICE ``train_moco.py`` CIFAR checkpoints, C)."""
    batch_size: int
    """Recommended batch. SimCLR: 512 (SCAN pretext config). MoCo: 256 (MoCo-v2 paper)."""


FEATURE_SPACES: dict[str, FeatureSpace] = {s.name: s for s in (
    FeatureSpace("simclr_h", "SimCLR H space", "simclr",
                 "backbone output after global average pooling (512-d for ResNet-18/34), un-normalised",
                 "resnet34", 500, 512),
    FeatureSpace("simclr_z", "SimCLR Z space", "simclr",
                 "projection-head output (128-d), un-normalised", "resnet34", 500, 512),
    FeatureSpace("moco", "MoCo", "moco",
                 "MoCo-v2 query-encoder output after global average pooling, L2-normalised "
                 "(as SPICE's feas_moco_512_l2)", "resnet18", 1000, 256),
)}

SET_RECIPES: dict[tuple[str, str], dict] = {
    # (image set, method) -> the backbone recipe the specs declare for that set, where it differs from the
    # feature space's (the grey other-data sets RPSC runs on, trained on a CPU; benchmarks/rpsc.toml [inputs])
    ("usps", "moco"): {"arch": "resnet18", "width": 16, "epochs": 100, "batch_size": 256},
    ("mnist", "moco"): {"arch": "resnet18", "width": 16, "stem": "stl", "epochs": 13, "batch_size": 256,
                        "crop_scale_min": 0.5},
    ("fashion_mnist", "moco"): {"arch": "resnet18", "width": 16, "stem": "stl", "epochs": 13, "batch_size": 256,
                                "crop_scale_min": 0.5},
}


def backbone_device(name: str) -> str:
    """Device the commands for feature set ``name`` ask for: 'auto' for a :data:`SET_RECIPES` set (a CPU is
    enough), else 'cuda'."""
    base, space = split_feature_name(name)
    return "auto" if (base, FEATURE_SPACES[space].method) in SET_RECIPES else "cuda"


def backbone_recipe(name: str) -> dict:
    """``dcrepro backbone`` parameters that make feature set ``name``: its :data:`SET_RECIPES` entry, else the
    space's recommendation (arch, epochs, batch size)."""
    base, space = split_feature_name(name)
    s = FEATURE_SPACES[space]
    return dict(SET_RECIPES.get((base, s.method), {"arch": s.arch, "epochs": s.epochs, "batch_size": s.batch_size}))


def list_feature_sets() -> list[str]:
    """Ids of the feature sets the specs' jobs use, derived from ``benchmarks/*.toml`` (any
    ``<image set>@<space>`` pair is loadable)."""
    from ..spec import feature_sets_used

    return feature_sets_used()


def is_feature_name(name) -> bool:
    return "@" in str(name)


def split_feature_name(name: str) -> tuple[str, str]:
    """``'CIFAR-10@simclr_h'`` -> ``('cifar10', 'simclr_h')``; bad parts raise naming the valid choices."""
    from .catalog import REGISTRY, resolve_base

    base, _, space = str(name).partition("@")
    base = resolve_base(base)
    images = [n for n, s in REGISTRY.items() if s.modality in IMAGE_MODALITIES]
    if base not in images:
        raise ValueError(f"feature set {name!r}: {base!r} is not an image data set; valid image sets: "
                         f"{', '.join(images)}")
    space = space.strip().lower()
    if space not in FEATURE_SPACES:
        raise ValueError(f"feature set {name!r}: unknown feature space {space!r}; valid spaces: "
                         f"{', '.join(FEATURE_SPACES)}")
    return base, space


def resolve_feature_name(name: str) -> str:
    """Canonical ``<image set>@<space>`` id of ``name``."""
    return "@".join(split_feature_name(name))


def _root(root) -> Path:
    from .catalog import _root as catalog_root

    return catalog_root(root)


def features_dir(root=None) -> Path:
    """``<root>/features`` for an explicit data root, else :func:`dcrepro.paths.features_root`
    (``$DCREPRO_FEATURES``, else ``<data root>/features``)."""
    from ..paths import features_root

    return features_root(None if root is None else _root(root))


def feature_path(name: str, root=None) -> Path:
    """``<features dir>/<image set>/<space>.npz`` (:func:`features_dir`)."""
    base, space = split_feature_name(name)
    return features_dir(root) / base / f"{space}.npz"


def is_feature_available(name: str, root=None) -> bool:
    """True when the feature file exists (cheap: nothing is read)."""
    return feature_path(name, root).is_file()


def feature_status(name: str, root=None, *, hashes: bool = True) -> dict:
    """Same keys as :func:`dcrepro.data.dataset_status`; 'checked' is 'recipe' (no published checksum)."""
    base, space = split_feature_name(name)
    path = feature_path(name, root)
    root = features_dir(root).parent
    present = path.is_file()
    rel = str(path.relative_to(root))
    return {"name": f"{base}@{space}", "status": "present" if present else "missing",
            "checked": "recipe" if hashes else "not hashed", "files": {rel: "ok" if present else "missing"},
            "root": str(root), "bytes": path.stat().st_size if present else 0}


def make_command(name: str, root=None, portable: bool = False) -> str:
    """The ``dcrepro backbone`` command line that writes feature set ``name`` under ``root``
    (``portable``: under ``$DCREPRO_DATA`` as written, for committed tables that must not name this machine's paths;
    no ``root`` and no ``portable``: where the runner reads it, ``$DCREPRO_FEATURES`` or the data root)."""
    base, space = split_feature_name(name)
    s = FEATURE_SPACES[space]
    out = ' --out "$DCREPRO_DATA"' if portable else f" --out {_root(root)}" if root is not None else ""
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in backbone_recipe(name).items())
    return f"dcrepro backbone --dataset {base} --method {s.method} {flags} --device {backbone_device(name)}{out}"


def views_command(name: str, root=None, portable: bool = False) -> str:
    """The command that encodes the pool of weak and strong views of feature set ``name`` with its trained
    backbone (SCAN, SPICE and RPSC train on cached views: :mod:`dcrepro.backbones.views`)."""
    base, space = split_feature_name(name)
    where = ' --root "$DCREPRO_DATA"' if portable else f" --root {_root(root)}" if root is not None else ""
    return (f"python -m dcrepro.backbones.views --dataset {base} --method {FEATURE_SPACES[space].method} "
            f"--weak 4 --strong 8 --device {backbone_device(name)}{where}")


def _missing_message(name: str, root: Path | None) -> str:
    from .catalog import REGISTRY, _check_file, _source, _where_from

    base, space = split_feature_name(name)
    spec, s = REGISTRY[base], FEATURE_SPACES[space]
    path = feature_path(name, root)
    command = make_command(name, root)
    root = _root(root)
    also = "; it writes both SimCLR spaces, H and Z" if s.method == "simclr" else ""
    images_root, _ = _source(spec, root)
    if all(_check_file(f, images_root, hashes=False) != "missing" for f in spec.files):
        images = f"The image set {spec.display_name} ({base}) is present under {root / spec.folder}."
    else:
        images = (f"The image set {spec.display_name} ({base}) must be present first (images are read from "
                  f"--data-root, default $DCREPRO_DATA); it is missing under {root}: {_where_from(spec, root)}")
    return (f"feature set {base}@{space} ({spec.display_name}, {s.label}: {s.description}) is not available: "
            f"{path} does not exist.\nMake it on a GPU machine (hours{also}) with\n  {command}\n"
            f"and, for SCAN, SPICE and RPSC, its pool of augmented views with\n  {views_command(name)}\n{images}")


def load_feature_set(name: str, root=None) -> Dataset:
    """Load ``<image set>@<space>`` as a ``Dataset(modality='features')`` with the image set's splits.

    Raises
    ------
    DataNotAvailable
        The file is missing (the message gives the ``dcrepro backbone`` command) or unreadable.
    """
    from .catalog import REGISTRY

    base, space = split_feature_name(name)
    path = feature_path(name, root)
    if not path.is_file():
        raise DataNotAvailable(_missing_message(name, root))
    spec = REGISTRY[base]
    try:
        with np.load(path, allow_pickle=False) as z:
            X, y = np.asarray(z["X"], dtype=np.float32), np.asarray(z["y"], dtype=np.int64)
            splits = {k[len("split_"):]: np.asarray(z[k]) for k in z.files if k.startswith("split_")}
            recipe = json.loads(str(z["recipe"])) if "recipe" in z.files else {}
        if X.ndim != 2 or not np.isfinite(X).all():
            raise ValueError(f"X must be a finite N×D array; got shape {X.shape}")
        data = Dataset(f"{base}@{space}", "features", X, y, spec.n_classes, splits)
    except (ValueError, OSError, KeyError, EOFError) as e:
        raise DataNotAvailable(f"feature set {base}@{space}: {path} could not be read: {type(e).__name__}: {e}\n"
                               f"Re-create it with\n  {make_command(name, root if root is None else _root(root))}") from e
    data.meta = {"display_name": f"{spec.display_name} ({FEATURE_SPACES[space].label})", "base": base,
                 "space": space, "source": f"{FEATURE_SPACES[space].label} features of {spec.source}",
                 "root": str(_root(root)), "features_dir": str(path.parent.parent), "files": [str(path)],
                 "recipe": recipe,
                 "expected_samples": spec.n_samples, "splits_protocol": spec.splits}
    return data


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; feature sets are shared like the other data files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_feature_set(name: str, X, y, splits: dict, recipe: dict, root=None) -> Path:
    """Write feature set ``name`` atomically (temporary file + ``os.replace``) and its JSON recipe.

    Parameters
    ----------
    name : str
        ``<image set>@<space>``.
    X : array-like, N×D
        Stored as float32.
    y : array-like of int, N
        Labels of the image set, in the same order.
    splits : dict of str to array-like
        The image set's named index arrays ('all' is implied and not stored).
    recipe : dict
        JSON-serialisable facts: backbone method, arch, epochs, seed, optimiser, the image set's checksum status.

    Returns
    -------
    pathlib.Path
        The ``.npz`` written.
    """
    base, space = split_feature_name(name)
    X = np.ascontiguousarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"need X N×D and y of length N; got X {X.shape}, y {y.shape}")
    path = feature_path(name, root)
    text = json.dumps({"name": f"{base}@{space}", "shape": list(X.shape), **recipe}, indent=2, sort_keys=True)
    arrays = {"X": X, "y": y, "recipe": np.array(text),
              **{f"split_{k}": np.asarray(v, dtype=np.int64) for k, v in splits.items() if k != "all"}}
    _atomic_write(path, lambda f: np.savez(f, **arrays))
    _atomic_write(path.with_suffix(".json"), lambda f: f.write(text.encode() + b"\n"))
    return path
