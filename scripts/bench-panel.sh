#!/usr/bin/env bash
# Benchmark: time and peak memory (max RSS) of converting a ROWS-row panel CSV to Parquet and of
# validating it as CSV and as Parquet, with the release build. Usage: scripts/bench-panel.sh [ROWS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
ROWS="${1:-1000000}"
DIR="${BENCH_DIR:-$(mktemp -d)}"
cargo build --release --locked -p labor-cli -q
cargo run --release --locked -q -p labor-data --example make_panel -- "$ROWS" "$DIR/panel.csv"
measure() {
  local name="$1"; shift
  /usr/bin/time -f "%e %M" -o "$DIR/time" "$@" > /dev/null
  read -r secs kib < "$DIR/time"
  printf "| %-34s | %8.2f s | %8.0f MiB |\n" "$name" "$secs" "$((kib / 1024))"
}
echo "rows: $ROWS; CSV $(du -h "$DIR/panel.csv" | cut -f1); machine: $(nproc) cores, $(uname -m)"
echo "| step | wall time | peak RSS |"
echo "|---|---|---|"
measure "convert CSV -> Parquet" target/release/labor data convert "$DIR/panel.csv" "$DIR/panel.parquet"
measure "validate CSV" target/release/labor data validate "$DIR/panel.csv"
measure "validate Parquet" target/release/labor data validate "$DIR/panel.parquet"
measure "convert Parquet -> CSV" target/release/labor data convert "$DIR/panel.parquet" "$DIR/back.csv"
measure "labor env (startup baseline)" target/release/labor env --device cpu
echo "Parquet $(du -h "$DIR/panel.parquet" | cut -f1); CSV round trip identical: $(cmp -s "$DIR/panel.csv" "$DIR/back.csv" && echo yes || echo no)"
