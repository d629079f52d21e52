//! The sub-tasks: P(move) = 1 − P(previous label) on records with t ≥ 2, and P(in labor force)
//! on all records — observed rate, binary log-loss, AUC, and reliability curves.

use std::collections::BTreeMap;

use super::{Dataset, Inputs, Plot, is_in_lf};
use crate::plot::{self, Series};
use crate::stats;
use crate::table::{Table, num};

pub(super) struct Subtasks {
    pub(super) table: Table,
    pub(super) reliability: Table,
}

impl Subtasks {
    pub(super) fn new() -> Self {
        let mut table = Table::new(
            "subtasks",
            "Sub-tasks: P(move) and P(in labor force)",
            &[
                "dataset", "model", "task", "records", "rate", "log_loss", "auc",
            ],
        );
        table.caption = "move: records with t ≥ 2, P(move) = 1 − P(previous label); in_lf: \
                         all records, P(in labor force) = mass on occupations and Unemployed. \
                         Observed rate, binary log-loss and AUC (ties count ½)."
            .into();
        let reliability = Table::new(
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
        Self { table, reliability }
    }

    /// Adds one dataset's rows (per model, then task) and returns its reliability plots.
    pub(super) fn add_dataset(
        &mut self,
        d: &Dataset,
        inp: &Inputs,
        colors: &BTreeMap<String, plot::Rgb>,
    ) -> Vec<Plot> {
        let ds = d.name;
        let mut rel_series: [Vec<Series>; 2] = [Vec::new(), Vec::new()];
        for (mi, m) in inp.models.iter().enumerate() {
            let rs = &d.refs[mi];
            if rs.is_empty() {
                continue;
            }
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
                self.table.push(vec![
                    ds.to_string(),
                    m.name.clone(),
                    task.into(),
                    y.len().to_string(),
                    num(Some(rate), 4),
                    num(Some(stats::log_loss(&y, &p, &w)), 4),
                    num(stats::auc(&y, &p, &w), 4),
                ]);
                let bins = stats::reliability(&y, &p, &w, inp.options.bins);
                for b in &bins {
                    self.reliability.push(vec![
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
        let mut plots = Vec::new();
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
        plots
    }
}
