"""Tests of the DCSS modules: autoencoders (+ pre-training cache), MNet / phase 2, and the ``dcss`` method.

Tiny synthetic data (300 samples of 3 well-separated blobs, as 20-d features or as 28×28 images), a few
epochs each, so the whole file runs in seconds on one CPU thread.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dcrepro.data.dataset import Dataset
from dcrepro.methods import RunContext, get_method
from dcrepro.methods.autoencoders import (ConvAE28, MLPAE, batches, build_autoencoder, prepare_inputs,
                                          pretrain_autoencoder, AEParams)
from dcrepro.methods.dcss import DCSSParams
from dcrepro.methods.mnet import MNetParams, _pair_loss, fuzzy_memberships, update_centres
from dcrepro.metrics import acc
from dcrepro.seeding import seed_everything

torch.set_num_threads(1)

TINY = dict(pretrain_epochs=10, pretrain_batch_size=100, phase1_epochs=2, batch_size=100,
            mnet_epochs=8, t2=3, mnet_batch_size=100)


def feature_blobs(n: int = 300, k: int = 3, d: int = 20, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n // k)
    centres = rng.normal(0, 3, (k, d))
    X = (centres[y] + rng.normal(0, 1, (len(y), d))).astype(np.float32)
    return Dataset("test_feature_blobs", "features", X, y, k)


def image_blobs(n: int = 300, k: int = 3, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n // k)
    X = rng.normal(20, 10, (len(y), 28, 28))
    for c in range(k):
        X[y == c, 4 + 8 * c:10 + 8 * c, 4:24] += 200
    return Dataset("test_image_blobs", "grey", X.clip(0, 255).astype(np.uint8)[..., None], y, k)


def ctx_for(tmp: Path, seed: int = 0, k: int = 3, labels=None) -> RunContext:
    return RunContext(seed=seed, n_clusters=k, cache_dir=tmp, labels_for_selection=labels, log=lambda s: None)


def run(method: str, data, params: dict, ctx: RunContext):
    seed_everything(ctx.seed)
    return get_method(method)(data, params, ctx)


@pytest.fixture
def deterministic():
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


@pytest.fixture(scope="module")
def dcss_run(tmp_path_factory):
    data = feature_blobs()
    out = run("dcss", data, TINY, ctx_for(tmp_path_factory.mktemp("cache")))
    return data, out


# ---------------------------------------------------------------------------------------------- dcss


def test_dcss_outputs_and_label_ranges(dcss_run):
    data, out = dcss_run
    assert set(out) == {"ae_kmeans", "dcssu", "dcss"}
    for row in out.values():
        assert row.labels.shape == (len(data),)
        assert row.labels.dtype == np.int64
        assert row.labels.min() >= 0 and row.labels.max() < 3
        assert row.metrics["time_s"] > 0
    info = out["dcssu"].info
    assert len(info["phase1_loss"]) == TINY["phase1_epochs"]
    assert info["phase1_centre_updates"] == [1]  # T1 = 2: first update before the 2nd epoch
    assert len(out["dcss"].info["mnet_pairs_similar"]) == TINY["mnet_epochs"]


def test_dcss_recovers_easy_blobs(dcss_run):
    data, out = dcss_run
    for row in ("ae_kmeans", "dcssu", "dcss"):
        assert acc(data.y, out[row].labels) > 0.9, row


def test_dcss_phase2_leaves_few_pairs_ambiguous(dcss_run):
    _, out = dcss_run
    info = out["dcss"].info
    pairs = np.add(info["mnet_pairs_similar"], info["mnet_pairs_dissimilar"])
    n_pairs = 3 * 100 ** 2  # 3 batches of B = 100, B² ordered pairs each
    assert pairs.max() <= n_pairs
    assert pairs[-1] > 0.9 * n_pairs  # at the end nearly no pair is left in the ambiguity region
    assert info["mnet_n_clusters_used"] == 3


def test_dcss_aggregated_mode_takes_k_times_the_epochs_and_skips_phase2(tmp_path):
    params = {**TINY, "phase1_mode": "aggregated", "phase1_epochs": 1, "with_mnet": False}
    out = run("dcss", feature_blobs(), params, ctx_for(tmp_path))
    assert set(out) == {"ae_kmeans", "dcssagg"}
    assert out["dcssagg"].info["phase1_epochs_run"] == 3  # K × phase1_epochs


def test_dcss_conv28_on_images(tmp_path):
    data = image_blobs(60)
    params = dict(arch="conv28", pretrain_epochs=1, pretrain_batch_size=30, phase1_epochs=1, batch_size=30,
                  mnet_epochs=1, mnet_batch_size=30)
    out = run("dcss", data, params, ctx_for(tmp_path))
    assert out["ae_kmeans"].info["arch"] == "conv28"
    assert all(r.labels.shape == (60,) for r in out.values())


def test_dcss_same_seed_same_labels_and_cache_hit_is_transparent(tmp_path, deterministic):
    params = {**TINY, "pretrain_epochs": 2, "mnet_epochs": 2, "t2": 1}
    data = feature_blobs()
    a = run("dcss", data, params, ctx_for(tmp_path / "a"))
    b = run("dcss", data, params, ctx_for(tmp_path / "b"))      # fresh cache: recomputed
    c = run("dcss", data, params, ctx_for(tmp_path / "a"))      # cache hit
    assert not a["ae_kmeans"].info["pretrain_cache_hit"] and c["ae_kmeans"].info["pretrain_cache_hit"]
    for row in a:
        np.testing.assert_array_equal(a[row].labels, b[row].labels)
        np.testing.assert_array_equal(a[row].labels, c[row].labels)
    assert a["dcssu"].info["phase1_loss"] == c["dcssu"].info["phase1_loss"]


def test_dcss_label_based_selection_follows_the_spec(tmp_path):
    data = feature_blobs()
    params = {**TINY, "pretrain_epochs": 2, "with_mnet": False}
    with pytest.raises(ValueError, match="labels_for_selection"):
        run("dcss", data, {**params, "select_by_labels": True}, ctx_for(tmp_path))
    free = run("dcss", data, params, ctx_for(tmp_path))  # no labels passed: label-free
    assert free["dcssu"].info["model_selection"] == "last_epoch"
    chosen = run("dcss", data, params, ctx_for(tmp_path, labels=data.y))  # the spec enabled it
    assert chosen["dcssu"].info["model_selection"].startswith("best_acc")
    assert chosen["ae_kmeans"].info["cache_key"] != free["ae_kmeans"].info["cache_key"]
    off = run("dcss", data, {**params, "select_by_labels": False}, ctx_for(tmp_path, labels=data.y))
    assert off["dcssu"].info["model_selection"] == "last_epoch"


@pytest.mark.parametrize("bad, match", [
    ({"bogus": 1}, "valid parameters"),
    ({"phase1_mode": "joint"}, "successive"),
    ({"arch": "resnet"}, "conv28"),
    ({"arch": "conv28"}, "28×28"),       # features cannot use the conv AE
    ({"m": 1.0}, "m must be > 1"),
    ({"zeta": 0.1, "gamma": 0.5}, "gamma <= zeta"),
    ({"t1": 0}, "t1 must be >= 1"),
])
def test_dcss_bad_params_name_the_valid_choices(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        run("dcss", feature_blobs(), {**TINY, "pretrain_epochs": 1, **bad}, ctx_for(tmp_path))


def test_text_data_is_rejected():
    data = Dataset("t", "text", np.array(["a", "b"], dtype=object), np.array([0, 1]), 2)
    with pytest.raises(ValueError, match="modalit"):
        prepare_inputs(data)


# ---------------------------------------------------------------------------------------------- autoencoders


def test_autoencoder_shapes():
    x = torch.rand(4, 1, 28, 28)
    for arch in ("conv28", "mlp"):
        ae = build_autoencoder(arch, (1, 28, 28), 10)
        x_hat, z = ae(x)
        assert x_hat.shape == x.shape and z.shape == (4, 10)
    ae = build_autoencoder("auto", (256,), 7)
    assert isinstance(ae.ae, MLPAE) and ae(torch.rand(3, 256))[1].shape == (3, 7)
    assert isinstance(build_autoencoder("auto", (1, 28, 28)), ConvAE28)
    # the notes count 416k parameters in the official MNIST AE (Network.py, the parts its forward uses)
    assert round(sum(p.numel() for p in ConvAE28(10).parameters()) / 1000) == 416


def test_conv_ae_init_is_xavier_on_linear_and_conv_only():
    ae = ConvAE28(10)
    first = ae.encoder[0]
    bound = np.sqrt(6.0 / (1 * 25 + 32 * 25))
    assert first.weight.abs().max() <= bound + 1e-6
    assert torch.all(ae.encoder[-1].bias == 0)
    assert not torch.all(ae.decoder[-1].bias == 0)  # ConvTranspose keeps torch's default init


def test_prepare_inputs_scales_uint8_images():
    X = prepare_inputs(image_blobs(30))
    assert X.shape == (30, 1, 28, 28) and X.dtype == torch.float32
    assert 0.0 <= float(X.min()) and float(X.max()) <= 1.0


def test_pretraining_cache_key_depends_on_seed_params_and_data(tmp_path):
    data = feature_blobs(90)
    X = prepare_inputs(data)
    p = AEParams(pretrain_epochs=1, pretrain_batch_size=30)
    _, i1 = pretrain_autoencoder(data, X, p, ctx_for(tmp_path))
    _, i2 = pretrain_autoencoder(data, X, p, ctx_for(tmp_path))
    _, i3 = pretrain_autoencoder(data, X, p, ctx_for(tmp_path, seed=1))
    _, i4 = pretrain_autoencoder(data, X, AEParams(pretrain_epochs=2, pretrain_batch_size=30), ctx_for(tmp_path))
    other = feature_blobs(90, seed=1)
    _, i5 = pretrain_autoencoder(other, prepare_inputs(other), p, ctx_for(tmp_path))
    assert (i1["cache_hit"], i2["cache_hit"], i3["cache_hit"], i4["cache_hit"], i5["cache_hit"]) == \
        (False, True, False, False, False)
    assert i1["cache_key"] == i2["cache_key"]
    assert (tmp_path / "ae" / f"{i1['cache_key']}.pt").is_file()
    assert not list((tmp_path / "ae").glob("*.tmp"))


def test_batches_cover_every_sample_once():
    parts = batches(1030, 500, np.random.default_rng(0))
    assert [len(b) for b in parts] == [515, 515]
    assert sorted(np.concatenate(parts).tolist()) == list(range(1030))
    assert [len(b) for b in batches(40, 500, np.random.default_rng(0))] == [40]


# ---------------------------------------------------------------------------------------------- equations


def test_fuzzy_memberships_match_eq2():
    g = torch.Generator().manual_seed(0)
    z, mu = torch.randn(6, 4, generator=g), torch.randn(3, 4, generator=g)
    m = 1.5
    d2 = ((z[:, None, :] - mu[None]) ** 2).sum(-1)
    expected = d2 ** (-1 / (m - 1))
    expected = expected / expected.sum(1, keepdim=True)
    torch.testing.assert_close(fuzzy_memberships(z, mu, m), expected, rtol=1e-4, atol=1e-6)
    # a point on a centre gets (almost) full membership instead of a division by zero
    assert fuzzy_memberships(mu[:1].clone(), mu, m)[0, 0] > 0.999


def test_update_centres_is_eq3():
    g = torch.Generator().manual_seed(1)
    Z, mu = torch.randn(50, 2, generator=g), torch.randn(3, 2, generator=g)
    w = fuzzy_memberships(Z, mu, 1.5) ** 1.5
    expected = (w.T @ Z) / w.sum(0)[:, None]
    torch.testing.assert_close(update_centres(None, None, mu, 1.5, Z=Z), expected)


def test_pair_loss_selects_pairs_and_stops_gradient_at_saturation():
    p = MNetParams()
    q = torch.tensor([[0.995, 0.005], [0.9, 0.1], [0.3, 0.7]], requires_grad=True)
    S = torch.tensor([[0.9, 0.9, 0.1], [0.9, 0.9, 0.5], [0.1, 0.5, 0.9]])
    loss, n_sim, n_dis = _pair_loss(q, S, p)
    qc = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.3, 0.7]])
    P = qc @ qc.T
    sim, dis = S > 0.8, S < 0.2
    expected = 1e-3 * ((1 - P)[sim].sum() + P[dis].sum())
    assert (n_sim, n_dis) == (5, 2)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert torch.all(q.grad[0] == 0) and torch.any(q.grad[1] != 0)


def test_dcss_params_defaults_are_the_papers_full_budget():
    p = DCSSParams()
    assert (p.m, p.beta, p.t1, p.t2, p.zeta, p.gamma) == (1.5, 0.1, 2, 5, 0.8, 0.2)
    assert (p.phase1_epochs, p.mnet_epochs, p.pretrain_epochs, p.batch_size) == (200, 20, 200, 500)
    assert (p.phase1_lr, p.mnet_lr, p.mnet_encoder_lr, p.mnet_loss_scale) == (1e-6, 1e-3, 1e-5, 1e-3)


def test_cluster_losses_eq1_and_aggregated_sum():
    from dcrepro.methods.dcss import _cluster_loss

    g = torch.Generator().manual_seed(2)
    x, x_hat = torch.rand(5, 1, 4, 4, generator=g), torch.rand(5, 1, 4, 4, generator=g)
    z, mu = torch.randn(5, 3, generator=g), torch.randn(4, 3, generator=g)
    w = fuzzy_memberships(z, mu, 1.5) ** 1.5
    rec = ((x - x_hat) ** 2).flatten(1).sum(1)
    k = 2
    loss, rec_t, cen_t = _cluster_loss(x, x_hat, z, w, mu, 0.1, k)
    torch.testing.assert_close(rec_t, (w[:, k] * rec).sum())                      # (1b), a sum not a mean
    torch.testing.assert_close(cen_t, (w[:, k] * ((z - mu[k]) ** 2).sum(1)).sum())  # (1c)
    torch.testing.assert_close(loss, rec_t + 0.1 * cen_t)                          # (1a)
    total = sum(_cluster_loss(x, x_hat, z, w, mu, 0.1, j)[0] for j in range(4))
    torch.testing.assert_close(_cluster_loss(x, x_hat, z, w, mu, 0.1, None)[0], total)  # DCSSagg = Σ_k L_k


@pytest.mark.slow
@pytest.mark.data
def test_dcss_quick_budget_on_real_mnist(tmp_path):
    import os

    from dcrepro.data import load_dataset, stratified_subset

    if not os.environ.get("DCREPRO_DATA") or not Path(os.environ["DCREPRO_DATA"], "mnist").is_dir():
        pytest.skip("real MNIST not found under DCREPRO_DATA")
    data = load_dataset("mnist")
    data = data.subset(stratified_subset(data.y, 1000, seed=0))
    params = dict(arch="mlp", pretrain_epochs=10, pretrain_batch_size=256, phase1_epochs=1, mnet_epochs=2, t2=1)
    out = run("dcss", data, params, ctx_for(tmp_path, k=10))
    assert set(out) == {"ae_kmeans", "dcssu", "dcss"}
    assert acc(data.y, out["ae_kmeans"].labels) > 0.3  # chance is 0.1 on 10 balanced classes


# ---------------------------------------------------------------------------------------------- health
def test_dcss_emits_sharpness_and_similar_pair_shares(dcss_run):
    _, out = dcss_run
    k, m = 3, TINY.get("m", 1.5)
    for row in ("dcssu", "dcss"):
        assert 1 / k ** (m - 1) <= out[row].metrics["sharpness"] <= 1.0
    assert out["dcss"].metrics["sharpness"] == out["dcssu"].metrics["sharpness"]  # same AE and centres
    info = out["dcss"].info
    shares = info["mnet_similar_pair_share"]
    assert len(shares) == TINY["mnet_epochs"] and info["mnet_u_epochs"] == TINY["t2"]
    assert shares == [s / (3 * 100 ** 2) for s in info["mnet_pairs_similar"]]  # 3 batches of B^2 pairs
    assert out["dcss"].metrics["similar_pair_share"] == shares[-1]
    assert out["dcss"].metrics["similar_pair_share_u"] == pytest.approx(np.mean(shares[:TINY["t2"]]))


def test_membership_sharpness_from_uniform_to_one_hot():
    from dcrepro.methods.mnet import membership_sharpness

    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    ident = torch.nn.Identity()
    ident.encode = lambda x: x  # an "encoder" returning the inputs as codes
    on_centres = membership_sharpness(ident, centres + 1e-3, centres, 1.5)
    middle = membership_sharpness(ident, torch.tensor([[5.0, 5.0]]), centres, 1.5)  # equidistant from all three
    assert on_centres == pytest.approx(1.0, abs=1e-4)
    assert middle == pytest.approx(3 ** -0.5, rel=1e-4)  # K^(1 - m)
