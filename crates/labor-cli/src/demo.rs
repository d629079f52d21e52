//! `labor demo`: what the project can do end to end today, on the embedded defaults.
//!
//! Imports the worked survey-extract example (docs/import.md) with the embedded default
//! taxonomy, assigns splits, writes the panel as Parquet, CSV and CAREER files, reads each back
//! and describes it, runs a small computation on the tensor runtime, and generates a small
//! synthetic world with its oracle and diagnostics.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use labor_data::stats::PanelStats;
use labor_data::{SplitSpec, Taxonomy};

use crate::data::{assign_splits, import, print_import_report, print_split_counts, print_stats};
use crate::io::{CmdResult, Format, PanelInput, load_panel, save_panel};

const EXAMPLE: [(&str, &str); 3] = [
    (
        "mapping.toml",
        include_str!("../../../examples/import/mapping.toml"),
    ),
    (
        "crosswalk.csv",
        include_str!("../../../examples/import/crosswalk.csv"),
    ),
    (
        "extract.csv",
        include_str!("../../../examples/import/extract.csv"),
    ),
];

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Folder for the demo's outputs (created; existing demo files are replaced).
    #[arg(long, default_value = "demo-out")]
    out: PathBuf,
}

fn step(n: usize, what: &str) {
    println!("\n== {n}. {what}");
}

pub fn run(args: &DemoArgs) -> CmdResult {
    let out = &args.out;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;

    step(1, "tensor runtime");
    let info = labor_torch::runtime::RuntimeInfo::probe();
    println!("{info}");
    let y = labor_torch::runtime::self_check(tch::Device::Cpu);
    println!("self-check on CPU: softmax·W = {y:.6?}");

    step(2, "embedded default taxonomy");
    let t = Taxonomy::embedded_default();
    println!(
        "{} occupations in {} groups, plus {}",
        t.occupations().count(),
        t.groups().len() - 1,
        labor_data::taxonomy::SPECIAL_LABELS.map(|s| s.1).join(", ")
    );

    step(
        3,
        "import a survey extract (examples/import, see docs/import.md)",
    );
    let src = out.join("extract");
    std::fs::create_dir_all(&src)?;
    for (name, text) in EXAMPLE {
        std::fs::write(src.join(name), text)?;
    }
    let (mut panel, report) = import(&src.join("mapping.toml"), &src.join("extract.csv"), None)?;
    print_import_report(&report);

    step(4, "splits by person (seed 2406, 70/10/20)");
    let spec = SplitSpec::default();
    assign_splits(&mut panel, &spec);
    print_split_counts(&panel);

    step(5, "write Parquet, CSV and CAREER files, and read each back");
    let input = PanelInput {
        taxonomy: None,
        add_unknown_labels: false,
        from: None,
        dataset: "NLSY79".into(),
    };
    for (path, format) in [
        (out.join("panel.parquet"), Format::Parquet),
        (out.join("panel.csv"), Format::Csv),
        (out.join("career"), Format::Career),
    ] {
        save_panel(&panel, &path, format, &spec)?;
        let (back, _) = load_panel(&path, &input)?;
        if back.n_records() != panel.n_records() {
            return Err(anyhow!("{} read back differently", path.display()).into());
        }
        println!(
            "  {:24} {} persons, {} person-years: valid",
            path.display().to_string(),
            back.persons.len(),
            back.n_records()
        );
    }

    step(6, "describe the panel (labor data stats)");
    print_stats(
        &out.join("panel.parquet").display().to_string(),
        &PanelStats::compute(&panel),
        5,
    );

    step(
        7,
        "a synthetic labor market with exact oracle probabilities (labor synth)",
    );
    let world_dir = out.join("world");
    let args = crate::synth::SynthArgs {
        world: "nlsy79".into(),
        seed: 1,
        workers: Some(2000),
        out: Some(world_dir.clone()),
        full_oracle: 0,
        threads: None,
        report: None,
        export_extract: None,
    };
    let report = crate::synth::generate(&args, &world_dir)?;
    println!(
        "{} (nlsy79 preset, 2,000 workers, seed 1)\n{report}",
        world_dir.display()
    );

    println!(
        "\nDone. Outputs in {}. Try: labor data validate {}",
        out.display(),
        out.join("panel.csv").display()
    );
    Ok(())
}
