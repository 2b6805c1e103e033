#!/usr/bin/env bash
# Run every registered table (and, with FIGURES=1, every figure sweep) of every paper at one budget,
# then render the tables/figures to paper_tables/ and diff every cell against the paper.
#   BUDGET=quick|reduced|full (default quick: seconds per run, never compared with the papers)
#   SEEDS=N (default: 2 at the quick budget, else the spec's 10)   WORKERS=N CPU processes (default 1)
#   PAPER=id|all
#   DCREPRO_DATA=<data root> (default ~/.cache/dcrepro; `dcrepro data list` shows what is there)
set -uo pipefail
BUDGET=${BUDGET:-quick}
PAPER=${PAPER:-all}
WORKERS=${WORKERS:-1}
[ "$BUDGET" = quick ] && SEEDS=${SEEDS:-2}
SEEDS_ARG=${SEEDS:+--seeds $SEEDS}
echo "== data (root: ${DCREPRO_DATA:-~/.cache/dcrepro})"
dcrepro data list --fast   # `dcrepro data verify` hashes every file
echo "== run: paper=$PAPER budget=$BUDGET"
dcrepro run --paper "$PAPER" --budget "$BUDGET" --workers "$WORKERS" $SEEDS_ARG || exit $?
if [ "${FIGURES:-0}" = 1 ]; then
  dcrepro run --paper "$PAPER" --budget "$BUDGET" --workers "$WORKERS" --figure all $SEEDS_ARG || exit $?
  dcrepro figure --paper "$PAPER" --budget "$BUDGET" || exit $?
fi
echo "== tables"
dcrepro table --paper "$PAPER" --budget "$BUDGET" || exit $?
echo "== check against the papers (cells outside their band make this exit 1)"
dcrepro check --paper "$PAPER" --budget "$BUDGET"
