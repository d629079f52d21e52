//! Causal-LM training: batches of token sequences (right-padded, pads never trained on), one
//! optimizer step with gradient accumulation and clipping, and the held-out loss. The optimizer,
//! its schedule and the data order are `labor_torch`'s. [`train`] is the whole loop, readable top
//! to bottom; it writes no files (the caller keeps snapshots through its hooks).

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use labor_torch::hooks::Hooks;
use labor_torch::optim::{AdamW, OptimConfig, lr_at};
use labor_torch::order::{epoch_order, length_grouped};

use crate::model::Llama;

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

/// Token ids of `texts` under `tok`, each followed by `eos` when given and cut at `max` tokens.
/// Returns them with the number of texts that were cut.
pub fn tokenize_texts(
    tok: &tokenizers::Tokenizer,
    texts: &[String],
    max: usize,
    eos: Option<u32>,
) -> Result<(Vec<Vec<i64>>, usize), String> {
    let mut truncated = 0;
    let out = texts
        .iter()
        .map(|t| {
            let mut ids: Vec<i64> = tok
                .encode(t.as_str(), false)
                .map_err(|e| e.to_string())?
                .get_ids()
                .iter()
                .map(|&i| i as i64)
                .collect();
            if let Some(e) = eos {
                ids.push(e as i64);
            }
            if ids.len() > max {
                ids.truncate(max);
                truncated += 1;
            }
            Ok(ids)
        })
        .collect::<Result<_, String>>()?;
    Ok((out, truncated))
}

/// Indices of the tokens of `r.text` that lie in a record's label continuation (what the
/// validation loss on label tokens averages over).
pub fn label_token_indices(
    tok: &tokenizers::Tokenizer,
    r: &labor_text::Rendered,
) -> Result<Vec<usize>, String> {
    let enc = tok
        .encode(r.text.as_str(), false)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut spans = r.records.iter().map(|s| s.continuation).peekable();
    for (k, &(start, _)) in enc.get_offsets().iter().enumerate() {
        while spans.peek().is_some_and(|&[_, b]| start >= b) {
            spans.next();
        }
        if spans.peek().is_some_and(|&[a, b]| start >= a && start < b) {
            out.push(k);
        }
    }
    Ok(out)
}

/// How a run trains: optimizer and schedule, batches, and when to evaluate and checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopConfig {
    pub optim: OptimConfig,
    /// Sequences per micro-batch (when `micro_batch_tokens` is 0).
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// When positive, micro-batches are length-grouped with at most this many padded tokens.
    pub micro_batch_tokens: usize,
    pub total_steps: usize,
    /// Seeds the data order (with the epoch) and dropout (with the step).
    pub seed: u64,
    pub eval_every: usize,
    pub checkpoint_every: usize,
    /// Keep the step with the lowest validation loss on label tokens (else on all tokens).
    pub select_by_labels: bool,
}

impl LoopConfig {
    /// Sequences per optimizer step.
    pub fn per_step(&self) -> usize {
        self.batch_size.max(1) * self.grad_accum.max(1)
    }
    /// Optimizer steps per pass over `n` training sequences.
    pub fn steps_per_epoch(&self, n: usize) -> usize {
        n.div_ceil(self.per_step())
    }
}

/// The token ids a run trains and validates on.
pub struct TrainData {
    pub train: Vec<Vec<i64>>,
    pub valid: Vec<Vec<i64>>,
    /// For each validation sequence, the indices of its label tokens.
    pub valid_labels: Vec<Vec<usize>>,
}

/// Where a run stands; plain data (a checkpoint's `state.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub step: usize,
    pub optimizer_t: i64,
    pub best_val: Option<f64>,
    pub best_step: Option<usize>,
    /// Training target tokens processed so far.
    #[serde(default)]
    pub tokens: u64,
    /// Wall seconds of training so far (the caller's set-up and checkpoints included, over
    /// resumes).
    #[serde(default)]
    pub wall_s: f64,
}

/// A validation pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Validation {
    pub loss: f64,
    pub label_loss: Option<f64>,
    /// This step is the new best (the caller has just been asked to keep it).
    pub improved: bool,
}

/// Progress reports.
pub enum Event<'a> {
    /// An optimizer step is done (after its validation pass and best snapshot, if any).
    Step {
        stats: &'a StepStats,
        /// Epochs completed, fractional.
        epoch: f64,
        tokens_per_s: f64,
        validation: Option<&'a Validation>,
        state: &'a TrainState,
    },
}

/// Why a snapshot is handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshot {
    /// The step has the best validation loss so far: keep the model.
    Best,
    /// Everything to resume from: the trainable weights, `optimizer.state()` and the state.
    Resume,
}

/// A snapshot of the run; the caller reads the model's weights from its own store.
pub struct Checkpoint<'a> {
    pub kind: Snapshot,
    pub state: &'a TrainState,
    pub optimizer: &'a AdamW,
}

/// The hooks a language-model run takes: the workspace's one shape,
/// [`labor_torch::hooks::Hooks`], over this loop's events and checkpoints.
pub type DynHooks<'h> = dyn for<'e> Hooks<Event<'e>, Checkpoint<'e>> + 'h;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A non-finite loss or gradient; the weights were not updated.
    #[error("{0}")]
    Diverged(String),
    /// A hook failed to keep a snapshot.
    #[error("{0}")]
    Hook(String),
}

/// Trains `model` (its trainable tensors are `opt`'s) from `state` until step `stop` (at most
/// `c.total_steps`), top to bottom:
///
/// 1. the step's sequences: the epoch's seeded permutation of the training set, cut into
///    micro-batches (length-grouped or `batch_size` each);
/// 2. dropout re-seeded from (seed, step), then one optimizer step ([`train_step`]);
/// 3. every `eval_every` steps and at the last, the validation loss; a new best is handed to
///    the hooks as [`Snapshot::Best`];
/// 4. the step's [`Event::Step`];
/// 5. every `checkpoint_every` steps, at the last and at `stop`, a [`Snapshot::Resume`].
///
/// Everything a resume needs is the state, the trainable weights and the optimizer moments, so
/// a run resumed from a snapshot continues exactly as the uninterrupted run.
#[allow(clippy::too_many_arguments)]
pub fn train(
    model: &Llama,
    opt: &mut AdamW,
    c: &LoopConfig,
    data: &TrainData,
    state: &mut TrainState,
    stop: usize,
    device: Device,
    hooks: &mut DynHooks<'_>,
) -> Result<(), TrainError> {
    let total = c.total_steps;
    let stop = stop.min(total);
    let per_step = c.per_step();
    let steps_per_epoch = c.steps_per_epoch(data.train.len());
    let (wall0, t_start) = (state.wall_s, std::time::Instant::now());
    while state.step < stop {
        let s = state.step;
        let (epoch, i) = (s / steps_per_epoch, s % steps_per_epoch);
        let order = epoch_order(data.train.len(), c.seed, epoch as u64);
        let idx = &order[i * per_step..((i + 1) * per_step).min(order.len())];
        let micro: Vec<Vec<&[i64]>> = if c.micro_batch_tokens > 0 {
            length_grouped(
                idx.iter().map(|&j| data.train[j].as_slice()).collect(),
                c.micro_batch_tokens,
            )
        } else {
            idx.chunks(c.batch_size.max(1))
                .map(|ch| ch.iter().map(|&j| data.train[j].as_slice()).collect())
                .collect()
        };
        tch::manual_seed((c.seed as i64).wrapping_add(s as i64));
        let t0 = std::time::Instant::now();
        let stats = train_step(model, opt, &c.optim, &micro, s, total, device)
            .map_err(TrainError::Diverged)?;
        let tokens_per_s = stats.tokens as f64 / t0.elapsed().as_secs_f64();
        state.step += 1;
        state.tokens += stats.tokens.max(0) as u64;
        state.wall_s = wall0 + t_start.elapsed().as_secs_f64();
        state.optimizer_t = opt.t;
        let last = state.step == total;
        let mut validation = None;
        if (state.step.is_multiple_of(c.eval_every) || last) && !data.valid.is_empty() {
            let (loss, label_loss) = eval_losses(
                model,
                &data.valid,
                Some(&data.valid_labels),
                c.batch_size,
                device,
            );
            let v = if c.select_by_labels {
                label_loss.unwrap_or(loss)
            } else {
                loss
            };
            let improved = state.best_val.is_none_or(|b| v < b);
            if improved {
                state.best_val = Some(v);
                state.best_step = Some(state.step);
                hooks
                    .checkpoint(&Checkpoint {
                        kind: Snapshot::Best,
                        state,
                        optimizer: opt,
                    })
                    .map_err(TrainError::Hook)?;
            }
            validation = Some(Validation {
                loss,
                label_loss,
                improved,
            });
        }
        hooks.event(Event::Step {
            stats: &stats,
            epoch: state.step as f64 / steps_per_epoch as f64,
            tokens_per_s,
            validation: validation.as_ref(),
            state,
        });
        if state.step.is_multiple_of(c.checkpoint_every) || last || state.step == stop {
            hooks
                .checkpoint(&Checkpoint {
                    kind: Snapshot::Resume,
                    state,
                    optimizer: opt,
                })
                .map_err(TrainError::Hook)?;
        }
    }
    Ok(())
}

/// Adds one trainable embedding and output row per label (the ids of the tokenizer's label
/// tokens) to `model`, in `store`, each initialised from its title's tokens under the same
/// tokenizer. Returns the first label token's id and the number of label tokens.
pub fn add_label_rows(
    model: &mut Llama,
    store: &tch::nn::VarStore,
    tok: &tokenizers::Tokenizer,
    renderer: &labor_text::Renderer,
    taxonomy: &labor_data::Taxonomy,
    init: crate::model::LabelInit,
) -> Result<(usize, usize), String> {
    let ids = labor_text::tokenize::label_marker_ids(tok, &renderer.continuations())
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the run's tokenizer has no label tokens".to_string())?;
    let titles = taxonomy
        .ids()
        .map(|id| {
            Ok(tok
                .encode(format!(" {}", renderer.title(id)), false)
                .map_err(|e| e.to_string())?
                .get_ids()
                .iter()
                .map(|&i| i as i64)
                .collect::<Vec<i64>>())
        })
        .collect::<Result<Vec<_>, String>>()?;
    let (embed, head) = model.label_rows_init(&titles, init)?;
    model.add_label_rows(&store.root(), ids[0] as i64, &embed, &head)?;
    Ok((ids[0] as usize, ids.len()))
}
