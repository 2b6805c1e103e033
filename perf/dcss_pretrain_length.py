"""How long the reduced budget's AE pre-training should be: one DCSS run per length, label-free signals first.

For each pre-training length (epochs) this runs the reduced-budget ``dcss`` job (benchmarks/dcss.toml) on the same
stratified subset the runner uses, with the paper's 20 MNet epochs, and prints

* the label-free signals that decide what the MNet claims can show: the last epoch's relative fall of the
  reconstruction loss (has pre-training plateaued?), the membership sharpness mean_i sum_k u_ik^m after phase 1
  (uniform = K^(1-m), one-hot = 1), and the share of pairs MNet's first (u-space) epoch calls similar
  (ten balanced classes: about 10 %);
* then AE + k-means / DCSSu / DCSS ACC, for the record only (a length is never picked by them).

The pre-trained AEs go to the suite's cache (results/cache/ae), keyed as the runner keys them, so a length that is
adopted is not pre-trained again by the table runs.

    python perf/dcss_pretrain_length.py [--dataset mnist] [--epochs 20 60 120] [--seeds 0] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DCREPRO_DATA", str(REPO.parent / "shared" / "data"))

from dcrepro.data import load_dataset, stratified_subset  # noqa: E402
from dcrepro.metrics import acc as cluster_acc  # noqa: E402
from dcrepro.methods import RunContext, get_method  # noqa: E402
from dcrepro.paths import cache_root  # noqa: E402
from dcrepro.seeding import seed_everything  # noqa: E402
from dcrepro.spec import load_spec, resolve  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--epochs", type=int, nargs="+", default=[20, 60, 120])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--mnet-epochs", type=int, default=20, help="the paper's 20 by default")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    cfg = resolve(load_spec("dcss"), "dcss", args.dataset, "reduced")
    data = load_dataset(args.dataset)
    if cfg.subset is not None and cfg.subset < len(data):
        data = data.subset(stratified_subset(data.y, cfg.subset, seed=cfg.subset_seed))
    K = cfg.n_clusters or data.n_classes
    m = cfg.params.get("m", 1.5)
    print(f"dcss {args.dataset} n={len(data)} K={K} reduced schedule {cfg.params}; MNet epochs {args.mnet_epochs}")
    head = (f"{'epochs':>6} {'seed':>4} {'last dL/L':>9} {'sharpness':>9} {'sim. pairs':>10} "
            f"{'AE+km ACC':>9} {'DCSSu ACC':>9} {'DCSS ACC':>9} {'wall s':>7}")
    print(f"(sharpness: uniform {K ** (1 - m):.3f}, one-hot 1)\n{head}", flush=True)
    for e in args.epochs:
        for seed in args.seeds:
            params = dict(cfg.params, pretrain_epochs=e, mnet_epochs=args.mnet_epochs)
            seed_everything(seed)
            ctx = RunContext(seed=seed, n_clusters=K, device="cpu", budget="reduced", cache_dir=cache_root(),
                             log=lambda msg: None)
            t0 = time.perf_counter()
            out = get_method("dcss")(data, params, ctx)
            wall = time.perf_counter() - t0
            loss = out["ae_kmeans"].info["pretrain_loss"]
            fall = (loss[-2] - loss[-1]) / loss[-2] if len(loss) > 1 else float("nan")
            h2 = out["dcss"].info
            sim = h2["mnet_pairs_similar"][0] / (h2["mnet_pairs_similar"][0] + h2["mnet_pairs_dissimilar"][0])
            accs = [cluster_acc(data.y, out[r].labels) for r in ("ae_kmeans", "dcssu", "dcss")]
            print(f"{e:6d} {seed:4d} {fall:9.4f} {out['dcssu'].metrics['sharpness']:9.3f} {100 * sim:9.2f}% "
                  + " ".join(f"{100 * a:9.1f}" for a in accs) + f" {wall:7.0f}", flush=True)


if __name__ == "__main__":
    main()
