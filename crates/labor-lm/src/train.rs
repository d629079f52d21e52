//! Causal-LM training: batches of token sequences (right-padded, pads never trained on), AdamW
//! with decoupled weight decay, warm-up then cosine or linear decay, gradient accumulation and
//! clipping. Everything a checkpoint needs to resume bit for bit is plain data or named tensors:
//! the step, the data order (a function of the seed and the epoch) and the optimizer moments.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::model::Llama;

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
        Self { params, m, v, t: 0 }
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
            for ((_, p), (m, v)) in self
                .params
                .iter_mut()
                .zip(self.m.iter_mut().zip(&mut self.v))
            {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
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

/// A permutation of `0..n` determined by `(seed, epoch)` (SplitMix64 + Fisher–Yates).
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    use labor_data::rng::{GOLDEN, SplitMix64};
    let mut rng = SplitMix64::new(seed ^ epoch.wrapping_mul(GOLDEN) ^ 0x5851_f42d_4c95_7f2d);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.modulo(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// Cuts one optimizer step's sequences into micro-batches of similar length: sorted longest
/// first, each micro-batch grows while its padded size (sequences × its longest) stays within
/// `max_tokens` (always at least one sequence). The step's loss and gradient do not depend on
/// how its sequences are grouped (see [`train_step`]); only the padding computed does.
pub fn length_grouped(mut seqs: Vec<&[i64]>, max_tokens: usize) -> Vec<Vec<&[i64]>> {
    seqs.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out: Vec<Vec<&[i64]>> = Vec::new();
    for s in seqs {
        match out.last_mut() {
            Some(b) if (b.len() + 1) * b[0].len().max(2) <= max_tokens => b.push(s),
            _ => out.push(vec![s]),
        }
    }
    out
}

/// The next-token cross-entropy of every position of a right-padded batch, `[B · T]` with
/// `T` = the longest sequence (at least 2): 0 at pads and at each sequence's last token, which
/// have no target. Returns it with `T` and the number of real targets.
fn token_losses(
    model: &Llama,
    seqs: &[&[i64]],
    device: Device,
    reduction: tch::Reduction,
) -> (Tensor, usize, i64) {
    let t = seqs.iter().map(|s| s.len()).max().unwrap_or(0).max(2);
    let b = seqs.len();
    let mut ids = vec![0i64; b * t];
    let mut targets = vec![-100i64; b * t];
    let mut n = 0i64;
    for (i, s) in seqs.iter().enumerate() {
        ids[i * t..i * t + s.len()].copy_from_slice(s);
        for j in 0..s.len().saturating_sub(1) {
            targets[i * t + j] = s[j + 1];
            n += 1;
        }
    }
    let ids = Tensor::from_slice(&ids)
        .view([b as i64, t as i64])
        .to_device(device);
    let targets = Tensor::from_slice(&targets).to_device(device);
    let logits = model.forward(&ids);
    let v = logits.size()[2];
    let loss = logits
        .view([-1, v])
        .cross_entropy_loss::<Tensor>(&targets, None, reduction, -100, 0.0);
    (loss, t, n)
}

/// Sum of the next-token cross-entropy over every real (non-pad) target of a right-padded batch,
/// and the number of those targets. Sequences of one token have no target.
pub fn lm_loss_sum(model: &Llama, seqs: &[&[i64]], device: Device) -> (Tensor, i64) {
    let (loss, _, n) = token_losses(model, seqs, device, tch::Reduction::Sum);
    (loss, n)
}

/// Mean next-token loss over `seqs` (no gradients, no dropout), in batches of `batch`.
pub fn eval_loss(model: &Llama, seqs: &[Vec<i64>], batch: usize, device: Device) -> f64 {
    eval_losses(model, seqs, None, batch, device).0
}

/// Mean next-token loss over every target of `seqs`, and, when `label_targets` is given (for
/// each sequence, the indices `j` whose token `seqs[i][j]` belongs to a label continuation), the
/// mean loss over those targets only: the validation measure closest to what the model is scored
/// on. One forward pass per batch serves both.
pub fn eval_losses(
    model: &Llama,
    seqs: &[Vec<i64>],
    label_targets: Option<&[Vec<usize>]>,
    batch: usize,
    device: Device,
) -> (f64, Option<f64>) {
    model.set_training(false);
    tch::no_grad(|| {
        let (mut sum, mut n) = (0.0, 0i64);
        let (mut lsum, mut ln) = (0.0, 0usize);
        let b = batch.max(1);
        for (ci, chunk) in seqs.chunks(b).enumerate() {
            let refs: Vec<&[i64]> = chunk.iter().map(Vec::as_slice).collect();
            let (per, t, k) = token_losses(model, &refs, device, tch::Reduction::None);
            let per = per.to_kind(Kind::Float);
            sum += per.sum(Kind::Double).double_value(&[]);
            n += k;
            let Some(lt) = label_targets else { continue };
            let per = Vec::<f32>::try_from(per.to_device(Device::Cpu)).expect("f32 losses");
            for (i, s) in chunk.iter().enumerate() {
                // Token j is the target of position j - 1.
                for &j in lt[ci * b + i].iter().filter(|&&j| j >= 1 && j < s.len()) {
                    lsum += per[i * t + j - 1] as f64;
                    ln += 1;
                }
            }
        }
        (
            sum / n.max(1) as f64,
            label_targets.map(|_| lsum / ln.max(1) as f64),
        )
    })
}

/// What one optimizer step did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepStats {
    pub step: usize,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens: i64,
}

/// One optimizer step over `micro` batches (gradient accumulation): the loss is the mean over
/// every real target token of all micro-batches. Errors on a non-finite loss before updating.
pub fn train_step(
    model: &Llama,
    opt: &mut AdamW,
    c: &OptimConfig,
    micro: &[Vec<&[i64]>],
    step: usize,
    total: usize,
    device: Device,
) -> Result<StepStats, String> {
    let tokens: i64 = micro
        .iter()
        .flat_map(|b| b.iter().map(|s| s.len().saturating_sub(1) as i64))
        .sum();
    opt.zero_grad();
    let mut loss_sum = 0.0;
    model.set_training(true);
    for batch in micro {
        let (l, _) = lm_loss_sum(model, batch, device);
        let scaled = &l / tokens.max(1) as f64;
        scaled.backward();
        loss_sum += l.double_value(&[]);
    }
    model.set_training(false);
    let loss = loss_sum / tokens.max(1) as f64;
    if !loss.is_finite() {
        return Err(format!("the loss is {loss} at step {}", step + 1));
    }
    let grad_norm = opt.clip_grad_norm(c.grad_clip);
    if !grad_norm.is_finite() {
        return Err(format!(
            "the gradient norm is {grad_norm} at step {}",
            step + 1
        ));
    }
    let lr = lr_at(c, step, total);
    opt.step(c, lr);
    Ok(StepStats {
        step: step + 1,
        loss,
        lr,
        grad_norm,
        tokens,
    })
}
