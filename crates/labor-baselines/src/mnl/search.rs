//! Fitting the multinomial logit: the designs of a split (one-stage, or the stay and move
//! designs of the two-stage form), one L-BFGS fit per penalty, and the validation search over
//! the penalties and the label-frequency mixture.

use std::time::Instant;

use labor_data::{Panel, Person, Split, SplitSpec};
use serde::{Deserialize, Serialize};

use super::kernel::{binary_loss_grad, loss_grad};
use super::{Mnl, MnlOptions, Stay};
use crate::features::{Design, FeatureSpec, NO_CLASS};
use crate::lbfgs::{LbfgsOptions, minimize};

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
}
