//! Comparison models (SPEC §6) that predict the next label from counts or a linear model:
//! the empirical Markov model of order 1 and 2 ([`markov`]) and the multinomial logit
//! ([`mnl`], one-stage or two-stage (stay / move), on the observation encoding of [`features`],
//! fitted by [`lbfgs`]).
//!
//! Every model implements [`labor_data::predictions::Predictor`]. Like the other core crates,
//! this one does no file-system I/O: models are (de)serialized from and to streams.

pub mod features;
pub mod lbfgs;
pub mod markov;
pub mod mnl;

use labor_data::predictions::Predictor;
use labor_data::{Panel, Split, SplitSpec};

/// The file a fitted model is stored in inside its model directory.
pub const MODEL_FILE: &str = "model.json";

/// Natural log of the sum of exponentials, stable.
pub fn logsumexp(x: &[f64]) -> f64 {
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + x.iter().map(|&v| (v - max).exp()).sum::<f64>().ln()
}

/// Sums of the true label's log-probability over the records of `split`, with counts:
/// (all records, transitions t ≥ 2).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LogLik {
    pub all: f64,
    pub n_all: usize,
    pub transitions: f64,
    pub n_transitions: usize,
}

impl LogLik {
    /// exp(−mean log p) over all records.
    pub fn perplexity_all(&self) -> f64 {
        (-self.all / self.n_all.max(1) as f64).exp()
    }
    /// exp(−mean log p) over records with t ≥ 2.
    pub fn perplexity_transitions(&self) -> f64 {
        (-self.transitions / self.n_transitions.max(1) as f64).exp()
    }
    pub fn add(&mut self, t: usize, logp: f64) {
        self.all += logp;
        self.n_all += 1;
        if t > 0 {
            self.transitions += logp;
            self.n_transitions += 1;
        }
    }
}

/// Scores every record of the persons of `split` with `model`.
pub fn evaluate(
    model: &mut dyn Predictor,
    panel: &Panel,
    spec: &SplitSpec,
    split: Split,
) -> Result<LogLik, String> {
    let mut ll = LogLik::default();
    for p in panel.persons.iter().filter(|p| p.split_or(spec) == split) {
        let ts: Vec<usize> = (0..p.records.len()).collect();
        let pred = model.predict(p, &ts)?;
        for (&t, lp) in ts.iter().zip(&pred.logp) {
            ll.add(t, lp[p.records[t].label.index()]);
        }
    }
    Ok(ll)
}
