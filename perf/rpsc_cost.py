"""Cost of RPSC's full schedule per data set, measured on cut runs of each stage on this device and projected.

Stages, each timed with the suite's own code on random inputs of the paper's shapes:

1. backbone: MoCo-v2 training steps (ResNet-18 CIFAR stem at 32 px; STL-10 96 px; ResNet-34 at 224 px for
   ImageNet-10 / -Dogs) -> seconds per epoch over the set's training images -> x the epochs of SPICE's checkpoints;
2. feature caching: eval-mode encoding of the clean images plus 4 weak + 8 strong views (kornia) -> once;
3. RPSC-Self: one epoch of :func:`dcrepro.methods.rpsc.train_self` (10 heads, the paper's M, 8 repeats) on
   ``--self-n`` random 512-d features -> seconds per training step -> steps of a full epoch x 100 epochs;
4. RPSC-Semi: ``--semi-iters`` FreeMatch iterations (B 64, mu 7) -> x 2^20.

Not a test; run by hand. On the 2-core CPU at tiny size (the numbers are CPU numbers, not a GPU projection):

    python perf/rpsc_cost.py --device cpu --threads 1 --bb-steps 2 --self-n 2000 --semi-iters 20
On a GPU: ``python perf/rpsc_cost.py --device cuda`` (defaults: 10 backbone steps, 5,000 features, 200 iterations).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# set: (side, arch, backbone training images, backbone epochs (SPICE checkpoints / notes), N clustered, C, M)
SETS = {
    "cifar10": (32, "resnet18", 60_000, 1000, 50_000, 10, 1000),
    "cifar100_20": (32, "resnet18", 60_000, 1000, 50_000, 20, 2000),
    "stl10": (96, "resnet18", 105_000, 1000, 5_000, 10, 1000),
    "imagenet10": (224, "resnet34", 13_000, 5000, 13_000, 10, 1000),
    "imagenet_dogs": (224, "resnet34", 19_500, 3000, 19_500, 15, 1500),
    "tiny_imagenet": (64, "resnet18", 100_000, 1000, 100_000, 200, 5000),
}


def _sync(device):
    import torch
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_backbone(side, arch, device, steps, batch):
    """(seconds per image of a MoCo training step, seconds per image of encoding 1 clean + 12 views)."""
    import torch

    from dcrepro.backbones.augment import ContrastiveAugment, to_float
    from dcrepro.backbones.moco import MoCo
    from dcrepro.backbones.resnet import build_encoder
    from dcrepro.backbones.views import encode_views

    enc = build_encoder(arch, side, "auto", 64, bn_splits=8)
    model = MoCo(enc, 512, 128, max(4096, batch), 0.99, 0.2).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9)
    aug = ContrastiveAugment(side, (0.2, 1.0), blur=side > 64).to(device)
    imgs = torch.randint(0, 256, (batch, side, side, 3), dtype=torch.uint8, device=device)
    for i in range(steps + 1):                                   # the first step warms up (not timed)
        if i == 1:
            _sync(device)
            t0 = time.perf_counter()
        x = to_float(imgs)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
            loss = model.loss(aug(x), aug(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
    _sync(device)
    train = (time.perf_counter() - t0) / (steps * batch)
    t0 = time.perf_counter()
    encode_views(model, imgs, "moco", 4, 8, batch_size=batch)
    _sync(device)
    views = (time.perf_counter() - t0) / (12 * batch)
    return train, views


def time_self(n, c, m, device, threads):
    """Seconds per training step of RPSC-Self (10 heads, sub-batch 128) and steps per epoch per image."""
    import torch

    from dcrepro.methods.rpsc import SelfParams, train_self

    g = torch.Generator().manual_seed(0)
    X = torch.nn.functional.normalize(torch.randn(n, 512, generator=g), dim=1)
    strong = X[None] + 0.05 * torch.randn(2, n, 512, generator=g)
    p = SelfParams(big_batch=m, epochs=1)
    _, _, info = train_self(X, X[None], strong, c, p, g)
    chunks = max(1, round(n / m))
    steps = chunks * p.num_repeat * -(-m // p.sub_batch)
    return info["epoch_s"][0] / steps


def time_semi(n, c, iters):
    import torch

    from dcrepro.methods.rpsc import Heads, RPSCParams, run_semi

    g = torch.Generator().manual_seed(0)
    X = torch.nn.functional.normalize(torch.randn(n, 512, generator=g), dim=1)
    heads = Heads(1, 512, 512, c, g)
    out = run_semi(X, X[None], X[None] + 0.05, heads, 0, c, RPSCParams(semi_iters=iters, semi_tau_t=0.0), g)
    return out.metrics["semi_iter_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bb-steps", type=int, default=10)
    ap.add_argument("--bb-batch", type=int, default=None, help="default 256 on cuda, 16 on cpu")
    ap.add_argument("--self-n", type=int, default=5000)
    ap.add_argument("--semi-iters", type=int, default=200)
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    import torch
    torch.set_num_threads(a.threads)
    batch = a.bb_batch or (256 if a.device.startswith("cuda") else 16)
    rows, cache = [], {}
    for name in a.sets:
        side, arch, n_bb, epochs, n, c, m = SETS[name]
        if (side, arch) not in cache:
            cache[(side, arch)] = time_backbone(side, arch, a.device, a.bb_steps, batch)
        per_img, per_view = cache[(side, arch)]
        step = time_self(min(a.self_n, n), c, m, a.device, a.threads)
        chunks = max(1, round(n / m))
        self_steps = chunks * 8 * -(-m // 128)
        semi = time_semi(min(a.self_n, n), c, a.semi_iters)
        row = {"set": name, "backbone_epoch_s": per_img * n_bb, "backbone_h": per_img * n_bb * epochs / 3600,
               "views_h": per_view * 12 * n / 3600, "self_step_s": step, "self_epoch_s": step * self_steps,
               "self_100ep_h": step * self_steps * 100 / 3600, "semi_iter_s": semi, "semi_h": semi * 2 ** 20 / 3600}
        row["total_h"] = row["backbone_h"] + row["views_h"] + row["self_100ep_h"] + row["semi_h"]
        rows.append(row)
        print(f"{name:14s} backbone {row['backbone_epoch_s']:9.1f} s/epoch x {epochs} = {row['backbone_h']:8.1f} h | "
              f"views {row['views_h']:6.2f} h | RPSC-Self {row['self_epoch_s']:7.1f} s/epoch x 100 = "
              f"{row['self_100ep_h']:6.2f} h | RPSC-Semi {row['semi_iter_s'] * 1e3:6.1f} ms/it x 2^20 = "
              f"{row['semi_h']:7.1f} h | total {row['total_h']:8.1f} h", flush=True)
    print(f"device {a.device}, {a.threads} thread(s); backbone batch {batch}, {a.bb_steps} timed steps; "
          f"RPSC-Self on {a.self_n} features; {a.semi_iters} FreeMatch iterations")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
