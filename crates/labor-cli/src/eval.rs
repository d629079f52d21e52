//! `labor eval --preds A.parquet ... [--full A_full.parquet ...] [--oracle oracle.parquet]
//! [--panel P] --out REPORT_DIR`: every metric of SPEC §7 from prediction files, written as
//! Markdown and CSV tables, SVG plots and one self-contained `report.html`.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::Args;
use labor_data::predictions::{PredictionsFile, read_full_by_class, read_predictions};
use labor_data::taxonomy::{LabelKind, SPECIAL_GROUP};
use labor_data::{MISSING, Panel, Split, Taxonomy};
use labor_eval::report::{Provenance, html, markdown};
use labor_eval::{Inputs, ModelPreds, Options, Report, Subject, SubjectKey, Table, evaluate};

use crate::io::{CmdResult, PanelInput, load_panel, write_atomic};

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// Prediction files (SPEC §7.1); a file may hold several models, and a model's rows may be
    /// spread over several files (e.g. one per dataset).
    #[arg(long, num_args = 1.., required_unless_present = "forecast")]
    pub preds: Vec<PathBuf>,
    /// Forecast evaluation: simulation folders (`labor simulate --cut C`), one per model,
    /// compared with `--forecast-truth` horizon by horizon.
    #[arg(long, num_args = 1.., requires = "forecast_truth")]
    pub forecast: Vec<PathBuf>,
    /// The truth for `--forecast`: the world's own simulation of the same persons from the same
    /// cut (`labor simulate --model WORLD_DIR --cut C`).
    #[arg(long, requires = "forecast")]
    pub forecast_truth: Option<PathBuf>,
    /// Full-distribution files (`labor score --full-dist`), for calibration by occupation group.
    #[arg(long, num_args = 1..)]
    pub full: Vec<PathBuf>,
    /// The oracle's predictions (`labor synth` writes oracle.parquet): every perplexity is also
    /// reported as a ratio to the oracle's on the same records.
    /// One file per dataset when several are evaluated.
    #[arg(long, num_args = 1..)]
    pub oracle: Vec<PathBuf>,
    /// The oracle's full distributions (`labor synth --full-oracle N` writes oracle_full.parquet).
    #[arg(long, num_args = 1..)]
    pub oracle_full: Vec<PathBuf>,
    /// The panel(s) the predictions were made from: demographics for the subgroup tables,
    /// survey weights, and the label groups.
    #[arg(long, num_args = 1..)]
    pub panel: Vec<PathBuf>,
    #[command(flatten)]
    pub input: PanelInput,
    /// Which split's records to evaluate (train, valid, test, or all).
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Weight every metric by the panel's survey weights (population-representative figures).
    #[arg(long)]
    pub weighted: bool,
    /// Bootstrap resamples of persons for the 95% intervals (0: none).
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    #[arg(long, default_value_t = 20240625)]
    pub seed: u64,
    /// Subgroup cells with fewer records are listed but left out of the summary errors.
    #[arg(long, default_value_t = 30)]
    pub min_cell: usize,
    /// Report title.
    #[arg(long, default_value = "labor-llm evaluation")]
    pub title: String,
    /// An ablation table: `NAME=BASELINE,MODEL[,MODEL...]` shows the perplexities of the
    /// baseline and the ablated models side by side, per dataset (repeatable).
    #[arg(long, value_name = "NAME=BASELINE,MODEL...")]
    pub ablation: Vec<String>,
    /// A note at the top of the report's notes (repeatable).
    #[arg(long, value_name = "TEXT")]
    pub note: Vec<String>,
    /// A provenance section of the report: a title and a text file shown verbatim, e.g. the
    /// preset of a reproduction (repeatable).
    #[arg(long, value_name = "TITLE=FILE")]
    pub section: Vec<String>,
    /// Calibrated prediction files (`labor score --calibration`): evaluated apart from
    /// `--preds`, with the same oracle and panels, as a second headline and paired table
    /// ("after post-hoc calibration"), so calibrated models meet calibrated ones only.
    #[arg(long, num_args = 1.., value_name = "PARQUET")]
    pub calibrated: Vec<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
}

/// `NAME=BASELINE,MODEL...` of `--ablation`: the name and the members, baseline first.
fn parse_ablation(s: &str) -> anyhow::Result<(String, Vec<String>)> {
    let bad = || {
        crate::bad!(
            "--ablation {s:?}: expected NAME=BASELINE,MODEL[,MODEL...] (at least two models)"
        )
    };
    let (name, members) = s.split_once('=').ok_or_else(bad)?;
    let members: Vec<String> = members.split(',').map(|m| m.trim().to_string()).collect();
    if name.trim().is_empty() || members.len() < 2 || members.iter().any(String::is_empty) {
        return Err(bad());
    }
    Ok((name.trim().to_string(), members))
}

/// One table per ablation: the baseline and the ablated models, per dataset (t ≥ 2 and all),
/// from the perplexity table. A member with no predictions is an error.
pub fn ablation_tables(
    r: &Report,
    ablations: &[(String, Vec<String>)],
) -> anyhow::Result<Vec<Table>> {
    let Some(ppl) = r.data_tables.iter().find(|t| t.name == "perplexity") else {
        return Ok(vec![]);
    };
    let col = |n: &str| ppl.header.iter().position(|h| h == n).expect("column");
    let (ds, model, a, t2, ra, rt) = (
        col("dataset"),
        col("model"),
        col("ppl_all"),
        col("ppl_t2"),
        col("ratio_all"),
        col("ratio_t2"),
    );
    ablations
        .iter()
        .map(|(name, members)| {
            if let Some(m) = members
                .iter()
                .find(|m| !ppl.rows.iter().any(|r| &r[model] == *m))
            {
                let mut known: Vec<&str> = ppl.rows.iter().map(|r| r[model].as_str()).collect();
                known.dedup();
                return Err(crate::bad!(
                    "--ablation {name}: no predictions of model {m:?} (models: {})",
                    known.join(", ")
                ));
            }
            let mut t = Table::new(
                &format!("ablation_{name}"),
                &format!("Ablation: {name}"),
                &[
                    "dataset",
                    "model",
                    "ppl all",
                    "÷ oracle",
                    "ppl t ≥ 2",
                    "÷ oracle (t ≥ 2)",
                ],
            );
            t.caption = format!(
                "{} against the same fine-tuning without the change.",
                members[1..].join(", ")
            );
            for row in &ppl.rows {
                if members.contains(&row[model]) {
                    t.push(vec![
                        row[ds].clone(),
                        row[model].clone(),
                        row[a].clone(),
                        row[ra].clone(),
                        row[t2].clone(),
                        row[rt].clone(),
                    ]);
                }
            }
            t.rows.sort_by(|x, y| {
                x[0].cmp(&y[0]).then(
                    members
                        .iter()
                        .position(|m| *m == x[1])
                        .cmp(&members.iter().position(|m| *m == y[1])),
                )
            });
            Ok(t)
        })
        .collect()
}

fn open(path: &Path) -> anyhow::Result<File> {
    File::open(path).with_context(|| format!("cannot open {}", path.display()))
}

fn read_preds(path: &Path) -> anyhow::Result<PredictionsFile> {
    read_predictions(open(path)?)
        .map_err(|e| anyhow!(crate::io::InvalidInput(format!("{}: {e}", path.display()))))
}

/// Outcome classes for calibration: the occupation groups, then each special state by title.
pub fn outcome_classes(tax: &Taxonomy) -> (Vec<String>, HashMap<String, usize>) {
    let mut classes: Vec<String> = tax
        .groups()
        .into_iter()
        .filter(|g| *g != SPECIAL_GROUP)
        .map(String::from)
        .collect();
    let specials: Vec<_> = tax
        .labels()
        .iter()
        .filter(|l| l.kind != LabelKind::Occupation)
        .collect();
    let mut of = HashMap::new();
    for l in specials {
        of.insert(l.code.clone(), classes.len());
        classes.push(l.title.clone());
    }
    for l in tax
        .labels()
        .iter()
        .filter(|l| l.kind == LabelKind::Occupation)
    {
        let c = classes
            .iter()
            .position(|g| *g == l.group)
            .expect("group listed");
        of.insert(l.code.clone(), c);
    }
    (classes, of)
}

fn cohort(birth_year: Option<i32>) -> String {
    match birth_year {
        Some(y) => format!("{}s", y.div_euclid(10) * 10),
        None => "unknown".into(),
    }
}

/// A covariate's value for the subgroup tables: `NA` when missing.
fn na(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| MISSING.to_string())
}

pub fn subjects(panel: &Panel) -> HashMap<SubjectKey, Subject> {
    let mut out = HashMap::new();
    for p in &panel.persons {
        for r in &p.records {
            out.insert(
                (p.dataset.clone(), p.person_id.clone(), r.year),
                Subject {
                    gender: na(&p.gender),
                    race: na(&p.race),
                    region: na(&p.region),
                    cohort: cohort(p.birth_year),
                    education: r.education.map_or(MISSING, |e| e.as_str()).to_string(),
                    weight: r.weight,
                },
            );
        }
    }
    out
}

/// The evaluation of `--calibrated` files on their own, added to `report` after its headline:
/// the calibrated headline and paired comparisons, and each model's calibration as a note.
fn calibrated_section(a: &EvalArgs, report: &mut Report) -> CmdResult {
    for path in &a.calibrated {
        let f = read_preds(path)?;
        if !f
            .metadata
            .iter()
            .any(|(k, _)| k == crate::score::CALIBRATION_KEY)
        {
            return Err(crate::bad!(
                "--calibrated {}: not calibrated (score it with labor score --calibration)",
                path.display()
            )
            .into());
        }
    }
    let ca = EvalArgs {
        preds: a.calibrated.clone(),
        full: Vec::new(),
        calibrated: Vec::new(),
        ablation: Vec::new(),
        note: Vec::new(),
        ..a.clone()
    };
    let cal = build(&ca)?;
    let what = "Each model's distribution with a temperature (and a stay offset) fitted on the \
                validation split (`labor calibrate`), compared with the other calibrated models \
                only.";
    let mut head = cal.headline.clone();
    head.name = "headline_calibrated".into();
    head.title = format!("After post-hoc calibration. {}", head.title);
    head.caption = format!("{what} {}", head.caption);
    let mut tables = vec![head];
    if let Some(mut t) = cal.tables.iter().find(|t| t.name == "paired").cloned() {
        t.name = "paired_calibrated".into();
        t.title = format!("{}, calibrated", t.title);
        tables.push(t);
    }
    let pos = 1.min(report.tables.len());
    for (i, t) in tables.into_iter().enumerate() {
        report.tables.insert(pos + i, t);
    }
    report.notes.extend(
        cal.notes
            .into_iter()
            .filter(|n| n.contains("calibrated post hoc")),
    );
    Ok(())
}

/// Reads everything, evaluates, and returns the report (the caller writes it).
pub fn build(a: &EvalArgs) -> CmdResult<Report> {
    let split: Option<Split> = match a.split.as_str() {
        "all" => None,
        s => Some(
            s.parse::<Split>()
                .map_err(|_| anyhow!("--split {s:?}: expected train, valid, test or all"))?,
        ),
    };
    let keep = |s: Split| split.is_none_or(|x| x == s);
    let mut panels = Vec::new();
    for p in &a.panel {
        let panel = load_panel(p, &a.input)?.0;
        if let Some((first, q)) = panels.first().map(|(f, q): &(PathBuf, Panel)| (f, q))
            && q.taxonomy != panel.taxonomy
        {
            return Err(anyhow!(
                "{} and {} have different label sets; evaluate them separately",
                first.display(),
                p.display()
            )
            .into());
        }
        panels.push((p.clone(), panel));
    }
    let taxonomy = panels
        .first()
        .map(|(_, p)| p.taxonomy.clone())
        .unwrap_or_else(Taxonomy::embedded_default);
    let (classes, class_of) = outcome_classes(&taxonomy);
    let codes: Vec<String> = taxonomy.labels().iter().map(|l| l.code.clone()).collect();

    // Models in order of first appearance; rows of one model may come from several files.
    let mut models: Vec<ModelPreds> = Vec::new();
    let mut files: Vec<(PathBuf, bool)> = a.preds.iter().map(|p| (p.clone(), false)).collect();
    files.extend(a.oracle.iter().map(|o| (o.clone(), true)));
    let mut oracle_name = None;
    // Every (model, dataset, person, t) once: shards of one model must not overlap.
    let mut seen: HashMap<(String, String, String, i32), PathBuf> = HashMap::new();
    // Calibrated predictions are compared with calibrated ones only (the oracle is exact).
    let mut calibrated_first: Option<(PathBuf, bool)> = None;
    let mut calibration_notes = Vec::new();
    for (path, is_oracle) in &files {
        let f = read_preds(path)?;
        if !*is_oracle {
            let cal = f
                .metadata
                .iter()
                .find(|(k, _)| k == crate::score::CALIBRATION_KEY)
                .map(|(_, v)| v.clone());
            match &calibrated_first {
                None => calibrated_first = Some((path.clone(), cal.is_some())),
                Some((p0, c0)) if *c0 != cal.is_some() => {
                    let (c, r) = if *c0 { (p0, path) } else { (path, p0) };
                    return Err(crate::bad!(
                        "{} is calibrated and {} is not: compare calibrated predictions with \
                         calibrated ones (score every model with --calibration) or raw with raw",
                        c.display(),
                        r.display()
                    )
                    .into());
                }
                Some(_) => {}
            }
            if let Some(c) = cal {
                let c: labor_data::calibration::Calibration =
                    serde_json::from_str(&c).map_err(|e| {
                        crate::bad!("{}: its calibration metadata: {e}", path.display())
                    })?;
                let name = f.rows.first().map_or("?", |r| r.model.as_str());
                calibration_notes.push(format!(
                    "{name}: calibrated post hoc ({}; fitted on {})",
                    c.describe(),
                    c.fitted_on
                ));
            }
        }
        let n_before = f.rows.len();
        let mut any = false;
        for r in f.rows.into_iter().filter(|r| keep(r.split)) {
            any = true;
            if *is_oracle {
                oracle_name.get_or_insert_with(|| r.model.clone());
                if oracle_name.as_deref() != Some(r.model.as_str()) {
                    return Err(anyhow::Error::msg(format!(
                        "{}: the oracle file holds several models ({:?} and {:?})",
                        path.display(),
                        oracle_name,
                        r.model
                    ))
                    .into());
                }
            }
            let i = match models.iter().position(|m| m.name == r.model) {
                Some(i) => i,
                None => {
                    models.push(ModelPreds {
                        name: r.model.clone(),
                        source: path.display().to_string(),
                        metadata: f.metadata.clone(),
                        ..Default::default()
                    });
                    models.len() - 1
                }
            };
            let key = (r.model.clone(), r.dataset.clone(), r.person_id.clone(), r.t);
            if let Some(first) = seen.insert(key, path.clone()) {
                return Err(anyhow::Error::msg(format!(
                    "{}: model {:?} already has a prediction for dataset {:?}, person {:?}, \
                     record {} (in {}); give each record once (shards of one model must not \
                     overlap)",
                    path.display(),
                    r.model,
                    r.dataset,
                    r.person_id,
                    r.t,
                    first.display()
                ))
                .into());
            }
            let m = &mut models[i];
            if !m
                .source
                .split(", ")
                .any(|s| s == path.display().to_string())
            {
                m.source = format!("{}, {}", m.source, path.display());
            }
            m.rows.push(r);
        }
        if !any {
            return Err(anyhow::Error::msg(format!(
                "{}: none of its {n_before} rows is in the {} split",
                path.display(),
                a.split
            ))
            .into());
        }
    }
    // The oracle is evaluated on the records the models scored (when they scored a subset,
    // e.g. with `labor score --limit`), so its row in every table is comparable.
    if let Some(o) = &oracle_name {
        let scored: std::collections::HashSet<(String, String, i32)> = models
            .iter()
            .filter(|m| &m.name != o)
            .flat_map(|m| {
                m.rows
                    .iter()
                    .map(|r| (r.dataset.clone(), r.person_id.clone(), r.t))
            })
            .collect();
        if !scored.is_empty()
            && let Some(m) = models.iter_mut().find(|m| &m.name == o)
        {
            m.rows
                .retain(|r| scored.contains(&(r.dataset.clone(), r.person_id.clone(), r.t)));
        }
    }
    // Full distributions, summed into outcome classes, matched to rows.
    let mut full: HashMap<(String, String, String, i32), Vec<f64>> = HashMap::new();
    let full_files: Vec<&PathBuf> = a.full.iter().chain(a.oracle_full.iter()).collect();
    for path in &full_files {
        let rows = read_full_by_class(open(path)?, &codes, classes.len(), |c| {
            class_of.get(c).copied()
        })
        .map_err(|e| crate::bad!("{}: {e}", path.display()))?;
        for r in rows {
            full.insert((r.model, r.dataset, r.person_id, r.t), r.probs);
        }
    }
    if !full.is_empty() {
        for m in &mut models {
            let probs: Vec<Option<Vec<f64>>> = m
                .rows
                .iter()
                .map(|r| {
                    full.remove(&(m.name.clone(), r.dataset.clone(), r.person_id.clone(), r.t))
                })
                .collect();
            let have = probs.iter().filter(|p| p.is_some()).count();
            let is_oracle = oracle_name.as_deref() == Some(m.name.as_str());
            if have == m.rows.len() || (is_oracle && have > 0) {
                m.class_probs = Some(probs);
            } else if have > 0 {
                return Err(anyhow::Error::msg(format!(
                    "the full-distribution files cover {have} of model {}'s {} records; score \
                     the same records with --full-dist",
                    m.name,
                    m.rows.len()
                ))
                .into());
            }
        }
    }
    let subjects = (!panels.is_empty()).then(|| {
        let mut all = HashMap::new();
        for (_, p) in &panels {
            all.extend(subjects(p));
        }
        all
    });
    let options = Options {
        bootstrap: a.bootstrap,
        seed: a.seed,
        weighted: a.weighted,
        bins: 10,
        min_cell: a.min_cell,
    };
    let mut report = evaluate(&Inputs {
        models: &models,
        oracle: oracle_name.as_deref(),
        subjects: subjects.as_ref(),
        classes: &classes,
        class_of_label: &class_of,
        options: &options,
    })
    .map_err(|e| anyhow!(e))?;
    report.notes.extend(calibration_notes);
    Ok(report)
}

/// Writes a report: report.md, report.html, tables/*.csv, plots/*.svg.
pub fn write_report(r: &Report, p: &Provenance, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out.join("tables"))
        .with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::create_dir_all(out.join("plots"))?;
    for t in [&r.headline, &r.model_table]
        .into_iter()
        .chain(&r.tables)
        .chain(&r.data_tables)
    {
        write_atomic(&out.join("tables").join(format!("{}.csv", t.name)), |w| {
            Ok(std::io::Write::write_all(w, t.to_csv().as_bytes())?)
        })?;
    }
    for pl in r.headline_plots.iter().chain(&r.plots) {
        write_atomic(&out.join("plots").join(format!("{}.svg", pl.name)), |w| {
            Ok(std::io::Write::write_all(w, pl.svg.as_bytes())?)
        })?;
    }
    write_atomic(&out.join("report.md"), |w| {
        Ok(std::io::Write::write_all(w, markdown(r, p).as_bytes())?)
    })?;
    write_atomic(&out.join("report.html"), |w| {
        Ok(std::io::Write::write_all(w, html(r, p).as_bytes())?)
    })?;
    Ok(())
}

pub fn version() -> String {
    format!("labor {}", env!("CARGO_PKG_VERSION"))
}

/// The forecast table and plot: per model and horizon, the total-variation distance of category
/// shares from the truth's (pooled, and per person), plus notes.
pub fn forecast_section(
    a: &EvalArgs,
    taxonomy: &Taxonomy,
) -> anyhow::Result<(Table, labor_eval::evaluate::Plot, Vec<String>)> {
    let truth_dir = a.forecast_truth.as_ref().expect("clap requires it");
    let mut keys = HashMap::new();
    let (truth_meta, truth) = crate::simulate::read_baseline(truth_dir, taxonomy, &mut keys)?;
    let cut_of = |m: &serde_json::Value| m["cut"].as_i64();
    let mut table = Table::new(
        "forecast",
        "Forecast: distance from the truth's simulated category shares by horizon",
        &[
            "model",
            "horizon",
            "persons",
            "TV shares",
            "TV per person",
            "realised paths",
            "path log-score",
        ],
    );
    let mut series = Vec::new();
    let notes = vec![format!(
        "Forecast truth: {} ({}, cut {}, {} draws). TV = total-variation distance between category \
         shares (occupation groups and special states); 'per person' averages each person's \
         distance over their draws. Part of each distance is Monte Carlo noise of both sides. \
         Path log-score: the mean log-probability the model gives the realised records from the \
         cut to the horizon, over persons observed every year that far (higher is better).",
        truth_dir.display(),
        truth_meta["model"].as_str().unwrap_or("?"),
        cut_of(&truth_meta).map_or("none".into(), |c| c.to_string()),
        truth_meta["draws"]
    )];
    for (i, dir) in a.forecast.iter().enumerate() {
        let (meta, sims) = crate::simulate::read_baseline(dir, taxonomy, &mut keys)?;
        if cut_of(&meta) != cut_of(&truth_meta) {
            return Err(crate::bad!(
                "{}: cut {:?} differs from the truth's {:?}; simulate both from the same cut",
                dir.display(),
                cut_of(&meta),
                cut_of(&truth_meta)
            ));
        }
        let name = meta["model"].as_str().unwrap_or("model").to_string();
        let rows = labor_forecast::tables::forecast_scores(&sims, &truth, taxonomy);
        let paths = crate::simulate::path_scores(dir)?;
        if rows.is_empty() {
            return Err(crate::bad!(
                "{}: no person in common with the truth {}",
                dir.display(),
                truth_dir.display()
            ));
        }
        for r in &rows {
            table.push(vec![
                name.clone(),
                r.horizon.to_string(),
                r.persons.to_string(),
                format!("{:.4}", r.tv_shares),
                format!("{:.4}", r.tv_person),
                paths
                    .get(&r.horizon)
                    .map_or("—".into(), |p| p.0.to_string()),
                paths
                    .get(&r.horizon)
                    .map_or("—".into(), |p| format!("{:.3}", p.1)),
            ]);
        }
        series.push(labor_eval::plot::Series {
            name: name.clone(),
            color: if name == "oracle" {
                labor_eval::plot::ORACLE_COLOR
            } else {
                labor_eval::plot::palette_color(i)
            },
            points: rows
                .iter()
                .map(|r| (r.horizon as f64, r.tv_shares))
                .collect(),
        });
    }
    let svg = labor_eval::plot::lines(
        "Forecast error by horizon",
        "years after the cut",
        "TV distance of category shares from the truth",
        &series,
    );
    let plot = labor_eval::evaluate::Plot {
        name: "forecast".into(),
        title: "Forecast error by horizon".into(),
        svg,
    };
    Ok((table, plot, notes))
}

pub fn run(a: &EvalArgs) -> CmdResult {
    let forecast = if a.forecast.is_empty() {
        None
    } else {
        let taxonomy = crate::io::load_taxonomy(a.input.taxonomy.as_deref())?;
        Some(forecast_section(a, &taxonomy)?)
    };
    if a.preds.is_empty() {
        let (table, plot, notes) = forecast.expect("clap requires --preds or --forecast");
        std::fs::create_dir_all(a.out.join("tables"))
            .with_context(|| format!("cannot create {}", a.out.display()))?;
        std::fs::create_dir_all(a.out.join("plots"))?;
        write_atomic(&a.out.join("tables/forecast.csv"), |w| {
            Ok(std::io::Write::write_all(w, table.to_csv().as_bytes())?)
        })?;
        write_atomic(&a.out.join("plots/forecast.svg"), |w| {
            Ok(std::io::Write::write_all(w, plot.svg.as_bytes())?)
        })?;
        let md = format!(
            "# {}\n\n{}\n\n![{}](plots/forecast.svg)\n\n{}\n",
            a.title,
            table.to_markdown(),
            plot.title,
            notes
                .iter()
                .map(|n| format!("- {n}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        write_atomic(&a.out.join("forecast.md"), |w| {
            Ok(std::io::Write::write_all(w, md.as_bytes())?)
        })?;
        println!("{}", table.to_markdown());
        println!("forecast: {}", a.out.join("forecast.md").display());
        return Ok(());
    }
    let ablations = a
        .ablation
        .iter()
        .map(|s| parse_ablation(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sections = a
        .section
        .iter()
        .map(|s| {
            let (title, file) = s
                .split_once('=')
                .ok_or_else(|| crate::bad!("--section {s:?}: expected TITLE=FILE"))?;
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("--section {title}: cannot read {file}"))?;
            Ok((title.to_string(), text))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut report = build(a)?;
    let pos = 1.min(report.tables.len());
    for (i, t) in ablation_tables(&report, &ablations)?
        .into_iter()
        .enumerate()
    {
        report.tables.insert(pos + i, t);
    }
    for (i, n) in a.note.iter().enumerate() {
        report.notes.insert(i, n.clone());
    }
    if !a.calibrated.is_empty() {
        calibrated_section(a, &mut report)?;
    }
    if let Some((table, plot, notes)) = forecast {
        report.tables.push(table);
        report.plots.push(plot);
        report.notes.extend(notes);
    }
    let p = Provenance {
        title: a.title.clone(),
        version: version(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        sections,
    };
    write_report(&report, &p, &a.out)?;
    println!("{}", report.headline.to_markdown());
    for n in &report.notes {
        eprintln!("note: {n}");
    }
    println!("report: {}", a.out.join("report.html").display());
    Ok(())
}
