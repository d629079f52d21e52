//! Opt-in: SmolLM2-135M imported from its GGUF (`labor lm fetch smollm2`) against Hugging Face
//! `transformers`' own GGUF loading (`tools/reference/make_fixtures.py`). Set
//! `LABOR_SMOLLM2_DIR` to the imported model directory and run with `--ignored`.

use std::path::Path;

use labor_lm::{Llama, LlamaConfig};
use labor_torch::weights;
use tch::{Device, Kind, Tensor, nn};

#[test]
#[ignore = "needs LABOR_SMOLLM2_DIR (the directory `labor lm fetch smollm2` prints)"]
fn smollm2_from_gguf_matches_transformers_log_probs() {
    let Some(dir) = std::env::var_os("LABOR_SMOLLM2_DIR") else {
        eprintln!("skipped: LABOR_SMOLLM2_DIR is not set");
        return;
    };
    let dir = Path::new(&dir);
    let cfg =
        LlamaConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Llama::new(&vs.root(), &cfg, false);
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    weights::load_into(&vs, &[("model.safetensors", &bytes)]).unwrap();
    let tok = labor_text::tokenize::from_json(&std::fs::read(dir.join("tokenizer.json")).unwrap())
        .unwrap();
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/smollm2-gguf-reference.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut worst = 0f64;
    for p in reference["prompts"].as_array().unwrap() {
        let text = p["text"].as_str().unwrap();
        let want_ids: Vec<i64> = p["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        let ids: Vec<i64> = tok
            .encode(text, false)
            .unwrap()
            .get_ids()
            .iter()
            .map(|&x| x as i64)
            .collect();
        assert_eq!(ids, want_ids, "tokenization of {text:?}");
        let lp = tch::no_grad(|| model.forward(&Tensor::from_slice(&ids).unsqueeze(0)))
            .get(0)
            .log_softmax(-1, Kind::Double);
        for (i, want) in p["token_logprobs"].as_array().unwrap().iter().enumerate() {
            let got = lp.double_value(&[i as i64, ids[i + 1]]);
            let d = (got - want.as_f64().unwrap()).abs();
            worst = worst.max(d);
            assert!(d < 1e-3, "token {} of {text:?}: {got} vs {want}", i + 1);
        }
        let last = ids.len() as i64 - 1;
        let top = &p["final_top20"];
        for (id, want) in top["ids"]
            .as_array()
            .unwrap()
            .iter()
            .zip(top["logprobs"].as_array().unwrap())
        {
            let got = lp.double_value(&[last, id.as_i64().unwrap()]);
            assert!((got - want.as_f64().unwrap()).abs() < 1e-3);
        }
    }
    eprintln!("largest |Δ log p| against transformers: {worst:.2e}");
}
