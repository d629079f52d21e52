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
        "layers_to_transform": null,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "use_rslora": false,
        "use_dora": false,
        "revision": null,
    });
    serde_json::to_string_pretty(&v).expect("serializable") + "\n"
}

/// Reads an `adapter_config.json`: the LoRA settings and the base model path. Settings this
/// engine does not implement (DoRA, rsLoRA, biases, per-layer patterns, fan-in-fan-out) are
/// errors naming the key.
pub fn parse_adapter_config(text: &str) -> Result<(LoraConfig, String), String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let get = |k: &str| v.get(k).filter(|x| !x.is_null());
    if get("peft_type").and_then(|x| x.as_str()) != Some("LORA") {
        return Err("peft_type is not \"LORA\"".into());
    }
    for (k, ok) in [
        ("use_dora", json!(false)),
        ("use_rslora", json!(false)),
        ("fan_in_fan_out", json!(false)),
        ("bias", json!("none")),
    ] {
        if let Some(x) = get(k)
            && *x != ok
        {
            return Err(format!("{k} = {x} is not supported (expected {ok})"));
        }
    }
    for k in ["rank_pattern", "alpha_pattern"] {
        if get(k)
            .and_then(|x| x.as_object())
            .is_some_and(|m| !m.is_empty())
        {
            return Err(format!("{k} is not supported"));
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
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        _ => return Err("no `target_modules`".into()),
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
        },
        base,
    ))
}
