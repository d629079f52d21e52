//! Post-hoc calibration of any model's label distribution, fitted on the validation split and
//! offered to every model alike.
//!
//! A calibrated distribution is `p'_k ∝ exp(a · log p_k + b · [k = previous label])`, with
//! `p` the model's normalized distribution over the K labels, `a = 1 / temperature` and `b`
//! a stay offset (0 for the temperature-only kind). The negative log-likelihood is convex in
//! `(a, b)` (a multinomial logit in two features), so Newton's method with a backtracking line
//! search finds the minimum in a few iterations. A calibrated model is normalized: its leaked
//! mass is 0 and `logp = logp_norm`.

use serde::{Deserialize, Serialize};

use crate::Person;
use crate::predictions::{Prediction, Predictor};

/// Which parameters are fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum CalibrationKind {
    /// One temperature on the log-probabilities.
    Temperature,
    /// A temperature plus an offset on the previous record's label (the stay/move balance).
    #[default]
    TemperatureStay,
}

impl std::fmt::Display for CalibrationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CalibrationKind::Temperature => "temperature",
            CalibrationKind::TemperatureStay => "temperature-stay",
        })
    }
}

impl std::str::FromStr for CalibrationKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "temperature" => Ok(Self::Temperature),
            "temperature-stay" => Ok(Self::TemperatureStay),
            _ => Err(format!(
                "calibration kind {s:?}: expected temperature or temperature-stay"
            )),
        }
    }
}

/// A fitted calibration and what it was fitted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub kind: CalibrationKind,
    /// `1 / a`.
    pub temperature: f64,
    /// `b` (0 for `temperature`).
    pub stay_offset: f64,
    /// Records it was fitted on.
    pub records: usize,
    /// Mean negative log-likelihood of the normalized distribution on those records, before
    /// and after.
    pub nll_raw: f64,
    pub nll_calibrated: f64,
    pub iterations: usize,
    /// Where the records came from (model, panel, split), for reports.
    #[serde(default)]
    pub fitted_on: String,
}

/// One record to fit on: the model's log-probabilities of the K labels (normalized or not),
/// the true label and the previous record's label.
#[derive(Debug, Clone)]
pub struct CalRecord {
    pub logp: Vec<f64>,
    pub truth: usize,
    pub prev: Option<usize>,
}

/// Log-probabilities far below the maximum are held at this distance: `exp(-1e4)` is 0 in f64,
/// and the gradient stays finite for labels a model gives probability 0.
const FLOOR: f64 = -1e4;

/// `logp` normalized over the K labels (log-sum-exp), each at least [`FLOOR`].
fn normalized(logp: &[f64]) -> Vec<f64> {
    let max = logp.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + logp.iter().map(|&x| (x - max).exp()).sum::<f64>().ln();
    logp.iter().map(|&x| (x - lse).max(FLOOR)).collect()
}

/// The calibrated, normalized log-probabilities under `(a, b)`.
fn apply_ab(z: &[f64], prev: Option<usize>, a: f64, b: f64) -> Vec<f64> {
    let mut u: Vec<f64> = z.iter().map(|&x| a * x).collect();
    if let Some(p) = prev {
        u[p] += b;
    }
    normalized(&u)
}

impl Calibration {
    /// The calibrated log-probabilities of the K labels (normalized) for a record whose
    /// previous label is `prev`.
    pub fn apply(&self, logp: &[f64], prev: Option<usize>) -> Vec<f64> {
        apply_ab(
            &normalized(logp),
            prev,
            1.0 / self.temperature,
            self.stay_offset,
        )
    }

    /// One line for reports.
    pub fn describe(&self) -> String {
        let stay = match self.kind {
            CalibrationKind::Temperature => String::new(),
            CalibrationKind::TemperatureStay => format!(", stay offset {:+.3}", self.stay_offset),
        };
        format!(
            "{}: temperature {:.3}{stay}; mean NLL on {} records {:.4} -> {:.4}",
            self.kind, self.temperature, self.records, self.nll_raw, self.nll_calibrated
        )
    }
}

/// Mean NLL, gradient and Hessian of `(a, b)` over the records (z already normalized).
/// The records of a fit: normalized log-probabilities, truth, previous label.
type Fitted = [(Vec<f64>, usize, Option<usize>)];

fn nll_derivatives(z: &Fitted, a: f64, b: f64) -> (f64, [f64; 2], [f64; 3]) {
    let (mut nll, mut g, mut h) = (0.0, [0.0; 2], [0.0; 3]);
    for (zr, y, prev) in z {
        let lp = apply_ab(zr, *prev, a, b);
        nll -= lp[*y];
        // E[z], E[z²], E[s], E[s²] = E[s], E[zs] under p'.
        let (mut ez, mut ezz) = (0.0, 0.0);
        for (x, l) in zr.iter().zip(&lp) {
            let p = l.exp();
            ez += p * x;
            ezz += p * x * x;
        }
        let (es, ezs) = match prev {
            Some(k) => {
                let p = lp[*k].exp();
                (p, p * zr[*k])
            }
            None => (0.0, 0.0),
        };
        let sy = if *prev == Some(*y) { 1.0 } else { 0.0 };
        g[0] += ez - zr[*y];
        g[1] += es - sy;
        h[0] += ezz - ez * ez;
        h[1] += ezs - ez * es;
        h[2] += es - es * es;
    }
    let n = z.len().max(1) as f64;
    (
        nll / n,
        [g[0] / n, g[1] / n],
        [h[0] / n, h[1] / n, h[2] / n],
    )
}

/// Fits a calibration of `kind` by minimizing the mean NLL over `records` (Newton's method on
/// `(a, b)` from `(1, 0)`, backtracking so that every step lowers the NLL and keeps `a > 0`).
pub fn fit(records: &[CalRecord], kind: CalibrationKind) -> Result<Calibration, String> {
    if records.is_empty() {
        return Err("calibration needs at least one record".into());
    }
    let k = records[0].logp.len();
    let z: Vec<(Vec<f64>, usize, Option<usize>)> = records
        .iter()
        .map(|r| {
            if r.logp.len() != k || r.truth >= k || r.prev.is_some_and(|p| p >= k) {
                return Err(format!(
                    "calibration records must all have {k} log-probabilities and labels below it"
                ));
            }
            Ok((normalized(&r.logp), r.truth, r.prev))
        })
        .collect::<Result<_, String>>()?;
    let stay = kind == CalibrationKind::TemperatureStay;
    let (mut a, mut b) = (1.0f64, 0.0f64);
    let (raw, ..) = nll_derivatives(&z, a, b);
    let mut cur = raw;
    let mut iterations = 0;
    for _ in 0..50 {
        iterations += 1;
        let (_, g, h) = nll_derivatives(&z, a, b);
        // The Newton direction (a ridge keeps a flat direction from blowing up).
        let (da, db) = if stay {
            let (h00, h01, h11) = (h[0] + 1e-9, h[1], h[2] + 1e-9);
            let det = h00 * h11 - h01 * h01;
            if det.abs() < 1e-15 {
                (-g[0] / h00, 0.0)
            } else {
                (
                    -(h11 * g[0] - h01 * g[1]) / det,
                    -(h00 * g[1] - h01 * g[0]) / det,
                )
            }
        } else {
            (-g[0] / (h[0] + 1e-9), 0.0)
        };
        let mut step = 1.0;
        let mut moved = false;
        while step > 1e-6 {
            let (na, nb) = (a + step * da, b + step * db);
            if na > 1e-3 {
                let (v, ..) = nll_derivatives(&z, na, nb);
                if v.is_finite() && v <= cur {
                    moved = cur - v > 1e-12;
                    a = na;
                    b = nb;
                    cur = v;
                    break;
                }
            }
            step *= 0.5;
        }
        let gnorm = g[0].abs() + if stay { g[1].abs() } else { 0.0 };
        if !moved || gnorm < 1e-9 {
            break;
        }
    }
    Ok(Calibration {
        kind,
        temperature: 1.0 / a,
        stay_offset: b,
        records: records.len(),
        nll_raw: raw,
        nll_calibrated: cur,
        iterations,
        fitted_on: String::new(),
    })
}

/// A predictor with a calibration applied to every distribution it gives.
pub struct Calibrated<'a> {
    pub inner: &'a mut dyn Predictor,
    pub calibration: &'a Calibration,
}

impl Predictor for Calibrated<'_> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn predict(&mut self, person: &Person, ts: &[usize]) -> Result<Prediction, String> {
        let mut pred = self.inner.predict(person, ts)?;
        for (&t, lp) in ts.iter().zip(pred.logp.iter_mut()) {
            let prev = (t > 0).then(|| person.records[t - 1].label.index());
            *lp = self.calibration.apply(lp, prev);
        }
        Ok(pred)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// Records drawn from a known calibrated model: the truth is sampled from
    /// `softmax(a* z + b* [k = prev])` for random `z`; the fit recovers `(a*, b*)`.
    fn sample(n: usize, a: f64, b: f64, seed: u64) -> Vec<CalRecord> {
        let mut rng = SplitMix64::new(seed);
        (0..n)
            .map(|i| {
                let z: Vec<f64> = (0..6).map(|_| 3.0 * rng.uniform_open()).collect();
                let prev = (i % 5 != 0).then(|| rng.modulo(6) as usize);
                let lp = apply_ab(&normalized(&z), prev, a, b);
                let u = rng.uniform_open();
                let (mut acc, mut y) = (0.0, 5);
                for (k, l) in lp.iter().enumerate() {
                    acc += l.exp();
                    if u < acc {
                        y = k;
                        break;
                    }
                }
                CalRecord {
                    logp: z,
                    truth: y,
                    prev,
                }
            })
            .collect()
    }

    #[test]
    fn fit_recovers_a_known_temperature_and_stay_offset() {
        let recs = sample(20_000, 0.5, 1.2, 3);
        let c = fit(&recs, CalibrationKind::TemperatureStay).unwrap();
        assert!((c.temperature - 2.0).abs() < 0.15, "{c:?}");
        assert!((c.stay_offset - 1.2).abs() < 0.1, "{c:?}");
        assert!(c.nll_calibrated < c.nll_raw);
        // At the optimum the gradient vanishes: any nearby (a, b) is no better.
        let z: Vec<_> = recs
            .iter()
            .map(|r| (normalized(&r.logp), r.truth, r.prev))
            .collect();
        let a = 1.0 / c.temperature;
        for (da, db) in [(0.01, 0.0), (-0.01, 0.0), (0.0, 0.01), (0.0, -0.01)] {
            let (v, ..) = nll_derivatives(&z, a + da, c.stay_offset + db);
            assert!(v >= c.nll_calibrated - 1e-12, "({da}, {db}): {v}");
        }
        let t = fit(&recs, CalibrationKind::Temperature).unwrap();
        assert_eq!(t.stay_offset, 0.0);
        assert!(t.nll_calibrated >= c.nll_calibrated);
        assert!(t.nll_calibrated <= t.nll_raw);
    }

    #[test]
    fn a_calibrated_model_is_unchanged_and_applying_normalizes() {
        let recs = sample(5_000, 1.0, 0.0, 9);
        let c = fit(&recs, CalibrationKind::TemperatureStay).unwrap();
        assert!(
            (c.temperature - 1.0).abs() < 0.1 && c.stay_offset.abs() < 0.15,
            "{c:?}"
        );
        // Unnormalized input (an LM's leaked mass) comes out normalized.
        let lp = [-1.0f64, -2.0, -3.0, f64::NEG_INFINITY];
        let out = c.apply(&lp, Some(1));
        let total: f64 = out.iter().map(|l| l.exp()).sum();
        assert!((total - 1.0).abs() < 1e-12);
        assert_eq!(out[3].exp(), 0.0);
    }
}
