//! The report a reader sees: the headline plot (ratios to the oracle on a log axis) first, then
//! the headline table, the models table (from the prediction files' metadata), the detail
//! tables and the other plots; one colour per model in every plot.

use std::collections::HashMap;

use labor_data::Split;
use labor_data::predictions::PredictionRow;
use labor_eval::plot::{ORACLE_COLOR, model_colors};
use labor_eval::report::{Provenance, html, markdown};
use labor_eval::{Inputs, ModelPreds, Options, evaluate};

fn rows(model: &str, shift: f64) -> Vec<PredictionRow> {
    let mut out = Vec::new();
    for p in 0..20 {
        for t in 1..=3 {
            let lp = -1.0 - 0.1 * ((p * 7 + t * 3) % 5) as f64 - shift;
            out.push(PredictionRow {
                model: model.into(),
                dataset: "d".into(),
                person_id: format!("p{p}"),
                split: Split::Test,
                year: 2000 + t,
                t,
                label: "X".into(),
                prev_label: (t > 1).then(|| "X".into()),
                logp: lp,
                logp_norm: lp,
                leak: 0.0,
                p_stay: (t > 1).then_some(0.5),
                p_in_lf: 0.9,
                top: vec![],
                icl_k: None,
            });
        }
    }
    out
}

fn model(name: &str, shift: f64, metadata: &[(&str, &str)]) -> ModelPreds {
    ModelPreds {
        name: name.into(),
        source: format!("{name}.parquet"),
        metadata: metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        rows: rows(name, shift),
        ..Default::default()
    }
}

fn hex(c: (u8, u8, u8)) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

#[test]
fn headline_plot_comes_first_on_a_log_axis_and_the_models_table_follows_the_headline() {
    let training = r#"{"kind": "lm", "method": "full", "parameters": 1097856,
        "trainable_parameters": 1097856, "steps": 260, "epochs": 4.01, "tokens": 410000,
        "texts": 2073, "wall_s": 45.8, "base": {"kind": "lm", "method": "full",
        "parameters": 1097856, "trainable_parameters": 1097856, "steps": 429, "epochs": 3.02,
        "tokens": 1830000, "texts": 9090, "wall_s": 121.1, "base": null}}"#;
    let models = [
        model(
            "lm-ft",
            0.1,
            &[
                ("labor.model.training.json", training),
                ("labor.model.config.json", "{}"),
            ],
        ),
        // exp(20.72) ≈ 10⁹: the un-tuned LM of the issue.
        model("lm-untuned", 20.72, &[("labor.model.config.json", "{}")]),
        model("oracle", 0.0, &[]),
    ];
    let opts = Options {
        bootstrap: 50,
        ..Options::default()
    };
    let r = evaluate(&Inputs {
        models: &models,
        oracle: Some("oracle"),
        subjects: None,
        classes: &[],
        class_of_label: &HashMap::new(),
        options: &opts,
    })
    .unwrap();
    // The headline plot: ratios, log axis with decade ticks in scientific notation.
    assert_eq!(r.headline_plots.len(), 1);
    let head = &r.headline_plots[0];
    assert_eq!(head.name, "ratio_d");
    for s in ["lm-ft", "lm-untuned", "10⁹", "1.11×", "oracle = 1×"] {
        assert!(head.svg.contains(s), "{s} missing from the headline plot");
    }
    assert!(
        !head.svg.contains(">oracle<"),
        "the oracle is the reference line, not a row"
    );
    // The same colour per model in every plot; the oracle neutral.
    let colors = model_colors(["lm-ft", "lm-untuned", "oracle"], Some("oracle"));
    let ppl = r.plots.iter().find(|p| p.name == "perplexity_d").unwrap();
    for name in ["lm-ft", "lm-untuned"] {
        let c = hex(colors[name]);
        assert!(head.svg.contains(&c) && ppl.svg.contains(&c), "{name}: {c}");
    }
    assert!(ppl.svg.contains(&hex(ORACLE_COLOR)));
    // The models table, from the metadata.
    let t = &r.model_table;
    let ft = t.rows.iter().find(|r| r[0] == "lm-ft").unwrap();
    assert_eq!(ft[2], "1.10 M");
    assert_eq!(ft[5], "45.8 s");
    assert_eq!(ft[8], "3.02 (429 steps)");
    let untuned = t.rows.iter().find(|r| r[0] == "lm-untuned").unwrap();
    assert_eq!(untuned[1], "LM");
    assert!(untuned[2..].iter().all(|c| c == "—"), "{untuned:?}");
    // Order in the page: headline plot, headline table, models table, detail tables, plots.
    let p = Provenance {
        title: "t".into(),
        ..Default::default()
    };
    let page = html(&r, &p);
    let at = |s: &str| {
        page.find(s)
            .unwrap_or_else(|| panic!("{s} not in the page"))
    };
    let order = [
        at("id=\"plot-ratio_d\""),
        at("data-name=\"headline\""),
        at("data-name=\"models\""),
        at("data-name=\"perplexity_display\""),
        at("id=\"plot-perplexity_d\""),
        at("Model provenance"),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    let md = markdown(&r, &p);
    let at = |s: &str| {
        md.find(s)
            .unwrap_or_else(|| panic!("{s} not in the Markdown"))
    };
    assert!(at("](plots/ratio_d.svg)") < at("### Headline"));
    assert!(at("### Headline") < at("### Models"));
    assert!(at("### Models") < at("### Perplexity by dataset"));
}
