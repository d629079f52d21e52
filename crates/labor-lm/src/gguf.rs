//! Import of a `llama` GGUF file as Hugging Face-named tensors with a [`LlamaConfig`]: the
//! config from the `llama.*` metadata, the GGUF → Hugging Face tensor names, and the undoing of
//! llama.cpp's q/k row permutation. Reading the file (metadata, tensor index, dequantization)
//! is `labor_gguf`'s, and its [`GgufError`] is the one error type.

use std::collections::HashMap;
use std::io::{Read, Seek};

pub use labor_gguf::{
    GgmlType, GgufError, GgufIndex, Metadata, TensorInfo, Value, dequantize, read_index,
    read_tensor,
};

use crate::config::LlamaConfig;

/// Undo llama.cpp's convert-time row permutation of q/k weights (and biases if any) for `n_head`
/// heads. `convert_hf_to_gguf.py` interleaves the two halves of each head's rows (for its
/// "GPT-J" style RoPE on adjacent pairs): GGUF row `h * hd + 2 * i + t` holds Hugging Face row
/// `h * hd + t * hd / 2 + i` (head dim `hd = rows / n_head`, `t` in 0..2). `k` uses the number
/// of key/value heads. A bias is a matrix with `cols = 1`.
///
/// # Panics
/// If `w.len() != rows * cols` or `rows` is not a multiple of `2 * n_head`.
pub fn unpermute_rows(w: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    assert_eq!(
        w.len(),
        rows * cols,
        "unpermute_rows: {rows}x{cols} needs {} values",
        rows * cols
    );
    assert!(
        n_head > 0 && rows.is_multiple_of(2 * n_head),
        "unpermute_rows: {rows} rows do not split into {n_head} heads of even size"
    );
    let hd = rows / n_head;
    let half = hd / 2;
    let mut out = vec![0f32; w.len()];
    for h in 0..n_head {
        for i in 0..half {
            for t in 0..2 {
                let src = h * hd + 2 * i + t;
                let dst = h * hd + t * half + i;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

fn key_missing(key: &str) -> GgufError {
    GgufError::Key {
        key: key.into(),
        what: "missing".into(),
    }
}

fn opt_usize(m: &Metadata, key: &str) -> Result<Option<usize>, GgufError> {
    m.kv.get(key)
        .map(|v| {
            v.as_u64()
                .and_then(|x| usize::try_from(x).ok())
                .ok_or_else(|| GgufError::Key {
                    key: key.into(),
                    what: format!("expected a non-negative integer, found {v:?}"),
                })
        })
        .transpose()
}

fn req_usize(m: &Metadata, key: &str) -> Result<usize, GgufError> {
    opt_usize(m, key)?.ok_or_else(|| key_missing(key))
}

/// A float metadata value. GGUF stores llama's floats as `f32`, read as the nearest `f64`
/// (1e-5 becomes 9.999999747378752e-6); an `f64` that is exactly an `f32` is given as the
/// shortest decimal that round-trips through `f32`, which is what config.json had.
fn opt_f64(m: &Metadata, key: &str) -> Result<Option<f64>, GgufError> {
    let Some(v) = m.kv.get(key) else {
        return Ok(None);
    };
    let x = match v {
        Value::F64(x) => {
            let f = *x as f32;
            if f.is_finite() && f64::from(f) == *x {
                f.to_string().parse().unwrap_or(*x)
            } else {
                *x
            }
        }
        Value::U64(x) => *x as f64,
        Value::I64(x) => *x as f64,
        other => {
            return Err(GgufError::Key {
                key: key.into(),
                what: format!("expected a number, found {other:?}"),
            });
        }
    };
    Ok(Some(x))
}

/// LlamaConfig from `llama.*` metadata (context_length, embedding_length, block_count,
/// feed_forward_length, attention.head_count, attention.head_count_kv, rope.freq_base,
/// attention.layer_norm_rms_epsilon, rope.dimension_count if present; vocab size = number of
/// tokenizer.ggml.tokens; bos/eos ids from tokenizer.ggml.*_token_id; tie_word_embeddings = no
/// `output.weight` tensor). Error for general.architecture other than "llama" naming it.
///
/// Also: `attention_bias` is set when the file has `blk.*.attn_{q,k,v,output}.bias` tensors;
/// `head_dim` is set only where `attention.key_length` / `rope.dimension_count` differ from
/// `embedding_length / head_count`; a rotary dimension smaller than the head dimension and a
/// `rope.scaling.type` other than `none` are errors (Llama has neither). The result passes
/// [`LlamaConfig::validate`].
pub fn llama_config(index: &GgufIndex) -> Result<LlamaConfig, GgufError> {
    let m = &index.metadata;
    let arch_key = "general.architecture";
    let arch = m.kv.get(arch_key).ok_or_else(|| key_missing(arch_key))?;
    let arch = arch.as_str().ok_or_else(|| GgufError::Key {
        key: arch_key.into(),
        what: format!("expected a string, found {arch:?}"),
    })?;
    if arch != "llama" {
        return Err(GgufError::Architecture(arch.into()));
    }
    let hidden = req_usize(m, "llama.embedding_length")?;
    let layers = req_usize(m, "llama.block_count")?;
    let ff = req_usize(m, "llama.feed_forward_length")?;
    let heads = req_usize(m, "llama.attention.head_count")?;
    if heads == 0 {
        return Err(GgufError::Key {
            key: "llama.attention.head_count".into(),
            what: "must be positive".into(),
        });
    }
    let kv_heads = opt_usize(m, "llama.attention.head_count_kv")?.unwrap_or(heads);
    let context = req_usize(m, "llama.context_length")?;
    let eps_key = "llama.attention.layer_norm_rms_epsilon";
    let eps = opt_f64(m, eps_key)?.ok_or_else(|| key_missing(eps_key))?;
    let theta = opt_f64(m, "llama.rope.freq_base")?.unwrap_or(10_000.0);

    let key_len = opt_usize(m, "llama.attention.key_length")?;
    if let (Some(k), Some(v)) = (key_len, opt_usize(m, "llama.attention.value_length")?)
        && k != v
    {
        return Err(GgufError::Key {
            key: "llama.attention.value_length".into(),
            what: format!("{v} differs from attention.key_length {k}; Llama needs them equal"),
        });
    }
    let rope_dim = opt_usize(m, "llama.rope.dimension_count")?;
    let explicit_head_dim = key_len.or(rope_dim);
    let head_dim = explicit_head_dim.unwrap_or(hidden / heads);
    if let Some(r) = rope_dim
        && r != head_dim
    {
        return Err(GgufError::Key {
            key: "llama.rope.dimension_count".into(),
            what: format!(
                "{r} differs from the head dimension {head_dim} (partial RoPE is not Llama)"
            ),
        });
    }
    if let Some(v) = m.kv.get("llama.rope.scaling.type")
        && v.as_str() != Some("none")
    {
        return Err(GgufError::Key {
            key: "llama.rope.scaling.type".into(),
            what: format!("{v:?} is not supported"),
        });
    }

    let tokens_key = "tokenizer.ggml.tokens";
    let vocab = match m.kv.get(tokens_key) {
        Some(v) => v
            .as_array()
            .ok_or_else(|| GgufError::Key {
                key: tokens_key.into(),
                what: "expected an array".into(),
            })?
            .len(),
        None => opt_usize(m, "llama.vocab_size")?.ok_or_else(|| key_missing(tokens_key))?,
    };
    let token_id = |key: &str| -> Result<Option<serde_json::Value>, GgufError> {
        Ok(opt_usize(m, key)?.map(serde_json::Value::from))
    };
    let tie = index.tensor("output.weight").is_none();
    let attention_bias = index.tensors.iter().any(|t| {
        t.name.starts_with("blk.")
            && [
                "attn_q.bias",
                "attn_k.bias",
                "attn_v.bias",
                "attn_output.bias",
            ]
            .iter()
            .any(|s| t.name.ends_with(&format!(".{s}")))
    });

    let mut c = LlamaConfig::small(vocab, hidden, ff, layers, heads, kv_heads, context, tie);
    c.head_dim = explicit_head_dim.filter(|&hd| hd * heads != hidden);
    c.rms_norm_eps = eps;
    c.rope_theta = theta;
    c.attention_bias = attention_bias;
    c.bos_token_id = token_id("tokenizer.ggml.bos_token_id")?;
    c.eos_token_id = token_id("tokenizer.ggml.eos_token_id")?;
    c.validate().map_err(GgufError::Config)?;
    Ok(c)
}

/// How a tensor's rows were permuted at conversion.
#[derive(Debug, Clone, Copy)]
enum Permute {
    None,
    Heads,
    KvHeads,
}

/// `(GGUF name, Hugging Face name, shape, permutation)` of every tensor a llama GGUF with
/// config `c` holds, in Hugging Face module order.
fn llama_tensors(c: &LlamaConfig) -> Vec<(String, String, Vec<usize>, Permute)> {
    let (d, f, v) = (c.hidden_size, c.intermediate_size, c.vocab_size);
    let hd = c.head_dim();
    let (q, kv) = (c.num_attention_heads * hd, c.kv_heads() * hd);
    let mut out = vec![(
        "token_embd.weight".to_string(),
        "model.embed_tokens.weight".to_string(),
        vec![v, d],
        Permute::None,
    )];
    for l in 0..c.num_hidden_layers {
        let mut per_layer = vec![
            (
                "attn_q.weight",
                "self_attn.q_proj.weight",
                vec![q, d],
                Permute::Heads,
            ),
            (
                "attn_k.weight",
                "self_attn.k_proj.weight",
                vec![kv, d],
                Permute::KvHeads,
            ),
            (
                "attn_v.weight",
                "self_attn.v_proj.weight",
                vec![kv, d],
                Permute::None,
            ),
            (
                "attn_output.weight",
                "self_attn.o_proj.weight",
                vec![d, q],
                Permute::None,
            ),
        ];
        if c.attention_bias {
            per_layer.extend([
                (
                    "attn_q.bias",
                    "self_attn.q_proj.bias",
                    vec![q],
                    Permute::Heads,
                ),
                (
                    "attn_k.bias",
                    "self_attn.k_proj.bias",
                    vec![kv],
                    Permute::KvHeads,
                ),
                (
                    "attn_v.bias",
                    "self_attn.v_proj.bias",
                    vec![kv],
                    Permute::None,
                ),
                (
                    "attn_output.bias",
                    "self_attn.o_proj.bias",
                    vec![d],
                    Permute::None,
                ),
            ]);
        }
        per_layer.extend([
            (
                "ffn_gate.weight",
                "mlp.gate_proj.weight",
                vec![f, d],
                Permute::None,
            ),
            (
                "ffn_up.weight",
                "mlp.up_proj.weight",
                vec![f, d],
                Permute::None,
            ),
            (
                "ffn_down.weight",
                "mlp.down_proj.weight",
                vec![d, f],
                Permute::None,
            ),
            (
                "attn_norm.weight",
                "input_layernorm.weight",
                vec![d],
                Permute::None,
            ),
            (
                "ffn_norm.weight",
                "post_attention_layernorm.weight",
                vec![d],
                Permute::None,
            ),
        ]);
        out.extend(per_layer.into_iter().map(|(g, h, s, p)| {
            (
                format!("blk.{l}.{g}"),
                format!("model.layers.{l}.{h}"),
                s,
                p,
            )
        }));
    }
    out.push((
        "output_norm.weight".into(),
        "model.norm.weight".into(),
        vec![d],
        Permute::None,
    ));
    if !c.tie_word_embeddings {
        out.push((
            "output.weight".into(),
            "lm_head.weight".into(),
            vec![v, d],
            Permute::None,
        ));
    }
    out
}

/// llama.cpp's per-dimension RoPE frequency factors (refused unless allowed, see
/// [`import_llama_with`]).
const ROPE_FREQS: &str = "rope_freqs.weight";

/// Every tensor of a llama GGUF, dequantized to f32, with its Hugging Face name
/// (model.embed_tokens.weight, model.layers.N.self_attn.{q,k,v,o}_proj.weight,
/// model.layers.N.mlp.{gate,up,down}_proj.weight,
/// model.layers.N.{input,post_attention}_layernorm.weight, model.norm.weight, lm_head.weight;
/// `self_attn.*_proj.bias` too when the file has attention biases) and shape, q/k unpermuted,
/// in Hugging Face module order. Calls `progress(done, total)` after each tensor read
/// (`done` = 1..=`total`, `total` = the number returned).
///
/// Every tensor's shape is checked against the metadata first, and any tensor name that is
/// not one of the above is an error naming it. `rope_freqs.weight` is an error too
/// ([`GgufError::RopeFreqs`]): it holds the per-frequency RoPE factors that llama.cpp
/// derives from the Hugging Face `rope_scaling` (Llama 3.1 style models), which GGUF does not
/// record, so the imported model would compute a different RoPE. See [`import_llama_with`].
#[allow(clippy::type_complexity)]
pub fn import_llama<R: Read + Seek>(
    r: &mut R,
    progress: impl FnMut(usize, usize),
) -> Result<(LlamaConfig, Vec<(String, Vec<usize>, Vec<f32>)>), GgufError> {
    import_llama_with(r, false, progress)
}

/// [`import_llama`], with `allow_rope_freqs`: skip a `rope_freqs.weight` tensor instead of
/// refusing the file. The returned config then has `rope_scaling: None` and the caller must take
/// `rope_scaling` from the original config.json (what the user knowingly accepts with
/// `labor lm import-gguf --allow-rope-freqs`).
#[allow(clippy::type_complexity)]
pub fn import_llama_with<R: Read + Seek>(
    r: &mut R,
    allow_rope_freqs: bool,
    progress: impl FnMut(usize, usize),
) -> Result<(LlamaConfig, Vec<(String, Vec<usize>, Vec<f32>)>), GgufError> {
    let index = read_index(r)?;
    import_llama_indexed(r, &index, allow_rope_freqs, progress)
}

/// [`import_llama_with`] on a stream whose index the caller has read already (with
/// [`read_index`]; e.g. to build the tokenizer from the same metadata first), so the header is
/// parsed once.
#[allow(clippy::type_complexity)]
pub fn import_llama_indexed<R: Read + Seek>(
    r: &mut R,
    index: &GgufIndex,
    allow_rope_freqs: bool,
    mut progress: impl FnMut(usize, usize),
) -> Result<(LlamaConfig, Vec<(String, Vec<usize>, Vec<f32>)>), GgufError> {
    let config = llama_config(index)?;
    let expected = llama_tensors(&config);
    let slot: HashMap<&str, usize> = expected
        .iter()
        .enumerate()
        .map(|(i, e)| (e.0.as_str(), i))
        .collect();
    let mut found: Vec<Option<&TensorInfo>> = vec![None; expected.len()];
    let mut unknown = Vec::new();
    for t in &index.tensors {
        match slot.get(t.name.as_str()) {
            Some(&i) => found[i] = Some(t),
            None if t.name == ROPE_FREQS && allow_rope_freqs => {}
            None if t.name == ROPE_FREQS => return Err(GgufError::RopeFreqs),
            None => unknown.push(t.name.clone()),
        }
    }
    if !unknown.is_empty() {
        return Err(GgufError::UnknownTensors(unknown));
    }
    for ((gguf, hf, shape, _), t) in expected.iter().zip(&found) {
        let t = t.ok_or_else(|| GgufError::MissingTensor {
            gguf: gguf.clone(),
            hf: hf.clone(),
        })?;
        if &t.shape != shape {
            return Err(GgufError::Shape {
                name: gguf.clone(),
                expected: shape.clone(),
                found: t.shape.clone(),
            });
        }
        if !t.ty.is_supported() {
            return Err(GgufError::Tensor {
                name: gguf.clone(),
                source: Box::new(GgufError::UnsupportedType { ty: t.ty }),
            });
        }
    }
    // Read in file order (sequential access), return in module order.
    let mut order: Vec<usize> = (0..expected.len()).collect();
    order.sort_by_key(|&i| found[i].map(|t| t.offset));
    let total = expected.len();
    let mut data: Vec<Option<Vec<f32>>> = vec![None; total];
    for (done, &i) in order.iter().enumerate() {
        let info = found[i].expect("checked above");
        let (_, _, shape, permute) = &expected[i];
        let w = read_tensor(r, index, info)?;
        let cols = shape.get(1).copied().unwrap_or(1);
        data[i] = Some(match permute {
            Permute::None => w,
            Permute::Heads => unpermute_rows(&w, shape[0], cols, config.num_attention_heads),
            Permute::KvHeads => unpermute_rows(&w, shape[0], cols, config.kv_heads()),
        });
        progress(done + 1, total);
    }
    let tensors = expected
        .into_iter()
        .zip(data)
        .map(|((_, hf, shape, _), w)| (hf, shape, w.expect("every tensor was read")))
        .collect();
    Ok((config, tensors))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    // IEEE half-precision bit patterns: 2^-4 and 2^-2.
    const H_0_0625: u16 = 0x2C00;
    const H_0_25: u16 = 0x3400;

    fn h(bits: u16) -> [u8; 2] {
        bits.to_le_bytes()
    }

    /// The permutation convert_hf_to_gguf.py applies: view the rows as
    /// `(n_head, 2, rows / n_head / 2)`, swap the last two axes, flatten.
    fn permute_rows(w: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
        let half = rows / n_head / 2;
        let mut out = Vec::with_capacity(w.len());
        for hd in 0..n_head {
            for i in 0..half {
                for t in 0..2 {
                    let src = (hd * 2 + t) * half + i;
                    out.extend_from_slice(&w[src * cols..(src + 1) * cols]);
                }
            }
        }
        out
    }

    #[test]
    fn unpermute_inverts_the_conversion_permutation() {
        // One head of 4 rows: HF rows [a, b, c, d] are stored as [a, c, b, d].
        assert_eq!(permute_rows(&[0., 1., 2., 3.], 4, 1, 1), [0., 2., 1., 3.]);
        assert_eq!(unpermute_rows(&[0., 2., 1., 3.], 4, 1, 1), [0., 1., 2., 3.]);
        for (rows, cols, heads) in [(12, 2, 3), (24, 5, 2), (64, 3, 1), (16, 1, 4)] {
            let w: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let p = permute_rows(&w, rows, cols, heads);
            assert_ne!(p, w);
            assert_eq!(unpermute_rows(&p, rows, cols, heads), w);
        }
    }

    /// A GGUF v3 file assembled byte by byte.
    #[derive(Default)]
    struct Builder {
        kv: Vec<u8>,
        n_kv: u64,
        tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
    }

    fn gguf_str(b: &mut Vec<u8>, s: &str) {
        b.extend((s.len() as u64).to_le_bytes());
        b.extend(s.as_bytes());
    }

    impl Builder {
        fn key(&mut self, k: &str, ty: u32) -> &mut Vec<u8> {
            self.n_kv += 1;
            gguf_str(&mut self.kv, k);
            self.kv.extend(ty.to_le_bytes());
            &mut self.kv
        }
        fn str(&mut self, k: &str, v: &str) {
            gguf_str(self.key(k, 8), v);
        }
        fn u32(&mut self, k: &str, v: u32) {
            self.key(k, 4).extend(v.to_le_bytes());
        }
        fn f32(&mut self, k: &str, v: f32) {
            self.key(k, 6).extend(v.to_le_bytes());
        }
        fn strs(&mut self, k: &str, v: &[&str]) {
            let b = self.key(k, 9);
            b.extend(8u32.to_le_bytes());
            b.extend((v.len() as u64).to_le_bytes());
            for s in v {
                gguf_str(b, s);
            }
        }
        fn tensor(&mut self, name: &str, ne: &[u64], ty: u32, data: Vec<u8>) {
            self.tensors.push((name.into(), ne.to_vec(), ty, data));
        }
        /// The file and the position of its data section.
        fn build(&self, alignment: u64) -> (Vec<u8>, u64) {
            let mut b = b"GGUF".to_vec();
            b.extend(3u32.to_le_bytes());
            b.extend((self.tensors.len() as u64).to_le_bytes());
            b.extend(self.n_kv.to_le_bytes());
            b.extend(&self.kv);
            let mut offset = 0u64;
            let mut offsets = Vec::new();
            for (name, ne, ty, data) in &self.tensors {
                offset = offset.div_ceil(alignment) * alignment;
                offsets.push(offset);
                gguf_str(&mut b, name);
                b.extend((ne.len() as u32).to_le_bytes());
                ne.iter().for_each(|d| b.extend(d.to_le_bytes()));
                b.extend(ty.to_le_bytes());
                b.extend(offset.to_le_bytes());
                offset += data.len() as u64;
            }
            let data_start = (b.len() as u64).div_ceil(alignment) * alignment;
            for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
                b.resize((data_start + off) as usize, 0);
                b.extend(data);
            }
            (b, data_start)
        }
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// Multiples of 1/16 in [-1.875, 1.875]: exact in f16 and in Q8_0 with d = 1/16.
    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * seed + 7) % 61) as f32 / 16.0 - 1.875)
            .collect()
    }

    const D: usize = 32;
    const F: usize = 64;
    const V: usize = 10;
    const HEADS: usize = 2;
    const KV_HEADS: usize = 1;
    const HD: usize = D / HEADS;

    struct Tiny {
        builder: Builder,
        q: Vec<f32>,
        k: Vec<f32>,
        down: Vec<f32>,
        embed: Vec<f32>,
    }

    /// One-layer llama: d = 32, 2 heads and 1 kv head of 16, ffn 64, 10 tokens, tied
    /// embeddings; q in Q8_0, k in Q4_0, ffn_down in F16, the rest F32.
    fn tiny(alignment: Option<u32>) -> Tiny {
        let mut g = Builder::default();
        g.str("general.architecture", "llama");
        if let Some(a) = alignment {
            g.u32("general.alignment", a);
        }
        g.u32("llama.block_count", 1);
        g.u32("llama.context_length", 128);
        g.u32("llama.embedding_length", D as u32);
        g.u32("llama.feed_forward_length", F as u32);
        g.u32("llama.attention.head_count", HEADS as u32);
        g.u32("llama.attention.head_count_kv", KV_HEADS as u32);
        g.f32("llama.rope.freq_base", 10000.0);
        g.f32("llama.attention.layer_norm_rms_epsilon", 1e-5);
        g.u32("llama.rope.dimension_count", HD as u32);
        let tokens: Vec<String> = (0..V).map(|i| format!("t{i}")).collect();
        g.strs(
            "tokenizer.ggml.tokens",
            &tokens.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        g.u32("tokenizer.ggml.bos_token_id", 1);
        g.u32("tokenizer.ggml.eos_token_id", 2);

        let embed = values(V * D, 3);
        let q = values(D * D, 5);
        // Q4_0 with d = 1/4 holds (q - 8) / 4 for q in 0..16.
        let k: Vec<f32> = (0..KV_HEADS * HD * D)
            .map(|i| ((i * 7) % 16) as f32 / 4.0 - 2.0)
            .collect();
        let down = values(D * F, 11);

        let q_stored = permute_rows(&q, D, D, HEADS);
        let mut q8 = Vec::new();
        for block in q_stored.chunks(32) {
            q8.extend(h(H_0_0625));
            q8.extend(block.iter().map(|&x| (x * 16.0) as i8 as u8));
        }
        let k_stored = permute_rows(&k, KV_HEADS * HD, D, KV_HEADS);
        let mut q4 = Vec::new();
        for block in k_stored.chunks(32) {
            let qv: Vec<u8> = block.iter().map(|&x| (x * 4.0 + 8.0) as u8).collect();
            q4.extend(h(H_0_25));
            q4.extend((0..16).map(|j| qv[j] | (qv[j + 16] << 4)));
        }
        let f16: Vec<u8> = down
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect();
        let (d, f) = (D as u64, F as u64);
        g.tensor("token_embd.weight", &[d, V as u64], 0, f32_bytes(&embed));
        g.tensor("blk.0.attn_norm.weight", &[d], 0, f32_bytes(&values(D, 1)));
        g.tensor("blk.0.attn_q.weight", &[d, d], 8, q8);
        g.tensor(
            "blk.0.attn_k.weight",
            &[d, KV_HEADS as u64 * HD as u64],
            2,
            q4,
        );
        g.tensor(
            "blk.0.attn_v.weight",
            &[d, 16],
            0,
            f32_bytes(&values(16 * D, 13)),
        );
        g.tensor(
            "blk.0.attn_output.weight",
            &[d, d],
            0,
            f32_bytes(&values(D * D, 17)),
        );
        g.tensor(
            "blk.0.ffn_gate.weight",
            &[d, f],
            0,
            f32_bytes(&values(F * D, 19)),
        );
        g.tensor(
            "blk.0.ffn_up.weight",
            &[d, f],
            0,
            f32_bytes(&values(F * D, 23)),
        );
        g.tensor("blk.0.ffn_down.weight", &[f, d], 1, f16);
        g.tensor("blk.0.ffn_norm.weight", &[d], 0, f32_bytes(&values(D, 29)));
        g.tensor("output_norm.weight", &[d], 0, f32_bytes(&values(D, 31)));
        Tiny {
            builder: g,
            q,
            k,
            down,
            embed,
        }
    }

    #[test]
    fn reads_the_index_of_a_hand_built_gguf() {
        for alignment in [None, Some(64), Some(128)] {
            let t = tiny(alignment);
            let (bytes, data_start) = t.builder.build(alignment.map_or(32, u64::from));
            let index = read_index(&mut Cursor::new(&bytes)).unwrap();
            assert_eq!(index.data_start, data_start);
            assert_eq!(index.data_start % u64::from(alignment.unwrap_or(32)), 0);
            assert_eq!(index.tensors.len(), 11);
            let q = index.tensor("blk.0.attn_q.weight").unwrap();
            assert_eq!((q.shape.as_slice(), q.ty), (&[D, D][..], GgmlType::Q8_0));
            let k = index.tensor("blk.0.attn_k.weight").unwrap();
            assert_eq!((k.shape.as_slice(), k.ty), (&[HD, D][..], GgmlType::Q4_0));
            let down = index.tensor("blk.0.ffn_down.weight").unwrap();
            assert_eq!(
                (down.shape.as_slice(), down.ty),
                (&[D, F][..], GgmlType::F16)
            );
            assert_eq!(index.tensor("token_embd.weight").unwrap().shape, [V, D]);
            assert_eq!(index.tensor("token_embd.weight").unwrap().offset, 0);
            let mut r = Cursor::new(&bytes);
            let embed = read_tensor(&mut r, &index, index.tensor("token_embd.weight").unwrap());
            assert_eq!(embed.unwrap(), t.embed);
            let down = read_tensor(&mut r, &index, down).unwrap();
            assert_eq!(down, t.down);
        }
    }

    #[test]
    fn config_from_hand_built_metadata() {
        let (bytes, _) = tiny(None).builder.build(32);
        let c = llama_config(&read_index(&mut Cursor::new(&bytes)).unwrap()).unwrap();
        assert_eq!(
            (
                c.vocab_size,
                c.hidden_size,
                c.intermediate_size,
                c.num_hidden_layers
            ),
            (V, D, F, 1)
        );
        assert_eq!(
            (c.num_attention_heads, c.kv_heads(), c.head_dim),
            (HEADS, KV_HEADS, None)
        );
        assert_eq!(c.max_position_embeddings, 128);
        // f32 metadata comes back as the decimal that was written.
        assert_eq!(c.rms_norm_eps, 1e-5);
        assert_eq!(c.rope_theta, 10000.0);
        assert!(c.tie_word_embeddings && !c.attention_bias);
        assert_eq!(c.bos_token_id, Some(serde_json::json!(1)));
        assert_eq!(c.eos_token_id, Some(serde_json::json!(2)));
    }

    #[test]
    fn imports_a_hand_built_gguf() {
        let t = tiny(Some(64));
        let (bytes, _) = t.builder.build(64);
        let mut calls = Vec::new();
        let (c, tensors) =
            import_llama(&mut Cursor::new(&bytes), |i, n| calls.push((i, n))).unwrap();
        assert!(c.tie_word_embeddings);
        let names: Vec<&str> = tensors.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "model.embed_tokens.weight",
                "model.layers.0.self_attn.q_proj.weight",
                "model.layers.0.self_attn.k_proj.weight",
                "model.layers.0.self_attn.v_proj.weight",
                "model.layers.0.self_attn.o_proj.weight",
                "model.layers.0.mlp.gate_proj.weight",
                "model.layers.0.mlp.up_proj.weight",
                "model.layers.0.mlp.down_proj.weight",
                "model.layers.0.input_layernorm.weight",
                "model.layers.0.post_attention_layernorm.weight",
                "model.norm.weight",
            ]
        );
        assert_eq!(calls, (1..=11).map(|i| (i, 11)).collect::<Vec<_>>());
        let get = |n: &str| tensors.iter().find(|t| t.0 == n).unwrap();
        let q = get("model.layers.0.self_attn.q_proj.weight");
        assert_eq!((q.1.as_slice(), &q.2), (&[D, D][..], &t.q));
        let k = get("model.layers.0.self_attn.k_proj.weight");
        assert_eq!((k.1.as_slice(), &k.2), (&[HD, D][..], &t.k));
        let down = get("model.layers.0.mlp.down_proj.weight");
        assert_eq!((down.1.as_slice(), &down.2), (&[D, F][..], &t.down));
        assert_eq!(get("model.embed_tokens.weight").2, t.embed);
        for (name, shape, w) in &tensors {
            assert_eq!(shape.iter().product::<usize>(), w.len(), "{name}");
        }
    }

    #[test]
    fn import_errors_name_what_is_wrong() {
        let mut t = tiny(None);
        t.builder
            .tensor("blk.0.attn_mystery.weight", &[4], 0, f32_bytes(&[0.0; 4]));
        let (bytes, _) = t.builder.build(32);
        let e = import_llama(&mut Cursor::new(&bytes), |_, _| {}).unwrap_err();
        assert!(e.to_string().contains("blk.0.attn_mystery.weight"), "{e}");

        // Llama 3.1 RoPE factors: refused (the rope_scaling they come from is not in the file)
        // unless the caller knowingly allows them.
        let mut t = tiny(None);
        t.builder
            .tensor("rope_freqs.weight", &[4], 0, f32_bytes(&[1.0; 4]));
        let (bytes, _) = t.builder.build(32);
        let e = import_llama(&mut Cursor::new(&bytes), |_, _| {}).unwrap_err();
        assert!(matches!(e, GgufError::RopeFreqs), "{e}");
        assert!(e.to_string().contains("--allow-rope-freqs"), "{e}");
        let (c, tensors) = import_llama_with(&mut Cursor::new(&bytes), true, |_, _| {}).unwrap();
        assert!(c.rope_scaling.is_none());
        assert!(tensors.iter().all(|t| t.0 != "rope_freqs.weight"));

        let mut t = tiny(None);
        t.builder.tensors.retain(|t| t.0 != "blk.0.ffn_up.weight");
        let (bytes, _) = t.builder.build(32);
        let e = import_llama(&mut Cursor::new(&bytes), |_, _| {}).unwrap_err();
        assert!(e.to_string().contains("blk.0.ffn_up.weight"), "{e}");

        let mut t = tiny(None);
        t.builder.kv.clear();
        t.builder.n_kv = 0;
        t.builder.str("general.architecture", "gpt2");
        let (bytes, _) = t.builder.build(32);
        let index = read_index(&mut Cursor::new(&bytes)).unwrap();
        let e = llama_config(&index).unwrap_err().to_string();
        assert!(e.contains("\"gpt2\""), "{e}");

        // Cut into the last tensor's data.
        let (mut bytes, _) = tiny(None).builder.build(32);
        let n = bytes.len();
        bytes.truncate(n - 10);
        let e = read_index(&mut Cursor::new(&bytes))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("truncated") && e.contains("output_norm.weight"),
            "{e}"
        );
        // Cut into the tensor infos.
        bytes.truncate(bytes.len() / 2);
        let e = read_index(&mut Cursor::new(&bytes))
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated"), "{e}");

        // A shape that disagrees with the metadata (11 embedding rows for 10 tokens).
        let mut t = tiny(None);
        t.builder.tensors[0] = (
            "token_embd.weight".into(),
            vec![D as u64, V as u64 + 1],
            0,
            f32_bytes(&values((V + 1) * D, 3)),
        );
        let (bytes, _) = t.builder.build(32);
        let e = import_llama(&mut Cursor::new(&bytes), |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("token_embd.weight") && e.contains("[11, 32]"),
            "{e}"
        );

        // A type id ggml does not know: listed in the index, reading it names tensor and id.
        let mut t = tiny(None);
        t.builder.tensors[2].2 = 99;
        let (bytes, _) = t.builder.build(32);
        let index = read_index(&mut Cursor::new(&bytes)).unwrap();
        let q = index.tensor("blk.0.attn_q.weight").unwrap();
        let e = read_tensor(&mut Cursor::new(&bytes), &index, q)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("blk.0.attn_q.weight") && e.contains("ggml type 99"),
            "{e}"
        );
    }

    /// Imports SmolLM2-135M-Instruct (Q4_1 GGUF) from the path in LABOR_SMOLLM2_GGUF.
    #[test]
    #[ignore = "needs the SmolLM2-135M GGUF file; set LABOR_SMOLLM2_GGUF"]
    fn imports_smollm2_gguf() {
        let Ok(path) = std::env::var("LABOR_SMOLLM2_GGUF") else {
            eprintln!("skipping: LABOR_SMOLLM2_GGUF is not set");
            return;
        };
        let mut f = std::fs::File::open(&path).expect("open LABOR_SMOLLM2_GGUF");
        let start = std::time::Instant::now();
        let (c, tensors) = import_llama(&mut f, |_, _| {}).unwrap();
        eprintln!(
            "imported {} tensors in {:.2?}",
            tensors.len(),
            start.elapsed()
        );
        assert_eq!(
            (c.vocab_size, c.hidden_size, c.intermediate_size),
            (49152, 576, 1536)
        );
        assert_eq!(
            (c.num_hidden_layers, c.num_attention_heads, c.kv_heads()),
            (30, 9, 3)
        );
        assert_eq!((c.rope_theta, c.rms_norm_eps), (100_000.0, 1e-5));
        assert_eq!(c.max_position_embeddings, 8192);
        assert!(c.tie_word_embeddings);
        assert_eq!(tensors.len(), 30 * 9 + 2);
        let n: usize = tensors.iter().map(|t| t.2.len()).sum();
        assert_eq!(n, c.n_params());
        assert_eq!(n, 134_515_008);
        let shape = |name: &str| &tensors.iter().find(|t| t.0 == name).unwrap().1;
        assert_eq!(shape("model.embed_tokens.weight"), &[49152, 576]);
        assert_eq!(shape("model.layers.0.self_attn.q_proj.weight"), &[576, 576]);
        assert_eq!(
            shape("model.layers.29.self_attn.k_proj.weight"),
            &[192, 576]
        );
        assert_eq!(shape("model.layers.7.mlp.down_proj.weight"), &[576, 1536]);
        for (name, shape, w) in &tensors {
            assert_eq!(shape.iter().product::<usize>(), w.len(), "{name}");
            assert!(
                w.iter().all(|x| x.is_finite()),
                "{name} has non-finite values"
            );
        }
    }
}
