//! AdamW with decoupled weight decay over named parameters, and its learning-rate schedule
//! (linear warm-up, then cosine, linear or constant). Everything a checkpoint needs to resume bit
//! for bit is plain data or named tensors: the step count and the moments.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    Cosine,
    Linear,
    Constant,
}

/// Optimizer and schedule settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    pub lr: f64,
    #[serde(default = "betas")]
    pub betas: [f64; 2],
    #[serde(default = "eps")]
    pub eps: f64,
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default)]
    pub warmup_steps: usize,
    #[serde(default = "cosine")]
    pub schedule: Schedule,
    /// Clip the global gradient norm to this value (0 = no clipping).
    #[serde(default = "one")]
    pub grad_clip: f64,
    /// The lowest learning rate of the decay, as a fraction of `lr`.
    #[serde(default)]
    pub min_lr_ratio: f64,
    /// Peak learning rate of the added label-token rows of a pre-trained base (default `lr`);
    /// the schedule scales it like `lr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_label_rows: Option<f64>,
    /// Peak learning rate of LoRA adapters (default `lr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_lora: Option<f64>,
    /// Peak learning rate of every other trainable weight (default `lr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr_base: Option<f64>,
}

/// The parameter groups that can have learning rates of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamGroup {
    LabelRows,
    Lora,
    Base,
}

impl OptimConfig {
    /// The learning-rate multiplier of a group: its peak rate over `lr`.
    pub fn lr_scale(&self, g: ParamGroup) -> f64 {
        let peak = match g {
            ParamGroup::LabelRows => self.lr_label_rows,
            ParamGroup::Lora => self.lr_lora,
            ParamGroup::Base => self.lr_base,
        };
        peak.map_or(1.0, |p| p / self.lr)
    }

    /// Checks the group rates: each positive and finite.
    pub fn check_groups(&self) -> Result<(), String> {
        for (key, v) in [
            ("lr_label_rows", self.lr_label_rows),
            ("lr_lora", self.lr_lora),
            ("lr_base", self.lr_base),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v >= 0.0)
            {
                return Err(format!("optim.{key} = {v}: expected a learning rate >= 0"));
            }
        }
        Ok(())
    }
}

fn betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn eps() -> f64 {
    1e-8
}
fn cosine() -> Schedule {
    Schedule::Cosine
}
fn one() -> f64 {
    1.0
}

/// Learning rate at optimizer step `step` (0-based) of `total`: linear warm-up to `lr`, then the
/// schedule down to `min_lr_ratio · lr` at the last step.
pub fn lr_at(c: &OptimConfig, step: usize, total: usize) -> f64 {
    if step < c.warmup_steps {
        return c.lr * (step + 1) as f64 / c.warmup_steps as f64;
    }
    let span = total.saturating_sub(c.warmup_steps).max(1) as f64;
    let x = ((step - c.warmup_steps) as f64 / span).min(1.0);
    let lo = c.lr * c.min_lr_ratio;
    match c.schedule {
        Schedule::Constant => c.lr,
        Schedule::Linear => lo + (c.lr - lo) * (1.0 - x),
        Schedule::Cosine => lo + (c.lr - lo) * 0.5 * (1.0 + (std::f64::consts::PI * x).cos()),
    }
}

/// AdamW over named parameters. Weight decay applies to matrices only (not to norms or biases).
pub struct AdamW {
    params: Vec<(String, Tensor)>,
    /// Per-parameter learning-rate multipliers (1 unless set).
    scales: Vec<f64>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Optimizer steps taken.
    pub t: i64,
}

impl AdamW {
    /// `params`: the trainable tensors (they must require gradients), by name.
    pub fn new(params: Vec<(String, Tensor)>) -> Self {
        let m = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let v = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let scales = vec![1.0; params.len()];
        Self {
            params,
            scales,
            m,
            v,
            t: 0,
        }
    }

    /// Sets each parameter's learning-rate multiplier from its name (weight decay, decoupled,
    /// scales with it).
    pub fn set_lr_scales(&mut self, scale: impl Fn(&str) -> f64) {
        self.scales = self.params.iter().map(|(n, _)| scale(n)).collect();
    }

    /// Trainable elements per learning-rate multiplier, ascending by multiplier.
    pub fn params_by_scale(&self) -> Vec<(f64, usize)> {
        let mut out: Vec<(f64, usize)> = Vec::new();
        for ((_, p), &s) in self.params.iter().zip(&self.scales) {
            match out.iter_mut().find(|(x, _)| *x == s) {
                Some(e) => e.1 += p.numel(),
                None => out.push((s, p.numel())),
            }
        }
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }

    pub fn n_params(&self) -> usize {
        self.params.iter().map(|(_, p)| p.numel()).sum()
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// Global L2 norm of the gradients, then (when `clip > 0`) gradients scaled so that the norm
    /// is at most `clip`. Returns the norm before clipping.
    pub fn clip_grad_norm(&mut self, clip: f64) -> f64 {
        let sq: Vec<Tensor> = self
            .params
            .iter()
            .filter_map(|(_, p)| {
                let g = p.grad();
                g.defined()
                    .then(|| g.to_kind(Kind::Double).square().sum(Kind::Double))
            })
            .collect();
        if sq.is_empty() {
            return 0.0;
        }
        let norm = Tensor::stack(&sq, 0)
            .sum(Kind::Double)
            .sqrt()
            .double_value(&[]);
        if clip > 0.0 && norm > clip {
            let s = clip / (norm + 1e-6);
            tch::no_grad(|| {
                for (_, p) in &self.params {
                    let mut g = p.grad();
                    if g.defined() {
                        let _ = g.g_mul_scalar_(s);
                    }
                }
            });
        }
        norm
    }

    /// One AdamW update with learning rate `lr`.
    pub fn step(&mut self, c: &OptimConfig, lr: f64) {
        self.t += 1;
        let [b1, b2] = c.betas;
        let bc1 = 1.0 - b1.powi(self.t as i32);
        let bc2 = 1.0 - b2.powi(self.t as i32);
        tch::no_grad(|| {
            for (((_, p), (m, v)), &scale) in self
                .params
                .iter_mut()
                .zip(self.m.iter_mut().zip(&mut self.v))
                .zip(&self.scales)
            {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let lr = lr * scale;
                if c.weight_decay > 0.0 && p.dim() >= 2 {
                    let _ = p.g_mul_scalar_(1.0 - lr * c.weight_decay);
                }
                let _ = m.g_mul_scalar_(b1);
                let _ = m.g_add_(&(&g * (1.0 - b1)));
                let _ = v.g_mul_scalar_(b2);
                let _ = v.g_add_(&(g.square() * (1.0 - b2)));
                let denom = (&*v / bc2).sqrt() + c.eps;
                let _ = p.g_sub_(&((&*m / bc1) / denom * lr));
            }
        });
    }

    /// The moments by parameter name (`m.NAME`, `v.NAME`), for checkpoints.
    pub fn state(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for ((name, _), (m, v)) in self.params.iter().zip(self.m.iter().zip(&self.v)) {
            out.insert(format!("m.{name}"), m.shallow_clone());
            out.insert(format!("v.{name}"), v.shallow_clone());
        }
        out
    }

    /// Restores the moments saved by [`AdamW::state`] and the step count.
    pub fn load_state(&mut self, state: &BTreeMap<String, Tensor>, t: i64) -> Result<(), String> {
        tch::no_grad(|| {
            for ((name, _), (m, v)) in self.params.iter().zip(self.m.iter_mut().zip(&mut self.v)) {
                for (prefix, dst) in [("m", &mut *m), ("v", &mut *v)] {
                    let src = state
                        .get(&format!("{prefix}.{name}"))
                        .ok_or_else(|| format!("the optimizer state lacks {prefix}.{name}"))?;
                    if src.size() != dst.size() {
                        return Err(format!(
                            "optimizer state {prefix}.{name} has the wrong shape"
                        ));
                    }
                    dst.copy_(src);
                }
            }
            Ok(())
        })?;
        self.t = t;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(lr: f64) -> OptimConfig {
        OptimConfig {
            lr,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.1,
            warmup_steps: 0,
            schedule: Schedule::Constant,
            grad_clip: 0.0,
            min_lr_ratio: 0.0,
            lr_label_rows: Some(3.0 * lr),
            lr_lora: Some(0.0),
            lr_base: None,
        }
    }

    /// Per-group learning rates: a group at 0 does not move (not even by weight decay), a group
    /// at 3× moves three times as far on the first step (Adam's first step is `lr · sign(g)`
    /// up to eps), and the default group moves by `lr`.
    #[test]
    fn group_learning_rates_scale_each_parameters_update() {
        let c = config(1e-2);
        let names = [
            "label_tokens.head",
            "layers.0.q_proj.lora_A.weight",
            "model.norm",
        ];
        let groups = [ParamGroup::LabelRows, ParamGroup::Lora, ParamGroup::Base];
        let params: Vec<(String, Tensor)> = names
            .iter()
            .map(|n| {
                let t =
                    Tensor::ones([2, 2], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
                (n.to_string(), t)
            })
            .collect();
        let before: Vec<Tensor> = params.iter().map(|(_, t)| t.detach().copy()).collect();
        let shared = params
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        let mut opt = AdamW::new(shared);
        opt.set_lr_scales(|n| c.lr_scale(groups[names.iter().position(|x| *x == n).unwrap()]));
        assert_eq!(opt.params_by_scale(), vec![(0.0, 4), (1.0, 4), (3.0, 4)]);
        opt.zero_grad();
        let loss = params.iter().map(|(_, t)| t.sum(Kind::Float)).fold(
            Tensor::zeros([], (Kind::Float, tch::Device::Cpu)),
            |a, b| a + b,
        );
        loss.backward();
        opt.step(&c, c.lr);
        let moved: Vec<f64> = params
            .iter()
            .zip(&before)
            .map(|((_, t), b)| (b - t).mean(Kind::Double).double_value(&[]))
            .collect();
        // Each element: decay lr·wd·1 plus the Adam step lr·(1 − ε-ish).
        let step = |lr: f64| lr * 0.1 + lr * (1.0 - 1e-6);
        assert!((moved[0] - step(3e-2)).abs() < 1e-6, "{moved:?}");
        assert_eq!(moved[1], 0.0, "{moved:?}");
        assert!((moved[2] - step(1e-2)).abs() < 1e-6, "{moved:?}");
        assert!(c.check_groups().is_ok());
        let bad = OptimConfig {
            lr_lora: Some(f64::NAN),
            ..c
        };
        assert!(bad.check_groups().unwrap_err().contains("optim.lr_lora"));
    }
}
