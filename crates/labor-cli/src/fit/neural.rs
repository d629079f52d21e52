//! `labor fit --model bag-of-jobs|career`: the neural comparison models of `labor-career`.
//!
//! The model directory holds `kind`, `model.json` (architecture and vocabularies),
//! `model.safetensors` (the kept, best weights), `config.toml` (the resolved fit settings),
//! `fit.json` (times, epochs, validation perplexities) and `checkpoint/` (the last complete
//! checkpoint, written to a temporary directory and renamed; `--resume` continues from it exactly).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, anyhow};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use labor_career::train::{Checkpoint, Event, Hooks, TrainState};
use labor_career::{FitConfig, NetKind, NeuralModel};
use labor_data::predictions::Predictor;
use labor_data::{Panel, SplitSpec};
use labor_torch::runtime::DeviceRequest;

use super::FitArgs;
use crate::io::{CmdResult, load_panel, write_atomic};

/// Options of the neural models (bag-of-jobs, career). Flags override `--config`, which
/// overrides the built-in defaults (docs/baselines.md).
#[derive(Debug, Args)]
pub struct NeuralArgs {
    /// career: pretrain on these panels pooled (e.g. a `resumes` synthetic world, and other
    /// surveys), then fine-tune on the survey. Their labels must be in the survey's taxonomy.
    #[arg(long, value_name = "PANEL", num_args = 1..)]
    pub pretrain: Vec<PathBuf>,
    /// career: panels the model will also be evaluated on; no --pretrain panel may hold one of
    /// their (or the survey's) validation or test persons in its training split.
    #[arg(long, value_name = "PANEL", num_args = 1.., requires = "pretrain")]
    pub held_out: Vec<PathBuf>,
    /// career: pretrain even when a --pretrain panel holds held-out persons (a warning instead
    /// of exit 2).
    #[arg(long, requires = "pretrain")]
    pub allow_overlap: bool,
    /// TOML with [model], [train] and (career) [pretrain] tables; see docs/baselines.md.
    #[arg(long, value_name = "TOML")]
    pub config: Option<PathBuf>,
    /// career: the CAREER paper's network (12 layers, width 192, 3 heads, FFN 768).
    #[arg(long)]
    pub paper_size: bool,
    #[arg(long)]
    pub layers: Option<usize>,
    #[arg(long)]
    pub width: Option<usize>,
    #[arg(long)]
    pub heads: Option<usize>,
    #[arg(long)]
    pub ffn: Option<usize>,
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Most epochs on the survey.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Most epochs of pretraining.
    #[arg(long)]
    pub pretrain_epochs: Option<usize>,
    /// Peak learning rate (both stages).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Persons per batch (both stages).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Early stopping: epochs without a better validation perplexity (0: never).
    #[arg(long)]
    pub patience: Option<usize>,
    /// Seed of the initialization, data order and dropout.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// CPU threads of the tensor library. These models' operations are small: one thread is
    /// fastest on a small or busy machine (more threads spin against each other).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Continue the fit in --out from its last complete checkpoint (same panels; the settings
    /// are read from --out/config.toml).
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many epochs (over all stages), resumable with --resume.
    #[arg(long)]
    pub stop_after_epochs: Option<usize>,
}

impl NeuralArgs {
    /// The first neural-only option given, if any (for a clear error on other models).
    pub fn given(&self) -> Option<&'static str> {
        [
            (!self.pretrain.is_empty(), "--pretrain"),
            (!self.held_out.is_empty(), "--held-out"),
            (self.allow_overlap, "--allow-overlap"),
            (self.config.is_some(), "--config"),
            (self.paper_size, "--paper-size"),
            (self.layers.is_some(), "--layers"),
            (self.width.is_some(), "--width"),
            (self.heads.is_some(), "--heads"),
            (self.ffn.is_some(), "--ffn"),
            (self.dropout.is_some(), "--dropout"),
            (self.epochs.is_some(), "--epochs"),
            (self.pretrain_epochs.is_some(), "--pretrain-epochs"),
            (self.lr.is_some(), "--lr"),
            (self.batch_size.is_some(), "--batch-size"),
            (self.patience.is_some(), "--patience"),
            (self.seed.is_some(), "--seed"),
            (self.resume, "--resume"),
            (self.stop_after_epochs.is_some(), "--stop-after-epochs"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
}

pub fn is_neural(kind: &str) -> bool {
    matches!(kind, "bag-of-jobs" | "career")
}

fn resolve_config(kind: NetKind, n: &NeuralArgs) -> anyhow::Result<FitConfig> {
    let mut c = match &n.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let c: FitConfig =
                toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
            if c.model.kind != kind {
                return Err(anyhow!(
                    "{}: [model] kind = {:?} but --model {}",
                    path.display(),
                    c.model.kind.as_str(),
                    kind.as_str()
                ));
            }
            c
        }
        None => FitConfig::default_for(kind),
    };
    if n.paper_size {
        if kind != NetKind::Career {
            return Err(anyhow!("--paper-size is for --model career"));
        }
        c.model = labor_career::Arch::career_paper();
    }
    let m = &mut c.model;
    for (dst, src) in [
        (&mut m.layers, n.layers),
        (&mut m.width, n.width),
        (&mut m.heads, n.heads),
        (&mut m.ffn, n.ffn),
    ] {
        if let Some(v) = src {
            *dst = v;
        }
    }
    if let Some(d) = n.dropout {
        m.dropout = d;
    }
    if let Some(s) = n.seed {
        m.init_seed = s;
    }
    m.validate().map_err(|e| anyhow!("[model]: {e}"))?;
    let mut stages: Vec<&mut labor_career::TrainConfig> = vec![&mut c.train];
    if let Some(p) = c.pretrain.as_mut() {
        stages.push(p);
    }
    for t in stages {
        if let Some(v) = n.lr {
            t.lr = v;
        }
        if let Some(v) = n.batch_size {
            t.batch_size = v;
        }
        if let Some(v) = n.patience {
            t.patience = v;
        }
        if let Some(v) = n.seed {
            t.seed = v;
        }
        t.validate().map_err(|e| anyhow!("[train]: {e}"))?;
    }
    if let Some(e) = n.epochs {
        c.train.epochs = e;
    }
    if let (Some(e), Some(p)) = (n.pretrain_epochs, c.pretrain.as_mut()) {
        p.epochs = e;
    }
    Ok(c)
}

/// Progress bars and checkpoints in the model directory.
struct CliHooks<'a> {
    dir: &'a Path,
    pb: Option<ProgressBar>,
}

impl Hooks<Event<'_>, Checkpoint> for CliHooks<'_> {
    fn event(&mut self, e: Event<'_>) {
        match e {
            Event::StageStart {
                name,
                steps,
                done,
                initial_valid,
            } => {
                if let Some(pb) = self.pb.take() {
                    pb.finish_and_clear();
                }
                eprintln!("{name}: validation perplexity before training {initial_valid:.3}");
                let pb = ProgressBar::new(steps as u64);
                pb.set_style(
                    ProgressStyle::with_template(
                        "{prefix} {pos}/{len} steps [{bar:25}] {msg} ({eta})",
                    )
                    .expect("template")
                    .progress_chars("=> "),
                );
                pb.set_prefix(name.to_string());
                pb.set_position(done as u64);
                self.pb = Some(pb);
            }
            Event::Step { loss, lr } => {
                if let Some(pb) = &self.pb {
                    pb.inc(1);
                    pb.set_message(format!("loss {loss:.4} lr {lr:.2e}"));
                }
            }
            Event::Epoch(log, best) => {
                let line = format!(
                    "{} epoch {}: train loss {:.4}, validation perplexity {:.3} (best {best:.3}), {:.1} s",
                    log.stage, log.epoch, log.train_loss, log.valid_perplexity, log.seconds
                );
                match &self.pb {
                    Some(pb) => pb.suspend(|| eprintln!("{line}")),
                    None => eprintln!("{line}"),
                }
            }
        }
    }

    fn checkpoint(&mut self, ck: &Checkpoint) -> Result<(), String> {
        write_checkpoint(self.dir, ck).map_err(|e| format!("checkpoint: {e:#}"))
    }
}

const CK_FILES: [&str; 3] = [
    "weights.safetensors",
    "optimizer.safetensors",
    "best.safetensors",
];

/// `DIR/checkpoint`, replaced whole: written to `.checkpoint-tmp` and renamed.
fn write_checkpoint(dir: &Path, ck: &Checkpoint) -> anyhow::Result<()> {
    let tmp = dir.join(".checkpoint-tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    for (name, bytes) in CK_FILES.iter().zip([&ck.weights, &ck.optimizer, &ck.best]) {
        let mut f = std::fs::File::create(tmp.join(name))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    let mut f = std::fs::File::create(tmp.join("state.json"))?;
    f.write_all(serde_json::to_string_pretty(&ck.state)?.as_bytes())?;
    f.sync_all()?;
    let fin = dir.join("checkpoint");
    let old = dir.join(".checkpoint-old");
    let _ = std::fs::remove_dir_all(&old);
    if fin.exists() {
        std::fs::rename(&fin, &old)?;
    }
    std::fs::rename(&tmp, &fin)?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

fn read_checkpoint(dir: &Path) -> anyhow::Result<Option<Checkpoint>> {
    // A crash between the two renames leaves only the old checkpoint.
    let ck = [dir.join("checkpoint"), dir.join(".checkpoint-old")]
        .into_iter()
        .find(|p| p.join("state.json").exists());
    let Some(ck) = ck else { return Ok(None) };
    let state: TrainState = serde_json::from_str(&std::fs::read_to_string(ck.join("state.json"))?)
        .with_context(|| format!("{}/state.json", ck.display()))?;
    let read = |n: &str| std::fs::read(ck.join(n)).with_context(|| format!("{}/{n}", ck.display()));
    Ok(Some(Checkpoint {
        state,
        weights: read(CK_FILES[0])?,
        optimizer: read(CK_FILES[1])?,
        best: read(CK_FILES[2])?,
    }))
}

pub fn run(a: &FitArgs) -> CmdResult {
    let n = &a.neural;
    let kind = match a.model.as_str() {
        "career" => NetKind::Career,
        _ => NetKind::BagOfJobs,
    };
    if !n.pretrain.is_empty() && kind != NetKind::Career {
        return Err(anyhow!("--pretrain is for --model career").into());
    }
    let cfg_path = a.out.join("config.toml");
    let cfg = if n.resume {
        let text = std::fs::read_to_string(&cfg_path).with_context(|| {
            format!(
                "--resume: cannot read {} (no fit to resume there)",
                cfg_path.display()
            )
        })?;
        toml::from_str::<FitConfig>(&text).map_err(|e| anyhow!("{}: {e}", cfg_path.display()))?
    } else {
        resolve_config(kind, n)?
    };
    let device = n.device.parse::<DeviceRequest>()?.resolve()?;
    tch::set_num_threads(n.threads.max(1) as i32);
    let (panel, _) = load_panel(&a.panel, &a.input)?;
    let spec = SplitSpec {
        seed: a.split_seed,
        ..SplitSpec::default()
    };
    // No pre-training panel trains on a validation or test person of the survey or --held-out.
    let mut held = labor_data::overlap::HeldOut::new();
    if !n.pretrain.is_empty() {
        held.add(&panel, &spec);
        for p in &n.held_out {
            held.add(&load_panel(p, &a.input)?.0, &spec);
        }
    }
    // The pre-training panels pooled (one taxonomy: the survey's).
    let mut pre: Option<labor_data::Panel> = None;
    for p in &n.pretrain {
        let more = load_panel(p, &a.input)?.0;
        crate::io::check_overlap(
            &format!("--pretrain {}", p.display()),
            &more,
            &spec,
            &[labor_data::Split::Train],
            &held,
            n.allow_overlap,
        )?;
        match &mut pre {
            None => pre = Some(more),
            Some(acc) => acc.persons.extend(more.persons),
        }
    }
    let data = labor_career::prepare(&panel, &spec, pre.as_ref()).map_err(|e| anyhow!(e))?;
    let (n_train, n_pretrain) = (data.train.len(), data.pre_train.len());
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let resume = if n.resume {
        read_checkpoint(&a.out)?
    } else {
        let _ = std::fs::remove_dir_all(a.out.join("checkpoint"));
        write_atomic(&cfg_path, |w| {
            Ok(w.write_all(toml::to_string_pretty(&cfg)?.as_bytes())?)
        })?;
        None
    };
    eprintln!(
        "{}: {} training and {} validation persons{}; device {device:?}",
        a.model,
        data.train.len(),
        data.valid.len(),
        if data.pre_train.is_empty() {
            String::new()
        } else {
            format!(
                "; pretraining on {} ({} / {} persons)",
                n.pretrain
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" + "),
                data.pre_train.len(),
                data.pre_valid.len()
            )
        }
    );
    let t0 = Instant::now();
    let cpu0 = cpu_seconds();
    let mut hooks = CliHooks {
        dir: &a.out,
        pb: None,
    };
    let (model, state) =
        labor_career::fit(&data, &cfg, device, &mut hooks, resume, n.stop_after_epochs)
            .map_err(|e| anyhow!("{}: {e}", a.model))?;
    if let Some(pb) = hooks.pb.take() {
        pb.finish_and_clear();
    }
    let n_stages = 1 + usize::from(!data.pre_train.is_empty());
    if state.stage < n_stages {
        println!(
            "{}: stopped in stage {} after epoch {}; continue with `labor fit --resume` and the \
             same arguments",
            a.out.display(),
            state.stage + 1,
            state.epoch
        );
        return Ok(());
    }
    let seconds = t0.elapsed().as_secs_f64();
    let weights = model.weights_bytes().map_err(|e| anyhow!(e))?;
    write_atomic(&a.out.join("model.safetensors"), |w| {
        Ok(w.write_all(&weights)?)
    })?;
    write_atomic(&a.out.join("model.json"), |w| {
        Ok(w.write_all(model.to_json().as_bytes())?)
    })?;
    let last = state.stages.last().expect("at least one stage");
    let report = serde_json::json!({
        "model": model.name(),
        "kind": a.model,
        "panel": a.panel,
        "pretrain_panel": n.pretrain,
        "train_persons": n_train,
        "pretrain_persons": n_pretrain,
        "device": format!("{device:?}"),
        "threads": n.threads.max(1),
        "parameters": model.net.n_params(),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds() - cpu0,
        "resumed": n.resume,
        "epochs": state.stages.iter().map(|s| s.epochs).sum::<usize>(),
        "best_valid_perplexity": last.best_valid_perplexity,
        "stages": state.stages,
        "history": state.history,
        "config": cfg,
    });
    write_atomic(&a.out.join("fit.json"), |w| {
        Ok(serde_json::to_writer_pretty(w, &report)?)
    })?;
    std::fs::write(a.out.join("kind"), format!("{}\n", a.model))?;
    for s in &state.stages {
        println!(
            "{} {}: {} epochs, best validation perplexity {:.3} (epoch {}){}",
            model.name(),
            s.name,
            s.epochs,
            s.best_valid_perplexity,
            s.best_epoch,
            if s.early_stopped {
                ", stopped early"
            } else {
                ""
            }
        );
    }
    println!(
        "{}: {} ({} parameters) fitted in {seconds:.1} s",
        a.out.display(),
        model.name(),
        model.net.n_params()
    );
    Ok(())
}

/// User + system CPU time of this process.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        tv(u.ru_utime) + tv(u.ru_stime)
    }
}

/// The neural model saved in `dir` (on the CPU, one tensor thread: a person at a time is far too
/// small a job to split).
pub fn load(dir: &Path, panel: &Panel) -> anyhow::Result<Box<dyn Predictor>> {
    tch::set_num_threads(1);
    let json = std::fs::read_to_string(dir.join("model.json"))
        .with_context(|| format!("cannot read {}/model.json", dir.display()))?;
    let w = std::fs::read(dir.join("model.safetensors"))
        .with_context(|| format!("cannot read {}/model.safetensors", dir.display()))?;
    let m = NeuralModel::from_parts(&json, &w, tch::Device::Cpu)
        .map_err(|e| anyhow!("{}: {e}", dir.display()))?;
    m.file
        .vocab
        .check_taxonomy(&panel.taxonomy)
        .map_err(|e| anyhow!("{}: {e}", dir.display()))?;
    Ok(Box::new(m))
}
