//! `labor taxonomy ...`

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use crate::io::{CmdResult, load_taxonomy, write_atomic};

#[derive(Debug, Subcommand)]
pub enum TaxonomyCommand {
    /// List the labels (code, title, group), the special states first.
    Show {
        /// Taxonomy CSV; default: the embedded default.
        #[arg(long, value_name = "CSV")]
        taxonomy: Option<PathBuf>,
        /// Print only the groups with their number of labels.
        #[arg(long)]
        groups: bool,
    },
    /// Check a taxonomy CSV (`code,title,group`): every problem with its line; exit 2 if any.
    Validate {
        /// The CSV file to check.
        file: PathBuf,
    },
    /// Write the embedded default taxonomy as CSV (a starting point for your own).
    Export {
        /// Output CSV file.
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(cmd: &TaxonomyCommand) -> CmdResult {
    match cmd {
        TaxonomyCommand::Show { taxonomy, groups } => {
            let t = load_taxonomy(taxonomy.as_deref())?;
            if *groups {
                for g in t.groups() {
                    let n = t.labels().iter().filter(|l| l.group == g).count();
                    println!("{n:5}  {g}");
                }
            } else {
                for l in t.labels() {
                    println!("{}\t{}\t{}", l.code, l.title, l.group);
                }
            }
        }
        TaxonomyCommand::Validate { file } => {
            let t = load_taxonomy(Some(file))?;
            println!(
                "{}: valid taxonomy: {} occupations in {} groups, plus 3 special labels",
                file.display(),
                t.occupations().count(),
                t.groups().len() - 1
            );
        }
        TaxonomyCommand::Export { out } => {
            let t = load_taxonomy(None)?;
            write_atomic(out, |w| t.write_csv(w).context("writing CSV"))?;
            println!(
                "wrote {} ({} occupations)",
                out.display(),
                t.occupations().count()
            );
        }
    }
    Ok(())
}
