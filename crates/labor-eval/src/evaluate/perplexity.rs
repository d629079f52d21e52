//! Perplexity per dataset and model: all records and transitions (t ≥ 2), normalized and
//! unnormalized, with bootstrap intervals over persons, the mean leaked mass, and the ratio to
//! the oracle on the records both scored; the headline table and plots come from here.

use std::collections::BTreeMap;

use super::{Dataset, Inputs, Options, Plot, Sums, boot, ppl};
use crate::plot::{self, IntervalPlot, IntervalRow, Mark};
use crate::table::{Table, num, with_ci};

pub(super) struct Perplexity {
    /// Every number, with separate interval columns (CSV).
    pub(super) table: Table,
    /// The same for reading.
    pub(super) display: Table,
    /// The headline's cells by (model, column): two columns per dataset.
    cells: BTreeMap<(usize, usize), String>,
}

/// One dataset's plots: the perplexity intervals, and the ratios to the oracle when there is one.
pub(super) struct DatasetPlots {
    pub(super) perplexity: Plot,
    pub(super) ratio: Option<Plot>,
}

impl Perplexity {
    pub(super) fn new(opt: &Options) -> Self {
        let table = Table::new(
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
        let mut display = Table::new(
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
        display.caption = format!(
            "Perplexity = exp(−mean log p of the true label), normalized over the valid labels \
             unless marked; 95% intervals from {} bootstrap resamples of persons (seed {}). \
             Ratios to the oracle are computed on the records both scored.{}",
            opt.bootstrap,
            opt.seed,
            if opt.weighted {
                " Weighted by the panel's survey weights."
            } else {
                ""
            }
        );
        Self {
            table,
            display,
            cells: BTreeMap::new(),
        }
    }

    /// Adds one dataset's rows (per model) and notes; returns its plots.
    pub(super) fn add_dataset(
        &mut self,
        d: &Dataset,
        inp: &Inputs,
        oracle_idx: Option<usize>,
        colors: &BTreeMap<String, plot::Rgb>,
        notes: &mut Vec<String>,
    ) -> DatasetPlots {
        let (ds, di, np) = (d.name, d.index, d.persons);
        let counts = &d.counts;
        let (mut ppl_rows, mut ratio_rows) = (Vec::new(), Vec::new());
        for (mi, m) in inp.models.iter().enumerate() {
            let rs = &d.refs[mi];
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
                boot(counts, |c| {
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
                    if let Some(o) = d.matching(oi, r) {
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
                        boot(counts, |c| r(a.resampled(c), b.resampled(c))),
                    );
                }
            }
            let (pa, pt2) = (pt(&all), pt(&tr));
            let (ca, ct) = (bt(&all), bt(&tr));
            let lo = |c: Option<(f64, f64)>| num(c.map(|x| x.0), 4);
            let hi = |c: Option<(f64, f64)>| num(c.map(|x| x.1), 4);
            self.table.push(vec![
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
            self.display.push(vec![
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
            self.cells.insert((mi, 2 * di), cell(pa, ratio[0].0));
            self.cells.insert((mi, 2 * di + 1), cell(pt2, ratio[1].0));
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
        }
        let marks = vec!["t ≥ 2".to_string(), "all records".to_string()];
        let perplexity = Plot {
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
        let ratio = (!ratio_rows.is_empty()).then(|| Plot {
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
        DatasetPlots { perplexity, ratio }
    }

    /// The headline table: model × dataset (all records, t ≥ 2), with ratios to the oracle.
    pub(super) fn headline(&self, inp: &Inputs, datasets: &[&str], with_oracle: bool) -> Table {
        let mut head_cols = vec!["model".to_string()];
        for ds in datasets {
            head_cols.push(format!("{ds}: all records"));
            head_cols.push(format!("{ds}: t ≥ 2"));
        }
        let (title, caption) = if with_oracle {
            (
                "Headline: perplexity (ratio to the oracle)",
                "Normalized test perplexity; in parentheses its ratio to the oracle's on the \
                 same records (1.00× is the best possible).",
            )
        } else {
            (
                "Headline: perplexity",
                "Normalized test perplexity (no oracle: the data's true probabilities are \
                 unknown, so the models are compared with each other; lower is better).",
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
                .map(|c| self.cells.get(&(mi, c)).cloned().unwrap_or_default())
                .collect();
            if cells.iter().all(|c| c.is_empty()) {
                continue;
            }
            let mut row = vec![m.name.clone()];
            row.extend(cells);
            headline.push(row);
        }
        headline
    }
}
