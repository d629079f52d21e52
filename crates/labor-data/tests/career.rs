//! The CAREER parallel-file format: byte-exact round trip of CAREER's own sample data through a
//! Parquet panel, and structural problems reported with file and line.

use std::path::PathBuf;

use labor_data::formats::career::{CareerFiles, is_career_file, read_career, write_career};
use labor_data::formats::parquet::{read_panel_parquet, write_panel_parquet};
use labor_data::{BuildOptions, Split, SplitSpec, Taxonomy};

fn shared_sample() -> Option<PathBuf> {
    let dir = std::env::var_os("LABOR_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
        .join("career-sample-data");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: {} is absent (set LABOR_SHARED_DATA to the shared data folder)",
            dir.display()
        );
        None
    }
}

fn load(dir: &PathBuf) -> CareerFiles {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| is_career_file(n))
        .map(|n| (n.clone(), std::fs::read_to_string(dir.join(&n)).unwrap()))
        .collect()
}

#[test]
fn sample_round_trips_byte_for_byte_through_parquet() {
    let Some(dir) = shared_sample() else { return };
    let files = load(&dir);
    assert_eq!(files.len(), 18, "the sample has 18 data files");
    let unknown = BuildOptions {
        add_unknown_labels: true,
    };
    // Sample jobs are O*NET-SOC codes: unknown to the default taxonomy without the option.
    let err = read_career(
        &files,
        "career",
        Taxonomy::embedded_default(),
        BuildOptions::default(),
    )
    .unwrap_err();
    assert!(err.0.iter().all(|p| p.field == "label"), "{err}");
    for p in &err.0 {
        assert!(
            p.location
                .as_ref()
                .unwrap()
                .file
                .as_deref()
                .unwrap()
                .ends_with(".job"),
            "{p}"
        );
    }

    let (panel, report) = read_career(
        &files,
        "career",
        Taxonomy::embedded_default(),
        unknown.clone(),
    )
    .unwrap();
    assert_eq!(panel.persons.len(), 5);
    assert_eq!(panel.n_records(), 8 + 5 + 14 + 9 + 7);
    assert_eq!(panel.persons[3].person_id, "valid-1");
    assert_eq!(panel.persons[3].split, Some(Split::Valid));
    assert!(report.added_labels.contains(&"31-2021".to_string()));

    let mut pq = Vec::new();
    write_panel_parquet(&panel, &mut pq).unwrap();
    let (back, _) = read_panel_parquet(
        bytes::Bytes::from(pq),
        Taxonomy::embedded_default(),
        unknown,
    )
    .unwrap();
    assert_eq!(back, panel);
    let written = write_career(&back, &SplitSpec::default());
    assert_eq!(written.len(), 18);
    for (name, content) in &files {
        assert_eq!(written.get(name), Some(content), "{name} differs");
    }
}

fn tiny() -> CareerFiles {
    [
        ("train.job", "41-003 41-003\n29-017\n"),
        ("train.year", "2001 2002\n2005\n"),
        ("train.education", "bachelors bachelors\nmasters\n"),
        ("train.ethnicity", "white\nasian\n"),
        ("train.gender", "female\nmale\n"),
        ("train.location", "CA\nPA\n"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[test]
fn structural_problems_name_file_and_line() {
    let mut f = tiny();
    f.insert("train.year".into(), "2001\n2005\n".into());
    f.insert("train.gender".into(), "female\n".into());
    let err = read_career(
        &f,
        "d",
        Taxonomy::embedded_default(),
        BuildOptions::default(),
    )
    .unwrap_err()
    .0;
    let msgs: Vec<String> = err.iter().map(|p| p.to_string()).collect();
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("train.gender: line 1: field `lines`")),
        "{msgs:#?}"
    );

    let mut f = tiny();
    f.insert("train.year".into(), "2001\n2005\n".into());
    let err = read_career(
        &f,
        "d",
        Taxonomy::embedded_default(),
        BuildOptions::default(),
    )
    .unwrap_err()
    .0;
    assert_eq!(err.len(), 1, "{err:#?}");
    assert_eq!(
        err[0].to_string(),
        "train.year: line 1: field `year`: found \"1 tokens\"; expected 2 tokens, as on line 1 of train.job"
    );

    let mut f = tiny();
    f.insert("train.education".into(), "bachelors phd\nmasters\n".into());
    let err = read_career(
        &f,
        "d",
        Taxonomy::embedded_default(),
        BuildOptions::default(),
    )
    .unwrap_err()
    .0;
    assert_eq!(
        err[0].location.as_ref().unwrap().file.as_deref(),
        Some("train.education")
    );
    assert_eq!(err[0].found, "phd");
}

#[test]
fn panel_without_explicit_split_is_written_by_hashed_split() {
    let (mut panel, _) = read_career(
        &tiny(),
        "d",
        Taxonomy::embedded_default(),
        BuildOptions::default(),
    )
    .unwrap();
    for p in &mut panel.persons {
        p.split = None;
    }
    let spec = SplitSpec {
        seed: 7,
        train: 0.0,
        valid: 0.0,
    };
    let out = write_career(&panel, &spec);
    assert_eq!(out["train.job"], "");
    assert_eq!(out["test.job"], "41-003 41-003\n29-017\n");
    assert_eq!(out["test.location"], "CA\nPA\n");
    assert!(!out.contains_key("test.year_of_birth"));
}
