//! The tokenizer of a GGUF model file, built from its `tokenizer.ggml.*` metadata keys (read by
//! `labor_gguf`, the workspace's one GGUF reader).

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

pub use labor_gguf::{GgufError, Metadata, Value, read_metadata};

/// Token type of control tokens in `tokenizer.ggml.token_type` (llama.cpp's
/// LLAMA_TOKEN_TYPE_CONTROL); user-defined tokens are 4.
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// The values of `tokenizer.ggml.pre` this reader reproduces.
pub const PRE_TOKENIZERS: [&str; 3] = ["gpt2", "gpt-2", "smollm"];

/// Builds a tokenizer from GGUF metadata: a byte-level BPE (`tokenizer.ggml.model = "gpt2"`)
/// with the stored tokens (ids = positions) and merges, the pre-tokenizer named by
/// `tokenizer.ggml.pre` (`smollm`: digits split one by one, then GPT-2 byte-level splitting;
/// `gpt2`: GPT-2 byte-level splitting), and control and user-defined tokens as special tokens.
///
/// Any other pre-tokenizer name, or none, is an error naming it: llama.cpp splits text with a
/// different expression for each (`llama-bpe`, `qwen2`, `deepseek-llm`, …), and guessing would
/// tokenize differently from the model's authors. `pre_override` replaces the file's name, for
/// a user who knows which splitting applies.
pub fn tokenizer_from_metadata(
    m: &Metadata,
    pre_override: Option<&str>,
) -> Result<Tokenizer, GgufError> {
    let model = m.get("tokenizer.ggml.model")?.as_str().unwrap_or_default();
    if model != "gpt2" {
        return Err(GgufError::Key {
            key: "tokenizer.ggml.model".into(),
            what: format!("{model:?}: only byte-level BPE (\"gpt2\") is supported"),
        });
    }
    let tokens = m.strings("tokenizer.ggml.tokens")?;
    let merges = m.strings("tokenizer.ggml.merges")?;
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i as u32))
        .collect();
    let merges: Vec<(String, String)> = merges
        .iter()
        .map(|s| {
            s.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| GgufError::Key {
                    key: "tokenizer.ggml.merges".into(),
                    what: format!("merge {s:?} is not two tokens separated by a space"),
                })
        })
        .collect::<Result<_, _>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| GgufError::Key {
            key: "tokenizer.ggml.merges".into(),
            what: e.to_string(),
        })?;
    let mut tok = Tokenizer::new(bpe);
    let byte_level = ByteLevel::new(false, true, true);
    let pre = match (pre_override, m.kv.get("tokenizer.ggml.pre")) {
        (Some(p), _) => p.to_string(),
        (None, Some(v)) => v
            .as_str()
            .ok_or_else(|| GgufError::Key {
                key: "tokenizer.ggml.pre".into(),
                what: "is not a string".into(),
            })?
            .to_string(),
        (None, None) => {
            return Err(GgufError::Key {
                key: "tokenizer.ggml.pre".into(),
                what: format!(
                    "absent: the file does not say how text is split before BPE; pass \
                     --pre-tokenizer NAME (one of {PRE_TOKENIZERS:?}) if you know which applies"
                ),
            });
        }
    };
    let pre_tok: PreTokenizerWrapper = match pre.as_str() {
        "smollm" => Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into(),
        "gpt2" | "gpt-2" => byte_level.into(),
        other if pre_override.is_some() => {
            return Err(GgufError::Key {
                key: "tokenizer.ggml.pre".into(),
                what: format!(
                    "the override {other:?} is not supported (supported: {PRE_TOKENIZERS:?})"
                ),
            });
        }
        other => {
            return Err(GgufError::Key {
                key: "tokenizer.ggml.pre".into(),
                what: format!(
                    "{other:?} is not supported (supported: {PRE_TOKENIZERS:?}); llama.cpp splits \
                     text differently for each, so a guess would tokenize differently from the \
                     model's authors. --pre-tokenizer NAME overrides it if you know better"
                ),
            });
        }
    };
    tok.with_pre_tokenizer(Some(pre_tok));
    tok.with_decoder(Some(ByteLevel::new(false, true, true)));
    if let Some(types) =
        m.kv.get("tokenizer.ggml.token_type")
            .and_then(Value::as_array)
    {
        let special: Vec<AddedToken> = types
            .iter()
            .zip(&tokens)
            .filter(|(t, _)| matches!(t.as_i64(), Some(CONTROL) | Some(USER_DEFINED)))
            .map(|(_, s)| AddedToken::from(s.to_string(), true))
            .collect();
        tok.add_special_tokens(special)
            .map_err(|e| GgufError::Key {
                key: "tokenizer.ggml.token_type".into(),
                what: e.to_string(),
            })?;
    }
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(b: &mut Vec<u8>, x: &str) {
        b.extend((x.len() as u64).to_le_bytes());
        b.extend(x.as_bytes());
    }

    /// A hand-built GGUF header with a tiny byte-level BPE.
    fn tiny() -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend(5u64.to_le_bytes());
        s(&mut b, "tokenizer.ggml.model");
        b.extend(8u32.to_le_bytes());
        s(&mut b, "gpt2");
        s(&mut b, "tokenizer.ggml.pre");
        b.extend(8u32.to_le_bytes());
        s(&mut b, "smollm");
        let tokens = ["<|endoftext|>", "a", "b", "Ġ", "1", "2", "ab", "Ġab"];
        s(&mut b, "tokenizer.ggml.tokens");
        b.extend(9u32.to_le_bytes());
        b.extend(8u32.to_le_bytes());
        b.extend((tokens.len() as u64).to_le_bytes());
        for t in tokens {
            s(&mut b, t);
        }
        s(&mut b, "tokenizer.ggml.merges");
        b.extend(9u32.to_le_bytes());
        b.extend(8u32.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        s(&mut b, "a b");
        s(&mut b, "Ġ ab");
        s(&mut b, "tokenizer.ggml.token_type");
        b.extend(9u32.to_le_bytes());
        b.extend(5u32.to_le_bytes());
        b.extend((tokens.len() as u64).to_le_bytes());
        for i in 0..tokens.len() {
            b.extend(if i == 0 { 3i32 } else { 1i32 }.to_le_bytes());
        }
        b
    }

    #[test]
    fn reads_hand_built_metadata_and_tokenizes() {
        let m = read_metadata(tiny().as_slice()).unwrap();
        assert_eq!(m.version, 3);
        assert_eq!(m.kv["tokenizer.ggml.pre"], Value::Str("smollm".into()));
        let tok = tokenizer_from_metadata(&m, None).unwrap();
        let enc = tok.encode("ab ab12<|endoftext|>", false).unwrap();
        // "ab" merges; " ab" merges through Ġ+ab; digits split one by one; the control token.
        assert_eq!(enc.get_ids(), &[6, 7, 4, 5, 0]);
        assert!(read_metadata(&b"GGUX\x03\0\0\0"[..]).is_err());
    }

    #[test]
    fn unknown_or_absent_pre_tokenizers_are_errors_unless_overridden() {
        let mut m = read_metadata(tiny().as_slice()).unwrap();
        m.kv.insert("tokenizer.ggml.pre".into(), Value::Str("llama-bpe".into()));
        let e = tokenizer_from_metadata(&m, None).unwrap_err().to_string();
        assert!(
            e.contains("tokenizer.ggml.pre") && e.contains("llama-bpe"),
            "{e}"
        );
        m.kv.remove("tokenizer.ggml.pre");
        let e = tokenizer_from_metadata(&m, None).unwrap_err().to_string();
        assert!(e.contains("absent") && e.contains("--pre-tokenizer"), "{e}");
        // A user's explicit choice is taken; an unsupported one is still an error.
        let gpt2 = tokenizer_from_metadata(&m, Some("gpt2")).unwrap();
        assert_eq!(gpt2.encode("ab ab", false).unwrap().get_ids(), &[6, 7]);
        let smol = tokenizer_from_metadata(&m, Some("smollm")).unwrap();
        assert_eq!(smol.encode("ab12", false).unwrap().get_ids(), &[6, 4, 5]);
        assert!(tokenizer_from_metadata(&m, Some("qwen2")).is_err());
    }
}
