#!/usr/bin/env bash
# The main job: builds `labor` (release) and reproduces the study with the `quick` preset on the
# embedded defaults (synthetic worlds, every comparison model, a from-scratch language model
# pre-trained and fine-tuned, scoring, evaluation). Ends with the headline table and the path of
# report.html. Outputs go to ./demo-out (or the folder given with --out); re-running reuses
# finished stages. Extra arguments go to `labor reproduce`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release --locked -p labor-cli
out=demo-out
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
exec target/release/labor reproduce --preset quick --out "$out" "${args[@]}"
