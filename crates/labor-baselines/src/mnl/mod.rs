//! The multinomial logit (SPEC §6) on the encoding of [`crate::features`], in two forms.
//!
//! **One-stage**: P(k | x) = softmax_k(Σ_f x_f W[f, k]) over the labels seen in training (the
//! model's classes).
//!
//! **Two-stage** (the default, [`MnlOptions::two_stage`]): for records after the first,
//! P(stay in the previous label) = σ(x·v), a binary logit on the same features (its `last=CODE`
//! coefficient is label CODE's own stay effect), and the remaining mass is shared by a softmax of
//! x·W over the classes other than the previous label; at the first record, the softmax over all
//! classes. The log-likelihood is a sum of a stay/move part (v) and a label part (W), so the two
//! stages are fitted separately, each with its own penalty.
//!
//! Each softmax (or binary logit) is fitted by minimizing
//!
//!   L(W) = (1/n) Σ_i −log P(y_i | x_i) + (λ/2) Σ_{f ≠ bias} Σ_k W[f, k]²
//!
//! over its rows with L-BFGS and the analytic gradient (1/n) Σ_i x_i (p_i − e_{y_i}) + λ W,
//! evaluated on `threads` threads. This is scikit-learn's `LogisticRegression(C = 1 / (λ n),
//! fit_intercept = True)` objective divided by n (its intercept is not penalized either);
//! see `tools/reference/mnl_reference.py` and `scripts/bench-mnl.sh`.
//!
//! λ is chosen on the validation persons from a grid (largest first, each fit warm-started from
//! the previous); in the two-stage form the stay stage's λ comes first, from its own grid, by the
//! validation log-likelihood of staying or moving. Predictions mix in a little of the add-one
//! label frequencies, p = (1 − ε) p_mnl + ε p_freq, so labels never seen in training keep a
//! positive probability; ε is chosen on validation with the softmax's λ.
//!
//! Modules: `kernel` (the loss and gradient of the softmax and the binary logit), `search` (the
//! designs, one fit per penalty, the validation search: [`Mnl::fit`]); this one holds the model,
//! its predictions and its files.

use std::io::{Read, Write};

use labor_data::predictions::{Prediction, Predictor};
use labor_data::{Person, Taxonomy};
use serde::{Deserialize, Serialize};

use crate::features::FeatureSpec;
use crate::lbfgs::LbfgsOptions;

mod kernel;
mod search;
use kernel::sigmoid;
pub use kernel::{binary_loss_grad, loss_grad};
pub use search::{
    FitReport, LambdaRow, design_for, fit_binary, fit_design, training_classes, two_stage_designs,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MnlOptions {
    /// Two-stage form: a binary logit for staying in the previous label and a softmax over the
    /// other labels for moves (and over all labels at t = 1). `false`: one softmax.
    pub two_stage: bool,
    /// Candidate penalties of the softmax, searched from the largest.
    pub lambdas: Vec<f64>,
    /// Candidate penalties of the stay stage (two-stage form), chosen separately.
    pub stay_lambdas: Vec<f64>,
    /// Candidate weights of the label-frequency mixture.
    pub epsilons: Vec<f64>,
    pub lbfgs: LbfgsOptions,
    pub threads: usize,
}

impl Default for MnlOptions {
    fn default() -> Self {
        Self {
            two_stage: true,
            lambdas: vec![1e-3, 1e-4, 1e-5],
            stay_lambdas: vec![1e-2, 1e-3, 1e-4, 1e-5, 1e-6],
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

/// A fitted multinomial logit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mnl {
    pub features: FeatureSpec,
    /// The label id of each class (labels seen in training), increasing.
    pub classes: Vec<u32>,
    /// W, row-major `[n_features][n_classes]`: the one-stage softmax, or in the two-stage form
    /// the softmax of t = 1 and of moves (over the classes other than the previous label).
    pub w: Vec<f64>,
    /// Add-one smoothed training label frequencies over all K labels.
    pub unigram: Vec<f64>,
    pub epsilon: f64,
    /// The fit of `w`.
    pub report: FitReport,
    /// The λ search of `w`.
    pub search: Vec<LambdaRow>,
    /// The stay stage of the two-stage form (`None`: one-stage).
    #[serde(default)]
    pub stay: Option<Stay>,
}

/// The stay stage of the two-stage MNL: P(label_t = label_{t−1}) = σ(x·v) for t ≥ 2 (records
/// t ≥ 1 counted from 0), on the same features as the softmax, so `last=CODE` is the stay
/// effect of label CODE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stay {
    /// v, one coefficient per feature.
    pub v: Vec<f64>,
    pub report: FitReport,
    /// Each λ tried, with the mean validation log-likelihood of the stay/move outcome.
    pub search: Vec<LambdaRow>,
}

impl Mnl {
    /// The training log-likelihood of the labels (both stages in the two-stage form).
    pub fn train_loglik(&self) -> f64 {
        self.report.loglik + self.stay.as_ref().map_or(0.0, |s| s.report.loglik)
    }

    /// The softmax over the model's classes for record `t` of `person` (one-stage form, or the
    /// first stage-free softmax of the two-stage form with no class left out).
    pub fn mnl_probs(&self, person: &Person, t: usize) -> Vec<f64> {
        let mut buf = Vec::new();
        self.features.encode(person, t, &mut buf);
        self.softmax(&buf, None)
    }

    fn softmax(&self, x: &[(u32, f64)], exclude: Option<usize>) -> Vec<f64> {
        let c = self.classes.len();
        let mut z = vec![0.0; c];
        for &(f, v) in x {
            for (zk, wk) in z
                .iter_mut()
                .zip(&self.w[f as usize * c..(f as usize + 1) * c])
            {
                *zk += v * wk;
            }
        }
        if let Some(e) = exclude {
            z[e] = f64::NEG_INFINITY;
        }
        let lse = crate::logsumexp(&z);
        z.iter_mut().for_each(|v| *v = (*v - lse).exp());
        z
    }

    /// The model's probabilities of the K labels for record `t` of `person`, before the
    /// label-frequency mixture (zero for labels outside the classes, except the previous label
    /// in the two-stage form, which gets the stay probability).
    pub fn probs(&self, person: &Person, t: usize) -> Vec<f64> {
        let mut buf = Vec::new();
        self.features.encode(person, t, &mut buf);
        let mut p = vec![0.0; self.unigram.len()];
        match (&self.stay, t) {
            (Some(stay), 1..) => {
                let prev = person.records[t - 1].label.index();
                let e = self.classes.binary_search(&(prev as u32)).ok();
                let mut p_stay = sigmoid(buf.iter().map(|&(f, x)| x * stay.v[f as usize]).sum());
                if e.is_some() && self.classes.len() == 1 {
                    p_stay = 1.0; // no other label to move to
                } else {
                    let q = self.softmax(&buf, e);
                    for (&l, qk) in self.classes.iter().zip(&q) {
                        p[l as usize] = (1.0 - p_stay) * qk;
                    }
                }
                p[prev] += p_stay;
            }
            _ => {
                let q = self.softmax(&buf, None);
                for (&l, qk) in self.classes.iter().zip(&q) {
                    p[l as usize] = *qk;
                }
            }
        }
        p
    }

    /// The natural-log probabilities of the K labels for record `t` of `person`.
    pub fn log_dist(&self, person: &Person, t: usize) -> Vec<f64> {
        self.probs(person, t)
            .iter()
            .zip(&self.unigram)
            .map(|(p, u)| ((1.0 - self.epsilon) * p + self.epsilon * u).ln())
            .collect()
    }

    /// The coefficients as CSV: `block,feature,label_code,coefficient`. Block `mnl` (one-stage)
    /// or `move` (two-stage) has every (feature, class) pair of the softmax, in feature order,
    /// then class order (the logit of moving to `label_code`; in `move`, the pairs with
    /// `feature = last=label_code` are unused and zero); block `stay` (two-stage) has one row per
    /// feature with an empty `label_code`: its contribution to the logit of staying in the
    /// previous label (`last=CODE`: label CODE's own stay effect).
    pub fn write_coefficients<W: Write>(&self, mut w: W) -> std::io::Result<()> {
        let names = self.features.names();
        let c = self.classes.len();
        let block = if self.stay.is_some() { "move" } else { "mnl" };
        writeln!(w, "block,feature,label_code,coefficient")?;
        for (f, name) in names.iter().enumerate() {
            for (k, &l) in self.classes.iter().enumerate() {
                writeln!(
                    w,
                    "{block},{},{},{}",
                    csv_field(name),
                    csv_field(&self.features.codes[l as usize]),
                    self.w[f * c + k]
                )?;
            }
        }
        if let Some(stay) = &self.stay {
            for (name, v) in names.iter().zip(&stay.v) {
                writeln!(w, "stay,{},,{v}", csv_field(name))?;
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
        if m.w.len() != m.features.n_features() * m.classes.len()
            || m.stay
                .as_ref()
                .is_some_and(|s| s.v.len() != m.features.n_features())
        {
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
    use super::kernel::*;
    use super::*;
    use crate::features::{Design, NO_CLASS};

    /// Uniform [0, 1) draws.
    struct Rng(labor_data::rng::SplitMix64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0.uniform()
        }
    }

    /// Bias, a 3-level one-hot, a 2-level one-hot and two real values; labels depend on them.
    fn small_problem(n: usize, classes: usize, seed: u64) -> Design {
        let mut rng = Rng(labor_data::rng::SplitMix64::new(seed));
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

    /// The small problem with every row's softmax leaving out one class other than its label
    /// (the two-stage move design), some rows leaving out none (t = 1).
    fn small_move_problem(n: usize, classes: usize, seed: u64) -> Design {
        let d = small_problem(n, classes, seed);
        let mut m = Design::new(d.n_features);
        for i in 0..d.n_rows() {
            let (idx, val) = d.row(i);
            let entries: Vec<(u32, f64)> = idx.iter().copied().zip(val.iter().copied()).collect();
            let y = d.y[i];
            let e = if i % 5 == 0 {
                NO_CLASS
            } else {
                (y + 1 + (i as u32 % (classes as u32 - 1))) % classes as u32
            };
            m.push_excluding(&entries, y, e);
        }
        m
    }

    /// The small problem with y = 1 when the label was 0 (the stay design).
    fn small_binary_problem(n: usize, seed: u64) -> Design {
        let mut d = small_problem(n, 3, seed);
        d.y.iter_mut().for_each(|y| *y = (*y == 0) as u32);
        d
    }

    /// Checks `loss_grad(w)`'s gradient against central differences (1e-5 relative), and that one
    /// thread and two agree.
    /// An objective: (coefficients, threads, gradient out) → value.
    type Objective<'a> = &'a dyn Fn(&[f64], usize, &mut [f64]) -> f64;

    fn check_gradient(n_coef: usize, seed: u64, f: Objective) {
        let mut rng = Rng(labor_data::rng::SplitMix64::new(seed));
        let w: Vec<f64> = (0..n_coef).map(|_| rng.next() * 2.0 - 1.0).collect();
        let mut g = vec![0.0; w.len()];
        f(&w, 2, &mut g);
        let mut scratch = vec![0.0; w.len()];
        let h = 1e-5;
        for j in 0..w.len() {
            let (mut wp, mut wm) = (w.clone(), w.clone());
            wp[j] += h;
            wm[j] -= h;
            let fd = (f(&wp, 1, &mut scratch) - f(&wm, 1, &mut scratch)) / (2.0 * h);
            let rel = (fd - g[j]).abs() / g[j].abs().max(1e-3);
            assert!(
                rel < 1e-5,
                "coefficient {j}: analytic {} vs numeric {fd}",
                g[j]
            );
        }
        // One thread and two give the same value and gradient.
        let mut g1 = vec![0.0; w.len()];
        let f1 = f(&w, 1, &mut g1);
        let f2 = f(&w, 2, &mut scratch);
        assert!((f1 - f2).abs() < 1e-12);
        assert!(g1.iter().zip(&g).all(|(a, b)| (a - b).abs() < 1e-12));
    }

    #[test]
    fn fast_exp_matches_the_standard_library() {
        let mut worst = 0.0f64;
        let mut x = 0.0;
        while x > -707.9 {
            let rel = (exp_nonpositive(x) - x.exp()).abs() / x.exp();
            worst = worst.max(rel);
            x -= 0.000_731_9;
        }
        for x in [
            0.0,
            -1e-300,
            -0.5,
            -0.34657359,
            -0.34657360,
            -700.0,
            -707.99,
        ] {
            let rel = (exp_nonpositive(x) - x.exp()).abs() / x.exp();
            worst = worst.max(rel);
        }
        assert!(worst < 1e-15, "worst relative error {worst}");
        assert_eq!(exp_nonpositive(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpositive(-800.0), 0.0);
        let mut z = vec![-1.0, 0.0, -2.0, f64::NEG_INFINITY, -0.5, -3.0, -9.0];
        let sum = exp_shifted(&mut z, max_of(&[-1.0, 0.0, -2.0, -0.5]));
        let want: f64 = [-1.0f64, 0.0, -2.0, -0.5, -3.0, -9.0]
            .iter()
            .map(|v| v.exp())
            .sum();
        assert!((sum - want).abs() < 1e-15 && z[3] == 0.0);
    }

    #[test]
    fn gradient_equals_central_finite_differences() {
        let (c, lambda) = (4, 0.05);
        let d = small_problem(37, c, 1);
        check_gradient(d.n_features * c, 9, &|w, th, g| {
            loss_grad(&d, c, w, lambda, Some(0), th, g)
        });
    }

    #[test]
    fn two_stage_gradients_equal_central_finite_differences() {
        let (c, lambda) = (4, 0.05);
        let moves = small_move_problem(41, c, 2);
        assert_eq!(moves.exclude.len(), moves.n_rows());
        check_gradient(moves.n_features * c, 10, &|w, th, g| {
            loss_grad(&moves, c, w, lambda, Some(0), th, g)
        });
        let stay = small_binary_problem(39, 3);
        check_gradient(stay.n_features, 11, &|v, th, g| {
            binary_loss_grad(&stay, v, lambda, Some(0), th, g)
        });
    }

    /// Fixed-step gradient descent until the largest gradient component is below 1e-11.
    fn gradient_descent(
        n_coef: usize,
        step: f64,
        f: &dyn Fn(&[f64], &mut [f64]) -> f64,
    ) -> (Vec<f64>, f64) {
        let mut x = vec![0.0; n_coef];
        let mut g = vec![0.0; x.len()];
        let mut steps = 0;
        loop {
            let fx = f(&x, &mut g);
            let gmax = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            if gmax < 1e-11 {
                eprintln!("GD: {steps} steps, objective {fx}");
                return (x, fx);
            }
            assert!(steps < 2_000_000, "gradient descent did not converge");
            for (xi, gi) in x.iter_mut().zip(&g) {
                *xi -= step * gi;
            }
            steps += 1;
        }
    }

    /// The L-BFGS fit's objective, log-likelihood and coefficients against gradient descent's.
    fn check_against_gd(
        w: &[f64],
        report: &FitReport,
        width: usize,
        n: usize,
        lambda: f64,
        gd: (Vec<f64>, f64),
    ) {
        let (x, f) = gd;
        // Asked for 1e-8; L-BFGS may stop a little above when no step lowers f in floating point.
        assert!(report.converged && report.grad_max <= 1e-7, "{report:?}");
        let rel = (report.objective - f).abs() / f.abs();
        assert!(rel < 1e-9, "L-BFGS {} vs GD {f}", report.objective);
        let pen: f64 = x[width..].iter().map(|v| v * v).sum();
        let ll_gd = -(f - 0.5 * lambda * pen) * n as f64;
        assert!(
            (report.loglik - ll_gd).abs() / ll_gd.abs() < 1e-6,
            "LL {} vs {ll_gd}",
            report.loglik
        );
        let dmax = w
            .iter()
            .zip(&x)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        // max|∇| ≤ 1e-7 with curvature ≥ λ = 0.02 bounds the distance to the optimum.
        assert!(dmax < 1e-5, "coefficients differ by {dmax}");
        eprintln!(
            "L-BFGS: {} iterations, objective {}, LL {}",
            report.iterations, report.objective, report.loglik
        );
    }

    fn tight() -> LbfgsOptions {
        LbfgsOptions {
            gtol: 1e-8,
            ftol: 0.0,
            ..Default::default()
        }
    }

    #[test]
    fn lbfgs_reaches_the_same_optimum_as_plain_gradient_descent() {
        let (c, lambda) = (3, 0.02);
        let d = small_problem(48, c, 5);
        let (w, report) = fit_design(&d, c, lambda, Some(0), None, &tight(), 2);
        let gd = gradient_descent(d.n_features * c, 0.5, &|x, g| {
            loss_grad(&d, c, x, lambda, Some(0), 1, g)
        });
        check_against_gd(&w, &report, c, d.n_rows(), lambda, gd);
    }

    #[test]
    fn two_stage_fits_reach_the_same_optimum_as_plain_gradient_descent() {
        let (c, lambda) = (4, 0.02);
        let moves = small_move_problem(52, c, 6);
        let (w, report) = fit_design(&moves, c, lambda, Some(0), None, &tight(), 2);
        let gd = gradient_descent(moves.n_features * c, 0.5, &|x, g| {
            loss_grad(&moves, c, x, lambda, Some(0), 1, g)
        });
        check_against_gd(&w, &report, c, moves.n_rows(), lambda, gd);
        let stay = small_binary_problem(45, 7);
        let (v, report) = fit_binary(&stay, lambda, Some(0), None, &tight(), 2);
        assert_eq!(report.n_classes, 2);
        let gd = gradient_descent(stay.n_features, 0.5, &|x, g| {
            binary_loss_grad(&stay, x, lambda, Some(0), 1, g)
        });
        check_against_gd(&v, &report, 1, stay.n_rows(), lambda, gd);
    }
}
