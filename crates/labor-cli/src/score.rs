//! `labor score --model DIR --panel P --out preds.parquet`: every record of a split scored by
//! any model (through [`crate::model::with_predictor`], or a language model with in-context
//! examples), written in the predictions schema with the file's provenance; `--shard I/N` and
//! `--full-dist`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::anyhow;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use labor_data::predictions::{
    PredictionWriter, Predictor, row_from_logp, write_full_distributions,
};
use labor_data::{Split, SplitSpec};
use labor_lm::score::ScoreOptions;
use labor_text::Renderer;
use labor_torch::runtime::DeviceRequest;

use crate::io::{CmdResult, InvalidInput, PanelInput, write_atomic};
use crate::lm::{load_model, model_switches, resolve_kind};

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// The model: `--model DIR` (any kind: comparison model, language model, world directory)
    /// and, for language models, the text, device and precision flags.
    #[command(flatten)]
    pub m: crate::model::ModelArgs,
    #[arg(long)]
    pub panel: PathBuf,
    #[command(flatten)]
    pub input: PanelInput,
    /// Score the persons of this split (train, valid, test).
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Split seed for persons without an explicit split.
    #[arg(long, default_value_t = labor_data::split::DEFAULT_SPLIT_SEED)]
    pub split_seed: u64,
    /// Score at most this many persons (the first ones of the split, in panel order).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Score only shard I of N (0 ≤ I < N) of the selected persons (after `--limit`): a person
    /// belongs to shard `hash(dataset, person id) mod N` (a pinned hash, the same on every
    /// machine and run), so the N runs I = 0..N−1 score disjoint sets of persons whose union is
    /// the whole selection. `labor eval` takes the N files together. For a Slurm array:
    /// `--shard $SLURM_ARRAY_TASK_ID/N`.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<(u64, u64)>,
    /// Predictions file (Parquet, SPEC §7.1).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write every record's full distribution (one column per label) to this Parquet file.
    #[arg(long, value_name = "PARQUET")]
    pub full_dist: Option<PathBuf>,
    /// In-context learning: prepend up to k training-split texts (never the scored person's).
    #[arg(long, default_value_t = 0)]
    pub icl: usize,
    /// Seed for drawing the in-context texts.
    #[arg(long, default_value_t = 0)]
    pub icl_seed: u64,
    /// Apply this calibration (from `labor calibrate`) to every distribution: the predictions
    /// are then normalized and the file records the calibration (`labor eval` never compares
    /// calibrated with raw predictions).
    #[arg(long, value_name = "JSON")]
    pub calibration: Option<PathBuf>,
}

/// Parses `--shard I/N`.
pub fn parse_shard(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("{s:?}: expected I/N with 0 <= I < N, e.g. 0/4");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (u64, u64) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// The seed of the shard hash: fixed, and unrelated to any split seed, so shards cut across the
/// splits evenly.
const SHARD_SEED: u64 = 0x5348_4152_4453;

/// Whether a person belongs to shard `i` of `n`.
pub fn in_shard(dataset: &str, person_id: &str, (i, n): (u64, u64)) -> bool {
    labor_data::split::person_hash(SHARD_SEED, dataset, person_id) % n == i
}

pub fn run_score(a: &ScoreArgs) -> CmdResult {
    let (panel, _) = crate::io::load_panel(&a.panel, &a.input)?;
    let split: Split = a
        .split
        .parse()
        .map_err(|_| anyhow!("--split {:?}: expected train, valid or test", a.split))?;
    let spec = SplitSpec {
        seed: a.split_seed,
        ..SplitSpec::default()
    };
    if a.icl == 0 {
        // Every kind of model directory, through the one opener.
        crate::model::with_predictor(&a.m, &panel.taxonomy, |p| {
            let name = p.name().to_string();
            score_loop(a, &panel, split, &spec, p, &name).map_err(crate::io::Failure::into_anyhow)
        })?;
        return Ok(());
    }
    if crate::fit::load(&a.m.model, &panel)?.is_some() || crate::model::is_world_dir(&a.m.model) {
        return Err(crate::bad!("--icl is for language models").into());
    }
    let template = a.m.text.template()?;
    let device = a.m.device.parse::<DeviceRequest>()?.resolve()?;
    let kind = resolve_kind(&a.m.dtype, device)?;
    let t0 = Instant::now();
    let m = load_model(&a.m.model, device, kind, false)?;
    eprintln!(
        "loaded {} ({} parameters) on {device:?} as {kind:?} in {:.1} s",
        a.m.model.display(),
        m.model.config.n_params(),
        t0.elapsed().as_secs_f64()
    );
    let switches = model_switches(a.m.text.switches(), &m.tokenizer, &panel.taxonomy)
        .map_err(|e| anyhow!(InvalidInput(format!("{}: {e}", a.m.model.display()))))?;
    let renderer = Renderer::new(&template, switches, &panel.taxonomy).map_err(|e| anyhow!(e))?;
    let name =
        a.m.name
            .clone()
            .unwrap_or_else(|| format!("lm-icl{}", a.icl));
    let mut predictor = labor_lm::predict::LmPredictor::new(
        &name,
        &m.model,
        &m.tokenizer,
        &renderer,
        &panel.taxonomy,
        ScoreOptions {
            mem_budget_bytes: a.m.mem_mib << 20,
            ..ScoreOptions::default()
        },
        a.m.max_context,
    )
    .map_err(|e| anyhow!("{}: {e}", a.m.model.display()))?;
    let pool = panel
        .persons
        .iter()
        .filter(|p| p.split_or(&spec) == Split::Train)
        .map(|p| {
            let text = renderer.render(p, &panel.taxonomy).text;
            let n = m
                .tokenizer
                .encode(text.as_str(), false)
                .map(|e| e.len())
                .map_err(|e| anyhow!("{e}"))?;
            Ok((p.dataset.clone(), p.person_id.clone(), text, n))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if pool.is_empty() {
        return Err(anyhow!(
            "--icl {}: the panel has no training-split persons to draw from",
            a.icl
        )
        .into());
    }
    predictor = predictor.with_icl(labor_lm::predict::Icl {
        k: a.icl,
        seed: a.icl_seed,
        pool,
    });
    eprintln!("label trie: {} nodes per record", predictor.trie_nodes());
    score_loop(a, &panel, split, &spec, &mut predictor, &name)
}

/// The key of a predictions file's metadata that holds its calibration (JSON), when calibrated.
pub const CALIBRATION_KEY: &str = "labor.calibration";

/// What a predictions file records about where it came from (its Parquet key-value metadata,
/// shown by `labor eval`'s report): the program version, the command line, and the model
/// directory's small description files (`training.json`, written by `labor train`, gives the
/// report's models table its parameters, tokens, epochs and wall time).
pub fn provenance(model_dir: &Path) -> Vec<(String, String)> {
    let mut out = vec![
        (
            "labor.version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        (
            "labor.command".to_string(),
            std::env::args().collect::<Vec<_>>().join(" "),
        ),
        ("labor.model".to_string(), model_dir.display().to_string()),
    ];
    for f in [
        "kind",
        "fit.json",
        "training.json",
        "config.json",
        "config.toml",
        "adapter_config.json",
        "template.toml",
    ] {
        if let Ok(text) = std::fs::read_to_string(model_dir.join(f))
            && text.len() < 64 * 1024
        {
            out.push((format!("labor.model.{f}"), text));
        }
    }
    out
}

/// Scores every record of the split's persons with any predictor and writes the predictions
/// (and, on request, the full distributions).
fn score_loop(
    a: &ScoreArgs,
    panel: &labor_data::Panel,
    split: Split,
    spec: &SplitSpec,
    predictor: &mut dyn Predictor,
    name: &str,
) -> CmdResult {
    let persons: Vec<&labor_data::Person> = panel
        .persons
        .iter()
        .filter(|p| p.split_or(spec) == split)
        .take(a.limit.unwrap_or(usize::MAX))
        .collect();
    if persons.is_empty() {
        return Err(anyhow!("{}: no persons in the {} split", a.panel.display(), a.split).into());
    }
    let persons: Vec<&labor_data::Person> = match a.shard {
        None => persons,
        Some((i, n)) => {
            let selected = persons.len();
            let mine: Vec<_> = persons
                .into_iter()
                .filter(|p| in_shard(&p.dataset, &p.person_id, (i, n)))
                .collect();
            if mine.is_empty() {
                return Err(anyhow!(
                    "--shard {i}/{n}: none of the {selected} selected persons falls in this shard; use fewer shards"
                )
                .into());
            }
            eprintln!(
                "shard {i}/{n}: {} of {selected} selected persons",
                mine.len()
            );
            mine
        }
    };
    let n_records: usize = persons.iter().map(|p| p.records.len()).sum();
    eprintln!(
        "scoring {} persons, {n_records} records of the {} split; {} labels",
        persons.len(),
        a.split,
        panel.taxonomy.len(),
    );
    let pb = ProgressBar::new(n_records as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "scoring {pos}/{len} records [{bar:30}] {per_sec} ({eta}) {msg}",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    let calibration = a
        .calibration
        .as_ref()
        .map(|p| crate::calibrate::read(p))
        .transpose()?;
    let mut calibrated;
    let predictor: &mut dyn Predictor = match &calibration {
        Some(c) => {
            eprintln!("calibrated: {}", c.describe());
            calibrated = labor_data::calibration::Calibrated {
                inner: predictor,
                calibration: c,
            };
            &mut calibrated
        }
        None => predictor,
    };
    let t1 = Instant::now();
    let mut full: Vec<(String, String, i32, Vec<f64>)> = Vec::new();
    let (mut sum_logp, mut sum_norm, mut sum_leak, mut n) = (0.0, 0.0, 0.0, 0usize);
    write_atomic(&a.out, |w| {
        let mut pw = PredictionWriter::new(w)?;
        for (k, v) in provenance(&a.m.model) {
            pw.add_metadata(&k, &v);
        }
        if let Some(c) = &calibration {
            pw.add_metadata(CALIBRATION_KEY, &serde_json::to_string(c)?);
        }
        for person in &persons {
            let ts: Vec<usize> = (0..person.records.len()).collect();
            let pred = predictor.predict(person, &ts).map_err(|e| anyhow!(e))?;
            for (&t, logp) in ts.iter().zip(&pred.logp) {
                let (row, p) =
                    row_from_logp(name, person, split, &panel.taxonomy, t, logp, pred.icl_k);
                sum_logp += row.logp;
                sum_norm += row.logp_norm;
                sum_leak += row.leak;
                n += 1;
                if a.full_dist.is_some() {
                    full.push((person.dataset.clone(), person.person_id.clone(), row.t, p));
                }
                pw.push(row)?;
            }
            pb.inc(ts.len() as u64);
            pb.set_message(format!("ppl {:.2}", (-sum_logp / n as f64).exp()));
        }
        pw.finish()?;
        Ok(())
    })?;
    pb.finish_and_clear();
    let secs = t1.elapsed().as_secs_f64();
    if let Some(path) = &a.full_dist {
        let codes: Vec<String> = panel
            .taxonomy
            .labels()
            .iter()
            .map(|l| l.code.clone())
            .collect();
        write_atomic(path, |w| {
            write_full_distributions(
                w,
                &codes,
                full.iter()
                    .map(|(d, p, t, v)| (name, d.as_str(), p.as_str(), *t, v.as_slice())),
            )?;
            Ok(())
        })?;
    }
    println!(
        "{}: {n} records in {secs:.1} s ({:.2} records/s); perplexity {:.3} (unnormalized), {:.3} \
         (normalized); mean leaked mass {:.4}",
        a.out.display(),
        n as f64 / secs,
        (-sum_logp / n as f64).exp(),
        (-sum_norm / n as f64).exp(),
        sum_leak / n as f64
    );
    Ok(())
}
