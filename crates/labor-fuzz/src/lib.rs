//! Fuzz harness bodies: one function per target, each feeding arbitrary bytes to every reader
//! of one kind of outside file, exactly as the `labor` command calls it. A body must return
//! for every input; a panic, abort, stack overflow or unbounded allocation is a finding. Each
//! returns how many of its readers accepted the input (the smoke test checks that every seed
//! is accepted by at least one, so seeds keep reaching past the first checks).
//!
//! `fuzz/` (cargo-fuzz, nightly) runs them under libFuzzer; `tests/smoke.rs` runs each on its
//! seeds, every committed regression and a fixed set of mutations, on stable, in CI.
//! `docs/fuzzing.md` lists the targets and the latest long runs.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::OnceLock;

use labor_data::{BuildOptions, Taxonomy};

/// A target's body: how many of its readers accepted the input.
pub type Body = fn(&[u8]) -> usize;

/// Every target: its name (the cargo-fuzz target and seed directory) and body.
pub const TARGETS: &[(&str, Body)] = &[
    ("panel_csv", panel_csv),
    ("parquet", parquet),
    ("career_dir", career_dir),
    ("toml_configs", toml_configs),
    ("gguf", gguf),
    ("safetensors", safetensors),
    ("tokenizer_json", tokenizer_json),
    ("model_json", model_json),
];

/// For libFuzzer runs: replaces libfuzzer-sys's panic hook (which aborts on every panic, even
/// one a reader catches on purpose, like the Parquet guard) with one that only prints the
/// first panics. A panic that escapes a body still aborts the run: libfuzzer-sys catches it
/// at the boundary and aborts.
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        static SHOWN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        std::panic::set_hook(Box::new(|info| {
            if SHOWN.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 20 {
                eprintln!("panic (caught by a reader, or a finding if the run stops): {info}");
            }
        }));
    });
}

fn taxonomy() -> Taxonomy {
    static T: OnceLock<Taxonomy> = OnceLock::new();
    T.get_or_init(Taxonomy::embedded_default).clone()
}

fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// Splits `data` into parts at 0xFF bytes (never part of UTF-8 text), for multi-file inputs.
fn parts(data: &[u8]) -> Vec<&[u8]> {
    data.split(|&b| b == 0xFF).collect()
}

/// CSV readers: the panel CSV, a taxonomy CSV, a crosswalk CSV, and a raw extract under the
/// worked example's mapping (`examples/import/mapping.toml`).
pub fn panel_csv(data: &[u8]) -> usize {
    let mut ok = 0;
    ok += usize::from(
        labor_data::formats::csv::read_panel_csv(data, taxonomy(), BuildOptions::default()).is_ok(),
    );
    ok += usize::from(Taxonomy::from_csv(data).is_ok());
    ok += usize::from(labor_data::import::read_crosswalk(&text(data), &taxonomy()).is_ok());
    static EXAMPLE: OnceLock<(labor_data::import::Mapping, BTreeMap<String, String>)> =
        OnceLock::new();
    let (mapping, crosswalk) = EXAMPLE.get_or_init(|| {
        let m = labor_data::import::Mapping::from_toml(include_str!(
            "../../../examples/import/mapping.toml"
        ))
        .expect("the worked example's mapping parses");
        let c = labor_data::import::read_crosswalk(
            include_str!("../../../examples/import/crosswalk.csv"),
            &taxonomy(),
        )
        .expect("the worked example's crosswalk reads");
        (m, c)
    });
    ok += usize::from(
        labor_data::import::import_extract(mapping, crosswalk.clone(), data, taxonomy()).is_ok(),
    );
    ok
}

/// Parquet readers: a panel, and a predictions file read as each command reads it.
pub fn parquet(data: &[u8]) -> usize {
    let mut ok = 0;
    let b = bytes::Bytes::copy_from_slice(data);
    ok += usize::from(
        labor_data::formats::parquet::read_panel_parquet(
            b.clone(),
            taxonomy(),
            BuildOptions::default(),
        )
        .is_ok(),
    );
    ok += usize::from(labor_data::predictions::read_predictions(b.clone()).is_ok());
    ok += usize::from(labor_data::predictions::read_logp(b.clone()).is_ok());
    ok += usize::from(
        labor_data::predictions::read_full_by_class(b, &[], 3, |c| Some(c.len() % 3)).is_ok(),
    );
    ok
}

/// The CAREER directory format: parts (split at 0xFF) become the files `train.job`,
/// `train.year`, ..., `valid.*`, `test.*` in a fixed order (fewer parts: fewer files).
pub fn career_dir(data: &[u8]) -> usize {
    let mut ok = 0;
    const FIELDS: [&str; 7] = [
        "job",
        "year",
        "education",
        "ethnicity",
        "gender",
        "location",
        "year_of_birth",
    ];
    let names = ["train", "valid", "test"]
        .into_iter()
        .flat_map(|s| FIELDS.map(|f| format!("{s}.{f}")));
    let files: labor_data::formats::career::CareerFiles = parts(data)
        .into_iter()
        .zip(names)
        .map(|(p, n)| (n, text(p).into_owned()))
        .collect();
    ok += usize::from(
        labor_data::formats::career::read_career(
            &files,
            "fuzz",
            taxonomy(),
            BuildOptions::default(),
        )
        .is_ok(),
    );
    ok
}

/// Every TOML the command reads: import mapping, world, template, run config, preset, CAREER
/// fit config, init config.
pub fn toml_configs(data: &[u8]) -> usize {
    let mut ok = 0;
    let t = text(data);
    ok += usize::from(labor_data::import::Mapping::from_toml(&t).is_ok());
    ok += usize::from(labor_synth::World::from_toml(&t).is_ok());
    ok += usize::from(labor_text::Template::from_toml(&t).is_ok());
    ok += usize::from(toml::from_str::<labor_cli::train::RunConfig>(&t).is_ok());
    ok += usize::from(labor_cli::reproduce::parse_preset("fuzz", &t).is_ok());
    ok += usize::from(toml::from_str::<labor_career::FitConfig>(&t).is_ok());
    ok += usize::from(toml::from_str::<labor_cli::lm::InitConfig>(&t).is_ok());
    ok
}

/// GGUF: the metadata reader and tokenizer builder (`labor tokenizer from-gguf`), the tensor
/// index, every tensor's dequantization, and the Llama import (`labor lm import-gguf`).
pub fn gguf(data: &[u8]) -> usize {
    let mut ok = 0;
    if let Ok(m) = labor_gguf::read_metadata(data) {
        ok += 1;
        ok += usize::from(labor_text::gguf::tokenizer_from_metadata(&m, None).is_ok());
        ok += usize::from(labor_text::gguf::tokenizer_from_metadata(&m, Some("llama-bpe")).is_ok());
    }
    let mut c = Cursor::new(data);
    if let Ok(index) = labor_gguf::read_index(&mut c) {
        ok += 1;
        for info in &index.tensors {
            ok += usize::from(labor_gguf::read_tensor(&mut c, &index, info).is_ok());
        }
    }
    ok += usize::from(
        labor_lm::gguf::import_llama_with(&mut Cursor::new(data), true, |_, _| {}).is_ok(),
    );
    ok
}

/// safetensors: a weights file (tensors and `__metadata__`), a shard index, and a CAREER
/// model's weights.
pub fn safetensors(data: &[u8]) -> usize {
    let mut ok = 0;
    ok += usize::from(labor_torch::weights::read_named("fuzz.safetensors", data).is_ok());
    ok += usize::from(labor_torch::weights::read_metadata("fuzz.safetensors", data).is_ok());
    ok += usize::from(labor_torch::weights::shard_names(&text(data)).is_ok());
    ok += usize::from(labor_career::train::from_bytes(data).is_ok());
    ok
}

/// tokenizer.json, then encoding and decoding a record line with whatever loaded.
pub fn tokenizer_json(data: &[u8]) -> usize {
    let mut ok = 0;
    if let Ok(tok) = labor_text::tokenize::from_json(data) {
        ok += 1;
        if let Ok(enc) = tok.encode("1990 (some college): Cashiers <|endoftext|>", false) {
            ok += usize::from(tok.decode(enc.get_ids(), false).is_ok());
        }
    }
    ok
}

/// Model JSON and model files: config.json, adapter_config.json, the Markov and MNL model
/// files, and a CAREER model.json with (after a 0xFF) its weights.
pub fn model_json(data: &[u8]) -> usize {
    let mut ok = 0;
    let t = text(data);
    ok += usize::from(labor_lm::LlamaConfig::from_json(&t).is_ok());
    ok += usize::from(labor_lm::peft::parse_adapter_config(&t).is_ok());
    ok += usize::from(labor_baselines::markov::Markov::from_reader(data).is_ok());
    ok += usize::from(labor_baselines::mnl::Mnl::from_reader(data).is_ok());
    let p = parts(data);
    let weights = p.get(1).copied().unwrap_or(&[]);
    ok += usize::from(
        labor_career::NeuralModel::from_parts(&text(p[0]), weights, tch::Device::Cpu).is_ok(),
    );
    ok
}
