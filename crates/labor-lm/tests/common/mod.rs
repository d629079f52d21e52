//! Deterministic random weights for the scoring tests.
//!
//! `tch::manual_seed` is process-global and the tests of one binary run on parallel threads, and
//! `VarStore::variables()` is a hash map whose order changes from run to run: weights drawn that
//! way differ between runs. These are drawn from a seeded SplitMix64 in sorted name order instead,
//! so every run (and every machine) scores the same model.

use tch::{Tensor, nn};

/// Sets every variable to `N(0, scale²)`, norm weights to `N(1, 0.1²)`.
pub fn fill_normal(vs: &nn::VarStore, seed: u64, scale: f64) {
    let mut rng = labor_data::rng::SplitMix64::new(seed);
    let mut next = move || rng.uniform_open();
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (name, mut v) in vars {
            let (mean, std) = if name.ends_with("norm.weight") {
                (1.0, 0.1)
            } else {
                (0.0, scale)
            };
            let n = v.numel();
            let vals: Vec<f32> = (0..n)
                .map(|_| {
                    let (u1, u2) = (next(), next());
                    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                    (mean + std * z) as f32
                })
                .collect();
            v.copy_(&Tensor::from_slice(&vals).reshape(v.size()));
        }
    });
}
