//! The MNL's numerical kernel: the penalized mean negative log-likelihood and its gradient for a
//! softmax ([`loss_grad`]) and a binary logit ([`binary_loss_grad`]), rows split over threads; the
//! softmax fuses forward, exp and gradient per row, vectorized with runtime AVX2/AVX-512
//! dispatch.

use crate::features::Design;

/// Runs `row_loss(range, grad)` over `n` rows split into `threads` contiguous chunks (each chunk
/// accumulating into its own gradient of length `width`), and returns the summed loss with the
/// gradients summed into `grad`.
fn sum_over_rows<F>(n: usize, width: usize, threads: usize, grad: &mut [f64], row_loss: F) -> f64
where
    F: Fn(std::ops::Range<usize>, &mut [f64]) -> f64 + Sync,
{
    let threads = threads.max(1).min(n.max(1));
    let chunk = n.div_ceil(threads).max(1);
    grad.iter_mut().for_each(|g| *g = 0.0);
    if threads == 1 {
        return row_loss(0..n, grad);
    }
    let row_loss = &row_loss;
    let parts: Vec<(f64, Vec<f64>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut g = vec![0.0; width];
                    let l = row_loss((t * chunk).min(n)..((t + 1) * chunk).min(n), &mut g);
                    (l, g)
                })
            })
            .collect();
        let first = row_loss(0..chunk.min(n), grad);
        let mut parts = vec![(first, Vec::new())];
        parts.extend(handles.into_iter().map(|h| h.join().unwrap()));
        parts
    });
    let mut loss = 0.0;
    for (l, g) in parts {
        loss += l;
        for (a, b) in grad.iter_mut().zip(&g) {
            *a += b;
        }
    }
    loss
}

/// Divides the summed loss and gradient by `n` and adds the penalty (λ/2)‖w‖² over the rows of
/// `w` (`width` coefficients each) other than `unpenalized`.
fn finish(
    loss: f64,
    n: usize,
    w: &[f64],
    width: usize,
    lambda: f64,
    unpenalized: Option<usize>,
    grad: &mut [f64],
) -> f64 {
    let inv_n = 1.0 / n.max(1) as f64;
    let mut penalty = 0.0;
    for (j, (gj, wj)) in grad.iter_mut().zip(w).enumerate() {
        *gj *= inv_n;
        if Some(j / width) != unpenalized {
            *gj += lambda * wj;
            penalty += wj * wj;
        }
    }
    loss * inv_n + 0.5 * lambda * penalty
}

/// L(W) and its gradient (written into `grad`), W row-major `[n_features][n_classes]`;
/// `unpenalized` is the feature left out of the penalty (the bias), if any. A row with an
/// excluded class ([`Design::exclude`], the two-stage move model) has its softmax over the
/// other classes.
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
    let loss = sum_over_rows(n, w.len(), threads, grad, |rows, g| {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { softmax_rows_avx512(design, c, w, rows, g) };
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { softmax_rows_avx2(design, c, w, rows, g) };
        }
        softmax_rows(design, c, w, rows, g)
    });
    finish(loss, n, w, c, lambda, unpenalized, grad)
}

/// [`softmax_rows`] compiled for AVX-512F (8-wide vectors).
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_rows_avx512(
    design: &Design,
    c: usize,
    w: &[f64],
    rows: std::ops::Range<usize>,
    g: &mut [f64],
) -> f64 {
    softmax_rows(design, c, w, rows, g)
}

/// [`softmax_rows`] compiled for AVX2 (4-wide vectors).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn softmax_rows_avx2(
    design: &Design,
    c: usize,
    w: &[f64],
    rows: std::ops::Range<usize>,
    g: &mut [f64],
) -> f64 {
    softmax_rows(design, c, w, rows, g)
}

/// The summed negative log-likelihood of `rows` and its gradient, added into `g`.
#[inline(always)]
fn softmax_rows(
    design: &Design,
    c: usize,
    w: &[f64],
    rows: std::ops::Range<usize>,
    g: &mut [f64],
) -> f64 {
    let mut z = vec![0.0; c];
    let mut loss = 0.0;
    for i in rows {
        let (idx, val) = design.row(i);
        z.iter_mut().for_each(|v| *v = 0.0);
        for (&f, &v) in idx.iter().zip(val) {
            let row = &w[f as usize * c..(f as usize + 1) * c];
            for (zk, wk) in z.iter_mut().zip(row) {
                *zk += v * wk;
            }
        }
        if let Some(e) = design.excluded(i) {
            z[e] = f64::NEG_INFINITY;
        }
        let y = design.y[i] as usize;
        let zy = z[y];
        let max = max_of(&z);
        let sum = exp_shifted(&mut z, max);
        loss += max + sum.ln() - zy;
        let inv = 1.0 / sum;
        z.iter_mut().for_each(|v| *v *= inv);
        z[y] -= 1.0;
        for (&f, &v) in idx.iter().zip(val) {
            let row = &mut g[f as usize * c..(f as usize + 1) * c];
            for (gk, pk) in row.iter_mut().zip(&z) {
                *gk += v * pk;
            }
        }
    }
    loss
}

/// The largest element (−∞ for none), in four lanes so that it vectorizes.
#[inline(always)]
pub(super) fn max_of(z: &[f64]) -> f64 {
    let mut m = [f64::NEG_INFINITY; 4];
    let chunks = z.chunks_exact(4);
    let rest = chunks.remainder();
    for ch in chunks {
        for j in 0..4 {
            m[j] = if ch[j] > m[j] { ch[j] } else { m[j] };
        }
    }
    for &v in rest {
        m[0] = if v > m[0] { v } else { m[0] };
    }
    m[0].max(m[1]).max(m[2].max(m[3]))
}

/// Replaces every z_k by exp(z_k − max) (max ≥ every z_k) and returns their sum.
#[inline(always)]
pub(super) fn exp_shifted(z: &mut [f64], max: f64) -> f64 {
    for v in z.iter_mut() {
        *v = exp_nonpositive(*v - max);
    }
    let mut acc = [0.0; 8];
    let chunks = z.chunks_exact(8);
    let rest = chunks.remainder();
    for ch in chunks {
        for j in 0..8 {
            acc[j] += ch[j];
        }
    }
    for (a, v) in acc.iter_mut().zip(rest) {
        *a += v;
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

/// eˣ for x ≤ 0 (−∞ and x < −708 give 0), branch-free so that loops over it vectorize:
/// x = n ln 2 + r with |r| ≤ ln2/2 (Cody–Waite), eʳ by its Taylor polynomial of degree 12
/// (truncation below 2e−16 relative), times 2ⁿ built in the exponent bits. Relative error a few
/// ulp (tested against `f64::exp`).
#[inline(always)]
pub(super) fn exp_nonpositive(x: f64) -> f64 {
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 · 2⁵²: adding it rounds to an integer
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000); // ln 2 with 11 trailing zero bits
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76); // ln 2 − LN2_HI
    const C: [f64; 13] = [
        1.0,
        1.0,
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5_040.0,
        1.0 / 40_320.0,
        1.0 / 362_880.0,
        1.0 / 3_628_800.0,
        1.0 / 39_916_800.0,
        1.0 / 479_001_600.0,
    ];
    let xc = if x > -708.0 { x } else { -708.0 };
    let t = xc * std::f64::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let mut p = C[12];
    for k in (0..12).rev() {
        p = p * r + C[k];
    }
    // The low bits of t hold n (two's complement); n + 1023 ∈ [2, 1023] is the biased exponent.
    let scale = f64::from_bits(t.to_bits().wrapping_add(1023) << 52);
    if x > -708.0 { p * scale } else { 0.0 }
}

/// log(1 + eˣ), stable.
fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// 1 / (1 + e⁻ˣ).
pub(super) fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// The binary logit's objective (1/n) Σ_i −log P(y_i | x_i) + (λ/2)‖v‖² (bias unpenalized),
/// P(1 | x) = σ(x·v), and its gradient (1/n) Σ_i x_i (σ(x_i·v) − y_i) + λv; `design.y` ∈ {0, 1}.
/// The stay stage of the two-stage MNL (y = 1: stayed in the previous label).
pub fn binary_loss_grad(
    design: &Design,
    v: &[f64],
    lambda: f64,
    unpenalized: Option<usize>,
    threads: usize,
    grad: &mut [f64],
) -> f64 {
    let n = design.n_rows();
    assert_eq!(v.len(), design.n_features);
    assert_eq!(grad.len(), v.len());
    let loss = sum_over_rows(n, v.len(), threads, grad, |rows, g| {
        let mut loss = 0.0;
        for i in rows {
            let (idx, val) = design.row(i);
            let s: f64 = idx.iter().zip(val).map(|(&f, &x)| x * v[f as usize]).sum();
            let y = design.y[i] as f64;
            loss += softplus(s) - y * s;
            let r = sigmoid(s) - y;
            for (&f, &x) in idx.iter().zip(val) {
                g[f as usize] += x * r;
            }
        }
        loss
    });
    finish(loss, n, v, 1, lambda, unpenalized, grad)
}
