"""The Python side of the MNL fit benchmark (scripts/bench-mnl.sh): fits scikit-learn's
multinomial LogisticRegression (lbfgs) on the design exported by labor-baselines
(`cargo run --release -p labor-baselines --example mnl_bench -- N LAMBDA GTOL THREADS DIR`),
evaluates both its solution and ours (DIR/w_ours.f64) with the same numpy code, and prints both
fit times, log-likelihoods, penalized objectives and the time ratio.

Objective mapping. labor-baselines minimizes
    L(W) = (1/n) sum_i -log p(y_i | x_i) + (lambda/2) * ||W without intercept||^2.
scikit-learn (l2, lbfgs, fit_intercept=True, intercept unpenalized) minimizes
    C * sum_i -log p(y_i | x_i) + (1/2) * ||coef||^2,
internally as mean NLL + 1/(2 C n) ||coef||^2, which is L(W) when C = 1 / (lambda * n); its
`tol` is the L-BFGS-B bound on the largest gradient component of that objective, the same
criterion as our GTOL. The design files hold the non-intercept columns; the intercept is
scikit-learn's (our bias row). Usage: python mnl_reference.py DIR [--max-iter 20000]
"""
import argparse
import json
import os
import time

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression


def objective(x, y, coef, intercept, lam):
    """(log-likelihood, L(W)) of coef [features, classes] and intercept [classes], by chunks."""
    n = x.shape[0]
    ll = 0.0
    for a in range(0, n, 20000):
        z = np.asarray(x[a:a + 20000] @ coef) + intercept
        m = z.max(axis=1, keepdims=True)
        lse = (m[:, 0] + np.log(np.exp(z - m).sum(axis=1)))
        ll += float(np.sum(z[np.arange(z.shape[0]), y[a:a + 20000]] - lse))
    return ll, -ll / n + 0.5 * lam * float(np.sum(coef ** 2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--max-iter", type=int, default=20000)
    a = ap.parse_args()
    with open(os.path.join(a.dir, "design.json")) as f:
        d = json.load(f)
    with open(os.path.join(a.dir, "ours.json")) as f:
        ours = json.load(f)
    n, lam, gtol, k = d["n_rows"], d["lambda"], d["gtol"], d["n_classes"]
    load = lambda name, t: np.fromfile(os.path.join(a.dir, name), dtype=t)
    x = sp.csr_matrix((load("vals.f64", "<f8"), (load("rows.u32", "<u4"), load("cols.u32", "<u4"))),
                      shape=(n, d["n_features"]))
    y = load("y.u32", "<u4").astype(np.int64)
    assert len(np.unique(y)) == k, "every class must occur in the design"
    c = 1.0 / (lam * n)
    model = LogisticRegression(C=c, solver="lbfgs", tol=gtol, max_iter=a.max_iter)
    t0 = time.perf_counter()
    model.fit(x, y)
    seconds = time.perf_counter() - t0
    iters = int(np.max(model.n_iter_))
    ll_sk, obj_sk = objective(x, y, model.coef_.T, model.intercept_, lam)
    w = load("w_ours.f64", "<f8").reshape(d["n_features"] + 1, k)
    ll_ours, obj_ours = objective(x, y, w[1:], w[0], lam)
    print(f"design: {n} person-years, {d['n_features'] + 1} features (with the bias), {k} classes "
          f"of {d['n_labels']} labels, lambda {lam} (sklearn C = {c:.6g}), gtol {gtol}")
    print(f"sklearn {__import__('sklearn').__version__}: {seconds:.2f} s, {iters} iterations "
          f"(max_iter {a.max_iter}), log-likelihood {ll_sk:.6f}, objective {obj_sk:.12f}")
    print(f"ours evaluated by numpy: log-likelihood {ll_ours:.6f}, objective {obj_ours:.12f}")
    rel = (obj_sk - obj_ours) / abs(obj_ours)
    print(f"objective(sklearn) - objective(ours), relative: {rel:+.3e} "
          f"(log-likelihoods differ by {ll_sk - ll_ours:+.4f})")
    for r in ours:
        rep = r["report"]
        print(f"ours ({r['threads']} threads): {rep['seconds']:.2f} s, {rep['iterations']} iterations, "
              f"objective {rep['objective']:.12f}, max|grad| {rep['grad_max']:.2e}: "
              f"sklearn / ours = {seconds / rep['seconds']:.2f}x")


if __name__ == "__main__":
    main()
