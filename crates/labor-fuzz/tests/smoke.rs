//! A short run of every fuzz target on stable, for CI: each target's seeds (`fuzz/seeds/`),
//! every committed regression (`fuzz/regressions/<target>/`, inputs that once crashed), and a
//! fixed set of mutations of the seeds (bit flips, truncations, large integers written over
//! length fields, deleted and repeated chunks, inserted part separators). A finding aborts or
//! panics the test, naming nothing: rerun `cargo fuzz run <target> <file>` on the input, which
//! the test writes to `target/fuzz-smoke-last/<target>` before running it.
//!
//! The long runs (`scripts/fuzz.sh`, libFuzzer, nightly) are reported in docs/fuzzing.md.

use std::path::{Path, PathBuf};

use labor_data::rng::SplitMix64;

/// Mutated inputs per target (deterministic).
const MUTATIONS: usize = 300;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn files_in(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .map(|p| {
                    let b = std::fs::read(&p).unwrap();
                    (p, b)
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn mutate(seed: &[u8], rng: &mut SplitMix64) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let n = b.len();
        match rng.below(8) {
            0 if n > 0 => {
                let i = rng.below(n);
                b[i] ^= 1 << rng.below(8);
            }
            1 if n > 0 => {
                let i = rng.below(n);
                b[i] = [0u8, 0xFF, 0x7F, 0x80, b'"', b'[', b'\n', b','][rng.below(8)];
            }
            2 => b.truncate(rng.below(n + 1)),
            3 if n >= 8 => {
                // A large or negative integer over what may be a length or count field.
                let i = rng.below(n - 7);
                let v: u64 = [u64::MAX, 1 << 31, 1 << 40, u32::MAX as u64, 0][rng.below(5)];
                let width = if rng.below(2) == 0 { 4 } else { 8 };
                b[i..i + width].copy_from_slice(&v.to_le_bytes()[..width]);
            }
            4 if n > 0 => {
                let i = rng.below(n);
                let j = (i + 1 + rng.below(64)).min(n);
                b.drain(i..j);
            }
            5 if n > 0 => {
                let i = rng.below(n);
                let j = (i + 1 + rng.below(64)).min(n);
                let chunk = b[i..j].to_vec();
                for _ in 0..1 + rng.below(8) {
                    b.splice(i..i, chunk.iter().copied());
                }
            }
            6 => {
                let i = rng.below(n + 1);
                b.insert(i, 0xFF);
            }
            _ => {
                let i = rng.below(n + 1);
                let s: &[u8] = [
                    &b"-1"[..],
                    b"1e309",
                    b"nan",
                    b"99999999999",
                    b"\xef\xbf\xbd",
                ][rng.below(5)];
                b.splice(i..i, s.iter().copied());
            }
        }
    }
    b
}

#[test]
fn every_fuzz_target_survives_its_seeds_regressions_and_mutations() {
    let last = root().join("target/fuzz-smoke-last");
    std::fs::create_dir_all(&last).unwrap();
    for (name, body) in labor_fuzz::TARGETS {
        let seeds = files_in(&root().join("fuzz/seeds").join(name));
        assert!(!seeds.is_empty(), "fuzz/seeds/{name} has no seed");
        for (path, bytes) in &seeds {
            std::fs::write(last.join(name), bytes).unwrap();
            let accepted = body(bytes);
            assert!(
                accepted > 0,
                "{}: no reader of target {name} accepts this seed",
                path.display()
            );
        }
        let regressions = files_in(&root().join("fuzz/regressions").join(name));
        for (_, bytes) in &regressions {
            std::fs::write(last.join(name), bytes).unwrap();
            body(bytes);
        }
        let mut rng = SplitMix64::new(0x5EED ^ name.len() as u64);
        for _ in 0..MUTATIONS {
            let input = mutate(&seeds[rng.below(seeds.len())].1, &mut rng);
            std::fs::write(last.join(name), &input).unwrap();
            body(&input);
        }
        eprintln!(
            "{name}: {} seeds, {} regressions, {MUTATIONS} mutations",
            seeds.len(),
            regressions.len()
        );
    }
}
