//! Sampling workers and computing the oracle: for every observed record, the exact conditional
//! probability of its label given everything observed before, with the latent type integrated
//! out by its exact posterior.

use std::collections::BTreeMap;

use labor_data::{Education, Person, Record, Taxonomy};

use crate::market::{BaseCache, Market};
use crate::model::{Covariates, LabelModel, Past};
use crate::rng::Rng;
use crate::world::World;

/// Age at which each education level is attained (index = level).
const ATTAIN_AGE: [i32; 8] = [0, 18, 19, 20, 22, 24, 25, 27];

/// The oracle's view of one record.
#[derive(Debug, Clone, PartialEq)]
pub struct OracleRecord {
    /// ln P(observed label | earlier records, covariates).
    pub logp: f64,
    /// Probability of the previous record's label (None at t = 1).
    pub p_stay: Option<f64>,
    /// Probability of any occupation or unemployed.
    pub p_in_lf: f64,
    /// The five most probable labels (taxonomy index, probability).
    pub top: Vec<(usize, f64)>,
    /// Sum of the distribution (1 up to rounding; kept for checks).
    pub sum: f64,
    /// The full distribution over the K labels, when requested.
    pub full: Option<Vec<f64>>,
}

#[derive(Debug, Clone)]
pub struct Worker {
    pub person: Person,
    pub oracle: Vec<OracleRecord>,
    /// The sampled latent type (never used by the oracle).
    pub z: usize,
}

/// A world ready to sample: world file, taxonomy, market and seed.
pub struct Generator {
    pub world: World,
    pub taxonomy: Taxonomy,
    pub market: Market,
    pub seed: u64,
}

fn pick(r: &mut Rng, m: &BTreeMap<String, f64>) -> String {
    let w: Vec<f64> = m.values().copied().collect();
    m.keys().nth(r.categorical(&w)).expect("non-empty").clone()
}

/// Indices of the `n` largest entries, largest first (ties: lower index first).
pub fn top_n(p: &[f64], n: usize) -> Vec<(usize, f64)> {
    let mut top: Vec<(usize, f64)> = Vec::with_capacity(n + 1);
    for (i, &x) in p.iter().enumerate() {
        if top.len() < n || x > top[top.len() - 1].1 {
            let pos = top.iter().position(|&(_, y)| x > y).unwrap_or(top.len());
            top.insert(pos, (i, x));
            top.truncate(n);
        }
    }
    top
}

/// Splits generated workers into the panel (with `taxonomy`) and the oracle log-probabilities
/// of its records (`logp[i][t]` for record t of person i).
pub fn into_panel(taxonomy: &Taxonomy, workers: Vec<Worker>) -> (labor_data::Panel, Vec<Vec<f64>>) {
    let logp = workers
        .iter()
        .map(|w| w.oracle.iter().map(|o| o.logp).collect())
        .collect();
    let persons = workers.into_iter().map(|w| w.person).collect();
    (
        labor_data::Panel {
            taxonomy: taxonomy.clone(),
            persons,
        },
        logp,
    )
}

impl Generator {
    pub fn new(world: World, taxonomy: Taxonomy, seed: u64) -> Result<Self, String> {
        let market = Market::new(&world, &taxonomy)?;
        Ok(Self {
            world,
            taxonomy,
            market,
            seed,
        })
    }

    pub fn model(&self) -> LabelModel<'_> {
        LabelModel::new(&self.world, &self.market)
    }

    /// The survey years of the world's schedule.
    pub fn waves(&self) -> Vec<i32> {
        let p = &self.world.population;
        (p.first_year..=p.last_year)
            .filter(|y| *y <= p.annual_until || (y - p.annual_until) % 2 == 0)
            .collect()
    }

    /// Samples worker `i` (a person with at least one observed record) and its oracle.
    pub fn worker(&self, i: u64, cache: &mut BaseCache, keep_full: bool) -> Worker {
        let w = &self.world;
        let p = &w.population;
        let mut r = Rng::new(self.seed, i);
        let waves = self.waves();
        let model = self.model();
        loop {
            let z = r.categorical(&w.types.prior);
            let gender = pick(&mut r, &p.gender);
            let race = pick(&mut r, &p.race);
            let region = pick(&mut r, &p.region);
            let birth = r.range(p.birth_years[0], p.birth_years[1]);
            let cohort = if w.dynamics.cohorts {
                (birth - 1960) as f64 / 10.0
            } else {
                0.0
            };
            let edu_w: Vec<f64> = Education::ALL
                .iter()
                .map(|e| {
                    let l = *e as usize as f64;
                    p.education.get(e.as_str()).copied().unwrap_or(0.0)
                        * (p.education_shift_per_decade * cohort * (l / 7.0 - 0.5) * 2.0).exp()
                })
                .collect();
            let final_edu = r.categorical(&edu_w);
            let mut years = Vec::new();
            for &y in &waves {
                let age = y - birth;
                if age < p.min_age || age > p.max_age {
                    continue;
                }
                if r.uniform() >= p.missing_rate {
                    years.push(y);
                }
                if r.uniform() < p.attrition {
                    break;
                }
            }
            if years.is_empty() {
                continue;
            }
            let mut person = Person {
                dataset: w.dataset.clone(),
                person_id: (i + 1).to_string(),
                gender: Some(gender),
                race: Some(race),
                region: Some(region),
                birth_year: Some(birth),
                split: None,
                records: Vec::with_capacity(years.len()),
            };
            let nz = w.types.prior.len();
            let k = model.k;
            let mut post: Vec<f64> = w
                .types
                .prior
                .iter()
                .map(|x| x / w.types.prior.iter().sum::<f64>())
                .collect();
            let mut d = vec![0.0; nz * k];
            let mut q = vec![0.0; k];
            let mut hist: Vec<Past> = Vec::with_capacity(years.len());
            let mut oracle = Vec::with_capacity(years.len());
            for y in years {
                let age = y - birth;
                let edu = (0..=final_edu)
                    .rev()
                    .find(|&l| ATTAIN_AGE[l] <= age)
                    .unwrap_or(0);
                let rec = Record {
                    year: y,
                    label: labor_data::LabelId(0),
                    education: Some(Education::ALL[edu]),
                    weight: None,
                };
                let cov = Covariates::of(&person, &rec);
                q.fill(0.0);
                for zz in 0..nz {
                    let dz = &mut d[zz * k..(zz + 1) * k];
                    model.dist(zz, &hist, &cov, cache, dz);
                    for (qi, di) in q.iter_mut().zip(dz.iter()) {
                        *qi += post[zz] * di;
                    }
                }
                let label = r.categorical(&d[z * k..(z + 1) * k]);
                let total: f64 = post
                    .iter()
                    .enumerate()
                    .map(|(zz, pz)| pz * d[zz * k + label])
                    .sum();
                for (zz, pz) in post.iter_mut().enumerate() {
                    *pz *= d[zz * k + label] / total;
                }
                oracle.push(OracleRecord {
                    logp: q[label].ln(),
                    p_stay: hist.last().map(|&(_, l)| q[l]),
                    p_in_lf: 1.0
                        - q[labor_data::taxonomy::NOT_IN_LABOR_FORCE.index()]
                        - q[labor_data::taxonomy::IN_EDUCATION.index()],
                    top: top_n(&q, 5),
                    sum: q.iter().sum(),
                    full: keep_full.then(|| q.clone()),
                });
                hist.push((y, label));
                person.records.push(Record {
                    label: labor_data::LabelId(label as u32),
                    ..rec
                });
            }
            return Worker { person, oracle, z };
        }
    }

    /// Samples workers `0..n` on `threads` threads (the result does not depend on the number
    /// of threads). Full distributions are kept for the first `full` workers. `progress` is
    /// called with the number of workers done so far.
    pub fn generate(
        &self,
        n: usize,
        threads: usize,
        full: usize,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Vec<Worker> {
        let threads = threads.max(1).min(n.max(1));
        let chunk = n.div_ceil(threads);
        let done = std::sync::atomic::AtomicUsize::new(0);
        let parts: Vec<Vec<Worker>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let done = &done;
                    s.spawn(move || {
                        let mut cache = BaseCache::default();
                        let lo = t * chunk;
                        let hi = ((t + 1) * chunk).min(n);
                        (lo..hi)
                            .map(|i| {
                                let w = self.worker(i as u64, &mut cache, i < full);
                                let c = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                                if c.is_multiple_of(1000) || c == n {
                                    progress(c);
                                }
                                w
                            })
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("worker thread"))
                .collect()
        });
        parts.into_iter().flatten().collect()
    }
}
