//! The order in which training visits its examples: a seeded permutation per epoch, and
//! micro-batches of similar length.

use labor_data::rng::{GOLDEN, SplitMix64};

/// A permutation of `0..n` determined by `(seed, epoch)` (SplitMix64 + Fisher–Yates).
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed ^ epoch.wrapping_mul(GOLDEN) ^ 0x5851_f42d_4c95_7f2d);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.modulo(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// Cuts one optimizer step's sequences into micro-batches of similar length: sorted longest
/// first, each micro-batch grows while its padded size (sequences × its longest) stays within
/// `max_tokens` (always at least one sequence). The step's loss and gradient do not depend on
/// how its sequences are grouped (see `labor_lm::train::train_step`); only the padding computed does.
pub fn length_grouped(seqs: Vec<&[i64]>, max_tokens: usize) -> Vec<Vec<&[i64]>> {
    length_grouped_by(seqs, |s| s.len(), max_tokens)
}

/// [`length_grouped`] over any items with a length (e.g. a sequence with its label positions);
/// the sort is stable, so items of equal length keep their order.
pub fn length_grouped_by<T>(
    mut items: Vec<T>,
    len: impl Fn(&T) -> usize,
    max_tokens: usize,
) -> Vec<Vec<T>> {
    items.sort_by_key(|s| std::cmp::Reverse(len(s)));
    let mut out: Vec<Vec<T>> = Vec::new();
    for s in items {
        match out.last_mut() {
            Some(b) if (b.len() + 1) * len(&b[0]).max(2) <= max_tokens => b.push(s),
            _ => out.push(vec![s]),
        }
    }
    out
}
