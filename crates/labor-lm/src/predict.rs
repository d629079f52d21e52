//! The language model as a [`Predictor`]: render a person, tokenize the text once, check that
//! every scored record's continuation is exactly the label's own tokens, and score all K labels
//! with the trie. Optionally prepends k training texts (in-context learning).

use labor_data::predictions::{Prediction, Predictor};
use labor_data::{Person, Taxonomy};
use labor_text::Renderer;
use tokenizers::Tokenizer;

use crate::model::Llama;
use crate::score::{LabelTrie, ScoreOptions, Scorer};

/// Token ids of each label's continuation `" " + title + "\n"`, in label order.
pub fn continuation_ids(tok: &Tokenizer, renderer: &Renderer) -> Result<Vec<Vec<u32>>, String> {
    renderer
        .continuations()
        .iter()
        .map(|c| {
            tok.encode(c.as_str(), false)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| format!("cannot tokenize {c:?}: {e}"))
        })
        .collect()
}

/// A tokenized text and, per scored record, the number of context tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub ids: Vec<i64>,
    pub contexts: Vec<usize>,
}

/// Tokenizes `text` once and locates each span `(context_end, continuation_end, label)` (byte
/// offsets): a token must start at `context_end`, and the tokens up to `continuation_end` must be
/// exactly `continuations[label]`. Anything else is an error naming the record.
pub fn encode(
    tok: &Tokenizer,
    text: &str,
    spans: &[(usize, usize, usize)],
    continuations: &[Vec<u32>],
) -> Result<Encoded, String> {
    let enc = tok
        .encode(text, false)
        .map_err(|e| format!("cannot tokenize a text: {e}"))?;
    let offsets = enc.get_offsets();
    let ids: Vec<i64> = enc.get_ids().iter().map(|&i| i as i64).collect();
    let mut contexts = Vec::with_capacity(spans.len());
    for (r, &(start, end, label)) in spans.iter().enumerate() {
        let Some(first) = offsets.iter().position(|&(s, _)| s == start) else {
            return Err(format!(
                "record {}: no token starts where its context ends (byte {start}); the tokenizer \
                 merges across the boundary {:?}",
                r + 1,
                &text[start.saturating_sub(12)..(start + 12).min(text.len())]
            ));
        };
        let want = &continuations[label];
        let got: Vec<u32> = enc.get_ids()[first..]
            .iter()
            .zip(&offsets[first..])
            .take_while(|(_, o)| o.0 < end)
            .map(|(&i, _)| i)
            .collect();
        if got != *want {
            return Err(format!(
                "record {}: its continuation {:?} tokenizes to {got:?} in context but to {want:?} \
                 alone",
                r + 1,
                &text[start..end]
            ));
        }
        contexts.push(first);
    }
    Ok(Encoded { ids, contexts })
}

/// In-context learning: k training texts drawn per scored person.
#[derive(Debug, Clone)]
pub struct Icl {
    pub k: usize,
    pub seed: u64,
    /// Texts of the training split: (dataset, person_id, text, tokens).
    pub pool: Vec<(String, String, String, usize)>,
}

impl Icl {
    /// Draws up to k pool texts other than the person's own, in a person-specific order (seeded
    /// by `seed` and the person), keeping those that fit in `budget` tokens. Returns the prefix
    /// (texts joined by `\n`, with a trailing `\n`) and how many were used.
    pub fn prefix(&self, person: &Person, budget: usize) -> (String, usize) {
        let mut rng = labor_data::rng::SplitMix64::new(labor_data::split::person_hash(
            self.seed,
            &person.dataset,
            &person.person_id,
        ));
        let n = self.pool.len();
        let mut order: Vec<usize> = (0..n).collect();
        // Partial Fisher–Yates: only as many draws as might be needed.
        let mut prefix = String::new();
        let (mut used, mut tokens) = (0usize, 0usize);
        for i in 0..n {
            if used == self.k {
                break;
            }
            let j = i + rng.modulo((n - i) as u64) as usize;
            order.swap(i, j);
            let (ds, pid, text, len) = &self.pool[order[i]];
            if ds == &person.dataset && pid == &person.person_id {
                continue;
            }
            if tokens + len + 1 > budget {
                continue;
            }
            tokens += len + 1;
            prefix += text;
            prefix.push('\n');
            used += 1;
        }
        (prefix, used)
    }
}

/// A language model with its tokenizer, template and label set, as a predictor.
pub struct LmPredictor<'a> {
    name: String,
    scorer: Scorer<'a>,
    tokenizer: &'a Tokenizer,
    renderer: &'a Renderer<'a>,
    taxonomy: &'a Taxonomy,
    continuations: Vec<Vec<u32>>,
    icl: Option<Icl>,
    /// Tokens available to a text (model positions, or less).
    window: usize,
}

impl<'a> LmPredictor<'a> {
    pub fn new(
        name: &str,
        model: &'a Llama,
        tokenizer: &'a Tokenizer,
        renderer: &'a Renderer<'a>,
        taxonomy: &'a Taxonomy,
        options: ScoreOptions,
        max_context: Option<usize>,
    ) -> Result<Self, String> {
        let continuations = continuation_ids(tokenizer, renderer)?;
        let trie = LabelTrie::new(&continuations)?;
        let positions = model.config.max_position_embeddings;
        let window = max_context.map_or(positions, |m| m.min(positions));
        Ok(Self {
            name: name.to_string(),
            scorer: Scorer::new(model, trie, options),
            tokenizer,
            renderer,
            taxonomy,
            continuations,
            icl: None,
            window,
        })
    }

    pub fn with_icl(mut self, icl: Icl) -> Self {
        self.icl = Some(icl);
        self
    }

    /// Internal nodes of the label trie (query tokens per record).
    pub fn trie_nodes(&self) -> usize {
        self.scorer.trie.n_nodes()
    }

    pub fn continuations(&self) -> &[Vec<u32>] {
        &self.continuations
    }
}

impl Predictor for LmPredictor<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn predict(&mut self, person: &Person, ts: &[usize]) -> Result<Prediction, String> {
        let rendered = self.renderer.render(person, self.taxonomy);
        let (prefix, icl_k) = match &self.icl {
            Some(icl) => {
                let own = self
                    .tokenizer
                    .encode(rendered.text.as_str(), false)
                    .map_err(|e| e.to_string())?
                    .len();
                let budget = self
                    .window
                    .saturating_sub(own + self.scorer.trie.max_len() + 1);
                let (p, k) = icl.prefix(person, budget);
                (p, Some(k as i32))
            }
            None => (String::new(), None),
        };
        let shift = prefix.len();
        let text = prefix + &rendered.text;
        let spans: Vec<(usize, usize, usize)> = ts
            .iter()
            .map(|&t| {
                let s = &rendered.records[t];
                (
                    shift + s.context_end,
                    shift + s.continuation[1],
                    person.records[t].label.index(),
                )
            })
            .collect();
        let enc = encode(self.tokenizer, &text, &spans, &self.continuations)
            .map_err(|e| format!("{} {}: {e}", person.dataset, person.person_id))?;
        let scores = self
            .scorer
            .score_text(&enc.ids, &enc.contexts)
            .map_err(|e| format!("{} {}: {e}", person.dataset, person.person_id))?;
        Ok(Prediction {
            logp: scores.logp,
            icl_k,
        })
    }
}
