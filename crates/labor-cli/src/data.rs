//! `labor data ...`

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use labor_data::import::{ImportReport, Mapping, import_extract, read_crosswalk};
use labor_data::stats::PanelStats;
use labor_data::{BuildReport, Panel, Split, SplitSpec};

use crate::io::{
    CmdResult, Format, PanelInput, invalid, load_panel, load_taxonomy, output_format, save_panel,
};

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Check a panel (CSV, Parquet or CAREER directory). Prints every problem with file,
    /// line/row, field, the value found and what was expected; exits 2 if there is any.
    Validate {
        /// Panel file (.csv, .parquet) or CAREER directory.
        panel: PathBuf,
        #[command(flatten)]
        input: PanelInput,
    },
    /// Describe a panel: persons, person-years, years, label and special-state shares,
    /// annual occupation-change rate, gaps.
    Stats {
        panel: PathBuf,
        #[command(flatten)]
        input: PanelInput,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Number of most frequent labels to list.
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
    /// Convert a panel between CSV, Parquet and the CAREER parallel-file format (a directory).
    Convert {
        /// Input panel.
        input_path: PathBuf,
        /// Output: .csv, .parquet, or a directory for CAREER files.
        output: PathBuf,
        #[command(flatten)]
        input: PanelInput,
        /// Output format, when the name does not tell.
        #[arg(long, value_enum, value_name = "FORMAT")]
        to: Option<Format>,
        /// Split seed for CAREER output of persons without an explicit split.
        #[arg(long, default_value_t = labor_data::split::DEFAULT_SPLIT_SEED)]
        seed: u64,
    },
    /// Turn a survey extract (wide or long CSV) into a panel using a mapping file
    /// (see docs/import.md).
    Import {
        /// The mapping file (TOML).
        #[arg(long)]
        mapping: PathBuf,
        /// The extract (CSV).
        extract: PathBuf,
        /// Output panel (.csv or .parquet).
        #[arg(long)]
        out: PathBuf,
        /// Label taxonomy the crosswalk maps into; default: the embedded default.
        #[arg(long, value_name = "CSV")]
        taxonomy: Option<PathBuf>,
    },
    /// Assign each person to train/valid/test from a seed and a hash of (dataset, person id),
    /// and write the panel with a `split` column.
    Split {
        panel: PathBuf,
        /// Output panel (.csv, .parquet or a CAREER directory).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        input: PanelInput,
        #[arg(long, default_value_t = labor_data::split::DEFAULT_SPLIT_SEED)]
        seed: u64,
        /// Fraction of persons in train.
        #[arg(long, default_value_t = 0.7)]
        train: f64,
        /// Fraction of persons in valid (test gets the rest).
        #[arg(long, default_value_t = 0.1)]
        valid: f64,
        /// Replace splits the panel already carries.
        #[arg(long)]
        overwrite: bool,
        /// Output format, when the name does not tell.
        #[arg(long, value_enum, value_name = "FORMAT")]
        to: Option<Format>,
    },
}

fn print_build_report(report: &BuildReport) {
    if !report.added_labels.is_empty() {
        let shown: Vec<&str> = report
            .added_labels
            .iter()
            .take(20)
            .map(String::as_str)
            .collect();
        eprintln!(
            "note: --add-unknown-labels added {} label(s): {}{}",
            report.added_labels.len(),
            shown.join(" "),
            if report.added_labels.len() > 20 {
                " ..."
            } else {
                ""
            }
        );
    }
}

pub fn run(cmd: &DataCommand) -> CmdResult {
    match cmd {
        DataCommand::Validate { panel, input } => {
            let (p, report) = load_panel(panel, input)?;
            print_build_report(&report);
            let datasets: std::collections::BTreeSet<&str> =
                p.persons.iter().map(|x| x.dataset.as_str()).collect();
            println!(
                "{}: valid panel: {} persons, {} person-years, {} dataset(s)",
                panel.display(),
                p.persons.len(),
                p.n_records(),
                datasets.len()
            );
        }
        DataCommand::Stats {
            panel,
            input,
            json,
            top,
        } => {
            let (p, report) = load_panel(panel, input)?;
            print_build_report(&report);
            let s = PanelStats::compute(&p);
            if *json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print_stats(&panel.display().to_string(), &s, *top);
            }
        }
        DataCommand::Convert {
            input_path,
            output,
            input,
            to,
            seed,
        } => {
            let (p, report) = load_panel(input_path, input)?;
            print_build_report(&report);
            let format = output_format(output, *to)?;
            let spec = SplitSpec {
                seed: *seed,
                ..SplitSpec::default()
            };
            save_panel(&p, output, format, &spec)?;
            println!(
                "wrote {} ({format:?}): {} persons, {} person-years",
                output.display(),
                p.persons.len(),
                p.n_records()
            );
        }
        DataCommand::Import {
            mapping,
            extract,
            out,
            taxonomy,
        } => {
            let (p, report) = import(mapping, extract, taxonomy.as_deref())?;
            save_panel(&p, out, output_format(out, None)?, &SplitSpec::default())?;
            print_import_report(&report);
            println!(
                "wrote {}: {} persons, {} person-years",
                out.display(),
                p.persons.len(),
                p.n_records()
            );
        }
        DataCommand::Split {
            panel,
            out,
            input,
            seed,
            train,
            valid,
            overwrite,
            to,
        } => {
            let (mut p, report) = load_panel(panel, input)?;
            print_build_report(&report);
            let spec = SplitSpec {
                seed: *seed,
                train: *train,
                valid: *valid,
            };
            spec.validate()
                .map_err(|e| anyhow::anyhow!("--train/--valid: expected {e}"))?;
            if p.has_split() && !overwrite {
                return Err(anyhow::anyhow!(
                    "{} already carries a split for its persons; pass --overwrite to reassign them",
                    panel.display()
                )
                .into());
            }
            assign_splits(&mut p, &spec);
            save_panel(&p, out, output_format(out, *to)?, &spec)?;
            print_split_counts(&p);
            println!(
                "wrote {} (seed {seed}, {train}/{valid}/{:.2})",
                out.display(),
                1.0 - train - valid
            );
        }
    }
    Ok(())
}

pub fn assign_splits(p: &mut Panel, spec: &SplitSpec) {
    for person in &mut p.persons {
        person.split = Some(spec.assign(&person.dataset, &person.person_id));
    }
}

pub fn print_split_counts(p: &Panel) {
    for s in Split::ALL {
        let persons: Vec<_> = p.persons.iter().filter(|x| x.split == Some(s)).collect();
        let years: usize = persons.iter().map(|x| x.records.len()).sum();
        println!(
            "  {s:5}  {:8} persons ({:5.1}%)  {:9} person-years",
            persons.len(),
            100.0 * persons.len() as f64 / p.persons.len().max(1) as f64,
            years
        );
    }
}

pub fn import(
    mapping: &Path,
    extract: &Path,
    taxonomy: Option<&Path>,
) -> CmdResult<(Panel, ImportReport)> {
    let text = std::fs::read_to_string(mapping)
        .with_context(|| format!("cannot read mapping {}", mapping.display()))?;
    let m = Mapping::from_toml(&text).map_err(|e| {
        let p = labor_data::Problem::global(
            "mapping",
            e,
            "a mapping file as documented in docs/import.md",
        );
        invalid(mapping, labor_data::Problems(vec![p]))
    })?;
    let taxonomy = load_taxonomy(taxonomy)?;
    let crosswalk_path = m
        .crosswalk
        .file
        .as_ref()
        .map(|f| mapping.parent().unwrap_or(Path::new(".")).join(f));
    let crosswalk = match &crosswalk_path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read crosswalk {}", p.display()))?;
            read_crosswalk(&text, &taxonomy).map_err(|e| invalid(p, e))?
        }
        None => Default::default(),
    };
    let f = std::fs::File::open(extract)
        .with_context(|| format!("cannot open extract {}", extract.display()))?;
    import_extract(&m, crosswalk, std::io::BufReader::new(f), taxonomy)
        .map_err(|e| invalid(extract, e))
}

pub fn print_import_report(r: &ImportReport) {
    println!(
        "imported {} extract row(s) into {} persons, {} person-years",
        r.extract_rows, r.persons, r.person_years
    );
    println!(
        "  waves not interviewed (all wave fields missing): {}",
        r.waves_not_interviewed
    );
    if r.persons_never_interviewed > 0 {
        println!(
            "  persons never interviewed (no record, not in the panel): {}",
            r.persons_never_interviewed
        );
    }
    println!(
        "  education carried forward: {}",
        r.education_carried_forward
    );
    if r.education_left_missing > 0 {
        println!(
            "  education left missing (NA): {}",
            r.education_left_missing
        );
    }
    if r.skipped_unmapped > 0 {
        let codes: Vec<String> = r
            .skipped_codes
            .iter()
            .map(|(c, n)| format!("{c}×{n}"))
            .collect();
        println!(
            "  person-years skipped, code not in crosswalk: {} ({})",
            r.skipped_unmapped,
            codes.join(", ")
        );
    }
}

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

pub fn print_stats(name: &str, s: &PanelStats, top: usize) {
    println!("{name}");
    println!("  persons               {}", s.persons);
    println!("  person-years          {}", s.person_years);
    for d in &s.datasets {
        println!(
            "  dataset {:13} {} persons, {} person-years",
            d.dataset, d.persons, d.person_years
        );
    }
    println!(
        "  years                 {}-{} ({} distinct)",
        s.year_min, s.year_max, s.distinct_years
    );
    println!(
        "  records per person    min {}, mean {:.2}, max {}",
        s.records_per_person_min, s.records_per_person_mean, s.records_per_person_max
    );
    println!(
        "  labels used           {} of {}",
        s.labels_used, s.labels_in_taxonomy
    );
    println!(
        "  annual pairs          {} (records in adjacent years); label change rate {}",
        s.annual_pairs,
        pct(s.annual_label_change_rate)
    );
    println!(
        "  annual occupation-change rate {} ({} of {} occupation-to-occupation pairs)",
        pct(s.annual_occupation_change_rate),
        s.annual_occupation_changes,
        s.annual_occupation_pairs
    );
    let gaps: Vec<String> = s.gaps.iter().map(|(g, n)| format!("{g}y: {n}")).collect();
    println!("  gaps between records  {}", gaps.join(", "));
    println!("  persons with a gap > 1 year: {}", s.persons_with_gap);
    let splits: Vec<String> = s
        .split_persons
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    println!("  persons by split      {}", splits.join(", "));
    println!("special states");
    for l in &s.special {
        println!("  {:28} {:9} {:>8}", l.title, l.count, pct(l.share));
    }
    println!("groups");
    for g in &s.groups {
        println!("  {:60} {:9} {:>8}", g.group, g.count, pct(g.share));
    }
    println!("top {} labels", top.min(s.labels.len()));
    for l in s.labels.iter().take(top) {
        println!(
            "  {:8} {:60} {:9} {:>8}",
            l.code,
            l.title,
            l.count,
            pct(l.share)
        );
    }
}
