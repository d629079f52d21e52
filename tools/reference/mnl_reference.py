"""Fits scikit-learn's multinomial LogisticRegression (lbfgs) on a design exported by
labor-baselines (`cargo run --release -p labor-baselines --example mnl_export -- N LAMBDA OUT.json`)
and prints its log-likelihood, objective and fit time.

Objective mapping. labor-baselines minimizes
    L(W) = (1/n) sum_i -log p(y_i | x_i) + (lambda/2) * ||W without intercept||^2,
scikit-learn (l2, lbfgs, fit_intercept=True, intercept unpenalized) minimizes
    sum_i -log p(y_i | x_i) + 1/(2C) * ||coef||^2,
which is n * L(W) when C = 1 / (lambda * n). The design file holds the non-intercept columns;
the intercept is scikit-learn's. Usage: python mnl_reference.py DESIGN.json [--tol 1e-8]
"""
import argparse
import json
import time

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("design")
    ap.add_argument("--tol", type=float, default=1e-8)
    ap.add_argument("--max-iter", type=int, default=20000)
    a = ap.parse_args()
    with open(a.design) as f:
        d = json.load(f)
    n, lam = d["n_rows"], d["lambda"]
    x = sp.csr_matrix((np.asarray(d["vals"], dtype=np.float64),
                       (np.asarray(d["rows"]), np.asarray(d["cols"]))),
                      shape=(n, d["n_features"]))
    y = np.asarray(d["y"])
    assert len(np.unique(y)) == d["n_classes"], "every class must occur in the design"
    c = 1.0 / (lam * n)
    model = LogisticRegression(C=c, solver="lbfgs", tol=a.tol, max_iter=a.max_iter)
    t0 = time.perf_counter()
    model.fit(x, y)
    seconds = time.perf_counter() - t0
    p = model.predict_proba(x)
    col = np.searchsorted(model.classes_, y)
    loglik = float(np.sum(np.log(p[np.arange(n), col])))
    objective = -loglik / n + 0.5 * lam * float(np.sum(model.coef_ ** 2))
    print(f"sklearn: {n} rows, {d['n_features']} features, {d['n_classes']} classes, lambda {lam} "
          f"(C = {c:.6g}): loglik {loglik:.6f}, objective {objective:.10f}, "
          f"{int(np.max(model.n_iter_))} iterations, {seconds:.2f}s")


if __name__ == "__main__":
    main()
