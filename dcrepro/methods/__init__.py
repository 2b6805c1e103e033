"""Clustering methods, one module each, behind one registry.

A method is registered with :func:`register_method` and called by the runner as::

    outputs = fn(data, params, ctx)     # -> {output_name: RowOutput}

* ``data``   -- a :class:`dcrepro.data.Dataset` (already subset by the runner when the spec asks);
  methods must not read ``data.y`` except through ``ctx.labels_for_selection``.
* ``params`` -- a plain dict of hyper-parameters resolved from ``benchmarks/<paper>.toml`` for the
  requested budget; each method turns it into its own dataclass with :func:`params_from_dict`, which
  rejects unknown keys and names the valid ones.
* ``ctx``    -- a :class:`RunContext` (seed, device, number of clusters, cache dir, logger).

Seeding: the runner calls :func:`dcrepro.seeding.seed_everything` with the run's seed before the method;
a method draws every further stream it needs (batch order, initialisation, noise) from
``derive_seed(ctx.seed, "<stream name>")`` (a numpy Generator or a torch.Generator), so that adding a module to
one arm of a comparison does not shift the others' random numbers. Older modules that draw from the global
torch RNG keep doing so (their stored numbers depend on it); DEC-CRL's ``rng_streams`` reading runs them
with per-module streams.

One run may yield several table rows (a DCSS run gives AE + k-means, DCSSu and DCSS): return one
:class:`RowOutput` per output; the spec maps table rows to ``job:output`` pairs, so nothing is
trained twice. The runner computes ACC/NMI/ARI from ``RowOutput.labels``; extra measured numbers
(timings, the number of clusters found) go in ``RowOutput.metrics``.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import UnknownNameError, choice_error
from ..paths import cache_root

__all__ = ["RunContext", "RowOutput", "register_method", "register_batched", "get_method", "get_batched", "list_methods",
           "method_params", "params_from_dict"]


@dataclass
class RunContext:
    """What a method may know about the run besides its data and hyper-parameters."""

    seed: int
    """Seed of this run; :func:`dcrepro.seeding.seed_everything` has already been called with it."""
    n_clusters: int
    """K given to the method (the data set's number of classes unless the spec overrides it)."""
    device: str = "cpu"
    """torch device string, 'cpu' or 'cuda'."""
    budget: str = "quick"
    """'quick', 'reduced' or 'full' (informational: the params already hold the budget's values)."""
    cache_dir: Path = field(default_factory=cache_root)
    """Where a method may cache expensive, seed-independent artefacts (embeddings, features)."""
    labels_for_selection: np.ndarray | None = None
    """Ground-truth labels, given ONLY when the spec sets ``select_by_labels = true`` (the official
    DCSS code's best-ACC checkpointing). Label-free model selection (last epoch) when None."""
    log: Callable[[str], None] = print


@dataclass
class RowOutput:
    """One table row's result from a run."""

    labels: np.ndarray | None = None
    """Predicted cluster index per sample (any integers; may have != K distinct values)."""
    eval_index: np.ndarray | None = None
    """Indices into ``data`` that ``labels`` refer to (e.g. the 700-text test split of CDAC+);
    None means ``labels`` covers every sample of ``data`` in order."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Extra measured numbers, e.g. {'time_s': 12.3, 'k_found': 9}."""
    info: dict[str, Any] = field(default_factory=dict)
    """JSON-serialisable extra facts worth keeping with the record (per-epoch losses, K per seed)."""


MethodFn = Callable[[Any, dict, RunContext], "dict[str, RowOutput]"]
BatchedFn = Callable[[Any, dict, "list[RunContext]"], "list[dict[str, RowOutput]]"]
_REGISTRY: dict[str, MethodFn] = {}
_BATCHED: dict[str, BatchedFn] = {}
_PARAMS: dict[str, type] = {}
_BROKEN: dict[str, str] = {}  # module -> why it could not be imported (an optional dependency missing)


def register_method(name: str, params: type | None = None) -> Callable[[MethodFn], MethodFn]:
    """Decorator: register ``fn(data, params, ctx) -> {output: RowOutput}`` under ``name``.

    ``params`` is the method's hyper-parameter dataclass: specs are checked against its fields when they load
    (an unknown parameter is a load error naming the valid ones), and :func:`params_from_dict` builds it.
    Modules of this package are found without a list: every public module is imported on first lookup."""

    def deco(fn: MethodFn) -> MethodFn:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"method {name!r} registered twice")
        _REGISTRY[name] = fn
        if params is not None:
            _PARAMS[name] = params
        return fn

    return deco


@functools.lru_cache(maxsize=1)
def _import_all() -> None:
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mod = f"{__name__}.{info.name}"
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:  # an optional dependency: the method fails only when it is used
            if e.name and e.name.startswith("dcrepro"):
                raise
            _BROKEN[mod] = f"{mod} needs {e.name!r} ({e})"


def list_methods() -> list[str]:
    _import_all()
    return sorted(_REGISTRY)


def get_method(name: str) -> MethodFn:
    if name not in _REGISTRY:
        _import_all()
    if name not in _REGISTRY:
        broken = f" (not importable here: {'; '.join(_BROKEN.values())})" if _BROKEN else ""
        raise choice_error("method", name, sorted(_REGISTRY)) if not broken else \
            UnknownNameError(f"unknown method {name!r}; valid methods: {', '.join(sorted(_REGISTRY))}{broken}")
    return _REGISTRY[name]


def register_batched(name: str) -> Callable[[BatchedFn], BatchedFn]:
    """Decorator: a seeds-batched implementation of the registered method ``name``.

    ``fn(data, params, ctxs) -> [outputs of ctxs[0], outputs of ctxs[1], ...]`` trains one model per context
    (same data and params, one seed each) in one process, e.g. with stacked parameters, and must give each seed
    the outputs the one-seed method gives it (labels equal up to float reassociation; ``tests/test_batched.py``).
    The runner uses it for ``dcrepro run --seeds-per-process S``; the store still gets one record per seed."""

    def deco(fn: BatchedFn) -> BatchedFn:
        if name in _BATCHED and _BATCHED[name] is not fn:
            raise ValueError(f"batched method {name!r} registered twice")
        _BATCHED[name] = fn
        return fn

    return deco


def get_batched(name: str) -> BatchedFn | None:
    """The seeds-batched implementation of method ``name``, or None when it has only the one-seed path."""
    get_method(name)
    return _BATCHED.get(name)


def method_params(name: str) -> type | None:
    """The hyper-parameter dataclass ``name`` registered (None if it registered none)."""
    get_method(name)
    return _PARAMS.get(name)


def params_from_dict(cls: type, params: dict, where: str = "") -> Any:
    """Build the dataclass ``cls`` from ``params``; unknown keys raise an error naming the valid ones."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - names)
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} for {cls.__name__}{' in ' + where if where else ''}; "
            f"valid parameters: {sorted(names)}"
        )
    return cls(**params)
