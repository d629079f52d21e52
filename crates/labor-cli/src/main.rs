//! `labor`: the command line of labor-llm. The only crate that reads files and parses flags.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use labor_cli::io::{CmdResult, Failure};
use labor_cli::{
    bench, data, demo, eval, fit, io, lm, predict, reproduce, score, serve, simulate, synth,
    taxonomy, text, train,
};

/// Predict workers' next occupation from their career history with language models, and
/// measure every model against the best possible.
#[derive(Debug, Parser)]
#[command(name = "labor", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Write every problem of invalid input to this CSV file (file, unit, index, field, found,
    /// expected); the terminal shows the first 50 and a summary.
    #[arg(long, global = true, value_name = "FILE")]
    problems: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
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
struct EnvArgs {
    /// Device for the check: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
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

/// Keeps freed memory in the process heap instead of returning large blocks to the kernel:
/// scoring and training allocate and free tensors of tens of MiB per step, and with glibc's
/// defaults each of them is a fresh `mmap` that the kernel must zero (about 12% of CPU scoring
/// time measured). Memory is still reused; it is only not handed back until exit.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before any other thread
    // exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// Exit status of a usage error (BSD `sysexits.h` EX_USAGE).
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    tune_allocator();
    // Usage errors (unknown flags, missing arguments) exit 64 (EX_USAGE), distinct from invalid
    // input (2); `--help` and `--version` exit 0.
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => EXIT_USAGE,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match &cli.command {
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
        Command::Eval(a) => eval::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Simulate(a) => simulate::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Reproduce(a) => reproduce::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Bench(c) => bench::run(c),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Invalid { file, problems }) => {
            report_problems(&file, &problems, cli.problems.as_deref());
            ExitCode::from(2)
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(if io::is_invalid_input(&e) { 2 } else { 1 })
        }
    }
}

/// Problems printed to the terminal; the rest are summarised (and all go to `--problems`).
const SHOWN_PROBLEMS: usize = 50;

/// Prints the first problems (one per line), then a summary by field and by kind (field and
/// what was expected), to stderr; with `csv`, writes every problem there.
fn report_problems(file: &str, problems: &[labor_data::Problem], csv: Option<&std::path::Path>) {
    use std::collections::BTreeMap;
    for p in problems.iter().take(SHOWN_PROBLEMS) {
        eprintln!("{}", p.clone().with_default_file(file));
    }
    let written = csv.map(|path| (path, io::write_problems_csv(path, file, problems)));
    if problems.len() > SHOWN_PROBLEMS {
        let rest = problems.len() - SHOWN_PROBLEMS;
        match &written {
            Some((path, Ok(()))) => {
                eprintln!("... and {rest} more, all in {}", path.display())
            }
            _ => eprintln!("... and {rest} more (--problems FILE writes them all as CSV)"),
        }
    }
    if let Some((path, Err(e))) = &written {
        eprintln!("error: cannot write {}: {e:#}", path.display());
    }
    let mut by_field: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_kind: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for p in problems {
        *by_field.entry(&p.field).or_insert(0) += 1;
        *by_kind.entry((&p.field, &p.expected)).or_insert(0) += 1;
    }
    let summary: Vec<String> = by_field.iter().map(|(f, n)| format!("{f}: {n}")).collect();
    eprintln!(
        "{file}: invalid: {} problem(s) ({})",
        problems.len(),
        summary.join(", ")
    );
    if problems.len() > SHOWN_PROBLEMS {
        for ((field, expected), n) in &by_kind {
            eprintln!("  {n} × {field}: expected {expected}");
        }
    }
}
