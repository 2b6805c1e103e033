"""RPSC-Self / RPSC-Semi, SPICE-Self and SCAN on cached features (dcrepro.methods.rpsc, spice, scan), the view
pool (dcrepro.backbones.views) and the image-set paths end to end on tiny files in the real formats.

Synthetic features: three Gaussian blobs on the unit sphere with noisy "views"; everything runs on one CPU thread
in seconds.
"""
from __future__ import annotations

import math

import _datagen as G
import numpy as np
import pytest
import torch

from dcrepro.data import Dataset, load_dataset
from dcrepro.methods import RunContext, get_method
from dcrepro.methods.rpsc import reliable_labels, scl_loss, select_pseudo_labels
from dcrepro.metrics import acc

torch.set_num_threads(1)

QUICK = {"rpsc": {"n_heads": 2, "epochs": 2, "num_repeat": 1, "big_batch": 150, "semi_iters": 30, "semi_ne": 10},
         "spice_self": {"n_heads": 2, "epochs": 2, "num_repeat": 1, "big_batch": 150},
         "scan": {"n_heads": 2, "scan_epochs": 3, "scan_batch": 64, "scan_lr": 1e-2, "selflabel_epochs": 2, "selflabel_batch": 64,
                      "selflabel_lr": 1e-3, "threshold": 0.5, "n_neighbors": 5}}


def blobs(n=300, d=16, c=3, seed=0, y=None):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n) if y is None else y
    mu = rng.normal(size=(c, d)) * 1.5
    X = mu[y] + rng.normal(size=(n, d)) * 0.5
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    weak = np.stack([X + 0.02 * rng.normal(size=X.shape) for _ in range(2)])
    strong = np.stack([X + 0.1 * rng.normal(size=X.shape) for _ in range(3)])
    return Dataset("blobs", "features", X.astype(np.float32), y, c, {}, {"views": (weak, strong)})


def ctx(seed=0, c=3):
    return RunContext(seed=seed, n_clusters=c, log=lambda s: None)


# ---------------------------------------------------------------- losses and pseudo-labels, by hand
def test_scl_loss_matches_a_hand_computed_example():
    z = torch.tensor([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    lab = torch.tensor([0, 1, 0])
    d = torch.tensor([0.5, 1.0, 0.2])
    tau = 0.5
    zn = z / z.norm(dim=1, keepdim=True)
    cos = lambda a, b: float(zn[a] @ zn[b])
    num = [float(zn[i, lab[i]]) for i in range(3)]
    # sample 0 (label 0): the only other-label sample is 1; sample 1: samples 0 and 2; sample 2: sample 1
    den = [math.log(math.exp(cos(0, 1) / tau)), math.log(math.exp(cos(1, 0) / tau) + math.exp(cos(1, 2) / tau)),
           math.log(math.exp(cos(2, 1) / tau))]
    full = scl_loss(z, lab, 1 - d, tau, True)
    expect = [-(1 - d[i].item()) * num[i] / tau + den[i] for i in range(3)]
    assert torch.allclose(full, torch.tensor(expect), atol=1e-5)
    assert torch.allclose(scl_loss(z, lab, None, tau, False), torch.tensor([-n / tau for n in num]), atol=1e-6)  # SCL-1
    assert torch.allclose(scl_loss(z, lab, d, tau, False), -d * torch.tensor(num) / tau, atol=1e-6)           # SCL-2
    assert torch.allclose(scl_loss(z, lab, None, tau, True),
                          torch.tensor([-num[i] / tau + den[i] for i in range(3)]), atol=1e-5)               # SCL-3
    # a batch with one label has no denominator term
    assert torch.allclose(scl_loss(z, torch.zeros(3, dtype=torch.long), None, tau, True), -zn[:, 0] / tau)
    # batched over heads: same as one head at a time
    two = scl_loss(torch.stack([z, z.flip(0)]), torch.stack([lab, lab]), None, tau, True)
    assert torch.allclose(two[0], scl_loss(z, lab, None, tau, True)) and two.shape == (2, 3)


def test_pseudo_labels_follow_eq_1_to_3():
    feats = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.7, 0.7], [1.0, 0.2]])
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8], [0.5, 0.5], [0.6, 0.4]])[None]
    idx, lab, d = select_pseudo_labels(probs, feats, gamma=2 / 3, nc_ratio=2 / 3)   # n = 2 per cluster, |N_c| = 2
    centre0 = feats[[0, 1]].mean(0)
    cos0 = torch.nn.functional.cosine_similarity(feats, centre0[None])
    assert set(idx[0, :2].tolist()) == set(cos0.topk(2).indices.tolist())
    assert lab[0].tolist() == [0, 0, 1, 1]
    dist = (feats[idx[0, :2]] - centre0).norm(dim=1)
    assert torch.allclose(d[0, :2], dist / dist.max()) and float(d[0, :2].max()) == 1.0


def test_reliable_labels_need_consistent_neighbours():
    X = torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.98, 0.15], [0.0, 1.0], [0.1, 0.99], [0.15, 0.98]])
    probs = torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 3)
    lab, ok = reliable_labels(X, probs, gamma=1 / 3, ne=2, tau_t=0.95)
    assert lab.tolist() == [0, 0, 0, 1, 1, 1] and ok.all()
    lab, ok = reliable_labels(X, probs, gamma=1 / 3, ne=4, tau_t=0.95)   # 4 neighbours reach the other blob
    assert not ok.any()


# ---------------------------------------------------------------- the methods
@pytest.mark.parametrize("method", ["rpsc", "spice_self", "scan"])
def test_methods_run_are_seeded_and_label_free(method):
    data = blobs()
    fn = get_method(method)
    a, b = fn(data, dict(QUICK[method]), ctx(0)), fn(data, dict(QUICK[method]), ctx(0))
    want = {"rpsc": {"self", "semi"}, "spice_self": {"spice_self"},
            "scan": {"scan", "selflabel_ce", "selflabel_scl"}}[method]
    assert set(a) == want
    for k in a:
        assert np.array_equal(a[k].labels, b[k].labels), k
        assert len(a[k].labels) == len(data)
    # the labels are never read: the same features with permuted ground truth give the same clustering
    shuffled = Dataset("blobs", "features", data.X, np.random.default_rng(1).permutation(data.y), 3, {}, data.meta)
    c = fn(shuffled, dict(QUICK[method]), ctx(0))
    assert all(np.array_equal(a[k].labels, c[k].labels) for k in a)
    if method != "scan":  # the blobs are easy: the heads separate them
        assert acc(data.y, next(iter(a.values())).labels) > 0.9
    if method == "rpsc":
        m = a["self"].metrics
        assert 0 <= m["pl_share_min"] <= m["pl_share_max"] <= 1 and m["scl_head_spread"] >= 0
        assert 0 <= a["semi"].metrics["mask_rate"] <= 1 and 0 < a["semi"].metrics["reliable_frac"] <= 1


def test_variants_and_errors():
    data = blobs(n=150)
    fn = get_method("rpsc")
    base = dict(QUICK["rpsc"], semi=False)
    outs = [fn(data, dict(base, **v), ctx(3))["self"].labels for v in
            ({"loss": "ce"}, {"scl_denominator": False, "scl_confidence": "none"}, {"branch1_aug": "weak", "branch2_aug": "none"})]
    assert all(len(o) == 150 for o in outs)
    with pytest.raises(ValueError, match="valid parameters"):
        fn(data, dict(base, heads=3), ctx())
    with pytest.raises(ValueError, match="one_minus_d"):
        fn(data, dict(base, scl_confidence="maybe"), ctx())
    with pytest.raises(ValueError, match="semi_network"):
        fn(data, dict(base, semi_network="full"), ctx())
    with pytest.raises(ValueError, match="selflabel_losses"):
        get_method("scan")(data, dict(QUICK["scan"], selflabel_losses=["mse"]), ctx())
    with pytest.raises(ValueError, match="valid parameters"):
        get_method("scan")(data, dict(QUICK["scan"], epochs=2), ctx())
    with pytest.raises(ValueError, match="features"):
        get_method("spice_self")(Dataset("img", "grey", np.zeros((5, 4, 4), np.uint8), np.zeros(5, int), 2, {}), {},
                                 ctx(c=2))


# ---------------------------------------------------------------- image sets end to end (tiny files, real formats)
@pytest.mark.parametrize("dataset", ["cifar10", "stl10", "imagenet_dogs"])
def test_image_set_to_backbone_views_and_rpsc(tmp_path, monkeypatch, dataset):
    from dcrepro.backbones.cli import run_backbone
    from dcrepro.backbones.views import cache_views, load_views
    from dcrepro.data import classes as C

    monkeypatch.setenv("DCREPRO_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    size = None
    if dataset == "cifar10":
        G.write_cifar10(root, per_batch=8, seed=0)                         # 48 images, CIFAR pickles
    elif dataset == "stl10":
        G.write_stl10(root, n_train=20, n_test=10)                         # 30 images, STL-10 binaries
    else:
        G.write_image_folder(root / "imagenet_dogs", sorted(C.IMAGENET_DOGS_WNIDS), per_class=2)  # 30 PNGs
        size = 16
    run_backbone(dataset, "moco", root, root, "cpu", 0, False, image_size=size, log=lambda s: None,
                 arch="resnet18", epochs=1, batch_size=8, width=4, queue_size=16)
    cache_views(dataset, "moco", 1, 2, root, seed=0, log=lambda s: None)
    data = load_dataset(f"{dataset}@moco", root)
    weak, strong = load_views(data)
    assert weak.shape == (1, *data.X.shape) and strong.shape == (2, *data.X.shape)
    assert not np.allclose(strong[0], data.X)                               # the views are augmented
    sub = data.subset(np.arange(len(data))[::2])                            # a subset's views stay aligned
    assert np.array_equal(load_views(sub)[1], strong[:, ::2])
    out = get_method("rpsc")(data, {"n_heads": 2, "epochs": 1, "num_repeat": 1, "semi_iters": 5, "semi_ne": 5, "semi_tau_t": 0.0},
                             ctx(0, data.n_classes))
    assert len(out["self"].labels) == len(data) and len(out["semi"].labels) == len(data)


def test_missing_view_pool_names_the_command(tmp_path):
    from dcrepro.backbones.views import load_views
    from dcrepro.data import DataNotAvailable
    from dcrepro.data.feature_sets import write_feature_set

    write_feature_set("cifar10@moco", np.eye(4, dtype=np.float32), np.arange(4), {}, {}, tmp_path)
    data = load_dataset("cifar10@moco", tmp_path)
    with pytest.raises(DataNotAvailable, match="dcrepro.backbones.views --dataset cifar10"):
        load_views(data)
    with pytest.raises(DataNotAvailable):
        get_method("rpsc")(data, {}, ctx(c=4))


def test_features_root_env_holds_backbone_features_and_views(tmp_path, monkeypatch):
    """A read-only data root: $DCREPRO_FEATURES holds what `dcrepro backbone` and the view pool write, the
    runner's loaders read them there, and a missing feature set's message names both commands."""
    from dcrepro.backbones.cli import run_backbone
    from dcrepro.backbones.views import cache_views, load_views
    from dcrepro.data import DataNotAvailable

    data_root, feats = tmp_path / "data", tmp_path / "feats"
    G.write_cifar10(data_root, per_batch=8, seed=0)
    monkeypatch.setenv("DCREPRO_DATA", str(data_root))
    monkeypatch.setenv("DCREPRO_FEATURES", str(feats))
    monkeypatch.setenv("DCREPRO_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataNotAvailable, match=r"(?s)dcrepro backbone --dataset cifar10.*backbones.views --dataset cifar10"):
        load_dataset("cifar10@moco")
    run_backbone("cifar10", "moco", None, None, "cpu", 0, False, log=lambda s: None,
                 arch="resnet18", epochs=1, batch_size=8, width=4, queue_size=16)
    assert (feats / "cifar10" / "moco.npz").is_file() and (feats / "cifar10" / "moco_backbone.pt").is_file()
    assert not (data_root / "features").exists()
    cache_views("cifar10", "moco", 1, 1, seed=0, log=lambda s: None)
    data = load_dataset("cifar10@moco")
    weak, strong = load_views(data)
    assert weak.shape == (1, *data.X.shape) and strong.shape == (1, *data.X.shape)


def test_view_pool_of_the_reduced_subset_serves_that_subset_only(tmp_path, monkeypatch):
    """`--subset N` encodes the stratified subset the runner draws (subset seed 0): the subset's runs read their
    views from it; a run on every image is told to encode the full pool."""
    from dcrepro.backbones.cli import run_backbone
    from dcrepro.backbones.views import cache_views, load_views
    from dcrepro.data import DataNotAvailable, stratified_subset

    monkeypatch.setenv("DCREPRO_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    G.write_cifar10(root, per_batch=8, seed=0)                              # 48 images
    run_backbone("cifar10", "moco", root, root, "cpu", 0, False, log=lambda s: None,
                 arch="resnet18", epochs=1, batch_size=8, width=4, queue_size=16)
    cache_views("cifar10", "moco", 1, 2, root, seed=0, subset=20, log=lambda s: None)
    data = load_dataset("cifar10@moco", root)
    sub = data.subset(stratified_subset(data.y, 20, seed=0))
    weak, strong = load_views(sub)
    assert weak.shape == (1, 20, data.X.shape[1]) and strong.shape == (2, 20, data.X.shape[1])
    with pytest.raises(DataNotAvailable, match=r"views of 20 of .* uses 48; encode the full pool"):
        load_views(data)


def test_inputs_budget_layer_sets_the_other_data_subset():
    """`[inputs."<set>".budget.<b>]` applies to every job on that input at budget b only: the reduced budget's
    MNIST/Fashion-MNIST RPSC rows run on 10,000 images, the full budget on all, quick keeps its own subset; USPS
    (9,298 images) is untouched."""
    from dcrepro.spec import load_spec, resolve

    spec = load_spec("rpsc")
    for job in ("rpsc", "scan", "spice_scl", "kmeans_features"):
        for ds in ("mnist@moco", "fashion_mnist@moco"):
            assert resolve(spec, job, ds, "reduced").subset == 10000
            assert resolve(spec, job, ds, "full").subset is None
            assert resolve(spec, job, ds, "quick").subset == 1000
            assert any("10,000-image" in d for d in resolve(spec, job, ds, "reduced").deviations)
        assert resolve(spec, job, "usps@moco", "reduced").subset is None
    assert resolve(spec, "kmeans", "mnist", "reduced").subset == 10000


def test_set_recipes_are_valid_backbone_params_and_name_their_command():
    """The per-set backbone recipes (one home: feature_sets.SET_RECIPES) are fields of the method's params, and
    the command a missing set's message gives carries them."""
    from dcrepro.backbones.cli import _params_cls
    from dcrepro.data.feature_sets import SET_RECIPES, make_command
    from dcrepro.methods import params_from_dict

    for (base, method), recipe in SET_RECIPES.items():
        params_from_dict(_params_cls(method), recipe, "recipe")          # raises on an unknown field
    cmd = make_command("mnist@moco", portable=True)
    assert "--stem stl" in cmd and "--crop-scale-min 0.5" in cmd and "--epochs 13" in cmd and "--device auto" in cmd
    assert "--device cuda" in make_command("cifar10@moco", portable=True)


def test_views_cli_errors_are_one_line(tmp_path, monkeypatch, capsys):
    from dcrepro.backbones.views import main

    monkeypatch.setenv("DCREPRO_FEATURES", str(tmp_path / "feats"))
    with pytest.raises(SystemExit) as e:
        main(["--dataset", "mnist", "--subset", "0"])
    assert e.value.code == 2 and "--subset must be a positive" in capsys.readouterr().err
    assert main(["--dataset", "mnist"]) == 2
    assert "no trained backbone" in capsys.readouterr().err
