//! Diagnostics of a synthetic world: realism (mobility, non-work shares, occupations used),
//! oracle perplexity, and a smoothed first-order Markov model as the yardstick for "signal
//! beyond one step".

use labor_data::stats::PanelStats;
use labor_data::{LabelKind, Panel, Split, SplitSpec};
use serde::Serialize;

/// A count-based first-order Markov model over labels: P(k | j) = (c_jk + α m_k) / (c_j + α),
/// with m the add-one smoothed label frequencies of the training records.
#[derive(Debug, Clone)]
pub struct Markov1 {
    k: usize,
    counts: Vec<f64>,
    row: Vec<f64>,
    marginal: Vec<f64>,
    pub alpha: f64,
}

impl Markov1 {
    /// Fits the counts on the persons of `split`.
    pub fn fit(panel: &Panel, spec: &SplitSpec, split: Split) -> Self {
        let k = panel.taxonomy.len();
        let mut counts = vec![0.0; k * k];
        let mut row = vec![0.0; k];
        let mut freq = vec![1.0; k];
        for p in panel.persons.iter().filter(|p| p.split_or(spec) == split) {
            for r in &p.records {
                freq[r.label.index()] += 1.0;
            }
            for w in p.records.windows(2) {
                counts[w[0].label.index() * k + w[1].label.index()] += 1.0;
                row[w[0].label.index()] += 1.0;
            }
        }
        let total: f64 = freq.iter().sum();
        Self {
            k,
            counts,
            row,
            marginal: freq.into_iter().map(|f| f / total).collect(),
            alpha: 1.0,
        }
    }

    pub fn prob(&self, from: usize, to: usize) -> f64 {
        (self.counts[from * self.k + to] + self.alpha * self.marginal[to])
            / (self.row[from] + self.alpha)
    }

    /// Mean negative log-likelihood of the transitions (t ≥ 2) of the persons of `split`.
    pub fn nll(&self, panel: &Panel, spec: &SplitSpec, split: Split) -> (f64, usize) {
        let (mut s, mut n) = (0.0, 0usize);
        for p in panel.persons.iter().filter(|p| p.split_or(spec) == split) {
            for w in p.records.windows(2) {
                s -= self.prob(w[0].label.index(), w[1].label.index()).ln();
                n += 1;
            }
        }
        (s / n.max(1) as f64, n)
    }

    /// Chooses α on the validation persons from a grid.
    pub fn tune(&mut self, panel: &Panel, spec: &SplitSpec) {
        let mut best = (f64::INFINITY, self.alpha);
        for a in [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0] {
            self.alpha = a;
            let (nll, _) = self.nll(panel, spec, Split::Valid);
            if nll < best.0 {
                best = (nll, a);
            }
        }
        self.alpha = best.1;
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct WorldReport {
    pub persons: usize,
    pub person_years: usize,
    /// Annual occupation-change rate among persons employed in both records (adjacent years).
    pub annual_occupation_change_rate: f64,
    pub non_work_share: f64,
    pub unemployed_share: f64,
    pub not_in_labor_force_share: f64,
    pub in_education_share: f64,
    pub occupations_used: usize,
    pub oracle_perplexity_all: f64,
    pub oracle_perplexity_transitions: f64,
    pub test_transitions: usize,
    pub oracle_perplexity_test_transitions: f64,
    pub markov1_perplexity_test_transitions: f64,
    pub markov1_alpha: f64,
    /// Oracle / Markov perplexity on test transitions (the acceptance asks ≤ 0.85).
    pub oracle_to_markov1: f64,
}

/// Computes the report. `logp[i][t]` is the oracle log-probability of record t of person i.
pub fn report(panel: &Panel, logp: &[Vec<f64>], spec: &SplitSpec) -> WorldReport {
    let s = PanelStats::compute(panel);
    let share = |kind: LabelKind| {
        s.special
            .iter()
            .zip(panel.taxonomy.labels())
            .find(|(_, l)| l.kind == kind)
            .map_or(0.0, |(c, _)| c.share)
    };
    let (mut all, mut n_all, mut tr, mut n_tr, mut tt, mut n_tt) =
        (0.0, 0usize, 0.0, 0usize, 0.0, 0usize);
    for (p, lp) in panel.persons.iter().zip(logp) {
        let test = p.split_or(spec) == Split::Test;
        for (t, l) in lp.iter().enumerate() {
            all += l;
            n_all += 1;
            if t > 0 {
                tr += l;
                n_tr += 1;
                if test {
                    tt += l;
                    n_tt += 1;
                }
            }
        }
    }
    let ppl = |s: f64, n: usize| (-s / n.max(1) as f64).exp();
    let mut markov = Markov1::fit(panel, spec, Split::Train);
    markov.tune(panel, spec);
    let (nll, _) = markov.nll(panel, spec, Split::Test);
    let oracle_test = ppl(tt, n_tt);
    let occupations_used = s
        .labels
        .iter()
        .filter(|l| {
            panel
                .taxonomy
                .by_code(&l.code)
                .is_some_and(|id| panel.taxonomy.label(id).kind == LabelKind::Occupation)
        })
        .count();
    WorldReport {
        persons: s.persons,
        person_years: s.person_years,
        annual_occupation_change_rate: s.annual_occupation_change_rate,
        non_work_share: s.special.iter().map(|c| c.share).sum(),
        unemployed_share: share(LabelKind::Unemployed),
        not_in_labor_force_share: share(LabelKind::NotInLaborForce),
        in_education_share: share(LabelKind::InEducation),
        occupations_used,
        oracle_perplexity_all: ppl(all, n_all),
        oracle_perplexity_transitions: ppl(tr, n_tr),
        test_transitions: n_tt,
        oracle_perplexity_test_transitions: oracle_test,
        markov1_perplexity_test_transitions: nll.exp(),
        markov1_alpha: markov.alpha,
        oracle_to_markov1: oracle_test / nll.exp(),
    }
}

impl std::fmt::Display for WorldReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "  persons                        {}", self.persons)?;
        writeln!(f, "  person-years                   {}", self.person_years)?;
        writeln!(
            f,
            "  annual occupation-change rate  {:.2}% (employed in both adjacent-year records)",
            100.0 * self.annual_occupation_change_rate
        )?;
        writeln!(
            f,
            "  non-work person-years          {:.2}% (unemployed {:.2}%, not in labor force {:.2}%, in education {:.2}%)",
            100.0 * self.non_work_share,
            100.0 * self.unemployed_share,
            100.0 * self.not_in_labor_force_share,
            100.0 * self.in_education_share
        )?;
        writeln!(
            f,
            "  occupations used               {}",
            self.occupations_used
        )?;
        writeln!(
            f,
            "  oracle perplexity              {:.3} (all records), {:.3} (t >= 2)",
            self.oracle_perplexity_all, self.oracle_perplexity_transitions
        )?;
        writeln!(
            f,
            "  test transitions ({})       oracle {:.3}, first-order Markov {:.3} (alpha {}), ratio {:.3}",
            self.test_transitions,
            self.oracle_perplexity_test_transitions,
            self.markov1_perplexity_test_transitions,
            self.markov1_alpha,
            self.oracle_to_markov1
        )
    }
}

fn ln_gamma(x: f64) -> f64 {
    // Lanczos approximation (g = 7, n = 9).
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Regularized upper incomplete gamma function Q(a, x).
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let lead = -x + a * x.ln() - ln_gamma(a);
    if x < a + 1.0 {
        // Series for P(a, x).
        let (mut sum, mut term, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..10_000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        1.0 - sum * lead.exp()
    } else {
        // Continued fraction for Q(a, x) (modified Lentz).
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-15 {
                break;
            }
        }
        lead.exp() * h
    }
}

/// P(X ≥ stat) for X chi-square with `df` degrees of freedom.
pub fn chi_square_sf(stat: f64, df: usize) -> f64 {
    gamma_q(df as f64 / 2.0, stat / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chi_square_tail_matches_tables() {
        for (stat, df, p) in [
            (3.841_458_820_694_124, 1, 0.05),
            (18.307_038_053_275_146, 10, 0.05),
            (6.634_896_601_021_214, 1, 0.01),
            (124.342_113_404_070_9, 100, 0.05),
        ] {
            let got = chi_square_sf(stat, df);
            assert!((got - p).abs() < 1e-9, "df {df}: {got} vs {p}");
        }
        assert!((chi_square_sf(2.0, 2) - (-1.0f64).exp()).abs() < 1e-12);
    }
}
