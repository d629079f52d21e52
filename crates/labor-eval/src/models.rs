//! The "Models" table: what each model was given — parameters, training data, epochs and wall
//! time of training, and for a fine-tuned language model its base's own training too.
//!
//! The numbers come from the key-value metadata `labor score` copies into every predictions file
//! from the model directory: `labor.model.training.json` (written by `labor train`),
//! `labor.model.fit.json` and `labor.model.kind` (written by `labor fit`),
//! `labor.model.config.json` and `labor.model.adapter_config.json` (any LM directory). Only
//! recorded numbers are shown; a cell the files do not give is [`UNKNOWN`].

use serde_json::Value;

use crate::table::Table;

/// Shown where the prediction file's metadata does not say.
pub const UNKNOWN: &str = "—";

/// What a model's training was given, as far as its metadata records it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Given {
    pub kind: Option<String>,
    pub parameters: Option<u64>,
    /// Set when fewer than all parameters were trained (LoRA).
    pub trainable_parameters: Option<u64>,
    /// Training data, e.g. `2.13 M tokens, 9,090 texts`.
    pub data: Option<String>,
    /// Epochs (or, for a model fitted by an optimizer without epochs, its iterations).
    pub epochs: Option<String>,
    pub wall_s: Option<f64>,
    /// The base model's own training (a fine-tuned LM's pre-training).
    pub base: Option<Box<Given>>,
}

fn get<'a>(metadata: &'a [(String, String)], key: &str) -> Option<&'a str> {
    metadata
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn json(metadata: &[(String, String)], key: &str) -> Option<Value> {
    get(metadata, key)
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
        .filter(Value::is_object)
}

fn count(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_f64().filter(|x| *x >= 0.0).map(|x| x as u64))
}

fn seconds(v: &Value) -> Option<f64> {
    v.as_f64().filter(|x| x.is_finite() && *x >= 0.0)
}

/// `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A count with an SI suffix and three significant figures: `950`, `12.3 k`, `1.10 M`, `7.00 B`.
pub fn si(n: u64) -> String {
    let x = n as f64;
    let (v, unit) = if x >= 1e12 {
        (x / 1e12, " T")
    } else if x >= 1e9 {
        (x / 1e9, " B")
    } else if x >= 1e6 {
        (x / 1e6, " M")
    } else if x >= 1e4 {
        (x / 1e3, " k")
    } else {
        return thousands(n);
    };
    let d = if v < 10.0 {
        2
    } else if v < 100.0 {
        1
    } else {
        0
    };
    format!("{v:.d$}{unit}")
}

/// `0.4 s`, `45.8 s`, `2 min 01 s`, `3 h 07 min`.
pub fn duration(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        let t = s.round() as u64;
        format!("{} min {:02} s", t / 60, t % 60)
    } else {
        let m = (s / 60.0).round() as u64;
        format!("{} h {:02} min", m / 60, m % 60)
    }
}

/// A language model's `training.json` (see `labor train`).
fn from_training(t: &Value, depth: usize) -> Given {
    let kind = match t["method"].as_str() {
        Some("lora") => "LM, LoRA".to_string(),
        Some("full") => "LM, full weights".to_string(),
        Some(m) => format!("LM, {m}"),
        None => "LM".to_string(),
    };
    let parameters = count(&t["parameters"]);
    let trainable = count(&t["trainable_parameters"]).filter(|n| Some(*n) != parameters);
    let data = match (count(&t["tokens"]), count(&t["texts"])) {
        (Some(k), Some(n)) => Some(format!("{} tokens, {} texts", si(k), thousands(n))),
        (Some(k), None) => Some(format!("{} tokens", si(k))),
        (None, Some(n)) => Some(format!("{} texts", thousands(n))),
        (None, None) => None,
    };
    let datasets: Vec<&str> = t["datasets"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let data = match data {
        Some(d) if !datasets.is_empty() => Some(format!("{d} ({})", datasets.join(" + "))),
        d => d,
    };
    let epochs = match (t["epochs"].as_f64(), count(&t["steps"])) {
        (Some(e), Some(s)) => Some(format!("{e:.2} ({} steps)", thousands(s))),
        (Some(e), None) => Some(format!("{e:.2}")),
        (None, Some(s)) => Some(format!("{} steps", thousands(s))),
        (None, None) => None,
    };
    // One level of base is shown; a base's base would need a column of its own.
    let base = (depth == 0)
        .then(|| t.get("base").filter(|b| b.is_object()))
        .flatten()
        .map(|b| Box::new(from_training(b, depth + 1)));
    Given {
        kind: Some(kind),
        parameters,
        trainable_parameters: trainable,
        data,
        epochs,
        wall_s: seconds(&t["wall_s"]),
        base,
    }
}

/// A comparison model's `fit.json` (see `labor fit`): Markov (smoothing, seconds), MNL (L-BFGS
/// reports), bag-of-jobs and career (parameters, epochs per stage, seconds).
fn from_fit(f: &Value, kind: Option<&str>) -> Given {
    let kind = kind
        .map(str::to_string)
        .or_else(|| f["kind"].as_str().map(String::from))
        .or_else(|| f["model"].as_str().map(String::from));
    let mut g = Given {
        wall_s: seconds(&f["seconds"]),
        ..Default::default()
    };
    if kind.as_deref() == Some("mnl") || f.get("report").is_some_and(Value::is_object) {
        let r = &f["report"];
        let stay = f
            .get("stay")
            .filter(|s| s.is_object())
            .map(|s| &s["report"]);
        let form = f["form"].as_str();
        g.kind = Some(match form {
            Some(form) => format!("mnl ({form})"),
            None => "mnl".into(),
        });
        // W is n_features × n_classes; the stay logit has one coefficient per feature.
        let w = count(&r["n_features"])
            .zip(count(&r["n_classes"]))
            .map(|(a, b)| a * b);
        g.parameters = match stay {
            Some(s) => w.zip(count(&s["n_features"])).map(|(a, b)| a + b),
            None => w,
        };
        let obs = count(&r["n_obs"]);
        g.data = match (stay.and_then(|s| count(&s["n_obs"])), obs) {
            (Some(s), Some(m)) => Some(format!(
                "{} stay + {} move/first obs.",
                thousands(s),
                thousands(m)
            )),
            (None, Some(m)) if stay.is_none() => Some(format!("{} person-years", thousands(m))),
            _ => None,
        };
        let it = count(&r["iterations"]);
        g.epochs = match (it, stay.and_then(|s| count(&s["iterations"]))) {
            (Some(a), Some(b)) => Some(format!("L-BFGS: {a} + {b} (stay) iterations")),
            (Some(a), None) => Some(format!("L-BFGS: {a} iterations")),
            _ => None,
        };
        return g;
    }
    g.kind = kind;
    g.parameters = count(&f["parameters"]);
    g.data = match (count(&f["train_persons"]), count(&f["pretrain_persons"])) {
        (Some(t), Some(p)) if p > 0 => Some(format!(
            "{} persons; pre-training {} persons",
            thousands(t),
            thousands(p)
        )),
        (Some(t), _) => Some(format!("{} persons", thousands(t))),
        _ => None,
    };
    let total = count(&f["epochs"]);
    let stages: Vec<(String, u64)> = f["stages"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| Some((s["name"].as_str()?.to_string(), count(&s["epochs"])?)))
                .collect()
        })
        .unwrap_or_default();
    g.epochs = match total {
        Some(t) if stages.len() > 1 => Some(format!(
            "{t} ({})",
            stages
                .iter()
                .map(|(n, e)| format!("{n} {e}"))
                .collect::<Vec<_>>()
                .join(" + ")
        )),
        Some(t) => Some(t.to_string()),
        None => None,
    };
    g
}

/// What one model's prediction-file metadata says about its training.
pub fn given(metadata: &[(String, String)], is_oracle: bool) -> Given {
    if is_oracle {
        return Given {
            kind: Some("oracle (true probabilities)".into()),
            ..Default::default()
        };
    }
    let kind_file = get(metadata, "labor.model.kind")
        .map(str::trim)
        .filter(|k| !k.is_empty());
    if let Some(t) = json(metadata, "labor.model.training.json") {
        let mut g = from_training(&t, 0);
        if t["method"].is_null() && get(metadata, "labor.model.adapter_config.json").is_some() {
            g.kind = Some("LM, LoRA".into());
        }
        return g;
    }
    if let Some(f) = json(metadata, "labor.model.fit.json") {
        return from_fit(&f, kind_file);
    }
    let kind = if get(metadata, "labor.model.adapter_config.json").is_some() {
        Some("LM, LoRA".to_string())
    } else if get(metadata, "labor.model.config.json").is_some() {
        Some("LM".to_string())
    } else {
        kind_file.map(String::from)
    };
    Given {
        kind,
        ..Default::default()
    }
}

fn cell(x: Option<String>) -> String {
    x.unwrap_or_else(|| UNKNOWN.to_string())
}

fn params_cell(g: &Given) -> String {
    match (g.parameters, g.trainable_parameters) {
        (Some(p), Some(t)) => format!("{} ({} trained)", si(p), si(t)),
        (Some(p), None) => si(p),
        (None, Some(t)) => format!("{} trained", si(t)),
        (None, None) => UNKNOWN.into(),
    }
}

/// The "Models" table, one row per (model name, its prediction file's metadata), in the given
/// order.
pub fn models_table(models: &[(&str, &[(String, String)])], oracle: Option<&str>) -> Table {
    let mut t = Table::new(
        "models",
        "Models: what each was given",
        &[
            "model",
            "kind",
            "parameters",
            "training data",
            "epochs",
            "wall time",
            "base: parameters",
            "base: training data",
            "base: epochs",
            "base: wall time",
        ],
    );
    t.caption = format!(
        "From each prediction file's metadata (the model directory's training.json or \
         fit.json). Tokens: training target tokens processed over all epochs; texts: training \
         texts. An LM's base columns are the base model's own training. Markov models are \
         fitted by counting; the MNL by L-BFGS (iterations, not epochs; its observations are \
         the stay logit's and the move softmax's rows). {UNKNOWN}: not recorded."
    );
    for (name, metadata) in models {
        let g = given(metadata, Some(*name) == oracle);
        let b = g.base.as_deref();
        t.push(vec![
            name.to_string(),
            cell(g.kind.clone()),
            params_cell(&g),
            cell(g.data.clone()),
            cell(g.epochs.clone()),
            cell(g.wall_s.map(duration)),
            b.map_or(UNKNOWN.into(), params_cell),
            cell(b.and_then(|b| b.data.clone())),
            cell(b.and_then(|b| b.epochs.clone())),
            cell(b.and_then(|b| b.wall_s.map(duration))),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_models_table_shows_what_each_file_records_and_nothing_else() {
        let base = r#"{"kind": "lm", "method": "full", "parameters": 1097856,
            "trainable_parameters": 1097856, "steps": 429, "epochs": 3.0198,
            "tokens": 2345678, "texts": 9090, "wall_s": 121.1, "base": null}"#;
        let ft = format!(
            r#"{{"kind": "lm", "method": "full", "parameters": 1097856,
            "trainable_parameters": 1097856, "steps": 260, "epochs": 4.013, "tokens": 512000,
            "texts": 2073, "wall_s": 45.8, "base": {base}}}"#
        );
        let lora = r#"{"kind": "lm", "method": "lora", "parameters": 134515008,
            "trainable_parameters": 921600, "steps": 100, "epochs": 1.0, "tokens": 50000,
            "texts": 800, "wall_s": 7300.0, "base": null}"#;
        let career = r#"{"model": "career", "kind": "career", "parameters": 123456,
            "seconds": 150.2, "cpu_seconds": 120.4, "epochs": 15,
            "stages": [{"name": "pretrain", "epochs": 8, "steps": 800},
                       {"name": "train", "epochs": 7, "steps": 300}],
            "history": [{"stage": "pretrain", "epoch": 1, "seconds": 15.0}]}"#;
        let markov = r#"{"model": "markov1", "first_smoothing": "Additive(0.1)",
            "smoothing1": "Additive(0.5)", "seconds": 0.42}"#;
        let mnl = r#"{"model": "mnl", "form": "two-stage", "loglik": -1000.0,
            "report": {"lambda": 0.01, "n_obs": 8113, "n_features": 500, "n_classes": 40,
                       "iterations": 120, "seconds": 3.0},
            "stay": {"report": {"lambda": 0.1, "n_obs": 35012, "n_features": 500,
                                "n_classes": 2, "iterations": 40, "seconds": 1.0}},
            "seconds": 4.5}"#;
        let mnl1 = r#"{"model": "mnl", "form": "one-stage",
            "report": {"n_obs": 43125, "n_features": 10, "n_classes": 3, "iterations": 7},
            "stay": null, "seconds": 1.5}"#;
        let models = [
            (
                "lm-ft",
                meta(&[
                    ("labor.model.training.json", &ft),
                    ("labor.model.config.json", "{}"),
                ]),
            ),
            (
                "lm-lora",
                meta(&[
                    ("labor.model.training.json", lora),
                    ("labor.model.adapter_config.json", "{}"),
                ]),
            ),
            (
                "career",
                meta(&[
                    ("labor.model.kind", "career\n"),
                    ("labor.model.fit.json", career),
                ]),
            ),
            (
                "markov1",
                meta(&[
                    ("labor.model.kind", "markov1\n"),
                    ("labor.model.fit.json", markov),
                ]),
            ),
            (
                "mnl",
                meta(&[("labor.model.kind", "mnl\n"), ("labor.model.fit.json", mnl)]),
            ),
            (
                "mnl1",
                meta(&[
                    ("labor.model.kind", "mnl\n"),
                    ("labor.model.fit.json", mnl1),
                ]),
            ),
            ("hf", meta(&[("labor.model.config.json", "{}")])),
            (
                "broken",
                meta(&[("labor.model.training.json", "{not json")]),
            ),
            ("oracle", vec![]),
        ];
        let refs: Vec<(&str, &[(String, String)])> =
            models.iter().map(|(n, m)| (*n, m.as_slice())).collect();
        let t = models_table(&refs, Some("oracle"));
        let row = |name: &str| -> Vec<&str> {
            t.rows
                .iter()
                .find(|r| r[0] == name)
                .unwrap_or_else(|| panic!("no row {name}"))
                .iter()
                .map(String::as_str)
                .collect()
        };
        assert_eq!(t.rows.len(), models.len());
        assert_eq!(
            row("lm-ft"),
            [
                "lm-ft",
                "LM, full weights",
                "1.10 M",
                "512 k tokens, 2,073 texts",
                "4.01 (260 steps)",
                "45.8 s",
                "1.10 M",
                "2.35 M tokens, 9,090 texts",
                "3.02 (429 steps)",
                "2 min 01 s"
            ]
        );
        assert_eq!(
            row("lm-lora")[1..6],
            [
                "LM, LoRA",
                "135 M (922 k trained)",
                "50.0 k tokens, 800 texts",
                "1.00 (100 steps)",
                "2 h 02 min"
            ]
        );
        assert_eq!(row("lm-lora")[6..], [UNKNOWN; 4]);
        assert_eq!(
            row("career")[1..],
            [
                "career",
                "123 k",
                UNKNOWN,
                "15 (pretrain 8 + train 7)",
                "2 min 30 s",
                UNKNOWN,
                UNKNOWN,
                UNKNOWN,
                UNKNOWN
            ]
        );
        assert_eq!(
            row("markov1")[1..6],
            ["markov1", UNKNOWN, UNKNOWN, UNKNOWN, "0.4 s"]
        );
        assert_eq!(
            row("mnl")[1..6],
            [
                "mnl (two-stage)",
                "20.5 k",
                "35,012 stay + 8,113 move/first obs.",
                "L-BFGS: 120 + 40 (stay) iterations",
                "4.5 s"
            ]
        );
        assert_eq!(
            row("mnl1")[1..6],
            [
                "mnl (one-stage)",
                "30",
                "43,125 person-years",
                "L-BFGS: 7 iterations",
                "1.5 s"
            ]
        );
        assert_eq!(
            row("hf")[1..],
            [
                "LM", UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN
            ]
        );
        assert_eq!(row("broken")[1..], [UNKNOWN; 9]);
        assert_eq!(row("oracle")[1], "oracle (true probabilities)");
        assert_eq!(row("oracle")[2..], [UNKNOWN; 8]);
    }

    #[test]
    fn formats() {
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(12), "12");
        assert_eq!(si(950), "950");
        assert_eq!(si(9_090), "9,090");
        assert_eq!(si(1_097_856), "1.10 M");
        assert_eq!(si(134_515_008), "135 M");
        assert_eq!(duration(0.42), "0.4 s");
        assert_eq!(duration(121.1), "2 min 01 s");
        assert_eq!(duration(3.0 * 3600.0 + 7.0 * 60.0), "3 h 07 min");
    }
}
