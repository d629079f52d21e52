//! The oracle is exact: distributions sum to 1, sampling agrees with it (chi-square), the
//! incremental type posterior equals brute-force enumeration; presets are realistic and carry
//! signal beyond one step.

use std::collections::HashMap;

use labor_data::{SplitSpec, Taxonomy};
use labor_synth::diagnostics::{chi_square_sf, report};
use labor_synth::market::BaseCache;
use labor_synth::model::{Covariates, Past};
use labor_synth::world::PRESETS;
use labor_synth::{Generator, World};

fn generator(name: &str, seed: u64) -> Generator {
    Generator::new(
        World::preset(name).unwrap(),
        Taxonomy::embedded_default(),
        seed,
    )
    .unwrap()
}

#[test]
fn every_oracle_distribution_sums_to_one() {
    for (name, _) in PRESETS {
        let g = generator(name, 3);
        let mut cache = BaseCache::default();
        for i in 0..300 {
            let w = g.worker(i, &mut cache, true);
            assert_eq!(w.oracle.len(), w.person.records.len());
            for o in &w.oracle {
                let full = o.full.as_ref().unwrap();
                assert_eq!(full.len(), g.taxonomy.len());
                let s: f64 = full.iter().sum();
                assert!((s - 1.0).abs() < 1e-9, "{name} worker {i}: sum {s}");
                assert!((o.sum - 1.0).abs() < 1e-9);
                assert!(full.iter().all(|p| *p >= 0.0));
                assert!(o.logp.is_finite() && o.logp <= 0.0);
                assert!(o.top.windows(2).all(|w| w[0].1 >= w[1].1));
            }
        }
    }
}

#[test]
fn incremental_posterior_equals_brute_force_enumeration() {
    let g = generator("nlsy79", 11);
    let model = g.model();
    let prior = &g.world.types.prior;
    let mut cache = BaseCache::default();
    let mut d = vec![0.0; model.k];
    for i in 0..40 {
        let w = g.worker(i, &mut cache, false);
        let p = &w.person;
        // Joint probability of the first t labels under each type, by plain products.
        let mut joint: Vec<f64> = prior.clone();
        let mut hist: Vec<Past> = Vec::new();
        for (t, r) in p.records.iter().enumerate() {
            let cov = Covariates::of(p, r);
            let before: f64 = joint.iter().sum();
            for (z, j) in joint.iter_mut().enumerate() {
                model.dist(z, &hist, &cov, &mut cache, &mut d);
                *j *= d[r.label.index()];
            }
            let brute = joint.iter().sum::<f64>() / before;
            let oracle = w.oracle[t].logp.exp();
            assert!(
                (brute - oracle).abs() <= 1e-9 * oracle.max(1e-300) + 1e-15,
                "worker {i} t {t}: {brute} vs {oracle}"
            );
            hist.push((r.year, r.label.index()));
        }
    }
}

/// Gender and the labels before t.
type Cell = (String, Vec<usize>);

const CELLS_WORLD: &str = r#"
name = "cells"
dataset = "CELLS"
workers = 40000
[population]
birth_years = [1960, 1960]
first_year = 1980
last_year = 1982
annual_until = 1982
min_age = 16
max_age = 64
missing_rate = 0.0
attrition = 0.0
gender = { female = 0.5, male = 0.5 }
race = { white = 1.0 }
region = { south = 1.0 }
education = { high_school_diploma = 1.0 }
"#;

#[test]
fn sampled_frequencies_match_the_oracle_in_many_cells() {
    // Everyone is born in 1960 and observed in 1980-82 with the same education, so persons of a
    // gender with the same earlier labels share (history, covariates) and thus one oracle
    // distribution; their sampled labels must follow it.
    let world = World::from_toml(CELLS_WORLD).unwrap();
    let g = Generator::new(world, Taxonomy::embedded_default(), 5).unwrap();
    let workers = g.generate(40_000, 2, 0, &|_| {});
    let mut cells: HashMap<Cell, Vec<(u64, usize)>> = HashMap::new();
    for (i, w) in workers.iter().enumerate() {
        let labels: Vec<usize> = w.person.records.iter().map(|r| r.label.index()).collect();
        for t in 0..labels.len() {
            cells
                .entry((
                    w.person.gender.clone().unwrap_or_default(),
                    labels[..t].to_vec(),
                ))
                .or_default()
                .push((i as u64, labels[t]));
        }
    }
    let mut big: Vec<_> = cells.into_iter().filter(|(_, v)| v.len() >= 300).collect();
    big.sort_by_key(|(k, v)| (std::cmp::Reverse(v.len()), k.clone()));
    assert!(
        big.len() >= 20,
        "only {} cells with 300+ observations",
        big.len()
    );
    let mut cache = BaseCache::default();
    let chi2 = |q: &[f64], obs: &[(u64, usize)]| {
        let n = obs.len() as f64;
        let mut counts = vec![0.0; q.len()];
        for &(_, y) in obs {
            counts[y] += 1.0;
        }
        let (mut stat, mut df, mut o_rest, mut e_rest) = (0.0, 0usize, 0.0, 0.0);
        for (k, p) in q.iter().enumerate() {
            let e = n * p;
            if e >= 5.0 {
                stat += (counts[k] - e).powi(2) / e;
                df += 1;
            } else {
                o_rest += counts[k];
                e_rest += e;
            }
        }
        if e_rest >= 5.0 {
            stat += (o_rest - e_rest).powi(2) / e_rest;
            df += 1;
        }
        (stat, df - 1, chi_square_sf(stat, df - 1))
    };
    let mut oracle_of = |i: u64, t: usize| {
        g.worker(i, &mut cache, true).oracle[t]
            .full
            .clone()
            .unwrap()
    };
    for ((gender, hist), obs) in &big {
        // The oracle distribution of the cell, from one of its workers.
        let q = oracle_of(obs[0].0, hist.len());
        let (stat, df, pval) = chi2(&q, obs);
        assert!(
            pval > 0.001,
            "cell {gender} {hist:?} ({} obs): chi2 {stat:.1} df {df} p {pval:.2e}",
            obs.len()
        );
    }
    // The test has power: the first-record cell of one gender rejects the other gender's oracle.
    let first: Vec<_> = big.iter().filter(|((_, h), _)| h.is_empty()).collect();
    assert_eq!(first.len(), 2);
    let q_other = oracle_of(first[1].1[0].0, 0);
    let (_, _, pval) = chi2(&q_other, &first[0].1);
    assert!(pval < 1e-6, "{pval}");
}

#[test]
fn presets_are_realistic_and_beat_a_first_order_markov_model() {
    for (name, _) in PRESETS {
        // At the preset's default size: the Markov yardstick gets better with more data.
        let g = generator(name, 1);
        let workers = g.generate(g.world.workers, 2, 0, &|_| {});
        let (panel, logp) = labor_synth::into_panel(&g.taxonomy, workers);
        let r = report(&panel, &logp, &SplitSpec::default());
        assert!(
            (0.08..=0.25).contains(&r.annual_occupation_change_rate),
            "{name}: {r}"
        );
        if name == "resumes" {
            assert_eq!(r.non_work_share, 0.0, "{name}: {r}");
            assert!(
                panel
                    .persons
                    .iter()
                    .all(|p| p.records.windows(2).all(|w| w[1].year == w[0].year + 1)),
                "resumes have no gaps"
            );
        } else {
            assert!((0.08..=0.30).contains(&r.non_work_share), "{name}: {r}");
        }
        assert!(r.occupations_used >= 200, "{name}: {r}");
        assert!(r.oracle_to_markov1 <= 0.85, "{name}: {r}");
    }
}

#[test]
fn generation_is_deterministic_and_independent_of_threads() {
    let g = generator("nlsy97", 9);
    let a = g.generate(300, 1, 0, &|_| {});
    let b = g.generate(300, 3, 0, &|_| {});
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.person, y.person);
        assert_eq!(x.oracle, y.oracle);
    }
    let c = generator("nlsy97", 10).generate(300, 1, 0, &|_| {});
    assert_ne!(a[0].person, c[0].person);
}

#[test]
fn resolved_world_files_load_back_identically() {
    for (name, _) in PRESETS {
        let w = World::preset(name).unwrap();
        assert_eq!(World::from_toml(&w.to_toml()).unwrap(), w, "{name}");
    }
    let bad = CELLS_WORLD.replace("missing_rate = 0.0", "missing_rate = 2.0");
    assert!(World::from_toml(&bad).unwrap_err().contains("missing_rate"));
    let unknown = CELLS_WORLD.replace("attrition = 0.0", "attrition = 0.0\nwaves = 3");
    assert!(World::from_toml(&unknown).unwrap_err().contains("waves"));
}
