"""Sweeps: a figure's parameter grid as runs, and its stored runs read back as a frame.

A ``[figures.<id>]`` block (:class:`dcrepro.spec.Figure`) names a job, a parameter (or a list of
parameters swept together, e.g. ζ and γ), its grid values, data sets and seeds. :func:`sweep_configs`
resolves one :class:`~dcrepro.spec.RunConfig` per (data set, grid value); the runner turns them into runs,
:func:`sweep_frame` reads their per-seed values back for the plots and the sweep claims. Used by
:mod:`dcrepro.runner`, :mod:`dcrepro.plots` and :mod:`dcrepro.claims`: the one place a sweep is resolved.
"""
from __future__ import annotations

import pandas as pd

from .metrics import METRICS
from .spec import Figure, RunConfig, load_spec, resolve

__all__ = ["sweep_overrides", "sweep_configs", "sweep_frame", "FRAME_COLUMNS"]

FRAME_COLUMNS = ["dataset", "output", "value", "seed", "metric", "y", "budget", "device", "deviations", "reading",
                 "config_hash", "degenerate", "rules"]


def sweep_overrides(fig: Figure, value) -> dict:
    """Parameter overrides of one grid point: the figure's fixed ``params`` plus ``param = value``; a list
    ``param = ["zeta", "gamma"]`` takes list values (one per name)."""
    names = list(fig.param) if isinstance(fig.param, (list, tuple)) else [fig.param]
    values = list(value) if isinstance(fig.param, (list, tuple)) else [value]
    return dict(fig.params) | dict(zip(names, values))


def sweep_configs(paper: str, fid: str, budget: str = "reduced", variant=None) -> list[tuple[str, object, RunConfig]]:
    """(data set, grid value, config) of every point of figure ``fid`` under reading ``variant``."""
    spec = load_spec(paper)
    fig = spec.figure(fid)
    return [(ds, v, resolve(spec, fig.job, ds, fig.budget or budget, sweep_overrides(fig, v), variant))
            for ds in fig.datasets for v in fig.values]


def figure_outputs(paper: str, fig: Figure) -> tuple[str, ...]:
    return fig.outputs or load_spec(paper).job_outputs(fig.job)


def sweep_frame(paper: str, fid: str, records, budget: str = "reduced", variant=None) -> pd.DataFrame:
    """Per-seed values of a sweep (columns :data:`FRAME_COLUMNS`; y in points for fraction metrics).

    ``records`` is a :class:`dcrepro.store.Store` or a record index with the same ``records(paper, job,
    dataset, config_hash, status)`` method. Only the figure's own seeds count at every grid value, even where
    a table ran more seeds of the same config."""
    from .health import check_health, n_clusters_of, params_of

    spec = load_spec(paper)
    fig = spec.figure(fid)
    rules = spec.health.get(fig.job, ())
    rows = []
    for ds, v, cfg in sweep_configs(paper, fid, budget, variant):
        k, params = n_clusters_of(cfg), params_of(cfg)
        for rec in records.records(paper, fig.job, ds, cfg.config_hash, status="ok"):
            if rec.seed >= fig.seeds:
                continue
            for out in figure_outputs(paper, fig):
                state, held = check_health(rules, rec.outputs.get(out, {}), k, params)
                degenerate = {"degenerate": True, "ok": False}.get(state)  # None: a signal is missing
                for m in fig.metrics:
                    val = rec.outputs.get(out, {}).get(m)
                    if val is None:
                        continue
                    scale = 100.0 if m in METRICS and METRICS[m].scale == "fraction" else 1.0
                    x = v[0] if isinstance(v, (list, tuple)) else v
                    rows.append(dict(dataset=ds, output=out, value=x, seed=rec.seed, metric=m, y=val * scale,
                                     budget=cfg.effective_budget, device=rec.device,
                                     deviations="; ".join(cfg.deviations), reading=cfg.reading,
                                     config_hash=cfg.config_hash, degenerate=degenerate, rules="; ".join(held)))
    return pd.DataFrame(rows, columns=FRAME_COLUMNS)
