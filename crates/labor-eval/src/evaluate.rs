//! From prediction rows (and, optionally, the panel's subject attributes and full
//! distributions summed into outcome classes) to every table and plot of a report.

use std::collections::{BTreeMap, HashMap};

use labor_data::predictions::PredictionRow;
use labor_data::taxonomy::SPECIAL_LABELS;

use crate::models::models_table;
use crate::plot::{self, IntervalPlot, IntervalRow, Mark, Series};
use crate::stats::{self, interval95, resample_counts};
use crate::table::{Table, num, with_ci};

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

const STAY: &str = "stay";

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

struct RowRef<'a> {
    row: &'a PredictionRow,
    person: usize,
    w: f64,
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
    // Weights, and a check that no model predicts a record twice.
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

    let mut ppl_tab = Table::new(
        "perplexity",
        "Perplexity",
        &[
            "dataset",
            "model",
            "records",
            "persons",
            "ppl_all",
            "ppl_all_lo",
            "ppl_all_hi",
            "ppl_t2",
            "ppl_t2_lo",
            "ppl_t2_hi",
            "ppl_all_unnorm",
            "ppl_t2_unnorm",
            "mean_leak",
            "oracle_records",
            "ratio_all",
            "ratio_all_lo",
            "ratio_all_hi",
            "ratio_t2",
            "ratio_t2_lo",
            "ratio_t2_hi",
        ],
    );
    let mut ppl_show = Table::new(
        "perplexity_display",
        "Perplexity by dataset and model",
        &[
            "dataset",
            "model",
            "records",
            "all records",
            "t ≥ 2",
            "all (unnormalized)",
            "t ≥ 2 (unnormalized)",
            "mean leak",
            "÷ oracle, all",
            "÷ oracle, t ≥ 2",
        ],
    );
    ppl_show.caption = format!(
        "Perplexity = exp(−mean log p of the true label), normalized over the valid labels \
         unless marked; 95% intervals from {} bootstrap resamples of persons (seed {}). Ratios \
         to the oracle are computed on the records both scored.{}",
        opt.bootstrap,
        opt.seed,
        if opt.weighted {
            " Weighted by the panel's survey weights."
        } else {
            ""
        }
    );
    let mut paired = Table::new(
        "paired",
        "Paired comparisons: mean difference of log p per record (A − B)",
        &[
            "dataset",
            "model_a",
            "model_b",
            "records",
            "mean_diff",
            "lo",
            "hi",
        ],
    );
    paired.caption = "Normalized log-probabilities on the records both models scored; a \
                      positive difference means A assigns the truth more probability. 95% \
                      bootstrap interval over persons."
        .into();
    let mut sub_tab = Table::new(
        "subtasks",
        "Sub-tasks: P(move) and P(in labor force)",
        &[
            "dataset", "model", "task", "records", "rate", "log_loss", "auc",
        ],
    );
    sub_tab.caption = "move: records with t ≥ 2, P(move) = 1 − P(previous label); in_lf: all \
                       records, P(in labor force) = mass on occupations and Unemployed. \
                       Observed rate, binary log-loss and AUC (ties count ½)."
        .into();
    let mut rel_tab = Table::new(
        "reliability",
        "Reliability curves",
        &[
            "dataset",
            "model",
            "task",
            "bin_lo",
            "bin_hi",
            "records",
            "mean_pred",
            "observed",
        ],
    );
    let mut headline_cells: BTreeMap<(usize, usize), String> = BTreeMap::new();
    let mut plots = Vec::new();
    let mut headline_plots = Vec::new();

    for (di, ds) in datasets.iter().enumerate() {
        // Persons of this dataset (union over models), numbered in id order, so the bootstrap
        // resamples do not depend on the order of the rows or files (e.g. shards given in any
        // order); and each model's rows in it.
        let mut persons: BTreeMap<&str, usize> = BTreeMap::new();
        for m in inp.models {
            for r in m.rows.iter().filter(|r| r.dataset == *ds) {
                persons.insert(r.person_id.as_str(), 0);
            }
        }
        for (i, v) in persons.values_mut().enumerate() {
            *v = i;
        }
        let np = persons.len();
        let counts = resample_counts(
            np,
            opt.bootstrap,
            opt.seed ^ (di as u64).wrapping_mul(0x9E37),
        );
        let refs: Vec<Vec<RowRef>> = inp
            .models
            .iter()
            .zip(&weights)
            .map(|(m, w)| {
                m.rows
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.dataset == *ds)
                    .map(|(i, r)| RowRef {
                        row: r,
                        person: persons[r.person_id.as_str()],
                        w: w[i],
                    })
                    .collect()
            })
            .collect();
        let keyed: Vec<HashMap<(&str, i32), &RowRef>> = refs
            .iter()
            .map(|rs| {
                rs.iter()
                    .map(|r| ((r.row.person_id.as_str(), r.row.t), r))
                    .collect()
            })
            .collect();
        let mut rel_series: [Vec<Series>; 2] = [Vec::new(), Vec::new()];
        let (mut ppl_rows, mut ratio_rows) = (Vec::new(), Vec::new());
        for (mi, m) in inp.models.iter().enumerate() {
            let rs = &refs[mi];
            if rs.is_empty() {
                continue;
            }
            let (mut all, mut tr, mut all_u, mut tr_u, mut leak) = (
                Sums::new(np),
                Sums::new(np),
                Sums::new(np),
                Sums::new(np),
                Sums::new(np),
            );
            for r in rs {
                all.add(r.person, r.row.logp_norm, r.w);
                all_u.add(r.person, r.row.logp, r.w);
                leak.add(r.person, r.row.leak, r.w);
                if r.row.t >= 2 {
                    tr.add(r.person, r.row.logp_norm, r.w);
                    tr_u.add(r.person, r.row.logp, r.w);
                }
            }
            let pt = |s: &Sums| {
                let (a, b) = s.total();
                ppl(a, b)
            };
            let bt = |s: &Sums| {
                boot(&counts, |c| {
                    let (a, b) = s.resampled(c);
                    ppl(a, b)
                })
            };
            let n_persons = all.w.iter().filter(|&&w| w > 0.0).count();
            // Ratio to the oracle on the records both scored.
            let mut ratio = [(None, None), (None, None)];
            let mut n_oracle = None;
            if let Some(oi) = oracle_idx.filter(|&oi| oi != mi) {
                let (mut ma, mut mt, mut oa, mut ot) =
                    (Sums::new(np), Sums::new(np), Sums::new(np), Sums::new(np));
                let mut n = 0;
                for r in rs {
                    if let Some(o) = keyed[oi].get(&(r.row.person_id.as_str(), r.row.t)) {
                        n += 1;
                        ma.add(r.person, r.row.logp_norm, r.w);
                        oa.add(r.person, o.row.logp_norm, r.w);
                        if r.row.t >= 2 {
                            mt.add(r.person, r.row.logp_norm, r.w);
                            ot.add(r.person, o.row.logp_norm, r.w);
                        }
                    }
                }
                n_oracle = Some(n);
                if n < rs.len() {
                    notes.push(format!(
                        "{ds}: {} of {}'s {} records have no oracle prediction; its ratios use \
                         the {n} that do",
                        rs.len() - n,
                        m.name,
                        rs.len()
                    ));
                }
                for (k, (a, b)) in [(&ma, &oa), (&mt, &ot)].into_iter().enumerate() {
                    let r =
                        |ca: (f64, f64), cb: (f64, f64)| Some(ppl(ca.0, ca.1)? / ppl(cb.0, cb.1)?);
                    ratio[k] = (
                        r(a.total(), b.total()),
                        boot(&counts, |c| r(a.resampled(c), b.resampled(c))),
                    );
                }
            }
            let (pa, pt2) = (pt(&all), pt(&tr));
            let (ca, ct) = (bt(&all), bt(&tr));
            let lo = |c: Option<(f64, f64)>| num(c.map(|x| x.0), 4);
            let hi = |c: Option<(f64, f64)>| num(c.map(|x| x.1), 4);
            ppl_tab.push(vec![
                ds.to_string(),
                m.name.clone(),
                rs.len().to_string(),
                n_persons.to_string(),
                num(pa, 4),
                lo(ca),
                hi(ca),
                num(pt2, 4),
                lo(ct),
                hi(ct),
                num(pt(&all_u), 4),
                num(pt(&tr_u), 4),
                num(leak.mean(), 6),
                n_oracle.map(|n| n.to_string()).unwrap_or_default(),
                num(ratio[0].0, 4),
                lo(ratio[0].1),
                hi(ratio[0].1),
                num(ratio[1].0, 4),
                lo(ratio[1].1),
                hi(ratio[1].1),
            ]);
            let is_lm = rs.iter().any(|r| r.row.leak > 0.0);
            ppl_show.push(vec![
                ds.to_string(),
                m.name.clone(),
                rs.len().to_string(),
                with_ci(pa, ca, 3),
                with_ci(pt2, ct, 3),
                if is_lm {
                    num(pt(&all_u), 3)
                } else {
                    "=".into()
                },
                if is_lm { num(pt(&tr_u), 3) } else { "=".into() },
                num(leak.mean(), 4),
                with_ci(ratio[0].0, ratio[0].1, 3),
                with_ci(ratio[1].0, ratio[1].1, 3),
            ]);
            let cell = |p: Option<f64>, r: Option<f64>| match (p, r) {
                (Some(p), Some(r)) => format!("{} ({}×)", num(Some(p), 3), num(Some(r), 2)),
                (Some(p), None) => num(Some(p), 3),
                _ => String::new(),
            };
            headline_cells.insert((mi, 2 * di), cell(pa, ratio[0].0));
            headline_cells.insert((mi, 2 * di + 1), cell(pt2, ratio[1].0));
            let mark = |value: Option<f64>, ci| value.map(|value| Mark { value, ci });
            ppl_rows.push(IntervalRow {
                name: m.name.clone(),
                color: colors[&m.name],
                marks: vec![mark(pt2, ct), mark(pa, ca)],
            });
            if ratio[0].0.is_some() || ratio[1].0.is_some() {
                ratio_rows.push(IntervalRow {
                    name: m.name.clone(),
                    color: colors[&m.name],
                    marks: vec![mark(ratio[1].0, ratio[1].1), mark(ratio[0].0, ratio[0].1)],
                });
            }

            // Sub-tasks.
            for (ti, task) in ["move", "in_lf"].into_iter().enumerate() {
                let (mut y, mut p, mut w) = (Vec::new(), Vec::new(), Vec::new());
                for r in rs {
                    match ti {
                        0 => {
                            if let (Some(prev), Some(ps)) = (&r.row.prev_label, r.row.p_stay) {
                                y.push(*prev != r.row.label);
                                p.push(1.0 - ps);
                                w.push(r.w);
                            }
                        }
                        _ => {
                            y.push(is_in_lf(&r.row.label));
                            p.push(r.row.p_in_lf);
                            w.push(r.w);
                        }
                    }
                }
                if y.is_empty() {
                    continue;
                }
                let sw: f64 = w.iter().sum();
                let rate = y
                    .iter()
                    .zip(&w)
                    .filter(|(y, _)| **y)
                    .map(|(_, w)| w)
                    .sum::<f64>()
                    / sw;
                sub_tab.push(vec![
                    ds.to_string(),
                    m.name.clone(),
                    task.into(),
                    y.len().to_string(),
                    num(Some(rate), 4),
                    num(Some(stats::log_loss(&y, &p, &w)), 4),
                    num(stats::auc(&y, &p, &w), 4),
                ]);
                let bins = stats::reliability(&y, &p, &w, opt.bins);
                for b in &bins {
                    rel_tab.push(vec![
                        ds.to_string(),
                        m.name.clone(),
                        task.into(),
                        num(Some(b.lo), 2),
                        num(Some(b.hi), 2),
                        b.n.to_string(),
                        num(Some(b.mean_pred), 4),
                        num(Some(b.observed), 4),
                    ]);
                }
                rel_series[ti].push(Series {
                    name: m.name.clone(),
                    color: colors[&m.name],
                    points: bins.iter().map(|b| (b.mean_pred, b.observed)).collect(),
                });
            }
        }
        // Paired comparisons, every pair of models.
        for (a, ma) in inp.models.iter().enumerate() {
            for (b, mb) in inp.models.iter().enumerate().skip(a + 1) {
                let mut d = Sums::new(np);
                for r in &refs[a] {
                    if let Some(o) = keyed[b].get(&(r.row.person_id.as_str(), r.row.t)) {
                        d.add(r.person, r.row.logp_norm - o.row.logp_norm, r.w);
                    }
                }
                let n = d.w.iter().filter(|w| **w > 0.0).count();
                if n == 0 {
                    continue;
                }
                let n_rec = refs[a]
                    .iter()
                    .filter(|r| keyed[b].contains_key(&(r.row.person_id.as_str(), r.row.t)))
                    .count();
                let ci = boot(&counts, |c| {
                    let (s, w) = d.resampled(c);
                    (w > 0.0).then(|| s / w)
                });
                paired.push(vec![
                    ds.to_string(),
                    ma.name.clone(),
                    mb.name.clone(),
                    n_rec.to_string(),
                    num(d.mean(), 5),
                    num(ci.map(|c| c.0), 5),
                    num(ci.map(|c| c.1), 5),
                ]);
            }
        }
        let marks = vec!["t ≥ 2".to_string(), "all records".to_string()];
        let ppl_plot = Plot {
            name: format!("perplexity_{ds}"),
            title: format!(
                "{ds}: perplexity (normalized) on transitions (t ≥ 2) and on all records, 95% \
                 interval, log scale"
            ),
            svg: plot::intervals(&IntervalPlot {
                title: format!("{ds}: perplexity"),
                x_label: "perplexity (normalized; log scale)".into(),
                marks: marks.clone(),
                rows: ppl_rows,
                log: true,
                reference: None,
                suffix: String::new(),
            }),
        };
        // The headline plot: ratios to the oracle where there is one, else perplexities.
        if ratio_rows.is_empty() {
            headline_plots.push(ppl_plot);
        } else {
            headline_plots.push(Plot {
                name: format!("ratio_{ds}"),
                title: format!(
                    "{ds}: each model's perplexity ÷ the oracle's on the same records \
                     (normalized; 1× is the best possible), 95% interval, log scale"
                ),
                svg: plot::intervals(&IntervalPlot {
                    title: format!("{ds}: perplexity ÷ oracle's"),
                    x_label: "ratio to the oracle's perplexity (log scale)".into(),
                    marks,
                    rows: ratio_rows,
                    log: true,
                    reference: Some((1.0, "oracle = 1×".into())),
                    suffix: "×".into(),
                }),
            });
            plots.push(ppl_plot);
        }
        for (ti, (task, label)) in [("move", "P(move)"), ("in_lf", "P(in labor force)")]
            .into_iter()
            .enumerate()
        {
            if rel_series[ti].is_empty() {
                continue;
            }
            plots.push(Plot {
                name: format!("reliability_{task}_{ds}"),
                title: format!("{ds}: reliability of {label}"),
                svg: plot::reliability(
                    &format!("{ds}: {label}"),
                    "mean predicted",
                    "observed",
                    &rel_series[ti],
                ),
            });
        }
    }

    // Headline: model × dataset.
    let mut head_cols = vec!["model".to_string()];
    for ds in &datasets {
        head_cols.push(format!("{ds}: all records"));
        head_cols.push(format!("{ds}: t ≥ 2"));
    }
    let (title, caption) = if oracle_idx.is_some() {
        (
            "Headline: perplexity (ratio to the oracle)",
            "Normalized test perplexity; in parentheses its ratio to the oracle's on the \
             same records (1.00× is the best possible).",
        )
    } else {
        (
            "Headline: perplexity",
            "Normalized test perplexity (no oracle: the data's true probabilities are unknown, \
             so the models are compared with each other; lower is better).",
        )
    };
    let mut headline = Table {
        name: "headline".into(),
        title: title.into(),
        caption: caption.into(),
        header: head_cols,
        rows: Vec::new(),
    };
    for (mi, m) in inp.models.iter().enumerate() {
        let cells: Vec<String> = (0..2 * datasets.len())
            .map(|c| headline_cells.get(&(mi, c)).cloned().unwrap_or_default())
            .collect();
        if cells.iter().all(|c| c.is_empty()) {
            continue;
        }
        let mut row = vec![m.name.clone()];
        row.extend(cells);
        headline.push(row);
    }

    let mut tables = vec![ppl_show, sub_tab, paired];
    let mut data_tables = vec![ppl_tab, rel_tab];
    if let Some(subjects) = inp.subjects {
        let (cal_summary, cal_long, cal_plots, cal_notes) =
            calibration(inp, &weights, oracle_idx, subjects);
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

/// The subgroup families: single attributes and their pairwise crossings.
const ATTRS: [&str; 6] = ["gender", "race", "education", "cohort", "region", "dataset"];

fn attr<'a>(s: &'a Subject, ds: &'a str, a: usize) -> &'a str {
    match a {
        0 => &s.gender,
        1 => &s.race,
        2 => &s.education,
        3 => &s.cohort,
        4 => &s.region,
        _ => ds,
    }
}

/// The value of a subject attribute the panel does not have (`NA`, or cohort `unknown`).
fn is_absent_value(a: usize, v: &str) -> bool {
    v == labor_data::MISSING || (a == 3 && v == "unknown")
}

/// The families over the attributes that at least one subject has a value of: an attribute
/// the panel lacks altogether (e.g. no region column) gets no table.
fn families(subjects: &HashMap<SubjectKey, Subject>) -> (Vec<Vec<usize>>, Vec<&'static str>) {
    let present: Vec<usize> = (0..ATTRS.len())
        .filter(|&a| {
            subjects.is_empty()
                || subjects
                    .iter()
                    .any(|((ds, _, _), s)| !is_absent_value(a, attr(s, ds, a)))
        })
        .collect();
    let absent = (0..ATTRS.len())
        .filter(|a| !present.contains(a))
        .map(|a| ATTRS[a])
        .collect();
    let mut f: Vec<Vec<usize>> = present.iter().map(|&a| vec![a]).collect();
    for (i, &a) in present.iter().enumerate() {
        for &b in &present[i + 1..] {
            f.push(vec![a, b]);
        }
    }
    (f, absent)
}

fn family_name(f: &[usize]) -> String {
    f.iter().map(|&a| ATTRS[a]).collect::<Vec<_>>().join(" × ")
}

/// Accumulated weighted sums for one (cell, class): weight, predicted, observed, and
/// oracle-predicted on the rows the oracle also scored.
#[derive(Clone, Copy, Default)]
struct CellAcc {
    n: usize,
    w: f64,
    pred: f64,
    obs: f64,
    wo: f64,
    pred_o: f64,
    pred_m_o: f64,
}

type Cal = (Table, Table, Vec<Plot>, Vec<String>);

fn calibration(
    inp: &Inputs,
    weights: &[Vec<f64>],
    oracle_idx: Option<usize>,
    subjects: &HashMap<SubjectKey, Subject>,
) -> Cal {
    let (fams, absent) = families(subjects);
    let opt = inp.options;
    let colors = plot::model_colors(inp.models.iter().map(|m| m.name.as_str()), inp.oracle);
    // The class set is the one every model supports: all outcome classes when every model
    // came with full distributions, otherwise "stay" alone.
    let full = inp
        .models
        .iter()
        .enumerate()
        .all(|(i, m)| Some(i) == oracle_idx || m.class_probs.is_some());
    let mut classes: Vec<String> = if full {
        inp.classes.to_vec()
    } else {
        Vec::new()
    };
    classes.push(STAY.into());
    let stay = classes.len() - 1;
    let mut notes = Vec::new();
    if !absent.is_empty() && !subjects.is_empty() {
        notes.push(format!(
            "Calibration by subgroup leaves out {}: the panel has no values of {}.",
            absent.join(", "),
            if absent.len() == 1 { "it" } else { "them" }
        ));
    }
    if !full {
        let without: Vec<&str> = inp
            .models
            .iter()
            .enumerate()
            .filter(|(i, m)| Some(*i) != oracle_idx && m.class_probs.is_none())
            .map(|(_, m)| m)
            .map(|m| m.name.as_str())
            .collect();
        notes.push(format!(
            "subgroup calibration covers \"stay\" only: no full distributions for {} (score \
             with --full-dist and pass the files with --full)",
            without.join(", ")
        ));
    }
    let oracle_rows: Option<HashMap<(&str, &str, i32), usize>> = oracle_idx.map(|oi| {
        inp.models[oi]
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| ((r.dataset.as_str(), r.person_id.as_str(), r.t), i))
            .collect()
    });
    // model → family → cell → class accumulators
    let mut acc: Vec<Vec<BTreeMap<String, Vec<CellAcc>>>> = Vec::new();
    for (mi, m) in inp.models.iter().enumerate() {
        let mut per_fam: Vec<BTreeMap<String, Vec<CellAcc>>> = vec![BTreeMap::new(); fams.len()];
        for (i, r) in m.rows.iter().enumerate() {
            let s = &subjects[&(r.dataset.clone(), r.person_id.clone(), r.year)];
            let w = weights[mi][i];
            let truth = inp.class_of_label.get(&r.label).copied();
            let o = oracle_rows
                .as_ref()
                .filter(|_| Some(mi) != oracle_idx)
                .and_then(|k| k.get(&(r.dataset.as_str(), r.person_id.as_str(), r.t)))
                .map(|&j| (&inp.models[oracle_idx.unwrap()], j));
            // Predicted and observed per class (None: class not defined for this record).
            let vals: Vec<Option<(f64, f64, Option<f64>)>> = (0..classes.len())
                .map(|c| {
                    if c == stay {
                        let ps = r.p_stay?;
                        let obs = (r.prev_label.as_deref() == Some(r.label.as_str())) as u8 as f64;
                        let po = o.and_then(|(om, j)| om.rows[j].p_stay);
                        Some((ps, obs, po))
                    } else {
                        let p = m.class_probs.as_ref()?[i].as_ref()?[c];
                        let obs = (truth == Some(c)) as u8 as f64;
                        let po =
                            o.and_then(|(om, j)| Some(om.class_probs.as_ref()?[j].as_ref()?[c]));
                        Some((p, obs, po))
                    }
                })
                .collect();
            for (fi, f) in fams.iter().enumerate() {
                let cell = f
                    .iter()
                    .map(|&a| attr(s, &r.dataset, a))
                    .collect::<Vec<_>>()
                    .join(" × ");
                let e = per_fam[fi]
                    .entry(cell)
                    .or_insert_with(|| vec![CellAcc::default(); classes.len()]);
                for (c, v) in vals.iter().enumerate() {
                    if let Some((p, obs, po)) = v {
                        let a = &mut e[c];
                        a.n += 1;
                        a.w += w;
                        a.pred += w * p;
                        a.obs += w * obs;
                        if let Some(po) = po {
                            a.wo += w;
                            a.pred_o += w * po;
                            a.pred_m_o += w * p;
                        }
                    }
                }
            }
        }
        acc.push(per_fam);
    }
    let mut long = Table::new(
        "calibration",
        "Calibration by subgroup (long format)",
        &[
            "model",
            "family",
            "cell",
            "class",
            "records",
            "mean_pred",
            "observed",
            "oracle_pred",
        ],
    );
    let mut header: Vec<&str> = vec!["family"];
    let names: Vec<String> = inp
        .models
        .iter()
        .enumerate()
        .flat_map(|(i, m)| {
            let mut v = vec![format!("{} vs observed", m.name)];
            if oracle_idx.is_some() && Some(i) != oracle_idx {
                v.push(format!("{} vs oracle", m.name));
            }
            v
        })
        .collect();
    header.extend(names.iter().map(String::as_str));
    let mut summary = Table::new(
        "calibration_summary",
        "Representativeness: weighted mean absolute error of mean predicted probabilities",
        &header,
    );
    summary.caption = format!(
        "For each subgroup cell (with at least {} records) and outcome class ({}), |mean \
         predicted − observed frequency| and |mean predicted − oracle's mean predicted| on the \
         same records, averaged with the cells' weights. Lower is better.",
        opt.min_cell,
        if full {
            format!(
                "{} occupation groups and special states, and \"stay\"",
                classes.len() - 1
            )
        } else {
            "\"stay\" only".to_string()
        }
    );
    let mut scatter: Vec<Vec<Series>> = vec![Vec::new(); ATTRS.len()];
    for (fi, f) in fams.iter().enumerate() {
        let mut row = vec![family_name(f)];
        for (mi, m) in inp.models.iter().enumerate() {
            let (mut e_obs, mut w_obs, mut e_or, mut w_or) = (0.0, 0.0, 0.0, 0.0);
            let mut pts = Vec::new();
            for (cell, cs) in &acc[mi][fi] {
                for (c, a) in cs.iter().enumerate() {
                    if a.n == 0 {
                        continue;
                    }
                    let (pred, obs) = (a.pred / a.w, a.obs / a.w);
                    let or = (a.wo > 0.0).then(|| (a.pred_m_o / a.wo, a.pred_o / a.wo));
                    long.push(vec![
                        m.name.clone(),
                        family_name(f),
                        cell.clone(),
                        classes[c].clone(),
                        a.n.to_string(),
                        num(Some(pred), 5),
                        num(Some(obs), 5),
                        num(or.map(|x| x.1), 5),
                    ]);
                    if a.n >= opt.min_cell {
                        e_obs += a.w * (pred - obs).abs();
                        w_obs += a.w;
                        if let Some((pm, po)) = or {
                            e_or += a.wo * (pm - po).abs();
                            w_or += a.wo;
                        }
                        pts.push((obs, pred));
                    }
                }
            }
            row.push(num((w_obs > 0.0).then(|| e_obs / w_obs), 5));
            if oracle_idx.is_some() && Some(mi) != oracle_idx {
                row.push(num((w_or > 0.0).then(|| e_or / w_or), 5));
            }
            if f.len() == 1 {
                scatter[f[0]].push(Series {
                    name: m.name.clone(),
                    color: colors[&m.name],
                    points: pts,
                });
            }
        }
        summary.push(row);
    }
    let plots = scatter
        .into_iter()
        .enumerate()
        .map(|(a, series)| Plot {
            name: format!("calibration_{}", ATTRS[a]),
            title: format!("Mean predicted vs observed by {}", ATTRS[a]),
            svg: plot::scatter(
                &format!("by {}: cells × classes", ATTRS[a]),
                "observed frequency",
                "mean predicted",
                &series,
            ),
        })
        .collect();
    (summary, long, plots, notes)
}
