//! `labor calibrate --model DIR --panel P [--split valid] [--kind temperature-stay]`: fits a
//! post-hoc calibration of any model on a split it was not trained on (the validation split by
//! default) and writes it as JSON (default `DIR/calibration.json`); `labor score --calibration
//! FILE` applies it. See `labor_data::calibration`.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;
use labor_data::calibration::{CalRecord, Calibration, CalibrationKind, fit};
use labor_data::{Split, SplitSpec};

use crate::io::{CmdResult, PanelInput, write_atomic};

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    #[command(flatten)]
    pub m: crate::model::ModelArgs,
    #[arg(long)]
    pub panel: PathBuf,
    #[command(flatten)]
    pub input: PanelInput,
    /// Fit on the persons of this split (never the split you report on).
    #[arg(long, default_value = "valid")]
    pub split: String,
    /// Split seed for persons without an explicit split.
    #[arg(long, default_value_t = labor_data::split::DEFAULT_SPLIT_SEED)]
    pub split_seed: u64,
    /// Fit on at most this many persons (the first ones of the split, in panel order).
    #[arg(long)]
    pub limit: Option<usize>,
    /// `temperature` (one temperature on the log-probabilities) or `temperature-stay` (plus an
    /// offset on the previous record's label).
    #[arg(long, default_value = "temperature-stay")]
    pub kind: CalibrationKind,
    /// Where to write the calibration (default: MODEL/calibration.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Reads a calibration file written by `labor calibrate`.
pub fn read(path: &std::path::Path) -> CmdResult<Calibration> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("cannot read calibration {}: {e}", path.display()))?;
    let c: Calibration = serde_json::from_str(&text)
        .map_err(|e| crate::bad!("{}: not a calibration file: {e}", path.display()))?;
    if !(c.temperature.is_finite() && c.temperature > 0.0 && c.stay_offset.is_finite()) {
        return Err(crate::bad!(
            "{}: temperature {} and stay offset {}: expected a positive temperature and a finite offset",
            path.display(),
            c.temperature,
            c.stay_offset
        )
        .into());
    }
    Ok(c)
}

pub fn run(a: &CalibrateArgs) -> CmdResult {
    let (panel, _) = crate::io::load_panel(&a.panel, &a.input)?;
    let split: Split = a
        .split
        .parse()
        .map_err(|_| anyhow!("--split {:?}: expected train, valid or test", a.split))?;
    let spec = SplitSpec {
        seed: a.split_seed,
        ..SplitSpec::default()
    };
    let persons: Vec<&labor_data::Person> = panel
        .persons
        .iter()
        .filter(|p| p.split_or(&spec) == split)
        .take(a.limit.unwrap_or(usize::MAX))
        .collect();
    if persons.is_empty() {
        return Err(anyhow!("{}: no persons in the {} split", a.panel.display(), a.split).into());
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| a.m.model.join("calibration.json"));
    crate::model::with_predictor(&a.m, &panel.taxonomy, |p| {
        let mut records = Vec::new();
        for person in &persons {
            let ts: Vec<usize> = (0..person.records.len()).collect();
            let pred = p.predict(person, &ts).map_err(|e| anyhow!(e))?;
            for (&t, logp) in ts.iter().zip(pred.logp) {
                records.push(CalRecord {
                    logp,
                    truth: person.records[t].label.index(),
                    prev: (t > 0).then(|| person.records[t - 1].label.index()),
                });
            }
        }
        let mut c = fit(&records, a.kind).map_err(|e| anyhow!(e))?;
        c.fitted_on = format!(
            "{} on {} ({} split, {} persons)",
            p.name(),
            a.panel.display(),
            a.split,
            persons.len()
        );
        write_atomic(&out, |w| Ok(serde_json::to_writer_pretty(w, &c)?))?;
        println!("{}: {}", out.display(), c.describe());
        Ok(())
    })?;
    Ok(())
}
