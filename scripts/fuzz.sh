#!/usr/bin/env bash
# Long fuzzing runs with libFuzzer (cargo-fuzz, nightly toolchain):
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET ...]
# Defaults: 600 s for every target in fuzz/Cargo.toml, two at a time. The corpus grows in
# fuzz/corpus/<target>/ (seeded from fuzz/seeds/<target>/, not committed); crashes land in
# fuzz/artifacts/<target>/. A summary (target, executions, seconds, corpus size, crashes) goes
# to fuzz/last-run.tsv. Copy every crash into fuzz/regressions/<target>/ once it is fixed: the
# stable smoke test (crates/labor-fuzz/tests/smoke.rs) replays them in CI.
# Needs: `rustup toolchain install nightly` and `cargo install cargo-fuzz`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
secs=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' fuzz/Cargo.toml | grep -v labor-fuzz-targets)
fi
jobs=${FUZZ_PARALLEL:-2}
# Address sanitizer needs every library built with it; libtorch is not, so the targets run
# without a sanitizer (libFuzzer still catches panics, aborts, stack overflows, leaks of
# time and memory through -timeout and -rss_limit_mb/-malloc_limit_mb).
cargo +nightly fuzz build -s none --fuzz-dir fuzz
bin=fuzz/target/x86_64-unknown-linux-gnu/release
echo -e "target\texecutions\tseconds\tcorpus_files\tcrashes" > fuzz/last-run.tsv
run_one() {
    local t=$1
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    cp -n fuzz/seeds/"$t"/* "fuzz/corpus/$t/" 2>/dev/null || true
    local log="fuzz/artifacts/$t/run.log"
    local t0=$SECONDS
    "$bin/$t" "fuzz/corpus/$t" -max_total_time="$secs" -timeout=20 -rss_limit_mb=3072 \
        -malloc_limit_mb=2048 -max_len=262144 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1 || true
    local execs
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    local crashes
    crashes=$(find "fuzz/artifacts/$t" -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' | wc -l)
    local took=$((SECONDS - t0))
    echo -e "$t\t${execs:-?}\t$took\t$(ls "fuzz/corpus/$t" | wc -l)\t$crashes" >> fuzz/last-run.tsv
    echo "$t: ${execs:-?} executions in $took s, $crashes crash/oom/timeout file(s)"
}
running=0
for t in "${targets[@]}"; do
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait
column -t fuzz/last-run.tsv
