//! Limited-memory BFGS for smooth unconstrained minimization: the two-loop recursion with the
//! last `memory` curvature pairs, the initial Hessian scaled by sᵀy / yᵀy, and a backtracking
//! (Armijo) line search. Pairs with sᵀy ≤ 0 are skipped so the approximation stays positive
//! definite; a non-descent direction resets the memory.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LbfgsOptions {
    /// Number of curvature pairs kept.
    pub memory: usize,
    pub max_iter: usize,
    /// Converged when the largest absolute gradient component is at most this.
    pub gtol: f64,
    /// Converged when an iteration lowers f by at most `ftol` · max(|f|, 1).
    pub ftol: f64,
}

impl Default for LbfgsOptions {
    fn default() -> Self {
        Self {
            memory: 10,
            max_iter: 2000,
            gtol: 1e-6,
            ftol: 1e-12,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LbfgsResult {
    pub x: Vec<f64>,
    pub f: f64,
    /// Largest absolute gradient component at `x`.
    pub grad_max: f64,
    /// Euclidean norm of the gradient at `x`.
    pub grad_norm: f64,
    pub iterations: usize,
    pub evaluations: usize,
    pub converged: bool,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// Minimizes `f`, which returns the value at `x` and writes the gradient into its second
/// argument.
pub fn minimize<F>(mut f: F, x0: Vec<f64>, opts: &LbfgsOptions) -> LbfgsResult
where
    F: FnMut(&[f64], &mut [f64]) -> f64,
{
    let n = x0.len();
    let mut x = x0;
    let mut g = vec![0.0; n];
    let mut fx = f(&x, &mut g);
    let mut evaluations = 1;
    let mut s_hist: Vec<Vec<f64>> = Vec::new();
    let mut y_hist: Vec<Vec<f64>> = Vec::new();
    let mut rho: Vec<f64> = Vec::new();
    let mut d = vec![0.0; n];
    let mut x_new = vec![0.0; n];
    let mut g_new = vec![0.0; n];
    let mut alpha = vec![0.0; opts.memory.max(1)];
    let mut iterations = 0;
    let mut converged = max_abs(&g) <= opts.gtol;
    while !converged && iterations < opts.max_iter {
        // Two-loop recursion: d = −H g.
        d.copy_from_slice(&g);
        let m = s_hist.len();
        for i in (0..m).rev() {
            alpha[i] = rho[i] * dot(&s_hist[i], &d);
            for (dj, yj) in d.iter_mut().zip(&y_hist[i]) {
                *dj -= alpha[i] * yj;
            }
        }
        let gamma = if m > 0 {
            dot(&s_hist[m - 1], &y_hist[m - 1]) / dot(&y_hist[m - 1], &y_hist[m - 1])
        } else {
            1.0 / dot(&g, &g).sqrt().max(1e-300)
        };
        for dj in d.iter_mut() {
            *dj *= gamma;
        }
        for i in 0..m {
            let beta = rho[i] * dot(&y_hist[i], &d);
            for (dj, sj) in d.iter_mut().zip(&s_hist[i]) {
                *dj += (alpha[i] - beta) * sj;
            }
        }
        for dj in d.iter_mut() {
            *dj = -*dj;
        }
        let mut slope = dot(&g, &d);
        if slope >= 0.0 || !slope.is_finite() {
            // Not a descent direction: restart from steepest descent.
            s_hist.clear();
            y_hist.clear();
            rho.clear();
            let scale = 1.0 / dot(&g, &g).sqrt().max(1e-300);
            for (dj, gj) in d.iter_mut().zip(&g) {
                *dj = -gj * scale;
            }
            slope = dot(&g, &d);
        }
        // Backtracking line search (Armijo, c1 = 1e-4).
        let mut step = 1.0;
        let mut accepted = false;
        let mut f_new = fx;
        for _ in 0..60 {
            for ((xn, xi), di) in x_new.iter_mut().zip(&x).zip(&d) {
                *xn = xi + step * di;
            }
            f_new = f(&x_new, &mut g_new);
            evaluations += 1;
            if f_new.is_finite() && f_new <= fx + 1e-4 * step * slope {
                accepted = true;
                break;
            }
            step *= if f_new.is_finite() { 0.5 } else { 0.1 };
        }
        iterations += 1;
        if !accepted {
            // No decrease is possible along d at machine precision: we are at the minimum.
            converged = true;
            break;
        }
        let s: Vec<f64> = x_new.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        let decrease = fx - f_new;
        std::mem::swap(&mut x, &mut x_new);
        std::mem::swap(&mut g, &mut g_new);
        fx = f_new;
        if sy > 1e-12 * dot(&y, &y).max(1e-300).sqrt() * dot(&s, &s).sqrt() {
            if s_hist.len() == opts.memory {
                s_hist.remove(0);
                y_hist.remove(0);
                rho.remove(0);
            }
            rho.push(1.0 / sy);
            s_hist.push(s);
            y_hist.push(y);
        }
        if max_abs(&g) <= opts.gtol || decrease <= opts.ftol * fx.abs().max(1.0) {
            converged = true;
        }
    }
    LbfgsResult {
        grad_max: max_abs(&g),
        grad_norm: dot(&g, &g).sqrt(),
        x,
        f: fx,
        iterations,
        evaluations,
        converged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimizes_rosenbrock() {
        let rosen = |x: &[f64], g: &mut [f64]| {
            let (a, b) = (x[0], x[1]);
            g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
            g[1] = 200.0 * (b - a * a);
            (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
        };
        let opts = LbfgsOptions {
            gtol: 1e-10,
            ftol: 0.0,
            ..Default::default()
        };
        let r = minimize(rosen, vec![-1.2, 1.0], &opts);
        assert!(r.converged, "{r:?}");
        assert!(
            (r.x[0] - 1.0).abs() < 1e-7 && (r.x[1] - 1.0).abs() < 1e-7,
            "{r:?}"
        );
        assert!(r.iterations < 200, "{r:?}");
    }

    #[test]
    fn minimizes_an_ill_conditioned_quadratic_exactly() {
        // f = ½ Σ c_i (x_i − i)², condition number 1e4.
        let n = 50;
        let c: Vec<f64> = (0..n)
            .map(|i| 10f64.powf(4.0 * i as f64 / (n - 1) as f64))
            .collect();
        let quad = |x: &[f64], g: &mut [f64]| {
            let mut f = 0.0;
            for i in 0..x.len() {
                let r = x[i] - i as f64;
                g[i] = c[i] * r;
                f += 0.5 * c[i] * r * r;
            }
            f
        };
        let opts = LbfgsOptions {
            gtol: 1e-9,
            ftol: 0.0,
            ..Default::default()
        };
        let r = minimize(quad, vec![0.0; n], &opts);
        assert!(r.converged && r.grad_max <= 1e-9, "{r:?}");
        for (i, xi) in r.x.iter().enumerate() {
            assert!((xi - i as f64).abs() < 1e-8, "x[{i}] = {xi}");
        }
    }
}
