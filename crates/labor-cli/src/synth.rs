//! `labor synth`: generate a synthetic world with its exact oracle, or report on one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use indicatif::{ProgressBar, ProgressStyle};
use labor_data::SplitSpec;
use labor_data::formats::parquet::write_panel_parquet;
use labor_data::predictions::{
    PredictionRow, PredictionWriter, read_logp, write_full_distributions,
};
use labor_synth::diagnostics::{WorldReport, report};
use labor_synth::world::PRESETS;
use labor_synth::{Generator, World};

use crate::io::{CmdResult, PanelInput, load_panel, write_atomic};

#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// A preset (nlsy79, nlsy97, psid, resumes) or a world file (TOML).
    #[arg(long, default_value = "nlsy79")]
    pub world: String,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Number of workers; default: the world's size.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Output folder: panel.parquet, taxonomy.csv, world.toml, oracle.parquet, report.json.
    #[arg(long, required_unless_present = "report")]
    pub out: Option<PathBuf>,
    /// Also write the full oracle distribution over all labels for the first N workers
    /// (oracle_full.parquet).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub full_oracle: usize,
    /// Worker threads (the output does not depend on it); default: all cores.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Also write the world as a raw survey extract a user would download (`nls`: NLS
    /// Investigator style, `psid`: PSID style) into DIR: extract.csv, crosswalk.csv,
    /// mapping.toml, codebook.md. `labor data import --mapping DIR/mapping.toml
    /// DIR/extract.csv` gives back the world's panel exactly (docs/import.md).
    #[arg(long, num_args = 2, value_names = ["STYLE", "DIR"])]
    pub export_extract: Option<Vec<String>>,
    /// Print the diagnostics of a folder written by `labor synth` instead of generating.
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    pub report: Option<PathBuf>,
}

pub fn load_world(spec: &str) -> anyhow::Result<World> {
    if let Some(w) = World::preset(spec) {
        return Ok(w);
    }
    let path = Path::new(spec);
    if !path.exists() {
        let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
        bail!(
            "no world {spec:?}: expected a preset ({}) or a world file",
            names.join(", ")
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    World::from_toml(&text)
        .map_err(|e| anyhow!(crate::io::InvalidInput(format!("{}: {e}", path.display()))))
}

pub fn run(args: &SynthArgs) -> CmdResult {
    if let Some(dir) = &args.report {
        let r = report_dir(dir)?;
        println!("{}\n{r}", dir.display());
        return Ok(());
    }
    let out = args.out.as_ref().expect("clap requires --out");
    let r = generate(args, out)?;
    println!("{}\n{r}", out.display());
    Ok(())
}

/// Generates a world into `out` and returns its report.
pub fn generate(args: &SynthArgs, out: &Path) -> anyhow::Result<WorldReport> {
    let export = match args.export_extract.as_deref() {
        Some([style, dir]) => Some((
            style
                .parse::<labor_data::export::Style>()
                .map_err(|e| crate::bad!("--export-extract {e}"))?,
            PathBuf::from(dir),
        )),
        _ => None,
    };
    let mut world = load_world(&args.world)?;
    let n = args.workers.unwrap_or(world.workers);
    world.workers = n;
    let taxonomy = labor_data::Taxonomy::embedded_default();
    let g = Generator::new(world, taxonomy, args.seed).map_err(|e| anyhow!(e))?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pb = ProgressBar::new(n as u64);
    pb.set_style(
        ProgressStyle::with_template("generating {pos}/{len} workers [{bar:30}] {per_sec} ({eta})")
            .expect("template")
            .progress_chars("=> "),
    );
    let workers = g.generate(n, threads, args.full_oracle, &|c| pb.set_position(c as u64));
    pb.finish_and_clear();

    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let spec = SplitSpec::default();
    let tax = &g.taxonomy;
    let code = |i: usize| tax.labels()[i].code.clone();
    write_atomic(&out.join("oracle.parquet"), |w| {
        let mut pw = PredictionWriter::new(w)?;
        for wk in &workers {
            let p = &wk.person;
            let split = p.split_or(&spec);
            for (t, (r, o)) in p.records.iter().zip(&wk.oracle).enumerate() {
                pw.push(PredictionRow {
                    model: "oracle".into(),
                    dataset: p.dataset.clone(),
                    person_id: p.person_id.clone(),
                    split,
                    year: r.year,
                    t: t as i32 + 1,
                    label: code(r.label.index()),
                    prev_label: (t > 0).then(|| code(p.records[t - 1].label.index())),
                    logp: o.logp,
                    logp_norm: o.logp,
                    leak: 0.0,
                    p_stay: o.p_stay,
                    p_in_lf: o.p_in_lf,
                    top: o.top.iter().map(|&(i, q)| (code(i), q)).collect(),
                    icl_k: None,
                })?;
            }
        }
        pw.finish()?;
        Ok(())
    })?;
    if args.full_oracle > 0 {
        let codes: Vec<String> = tax.labels().iter().map(|l| l.code.clone()).collect();
        write_atomic(&out.join("oracle_full.parquet"), |w| {
            let rows = workers.iter().take(args.full_oracle).flat_map(|wk| {
                wk.oracle.iter().enumerate().map(move |(t, o)| {
                    (
                        "oracle",
                        wk.person.dataset.as_str(),
                        wk.person.person_id.as_str(),
                        t as i32 + 1,
                        o.full.as_deref().expect("kept"),
                    )
                })
            });
            write_full_distributions(w, &codes, rows)?;
            Ok(())
        })?;
    }
    let (panel, logp) = labor_synth::into_panel(&g.taxonomy, workers);
    write_atomic(&out.join("panel.parquet"), |w| {
        Ok(write_panel_parquet(&panel, w)?)
    })?;
    write_atomic(&out.join("taxonomy.csv"), |w| {
        Ok(panel.taxonomy.write_csv(w)?)
    })?;
    let header = format!(
        "# Resolved world written by labor {} (labor synth --world {} --seed {} --workers {n}).\n# Sampling seed: {}\n",
        env!("CARGO_PKG_VERSION"),
        args.world,
        args.seed,
        args.seed
    );
    write_atomic(&out.join("world.toml"), |w| {
        use std::io::Write;
        Ok(w.write_all((header + &g.world.to_toml()).as_bytes())?)
    })?;
    if let Some((style, dir)) = export {
        let files = labor_data::export::export_extract(&panel, style).map_err(|e| anyhow!(e))?;
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        for (name, text) in files {
            write_atomic(&dir.join(name), |w| {
                use std::io::Write;
                Ok(w.write_all(text.as_bytes())?)
            })?;
        }
        println!(
            "extract: {} (import with labor data import --mapping {}/mapping.toml {}/extract.csv)",
            dir.display(),
            dir.display(),
            dir.display()
        );
    }
    let r = report(&panel, &logp, &spec);
    write_atomic(&out.join("report.json"), |w| {
        Ok(serde_json::to_writer_pretty(w, &r)?)
    })?;
    Ok(r)
}

/// Reads a folder written by `labor synth` and computes its report.
pub fn report_dir(dir: &Path) -> CmdResult<WorldReport> {
    let input = PanelInput {
        taxonomy: Some(dir.join("taxonomy.csv")),
        add_unknown_labels: false,
        from: None,
        dataset: String::new(),
    };
    let (panel, _) = load_panel(&dir.join("panel.parquet"), &input)?;
    let path = dir.join("oracle.parquet");
    let f =
        std::fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let rows = read_logp(f).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let mut by_key: HashMap<(String, String, i32), f64> = rows
        .into_iter()
        .map(|(d, p, t, l)| ((d, p, t), l))
        .collect();
    let mut logp = Vec::with_capacity(panel.persons.len());
    for p in &panel.persons {
        let mut v = Vec::with_capacity(p.records.len());
        for t in 1..=p.records.len() as i32 {
            let l = by_key
                .remove(&(p.dataset.clone(), p.person_id.clone(), t))
                .ok_or_else(|| {
                    anyhow!(
                        "{}: no oracle row for person {} record {t}",
                        path.display(),
                        p.person_id
                    )
                })?;
            v.push(l);
        }
        logp.push(v);
    }
    if !by_key.is_empty() {
        return Err(anyhow!(
            "{}: {} oracle rows match no panel record",
            path.display(),
            by_key.len()
        )
        .into());
    }
    Ok(report(&panel, &logp, &SplitSpec::default()))
}
