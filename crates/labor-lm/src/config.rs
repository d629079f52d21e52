//! Model hyper-parameters, read from and written as a Hugging Face `config.json`.

use serde::{Deserialize, Serialize};

/// Llama-3 style RoPE frequency scaling (`rope_scaling` with `rope_type = "llama3"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    #[serde(alias = "type")]
    pub rope_type: String,
    pub factor: f64,
    #[serde(default = "one")]
    pub low_freq_factor: f64,
    #[serde(default = "four")]
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

fn one() -> f64 {
    1.0
}
fn four() -> f64 {
    4.0
}
fn rope_theta_default() -> f64 {
    10_000.0
}
fn eps_default() -> f64 {
    1e-6
}
fn max_pos_default() -> usize {
    2048
}

/// The subset of a Hugging Face `config.json` that a Llama-family decoder needs. Unknown keys of
/// the file are kept in `extra` and written back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    #[serde(default = "llama")]
    pub model_type: String,
    #[serde(default)]
    pub architectures: Vec<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "eps_default")]
    pub rms_norm_eps: f64,
    #[serde(default = "rope_theta_default")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    #[serde(default = "max_pos_default")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Llama's switch for biases on q, k, v and o projections.
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub bos_token_id: Option<serde_json::Value>,
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
    #[serde(default)]
    pub hidden_act: Option<String>,
    #[serde(default)]
    pub torch_dtype: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn llama() -> String {
    "llama".into()
}

impl LlamaConfig {
    /// Reads a `config.json` as written by transformers 4.x (top-level `rope_theta` and
    /// `rope_scaling`) or 5.x (`rope_parameters`). Every key must be understood or known not to
    /// change the model's numbers; anything else is an error naming the key.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let serde_json::Value::Object(mut map) = v else {
            return Err("config.json is not a JSON object".into());
        };
        normalize_rope(&mut map)?;
        let c: Self =
            serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("serializable") + "\n"
    }

    pub fn validate(&self) -> Result<(), String> {
        let known = ["llama", "qwen2", "mistral"];
        if !known.contains(&self.model_type.as_str()) {
            return Err(format!(
                "model_type {:?} is not supported (expected one of {known:?})",
                self.model_type
            ));
        }
        if let Some(act) = &self.hidden_act
            && act != "silu"
        {
            return Err(format!(
                "hidden_act {act:?} is not supported (expected \"silu\")"
            ));
        }
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
        ] {
            if v == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self.num_attention_heads.is_multiple_of(self.kv_heads()) {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.kv_heads()
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(format!(
                "head_dim {} must be even for RoPE",
                self.head_dim()
            ));
        }
        if let Some(s) = &self.rope_scaling
            && s.rope_type != "llama3"
            && s.rope_type != "default"
        {
            return Err(format!(
                "rope_scaling type {:?} is not supported (expected \"llama3\")",
                s.rope_type
            ));
        }
        check_extra_keys(self)
    }

    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// Biases on the q, k and v projections (Qwen2 always has them).
    pub fn qkv_bias(&self) -> bool {
        self.attention_bias || self.model_type == "qwen2"
    }

    /// Bias on the output projection (Llama's `attention_bias` only).
    pub fn o_bias(&self) -> bool {
        self.attention_bias && self.model_type != "qwen2"
    }

    /// A small Llama of the given shape with the usual defaults (for from-scratch models).
    #[allow(clippy::too_many_arguments)]
    pub fn small(
        vocab_size: usize,
        hidden_size: usize,
        intermediate_size: usize,
        layers: usize,
        heads: usize,
        kv_heads: usize,
        max_position_embeddings: usize,
        tie_word_embeddings: bool,
    ) -> Self {
        Self {
            model_type: "llama".into(),
            architectures: vec!["LlamaForCausalLM".into()],
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: Some(kv_heads),
            head_dim: None,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: None,
            max_position_embeddings,
            tie_word_embeddings,
            attention_bias: false,
            bos_token_id: None,
            eos_token_id: None,
            hidden_act: Some("silu".into()),
            torch_dtype: Some("float32".into()),
            extra: Default::default(),
        }
    }

    /// Number of parameters (weights of every matrix, norm and bias).
    pub fn n_params(&self) -> usize {
        let (d, f, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let hd = self.head_dim();
        let (h, kv) = (self.num_attention_heads, self.kv_heads());
        let mut layer = d * h * hd + 2 * d * kv * hd + h * hd * d + 3 * d * f + 2 * d;
        if self.qkv_bias() {
            layer += h * hd + 2 * kv * hd;
        }
        if self.o_bias() {
            layer += d;
        }
        let head = if self.tie_word_embeddings { 0 } else { v * d };
        v * d + self.num_hidden_layers * layer + d + head
    }
}

/// Keys of a Hugging Face `config.json` that never change a decoder's outputs: bookkeeping,
/// generation defaults, token ids, initialisation and head-task settings.
const HARMLESS_KEYS: &[&str] = &[
    "_attn_implementation",
    "_attn_implementation_autoset",
    "_commit_hash",
    "_name_or_path",
    "add_cross_attention",
    "bad_words_ids",
    "begin_suppress_tokens",
    "chunk_size_feed_forward",
    "cross_attention_hidden_size",
    "decoder_start_token_id",
    "diversity_penalty",
    "do_sample",
    "dtype",
    "early_stopping",
    "encoder_no_repeat_ngram_size",
    "exponential_decay_length_penalty",
    "finetuning_task",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "id2label",
    "initializer_range",
    "is_decoder",
    "is_encoder_decoder",
    "label2id",
    "length_penalty",
    "max_length",
    "min_length",
    "no_repeat_ngram_size",
    "num_beam_groups",
    "num_beams",
    "num_labels",
    "num_return_sequences",
    "output_attentions",
    "output_hidden_states",
    "output_scores",
    "pad_token_id",
    "prefix",
    "pretraining_tp",
    "problem_type",
    "pruned_heads",
    "remove_invalid_values",
    "repetition_penalty",
    "return_dict",
    "return_dict_in_generate",
    "sep_token_id",
    "suppress_tokens",
    "task_specific_params",
    "temperature",
    "tf_legacy_loss",
    "tie_encoder_decoder",
    "tokenizer_class",
    "top_k",
    "top_p",
    "torchscript",
    "transformers_version",
    "typical_p",
    "use_bfloat16",
    "use_cache",
    "use_return_dict",
];

fn is_false_or_null(v: &serde_json::Value) -> bool {
    v.is_null() || v == &serde_json::Value::Bool(false)
}

/// Every key of `extra` must be known not to change the computation, or carry a value under
/// which it does not. Names every offending key.
fn check_extra_keys(c: &LlamaConfig) -> Result<(), String> {
    let mut bad = Vec::new();
    let sliding_on = c
        .extra
        .get("use_sliding_window")
        .is_some_and(|v| !is_false_or_null(v));
    for (k, v) in &c.extra {
        let ok = match k.as_str() {
            k if HARMLESS_KEYS.contains(&k) => true,
            // Normalized into rope_theta / rope_scaling by `normalize_rope`.
            "rope_parameters" => true,
            // Dropout inside attention (training only) and MLP biases: only their neutral values.
            "attention_dropout" => v.as_f64() == Some(0.0) || v.is_null(),
            "mlp_bias" => is_false_or_null(v),
            // Sliding-window attention (Mistral, Qwen2): off, or a window no sequence can exceed.
            "use_sliding_window" => is_false_or_null(v),
            "sliding_window" => {
                !sliding_on
                    && (v.is_null()
                        || c.model_type == "qwen2"
                        || v.as_u64()
                            .is_some_and(|w| w as usize >= c.max_position_embeddings))
            }
            "max_window_layers" => !sliding_on,
            // transformers 5.x lists every layer's attention kind.
            "layer_types" => v.as_array().is_some_and(|a| {
                a.len() == c.num_hidden_layers
                    && a.iter().all(|t| t.as_str() == Some("full_attention"))
            }),
            _ => false,
        };
        if !ok {
            bad.push(format!("{k} = {v}"));
        }
    }
    if bad.is_empty() {
        return Ok(());
    }
    Err(format!(
        "config.json: {} not understood by labor-llm and may change the model's numbers: {} \
         (supported: plain Llama/Qwen2/Mistral decoders with full attention, no MLP biases, \
         default or llama3 RoPE)",
        if bad.len() == 1 {
            "a key is"
        } else {
            "keys are"
        },
        bad.join("; ")
    ))
}

/// Resolves the RoPE settings of transformers 4.x (`rope_theta`, `rope_scaling`) and 5.x
/// (`rope_parameters`) into the top-level `rope_theta` and a canonical `rope_scaling` (or null).
/// When both forms are present they must agree. `rope_parameters` itself stays in the map (and
/// is written back unchanged).
fn normalize_rope(map: &mut serde_json::Map<String, serde_json::Value>) -> Result<(), String> {
    use serde_json::Value;
    /// (theta if given, scaling: None = default RoPE).
    type Rope = (Option<f64>, Option<RopeScaling>);
    fn read(what: &str, v: &Value) -> Result<Rope, String> {
        let Value::Object(o) = v else {
            return Err(format!("{what} must be an object, found {v}"));
        };
        let num = |k: &str| -> Result<Option<f64>, String> {
            match o.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => x
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| format!("{what}.{k} must be a number, found {x}")),
            }
        };
        let kind = o
            .get("rope_type")
            .or_else(|| o.get("type"))
            .map(|t| {
                t.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{what}.rope_type must be a string, found {t}"))
            })
            .transpose()?
            .unwrap_or_else(|| "default".into());
        let mut allowed = vec!["rope_type", "type", "rope_theta", "partial_rotary_factor"];
        if let Some(p) = num("partial_rotary_factor")?
            && p != 1.0
        {
            return Err(format!(
                "{what}.partial_rotary_factor = {p} is not supported (RoPE on the whole head only)"
            ));
        }
        // A base given here too is checked against the top-level `rope_theta`.
        let theta = num("rope_theta")?;
        let scaling = match kind.as_str() {
            "default" => None,
            "llama3" => {
                allowed.extend([
                    "factor",
                    "low_freq_factor",
                    "high_freq_factor",
                    "original_max_position_embeddings",
                ]);
                let need = |k: &str| -> Result<f64, String> {
                    num(k)?.ok_or_else(|| format!("{what} of type llama3 has no {k}"))
                };
                Some(RopeScaling {
                    rope_type: "llama3".into(),
                    factor: need("factor")?,
                    low_freq_factor: num("low_freq_factor")?.unwrap_or(1.0),
                    high_freq_factor: num("high_freq_factor")?.unwrap_or(4.0),
                    original_max_position_embeddings: need("original_max_position_embeddings")?
                        as usize,
                })
            }
            other => {
                return Err(format!(
                    "{what}: rope_type {other:?} is not supported (expected \"default\" or \
                     \"llama3\")"
                ));
            }
        };
        let unknown: Vec<&str> = o
            .keys()
            .map(String::as_str)
            .filter(|k| !allowed.contains(k))
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "{what}: key(s) {unknown:?} not understood for rope_type {kind:?}"
            ));
        }
        Ok((theta, scaling))
    }
    let top_theta = match map.get("rope_theta") {
        None | Some(Value::Null) => None,
        Some(x) => Some(
            x.as_f64()
                .ok_or_else(|| format!("rope_theta must be a number, found {x}"))?,
        ),
    };
    let legacy = match map.get("rope_scaling") {
        None | Some(Value::Null) => None,
        Some(v) => Some(read("rope_scaling", v)?),
    };
    let params = match map.get("rope_parameters") {
        None | Some(Value::Null) => None,
        Some(v) => Some(read("rope_parameters", v)?),
    };
    let agree = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1.0);
    let mut theta = top_theta;
    for (what, t) in [
        ("rope_scaling", legacy.as_ref().and_then(|r| r.0)),
        ("rope_parameters", params.as_ref().and_then(|r| r.0)),
    ] {
        match (theta, t) {
            (Some(a), Some(b)) if !agree(a, b) => {
                return Err(format!("rope_theta {a} and {what}.rope_theta {b} disagree"));
            }
            (None, Some(b)) => theta = Some(b),
            _ => {}
        }
    }
    let scaling = match (legacy, params) {
        (Some((_, a)), Some((_, b))) => {
            if a != b {
                return Err(format!(
                    "rope_scaling {a:?} and rope_parameters {b:?} describe different RoPE"
                ));
            }
            a
        }
        (Some((_, s)), None) | (None, Some((_, s))) => s,
        (None, None) => None,
    };
    if let Some(t) = theta {
        map.insert("rope_theta".into(), t.into());
    }
    map.insert(
        "rope_scaling".into(),
        serde_json::to_value(&scaling).expect("serializable"),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_hf_config_and_keeps_unknown_keys() {
        let text = r#"{"architectures":["LlamaForCausalLM"],"model_type":"llama","vocab_size":49152,
            "hidden_size":576,"intermediate_size":1536,"num_hidden_layers":30,"num_attention_heads":9,
            "num_key_value_heads":3,"rms_norm_eps":1e-5,"rope_theta":100000,"tie_word_embeddings":true,
            "max_position_embeddings":8192,"pretraining_tp":1,"use_cache":true}"#;
        let c = LlamaConfig::from_json(text).unwrap();
        assert_eq!(c.head_dim(), 64);
        assert_eq!(c.kv_heads(), 3);
        assert!(!c.qkv_bias());
        assert_eq!(c.extra["pretraining_tp"], 1);
        // SmolLM2-135M has 134,515,008 parameters.
        assert_eq!(c.n_params(), 134_515_008);
        let back = LlamaConfig::from_json(&c.to_json()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn rejects_unsupported_settings_with_the_reason() {
        let base = LlamaConfig::small(100, 32, 64, 2, 4, 2, 128, false);
        let mut c = base.clone();
        c.num_key_value_heads = Some(3);
        assert!(
            c.validate()
                .unwrap_err()
                .contains("multiple of num_key_value_heads")
        );
        let mut c = base.clone();
        c.model_type = "gpt2".into();
        assert!(c.validate().unwrap_err().contains("not supported"));
        let mut c = base;
        c.hidden_act = Some("gelu".into());
        assert!(c.validate().unwrap_err().contains("silu"));
    }
    fn base_json(extra: &str) -> String {
        format!(
            r#"{{"model_type":"llama","vocab_size":100,"hidden_size":32,"intermediate_size":64,
            "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,
            "max_position_embeddings":256{extra}}}"#
        )
    }

    #[test]
    fn reads_transformers_5_rope_parameters_like_the_4x_keys() {
        let v4 = LlamaConfig::from_json(&base_json(
            r#","rope_theta":500000.0,"rope_scaling":{"rope_type":"llama3","factor":8.0,
            "low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":16}"#,
        ))
        .unwrap();
        let v5 = LlamaConfig::from_json(&base_json(
            r#","rope_parameters":{"rope_type":"llama3","rope_theta":500000.0,"factor":8.0,
            "low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":16},
            "dtype":"float32","layer_types":["full_attention","full_attention"]"#,
        ))
        .unwrap();
        assert_eq!(v5.rope_theta, 500000.0);
        assert_eq!(v5.rope_scaling, v4.rope_scaling);
        assert_eq!(crate::model::inv_freq(&v5), crate::model::inv_freq(&v4));
        // Written back, both forms are present and agree.
        let back = LlamaConfig::from_json(&v5.to_json()).unwrap();
        assert_eq!(back, v5);
        let plain = LlamaConfig::from_json(&base_json(
            r#","rope_parameters":{"rope_type":"default","rope_theta":100000.0}"#,
        ))
        .unwrap();
        assert_eq!(plain.rope_theta, 100000.0);
        assert_eq!(plain.rope_scaling, None);
    }

    #[test]
    fn rope_settings_that_disagree_or_are_unknown_are_errors_naming_them() {
        let e = LlamaConfig::from_json(&base_json(
            r#","rope_theta":10000.0,"rope_parameters":{"rope_type":"default","rope_theta":500000.0}"#,
        ))
        .unwrap_err();
        assert!(e.contains("disagree"), "{e}");
        let e = LlamaConfig::from_json(&base_json(
            r#","rope_parameters":{"rope_type":"yarn","rope_theta":10000.0,"factor":4.0}"#,
        ))
        .unwrap_err();
        assert!(e.contains("yarn"), "{e}");
        let e = LlamaConfig::from_json(&base_json(
            r#","rope_parameters":{"rope_type":"default","rope_theta":10000.0,"mscale":2.0}"#,
        ))
        .unwrap_err();
        assert!(e.contains("mscale"), "{e}");
        let e = LlamaConfig::from_json(&base_json(
            r#","rope_parameters":{"rope_theta":10000.0,"partial_rotary_factor":0.5}"#,
        ))
        .unwrap_err();
        assert!(e.contains("partial_rotary_factor"), "{e}");
    }

    #[test]
    fn keys_that_change_the_numbers_are_errors_unless_neutral() {
        for (extra, key) in [
            (r#","mlp_bias":true"#, "mlp_bias"),
            (r#","attention_dropout":0.1"#, "attention_dropout"),
            (
                r#","use_sliding_window":true,"sliding_window":64"#,
                "use_sliding_window",
            ),
            (r#","sliding_window":64"#, "sliding_window"),
            (
                r#","layer_types":["full_attention","sliding_attention"]"#,
                "layer_types",
            ),
            (r#","logits_scaling":8.0"#, "logits_scaling"),
            (
                r#","quantization_config":{"quant_method":"bitsandbytes"}"#,
                "quantization_config",
            ),
        ] {
            let e = LlamaConfig::from_json(&base_json(extra)).unwrap_err();
            assert!(
                e.contains(key) && e.contains("not understood"),
                "{extra}: {e}"
            );
        }
        // Their neutral values, and bookkeeping keys, load.
        LlamaConfig::from_json(&base_json(
            r#","mlp_bias":false,"attention_dropout":0.0,"use_sliding_window":false,
            "sliding_window":4096,"max_window_layers":28,"pretraining_tp":1,"use_cache":true,
            "transformers_version":"5.24.0","dtype":"bfloat16","pad_token_id":null"#,
        ))
        .unwrap();
    }
}
