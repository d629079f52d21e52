//! `labor train --config run.toml [key=value ...] --out RUN_DIR` and `labor train --resume RUN_DIR`.
//!
//! A run directory holds `config.toml` (resolved, with the total number of steps), `template.toml`,
//! `tokenizer.json`, `metrics.jsonl` (one JSON object per step and per validation),
//! `checkpoints/step-NNNNNNN/` (weights, optimizer moments, `state.json`; written to a temporary
//! directory and renamed, so a killed run resumes from its last complete checkpoint), `best/`
//! (the lowest validation loss, a model directory `labor score` reads) and `final/`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, anyhow};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use labor_data::{Panel, Person, Split, SplitSpec};
use labor_lm::train::{
    Checkpoint, Event, LoopConfig, Snapshot, TrainData, TrainState, tokenize_rendered,
};
use labor_lm::{Llama, LoraConfig};
use labor_text::{Renderer, Switches, Template};
use labor_torch::hooks::Hooks;
use labor_torch::optim::{AdamW, OptimConfig};
use labor_torch::weights;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor, nn::VarStore};

use crate::io::{CmdResult, PanelInput, load_panel, write_atomic};
use crate::lm::{InitConfig, load_model, save_model};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Run description (TOML); see docs/train.md.
    #[arg(long, required_unless_present = "resume")]
    pub config: Option<PathBuf>,
    /// Run directory to create.
    #[arg(long, required_unless_present = "resume")]
    pub out: Option<PathBuf>,
    /// Continue the run in this directory from its last complete checkpoint.
    #[arg(long, conflicts_with_all = ["config", "out"])]
    pub resume: Option<PathBuf>,
    /// Start over when `--out` already holds a run: its previous contents are removed first.
    #[arg(long, requires = "out")]
    pub restart: bool,
    /// Stop after this many optimizer steps in this invocation (the run stays resumable).
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Train even when a training corpus (the panels, replay or tokenizer panels) holds
    /// validation or test persons of `data.panels` or `data.held_out`: a warning instead of exit 2
    /// (the same as `data.allow_overlap = true`, which the run's config then records).
    #[arg(long)]
    pub allow_overlap: bool,
    /// Overrides of the config, e.g. `optim.lr=1e-3 train.batch_size=4`.
    pub overrides: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub model: ModelSection,
    pub data: DataSection,
    #[serde(default)]
    pub method: MethodSection,
    pub optim: OptimConfig,
    pub train: TrainSection,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// A Hugging Face model directory to start from.
    pub base: Option<PathBuf>,
    /// Or a from-scratch model of this shape, with a BPE tokenizer trained on the training texts.
    pub scratch: Option<InitConfig>,
    /// Vocabulary size of the from-scratch tokenizer.
    #[serde(default = "vocab")]
    pub vocab_size: usize,
    /// Pre-tokenization of the from-scratch tokenizer: `byte-level` or `segments`.
    #[serde(default)]
    pub pre_tokenize: labor_text::tokenize::PreTokenize,
    /// One token per label. From scratch (default on): every label's continuation (its title
    /// and its numeric code, so every template switch is covered) is one token of the trained
    /// tokenizer, whatever the corpus holds; the BPE learns only the rest of the text. On a
    /// pre-trained base (default off): the base tokenizer gets one added token per label,
    /// written before the title in every record line (`YEAR (EDU):<|label:CODE|> Title`), with
    /// new trainable embedding and output rows initialised from the title's own tokens; a
    /// record is then scored in one step with an exact K-way softmax. `false`: titles are
    /// the tokenizer's pieces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_tokens: Option<bool>,
    /// With label tokens on a pre-trained base: how each label's output row starts.
    /// `first-token` (default): the row of the title's first token. `title-mean`: the mean of
    /// the rows of all its tokens (a distinct row per label).
    #[serde(default, skip_serializing_if = "is_default")]
    pub label_init: labor_lm::model::LabelInit,
    /// With label tokens on a pre-trained base: the output rows of labels that are never a
    /// training target. `hold` (default): kept at their initial values (otherwise the softmax
    /// pushes them down at every step, under Adam by full-size steps, and a test worker who
    /// stays in such a label gets almost no probability of staying). `train`: trained like
    /// the others.
    #[serde(default, skip_serializing_if = "is_default")]
    pub absent_labels: labor_lm::train::AbsentLabels,
    /// More panels whose training-split texts the from-scratch tokenizer also learns from (not
    /// the model), e.g. the surveys when the base is pre-trained on a resume corpus.
    #[serde(default)]
    pub tokenizer_panels: Vec<PathBuf>,
}

impl ModelSection {
    /// Whether the run uses label tokens (see `label_tokens`; the default depends on the base).
    pub fn label_tokens(&self) -> bool {
        self.label_tokens.unwrap_or(self.base.is_none())
    }
}

fn vocab() -> usize {
    4096
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// One panel, or several pooled into one training set (same taxonomy).
    pub panels: Vec<PathBuf>,
    pub taxonomy: Option<PathBuf>,
    #[serde(default = "template")]
    pub template: String,
    #[serde(default)]
    pub switches: Switches,
    #[serde(default = "split_seed")]
    pub split_seed: u64,
    /// Train on this fraction of the training-split persons (an ablation of SPEC §7): a person
    /// is kept when a hash of (dataset, person id) falls below it, so smaller fractions are
    /// subsets of larger ones. Validation and test persons are unaffected.
    #[serde(default = "one_f")]
    pub train_fraction: f64,
    /// Panels whose training-split texts are mixed into the training set (never validated on):
    /// replaying the pre-training corpus while fine-tuning on a small survey.
    #[serde(default)]
    pub replay: Vec<PathBuf>,
    /// Panels the model will be evaluated on beside `data.panels`: no training corpus of the run
    /// may hold one of their validation or test persons (a pre-training run names the surveys).
    #[serde(default)]
    pub held_out: Vec<PathBuf>,
    /// Train even when a training corpus holds held-out persons (warns instead of refusing).
    #[serde(default)]
    pub allow_overlap: bool,
}

fn template() -> String {
    "labor-v1".into()
}
fn split_seed() -> u64 {
    labor_data::split::DEFAULT_SPLIT_SEED
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodSection {
    /// `full` (every weight trains) or `lora` (only adapters train; the base stays frozen).
    #[serde(default = "full")]
    pub kind: String,
    /// LoRA rank, alpha, dropout and target modules.
    #[serde(default = "rank")]
    pub rank: usize,
    #[serde(default = "alpha")]
    pub alpha: f64,
    #[serde(default)]
    pub dropout: f64,
    #[serde(default = "targets")]
    pub targets: Vec<String>,
    /// Train only the top N layers: LoRA adapters on them alone (PEFT's `layers_to_transform`),
    /// or for `full` only their weights. Everything below (the layers, the input embeddings and
    /// a head tied to them, the label tokens' input rows) stays as it starts, and training runs
    /// it without autograd (`train.prefix_cache_mb`). Default: every layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_layers: Option<usize>,
}

fn rank() -> usize {
    8
}
fn alpha() -> f64 {
    16.0
}
fn targets() -> Vec<String> {
    ["q_proj", "k_proj", "v_proj", "o_proj"]
        .map(String::from)
        .to_vec()
}

fn full() -> String {
    "full".into()
}

impl Default for MethodSection {
    fn default() -> Self {
        Self {
            kind: full(),
            rank: rank(),
            alpha: alpha(),
            dropout: 0.0,
            targets: targets(),
            top_layers: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    #[serde(default = "one_f")]
    pub epochs: f64,
    /// Total optimizer steps (default: from the epochs); resolved into the run's config.
    pub total_steps: Option<usize>,
    #[serde(default = "eight")]
    pub batch_size: usize,
    #[serde(default = "one")]
    pub grad_accum: usize,
    /// Each step's `batch_size · grad_accum` texts are sorted by length and run as micro-batches
    /// of at most this many padded tokens (texts × the longest), so short texts are not padded
    /// to the longest of the step. The step's loss and update are the same whatever the
    /// grouping; only the work and the memory change. 0: micro-batches of `batch_size` texts in
    /// the shuffled order.
    #[serde(default = "micro_tokens")]
    pub micro_batch_tokens: usize,
    #[serde(default = "seq")]
    pub max_seq_len: usize,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "fifty")]
    pub eval_every: usize,
    /// Validation texts used for the validation loss (the first ones of the valid split).
    #[serde(default = "evals")]
    pub eval_texts: usize,
    #[serde(default = "fifty")]
    pub checkpoint_every: usize,
    #[serde(default = "auto")]
    pub device: String,
    /// `auto` (bf16 mixed precision on CUDA, f32 on CPU), `f32` or `bf16` (f32 weights and
    /// optimizer, matrix products and attention in bf16).
    #[serde(default = "auto")]
    pub precision: String,
    /// What a step minimizes: `text` (the next-token loss on every token, the paper's recipe),
    /// `labels` (the next-token loss at the label-continuation tokens only) or `label-softmax`
    /// (the cross-entropy of the exact K-way softmax over the label set at each label position;
    /// needs label tokens).
    #[serde(default)]
    pub objective: labor_lm::train::Objective,
    /// With `labels` or `label-softmax`: plus this weight times the text loss.
    #[serde(default, skip_serializing_if = "is_default")]
    pub text_loss_weight: f64,
    /// Which validation loss picks `best/`: `objective` (default: `label-softmax` under that
    /// objective, else `labels`), `labels` (the mean loss of the label-continuation tokens),
    /// `label-softmax` (the K-way loss: minus the mean normalized log-probability of the true
    /// label) or `all` (every token, header and years included).
    #[serde(default = "objective")]
    pub select: String,
    /// Residual dropout while training (embeddings and every block's output; with
    /// `method.top_layers` the trained layers' only); 0: none. A regularizer for small surveys:
    /// scoring never drops anything.
    #[serde(default)]
    pub dropout: f64,
    /// With `method.top_layers`: megabytes of the frozen layers' outputs (f32, 4 · width bytes
    /// a token) kept between epochs, for the first texts to need them. Exact: a kept output is
    /// what computing it again gives, bit for bit. 0: computed again every time.
    #[serde(default = "prefix_cache_mb")]
    pub prefix_cache_mb: usize,
}

fn prefix_cache_mb() -> usize {
    4096
}

fn objective() -> String {
    "objective".into()
}

fn one_f() -> f64 {
    1.0
}
fn one() -> usize {
    1
}
fn micro_tokens() -> usize {
    2048
}
fn eight() -> usize {
    8
}
fn seq() -> usize {
    1024
}
fn fifty() -> usize {
    50
}
fn evals() -> usize {
    256
}
fn auto() -> String {
    "auto".into()
}

/// Applies `a.b.c=value` overrides to a TOML document (values parsed as TOML, else strings).
fn apply_overrides(doc: &mut toml::Table, overrides: &[String]) -> anyhow::Result<()> {
    for o in overrides {
        let (key, value) = o
            .split_once('=')
            .ok_or_else(|| anyhow!("override {o:?}: expected KEY=VALUE, e.g. optim.lr=1e-3"))?;
        let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        let parts: Vec<&str> = key.split('.').collect();
        let mut table = &mut *doc;
        for p in &parts[..parts.len() - 1] {
            table = table
                .entry(p.to_string())
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .ok_or_else(|| anyhow!("override {o:?}: `{p}` is not a table"))?;
        }
        table.insert(parts[parts.len() - 1].to_string(), value);
    }
    Ok(())
}

/// Checkpoint bookkeeping (`state.json`).
/// How the run's panels are read: the run's taxonomy, nothing added.
fn panel_input(c: &RunConfig) -> PanelInput {
    PanelInput {
        taxonomy: c.data.taxonomy.clone(),
        add_unknown_labels: false,
        from: None,
        dataset: "career".into(),
    }
}

/// The panels' file names, joined, for messages.
fn names(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join("+")
}

/// The validation and test persons of the run's panels and of `data.held_out`.
fn held_out(
    c: &RunConfig,
    panel: &Panel,
    spec: &SplitSpec,
) -> CmdResult<labor_data::overlap::HeldOut> {
    let mut held = labor_data::overlap::HeldOut::new();
    held.add(panel, spec);
    for p in &c.data.held_out {
        held.add(&load_panel(p, &panel_input(c))?.0, spec);
    }
    Ok(held)
}

fn load_panels(c: &RunConfig) -> CmdResult<Panel> {
    let input = panel_input(c);
    let mut pooled: Option<Panel> = None;
    for p in &c.data.panels {
        let (panel, _) = load_panel(p, &input)?;
        match &mut pooled {
            None => pooled = Some(panel),
            Some(acc) => acc.persons.extend(panel.persons),
        }
    }
    pooled.ok_or_else(|| anyhow!("data.panels is empty: name at least one panel").into())
}

fn template_of(c: &RunConfig) -> anyhow::Result<Template> {
    if let Some(t) = Template::builtin(&c.data.template) {
        return Ok(t);
    }
    let text = std::fs::read_to_string(&c.data.template).with_context(|| {
        format!(
            "no built-in template {:?} and no such file",
            c.data.template
        )
    })?;
    Template::from_toml(&text)
        .map_err(|e| anyhow!(crate::io::InvalidInput(format!("{}: {e}", c.data.template))))
}

fn texts(panel: &Panel, r: &Renderer, spec: &SplitSpec, split: Split) -> Vec<labor_text::Rendered> {
    panel
        .persons
        .iter()
        .filter(|p: &&Person| p.split_or(spec) == split)
        .map(|p| r.render(p, &panel.taxonomy))
        .collect()
}

/// Every label continuation a template can write for a taxonomy: titles and numeric codes.
pub fn all_continuations(
    template: &Template,
    switches: Switches,
    taxonomy: &labor_data::Taxonomy,
) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for codes in [false, true] {
        let sw = Switches {
            numeric_codes: codes,
            ..switches
        };
        out.extend(
            Renderer::new(template, sw, taxonomy)
                .map_err(|e| anyhow!(e))?
                .continuations(),
        );
    }
    Ok(out)
}

/// The tokenizer of a from-scratch model: a BPE on the training texts of the run's panels and of
/// `model.tokenizer_panels`, plus (by default) one token per label continuation.
fn scratch_tokenizer(
    c: &RunConfig,
    panel: &Panel,
    template: &Template,
    renderer: &Renderer,
    spec: &SplitSpec,
    held: &labor_data::overlap::HeldOut,
) -> CmdResult<tokenizers::Tokenizer> {
    let mut extra = Vec::new();
    for p in &c.model.tokenizer_panels {
        let input = panel_input(c);
        let tp = load_panel(p, &input)?.0;
        crate::io::check_overlap(
            &format!("model.tokenizer_panels {}", p.display()),
            &tp,
            spec,
            &[Split::Train],
            held,
            c.data.allow_overlap,
        )?;
        extra.push(tp);
    }
    let corpus: Vec<String> = std::iter::once(panel)
        .chain(extra.iter())
        .flat_map(|p| {
            p.persons
                .iter()
                .filter(|x| x.split_or(spec) == Split::Train)
                .map(|x| {
                    let r = renderer.render(x, &p.taxonomy);
                    if c.model.label_tokens() {
                        r.without_continuations()
                    } else {
                        r.text
                    }
                })
        })
        .collect();
    eprintln!(
        "training a {}-token {} BPE tokenizer on {} texts{}",
        c.model.vocab_size,
        c.model.pre_tokenize,
        corpus.len(),
        if c.model.label_tokens() {
            " (plus one token per label)"
        } else {
            ""
        }
    );
    let mut tok = labor_text::tokenize::train_bpe(
        corpus.iter().map(String::as_str),
        c.model.vocab_size,
        &template.terminator,
        c.model.pre_tokenize,
    )
    .map_err(|e| anyhow!("{e}"))?;
    if c.model.label_tokens() {
        let conts = all_continuations(template, c.data.switches, &panel.taxonomy)?;
        labor_text::tokenize::add_label_tokens(&mut tok, &conts).map_err(|e| anyhow!("{e}"))?;
    }
    Ok(tok)
}

pub fn run(a: &TrainArgs) -> CmdResult {
    let run_t0 = Instant::now();
    let (dir, config, resuming) = match (&a.resume, &a.config, &a.out) {
        (Some(dir), _, _) => {
            let text = std::fs::read_to_string(dir.join("config.toml")).with_context(|| {
                format!("{}: not a run directory (no config.toml)", dir.display())
            })?;
            let c: RunConfig = toml::from_str(&text).map_err(|e| {
                anyhow!(crate::io::InvalidInput(format!(
                    "{}: {e}",
                    dir.join("config.toml").display()
                )))
            })?;
            (dir.clone(), c, true)
        }
        (None, Some(cfg), Some(out)) => {
            let text = std::fs::read_to_string(cfg)
                .with_context(|| format!("cannot read {}", cfg.display()))?;
            let mut doc: toml::Table = toml::from_str(&text)
                .map_err(|e| anyhow!(crate::io::InvalidInput(format!("{}: {e}", cfg.display()))))?;
            apply_overrides(&mut doc, &a.overrides)?;
            let c: RunConfig = toml::Value::Table(doc)
                .try_into()
                .map_err(|e| anyhow!(crate::io::InvalidInput(format!("{}: {e}", cfg.display()))))?;
            if out.join("config.toml").exists() && !a.restart {
                return Err(anyhow!("{} already holds a run: continue it with --resume {0}, start over with --restart, or choose another --out", out.display()).into());
            }
            (out.clone(), c, false)
        }
        _ => unreachable!("clap requires --config and --out, or --resume"),
    };
    // One `labor train` per run directory at a time (a second `--resume` would interleave
    // checkpoints).
    let _lock = crate::io::lock_dir(&dir, "`labor train`")?;
    if a.restart && !resuming {
        for e in std::fs::read_dir(&dir)? {
            let path = e?.path();
            if path.file_name().is_some_and(|n| n == ".lock") {
                continue;
            }
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.with_context(|| format!("--restart: cannot remove {}", path.display()))?;
        }
    }
    let mut c = config;
    c.data.allow_overlap |= a.allow_overlap;
    let mut lora = match c.method.kind.as_str() {
        "full" => None,
        "lora" => Some(LoraConfig {
            rank: c.method.rank,
            alpha: c.method.alpha,
            dropout: c.method.dropout,
            targets: c.method.targets.clone(),
            layers: None,
        }),
        k => return Err(crate::bad!("method.kind {k:?}: expected \"full\" or \"lora\"").into()),
    };
    if lora.is_some() && c.model.base.is_none() {
        return Err(crate::bad!(
            "method.kind = \"lora\" needs model.base (a pre-trained model directory)"
        )
        .into());
    }
    if c.model.base.is_some() == c.model.scratch.is_some() {
        return Err(crate::bad!(
            "[model]: give exactly one of `base` (a model directory) or `scratch` (a shape)"
        )
        .into());
    }
    if c.data.switches.label_tokens && !(c.model.base.is_some() && c.model.label_tokens()) {
        return Err(crate::bad!(
            "data.switches.label_tokens is set by model.label_tokens = true on a pre-trained base; \
             do not set it by hand"
        )
        .into());
    }
    // Label tokens on a pre-trained base: markers before the titles in every record line.
    let base_label_tokens = c.model.base.is_some() && c.model.label_tokens();
    c.data.switches.label_tokens = base_label_tokens;
    let device = c
        .train
        .device
        .parse::<labor_torch::runtime::DeviceRequest>()?
        .resolve()?;
    let panel = load_panels(&c)?;
    let template = template_of(&c)?;
    let renderer =
        Renderer::new(&template, c.data.switches, &panel.taxonomy).map_err(|e| anyhow!(e))?;
    let spec = SplitSpec {
        seed: c.data.split_seed,
        ..SplitSpec::default()
    };
    if !(c.data.train_fraction > 0.0 && c.data.train_fraction <= 1.0) {
        return Err(crate::bad!(
            "data.train_fraction = {}: expected a number in (0, 1]",
            c.data.train_fraction
        )
        .into());
    }
    let held = held_out(&c, &panel, &spec)?;
    let allow = c.data.allow_overlap;
    crate::io::check_overlap(
        &names(&c.data.panels),
        &panel,
        &spec,
        &[Split::Train],
        &held,
        allow,
    )?;
    let mut train_texts = texts(&panel, &renderer, &spec, Split::Train);
    // The datasets the model trains on (for reports).
    let mut datasets: std::collections::BTreeSet<String> =
        panel.persons.iter().map(|p| p.dataset.clone()).collect();
    if c.data.train_fraction < 1.0 {
        let keep: Vec<bool> = panel
            .persons
            .iter()
            .filter(|p| p.split_or(&spec) == Split::Train)
            .map(|p| {
                let h = labor_data::split::person_hash(0x5eed_f4ac, &p.dataset, &p.person_id);
                ((h >> 11) as f64 / (1u64 << 53) as f64) < c.data.train_fraction
            })
            .collect();
        let n = train_texts.len();
        train_texts = train_texts
            .into_iter()
            .zip(keep)
            .filter_map(|(t, k)| k.then_some(t))
            .collect();
        eprintln!(
            "data.train_fraction = {}: training on {} of {n} training persons",
            c.data.train_fraction,
            train_texts.len()
        );
    }
    if !c.data.replay.is_empty() {
        let input = panel_input(&c);
        let mut n = 0;
        for path in &c.data.replay {
            let (rp, _) = load_panel(path, &input)?;
            crate::io::check_overlap(
                &format!("data.replay {}", path.display()),
                &rp,
                &spec,
                &[Split::Train],
                &held,
                allow,
            )?;
            datasets.extend(rp.persons.iter().map(|p| p.dataset.clone()));
            let more = texts(&rp, &renderer, &spec, Split::Train);
            n += more.len();
            train_texts.extend(more);
        }
        eprintln!(
            "data.replay: {n} training texts of {} mixed into the training set",
            c.data
                .replay
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let valid_rendered: Vec<labor_text::Rendered> = panel
        .persons
        .iter()
        .filter(|p| p.split_or(&spec) == Split::Valid)
        .take(c.train.eval_texts)
        .map(|p| renderer.render(p, &panel.taxonomy))
        .collect();
    let loss = labor_lm::train::Loss {
        objective: c.train.objective,
        text_weight: c.train.text_loss_weight,
    };
    if !(c.train.text_loss_weight.is_finite() && c.train.text_loss_weight >= 0.0) {
        return Err(crate::bad!(
            "train.text_loss_weight = {}: expected a weight >= 0",
            c.train.text_loss_weight
        )
        .into());
    }
    if loss.objective == labor_lm::train::Objective::Text && loss.text_weight > 0.0 {
        return Err(crate::bad!(
            "train.text_loss_weight mixes the text loss into `labels` or `label-softmax`; \
             with train.objective = \"text\" leave it out"
        )
        .into());
    }
    c.optim.check_groups().map_err(|e| crate::bad!("{e}"))?;
    let select = match c.train.select.as_str() {
        "objective" => match loss.objective {
            labor_lm::train::Objective::LabelSoftmax => labor_lm::train::Select::LabelSoftmax,
            _ => labor_lm::train::Select::Labels,
        },
        "labels" => labor_lm::train::Select::Labels,
        "label-softmax" => labor_lm::train::Select::LabelSoftmax,
        "all" => labor_lm::train::Select::All,
        s => {
            return Err(crate::bad!(
                "train.select {s:?}: expected \"objective\", \"labels\", \"label-softmax\" or \"all\""
            )
            .into());
        }
    };
    if train_texts.is_empty() {
        return Err(anyhow!("the panels have no training-split persons").into());
    }
    std::fs::create_dir_all(&dir)?;

    // Tokenizer and model.
    let tok_path = dir.join("tokenizer.json");
    let (tokenizer, tok_json) = if resuming || tok_path.exists() {
        let json = std::fs::read_to_string(&tok_path)
            .with_context(|| format!("cannot read {}", tok_path.display()))?;
        (
            labor_text::tokenize::from_json(json.as_bytes()).map_err(|e| anyhow!("{e}"))?,
            json,
        )
    } else if let Some(base) = &c.model.base {
        let json = std::fs::read_to_string(base.join("tokenizer.json"))
            .with_context(|| format!("cannot read {}/tokenizer.json", base.display()))?;
        let mut tok =
            labor_text::tokenize::from_json(json.as_bytes()).map_err(|e| anyhow!("{e}"))?;
        if base_label_tokens {
            let plain = Renderer::new(
                &template,
                Switches {
                    label_tokens: false,
                    ..c.data.switches
                },
                &panel.taxonomy,
            )
            .map_err(|e| anyhow!(e))?;
            let (longest, _) =
                labor_text::tokenize::continuation_lengths(&tok, &plain.continuations())
                    .map_err(|e| anyhow!("{e}"))?;
            if longest == 1 {
                return Err(crate::bad!(
                    "model.label_tokens = true: the base's tokenizer already has one token per \
                     label (a from-scratch base); leave label_tokens out for it"
                )
                .into());
            }
            labor_text::tokenize::add_label_markers(&mut tok, &renderer.continuations())
                .map_err(|e| anyhow!("{}/tokenizer.json: {e}", base.display()))?;
            let json = labor_text::tokenize::to_json(&tok).map_err(|e| anyhow!("{e}"))?;
            (tok, json)
        } else {
            (tok, json)
        }
    } else {
        let tok = scratch_tokenizer(&c, &panel, &template, &renderer, &spec, &held)?;
        let json = labor_text::tokenize::to_json(&tok).map_err(|e| anyhow!("{e}"))?;
        (tok, json)
    };
    crate::text::align(&tokenizer, &panel, &renderer)?;
    let eos = tokenizer.token_to_id(labor_text::tokenize::EOS);
    let (train, train_labels, truncated) =
        tokenize_rendered(&tokenizer, &train_texts, c.train.max_seq_len, eos)
            .map_err(|e| anyhow!(e))?;
    let (valid, valid_labels, _) =
        tokenize_rendered(&tokenizer, &valid_rendered, c.train.max_seq_len, eos)
            .map_err(|e| anyhow!(e))?;
    let label_set = labor_lm::train::label_set(&tokenizer, &renderer.continuations())
        .map_err(|e| anyhow!("tokenizer.json: {e}"))?;
    if label_set.is_none()
        && (loss.objective == labor_lm::train::Objective::LabelSoftmax
            || select == labor_lm::train::Select::LabelSoftmax)
    {
        return Err(crate::bad!(
            "train.objective / train.select = \"label-softmax\" needs one token per label \
             (model.label_tokens = true); with multi-token titles the K-way softmax would need \
             the whole label trie at every record while training, which this version does not \
             do: use \"labels\" (the next-token loss at the title tokens) instead"
        )
        .into());
    }
    let data = TrainData {
        train,
        train_labels,
        valid,
        valid_labels,
        label_set,
    };
    data.check(&loss).map_err(|e| crate::bad!("{e}"))?;
    if truncated > 0 {
        eprintln!(
            "note: {} of {} training texts are longer than train.max_seq_len = {} tokens and are cut there",
            truncated,
            data.train.len(),
            c.train.max_seq_len
        );
    }
    let mut plan = LoopConfig {
        optim: c.optim.clone(),
        batch_size: c.train.batch_size,
        grad_accum: c.train.grad_accum,
        micro_batch_tokens: c.train.micro_batch_tokens,
        total_steps: 0,
        seed: c.train.seed,
        eval_every: c.train.eval_every,
        checkpoint_every: c.train.checkpoint_every,
        loss,
        select,
        prefix_cache_bytes: c.train.prefix_cache_mb.saturating_mul(1 << 20),
        absent_labels: c.model.absent_labels,
    };
    let per_step = plan.per_step();
    let steps_per_epoch = plan.steps_per_epoch(data.train.len());
    let total = c
        .train
        .total_steps
        .unwrap_or(((c.train.epochs * steps_per_epoch as f64).ceil() as usize).max(1));
    c.train.total_steps = Some(total);
    plan.total_steps = total;

    tch::manual_seed(c.train.seed as i64);
    let (vs, mut model, cfg) = match &c.model.base {
        Some(base) => {
            let m = load_model(base, device, Kind::Float, lora.is_none())?;
            let cfg = m.model.config.clone();
            (m.vs, m.model, cfg)
        }
        None => {
            let shape = c.model.scratch.as_ref().expect("checked");
            let cfg = shape
                .to_config(tokenizer.get_vocab_size(true))
                .map_err(|e| anyhow!("[model.scratch]: {e}"))?;
            let vs = VarStore::new(device);
            let m = Llama::new(&vs.root(), &cfg, true);
            (vs, m, cfg)
        }
    };
    // The frozen bottom layers of `method.top_layers`.
    let n_layers = cfg.num_hidden_layers;
    let frozen = match c.method.top_layers {
        None => 0,
        Some(k) if (1..=n_layers).contains(&k) => n_layers - k,
        Some(k) => {
            return Err(crate::bad!(
                "method.top_layers = {k}: expected 1 to {n_layers} (the model's layers)"
            )
            .into());
        }
    };
    if frozen > 0 {
        match &mut lora {
            Some(l) => l.layers = Some((frozen..n_layers).collect()),
            None => model.freeze_bottom(frozen),
        }
    }
    if !resuming {
        let toml_text = toml::to_string_pretty(&c).context("serialize the resolved config")?;
        std::fs::write(dir.join("config.toml"), toml_text)?;
        std::fs::write(dir.join("template.toml"), template.to_toml())?;
        std::fs::write(&tok_path, &tok_json)?;
    }
    // LoRA adapters live in their own store; the base weights are not trainable at all.
    let avs = VarStore::new(device);
    if let Some(l) = &lora {
        model
            .add_lora(&avs.root(), l)
            .map_err(|e| anyhow!("[method]: {e}"))?;
    }
    let train_vs = if lora.is_some() { &avs } else { &vs };
    if base_label_tokens {
        let (first, n) = labor_lm::train::add_label_rows(
            &mut model,
            train_vs,
            &tokenizer,
            &renderer,
            &panel.taxonomy,
            c.model.label_init,
            frozen == 0,
        )
        .map_err(|e| anyhow!("tokenizer.json: {e}"))?;
        eprintln!(
            "label tokens: {n} added tokens (ids {first}..{}), their rows initialised from the \
             titles' tokens",
            first + n
        );
    }
    let bf16 = match c.train.precision.as_str() {
        "auto" => device != tch::Device::Cpu,
        "bf16" => true,
        "f32" => false,
        p => {
            return Err(crate::bad!("train.precision {p:?}: expected auto, f32 or bf16").into());
        }
    };
    model.set_bf16_compute(bf16);
    if bf16 {
        model.cache_bf16_frozen();
    }
    model
        .set_frozen_prefix(frozen)
        .map_err(|e| anyhow!("method.top_layers: {e}"))?;
    if frozen > 0 {
        eprintln!(
            "top {} of {n_layers} layers trained; the {frozen} below run without autograd{}",
            n_layers - frozen,
            if base_label_tokens {
                " (the label tokens' input rows stay at their initial values)"
            } else {
                ""
            }
        );
    }
    if !(0.0..1.0).contains(&c.train.dropout) {
        return Err(crate::bad!(
            "train.dropout = {}: expected a probability in [0, 1)",
            c.train.dropout
        )
        .into());
    }
    model.set_dropout(c.train.dropout);
    let base_training: Option<serde_json::Value> = c.model.base.as_ref().and_then(|b| {
        std::fs::read_to_string(b.join("training.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
    });
    let n_train_texts = data.train.len();
    let label_first = model.label_rows.as_ref().map(|r| r.first);
    let save_best = |to: &Path, st: &TrainState, trainable: usize| -> anyhow::Result<()> {
        match (&lora, &c.model.base) {
            (Some(l), Some(base)) => {
                crate::lm::save_adapter(to, &avs, l, base, &tok_json, label_first)?
            }
            _ => {
                let (named, cfg) =
                    labor_lm::model::fold_label_rows_named(weights::named(&vs), &cfg, label_first)
                        .map_err(|e| anyhow!(e))?;
                save_model(to, &cfg, &named, &tok_json, Kind::Float)?
            }
        }
        // What this model was given, for reports (`labor eval` shows it per model).
        let summary = serde_json::json!({
            "kind": "lm",
            "method": c.method.kind,
            "top_layers": c.method.top_layers,
            "objective": c.train.objective.to_string(),
            "text_loss_weight": c.train.text_loss_weight,
            "parameters": cfg.n_params(),
            "trainable_parameters": trainable,
            "steps": st.step,
            "epochs": (st.step * per_step) as f64 / n_train_texts.max(1) as f64,
            "tokens": st.tokens,
            "texts": n_train_texts,
            "datasets": datasets,
            "wall_s": st.wall_s,
            "base": base_training,
        });
        std::fs::write(
            to.join("training.json"),
            serde_json::to_string_pretty(&summary)?,
        )?;
        Ok(())
    };
    // The trainable variables by name, in name order (the optimizer state is keyed by name).
    let mut names: Vec<(String, Tensor)> = train_vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let mut opt = AdamW::new(names);
    opt.set_lr_scales(|name| c.optim.lr_scale(param_group(name)));
    let trainable = opt.n_params();
    let mut state = TrainState::default();
    if resuming {
        if let Some(ck) = latest_checkpoint(&dir)? {
            let w = std::fs::read(ck.join("model.safetensors"))?;
            weights::load_into(train_vs, &[("model.safetensors", &w)])?;
            let o = std::fs::read(ck.join("optimizer.safetensors"))?;
            let st: TrainState =
                serde_json::from_str(&std::fs::read_to_string(ck.join("state.json"))?)?;
            opt.load_state(
                &weights::read_named("optimizer.safetensors", &o)?,
                st.optimizer_t,
            )
            .map_err(|e| anyhow!(e))?;
            eprintln!(
                "resuming {} from {} (step {})",
                dir.display(),
                ck.display(),
                st.step
            );
            state = st;
        } else {
            eprintln!(
                "resuming {}: no complete checkpoint yet, starting from step 0",
                dir.display()
            );
        }
    }
    eprintln!(
        "{} parameters ({} trainable), {} training texts, {} validation texts; {total} steps of {} texts ({:.2} epochs)",
        cfg.n_params(),
        opt.n_params(),
        data.train.len(),
        data.valid.len(),
        per_step,
        (total * per_step) as f64 / data.train.len().max(1) as f64
    );
    let metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("metrics.jsonl"))?;
    if c.model.absent_labels == labor_lm::train::AbsentLabels::Hold {
        let absent = labor_lm::train::absent_label_rows(&model, &data);
        if !absent.is_empty() {
            let codes: Vec<String> = absent
                .iter()
                .take(8)
                .filter_map(|&i| panel.taxonomy.labels().get(i as usize))
                .map(|l| l.code.clone())
                .collect();
            eprintln!(
                "label tokens: {} of {} labels are never a training target ({}{}); their output \
                 rows are held at their initial values (model.absent_labels = \"train\" trains them)",
                absent.len(),
                panel.taxonomy.labels().len(),
                codes.join(", "),
                if absent.len() > codes.len() {
                    ", ..."
                } else {
                    ""
                }
            );
        }
    }
    let pb = ProgressBar::new(total as u64);
    pb.set_style(
        ProgressStyle::with_template("{pos}/{len} steps [{bar:25}] {msg} ({eta})")
            .expect("template")
            .progress_chars("=> "),
    );
    pb.set_position(state.step as u64);
    let stop = a.stop_after.map_or(total, |n| (state.step + n).min(total));
    state.wall_s += run_t0.elapsed().as_secs_f64();
    let mut hooks = RunHooks {
        dir: &dir,
        train_vs,
        metrics,
        pb: &pb,
        select,
        save_best: &|st: &TrainState| save_best(&dir.join("best"), st, trainable),
        failed: None,
    };
    let outcome = labor_lm::train::train(
        &model, &mut opt, &plan, &data, &mut state, stop, device, &mut hooks,
    );
    if let Some(e) = hooks.failed.take() {
        return Err(e.into());
    }
    if let Err(e) = outcome {
        pb.abandon();
        let kept = latest_checkpoint(&dir)?
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "none yet".into());
        return Err(anyhow!("{e}; stopped without updating the weights. Last complete checkpoint: {kept}. Lower optim.lr or raise optim.warmup_steps and resume or restart.").into());
    }
    pb.finish_and_clear();
    if state.step == total {
        save_best(&dir.join("final"), &state, trainable)?;
        if data.valid.is_empty() {
            save_best(&dir.join("best"), &state, trainable)?;
        }
        println!(
            "{}: {total} steps done; best validation loss {} at step {}; best model: {}",
            dir.display(),
            state.best_val.map_or("n/a".into(), |v| format!("{v:.4}")),
            state.best_step.unwrap_or(total),
            dir.join("best").display()
        );
    } else {
        println!(
            "{}: stopped at step {} of {total}; continue with `labor train --resume {}`",
            dir.display(),
            state.step,
            dir.display()
        );
    }
    Ok(())
}

/// The learning-rate group of a trainable variable, from its name: the added label rows, LoRA
/// adapters, or the rest.
fn param_group(name: &str) -> labor_torch::optim::ParamGroup {
    use labor_torch::optim::ParamGroup;
    if name.starts_with("label_tokens.") {
        ParamGroup::LabelRows
    } else if name.contains(".lora_A.") || name.contains(".lora_B.") {
        ParamGroup::Lora
    } else {
        ParamGroup::Base
    }
}

/// The run directory's side of the training loop: `metrics.jsonl`, the progress bar, the best
/// model and the resumable checkpoints. An I/O error is kept in `failed` (with its context) and
/// stops the loop.
struct RunHooks<'a> {
    dir: &'a Path,
    train_vs: &'a VarStore,
    metrics: std::fs::File,
    pb: &'a ProgressBar,
    select: labor_lm::train::Select,
    save_best: &'a dyn Fn(&TrainState) -> anyhow::Result<()>,
    failed: Option<anyhow::Error>,
}

impl RunHooks<'_> {
    fn keep(&mut self, r: anyhow::Result<()>) -> Result<(), String> {
        r.map_err(|e| {
            let msg = format!("{e:#}");
            self.failed = Some(e);
            msg
        })
    }
}

impl Hooks<Event<'_>, Checkpoint<'_>> for RunHooks<'_> {
    fn event(&mut self, e: Event<'_>) {
        let Event::Step {
            stats,
            epoch,
            tokens_per_s,
            validation,
            state,
        } = e;
        let mut row = serde_json::json!({"step": stats.step, "epoch": epoch, "loss": stats.loss, "lr": stats.lr, "grad_norm": stats.grad_norm, "tokens": stats.tokens, "tokens_per_s": tokens_per_s});
        self.pb.set_position(state.step as u64);
        self.pb.set_message(format!(
            "loss {:.4} lr {:.2e} {:.0} tok/s",
            stats.loss, stats.lr, tokens_per_s
        ));
        if let Some(v) = validation {
            row["val_loss"] = v.loss.into();
            row["val_label_loss"] = v.label_loss.into();
            row["val_label_softmax_loss"] = v.label_softmax_loss.into();
            let kway = v
                .label_softmax_loss
                .map(|l| format!(", K-way {l:.4}"))
                .unwrap_or_default();
            let line = format!(
                "step {}: validation loss {:.4}, on label tokens {:.4}{kway}; best ({}) {:.4} at step {}",
                state.step,
                v.loss,
                v.label_loss.unwrap_or(f64::NAN),
                match self.select {
                    labor_lm::train::Select::All => "all",
                    labor_lm::train::Select::Labels => "labels",
                    labor_lm::train::Select::LabelSoftmax => "label-softmax",
                },
                state.best_val.unwrap_or(f64::NAN),
                state.best_step.unwrap_or(0)
            );
            self.pb.suspend(|| eprintln!("{line}"));
        }
        // A failed metrics line surfaces at the next checkpoint, which flushes the file.
        if let Err(e) = writeln!(self.metrics, "{row}") {
            self.failed.get_or_insert(e.into());
        }
    }

    fn checkpoint(&mut self, ck: &Checkpoint<'_>) -> Result<(), String> {
        if let Some(e) = self.failed.take() {
            return self.keep(Err(e));
        }
        let r = match ck.kind {
            Snapshot::Best => (self.save_best)(ck.state),
            Snapshot::Resume => self
                .metrics
                .flush()
                .map_err(anyhow::Error::from)
                .and_then(|()| checkpoint(self.dir, self.train_vs, ck.optimizer, ck.state)),
        };
        self.keep(r)
    }
}

/// The most recent complete checkpoint (`checkpoints/step-NNNNNNN`), if any.
fn latest_checkpoint(dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let ck = dir.join("checkpoints");
    if !ck.exists() {
        return Ok(None);
    }
    let mut best: Option<(usize, PathBuf)> = None;
    for e in std::fs::read_dir(&ck)? {
        let p = e?.path();
        let Some(n) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("step-"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| n > *b) {
            best = Some((n, p));
        }
    }
    Ok(best.map(|(_, p)| p))
}

/// Writes `checkpoints/step-N` through a temporary directory renamed into place, then keeps only
/// the two most recent checkpoints.
fn checkpoint(dir: &Path, vs: &VarStore, opt: &AdamW, state: &TrainState) -> anyhow::Result<()> {
    let ck = dir.join("checkpoints");
    std::fs::create_dir_all(&ck)?;
    let name = format!("step-{:07}", state.step);
    let tmp = ck.join(format!(".tmp-{name}"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let meta = Default::default();
    for (file, tensors) in [
        ("model.safetensors", weights::named(vs)),
        ("optimizer.safetensors", opt.state()),
    ] {
        let (_, bytes) = weights::save(&tensors, Kind::Float, usize::MAX, &meta)?.remove(0);
        let mut f = std::fs::File::create(tmp.join(file))?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    write_atomic(&tmp.join("state.json"), |w| {
        Ok(serde_json::to_writer_pretty(w, state)?)
    })?;
    let fin = ck.join(&name);
    let _ = std::fs::remove_dir_all(&fin);
    std::fs::rename(&tmp, &fin)?;
    let mut all: Vec<PathBuf> = std::fs::read_dir(&ck)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("step-"))
        })
        .collect();
    all.sort();
    for old in all.iter().rev().skip(2) {
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(())
}
