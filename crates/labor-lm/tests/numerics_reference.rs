//! The hand-written numerics against independent references, with fixtures made by
//! `tools/reference/make_numerics_fixtures.py` (CI never runs Python): GGUF dequantization
//! against the `gguf` package's `dequantize`, AdamW (with clipping and matrix-only decay) against
//! `torch.optim.AdamW`, and LoRA's forward pass and gradients against `peft`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use labor_gguf::{GgmlType, dequantize};
use labor_lm::{Llama, LlamaConfig};
use labor_torch::optim::{AdamW, OptimConfig, Schedule};
use labor_torch::weights;
use safetensors::SafeTensors;
use tch::{Device, Kind, Tensor, nn};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn gguf_dequantization_equals_the_gguf_package_for_every_supported_type() {
    let bytes = std::fs::read(fixture("gguf-dequant.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let meta: BTreeMap<String, String> = serde_json::from_str(
        &weights::read_metadata("gguf-dequant.safetensors", &bytes).unwrap()["types"],
    )
    .unwrap();
    let mut checked = Vec::new();
    for name in [
        "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q6_K",
    ] {
        let id: u32 = meta[name].parse().unwrap();
        let ty = GgmlType::from_id(id);
        assert!(ty.is_supported(), "{name}");
        assert_eq!(ty.name(), Some(name));
        let raw = st.tensor(&format!("{name}.raw")).unwrap();
        let want = f32s(st.tensor(&format!("{name}.values")).unwrap().data());
        let got = dequantize(ty, raw.data(), want.len()).unwrap();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            // Same f32 operations in a possibly different order: a few ulps at most.
            assert!(
                (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                "{name} element {i}: ours {g}, gguf {w}"
            );
        }
        assert!(want.iter().any(|&v| v != 0.0));
        checked.push((name, want.len()));
    }
    assert_eq!(checked.len(), 8);
}

fn named_tensors(path: &Path) -> BTreeMap<String, Tensor> {
    let bytes = std::fs::read(path).unwrap();
    weights::read_named(&path.display().to_string(), &bytes).unwrap()
}

#[test]
fn adamw_with_clipping_equals_torch_optim_adamw() {
    let path = fixture("adamw-reference.safetensors");
    let t = named_tensors(&path);
    let meta: serde_json::Value = serde_json::from_str(
        &weights::read_metadata("adamw", &std::fs::read(&path).unwrap()).unwrap()["config"],
    )
    .unwrap();
    let steps = meta["steps"].as_u64().unwrap() as usize;
    let clip = meta["clip"].as_f64().unwrap();
    let betas: [f64; 2] = serde_json::from_value(meta["betas"].clone()).unwrap();
    let c = OptimConfig {
        lr: 0.0,
        betas,
        eps: meta["eps"].as_f64().unwrap(),
        weight_decay: meta["weight_decay"].as_f64().unwrap(),
        warmup_steps: 0,
        schedule: Schedule::Constant,
        grad_clip: clip,
        min_lr_ratio: 0.0,
        lr_label_rows: None,
        lr_lora: None,
        lr_base: None,
    };
    let w = t["w0"].copy().set_requires_grad(true);
    let b = t["b0"].copy().set_requires_grad(true);
    let mut opt = AdamW::new(vec![
        ("b".into(), b.shallow_clone()),
        ("w".into(), w.shallow_clone()),
    ]);
    let lrs = &t["lr"];
    for s in 0..steps {
        opt.zero_grad();
        // A loss whose gradient is exactly the fixture's.
        let loss = (&w * &t[&format!("gw.{s}")]).sum(Kind::Float)
            + (&b * &t[&format!("gb.{s}")]).sum(Kind::Float);
        loss.backward();
        let norm = opt.clip_grad_norm(clip);
        let want_norm = t[&format!("norm.{s}")].double_value(&[0]);
        assert!(
            (norm - want_norm).abs() < 1e-5 * want_norm,
            "step {s}: norm {norm} vs {want_norm}"
        );
        opt.step(&c, lrs.double_value(&[s as i64]));
        for (p, name) in [(&w, "w"), (&b, "b")] {
            let want = &t[&format!("{name}.{s}")];
            let d = (p.detach() - want).abs().max().double_value(&[]);
            assert!(d < 1e-6, "step {s}: {name} differs from torch by {d}");
        }
    }
    // The steps moved the parameters, clipped or not.
    assert!((w.detach() - &t["w0"]).abs().max().double_value(&[]) > 1e-3);
}

#[test]
fn lora_forward_and_gradients_equal_peft() {
    let base = fixture("llama-gqa");
    let dir = fixture("lora-peft");
    let cfg = LlamaConfig::from_json(&std::fs::read_to_string(base.join("config.json")).unwrap())
        .unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = Llama::new(&vs.root(), &cfg, false);
    let bytes = std::fs::read(base.join("model.safetensors")).unwrap();
    weights::load_into(&vs, &[("model.safetensors", &bytes)]).unwrap();
    let (lora, base_path) = labor_lm::peft::parse_adapter_config(
        &std::fs::read_to_string(dir.join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(base_path, "../llama-gqa");
    let avs = nn::VarStore::new(Device::Cpu);
    model.add_lora(&avs.root(), &lora).unwrap();
    let w = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    weights::load_into(&avs, &[("adapter_model.safetensors", &w)]).unwrap();

    let rb = std::fs::read(dir.join("reference.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&rb).unwrap();
    let id_vals: Vec<i64> = st
        .tensor("ids")
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let r: BTreeMap<String, Tensor> = st
        .names()
        .into_iter()
        .filter(|n| *n != "ids")
        .map(|n| {
            let v = st.tensor(n).unwrap();
            let shape: Vec<i64> = v.shape().iter().map(|&d| d as i64).collect();
            (
                n.to_string(),
                Tensor::from_slice(&f32s(v.data())).reshape(shape),
            )
        })
        .collect();
    let ids_1d = Tensor::from_slice(&id_vals);
    let ids = ids_1d.unsqueeze(0);
    let logits = model.forward(&ids).get(0);
    let d = (&logits.detach() - &r["logits"])
        .abs()
        .max()
        .double_value(&[]);
    assert!(d < 1e-4, "logits differ from peft by {d}");
    let n = ids.size()[1];
    let lp = logits.narrow(0, 0, n - 1).log_softmax(-1, Kind::Float);
    let loss = -lp
        .gather(1, &ids_1d.narrow(0, 1, n - 1).unsqueeze(1), false)
        .mean(Kind::Float);
    let want_loss = r["loss"].double_value(&[0]);
    assert!((loss.double_value(&[]) - want_loss).abs() < 1e-4);
    loss.backward();
    let grads: Vec<(&String, &Tensor)> = r.iter().filter(|(k, _)| k.starts_with("grad.")).collect();
    assert_eq!(grads.len(), avs.variables().len());
    let vars = avs.variables();
    for (k, want) in grads {
        let name = &k["grad.".len()..];
        let got = vars
            .get(name)
            .unwrap_or_else(|| panic!("no adapter variable {name}"))
            .grad();
        let scale = want.abs().max().double_value(&[]).max(1e-3);
        let d = (&got - want).abs().max().double_value(&[]);
        assert!(
            d < 1e-4 * scale.max(1.0),
            "{name}: gradient differs from peft by {d}"
        );
    }
    // The frozen base got no gradient at all.
    assert!(vs.trainable_variables().is_empty());
}
