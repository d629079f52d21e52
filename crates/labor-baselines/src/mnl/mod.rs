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

use std::io::{Read, Write};
use std::time::Instant;

use labor_data::predictions::{Prediction, Predictor};
use labor_data::{Panel, Person, Split, SplitSpec, Taxonomy};
use serde::{Deserialize, Serialize};

use crate::features::{Design, FeatureSpec, NO_CLASS};
use crate::lbfgs::{LbfgsOptions, minimize};

mod kernel;
use kernel::sigmoid;
pub use kernel::{binary_loss_grad, loss_grad};

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
    fit_with(design, n_classes, lambda, unpenalized, w0, lbfgs, |w, g| {
        loss_grad(design, n_classes, w, lambda, unpenalized, threads, g)
    })
}

/// Fits the binary logit v ([`binary_loss_grad`]) on `design` for one λ from `v0` (zeros when
/// `None`); the report counts 2 classes.
pub fn fit_binary(
    design: &Design,
    lambda: f64,
    unpenalized: Option<usize>,
    v0: Option<Vec<f64>>,
    lbfgs: &LbfgsOptions,
    threads: usize,
) -> (Vec<f64>, FitReport) {
    let (v, mut report) = fit_with(design, 1, lambda, unpenalized, v0, lbfgs, |v, g| {
        binary_loss_grad(design, v, lambda, unpenalized, threads, g)
    });
    report.n_classes = 2;
    (v, report)
}

fn fit_with<F>(
    design: &Design,
    width: usize,
    lambda: f64,
    unpenalized: Option<usize>,
    w0: Option<Vec<f64>>,
    lbfgs: &LbfgsOptions,
    f: F,
) -> (Vec<f64>, FitReport)
where
    F: FnMut(&[f64], &mut [f64]) -> f64,
{
    let start = Instant::now();
    let x0 = w0.unwrap_or_else(|| vec![0.0; design.n_features * width]);
    let r = minimize(f, x0, lbfgs);
    let penalty: f64 =
        r.x.iter()
            .enumerate()
            .filter(|(j, _)| Some(j / width) != unpenalized)
            .map(|(_, w)| w * w)
            .sum();
    let n = design.n_rows();
    let report = FitReport {
        lambda,
        n_obs: n,
        n_features: design.n_features,
        n_classes: width,
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

/// The design of the persons of `split` (rows in person, record order). Records whose label is
/// not among `classes` are skipped (they never occur in the training split).
pub fn design_for(
    panel: &Panel,
    spec: &SplitSpec,
    split: Split,
    features: &FeatureSpec,
    classes: &[u32],
) -> Design {
    let class_of = class_lookup(panel.taxonomy.len(), classes);
    let mut d = Design::new(features.n_features());
    let mut buf = Vec::new();
    for p in panel.persons.iter().filter(|p| p.split_or(spec) == split) {
        for (t, r) in p.records.iter().enumerate() {
            let y = class_of[r.label.index()];
            if y != NO_CLASS {
                features.encode(p, t, &mut buf);
                d.push(&buf, y);
            }
        }
    }
    d
}

fn class_lookup(k: usize, classes: &[u32]) -> Vec<u32> {
    let mut class_of = vec![NO_CLASS; k];
    for (c, &l) in classes.iter().enumerate() {
        class_of[l as usize] = c as u32;
    }
    class_of
}

/// The two designs of the two-stage form for the persons of `split`: the stay design (every
/// record with a previous one; y = 1 when its label equals the previous label) and the move
/// design (first records over all classes, and records that changed label, whose softmax leaves
/// out the previous label). Moves to labels outside `classes` are skipped.
pub fn two_stage_designs(
    panel: &Panel,
    spec: &SplitSpec,
    split: Split,
    features: &FeatureSpec,
    classes: &[u32],
) -> (Design, Design) {
    let class_of = class_lookup(panel.taxonomy.len(), classes);
    let mut stay = Design::new(features.n_features());
    let mut moves = Design::new(features.n_features());
    let mut buf = Vec::new();
    for p in panel.persons.iter().filter(|p| p.split_or(spec) == split) {
        for (t, r) in p.records.iter().enumerate() {
            features.encode(p, t, &mut buf);
            let prev = (t > 0).then(|| p.records[t - 1].label);
            if let Some(prev) = prev {
                stay.push(&buf, (prev == r.label) as u32);
                if prev == r.label {
                    continue;
                }
            }
            let y = class_of[r.label.index()];
            if y != NO_CLASS {
                let e = prev.map_or(NO_CLASS, |l| class_of[l.index()]);
                moves.push_excluding(&buf, y, e);
            }
        }
    }
    (stay, moves)
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

/// Fits the stay stage for each λ of `opts.stay_lambdas` (largest first, warm-started) and keeps
/// the one with the best mean validation log-likelihood of stay/move.
fn fit_stay(train: &Design, valid: &Design, bias: usize, opts: &MnlOptions) -> Stay {
    let mut lambdas = opts.stay_lambdas.clone();
    lambdas.sort_by(|a, b| b.total_cmp(a));
    let mut search = Vec::new();
    let mut best: Option<(f64, Vec<f64>, FitReport)> = None;
    let mut warm = None;
    let mut scratch = vec![0.0; train.n_features];
    for &lambda in &lambdas {
        let (v, report) = fit_binary(
            train,
            lambda,
            Some(bias),
            warm.take(),
            &opts.lbfgs,
            opts.threads,
        );
        let ll = -binary_loss_grad(valid, &v, 0.0, None, opts.threads, &mut scratch);
        search.push(LambdaRow {
            lambda,
            epsilon: 0.0,
            valid_mean_logp: ll,
            fit: report.clone(),
        });
        if best.as_ref().is_none_or(|b| ll > b.0) {
            best = Some((ll, v.clone(), report));
        }
        warm = Some(v);
    }
    let (_, v, report) = best.expect("non-empty grid");
    Stay { v, report, search }
}

fn empty_report() -> FitReport {
    FitReport {
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
    }
}

impl Mnl {
    /// Fits on the training persons, choosing the penalties and ε on the validation persons.
    /// Two-stage form: the stay stage first (its λ by the validation log-likelihood of
    /// stay/move), then the softmax (λ and ε by the validation log-likelihood of the labels).
    pub fn fit(panel: &Panel, spec: &SplitSpec, opts: &MnlOptions) -> Result<Self, String> {
        if opts.lambdas.is_empty() || opts.epsilons.is_empty() {
            return Err("MNL: empty λ or ε grid".into());
        }
        if opts.two_stage && opts.stay_lambdas.is_empty() {
            return Err("MNL: empty stay λ grid".into());
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
        let mut model = Mnl {
            features,
            classes,
            w: Vec::new(),
            unigram,
            epsilon: opts.epsilons[0],
            report: empty_report(),
            search: Vec::new(),
            stay: None,
        };
        let train = if opts.two_stage {
            let (stay_train, moves) =
                two_stage_designs(panel, spec, Split::Train, &model.features, &model.classes);
            let (stay_valid, _) =
                two_stage_designs(panel, spec, Split::Valid, &model.features, &model.classes);
            model.stay = Some(fit_stay(
                &stay_train,
                &stay_valid,
                model.features.bias(),
                opts,
            ));
            moves
        } else {
            design_for(panel, spec, Split::Train, &model.features, &model.classes)
        };
        let valid: Vec<&Person> = panel
            .persons
            .iter()
            .filter(|p| p.split_or(spec) == Split::Valid)
            .collect();
        let mut lambdas = opts.lambdas.clone();
        lambdas.sort_by(|a, b| b.total_cmp(a));
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
            // (p_model(true), p_freq(true)) per validation record.
            let mut pairs = Vec::new();
            for p in &valid {
                for t in 0..p.records.len() {
                    let y = p.records[t].label.index();
                    pairs.push((model.probs(p, t)[y], model.unigram[y]));
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
