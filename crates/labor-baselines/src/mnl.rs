//! The multinomial logit (SPEC §6) on the encoding of [`crate::features`]:
//! P(k | x) = softmax_k(Σ_f x_f W[f, k]), over the labels seen in training (the model's
//! classes). Fitted by minimizing
//!
//!   L(W) = (1/n) Σ_i −log P(y_i | x_i) + (λ/2) Σ_{f ≠ bias} Σ_k W[f, k]²
//!
//! with L-BFGS and the analytic gradient (1/n) Σ_i x_i (p_i − e_{y_i}) + λ W, evaluated on
//! `threads` threads. This is scikit-learn's `LogisticRegression(C = 1 / (λ n),
//! fit_intercept = True)` objective divided by n (its intercept is not penalized either);
//! see `tools/reference/mnl_reference.py`.
//!
//! λ is chosen on the validation persons from a grid (largest first, each fit warm-started from
//! the previous). Predictions mix in a little of the add-one label frequencies,
//! p = (1 − ε) p_mnl + ε p_freq, so labels never seen in training keep a positive probability;
//! ε is chosen on validation too.

use std::io::{Read, Write};
use std::time::Instant;

use labor_data::predictions::{Prediction, Predictor};
use labor_data::{Panel, Person, Split, SplitSpec, Taxonomy};
use serde::{Deserialize, Serialize};

use crate::features::{Design, FeatureSpec};
use crate::lbfgs::{LbfgsOptions, minimize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MnlOptions {
    /// Candidate penalties, searched from the largest.
    pub lambdas: Vec<f64>,
    /// Candidate weights of the label-frequency mixture.
    pub epsilons: Vec<f64>,
    pub lbfgs: LbfgsOptions,
    pub threads: usize,
}

impl Default for MnlOptions {
    fn default() -> Self {
        Self {
            lambdas: vec![1e-3, 1e-4, 1e-5],
            epsilons: vec![1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3],
            lbfgs: LbfgsOptions {
                gtol: 1e-5,
                ftol: 1e-10,
                ..Default::default()
            },
            threads: 2,
        }
    }
}

/// How one fit went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    pub lambda: f64,
    pub n_obs: usize,
    pub n_features: usize,
    pub n_classes: usize,
    /// Training log-likelihood Σ_i log P(y_i | x_i) (no penalty).
    pub loglik: f64,
    /// The minimized objective L(W).
    pub objective: f64,
    pub iterations: usize,
    pub evaluations: usize,
    /// Euclidean norm and largest component of ∇L at the solution.
    pub grad_norm: f64,
    pub grad_max: f64,
    pub converged: bool,
    pub seconds: f64,
}

/// One λ of the validation search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LambdaRow {
    pub lambda: f64,
    pub epsilon: f64,
    pub valid_mean_logp: f64,
    pub fit: FitReport,
}

/// L(W) and its gradient (written into `grad`), W row-major `[n_features][n_classes]`;
/// `unpenalized` is the feature left out of the penalty (the bias), if any.
pub fn loss_grad(
    design: &Design,
    n_classes: usize,
    w: &[f64],
    lambda: f64,
    unpenalized: Option<usize>,
    threads: usize,
    grad: &mut [f64],
) -> f64 {
    let c = n_classes;
    let n = design.n_rows();
    assert_eq!(w.len(), design.n_features * c);
    assert_eq!(grad.len(), w.len());
    let threads = threads.max(1).min(n.max(1));
    let chunk = n.div_ceil(threads).max(1);
    let parts: Vec<(f64, Vec<f64>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut g = vec![0.0; w.len()];
                    let mut z = vec![0.0; c];
                    let mut loss = 0.0;
                    for i in (t * chunk)..((t + 1) * chunk).min(n) {
                        let (idx, val) = design.row(i);
                        z.iter_mut().for_each(|v| *v = 0.0);
                        for (&f, &v) in idx.iter().zip(val) {
                            let row = &w[f as usize * c..(f as usize + 1) * c];
                            for (zk, wk) in z.iter_mut().zip(row) {
                                *zk += v * wk;
                            }
                        }
                        let lse = crate::logsumexp(&z);
                        let y = design.y[i] as usize;
                        loss += lse - z[y];
                        for zk in z.iter_mut() {
                            *zk = (*zk - lse).exp();
                        }
                        z[y] -= 1.0;
                        for (&f, &v) in idx.iter().zip(val) {
                            let row = &mut g[f as usize * c..(f as usize + 1) * c];
                            for (gk, pk) in row.iter_mut().zip(&z) {
                                *gk += v * pk;
                            }
                        }
                    }
                    (loss, g)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let inv_n = 1.0 / n.max(1) as f64;
    grad.iter_mut().for_each(|g| *g = 0.0);
    let mut loss = 0.0;
    for (l, g) in parts {
        loss += l;
        for (a, b) in grad.iter_mut().zip(&g) {
            *a += b;
        }
    }
    let mut penalty = 0.0;
    for (j, (gj, wj)) in grad.iter_mut().zip(w).enumerate() {
        *gj *= inv_n;
        if Some(j / c) != unpenalized {
            *gj += lambda * wj;
            penalty += wj * wj;
        }
    }
    loss * inv_n + 0.5 * lambda * penalty
}

/// Fits W on `design` for one λ from `w0` (zeros when `None`).
pub fn fit_design(
    design: &Design,
    n_classes: usize,
    lambda: f64,
    unpenalized: Option<usize>,
    w0: Option<Vec<f64>>,
    lbfgs: &LbfgsOptions,
    threads: usize,
) -> (Vec<f64>, FitReport) {
    let start = Instant::now();
    let x0 = w0.unwrap_or_else(|| vec![0.0; design.n_features * n_classes]);
    let r = minimize(
        |w, g| loss_grad(design, n_classes, w, lambda, unpenalized, threads, g),
        x0,
        lbfgs,
    );
    let penalty: f64 =
        r.x.iter()
            .enumerate()
            .filter(|(j, _)| Some(j / n_classes) != unpenalized)
            .map(|(_, w)| w * w)
            .sum();
    let n = design.n_rows();
    let report = FitReport {
        lambda,
        n_obs: n,
        n_features: design.n_features,
        n_classes,
        loglik: -(r.f - 0.5 * lambda * penalty) * n as f64,
        objective: r.f,
        iterations: r.iterations,
        evaluations: r.evaluations,
        grad_norm: r.grad_norm,
        grad_max: r.grad_max,
        converged: r.converged,
        seconds: start.elapsed().as_secs_f64(),
    };
    (r.x, report)
}

/// A fitted multinomial logit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mnl {
    pub features: FeatureSpec,
    /// The label id of each class (labels seen in training), increasing.
    pub classes: Vec<u32>,
    /// W, row-major `[n_features][n_classes]`.
    pub w: Vec<f64>,
    /// Add-one smoothed training label frequencies over all K labels.
    pub unigram: Vec<f64>,
    pub epsilon: f64,
    pub report: FitReport,
    pub search: Vec<LambdaRow>,
}

/// The design of the persons of `split` (rows in person, record order). Records whose label is
/// not among `classes` are skipped (they never occur in the training split).
pub fn design_for(
    panel: &Panel,
    spec: &SplitSpec,
    split: Split,
    features: &FeatureSpec,
    classes: &[u32],
) -> Design {
    let mut class_of = vec![u32::MAX; panel.taxonomy.len()];
    for (c, &l) in classes.iter().enumerate() {
        class_of[l as usize] = c as u32;
    }
    let mut d = Design::new(features.n_features());
    let mut buf = Vec::new();
    for p in panel.persons.iter().filter(|p| p.split_or(spec) == split) {
        for (t, r) in p.records.iter().enumerate() {
            let y = class_of[r.label.index()];
            if y != u32::MAX {
                features.encode(p, t, &mut buf);
                d.push(&buf, y);
            }
        }
    }
    d
}

/// The labels seen in the training split, as the model's classes.
pub fn training_classes(panel: &Panel, spec: &SplitSpec) -> Vec<u32> {
    let mut seen = vec![false; panel.taxonomy.len()];
    for p in panel
        .persons
        .iter()
        .filter(|p| p.split_or(spec) == Split::Train)
    {
        for r in &p.records {
            seen[r.label.index()] = true;
        }
    }
    (0..seen.len() as u32)
        .filter(|&i| seen[i as usize])
        .collect()
}

impl Mnl {
    /// Fits on the training persons, choosing λ and ε on the validation persons.
    pub fn fit(panel: &Panel, spec: &SplitSpec, opts: &MnlOptions) -> Result<Self, String> {
        if opts.lambdas.is_empty() || opts.epsilons.is_empty() {
            return Err("MNL: empty λ or ε grid".into());
        }
        let features = FeatureSpec::fit(panel, spec);
        let classes = training_classes(panel, spec);
        if classes.is_empty() {
            return Err("MNL: no training records".into());
        }
        let k = panel.taxonomy.len();
        let mut freq = vec![1.0; k];
        for p in panel
            .persons
            .iter()
            .filter(|p| p.split_or(spec) == Split::Train)
        {
            for r in &p.records {
                freq[r.label.index()] += 1.0;
            }
        }
        let total: f64 = freq.iter().sum();
        let unigram: Vec<f64> = freq.into_iter().map(|f| f / total).collect();
        let train = design_for(panel, spec, Split::Train, &features, &classes);
        let mut lambdas = opts.lambdas.clone();
        lambdas.sort_by(|a, b| b.total_cmp(a));
        let mut model = Mnl {
            features,
            classes,
            w: Vec::new(),
            unigram,
            epsilon: opts.epsilons[0],
            report: FitReport {
                lambda: f64::NAN,
                n_obs: 0,
                n_features: 0,
                n_classes: 0,
                loglik: f64::NAN,
                objective: f64::NAN,
                iterations: 0,
                evaluations: 0,
                grad_norm: f64::NAN,
                grad_max: f64::NAN,
                converged: false,
                seconds: 0.0,
            },
            search: Vec::new(),
        };
        let valid: Vec<&Person> = panel
            .persons
            .iter()
            .filter(|p| p.split_or(spec) == Split::Valid)
            .collect();
        let mut best: Option<(f64, Vec<f64>, FitReport, f64)> = None;
        let mut warm: Option<Vec<f64>> = None;
        for &lambda in &lambdas {
            let (w, report) = fit_design(
                &train,
                model.classes.len(),
                lambda,
                Some(model.features.bias()),
                warm.take(),
                &opts.lbfgs,
                opts.threads,
            );
            model.w = w;
            // (p_mnl(true), p_freq(true)) per validation record.
            let mut pairs = Vec::new();
            for p in &valid {
                for t in 0..p.records.len() {
                    let y = p.records[t].label.index();
                    let pm = model.mnl_probs(p, t);
                    let py = model
                        .classes
                        .binary_search(&(y as u32))
                        .map_or(0.0, |c| pm[c]);
                    pairs.push((py, model.unigram[y]));
                }
            }
            let (mut best_eps, mut best_ll) = (opts.epsilons[0], f64::NEG_INFINITY);
            for &eps in &opts.epsilons {
                let ll = pairs
                    .iter()
                    .map(|(pm, pf)| ((1.0 - eps) * pm + eps * pf).ln())
                    .sum::<f64>()
                    / pairs.len().max(1) as f64;
                if ll > best_ll {
                    (best_eps, best_ll) = (eps, ll);
                }
            }
            model.search.push(LambdaRow {
                lambda,
                epsilon: best_eps,
                valid_mean_logp: best_ll,
                fit: report.clone(),
            });
            if best.as_ref().is_none_or(|b| best_ll > b.0) {
                best = Some((best_ll, model.w.clone(), report, best_eps));
            }
            warm = Some(model.w.clone());
        }
        let (_, w, report, eps) = best.expect("non-empty grid");
        model.w = w;
        model.report = report;
        model.epsilon = eps;
        Ok(model)
    }

    /// The softmax over the model's classes for record `t` of `person`.
    pub fn mnl_probs(&self, person: &Person, t: usize) -> Vec<f64> {
        let c = self.classes.len();
        let mut buf = Vec::new();
        self.features.encode(person, t, &mut buf);
        let mut z = vec![0.0; c];
        for &(f, v) in &buf {
            for (zk, wk) in z
                .iter_mut()
                .zip(&self.w[f as usize * c..(f as usize + 1) * c])
            {
                *zk += v * wk;
            }
        }
        let lse = crate::logsumexp(&z);
        z.iter_mut().for_each(|v| *v = (*v - lse).exp());
        z
    }

    /// The natural-log probabilities of the K labels for record `t` of `person`.
    pub fn log_dist(&self, person: &Person, t: usize) -> Vec<f64> {
        let pm = self.mnl_probs(person, t);
        let mut p: Vec<f64> = self.unigram.iter().map(|u| self.epsilon * u).collect();
        for (&l, q) in self.classes.iter().zip(&pm) {
            p[l as usize] += (1.0 - self.epsilon) * q;
        }
        p.into_iter().map(f64::ln).collect()
    }

    /// The coefficients as CSV: `feature,label_code,coefficient`, every (feature, class) pair in
    /// feature order, then class order.
    pub fn write_coefficients<W: Write>(&self, mut w: W) -> std::io::Result<()> {
        let names = self.features.names();
        let c = self.classes.len();
        writeln!(w, "feature,label_code,coefficient")?;
        for (f, name) in names.iter().enumerate() {
            for (k, &l) in self.classes.iter().enumerate() {
                writeln!(
                    w,
                    "{},{},{}",
                    csv_field(name),
                    csv_field(&self.features.codes[l as usize]),
                    self.w[f * c + k]
                )?;
            }
        }
        Ok(())
    }

    pub fn check_taxonomy(&self, taxonomy: &Taxonomy) -> Result<(), String> {
        crate::markov::check_codes(&self.features.codes, taxonomy)
    }

    pub fn to_writer<W: Write>(&self, w: W) -> Result<(), String> {
        serde_json::to_writer(w, self).map_err(|e| e.to_string())
    }

    pub fn from_reader<R: Read>(r: R) -> Result<Self, String> {
        let m: Mnl = serde_json::from_reader(r).map_err(|e| format!("not an MNL model: {e}"))?;
        if m.w.len() != m.features.n_features() * m.classes.len() {
            return Err("MNL model: coefficient count does not match its features".into());
        }
        Ok(m)
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writes a design for `tools/reference/mnl_reference.py` as one JSON object: `n_rows`,
/// `n_features`, `n_classes`, `lambda`, `bias` (the unpenalized column, dropped from the
/// triples: the reference fits it as its intercept), the (row, col, val) triples of the other
/// columns (`col` renumbered without the bias) and `y`.
pub fn write_design_json<W: Write>(
    design: &Design,
    n_classes: usize,
    lambda: f64,
    bias: usize,
    w: W,
) -> Result<(), String> {
    let (mut rows, mut cols, mut vals) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..design.n_rows() {
        let (idx, val) = design.row(i);
        for (&f, &v) in idx.iter().zip(val) {
            let f = f as usize;
            if f != bias {
                rows.push(i);
                cols.push(if f > bias { f - 1 } else { f });
                vals.push(v);
            }
        }
    }
    let doc = serde_json::json!({
        "n_rows": design.n_rows(),
        "n_features": design.n_features - 1,
        "n_classes": n_classes,
        "lambda": lambda,
        "objective": "mean NLL + lambda/2 * ||W||^2 over non-intercept coefficients",
        "rows": rows,
        "cols": cols,
        "vals": vals,
        "y": design.y,
    });
    serde_json::to_writer(w, &doc).map_err(|e| e.to_string())
}

impl Predictor for Mnl {
    fn name(&self) -> &str {
        "mnl"
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
            logp.push(self.log_dist(person, t));
        }
        Ok(Prediction { logp, icl_k: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64 → uniform [0, 1).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Bias, a 3-level one-hot, a 2-level one-hot and two real values; labels depend on them.
    fn small_problem(n: usize, classes: usize, seed: u64) -> Design {
        let mut rng = Rng(seed);
        let mut d = Design::new(8);
        for i in 0..n {
            let a = (rng.next() * 3.0) as u32;
            let b = (rng.next() * 2.0) as u32;
            let x1 = rng.next() * 2.0 - 1.0;
            let x2 = rng.next() * 3.0;
            let y = ((a + b + (x1 > 0.0) as u32 + (rng.next() < 0.3) as u32) as usize + i % 2)
                % classes;
            d.push(
                &[(0, 1.0), (1 + a, 1.0), (4 + b, 1.0), (6, x1), (7, x2)],
                y as u32,
            );
        }
        d
    }

    #[test]
    fn gradient_equals_central_finite_differences() {
        let (c, lambda) = (4, 0.05);
        let d = small_problem(37, c, 1);
        let mut rng = Rng(9);
        let w: Vec<f64> = (0..d.n_features * c)
            .map(|_| rng.next() * 2.0 - 1.0)
            .collect();
        let mut g = vec![0.0; w.len()];
        loss_grad(&d, c, &w, lambda, Some(0), 2, &mut g);
        let mut scratch = vec![0.0; w.len()];
        let h = 1e-5;
        for j in 0..w.len() {
            let (mut wp, mut wm) = (w.clone(), w.clone());
            wp[j] += h;
            wm[j] -= h;
            let fd = (loss_grad(&d, c, &wp, lambda, Some(0), 1, &mut scratch)
                - loss_grad(&d, c, &wm, lambda, Some(0), 1, &mut scratch))
                / (2.0 * h);
            let rel = (fd - g[j]).abs() / g[j].abs().max(1e-3);
            assert!(
                rel < 1e-5,
                "coefficient {j}: analytic {} vs numeric {fd}",
                g[j]
            );
        }
        // One thread and two give the same value and gradient.
        let mut g1 = vec![0.0; w.len()];
        let f1 = loss_grad(&d, c, &w, lambda, Some(0), 1, &mut g1);
        let f2 = loss_grad(&d, c, &w, lambda, Some(0), 2, &mut scratch);
        assert!((f1 - f2).abs() < 1e-12);
        assert!(g1.iter().zip(&g).all(|(a, b)| (a - b).abs() < 1e-12));
    }

    #[test]
    fn lbfgs_reaches_the_same_optimum_as_plain_gradient_descent() {
        let (c, lambda) = (3, 0.02);
        let d = small_problem(48, c, 5);
        let opts = LbfgsOptions {
            gtol: 1e-8,
            ftol: 0.0,
            ..Default::default()
        };
        let (w, report) = fit_design(&d, c, lambda, Some(0), None, &opts, 2);
        assert!(report.converged && report.grad_max <= 1e-8, "{report:?}");
        // Independent optimizer: fixed-step gradient descent until the gradient vanishes.
        let mut x = vec![0.0; d.n_features * c];
        let mut g = vec![0.0; x.len()];
        let mut f;
        let mut steps = 0;
        loop {
            f = loss_grad(&d, c, &x, lambda, Some(0), 1, &mut g);
            let gmax = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            if gmax < 1e-11 || steps == 2_000_000 {
                break;
            }
            for (xi, gi) in x.iter_mut().zip(&g) {
                *xi -= 0.5 * gi;
            }
            steps += 1;
        }
        assert!(steps < 2_000_000, "gradient descent did not converge");
        let rel = (report.objective - f).abs() / f.abs();
        assert!(rel < 1e-9, "L-BFGS {} vs GD {f}", report.objective);
        let ll_gd = {
            let pen: f64 = x[c..].iter().map(|v| v * v).sum();
            -(f - 0.5 * lambda * pen) * d.n_rows() as f64
        };
        assert!(
            (report.loglik - ll_gd).abs() / ll_gd.abs() < 1e-6,
            "LL {} vs {ll_gd}",
            report.loglik
        );
        let dmax = w
            .iter()
            .zip(&x)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(dmax < 1e-7, "coefficients differ by {dmax}");
        eprintln!(
            "L-BFGS: {} iterations, objective {}; GD: {steps} steps, objective {f}",
            report.iterations, report.objective
        );
    }
}
