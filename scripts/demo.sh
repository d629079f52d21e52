#!/usr/bin/env bash
# The main job: builds `labor` (release) and runs the end-to-end demo on the embedded defaults.
# Outputs go to ./demo-out (or the folder given with --out). Extra arguments go to `labor demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release --locked -p labor-cli
exec target/release/labor demo "$@"
