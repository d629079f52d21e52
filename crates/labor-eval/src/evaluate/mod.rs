//! From prediction rows (and, optionally, the panel's subject attributes and full
//! distributions summed into outcome classes) to every table and plot of a report.
//!
//! [`evaluate`] checks the rows and weighs them, then, per dataset, builds the context every
//! metric family shares ([`Dataset`]: the persons, their bootstrap resamples, each model's rows)
//! and hands it to each family in turn: [`perplexity`] (and the headline), [`subtasks`] and
//! [`paired`]; [`calibration`] by subgroup runs over all datasets at the end.

use std::collections::{BTreeMap, HashMap};

use labor_data::predictions::PredictionRow;
use labor_data::taxonomy::SPECIAL_LABELS;

use crate::models::models_table;
use crate::plot;
use crate::stats::{self, interval95, resample_counts};
use crate::table::Table;

mod calibration;
mod paired;
mod perplexity;
mod subtasks;

/// Key of a subject-year in the panel: (dataset, person id, year).
pub type SubjectKey = (String, String, i32);

/// What the panel says about the person-year a prediction is for.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    pub gender: String,
    pub race: String,
    pub region: String,
    /// Birth cohort, e.g. `1960s`, or `unknown`.
    pub cohort: String,
    /// Education in that year.
    pub education: String,
    pub weight: Option<f64>,
}

/// One model's predictions as read from its file(s).
#[derive(Debug, Clone, Default)]
pub struct ModelPreds {
    pub name: String,
    /// The file the rows came from.
    pub source: String,
    /// The prediction file's key-value metadata (model configuration, versions).
    pub metadata: Vec<(String, String)>,
    pub rows: Vec<PredictionRow>,
    /// Per row, the probability of each outcome class (from a full-distributions file); a row
    /// may lack them only for the oracle (whose full file may cover a subset).
    pub class_probs: Option<Vec<Option<Vec<f64>>>>,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Bootstrap replicates (resampling persons); 0 disables intervals.
    pub bootstrap: usize,
    pub seed: u64,
    /// Weight every metric by the panel's survey weights.
    pub weighted: bool,
    /// Bins of the reliability curves.
    pub bins: usize,
    /// Subgroup cells with fewer records are listed but left out of the summary errors.
    pub min_cell: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            bootstrap: 1000,
            seed: 20240625,
            weighted: false,
            bins: 10,
            min_cell: 30,
        }
    }
}

/// Everything an evaluation reads.
pub struct Inputs<'a> {
    pub models: &'a [ModelPreds],
    /// The name of the model holding the true probabilities, when known.
    pub oracle: Option<&'a str>,
    /// Subject attributes by (dataset, person, year), needed for subgroups and weights.
    pub subjects: Option<&'a HashMap<SubjectKey, Subject>>,
    /// Names of the outcome classes of `class_probs` (occupation groups and special states).
    pub classes: &'a [String],
    /// Outcome class of each label code.
    pub class_of_label: &'a HashMap<String, usize>,
    pub options: &'a Options,
}

/// An SVG plot with its file stem and title.
#[derive(Debug, Clone)]
pub struct Plot {
    pub name: String,
    pub title: String,
    pub svg: String,
}

/// A model as the report describes it.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub name: String,
    pub source: String,
    pub rows: usize,
    pub metadata: Vec<(String, String)>,
}

/// A complete evaluation: the headline plots and table, the models table, every other table,
/// plots and notes.
#[derive(Debug, Clone)]
pub struct Report {
    /// Per dataset, each model's perplexity ratio to the oracle (or, without an oracle, its
    /// perplexity) with its interval, on a log axis: the first thing a reader sees.
    pub headline_plots: Vec<Plot>,
    pub headline: Table,
    /// What each model was given (parameters, training data, epochs, wall time).
    pub model_table: Table,
    /// Tables for CSV export and display (see [`Report::display`]).
    pub tables: Vec<Table>,
    /// Tables written as CSV only (long formats behind the plots).
    pub data_tables: Vec<Table>,
    pub plots: Vec<Plot>,
    pub models: Vec<ModelInfo>,
    pub notes: Vec<String>,
}

pub(super) const STAY: &str = "stay";

fn is_in_lf(code: &str) -> bool {
    // The special states that are out of the labor force (BLS): not in LF and in education.
    !SPECIAL_LABELS
        .iter()
        .any(|(c, _, k)| *c == code && !k.in_labor_force())
}

/// Per-person weighted sums of a quantity and its weight.
#[derive(Clone, Default)]
struct Sums {
    s: Vec<f64>,
    w: Vec<f64>,
}

impl Sums {
    fn new(n: usize) -> Self {
        Self {
            s: vec![0.0; n],
            w: vec![0.0; n],
        }
    }
    fn add(&mut self, i: usize, x: f64, w: f64) {
        self.s[i] += w * x;
        self.w[i] += w;
    }
    fn total(&self) -> (f64, f64) {
        (self.s.iter().sum(), self.w.iter().sum())
    }
    fn resampled(&self, c: &[u32]) -> (f64, f64) {
        let mut s = 0.0;
        let mut w = 0.0;
        for ((x, v), &k) in self.s.iter().zip(&self.w).zip(c) {
            if k > 0 {
                s += k as f64 * x;
                w += k as f64 * v;
            }
        }
        (s, w)
    }
    fn mean(&self) -> Option<f64> {
        let (s, w) = self.total();
        (w > 0.0).then(|| s / w)
    }
}

fn ppl(s: f64, w: f64) -> Option<f64> {
    (w > 0.0).then(|| stats::perplexity(s, w))
}

/// Bootstrap interval of `f` over resamples.
fn boot(counts: &[Vec<u32>], f: impl Fn(&[u32]) -> Option<f64>) -> Option<(f64, f64)> {
    if counts.is_empty() {
        return None;
    }
    let v: Vec<f64> = counts.iter().filter_map(|c| f(c)).collect();
    interval95(&v)
}

/// A model's row in a dataset: the row, its person's number and its weight.
struct RowRef<'a> {
    row: &'a PredictionRow,
    person: usize,
    w: f64,
}

/// What every metric family of one dataset shares: its persons, numbered in id order (union over
/// models), so the bootstrap resamples do not depend on the order of the rows or files (e.g.
/// shards given in any order); the resamples themselves, the same for every model so that
/// differences are paired; and each model's rows in it.
struct Dataset<'a> {
    name: &'a str,
    /// Position among the datasets (sorted by name).
    index: usize,
    persons: usize,
    counts: Vec<Vec<u32>>,
    /// Per model (input order), its rows in this dataset.
    refs: Vec<Vec<RowRef<'a>>>,
    /// Per model, its rows' positions in `refs` by (person id, t).
    keyed: Vec<HashMap<(&'a str, i32), usize>>,
}

impl<'a> Dataset<'a> {
    fn new(inp: &'a Inputs, weights: &[Vec<f64>], name: &'a str, index: usize) -> Self {
        let mut persons: BTreeMap<&str, usize> = BTreeMap::new();
        for m in inp.models {
            for r in m.rows.iter().filter(|r| r.dataset == name) {
                persons.insert(r.person_id.as_str(), 0);
            }
        }
        for (i, v) in persons.values_mut().enumerate() {
            *v = i;
        }
        let opt = inp.options;
        let counts = resample_counts(
            persons.len(),
            opt.bootstrap,
            opt.seed ^ (index as u64).wrapping_mul(0x9E37),
        );
        let refs: Vec<Vec<RowRef>> = inp
            .models
            .iter()
            .zip(weights)
            .map(|(m, w)| {
                m.rows
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.dataset == name)
                    .map(|(i, r)| RowRef {
                        row: r,
                        person: persons[r.person_id.as_str()],
                        w: w[i],
                    })
                    .collect()
            })
            .collect();
        let keyed = refs
            .iter()
            .map(|rs| {
                rs.iter()
                    .enumerate()
                    .map(|(j, r)| ((r.row.person_id.as_str(), r.row.t), j))
                    .collect()
            })
            .collect();
        Self {
            name,
            index,
            persons: persons.len(),
            counts,
            refs,
            keyed,
        }
    }

    /// Model `m`'s row for the same record as `r` (same person and t), if it scored it.
    fn matching(&self, m: usize, r: &RowRef) -> Option<&RowRef<'a>> {
        self.keyed[m]
            .get(&(r.row.person_id.as_str(), r.row.t))
            .map(|&j| &self.refs[m][j])
    }
}

/// Each model's row weights (1, or the panel's survey weight with `--weighted`), after checking
/// that no model predicts a record twice and that every record is in the panel.
fn record_weights(inp: &Inputs) -> Result<Vec<Vec<f64>>, String> {
    let opt = inp.options;
    let mut weights: Vec<Vec<f64>> = Vec::new();
    for m in inp.models {
        let mut seen = HashMap::new();
        let mut w = Vec::with_capacity(m.rows.len());
        for (i, r) in m.rows.iter().enumerate() {
            if let Some(j) = seen.insert((&r.dataset, &r.person_id, r.t), i) {
                return Err(format!(
                    "{}: model {} predicts dataset {} person {} t = {} twice (rows {} and {})",
                    m.source,
                    m.name,
                    r.dataset,
                    r.person_id,
                    r.t,
                    j + 1,
                    i + 1
                ));
            }
            let subject = match inp.subjects {
                Some(s) => Some(
                    s.get(&(r.dataset.clone(), r.person_id.clone(), r.year))
                        .ok_or_else(|| {
                            format!(
                                "{}: model {}: dataset {} person {} year {} is not in the panel \
                                 (were the predictions made from another panel?)",
                                m.source, m.name, r.dataset, r.person_id, r.year
                            )
                        })?,
                ),
                None => None,
            };
            w.push(if opt.weighted {
                subject.and_then(|s| s.weight).ok_or_else(|| {
                    format!(
                        "--weighted: dataset {} person {} year {} has no survey weight",
                        r.dataset, r.person_id, r.year
                    )
                })?
            } else {
                1.0
            });
        }
        if let Some(c) = &m.class_probs
            && c.len() != m.rows.len()
        {
            return Err(format!(
                "{}: class probabilities not aligned with rows",
                m.name
            ));
        }
        weights.push(w);
    }
    Ok(weights)
}

/// Runs the whole evaluation.
pub fn evaluate(inp: &Inputs) -> Result<Report, String> {
    let opt = inp.options;
    if inp.models.is_empty() {
        return Err("no predictions to evaluate".into());
    }
    if opt.weighted && inp.subjects.is_none() {
        return Err("weighted metrics need the panel (its survey weights)".into());
    }
    let mut notes = Vec::new();
    let weights = record_weights(inp)?;
    let oracle_idx = match inp.oracle {
        Some(o) => Some(
            inp.models
                .iter()
                .position(|m| m.name == o)
                .ok_or_else(|| format!("the oracle model {o:?} is not among the predictions"))?,
        ),
        None => None,
    };
    // One colour per model, the same in every plot.
    let colors = plot::model_colors(inp.models.iter().map(|m| m.name.as_str()), inp.oracle);
    let mut datasets: Vec<&str> = inp
        .models
        .iter()
        .flat_map(|m| m.rows.iter().map(|r| r.dataset.as_str()))
        .collect();
    datasets.sort();
    datasets.dedup();

    let mut perplexity = perplexity::Perplexity::new(opt);
    let mut subtasks = subtasks::Subtasks::new();
    let mut paired = paired::table();
    let (mut plots, mut headline_plots) = (Vec::new(), Vec::new());
    for (di, ds) in datasets.iter().enumerate() {
        let d = Dataset::new(inp, &weights, ds, di);
        let p = perplexity.add_dataset(&d, inp, oracle_idx, &colors, &mut notes);
        let reliability = subtasks.add_dataset(&d, inp, &colors);
        paired::add_dataset(&mut paired, &d, inp);
        // The headline plot: ratios to the oracle where there is one, else perplexities.
        match p.ratio {
            None => headline_plots.push(p.perplexity),
            Some(ratio) => {
                headline_plots.push(ratio);
                plots.push(p.perplexity);
            }
        }
        plots.extend(reliability);
    }
    let headline = perplexity.headline(inp, &datasets, oracle_idx.is_some());

    let mut tables = vec![perplexity.display, subtasks.table, paired];
    let mut data_tables = vec![perplexity.table, subtasks.reliability];
    if let Some(subjects) = inp.subjects {
        let (cal_summary, cal_long, cal_plots, cal_notes) =
            calibration::calibration(inp, &weights, oracle_idx, subjects);
        tables.push(cal_summary);
        data_tables.push(cal_long);
        plots.extend(cal_plots);
        notes.extend(cal_notes);
    } else {
        notes.push(
            "no --panel given: the subgroup calibration tables need the panel's demographics \
             and are left out"
                .into(),
        );
    }
    let model_table = models_table(
        &inp.models
            .iter()
            .map(|m| (m.name.as_str(), m.metadata.as_slice()))
            .collect::<Vec<_>>(),
        inp.oracle,
    );
    let models = inp
        .models
        .iter()
        .map(|m| ModelInfo {
            name: m.name.clone(),
            source: m.source.clone(),
            rows: m.rows.len(),
            metadata: m.metadata.clone(),
        })
        .collect();
    Ok(Report {
        headline_plots,
        headline,
        model_table,
        tables,
        data_tables,
        plots,
        models,
        notes,
    })
}
