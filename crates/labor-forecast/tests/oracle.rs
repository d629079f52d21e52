//! Simulation driven by the oracle model (the exact predictive, posterior updated step by step)
//! against the world's own generator run forward (type drawn once from the posterior): the same
//! law of future paths, computed two ways. A chi-square test of homogeneity of category shares
//! at horizons 1..3 must not reject; the same test must reject the oracle of a world with more unemployment.

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

/// Category counts per horizon (index h-1) and person: `c[h][person][category]`.
type Counts = Vec<Vec<Vec<f64>>>;

fn counts_of(
    tax: &Taxonomy,
    labels: impl Iterator<Item = (usize, u32, labor_data::LabelId)>,
) -> Counts {
    let cats = categories(tax);
    let mut c = vec![vec![vec![0.0; cats.len()]; PERSONS]; H];
    for (person, step, l) in labels {
        let i = cats.iter().position(|x| x == category(tax, l)).unwrap();
        c[step as usize - 1][person][i] += 1.0;
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
    counts_of(
        &panel.taxonomy,
        sims.iter().map(|r| (r.person as usize, r.step, r.label)),
    )
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
                labels.push((i, h as u32 + 1, l));
            }
        }
    }
    counts_of(&panel.taxonomy, labels.into_iter())
}

/// Solves `a x = b` (symmetric positive definite `a`) by Gaussian elimination with pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for col in 0..n {
        let piv = (col..n)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap();
        a.swap(col, piv);
        b.swap(col, piv);
        let pivot = a[col].clone();
        for r in col + 1..n {
            let f = a[r][col] / pivot[col];
            for (x, p) in a[r][col..].iter_mut().zip(&pivot[col..]) {
                *x -= f * p;
            }
            b[r] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|c| a[r][c] * x[c]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    x
}

/// Two simulations of the same persons with the same number of draws each, compared on
/// category shares: the Wald statistic of the difference of category counts, with its
/// covariance summed person by person (persons differ, so a plain Pearson test of pooled counts
/// would be far too lenient), on the categories with at least 20 records in all (the rest merged
/// into one; the last category dropped, as the counts sum to the same total). Chi-square with
/// as many degrees of freedom as categories kept. Returns (statistic, df, p-value).
fn homogeneity(a: &[Vec<f64>], b: &[Vec<f64>]) -> (f64, usize, f64) {
    let k = a[0].len();
    let total: Vec<f64> = (0..k)
        .map(|c| a.iter().chain(b).map(|p| p[c]).sum())
        .collect();
    let keep: Vec<usize> = (0..k).filter(|&c| total[c] >= 20.0).collect();
    // Kept categories, then "the rest"; the last of them is dropped.
    let fold = |p: &[f64]| {
        let mut v: Vec<f64> = keep.iter().map(|&c| p[c]).collect();
        v.push(p.iter().sum::<f64>() - v.iter().sum::<f64>());
        v.pop();
        v
    };
    let m = keep.len();
    let mut diff = vec![0.0; m];
    let mut cov = vec![vec![0.0; m]; m];
    for (pa, pb) in a.iter().zip(b) {
        let (fa, fb) = (fold(pa), fold(pb));
        let d = DRAWS as f64;
        let q: Vec<f64> = fa
            .iter()
            .zip(&fb)
            .map(|(x, y)| (x + y) / (2.0 * d))
            .collect();
        for i in 0..m {
            diff[i] += fa[i] - fb[i];
            for j in 0..m {
                let delta = if i == j { q[i] } else { 0.0 };
                cov[i][j] += 2.0 * d * (delta - q[i] * q[j]);
            }
        }
    }
    // Tiny ridge: a category no person of the pair ever left gives a zero row.
    for (i, row) in cov.iter_mut().enumerate() {
        row[i] += 1e-9;
    }
    let x = solve(cov, diff.clone());
    let stat: f64 = diff.iter().zip(&x).map(|(d, y)| d * y).sum();
    (stat, m, chi_square_sf(stat, m))
}

#[test]
fn simulating_with_the_oracle_reproduces_the_worlds_forward_distribution() {
    let tax = Taxonomy::embedded_default();
    let world = World::preset("nlsy79").unwrap();
    let panel = panel(&world, &tax);
    let sim = simulated(&world, &panel);
    let truth = generated(&world, &panel);
    for h in 0..H {
        let n: f64 = sim[h].iter().flatten().sum();
        assert_eq!(n, (PERSONS * DRAWS) as f64);
        let (stat, df, p) = homogeneity(&sim[h], &truth[h]);
        eprintln!(
            "horizon {}: chi-square {stat:.1} on {df} df, p = {p:.3}",
            h + 1
        );
        assert!(p > 1e-3, "horizon {}: p = {p}", h + 1);
    }
    // The test has power: the oracle of a world where unemployment is more likely (its
    // logit 1 higher), simulating the same persons, is rejected. (Mobility alone, e.g. a lower
    // stay logit, barely moves the pooled shares of a population near its steady state.)
    let mut other = world.clone();
    other.nonwork.unemployed.base += 1.0;
    let wrong = simulated(&other, &panel);
    for h in 0..H {
        let (stat, df, p) = homogeneity(&wrong[h], &truth[h]);
        eprintln!(
            "another world at horizon {}: chi-square {stat:.1} on {df} df, p = {p:.2e}",
            h + 1
        );
    }
    for h in 0..H {
        let (_, _, p) = homogeneity(&wrong[h], &truth[h]);
        assert!(p < 1e-6, "horizon {}: p = {p}", h + 1);
    }
}
