"""Throughput of one SimCLR training step (augment two views on the device + forward + backward + LARS step).

Run by hand, not a test::

    python perf/backbone_throughput.py                      # GPU: batch 256, ResNet-34, 20 timed steps
    python perf/backbone_throughput.py --device cpu         # CPU: batch 32, 3 timed steps (shows it works)

Prints the device and images/s (each image gives two views). Random uint8 32×32 images stand in for CIFAR:
the cost does not depend on the pixel values. From images/s, one epoch of CIFAR-10 (60,000 images) takes
60,000 / (images/s) seconds; the script prints that estimate and the one for the recommended 500 epochs.
"""
from __future__ import annotations

import argparse
import time

import torch

from dcrepro.backbones.augment import ContrastiveAugment, to_float
from dcrepro.backbones.resnet import build_encoder
from dcrepro.backbones.simclr import SimCLR
from dcrepro.backbones.train import LARS
from dcrepro.envinfo import device_name, resolve_device


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--arch", default="resnet34", choices=["resnet18", "resnet34"])
    ap.add_argument("--batch-size", type=int, default=None, help="default 256 on a GPU, 32 on the CPU")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 20 on a GPU, 3 on the CPU)")
    ap.add_argument("--side", type=int, default=32, help="image side (32 CIFAR, 96 STL-10)")
    ap.add_argument("--no-amp", action="store_true", help="float32 instead of bfloat16 autocast on the GPU")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (the dev machine is shared)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    gpu = device == "cuda"
    batch = a.batch_size or (256 if gpu else 32)
    steps = a.steps or (20 if gpu else 3)
    torch.manual_seed(0)
    model = SimCLR(build_encoder(a.arch, a.side)).to(device)
    opt = LARS(model.parameters(), lr=0.3 * batch / 256, weight_decay=1e-6)
    augment = ContrastiveAugment(a.side, blur=a.side > 64).to(device)
    images = torch.randint(0, 256, (batch, a.side, a.side, 3), dtype=torch.uint8, device=device)
    amp = gpu and not a.no_amp

    def step() -> torch.Tensor:
        x = to_float(images)
        v1, v2 = augment(x), augment(x)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            loss = model.loss(v1, v2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    for _ in range(2 if gpu else 1):  # warm-up (kernel selection, allocator)
        step()
    if gpu:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    if gpu:
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    ips = batch / dt
    print(f"device: {device_name(device)} (torch {torch.__version__}, threads {torch.get_num_threads()})")
    print(f"SimCLR {a.arch}, {a.side}×{a.side}, batch {batch}, amp {amp}: {dt * 1000:.1f} ms/step, "
          f"{ips:,.0f} images/s ({2 * ips:,.0f} views/s), last loss {float(loss):.3f}")
    print(f"estimate: one CIFAR-10 epoch (60,000 images) {60_000 / ips / 60:.1f} min; "
          f"500 epochs {500 * 60_000 / ips / 3600:.1f} h (training only)")


if __name__ == "__main__":
    main()
