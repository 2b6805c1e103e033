"""The seeds-batched DEC family (``register_batched``: DEC, IDEC, DCN, DKM and their "+ MNet" rows) gives each
seed the outputs of the one-seed method.

Both paths run in float64 (the stacked kernels reassociate sums; in float32 Adam/SGD training amplifies that, so
equality per sample is a float64 property, see ``dcrepro/methods/stacked.py``), on overlapping blobs so that the
labels are not a trivially perfect partition, from separate AE caches (pre-training is compared too), with the
MLP AE narrowed to d-32-32-64-10 (the property does not depend on the width; the published 500-500-2000 costs
~100x more CPU time in float64).
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from dcrepro.data.dataset import Dataset
from dcrepro.methods import autoencoders, get_batched

from test_methods_dcss import ctx_for, run

torch.set_num_threads(1)

SEEDS = [0, 1, 2]
AE = dict(pretrain_epochs=3, pretrain_batch_size=50, batch_size=50, mnet_epochs=3, t2=1, mnet_batch_size=100)
CASES = {
    "dec": dict(maxiter=40, update_interval=8),
    "idec": dict(maxiter=40, update_interval=8),
    "idec_sgd": dict(maxiter=40, update_interval=8, optimizer="sgd", lr=0.1, momentum=0.99),
    "dcn": dict(epochs=3),
    "dkm": dict(n_alphas=2, epochs_per_alpha=2),
    "dkm_annealing": dict(n_alphas=2, epochs_per_alpha=1, alpha_schedule="annealing", with_mnet=False),
}


@pytest.fixture
def float64(monkeypatch):
    """float64 default dtype and a narrow MLP AE, both restored afterwards."""
    monkeypatch.setattr(autoencoders, "MLPAE", functools.partial(autoencoders.MLPAE, hidden=(32, 32, 64)))
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def overlapping_blobs(n: int = 300, k: int = 3, d: int = 12, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n // k)
    X = (rng.normal(0, 1.2, (k, d))[y] + rng.normal(0, 1, (n, d))).astype(np.float32)
    return Dataset("test_overlapping_blobs", "features", X, y, k)


def one_seed_and_batched(method: str, params: dict, tmp_path):
    data = overlapping_blobs()
    single = [run(method, data, params, ctx_for(tmp_path / "single", seed=s)) for s in SEEDS]
    batched = get_batched(method)(data, params, [ctx_for(tmp_path / "batched", seed=s) for s in SEEDS])
    return single, batched


def assert_same_outputs(single: list[dict], batched: list[dict]) -> None:
    assert len(batched) == len(single)
    for one, many in zip(single, batched):
        assert set(one) == set(many)
        for name in one:
            np.testing.assert_array_equal(many[name].labels, one[name].labels, err_msg=name)
            assert set(many[name].metrics) == set(one[name].metrics)
            assert set(many[name].info) == set(one[name].info) | {"seeds_per_process"}
            assert many[name].info["seeds_per_process"] == len(SEEDS)
            for key in ("loss", "delta_label", "rec", "kmeans", "mnet_loss", "pretrain_loss"):
                if key in one[name].info:
                    np.testing.assert_allclose(many[name].info[key], one[name].info[key], rtol=1e-7, atol=1e-12,
                                               err_msg=f"{name}: {key}")


@pytest.mark.parametrize("case", list(CASES))
def test_batched_labels_equal_one_seed_labels(case, tmp_path, float64):
    method = case.split("_")[0]
    single, batched = one_seed_and_batched(method, {**AE, **CASES[case]}, tmp_path)
    assert set(single[0]) == ({method} if case == "dkm_annealing" else {method, f"{method}_mnet"})
    assert_same_outputs(single, batched)
    assert len({tuple(out[method].labels) for out in single}) > 1  # the seeds differ


def test_batched_dec_seeds_stop_by_tol_on_their_own(tmp_path, float64):
    """Seeds that meet tol at different target updates (one not at all): each keeps its state at its own stop,
    and its MNet row starts from that state."""
    single, batched = one_seed_and_batched("dec", {**AE, "maxiter": 120, "update_interval": 8, "tol": 0.003},
                                           tmp_path)
    assert_same_outputs(single, batched)
    stopped = [out["dec"].info["stopped_by_tol"] for out in single]
    stops = [out["dec"].info["iterations"] for out in single]
    assert any(stopped) and not all(stopped) and len(set(stops)) == 3, stops


def test_every_dec_family_method_has_a_batched_path():
    assert all(get_batched(m) is not None for m in ("dec", "idec", "dcn", "dkm"))
