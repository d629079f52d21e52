//! Fits first-order Markov, the one-stage MNL and the two-stage MNL on a synthetic world and
//! prints their test perplexities (all records; t ≥ 2) against the world's exact oracle, with
//! fit times:
//!
//!   cargo run --release -p labor-baselines --example mnl_compare -- [WORLD WORKERS SEED]
//!
//! (default `nlsy79 3000 5`: the world of `labor synth --world nlsy79 --workers 3000 --seed 5`).

use std::time::Instant;

use labor_baselines::markov::Markov;
use labor_baselines::mnl::{Mnl, MnlOptions};
use labor_baselines::{LogLik, evaluate};
use labor_data::predictions::Predictor;
use labor_data::{Split, SplitSpec, Taxonomy};
use labor_synth::{Generator, World};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (world, workers, seed) = match args.as_slice() {
        [] => ("nlsy79".to_string(), 3000, 5),
        [w, n, s] => (
            w.clone(),
            n.parse().map_err(|_| "WORKERS: an integer")?,
            s.parse().map_err(|_| "SEED: an integer")?,
        ),
        _ => return Err("usage: mnl_compare [WORLD WORKERS SEED]".into()),
    };
    let g = Generator::new(
        World::preset(&world).ok_or("unknown world")?,
        Taxonomy::embedded_default(),
        seed,
    )?;
    let (panel, oracle) = labor_synth::into_panel(&g.taxonomy, g.generate(workers, 2, 0, &|_| {}));
    let spec = SplitSpec::default();
    let mut o = LogLik::default();
    for (p, lp) in panel.persons.iter().zip(&oracle) {
        if p.split_or(&spec) == Split::Test {
            for (t, v) in lp.iter().enumerate() {
                o.add(t, *v);
            }
        }
    }
    println!(
        "{world}, {workers} workers, seed {seed}: {} person-years; oracle test perplexity all {:.3}, t≥2 {:.3}",
        panel.n_records(),
        o.perplexity_all(),
        o.perplexity_transitions()
    );
    let row = |name: &str, model: &mut dyn Predictor, secs: f64| -> Result<(), String> {
        let ll = evaluate(model, &panel, &spec, Split::Test)?;
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {secs:.1} |",
            ll.perplexity_all(),
            ll.perplexity_all() / o.perplexity_all(),
            ll.perplexity_transitions(),
            ll.perplexity_transitions() / o.perplexity_transitions()
        );
        Ok(())
    };
    println!("| model | ppl all | ÷ oracle | ppl t≥2 | ÷ oracle | fit s |");
    println!("|---|---|---|---|---|---|");
    let t = Instant::now();
    let mut m1 = Markov::fit(&panel, &spec, 2)?.with_order(1);
    row("markov1", &mut m1, t.elapsed().as_secs_f64())?;
    let mut fits = Vec::new();
    for two_stage in [false, true] {
        let opts = MnlOptions {
            two_stage,
            ..MnlOptions::default()
        };
        let t = Instant::now();
        let mut m = Mnl::fit(&panel, &spec, &opts)?;
        let secs = t.elapsed().as_secs_f64();
        let name = if two_stage {
            "mnl two-stage"
        } else {
            "mnl one-stage"
        };
        row(name, &mut m, secs)?;
        fits.push((name, m));
    }
    for (name, m) in &fits {
        let r = &m.report;
        println!(
            "{name}: softmax λ {} (ε {}), log-likelihood {:.2}, {} iterations, |grad| {:.2e}, {:.1}s",
            r.lambda, m.epsilon, r.loglik, r.iterations, r.grad_norm, r.seconds
        );
        for s in &m.search {
            println!(
                "  λ {}: valid mean log p {:.4} (ε {}), {} iterations, {:.1}s",
                s.lambda, s.valid_mean_logp, s.epsilon, s.fit.iterations, s.fit.seconds
            );
        }
        if let Some(st) = &m.stay {
            let r = &st.report;
            println!(
                "  stay: λ {}, log-likelihood {:.2}, {} iterations, |grad| {:.2e}, {:.1}s",
                r.lambda, r.loglik, r.iterations, r.grad_norm, r.seconds
            );
            for s in &st.search {
                println!(
                    "    λ {}: valid mean log p(stay/move) {:.5}, {} iterations",
                    s.lambda, s.valid_mean_logp, s.fit.iterations
                );
            }
        }
    }
    Ok(())
}
