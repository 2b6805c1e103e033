"""Reference numbers (``reference_results/<paper>/<table>.csv``) and tolerance bands.

One CSV per paper table, one line per printed cell (see ``reference_results/README.md``). This module
loads them, converts our fractions to the paper's scale, computes each cell's band (``bands.toml``) and
turns (ours, paper) into a :data:`Verdict`.
"""
from __future__ import annotations

import functools
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .errors import choice_error
from .paths import project_root

__all__ = ["VERDICTS", "load_reference", "list_reference_tables", "bands_config", "Band", "band_for", "verdict",
           "to_reference_scale", "our_metric_name"]

VERDICTS = {
    "within": "within band",
    "below": "below band",
    "above": "above band",
    "missing": "missing (not run)",
    "failed": "failed",
    "not_comparable": "not comparable",
    "data_unavailable": "data not available",
    "na_in_paper": "n/a in paper",
    "missing_in_source": "missing in source",
    "not_in_suite": "not re-run",
    "no_reference": "no paper value",
    "seconds_not_compared": "seconds: hardware-dependent, not compared",
}
COLUMNS = ["row", "dataset", "metric", "value", "std", "n_runs", "status", "cited", "source", "scale",
           "nmi_variant", "tolerance", "note"]


def _ref_dir() -> Path:
    return project_root() / "reference_results"


def list_reference_tables(paper: str | None = None) -> list[str]:
    """'paper/table' ids of every reference file (of one paper when given)."""
    base = _ref_dir()
    pat = f"{paper}/*.csv" if paper else "*/*.csv"
    return sorted(f"{p.parent.name}/{p.stem}" for p in base.glob(pat))


@functools.lru_cache(maxsize=None)
def _read(path: str) -> pd.DataFrame:
    df = pd.read_csv(path, dtype={"row": str, "dataset": str, "metric": str, "status": str, "note": str,
                                  "source": str, "scale": str, "nmi_variant": str}, keep_default_na=False,
                     na_values={"value": [""], "std": [""], "n_runs": [""], "tolerance": [""]})
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected {COLUMNS}")
    df["cited"] = df["cited"].astype(str).str.lower().isin(["true", "1", "yes"])
    return df


def load_reference(paper: str, table: str) -> pd.DataFrame:
    path = _ref_dir() / paper / f"{table}.csv"
    if not path.exists():
        raise choice_error("reference table", f"{paper}/{table}", list_reference_tables())
    return _read(str(path)).copy()


def reference_layout(paper: str, table: str) -> dict:
    """Caption, column and row order of a table from ``reference_results/<paper>/tables.toml``."""
    path = _ref_dir() / paper / "tables.toml"
    if not path.exists():
        return {}
    with open(path, "rb") as f:
        return tomllib.load(f).get(table, {})


@functools.lru_cache(maxsize=1)
def bands_config() -> dict:
    with open(_ref_dir() / "bands.toml", "rb") as f:
        return tomllib.load(f)


def our_metric_name(metric: str, nmi_variant: str | None) -> str:
    """The stored metric that a reference cell compares with (NMI in the paper's normalisation)."""
    if metric == "nmi" and (nmi_variant or "arithmetic") == "geometric":
        return "nmi_geo"
    return metric


def to_reference_scale(x: float, scale: str) -> float:
    """Our metrics are fractions; the paper prints percent or fraction."""
    return x * 100.0 if scale == "percent" else x


@dataclass
class Band:
    center: float
    half_width: float

    @property
    def lo(self) -> float:
        return self.center - self.half_width

    @property
    def hi(self) -> float:
        return self.center + self.half_width


def band_for(paper: str, table: str, metric: str, scale: str, ref_value: float, ref_std: float | None,
             ref_n: float | None, our_std: float, our_n: int, tolerance: float | None = None,
             mode: str = "paper") -> Band:
    """The band around ``ref_value`` (all numbers in the reference's scale); see ``bands.toml``."""
    cfg = bands_config()
    if tolerance is not None and not math.isnan(tolerance):
        return Band(ref_value, float(tolerance))
    pct = 100.0 if scale == "percent" else 1.0
    if mode == "regression":
        z, floor = cfg["regression"]["z"], cfg["regression"]["floor"] * pct / 100.0
    else:
        over = cfg.get("table", {}).get(f"{paper}/{table}", {})
        z = over.get("z", cfg["z"])
        floors = cfg["floor"] | over.get("floor", {})
        floor = floors.get(metric, 1.5) * pct / 100.0
    var = (our_std ** 2) / max(our_n, 1) if our_n > 1 else 0.0
    if ref_std is not None and not math.isnan(ref_std):
        var += ref_std ** 2 / (ref_n if ref_n and not math.isnan(ref_n) else 1.0)
    return Band(ref_value, max(floor, z * math.sqrt(var)))


def verdict(ours: float, band: Band) -> str:
    if ours < band.lo:
        return "below"
    if ours > band.hi:
        return "above"
    return "within"
