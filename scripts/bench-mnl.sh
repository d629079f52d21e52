#!/usr/bin/env bash
# MNL fit time (BENCHMARKS.md "MNL fit"): our L-BFGS vs scikit-learn's multinomial
# LogisticRegression (lbfgs) on the same exported design (the one-stage MNL features of the first
# PERSON_YEARS training person-years of a synthetic nlsy79 world, default taxonomy), the same L2
# penalty and the same gradient tolerance, one after the other in one run. Prints both times,
# both log-likelihoods and penalized objectives (each solution evaluated by the same numpy code)
# and the time ratio per thread count of ours.
#   bash scripts/bench-mnl.sh [PERSON_YEARS] [LAMBDA] [GTOL] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
N=${1:-200000}; LAMBDA=${2:-1e-4}; GTOL=${3:-1e-6}; THREADS=${4:-2,1}
W=${BENCH_DIR:-/tmp/labor-bench-mnl}
mkdir -p "$W"
cargo build --release --locked -q -p labor-baselines --example mnl_bench
PY=$(bash tools/reference/setup.sh)
echo "== machine: $(nproc) cores, $(uptime)"
echo "== ours (labor-baselines L-BFGS)"
target/release/examples/mnl_bench "$N" "$LAMBDA" "$GTOL" "$THREADS" "$W"
echo "== scikit-learn (one thread; its lbfgs path uses n_threads = 1), then both solutions evaluated by numpy"
"$PY" tools/reference/mnl_reference.py "$W"
echo "== load after: $(uptime)"
