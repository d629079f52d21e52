//! Tokenizers: a BPE trained here round-trips through tokenizer.json, and the default taxonomy
//! aligns with it; a tokenizer that breaks alignment is reported.

use labor_data::Taxonomy;
use labor_text::tokenize::{
    PreTokenize, add_label_tokens, check_alignment, continuation_lengths, from_json, to_json,
    train_bpe,
};
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

fn all_switches() -> Vec<Switches> {
    (0..32u32)
        .map(|b| Switches {
            dataset_line: b & 1 != 0,
            birth_year: b & 2 != 0,
            education: b & 4 != 0,
            demographics: b & 8 != 0,
            numeric_codes: b & 16 != 0,
            label_tokens: false,
        })
        .collect()
}

/// A label-complete tokenizer for `persons` under `taxonomy`: a BPE on the texts without their
/// continuations, plus one token per label continuation (titles and numeric codes).
fn label_complete(
    persons: &[labor_data::Person],
    taxonomy: &Taxonomy,
    pre: PreTokenize,
) -> tokenizers::Tokenizer {
    let template = Template::labor_v1();
    let r = Renderer::new(&template, Switches::default(), taxonomy).unwrap();
    let corpus: Vec<String> = persons
        .iter()
        .map(|p| r.render(p, taxonomy).without_continuations())
        .collect();
    for t in &corpus {
        assert!(!t.contains(": Unemployed\n"), "continuations are cut out");
    }
    let mut tok = train_bpe(corpus.iter().map(String::as_str), 600, "<END OF DATA>", pre).unwrap();
    let mut conts = r.continuations();
    let codes = Switches {
        numeric_codes: true,
        ..Default::default()
    };
    conts.extend(
        Renderer::new(&template, codes, taxonomy)
            .unwrap()
            .continuations(),
    );
    let added = add_label_tokens(&mut tok, &conts).unwrap();
    assert!(added > 0);
    tok
}

/// Every label continuation is exactly one token and aligns after every record context, for
/// every one of the 32 template switch combinations, whatever the corpus held (the embedded
/// taxonomy's 451 labels are far more than a 300-person corpus shows).
fn assert_one_token_per_label(
    tok: &tokenizers::Tokenizer,
    persons: &[labor_data::Person],
    taxonomy: &Taxonomy,
) {
    let template = Template::labor_v1();
    for sw in all_switches() {
        let r = Renderer::new(&template, sw, taxonomy).unwrap();
        let conts = r.continuations();
        let (max, mean) = continuation_lengths(tok, &conts).unwrap();
        assert_eq!((max, mean), (1, 1.0), "{sw:?}");
        let contexts: Vec<String> = persons
            .iter()
            .take(2)
            .flat_map(|p| {
                let out = r.render(p, taxonomy);
                out.records
                    .iter()
                    .take(3)
                    .map(|s| out.text[..s.context_end].to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        let bad = check_alignment(tok, &contexts, &conts).unwrap();
        assert!(bad.is_empty(), "{sw:?}: {}", bad[0]);
        // The whole text: each record's continuation is one token at its span.
        let p = &persons[0];
        let out = r.render(p, taxonomy);
        let enc = tok.encode(out.text.as_str(), false).unwrap();
        for s in &out.records {
            let k = enc
                .get_offsets()
                .iter()
                .position(|o| o.0 == s.continuation[0])
                .unwrap_or_else(|| panic!("{sw:?}: no token starts at {:?}", s.continuation));
            assert_eq!(enc.get_offsets()[k].1, s.continuation[1], "{sw:?}");
        }
    }
}

#[test]
fn label_tokens_make_every_continuation_one_token_for_every_switch() {
    let g = labor_synth::Generator::new(
        labor_synth::World::preset("resumes").unwrap(),
        Taxonomy::embedded_default(),
        3,
    )
    .unwrap();
    // A resume corpus: no non-work states at all, yet they must cost one token too.
    let persons: Vec<_> = g
        .generate(300, 2, 0, &|_| {})
        .into_iter()
        .map(|w| w.person)
        .collect();
    for pre in [PreTokenize::ByteLevel, PreTokenize::Segments] {
        let tok = label_complete(&persons, &g.taxonomy, pre);
        assert_one_token_per_label(&tok, &persons, &g.taxonomy);
    }
}

#[test]
fn label_tokens_on_a_tiny_custom_taxonomy_keep_prefix_titles_apart() {
    use labor_data::{Education, Record};
    // Two occupations, one title a word prefix of the other.
    let t = Taxonomy::from_csv(
        "code,title,group\nA,Managers,Management\nB,\"Managers, all other\",Management\n"
            .as_bytes(),
    )
    .unwrap();
    let id = |c: &str| t.by_code(c).unwrap();
    let person = |pid: &str, labels: &[&str]| labor_data::Person {
        dataset: "X".into(),
        person_id: pid.into(),
        gender: Some("male".into()),
        race: Some("white".into()),
        region: Some("south".into()),
        birth_year: Some(1970),
        split: None,
        records: labels
            .iter()
            .enumerate()
            .map(|(i, l)| Record {
                year: 1990 + i as i32,
                label: id(l),
                education: Some(Education::Bachelors),
                weight: None,
            })
            .collect(),
    };
    let persons: Vec<_> = (0..20)
        .map(|i| {
            person(
                &i.to_string(),
                if i % 2 == 0 {
                    &["A", "B", "UNEMP", "A"]
                } else {
                    &["B", "NILF", "EDUC", "B"]
                },
            )
        })
        .collect();
    for pre in [PreTokenize::ByteLevel, PreTokenize::Segments] {
        let tok = label_complete(&persons, &t, pre);
        assert_one_token_per_label(&tok, &persons, &t);
        let a = tok.encode(" Managers\n", false).unwrap().get_ids().to_vec();
        let b = tok
            .encode(" Managers, all other\n", false)
            .unwrap()
            .get_ids()
            .to_vec();
        assert_eq!((a.len(), b.len()), (1, 1));
        assert_ne!(a, b);
    }
}

/// Inputs on which the `tokenizers` library itself panics (found by fuzzing, kept in
/// fuzz/regressions/tokenizer_json/) are errors naming what is wrong.
#[test]
fn tokenizer_json_that_would_panic_the_library_is_an_error() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/regressions/tokenizer_json"
    );
    let err = |f: &str| {
        from_json(&std::fs::read(format!("{dir}/{f}")).unwrap())
            .err()
            .unwrap_or_else(|| panic!("{f} was accepted"))
            .to_string()
    };
    let e = err("decoder-syntax-error.json");
    assert!(e.contains("control character"), "{e}");
    let e = err("precompiled-bad-charsmap.json");
    assert!(
        e.contains("normalizer.normalizers[0]: a Precompiled normalizer"),
        "{e}"
    );
}
