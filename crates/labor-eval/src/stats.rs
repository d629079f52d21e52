//! The statistics every table is made of: a seeded generator for bootstrap resampling,
//! quantiles, binary log-loss, AUC with ties, and reliability bins — each with weights.

/// The bootstrap's only source of randomness (so a seed fixes every interval).
pub use labor_data::rng::SplitMix64;

/// Bootstrap resamples of `n` clusters (persons): `b` vectors of multiplicities, each summing
/// to `n`. The same resamples serve every model of a dataset, so comparisons are paired.
pub fn resample_counts(n: usize, b: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = SplitMix64::new(seed);
    (0..b)
        .map(|_| {
            let mut c = vec![0u32; n];
            for _ in 0..n {
                c[rng.below(n)] += 1;
            }
            c
        })
        .collect()
}

/// The `q` quantile (0 ≤ q ≤ 1) of `v` by linear interpolation between order statistics
/// (type 7, as R's and NumPy's default). NaNs are ignored; `None` when nothing is left.
pub fn quantile(v: &[f64], q: f64) -> Option<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let h = (s.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    Some(s[lo] + (h - lo as f64) * (s[hi] - s[lo]))
}

/// The 95% percentile interval of bootstrap replicates.
pub fn interval95(v: &[f64]) -> Option<(f64, f64)> {
    Some((quantile(v, 0.025)?, quantile(v, 0.975)?))
}

/// Probabilities are clipped to [ε, 1 − ε] in log-losses so one confident miss is a large but
/// finite penalty.
pub const CLIP: f64 = 1e-15;

/// Weighted binary log-loss: −Σ w (y ln p + (1 − y) ln(1 − p)) / Σ w.
pub fn log_loss(y: &[bool], p: &[f64], w: &[f64]) -> f64 {
    let (mut s, mut sw) = (0.0, 0.0);
    for ((&y, &p), &w) in y.iter().zip(p).zip(w) {
        let p = p.clamp(CLIP, 1.0 - CLIP);
        s -= w * if y { p.ln() } else { (1.0 - p).ln() };
        sw += w;
    }
    s / sw
}

/// Weighted area under the ROC curve: the probability that a random positive scores above a
/// random negative, ties counting one half (the Mann–Whitney statistic). `None` without both
/// classes.
pub fn auc(y: &[bool], p: &[f64], w: &[f64]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let (mut neg_below, mut num) = (0.0, 0.0);
    let (mut pos_total, mut neg_total) = (0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        let (mut pos, mut neg) = (0.0, 0.0);
        while j < idx.len() && p[idx[j]] == p[idx[i]] {
            if y[idx[j]] {
                pos += w[idx[j]];
            } else {
                neg += w[idx[j]];
            }
            j += 1;
        }
        num += pos * neg_below + 0.5 * pos * neg;
        neg_below += neg;
        pos_total += pos;
        neg_total += neg;
        i = j;
    }
    (pos_total > 0.0 && neg_total > 0.0).then(|| num / (pos_total * neg_total))
}

/// One bin of a reliability curve.
#[derive(Debug, Clone, PartialEq)]
pub struct Bin {
    pub lo: f64,
    pub hi: f64,
    /// Number of observations (unweighted) and their total weight.
    pub n: usize,
    pub weight: f64,
    pub mean_pred: f64,
    pub observed: f64,
}

/// Reliability curve: `bins` equal-width bins of the predicted probability (the last bin
/// includes 1); empty bins are left out.
pub fn reliability(y: &[bool], p: &[f64], w: &[f64], bins: usize) -> Vec<Bin> {
    let mut acc = vec![(0usize, 0.0, 0.0, 0.0); bins];
    for ((&y, &p), &w) in y.iter().zip(p).zip(w) {
        let b = ((p * bins as f64) as usize).min(bins - 1);
        let a = &mut acc[b];
        a.0 += 1;
        a.1 += w;
        a.2 += w * p;
        a.3 += if y { w } else { 0.0 };
    }
    acc.iter()
        .enumerate()
        .filter(|(_, a)| a.0 > 0)
        .map(|(b, a)| Bin {
            lo: b as f64 / bins as f64,
            hi: (b + 1) as f64 / bins as f64,
            n: a.0,
            weight: a.1,
            mean_pred: a.2 / a.1,
            observed: a.3 / a.1,
        })
        .collect()
}

/// Perplexity from a weighted sum of log-probabilities and the total weight.
pub fn perplexity(sum_logp: f64, weight: f64) -> f64 {
    (-sum_logp / weight).exp()
}
