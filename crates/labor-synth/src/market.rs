//! The occupational market of a world: occupation sizes, groups, related occupations and the
//! entry ("base") distribution over occupations for given covariates.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use labor_data::split::person_hash;
use labor_data::{LabelKind, Taxonomy};

use crate::rng::Rng;
use crate::world::World;

/// Words that do not make two titles related.
const STOPWORDS: &[&str] = &[
    "and",
    "or",
    "of",
    "the",
    "all",
    "other",
    "in",
    "for",
    "except",
    "including",
    "a",
    "to",
    "on",
    "as",
    "by",
    "with",
];

#[derive(Debug, Clone)]
pub struct Occupation {
    pub group: usize,
    pub log_size: f64,
}

/// Occupations are indexed 0..n; occupation j is label id `first_label + j` of the taxonomy.
#[derive(Debug, Clone)]
pub struct Market {
    pub occupations: Vec<Occupation>,
    pub first_label: usize,
    pub group_members: Vec<Vec<usize>>,
    /// Occupations sharing a title word (other than stopwords), excluding itself.
    pub neighbours: Vec<Vec<usize>>,
    pub group_skill: Vec<f64>,
    pub group_female: Vec<f64>,
    pub group_trend: Vec<f64>,
    /// Type × group tastes.
    pub taste: Vec<Vec<f64>>,
}

/// The entry distribution over occupations for one covariate cell, normalized, with its sums
/// per group.
#[derive(Debug, Clone)]
pub struct Base {
    pub p: Vec<f64>,
    pub group_sum: Vec<f64>,
}

/// Covariates the entry distribution depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BaseKey {
    pub z: u8,
    pub edu: u8,
    /// -1 male, 1 female, 0 not recorded.
    pub sex: i8,
    pub year: i16,
}

fn words(title: &str) -> BTreeSet<String> {
    title
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 1 && !STOPWORDS.contains(w))
        .map(str::to_string)
        .collect()
}

impl Market {
    pub fn new(world: &World, taxonomy: &Taxonomy) -> Result<Market, String> {
        let m = &world.market;
        let labels = taxonomy.labels();
        let first_label = labels
            .iter()
            .position(|l| l.kind == LabelKind::Occupation)
            .ok_or("the taxonomy has no occupations")?;
        if labels[first_label..]
            .iter()
            .any(|l| l.kind != LabelKind::Occupation)
        {
            return Err("the taxonomy must list the special labels before the occupations".into());
        }
        let mut occupations = Vec::new();
        let mut group_members = vec![Vec::new(); m.group.len()];
        for (j, l) in labels[first_label..].iter().enumerate() {
            let g = m
                .group
                .iter()
                .position(|g| g.name == l.group)
                .ok_or_else(|| format!("occupation {} is in group {:?}, which the world's market does not describe", l.code, l.group))?;
            group_members[g].push(j);
            occupations.push(Occupation {
                group: g,
                log_size: 0.0,
            });
        }
        for (g, members) in group_members.iter().enumerate() {
            let share = m.group[g].share;
            if members.is_empty() {
                continue;
            }
            for &j in members {
                let code = &labels[first_label + j].code;
                let mut r = Rng::new(m.market_seed, person_hash(m.market_seed, "size", code));
                occupations[j].log_size = (share / members.len() as f64).ln()
                    + m.size_sd * r.normal()
                    - m.size_sd * m.size_sd / 2.0;
            }
        }
        let word_sets: Vec<BTreeSet<String>> = labels[first_label..]
            .iter()
            .map(|l| words(&l.title))
            .collect();
        let mut by_word: HashMap<&str, Vec<usize>> = HashMap::new();
        for (j, ws) in word_sets.iter().enumerate() {
            for w in ws {
                by_word.entry(w).or_default().push(j);
            }
        }
        let neighbours = (0..occupations.len())
            .map(|j| {
                let mut n: BTreeSet<usize> = BTreeSet::new();
                for w in &word_sets[j] {
                    n.extend(by_word[w.as_str()].iter().copied().filter(|&k| k != j));
                }
                n.into_iter().collect()
            })
            .collect();
        let mut r = Rng::new(m.market_seed, 7);
        let taste = (0..world.types.prior.len())
            .map(|_| {
                (0..m.group.len())
                    .map(|_| m.taste_sd * r.normal())
                    .collect()
            })
            .collect();
        Ok(Market {
            occupations,
            first_label,
            group_members,
            neighbours,
            group_skill: m.group.iter().map(|g| g.skill).collect(),
            group_female: m.group.iter().map(|g| g.female).collect(),
            group_trend: m.group.iter().map(|g| g.trend).collect(),
            taste,
        })
    }

    pub fn n(&self) -> usize {
        self.occupations.len()
    }

    /// The entry distribution for `key`.
    pub fn base(&self, world: &World, key: BaseKey) -> Base {
        let d = &world.dynamics;
        let e = key.edu as f64 / 7.0 - 0.5;
        let mut logw: Vec<f64> = self
            .occupations
            .iter()
            .map(|o| {
                let g = o.group;
                let mut x = o.log_size + self.taste[key.z as usize][g];
                if d.trends {
                    x += self.group_trend[g] * (key.year as f64 - 2000.0) / 10.0;
                }
                if d.interactions {
                    x += d.edu_group * 4.0 * e * (self.group_skill[g] - 0.5);
                    x += d.gender_group * 0.5 * key.sex as f64 * self.group_female[g];
                }
                x
            })
            .collect();
        let max = logw.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mut total = 0.0;
        for x in &mut logw {
            *x = (*x - max).exp();
            total += *x;
        }
        let mut group_sum = vec![0.0; self.group_members.len()];
        for (j, x) in logw.iter_mut().enumerate() {
            *x /= total;
            group_sum[self.occupations[j].group] += *x;
        }
        Base { p: logw, group_sum }
    }
}

/// A per-thread cache of entry distributions.
#[derive(Default)]
pub struct BaseCache {
    map: HashMap<BaseKey, Arc<Base>>,
}

impl BaseCache {
    pub fn get(&mut self, market: &Market, world: &World, key: BaseKey) -> Arc<Base> {
        self.map
            .entry(key)
            .or_insert_with(|| Arc::new(market.base(world, key)))
            .clone()
    }
}
