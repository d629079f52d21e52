//! Empirical Markov models over labels, of order 1 and 2, with smoothing and back-off:
//! order 2 → order 1 → label frequencies. The first record of a person is predicted from label
//! frequencies of first records by covariates (5-year bucket of the year, education, gender),
//! backing off to all first records and then to all label frequencies.
//!
//! Each level smooths its counts towards the level below with either additive (Dirichlet)
//! smoothing, P(k | c) = (n_ck + α P_lower(k)) / (n_c + α), or absolute discounting,
//! P(k | c) = max(n_ck − d, 0) / n_c + d · m_c / n_c · P_lower(k) (m_c: distinct labels seen
//! after c). The family and strength of each level are chosen on the validation persons from a
//! grid ([`Markov::tuning`] lists every candidate's validation log-likelihood).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};

use labor_data::predictions::{Prediction, Predictor};
use labor_data::{Panel, Person, Split, SplitSpec, Taxonomy};
use serde::{Deserialize, Serialize};

/// How one level's counts are smoothed towards the level below.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Smoothing {
    Additive { alpha: f64 },
    Discount { d: f64 },
}

impl Smoothing {
    /// The candidates searched on the validation split.
    pub fn grid() -> Vec<Smoothing> {
        let mut g: Vec<Smoothing> = [
            0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0,
        ]
        .into_iter()
        .map(|alpha| Smoothing::Additive { alpha })
        .collect();
        g.extend(
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
                .into_iter()
                .map(|d| Smoothing::Discount { d }),
        );
        g
    }
}

impl std::fmt::Display for Smoothing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Smoothing::Additive { alpha } => write!(f, "additive(alpha={alpha})"),
            Smoothing::Discount { d } => write!(f, "discount(d={d})"),
        }
    }
}

/// Counts of the labels that followed one context, sorted by label.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SparseRow {
    pub labels: Vec<u32>,
    pub counts: Vec<f64>,
    pub total: f64,
}

impl SparseRow {
    fn from_map(m: HashMap<u32, f64>) -> Self {
        let mut v: Vec<(u32, f64)> = m.into_iter().collect();
        v.sort_by_key(|e| e.0);
        Self {
            total: v.iter().map(|e| e.1).sum(),
            labels: v.iter().map(|e| e.0).collect(),
            counts: v.iter().map(|e| e.1).collect(),
        }
    }

    fn count(&self, k: usize) -> f64 {
        self.labels
            .binary_search(&(k as u32))
            .map_or(0.0, |i| self.counts[i])
    }

    /// P(k | context) given P_lower(k).
    fn prob(&self, s: Smoothing, k: usize, lower_k: f64) -> f64 {
        if self.total <= 0.0 {
            return lower_k;
        }
        let c = self.count(k);
        match s {
            Smoothing::Additive { alpha } => (c + alpha * lower_k) / (self.total + alpha),
            Smoothing::Discount { d } => {
                ((c - d).max(0.0) + d * self.labels.len() as f64 * lower_k) / self.total
            }
        }
    }

    /// The whole distribution: `out` holds P_lower on entry and P(· | context) on exit.
    fn smooth_into(&self, s: Smoothing, out: &mut [f64]) {
        if self.total <= 0.0 {
            return;
        }
        let (w_lower, sub, div) = match s {
            Smoothing::Additive { alpha } => {
                (alpha / (self.total + alpha), 0.0, self.total + alpha)
            }
            Smoothing::Discount { d } => (d * self.labels.len() as f64 / self.total, d, self.total),
        };
        for p in out.iter_mut() {
            *p *= w_lower;
        }
        for (&k, &c) in self.labels.iter().zip(&self.counts) {
            out[k as usize] += (c - sub).max(0.0) / div;
        }
    }
}

/// One candidate of the validation grid search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuningRow {
    /// `first` (t = 1), `order1` or `order2`.
    pub level: String,
    pub smoothing: Smoothing,
    /// Mean log-probability of the true label over the level's validation records.
    pub valid_mean_logp: f64,
    pub n: usize,
}

/// A fitted empirical Markov model (both orders are fitted; `order` says which one predicts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Markov {
    pub order: usize,
    /// The label codes in taxonomy order, checked against the panel at prediction time.
    pub codes: Vec<String>,
    /// Add-one smoothed frequencies of all training labels.
    pub unigram: Vec<f64>,
    pub first_all: SparseRow,
    /// First-record counts by `year bucket|education|gender`.
    pub first_cells: BTreeMap<String, SparseRow>,
    /// Transition counts by previous label.
    pub bigram: BTreeMap<u32, SparseRow>,
    /// Counts by (label two back) · K + previous label.
    pub trigram: BTreeMap<u64, SparseRow>,
    pub first_smoothing: Smoothing,
    pub smoothing1: Smoothing,
    pub smoothing2: Smoothing,
    /// Every candidate of the grid search with its validation score.
    pub tuning: Vec<TuningRow>,
}

fn cell_key(person: &Person, t: usize) -> String {
    let r = &person.records[t];
    format!(
        "{}|{}|{}",
        r.year.div_euclid(5) * 5,
        r.education.map_or(labor_data::MISSING, |e| e.as_str()),
        person.gender.as_deref().unwrap_or(labor_data::MISSING)
    )
}

impl Markov {
    /// Counts on the training persons, then chooses each level's smoothing on the validation
    /// persons (first records, then order 1, then order 2 given the chosen order 1).
    pub fn fit(panel: &Panel, spec: &SplitSpec, order: usize) -> Result<Self, String> {
        if !(1..=2).contains(&order) {
            return Err(format!("Markov order must be 1 or 2, got {order}"));
        }
        let k = panel.taxonomy.len();
        let mut freq = vec![1.0; k];
        let mut first_all = HashMap::new();
        let mut first_cells: HashMap<String, HashMap<u32, f64>> = HashMap::new();
        let mut bigram: HashMap<u32, HashMap<u32, f64>> = HashMap::new();
        let mut trigram: HashMap<u64, HashMap<u32, f64>> = HashMap::new();
        for p in panel
            .persons
            .iter()
            .filter(|p| p.split_or(spec) == Split::Train)
        {
            for (t, r) in p.records.iter().enumerate() {
                let y = r.label.0;
                freq[y as usize] += 1.0;
                if t == 0 {
                    *first_all.entry(y).or_insert(0.0) += 1.0;
                    *first_cells
                        .entry(cell_key(p, 0))
                        .or_default()
                        .entry(y)
                        .or_insert(0.0) += 1.0;
                }
                if t >= 1 {
                    let j = p.records[t - 1].label.0;
                    *bigram.entry(j).or_default().entry(y).or_insert(0.0) += 1.0;
                }
                if t >= 2 {
                    let key = p.records[t - 2].label.0 as u64 * k as u64
                        + p.records[t - 1].label.0 as u64;
                    *trigram.entry(key).or_default().entry(y).or_insert(0.0) += 1.0;
                }
            }
        }
        let total: f64 = freq.iter().sum();
        let default = Smoothing::Additive { alpha: 1.0 };
        let mut m = Markov {
            order,
            codes: panel
                .taxonomy
                .labels()
                .iter()
                .map(|l| l.code.clone())
                .collect(),
            unigram: freq.into_iter().map(|f| f / total).collect(),
            first_all: SparseRow::from_map(first_all),
            first_cells: first_cells
                .into_iter()
                .map(|(c, r)| (c, SparseRow::from_map(r)))
                .collect(),
            bigram: bigram
                .into_iter()
                .map(|(c, r)| (c, SparseRow::from_map(r)))
                .collect(),
            trigram: trigram
                .into_iter()
                .map(|(c, r)| (c, SparseRow::from_map(r)))
                .collect(),
            first_smoothing: default,
            smoothing1: default,
            smoothing2: default,
            tuning: Vec::new(),
        };
        m.tune(panel, spec);
        Ok(m)
    }

    /// The model's name in prediction files.
    pub fn model_name(&self) -> &'static str {
        if self.order == 1 {
            "markov1"
        } else {
            "markov2"
        }
    }

    /// The same fitted model predicting with another order (1 or 2).
    pub fn with_order(mut self, order: usize) -> Self {
        assert!((1..=2).contains(&order), "Markov order must be 1 or 2");
        self.order = order;
        self
    }

    fn k(&self) -> usize {
        self.codes.len()
    }

    fn p_first(&self, s: Smoothing, person: &Person, y: usize) -> f64 {
        let lower = self.first_all.prob(s, y, self.unigram[y]);
        match self.first_cells.get(&cell_key(person, 0)) {
            Some(row) => row.prob(s, y, lower),
            None => lower,
        }
    }

    fn p1(&self, s: Smoothing, prev: u32, y: usize) -> f64 {
        match self.bigram.get(&prev) {
            Some(row) => row.prob(s, y, self.unigram[y]),
            None => self.unigram[y],
        }
    }

    fn tune(&mut self, panel: &Panel, spec: &SplitSpec) {
        let k = self.k() as u64;
        let valid: Vec<&Person> = panel
            .persons
            .iter()
            .filter(|p| p.split_or(spec) == Split::Valid)
            .collect();
        let best =
            |this: &mut Self, level: &str, score: &dyn Fn(&Self, Smoothing) -> (f64, usize)| {
                let mut best: Option<(f64, Smoothing)> = None;
                for s in Smoothing::grid() {
                    let (sum, n) = score(this, s);
                    let mean = sum / n.max(1) as f64;
                    this.tuning.push(TuningRow {
                        level: level.to_string(),
                        smoothing: s,
                        valid_mean_logp: mean,
                        n,
                    });
                    if best.is_none_or(|b| mean > b.0) {
                        best = Some((mean, s));
                    }
                }
                best.map(|b| b.1).expect("non-empty grid")
            };
        self.first_smoothing = best(self, "first", &|m, s| {
            let mut sum = 0.0;
            for p in &valid {
                sum += m.p_first(s, p, p.records[0].label.index()).ln();
            }
            (sum, valid.len())
        });
        self.smoothing1 = best(self, "order1", &|m, s| {
            let (mut sum, mut n) = (0.0, 0);
            for p in &valid {
                for w in p.records.windows(2) {
                    sum += m.p1(s, w[0].label.0, w[1].label.index()).ln();
                    n += 1;
                }
            }
            (sum, n)
        });
        self.smoothing2 = best(self, "order2", &|m, s| {
            let (mut sum, mut n) = (0.0, 0);
            for p in &valid {
                for w in p.records.windows(3) {
                    let y = w[2].label.index();
                    let lower = m.p1(m.smoothing1, w[1].label.0, y);
                    let key = w[0].label.0 as u64 * k + w[1].label.0 as u64;
                    let p2 = match m.trigram.get(&key) {
                        Some(row) => row.prob(s, y, lower),
                        None => lower,
                    };
                    sum += p2.ln();
                    n += 1;
                }
            }
            (sum, n)
        });
    }

    /// The probabilities of the K labels for record `t` of `person`.
    pub fn dist(&self, person: &Person, t: usize) -> Vec<f64> {
        let mut out = self.unigram.clone();
        let recs = &person.records;
        if t == 0 {
            self.first_all.smooth_into(self.first_smoothing, &mut out);
            if let Some(row) = self.first_cells.get(&cell_key(person, 0)) {
                row.smooth_into(self.first_smoothing, &mut out);
            }
            return out;
        }
        if let Some(row) = self.bigram.get(&recs[t - 1].label.0) {
            row.smooth_into(self.smoothing1, &mut out);
        }
        if self.order == 2 && t >= 2 {
            let key = recs[t - 2].label.0 as u64 * self.k() as u64 + recs[t - 1].label.0 as u64;
            if let Some(row) = self.trigram.get(&key) {
                row.smooth_into(self.smoothing2, &mut out);
            }
        }
        out
    }

    /// Fails unless `taxonomy` has exactly the labels the model was fitted with.
    pub fn check_taxonomy(&self, taxonomy: &Taxonomy) -> Result<(), String> {
        check_codes(&self.codes, taxonomy)
    }

    pub fn to_writer<W: Write>(&self, w: W) -> Result<(), String> {
        serde_json::to_writer(w, self).map_err(|e| e.to_string())
    }

    pub fn from_reader<R: Read>(r: R) -> Result<Self, String> {
        serde_json::from_reader(r).map_err(|e| format!("not a Markov model: {e}"))
    }
}

pub(crate) fn check_codes(codes: &[String], taxonomy: &Taxonomy) -> Result<(), String> {
    let ours = taxonomy.labels();
    if ours.len() != codes.len() {
        return Err(format!(
            "the model was fitted with {} labels, the panel's taxonomy has {}",
            codes.len(),
            ours.len()
        ));
    }
    for (i, (a, b)) in codes.iter().zip(ours).enumerate() {
        if *a != b.code {
            return Err(format!(
                "label {i}: the model has code {a}, the panel's taxonomy {}",
                b.code
            ));
        }
    }
    Ok(())
}

impl Predictor for Markov {
    fn name(&self) -> &str {
        self.model_name()
    }

    fn predict(&mut self, person: &Person, ts: &[usize]) -> Result<Prediction, String> {
        let mut logp = Vec::with_capacity(ts.len());
        for &t in ts {
            if t >= person.records.len() {
                return Err(format!(
                    "person {}: no record {t} (has {})",
                    person.person_id,
                    person.records.len()
                ));
            }
            logp.push(self.dist(person, t).into_iter().map(f64::ln).collect());
        }
        Ok(Prediction { logp, icl_k: None })
    }
}
