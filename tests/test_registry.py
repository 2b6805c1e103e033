"""Generic tests over the method registry (benchopt's habit: a new method gets its tests for free).

Every registered method runs at the quick budget of a spec job that uses it, on a small stratified subset of
a data set that job declares: twice with one seed gives identical labels, and an unknown parameter is
rejected with an error naming the valid ones."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dcrepro.methods import RunContext, get_method, list_methods, method_params, params_from_dict
from dcrepro.spec import list_papers, load_spec, resolve

N = 200  # samples per run: enough for every method's quick schedule, small enough for seconds


def _ours() -> list[str]:
    """The methods dcrepro registers (tests register toys of their own)."""
    return [m for m in list_methods() if get_method(m).__module__.startswith("dcrepro.")]


def _quick_job(method: str):
    """(paper, job, data set, quick config) of the first spec job running ``method`` on data present here."""
    from dcrepro.data import is_available

    for paper in list_papers():
        spec = load_spec(paper)
        for name, job in spec.jobs.items():
            if job["method"] != method:
                continue
            for ds in spec.job_datasets(name):
                if is_available(ds):
                    return paper, name, ds, resolve(spec, name, ds, "quick")
    return None


def test_every_method_registers_its_params_class():
    missing = [m for m in _ours() if method_params(m) is None]
    assert not missing, f"register_method(name, params=...) missing for {missing}"


@pytest.mark.parametrize("method", _ours())
def test_unknown_parameter_is_rejected_naming_the_valid_ones(method):
    cls = method_params(method)
    with pytest.raises(ValueError, match="unknown parameter.*valid parameters"):
        params_from_dict(cls, {"no_such_parameter": 1})


@pytest.mark.parametrize("method", _ours())
def test_same_seed_twice_gives_identical_labels(method, tmp_path):
    import torch

    from dcrepro.data import load_dataset, stratified_subset
    from dcrepro.seeding import seed_everything

    found = _quick_job(method)
    if found is None:
        pytest.skip(f"no spec job runs {method!r} on a data set present under DCREPRO_DATA")
    paper, job, ds, cfg = found
    data = load_dataset(ds)
    data = data.subset(stratified_subset(data.y, min(N, len(data)), seed=0))
    params = {k: v for k, v in cfg.params.items()}
    fields = {f.name for f in dataclasses.fields(method_params(method))}
    for k, v in (("max_epochs", 2), ("epochs", 2), ("n_init", 1), ("km_n_init", 1)):
        if k in fields and isinstance(params.get(k), int) and params[k] > v:
            params[k] = v
    labels = []
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        for _ in range(2):
            seed_everything(3)
            ctx = RunContext(seed=3, n_clusters=cfg.n_clusters or data.n_classes, device="cpu", budget="quick",
                             cache_dir=tmp_path, log=lambda m: None)
            outs = get_method(method)(data, dict(params), ctx)
            labels.append({k: o.labels for k, o in outs.items() if o.labels is not None})
    finally:
        torch.use_deterministic_algorithms(False)
    assert labels[0], f"{method} ({paper}/{job}) returned no labelled output"
    for out, lab in labels[0].items():
        np.testing.assert_array_equal(lab, labels[1][out], err_msg=f"{method} output {out!r} differs run to run")
