//! Opening any model directory as a [`Predictor`]: a comparison model (`labor fit`), a language
//! model (`labor train`'s `RUN/final` or `RUN/best`, `labor lm fetch|init|import-gguf`, a PEFT
//! adapter), or a world directory written by `labor synth` (its oracle: the exact model).
//! Used by `labor predict`, `labor simulate` and `labor serve`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::anyhow;
use clap::Args;
use labor_data::predictions::Predictor;
use labor_data::{Panel, Taxonomy};
use labor_lm::score::ScoreOptions;
use labor_text::render::Renderer;
use labor_torch::runtime::DeviceRequest;

use crate::bad;
use crate::lm::{load_model, model_switches, resolve_kind};
use crate::text::TextArgs;

/// How to open a model directory (every flag but the taxonomy, which the commands take with
/// their panel or on their own).
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Model directory: from `labor fit`, `labor train` (RUN/final or RUN/best), `labor lm`, or a
    /// world directory from `labor synth` (its oracle, the exact model).
    #[arg(long)]
    pub model: PathBuf,
    /// Model name in the output (default: the model's own, `lm` for a language model).
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub text: TextArgs,
    /// Tokens available to a text (language models; default: the model's positions).
    #[arg(long)]
    pub max_context: Option<usize>,
    /// Device for a language model: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Precision for a language model: auto (f32 on CPU, bf16 on CUDA), f32 or bf16.
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    /// Memory for the largest temporary of a language model's scoring step, in MiB.
    #[arg(long, default_value_t = 512)]
    pub mem_mib: usize,
}

/// What kind of directory `dir` is, for messages.
pub fn is_world_dir(dir: &Path) -> bool {
    dir.join("world.toml").is_file()
        && !dir.join("kind").exists()
        && !dir.join("config.json").exists()
}

/// The taxonomy to use with a model when none is given: a world directory's own, else the
/// embedded default.
pub fn default_taxonomy(dir: &Path) -> anyhow::Result<Taxonomy> {
    let t = dir.join("taxonomy.csv");
    if is_world_dir(dir) && t.is_file() {
        return crate::io::load_taxonomy(Some(&t)).map_err(|e| match e {
            crate::io::Failure::Other(e) => e,
            crate::io::Failure::Invalid { file, problems } => {
                bad!(
                    "{file}: {} problems, first: {}",
                    problems.len(),
                    problems[0]
                )
            }
        });
    }
    Ok(Taxonomy::embedded_default())
}

/// The oracle of a world directory (`labor synth`'s `world.toml`) over `taxonomy`.
pub fn open_oracle(dir: &Path, taxonomy: &Taxonomy) -> anyhow::Result<labor_synth::Oracle> {
    let path = dir.join("world.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
    let world =
        labor_synth::World::from_toml(&text).map_err(|e| bad!("{}: {e}", path.display()))?;
    labor_synth::Oracle::new(world, taxonomy).map_err(|e| bad!("{}: {e}", dir.display()))
}

/// A name for the predictor: `--name`, else the model's own.
struct Named<'a> {
    name: String,
    inner: &'a mut dyn Predictor,
}

impl Predictor for Named<'_> {
    fn name(&self) -> &str {
        &self.name
    }
    fn predict(
        &mut self,
        person: &labor_data::Person,
        ts: &[usize],
    ) -> Result<labor_data::predictions::Prediction, String> {
        self.inner.predict(person, ts)
    }
}

fn named<R>(
    name: &Option<String>,
    inner: &mut dyn Predictor,
    f: impl FnOnce(&mut dyn Predictor) -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    let name = name.clone().unwrap_or_else(|| inner.name().to_string());
    f(&mut Named { name, inner })
}

/// Opens `a.model` for `taxonomy` and runs `f` with it. Progress and load times go to stderr.
pub fn with_predictor<R>(
    a: &ModelArgs,
    taxonomy: &Taxonomy,
    f: impl FnOnce(&mut dyn Predictor) -> anyhow::Result<R>,
) -> anyhow::Result<R> {
    let dir = &a.model;
    if !dir.is_dir() {
        return Err(bad!("{}: not a model directory", dir.display()));
    }
    if is_world_dir(dir) {
        let mut o = open_oracle(dir, taxonomy)?;
        return named(&a.name, &mut o, f);
    }
    let panel = Panel {
        taxonomy: taxonomy.clone(),
        persons: Vec::new(),
    };
    if let Some(mut p) = crate::fit::load(dir, &panel)? {
        return named(&a.name, p.as_mut(), f);
    }
    let device = a.device.parse::<DeviceRequest>()?.resolve()?;
    let kind = resolve_kind(&a.dtype, device)?;
    let t0 = Instant::now();
    let m = load_model(dir, device, kind, false)?;
    eprintln!(
        "loaded {} ({} parameters) on {device:?} as {kind:?} in {:.1} s",
        dir.display(),
        m.model.config.n_params(),
        t0.elapsed().as_secs_f64()
    );
    let switches = model_switches(a.text.switches(), &m.tokenizer, taxonomy)
        .map_err(|e| bad!("{}: {e}", dir.display()))?;
    let template = a.text.template()?;
    let renderer = Renderer::new(&template, switches, taxonomy).map_err(|e| anyhow!(e))?;
    let name = a.name.clone().unwrap_or_else(|| "lm".into());
    let mut p = labor_lm::predict::LmPredictor::new(
        &name,
        &m.model,
        &m.tokenizer,
        &renderer,
        taxonomy,
        ScoreOptions {
            mem_budget_bytes: a.mem_mib << 20,
            ..ScoreOptions::default()
        },
        a.max_context,
    )
    .map_err(|e| anyhow!("{}: {e}", dir.display()))?;
    eprintln!("label trie: {} nodes per record", p.trie_nodes());
    f(&mut p)
}
