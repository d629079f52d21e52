//! Aggregate tables of a simulation, and how far a forecast is from the truth.

use std::collections::{BTreeMap, HashMap};

use labor_data::{LabelId, Taxonomy};

use crate::CategoryIndex;
use crate::simulate::SimRecord;

/// Share of the simulated records of each year in each category.
#[derive(Debug, Clone, PartialEq)]
pub struct ShareRow {
    pub year: i32,
    pub category: String,
    pub share: f64,
    /// Simulated records of that year.
    pub n: usize,
}

/// Shares by year: every category of the taxonomy for every simulated year (zeros included).
pub fn shares_by_year(sims: &[SimRecord], taxonomy: &Taxonomy) -> Vec<ShareRow> {
    let cats = CategoryIndex::new(taxonomy);
    let mut counts: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for r in sims {
        let c = cats.of(r.label);
        counts.entry(r.year).or_insert_with(|| vec![0; cats.len()])[c] += 1;
    }
    let mut out = Vec::new();
    for (year, c) in counts {
        let n: usize = c.iter().sum();
        for (i, k) in c.iter().enumerate() {
            out.push(ShareRow {
                year,
                category: cats.names[i].clone(),
                share: *k as f64 / n as f64,
                n,
            });
        }
    }
    out
}

/// Year-to-year mobility between categories: of the simulated records whose previous record
/// (observed, for the first step) was in `from`, the share in `to`. Rows with no records are
/// left out.
#[derive(Debug, Clone, PartialEq)]
pub struct MobilityRow {
    pub from: String,
    pub to: String,
    pub share: f64,
    pub n_from: usize,
}

/// `last_observed[i]`: the label of start i's last observed record.
pub fn mobility(
    sims: &[SimRecord],
    last_observed: &[LabelId],
    taxonomy: &Taxonomy,
) -> Vec<MobilityRow> {
    let cats = CategoryIndex::new(taxonomy);
    let n = cats.len();
    let mut m = vec![0usize; n * n];
    let mut prev: HashMap<(u32, u32), LabelId> = HashMap::new();
    // Records come person by person, draw by draw, step by step.
    for r in sims {
        let from = if r.step == 1 {
            last_observed[r.person as usize]
        } else {
            prev[&(r.person, r.draw)]
        };
        m[cats.of(from) * n + cats.of(r.label)] += 1;
        prev.insert((r.person, r.draw), r.label);
    }
    let mut out = Vec::new();
    for a in 0..n {
        let total: usize = m[a * n..(a + 1) * n].iter().sum();
        if total == 0 {
            continue;
        }
        for b in 0..n {
            out.push(MobilityRow {
                from: cats.names[a].clone(),
                to: cats.names[b].clone(),
                share: m[a * n + b] as f64 / total as f64,
                n_from: total,
            });
        }
    }
    out
}

/// Counterfactual minus baseline share, paired person by person (common random numbers).
#[derive(Debug, Clone, PartialEq)]
pub struct DiffRow {
    pub year: i32,
    pub category: String,
    pub baseline: f64,
    pub counterfactual: f64,
    pub difference: f64,
    /// Standard error of the difference over persons (each person's draws averaged first).
    pub se: f64,
    pub persons: usize,
}

/// Per category, a person's share of draws in the baseline and in the counterfactual.
type PairedShares = (Vec<f64>, Vec<f64>);

/// Both simulations must come from the same starts, draws and years (same order).
pub fn paired_difference(
    baseline: &[SimRecord],
    counterfactual: &[SimRecord],
    taxonomy: &Taxonomy,
) -> Result<Vec<DiffRow>, String> {
    if baseline.len() != counterfactual.len() {
        return Err("the two simulations differ in size".into());
    }
    let cats = CategoryIndex::new(taxonomy);
    let nc = cats.len();
    // (year, person) -> per category counts in both, and the number of draws.
    let mut cell: BTreeMap<(i32, u32), (PairedShares, usize)> = BTreeMap::new();
    for (a, b) in baseline.iter().zip(counterfactual) {
        if (a.person, a.draw, a.step, a.year) != (b.person, b.draw, b.step, b.year) {
            return Err("the two simulations are not paired record for record".into());
        }
        let e = cell
            .entry((a.year, a.person))
            .or_insert_with(|| ((vec![0.0; nc], vec![0.0; nc]), 0));
        e.0.0[cats.of(a.label)] += 1.0;
        e.0.1[cats.of(b.label)] += 1.0;
        e.1 += 1;
    }
    let mut by_year: BTreeMap<i32, Vec<PairedShares>> = BTreeMap::new();
    for ((year, _), ((x, y), d)) in cell {
        let d = d as f64;
        by_year.entry(year).or_default().push((
            x.iter().map(|v| v / d).collect(),
            y.iter().map(|v| v / d).collect(),
        ));
    }
    let mut out = Vec::new();
    for (year, persons) in by_year {
        let n = persons.len() as f64;
        for (c, name) in cats.names.iter().enumerate() {
            let base = persons.iter().map(|p| p.0[c]).sum::<f64>() / n;
            let cf = persons.iter().map(|p| p.1[c]).sum::<f64>() / n;
            let diffs: Vec<f64> = persons.iter().map(|p| p.1[c] - p.0[c]).collect();
            let mean = diffs.iter().sum::<f64>() / n;
            let var = if persons.len() > 1 {
                diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1.0)
            } else {
                0.0
            };
            out.push(DiffRow {
                year,
                category: name.clone(),
                baseline: base,
                counterfactual: cf,
                difference: mean,
                se: (var / n).sqrt(),
                persons: persons.len(),
            });
        }
    }
    Ok(out)
}

/// A forecast against the truth at one horizon.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastRow {
    pub horizon: u32,
    /// Total-variation distance between the model's and the truth's category shares, pooled
    /// over persons.
    pub tv_shares: f64,
    /// Mean over persons of the total-variation distance between the person's category
    /// distribution across the model's draws and across the truth's.
    pub tv_person: f64,
    pub persons: usize,
}

/// Per (person key, horizon): category counts.
fn person_horizon(
    sims: &[(usize, u32, LabelId)],
    cats: &CategoryIndex,
) -> BTreeMap<(u32, usize), Vec<f64>> {
    let mut m: BTreeMap<(u32, usize), Vec<f64>> = BTreeMap::new();
    for &(person, step, label) in sims {
        m.entry((step, person))
            .or_insert_with(|| vec![0.0; cats.len()])[cats.of(label)] += 1.0;
    }
    m
}

fn tv(a: &[f64], b: &[f64]) -> f64 {
    let (sa, sb): (f64, f64) = (a.iter().sum(), b.iter().sum());
    0.5 * a
        .iter()
        .zip(b)
        .map(|(x, y)| (x / sa - y / sb).abs())
        .sum::<f64>()
}

/// Scores a forecast (`model`: (person key, step, label) per simulated record) against the
/// truth's simulation of the same persons. Persons the two do not share are left out.
pub fn forecast_scores(
    model: &[(usize, u32, LabelId)],
    truth: &[(usize, u32, LabelId)],
    taxonomy: &Taxonomy,
) -> Vec<ForecastRow> {
    let cats = CategoryIndex::new(taxonomy);
    let nc = cats.len();
    let m = person_horizon(model, &cats);
    let t = person_horizon(truth, &cats);
    let mut by_h: BTreeMap<u32, (Vec<f64>, Vec<f64>, f64, usize)> = BTreeMap::new();
    for (key, mc) in &m {
        let Some(tc) = t.get(key) else { continue };
        let e = by_h
            .entry(key.0)
            .or_insert_with(|| (vec![0.0; nc], vec![0.0; nc], 0.0, 0));
        // Pooled shares weigh every person equally, whatever its number of draws.
        let (sm, st): (f64, f64) = (mc.iter().sum(), tc.iter().sum());
        for c in 0..nc {
            e.0[c] += mc[c] / sm;
            e.1[c] += tc[c] / st;
        }
        e.2 += tv(mc, tc);
        e.3 += 1;
    }
    by_h.into_iter()
        .map(|(h, (a, b, s, n))| ForecastRow {
            horizon: h,
            tv_shares: tv(&a, &b),
            tv_person: s / n as f64,
            persons: n,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(person: u32, draw: u32, step: u32, label: u32) -> SimRecord {
        SimRecord {
            person,
            draw,
            step,
            year: 2000 + step as i32,
            label: LabelId(label),
            education: None,
        }
    }

    #[test]
    fn tables_count_what_they_say() {
        let t = Taxonomy::embedded_default();
        let occ = t
            .ids()
            .find(|&i| t.label(i).kind == labor_data::LabelKind::Occupation)
            .unwrap();
        let sims = vec![
            rec(0, 0, 1, 0),
            rec(0, 0, 2, occ.0),
            rec(0, 1, 1, 0),
            rec(0, 1, 2, 0),
        ];
        let s = shares_by_year(&sims, &t);
        let unemp = s
            .iter()
            .find(|r| r.year == 2001 && r.category == "Unemployed")
            .unwrap();
        assert_eq!((unemp.share, unemp.n), (1.0, 2));
        let s2 = s
            .iter()
            .find(|r| r.year == 2002 && r.category == t.label(occ).group)
            .unwrap();
        assert_eq!(s2.share, 0.5);
        assert!(
            (s.iter()
                .filter(|r| r.year == 2002)
                .map(|r| r.share)
                .sum::<f64>()
                - 1.0)
                .abs()
                < 1e-12
        );
        let m = mobility(&sims, &[occ], &t);
        let from_occ = m
            .iter()
            .find(|r| r.from == t.label(occ).group && r.to == "Unemployed")
            .unwrap();
        assert_eq!((from_occ.share, from_occ.n_from), (1.0, 2));
        let from_u = m
            .iter()
            .find(|r| r.from == "Unemployed" && r.to == "Unemployed")
            .unwrap();
        assert_eq!((from_u.share, from_u.n_from), (0.5, 2));
        let d = paired_difference(&sims, &sims, &t).unwrap();
        assert!(d.iter().all(|r| r.difference == 0.0 && r.se == 0.0));
        let mut cf = sims.clone();
        cf[1].label = LabelId(0);
        let d = paired_difference(&sims, &cf, &t).unwrap();
        let u = d
            .iter()
            .find(|r| r.year == 2002 && r.category == "Unemployed")
            .unwrap();
        assert_eq!(
            (u.baseline, u.counterfactual, u.difference),
            (0.5, 1.0, 0.5)
        );
        let key = |s: &[SimRecord]| {
            s.iter()
                .map(|r| (r.person as usize, r.step, r.label))
                .collect::<Vec<_>>()
        };
        let f = forecast_scores(&key(&sims), &key(&sims), &t);
        assert!(f.iter().all(|r| r.tv_shares == 0.0 && r.tv_person == 0.0));
        let f = forecast_scores(&key(&cf), &key(&sims), &t);
        assert_eq!(f[1].tv_shares, 0.5);
        assert_eq!(f[0].tv_shares, 0.0);
    }
}
