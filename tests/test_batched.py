"""The seeds-batched AE path (stacked parameters, ``methods/stacked.py``) against the one-seed path.

In float32 Adam training of these AEs is chaotic at the level of float reassociation, so the equality tests
run both paths in float64, where each seed's labels must be identical and its continuous outputs (codes,
loss histories) equal to 1e-9. Tiny 28×28 grey data (the conv AE of DCSS), few epochs, batches of 30.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dcrepro.data.dataset import Dataset
from dcrepro.methods import RunContext, get_batched, get_method
from dcrepro.methods.autoencoders import (AEParams, build_autoencoder, encode, encode_stacked, pretrain_autoencoder,
                                          pretrained_start, pretrained_start_batched, prepare_inputs)
from dcrepro.seeding import seed_everything

torch.set_num_threads(1)

SEEDS = [0, 1, 2]
TINY = dict(pretrain_epochs=1, pretrain_batch_size=15, phase1_epochs=2, batch_size=15, t1=1,
            mnet_epochs=2, t2=1, mnet_batch_size=15)


@pytest.fixture
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def grey_images(n: int = 30, k: int = 3, seed: int = 0) -> Dataset:
    """Noisy 28×28 images with a faint class-specific bar: k-means on weak codes does not separate them
    perfectly, so the labels depend on the seed and on every step."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    X = rng.normal(100, 40, (n, 28, 28))
    for c in range(k):
        X[y == c, 4 + 8 * c:10 + 8 * c, 4:24] += 40
    return Dataset("test_batched_grey", "grey", X.clip(0, 255).astype(np.uint8)[..., None], y, k)


def features(n: int = 50, d: int = 12) -> Dataset:
    rng = np.random.default_rng(1)
    y = np.arange(n) % 2
    return Dataset("test_batched_feat", "features", (rng.normal(0, 1, (n, d)) + 2 * y[:, None]).astype(np.float32),
                   y, 2)


def ctxs_for(cache: Path, seeds=SEEDS, k: int = 3) -> list[RunContext]:
    return [RunContext(seed=s, n_clusters=k, cache_dir=cache, log=lambda msg: None) for s in seeds]


def test_dcss_batched_equals_one_seed_per_seed(float64, tmp_path):
    """Conv AE (phase 0), DCSSu (phase 1, K successive steps, centre updates) and MNet (u- and q-space epochs)."""
    data = grey_images()
    one = []
    for ctx in ctxs_for(tmp_path / "one"):
        seed_everything(ctx.seed)
        one.append(get_method("dcss")(data, TINY, ctx))
    seed_everything(SEEDS[0])
    batched = get_batched("dcss")(data, TINY, ctxs_for(tmp_path / "batched"))
    assert len(batched) == len(SEEDS)
    assert len({o[row].labels.tobytes() for o in one for row in ("ae_kmeans", "dcss")}) > 2  # seed-dependent
    X = prepare_inputs(data)
    for s, (a, b) in enumerate(zip(one, batched)):
        assert set(a) == set(b) == {"ae_kmeans", "dcssu", "dcss"}
        for row in a:
            assert np.array_equal(a[row].labels, b[row].labels), (s, row)
            assert b[row].info["seeds_per_process"] == 3
        # the pre-trained AEs (one cache file per seed and path, same key): codes equal to 1e-9
        key = a["ae_kmeans"].info["cache_key"]
        assert b["ae_kmeans"].info["cache_key"] == key
        z1, z2 = (encode(_load_ae(tmp_path / path / "ae" / f"{key}.pt"), X) for path in ("one", "batched"))
        assert (z1 - z2).abs().max() < 1e-9
        for row, k in [("ae_kmeans", "pretrain_loss"), ("dcssu", "phase1_loss"), ("dcssu", "phase1_rec"),
                       ("dcssu", "phase1_centring"), ("dcss", "mnet_loss")]:
            np.testing.assert_allclose(a[row].info[k], b[row].info[k], rtol=1e-9, atol=1e-12, err_msg=f"{s} {k}")
        for row, k in [("dcssu", "phase1_centre_updates"), ("dcss", "mnet_pairs_similar"),
                       ("dcss", "mnet_pairs_dissimilar"), ("dcss", "mnet_n_clusters_used")]:
            assert a[row].info[k] == b[row].info[k], (s, k)
        for row in ("dcssu", "dcss"):
            assert a[row].metrics["sharpness"] == pytest.approx(b[row].metrics["sharpness"], rel=1e-9)


def _load_ae(path: Path) -> torch.nn.Module:
    ae = build_autoencoder("conv28", (1, 28, 28))
    ae.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    return ae


def test_pretrained_start_batched_equals_one_seed(float64, tmp_path):
    data = features()
    p = AEParams(arch="mlp", pretrain_epochs=2, pretrain_batch_size=20)
    X, aes, infos, kms, template = pretrained_start_batched(data, p, ctxs_for(tmp_path / "b", k=2))
    Z = encode_stacked(aes, X)
    after = torch.rand(3)  # the global RNG as the one-seed path leaves it for the first seed
    for s, ctx in enumerate(ctxs_for(tmp_path / "o", k=2)):
        X1, ae, info, km = pretrained_start(data, p, ctx)
        if s == 0:
            assert torch.equal(torch.rand(3), after)
        assert torch.equal(X1, X)
        assert (encode(ae, X) - Z[s]).abs().max() < 1e-9
        assert (encode(aes.module(s, template), X) - Z[s]).abs().max() < 1e-9
        assert np.array_equal(km.labels_, kms[s].labels_)
        assert info["cache_key"] == infos[s]["cache_key"] and not infos[s]["cache_hit"]
        np.testing.assert_allclose(info["pretrain_loss"], infos[s]["pretrain_loss"], rtol=1e-9)


def test_pretrain_cache_shared_both_ways(tmp_path):
    data = features()
    p = AEParams(arch="mlp", pretrain_epochs=1, pretrain_batch_size=25)
    X = prepare_inputs(data)
    cache = tmp_path / "cache"
    # one-seed writes seed 1; the batched run hits it and trains seeds 0 and 2 together
    ae1, info1 = pretrain_autoencoder(data, X, p, ctxs_for(cache, [1], k=2)[0])
    assert not info1["cache_hit"]
    aes, infos = pretrained_start_batched(data, p, ctxs_for(cache, k=2))[1:3]
    assert [i["cache_hit"] for i in infos] == [False, True, False]
    assert infos[1]["cache_key"] == info1["cache_key"] and infos[1]["pretrain_loss"] == info1["pretrain_loss"]
    _assert_same_state(ae1.state_dict(), aes.state_dict(1))
    # and the one-seed path hits the files the batched run wrote
    for s in (0, 2):
        ae, info = pretrain_autoencoder(data, X, p, ctxs_for(cache, [s], k=2)[0])
        assert info["cache_hit"] and info["cache_key"] == infos[s]["cache_key"]
        assert info["pretrain_loss"] == infos[s]["pretrain_loss"]
        _assert_same_state(ae.state_dict(), aes.state_dict(s))
    assert len(list((cache / "ae").glob("*.pt"))) == 3


def _assert_same_state(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_label_selection_falls_back_to_one_seed_path(tmp_path):
    data = features(n=40)
    params = {"arch": "mlp", "pretrain_epochs": 2, "pretrain_batch_size": 20, "phase1_epochs": 2, "batch_size": 20,
              "with_mnet": False, "select_by_labels": True, "kmeans_n_init": 2}
    ctxs = ctxs_for(tmp_path / "b", [0, 1], k=2)
    for c in ctxs:
        c.labels_for_selection = data.y
    batched = get_batched("dcss")(data, params, ctxs)
    for c, b in zip(ctxs, batched):
        c.cache_dir = tmp_path / "o"
        seed_everything(c.seed)
        a = get_method("dcss")(data, params, c)
        assert a["dcssu"].info["model_selection"] == b["dcssu"].info["model_selection"] == "best_acc_epoch (labels)"
        for row, loss in (("ae_kmeans", "pretrain_loss"), ("dcssu", "phase1_loss")):
            assert np.array_equal(a[row].labels, b[row].labels)
            assert a[row].info[loss] == b[row].info[loss]


def test_dcss_batched_through_runner(tmp_path):
    from dcrepro.data import is_available
    from dcrepro.runner import build_plan, compute_group

    if not is_available("usps"):
        pytest.skip("usps not available under DCREPRO_DATA")
    plan = build_plan("dcss", tables=["table1"], datasets=["usps"], seeds=2, budget="quick")
    items = [it for it in plan if it.cfg.job == "dcss"]
    assert len(items) == 2
    results = compute_group(items, device="cpu", cache_dir=tmp_path)
    assert [r["status"] for r, _ in results] == ["ok", "ok"], results[0][0].get("error")
    for (rec, outs), it in zip(results, items):
        assert rec["seed"] == it.seed
        assert set(outs) >= {"ae_kmeans", "dcssu", "dcss"}
        assert all(o["info"]["seeds_per_process"] == 2 for o in outs.values())
    assert results[0][1]["dcss"]["labels_sha"] != results[1][1]["dcss"]["labels_sha"]
