//! The observation encoding of the multinomial logit (SPEC §6). Record t of a person becomes a
//! sparse vector x (a dozen active one-hot indices plus two real values), and the model's logit
//! for label k is Σ_f x_f W[f, k]. The features, in index order:
//!
//! | block | size | value |
//! |---|---|---|
//! | `bias` | 1 | 1 |
//! | `last=CODE`, `last=start` | K + 1 | previous record's label; `start` at t = 1 |
//! | `before=CODE`, `before=none` | K + 1 | the label two records back; `none` at t ≤ 2 |
//! | `years_in_job` | 1 | years since the run of the previous label began, inclusive, / 10 (0 at t = 1) |
//! | `years_observed` | 1 | years since the first record, / 10 |
//! | `non_consecutive` | 1 | 1 when the previous record is not the year before |
//! | `education_changed` | 1 | 1 when education differs from the previous record's (both known) |
//! | `year=LO-HI` | buckets | 5-year bucket of the record's year (clamped to the training range) |
//! | `education=LEVEL` | 8 | the record's education (none active when missing) |
//! | `gender=`, `race=`, `region=` | values | static covariates seen in training (others, and missing values: none active) |
//! | `cohort=1950s`, `cohort=unknown` | decades + 1 | birth decade |
//!
//! Only records < t and record t's own year and education are used.

use std::collections::BTreeSet;

use labor_data::{Education, Panel, Person, Split, SplitSpec};
use serde::{Deserialize, Serialize};

/// Width of the calendar-year buckets.
pub const YEAR_BUCKET: i32 = 5;
/// Scale of the two real-valued features (years → decades).
pub const YEARS_SCALE: f64 = 0.1;

/// Which features exist: fixed by the training persons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpec {
    /// Label codes in taxonomy order.
    pub codes: Vec<String>,
    /// First and last year bucket start.
    pub year_lo: i32,
    pub year_hi: i32,
    pub genders: Vec<String>,
    pub races: Vec<String>,
    pub regions: Vec<String>,
    /// Birth decades (1950 for the 1950s).
    pub cohorts: Vec<i32>,
}

/// Feature index offsets of the blocks.
#[derive(Debug, Clone, Copy)]
struct Offsets {
    last: usize,
    before: usize,
    years_in_job: usize,
    years_observed: usize,
    non_consecutive: usize,
    education_changed: usize,
    year: usize,
    education: usize,
    gender: usize,
    race: usize,
    region: usize,
    cohort: usize,
    end: usize,
}

/// A set of encoded observations in compressed-row form, with their true classes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Design {
    pub n_features: usize,
    /// Row i's entries are `idx[ptr[i]..ptr[i + 1]]` with values `val[..]`.
    pub ptr: Vec<usize>,
    pub idx: Vec<u32>,
    pub val: Vec<f64>,
    /// The class of each row (an index into the model's classes).
    pub y: Vec<u32>,
    /// Per row, a class left out of the softmax (the two-stage move model's previous label), or
    /// [`NO_CLASS`]; empty when no row leaves one out.
    pub exclude: Vec<u32>,
}

/// "No class" in [`Design::exclude`] and in class lookups.
pub const NO_CLASS: u32 = u32::MAX;

impl Design {
    pub fn new(n_features: usize) -> Self {
        Self {
            n_features,
            ptr: vec![0],
            ..Default::default()
        }
    }
    pub fn n_rows(&self) -> usize {
        self.ptr.len() - 1
    }
    pub fn push(&mut self, entries: &[(u32, f64)], y: u32) {
        for &(i, v) in entries {
            debug_assert!((i as usize) < self.n_features);
            self.idx.push(i);
            self.val.push(v);
        }
        self.ptr.push(self.idx.len());
        self.y.push(y);
        if !self.exclude.is_empty() {
            self.exclude.push(NO_CLASS);
        }
    }
    /// Adds a row whose softmax leaves out class `excluded` (≠ `y`; [`NO_CLASS`] for none).
    pub fn push_excluding(&mut self, entries: &[(u32, f64)], y: u32, excluded: u32) {
        debug_assert!(excluded != y);
        if self.exclude.is_empty() && excluded != NO_CLASS {
            self.exclude = vec![NO_CLASS; self.n_rows()];
        }
        self.push(entries, y);
        if let Some(e) = self.exclude.last_mut() {
            *e = excluded;
        }
    }
    /// The class row `i` leaves out of its softmax, if any.
    pub fn excluded(&self, i: usize) -> Option<usize> {
        match self.exclude.get(i) {
            Some(&e) if e != NO_CLASS => Some(e as usize),
            _ => None,
        }
    }
    pub fn row(&self, i: usize) -> (&[u32], &[f64]) {
        let (a, b) = (self.ptr[i], self.ptr[i + 1]);
        (&self.idx[a..b], &self.val[a..b])
    }
}

fn decade(birth_year: i32) -> i32 {
    birth_year.div_euclid(10) * 10
}

impl FeatureSpec {
    /// The feature set of the training persons of `panel`.
    pub fn fit(panel: &Panel, spec: &SplitSpec) -> Self {
        let (mut genders, mut races, mut regions, mut cohorts) = (
            BTreeSet::new(),
            BTreeSet::new(),
            BTreeSet::new(),
            BTreeSet::new(),
        );
        let (mut lo, mut hi) = (i32::MAX, i32::MIN);
        for p in panel
            .persons
            .iter()
            .filter(|p| p.split_or(spec) == Split::Train)
        {
            // Missing values are not levels: a person without one has none active.
            genders.extend(p.gender.clone());
            races.extend(p.race.clone());
            regions.extend(p.region.clone());
            if let Some(b) = p.birth_year {
                cohorts.insert(decade(b));
            }
            for r in &p.records {
                lo = lo.min(r.year);
                hi = hi.max(r.year);
            }
        }
        if lo > hi {
            (lo, hi) = (2000, 2000);
        }
        Self {
            codes: panel
                .taxonomy
                .labels()
                .iter()
                .map(|l| l.code.clone())
                .collect(),
            year_lo: lo.div_euclid(YEAR_BUCKET) * YEAR_BUCKET,
            year_hi: hi.div_euclid(YEAR_BUCKET) * YEAR_BUCKET,
            genders: genders.into_iter().collect(),
            races: races.into_iter().collect(),
            regions: regions.into_iter().collect(),
            cohorts: cohorts.into_iter().collect(),
        }
    }

    fn n_year_buckets(&self) -> usize {
        ((self.year_hi - self.year_lo) / YEAR_BUCKET + 1) as usize
    }

    fn offsets(&self) -> Offsets {
        let k = self.codes.len();
        let last = 1;
        let before = last + k + 1;
        let years_in_job = before + k + 1;
        let years_observed = years_in_job + 1;
        let non_consecutive = years_observed + 1;
        let education_changed = non_consecutive + 1;
        let year = education_changed + 1;
        let education = year + self.n_year_buckets();
        let gender = education + Education::ALL.len();
        let race = gender + self.genders.len();
        let region = race + self.races.len();
        let cohort = region + self.regions.len();
        let end = cohort + self.cohorts.len() + 1;
        Offsets {
            last,
            before,
            years_in_job,
            years_observed,
            non_consecutive,
            education_changed,
            year,
            education,
            gender,
            race,
            region,
            cohort,
            end,
        }
    }

    pub fn n_features(&self) -> usize {
        self.offsets().end
    }

    /// Readable names of the features, in index order.
    pub fn names(&self) -> Vec<String> {
        let mut n = vec!["bias".to_string()];
        n.extend(self.codes.iter().map(|c| format!("last={c}")));
        n.push("last=start".into());
        n.extend(self.codes.iter().map(|c| format!("before={c}")));
        n.push("before=none".into());
        n.extend(
            [
                "years_in_job",
                "years_observed",
                "non_consecutive",
                "education_changed",
            ]
            .map(String::from),
        );
        for b in 0..self.n_year_buckets() {
            let lo = self.year_lo + b as i32 * YEAR_BUCKET;
            n.push(format!("year={lo}-{}", lo + YEAR_BUCKET - 1));
        }
        n.extend(Education::ALL.iter().map(|e| format!("education={e}")));
        n.extend(self.genders.iter().map(|v| format!("gender={v}")));
        n.extend(self.races.iter().map(|v| format!("race={v}")));
        n.extend(self.regions.iter().map(|v| format!("region={v}")));
        n.extend(self.cohorts.iter().map(|d| format!("cohort={d}s")));
        n.push("cohort=unknown".into());
        debug_assert_eq!(n.len(), self.n_features());
        n
    }

    /// The index of the bias feature (left unpenalized).
    pub fn bias(&self) -> usize {
        0
    }

    /// Encodes record `t` of `person` into `out` (cleared first) as (feature, value) pairs.
    pub fn encode(&self, person: &Person, t: usize, out: &mut Vec<(u32, f64)>) {
        out.clear();
        let o = self.offsets();
        let k = self.codes.len();
        let recs = &person.records;
        let r = &recs[t];
        let mut one = |i: usize| out.push((i as u32, 1.0));
        one(0);
        if t == 0 {
            one(o.last + k);
        } else {
            one(o.last + recs[t - 1].label.index());
        }
        if t >= 2 {
            one(o.before + recs[t - 2].label.index());
        } else {
            one(o.before + k);
        }
        if t >= 1 {
            let prev = &recs[t - 1];
            if r.year - prev.year > 1 {
                one(o.non_consecutive);
            }
            if let (Some(a), Some(b)) = (r.education, prev.education)
                && a != b
            {
                one(o.education_changed);
            }
        }
        let b = ((r.year.clamp(self.year_lo, self.year_hi + YEAR_BUCKET - 1) - self.year_lo)
            / YEAR_BUCKET) as usize;
        one(o.year + b);
        if let Some(e) = r.education {
            one(o.education + e as usize);
        }
        let find = |levels: &[String], v: &Option<String>| {
            v.as_ref().and_then(|v| levels.binary_search(v).ok())
        };
        if let Some(i) = find(&self.genders, &person.gender) {
            one(o.gender + i);
        }
        if let Some(i) = find(&self.races, &person.race) {
            one(o.race + i);
        }
        if let Some(i) = find(&self.regions, &person.region) {
            one(o.region + i);
        }
        match person.birth_year {
            Some(by) => {
                if let Ok(i) = self.cohorts.binary_search(&decade(by)) {
                    one(o.cohort + i);
                }
            }
            None => one(o.cohort + self.cohorts.len()),
        }
        if t >= 1 {
            let prev = &recs[t - 1];
            let mut start = t - 1;
            while start > 0 && recs[start - 1].label == prev.label {
                start -= 1;
            }
            let in_job = (prev.year - recs[start].year + 1) as f64 * YEARS_SCALE;
            let observed = (prev.year - recs[0].year + 1) as f64 * YEARS_SCALE;
            out.push((o.years_in_job as u32, in_job));
            out.push((o.years_observed as u32, observed));
        }
    }
}
