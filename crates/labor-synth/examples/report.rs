//! Prints the diagnostics of each preset at a given size (for calibrating presets).
//! cargo run --release -p labor-synth --example report -- [WORKERS] [SEED]

use labor_data::{SplitSpec, Taxonomy};
use labor_synth::{Generator, World, diagnostics::report, world::PRESETS};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3000);
    let seed: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    for (name, _) in PRESETS {
        let g = Generator::new(
            World::preset(name).unwrap(),
            Taxonomy::embedded_default(),
            seed,
        )
        .unwrap();
        let t0 = std::time::Instant::now();
        let workers = g.generate(n, 2, 0, &|_| {});
        let secs = t0.elapsed().as_secs_f64();
        let (panel, logp) = labor_synth::into_panel(&g.taxonomy, workers);
        println!(
            "{name} ({n} workers, {secs:.2} s)\n{}",
            report(&panel, &logp, &SplitSpec::default())
        );
    }
}
