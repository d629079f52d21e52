//! Seeded initialisation: parameters' initial values drawn from SplitMix64 (Box–Muller for
//! normals), so that a model's starting point depends only on its seed, never on torch's global
//! generator or on the device.

use labor_data::rng::SplitMix64;
use tch::{Tensor, nn::Path};

/// A stream of initial values.
pub struct SeededInit(SplitMix64);

impl SeededInit {
    pub fn new(seed: u64) -> Self {
        Self(SplitMix64::new(seed))
    }

    /// A uniform draw in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0.uniform_open()
    }

    /// A trainable variable `name` under `p` of `shape`, each entry N(0, std²) in f32.
    pub fn normal(&mut self, p: &Path, name: &str, shape: &[i64], std: f64) -> Tensor {
        let n: i64 = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                let (u1, u2) = (self.uniform(), self.uniform());
                (std * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
            })
            .collect();
        p.var_copy(name, &Tensor::from_slice(&v).reshape(shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, nn::VarStore};

    #[test]
    fn the_same_seed_gives_the_same_values_and_the_spread_is_std() {
        let draw = |seed| {
            let vs = VarStore::new(Device::Cpu);
            SeededInit::new(seed).normal(&vs.root(), "w", &[100, 50], 0.02)
        };
        let (a, b, c) = (draw(1), draw(1), draw(2));
        assert!(a.equal(&b));
        assert!(!a.equal(&c));
        let sd = a.std(true).double_value(&[]);
        assert!((sd - 0.02).abs() < 0.001, "sd {sd}");
        assert!(a.requires_grad());
    }
}
