"""Where things live: the one home of every location dcrepro reads or writes.

* project root: ``$DCREPRO_HOME``, else the current directory if it has ``benchmarks/``, else the checkout
  this package lives in (specs, reference numbers, generated tables);
* data root: ``$DCREPRO_DATA``, else ``~/.cache/dcrepro`` (the data sets, laid out like ``shared/data``);
* backbone feature sets (what ``dcrepro backbone`` writes): ``$DCREPRO_FEATURES``, else ``<data root>/features``
  (set it where the data root is read-only or shared);
* result store: ``$DCREPRO_STORE``, else ``results/store.sqlite`` under the project root (quick-budget runs:
  ``results/quick.sqlite``, git-ignored);
* caches (embeddings, word2vec, decoded images, backbone features of a run): ``$DCREPRO_CACHE``, else the
  ``cache/`` folder beside the store a run writes to, so a store and its caches travel together.

Imports nothing from dcrepro: every module may use it.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["project_root", "data_root", "features_root", "default_store_path", "cache_root", "output_dir"]


def project_root() -> Path:
    """Folder holding ``benchmarks/`` and ``reference_results/``."""
    if os.environ.get("DCREPRO_HOME"):
        return Path(os.environ["DCREPRO_HOME"])
    if (Path.cwd() / "benchmarks").is_dir():
        return Path.cwd()
    return Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """The data root: ``$DCREPRO_DATA`` if set, else ``~/.cache/dcrepro`` (absolute path)."""
    return Path(os.environ.get("DCREPRO_DATA") or "~/.cache/dcrepro").expanduser().resolve()


def features_root(data_root_: str | Path | None = None) -> Path:
    """Where backbone feature sets live: ``<data_root_>/features`` when a data root is given explicitly, else
    ``$DCREPRO_FEATURES`` if set, else ``<data root>/features``."""
    if data_root_ is None and os.environ.get("DCREPRO_FEATURES"):
        return Path(os.environ["DCREPRO_FEATURES"]).expanduser().resolve()
    return (Path(data_root_).expanduser().resolve() if data_root_ is not None else data_root()) / "features"


def default_store_path(budget: str | None = None) -> Path:
    """$DCREPRO_STORE, else ``results/store.sqlite`` under the project root (committed with the tables it
    made); quick-budget runs (smoke tests) go to ``results/quick.sqlite`` (git-ignored) instead."""
    if os.environ.get("DCREPRO_STORE"):
        return Path(os.environ["DCREPRO_STORE"])
    return project_root() / "results" / ("quick.sqlite" if budget == "quick" else "store.sqlite")


def cache_root(store_path: str | Path | None = None) -> Path:
    """``$DCREPRO_CACHE``, else ``cache/`` beside ``store_path`` (default: the default store)."""
    if os.environ.get("DCREPRO_CACHE"):
        return Path(os.environ["DCREPRO_CACHE"]).expanduser()
    return Path(store_path or default_store_path()).parent / "cache"


def output_dir(paper: str, budget: str) -> Path:
    """Generated tables and figures: ``paper_tables/<paper>/`` for the reduced budget (the one these machines
    run), ``paper_tables/<paper>/full/`` for the full budget, so neither overwrites the other; quick-budget output
    (tests, smoke runs) goes to ``paper_tables/_quick/<paper>/`` (git-ignored) so it never overwrites a committed
    table."""
    base = project_root() / "paper_tables"
    return {"quick": base / "_quick" / paper, "full": base / paper / "full"}.get(budget, base / paper)
