//! Trie scoring against the naive K-pass loop on tiny random models.

use labor_lm::score::{LabelTrie, ScoreOptions, Scorer, summarize};
use labor_lm::{Llama, LlamaConfig};
use tch::{Device, nn};

mod common;

/// A tiny model with weights large enough that the distributions are far from uniform.
fn tiny(cfg: &LlamaConfig, seed: u64, scale: f64) -> (nn::VarStore, Llama) {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Llama::new(&vs.root(), cfg, true);
    common::fill_normal(&vs, seed, scale);
    (vs, model)
}

fn configs() -> Vec<LlamaConfig> {
    let a = LlamaConfig::small(40, 32, 64, 2, 4, 2, 256, false);
    let mut b = LlamaConfig::small(40, 32, 48, 2, 4, 4, 256, true);
    b.model_type = "qwen2".into();
    vec![a, b]
}

/// Continuations with shared prefixes, all ending in token 3 ("newline"), one of them a proper
/// prefix of another's tokens.
fn continuations() -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    for a in 10..14u32 {
        out.push(vec![a, 3]);
        for b in 20..23u32 {
            out.push(vec![a, b, 3]);
            out.push(vec![a, b, 30 + b % 3, 3]);
        }
    }
    out.push(vec![3]);
    out.push(vec![10, 3, 3]); // has `[10, 3]` as a proper prefix
    out
}

#[test]
fn trie_scores_equal_naive_scores_for_every_label() {
    let conts = continuations();
    let trie = LabelTrie::new(&conts).unwrap();
    assert!(trie.n_nodes() < conts.iter().map(Vec::len).sum::<usize>());
    for cfg in configs() {
        // At weight scale 0.2 the labels' log-probabilities span about -3 to -20; f32 rounding then
        // leaves trie and naive at most ~5e-6 apart (measured over seeds 1-6: 2.6e-6 to 4.4e-6).
        let (_vs, model) = tiny(&cfg, 7, 0.2);
        let text: Vec<i64> = (0..48).map(|i| (i * 7 + 3) % 40).collect();
        let contexts = [1usize, 6, 17, 30, 41];
        // Both kernel sets: the fused CPU tree attention and the explicit reference one.
        for (budget, reference_kernels) in [(512 << 20, false), (1, false), (512 << 20, true)] {
            let scorer = Scorer::new(
                &model,
                trie.clone(),
                ScoreOptions {
                    mem_budget_bytes: budget,
                    reference_kernels,
                },
            );
            let got = scorer.score_text(&text, &contexts).unwrap();
            assert_eq!(got.logp.len(), contexts.len());
            for (r, &c) in contexts.iter().enumerate() {
                let want = scorer.score_naive(&text[..c], &conts);
                for (k, (g, w)) in got.logp[r].iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() < 1e-5,
                        "{} record {r} label {k}: trie {g} naive {w}",
                        cfg.model_type
                    );
                }
                let s = summarize(&got.logp[r], 4);
                let total: f64 = s.p_norm.iter().sum();
                assert!((total - 1.0).abs() < 1e-6, "normalized sum {total}");
                assert!(s.leak > 0.0 && s.leak < 1.0);
                assert!((s.logp_norm - (s.p_norm[4]).ln()).abs() < 1e-9);
            }
        }
    }
}

#[test]
fn rejects_contexts_outside_the_text_and_beyond_the_position_limit() {
    let conts = continuations();
    let trie = LabelTrie::new(&conts).unwrap();
    let mut cfg = configs().remove(0);
    cfg.max_position_embeddings = 20;
    let (_vs, model) = tiny(&cfg, 1, 0.3);
    let scorer = Scorer::new(&model, trie, ScoreOptions::default());
    let text: Vec<i64> = (0..30).map(|i| i % 40).collect();
    assert!(
        scorer
            .score_text(&text, &[31])
            .unwrap_err()
            .contains("outside")
    );
    assert!(
        scorer
            .score_text(&text, &[18])
            .unwrap_err()
            .contains("positions")
    );
    assert!(
        LabelTrie::new(&[vec![1], vec![]])
            .unwrap_err()
            .contains("no tokens")
    );
}
