//! Tokenizers (Hugging Face `tokenizers`): load a `tokenizer.json`, train a byte-level BPE on
//! rendered texts, and check that every label's continuation aligns with token boundaries.

use serde::{Deserialize, Serialize};
use tokenizers::SplitDelimiterBehavior;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, Tokenizer};

/// The end-of-sequence token of tokenizers trained here (appended after `<END OF DATA>` when
/// training a language model).
pub const EOS: &str = "<|endoftext|>";

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Reads a Hugging Face `tokenizer.json`.
///
/// The `tokenizers` library panics instead of returning an error on some malformed files (a
/// JSON syntax error inside `decoder`, a `Precompiled` normalizer whose charsmap does not
/// decode), so those are checked here first and reported as errors.
pub fn from_json(bytes: &[u8]) -> Result<Tokenizer, Error> {
    let doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("tokenizer.json: {e}"))?;
    check_precompiled(&doc, "")?;
    Tokenizer::from_bytes(bytes)
}

/// Every object with `"type": "Precompiled"` must read as `tokenizers` will read it.
fn check_precompiled(v: &serde_json::Value, path: &str) -> Result<(), Error> {
    match v {
        serde_json::Value::Object(m) => {
            if m.get("type").and_then(|t| t.as_str()) == Some("Precompiled") {
                serde_json::from_str::<spm_precompiled::Precompiled>(&v.to_string()).map_err(
                    |e| {
                        format!(
                            "tokenizer.json: {}: a Precompiled normalizer: {e}",
                            path_or_root(path)
                        )
                    },
                )?;
            }
            for (k, x) in m {
                check_precompiled(x, &format!("{path}.{k}"))?;
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                check_precompiled(x, &format!("{path}[{i}]"))?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn path_or_root(path: &str) -> &str {
    if path.is_empty() {
        "the top level"
    } else {
        path.trim_start_matches('.')
    }
}

/// Writes a tokenizer as `tokenizer.json` text.
pub fn to_json(tok: &Tokenizer) -> Result<String, Error> {
    tok.to_string(true)
}

/// How text is cut into pieces before BPE merges (merges never cross a piece boundary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PreTokenize {
    /// GPT-2 style: words, numbers and punctuation runs are separate pieces, so a multi-word
    /// job title is always several tokens.
    #[default]
    ByteLevel,
    /// Pieces end after every `:` and every newline: a record line `1985 (bachelor's degree):`
    /// and its continuation ` Crossing guards and flaggers\n` are one piece each, so with a
    /// large enough vocabulary frequent titles become single tokens (as in CAREER, one token per
    /// occupation) and a record costs about two tokens.
    Segments,
}

impl std::str::FromStr for PreTokenize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "byte-level" => Ok(Self::ByteLevel),
            "segments" => Ok(Self::Segments),
            _ => Err(format!(
                "unknown pre-tokenization {s:?}: expected \"byte-level\" or \"segments\""
            )),
        }
    }
}

impl std::fmt::Display for PreTokenize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ByteLevel => "byte-level",
            Self::Segments => "segments",
        })
    }
}

/// Trains a byte-level BPE tokenizer (no prefix space) on `texts`, with `terminator` (e.g.
/// `<END OF DATA>`) and [`EOS`] as special tokens, cutting the text into pieces as `pre` says.
pub fn train_bpe<'a>(
    texts: impl Iterator<Item = &'a str> + Send,
    vocab_size: usize,
    terminator: &str,
    pre: PreTokenize,
) -> Result<Tokenizer, Error> {
    let mut tok = Tokenizer::new(BPE::default());
    match pre {
        PreTokenize::ByteLevel => {
            tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        }
        PreTokenize::Segments => {
            let split = Split::new(
                SplitPattern::Regex("[:\\n]".into()),
                SplitDelimiterBehavior::MergedWithPrevious,
                false,
            )?;
            tok.with_pre_tokenizer(Some(Sequence::new(vec![
                split.into(),
                ByteLevel::new(false, true, false).into(),
            ])));
        }
    }
    tok.with_decoder(Some(ByteLevel::new(false, true, true)));
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![
            AddedToken::from(terminator.to_string(), true),
            AddedToken::from(EOS, true),
        ])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    tok.train(&mut trainer, texts)?;
    Ok(tok)
}

/// Makes every label continuation (`" " + title + "\n"`, as the renderer writes it) one token
/// of `tok`, whatever corpus the tokenizer was trained on: each becomes an added token matched
/// on the raw text before pre-tokenization (longest match first, so `" Managers\n"` and
/// `" Managers, all other\n"` stay distinct). Continuations that already are one token are
/// left alone. Returns how many tokens were added.
///
/// The label-complete tokenizer of a from-scratch model: a record's continuation is then a
/// single, fixed token, the label trie has no inner nodes, and rare labels (or labels the
/// corpus never shows, such as non-work states in a resume corpus) cost no more than common
/// ones.
pub fn add_label_tokens(tok: &mut Tokenizer, continuations: &[String]) -> Result<usize, Error> {
    let mut seen = std::collections::HashSet::new();
    let mut add = Vec::new();
    for c in continuations {
        if !seen.insert(c.as_str()) {
            continue;
        }
        if c.is_empty() {
            return Err("an empty label continuation cannot be a token".into());
        }
        if ids(tok, c)?.len() == 1 {
            continue;
        }
        add.push(AddedToken::from(c.clone(), false).normalized(false));
    }
    tok.add_tokens(add)
}

/// Adds `markers` (the label tokens of the `label_tokens` switch, in label order, see
/// `Renderer::label_token`) to a tokenizer as special tokens, matched on the raw text before
/// anything else. Returns their ids, which are consecutive: `first..first + K`. A marker the
/// tokenizer already has as one token is an error (its id would not be in the block), unless
/// every marker is already there in order (a tokenizer that went through this before), in
/// which case nothing is added.
pub fn add_label_markers(tok: &mut Tokenizer, markers: &[String]) -> Result<Vec<u32>, Error> {
    if markers.is_empty() {
        return Err("no label tokens to add".into());
    }
    if let Some(ids) = label_marker_ids(tok, markers)? {
        return Ok(ids);
    }
    let first = tok.get_vocab_size(true) as u32;
    let added = tok.add_special_tokens(
        markers
            .iter()
            .map(|m| AddedToken::from(m.clone(), true).normalized(false))
            .collect::<Vec<_>>(),
    )?;
    if added != markers.len() {
        return Err(format!(
            "{} of the {} label tokens were already in the tokenizer",
            markers.len() - added,
            markers.len()
        )
        .into());
    }
    label_marker_ids(tok, markers)?
        .filter(|ids| ids[0] == first)
        .ok_or_else(|| "the label tokens did not get consecutive ids".into())
}

/// The ids of `markers` when the tokenizer has every one of them as one token with consecutive
/// ids in order; `None` when it has none of them; an error for anything in between.
pub fn label_marker_ids(tok: &Tokenizer, markers: &[String]) -> Result<Option<Vec<u32>>, Error> {
    let ids: Vec<Option<u32>> = markers.iter().map(|m| tok.token_to_id(m)).collect();
    let have = ids.iter().filter(|i| i.is_some()).count();
    if have == 0 {
        return Ok(None);
    }
    if have < markers.len() {
        let missing = markers
            .iter()
            .zip(&ids)
            .find(|(_, i)| i.is_none())
            .map(|(m, _)| m.as_str())
            .unwrap_or_default();
        return Err(format!(
            "the tokenizer has {have} of the {} label tokens (it lacks {missing}): it was made for another taxonomy",
            markers.len()
        )
        .into());
    }
    let ids: Vec<u32> = ids.into_iter().flatten().collect();
    if ids.windows(2).any(|w| w[1] != w[0] + 1) {
        return Err(
            "the tokenizer's label tokens do not have consecutive ids in label order".into(),
        );
    }
    Ok(Some(ids))
}

/// Token counts of label continuations under `tok`: (largest, mean).
pub fn continuation_lengths(
    tok: &Tokenizer,
    continuations: &[String],
) -> Result<(usize, f64), Error> {
    let mut max = 0;
    let mut sum = 0usize;
    for c in continuations {
        let n = ids(tok, c)?.len();
        max = max.max(n);
        sum += n;
    }
    Ok((max, sum as f64 / continuations.len().max(1) as f64))
}

/// A label whose continuation does not align with the tokenization of a context.
#[derive(Debug, Clone, PartialEq)]
pub struct Misalignment {
    pub label: usize,
    pub continuation: String,
    pub context: String,
    pub what: String,
}

impl std::fmt::Display for Misalignment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tail: String = self
            .context
            .chars()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        write!(
            f,
            "label {} ({:?}) after \"…{}\": {}",
            self.label,
            self.continuation,
            tail.escape_debug(),
            self.what
        )
    }
}

fn ids(tok: &Tokenizer, s: &str) -> Result<Vec<u32>, Error> {
    Ok(tok.encode(s, false)?.get_ids().to_vec())
}

/// Checks every continuation (label i ↦ `continuations[i]`) after every context: a token must
/// start exactly where the context ends, and tokenizing context + continuation must give the
/// context's ids followed by the continuation's own ids. Returns every violation.
pub fn check_alignment(
    tok: &Tokenizer,
    contexts: &[String],
    continuations: &[String],
) -> Result<Vec<Misalignment>, Error> {
    let mut out = Vec::new();
    let cont_ids: Vec<Vec<u32>> = continuations
        .iter()
        .map(|c| ids(tok, c))
        .collect::<Result<_, _>>()?;
    for ctx in contexts {
        let ctx_ids = ids(tok, ctx)?;
        for (label, cont) in continuations.iter().enumerate() {
            let joined = format!("{ctx}{cont}");
            let enc = tok.encode(joined.as_str(), false)?;
            let boundary = enc.get_offsets().iter().any(|&(s, _)| s == ctx.len());
            let want: Vec<u32> = ctx_ids.iter().chain(&cont_ids[label]).copied().collect();
            let what = if !boundary {
                let toks: Vec<&str> = enc.get_tokens().iter().map(String::as_str).collect();
                Some(format!(
                    "no token starts at the end of the context; tokens: {toks:?}"
                ))
            } else if enc.get_ids() != want.as_slice() {
                Some(format!(
                    "joint ids {:?} differ from context ids + continuation ids {:?}",
                    enc.get_ids(),
                    want
                ))
            } else {
                None
            };
            if let Some(what) = what {
                out.push(Misalignment {
                    label,
                    continuation: cont.clone(),
                    context: ctx.clone(),
                    what,
                });
            }
        }
    }
    Ok(out)
}
