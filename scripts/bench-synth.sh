#!/usr/bin/env bash
# Benchmark: time and peak memory of `labor synth` generating WORKERS workers with the oracle
# (release build), for each preset. Usage: scripts/bench-synth.sh [WORKERS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
N="${1:-100000}"
DIR="${BENCH_DIR:-$(mktemp -d)}"
cargo build --release --locked -p labor-cli -q
echo "workers: $N; machine: $(nproc) cores, $(uname -m)"
echo "| preset | person-years | wall time | peak RSS |"
echo "|---|---|---|---|"
for w in nlsy79 nlsy97 psid resumes; do
  /usr/bin/time -f "%e %M" -o "$DIR/time" target/release/labor synth --world "$w" --seed 1 --workers "$N" --out "$DIR/$w" > "$DIR/$w.txt"
  read -r secs kib < "$DIR/time"
  py=$(grep '^  person-years' "$DIR/$w.txt" | awk '{print $2}')
  printf "| %s | %s | %.1f s | %d MiB |\n" "$w" "$py" "$secs" "$((kib / 1024))"
done
