"""The registry of benchmark data sets: what each needs on disk, where it comes from, how it loads.

One :class:`DatasetSpec` per data set (canonical id, display name as the papers write it, modality,
number of classes, expected size, the files with their checksums, the canonical download location)
plus the public entry points :func:`load_dataset`, :func:`is_available`, :func:`dataset_status`.
The data root is ``$DCREPRO_DATA`` (default ``~/.cache/dcrepro``) and mirrors ``shared/data``, so
``DCREPRO_DATA=../shared/data`` works as is. Used by the runner, the CLI (:mod:`dcrepro.data.cli`)
and the fetcher (:mod:`dcrepro.data.fetch`). Names of the form ``<image set>@<space>``
(``cifar10@simclr_h``) are backbone feature sets: the public functions hand them to
:mod:`dcrepro.data.feature_sets`.

Embedded copies: USPS, SNIPS and AgNews (5 MiB together) also ship inside the package under
``dcrepro/data/embedded/<name>/`` with their PROVENANCE.txt; a root that holds none of a set's files reads
that copy (:func:`dataset_status` reports ``source`` 'embedded copy'), so a fresh install has real data.

Checksums: sha256 from the ``PROVENANCE.txt`` of ``shared/data`` for the sets placed there; for the
colour sets, which are not, the md5 values that torchvision checks (the only published ones).
"""
from __future__ import annotations

import functools
import pickle
import zlib
from pathlib import Path

from .dataset import ChecksumMismatch, DataNotAvailable, Dataset
from .catalog import (_ALIASES, EMBEDDED, EMBEDDED_ROOT, EMBEDDED_SOURCE, REGISTRY, ArchiveSpec,  # noqa: F401
                      DatasetSpec, FileSpec, _check_file, _norm, _root, _source, _where_from, data_root,
                      display_name, file_digest, resolve_base)

__all__ = ["FileSpec", "ArchiveSpec", "DatasetSpec", "REGISTRY", "data_root", "get_spec", "list_datasets",
           "list_feature_sets", "resolve_name", "display_name", "is_available", "load_dataset", "dataset_status", "file_digest",
           "integrity_error", "EMBEDDED", "EMBEDDED_ROOT"]

def list_datasets() -> list[str]:
    """Canonical ids of every registered data set, in registry order (grey, colour, text)."""
    return list(REGISTRY)


def list_feature_sets() -> list[str]:
    """Ids ``<image set>@<space>`` of the backbone feature sets the target tables use."""
    from .feature_sets import list_feature_sets as _list

    return _list()


def resolve_name(name: str) -> str:
    """Canonical id of ``name``; display names and spelling variants (``'Fashion-MNIST'``) are accepted.

    Feature sets resolve to ``<image set>@<space>`` (``'CIFAR-10@simclr_h'`` -> ``'cifar10@simclr_h'``).
    """
    if "@" in str(name):
        from .feature_sets import resolve_feature_name

        return resolve_feature_name(name)
    return resolve_base(name)


def get_spec(name: str) -> DatasetSpec:
    """The registry entry of ``name`` (see :func:`resolve_name`); feature sets have none (see their base)."""
    key = resolve_name(name)
    if "@" in key:
        raise ValueError(f"{key!r} is a feature set, not a registered data set; its image set is "
                         f"{key.partition('@')[0]!r} (see dcrepro.data.feature_sets)")
    return REGISTRY[key]


def dataset_status(name: str, root=None, *, hashes: bool = True, embedded: bool = True) -> dict:
    """Check a data set's files without loading it.

    Returns
    -------
    dict
        ``status``: 'present' | 'missing' | 'checksum mismatch'; ``checked``: what 'present' rests on
        ('sha256', 'md5', 'no checksum' for folders / files without a published one, 'not hashed');
        ``files``: {relative path: state}; ``root`` (the package's embedded folder when ``source`` is
        'embedded copy'); ``source``: 'data root' | 'embedded copy' (``embedded=False``: the root only);
        ``bytes`` (of the files present).
    """
    if "@" in str(name):
        from .feature_sets import feature_status

        return feature_status(name, root, hashes=hashes)
    spec = get_spec(name)
    root, source = _source(spec, _root(root), embedded)
    states = {f.path: _check_file(f, root, hashes) for f in spec.files}
    values = set(states.values())
    if "missing" in values:
        status = "missing"
    elif values - {"ok", "unverified"}:
        status = "checksum mismatch"
    else:
        status = "present"
    if not hashes:
        checked = "not hashed"
    elif any(f.is_dir for f in spec.files) or "unverified" in values:
        checked = "no checksum"
    else:
        checked = "sha256" if all(f.sha256 for f in spec.files) else "md5"
    size = sum((root / f.path).stat().st_size for f in spec.files
               if not f.is_dir and (root / f.path).is_file())
    return {"name": spec.name, "status": status, "checked": checked, "files": states, "root": str(root),
            "source": source, "bytes": size}


@functools.cache
def _integrity(name: str, root: str) -> str | None:
    st = dataset_status(name, root, hashes=True)
    bad = [(p, s) for p, s in st["files"].items() if s not in ("ok", "unverified", "missing")]
    if st["status"] != "checksum mismatch" or not bad:
        return None
    spec = get_spec(name)
    files = ", ".join(f"{Path(st['root']) / p} ({s})" for p, s in bad)
    return (f"data set {spec.display_name} ({spec.name}) is corrupt or a different version: {files}; "
            f"nothing was run (`dcrepro data verify {spec.name}` shows the details)")


def integrity_error(name: str, root=None) -> str | None:
    """One-line message when a present data set's files fail their size or checksum check, else None
    (also for a missing or unregistered set). Hashes once per (data set, root) per process."""
    if "@" in str(name) or _norm(str(name)) not in _ALIASES:
        return None
    return _integrity(resolve_name(name), str(_root(root)))


def is_available(name: str, root=None) -> bool:
    """True when every file the data set needs is present (cheap: no hashing, no reading)."""
    if "@" in str(name):
        from .feature_sets import is_feature_available

        return is_feature_available(name, root)
    spec = get_spec(name)
    root, _ = _source(spec, _root(root))
    return all(_check_file(f, root, hashes=False) != "missing" for f in spec.files)


def _missing_message(spec: DatasetSpec, root: Path, states: dict) -> str:
    missing = [p for p, s in states.items() if s == "missing"]
    head = (f"data set {spec.display_name!r} ({spec.name}) is not available under the data root {root} "
            f"(set DCREPRO_DATA to use another root). Missing {len(missing)} of {len(states)} required "
            f"{'entries' if any(f.is_dir for f in spec.files) else 'files'}:\n")
    body = "\n".join(f"  {root / p}" for p in missing)
    return f"{head}{body}\nSource: {spec.source}.\n{_where_from(spec, root)}"


def _mismatch_message(spec: DatasetSpec, root: Path, states: dict) -> str:
    bad = [(p, s) for p, s in states.items() if s not in ("ok", "unverified", "missing")]
    body = "\n".join(f"  {root / p}: {s}" for p, s in bad)
    return (f"data set {spec.display_name!r} ({spec.name}): {len(bad)} file(s) differ from the registry "
            f"(corrupt, truncated or a different version):\n{body}\nReplace them. {_where_from(spec, root)}")


_RESIZABLE = {"imagenet10", "imagenet_dogs", "tiny_imagenet"}
_READ_ERRORS = (ValueError, OSError, EOFError, KeyError, IndexError, pickle.UnpicklingError, zlib.error)


def load_dataset(name: str, root=None, *, verify: bool = False, image_size: int | None = None) -> Dataset:
    """Load a registered data set from the data root.

    Parameters
    ----------
    name : str
        Canonical id or display name (see :func:`list_datasets`), or a feature set ``<image set>@<space>``
        (see :func:`list_feature_sets`; ``verify`` does not apply to it).
    root : path-like, optional
        Data root; default :func:`data_root`.
    verify : bool
        Hash every file against the registry first (sha256, or md5 where only that is published).
        Without it only presence and the known byte sizes are checked.
    image_size : int, optional
        ImageFolder sets only (ImageNet-10/Dogs, Tiny-ImageNet): resize to this side length
        instead of the registry default.

    Returns
    -------
    Dataset

    Raises
    ------
    DataNotAvailable
        Files missing or unreadable: the message lists them with full paths and their source.
    ChecksumMismatch
        A file's size (always) or hash (``verify=True``) differs from the registry.
    """
    if "@" in str(name):
        from .feature_sets import load_feature_set

        if image_size is not None:
            raise ValueError(f"image_size does not apply to feature set {name!r}")
        return load_feature_set(name, root)
    spec = get_spec(name)
    root, source = _source(spec, _root(root))
    kwargs = {}
    if image_size is not None:
        if spec.name not in _RESIZABLE:
            raise ValueError(f"image_size applies only to {sorted(_RESIZABLE)}; {spec.name} has a fixed size")
        kwargs["image_size"] = int(image_size)
    states = {f.path: _check_file(f, root, hashes=verify) for f in spec.files}
    if "missing" in states.values():
        raise DataNotAvailable(_missing_message(spec, root, states))
    if set(states.values()) - {"ok", "unverified"}:
        raise ChecksumMismatch(_mismatch_message(spec, root, states))
    try:
        data = spec.loader(spec, root, **kwargs)
    except _READ_ERRORS as e:
        raise DataNotAvailable(
            f"data set {spec.display_name!r} ({spec.name}) under {root / spec.folder} could not be read: "
            f"{type(e).__name__}: {e}\nRun `dcrepro data verify {spec.name}` to check the files "
            f"against their checksums. {_where_from(spec, root)}") from e
    data.meta = {"display_name": spec.display_name, "source": spec.source, "root": str(root),
                 "files": [f.path for f in spec.files], "sha256_verified": bool(verify),
                 "checksum_states": states if verify else None, "expected_samples": spec.n_samples,
                 "splits_protocol": spec.splits, **data.meta}
    if source == EMBEDDED_SOURCE:
        data.meta["data_source"] = (f"{EMBEDDED_SOURCE} of {spec.name} shipped in the dcrepro package (the data "
                                    "root lacks it; files byte-identical to the registry's, same data)")
    return data
