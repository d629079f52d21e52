//! The MNL fit benchmark (BENCHMARKS.md "MNL fit"; run by `scripts/bench-mnl.sh`): builds the
//! one-stage training design of the first PERSON_YEARS training person-years of a synthetic
//! nlsy79 world on the embedded default taxonomy, fits it at one λ to max|∇L| ≤ GTOL with our
//! L-BFGS on each of THREADS (comma-separated thread counts), and writes for
//! `tools/reference/mnl_reference.py`:
//!
//! - `OUT/design.json` (sizes, λ, GTOL) with `OUT/{rows,cols,y}.u32` and `OUT/vals.f64`
//!   (little-endian; the non-bias entries, `col` renumbered without the bias, which the
//!   reference fits as its intercept);
//! - `OUT/ours.json` (per thread count: seconds, log-likelihood, objective, iterations, gradient)
//!   and `OUT/w_ours.f64` (our coefficients, `[n_features][n_classes]`, bias row first), so the
//!   reference can evaluate our solution with its own code.
//!
//!   cargo run --release -p labor-baselines --example mnl_bench -- PERSON_YEARS LAMBDA GTOL THREADS OUT

use std::io::Write;

use labor_baselines::features::{Design, FeatureSpec};
use labor_baselines::lbfgs::LbfgsOptions;
use labor_baselines::mnl::{design_for, fit_design, training_classes};
use labor_data::{Split, SplitSpec, Taxonomy};
use labor_synth::{Generator, World};

fn write_raw<T: Copy>(
    path: &std::path::Path,
    data: &[T],
    to_le: impl Fn(T) -> Vec<u8>,
) -> Result<(), String> {
    let f = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let mut w = std::io::BufWriter::new(f);
    for &v in data {
        w.write_all(&to_le(v)).map_err(|e| e.to_string())?;
    }
    w.flush().map_err(|e| e.to_string())
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        return Err("usage: mnl_bench PERSON_YEARS LAMBDA GTOL THREADS OUT".into());
    }
    let n: usize = args[1].parse().map_err(|_| "PERSON_YEARS: an integer")?;
    let lambda: f64 = args[2].parse().map_err(|_| "LAMBDA: a number")?;
    let gtol: f64 = args[3].parse().map_err(|_| "GTOL: a number")?;
    let threads: Vec<usize> = args[4]
        .split(',')
        .map(|t| t.parse().map_err(|_| "THREADS: integers"))
        .collect::<Result<_, _>>()?;
    let out = std::path::PathBuf::from(&args[5]);
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let taxonomy = Taxonomy::embedded_default();
    let k = taxonomy.len();
    let g = Generator::new(World::preset("nlsy79").unwrap(), taxonomy, 7)?;
    // About 16.5 training person-years per nlsy79 worker (70 % train split): generate enough.
    let workers = n / 15 + 100;
    let (panel, _) = labor_synth::into_panel(&g.taxonomy, g.generate(workers, 2, 0, &|_| {}));
    let spec = SplitSpec::default();
    let features = FeatureSpec::fit(&panel, &spec);
    let classes = training_classes(&panel, &spec);
    let full = design_for(&panel, &spec, Split::Train, &features, &classes);
    if full.n_rows() < n {
        return Err(format!("only {} training person-years", full.n_rows()));
    }
    // The first n rows, with the classes that occur in them renumbered.
    let mut used = vec![u32::MAX; classes.len()];
    let mut design = Design::new(full.n_features);
    let mut n_classes = 0u32;
    let mut entries = Vec::new();
    for i in 0..n {
        let (idx, val) = full.row(i);
        entries.clear();
        entries.extend(idx.iter().copied().zip(val.iter().copied()));
        let y = &mut used[full.y[i] as usize];
        if *y == u32::MAX {
            *y = n_classes;
            n_classes += 1;
        }
        design.push(&entries, *y);
    }
    let c = n_classes as usize;
    let bias = features.bias();
    let (mut rows, mut cols, mut vals) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..design.n_rows() {
        let (idx, val) = design.row(i);
        for (&f, &v) in idx.iter().zip(val) {
            if f as usize != bias {
                rows.push(i as u32);
                cols.push(f - (f as usize > bias) as u32);
                vals.push(v);
            }
        }
    }
    let le32 = |v: u32| v.to_le_bytes().to_vec();
    write_raw(&out.join("rows.u32"), &rows, le32)?;
    write_raw(&out.join("cols.u32"), &cols, le32)?;
    write_raw(&out.join("y.u32"), &design.y, le32)?;
    write_raw(&out.join("vals.f64"), &vals, |v: f64| {
        v.to_le_bytes().to_vec()
    })?;
    let meta = serde_json::json!({
        "n_rows": design.n_rows(),
        "n_features": design.n_features - 1,
        "n_classes": c,
        "n_labels": k,
        "nnz": vals.len(),
        "lambda": lambda,
        "gtol": gtol,
        "objective": "mean NLL + lambda/2 * ||W||^2 over non-intercept coefficients",
    });
    std::fs::write(out.join("design.json"), meta.to_string()).map_err(|e| e.to_string())?;
    println!(
        "design: {} person-years ({workers} workers generated), {} features, {} classes of {k} labels, {} coefficients",
        design.n_rows(),
        design.n_features,
        c,
        design.n_features * c
    );
    if let Ok(evals) = std::env::var("MNL_BENCH_EVALS") {
        // Only time evaluations of the objective and gradient (kernel tuning).
        let evals: usize = evals.parse().map_err(|_| "MNL_BENCH_EVALS: an integer")?;
        let w = vec![0.01; design.n_features * c];
        let mut g = vec![0.0; w.len()];
        for &th in &threads {
            let t = std::time::Instant::now();
            let mut f = 0.0;
            for _ in 0..evals {
                f = labor_baselines::mnl::loss_grad(&design, c, &w, lambda, Some(bias), th, &mut g);
            }
            let s = t.elapsed().as_secs_f64() / evals as f64;
            println!(
                "{th} threads: {:.4} s per evaluation ({:.2} µs per row), f = {f}",
                s,
                s * 1e6 / n as f64
            );
        }
        return Ok(());
    }
    let opts = LbfgsOptions {
        gtol,
        ftol: 0.0,
        max_iter: 20_000,
        ..Default::default()
    };
    let mut results = Vec::new();
    let mut w_out = Vec::new();
    for &th in &threads {
        let (w, r) = fit_design(&design, c, lambda, Some(bias), None, &opts, th);
        println!(
            "ours ({th} threads): {:.2} s, log-likelihood {:.6}, objective {:.12}, {} iterations, {} evaluations, max|grad| {:.2e}, |grad| {:.2e}, converged {}",
            r.seconds,
            r.loglik,
            r.objective,
            r.iterations,
            r.evaluations,
            r.grad_max,
            r.grad_norm,
            r.converged
        );
        results.push(serde_json::json!({"threads": th, "report": r}));
        w_out = w;
    }
    write_raw(&out.join("w_ours.f64"), &w_out, |v: f64| {
        v.to_le_bytes().to_vec()
    })?;
    std::fs::write(
        out.join("ours.json"),
        serde_json::Value::Array(results).to_string(),
    )
    .map_err(|e| e.to_string())?;
    Ok(())
}
