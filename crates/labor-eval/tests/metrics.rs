//! Metric correctness against hand-computed values on tiny prediction sets.

use std::collections::HashMap;

use labor_data::Split;
use labor_data::predictions::PredictionRow;
use labor_eval::stats::{auc, interval95, log_loss, quantile, reliability, resample_counts};
use labor_eval::{Inputs, ModelPreds, Options, Subject, evaluate};

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

#[test]
fn quantiles_interpolate_between_order_statistics() {
    let v = [4.0, 1.0, 3.0, 2.0];
    assert_eq!(quantile(&v, 0.0), Some(1.0));
    assert_eq!(quantile(&v, 1.0), Some(4.0));
    assert!(close(quantile(&v, 0.25).unwrap(), 1.75, 1e-12));
    assert!(close(quantile(&v, 0.5).unwrap(), 2.5, 1e-12));
    assert_eq!(quantile(&[], 0.5), None);
    assert_eq!(quantile(&[f64::NAN, 2.0], 0.5), Some(2.0));
}

#[test]
fn auc_counts_ties_as_one_half() {
    // Positives 0.8 and 0.3, negatives 0.8 and 0.1: pairs (0.8,0.8) ½, (0.8,0.1) 1,
    // (0.3,0.8) 0, (0.3,0.1) 1 → 2.5 / 4.
    let y = [true, false, true, false];
    let p = [0.8, 0.8, 0.3, 0.1];
    assert!(close(auc(&y, &p, &[1.0; 4]).unwrap(), 0.625, 1e-12));
    // All tied: ½. One class only: undefined.
    assert!(close(auc(&y, &[0.5; 4], &[1.0; 4]).unwrap(), 0.5, 1e-12));
    assert_eq!(auc(&[true, true], &[0.1, 0.2], &[1.0, 1.0]), None);
    // Weights act as repeated observations: weight 2 on the tied negative.
    let w = [1.0, 2.0, 1.0, 1.0];
    // pairs: (0.8,0.8)×2 → 1, (0.8,0.1) → 1, (0.3,0.8)×2 → 0, (0.3,0.1) → 1; 3 / (2 × 3).
    assert!(close(auc(&y, &p, &w).unwrap(), 0.5, 1e-12));
}

#[test]
fn auc_equals_brute_force_over_pairs() {
    let mut s = 7u64;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as f64 / (1u64 << 31) as f64
    };
    let n = 200;
    let p: Vec<f64> = (0..n).map(|_| (next() * 10.0).floor() / 10.0).collect(); // many ties
    let y: Vec<bool> = p.iter().map(|&q| next() < q).collect();
    let w: Vec<f64> = (0..n).map(|_| 0.5 + next()).collect();
    let (mut num, mut den) = (0.0, 0.0);
    for i in 0..n {
        for j in 0..n {
            if y[i] && !y[j] {
                den += w[i] * w[j];
                num += w[i]
                    * w[j]
                    * if p[i] > p[j] {
                        1.0
                    } else if p[i] == p[j] {
                        0.5
                    } else {
                        0.0
                    };
            }
        }
    }
    assert!(close(auc(&y, &p, &w).unwrap(), num / den, 1e-12));
}

#[test]
fn log_loss_and_reliability_by_hand() {
    let y = [true, false, true];
    let p = [0.8, 0.4, 0.05];
    let want = -((0.8f64).ln() + (0.6f64).ln() + (0.05f64).ln()) / 3.0;
    assert!(close(log_loss(&y, &p, &[1.0; 3]), want, 1e-12));
    let b = reliability(&y, &p, &[1.0; 3], 10);
    assert_eq!(b.len(), 3);
    assert_eq!((b[0].n, b[0].observed, b[0].mean_pred), (1, 1.0, 0.05));
    assert_eq!((b[1].lo, b[1].n, b[1].observed), (0.4, 1, 0.0));
    assert_eq!((b[2].lo, b[2].n, b[2].observed), (0.8, 1, 1.0));
    // p = 1 lands in the last bin.
    assert_eq!(reliability(&[true], &[1.0], &[1.0], 10)[0].lo, 0.9);
}

#[test]
fn resamples_are_seeded_and_complete() {
    let a = resample_counts(5, 20, 3);
    assert_eq!(a, resample_counts(5, 20, 3));
    assert_ne!(a, resample_counts(5, 20, 4));
    assert!(a.iter().all(|c| c.iter().sum::<u32>() == 5));
}

fn row(
    model: &str,
    person: &str,
    t: i32,
    label: &str,
    prev: Option<&str>,
    lp: f64,
) -> PredictionRow {
    PredictionRow {
        model: model.into(),
        dataset: "d".into(),
        person_id: person.into(),
        split: Split::Test,
        year: 2000 + t,
        t,
        label: label.into(),
        prev_label: prev.map(Into::into),
        logp: lp,
        logp_norm: lp,
        leak: 0.0,
        p_stay: prev.map(|_| 0.5),
        p_in_lf: 0.9,
        top: vec![],
        icl_k: None,
    }
}

fn preds(name: &str, rows: Vec<PredictionRow>) -> ModelPreds {
    ModelPreds {
        name: name.into(),
        source: format!("{name}.parquet"),
        rows,
        ..Default::default()
    }
}

fn cell(r: &labor_eval::Report, table: &str, key: &[(&str, &str)], col: &str) -> String {
    let t = r
        .tables
        .iter()
        .chain(&r.data_tables)
        .find(|t| t.name == table)
        .unwrap_or_else(|| panic!("no table {table}"));
    let ci = |c: &str| {
        t.header
            .iter()
            .position(|h| h == c)
            .unwrap_or_else(|| panic!("{c}"))
    };
    let row = t
        .rows
        .iter()
        .find(|r| key.iter().all(|(k, v)| r[ci(k)] == *v))
        .unwrap_or_else(|| panic!("no row {key:?} in {table}"));
    row[ci(col)].clone()
}

fn val(r: &labor_eval::Report, table: &str, key: &[(&str, &str)], col: &str) -> f64 {
    cell(r, table, key, col).parse().unwrap()
}

#[test]
fn perplexity_ratio_and_bootstrap_by_hand() {
    // Person A: log p -1 (t=1), -2 (t=2); person B: -3 (t=1).
    let m = preds(
        "m",
        vec![
            row("m", "A", 1, "X", None, -1.0),
            row("m", "A", 2, "X", Some("X"), -2.0),
            row("m", "B", 1, "Y", None, -3.0),
        ],
    );
    // The oracle: -0.5, -1, -1.5.
    let o = preds(
        "oracle",
        vec![
            row("oracle", "A", 1, "X", None, -0.5),
            row("oracle", "A", 2, "X", Some("X"), -1.0),
            row("oracle", "B", 1, "Y", None, -1.5),
        ],
    );
    let opts = Options {
        bootstrap: 200,
        seed: 11,
        ..Options::default()
    };
    let models = [m, o];
    let classes = vec![];
    let map = HashMap::new();
    let r = evaluate(&Inputs {
        models: &models,
        oracle: Some("oracle"),
        subjects: None,
        classes: &classes,
        class_of_label: &map,
        options: &opts,
    })
    .unwrap();
    let k = [("dataset", "d"), ("model", "m")];
    assert!(close(
        val(&r, "perplexity", &k, "ppl_all"),
        2.0f64.exp(),
        1e-4
    ));
    assert!(close(
        val(&r, "perplexity", &k, "ppl_t2"),
        2.0f64.exp(),
        1e-4
    ));
    // The model's log p are exactly twice the oracle's: ratio e² / e¹.
    assert!(close(
        val(&r, "perplexity", &k, "ratio_all"),
        1.0f64.exp(),
        1e-4
    ));
    // Bootstrap: persons (A, B) resampled with the seeded counts; rebuild the interval here.
    let counts = resample_counts(2, 200, 11);
    let reps: Vec<f64> = counts
        .iter()
        .map(|c| {
            let (a, b) = (c[0] as f64, c[1] as f64);
            ((a * 3.0 + b * 3.0) / (a * 2.0 + b)).exp()
        })
        .collect();
    let (lo, hi) = interval95(&reps).unwrap();
    assert!(close(val(&r, "perplexity", &k, "ppl_all_lo"), lo, 1e-4));
    assert!(close(val(&r, "perplexity", &k, "ppl_all_hi"), hi, 1e-4));
    // Each replicate is one of AA (e^1.5), AB (e^2), BB (e^3).
    assert!(lo >= 1.5f64.exp() - 1e-9 && hi <= 3.0f64.exp() + 1e-9 && lo < hi);
    // Paired: m − oracle per record = -0.5, -1, -1.5 → mean -1.
    let kp = [("model_a", "m"), ("model_b", "oracle")];
    assert!(close(val(&r, "paired", &kp, "mean_diff"), -1.0, 1e-9));
    // Headline shows the ratio.
    assert_eq!(r.headline.rows[0][0], "m");
    assert!(
        r.headline.rows[0][1].contains("(2.72×)"),
        "{:?}",
        r.headline.rows[0]
    );
}

#[test]
fn subtasks_and_subgroup_means_by_hand() {
    // Records with t ≥ 2: A stays (p_stay 0.5), B moves (p_stay 0.5 set below to 0.2).
    let mut rows = vec![
        row("m", "A", 1, "X", None, -1.0),
        row("m", "A", 2, "X", Some("X"), -1.0),
        row("m", "B", 1, "X", None, -1.0),
        row("m", "B", 2, "NILF", Some("X"), -1.0),
    ];
    rows[3].p_stay = Some(0.2);
    rows[3].p_in_lf = 0.3;
    let models = [preds("m", rows)];
    let mut subjects = HashMap::new();
    for (p, g, w) in [("A", "female", 1.0), ("B", "male", 3.0)] {
        for t in 1..=2 {
            subjects.insert(
                ("d".to_string(), p.to_string(), 2000 + t),
                Subject {
                    gender: g.into(),
                    race: "r".into(),
                    region: "south".into(),
                    cohort: "1960s".into(),
                    education: "bachelors".into(),
                    weight: Some(w),
                },
            );
        }
    }
    let classes = vec![];
    let map = HashMap::new();
    let mut opts = Options {
        bootstrap: 0,
        min_cell: 1,
        ..Options::default()
    };
    let run = |opts: &Options| {
        evaluate(&Inputs {
            models: &models,
            oracle: None,
            subjects: Some(&subjects),
            classes: &classes,
            class_of_label: &map,
            options: opts,
        })
        .unwrap()
    };
    let r = run(&opts);
    let k = [("model", "m"), ("task", "move")];
    // move: y = [0, 1], p = [0.5, 0.8].
    assert!(close(
        val(&r, "subtasks", &k, "log_loss"),
        -((0.5f64).ln() + (0.8f64).ln()) / 2.0,
        1e-4
    ));
    assert!(close(val(&r, "subtasks", &k, "auc"), 1.0, 1e-9));
    // in_lf: y = [1, 1, 1, 0], p = [0.9, 0.9, 0.9, 0.3].
    let k = [("model", "m"), ("task", "in_lf")];
    assert!(close(val(&r, "subtasks", &k, "rate"), 0.75, 1e-9));
    let want = -(3.0 * (0.9f64).ln() + (0.7f64).ln()) / 4.0;
    assert!(close(val(&r, "subtasks", &k, "log_loss"), want, 1e-4));
    // Subgroup means of "stay": female cell: predicted 0.5, observed 1; male: 0.2, 0.
    let kc = [("family", "gender"), ("cell", "female"), ("class", "stay")];
    assert!(close(val(&r, "calibration", &kc, "mean_pred"), 0.5, 1e-9));
    assert!(close(val(&r, "calibration", &kc, "observed"), 1.0, 1e-9));
    // Summary: weighted mean |pred − obs| over the two cells = (0.5 + 0.2) / 2.
    assert!(close(
        val(
            &r,
            "calibration_summary",
            &[("family", "gender")],
            "m vs observed"
        ),
        0.35,
        1e-4
    ));
    // Pooled family "race" (one cell): predicted 0.35, observed 0.5.
    assert!(close(
        val(
            &r,
            "calibration_summary",
            &[("family", "race")],
            "m vs observed"
        ),
        0.15,
        1e-4
    ));
    // Weighted (A weight 1, B weight 3): pooled stay prediction (0.5 + 3·0.2)/4, observed 1/4.
    opts.weighted = true;
    let r = run(&opts);
    let kc = [("family", "race"), ("cell", "r"), ("class", "stay")];
    assert!(close(
        val(&r, "calibration", &kc, "mean_pred"),
        1.1 / 4.0,
        1e-4
    ));
    assert!(close(val(&r, "calibration", &kc, "observed"), 0.25, 1e-4));
    let k = [("model", "m"), ("task", "in_lf")];
    // In LF: A 1 + 1, B 3 (t = 1); out: B 3 (t = 2).
    assert!(close(val(&r, "subtasks", &k, "rate"), 5.0 / 8.0, 1e-9));
}

#[test]
fn duplicate_records_and_missing_subjects_are_errors() {
    let models = [preds(
        "m",
        vec![
            row("m", "A", 1, "X", None, -1.0),
            row("m", "A", 1, "X", None, -1.0),
        ],
    )];
    let classes = vec![];
    let map = HashMap::new();
    let opts = Options::default();
    let e = evaluate(&Inputs {
        models: &models,
        oracle: None,
        subjects: None,
        classes: &classes,
        class_of_label: &map,
        options: &opts,
    })
    .unwrap_err();
    assert!(e.contains("twice") && e.contains("rows 1 and 2"), "{e}");
    let models = [preds("m", vec![row("m", "A", 1, "X", None, -1.0)])];
    let subjects = HashMap::new();
    let e = evaluate(&Inputs {
        models: &models,
        oracle: None,
        subjects: Some(&subjects),
        classes: &classes,
        class_of_label: &map,
        options: &opts,
    })
    .unwrap_err();
    assert!(e.contains("not in the panel"), "{e}");
    let e = evaluate(&Inputs {
        models: &models,
        oracle: Some("oracle"),
        subjects: None,
        classes: &classes,
        class_of_label: &map,
        options: &opts,
    })
    .unwrap_err();
    assert!(e.contains("oracle"), "{e}");
}
