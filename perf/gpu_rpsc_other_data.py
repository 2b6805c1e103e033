"""RPSC's other-data rows on USPS / MNIST / Fashion-MNIST in one process: MoCo backbone -> view pool -> the
other_data table's runs, into a store file under ``--out`` (merge it back with ``dcrepro merge``).

    python perf/gpu_rpsc_other_data.py --out "$OUT" --datasets mnist --device cuda          # a GPU machine
    python perf/gpu_rpsc_other_data.py --out /tmp/r --datasets usps --budget quick --device cpu \\
        --epochs 1 --width 4                                                                 # the path, here

The backbone recipes are the ones benchmarks/rpsc.toml declares (``dcrepro.data.feature_sets.SET_RECIPES``:
MoCo-v2 ResNet-18, width 16, batch 256, queue 4,096, seed 0; USPS 100 epochs with the CIFAR stem, MNIST /
Fashion-MNIST 13 epochs over 70,000 images with the STL stem and crop scale (0.5, 1), the same 3,5xx steps).
The view pool (4 weak + 8 strong views) covers the budget's subset (the reduced budget's 10,000 images) or every
image. Features go to ``$DCREPRO_FEATURES`` (set it: the data root may be read-only); a set whose feature file
is already there is not retrained. On the project's 2-core CPU the whole chain takes about an hour per 28x28 set; the script exists for the full budget
(70,000 images) and for machines where the CPU is busy.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--datasets", nargs="+", default=["mnist", "fashion_mnist"])
    ap.add_argument("--tables", nargs="+", default=["other_data"])
    ap.add_argument("--budget", default="reduced", choices=["quick", "reduced"])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=None, help="default: the data set's recipe (SET_RECIPES)")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--deadline", type=float, default=480.0, help="start no stage after this many seconds")
    a = ap.parse_args(argv)

    from dcrepro import envinfo
    from dcrepro.backbones.cli import run_backbone
    from dcrepro.backbones.views import cache_views, views_path
    from dcrepro.data.feature_sets import backbone_recipe, feature_path
    from dcrepro.runner import build_plan, execute
    from dcrepro.spec import load_spec, resolve

    if not os.environ.get("DCREPRO_FEATURES"):
        ap.error("set DCREPRO_FEATURES to a writable folder for the backbone features and view pools")
    t_start = time.time()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    device = envinfo.resolve_device(a.device)
    log: dict = {"device": envinfo.device_name(device), "git_rev": envinfo.git_revision(), "stages": []}

    def stage(name: str, fn) -> bool:
        if time.time() - t_start > a.deadline:
            print(f"{name}: not started (deadline)", flush=True)
            log["stages"].append({"stage": name, "started": False})
            return False
        t0 = time.time()
        result = fn()
        log["stages"].append({"stage": name, "seconds": round(time.time() - t0, 1), "result": str(result)})
        print(f"{name}: {time.time() - t0:.1f} s {result if result is not None else ''}", flush=True)
        (out / "rpsc_other_data.json").write_text(json.dumps(log, indent=1))
        return True

    for ds in a.datasets:
        name = f"{ds}@moco"
        if not feature_path(name).is_file():
            recipe = dict(backbone_recipe(name), width=a.width, **({"epochs": a.epochs} if a.epochs else {}))
            ok = stage(f"{ds} backbone", lambda: run_backbone(
                ds, "moco", None, None, device, 0, True, log=lambda s: None, **recipe)["written"])
            if not ok:
                continue
        subset = resolve(load_spec("rpsc"), "rpsc", name, a.budget).subset
        if not views_path(name).is_file() and not stage(f"{ds} views", lambda: cache_views(
                ds, "moco", 4, 8, seed=0, device=device, subset=subset, log=lambda s: None)):
            continue
        plan = build_plan("rpsc", a.tables, None, [ds], a.seeds, a.budget)
        stage(f"{ds} runs ({len(plan)})", lambda: execute(plan, out / "gpu.sqlite", device, progress=False))
    log["total_s"] = round(time.time() - t_start, 1)
    (out / "rpsc_other_data.json").write_text(json.dumps(log, indent=1))
    print(f"total {log['total_s']} s; merge with: dcrepro merge {out / 'gpu.sqlite'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.fspath(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
