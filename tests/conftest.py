"""Shared test setup: the data root, and a throw-away project (spec + reference files) for engine tests."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
if "DCREPRO_DATA" not in os.environ and SHARED_DATA.is_dir():
    os.environ["DCREPRO_DATA"] = str(SHARED_DATA)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TOY_SPEC = """
[paper]
id = "toy"
short = "TOY"
title = "A toy paper for engine tests"
nmi = "arithmetic"
seeds = 3

[jobs.toy]
method = "toy"
datasets = ["blobs", "absent"]
outputs = ["good", "bad"]
assumptions = ["toy unstated detail"]
[jobs.toy.params]
noise = 0.05
sleep = 0.0
fail = false
[jobs.toy.budget.quick]
params = { noise = 0.1 }
deviations = ["toy quick schedule"]

[tables.table1]
caption = "toy table"
datasets = ["blobs", "absent"]
metrics = ["acc", "nmi"]
[tables.table1.rows]
"Good" = "toy:good"
"Bad" = "toy:bad"

[[claims]]
id = "Good > Bad"
table = "table1"
better = "Good"
worse = "Bad"
metrics = ["acc", "nmi"]

[figures.fig1]
caption = "noise sweep"
job = "toy"
param = "noise"
values = [0.0, 0.2, 0.4]
datasets = ["blobs"]
outputs = ["good"]
metrics = ["acc"]
seeds = 3

[[claims]]
id = "best at zero noise"
kind = "sweep_argmax"
figure = "fig1"
expected = 0.0
[[claims]]
id = "0.0 beats 0.4"
kind = "sweep_pair"
figure = "fig1"
better = 0.0
worse = 0.4
[[claims]]
id = "flat from 0.2"
kind = "sweep_flat"
figure = "fig1"
from = 0.2
tolerance = 1.0
"""

TOY_REF = """row,dataset,metric,value,std,n_runs,status,cited,source,scale,nmi_variant,tolerance,note
Cited,blobs,acc,50.0,,,ok,true,Table 1,percent,,,
Cited,blobs,nmi,40.0,,,ok,true,Table 1,percent,arithmetic,,
Cited,absent,acc,,,,na,true,Table 1,percent,,,
Cited,absent,nmi,,,,missing_in_source,true,Table 1,percent,arithmetic,,
Good,blobs,acc,95.0,0.5,10,ok,false,Table 1,percent,,,
Good,blobs,nmi,90.0,,10,ok,false,Table 1,percent,arithmetic,,
Good,absent,acc,80.0,,,ok,false,Table 1,percent,,,
Good,absent,nmi,70.0,,,ok,false,Table 1,percent,arithmetic,,
Bad,blobs,acc,60.0,,,ok,false,Table 1,percent,,,
Bad,blobs,nmi,50.0,,,ok,false,Table 1,percent,arithmetic,,
Bad,absent,acc,55.0,,,ok,false,Table 1,percent,,,
Bad,absent,nmi,45.0,,,ok,false,Table 1,percent,arithmetic,,
"""


class ToyData:
    """Just enough of dcrepro.data.Dataset for engine tests: 3 classes, 300 points."""

    def __init__(self, n: int = 300):
        self.name, self.modality, self.n_classes = "blobs", "features", 3
        self.y = np.repeat(np.arange(3), n // 3)
        self.X = np.random.default_rng(0).normal(size=(n, 2)).astype(np.float32) + self.y[:, None] * 5
        self.splits = {"all": np.arange(n)}
        self.meta = {}

    def __len__(self) -> int:
        return len(self.y)


def _register_toy() -> None:
    import time

    from dcrepro.methods import _REGISTRY, RowOutput, register_method

    if "toy" in _REGISTRY:
        return

    @register_method("toy")
    def toy(data, params, ctx):
        if params.get("fail"):
            raise RuntimeError("toy failure requested")
        time.sleep(float(params.get("sleep", 0)))
        rng = np.random.default_rng(ctx.seed)
        y = np.rint(data.X[:, 0] / 5).astype(int).clip(0, 2)

        def noisy(p):
            flip = rng.random(len(y)) < p
            return np.where(flip, rng.integers(0, 3, len(y)), y)

        return {"good": RowOutput(labels=noisy(params["noise"]), metrics={"time_s": 0.01}),
                "bad": RowOutput(labels=noisy(0.5))}


@pytest.fixture
def toy_project(tmp_path, monkeypatch):
    """A project root with benchmarks/toy.toml and reference_results/toy/table1.csv; data set 'blobs'
    is available, 'absent' is not; the store lives in tmp_path."""
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "toy.toml").write_text(TOY_SPEC)
    ref = tmp_path / "reference_results"
    (ref / "toy").mkdir(parents=True)
    (ref / "toy" / "table1.csv").write_text(TOY_REF)
    shutil.copy(REPO / "reference_results" / "bands.toml", ref / "bands.toml")
    monkeypatch.setenv("DCREPRO_HOME", str(tmp_path))
    monkeypatch.setenv("DCREPRO_STORE", str(tmp_path / "store.sqlite"))
    install_toy(monkeypatch)
    yield tmp_path
    _clear_caches()


def install_toy(monkeypatch) -> None:
    import dcrepro.data as data
    import dcrepro.runner as runner

    _clear_caches()
    _register_toy()
    monkeypatch.setattr(runner, "_dataset", lambda name, subset, seed: ToyData())
    monkeypatch.setattr(data, "is_available", lambda name, root=None: name == "blobs", raising=False)


def _clear_caches() -> None:
    from dcrepro import reference, spec

    spec._load.cache_clear()
    reference._read.cache_clear()
    reference.bands_config.cache_clear()
