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
    pub fn from_json(text: &str) -> Result<Self, String> {
        let c: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
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
        Ok(())
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
}
