//! Tokenizers: a BPE trained here round-trips through tokenizer.json, and the default taxonomy
//! aligns with it; a tokenizer that breaks alignment is reported.

use labor_data::Taxonomy;
use labor_text::tokenize::{PreTokenize, check_alignment, from_json, to_json, train_bpe};
use labor_text::{Renderer, Switches, Template};

fn texts_and_contexts(switches: Switches) -> (Vec<String>, Vec<String>, Vec<String>) {
    let g = labor_synth::Generator::new(
        labor_synth::World::preset("nlsy79").unwrap(),
        Taxonomy::embedded_default(),
        1,
    )
    .unwrap();
    let workers = g.generate(400, 2, 0, &|_| {});
    let template = Template::labor_v1();
    let r = Renderer::new(&template, switches, &g.taxonomy).unwrap();
    let rendered: Vec<_> = workers
        .iter()
        .map(|w| r.render(&w.person, &g.taxonomy))
        .collect();
    let contexts = rendered
        .iter()
        .take(3)
        .map(|x| x.text[..x.records[1].context_end].to_string())
        .collect();
    (
        rendered.into_iter().map(|x| x.text).collect(),
        contexts,
        r.continuations(),
    )
}

#[test]
fn trained_bpe_round_trips_and_aligns_with_every_label() {
    let numeric = Switches {
        numeric_codes: true,
        education: false,
        ..Default::default()
    };
    for (switches, pre) in [
        (Switches::default(), PreTokenize::ByteLevel),
        (numeric, PreTokenize::ByteLevel),
        (Switches::default(), PreTokenize::Segments),
        (numeric, PreTokenize::Segments),
    ] {
        let (texts, contexts, conts) = texts_and_contexts(switches);
        let tok = train_bpe(texts.iter().map(String::as_str), 2000, "<END OF DATA>", pre).unwrap();
        assert!(tok.get_vocab_size(true) > 500);
        let json = to_json(&tok).unwrap();
        let back = from_json(json.as_bytes()).unwrap();
        for t in texts.iter().take(50) {
            assert_eq!(
                tok.encode(t.as_str(), false).unwrap().get_ids(),
                back.encode(t.as_str(), false).unwrap().get_ids()
            );
        }
        let end = tok.token_to_id("<END OF DATA>").unwrap();
        assert_eq!(
            tok.encode(texts[0].as_str(), false)
                .unwrap()
                .get_ids()
                .last(),
            Some(&end)
        );
        assert!(tok.token_to_id("<|endoftext|>").is_some());
        let bad = check_alignment(&tok, &contexts, &conts).unwrap();
        assert!(
            bad.is_empty(),
            "{} misaligned, first: {}",
            bad.len(),
            bad[0]
        );
    }
}

/// `segments` keeps a record's continuation in one piece, so with a vocabulary large enough most
/// titles become one token and a text costs far fewer tokens than with GPT-2 style pieces.
#[test]
fn segments_make_titles_single_tokens() {
    let (texts, contexts, conts) = texts_and_contexts(Switches::default());
    let count = |pre| {
        let tok = train_bpe(texts.iter().map(String::as_str), 8000, "<END OF DATA>", pre).unwrap();
        assert!(check_alignment(&tok, &contexts, &conts).unwrap().is_empty());
        let single = conts
            .iter()
            .filter(|c| tok.encode(c.as_str(), false).unwrap().len() == 1)
            .count();
        let tokens: usize = texts
            .iter()
            .map(|t| tok.encode(t.as_str(), false).unwrap().len())
            .sum();
        (single, tokens)
    };
    let (single_bl, tokens_bl) = count(PreTokenize::ByteLevel);
    let (single_seg, tokens_seg) = count(PreTokenize::Segments);
    // Byte-level pieces never cross a space: only one-word titles can be single tokens.
    assert!(
        single_bl < conts.len() / 4,
        "{single_bl} of {}",
        conts.len()
    );
    assert!(
        single_seg > conts.len() / 2,
        "{single_seg} of {}",
        conts.len()
    );
    assert!(
        2 * tokens_seg < tokens_bl,
        "segments {tokens_seg} vs byte-level {tokens_bl} tokens"
    );
    assert_eq!(
        "segments".parse::<PreTokenize>().unwrap(),
        PreTokenize::Segments
    );
    assert!(
        "words"
            .parse::<PreTokenize>()
            .unwrap_err()
            .contains("segments")
    );
}

#[test]
fn misalignment_is_reported_with_label_and_tokens() {
    let (texts, _, _) = texts_and_contexts(Switches::default());
    let tok = train_bpe(
        texts.iter().map(String::as_str),
        1000,
        "<END OF DATA>",
        PreTokenize::ByteLevel,
    )
    .unwrap();
    // A context ending inside a word: the continuation "s\n" glues onto "Cashier".
    let contexts = vec!["1990 (high school diploma): Cashier".to_string()];
    let conts = vec!["s\n".to_string(), " Cooks\n".to_string()];
    let bad = check_alignment(&tok, &contexts, &conts).unwrap();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0].label, 0);
    assert!(bad[0].to_string().contains("label 0"), "{}", bad[0]);
}
