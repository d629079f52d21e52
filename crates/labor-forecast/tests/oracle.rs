//! Simulation driven by the oracle model (the exact predictive, posterior updated step by step)
//! against the world's own generator run forward (type drawn once from the posterior): the same
//! law of future paths, computed two ways. A chi-square test of homogeneity of category shares
//! at horizons 1..3 must not reject; the same test must reject a model of another world.

use labor_data::{Panel, Record, Taxonomy};
use labor_forecast::simulate::{SimOptions, simulate, starts};
use labor_forecast::{categories, category};
use labor_synth::diagnostics::chi_square_sf;
use labor_synth::rng::Rng;
use labor_synth::{Generator, Oracle, World};

const PERSONS: usize = 120;
const DRAWS: usize = 40;
const H: usize = 3;

fn panel(world: &World, tax: &Taxonomy) -> Panel {
    let g = Generator::new(world.clone(), tax.clone(), 11).unwrap();
    labor_synth::into_panel(tax, g.generate(PERSONS, 2, 0, &|_| {})).0
}

/// Category counts per horizon (index h-1).
type Counts = Vec<Vec<f64>>;

fn counts_of(tax: &Taxonomy, labels: impl Iterator<Item = (u32, labor_data::LabelId)>) -> Counts {
    let cats = categories(tax);
    let mut c = vec![vec![0.0; cats.len()]; H];
    for (step, l) in labels {
        let i = cats.iter().position(|x| x == category(tax, l)).unwrap();
        c[step as usize - 1][i] += 1.0;
    }
    c
}

fn simulated(model_world: &World, panel: &Panel) -> Counts {
    let mut o = Oracle::new(model_world.clone(), &panel.taxonomy).unwrap();
    let (s, _) = starts(&panel.persons, None, &[]);
    let opts = SimOptions {
        years: H,
        draws: DRAWS,
        seed: 1,
        cut: None,
    };
    let sims = simulate(&mut o, &panel.taxonomy, &s, &[], &opts, &mut |_| {}).unwrap();
    counts_of(&panel.taxonomy, sims.iter().map(|r| (r.step, r.label)))
}

fn generated(world: &World, panel: &Panel) -> Counts {
    let mut o = Oracle::new(world.clone(), &panel.taxonomy).unwrap();
    let mut labels = Vec::new();
    for (i, p) in panel.persons.iter().enumerate() {
        let last = p.records.last().unwrap();
        let education = p.records.iter().rev().find_map(|r| r.education);
        let future: Vec<Record> = (1..=H as i32)
            .map(|h| Record {
                year: last.year + h,
                label: labor_data::LabelId(0),
                education,
                weight: None,
            })
            .collect();
        for d in 0..DRAWS {
            let mut rng = Rng::new(99, (i * DRAWS + d) as u64);
            for (h, l) in o.forward(p, &future, &mut rng).into_iter().enumerate() {
                labels.push((h as u32 + 1, l));
            }
        }
    }
    counts_of(&panel.taxonomy, labels.into_iter())
}

/// Chi-square test of homogeneity of two count vectors; cells whose pooled count is under 10
/// are merged into one. Returns (statistic, degrees of freedom, p-value).
fn homogeneity(a: &[f64], b: &[f64]) -> (f64, usize, f64) {
    let (mut aa, mut bb) = (Vec::new(), Vec::new());
    let (mut ra, mut rb) = (0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        if x + y < 10.0 {
            ra += x;
            rb += y;
        } else {
            aa.push(*x);
            bb.push(*y);
        }
    }
    if ra + rb > 0.0 {
        aa.push(ra);
        bb.push(rb);
    }
    let (na, nb): (f64, f64) = (aa.iter().sum(), bb.iter().sum());
    let n = na + nb;
    let mut stat = 0.0;
    for (x, y) in aa.iter().zip(&bb) {
        let col = x + y;
        for (obs, row) in [(x, na), (y, nb)] {
            let e = row * col / n;
            stat += (obs - e).powi(2) / e;
        }
    }
    let df = aa.len() - 1;
    (stat, df, chi_square_sf(stat, df))
}

#[test]
fn simulating_with_the_oracle_reproduces_the_worlds_forward_distribution() {
    let tax = Taxonomy::embedded_default();
    let world = World::preset("nlsy79").unwrap();
    let panel = panel(&world, &tax);
    let sim = simulated(&world, &panel);
    let truth = generated(&world, &panel);
    for h in 0..H {
        assert_eq!(sim[h].iter().sum::<f64>(), (PERSONS * DRAWS) as f64);
        let (stat, df, p) = homogeneity(&sim[h], &truth[h]);
        eprintln!(
            "horizon {}: chi-square {stat:.1} on {df} df, p = {p:.3}",
            h + 1
        );
        assert!(p > 1e-3, "horizon {}: p = {p}", h + 1);
    }
    // The test has power: another world's oracle simulating the same persons is rejected.
    let other = World::preset("psid").unwrap();
    let wrong = simulated(&other, &panel);
    let (stat, df, p) = homogeneity(&wrong[0], &truth[0]);
    eprintln!("another world at horizon 1: chi-square {stat:.1} on {df} df, p = {p:.2e}");
    assert!(p < 1e-6, "p = {p}");
}
