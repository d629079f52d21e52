//! `labor predict --model DIR --input HISTORIES`: the next year's distribution for each career
//! history (JSON lines or CSV in the panel columns; docs/predict.md).

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use labor_data::{Person, Taxonomy};
use labor_forecast::history::{self, History, Limits};
use labor_forecast::next::{NextDist, predict_history};
use serde_json::json;

use crate::bad;
use crate::io::CmdResult;
use crate::model::{ModelArgs, default_taxonomy, with_predictor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutFormat {
    /// One JSON object per history, one per line.
    Json,
    /// One row per (history, label in the top k).
    Csv,
    /// A readable table per history.
    Table,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InFormat {
    /// One JSON object per line (a history: `records`, optional `id`, covariates, `next`).
    Json,
    /// CSV in the panel columns (`person_id`, `year`, `label`, optional covariates).
    Csv,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Histories: JSON lines or CSV (by extension; `-` reads standard input).
    #[arg(long)]
    pub input: PathBuf,
    /// Input format, when the file name does not tell (standard input: JSON lines).
    #[arg(long, value_enum)]
    pub from: Option<InFormat>,
    /// Label taxonomy (CSV); default: a world directory's own, else the embedded default.
    #[arg(long, value_name = "CSV")]
    pub taxonomy: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutFormat,
    /// Labels shown per history (all of them with a number at least the taxonomy's size).
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Records a history may hold.
    #[arg(long, default_value_t = Limits::default().max_records)]
    pub max_records: usize,
}

/// Reads the histories of `args`.
pub fn read_histories(
    input: &std::path::Path,
    from: Option<InFormat>,
    taxonomy: &Taxonomy,
    limits: &Limits,
) -> anyhow::Result<Vec<History>> {
    let text = if input.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        std::fs::read_to_string(input)
            .with_context(|| format!("cannot read {}", input.display()))?
    };
    let format = from.unwrap_or_else(|| {
        match input
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
        {
            Some(e) if e == "csv" => InFormat::Csv,
            _ => InFormat::Json,
        }
    });
    let parsed = match format {
        InFormat::Csv => history::parse_csv(&text, taxonomy, limits),
        InFormat::Json => history::parse_json_lines(&text, taxonomy, limits),
    };
    parsed.map_err(|e| bad!("{}: {e}", input.display()))
}

/// The JSON answer for one history (also the API's).
pub fn answer_json(
    model: &str,
    taxonomy: &Taxonomy,
    person: &Person,
    d: &NextDist,
    top: usize,
) -> serde_json::Value {
    let labels = taxonomy.labels();
    let last = person.records.last().map(|r| &labels[r.label.index()]);
    json!({
        "model": model,
        "dataset": person.dataset,
        "id": person.person_id,
        "last": last.map(|l| json!({"code": l.code, "title": l.title})),
        "year": d.year,
        "education": d.education.map(|e| e.as_str()),
        "p_stay": d.p_stay,
        "p_in_lf": d.p_in_lf,
        "leak": d.leak,
        "top": d.top(top).into_iter().map(|(id, p)| {
            let l = &labels[id.index()];
            json!({"code": l.code, "title": l.title, "group": l.group, "p": p})
        }).collect::<Vec<_>>(),
    })
}

pub fn run(a: &PredictArgs) -> CmdResult {
    let taxonomy = match &a.taxonomy {
        Some(t) => crate::io::load_taxonomy(Some(t))?,
        None => default_taxonomy(&a.model.model)?,
    };
    let limits = Limits {
        max_records: a.max_records,
    };
    let histories = read_histories(&a.input, a.from, &taxonomy, &limits)?;
    let mut out: Box<dyn Write> = match &a.out {
        None => Box::new(std::io::stdout().lock()),
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
    };
    // CSV rows go through one writer over the output (it quotes titles with commas).
    let mut rows =
        (a.format == OutFormat::Csv).then(|| csv::WriterBuilder::new().from_writer(Vec::new()));
    with_predictor(&a.model, &taxonomy, |p| {
        let labels = taxonomy.labels();
        if let Some(w) = rows.as_mut() {
            w.write_record([
                "id", "dataset", "year", "rank", "code", "title", "p", "p_stay", "p_in_lf", "leak",
            ])?;
        }
        for h in &histories {
            let d = predict_history(p, &taxonomy, h)
                .map_err(|e| anyhow::anyhow!("history {}: {e}", h.person.person_id))?;
            match a.format {
                OutFormat::Json => {
                    let v = answer_json(p.name(), &taxonomy, &h.person, &d, a.top);
                    writeln!(out, "{v}")?;
                }
                OutFormat::Csv => {
                    let opt =
                        |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_else(|| "NA".into());
                    let w = rows.as_mut().expect("a CSV writer for CSV output");
                    for (rank, (id, pr)) in d.top(a.top).into_iter().enumerate() {
                        let l = &labels[id.index()];
                        w.write_record([
                            h.person.person_id.as_str(),
                            h.person.dataset.as_str(),
                            &d.year.to_string(),
                            &(rank + 1).to_string(),
                            &l.code,
                            &l.title,
                            &pr.to_string(),
                            &opt(d.p_stay),
                            &d.p_in_lf.to_string(),
                            &d.leak.to_string(),
                        ])?;
                    }
                }
                OutFormat::Table => {
                    let last = &labels[h.person.records.last().expect("record").label.index()];
                    writeln!(
                        out,
                        "{} ({} records, last: {} in {}) → {}{}",
                        h.person.person_id,
                        h.person.records.len(),
                        last.title,
                        h.person.records.last().expect("record").year,
                        d.year,
                        d.education
                            .map(|e| format!(", {}", e.as_str()))
                            .unwrap_or_default()
                    )?;
                    writeln!(
                        out,
                        "  P(stay) {}   P(in labor force) {:.3}   leaked {:.4}",
                        d.p_stay
                            .map(|x| format!("{x:.3}"))
                            .unwrap_or_else(|| "—".into()),
                        d.p_in_lf,
                        d.leak
                    )?;
                    for (rank, (id, pr)) in d.top(a.top).into_iter().enumerate() {
                        let l = &labels[id.index()];
                        let bar = "█".repeat((pr * 40.0).round() as usize);
                        let title: String = if l.title.chars().count() > 48 {
                            l.title.chars().take(47).chain(['…']).collect()
                        } else {
                            l.title.clone()
                        };
                        writeln!(
                            out,
                            "  {:>2}. {title:<48} {:>6.2}% {bar}",
                            rank + 1,
                            pr * 100.0
                        )?;
                    }
                    writeln!(out)?;
                }
            }
        }
        if let Some(w) = rows.take() {
            out.write_all(&w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?;
        }
        out.flush()?;
        Ok(())
    })?;
    Ok(())
}
