"""Benchmark data sets and text embeddings.

Every data set a target table uses is named by a canonical id (:func:`list_datasets`) and loaded
the same way, from the data root ``$DCREPRO_DATA`` (default ``~/.cache/dcrepro``; laid out like
``shared/data``), with its files checked against the registry. USPS, SNIPS and AgNews are also shipped
inside the package (``dcrepro/data/embedded/``, byte-identical files): a root that lacks one of them
reads the embedded copy, and says so (``source`` 'embedded copy', ``Dataset.meta['data_source']``)::

    from dcrepro.data import load_dataset, stratified_subset
    ds = load_dataset("snips")                 # Dataset(X=texts, y=0..6, splits train/dev/test/all)
    small = ds.subset(stratified_subset(ds.y, 1000, seed=0))

Backbone features of an image set are data sets too, named ``<image set>@<space>``
(``load_dataset("cifar10@simclr_h")``, :func:`list_feature_sets`; see :mod:`dcrepro.data.feature_sets`).

A missing or corrupt data set raises :class:`DataNotAvailable` (or :class:`ChecksumMismatch`) with
one message: which files, where they go, where they come from. Sentence embeddings of the text sets
live in :mod:`dcrepro.data.embed` (imported lazily: it pulls in torch and sentence-transformers).

Modules: ``dataset`` (the Dataset class and errors), ``registry`` (entries, checksums, loading),
``readers`` (file formats), ``loaders`` (one per data set), ``classes`` (class lists, CIFAR-100→20),
``transforms`` (whitening, subsets, image → float), ``fetch`` (downloads), ``cli`` (``dcrepro data``),
``feature_sets`` (backbone feature files ``<root>/features/<image set>/<space>.npz``),
``embed`` (sentence embeddings with an on-disk cache).
"""
from __future__ import annotations

from .dataset import ChecksumMismatch, DataNotAvailable, Dataset
from .registry import (EMBEDDED, REGISTRY, data_root, dataset_status, get_spec, integrity_error, is_available,
                       list_datasets, list_feature_sets, load_dataset, resolve_name)
from .transforms import Whitening, images_to_float, stratified_subset, whiten

__all__ = [
    "Dataset", "DataNotAvailable", "ChecksumMismatch", "data_root", "load_dataset", "is_available",
    "list_datasets", "list_feature_sets", "dataset_status", "get_spec", "resolve_name", "REGISTRY",
    "stratified_subset", "whiten", "Whitening", "images_to_float", "integrity_error", "EMBEDDED",
]
