//! Rendering: the exact text of SPEC §4, a snapshot of every switch combination, spans, and the
//! render → parse round trip on a whole synthetic panel.

use labor_data::{Education, LabelId, Person, Record, Taxonomy};
use labor_text::{Renderer, Switches, Template};

fn spec_person(t: &Taxonomy) -> Person {
    let id = |title: &str| t.by_title(title).unwrap();
    let rec = |year, label, education| Record {
        year,
        label,
        education: Some(education),
        weight: None,
    };
    Person {
        dataset: "NLSY79".into(),
        person_id: "7".into(),
        gender: Some("female".into()),
        race: Some("black_or_african_american".into()),
        region: Some("northcentral".into()),
        birth_year: Some(1962),
        split: None,
        records: vec![
            rec(1982, id("Cashiers"), Education::HighSchoolDiploma),
            rec(1983, id("Unemployed"), Education::HighSchoolDiploma),
            rec(
                1986,
                id("Licensed practical and licensed vocational nurses"),
                Education::Associates,
            ),
        ],
    }
}

const SPEC_TEXT: &str = "<A worker from the NLSY79 dataset>
The following information is available about the work history of a female black or african american US worker residing in the northcentral region.
The worker was born in 1962.
The worker has the following records of work experience, one entry per line, including year, education level, and the job title:
1982 (high school diploma): Cashiers
1983 (high school diploma): Unemployed
1986 (associate degree): Licensed practical and licensed vocational nurses
<END OF DATA>";

#[test]
fn default_rendering_is_the_spec_example_with_spans() {
    let t = Taxonomy::embedded_default();
    let template = Template::labor_v1();
    let r = Renderer::new(&template, Switches::default(), &t).unwrap();
    let out = r.render(&spec_person(&t), &t);
    assert_eq!(out.text, SPEC_TEXT);
    let s = &out.records[1];
    assert_eq!(
        &out.text[..s.context_end],
        &SPEC_TEXT[..SPEC_TEXT.find("1983 (high school diploma):").unwrap() + 27]
    );
    assert_eq!(
        &out.text[s.continuation[0]..s.continuation[1]],
        " Unemployed\n"
    );
    assert_eq!(s.label, "UNEMP");
    assert_eq!(
        out.records[2].continuation[1],
        out.text.len() - "<END OF DATA>".len()
    );
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

#[test]
fn snapshot_of_every_switch_combination() {
    let t = Taxonomy::embedded_default();
    let template = Template::labor_v1();
    let mut snap = String::new();
    for s in all_switches() {
        let r = Renderer::new(&template, s, &t).unwrap();
        snap += &format!("=== {s:?}\n{}\n", r.render(&spec_person(&t), &t).text);
    }
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/snapshots/render-labor-v1.txt"
    );
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, &snap).unwrap();
    }
    let want = std::fs::read_to_string(path).expect("snapshot (UPDATE_SNAPSHOTS=1 writes it)");
    assert_eq!(
        snap, want,
        "rendering changed; review and rerun with UPDATE_SNAPSHOTS=1"
    );
    // Spot checks independent of the snapshot file.
    let codes = Renderer::new(
        &template,
        Switches {
            numeric_codes: true,
            ..Default::default()
        },
        &t,
    )
    .unwrap();
    let text = codes.render(&spec_person(&t), &t).text;
    assert!(
        text.contains("1983 (high school diploma): 1000\n"),
        "{text}"
    );
    let bare = Switches {
        dataset_line: false,
        birth_year: false,
        education: false,
        demographics: false,
        numeric_codes: false,
        label_tokens: false,
    };
    let text = Renderer::new(&template, bare, &t)
        .unwrap()
        .render(&spec_person(&t), &t)
        .text;
    assert!(text.starts_with("The worker has the following records of work experience, one entry per line, including year and the job title:\n1982: Cashiers\n"), "{text}");
}

#[test]
fn render_parse_round_trip_on_a_synthetic_panel() {
    let g = labor_synth::Generator::new(
        labor_synth::World::preset("psid").unwrap(),
        Taxonomy::embedded_default(),
        2,
    )
    .unwrap();
    let workers = g.generate(1500, 2, 0, &|_| {});
    let t = &g.taxonomy;
    let template = Template::labor_v1();
    for s in all_switches() {
        let r = Renderer::new(&template, s, t).unwrap();
        for w in workers
            .iter()
            .take(if s == Switches::default() { 1500 } else { 50 })
        {
            let p = &w.person;
            let out = r.render(p, t);
            let back = r
                .parse(&out.text)
                .unwrap_or_else(|e| panic!("{s:?}: {e}\n{}", out.text));
            let want: Vec<(i32, LabelId, Option<Education>)> = p
                .records
                .iter()
                .map(|x| (x.year, x.label, x.education.filter(|_| s.education)))
                .collect();
            assert_eq!(back.records, want);
            assert_eq!(back.dataset, s.dataset_line.then(|| p.dataset.clone()));
            assert_eq!(
                back.birth_year,
                if s.birth_year { p.birth_year } else { None }
            );
            if s.demographics {
                assert_eq!(
                    (
                        back.gender.as_deref(),
                        back.race.as_deref(),
                        back.region.as_deref()
                    ),
                    (p.gender.as_deref(), p.race.as_deref(), p.region.as_deref())
                );
            }
            for (span, x) in out.records.iter().zip(&p.records) {
                assert_eq!(
                    &out.text[span.continuation[0]..span.continuation[1]],
                    format!(" {}\n", r.title(x.label))
                );
                assert!(out.text[..span.context_end].ends_with(':'));
            }
        }
    }
}

#[test]
fn user_templates_override_parts_and_are_checked() {
    let t = Taxonomy::embedded_default();
    let custom = Template::from_toml(
        "name = \"mine\"\nterminator = \"<END>\"\n[titles]\nUNEMP = \"Out of work\"\n",
    )
    .unwrap();
    assert_eq!(custom.record_prefix, Template::labor_v1().record_prefix);
    let r = Renderer::new(&custom, Switches::default(), &t).unwrap();
    let text = r.render(&spec_person(&t), &t).text;
    assert!(text.ends_with("1983 (high school diploma): Out of work\n1986 (associate degree): Licensed practical and licensed vocational nurses\n<END>"), "{text}");
    assert!(Template::from_toml("record_prefix = \"{education}\"").is_err());
    assert!(Template::from_toml("colour = 1").is_err());
    let clash = Template::from_toml("[titles]\nUNEMP = \"Cashiers\"\n").unwrap();
    assert!(
        Renderer::new(&clash, Switches::default(), &t)
            .unwrap_err()
            .contains("Cashiers")
    );
}

/// The `label_tokens` switch writes each label's token before its title; the scored span is
/// the token alone, the title still follows it, and parsing reads the text back (a token that
/// disagrees with its title is an error naming the line).
#[test]
fn label_tokens_precede_titles_and_parse_back() {
    let t = Taxonomy::embedded_default();
    let template = Template::labor_v1();
    let sw = Switches {
        label_tokens: true,
        ..Default::default()
    };
    let r = Renderer::new(&template, sw, &t).unwrap();
    let person = spec_person(&t);
    let out = r.render(&person, &t);
    let plain = Renderer::new(&template, Switches::default(), &t)
        .unwrap()
        .render(&person, &t);
    for (span, rec) in out.records.iter().zip(&person.records) {
        let token = &out.text[span.continuation[0]..span.continuation[1]];
        assert_eq!(token, r.label_token(rec.label));
        assert_eq!(token, format!("<|label:{}|>", t.label(rec.label).code));
        let after = &out.text[span.continuation[1]..];
        assert!(after.starts_with(&format!(" {}\n", r.title(rec.label))));
    }
    // Removing the tokens gives the plain text.
    let mut stripped = out.text.clone();
    for c in r.continuations() {
        stripped = stripped.replace(&c, "");
    }
    assert_eq!(stripped, plain.text);
    let parsed = r.parse(&out.text).unwrap();
    assert_eq!(parsed.records.len(), person.records.len());
    for ((_, label, _), rec) in parsed.records.iter().zip(&person.records) {
        assert_eq!(*label, rec.label);
    }
    // A token that names another label than the title.
    let first = &out.records[0];
    let wrong = r.label_token(LabelId(if person.records[0].label.0 == 3 { 4 } else { 3 }));
    let bad = format!(
        "{}{}{}",
        &out.text[..first.continuation[0]],
        wrong,
        &out.text[first.continuation[1]..]
    );
    let e = r.parse(&bad).unwrap_err();
    assert!(e.contains("label token"), "{e}");
}

/// Missing covariates are left out of the text, not invented: no region phrase without a
/// region, no education in a year without it (and the education-free introduction when no year
/// has one), no birth-year line; and the text parses back to the same missing values.
#[test]
fn missing_covariates_are_left_out_and_parse_back_missing() {
    let t = Taxonomy::embedded_default();
    let template = Template::labor_v1();
    let r = Renderer::new(&template, Switches::default(), &t).unwrap();
    let mut p = spec_person(&t);
    p.region = None;
    p.birth_year = None;
    for rec in &mut p.records {
        rec.education = None;
    }
    let out = r.render(&p, &t).text;
    assert_eq!(
        out,
        "<A worker from the NLSY79 dataset>
The following information is available about the work history of a female black or african american US worker.
The worker has the following records of work experience, one entry per line, including year and the job title:
1982: Cashiers
1983: Unemployed
1986: Licensed practical and licensed vocational nurses
<END OF DATA>"
    );
    for phrase in ["region", "education", "born", "high school"] {
        assert!(!out.contains(phrase), "{phrase:?} in {out}");
    }
    let back = r.parse(&out).unwrap();
    assert_eq!(
        (back.gender.as_deref(), back.race.as_deref(), back.region),
        (Some("female"), Some("black_or_african_american"), None)
    );
    assert!(back.records.iter().all(|(_, _, e)| e.is_none()));

    // One year without education among years with it: that line alone is written without.
    let mut q = spec_person(&t);
    q.records[1].education = None;
    let out = r.render(&q, &t).text;
    assert!(out.contains("\n1982 (high school diploma): Cashiers\n1983: Unemployed\n"));
    let back = r.parse(&out).unwrap();
    let edu: Vec<Option<Education>> = back.records.iter().map(|x| x.2).collect();
    assert_eq!(
        edu,
        [
            Some(Education::HighSchoolDiploma),
            None,
            Some(Education::Associates)
        ]
    );

    // Gender or race missing: the phrase closes up, and a lone value parses back to its slot.
    for (gender, race, phrase) in [
        (
            None,
            Some("black_or_african_american"),
            "a black or african american US worker residing",
        ),
        (Some("male"), None, "a male US worker residing"),
        (None, Some("white"), "a white US worker residing"),
        (None, None, "a US worker residing"),
    ] {
        let mut q = spec_person(&t);
        q.gender = gender.map(String::from);
        q.race = race.map(String::from);
        let out = r.render(&q, &t).text;
        assert!(out.contains(phrase), "{phrase:?} in {out}");
        let back = r.parse(&out).unwrap();
        assert_eq!(
            (
                back.gender.as_deref(),
                back.race.as_deref(),
                back.region.as_deref()
            ),
            (gender, race, Some("northcentral")),
            "{out}"
        );
    }
}
