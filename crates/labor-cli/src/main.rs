//! `labor`: the command line of labor-llm. The only crate that reads files and parses flags.

use std::process::ExitCode;

use clap::Parser;

use labor_cli::cli::Cli;
use labor_cli::io::{self, Failure};

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
    if let Some(dir) = &cli.dir
        && let Err(e) = std::env::set_current_dir(dir)
    {
        eprintln!("error: -C {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    let result = cli.command.run();
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
