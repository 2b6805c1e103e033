"""Tests of DEC, IDEC, DCN and DKM (each with its "+ MNet" row) on tiny synthetic blobs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dcrepro.methods.dcn import DCNParams, fit_dcn
from dcrepro.methods.dec import soft_assign, target_distribution
from dcrepro.methods.dkm import DKMParams, alpha_schedule
from dcrepro.metrics import acc

from test_methods_dcss import ctx_for, feature_blobs, run

torch.set_num_threads(1)

AE = dict(pretrain_epochs=10, pretrain_batch_size=100, mnet_epochs=8, t2=3, mnet_batch_size=100)
TINY = {
    "dec": dict(maxiter=60, update_interval=20, batch_size=100),
    "idec": dict(maxiter=60, update_interval=20, batch_size=100),
    "dcn": dict(epochs=3, batch_size=100),
    "dkm": dict(n_alphas=2, epochs_per_alpha=1, batch_size=100),
}
METHODS = list(TINY)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ae_cache")


@pytest.mark.parametrize("method", METHODS)
def test_outputs_labels_and_easy_blobs(method, shared_cache):
    data = feature_blobs()
    out = run(method, data, {**AE, **TINY[method]}, ctx_for(shared_cache))
    assert set(out) == {method, f"{method}_mnet"}
    for name, row in out.items():
        assert row.labels.shape == (300,) and row.labels.dtype == np.int64
        assert 0 <= row.labels.min() and row.labels.max() < 3
        assert row.metrics["time_s"] > 0
    assert acc(data.y, out[method].labels) > 0.9
    assert len(out[f"{method}_mnet"].info["mnet_loss"]) == AE["mnet_epochs"]


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_gives_identical_labels(method, tmp_path):
    torch.use_deterministic_algorithms(True)
    try:
        params = {**AE, **TINY[method], "pretrain_epochs": 2, "mnet_epochs": 2, "t2": 1}
        a = run(method, feature_blobs(), params, ctx_for(tmp_path / "a"))
        b = run(method, feature_blobs(), params, ctx_for(tmp_path / "b"))
    finally:
        torch.use_deterministic_algorithms(False)
    assert not b[method].info["pretrain_cache_hit"]
    for row in a:
        np.testing.assert_array_equal(a[row].labels, b[row].labels)


def test_with_mnet_false_skips_the_mnet_row(shared_cache):
    out = run("dcn", feature_blobs(), {**AE, **TINY["dcn"], "with_mnet": False}, ctx_for(shared_cache))
    assert set(out) == {"dcn"}


@pytest.mark.parametrize("method, bad, match", [
    ("dec", {"nope": 1}, "valid parameters"),
    ("idec", {"optimizer": "rmsprop"}, "adam"),
    ("dkm", {"alpha_schedule": "cosine"}, "annealing"),
    ("dcn", {"dcn_lambda": -1.0}, "dcn_lambda"),
    ("dec", {"update_interval": 0}, "update_interval"),
])
def test_bad_params_raise_clear_errors(method, bad, match, shared_cache):
    with pytest.raises(ValueError, match=match):
        run(method, feature_blobs(), {**AE, **TINY[method], **bad}, ctx_for(shared_cache))


def test_dec_soft_assignment_and_target():
    g = torch.Generator().manual_seed(0)
    z, mu = torch.randn(20, 3, generator=g), torch.randn(4, 3, generator=g)
    q = soft_assign(z, mu)
    expected = 1.0 / (1.0 + torch.cdist(z, mu) ** 2)
    torch.testing.assert_close(q, expected / expected.sum(1, keepdim=True))
    p = target_distribution(q)
    torch.testing.assert_close(p.sum(1), torch.ones(20))
    assert torch.all(p.max(1).values >= q.max(1).values - 1e-6)  # the target sharpens q


def test_dcn_batch_centre_update_equals_sequential_rule(tmp_path):
    """One DCN epoch with λ = 0 and lr = 0 leaves the network fixed; the centres must then equal the
    per-sample running-mean rule m_k ← m_k − (1/c_k)(m_k − z_i) applied sample by sample."""
    from dcrepro.methods.autoencoders import build_autoencoder, encode

    torch.manual_seed(0)
    ae = build_autoencoder("mlp", (5,), 2)
    X = torch.randn(40, 5)
    Z = encode(ae, X).numpy()
    c0 = Z[:3].copy()
    p = DCNParams(dcn_lambda=0.0, lr=0.0, epochs=1, batch_size=40, initial_count=100.0)
    _, centres, _ = fit_dcn(ae, X, c0, np.zeros(40, dtype=int), p, ctx_for(tmp_path))
    ref, counts = c0.astype(np.float64).copy(), np.full(3, 100.0)
    for z in Z:  # one batch of all 40 samples: assignments from the (unchanged) centres before the update
        k = int(np.argmin(((c0 - z) ** 2).sum(1)))
        counts[k] += 1
        ref[k] -= (ref[k] - z) / counts[k]
    np.testing.assert_allclose(centres.numpy(), ref, rtol=1e-5, atol=1e-6)


def test_dkm_alpha_schedules():
    const = alpha_schedule(DKMParams())
    assert const.shape == (20,) and np.all(const == 1000.0)
    ann = alpha_schedule(DKMParams(alpha_schedule="annealing", n_alphas=40))
    assert ann.shape == (40,) and ann[0] == pytest.approx(0.1)
    assert ann[1] == pytest.approx(0.1 * 2 ** (1 / np.log(2) ** 2))
    assert ann[2] == pytest.approx(ann[1] * 2 ** (1 / np.log(3) ** 2))
    assert np.all(np.diff(ann) > 0)


def test_published_defaults():
    from dcrepro.methods.dec import DECParams
    from dcrepro.methods.idec import IDECParams

    dec, idec, dcn, dkm = DECParams(), IDECParams(), DCNParams(), DKMParams()
    assert (dec.lr, dec.momentum, dec.batch_size, dec.update_interval, dec.tol) == (0.01, 0.9, 256, 140, 0.001)
    assert (idec.idec_gamma, idec.optimizer, idec.lr) == (0.1, "adam", 1e-3)
    assert (dcn.dcn_lambda, dkm.dkm_lambda, dkm.alpha_value, dkm.epochs_per_alpha) == (0.05, 1.0, 1000.0, 5)
    assert all(p.arch == "mlp" and p.pretrain_batch_size == 256 for p in (dec, idec, dcn, dkm))


def test_update_interval_rule_scales_with_the_subset(shared_cache):
    from dcrepro.methods.dec import DECParams, effective_update_interval

    full = feature_blobs()
    sub = full.subset(np.arange(0, 300, 3))  # 100 of 300 samples
    p = DECParams(update_interval=30)
    assert effective_update_interval(p, sub) == 30  # 'fixed' (default): the published count
    p.update_interval_rule = "subset_scaled"
    assert effective_update_interval(p, sub) == 10 and effective_update_interval(p, full) == 30
    params = {**AE, **TINY["dec"], "update_interval": 60, "tol": 0.0, "with_mnet": False}  # tol 0: no early stop
    fixed = run("dec", sub, params, ctx_for(shared_cache))["dec"].info
    scaled = run("dec", sub, {**params, "update_interval_rule": "subset_scaled"}, ctx_for(shared_cache))["dec"].info
    assert fixed["update_interval_used"] == 60 and scaled["update_interval_used"] == 20
    assert len(scaled["loss"]) > len(fixed["loss"])  # more target updates in the same iterations
    with pytest.raises(ValueError, match=r"\['fixed', 'subset_scaled'\]"):
        run("dec", sub, {**params, "update_interval_rule": "per_epoch"}, ctx_for(shared_cache))
