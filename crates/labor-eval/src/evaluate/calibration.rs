//! Calibration by subgroup: for single attributes and their pairwise crossings, each model's
//! mean predicted probability of every outcome class against the observed frequency and the
//! oracle's mean prediction on the same records.

use std::collections::{BTreeMap, HashMap};

use super::{Inputs, Plot, STAY, Subject, SubjectKey};
use crate::plot::{self, Series};
use crate::table::{Table, num};

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

pub(super) type Cal = (Table, Table, Vec<Plot>, Vec<String>);

pub(super) fn calibration(
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
