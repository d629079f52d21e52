//! The comparison models on synthetic nlsy79 panels, against the world's oracle.

use std::time::Instant;

use labor_baselines::lbfgs::LbfgsOptions;
use labor_baselines::markov::Markov;
use labor_baselines::mnl::{Mnl, MnlOptions};
use labor_baselines::{LogLik, evaluate, logsumexp};
use labor_data::predictions::Predictor;
use labor_data::{Panel, Split, SplitSpec, Taxonomy};
use labor_synth::{Generator, World};

fn synthetic(n: usize, seed: u64) -> (Panel, Vec<Vec<f64>>) {
    let g = Generator::new(
        World::preset("nlsy79").unwrap(),
        Taxonomy::embedded_default(),
        seed,
    )
    .unwrap();
    labor_synth::into_panel(&g.taxonomy, g.generate(n, 2, 0, &|_| {}))
}

fn quick_mnl() -> MnlOptions {
    MnlOptions {
        lambdas: vec![1e-3],
        lbfgs: LbfgsOptions {
            gtol: 1e-4,
            ftol: 1e-8,
            max_iter: 300,
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn every_distribution_sums_to_one_and_models_round_trip() {
    let (panel, _) = synthetic(150, 11);
    let spec = SplitSpec::default();
    let k = panel.taxonomy.len();
    let m2 = Markov::fit(&panel, &spec, 2).unwrap();
    let m1 = m2.clone().with_order(1);
    let mnl = Mnl::fit(&panel, &spec, &quick_mnl()).unwrap();
    assert!(mnl.stay.is_some(), "two-stage is the default form");
    let one_stage = MnlOptions {
        two_stage: false,
        ..quick_mnl()
    };
    let mnl1 = Mnl::fit(&panel, &spec, &one_stage).unwrap();
    assert!(mnl1.stay.is_none());
    let mut models: Vec<Box<dyn Predictor>> = vec![
        Box::new(m1),
        Box::new(m2),
        Box::new(mnl),
        Box::new(mnl1.clone()),
    ];
    let mut checked = 0;
    for model in &mut models {
        for p in &panel.persons {
            let ts: Vec<usize> = (0..p.records.len()).collect();
            let pred = model.predict(p, &ts).unwrap();
            assert_eq!(pred.logp.len(), ts.len());
            for (t, lp) in pred.logp.iter().enumerate() {
                assert_eq!(lp.len(), k);
                assert!(lp.iter().all(|v| v.is_finite()), "{} t={t}", model.name());
                let s: f64 = lp.iter().map(|v| v.exp()).sum();
                assert!((s - 1.0).abs() < 1e-9, "{} t={t}: sum {s}", model.name());
                assert!(logsumexp(lp).abs() < 1e-9);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 4 * panel.n_records());
    assert_eq!(
        models.iter().map(|m| m.name()).collect::<Vec<_>>(),
        ["markov1", "markov2", "mnl", "mnl"]
    );

    // Saved and loaded models predict the same.
    let m = Markov::fit(&panel, &spec, 2).unwrap();
    let mut buf = Vec::new();
    m.to_writer(&mut buf).unwrap();
    let back = Markov::from_reader(&buf[..]).unwrap();
    back.check_taxonomy(&panel.taxonomy).unwrap();
    let p = &panel.persons[0];
    for t in 0..p.records.len() {
        assert_eq!(m.dist(p, t), back.dist(p, t));
    }
    let mnl = Mnl::fit(&panel, &spec, &quick_mnl()).unwrap();
    let mut buf = Vec::new();
    mnl.to_writer(&mut buf).unwrap();
    let back = Mnl::from_reader(&buf[..]).unwrap();
    back.check_taxonomy(&panel.taxonomy).unwrap();
    for t in 0..p.records.len() {
        assert_eq!(mnl.log_dist(p, t), back.log_dist(p, t));
    }

    // Coefficients: one CSV row per (feature, class) of the move softmax and one per feature of
    // the stay stage, with readable names.
    let mut csv = Vec::new();
    mnl.write_coefficients(&mut csv).unwrap();
    let text = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "block,feature,label_code,coefficient");
    let nf = mnl.features.n_features();
    assert_eq!(lines.len() - 1, nf * mnl.classes.len() + nf);
    for name in [
        "bias,",
        "last=start,",
        "before=none,",
        "years_in_job,",
        "education=bachelors,",
    ] {
        for block in ["move", "stay"] {
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with(&format!("{block},{name}"))),
                "no {block} coefficient row for {name}"
            );
        }
    }
    let code = &panel.taxonomy.labels()[mnl.classes[0] as usize].code;
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("move,last={code},")))
    );
    assert!(
        lines.contains(
            &format!(
                "stay,last={code},,{}",
                mnl.stay.as_ref().unwrap().v[1 + mnl.classes[0] as usize]
            )
            .as_str()
        )
    );
    let mut csv = Vec::new();
    mnl1.write_coefficients(&mut csv).unwrap();
    let text = String::from_utf8(csv).unwrap();
    assert_eq!(text.lines().count() - 1, nf * mnl1.classes.len());
    assert!(text.lines().skip(1).all(|l| l.starts_with("mnl,")));
}

fn oracle_loglik(panel: &Panel, oracle: &[Vec<f64>], spec: &SplitSpec) -> LogLik {
    let mut ll = LogLik::default();
    for (p, o) in panel.persons.iter().zip(oracle) {
        if p.split_or(spec) == Split::Test {
            for (t, lp) in o.iter().enumerate() {
                ll.add(t, *lp);
            }
        }
    }
    ll
}

fn report_mnl(mnl: &Mnl, seconds: f64) {
    let r = &mnl.report;
    eprintln!(
        "mnl fit {seconds:.2}s (whole search): λ {} ε {}, {} obs, {} features × {} classes, train LL {:.2}, objective {:.6}, {} iterations, {} evaluations, |grad| {:.2e}, converged {}, {:.2}s",
        r.lambda,
        mnl.epsilon,
        r.n_obs,
        r.n_features,
        r.n_classes,
        r.loglik,
        r.objective,
        r.iterations,
        r.evaluations,
        r.grad_norm,
        r.converged,
        r.seconds
    );
    for row in &mnl.search {
        eprintln!(
            "  λ {}: valid mean log p {:.4} (ε {}), {} iterations, {:.2}s",
            row.lambda, row.valid_mean_logp, row.epsilon, row.fit.iterations, row.fit.seconds
        );
    }
    if let Some(s) = &mnl.stay {
        eprintln!(
            "  stay stage: λ {}, train LL {:.2}, {} iterations, |grad| {:.2e}",
            s.report.lambda, s.report.loglik, s.report.iterations, s.report.grad_norm
        );
    }
}

/// Test perplexities of `models` vs the oracle: at least the oracle's (up to sampling noise),
/// at most `factor` × the oracle's and far below uniform.
fn check_between_oracle_and_uniform(
    models: &mut [Box<dyn Predictor>],
    panel: &Panel,
    oracle: &[Vec<f64>],
    factor: f64,
) {
    let spec = SplitSpec::default();
    let k = panel.taxonomy.len() as f64;
    let o = oracle_loglik(panel, oracle, &spec);
    eprintln!(
        "nlsy79, {} workers, {} person-years, K = {k}: oracle test perplexity all {:.3}, transitions {:.3} ({} / {} records)",
        panel.persons.len(),
        panel.n_records(),
        o.perplexity_all(),
        o.perplexity_transitions(),
        o.n_all,
        o.n_transitions
    );
    for model in models {
        let ll = evaluate(model.as_mut(), panel, &spec, Split::Test).unwrap();
        let (all, tr) = (ll.perplexity_all(), ll.perplexity_transitions());
        eprintln!(
            "{:8} test perplexity all {all:.3} (oracle ×{:.3}), transitions {tr:.3} (oracle ×{:.3})",
            model.name(),
            all / o.perplexity_all(),
            tr / o.perplexity_transitions()
        );
        assert_eq!((ll.n_all, ll.n_transitions), (o.n_all, o.n_transitions));
        assert!(all >= 0.98 * o.perplexity_all(), "{}: {all}", model.name());
        assert!(
            tr >= 0.98 * o.perplexity_transitions(),
            "{}: {tr}",
            model.name()
        );
        assert!(
            all <= factor * o.perplexity_all() && all < k / 5.0,
            "{}: {all}",
            model.name()
        );
        assert!(
            tr <= factor * o.perplexity_transitions(),
            "{}: {tr}",
            model.name()
        );
    }
}

#[test]
fn markov_test_perplexity_lies_between_the_oracle_and_uniform() {
    let (panel, oracle) = synthetic(1500, 7);
    let clock = Instant::now();
    let m2 = Markov::fit(&panel, &SplitSpec::default(), 2).unwrap();
    eprintln!(
        "markov fit {:.2}s: first {}, order1 {}, order2 {}",
        clock.elapsed().as_secs_f64(),
        m2.first_smoothing,
        m2.smoothing1,
        m2.smoothing2
    );
    let m1 = m2.clone().with_order(1);
    let mut models: Vec<Box<dyn Predictor>> = vec![Box::new(m1), Box::new(m2)];
    check_between_oracle_and_uniform(&mut models, &panel, &oracle, 2.0);
}

#[test]
fn mnl_test_perplexity_lies_between_the_oracle_and_uniform() {
    let (panel, oracle) = synthetic(400, 7);
    let clock = Instant::now();
    let opts = MnlOptions {
        lambdas: vec![3e-4],
        stay_lambdas: vec![1e-3],
        lbfgs: LbfgsOptions {
            gtol: 1e-4,
            ftol: 1e-9,
            max_iter: 300,
            ..Default::default()
        },
        ..Default::default()
    };
    let mnl = Mnl::fit(&panel, &SplitSpec::default(), &opts).unwrap();
    report_mnl(&mnl, clock.elapsed().as_secs_f64());
    assert!(mnl.report.converged, "{:?}", mnl.report);
    assert!(mnl.stay.as_ref().unwrap().report.converged);
    // The two-stage form gives each previous label its own stay effect next to tenure and the
    // covariates, so even on a few thousand person-years it lies within 2× of the oracle.
    let mut models: Vec<Box<dyn Predictor>> = vec![Box::new(mnl)];
    check_between_oracle_and_uniform(&mut models, &panel, &oracle, 2.0);
}

/// The full λ search on 1,500 workers (minutes): `cargo test -p labor-baselines --test
/// synthetic -- --ignored --nocapture`.
#[test]
#[ignore]
fn all_models_with_the_full_search_on_1500_workers() {
    let (panel, oracle) = synthetic(1500, 7);
    let spec = SplitSpec::default();
    let m2 = Markov::fit(&panel, &spec, 2).unwrap();
    let m1 = m2.clone().with_order(1);
    let clock = Instant::now();
    let mnl = Mnl::fit(&panel, &spec, &MnlOptions::default()).unwrap();
    report_mnl(&mnl, clock.elapsed().as_secs_f64());
    assert!(mnl.report.converged, "{:?}", mnl.report);
    let mut models: Vec<Box<dyn Predictor>> = vec![Box::new(m1), Box::new(m2), Box::new(mnl)];
    check_between_oracle_and_uniform(&mut models, &panel, &oracle, 3.0);
}
