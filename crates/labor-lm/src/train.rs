//! Causal-LM training: batches of token sequences (right-padded, pads never trained on), one
//! optimizer step with gradient accumulation and clipping, and the held-out loss. The optimizer,
//! its schedule and the data order are `labor_torch`'s. [`train`] is the whole loop, readable top
//! to bottom; it writes no files (the caller keeps snapshots through its hooks).

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use labor_torch::hooks::Hooks;
use labor_torch::optim::{AdamW, OptimConfig, lr_at};
use labor_torch::order::{epoch_order, length_grouped_by};

use crate::model::Llama;

/// What training minimizes (`train.objective`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// The next-token loss on every token of every text (the paper's recipe).
    #[default]
    Text,
    /// The next-token loss only at the tokens of each record's label continuation.
    Labels,
    /// At each record's label position, the cross-entropy of the exact K-way softmax over the
    /// label set: what scoring measures (the normalized probability of the true label). Needs
    /// one token per label continuation (label tokens).
    LabelSoftmax,
}

impl std::fmt::Display for Objective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Objective::Text => "text",
            Objective::Labels => "labels",
            Objective::LabelSoftmax => "label-softmax",
        })
    }
}

/// The loss of a step: the objective, plus `text_weight` times the text loss (for `labels` and
/// `label-softmax`; each term is a mean over its own targets in the step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Loss {
    pub objective: Objective,
    pub text_weight: f64,
}

impl Default for Loss {
    fn default() -> Self {
        Self {
            objective: Objective::Text,
            text_weight: 0.0,
        }
    }
}

impl Loss {
    fn wants(&self) -> Want {
        let o = self.objective;
        Want {
            text: o == Objective::Text || self.text_weight > 0.0,
            labels: o == Objective::Labels,
            label_softmax: o == Objective::LabelSoftmax,
        }
    }
}

/// The label set of the `label-softmax` objective: the K token ids that each stand for one
/// label's continuation, in label order.
#[derive(Debug, Clone)]
pub struct LabelSet {
    ids: Vec<i64>,
    index: std::collections::HashMap<i64, i64>,
}

impl LabelSet {
    /// Errors when an id repeats.
    pub fn new(ids: Vec<i64>) -> Result<Self, String> {
        let mut index = std::collections::HashMap::with_capacity(ids.len());
        for (k, &id) in ids.iter().enumerate() {
            if index.insert(id, k as i64).is_some() {
                return Err(format!("token {id} stands for two labels"));
            }
        }
        Ok(Self { ids, index })
    }
    pub fn ids(&self) -> &[i64] {
        &self.ids
    }
    /// The label index of token `id`.
    pub fn position(&self, id: i64) -> Option<i64> {
        self.index.get(&id).copied()
    }
}

/// One training or validation sequence: its token ids and the indices `j` of its label tokens
/// (token `j` is the target of position `j − 1`).
#[derive(Debug, Clone, Copy)]
pub struct Example<'a> {
    pub ids: &'a [i64],
    pub labels: &'a [usize],
    /// The residual stream `[T, D]` entering the model's first trained layer, when kept from an
    /// earlier epoch ([`Llama::prefix`]); computed when needed otherwise.
    pub prefix: Option<&'a Tensor>,
}

impl<'a> Example<'a> {
    /// A sequence with its label positions.
    pub fn new(ids: &'a [i64], labels: &'a [usize]) -> Self {
        Self {
            ids,
            labels,
            prefix: None,
        }
    }
    /// A sequence trained on as text only.
    pub fn text(ids: &'a [i64]) -> Self {
        Self::new(ids, &[])
    }
    /// Label positions that have a target within the sequence.
    fn label_targets(&self) -> impl Iterator<Item = usize> + '_ {
        self.labels
            .iter()
            .copied()
            .filter(|&j| j >= 1 && j < self.ids.len())
    }
}

/// Which loss terms a batch computes.
#[derive(Debug, Clone, Copy)]
struct Want {
    text: bool,
    labels: bool,
    label_softmax: bool,
}

/// Summed loss terms of a right-padded batch and their target counts.
struct Parts {
    /// Next-token loss over every real target (pads and each sequence's last token have none).
    text: Option<Tensor>,
    text_n: i64,
    /// Next-token loss at the label tokens.
    labels: Option<Tensor>,
    /// K-way cross-entropy at the label positions.
    label_softmax: Option<Tensor>,
    label_n: i64,
}

/// The loss terms `want` asks for over one right-padded batch (`T` = its longest sequence, at
/// least 2): one forward pass to hidden states; the full vocabulary head only where a term needs
/// it (every position for the text loss, the label positions for the label-token loss), the K
/// label rows alone for the K-way softmax.
fn batch_parts(
    model: &Llama,
    batch: &[Example],
    want: Want,
    set: Option<&LabelSet>,
    device: Device,
) -> Result<Parts, String> {
    let t = batch.iter().map(|s| s.ids.len()).max().unwrap_or(0).max(2);
    let b = batch.len();
    let mut ids = vec![0i64; b * t];
    let mut targets = vec![-100i64; b * t];
    let mut text_n = 0i64;
    let (mut pos, mut tgt) = (Vec::new(), Vec::new());
    for (i, ex) in batch.iter().enumerate() {
        let s = ex.ids;
        ids[i * t..i * t + s.len()].copy_from_slice(s);
        for j in 0..s.len().saturating_sub(1) {
            targets[i * t + j] = s[j + 1];
            text_n += 1;
        }
        for j in ex.label_targets() {
            pos.push((i * t + j - 1) as i64);
            tgt.push(s[j]);
        }
    }
    let hidden = match model.frozen_prefix() {
        0 => {
            let ids = Tensor::from_slice(&ids)
                .view([b as i64, t as i64])
                .to_device(device);
            let positions = Tensor::arange(t as i64, (Kind::Int64, device))
                .unsqueeze(0)
                .expand([b as i64, t as i64], false);
            model.hidden(&ids, &positions, None, crate::model::Mask::Causal)
        }
        n => model.hidden_from(&padded_prefixes(model, batch, n, t as i64), n),
    };
    let sum = tch::Reduction::Sum;
    let text = want.text.then(|| {
        let logits = model.logits(&hidden);
        let v = logits.size()[2];
        logits.view([-1, v]).cross_entropy_loss::<Tensor>(
            &Tensor::from_slice(&targets).to_device(device),
            None,
            sum,
            -100,
            0.0,
        )
    });
    let (mut labels, mut label_softmax) = (None, None);
    if (want.labels || want.label_softmax) && !pos.is_empty() {
        let d = hidden.size()[2];
        let h = hidden
            .view([-1, d])
            .index_select(0, &Tensor::from_slice(&pos).to_device(device));
        if want.labels {
            labels = Some(model.logits(&h).cross_entropy_loss::<Tensor>(
                &Tensor::from_slice(&tgt).to_device(device),
                None,
                sum,
                -100,
                0.0,
            ));
        }
        if want.label_softmax {
            let set = set.ok_or("the label-softmax objective needs the label set")?;
            let k = tgt
                .iter()
                .map(|&id| {
                    set.position(id).ok_or_else(|| {
                        format!("token {id} at a label position is not one of the K label tokens")
                    })
                })
                .collect::<Result<Vec<i64>, String>>()?;
            label_softmax = Some(model.logits_at(&h, set.ids()).cross_entropy_loss::<Tensor>(
                &Tensor::from_slice(&k).to_device(device),
                None,
                sum,
                -100,
                0.0,
            ));
        }
    }
    Ok(Parts {
        text,
        text_n,
        labels,
        label_softmax,
        label_n: pos.len() as i64,
    })
}

/// The residual streams entering layer `n` of a batch's sequences (kept or computed one
/// sequence at a time), right-padded with zeros to `[B, t, D]`.
fn padded_prefixes(model: &Llama, batch: &[Example], n: usize, t: i64) -> Tensor {
    let rows: Vec<Tensor> = batch
        .iter()
        .map(|ex| {
            let x = match ex.prefix {
                Some(x) => x.shallow_clone(),
                None => model.prefix(ex.ids, n),
            };
            let pad = t - x.size()[0];
            if pad > 0 {
                x.constant_pad_nd([0, 0, 0, pad])
            } else {
                x
            }
        })
        .collect();
    Tensor::stack(&rows, 0)
}

/// Sum of the next-token cross-entropy over every real (non-pad) target of a right-padded batch,
/// and the number of those targets. Sequences of one token have no target.
pub fn lm_loss_sum(model: &Llama, seqs: &[&[i64]], device: Device) -> (Tensor, i64) {
    let batch: Vec<Example> = seqs.iter().map(|s| Example::text(s)).collect();
    let want = Want {
        text: true,
        labels: false,
        label_softmax: false,
    };
    let p = batch_parts(model, &batch, want, None, device).expect("the text loss needs no labels");
    (p.text.expect("asked for"), p.text_n)
}

/// Mean next-token loss over `seqs` (no gradients, no dropout), in batches of `batch`.
pub fn eval_loss(model: &Llama, seqs: &[Vec<i64>], batch: usize, device: Device) -> f64 {
    let ex: Vec<Example> = seqs.iter().map(|s| Example::text(s)).collect();
    eval_objectives(model, &ex, None, batch, device)
        .expect("the text loss needs no labels")
        .text
}

/// Held-out losses, each the mean over its own targets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Losses {
    /// Next-token loss over every token.
    pub text: f64,
    /// Next-token loss at the label tokens (when the examples have label positions).
    pub labels: Option<f64>,
    /// K-way cross-entropy at the label positions (with a label set): minus the mean normalized
    /// log-probability of the true label, what scoring measures.
    pub label_softmax: Option<f64>,
}

/// Every loss of `examples` (no gradients, no dropout), in batches of `batch`: one forward pass
/// per batch serves all of them.
pub fn eval_objectives(
    model: &Llama,
    examples: &[Example],
    set: Option<&LabelSet>,
    batch: usize,
    device: Device,
) -> Result<Losses, String> {
    model.set_training(false);
    let want = Want {
        text: true,
        labels: true,
        label_softmax: set.is_some(),
    };
    tch::no_grad(|| {
        let (mut text, mut text_n) = (0.0, 0i64);
        let (mut labels, mut kway, mut label_n) = (0.0, 0.0, 0i64);
        for chunk in examples.chunks(batch.max(1)) {
            let p = batch_parts(model, chunk, want, set, device)?;
            let v = |t: &Option<Tensor>| t.as_ref().map_or(0.0, |t| t.double_value(&[]));
            text += v(&p.text);
            text_n += p.text_n;
            labels += v(&p.labels);
            kway += v(&p.label_softmax);
            label_n += p.label_n;
        }
        let has_labels = label_n > 0;
        Ok(Losses {
            text: text / text_n.max(1) as f64,
            labels: has_labels.then(|| labels / label_n as f64),
            label_softmax: (has_labels && set.is_some()).then(|| kway / label_n as f64),
        })
    })
}

/// What one optimizer step did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepStats {
    pub step: usize,
    /// The step's loss under the run's objective.
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    /// Next-token targets the step's batches held (the work, whatever the objective).
    pub tokens: i64,
}

/// One optimizer step of the text objective over `micro` batches (gradient accumulation): the
/// loss is the mean over every real target token of all micro-batches. Errors on a non-finite
/// loss before updating.
pub fn train_step(
    model: &Llama,
    opt: &mut AdamW,
    c: &OptimConfig,
    micro: &[Vec<&[i64]>],
    step: usize,
    total: usize,
    device: Device,
) -> Result<StepStats, String> {
    let micro: Vec<Vec<Example>> = micro
        .iter()
        .map(|b| b.iter().map(|s| Example::text(s)).collect())
        .collect();
    train_step_with(
        model,
        opt,
        c,
        &Loss::default(),
        None,
        &micro,
        step,
        total,
        device,
    )
}

/// One optimizer step of `loss` over `micro` batches (gradient accumulation): each term is the
/// mean over its targets in the whole step, so the grouping changes the work, not the update.
/// Errors on a non-finite loss or gradient before updating.
#[allow(clippy::too_many_arguments)]
pub fn train_step_with(
    model: &Llama,
    opt: &mut AdamW,
    c: &OptimConfig,
    loss: &Loss,
    set: Option<&LabelSet>,
    micro: &[Vec<Example>],
    step: usize,
    total: usize,
    device: Device,
) -> Result<StepStats, String> {
    let examples = || micro.iter().flatten();
    let tokens: i64 = examples()
        .map(|e| e.ids.len().saturating_sub(1) as i64)
        .sum();
    let label_n: usize = examples().map(|e| e.label_targets().count()).sum();
    let want = loss.wants();
    opt.zero_grad();
    let mut loss_sum = 0.0;
    model.set_training(true);
    for batch in micro {
        let p = batch_parts(model, batch, want, set, device)?;
        let main = match loss.objective {
            Objective::Text => p.text.as_ref(),
            Objective::Labels => p.labels.as_ref(),
            Objective::LabelSoftmax => p.label_softmax.as_ref(),
        };
        let main_n = if loss.objective == Objective::Text {
            tokens
        } else {
            label_n as i64
        };
        let mut terms = Vec::new();
        if let Some(m) = main {
            terms.push(m / main_n.max(1) as f64);
        }
        if loss.objective != Objective::Text
            && loss.text_weight > 0.0
            && let Some(t) = &p.text
        {
            terms.push(t * (loss.text_weight / tokens.max(1) as f64));
        }
        let Some(first) = terms.pop() else { continue };
        let l = terms.iter().fold(first, |a, t| a + t);
        l.backward();
        loss_sum += l.double_value(&[]);
    }
    model.set_training(false);
    let loss = loss_sum;
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

/// Token ids of texts, the indices of their label tokens, and the number of texts that were cut.
pub type Tokenized = (Vec<Vec<i64>>, Vec<Vec<usize>>, usize);

/// Token ids of rendered texts (each followed by `eos` when given, cut at `max` tokens) with the
/// indices of their label-continuation tokens, and the number of texts that were cut.
pub fn tokenize_rendered(
    tok: &tokenizers::Tokenizer,
    rendered: &[labor_text::Rendered],
    max: usize,
    eos: Option<u32>,
) -> Result<Tokenized, String> {
    let texts: Vec<String> = rendered.iter().map(|r| r.text.clone()).collect();
    let (ids, truncated) = tokenize_texts(tok, &texts, max, eos)?;
    let labels = rendered
        .iter()
        .zip(&ids)
        .map(|(r, ids)| {
            let mut l = label_token_indices(tok, r)?;
            l.retain(|&j| j < ids.len());
            Ok(l)
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok((ids, labels, truncated))
}

/// The label set of a tokenizer: the token of each continuation (in label order) when every
/// continuation is exactly one token, else `None`.
pub fn label_set(
    tok: &tokenizers::Tokenizer,
    continuations: &[String],
) -> Result<Option<LabelSet>, String> {
    let mut ids = Vec::with_capacity(continuations.len());
    for c in continuations {
        let enc = tok.encode(c.as_str(), false).map_err(|e| e.to_string())?;
        match enc.get_ids() {
            [id] => ids.push(*id as i64),
            _ => return Ok(None),
        }
    }
    LabelSet::new(ids).map(Some)
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
    /// What a step minimizes.
    pub loss: Loss,
    /// Which validation loss picks the best step.
    pub select: Select,
    /// With a frozen prefix ([`Llama::set_frozen_prefix`]): bytes of prefix outputs kept
    /// between epochs (the first sequences to need one, until full; the rest are computed
    /// again each time). Exact: a kept output is the bits a new computation gives. 0: none.
    pub prefix_cache_bytes: usize,
    /// What happens to the output rows of added label tokens ([`crate::model::LabelRows`])
    /// whose label is never a training target.
    pub absent_labels: AbsentLabels,
}

/// The output rows of added label tokens whose label no training sequence has as a target
/// (`model.absent_labels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AbsentLabels {
    /// Held at their initial values: put back after every optimizer step, so that neither the
    /// softmax's steady push down on a label that never occurs (which Adam turns into
    /// full-size steps) nor weight decay moves them. Exact: they are the initial bits.
    #[default]
    Hold,
    /// Trained like every other row.
    Train,
}

/// Which validation loss picks the best step (`train.select`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Select {
    /// The next-token loss over every token.
    All,
    /// The next-token loss at the label tokens.
    Labels,
    /// The K-way cross-entropy at the label positions.
    LabelSoftmax,
}

impl Select {
    /// The loss this selects from a validation pass (`text` when it is missing).
    pub fn of(&self, l: &Losses) -> f64 {
        match self {
            Select::All => l.text,
            Select::Labels => l.labels.unwrap_or(l.text),
            Select::LabelSoftmax => l.label_softmax.or(l.labels).unwrap_or(l.text),
        }
    }
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
    /// For each training sequence, the indices of its label tokens (empty lists train as text
    /// only; needed by the `labels` and `label-softmax` objectives).
    pub train_labels: Vec<Vec<usize>>,
    pub valid: Vec<Vec<i64>>,
    /// For each validation sequence, the indices of its label tokens.
    pub valid_labels: Vec<Vec<usize>>,
    /// The K label tokens, when each label continuation is one token.
    pub label_set: Option<LabelSet>,
}

impl TrainData {
    /// Text-only data: no label positions, no label set.
    pub fn text(train: Vec<Vec<i64>>, valid: Vec<Vec<i64>>) -> Self {
        let (nt, nv) = (train.len(), valid.len());
        Self {
            train,
            train_labels: vec![Vec::new(); nt],
            valid,
            valid_labels: vec![Vec::new(); nv],
            label_set: None,
        }
    }
    /// Training sequence `i` with its label positions.
    pub fn train_example(&self, i: usize) -> Example<'_> {
        Example::new(
            &self.train[i],
            self.train_labels.get(i).map_or(&[], Vec::as_slice),
        )
    }
    /// Checks that `loss` can be trained on this data: label positions for the label
    /// objectives, and for `label-softmax` a label set holding every label token.
    pub fn check(&self, loss: &Loss) -> Result<(), String> {
        if loss.objective == Objective::Text {
            return Ok(());
        }
        let examples = (0..self.train.len())
            .map(|i| self.train_example(i))
            .chain(self.valid_examples());
        let mut n = 0usize;
        for e in examples {
            for j in e.label_targets() {
                n += 1;
                if loss.objective == Objective::LabelSoftmax {
                    let set = self.label_set.as_ref().ok_or(
                        "the label-softmax objective needs one token per label (label tokens)",
                    )?;
                    if set.position(e.ids[j]).is_none() {
                        return Err(format!(
                            "token {} at a label position is not one of the {} label tokens",
                            e.ids[j],
                            set.ids().len()
                        ));
                    }
                }
            }
        }
        if n == 0 {
            return Err(format!(
                "the {} objective needs label positions, and the data has none",
                loss.objective
            ));
        }
        Ok(())
    }

    /// The validation sequences with their label positions.
    pub fn valid_examples(&self) -> Vec<Example<'_>> {
        (0..self.valid.len())
            .map(|i| {
                Example::new(
                    &self.valid[i],
                    self.valid_labels.get(i).map_or(&[], Vec::as_slice),
                )
            })
            .collect()
    }
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
    /// The K-way cross-entropy at the label positions (with a label set).
    pub label_softmax_loss: Option<f64>,
    /// The loss that selects the best step.
    pub selected: f64,
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
    /// The data cannot be trained on with the run's objective (checked before the first step).
    #[error("{0}")]
    Data(String),
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
    data.check(&c.loss).map_err(TrainError::Data)?;
    let mut kept = PrefixCache::new(model, c.prefix_cache_bytes);
    let held = match c.absent_labels {
        AbsentLabels::Hold => HeldRows::new(model, &absent_label_rows(model, data)),
        AbsentLabels::Train => None,
    };
    while state.step < stop {
        let s = state.step;
        let (epoch, i) = (s / steps_per_epoch, s % steps_per_epoch);
        let order = epoch_order(data.train.len(), c.seed, epoch as u64);
        let idx = &order[i * per_step..((i + 1) * per_step).min(order.len())];
        // The step's time includes computing (and keeping) frozen-prefix outputs.
        let t0 = std::time::Instant::now();
        for &j in idx {
            kept.fill(model, j, &data.train[j]);
        }
        let example = |j: usize| Example {
            prefix: kept.get(j),
            ..data.train_example(j)
        };
        let micro: Vec<Vec<Example>> = if c.micro_batch_tokens > 0 {
            length_grouped_by(
                idx.iter().map(|&j| example(j)).collect(),
                |e| e.ids.len(),
                c.micro_batch_tokens,
            )
        } else {
            idx.chunks(c.batch_size.max(1))
                .map(|ch| ch.iter().map(|&j| example(j)).collect())
                .collect()
        };
        tch::manual_seed((c.seed as i64).wrapping_add(s as i64));
        let stats = train_step_with(
            model,
            opt,
            &c.optim,
            &c.loss,
            data.label_set.as_ref(),
            &micro,
            s,
            total,
            device,
        )
        .map_err(TrainError::Diverged)?;
        if let Some(h) = &held {
            h.restore(model);
        }
        let tokens_per_s = stats.tokens as f64 / t0.elapsed().as_secs_f64();
        state.step += 1;
        state.tokens += stats.tokens.max(0) as u64;
        state.wall_s = wall0 + t_start.elapsed().as_secs_f64();
        state.optimizer_t = opt.t;
        let last = state.step == total;
        let mut validation = None;
        if (state.step.is_multiple_of(c.eval_every) || last) && !data.valid.is_empty() {
            let losses = eval_objectives(
                model,
                &data.valid_examples(),
                data.label_set.as_ref(),
                c.batch_size,
                device,
            )
            .map_err(TrainError::Data)?;
            let v = c.select.of(&losses);
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
                loss: losses.text,
                label_loss: losses.labels,
                label_softmax_loss: losses.label_softmax,
                selected: v,
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

/// The rows (indices `0..K` of [`crate::model::LabelRows`]) of the added label tokens that
/// occur in no training sequence after its first token, i.e. whose label is never a target of
/// any objective. Empty without label rows.
pub fn absent_label_rows(model: &Llama, data: &TrainData) -> Vec<i64> {
    let Some(r) = &model.label_rows else {
        return Vec::new();
    };
    let k = r.head.size()[0];
    let mut seen = vec![false; k as usize];
    for seq in &data.train {
        for &id in seq.iter().skip(1) {
            let i = id - r.first;
            if (0..k).contains(&i) {
                seen[i as usize] = true;
            }
        }
    }
    (0..k).filter(|&i| !seen[i as usize]).collect()
}

/// Label output rows put back to the values they had when the loop started.
struct HeldRows {
    idx: Tensor,
    values: Tensor,
}

impl HeldRows {
    fn new(model: &Llama, rows: &[i64]) -> Option<Self> {
        let r = model.label_rows.as_ref()?;
        if rows.is_empty() {
            return None;
        }
        let idx = Tensor::from_slice(rows).to_device(r.head.device());
        let values = tch::no_grad(|| r.head.index_select(0, &idx).detach().copy());
        Some(Self { idx, values })
    }

    fn restore(&self, model: &Llama) {
        if let Some(r) = &model.label_rows {
            tch::no_grad(|| {
                let _ = r
                    .head
                    .shallow_clone()
                    .index_copy_(0, &self.idx, &self.values);
            });
        }
    }
}

/// Frozen-prefix outputs kept between epochs, by training sequence, within a byte budget.
struct PrefixCache {
    layers: usize,
    budget: usize,
    used: usize,
    kept: std::collections::HashMap<usize, Tensor>,
}

impl PrefixCache {
    fn new(model: &Llama, budget: usize) -> Self {
        Self {
            layers: model.frozen_prefix(),
            budget,
            used: 0,
            kept: Default::default(),
        }
    }

    /// Keeps sequence `j`'s prefix output if there is a frozen prefix and room for it.
    fn fill(&mut self, model: &Llama, j: usize, ids: &[i64]) {
        if self.layers == 0 || self.kept.contains_key(&j) {
            return;
        }
        let d = model.config.hidden_size;
        let bytes = ids.len() * d * 4;
        if self.used + bytes > self.budget {
            return;
        }
        let x = model.prefix(ids, self.layers);
        self.used += x.numel() * x.kind().elt_size_in_bytes();
        self.kept.insert(j, x);
    }

    fn get(&self, j: usize) -> Option<&Tensor> {
        self.kept.get(&j)
    }
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
    train_embed: bool,
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
    model.add_label_rows(&store.root(), ids[0] as i64, &embed, &head, train_embed)?;
    Ok((ids[0] as usize, ids.len()))
}
