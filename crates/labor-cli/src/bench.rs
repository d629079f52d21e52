//! `labor bench score`: full-distribution scoring with the trie and KV cache against the naive
//! K-pass loop on the same model and records, and an input file for the Python reference
//! (`tools/reference/bench_score.py`) over exactly the same token ids.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use labor_data::predictions::Predictor;
use labor_data::{Split, SplitSpec};
use labor_lm::predict::{LmPredictor, encode};
use labor_lm::score::{LabelTrie, ScoreOptions, Scorer};
use labor_text::Renderer;
use labor_torch::runtime::DeviceRequest;

use crate::io::{CmdResult, PanelInput, write_atomic};
use crate::lm::{load_model, resolve_kind};
use crate::text::{TextArgs, panel_and_template};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time trie scoring against the naive loop (one forward pass per label) on the same records.
    Score(BenchScoreArgs),
    /// Training throughput (tokens/s) of full fine-tuning or LoRA on fixed random batches.
    Train(BenchTrainArgs),
    /// A bounded load test of a running `labor serve` on loopback: requests/s and latency
    /// percentiles.
    Serve(crate::serve::load::BenchServeArgs),
}

#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    #[arg(long, default_value_t = 256)]
    pub seq: usize,
    /// Timed optimizer steps (after 2 untimed warm-up steps).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// LoRA rank (0 = full fine-tuning); LoRA targets q, k, v, o.
    #[arg(long, default_value_t = 0)]
    pub lora_rank: usize,
    /// Write the token ids of the batch (JSON) for tools/reference/bench_train.py.
    #[arg(long)]
    pub dump: Option<PathBuf>,
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Precision of the weights: f32 or bf16 (bf16 trains in bf16 throughout).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct BenchScoreArgs {
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub panel: PathBuf,
    #[command(flatten)]
    pub input: PanelInput,
    #[command(flatten)]
    pub text: TextArgs,
    /// Test-split persons to take (the first ones).
    #[arg(long, default_value_t = 2)]
    pub persons: usize,
    /// Records per person: the first, the last and evenly spaced ones between.
    #[arg(long, default_value_t = 3)]
    pub records: usize,
    /// Skip the naive loop (for large models).
    #[arg(long)]
    pub no_naive: bool,
    /// Run the naive loop on the first N records only (it costs one forward pass per label).
    #[arg(long)]
    pub naive_records: Option<usize>,
    /// Before and after in one run on the same records: the reference kernels (explicit tree
    /// attention, libtorch logsumexp) in f32, today's kernels in f32, and today's kernels in
    /// mixed bf16 (on the f32 model, so `--dtype` is ignored); reports records/s of each, the
    /// speed-ups, and how far each is from today's f32.
    #[arg(long)]
    pub compare: bool,
    /// Write the records' context ids and the label continuations for bench_score.py.
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Write the trie's log-probabilities (records × labels) as JSON, to compare with Python's.
    #[arg(long)]
    pub logp_out: Option<PathBuf>,
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long, default_value = "auto")]
    pub dtype: String,
}

pub fn run(cmd: &BenchCommand) -> CmdResult {
    match cmd {
        BenchCommand::Score(a) => score(a),
        BenchCommand::Train(a) => train(a),
        BenchCommand::Serve(a) => crate::serve::load::run(a),
    }
}

fn train(a: &BenchTrainArgs) -> CmdResult {
    use labor_lm::train::train_step;
    use labor_torch::optim::{AdamW, OptimConfig, Schedule};
    let device = a.device.parse::<DeviceRequest>()?.resolve()?;
    let kind = resolve_kind(&a.dtype, device)?;
    let lora = a.lora_rank > 0;
    let mut m = load_model(&a.model, device, kind, !lora)?;
    let avs = tch::nn::VarStore::new(device);
    if lora {
        m.model
            .add_lora(
                &avs.root(),
                &labor_lm::LoraConfig {
                    rank: a.lora_rank,
                    alpha: 2.0 * a.lora_rank as f64,
                    dropout: 0.0,
                    targets: ["q_proj", "k_proj", "v_proj", "o_proj"]
                        .map(String::from)
                        .to_vec(),
                    layers: None,
                },
            )
            .map_err(|e| anyhow!(e))?;
    }
    let store = if lora { &avs } else { &m.vs };
    let mut params: Vec<(String, tch::Tensor)> = store
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    params.sort_by(|x, y| x.0.cmp(&y.0));
    let mut opt = AdamW::new(params);
    let cfg = OptimConfig {
        lr: 1e-4,
        betas: [0.9, 0.999],
        eps: 1e-8,
        weight_decay: 0.0,
        warmup_steps: 0,
        schedule: Schedule::Constant,
        grad_clip: 1.0,
        min_lr_ratio: 0.0,
        lr_label_rows: None,
        lr_lora: None,
        lr_base: None,
    };
    // Fixed pseudo-random token ids (SplitMix64), identical in the Python reference.
    let vocab = m.model.config.vocab_size as u64;
    let mut rng = labor_data::rng::SplitMix64::new(a.seed);
    let ids: Vec<Vec<i64>> = (0..a.batch)
        .map(|_| (0..a.seq).map(|_| rng.modulo(vocab) as i64).collect())
        .collect();
    if let Some(path) = &a.dump {
        write_atomic(path, |w| Ok(serde_json::to_writer(w, &ids)?))?;
    }
    let micro = vec![ids.iter().map(Vec::as_slice).collect::<Vec<_>>()];
    let total = a.steps + 2;
    let mut losses = Vec::new();
    let mut t0 = Instant::now();
    for step in 0..total {
        if step == 2 {
            if device != tch::Device::Cpu {
                tch::Cuda::synchronize(0);
            }
            t0 = Instant::now();
        }
        let s = train_step(&m.model, &mut opt, &cfg, &micro, step, total, device)
            .map_err(|e| anyhow!(e))?;
        losses.push(s.loss);
    }
    if device != tch::Device::Cpu {
        tch::Cuda::synchronize(0);
    }
    let secs = t0.elapsed().as_secs_f64();
    let tokens = (a.steps * a.batch * a.seq) as f64;
    let n = m.model.config.n_params() as f64;
    let report = serde_json::json!({
        "model": a.model.display().to_string(),
        "parameters": m.model.config.n_params(),
        "trainable": opt.n_params(),
        "method": if lora { format!("lora r={}", a.lora_rank) } else { "full".into() },
        "device": format!("{device:?}"),
        "dtype": format!("{kind:?}"),
        "batch": a.batch,
        "seq": a.seq,
        "steps": a.steps,
        "seconds": secs,
        "tokens_per_s": tokens / secs,
        "seconds_per_step": secs / a.steps as f64,
        // 6·N·tokens (forward + backward) over the H100's dense bf16 peak.
        "mfu_h100_bf16": 6.0 * n * tokens / secs / 989e12,
        "first_loss": losses.first(),
        "last_loss": losses.last(),
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Largest and mean absolute difference between two sets of per-record label scores.
fn deviation(a: &[Vec<f64>], b: &[Vec<f64>]) -> (f64, f64) {
    let d: Vec<f64> = a
        .iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs()))
        .collect();
    let max = d.iter().copied().fold(0.0, f64::max);
    (max, d.iter().sum::<f64>() / d.len().max(1) as f64)
}

/// The scorer of `m` over the renderer's labels, named `lm`, without a context limit.
fn predictor<'a>(
    m: &'a crate::lm::ModelDir,
    renderer: &'a Renderer<'a>,
    taxonomy: &'a labor_data::Taxonomy,
    options: ScoreOptions,
) -> anyhow::Result<LmPredictor<'a>> {
    LmPredictor::new(
        "lm",
        &m.model,
        &m.tokenizer,
        renderer,
        taxonomy,
        options,
        None,
    )
    .map_err(|e| anyhow!(e))
}

fn score(a: &BenchScoreArgs) -> CmdResult {
    let (panel, template) = panel_and_template(&a.panel, &a.input, &a.text)?;
    let device = a.device.parse::<DeviceRequest>()?.resolve()?;
    let kind = if a.compare {
        tch::Kind::Float
    } else {
        resolve_kind(&a.dtype, device)?
    };
    let mut m = load_model(&a.model, device, kind, false)?;
    let switches = crate::lm::model_switches(a.text.switches(), &m.tokenizer, &panel.taxonomy)
        .map_err(|e| anyhow!("{}: {e}", a.model.display()))?;
    let renderer = Renderer::new(&template, switches, &panel.taxonomy).map_err(|e| anyhow!(e))?;
    let mut lm = predictor(&m, &renderer, &panel.taxonomy, ScoreOptions::default())?;
    let conts = lm.continuations().to_vec();
    let trie_nodes = lm.trie_nodes();
    let spec = SplitSpec::default();
    let chosen: Vec<(&labor_data::Person, Vec<usize>)> = panel
        .persons
        .iter()
        .filter(|p| p.split_or(&spec) == Split::Test)
        .take(a.persons)
        .map(|p| {
            let n = p.records.len();
            let r = a.records.clamp(1, n);
            let mut ts: Vec<usize> = (0..r)
                .map(|i| if r == 1 { n - 1 } else { i * (n - 1) / (r - 1) })
                .collect();
            ts.dedup();
            (p, ts)
        })
        .collect();
    let n_records: usize = chosen.iter().map(|(_, ts)| ts.len()).sum();
    // Warm-up (first-call allocations), untimed, then every chosen record, timed.
    let timed = |lm: &mut LmPredictor| -> anyhow::Result<(Vec<Vec<f64>>, f64)> {
        if let Some((p, ts)) = chosen.first() {
            lm.predict(p, &ts[..1]).map_err(|e| anyhow!(e))?;
        }
        let t0 = Instant::now();
        let mut logp = Vec::new();
        for (p, ts) in &chosen {
            logp.extend(lm.predict(p, ts).map_err(|e| anyhow!(e))?.logp);
        }
        Ok((logp, t0.elapsed().as_secs_f64()))
    };
    let truths: Vec<usize> = chosen
        .iter()
        .flat_map(|(p, ts)| ts.iter().map(|&t| p.records[t].label.index()))
        .collect();
    let (trie_logp, trie_s) = timed(&mut lm)?;
    let mut compared = None;
    if a.compare {
        drop(lm);
        let options = ScoreOptions {
            reference_kernels: true,
            ..ScoreOptions::default()
        };
        let reference = predictor(&m, &renderer, &panel.taxonomy, options)?;
        let (ref_logp, ref_s) = timed(&mut { reference })?;
        m.model.cache_bf16_weights();
        let bf16 = predictor(&m, &renderer, &panel.taxonomy, ScoreOptions::default())?;
        let (bf_logp, bf_s) = timed(&mut { bf16 })?;
        // The quantity perplexity is made of: the true label's normalized log-probability.
        let norm = |l: &[Vec<f64>]| -> Vec<f64> {
            l.iter()
                .zip(&truths)
                .map(|(x, &t)| labor_lm::score::summarize(x, t).logp_norm)
                .collect()
        };
        let (n32, n16) = (norm(&trie_logp), norm(&bf_logp));
        let dn: Vec<f64> = n16.iter().zip(&n32).map(|(b, f)| b - f).collect();
        let (ref_max, ref_mean) = deviation(&ref_logp, &trie_logp);
        let (bf_max, bf_mean) = deviation(&bf_logp, &trie_logp);
        compared = Some(serde_json::json!({
            "reference_f32_seconds": ref_s,
            "reference_f32_records_per_s": n_records as f64 / ref_s,
            "f32_seconds": trie_s,
            "f32_records_per_s": n_records as f64 / trie_s,
            "bf16_seconds": bf_s,
            "bf16_records_per_s": n_records as f64 / bf_s,
            "f32_speedup_vs_reference": ref_s / trie_s,
            "bf16_speedup_vs_reference": ref_s / bf_s,
            "max_abs_diff_f32_vs_reference": ref_max,
            "mean_abs_diff_f32_vs_reference": ref_mean,
            "bf16_vs_f32_label_logp_max_abs_diff": bf_max,
            "bf16_vs_f32_label_logp_mean_abs_diff": bf_mean,
            "bf16_vs_f32_true_label_norm_logp_max_abs_diff":
                dn.iter().fold(0.0f64, |a, d| a.max(d.abs())),
            "bf16_vs_f32_true_label_norm_logp_mean_diff":
                dn.iter().sum::<f64>() / dn.len().max(1) as f64,
            "bf16_vs_f32_true_label_norm_logp_mean_abs_diff":
                dn.iter().map(|d| d.abs()).sum::<f64>() / dn.len().max(1) as f64,
        }));
        // The naive check below compares against today's f32 kernels.
        m.model.set_bf16_compute(false);
    }
    let mut contexts: Vec<Vec<i64>> = Vec::new();
    for (p, ts) in &chosen {
        let r = renderer.render(p, &panel.taxonomy);
        let spans: Vec<_> = ts
            .iter()
            .map(|&t| {
                let s = &r.records[t];
                (s.context_end, s.continuation[1], p.records[t].label.index())
            })
            .collect();
        let enc = encode(&m.tokenizer, &r.text, &spans, &conts).map_err(|e| anyhow!(e))?;
        contexts.extend(enc.contexts.iter().map(|&c| enc.ids[..c].to_vec()));
    }
    let ctx_tokens: usize = contexts.iter().map(Vec::len).sum();
    let mut report = serde_json::json!({
        "model": a.model.display().to_string(),
        "parameters": m.model.config.n_params(),
        "device": format!("{device:?}"),
        "records": n_records,
        "labels": conts.len(),
        "trie_nodes": trie_nodes,
        "mean_context_tokens": ctx_tokens as f64 / n_records as f64,
        "trie_seconds": trie_s,
        "trie_records_per_s": n_records as f64 / trie_s,
    });
    if let Some(c) = compared {
        report["compare"] = c;
    }
    if !a.no_naive {
        let naive = Scorer::new(
            &m.model,
            LabelTrie::new(&conts).map_err(|e| anyhow!(e))?,
            ScoreOptions::default(),
        );
        let take = a.naive_records.unwrap_or(usize::MAX).min(contexts.len());
        report["naive_records"] = take.into();
        let t1 = Instant::now();
        let mut worst = 0f64;
        for (c, want) in contexts.iter().zip(&trie_logp).take(take) {
            let got = naive.score_naive(c, &conts);
            for (g, w) in got.iter().zip(want) {
                worst = worst.max((g - w).abs());
            }
        }
        let naive_s = t1.elapsed().as_secs_f64();
        report["naive_seconds"] = naive_s.into();
        report["naive_records_per_s"] = (take as f64 / naive_s).into();
        report["speedup_vs_naive"] =
            ((naive_s / take.max(1) as f64) / (trie_s / n_records as f64)).into();
        report["max_abs_diff_trie_vs_naive"] = worst.into();
    }
    if let Some(path) = &a.dump {
        let json = serde_json::json!({"contexts": contexts, "continuations": conts});
        write_atomic(path, |w| Ok(serde_json::to_writer(w, &json)?))?;
    }
    if let Some(path) = &a.logp_out {
        write_atomic(path, |w| Ok(serde_json::to_writer(w, &trie_logp)?))?;
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
