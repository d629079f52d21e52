//! Fits the MNL on a synthetic nlsy79 panel at one λ and writes its training design for
//! `tools/reference/mnl_reference.py`, printing our fit's log-likelihood, iterations and time:
//!
//!   cargo run --release -p labor-baselines --example mnl_export -- WORKERS LAMBDA OUT.json
//!
//! The reference then fits the same objective with scikit-learn:
//!
//!   $(bash tools/reference/setup.sh) tools/reference/mnl_reference.py OUT.json

use labor_baselines::features::FeatureSpec;
use labor_baselines::lbfgs::LbfgsOptions;
use labor_baselines::mnl::{design_for, fit_design, training_classes, write_design_json};
use labor_data::{Split, SplitSpec, Taxonomy};
use labor_synth::{Generator, World};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        return Err("usage: mnl_export WORKERS LAMBDA OUT.json".into());
    }
    let n: usize = args[1].parse().map_err(|_| "WORKERS: an integer")?;
    let lambda: f64 = args[2].parse().map_err(|_| "LAMBDA: a number")?;
    let g = Generator::new(
        World::preset("nlsy79").unwrap(),
        Taxonomy::embedded_default(),
        7,
    )?;
    let (panel, _) = labor_synth::into_panel(&g.taxonomy, g.generate(n, 2, 0, &|_| {}));
    let spec = SplitSpec::default();
    let features = FeatureSpec::fit(&panel, &spec);
    let classes = training_classes(&panel, &spec);
    let design = design_for(&panel, &spec, Split::Train, &features, &classes);
    let file = std::fs::File::create(&args[3]).map_err(|e| e.to_string())?;
    write_design_json(
        &design,
        classes.len(),
        lambda,
        features.bias(),
        std::io::BufWriter::new(file),
    )?;
    let opts = LbfgsOptions {
        gtol: 1e-6,
        ftol: 0.0,
        max_iter: 5000,
        ..Default::default()
    };
    let (_, r) = fit_design(
        &design,
        classes.len(),
        lambda,
        Some(features.bias()),
        None,
        &opts,
        2,
    );
    println!(
        "ours: {} rows, {} features, {} classes, lambda {lambda}: loglik {:.6}, objective {:.10}, {} iterations, {} evaluations, max|grad| {:.2e}, converged {}, {:.2}s",
        design.n_rows(),
        design.n_features,
        classes.len(),
        r.loglik,
        r.objective,
        r.iterations,
        r.evaluations,
        r.grad_max,
        r.converged,
        r.seconds
    );
    Ok(())
}
