#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test of the workspace.
# Installs PyTorch 2.11.0 into ~/.cache/labor-llm once (reused afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
