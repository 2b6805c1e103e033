#!/bin/bash
# The prepared GPU calls (issues 18 and 16), each one device call, in two halves.
#
# Here (once, before the call):   DCREPRO_DATA=../shared/data bash perf/gpu_call.sh prepare [SETS...]
#   copies the named data sets (default: mnist) into .devcall/data (git-ignored; USPS and SNIPS ship inside the
#   package) and kornia's wheels for the GPU image's Python 3.12 into .devcall/wheels (the RPSC call needs them).
#   Keep it under the 64 MiB a call carries with the repository: mnist is 12 MB, fashion_mnist 30 MB.
# The call (device tool, carry [".devcall"], timeout_s 560):
#   bash perf/gpu_call.sh full    # issue 18: perf/gpu_full_budget.py (full-budget DCSS/DEC family/k-means, ...)
#   bash perf/gpu_call.sh rpsc    # issue 16: perf/gpu_rpsc_other_data.py on the carried image sets
#   (GPU_CALL_DEVICE=cpu and `--budget quick`: the same path here, e.g. `... full --budget quick --seeds 1 --steps 1`)
#   each under `timeout 530` with a 400 s deadline for starting a stage; $OUT gets gpu.sqlite, a JSON summary
#   and log.txt.
# Back here:   dcrepro merge <files_at>/gpu.sqlite, then `dcrepro table --paper dcss --budget full` (full) or
#   `dcrepro table --paper rpsc --table other_data --budget reduced` (rpsc).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"; shift || true
case "$mode" in
  prepare)
    : "${DCREPRO_DATA:?set DCREPRO_DATA to the data root that holds the sets}"
    grep -qx '/.devcall/' .git/info/exclude 2>/dev/null || echo '/.devcall/' >> .git/info/exclude
    rm -rf .devcall && mkdir -p .devcall/data .devcall/wheels
    for ds in "${@:-mnist}"; do cp -r "$DCREPRO_DATA/$ds" .devcall/data/; done
    pip download kornia==0.9.0 kornia-rs==0.2.0 --python-version 3.12 --only-binary=:all: --no-deps \
        --platform manylinux_2_17_x86_64 -d .devcall/wheels -q
    git rev-parse HEAD > .devcall/GIT_REV   # the device copy has no .git: records take their revision from here
    git status --porcelain --untracked-files=no | grep -q . && sed -i 's/$/-dirty/' .devcall/GIT_REV
    du -sh .devcall ;;
  full|rpsc)
    export DCREPRO_DATA="$PWD/.devcall/data" DCREPRO_CACHE=/tmp/dcrepro-cache DCREPRO_FEATURES=/tmp/dcrepro-features
    export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1 DCREPRO_GIT_REV="$(cat .devcall/GIT_REV 2>/dev/null || echo unknown)"
    OUT="${OUT:-/tmp/gpu-out}"; mkdir -p "$OUT"
    dev="${GPU_CALL_DEVICE:-cuda}"   # cpu: try the call's path here first (with --budget quick)
    python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0) if '$dev' == 'cuda' else 'cpu')"
    if [ "$mode" = full ]; then
      cmd=(python3 perf/gpu_full_budget.py --out "$OUT" --device "$dev")
    else
      python3 -m pip install --no-index --no-deps -q .devcall/wheels/*.whl
      cmd=(python3 perf/gpu_rpsc_other_data.py --out "$OUT" --device "$dev" --datasets $(ls .devcall/data))
    fi
    set +e
    timeout -s TERM "${GPU_CALL_LIMIT:-530}" "${cmd[@]}" --deadline "${GPU_CALL_DEADLINE:-400}" "$@" 2>&1 | tee "$OUT/log.txt"
    echo "exit ${PIPESTATUS[0]}" | tee -a "$OUT/log.txt" ;;
  *) echo "usage: bash perf/gpu_call.sh prepare [SETS...] | full [ARGS...] | rpsc [ARGS...]" >&2; exit 2 ;;
esac
