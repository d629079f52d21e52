//! The language-model predictor on a real (synthetic) panel: for every record and every label,
//! the trie scorer equals the naive loop (one pass over context + continuation per label).

use labor_data::predictions::Predictor;
use labor_data::{Panel, Taxonomy};
use labor_lm::predict::{Icl, LmPredictor, encode};
use labor_lm::score::{LabelTrie, ScoreOptions, Scorer};
use labor_lm::{Llama, LlamaConfig};
use labor_synth::{Generator, World};
use labor_text::{Renderer, Switches, Template};
use tch::{Device, Kind, Tensor, nn};

mod common;

fn small_panel() -> Panel {
    let g = Generator::new(
        World::preset("nlsy79").unwrap(),
        Taxonomy::embedded_default(),
        5,
    )
    .unwrap();
    let (mut panel, _) = labor_synth::into_panel(&g.taxonomy, g.generate(3, 1, 0, &|_| {}));
    for p in &mut panel.persons {
        p.records.truncate(4);
    }
    panel
}

/// An encoding's token ids as the model takes them.
fn ids_i64(enc: &tokenizers::Encoding) -> Vec<i64> {
    enc.get_ids().iter().map(|&i| i as i64).collect()
}

fn random_model(vocab: usize) -> (nn::VarStore, Llama) {
    let cfg = LlamaConfig::small(vocab, 32, 64, 2, 4, 2, 4096, false);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Llama::new(&vs.root(), &cfg, false);
    common::fill_normal(&vs, 3, 0.1);
    (vs, model)
}

/// Every person's text and a 600-token BPE trained on them; with `label_tokens`, the
/// label-complete tokenizer of from-scratch models (a BPE on the texts without their
/// continuations, plus one token per label continuation).
fn texts_and_tokenizer(
    panel: &Panel,
    template: &Template,
    renderer: &Renderer,
    label_tokens: bool,
) -> (Vec<String>, tokenizers::Tokenizer) {
    let rendered: Vec<_> = panel
        .persons
        .iter()
        .map(|p| renderer.render(p, &panel.taxonomy))
        .collect();
    let corpus: Vec<String> = rendered
        .iter()
        .map(|r| {
            if label_tokens {
                r.without_continuations()
            } else {
                r.text.clone()
            }
        })
        .collect();
    let mut tok = labor_text::tokenize::train_bpe(
        corpus.iter().map(String::as_str),
        600,
        &template.terminator,
        labor_text::tokenize::PreTokenize::ByteLevel,
    )
    .unwrap();
    if label_tokens {
        labor_text::tokenize::add_label_tokens(&mut tok, &renderer.continuations()).unwrap();
    }
    (rendered.into_iter().map(|r| r.text).collect(), tok)
}

#[test]
fn trie_equals_naive_for_every_label_and_record_of_a_small_panel() {
    trie_equals_naive(false);
}

/// With one token per label the trie has no inner nodes: every label is read from the context's
/// own next-token distribution, and must still equal the naive loop.
#[test]
fn label_token_scores_equal_naive_scores_for_every_label_and_record() {
    trie_equals_naive(true);
}

fn trie_equals_naive(label_tokens: bool) {
    let panel = small_panel();
    let template = Template::labor_v1();
    let renderer = Renderer::new(&template, Switches::default(), &panel.taxonomy).unwrap();
    let (texts, tok) = texts_and_tokenizer(&panel, &template, &renderer, label_tokens);
    let (_vs, model) = random_model(tok.get_vocab_size(true));
    let mut lm = LmPredictor::new(
        "lm",
        &model,
        &tok,
        &renderer,
        &panel.taxonomy,
        ScoreOptions::default(),
        None,
    )
    .unwrap();
    let conts = lm.continuations().to_vec();
    if label_tokens {
        assert!(conts.iter().all(|c| c.len() == 1));
        assert_eq!(LabelTrie::new(&conts).unwrap().n_nodes(), 0);
    }
    let naive = Scorer::new(
        &model,
        LabelTrie::new(&conts).unwrap(),
        ScoreOptions::default(),
    );
    let k = panel.taxonomy.len();
    let mut checked = 0;
    let mut worst = 0f64;
    for (person, text) in panel.persons.iter().zip(&texts) {
        let ts: Vec<usize> = (0..person.records.len()).collect();
        let pred = lm.predict(person, &ts).unwrap();
        assert_eq!(pred.icl_k, None);
        let rendered = renderer.render(person, &panel.taxonomy);
        let spans: Vec<_> = rendered
            .records
            .iter()
            .zip(&person.records)
            .map(|(s, r)| (s.context_end, s.continuation[1], r.label.index()))
            .collect();
        let enc = encode(&tok, text, &spans, &conts).unwrap();
        for (r, &c) in enc.contexts.iter().enumerate() {
            let want = naive.score_naive(&enc.ids[..c], &conts);
            assert_eq!(pred.logp[r].len(), k);
            for (label, (g, w)) in pred.logp[r].iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() < 1e-5,
                    "record {r} label {label}: trie {g} naive {w}"
                );
                worst = worst.max((g - w).abs());
                checked += 1;
            }
            let (row, p) = labor_data::predictions::row_from_logp(
                "lm",
                person,
                labor_data::Split::Test,
                &panel.taxonomy,
                r,
                &pred.logp[r],
                None,
            );
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-6);
            assert!(row.leak > 0.0 && row.leak < 1.0);
            assert!(row.logp < row.logp_norm);
            // The true label's trie score is also its in-text score (the text's own tokens).
            let ids = Tensor::from_slice(&enc.ids).unsqueeze(0);
            let lp = tch::no_grad(|| model.forward(&ids))
                .get(0)
                .log_softmax(-1, Kind::Float);
            let truth = &conts[person.records[r].label.index()];
            let in_text: f64 = truth
                .iter()
                .enumerate()
                .map(|(j, &t)| lp.double_value(&[(c + j) as i64 - 1, t as i64]))
                .sum();
            assert!(
                (in_text - row.logp).abs() < 1e-4,
                "{in_text} vs {}",
                row.logp
            );
        }
    }
    assert!(checked >= 3 * 2 * k, "checked {checked} label scores");
    eprintln!("{checked} label scores; largest |trie - naive| = {worst:.2e}");
}

#[test]
fn in_context_examples_exclude_the_person_and_fit_the_window() {
    let panel = small_panel();
    let template = Template::labor_v1();
    let renderer = Renderer::new(&template, Switches::default(), &panel.taxonomy).unwrap();
    let (texts, tok) = texts_and_tokenizer(&panel, &template, &renderer, false);
    let pool: Vec<_> = panel
        .persons
        .iter()
        .zip(&texts)
        .map(|(p, t)| {
            let n = tok.encode(t.as_str(), false).unwrap().len();
            (p.dataset.clone(), p.person_id.clone(), t.clone(), n)
        })
        .collect();
    let icl = Icl {
        k: 5,
        seed: 9,
        pool: pool.clone(),
    };
    let me = &panel.persons[0];
    let (prefix, used) = icl.prefix(me, usize::MAX);
    assert_eq!(used, 2, "only the two other persons can be drawn");
    assert!(!prefix.contains(&texts[0]));
    assert_eq!(
        icl.prefix(me, usize::MAX),
        (prefix.clone(), used),
        "reproducible"
    );
    let one = pool[1].3.max(pool[2].3) + 1;
    let (_, used) = icl.prefix(me, one);
    assert_eq!(used, 1, "a budget for one text takes one");
    let (_, used) = icl.prefix(me, 3);
    assert_eq!(used, 0);
    // Scoring with in-context examples records how many were used.
    let (_vs, model) = random_model(tok.get_vocab_size(true));
    let mut lm = LmPredictor::new(
        "lm-icl",
        &model,
        &tok,
        &renderer,
        &panel.taxonomy,
        ScoreOptions::default(),
        None,
    )
    .unwrap()
    .with_icl(icl);
    let pred = lm.predict(me, &[0, 1]).unwrap();
    assert_eq!(pred.icl_k, Some(2));
    assert_eq!(pred.logp.len(), 2);
}

/// Label tokens added to a pre-trained base (the `label_tokens` switch: `<|label:CODE|>` before
/// each title): the predictor's scores are, record by record, exactly the K-way softmax over
/// the label tokens' logits at the context's last position, computed here independently with one
/// plain forward pass over the text; the training-time model (label rows beside the base) and the
/// folded one (rows written into untied matrices) give the same logits; the rows start from
/// the titles' own tokens; and only the rows receive gradients.
#[test]
fn added_label_token_scores_equal_an_independent_k_way_softmax() {
    let panel = small_panel();
    let template = Template::labor_v1();
    // The "pre-trained" base: a BPE that learned titles as ordinary pieces, a random model.
    let plain = Renderer::new(&template, Switches::default(), &panel.taxonomy).unwrap();
    let (_, mut tok) = texts_and_tokenizer(&panel, &template, &plain, false);
    let base_vocab = tok.get_vocab_size(true);
    let switches = Switches {
        label_tokens: true,
        ..Switches::default()
    };
    let renderer = Renderer::new(&template, switches, &panel.taxonomy).unwrap();
    let markers = renderer.continuations();
    let ids = labor_text::tokenize::add_label_markers(&mut tok, &markers).unwrap();
    let k = panel.taxonomy.len();
    assert_eq!(ids.len(), k);
    assert_eq!(
        ids[0] as usize, base_vocab,
        "appended after the base vocabulary"
    );
    // Adding them again changes nothing.
    assert_eq!(
        labor_text::tokenize::add_label_markers(&mut tok, &markers).unwrap(),
        ids
    );

    let (vs, mut model) = random_model(base_vocab);
    let titles: Vec<Vec<i64>> = panel
        .taxonomy
        .ids()
        .map(|id| {
            ids_i64(
                &tok.encode(format!(" {}", renderer.title(id)), false)
                    .unwrap(),
            )
        })
        .collect();
    let (embed, head) = model
        .label_rows_init(&titles, labor_lm::model::LabelInit::FirstToken)
        .unwrap();
    // Initialisation: mean of the title's input embeddings; the first title token's output row.
    let t0 = &titles[5];
    let want = model
        .embed_tokens
        .index_select(0, &Tensor::from_slice(t0))
        .mean_dim(0, false, Kind::Float);
    assert!(embed.get(5).allclose(&want, 1e-6, 1e-6, false));
    let base_head = model.lm_head.as_ref().unwrap_or(&model.embed_tokens);
    assert!(head.get(5).allclose(&base_head.get(t0[0]), 0.0, 0.0, false));
    // The other initialisation: the mean of the title's output rows.
    let (embed_m, head_m) = model
        .label_rows_init(&titles, labor_lm::model::LabelInit::TitleMean)
        .unwrap();
    assert!(embed_m.allclose(&embed, 0.0, 0.0, false));
    let want = base_head
        .index_select(0, &Tensor::from_slice(t0))
        .mean_dim(0, false, Kind::Float);
    assert!(head_m.get(5).allclose(&want, 1e-6, 1e-6, false));
    // Perturb the rows so the test does not depend on the initialisation.
    let rows_vs = nn::VarStore::new(Device::Cpu);
    let embed = embed + Tensor::randn([k as i64, 32], (Kind::Float, Device::Cpu)) * 0.1;
    let head = head + Tensor::randn([k as i64, 32], (Kind::Float, Device::Cpu)) * 0.1;
    model
        .add_label_rows(&rows_vs.root(), ids[0] as i64, &embed, &head, true)
        .unwrap();

    // Only the rows are trainable: a loss on a text with label tokens reaches them and nothing
    // of the base.
    let person = &panel.persons[0];
    let text = renderer.render(person, &panel.taxonomy).text;
    let text_ids = ids_i64(&tok.encode(text.as_str(), false).unwrap());
    assert!(text_ids.contains(&(ids[0] as i64 + person.records[0].label.index() as i64)));
    let x = Tensor::from_slice(&text_ids).unsqueeze(0);
    let logits_rows = model.forward(&x);
    logits_rows.sum(Kind::Float).backward();
    let rows = model.label_rows.as_ref().unwrap();
    assert!(rows.embed.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    assert!(rows.head.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    assert!(vs.trainable_variables().is_empty());
    assert_eq!(rows_vs.trainable_variables().len(), 2);

    // Folding gives the same logits, with a grown, untied vocabulary.
    let before = logits_rows.detach();
    model.fold_label_rows();
    assert!(model.label_rows.is_none());
    assert_eq!(model.config.vocab_size, base_vocab + k);
    assert!(!model.config.tie_word_embeddings);
    let after = tch::no_grad(|| model.forward(&x));
    assert_eq!(
        after.size(),
        [1, text_ids.len() as i64, (base_vocab + k) as i64]
    );
    assert!(
        before.allclose(&after, 1e-5, 1e-5, false),
        "max |Δ| {}",
        (&before - &after).abs().max().double_value(&[])
    );

    let mut lm = LmPredictor::new(
        "lm",
        &model,
        &tok,
        &renderer,
        &panel.taxonomy,
        ScoreOptions::default(),
        None,
    )
    .unwrap();
    assert_eq!(lm.trie_nodes(), 0, "one step per record, no trie");
    let label_ids = Tensor::from_slice(&ids.iter().map(|&i| i as i64).collect::<Vec<_>>());
    let mut checked = 0;
    for person in &panel.persons {
        let ts: Vec<usize> = (0..person.records.len()).collect();
        let pred = lm.predict(person, &ts).unwrap();
        let rendered = renderer.render(person, &panel.taxonomy);
        let enc = tok.encode(rendered.text.as_str(), false).unwrap();
        let x = Tensor::from_slice(&ids_i64(&enc)).unsqueeze(0);
        let logits = tch::no_grad(|| model.forward(&x)).get(0);
        for (r, span) in rendered.records.iter().enumerate() {
            // The token just before the label token: the last one ending at the context's end.
            let pos = enc
                .get_offsets()
                .iter()
                .position(|&(s, _)| s == span.context_end)
                .expect("a token starts at the context end")
                - 1;
            let row = logits.get(pos as i64);
            let want = row.index_select(0, &label_ids).log_softmax(-1, Kind::Float);
            let full = row.log_softmax(-1, Kind::Float).index_select(0, &label_ids);
            let got = &pred.logp[r];
            let lse = got.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
            let lse = lse + got.iter().map(|&g| (g - lse).exp()).sum::<f64>().ln();
            for (label, &g_raw) in got.iter().enumerate() {
                let (g, w, f) = (
                    g_raw - lse,
                    want.double_value(&[label as i64]),
                    full.double_value(&[label as i64]),
                );
                assert!((g - w).abs() < 1e-4, "record {r} label {label}: {g} vs {w}");
                assert!((g_raw - f).abs() < 1e-4, "unnormalized {g_raw} vs {f}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 3 * 2 * k);
}
