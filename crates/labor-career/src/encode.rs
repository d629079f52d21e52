//! Persons as model inputs: label tokens and covariate indices, and padded batches of them.
//!
//! Calendar years and birth years have fixed index ranges (so a model pretrained on one panel
//! and fine-tuned on another shares them without a vocabulary); gender, race and region are
//! vocabularies of the values seen in training, with index 0 for a value never seen (its
//! embedding row starts at zero and, never used in training, stays there).

use std::collections::BTreeSet;

use labor_data::{Education, Panel, Person};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// Calendar years `YEAR_LO..=YEAR_HI` have their own embedding; others are clamped.
pub const YEAR_LO: i32 = 1940;
pub const YEAR_HI: i32 = 2040;
/// Birth years in buckets of this many years from `BIRTH_LO` (clamped to `BIRTH_HI`).
pub const BIRTH_BUCKET: i32 = 5;
pub const BIRTH_LO: i32 = 1900;
pub const BIRTH_HI: i32 = 2029;

pub fn n_years() -> i64 {
    (YEAR_HI - YEAR_LO + 1) as i64
}
/// Birth buckets plus one "unknown" (index 0).
pub fn n_births() -> i64 {
    ((BIRTH_HI - BIRTH_LO) / BIRTH_BUCKET + 2) as i64
}
pub fn n_educations() -> i64 {
    Education::ALL.len() as i64
}

/// The label codes (in taxonomy order) and the categorical covariate vocabularies of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vocab {
    pub codes: Vec<String>,
    /// Sorted values; the index of a value is its position + 1 (0: not seen in training).
    pub genders: Vec<String>,
    pub races: Vec<String>,
    pub regions: Vec<String>,
}

impl Vocab {
    /// The labels of `panel`'s taxonomy and the covariate values of `persons`.
    pub fn fit<'a>(panel: &Panel, persons: impl IntoIterator<Item = &'a Person>) -> Self {
        let (mut g, mut r, mut s) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
        for p in persons {
            // Missing values are not vocabulary entries: they take the unseen index 0.
            g.extend(p.gender.clone());
            r.extend(p.race.clone());
            s.extend(p.region.clone());
        }
        Self {
            codes: panel
                .taxonomy
                .labels()
                .iter()
                .map(|l| l.code.clone())
                .collect(),
            genders: g.into_iter().collect(),
            races: r.into_iter().collect(),
            regions: s.into_iter().collect(),
        }
    }

    /// K, the number of labels (the start token is K).
    pub fn k(&self) -> i64 {
        self.codes.len() as i64
    }

    /// Sizes of the gender, race and region embeddings (values + the unseen index 0).
    pub fn sizes(&self) -> [i64; 3] {
        [
            self.genders.len() as i64 + 1,
            self.races.len() as i64 + 1,
            self.regions.len() as i64 + 1,
        ]
    }

    /// Fails unless `taxonomy` has exactly this model's labels in this order.
    pub fn check_taxonomy(&self, taxonomy: &labor_data::Taxonomy) -> Result<(), String> {
        let codes: Vec<&str> = taxonomy.labels().iter().map(|l| l.code.as_str()).collect();
        if codes.len() != self.codes.len() || codes.iter().zip(&self.codes).any(|(a, b)| a != b) {
            return Err(format!(
                "the model was fitted on a taxonomy of {} labels that differs from the panel's \
                 ({} labels)",
                self.codes.len(),
                codes.len()
            ));
        }
        Ok(())
    }

    /// One person as a sequence.
    pub fn encode(&self, p: &Person) -> Seq {
        let idx = |v: &[String], x: &Option<String>| match x {
            None => 0,
            Some(x) => v
                .binary_search_by(|s| s.as_str().cmp(x))
                .map_or(0, |i| i as i64 + 1),
        };
        let k = self.k();
        let n = p.records.len();
        let mut s = Seq {
            prev: Vec::with_capacity(n),
            target: Vec::with_capacity(n),
            year: Vec::with_capacity(n),
            edu: Vec::with_capacity(n),
            gender: idx(&self.genders, &p.gender),
            race: idx(&self.races, &p.race),
            region: idx(&self.regions, &p.region),
            birth: match p.birth_year {
                None => 0,
                Some(b) => ((b.clamp(BIRTH_LO, BIRTH_HI) - BIRTH_LO) / BIRTH_BUCKET + 1) as i64,
            },
        };
        for (t, r) in p.records.iter().enumerate() {
            s.prev.push(if t == 0 {
                k
            } else {
                p.records[t - 1].label.index() as i64
            });
            s.target.push(r.label.index() as i64);
            s.year
                .push((r.year.clamp(YEAR_LO, YEAR_HI) - YEAR_LO) as i64);
            s.edu.push(r.education.map_or(-1, |e| e as i64));
        }
        s
    }
}

/// A person as model input: per record t, the previous label (the start token K at t = 1), the
/// true label, the year and education index; and the static covariate indices.
#[derive(Debug, Clone, PartialEq)]
pub struct Seq {
    pub prev: Vec<i64>,
    pub target: Vec<i64>,
    pub year: Vec<i64>,
    /// Education index, -1 when missing (its embedding is masked).
    pub edu: Vec<i64>,
    pub gender: i64,
    pub race: i64,
    pub region: i64,
    pub birth: i64,
}

impl Seq {
    pub fn len(&self) -> usize {
        self.prev.len()
    }
    pub fn is_empty(&self) -> bool {
        self.prev.is_empty()
    }
}

/// Right-padded sequences: `[B, T]` tensors (pads: previous label = start token, target 0, year
/// and education 0) and `[B]` static covariates. `mask` is true on real records.
pub struct Batch {
    pub prev: Tensor,
    pub target: Tensor,
    pub year: Tensor,
    pub edu: Tensor,
    /// `[B, T, 1]`: 1.0 where the record's education is known, 0.0 where it is missing (the
    /// education embedding is multiplied by it).
    pub edu_known: Tensor,
    pub gender: Tensor,
    pub race: Tensor,
    pub region: Tensor,
    pub birth: Tensor,
    pub mask: Tensor,
    pub n_real: i64,
}

impl Batch {
    pub fn new(seqs: &[&Seq], k: i64, device: Device) -> Self {
        let b = seqs.len() as i64;
        let t = seqs.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
        let pad = |f: &dyn Fn(&Seq) -> &Vec<i64>, fill: i64| {
            let mut v = Vec::with_capacity(seqs.len() * t);
            for s in seqs {
                let x = f(s);
                v.extend_from_slice(x);
                v.extend(std::iter::repeat_n(fill, t - x.len()));
            }
            Tensor::from_slice(&v)
                .reshape([b, t as i64])
                .to_device(device)
        };
        let stat = |f: &dyn Fn(&Seq) -> i64| {
            let v: Vec<i64> = seqs.iter().map(|s| f(s)).collect();
            Tensor::from_slice(&v).to_device(device)
        };
        let mut m = Vec::with_capacity(seqs.len() * t);
        for s in seqs {
            m.extend(std::iter::repeat_n(true, s.len()));
            m.extend(std::iter::repeat_n(false, t - s.len()));
        }
        Self {
            prev: pad(&|s| &s.prev, k),
            target: pad(&|s| &s.target, 0),
            year: pad(&|s| &s.year, 0),
            edu: pad(&|s| &s.edu, 0).clamp_min(0),
            edu_known: pad(&|s| &s.edu, 0).ge(0).to_kind(Kind::Float).unsqueeze(-1),
            gender: stat(&|s| s.gender),
            race: stat(&|s| s.race),
            region: stat(&|s| s.region),
            birth: stat(&|s| s.birth),
            mask: Tensor::from_slice(&m)
                .reshape([b, t as i64])
                .to_kind(Kind::Bool)
                .to_device(device),
            n_real: seqs.iter().map(|s| s.len() as i64).sum(),
        }
    }
}
