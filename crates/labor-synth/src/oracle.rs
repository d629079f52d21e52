//! The oracle as a model: for any person (a world's own or one typed by a user), the exact
//! distribution of each record given the earlier ones, with the latent type integrated out by its
//! exact posterior, through the same [`Predictor`] trait as every fitted model. And the world's
//! own generator run forward from an observed history ([`Oracle::forward`]): a type drawn from
//! that posterior, then labels drawn from the true model with the type fixed.
//!
//! The two are different computations of the same law of future paths (the predictive mixes over
//! the posterior updated step by step; the generator draws the type once), which is what makes
//! the second a check of any simulation driven by the first.

use labor_data::predictions::{Prediction, Predictor};
use labor_data::{LabelId, Person, Record, Taxonomy};

use crate::market::{BaseCache, Market};
use crate::model::{Covariates, LabelModel, Past};
use crate::rng::Rng;
use crate::world::World;

/// A world's true model of the next observed label.
pub struct Oracle {
    name: String,
    world: World,
    market: Market,
    cache: BaseCache,
}

impl Oracle {
    pub fn new(world: World, taxonomy: &Taxonomy) -> Result<Self, String> {
        let market = Market::new(&world, taxonomy)?;
        Ok(Self {
            name: "oracle".into(),
            world,
            market,
            cache: BaseCache::default(),
        })
    }

    /// Number of labels.
    pub fn k(&self) -> usize {
        LabelModel::new(&self.world, &self.market).k
    }

    /// Walks `person`'s records in order, calling `each(t, q)` with the predictive distribution
    /// of record t (before its label updates the posterior); returns the posterior over types
    /// given all records.
    fn walk(&mut self, person: &Person, mut each: impl FnMut(usize, &[f64])) -> Vec<f64> {
        let model = LabelModel::new(&self.world, &self.market);
        let (k, prior) = (model.k, &self.world.types.prior);
        let nz = prior.len();
        let total: f64 = prior.iter().sum();
        let mut post: Vec<f64> = prior.iter().map(|x| x / total).collect();
        let mut d = vec![0.0; nz * k];
        let mut q = vec![0.0; k];
        let mut hist: Vec<Past> = Vec::with_capacity(person.records.len());
        for (t, rec) in person.records.iter().enumerate() {
            let cov = Covariates::of(person, rec);
            q.fill(0.0);
            for z in 0..nz {
                let dz = &mut d[z * k..(z + 1) * k];
                model.dist(z, &hist, &cov, &mut self.cache, dz);
                for (qi, di) in q.iter_mut().zip(dz.iter()) {
                    *qi += post[z] * di;
                }
            }
            each(t, &q);
            let label = rec.label.index();
            let p: f64 = (0..nz).map(|z| post[z] * d[z * k + label]).sum();
            if p > 0.0 {
                for (z, pz) in post.iter_mut().enumerate() {
                    *pz *= d[z * k + label] / p;
                }
            }
            hist.push((rec.year, label));
        }
        post
    }

    /// The exact posterior over the latent types given all of `person`'s records.
    pub fn posterior(&mut self, person: &Person) -> Vec<f64> {
        self.walk(person, |_, _| {})
    }

    /// The world's own generator run forward: a type drawn from the posterior given `person`'s
    /// records, then one label per record of `future` (their years and educations; labels
    /// ignored), each from the true model given the history so far with the type fixed.
    pub fn forward(&mut self, person: &Person, future: &[Record], rng: &mut Rng) -> Vec<LabelId> {
        let post = self.posterior(person);
        let z = rng.categorical(&post);
        let model = LabelModel::new(&self.world, &self.market);
        let mut d = vec![0.0; model.k];
        let mut hist: Vec<Past> = person
            .records
            .iter()
            .map(|r| (r.year, r.label.index()))
            .collect();
        let mut out = Vec::with_capacity(future.len());
        for rec in future {
            model.dist(
                z,
                &hist,
                &Covariates::of(person, rec),
                &mut self.cache,
                &mut d,
            );
            let label = rng.categorical(&d);
            hist.push((rec.year, label));
            out.push(LabelId(label as u32));
        }
        out
    }
}

impl Predictor for Oracle {
    fn name(&self) -> &str {
        &self.name
    }

    fn predict(&mut self, person: &Person, ts: &[usize]) -> Result<Prediction, String> {
        if let Some(&t) = ts.iter().find(|&&t| t >= person.records.len()) {
            return Err(format!(
                "record {t} of a person with {}",
                person.records.len()
            ));
        }
        let mut logp = vec![Vec::new(); ts.len()];
        let last = ts.iter().copied().max();
        // Records after the last asked one never matter.
        let trimmed;
        let person = match last {
            Some(l) if l + 1 < person.records.len() => {
                let mut p = person.clone();
                p.records.truncate(l + 1);
                trimmed = p;
                &trimmed
            }
            _ => person,
        };
        self.walk(person, |t, q| {
            for (slot, _) in ts.iter().enumerate().filter(|(_, s)| **s == t) {
                logp[slot] = q.iter().map(|x| x.ln()).collect();
            }
        });
        Ok(Prediction { logp, icl_k: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::Generator;

    #[test]
    fn the_oracle_model_gives_the_generators_own_oracle_exactly() {
        let world = World::preset("nlsy79").unwrap();
        let tax = Taxonomy::embedded_default();
        let g = Generator::new(world.clone(), tax.clone(), 3).unwrap();
        let mut cache = BaseCache::default();
        let mut o = Oracle::new(world, &tax).unwrap();
        for i in 0..20 {
            let w = g.worker(i, &mut cache, true);
            let ts: Vec<usize> = (0..w.person.records.len()).collect();
            let p = o.predict(&w.person, &ts).unwrap();
            for (t, rec) in w.oracle.iter().enumerate() {
                let full = rec.full.as_ref().unwrap();
                for (a, b) in p.logp[t].iter().zip(full) {
                    assert_eq!(*a, b.ln(), "worker {i} record {t}");
                }
            }
            // Asking for one record gives the same as asking for all.
            let last = ts.len() - 1;
            assert_eq!(o.predict(&w.person, &[last]).unwrap().logp[0], p.logp[last]);
        }
    }
}
