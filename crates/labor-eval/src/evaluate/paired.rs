//! Paired comparisons: for every pair of models, the mean difference of per-record normalized
//! log probability on the records both scored, with a bootstrap interval over persons.

use super::{Dataset, Inputs, Sums, boot};
use crate::table::{Table, num};

pub(super) fn table() -> Table {
    let mut paired = Table::new(
        "paired",
        "Paired comparisons: mean difference of log p per record (A − B)",
        &[
            "dataset",
            "model_a",
            "model_b",
            "records",
            "mean_diff",
            "lo",
            "hi",
        ],
    );
    paired.caption = "Normalized log-probabilities on the records both models scored; a \
                      positive difference means A assigns the truth more probability. 95% \
                      bootstrap interval over persons."
        .into();
    paired
}

/// Adds one dataset's rows: every pair of models, in input order.
pub(super) fn add_dataset(paired: &mut Table, d: &Dataset, inp: &Inputs) {
    for (a, ma) in inp.models.iter().enumerate() {
        for (b, mb) in inp.models.iter().enumerate().skip(a + 1) {
            let mut diff = Sums::new(d.persons);
            for r in &d.refs[a] {
                if let Some(o) = d.matching(b, r) {
                    diff.add(r.person, r.row.logp_norm - o.row.logp_norm, r.w);
                }
            }
            let n = diff.w.iter().filter(|w| **w > 0.0).count();
            if n == 0 {
                continue;
            }
            let n_rec = d.refs[a]
                .iter()
                .filter(|r| d.matching(b, r).is_some())
                .count();
            let ci = boot(&d.counts, |c| {
                let (s, w) = diff.resampled(c);
                (w > 0.0).then(|| s / w)
            });
            paired.push(vec![
                d.name.to_string(),
                ma.name.clone(),
                mb.name.clone(),
                n_rec.to_string(),
                num(diff.mean(), 5),
                num(ci.map(|c| c.0), 5),
                num(ci.map(|c| c.1), 5),
            ]);
        }
    }
}
