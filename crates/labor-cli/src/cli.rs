//! The `labor` command line: every subcommand and its arguments, in one place, so that the
//! binary parses flags with it and `labor reproduce` checks that each stage it plans is a
//! `labor` command that parses.

use clap::{Parser, Subcommand};

use crate::io::CmdResult;
use crate::{
    bench, calibrate, data, demo, eval, fit, lm, predict, reproduce, score, serve, simulate, synth,
    taxonomy, text, train,
};

/// Predict workers' next occupation from their career history with language models, and
/// measure every model against the best possible.
#[derive(Debug, Parser)]
#[command(name = "labor", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Write every problem of invalid input to this CSV file (file, unit, index, field, found,
    /// expected); the terminal shows the first 50 and a summary.
    #[arg(long, global = true, value_name = "FILE")]
    pub problems: Option<std::path::PathBuf>,
    /// Run as if `labor` had been started in DIR (relative paths are read from there), like
    /// `git -C` and `make -C`; `labor reproduce --dry-run` prints its stages this way.
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Career panels: validate, describe, convert, import survey extracts, assign splits.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// The label taxonomy: show, validate or export it.
    #[command(subcommand)]
    Taxonomy(taxonomy::TaxonomyCommand),
    /// Render career histories as resume-like text (SPEC §4).
    #[command(subcommand)]
    Text(text::TextCommand),
    /// Train or check tokenizers.
    #[command(subcommand)]
    Tokenizer(text::TokenizerCommand),
    /// Language-model directories: fetch a pre-trained model, import GGUF, initialise, describe.
    #[command(subcommand)]
    Lm(lm::LmCommand),
    /// Fine-tune or train a language model from one TOML run description (docs/train.md).
    Train(train::TrainArgs),
    /// Fit a comparison model (markov1, markov2, mnl, bag-of-jobs, career) on the train split,
    /// tuned on valid.
    Fit(fit::FitArgs),
    /// Score a model on a panel split: every record's probability of the true label and the full
    /// distribution over all labels, written in the predictions schema (SPEC §7.1).
    Score(score::ScoreArgs),
    /// Fit a post-hoc calibration (a temperature, optionally a stay offset) of any model on the
    /// validation split; `labor score --calibration FILE` applies it.
    Calibrate(calibrate::CalibrateArgs),
    /// Evaluate prediction files: perplexity, sub-tasks, calibration by subgroup, paired
    /// comparisons; Markdown/CSV tables, SVG plots and a self-contained report.html.
    Eval(eval::EvalArgs),
    /// The next year's distribution for career histories (JSON lines or CSV), with any model.
    Predict(predict::PredictArgs),
    /// Simulate careers forward from a panel's histories with any model: trajectories,
    /// shares by year, mobility, and counterfactuals (`--set education=bachelors`) with common
    /// random numbers.
    Simulate(simulate::SimulateArgs),
    /// Serve models over HTTP (loopback by default): a JSON API (`/v1/predict`, `/v1/simulate`,
    /// `/v1/labels`, `/healthz`) and a web page to type a career into.
    Serve(serve::ServeArgs),
    /// Run the whole study from one preset (quick, cpu-smollm2, gpu or a file): worlds, models,
    /// scoring, evaluation and report; finished stages are cached.
    Reproduce(reproduce::ReproduceArgs),
    /// Generate a synthetic labor market with exact oracle probabilities, or report on one.
    Synth(synth::SynthArgs),
    /// Describe the tensor runtime (libtorch, CUDA devices) and run a small computation on it.
    Env(EnvArgs),
    /// Benchmarks with their references (see BENCHMARKS.md).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Run the end-to-end demo on the embedded defaults and write its outputs to a folder.
    Demo(demo::DemoArgs),
}

#[derive(Debug, clap::Args)]
pub struct EnvArgs {
    /// Device for the check: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

fn env(args: &EnvArgs) -> CmdResult {
    use labor_torch::runtime::{DeviceRequest, RuntimeInfo, self_check};
    println!("labor {}", env!("CARGO_PKG_VERSION"));
    println!("{}", RuntimeInfo::probe());
    let device = args.device.parse::<DeviceRequest>()?.resolve()?;
    let y = self_check(device);
    println!("self-check on {device:?}: softmax·W = {y:.6?}");
    Ok(())
}

impl Command {
    /// Runs the subcommand.
    pub fn run(&self) -> CmdResult {
        match self {
            Command::Data(c) => data::run(c),
            Command::Taxonomy(c) => taxonomy::run(c),
            Command::Synth(a) => synth::run(a),
            Command::Text(c) => text::run_text(c),
            Command::Tokenizer(c) => text::run_tokenizer(c),
            Command::Env(a) => env(a),
            Command::Lm(c) => lm::run_lm(c),
            Command::Score(a) => score::run_score(a),
            Command::Train(a) => train::run(a),
            Command::Fit(a) => fit::run(a),
            Command::Calibrate(a) => calibrate::run(a),
            Command::Eval(a) => eval::run(a),
            Command::Predict(a) => predict::run(a),
            Command::Simulate(a) => simulate::run(a),
            Command::Serve(a) => serve::run(a),
            Command::Reproduce(a) => reproduce::run(a),
            Command::Demo(a) => demo::run(a),
            Command::Bench(c) => bench::run(c),
        }
    }
}

/// Parses a `labor` argument vector (without the program name) as the binary does.
pub fn parse_args(args: &[String]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("labor".to_string()).chain(args.iter().cloned()))
}
