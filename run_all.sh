#!/usr/bin/env bash
# Run every registered table (and, with FIGURES=1, every figure sweep) of every paper at one budget,
# then render the tables/figures to paper_tables/ and diff every cell against the paper.
#   BUDGET=quick|reduced|full (default quick: seconds per run, never compared with the papers)
#   SEEDS=N (default: 2 at the quick budget, else the spec's 10)   WORKERS=N CPU processes (default 1)
#   PAPER=id|all
#   EXECUTOR=local|slurm (default local; slurm: submitit job arrays, site defaults from
#   DCREPRO_SLURM_CONFIG=<file>, see slurm.example.toml and README "Scale-out on SLURM")
#   DCREPRO_DATA=<data root> (default ~/.cache/dcrepro). USPS, SNIPS and AgNews ship inside the package and
#   are read from there when the root lacks them, so with nothing configured the quick run trains and
#   evaluates the DCSS (USPS), DCGLU (SNIPS) and DEC-CRL (AgNews) methods. `dcrepro data list` shows what is where.
# Exits non-zero, with one line saying why, when a run failed, nothing could run, a data file is corrupt,
# or a comparable cell is outside its band; data sets that are not here are skipped and named.
set -uo pipefail
BUDGET=${BUDGET:-quick}
PAPER=${PAPER:-all}
WORKERS=${WORKERS:-1}
EXECUTOR=${EXECUTOR:-local}
[ "$BUDGET" = quick ] && SEEDS=${SEEDS:-2}
SEEDS_ARG=${SEEDS:+--seeds $SEEDS}
echo "== data (root: ${DCREPRO_DATA:-~/.cache/dcrepro})"
dcrepro data list --fast || exit $?  # `dcrepro data verify` hashes every file; `dcrepro run` checks them first
echo "== run: paper=$PAPER budget=$BUDGET"
dcrepro run --paper "$PAPER" --budget "$BUDGET" --workers "$WORKERS" --executor "$EXECUTOR" $SEEDS_ARG || exit $?
if [ "${FIGURES:-0}" = 1 ]; then
  dcrepro run --paper "$PAPER" --budget "$BUDGET" --workers "$WORKERS" --executor "$EXECUTOR" --figure all $SEEDS_ARG || exit $?
  dcrepro figure --paper "$PAPER" --budget "$BUDGET" || exit $?
fi
echo "== tables"
dcrepro table --paper "$PAPER" --budget "$BUDGET" || exit $?
echo "== check against the papers (cells outside their band make this exit 1)"
[ "$BUDGET" = quick ] && echo "(quick budget: no cell is comparable with a paper; the claims are printed, and" \
  "\`dcrepro check --budget quick --against accepted\` diffs against the committed baseline)"
dcrepro check --paper "$PAPER" --budget "$BUDGET"
