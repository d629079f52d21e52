//! LoRA adapters in the PEFT layout: `adapter_config.json` and `adapter_model.safetensors`
//! whose tensors are named `base_model.model.<module>.lora_A.weight` / `lora_B.weight`.

use serde_json::json;

use crate::model::LoraConfig;

/// `adapter_config.json` for `c`, pointing at the base model directory `base`.
pub fn adapter_config_json(c: &LoraConfig, base: &str) -> String {
    let v = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "r": c.rank,
        "lora_alpha": c.alpha,
        "lora_dropout": c.dropout,
        "target_modules": c.targets,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "modules_to_save": null,
        "layers_to_transform": c.layers,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "use_rslora": false,
        "use_dora": false,
        "revision": null,
    });
    serde_json::to_string_pretty(&v).expect("serializable") + "\n"
}

/// Keys of `adapter_config.json` this engine reads.
const UNDERSTOOD: &[&str] = &[
    "peft_type",
    "r",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "base_model_name_or_path",
    "layers_to_transform",
];

/// Keys that do not change an adapter's numbers once its weights are saved: bookkeeping,
/// initialisation recipes (the saved weights are what they made) and training-only settings.
const HARMLESS: &[&str] = &[
    "task_type",
    "inference_mode",
    "init_lora_weights",
    "revision",
    "peft_version",
    "auto_mapping",
    "megatron_core",
    "megatron_config",
    "qalora_group_size",
    "loftq_config",
    "corda_config",
    "eva_config",
    "lora_ga_config",
    "ensure_weight_tying",
    "layers_pattern",
];

/// Whether a value means "off": null, false, an empty string, list or map.
fn neutral(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null | serde_json::Value::Bool(false) => true,
        serde_json::Value::String(s) => s.is_empty(),
        serde_json::Value::Array(a) => a.is_empty(),
        serde_json::Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// Reads an `adapter_config.json`: the LoRA settings and the base model path. Every other key
/// must be known not to change the numbers, or be off (null, false, empty); anything else
/// (DoRA, rsLoRA, biases, per-layer patterns, fan-in-fan-out, trainable tokens, modules to
/// save, keys of newer PEFT releases) is an error naming the key. `target_modules` is a list of
/// module names, or PEFT's `"all-linear"`.
pub fn parse_adapter_config(text: &str) -> Result<(LoraConfig, String), String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let get = |k: &str| v.get(k).filter(|x| !x.is_null());
    if get("peft_type").and_then(|x| x.as_str()) != Some("LORA") {
        return Err("peft_type is not \"LORA\"".into());
    }
    for (k, x) in obj {
        if UNDERSTOOD.contains(&k.as_str()) || HARMLESS.contains(&k.as_str()) {
            continue;
        }
        let ok = match k.as_str() {
            "bias" => x.is_null() || *x == json!("none"),
            _ => neutral(x),
        };
        if !ok {
            return Err(format!(
                "{k} = {x} is not supported (this engine reads plain LoRA: expected it absent, \
                 null, false or empty{})",
                if k == "bias" { ", or \"none\"" } else { "" }
            ));
        }
    }
    let rank = get("r").and_then(|x| x.as_u64()).ok_or("no integer `r`")? as usize;
    let alpha = get("lora_alpha")
        .and_then(|x| x.as_f64())
        .ok_or("no number `lora_alpha`")?;
    let dropout = get("lora_dropout").and_then(|x| x.as_f64()).unwrap_or(0.0);
    let targets: Vec<String> = match get("target_modules") {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|t| {
                t.as_str()
                    .map(String::from)
                    .ok_or("target_modules holds a non-string")
            })
            .collect::<Result<_, _>>()?,
        Some(serde_json::Value::String(s)) if s == "all-linear" => crate::model::LORA_MODULES
            .iter()
            .map(|m| m.to_string())
            .collect(),
        Some(serde_json::Value::String(s)) => {
            return Err(format!(
                "target_modules = {s:?}: a regular expression over module paths is not supported; \
                 list the module names (or use \"all-linear\")"
            ));
        }
        _ => return Err("no `target_modules`".into()),
    };
    // PEFT's `layers_to_transform`: one layer index or a list of them.
    let layers = match get("layers_to_transform") {
        None => None,
        Some(serde_json::Value::Array(a)) if a.is_empty() => None,
        Some(serde_json::Value::Array(a)) => Some(
            a.iter()
                .map(|x| x.as_u64().map(|i| i as usize))
                .collect::<Option<Vec<usize>>>()
                .ok_or("layers_to_transform holds a value that is not a layer index")?,
        ),
        Some(x) => Some(vec![
            x.as_u64()
                .ok_or("layers_to_transform is neither a layer index nor a list of them")?
                as usize,
        ]),
    };
    let base = get("base_model_name_or_path")
        .and_then(|x| x.as_str())
        .ok_or("no `base_model_name_or_path`")?
        .to_string();
    Ok((
        LoraConfig {
            rank,
            alpha,
            dropout,
            targets,
            layers,
        },
        base,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LoraConfig {
        LoraConfig {
            rank: 4,
            alpha: 8.0,
            dropout: 0.1,
            targets: vec!["q_proj".into(), "v_proj".into()],
            layers: None,
        }
    }

    #[test]
    fn our_config_reads_back() {
        let (c, base) = parse_adapter_config(&adapter_config_json(&config(), "/m")).unwrap();
        assert_eq!(c, config());
        assert_eq!(base, "/m");
    }

    /// PEFT's `layers_to_transform` (a list, or one index) selects the adapted layers and
    /// survives a round trip; anything else there is an error naming it.
    #[test]
    fn adapted_layers_read_back() {
        let top = LoraConfig {
            layers: Some(vec![2, 3]),
            ..config()
        };
        let text = adapter_config_json(&top, "/m");
        assert!(
            text.contains("\"layers_to_transform\": [\n    2,\n    3\n  ]"),
            "{text}"
        );
        assert_eq!(parse_adapter_config(&text).unwrap().0, top);
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["layers_to_transform"] = json!(1);
        assert_eq!(
            parse_adapter_config(&v.to_string()).unwrap().0.layers,
            Some(vec![1])
        );
        v["layers_to_transform"] = json!(["1"]);
        let e = parse_adapter_config(&v.to_string()).unwrap_err();
        assert!(e.contains("layers_to_transform"), "{e}");
    }

    /// Keys that change the adapted model are errors naming them; off values and bookkeeping
    /// of newer PEFT releases are not.
    #[test]
    fn math_changing_keys_are_errors_naming_them() {
        let base: serde_json::Value =
            serde_json::from_str(&adapter_config_json(&config(), "/m")).unwrap();
        let with = |k: &str, v: serde_json::Value| {
            let mut x = base.clone();
            x[k] = v;
            parse_adapter_config(&x.to_string())
        };
        for (k, v) in [
            ("modules_to_save", json!(["lm_head"])),
            ("trainable_token_indices", json!([5, 6])),
            ("use_dora", json!(true)),
            ("lora_bias", json!(true)),
            ("layer_replication", json!([[0, 1]])),
            ("target_parameters", json!(["mlp.experts.down_proj"])),
            ("bias", json!("all")),
            ("alpha_pattern", json!({"q_proj": 4})),
            ("some_future_option", json!(3)),
        ] {
            let e = with(k, v.clone()).unwrap_err();
            assert!(e.contains(k), "{k}: {e}");
        }
        for (k, v) in [
            ("peft_version", json!("0.21.2")),
            ("trainable_token_indices", json!(null)),
            ("use_qalora", json!(false)),
            ("exclude_modules", json!(null)),
            ("some_future_option", json!(null)),
            ("loftq_config", json!({})),
        ] {
            assert!(with(k, v).is_ok(), "{k}");
        }
        let e = with("target_modules", json!(".*proj")).unwrap_err();
        assert!(e.contains("regular expression"), "{e}");
        let (c, _) = with("target_modules", json!("all-linear")).unwrap();
        assert_eq!(c.targets.len(), crate::model::LORA_MODULES.len());
    }
}
