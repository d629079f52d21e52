//! Exact scoring of the next record's label (SPEC §5).
//!
//! For a record whose context (the text up to and including `YEAR (EDU):`) is `c`, the model's
//! probability of label k is the product of the token probabilities of its continuation
//! `" " + title_k + "\n"`. All K continuations are arranged as a token trie; every *internal*
//! node (a proper prefix of some continuation) is one query token that attends to the cached
//! context and to its own ancestors, so each node is computed once per record, and the records
//! of one person share one pass over the person's text (their contexts are prefixes of it).
//! Leaves need no forward pass: their probability is read from their parent's output.

use tch::{Device, Kind, Tensor};

use crate::model::{KvCache, Llama, Mask, TreeLevel};

/// The K continuations as a token trie.
#[derive(Debug, Clone)]
pub struct LabelTrie {
    /// Internal nodes in breadth-first order: token, parent (None = the context's last token)
    /// and depth (1 = first continuation token).
    tokens: Vec<i64>,
    parents: Vec<Option<usize>>,
    depths: Vec<i64>,
    /// Edges (source node or context, token); every label's path is a list of edge indices.
    edges: Vec<(Option<usize>, i64)>,
    paths: Vec<Vec<usize>>,
}

impl LabelTrie {
    /// Builds the trie of `continuations` (token ids per label, in label order).
    pub fn new(continuations: &[Vec<u32>]) -> Result<Self, String> {
        use std::collections::HashMap;
        let mut node_of: HashMap<(Option<usize>, i64), usize> = HashMap::new();
        let mut edge_of: HashMap<(Option<usize>, i64), usize> = HashMap::new();
        let mut tokens = Vec::new();
        let mut parents = Vec::new();
        let mut depths = Vec::new();
        let mut edges = Vec::new();
        let mut paths = Vec::with_capacity(continuations.len());
        // Insert prefixes depth by depth so that node order is breadth-first (parents first).
        let max_len = continuations.iter().map(Vec::len).max().unwrap_or(0);
        for (k, c) in continuations.iter().enumerate() {
            if c.is_empty() {
                return Err(format!("label {k}'s continuation has no tokens"));
            }
        }
        let mut cursor: Vec<Option<usize>> = vec![None; continuations.len()];
        for depth in 0..max_len.saturating_sub(1) {
            for (k, c) in continuations.iter().enumerate() {
                if depth + 1 >= c.len() {
                    continue;
                }
                let key = (cursor[k], c[depth] as i64);
                let n = *node_of.entry(key).or_insert_with(|| {
                    tokens.push(key.1);
                    parents.push(key.0);
                    depths.push(depth as i64 + 1);
                    tokens.len() - 1
                });
                cursor[k] = Some(n);
            }
        }
        for c in continuations {
            let mut src = None;
            let mut path = Vec::with_capacity(c.len());
            for &tok in c {
                let key = (src, tok as i64);
                let e = *edge_of.entry(key).or_insert_with(|| {
                    edges.push(key);
                    edges.len() - 1
                });
                path.push(e);
                src = node_of.get(&key).copied();
            }
            paths.push(path);
        }
        Ok(Self {
            tokens,
            parents,
            depths,
            edges,
            paths,
        })
    }

    /// Number of internal nodes (query tokens per record).
    pub fn n_nodes(&self) -> usize {
        self.tokens.len()
    }

    pub fn n_labels(&self) -> usize {
        self.paths.len()
    }

    /// Longest continuation, in tokens.
    pub fn max_len(&self) -> usize {
        self.paths.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// The nodes grouped by depth (they are stored in breadth-first order), each with the
    /// indices of itself and its ancestors.
    fn levels(&self, device: Device) -> Vec<TreeLevel> {
        let mut out = Vec::new();
        let mut start = 0;
        while start < self.tokens.len() {
            let depth = self.depths[start];
            let len = self.depths[start..]
                .iter()
                .take_while(|&&d| d == depth)
                .count();
            let mut anc = Vec::with_capacity(len * depth as usize);
            for i in start..start + len {
                let mut j = Some(i);
                while let Some(a) = j {
                    anc.push(a as i64);
                    j = self.parents[a];
                }
            }
            debug_assert_eq!(anc.len(), len * depth as usize);
            out.push(TreeLevel {
                start: start as i64,
                len: len as i64,
                depth,
                anc: Tensor::from_slice(&anc).to_device(device),
            });
            start += len;
        }
        out
    }
}

/// Limits of one scoring call.
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    /// Rough bound on the bytes of the largest temporary (attention scores, logits).
    pub mem_budget_bytes: usize,
    /// Use the kernels of the first implementation (explicit tree-attention scores on every
    /// device, libtorch's `logsumexp`): the same numbers, slower on CPU. For benchmarks that
    /// compare before and after in one run.
    pub reference_kernels: bool,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        Self {
            mem_budget_bytes: 512 << 20,
            reference_kernels: false,
        }
    }
}

/// Scores of one person's evaluated records.
#[derive(Debug, Clone)]
pub struct PersonScores {
    /// Per record, the unnormalized log-probability of every label's continuation.
    pub logp: Vec<Vec<f64>>,
}

/// The shared scorer: a model and the label trie.
pub struct Scorer<'a> {
    pub model: &'a Llama,
    pub trie: LabelTrie,
    pub options: ScoreOptions,
    levels: Vec<TreeLevel>,
    node_tokens: Tensor,
    node_depths: Tensor,
}

impl<'a> Scorer<'a> {
    pub fn new(model: &'a Llama, trie: LabelTrie, options: ScoreOptions) -> Self {
        let d = model.device();
        Self {
            model,
            options,
            levels: trie.levels(d),
            node_tokens: Tensor::from_slice(&trie.tokens).to_device(d),
            node_depths: Tensor::from_slice(&trie.depths).to_device(d),
            trie,
        }
    }

    /// Full distributions for the records of one text: `ids` is the tokenized text and
    /// `contexts[r]` the number of tokens of record r's context (its continuation starts at that
    /// token). Returns, per record, the unnormalized log-probability of all K continuations.
    pub fn score_text(&self, ids: &[i64], contexts: &[usize]) -> Result<PersonScores, String> {
        if contexts.is_empty() {
            return Ok(PersonScores { logp: Vec::new() });
        }
        let l = ids.len();
        if let Some(&bad) = contexts.iter().find(|&&c| c == 0 || c > l) {
            return Err(format!(
                "context length {bad} outside the text's {l} tokens"
            ));
        }
        let limit = self.model.config.max_position_embeddings;
        let need = contexts.iter().max().copied().unwrap_or(0) + self.trie.max_len();
        if need > limit {
            return Err(format!(
                "a context of {} tokens plus a continuation of up to {} tokens exceeds the \
                 model's {limit} positions",
                need - self.trie.max_len(),
                self.trie.max_len()
            ));
        }
        tch::no_grad(|| self.score_inner(ids, contexts))
    }

    fn score_inner(&self, ids: &[i64], contexts: &[usize]) -> Result<PersonScores, String> {
        let m = self.model;
        let dev = m.device();
        let ctx_max = *contexts.iter().max().expect("non-empty") as i64;
        // 1. One causal pass over the text up to the longest context.
        let text = Tensor::from_slice(&ids[..ctx_max as usize])
            .to_device(dev)
            .unsqueeze(0);
        let pos = Tensor::arange(ctx_max, (Kind::Int64, dev)).unsqueeze(0);
        let mut cache = KvCache::default();
        let hidden = m.hidden(&text, &pos, Some(&mut cache), Mask::Causal);
        let last: Vec<i64> = contexts.iter().map(|&c| c as i64 - 1).collect();
        let root_lp = m
            .logits(
                &hidden
                    .get(0)
                    .index_select(0, &Tensor::from_slice(&last).to_device(dev)),
            )
            .log_softmax(-1, Kind::Double); // [R, V]

        let n = self.trie.n_nodes() as i64;
        let heads = m.config.num_attention_heads;
        let vocab = m.config.vocab_size;
        let budget = self.options.mem_budget_bytes.max(1 << 20);
        let mut out = Vec::with_capacity(contexts.len());
        let mut start = 0;
        while start < contexts.len() {
            // Records per chunk: attention scores are [rc, heads, N, ctx + depth] floats.
            let depth = self.trie.max_len();
            let per_record = heads * (n as usize).max(1) * (ctx_max as usize + depth) * 4 * 3;
            let rc = (budget / per_record).clamp(1, contexts.len() - start);
            let chunk = &contexts[start..start + rc];
            let edge_lp = self.trie_chunk(
                &cache,
                &root_lp.narrow(0, start as i64, rc as i64),
                chunk,
                budget,
                vocab,
            )?;
            for e in edge_lp {
                out.push(
                    self.trie
                        .paths
                        .iter()
                        .map(|p| p.iter().map(|&i| e[i]).sum())
                        .collect(),
                );
            }
            start += rc;
        }
        Ok(PersonScores { logp: out })
    }

    /// Log-probabilities of every trie edge for a chunk of records, `[rc][E]`.
    fn trie_chunk(
        &self,
        cache: &KvCache,
        root_lp: &Tensor,
        chunk: &[usize],
        budget: usize,
        vocab: usize,
    ) -> Result<Vec<Vec<f64>>, String> {
        let m = self.model;
        let dev = m.device();
        let rc = chunk.len() as i64;
        let n = self.trie.n_nodes() as i64;
        let ctx: Vec<i64> = chunk.iter().map(|&c| c as i64).collect();
        let lc = *ctx.iter().max().expect("non-empty");
        let ctx_t = Tensor::from_slice(&ctx).to_device(dev);
        let mut edge_vals = Tensor::zeros([rc, self.trie.edges.len() as i64], (Kind::Double, dev));
        // Root edges read the context's last position.
        let (root_e, root_tok): (Vec<i64>, Vec<i64>) = self
            .trie
            .edges
            .iter()
            .enumerate()
            .filter(|(_, (s, _))| s.is_none())
            .map(|(i, (_, t))| (i as i64, *t))
            .unzip();
        let root_e = Tensor::from_slice(&root_e).to_device(dev);
        let root_vals = root_lp.index_select(1, &Tensor::from_slice(&root_tok).to_device(dev));
        let _ = edge_vals.index_copy_(1, &root_e, &root_vals);
        if n > 0 {
            let ids = self.node_tokens.unsqueeze(0).expand([rc, n], false);
            let positions = ctx_t.unsqueeze(1) + self.node_depths.unsqueeze(0) - 1;
            let ctx_valid = Tensor::arange(lc, (Kind::Int64, dev))
                .unsqueeze(0)
                .lt_tensor(&ctx_t.unsqueeze(1)); // [rc, lc]
            let mut c = cache.truncate(lc);
            let hidden = m.hidden(
                &ids,
                &positions,
                Some(&mut c),
                Mask::Tree {
                    ctx_valid: &ctx_valid,
                    ctx_lens: &ctx,
                    fused: !self.options.reference_kernels,
                    levels: &self.levels,
                },
            );
            // Logits in node chunks so that [rc, nc, V] stays within the budget.
            let nc = (budget / (rc as usize * vocab * 4 * 2)).clamp(1, n as usize) as i64;
            let (edge_idx, src, tok): (Vec<i64>, Vec<i64>, Vec<i64>) = {
                let mut a = (Vec::new(), Vec::new(), Vec::new());
                for (i, (s, t)) in self.trie.edges.iter().enumerate() {
                    if let Some(s) = s {
                        a.0.push(i as i64);
                        a.1.push(*s as i64);
                        a.2.push(*t);
                    }
                }
                a
            };
            let mut s0 = 0i64;
            while s0 < n {
                let len = nc.min(n - s0);
                let logits = m.logits(&hidden.narrow(1, s0, len)); // [rc, len, V], f32
                let lse = if self.options.reference_kernels {
                    logits.logsumexp([-1i64].as_slice(), false)
                } else {
                    logsumexp_last(&logits)
                }; // [rc, len]
                let sel: Vec<usize> = (0..src.len())
                    .filter(|&j| src[j] >= s0 && src[j] < s0 + len)
                    .collect();
                if !sel.is_empty() {
                    let e =
                        Tensor::from_slice(&sel.iter().map(|&j| edge_idx[j]).collect::<Vec<_>>())
                            .to_device(dev);
                    let ls =
                        Tensor::from_slice(&sel.iter().map(|&j| src[j] - s0).collect::<Vec<_>>())
                            .to_device(dev);
                    let lt = Tensor::from_slice(&sel.iter().map(|&j| tok[j]).collect::<Vec<_>>())
                        .to_device(dev);
                    let picked =
                        logits.index(&[None, Some(&ls), Some(&lt)]) - lse.index_select(1, &ls);
                    let _ = edge_vals.index_copy_(1, &e, &picked.to_kind(Kind::Double));
                }
                s0 += len;
            }
        }
        let vals = edge_vals.to_device(Device::Cpu).to_kind(Kind::Double);
        let flat: Vec<f64> =
            Vec::try_from(vals.flatten(0, -1)).map_err(|e: tch::TchError| e.to_string())?;
        let e = self.trie.edges.len();
        Ok(flat.chunks(e.max(1)).map(<[f64]>::to_vec).collect())
    }

    /// The naive reference: one forward pass over context + continuation per label.
    pub fn score_naive(&self, context: &[i64], continuations: &[Vec<u32>]) -> Vec<f64> {
        let m = self.model;
        let dev = m.device();
        tch::no_grad(|| {
            continuations
                .iter()
                .map(|c| {
                    let mut seq = context.to_vec();
                    seq.extend(c.iter().map(|&t| t as i64));
                    let ids = Tensor::from_slice(&seq).to_device(dev).unsqueeze(0);
                    let lp = m.forward(&ids).get(0).log_softmax(-1, Kind::Double);
                    let base = context.len() as i64 - 1;
                    c.iter()
                        .enumerate()
                        .map(|(j, &t)| lp.double_value(&[base + j as i64, t as i64]))
                        .sum()
                })
                .collect()
        })
    }
}

/// `logsumexp` over the last dimension, the same numbers as libtorch's but several times
/// faster on CPU for vocabulary-sized rows: libtorch's exponential takes a slow path for the
/// many arguments far below the maximum (measured 1.4 s vs 0.2 s for 1,362 × 49,152 logits of
/// spread 20), so those are clamped at −80 first. An argument below −80 adds at most
/// e^−80 ≈ 1.8·10⁻³⁵ to a sum that is at least 1: no change in f32 or f64.
pub fn logsumexp_last(x: &Tensor) -> Tensor {
    let max = x.amax([-1i64].as_slice(), true);
    let sum =
        (x - &max)
            .clamp_min(-80.0)
            .exp()
            .sum_dim_intlist([-1i64].as_slice(), false, None::<Kind>);
    sum.log() + max.squeeze_dim(-1)
}

/// Summary of one record's distribution over the K labels (SPEC §7.1 columns).
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub logp: f64,
    pub logp_norm: f64,
    pub leak: f64,
    /// Normalized probabilities of all K labels.
    pub p_norm: Vec<f64>,
}

/// Normalizes unnormalized label log-probabilities; `truth` is the true label's index.
pub fn summarize(logp: &[f64], truth: usize) -> Summary {
    let max = logp.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = logp.iter().map(|&x| (x - max).exp()).sum();
    let lse = max + sum.ln();
    Summary {
        logp: logp[truth],
        logp_norm: logp[truth] - lse,
        leak: (1.0 - lse.exp()).max(0.0),
        p_norm: logp.iter().map(|&x| (x - lse).exp()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_logsumexp_equals_libtorch_for_narrow_and_wide_spreads() {
        tch::manual_seed(3);
        for spread in [1.0, 20.0, 200.0] {
            let x = Tensor::randn([5, 7, 3000], (Kind::Float, Device::Cpu)) * spread;
            let want = x.logsumexp([-1i64].as_slice(), false);
            let got = logsumexp_last(&x);
            assert_eq!(got.size(), want.size());
            let d = (&got - &want).abs().max().double_value(&[]);
            assert!(d <= 1e-6 * spread, "spread {spread}: max |Δ| = {d}");
        }
        // A row with -inf entries (impossible tokens) and one all but one -inf.
        let x = Tensor::from_slice(&[0.0f32, f32::NEG_INFINITY, -1000.0, 2.0]).view([1, 4]);
        let d = (logsumexp_last(&x) - x.logsumexp([-1i64].as_slice(), false))
            .abs()
            .double_value(&[0]);
        assert!(d < 1e-6, "{d}");
    }
}
