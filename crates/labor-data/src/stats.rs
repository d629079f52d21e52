//! Descriptive statistics of a panel (`labor data stats`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::panel::Panel;
use crate::taxonomy::LabelKind;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetCount {
    pub dataset: String,
    pub persons: usize,
    pub person_years: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelCount {
    pub code: String,
    pub title: String,
    pub group: String,
    pub count: usize,
    pub share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupCount {
    pub group: String,
    pub count: usize,
    pub share: f64,
}

/// Summary of a panel. "Consecutive pairs" are a person's successive records; an *annual* pair
/// is one whose years differ by exactly 1.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PanelStats {
    pub persons: usize,
    pub person_years: usize,
    pub datasets: Vec<DatasetCount>,
    pub year_min: i32,
    pub year_max: i32,
    pub distinct_years: usize,
    pub records_per_person_min: usize,
    pub records_per_person_max: usize,
    pub records_per_person_mean: f64,
    pub labels_used: usize,
    pub labels_in_taxonomy: usize,
    /// Every label used, most frequent first (ties by taxonomy order).
    pub labels: Vec<LabelCount>,
    /// Occupation groups and the special states' group, most frequent first.
    pub groups: Vec<GroupCount>,
    /// The three special states in taxonomy order, with zero counts included.
    pub special: Vec<LabelCount>,
    pub annual_pairs: usize,
    /// Annual pairs whose label differs.
    pub annual_label_changes: usize,
    pub annual_label_change_rate: f64,
    /// Annual pairs where both records are occupations.
    pub annual_occupation_pairs: usize,
    /// ... and the occupation differs.
    pub annual_occupation_changes: usize,
    /// `annual_occupation_changes / annual_occupation_pairs`: the annual occupation-change rate.
    pub annual_occupation_change_rate: f64,
    /// Number of consecutive pairs by year gap (1 = adjacent years).
    pub gaps: BTreeMap<i32, usize>,
    /// Persons with at least one gap of more than one year.
    pub persons_with_gap: usize,
    /// Persons per explicit split (train, valid, test, none).
    pub split_persons: BTreeMap<String, usize>,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl PanelStats {
    pub fn compute(panel: &Panel) -> Self {
        let tax = &panel.taxonomy;
        let mut label_n = vec![0usize; tax.len()];
        let mut datasets: Vec<DatasetCount> = Vec::new();
        let (mut year_min, mut year_max) = (i32::MAX, i32::MIN);
        let mut years = std::collections::BTreeSet::new();
        let (mut rmin, mut rmax) = (usize::MAX, 0usize);
        let mut gaps = BTreeMap::new();
        let (mut ap, mut ac, mut op, mut oc, mut pgap) = (0, 0, 0, 0, 0);
        let mut split_persons = BTreeMap::new();
        for p in &panel.persons {
            let n = p.records.len();
            rmin = rmin.min(n);
            rmax = rmax.max(n);
            match datasets.iter_mut().find(|d| d.dataset == p.dataset) {
                Some(d) => {
                    d.persons += 1;
                    d.person_years += n;
                }
                None => datasets.push(DatasetCount {
                    dataset: p.dataset.clone(),
                    persons: 1,
                    person_years: n,
                }),
            }
            *split_persons
                .entry(p.split.map_or("none", |s| s.as_str()).to_string())
                .or_insert(0) += 1;
            for r in &p.records {
                label_n[r.label.index()] += 1;
                year_min = year_min.min(r.year);
                year_max = year_max.max(r.year);
                years.insert(r.year);
            }
            let mut gapped = false;
            for w in p.records.windows(2) {
                let gap = w[1].year - w[0].year;
                *gaps.entry(gap).or_insert(0) += 1;
                gapped |= gap > 1;
                if gap == 1 {
                    ap += 1;
                    ac += usize::from(w[0].label != w[1].label);
                    let occ =
                        |r: &crate::panel::Record| tax.label(r.label).kind == LabelKind::Occupation;
                    if occ(&w[0]) && occ(&w[1]) {
                        op += 1;
                        oc += usize::from(w[0].label != w[1].label);
                    }
                }
            }
            pgap += usize::from(gapped);
        }
        let total = panel.n_records();
        let count = |id: crate::taxonomy::LabelId| {
            let l = tax.label(id);
            LabelCount {
                code: l.code.clone(),
                title: l.title.clone(),
                group: l.group.clone(),
                count: label_n[id.index()],
                share: ratio(label_n[id.index()], total),
            }
        };
        let mut labels: Vec<LabelCount> = tax
            .ids()
            .filter(|i| label_n[i.index()] > 0)
            .map(count)
            .collect();
        labels.sort_by_key(|l| std::cmp::Reverse(l.count));
        let special = tax
            .ids()
            .filter(|i| tax.label(*i).kind != LabelKind::Occupation)
            .map(count)
            .collect();
        let mut groups: Vec<GroupCount> = tax
            .groups()
            .into_iter()
            .map(|g| {
                let c = tax
                    .ids()
                    .filter(|i| tax.label(*i).group == g)
                    .map(|i| label_n[i.index()])
                    .sum();
                GroupCount {
                    group: g.to_string(),
                    count: c,
                    share: ratio(c, total),
                }
            })
            .filter(|g| g.count > 0)
            .collect();
        groups.sort_by_key(|g| std::cmp::Reverse(g.count));
        Self {
            persons: panel.persons.len(),
            person_years: total,
            datasets,
            year_min,
            year_max,
            distinct_years: years.len(),
            records_per_person_min: if panel.persons.is_empty() { 0 } else { rmin },
            records_per_person_max: rmax,
            records_per_person_mean: ratio(total, panel.persons.len()),
            labels_used: labels.len(),
            labels_in_taxonomy: tax.len(),
            labels,
            groups,
            special,
            annual_pairs: ap,
            annual_label_changes: ac,
            annual_label_change_rate: ratio(ac, ap),
            annual_occupation_pairs: op,
            annual_occupation_changes: oc,
            annual_occupation_change_rate: ratio(oc, op),
            gaps,
            persons_with_gap: pgap,
            split_persons,
        }
    }
}
