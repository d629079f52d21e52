//! `labor simulate --model DIR --panel P --years H --draws D --out DIR`: careers simulated
//! forward from each person's history with any model, optionally under a counterfactual
//! (`--set education=bachelors`), with common random numbers (docs/predict.md).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::anyhow;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use labor_data::{Split, SplitSpec, Taxonomy};
use labor_forecast::simulate::{self, SimOptions, SimRecord, Start, parse_setting};
use labor_forecast::tables;
use serde_json::json;

use crate::bad;
use crate::io::{CmdResult, PanelInput, load_panel, write_atomic};
use crate::model::{ModelArgs, with_predictor};

#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The panel whose persons are simulated forward.
    #[arg(long)]
    pub panel: PathBuf,
    #[command(flatten)]
    pub input: PanelInput,
    /// The persons of this split (train, valid, test or all).
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Split seed for persons without an explicit split.
    #[arg(long, default_value_t = labor_data::split::DEFAULT_SPLIT_SEED)]
    pub split_seed: u64,
    /// At most this many persons (the first of the split, in panel order).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Years simulated after each history (H).
    #[arg(long, default_value_t = 5)]
    pub years: usize,
    /// Trajectories per person (D).
    #[arg(long, default_value_t = 100)]
    pub draws: usize,
    /// Seed of the common random numbers.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Cut every history after this year and simulate from the next (forecast evaluation:
    /// `labor eval --forecast`); persons with no record up to it are left out.
    #[arg(long)]
    pub cut: Option<i32>,
    /// Counterfactual: set a covariate (education, gender, race, region, birth_year), e.g.
    /// `--set education=bachelors`; repeatable. The baseline is simulated too, with the same
    /// random numbers, and the difference tabulated.
    #[arg(long, value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    /// With `--set education=...`: from this year on (observed records included); default the
    /// first simulated year.
    #[arg(long)]
    pub from_year: Option<i32>,
    /// Output folder: records.csv, shares.csv, mobility.csv, difference.csv (with --set),
    /// simulation.json.
    #[arg(long)]
    pub out: PathBuf,
}

pub const MAX_YEARS: usize = 100;

fn split_filter(s: &str) -> anyhow::Result<Option<Split>> {
    if s == "all" {
        return Ok(None);
    }
    s.parse::<Split>()
        .map(Some)
        .map_err(|_| bad!("--split {s:?}: expected train, valid, test or all"))
}

fn write_records(
    path: &Path,
    taxonomy: &Taxonomy,
    runs: &[(&str, &[Start], &[SimRecord])],
) -> anyhow::Result<()> {
    write_atomic(path, |w| {
        let mut c = csv::Writer::from_writer(w);
        c.write_record([
            "scenario",
            "dataset",
            "person_id",
            "draw",
            "horizon",
            "year",
            "label",
            "title",
            "group",
            "education",
            "gender",
            "race",
            "region",
            "birth_year",
        ])?;
        let na = |s: &Option<String>| s.clone().unwrap_or_else(|| "NA".into());
        for (scenario, starts, sims) in runs {
            for r in *sims {
                let p = &starts[r.person as usize].person;
                let l = taxonomy.label(r.label);
                c.write_record([
                    scenario.to_string(),
                    p.dataset.clone(),
                    p.person_id.clone(),
                    r.draw.to_string(),
                    r.step.to_string(),
                    r.year.to_string(),
                    l.code.clone(),
                    l.title.clone(),
                    l.group.clone(),
                    r.education.map_or("NA".into(), |e| e.as_str().to_string()),
                    na(&p.gender),
                    na(&p.race),
                    na(&p.region),
                    p.birth_year.map_or("NA".into(), |y| y.to_string()),
                ])?;
            }
        }
        c.flush()?;
        Ok(())
    })
}

/// A realised record after the cut: dataset, person, horizon, year, label code, and the model's
/// log-probability of it given the real history before it.
type Realised = (String, String, u32, i32, String, f64);

/// The model's log-probabilities of each person's realised records in the years right after
/// `cut`, as long as they are consecutive (`cut + 1`, `cut + 2`, … up to `cut + years`): the
/// log-score of the realised path, where the panel has one year by year.
fn realised_path(
    p: &mut dyn labor_data::predictions::Predictor,
    taxonomy: &Taxonomy,
    persons: &[labor_data::Person],
    cut: i32,
    years: usize,
) -> anyhow::Result<Vec<Realised>> {
    let mut out = Vec::new();
    for person in persons {
        let mut ts = Vec::new();
        for (h, y) in (cut + 1..=cut + years as i32).enumerate() {
            match person.records.iter().position(|r| r.year == y) {
                Some(t) if t > 0 => ts.push((h as u32 + 1, t)),
                _ => break,
            }
        }
        if ts.is_empty() || !person.records.iter().any(|r| r.year <= cut) {
            continue;
        }
        let idx: Vec<usize> = ts.iter().map(|x| x.1).collect();
        let pred = p
            .predict(person, &idx)
            .map_err(|e| anyhow!("{} {}: {e}", person.dataset, person.person_id))?;
        for ((h, t), logp) in ts.iter().zip(&pred.logp) {
            let r = &person.records[*t];
            let lse = {
                let m = logp.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                m + logp.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
            };
            out.push((
                person.dataset.clone(),
                person.person_id.clone(),
                *h,
                r.year,
                taxonomy.label(r.label).code.clone(),
                logp[r.label.index()] - lse,
            ));
        }
    }
    Ok(out)
}

pub fn run(a: &SimulateArgs) -> CmdResult {
    if a.years == 0 || a.years > MAX_YEARS {
        return Err(bad!("--years {}: expected 1 to {MAX_YEARS}", a.years).into());
    }
    if a.draws == 0 {
        return Err(bad!("--draws 0: expected at least 1").into());
    }
    let settings = a
        .set
        .iter()
        .map(|s| parse_setting(s, a.from_year).map_err(|e| bad!("--set {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if a.from_year.is_some()
        && !settings
            .iter()
            .any(|s| matches!(s, simulate::Setting::Education { .. }))
    {
        return Err(bad!("--from-year applies to --set education=...; none was given").into());
    }
    let (panel, _) = load_panel(&a.panel, &a.input)?;
    let spec = SplitSpec {
        seed: a.split_seed,
        ..SplitSpec::default()
    };
    let want = split_filter(&a.split)?;
    let persons: Vec<_> = panel
        .persons
        .iter()
        .filter(|p| want.is_none_or(|s| p.split_or(&spec) == s))
        .take(a.limit.unwrap_or(usize::MAX))
        .cloned()
        .collect();
    let (base_starts, dropped) = simulate::starts(&persons, a.cut, &[]);
    if base_starts.is_empty() {
        return Err(bad!(
            "{}: no person of the {} split has a record{}",
            a.panel.display(),
            a.split,
            a.cut.map(|c| format!(" up to {c}")).unwrap_or_default()
        )
        .into());
    }
    if dropped > 0 {
        eprintln!(
            "left out {dropped} of {} persons with no record up to {}",
            persons.len(),
            a.cut.expect("cut")
        );
    }
    let opts = SimOptions {
        years: a.years,
        draws: a.draws,
        seed: a.seed,
        cut: a.cut,
    };
    std::fs::create_dir_all(&a.out)
        .map_err(|e| anyhow!("cannot create {}: {e}", a.out.display()))?;
    let t0 = Instant::now();
    let taxonomy = &panel.taxonomy;
    let (name, baseline, cf, realised) = with_predictor(&a.model, taxonomy, |p| {
        let name = p.name().to_string();
        let run = |p: &mut dyn labor_data::predictions::Predictor,
                   starts: &[Start],
                   settings: &[simulate::Setting],
                   what: &str| {
            let pb = ProgressBar::new(starts.len() as u64);
            pb.set_style(
                ProgressStyle::with_template(&format!(
                    "simulating {what} {{pos}}/{{len}} persons [{{bar:30}}] ({{eta}})"
                ))
                .expect("template")
                .progress_chars("=> "),
            );
            let r = simulate::simulate(p, taxonomy, starts, settings, &opts, &mut |i| {
                pb.set_position(i as u64)
            });
            pb.finish_and_clear();
            r.map_err(|e| anyhow!(e))
        };
        let baseline = run(p, &base_starts, &[], "baseline")?;
        let cf = if settings.is_empty() {
            None
        } else {
            let (cf_starts, _) = simulate::starts(&persons, a.cut, &settings);
            let sims = run(p, &cf_starts, &settings, "counterfactual")?;
            Some((cf_starts, sims))
        };
        let realised = match a.cut {
            Some(c) => realised_path(p, taxonomy, &persons, c, a.years)?,
            None => Vec::new(),
        };
        Ok((name, baseline, cf, realised))
    })?;
    let secs = t0.elapsed().as_secs_f64();
    let mut runs: Vec<(&str, &[Start], &[SimRecord])> = vec![("baseline", &base_starts, &baseline)];
    if let Some((s, r)) = &cf {
        runs.push(("counterfactual", s, r));
    }
    write_records(&a.out.join("records.csv"), taxonomy, &runs)?;
    let last: Vec<_> = base_starts
        .iter()
        .map(|s| s.person.records.last().expect("record").label)
        .collect();
    write_atomic(&a.out.join("shares.csv"), |w| {
        let mut c = csv::Writer::from_writer(w);
        c.write_record(["scenario", "year", "category", "share", "n"])?;
        for (scenario, _, sims) in &runs {
            for r in tables::shares_by_year(sims, taxonomy) {
                c.write_record([
                    scenario.to_string(),
                    r.year.to_string(),
                    r.category,
                    r.share.to_string(),
                    r.n.to_string(),
                ])?;
            }
        }
        c.flush()?;
        Ok(())
    })?;
    write_atomic(&a.out.join("mobility.csv"), |w| {
        let mut c = csv::Writer::from_writer(w);
        c.write_record(["scenario", "from", "to", "share", "n_from"])?;
        for (scenario, _, sims) in &runs {
            for r in tables::mobility(sims, &last, taxonomy) {
                c.write_record([
                    scenario.to_string(),
                    r.from,
                    r.to,
                    r.share.to_string(),
                    r.n_from.to_string(),
                ])?;
            }
        }
        c.flush()?;
        Ok(())
    })?;
    if a.cut.is_some() {
        write_atomic(&a.out.join("realised.csv"), |w| {
            let mut c = csv::Writer::from_writer(w);
            c.write_record(["dataset", "person_id", "horizon", "year", "label", "logp"])?;
            for r in &realised {
                c.write_record([
                    r.0.clone(),
                    r.1.clone(),
                    r.2.to_string(),
                    r.3.to_string(),
                    r.4.clone(),
                    r.5.to_string(),
                ])?;
            }
            c.flush()?;
            Ok(())
        })?;
    }
    let mut biggest: Vec<tables::DiffRow> = Vec::new();
    if let Some((_, cf_sims)) = &cf {
        let diff =
            tables::paired_difference(&baseline, cf_sims, taxonomy).map_err(|e| anyhow!(e))?;
        write_atomic(&a.out.join("difference.csv"), |w| {
            let mut c = csv::Writer::from_writer(w);
            c.write_record([
                "year",
                "category",
                "baseline",
                "counterfactual",
                "difference",
                "se",
                "persons",
            ])?;
            for r in &diff {
                c.write_record([
                    r.year.to_string(),
                    r.category.clone(),
                    r.baseline.to_string(),
                    r.counterfactual.to_string(),
                    r.difference.to_string(),
                    r.se.to_string(),
                    r.persons.to_string(),
                ])?;
            }
            c.flush()?;
            Ok(())
        })?;
        biggest = diff;
        biggest.sort_by(|x, y| y.difference.abs().total_cmp(&x.difference.abs()));
        biggest.truncate(5);
    }
    let meta = json!({
        "model": name,
        "model_dir": a.model.model.display().to_string(),
        "panel": a.panel.display().to_string(),
        "split": a.split,
        "persons": base_starts.len(),
        "left_out": dropped,
        "years": a.years,
        "draws": a.draws,
        "seed": a.seed,
        "cut": a.cut,
        "set": a.set,
        "from_year": a.from_year,
        "seconds": secs,
        "labor_version": env!("CARGO_PKG_VERSION"),
    });
    write_atomic(&a.out.join("simulation.json"), |w| {
        Ok(serde_json::to_writer_pretty(w, &meta)?)
    })?;
    println!(
        "{}: {name}, {} persons × {} draws × {} years = {} simulated records in {secs:.1} s",
        a.out.display(),
        base_starts.len(),
        a.draws,
        a.years,
        baseline.len()
    );
    for r in &biggest {
        println!(
            "  {} {:<32} baseline {:.3}  counterfactual {:.3}  difference {:+.3} (se {:.3})",
            r.year, r.category, r.baseline, r.counterfactual, r.difference, r.se
        );
    }
    Ok(())
}

/// A simulated record as forecast scoring sees it: (person key, horizon, label).
pub type KeyedRecord = (usize, u32, labor_data::LabelId);

/// Reads a simulation folder's baseline records as (person key, horizon, label) with the
/// person keys numbered in order of appearance, for `labor eval --forecast`.
pub fn read_baseline(
    dir: &Path,
    taxonomy: &Taxonomy,
    keys: &mut std::collections::HashMap<(String, String), usize>,
) -> anyhow::Result<(serde_json::Value, Vec<KeyedRecord>)> {
    let meta_path = dir.join("simulation.json");
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&meta_path)
            .map_err(|e| anyhow!("cannot read {}: {e}", meta_path.display()))?,
    )
    .map_err(|e| bad!("{}: {e}", meta_path.display()))?;
    let path = dir.join("records.csv");
    let f =
        std::fs::File::open(&path).map_err(|e| anyhow!("cannot open {}: {e}", path.display()))?;
    let mut rdr = csv::Reader::from_reader(std::io::BufReader::new(f));
    let header = rdr.headers()?.clone();
    let col = |n: &str| {
        header
            .iter()
            .position(|h| h == n)
            .ok_or_else(|| bad!("{}: no {n} column", path.display()))
    };
    let (sc, ds, pid, hz, lab) = (
        col("scenario")?,
        col("dataset")?,
        col("person_id")?,
        col("horizon")?,
        col("label")?,
    );
    let mut out = Vec::new();
    for (i, row) in rdr.records().enumerate() {
        let row = row.map_err(|e| bad!("{}: {e}", path.display()))?;
        if &row[sc] != "baseline" {
            continue;
        }
        let n = keys.len();
        let key = *keys
            .entry((row[ds].to_string(), row[pid].to_string()))
            .or_insert(n);
        let h: u32 = row[hz]
            .parse()
            .map_err(|_| bad!("{}, line {}: horizon {:?}", path.display(), i + 2, &row[hz]))?;
        let label = taxonomy.by_code(&row[lab]).ok_or_else(|| {
            bad!(
                "{}, line {}: label {:?} is not in the taxonomy",
                path.display(),
                i + 2,
                &row[lab]
            )
        })?;
        out.push((key, h, label));
    }
    Ok((meta, out))
}

/// Per horizon h: the number of persons whose realised path runs year by year through h, and
/// their mean log-probability of the path up to h (`realised.csv` of a `--cut` simulation;
/// empty when the folder has none).
pub fn path_scores(dir: &Path) -> anyhow::Result<std::collections::BTreeMap<u32, (usize, f64)>> {
    let path = dir.join("realised.csv");
    let mut out = std::collections::BTreeMap::new();
    if !path.exists() {
        return Ok(out);
    }
    let mut rdr = csv::Reader::from_path(&path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    // Records come person by person, horizon by horizon.
    let mut per_person: std::collections::HashMap<(String, String), Vec<(u32, f64)>> =
        Default::default();
    for (i, row) in rdr.records().enumerate() {
        let row = row.map_err(|e| bad!("{}: {e}", path.display()))?;
        let bad_num = || bad!("{}, line {}: not a number", path.display(), i + 2);
        let h: u32 = row
            .get(2)
            .and_then(|x| x.parse().ok())
            .ok_or_else(bad_num)?;
        let lp: f64 = row
            .get(5)
            .and_then(|x| x.parse().ok())
            .ok_or_else(bad_num)?;
        per_person
            .entry((row[0].to_string(), row[1].to_string()))
            .or_default()
            .push((h, lp));
    }
    for steps in per_person.values() {
        let mut total = 0.0;
        for (j, (h, lp)) in steps.iter().enumerate() {
            if *h != j as u32 + 1 {
                break;
            }
            total += lp;
            let e = out.entry(*h).or_insert((0usize, 0.0));
            e.0 += 1;
            e.1 += total;
        }
    }
    for v in out.values_mut() {
        v.1 /= v.0 as f64;
    }
    Ok(out)
}
