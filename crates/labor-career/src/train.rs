//! Training in stages (pretraining, then fine-tuning; or one stage): Adam, an inverse-square-root
//! schedule with linear warm-up (or a constant rate), validation perplexity after every epoch,
//! the best weights kept and early stopping after `patience` epochs without improvement.
//!
//! Everything a resume needs is in [`Checkpoint`] (the state as plain data, weights, optimizer
//! moments and the best weights as safetensors bytes), handed to [`Hooks::checkpoint`] after
//! every epoch and at the end of every stage. The data order is a function of (seed, stage,
//! epoch) and torch's dropout RNG is re-seeded before every step from (seed, step), so a run
//! resumed from a checkpoint continues exactly as the uninterrupted run.

use std::collections::{BTreeMap, HashMap};

pub use labor_torch::hooks::{Hooks, Quiet};
use labor_torch::optim::{AdamW, OptimConfig, Schedule};
use labor_torch::order::epoch_order;
use labor_torch::weights;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::encode::{Batch, Seq};
use crate::nets::Net;

/// The learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// Linear warm-up over `warmup_steps`, then lr·√(warmup / step).
    InverseSqrt,
    Constant,
}

/// One stage's optimization settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Most epochs (passes over the training persons).
    pub epochs: usize,
    /// Persons per batch.
    pub batch_size: usize,
    pub lr: f64,
    #[serde(default)]
    pub warmup_steps: usize,
    pub schedule: LrSchedule,
    /// Stop after this many epochs without a better validation perplexity (0: never).
    #[serde(default)]
    pub patience: usize,
    #[serde(default)]
    pub seed: u64,
    /// Clip the global gradient norm (0: no clipping).
    #[serde(default)]
    pub grad_clip: f64,
    #[serde(default)]
    pub weight_decay: f64,
}

impl TrainConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.batch_size == 0 {
            return Err("batch_size must be positive".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(format!("lr {} must be positive", self.lr));
        }
        Ok(())
    }

    /// Learning rate of step `s` (0-based, within the stage).
    pub fn lr_at(&self, s: usize) -> f64 {
        match self.schedule {
            LrSchedule::Constant => self.lr,
            LrSchedule::InverseSqrt => {
                let w = self.warmup_steps.max(1) as f64;
                let n = (s + 1) as f64;
                self.lr * (n / w).min((w / n).sqrt())
            }
        }
    }
}

/// A stage: its training and validation sequences and settings.
pub struct Stage<'a> {
    pub name: String,
    pub train: &'a [Seq],
    pub valid: &'a [Seq],
    pub config: TrainConfig,
}

/// One epoch's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub stage: String,
    pub epoch: usize,
    pub train_loss: f64,
    pub valid_perplexity: f64,
    pub seconds: f64,
}

/// What a finished stage achieved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageResult {
    pub name: String,
    pub epochs: usize,
    pub steps: usize,
    /// Validation perplexity (all records) of the kept weights; `best_epoch` 0 = the weights the
    /// stage started from.
    pub best_valid_perplexity: f64,
    pub best_epoch: usize,
    pub early_stopped: bool,
}

/// Where a run stands; plain data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Index of the current stage (= number of stages when done).
    pub stage: usize,
    /// Epochs completed in the current stage.
    pub epoch: usize,
    /// Optimizer steps taken in the current stage.
    pub step: usize,
    /// Optimizer steps over all stages (seeds dropout).
    pub global_step: usize,
    pub optimizer_t: i64,
    pub best_valid: Option<f64>,
    pub best_epoch: usize,
    pub bad_epochs: usize,
    pub history: Vec<EpochLog>,
    pub stages: Vec<StageResult>,
}

/// A resumable snapshot of a run.
pub struct Checkpoint {
    pub state: TrainState,
    /// safetensors bytes of the current weights, the optimizer moments (empty between stages)
    /// and the best weights of the current stage.
    pub weights: Vec<u8>,
    pub optimizer: Vec<u8>,
    pub best: Vec<u8>,
}

/// Progress reports.
pub enum Event<'a> {
    StageStart {
        name: &'a str,
        steps: usize,
        done: usize,
        initial_valid: f64,
    },
    Step {
        loss: f64,
        lr: f64,
    },
    Epoch(&'a EpochLog, f64),
}

/// What the caller does with progress and checkpoints (the library writes no files): the
/// workspace's one hooks shape, [`labor_torch::hooks::Hooks`], over this loop's events and
/// checkpoints.
pub type DynHooks<'h> = dyn for<'e> Hooks<Event<'e>, Checkpoint> + 'h;

/// Named tensors as safetensors bytes (f32).
pub fn to_bytes(t: &BTreeMap<String, Tensor>) -> Result<Vec<u8>, String> {
    let meta: HashMap<String, String> = HashMap::new();
    let mut files = weights::save(t, Kind::Float, usize::MAX, &meta).map_err(|e| e.to_string())?;
    Ok(files.remove(0).1)
}

/// Named tensors from safetensors bytes.
pub fn from_bytes(b: &[u8]) -> Result<BTreeMap<String, Tensor>, String> {
    weights::read_named("weights", b).map_err(|e| e.to_string())
}

/// Copies `src` into the network's variables (names and shapes must match exactly).
pub fn load_weights(net: &Net, src: &BTreeMap<String, Tensor>) -> Result<(), String> {
    let vars = net.vs.variables();
    if vars.len() != src.len() {
        return Err(format!(
            "the weights hold {} tensors, the network has {}",
            src.len(),
            vars.len()
        ));
    }
    tch::no_grad(|| {
        for (name, mut v) in vars {
            let s = src
                .get(&name)
                .ok_or_else(|| format!("the weights lack {name}"))?;
            if s.size() != v.size() {
                return Err(format!(
                    "{name}: shape {:?} in the weights, {:?} in the network",
                    s.size(),
                    v.size()
                ));
            }
            v.copy_(&s.to_kind(Kind::Float));
        }
        Ok(())
    })
}

fn snapshot(net: &Net) -> BTreeMap<String, Tensor> {
    net.vs
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.detach().copy()))
        .collect()
}

/// Mean negative log-likelihood per record of a batch (a scalar tensor with gradient).
pub fn batch_nll(net: &Net, b: &Batch, train: bool) -> Tensor {
    let lp = net.logp(b, train);
    let g = lp
        .gather(-1, &b.target.unsqueeze(-1), false)
        .squeeze_dim(-1);
    -g.masked_select(&b.mask).sum(Kind::Float) / b.n_real.max(1) as f64
}

/// Perplexity exp(−mean log p(true label)) over every record of `seqs` (eval mode).
pub fn perplexity(net: &Net, seqs: &[Seq], k: i64, batch: usize) -> f64 {
    let (mut sum, mut n) = (0.0, 0i64);
    tch::no_grad(|| {
        for ch in seqs.chunks(batch.max(1)) {
            let refs: Vec<&Seq> = ch.iter().collect();
            let b = Batch::new(&refs, k, net.vs.device());
            sum += batch_nll(net, &b, false).double_value(&[]) * b.n_real as f64;
            n += b.n_real;
        }
    });
    if n == 0 {
        f64::NAN
    } else {
        (sum / n as f64).exp()
    }
}

fn trainable(net: &Net) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = net
        .vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Runs (or, from `resume`, continues) the stages. Afterwards `net` holds the best weights of
/// the last stage. `stop_after_epochs` ends the call early after that many epochs (for tests of
/// resuming); the returned state then has `stage < stages.len()`.
pub fn train(
    net: &Net,
    k: i64,
    stages: &[Stage],
    resume: Option<Checkpoint>,
    hooks: &mut DynHooks<'_>,
    stop_after_epochs: Option<usize>,
) -> Result<TrainState, String> {
    for s in stages {
        s.config
            .validate()
            .map_err(|e| format!("stage {}: {e}", s.name))?;
        if s.train.is_empty() {
            return Err(format!("stage {}: no training persons", s.name));
        }
    }
    let mut state = TrainState::default();
    let mut resumed: Option<(BTreeMap<String, Tensor>, BTreeMap<String, Tensor>)> = None;
    if let Some(ck) = resume {
        load_weights(net, &from_bytes(&ck.weights)?)?;
        let opt = if ck.optimizer.is_empty() {
            BTreeMap::new()
        } else {
            from_bytes(&ck.optimizer)?
        };
        resumed = Some((opt, from_bytes(&ck.best)?));
        state = ck.state;
        let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
        let fits = state.stage <= stages.len()
            && state.stages.len() == state.stage
            && state.stages.iter().zip(&names).all(|(r, n)| r.name == *n)
            && state
                .history
                .last()
                .is_none_or(|h| names.contains(&h.stage.as_str()));
        if !fits {
            let done: Vec<&str> = state.stages.iter().map(|s| s.name.as_str()).collect();
            return Err(format!(
                "the checkpoint belongs to a fit with other stages (finished: {done:?}; this fit \
                 has {names:?}); resume with the same panels and --pretrain"
            ));
        }
    }
    let dev = net.vs.device();
    let mut epochs_run = 0usize;
    while state.stage < stages.len() {
        let st = &stages[state.stage];
        let c = &st.config;
        let oc = OptimConfig {
            lr: c.lr,
            betas: [0.9, 0.98],
            eps: 1e-8,
            weight_decay: c.weight_decay,
            warmup_steps: 0,
            schedule: Schedule::Constant,
            grad_clip: c.grad_clip,
            min_lr_ratio: 0.0,
            lr_label_rows: None,
            lr_lora: None,
            lr_base: None,
        };
        let mut opt = AdamW::new(trainable(net));
        let mut best = match resumed.take() {
            Some((o, best)) => {
                if !o.is_empty() {
                    opt.load_state(&o, state.optimizer_t)?;
                }
                best
            }
            None => snapshot(net),
        };
        let batches = st.train.len().div_ceil(c.batch_size);
        let eval_batch = c.batch_size.max(32);
        if state.best_valid.is_none() {
            let v = perplexity(net, st.valid, k, eval_batch);
            state.best_valid = v.is_finite().then_some(v);
            state.best_epoch = 0;
        }
        hooks.event(Event::StageStart {
            name: &st.name,
            steps: batches * c.epochs,
            done: state.step,
            initial_valid: state.best_valid.unwrap_or(f64::NAN),
        });
        let stopped = |s: &TrainState| c.patience > 0 && s.bad_epochs >= c.patience;
        while state.epoch < c.epochs && !stopped(&state) {
            if stop_after_epochs.is_some_and(|n| epochs_run >= n) {
                return Ok(state);
            }
            let t0 = std::time::Instant::now();
            let seed = c.seed ^ (state.stage as u64).wrapping_mul(0x1000_0000_01b3);
            let order = epoch_order(st.train.len(), seed, state.epoch as u64);
            let (mut loss_sum, mut n_sum) = (0.0, 0i64);
            for ch in order.chunks(c.batch_size) {
                let refs: Vec<&Seq> = ch.iter().map(|&i| &st.train[i]).collect();
                let b = Batch::new(&refs, k, dev);
                tch::manual_seed((c.seed as i64).wrapping_add(state.global_step as i64));
                opt.zero_grad();
                let loss = batch_nll(net, &b, true);
                let l = loss.double_value(&[]);
                if !l.is_finite() {
                    return Err(format!(
                        "stage {}: the training loss is {l} at step {}; lower the learning rate",
                        st.name, state.step
                    ));
                }
                loss.backward();
                if c.grad_clip > 0.0 {
                    opt.clip_grad_norm(c.grad_clip);
                }
                let lr = c.lr_at(state.step);
                opt.step(&oc, lr);
                state.step += 1;
                state.global_step += 1;
                state.optimizer_t = opt.t;
                loss_sum += l * b.n_real as f64;
                n_sum += b.n_real;
                hooks.event(Event::Step { loss: l, lr });
            }
            state.epoch += 1;
            epochs_run += 1;
            let v = perplexity(net, st.valid, k, eval_batch);
            let improved = v.is_finite() && state.best_valid.is_none_or(|b| v < b);
            if improved {
                state.best_valid = Some(v);
                state.best_epoch = state.epoch;
                state.bad_epochs = 0;
                best = snapshot(net);
            } else {
                state.bad_epochs += 1;
            }
            let log = EpochLog {
                stage: st.name.clone(),
                epoch: state.epoch,
                train_loss: loss_sum / n_sum.max(1) as f64,
                valid_perplexity: v,
                seconds: t0.elapsed().as_secs_f64(),
            };
            hooks.event(Event::Epoch(&log, state.best_valid.unwrap_or(f64::NAN)));
            state.history.push(log);
            hooks.checkpoint(&Checkpoint {
                state: state.clone(),
                weights: to_bytes(&snapshot(net))?,
                optimizer: to_bytes(&opt.state())?,
                best: to_bytes(&best)?,
            })?;
        }
        // Stage done: keep its best weights and move on.
        load_weights(net, &best)?;
        state.stages.push(StageResult {
            name: st.name.clone(),
            epochs: state.epoch,
            steps: state.step,
            best_valid_perplexity: state.best_valid.unwrap_or(f64::NAN),
            best_epoch: state.best_epoch,
            early_stopped: stopped(&state),
        });
        state.stage += 1;
        state.epoch = 0;
        state.step = 0;
        state.optimizer_t = 0;
        state.best_valid = None;
        state.best_epoch = 0;
        state.bad_epochs = 0;
        let w = to_bytes(&best)?;
        hooks.checkpoint(&Checkpoint {
            state: state.clone(),
            weights: w.clone(),
            optimizer: Vec::new(),
            best: w,
        })?;
    }
    Ok(state)
}
