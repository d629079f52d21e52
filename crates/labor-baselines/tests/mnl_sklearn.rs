//! Our multinomial logit against scikit-learn's: the same data and penalty (fixture made by
//! `tools/reference/make_numerics_fixtures.py`), the same optimum.

use labor_baselines::features::Design;
use labor_baselines::lbfgs::LbfgsOptions;
use labor_baselines::mnl::fit_design;

#[test]
fn mnl_fit_equals_scikit_learn_at_the_same_penalty() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/mnl-sklearn.json"
    );
    let f: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let x: Vec<Vec<f64>> = serde_json::from_value(f["x"].clone()).unwrap();
    let y: Vec<u32> = serde_json::from_value(f["y"].clone()).unwrap();
    let coef: Vec<Vec<f64>> = serde_json::from_value(f["coef"].clone()).unwrap();
    let intercept: Vec<f64> = serde_json::from_value(f["intercept"].clone()).unwrap();
    let k = f["n_classes"].as_u64().unwrap() as usize;
    let lambda = f["lambda"].as_f64().unwrap();
    let nf = x[0].len();
    // Feature 0 is the (unpenalized) bias, the intercept of scikit-learn.
    let mut d = Design::new(nf + 1);
    for (row, &yi) in x.iter().zip(&y) {
        let mut e = vec![(0u32, 1.0)];
        e.extend(row.iter().enumerate().map(|(j, &v)| (j as u32 + 1, v)));
        d.push(&e, yi);
    }
    let opts = LbfgsOptions {
        gtol: 1e-10,
        max_iter: 10_000,
        ..LbfgsOptions::default()
    };
    let (w, report) = fit_design(&d, k, lambda, Some(0), None, &opts, 1);
    assert!(report.converged, "{report:?}");
    let want_ll = f["loglik"].as_f64().unwrap();
    assert!(
        (report.loglik - want_ll).abs() < 1e-6 * want_ll.abs(),
        "log-likelihood {} vs scikit-learn {want_ll}",
        report.loglik
    );
    let want_obj = f["objective"].as_f64().unwrap();
    assert!(
        (report.objective - want_obj).abs() < 1e-8,
        "{} vs {want_obj}",
        report.objective
    );
    // Coefficients: W is [features][classes], bias row first.
    for (j, row) in coef.iter().enumerate() {
        for (c, &want) in row.iter().enumerate() {
            let got = w[(j + 1) * k + c];
            assert!((got - want).abs() < 1e-4, "coef[{j}][{c}]: {got} vs {want}");
        }
    }
    // The unpenalized intercepts are identified up to a common shift: compare centred.
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let ours: Vec<f64> = (0..k).map(|c| w[c]).collect();
    let (mo, mw) = (mean(&ours), mean(&intercept));
    for c in 0..k {
        let (g, want) = (ours[c] - mo, intercept[c] - mw);
        assert!((g - want).abs() < 1e-4, "intercept {c}: {g} vs {want}");
    }
}
