"""Figures: hyper-parameter sweeps declared under ``[figures.<id>]`` in a paper's spec.

One function per figure type. A sweep figure has one panel per metric, one line per (data set,
output), mean ± std over seeds as a band; the caption states budget, seeds and deviations. PNG and
PDF go to ``paper_tables/<paper>/<id>.{png,pdf}`` together with the numbers as CSV.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from .spec import load_spec
from .store import Store
from .sweeps import sweep_frame

__all__ = ["sweep_frame", "write_figure"]


def write_figure(paper: str, fid: str, store: Store, budget: str = "reduced", out_dir: Path | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .data.registry import display_name as ds_name
    from .paths import output_dir

    spec = load_spec(paper)
    fig_spec = spec.figure(fid)
    from .aggregate import index_records

    index = index_records(store, paper)
    df = sweep_frame(paper, fid, index, budget)
    out_dir = Path(out_dir or output_dir(paper, budget))
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = list(fig_spec.metrics)
    n_seeds = int(df.groupby(["dataset", "value"])["seed"].nunique().min()) if len(df) else 0
    budgets = ", ".join(sorted(set(df["budget"]))) or "no runs"
    devs = sorted({d for s in df["deviations"] for d in s.split("; ") if d})
    note = "" if budgets == "full" and not devs else " (NOT the paper's schedule: not comparable)"
    runs = df.drop_duplicates(["dataset", "value", "seed", "device"])["device"].value_counts()
    made_on = ", ".join(f"{dev or 'unknown'} ({n} runs)" for dev, n in runs.items())
    caption = (f"{spec.meta.get('short', paper)} {fid}: {fig_spec.caption}\n"
               f"budget: {budgets}{note}; mean ± std over {n_seeds} seeds\nmade on: {made_on or 'no runs'}")
    param = list(fig_spec.param) if isinstance(fig_spec.param, tuple) else fig_spec.param
    sets = [f"varies {param}"] if fig_spec.param else []
    sets += [f"{k} = {v}" for k, v in fig_spec.params.items()]
    if sets:  # the sweep's own settings, which hold over the budget's deviations on the same parameters
        caption += "\nthis sweep: " + ", ".join(sets) + (" (these hold over the budget's deviations below)" if devs else "")
    if devs:
        caption += "\nbudget's deviations: " + "; ".join(devs)
    width = 4.2 * len(metrics)
    title = "\n".join(textwrap.fill(line, width=int(width * 16)) for line in caption.splitlines())
    fig, axes = plt.subplots(1, len(metrics), figsize=(width, 3.6 + 0.13 * (title.count("\n") + 1)), squeeze=False)
    fig.suptitle(title, fontsize=7)
    for ax, m in zip(axes[0], metrics):
        sub = df[df["metric"] == m]
        for (ds, out), g in sub.groupby(["dataset", "output"], sort=False):
            agg = g.groupby("value")["y"].agg(["mean", "std", "count"]).sort_index()
            x = np.array(agg.index, dtype=float)
            ax.plot(x, agg["mean"], marker="o", label=f"{ds_name(ds)} · {out}")
            ax.fill_between(x, agg["mean"] - agg["std"].fillna(0), agg["mean"] + agg["std"].fillna(0), alpha=0.2)
        ax.set_xlabel(fig_spec.xlabel or str(param))
        ax.set_ylabel(f"{m.upper()} (%)")
        if fig_spec.xscale:
            ax.set_xscale(fig_spec.xscale)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()  # makes room for the suptitle (matplotlib >= 3.3)
    paths = []
    for ext in ("png", "pdf"):
        p = out_dir / f"{fid}.{ext}"
        fig.savefig(p, dpi=150)
        paths.append(p)
    plt.close(fig)
    csv = out_dir / f"{fid}.csv"
    df.to_csv(csv, index=False)
    md = out_dir / f"{fid}.md"
    md.write_text(_figure_card(paper, fid, fig_spec, df, caption, index, budget))
    return paths + [csv, md]


def _figure_card(paper: str, fid: str, fig_spec, df: pd.DataFrame, caption: str, store, budget: str) -> str:
    """The figure's numbers (mean ± std per grid value) and its claims, as Markdown beside the PNG."""
    from tabulate import tabulate

    from .claims import check_claims
    from .tables import _claims_block, ds_name

    lines = [f"# {caption.splitlines()[0]}", "", *[f"- {c}" for c in caption.splitlines()[1:]], "",
             f"![{fid}]({fid}.png)", ""]
    if len(df):
        agg = df.groupby(["dataset", "output", "metric", "value"])["y"].agg(["mean", "std", "count"]).reset_index()
        lines.append(tabulate([[ds_name(r.dataset), r.output, r.metric, r.value, f"{r.mean:.2f}",
                                f"{r.std:.2f}", r.count] for r in agg.itertuples()],
                              ["data set", "output", "metric", str(list(fig_spec.param) if isinstance(fig_spec.param, tuple)
                                                                    else fig_spec.param), "mean", "std", "n"],
                              tablefmt="github"))
    lines += _claims_block(check_claims(paper, budget, store, figure=fid))
    return "\n".join(lines) + "\n"
