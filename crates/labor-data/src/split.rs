//! Train/valid/test splits by person, stable under adding or removing other persons.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Valid,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Test];
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Split {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|x| x.as_str() == s).ok_or(())
    }
}

/// The project's default split seed.
pub const DEFAULT_SPLIT_SEED: u64 = 2406;

/// How persons are assigned to splits: a seed and the train and valid fractions (test gets the
/// rest). The assignment of a person depends only on the seed, the fractions, its dataset and its
/// person id, so it never changes when other persons are added or removed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitSpec {
    pub seed: u64,
    pub train: f64,
    pub valid: f64,
}

impl Default for SplitSpec {
    fn default() -> Self {
        Self {
            seed: DEFAULT_SPLIT_SEED,
            train: 0.7,
            valid: 0.1,
        }
    }
}

impl SplitSpec {
    /// Checks that the fractions are in [0, 1] and sum to at most 1.
    pub fn validate(&self) -> Result<(), String> {
        let ok = |f: f64| f.is_finite() && (0.0..=1.0).contains(&f);
        if !ok(self.train) || !ok(self.valid) || self.train + self.valid > 1.0 + 1e-12 {
            return Err(format!(
                "train and valid fractions in [0, 1] summing to at most 1, got {} and {}",
                self.train, self.valid
            ));
        }
        Ok(())
    }

    /// A uniform number in [0, 1) determined by (seed, dataset, person id).
    pub fn unit(&self, dataset: &str, person_id: &str) -> f64 {
        (person_hash(self.seed, dataset, person_id) >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn assign(&self, dataset: &str, person_id: &str) -> Split {
        let u = self.unit(dataset, person_id);
        if u < self.train {
            Split::Train
        } else if u < self.train + self.valid {
            Split::Valid
        } else {
            Split::Test
        }
    }
}

/// FNV-1a over the seed, the dataset, a separator and the person id, then the SplitMix64
/// finaliser. Written out here (not `std::hash`) so it is stable across Rust versions.
pub fn person_hash(seed: u64, dataset: &str, person_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    seed.to_le_bytes().into_iter().for_each(&mut eat);
    dataset.bytes().for_each(&mut eat);
    eat(0xff); // not valid UTF-8: cannot occur inside either string
    person_id.bytes().for_each(&mut eat);
    crate::rng::mix64(h.wrapping_add(crate::rng::GOLDEN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_pinned() {
        // Changing the hash would silently move persons between splits: pin it.
        const PINNED: u64 = 6_761_421_548_648_665_263;
        assert_ne!(
            person_hash(2406, "NLSY79", "1"),
            person_hash(2407, "NLSY79", "1")
        );
        assert_ne!(person_hash(1, "ab", "c"), person_hash(1, "a", "bc"));
        assert_eq!(person_hash(2406, "NLSY79", "1"), PINNED);
    }

    #[test]
    fn rejects_bad_fractions() {
        assert!(SplitSpec::default().validate().is_ok());
        let bad = SplitSpec {
            train: 0.8,
            valid: 0.3,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }
}
