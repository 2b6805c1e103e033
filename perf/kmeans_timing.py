"""Time one "k-means" row run of DCSS Table 1 (scikit-learn KMeans on the raw pixels, the spec's settings).

The k-means rows are most of Table 1's CPU time at the reduced budget (they run on the whole data set at
the paper's n_init = 10). Timings in the store can be inflated by other jobs sharing the two cores; this
script times one run alone, with the BLAS/OpenMP threads the runner gives a worker (``--threads``).

    DCREPRO_DATA=../shared/data python perf/kmeans_timing.py [--dataset mnist] [--seed 0] [--threads 1]
        [--algorithm lloyd|elkan]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist", choices=["mnist", "fashion_mnist", "2mnist", "usps"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--algorithm", default=None, choices=["lloyd", "elkan"], help="default: the spec's")
    args = ap.parse_args()

    from threadpoolctl import threadpool_limits

    from dcrepro.data import load_dataset
    from dcrepro.methods import RunContext, get_method
    from dcrepro.metrics import acc, nmi
    from dcrepro.spec import load_spec, resolve

    cfg = resolve(load_spec("dcss"), "kmeans", args.dataset, "reduced")
    params = {**cfg.params, **({"algorithm": args.algorithm} if args.algorithm else {})}
    data = load_dataset(args.dataset)
    with threadpool_limits(args.threads):
        t0 = time.perf_counter()
        out = get_method("kmeans")(data, params, RunContext(seed=args.seed, n_clusters=data.n_classes))["kmeans"]
        wall = time.perf_counter() - t0
    print(f"{args.dataset} ({len(data.y)} x {data.X[0].size}, K={data.n_classes}) {params} threads {args.threads}: "
          f"{wall:.1f} s, n_iter {out.info['n_iter']}, ACC {100 * acc(data.y, out.labels):.2f}, "
          f"NMI {100 * nmi(data.y, out.labels):.2f}")


if __name__ == "__main__":
    main()
