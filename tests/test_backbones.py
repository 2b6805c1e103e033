"""Tests of the colour-set path: ResNets, kornia augmentations, SimCLR / MoCo steps, feature sets, and the
end-to-end path ``dcrepro backbone`` -> ``load_dataset('cifar10@simclr_h')`` -> DCSS / MNet on features.

Everything runs on tiny inputs on one CPU thread (narrow ResNets, ~66 images written in the real CIFAR-10
pickle format by tests/_datagen.py), so the file takes seconds. No real data and no GPU are needed.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import _datagen as G
from dcrepro.backbones.augment import ContrastiveAugment, channel_stats, to_float
from dcrepro.backbones.cli import main as backbone_main
from dcrepro.backbones.cli import run_backbone
from dcrepro.backbones.moco import MoCo
from dcrepro.backbones.resnet import ResNet, SplitBatchNorm, build_encoder
from dcrepro.backbones.simclr import SimCLR, nt_xent
from dcrepro.backbones.train import LARS, BackboneParams, train_contrastive, warmup_cosine
from dcrepro.data import (DataNotAvailable, Dataset, dataset_status, is_available, list_datasets, list_feature_sets,
                          load_dataset, resolve_name)
from dcrepro.data.cli import list_rows, missing_instructions
from dcrepro.data.feature_sets import write_feature_set
from dcrepro.methods import RunContext, get_method
from dcrepro.methods.mnet_features import FeatureEncoder
from dcrepro.seeding import seed_everything

torch.set_num_threads(1)

TINY = ["--arch", "resnet18", "--epochs", "1", "--batch-size", "32", "--device", "cpu", "--width", "8",
        "--no-verify", "--quiet"]


# ---------------------------------------------------------------- networks

def test_resnet_parameter_counts_match_the_standard_cifar_networks():
    # torchvision's resnet18/34 minus the fc layer, with the 7×7 stem conv replaced by a 3×3 one
    assert sum(p.numel() for p in build_encoder("resnet18", 32).parameters()) == 11_168_832
    assert sum(p.numel() for p in build_encoder("resnet34", 32).parameters()) == 21_276_992


@pytest.mark.parametrize("arch,side,stem", [("resnet18", 32, "cifar"), ("resnet34", 32, "cifar"),
                                            ("resnet18", 96, "stl"), ("resnet18", 160, "imagenet")])
def test_resnet_forward_shapes_and_stems(arch, side, stem):
    enc = build_encoder(arch, side, width=4)
    assert enc.resnet.net[0].kernel_size == ((7, 7) if stem == "imagenet" else (3, 3))
    assert any(isinstance(m, nn.MaxPool2d) for m in enc.resnet.net[:4]) == (stem != "cifar")
    h = enc(torch.rand(2, 3, side, side))
    assert h.shape == (2, 32) and enc.out_dim == 32 and torch.isfinite(h).all()


def test_bad_arch_and_stem_name_the_choices():
    with pytest.raises(ValueError, match="valid archs: \\['resnet18', 'resnet34'\\]"):
        build_encoder("resnet50", 32)
    with pytest.raises(ValueError, match="valid stems"):
        ResNet((1, 1, 1, 1), stem="tiny")


def test_split_batchnorm_normalises_each_interleaved_group_on_its_own():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 4, 4)
    x[1::2] += 5.0                       # group 1 (odd samples) has another mean
    sbn = SplitBatchNorm(3, splits=2).train()
    out = sbn(x)
    ref = nn.BatchNorm2d(3).train()
    assert torch.allclose(out[0::2], ref(x[0::2]), atol=1e-5) and torch.allclose(out[1::2], ref(x[1::2]), atol=1e-5)
    assert torch.allclose(sbn.running_mean, 0.1 * x.mean((0, 2, 3)), atol=1e-5)  # averaged over the groups


# ---------------------------------------------------------------- augmentations

def test_to_float_and_channel_stats():
    grey = torch.tensor([[[[0], [255]]]], dtype=torch.uint8)          # 1×1×2×1
    x = to_float(grey)
    assert x.shape == (1, 3, 1, 2) and x.dtype == torch.float32 and x.max() == 1.0 and x.min() == 0.0
    mean, std = channel_stats(torch.full((4, 2, 2, 3), 51, dtype=torch.uint8))
    assert np.allclose(mean, 0.2) and np.allclose(std, 1e-3)           # constant images: floor on std
    with pytest.raises(ValueError, match="N×H×W×C"):
        to_float(torch.zeros(2, 3, 4, 4, dtype=torch.uint8))


@pytest.mark.parametrize("side,blur", [(32, False), (96, True)])
def test_augment_shapes_ranges_and_randomness(side, blur):
    torch.manual_seed(0)
    aug = ContrastiveAugment(side, blur=blur)
    x = to_float(torch.randint(0, 256, (6, side, side, 3), dtype=torch.uint8))
    v1, v2 = aug(x), aug(x)
    assert v1.shape == x.shape and v1.dtype == torch.float32
    assert v1.min() >= 0 and v1.max() <= 1 and not torch.allclose(v1, v2)
    assert any("GaussianBlur" in type(m).__name__ for m in aug.ops.children()) == blur


# ---------------------------------------------------------------- losses and steps

def test_nt_xent_matches_its_definition():
    torch.manual_seed(0)
    z1, z2 = torch.randn(4, 5), torch.randn(4, 5)
    z = nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    s = torch.exp(z @ z.T / 0.5)
    pos = torch.cat([torch.diag(s, 4), torch.diag(s, -4)])
    expected = -torch.log(pos / (s.sum(1) - s.diag())).mean()
    assert torch.allclose(nt_xent(z1, z2, 0.5), expected, atol=1e-5)
    aligned = torch.eye(4, 5) * 3
    assert nt_xent(aligned, aligned, 0.5) < nt_xent(z1, z2, 0.5)


def _params_changed(before: dict, model: nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in model.state_dict().items() if v.dtype.is_floating_point)


def test_one_simclr_step_is_finite_and_trains():
    torch.manual_seed(0)
    model = SimCLR(build_encoder("resnet18", 32, width=4), proj_hidden=16, proj_dim=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = LARS(model.parameters(), lr=0.5, weight_decay=1e-6)
    x = torch.rand(8, 3, 32, 32)
    loss = model.loss(x, x.flip(3))
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and all(torch.isfinite(p).all() for p in model.parameters())
    assert _params_changed(before, model)
    feats = model.features(x)
    assert feats["simclr_h"].shape == (8, 32) and feats["simclr_z"].shape == (8, 8)


def test_one_moco_step_updates_queue_and_key_encoder():
    torch.manual_seed(0)
    model = MoCo(build_encoder("resnet18", 32, width=4, bn_splits=2), 16, 8, queue_size=12, momentum=0.9)
    key_before = [p.clone() for p in model.key.parameters()]
    queue_before = model.queue.clone()
    opt = torch.optim.SGD(model.query.parameters(), lr=0.1, momentum=0.9)
    x = torch.rand(8, 3, 32, 32)
    for _ in range(2):                              # the 2nd step sees a changed query encoder
        loss = model.loss(x, x.flip(3))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(loss) and all(torch.isfinite(p).all() for p in model.parameters())
    assert int(model.queue_ptr) == 16 % 12 and not torch.equal(model.queue, queue_before)
    assert torch.allclose(model.queue.norm(dim=1), torch.ones(12), atol=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(key_before, model.key.parameters()))
    assert all(p.grad is None for p in model.key.parameters())
    f = model.features(x)["moco"]
    assert f.shape == (8, 32) and torch.allclose(f.norm(dim=1), torch.ones(8), atol=1e-5)


def test_lars_skips_decay_and_scaling_for_1d_parameters():
    w, b = nn.Parameter(torch.ones(2, 2)), nn.Parameter(torch.ones(2))
    w.grad, b.grad = torch.full((2, 2), 10.0), torch.full((2,), 10.0)
    LARS([w, b], lr=1.0, momentum=0.0, weight_decay=0.5, eta=1e-3).step()
    assert torch.allclose(b, torch.full((2,), -9.0))                      # plain SGD step
    g = 10.0 + 0.5                                                         # grad + wd·w
    assert torch.allclose(w, 1 - 1e-3 * (2.0 / (2 * g)) * g * torch.ones(2, 2))   # trust ratio η‖w‖/‖g‖


def test_schedule_and_training_loop():
    f = warmup_cosine(total_steps=10, warmup_steps=2)
    assert [round(f(s), 3) for s in (0, 1, 2, 7)] == [0.5, 1.0, 1.0, round(0.5 * (1 + np.cos(np.pi * 5 / 8)), 3)]
    torch.manual_seed(0)
    model = SimCLR(build_encoder("resnet18", 16, width=4), 16, 8)
    p = BackboneParams(epochs=2, batch_size=8, width=4, warmup_epochs=1)
    hist = train_contrastive(model, torch.randint(0, 256, (20, 16, 16, 3), dtype=torch.uint8), p,
                             ContrastiveAugment(16), "cpu")
    assert len(hist["loss"]) == 2 and np.isfinite(hist["loss"]).all() and hist["steps"] == 4


# ---------------------------------------------------------------- feature sets in the data layer

def test_feature_set_names_listing_and_errors():
    assert len(list_datasets()) == 15 and "cifar10@simclr_h" in list_feature_sets()
    assert resolve_name("CIFAR-10@SimCLR_H") == "cifar10@simclr_h"
    with pytest.raises(ValueError, match="valid spaces: simclr_h, simclr_z, moco"):
        resolve_name("cifar10@byol")
    with pytest.raises(ValueError, match="not an image data set"):
        resolve_name("snips@simclr_h")


def test_missing_feature_set_message_gives_the_command(tmp_path):
    assert not is_available("cifar10@simclr_h", tmp_path)
    assert dataset_status("cifar10@simclr_h", tmp_path)["status"] == "missing"
    with pytest.raises(DataNotAvailable) as e:
        load_dataset("cifar10@simclr_h", tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "features" / "cifar10" / "simclr_h.npz") in msg
    assert (f"dcrepro backbone --dataset cifar10 --method simclr --arch resnet34 --epochs 500 --batch-size 512 "
            f"--device cuda --out {tmp_path}") in msg
    assert "must be present first" in msg and "cifar-10-python.tar.gz" in msg   # the image set's own instructions
    G.write_cifar10(tmp_path, per_batch=2)
    with pytest.raises(DataNotAvailable, match="is present under"):
        load_dataset("cifar10@moco", tmp_path)
    rows = {r["name"]: r for r in list_rows(tmp_path, count=False, hashes=False)}
    assert rows["cifar10@moco"]["status"] == "missing" and rows["cifar10@moco"]["modality"] == "features"
    assert "dcrepro backbone --dataset stl10 --method simclr" in missing_instructions(list(rows.values()), tmp_path)


def test_feature_set_roundtrip_and_corrupt_file(tmp_path):
    X, y = np.random.default_rng(0).normal(size=(6, 3)), np.arange(6) % 2
    path = write_feature_set("stl10@simclr_z", X, y, {"train": [0, 1, 2], "test": [3, 4, 5]}, {"epochs": 7}, tmp_path)
    ds = load_dataset("stl10@simclr_z", tmp_path)
    assert ds.modality == "features" and ds.X.dtype == np.float32 and np.allclose(ds.X, X)
    assert list(ds.splits["test"]) == [3, 4, 5] and ds.n_classes == 10 and ds.meta["recipe"]["epochs"] == 7
    assert json.loads(path.with_suffix(".json").read_text())["shape"] == [6, 3]
    path.write_bytes(b"not an npz")
    with pytest.raises(DataNotAvailable, match="could not be read"):
        load_dataset("stl10@simclr_z", tmp_path)


# ---------------------------------------------------------------- end to end

def test_end_to_end_backbone_features_dcss_and_mnet(tmp_path, capsys):
    root = tmp_path / "data"
    _, y = G.write_cifar10(root, per_batch=11, seed=0)                # 66 images in the real pickle format
    rc = backbone_main(["--dataset", "cifar10", "--method", "simclr", *TINY, "--out", str(root),
                        "--data-root", str(root)])
    written = root / "features" / "cifar10" / "simclr_h.npz"
    assert rc == 0 and f"wrote cifar10@simclr_h: {written}" in capsys.readouterr().out
    assert backbone_main(["--dataset", "cifar10", "--method", "moco", *TINY, "--queue-size", "64",
                          "--out", str(root), "--data-root", str(root)]) == 0
    h, z, m = (load_dataset(f"cifar10@{s}", root) for s in ("simclr_h", "simclr_z", "moco"))
    assert h.X.shape == (66, 64) and z.X.shape == (66, 128) and m.X.shape == (66, 64)
    assert np.array_equal(h.y, y) and list(h.splits["test"]) == list(range(55, 66))
    assert np.allclose(np.linalg.norm(m.X, axis=1), 1, atol=1e-5)
    recipe = h.meta["recipe"]
    assert recipe["arch"] == "resnet18" and recipe["epochs"] == 1 and recipe["seed"] == 0 and recipe["stem"] == "cifar"
    assert recipe["base"]["checksums_verified"] is False and np.isfinite(recipe["loss"]).all()

    ctx = RunContext(seed=0, n_clusters=10, cache_dir=tmp_path / "cache", log=lambda s: None)
    seed_everything(0)
    out = get_method("dcss")(h, dict(arch="mlp", pretrain_epochs=1, pretrain_batch_size=256, phase1_epochs=1,
                                     mnet_epochs=2, t2=1), ctx)
    assert set(out) == {"ae_kmeans", "dcssu", "dcss"} and all(len(o.labels) == 66 for o in out.values())
    import dcrepro.methods.mnet_features  # noqa: F401  (registers the method until the registry lists it)
    seed_everything(0)
    out = get_method("mnet_on_features")(m, dict(mnet_epochs=2, t2=1, mnet_batch_size=32), ctx)
    assert set(out) == {"kmeans", "mnet"} and all(len(o.labels) == 66 for o in out.values())
    assert len(out["mnet"].info["mnet_loss"]) == 2 and np.isfinite(out["mnet"].info["mnet_loss"]).all()


def test_backbone_runs_are_seeded(tmp_path):
    root = tmp_path / "data"
    G.write_cifar10(root, per_batch=6, seed=1)
    params = dict(arch="resnet18", epochs=1, batch_size=16, width=4)
    feats = []
    for out in ("a", "b"):
        res = run_backbone("cifar10", "simclr", tmp_path / out, root, "cpu", 3, False, log=lambda s: None, **params)
        feats.append(np.load(res["written"]["cifar10@simclr_z"])["X"])
    assert np.array_equal(feats[0], feats[1])


def test_backbone_cli_errors_name_the_choices(tmp_path, capsys):
    assert backbone_main(["--dataset", "snips", "--method", "simclr", *TINY, "--data-root", str(tmp_path)]) == 2
    assert "valid image sets" in capsys.readouterr().err
    assert backbone_main(["--dataset", "cifar10", "--method", "simclr", *TINY, "--queue-size", "64",
                          "--data-root", str(tmp_path)]) == 2
    assert "unknown parameter(s) ['queue_size']" in capsys.readouterr().err
    assert backbone_main(["--dataset", "cifar10", "--method", "simclr", *TINY, "--data-root", str(tmp_path)]) == 2
    assert "cifar-10-python.tar.gz" in capsys.readouterr().err          # the images are missing


def test_mnet_on_features_encoder_and_input_checks(tmp_path):
    enc = FeatureEncoder(4)
    x = torch.randn(3, 4)
    assert torch.equal(enc.encode(x), x) and enc.linear.weight.requires_grad
    assert not FeatureEncoder(4, trainable=False).linear.weight.requires_grad
    import dcrepro.methods.mnet_features  # noqa: F401
    ctx = RunContext(seed=0, n_clusters=2, cache_dir=tmp_path, log=lambda s: None)
    images = Dataset("img", "grey", np.zeros((4, 2, 2, 1), np.uint8), np.array([0, 1, 0, 1]), 2)
    with pytest.raises(ValueError, match="needs a feature data set"):
        get_method("mnet_on_features")(images, {}, ctx)
    feats = Dataset("f", "features", np.zeros((4, 2), np.float32), np.array([0, 1, 0, 1]), 2)
    with pytest.raises(ValueError, match="valid parameters"):
        get_method("mnet_on_features")(feats, {"epochs": 3}, ctx)


def test_backbone_recipe_says_whether_the_views_were_aligned(tmp_path):
    """The chance level is ln(candidates per query); the recipe records it and whether the final loss fell
    below 98 % of it (a loss at chance means the features were not trained to match an image's views)."""
    import math

    from dcrepro.backbones.cli import CHANCE_SHARE, loss_at_chance
    from dcrepro.backbones.moco import MoCoParams
    from dcrepro.backbones.simclr import SimCLRParams

    assert loss_at_chance("moco", MoCoParams(queue_size=4096), 70000) == pytest.approx(math.log(4097))
    assert loss_at_chance("simclr", SimCLRParams(batch_size=512), 70000) == pytest.approx(math.log(1023))
    assert loss_at_chance("simclr", SimCLRParams(batch_size=512), 36) == pytest.approx(math.log(71))
    root = tmp_path / "data"
    G.write_cifar10(root, per_batch=6, seed=1)
    logs = []
    res = run_backbone("cifar10", "moco", tmp_path / "o", root, "cpu", 0, False, log=logs.append,
                       arch="resnet18", epochs=1, batch_size=16, width=4, queue_size=32)
    r = res["recipe"]
    assert r["loss_chance_level"] == pytest.approx(math.log(33))
    assert r["views_aligned"] == (r["loss"][-1] < CHANCE_SHARE * r["loss_chance_level"])
    assert any("chance level" in m for m in logs) == (not r["views_aligned"])
