//! Numerical parity with Hugging Face `transformers`: tiny random models and their reference
//! logits, made by `tools/reference/make_fixtures.py` (CI never runs Python).

use std::path::{Path, PathBuf};

use labor_lm::{Llama, LlamaConfig};
use labor_torch::weights;
use safetensors::SafeTensors;
use tch::{Device, Kind, Tensor, nn};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(dir: &Path) -> (nn::VarStore, Llama) {
    let cfg =
        LlamaConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Llama::new(&vs.root(), &cfg, false);
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    weights::load_into(&vs, &[("model.safetensors", &bytes)]).unwrap();
    (vs, model)
}

fn tensor(st: &SafeTensors, name: &str) -> Tensor {
    let v = st.tensor(name).unwrap();
    let shape: Vec<i64> = v.shape().iter().map(|&d| d as i64).collect();
    let kind = match v.dtype() {
        safetensors::Dtype::F32 => Kind::Float,
        safetensors::Dtype::I64 => Kind::Int64,
        d => panic!("unexpected dtype {d:?}"),
    };
    Tensor::from_data_size(v.data(), &shape, kind)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn check(name: &str) {
    let dir = fixture(name);
    let (_vs, model) = load(&dir);
    let bytes = std::fs::read(dir.join("reference.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let strings: Vec<String> =
        serde_json::from_str(&meta.metadata().as_ref().unwrap()["strings"]).unwrap();
    let tok = labor_text::tokenize::from_json(&std::fs::read(dir.join("tokenizer.json")).unwrap())
        .unwrap();
    for (i, s) in strings.iter().enumerate() {
        let ids = tensor(&st, &format!("ids_{i}"));
        let ours: Vec<i64> = tok
            .encode(s.as_str(), false)
            .unwrap()
            .get_ids()
            .iter()
            .map(|&x| x as i64)
            .collect();
        assert_eq!(
            ours,
            Vec::<i64>::try_from(&ids).unwrap(),
            "{name}: tokens of {s:?}"
        );
        let want = tensor(&st, &format!("logits_{i}"));
        let got = tch::no_grad(|| model.forward(&ids.unsqueeze(0))).get(0);
        let d = max_abs_diff(&got, &want);
        assert!(d < 1e-4, "{name} sequence {i}: max |Δlogit| = {d}");
    }
    // A right-padded batch: real positions must match (padding sits after them, causally).
    let ids = tensor(&st, "batch_ids");
    let mask = tensor(&st, "batch_mask");
    let want = tensor(&st, "batch_logits");
    let got = tch::no_grad(|| model.forward(&ids));
    for b in 0..2 {
        let n = mask.get(b).sum(Kind::Int64).int64_value(&[]);
        let d = max_abs_diff(&got.get(b).narrow(0, 0, n), &want.get(b).narrow(0, 0, n));
        assert!(d < 1e-4, "{name} batch row {b}: max |Δlogit| = {d}");
    }
}

#[test]
fn llama_with_gqa_untied_and_llama3_rope_matches_transformers() {
    check("llama-gqa");
}

#[test]
fn qwen2_with_tied_embeddings_and_qkv_bias_matches_transformers() {
    check("qwen2-tied");
}

/// The same models saved by transformers 5.x, whose config.json holds `rope_parameters` (no
/// top-level `rope_theta` or `rope_scaling`).
#[test]
fn transformers_5_configs_and_weights_match_transformers_5() {
    for name in ["llama-gqa-tf5", "qwen2-tied-tf5"] {
        let text = std::fs::read_to_string(fixture(name).join("config.json")).unwrap();
        let raw: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(raw.get("rope_parameters").is_some() && raw.get("rope_theta").is_none());
        assert!(
            raw["transformers_version"]
                .as_str()
                .unwrap()
                .starts_with("5.")
        );
        check(name);
    }
    // The llama3 scaling comes through `rope_parameters` as it does through `rope_scaling`.
    let read = |n: &str| {
        LlamaConfig::from_json(&std::fs::read_to_string(fixture(n).join("config.json")).unwrap())
            .unwrap()
    };
    let (v4, v5) = (read("llama-gqa"), read("llama-gqa-tf5"));
    assert!(v5.rope_scaling.is_some());
    assert_eq!(v5.rope_scaling, v4.rope_scaling);
    assert_eq!(v5.rope_theta, v4.rope_theta);
    assert_eq!(read("qwen2-tied-tf5").rope_theta, 1_000_000.0);
}

#[test]
fn weights_round_trip_through_safetensors_single_and_sharded() {
    let (vs, model) = load(&fixture("qwen2-tied"));
    let named = weights::named(&vs);
    assert!(
        !named.contains_key("lm_head.weight"),
        "tied head is not a variable"
    );
    let meta = [("format".to_string(), "pt".to_string())].into();
    for max in [usize::MAX, 20_000] {
        let files = weights::save(&named, Kind::Float, max, &meta).unwrap();
        if max == usize::MAX {
            assert_eq!(files.len(), 1);
        } else {
            assert!(files.len() > 2);
            let index = files
                .iter()
                .find(|(n, _)| n == "model.safetensors.index.json")
                .unwrap();
            let shards = weights::shard_names(std::str::from_utf8(&index.1).unwrap()).unwrap();
            assert_eq!(shards.len(), files.len() - 1);
        }
        let cfg = model.config.clone();
        let vs2 = nn::VarStore::new(Device::Cpu);
        let _m2 = Llama::new(&vs2.root(), &cfg, false);
        let parts: Vec<(&str, &[u8])> = files
            .iter()
            .filter(|(n, _)| n.ends_with(".safetensors"))
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        weights::load_into(&vs2, &parts).unwrap();
        for (k, v) in vs2.variables() {
            assert_eq!(max_abs_diff(&v, &named[&k]), 0.0, "{k}");
        }
    }
}

#[test]
fn loading_reports_missing_unexpected_and_misshapen_tensors() {
    let dir = fixture("llama-gqa");
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let mut cfg =
        LlamaConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    cfg.num_hidden_layers = 3;
    let vs = nn::VarStore::new(Device::Cpu);
    let _m = Llama::new(&vs.root(), &cfg, false);
    let e = weights::load_into(&vs, &[("model.safetensors", &bytes)]).unwrap_err();
    assert!(
        e.to_string()
            .contains("model.layers.2.mlp.down_proj.weight"),
        "{e}"
    );
    cfg.num_hidden_layers = 1;
    let vs = nn::VarStore::new(Device::Cpu);
    let _m = Llama::new(&vs.root(), &cfg, false);
    let e = weights::load_into(&vs, &[("model.safetensors", &bytes)]).unwrap_err();
    assert!(
        e.to_string()
            .contains("model.layers.1.self_attn.q_proj.weight"),
        "{e}"
    );
    cfg.num_hidden_layers = 2;
    cfg.intermediate_size = 65;
    let vs = nn::VarStore::new(Device::Cpu);
    let _m = Llama::new(&vs.root(), &cfg, false);
    let e = weights::load_into(&vs, &[("model.safetensors", &bytes)]).unwrap_err();
    assert!(e.to_string().contains("shape"), "{e}");
}
