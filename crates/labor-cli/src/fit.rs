//! `labor fit --model markov1|markov2|mnl|bag-of-jobs|career --panel P --out DIR`: fit a
//! comparison model on the train split (tuned on valid) and save it where
//! `labor score --model DIR` finds it. The neural models (bag-of-jobs, career) are in
//! [`neural`].
//!
//! A comparison-model directory holds `kind` (the model name), `model.json` (the fitted model)
//! and `fit.json` (what the fit did); an MNL also writes `coefficients.csv`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, anyhow};
use clap::Args;
use labor_baselines::markov::Markov;
use labor_baselines::mnl::{Mnl, MnlOptions};
use labor_data::predictions::Predictor;
use labor_data::{Panel, SplitSpec};

mod neural;

use crate::io::{CmdResult, PanelInput, load_panel, write_atomic};

#[derive(Debug, Args)]
pub struct FitArgs {
    /// markov1, markov2, mnl, bag-of-jobs or career.
    #[arg(long)]
    pub model: String,
    #[arg(long)]
    pub panel: PathBuf,
    #[command(flatten)]
    pub input: PanelInput,
    /// Split seed for persons without an explicit split.
    #[arg(long, default_value_t = labor_data::split::DEFAULT_SPLIT_SEED)]
    pub split_seed: u64,
    /// MNL: candidate L2 penalties (comma-separated) of the softmax (the move softmax in the
    /// two-stage form), chosen on the valid split.
    #[arg(long, value_delimiter = ',')]
    pub lambdas: Option<Vec<f64>>,
    /// MNL: candidate L2 penalties of the stay stage (two-stage form), chosen on the valid split.
    #[arg(long, value_delimiter = ',')]
    pub stay_lambdas: Option<Vec<f64>>,
    /// MNL: one softmax over all labels instead of the two-stage (stay / move) form.
    #[arg(long)]
    pub one_stage: bool,
    #[command(flatten)]
    pub neural: neural::NeuralArgs,
    #[arg(long)]
    pub out: PathBuf,
}

pub const KINDS: [&str; 5] = ["markov1", "markov2", "mnl", "bag-of-jobs", "career"];

pub fn run(a: &FitArgs) -> CmdResult {
    if !KINDS.contains(&a.model.as_str()) {
        return Err(anyhow!("--model {:?}: expected one of {KINDS:?}", a.model).into());
    }
    if neural::is_neural(&a.model) {
        return neural::run(a);
    }
    if let Some(flag) = a.neural.given() {
        return Err(anyhow!("{flag} is for --model bag-of-jobs or career").into());
    }
    let (panel, _) = load_panel(&a.panel, &a.input)?;
    let spec = SplitSpec {
        seed: a.split_seed,
        ..SplitSpec::default()
    };
    let t0 = Instant::now();
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let report = match a.model.as_str() {
        "markov1" | "markov2" => {
            let order = if a.model == "markov1" { 1 } else { 2 };
            let m = Markov::fit(&panel, &spec, order).map_err(|e| anyhow!(e))?;
            write_atomic(&a.out.join("model.json"), |w| {
                m.to_writer(w).map_err(|e| anyhow!(e))
            })?;
            serde_json::json!({
                "model": a.model,
                "first_smoothing": format!("{:?}", m.first_smoothing),
                "smoothing1": format!("{:?}", m.smoothing1),
                "seconds": t0.elapsed().as_secs_f64(),
            })
        }
        _ => {
            let mut opts = MnlOptions {
                two_stage: !a.one_stage,
                ..MnlOptions::default()
            };
            if let Some(l) = &a.lambdas {
                opts.lambdas = l.clone();
            }
            if let Some(l) = &a.stay_lambdas {
                opts.stay_lambdas = l.clone();
            }
            let m = Mnl::fit(&panel, &spec, &opts).map_err(|e| anyhow!(e))?;
            write_atomic(&a.out.join("model.json"), |w| {
                m.to_writer(w).map_err(|e| anyhow!(e))
            })?;
            write_atomic(&a.out.join("coefficients.csv"), |w| {
                Ok(m.write_coefficients(w)?)
            })?;
            let r = &m.report;
            let form = if m.stay.is_some() {
                "two-stage"
            } else {
                "one-stage"
            };
            let stage = if m.stay.is_some() {
                "move softmax"
            } else {
                "softmax"
            };
            println!(
                "mnl ({form}) {stage}: log-likelihood {:.3} after {} iterations, final gradient \
                 norm {:.3e} (λ = {}, converged: {})",
                r.loglik, r.iterations, r.grad_norm, r.lambda, r.converged
            );
            if let Some(s) = &m.stay {
                let r = &s.report;
                println!(
                    "mnl (two-stage) stay logit: log-likelihood {:.3} after {} iterations, final \
                     gradient norm {:.3e} (λ = {}, converged: {}); total {:.3}",
                    r.loglik,
                    r.iterations,
                    r.grad_norm,
                    r.lambda,
                    r.converged,
                    m.train_loglik()
                );
            }
            serde_json::json!({
                "model": "mnl",
                "form": form,
                "loglik": m.train_loglik(),
                "epsilon": m.epsilon,
                "report": r,
                "search": m.search,
                "stay": m.stay.as_ref().map(|s| serde_json::json!({"report": s.report, "search": s.search})),
                "seconds": t0.elapsed().as_secs_f64(),
            })
        }
    };
    write_atomic(&a.out.join("fit.json"), |w| {
        Ok(serde_json::to_writer_pretty(w, &report)?)
    })?;
    std::fs::write(a.out.join("kind"), format!("{}\n", a.model))?;
    println!(
        "{}: {} fitted in {:.1} s",
        a.out.display(),
        a.model,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The comparison model saved in `dir`, when `dir` holds one (`kind` file).
pub fn load(dir: &Path, panel: &Panel) -> anyhow::Result<Option<Box<dyn Predictor>>> {
    let kind_path = dir.join("kind");
    if !kind_path.exists() {
        return Ok(None);
    }
    let kind = std::fs::read_to_string(&kind_path)?.trim().to_string();
    if neural::is_neural(&kind) {
        return neural::load(dir, panel).map(Some);
    }
    let f = std::fs::File::open(dir.join("model.json"))
        .with_context(|| format!("cannot open {}/model.json", dir.display()))?;
    let r = std::io::BufReader::new(f);
    let p: Box<dyn Predictor> = match kind.as_str() {
        "markov1" | "markov2" => {
            let m = Markov::from_reader(r).map_err(|e| anyhow!("{}: {e}", dir.display()))?;
            m.check_taxonomy(&panel.taxonomy)
                .map_err(|e| anyhow!("{}: {e}", dir.display()))?;
            Box::new(m.with_order(if kind == "markov1" { 1 } else { 2 }))
        }
        "mnl" => {
            let m = Mnl::from_reader(r).map_err(|e| anyhow!("{}: {e}", dir.display()))?;
            m.check_taxonomy(&panel.taxonomy)
                .map_err(|e| anyhow!("{}: {e}", dir.display()))?;
            Box::new(m)
        }
        other => return Err(anyhow!("{}: unknown model kind {other:?}", dir.display())),
    };
    Ok(Some(p))
}
