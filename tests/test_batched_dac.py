"""The seeds-batched DAC (:func:`dcrepro.methods.dac.run_dac_batched`) gives each seed its one-seed labels.

Both paths run in float64 (the stacked matmuls reassociate sums; in float64 the difference stays far below
the decision margins of this data) on frozen fake embeddings, with dropout on: the batched path must draw each
seed's masks from that seed's own stream in the one-seed order, or the labels differ.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_methods_dcglu import _QUICK_DAC, _fake_embed, _text_data

from dcrepro.methods import RunContext, dac, get_batched
from dcrepro.seeding import seed_everything

SEEDS = [0, 1, 2]
ROWS = ("dac", "dac_km", "dac_dec")


@pytest.fixture(autouse=True)
def _float64_one_thread(monkeypatch):
    from dcrepro.data import embed

    monkeypatch.setattr(embed, "embed_texts", lambda *a, **k: _fake_embed(*a, **k).astype(np.float64))
    # load_text_embeddings casts to float32; the float64 run needs float64 inputs on both paths
    monkeypatch.setattr(dac, "load_text_embeddings", lambda texts, enc, ds: _fake_embed(texts).astype(np.float64))
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


def _both(params: dict, labels: bool = False):
    data = _text_data()
    ctxs = [RunContext(seed=s, n_clusters=3, log=lambda m: None, labels_for_selection=data.y if labels else None)
            for s in SEEDS]
    seed_everything(SEEDS[0])
    batched = get_batched("dac")(data, params, ctxs)
    single = []
    for ctx in ctxs:
        seed_everything(ctx.seed)
        single.append(dac.run_dac(data, params, ctx))
    return batched, single


@pytest.mark.parametrize("pu", [False, True], ids=["dac", "dac_star"])
def test_batched_labels_equal_one_seed_labels(pu):
    # dec_tol 0: the DEC stage runs all its epochs (with the default tol it stops after one on this data)
    params = dict(_QUICK_DAC, pu=pu, variant="dac_dec", dec_tol=0.0)
    batched, single = _both(params)
    assert len(batched) == len(SEEDS)
    for b, o in zip(batched, single):
        for row in ROWS:
            assert np.array_equal(b[row].labels, o[row].labels), row
            assert np.array_equal(b[row].eval_index, o[row].eval_index)
        hb, ho = b["dac"].info["history"], o["dac"].info["history"]
        assert [h["epoch"] for h in hb] == [h["epoch"] for h in ho]
        assert [h["loss"] for h in hb] == pytest.approx([h["loss"] for h in ho], rel=1e-9)
        if pu:
            for key in ("pu_defitting_steps", "pu_n_p", "pu_n_u"):
                assert [h[key] for h in hb] == [h[key] for h in ho], key
            assert b["dac"].metrics["defit_share"] == o["dac"].metrics["defit_share"]
        assert b["dac_dec"].info["dec_epochs"] == o["dac_dec"].info["dec_epochs"]
    # the seeds differ (the batched path did not give every seed seed 0's run)
    assert len({b["dac"].labels.tobytes() for b in batched}) > 1


def test_batched_dec_stage_stops_each_seed_at_its_own_epoch():
    params = dict(_QUICK_DAC, pu=True, variant="dac_dec", dec_tol=0.01, dec_max_epochs=6, dec_lr=0.1)
    batched, single = _both(params)
    assert len({o["dac_dec"].info["dec_epochs"] for o in single}) > 1  # the seeds do stop at different epochs
    for b, o in zip(batched, single):
        assert np.array_equal(b["dac_dec"].labels, o["dac_dec"].labels)
        for key in ("dec_epochs", "dec_stop"):
            assert b["dac_dec"].info[key] == o["dac_dec"].info[key], key


def test_batched_dec_label_patience_restores_each_seeds_best_state():
    params = dict(_QUICK_DAC, pu=True, variant="dac_dec", dec_tol=0.0, dec_max_epochs=6, early_stop_on_labels=True,
                  dec_patience=1, dec_lr=1e-2)
    batched, single = _both(params, labels=True)
    for b, o in zip(batched, single):
        assert o["dac_dec"].info["dec_stop"] == "label_patience"
        assert np.array_equal(b["dac_dec"].labels, o["dac_dec"].labels)
        for key in ("dec_epochs", "dec_stop", "dec_best_train_nmi"):
            assert b["dac_dec"].info[key] == o["dac_dec"].info[key], key


def test_dropout_masks_matter_so_the_equality_checks_the_streams():
    base = dict(_QUICK_DAC, variant="dac")
    data, ctx = _text_data(), RunContext(seed=0, n_clusters=3, log=lambda m: None)
    seed_everything(0)
    with_dropout = dac.run_dac(data, base, ctx)["dac"].labels
    seed_everything(0)
    without = dac.run_dac(data, dict(base, dropout=0.0), ctx)["dac"].labels
    assert not np.array_equal(with_dropout, without)
