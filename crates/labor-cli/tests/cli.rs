//! End-to-end tests of the `labor` binary: exit codes, messages, files written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn labor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_labor"))
        .args(args)
        .output()
        .expect("run labor")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

const CLEAN: &str = "\
dataset,person_id,year,label,education,gender,race,region,birth_year
NLSY79,1,1982,41-003,high_school_diploma,female,black,northcentral,1962
NLSY79,1,1983,UNEMP,high_school_diploma,female,black,northcentral,1962
NLSY79,1,1986,29-033,associates,female,black,northcentral,1962
NLSY79,2,1990,53-008,less_than_high_school,male,white,south,1960
PSID,,2001,EDUC,some_college,male,hispanic,west,1983
";

#[test]
fn validate_reports_each_planted_defect_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean.csv");
    std::fs::write(&clean, CLEAN.replace("PSID,,", "PSID,7,")).unwrap();
    let o = labor(&["data", "validate", p(&clean)]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(
        text(&o)
            .0
            .contains("valid panel: 3 persons, 5 person-years, 2 dataset(s)"),
        "{:?}",
        text(&o)
    );

    // Six planted defects: unknown label (line 2), duplicate person-year (line 3), non-numeric
    // year (line 4), missing static field (line 5), education outside the set (line 6), empty
    // person id (line 7).
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "dataset,person_id,year,label,education,gender,race,region,birth_year\n\
         NLSY79,1,1982,99-999,high_school_diploma,female,black,northcentral,1962\n\
         NLSY79,1,1982,UNEMP,high_school_diploma,female,black,northcentral,1962\n\
         NLSY79,1,19x6,29-033,associates,female,black,northcentral,1962\n\
         NLSY79,2,1990,53-008,less_than_high_school,male,white,,1960\n\
         NLSY79,2,1991,53-008,college,male,white,south,1960\n\
         PSID,,2001,EDUC,some_college,male,hispanic,west,1983\n",
    )
    .unwrap();
    let o = labor(&["data", "validate", p(&bad)]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let f = p(&bad);
    for expected in [
        format!("{f}: line 2: field `label`: found \"99-999\""),
        format!(
            "{f}: line 3: field `year`: found \"1982\"; expected one record per person and year (line 2"
        ),
        format!("{f}: line 4: field `year`: found \"19x6\""),
        format!("{f}: line 5: field `region`: found an empty value"),
        format!("{f}: line 6: field `education`: found \"college\""),
        format!("{f}: line 7: field `person_id`: found an empty value"),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in\n{err}");
    }
    assert!(err.contains("invalid: 6 problem(s)"), "{err}");
}

#[test]
fn bad_invocations_fail_clearly() {
    let o = labor(&["data", "validate", "/nonexistent/panel.csv"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("cannot open /nonexistent/panel.csv"),
        "{:?}",
        text(&o)
    );
    let o = labor(&["data", "validate", "panel.txt"]);
    assert!(
        text(&o).1.contains("cannot tell the format"),
        "{:?}",
        text(&o)
    );
    let o = labor(&["--version"]);
    assert!(text(&o).0.starts_with("labor 0.1.0"));
    assert_eq!(o.status.code(), Some(0));
    // Usage errors exit 64, distinct from invalid input (2); help exits 0.
    for args in [
        vec!["data", "validate"],
        vec!["score", "--no-such-flag"],
        vec!["frobnicate"],
    ] {
        let o = labor(&args);
        assert_eq!(o.status.code(), Some(64), "{args:?}: {:?}", text(&o));
        assert!(!text(&o).1.is_empty(), "{args:?}: usage error printed");
    }
    assert_eq!(labor(&["score", "--help"]).status.code(), Some(0));
    let o = labor(&["data", "--help"]);
    for cmd in ["validate", "stats", "convert", "import", "split"] {
        assert!(text(&o).0.contains(cmd), "{cmd}");
    }
}

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

#[test]
fn career_sample_converts_to_parquet_and_back_byte_for_byte() {
    let Some(sample) = shared_sample() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pq = dir.path().join("career.parquet");
    let o = labor(&["data", "convert", p(&sample), p(&pq)]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "unknown O*NET codes are errors by default: {:?}",
        text(&o)
    );
    assert!(
        text(&o)
            .1
            .contains("train.job: line 1: field `label`: found \"31-2021\""),
        "{}",
        text(&o).1
    );

    let o = labor(&[
        "data",
        "convert",
        p(&sample),
        p(&pq),
        "--add-unknown-labels",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(
        text(&o).1.contains("added"),
        "the added labels are reported"
    );
    let back = dir.path().join("career");
    let o = labor(&[
        "data",
        "convert",
        p(&pq),
        p(&back),
        "--add-unknown-labels",
        "--to",
        "career",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let mut n = 0;
    for e in std::fs::read_dir(&sample).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name.starts_with("LICENSE") || name == "README.md" {
            continue;
        }
        let a = std::fs::read(sample.join(&name)).unwrap();
        let b = std::fs::read(back.join(&name)).unwrap_or_default();
        assert_eq!(a, b, "{name} differs");
        n += 1;
    }
    assert_eq!(n, 18);
}

/// A panel CSV of `n` persons with two records each.
fn panel_csv(ids: impl Iterator<Item = usize>) -> String {
    let mut s = String::from("dataset,person_id,year,label,education,gender,race,region\n");
    for i in ids {
        for y in [2000, 2001] {
            s.push_str(&format!(
                "PSID,{i},{y},41-003,bachelors,female,white,west\n"
            ));
        }
    }
    s
}

fn splits_of(csv: &str) -> std::collections::HashMap<String, String> {
    csv.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].to_string(), f[8].to_string())
        })
        .collect()
}

#[test]
fn split_is_deterministic_and_stable_when_persons_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all.csv");
    std::fs::write(&all, panel_csv(0..2000)).unwrap();
    let some = dir.path().join("some.csv");
    std::fs::write(&some, panel_csv((0..2000).filter(|i| i % 10 != 0))).unwrap();
    let run = |input: &Path, out: &str| {
        let out = dir.path().join(out);
        let o = labor(&["data", "split", p(input), "--out", p(&out)]);
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        splits_of(&std::fs::read_to_string(out).unwrap())
    };
    let a = run(&all, "a.csv");
    let b = run(&all, "b.csv");
    let c = run(&some, "c.csv");
    assert_eq!(a, b);
    assert_eq!(c.len(), 1800);
    for (id, s) in &c {
        assert_eq!(&a[id], s, "person {id} moved");
    }
    let train = a.values().filter(|s| *s == "train").count();
    assert!((1300..1500).contains(&train), "{train}");
    // A panel that already has splits is not silently reassigned.
    let o = labor(&[
        "data",
        "split",
        p(&dir.path().join("a.csv")),
        "--out",
        p(&dir.path().join("d.csv")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("--overwrite"));
}

#[test]
fn worked_import_example_gives_the_documented_stats() {
    let ex = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/import");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nlsy.parquet");
    let o = labor(&[
        "data",
        "import",
        "--mapping",
        p(&ex.join("mapping.toml")),
        p(&ex.join("extract.csv")),
        "--out",
        p(&out),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(
        text(&o)
            .0
            .contains("waves not interviewed (all wave fields missing): 2")
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(ex.join("mapping.toml"))
            .unwrap()
            .replace("layout = \"wide\"", "layout = \"tall\""),
    )
    .unwrap();
    let o = labor(&[
        "data",
        "import",
        "--mapping",
        p(&bad),
        p(&ex.join("extract.csv")),
        "--out",
        p(&out),
    ]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("tall"), "{}", text(&o).1);
    let o = labor(&["data", "stats", p(&out), "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["persons"], 6);
    assert_eq!(s["person_years"], 22);
    assert_eq!(s["annual_occupation_changes"], 2);
    assert_eq!(s["annual_occupation_pairs"], 7);
    assert_eq!(s["persons_with_gap"], 5);
    let o = labor(&["data", "stats", p(&out)]);
    assert!(
        text(&o)
            .0
            .contains("annual occupation-change rate 28.57% (2 of 7"),
        "{}",
        text(&o).0
    );
}

#[test]
fn taxonomy_export_validates_and_bad_taxonomy_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("tax.csv");
    assert_eq!(
        labor(&["taxonomy", "export", "--out", p(&t)]).status.code(),
        Some(0)
    );
    let o = labor(&["taxonomy", "validate", p(&t)]);
    assert!(
        text(&o).0.contains("valid taxonomy: 448 occupations"),
        "{:?}",
        text(&o)
    );
    std::fs::write(&t, "code,title,group\nA,Cooks,Food\nB,COOKS,Food\n").unwrap();
    let o = labor(&["taxonomy", "validate", p(&t)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o)
            .1
            .contains("line 3: field `title`: found \"COOKS\""),
        "{}",
        text(&o).1
    );
}

#[test]
fn env_runs_the_tensor_self_check() {
    let o = labor(&["env", "--device", "cpu"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(
        text(&o).0.contains(
            "self-check on Cpu: softmax·W = [[0.755271, 0.909969], [0.666667, 0.666667]]"
        ),
        "{}",
        text(&o).0
    );
}

#[test]
fn synth_writes_a_world_that_reports_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w");
    let o = labor(&[
        "synth",
        "--world",
        "nlsy97",
        "--seed",
        "4",
        "--workers",
        "300",
        "--full-oracle",
        "2",
        "--out",
        p(&out),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    for f in [
        "panel.parquet",
        "taxonomy.csv",
        "world.toml",
        "oracle.parquet",
        "oracle_full.parquet",
        "report.json",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let printed = text(&o).0;
    assert!(
        printed.contains("persons                        300"),
        "{printed}"
    );
    // --report recomputes the same diagnostics from the files.
    let o = labor(&["synth", "--report", p(&out)]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(
        text(&o).0.lines().skip(1).collect::<Vec<_>>(),
        printed.lines().skip(1).collect::<Vec<_>>()
    );
    // The panel is a valid panel; the resolved world file regenerates the same world.
    let o = labor(&["data", "validate", p(&out.join("panel.parquet"))]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let again = dir.path().join("again");
    let o = labor(&[
        "synth",
        "--world",
        p(&out.join("world.toml")),
        "--seed",
        "4",
        "--out",
        p(&again),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(
        std::fs::read(out.join("panel.parquet")).unwrap(),
        std::fs::read(again.join("panel.parquet")).unwrap()
    );
    let o = labor(&["synth", "--world", "nlsy2000", "--out", p(&again)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o)
            .1
            .contains("expected a preset (nlsy79, nlsy97, psid, resumes)")
    );
}

#[test]
fn text_render_and_tokenizer_train_check() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w");
    let o = labor(&[
        "synth",
        "--world",
        "psid",
        "--workers",
        "400",
        "--out",
        p(&w),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let panel = w.join("panel.parquet");
    let tax = w.join("taxonomy.csv");
    let texts = dir.path().join("texts.jsonl");
    let o = labor(&[
        "text",
        "render",
        "--panel",
        p(&panel),
        "--taxonomy",
        p(&tax),
        "--split",
        "train",
        "--no-birth-year",
        "--out",
        p(&texts),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&texts)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() > 200 && lines.len() < 360, "{}", lines.len());
    for v in &lines {
        assert_eq!(v["split"], "train");
        assert_eq!(v["template"], "labor-v1@1");
        let t = v["text"].as_str().unwrap();
        assert!(!t.contains("was born in"));
        for s in v["spans"].as_array().unwrap() {
            let [a, b] = [
                s["continuation"][0].as_u64().unwrap() as usize,
                s["continuation"][1].as_u64().unwrap() as usize,
            ];
            assert!(t[a..b].starts_with(' ') && t[a..b].ends_with('\n'));
        }
    }
    let train_tok = |pre: &str, out: &Path| {
        labor(&[
            "tokenizer",
            "train",
            "--panel",
            p(&panel),
            "--taxonomy",
            p(&tax),
            "--vocab-size",
            "800",
            "--pre-tokenize",
            pre,
            "--out",
            p(out),
        ])
    };
    let tok = dir.path().join("tokenizer.json");
    let o = train_tok("byte-level", &tok);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(
        text(&o).0.contains("every one of the 451 labels aligns"),
        "{}",
        text(&o).0
    );
    let o = labor(&[
        "tokenizer",
        "check",
        "--tokenizer",
        p(&tok),
        "--panel",
        p(&panel),
        "--taxonomy",
        p(&tax),
        "--numeric-codes",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    // `segments` pre-tokenization: pieces end after ':' and newline, labels still align.
    let seg = dir.path().join("segments.json");
    let o = train_tok("segments", &seg);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).0.contains("every one of the 451 labels aligns"));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&seg).unwrap()).unwrap();
    assert_eq!(
        json["pre_tokenizer"]["type"], "Sequence",
        "{}",
        json["pre_tokenizer"]
    );
    assert_eq!(json["pre_tokenizer"]["pretokenizers"][0]["type"], "Split");
    // A bad flag value is a usage error (64), with clap's message naming the choices.
    let o = train_tok("words", &seg);
    assert_eq!(o.status.code(), Some(64), "{:?}", text(&o));
    assert!(text(&o).1.contains("\"segments\""), "{:?}", text(&o));
    let with_ids = dir.path().join("ids.jsonl");
    let o = labor(&[
        "text",
        "render",
        "--panel",
        p(&panel),
        "--taxonomy",
        p(&tax),
        "--tokenizer",
        p(&tok),
        "--out",
        p(&with_ids),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&with_ids)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert!(first["ids"].as_array().unwrap().len() > 20);
}

/// A 60-worker nlsy79 world (`d/syn`, seed `seed`) and a label-complete BPE tokenizer of
/// `vocab` tokens trained on it (`d/tok.json`): the panel and tokenizer paths.
fn world_and_tokenizer(d: &Path, seed: &str, vocab: &str) -> (PathBuf, PathBuf) {
    world_and_tokenizer_with(d, seed, vocab, &[])
}

/// [`world_and_tokenizer`] with more `labor tokenizer train` flags.
fn world_and_tokenizer_with(
    d: &Path,
    seed: &str,
    vocab: &str,
    flags: &[&str],
) -> (PathBuf, PathBuf) {
    let syn = d.join("syn");
    let o = labor(&[
        "synth",
        "--world",
        "nlsy79",
        "--workers",
        "60",
        "--seed",
        seed,
        "--out",
        p(&syn),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let panel = syn.join("panel.parquet");
    let tok = d.join("tok.json");
    let mut args = vec![
        "tokenizer",
        "train",
        "--panel",
        p(&panel),
        "--vocab-size",
        vocab,
    ];
    args.extend_from_slice(flags);
    args.extend(["--out", p(&tok)]);
    let o = labor(&args);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    (panel, tok)
}

#[test]
fn lm_init_then_score_writes_valid_predictions_and_distributions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (panel, tok) = world_and_tokenizer(d, "4", "1500");
    let shape = d.join("tiny.toml");
    std::fs::write(
        &shape,
        "hidden_size = 32\nintermediate_size = 64\nnum_hidden_layers = 1\n\
         num_attention_heads = 4\nnum_key_value_heads = 2\nmax_position_embeddings = 2048\n",
    )
    .unwrap();
    let model = d.join("model");
    let o = labor(&[
        "lm",
        "init",
        "--config",
        p(&shape),
        "--tokenizer",
        p(&tok),
        "--out",
        p(&model),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(model.join(f).exists(), "{f}");
    }
    let o = labor(&["lm", "info", p(&model)]);
    assert!(text(&o).0.contains("layers 1, width 32"), "{:?}", text(&o));
    // A config key that would change the numbers and is not understood: invalid input, named.
    let odd = d.join("odd-model");
    std::fs::create_dir(&odd).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(model.join(f), odd.join(f)).unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.join("config.json")).unwrap()).unwrap();
    cfg["attn_logit_softcapping"] = 50.0.into();
    std::fs::write(odd.join("config.json"), cfg.to_string()).unwrap();
    // A directory without weights, and one whose weights miss a tensor: invalid input too.
    let empty = d.join("no-weights");
    std::fs::create_dir(&empty).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(model.join(f), empty.join(f)).unwrap();
    }
    let o = labor(&["lm", "info", p(&empty)]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(
        text(&o).1.contains("no model.safetensors"),
        "{:?}",
        text(&o)
    );
    let mut bigger = cfg.clone();
    bigger
        .as_object_mut()
        .unwrap()
        .remove("attn_logit_softcapping");
    bigger["num_hidden_layers"] = 2.into();
    std::fs::write(empty.join("config.json"), bigger.to_string()).unwrap();
    std::fs::copy(
        model.join("model.safetensors"),
        empty.join("model.safetensors"),
    )
    .unwrap();
    let o = labor(&["lm", "info", p(&empty)]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("model.layers.1."), "{:?}", text(&o));
    for args in [
        vec!["lm", "info", p(&odd)],
        vec![
            "score",
            "--model",
            p(&odd),
            "--panel",
            p(&panel),
            "--out",
            "/dev/null",
        ],
    ] {
        let o = labor(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {:?}", text(&o));
        assert!(
            text(&o).1.contains("attn_logit_softcapping") && text(&o).1.contains("config.json"),
            "{:?}",
            text(&o)
        );
    }

    let preds = d.join("preds.parquet");
    let full = d.join("full.parquet");
    let o = labor(&[
        "score",
        "--model",
        p(&model),
        "--panel",
        p(&panel),
        "--split",
        "test",
        "--limit",
        "2",
        "--out",
        p(&preds),
        "--full-dist",
        p(&full),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).0.contains("records/s"), "{:?}", text(&o));
    let rows = labor_data::predictions::read_logp(std::fs::File::open(&preds).unwrap()).unwrap();
    // Every record of the first two test persons, t = 1.. in order.
    let persons: std::collections::BTreeSet<_> = rows.iter().map(|r| r.1.clone()).collect();
    assert_eq!(persons.len(), 2);
    assert!(rows.iter().all(|r| r.3 < 0.0 && r.3.is_finite()));
    let first: Vec<i32> = rows
        .iter()
        .take_while(|r| r.1 == rows[0].1)
        .map(|r| r.2)
        .collect();
    assert_eq!(first, (1..=first.len() as i32).collect::<Vec<_>>());
    // The full distributions: one row per record, 4 key columns + one column per label.
    let reader =
        parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&full).unwrap())
            .unwrap();
    use parquet::file::reader::FileReader;
    let meta = reader.metadata();
    assert_eq!(meta.file_metadata().num_rows() as usize, rows.len());
    assert_eq!(meta.file_metadata().schema_descr().num_columns(), 4 + 451);

    // bf16 on CPU (the precision the GPU path uses) scores the same records within a small
    // tolerance of f32: 0.01 nats per record for this tiny random model (measured: 0.0008).
    let bf16 = d.join("bf16.parquet");
    let o = labor(&[
        "score",
        "--model",
        p(&model),
        "--panel",
        p(&panel),
        "--split",
        "test",
        "--limit",
        "2",
        "--device",
        "cpu",
        "--dtype",
        "bf16",
        "--out",
        p(&bf16),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let rows16 = labor_data::predictions::read_logp(std::fs::File::open(&bf16).unwrap()).unwrap();
    assert_eq!(rows16.len(), rows.len());
    for (a, b) in rows.iter().zip(&rows16) {
        assert_eq!((&a.1, a.2), (&b.1, b.2));
        assert!((a.3 - b.3).abs() < 0.01, "bf16 {} vs f32 {}", b.3, a.3);
    }

    // In-context learning: the number of prepended training texts is recorded on every row.
    let icl = d.join("icl.parquet");
    let o = labor(&[
        "score",
        "--model",
        p(&model),
        "--panel",
        p(&panel),
        "--limit",
        "1",
        "--icl",
        "2",
        "--icl-seed",
        "5",
        "--out",
        p(&icl),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let batches = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&icl).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    for b in batches {
        let b = b.unwrap();
        let k = b.column_by_name("icl_k").unwrap();
        let k = k
            .as_any()
            .downcast_ref::<arrow_array::Int32Array>()
            .unwrap();
        assert!(k.iter().all(|x| x == Some(2)), "{k:?}");
        let m = b.column_by_name("model").unwrap();
        let m = m
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .unwrap();
        assert!(m.iter().all(|x| x == Some("lm-icl2")));
    }

    // Clear errors: a bad split, a missing model, an unknown key in the shape file.
    let o = labor(&[
        "score",
        "--model",
        p(&model),
        "--panel",
        p(&panel),
        "--split",
        "tset",
        "--out",
        p(&preds),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("expected train, valid or test"),
        "{:?}",
        text(&o)
    );
    let o = labor(&[
        "score",
        "--model",
        p(&d.join("nope")),
        "--panel",
        p(&panel),
        "--out",
        p(&preds),
    ]);
    assert!(
        text(&o).1.contains("not a model directory"),
        "{:?}",
        text(&o)
    );
    std::fs::write(&shape, "hidden_size = 32\nhiden_layers = 2\n").unwrap();
    let o = labor(&[
        "lm",
        "init",
        "--config",
        p(&shape),
        "--tokenizer",
        p(&tok),
        "--out",
        p(&model),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("unknown field"), "{:?}", text(&o));
}

/// A tiny synthetic panel and a from-scratch run description for training tests.
fn tiny_run(d: &Path, workers: &str) -> PathBuf {
    let syn = d.join("syn");
    let o = labor(&[
        "synth",
        "--world",
        "nlsy79",
        "--workers",
        workers,
        "--seed",
        "8",
        "--out",
        p(&syn),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let cfg = d.join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\nvocab_size = 800\n[model.scratch]\nhidden_size = 32\nintermediate_size = 64\n\
             num_hidden_layers = 1\nnum_attention_heads = 2\nmax_position_embeddings = 1024\n\
             [data]\npanels = [{:?}]\n[optim]\nlr = 3e-3\nwarmup_steps = 2\nweight_decay = 0.1\n\
             [train]\ntotal_steps = 12\nbatch_size = 4\ngrad_accum = 2\neval_every = 4\n\
             checkpoint_every = 3\neval_texts = 8\n",
            p(&syn.join("panel.parquet"))
        ),
    )
    .unwrap();
    cfg
}

fn same_weights(a: &Path, b: &Path) {
    let x = std::fs::read(a.join("model.safetensors")).unwrap();
    let y = std::fs::read(b.join("model.safetensors")).unwrap();
    assert!(x == y, "{} and {} differ", a.display(), b.display());
}

#[test]
fn train_resumes_exactly_after_a_stop_and_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = tiny_run(d, "80");
    // Straight through.
    let a = d.join("a");
    let o = labor(&["train", "--config", p(&cfg), "--out", p(&a)]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).0.contains("12 steps done"), "{:?}", text(&o));
    let lines = std::fs::read_to_string(a.join("metrics.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 12);
    assert!(rows.iter().filter(|r| r.get("val_loss").is_some()).count() == 3);
    let first = rows[0]["loss"].as_f64().unwrap();
    let last = rows[11]["loss"].as_f64().unwrap();
    assert!(last < first, "training loss {first} -> {last}");

    // Stopped after 5 steps (checkpoint written at the stop), then resumed: bitwise the same.
    let b = d.join("b");
    let o = labor(&[
        "train",
        "--config",
        p(&cfg),
        "--out",
        p(&b),
        "--stop-after",
        "5",
    ]);
    assert!(
        text(&o).0.contains("stopped at step 5 of 12"),
        "{:?}",
        text(&o)
    );
    let o = labor(&["train", "--resume", p(&b)]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    same_weights(&a.join("final"), &b.join("final"));
    same_weights(&a.join("best"), &b.join("best"));

    // Killed with SIGKILL after its first checkpoint, then resumed: nothing lost, same result.
    let c = d.join("c");
    let mut child = Command::new(env!("CARGO_BIN_EXE_labor"))
        .args(["train", "--config", p(&cfg), "--out", p(&c)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ck = c.join("checkpoints");
    let t0 = std::time::Instant::now();
    while !std::fs::read_dir(&ck).is_ok_and(|mut r| {
        r.any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("step-")
        })
    }) {
        assert!(t0.elapsed().as_secs() < 120, "no checkpoint appeared");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run finished before it was killed");
    let o = labor(&["train", "--resume", p(&c)]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let err = text(&o).1;
    let from: usize = err
        .split("(step ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no resume step in {err:?}"));
    assert!((3..12).contains(&from), "resumed from step {from}");
    same_weights(&a.join("final"), &c.join("final"));

    // The best checkpoint is a model directory `labor score` reads directly.
    let preds = d.join("preds.parquet");
    let o = labor(&[
        "score",
        "--model",
        p(&a.join("best")),
        "--panel",
        p(&d.join("syn/panel.parquet")),
        "--limit",
        "1",
        "--out",
        p(&preds),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));

    // Clear errors: an existing run directory, an unknown key, a bad override.
    let o = labor(&["train", "--config", p(&cfg), "--out", p(&a)]);
    assert!(text(&o).1.contains("already holds a run"), "{:?}", text(&o));
    // `--restart` starts over in the same directory: nothing of the earlier run is left.
    let before = std::fs::read_to_string(a.join("metrics.jsonl")).unwrap();
    assert!(before.lines().count() > 1);
    let o = labor(&[
        "train",
        "--config",
        p(&cfg),
        "--out",
        p(&a),
        "--restart",
        "--stop-after",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let after = std::fs::read_to_string(a.join("metrics.jsonl")).unwrap();
    assert_eq!(after.lines().count(), 1, "{after}");
    assert!(!a.join("final").exists() && !a.join("best").exists());
    let cks: Vec<_> = std::fs::read_dir(a.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(cks, ["step-0000001"]);
    let o = labor(&[
        "train",
        "--config",
        p(&cfg),
        "--out",
        p(&d.join("e")),
        "train.batchsize=2",
    ]);
    assert!(text(&o).1.contains("unknown field"), "{:?}", text(&o));
    let o = labor(&[
        "train",
        "--config",
        p(&cfg),
        "--out",
        p(&d.join("e")),
        "optim.lr",
    ]);
    assert!(text(&o).1.contains("expected KEY=VALUE"), "{:?}", text(&o));
}

#[test]
fn lora_trains_only_adapters_and_merges_to_the_same_scores() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (panel, tok) = world_and_tokenizer(d, "9", "900");
    let shape = d.join("shape.toml");
    std::fs::write(
        &shape,
        "hidden_size = 32\nintermediate_size = 48\nnum_hidden_layers = 2\nnum_attention_heads = 4\n\
         num_key_value_heads = 2\nmax_position_embeddings = 1024\n",
    )
    .unwrap();
    let base = d.join("base");
    let o = labor(&[
        "lm",
        "init",
        "--config",
        p(&shape),
        "--tokenizer",
        p(&tok),
        "--out",
        p(&base),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let base_bytes = std::fs::read(base.join("model.safetensors")).unwrap();
    let cfg = d.join("lora.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\nbase = {:?}\n[data]\npanels = [{:?}]\n\
             [method]\nkind = \"lora\"\nrank = 4\nalpha = 8.0\ndropout = 0.1\ntargets = [\"q_proj\", \"v_proj\", \"down_proj\"]\n\
             [optim]\nlr = 1e-2\n[train]\ntotal_steps = 6\nbatch_size = 4\neval_every = 3\ncheckpoint_every = 3\neval_texts = 4\n",
            p(&base),
            p(&panel)
        ),
    )
    .unwrap();
    let run = d.join("run");
    let o = labor(&["train", "--config", p(&cfg), "--out", p(&run)]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    // Trainable parameters = the adapters: per layer, q (32→32), v (32→16), down (48→32), each
    // r·(in + out) with r = 4.
    let adapters = 2 * 4 * ((32 + 32) + (32 + 16) + (48 + 32));
    assert!(
        text(&o).1.contains(&format!("({adapters} trainable)")),
        "{:?}",
        text(&o)
    );
    assert_eq!(
        std::fs::read(base.join("model.safetensors")).unwrap(),
        base_bytes,
        "base untouched"
    );
    let best = run.join("best");
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
    ] {
        assert!(best.join(f).exists(), "{f}");
    }
    let o = labor(&["lm", "info", p(&best)]);
    assert!(
        text(&o)
            .0
            .contains(&format!("{adapters} adapter parameters")),
        "{:?}",
        text(&o)
    );

    // Merged model and base + adapter give the same scores.
    let merged = d.join("merged");
    let o = labor(&["lm", "merge-lora", p(&base), p(&best), p(&merged)]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_ne!(
        std::fs::read(merged.join("model.safetensors")).unwrap(),
        base_bytes
    );
    let score = |model: &Path, out: &Path| {
        let o = labor(&[
            "score",
            "--model",
            p(model),
            "--panel",
            p(&panel),
            "--limit",
            "2",
            "--out",
            p(out),
        ]);
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        labor_data::predictions::read_logp(std::fs::File::open(out).unwrap()).unwrap()
    };
    let with_adapter = score(&best, &d.join("a.parquet"));
    let with_merged = score(&merged, &d.join("m.parquet"));
    let with_base = score(&base, &d.join("b.parquet"));
    assert_eq!(with_adapter.len(), with_merged.len());
    let mut moved = 0f64;
    for ((x, y), z) in with_adapter.iter().zip(&with_merged).zip(&with_base) {
        assert!(
            (x.3 - y.3).abs() < 1e-5,
            "adapter {} vs merged {}",
            x.3,
            y.3
        );
        moved = moved.max((x.3 - z.3).abs());
    }
    assert!(moved > 1e-3, "the adapter changed nothing");
}

/// `model.label_tokens = true` on a pre-trained base: the base tokenizer gets one token per
/// label (written before each title), the model new trainable rows beside its LoRA adapters;
/// the run stops and resumes; the adapter directory carries the rows and scores with one step
/// per record (no trie); merging gives the same scores; full fine-tuning saves a folded model.
#[test]
fn label_tokens_on_a_pretrained_base_train_resume_score_and_merge() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (panel, tok) = world_and_tokenizer_with(d, "9", "900", &["--no-label-tokens"]);
    let shape = d.join("shape.toml");
    std::fs::write(
        &shape,
        "hidden_size = 32\nintermediate_size = 48\nnum_hidden_layers = 2\nnum_attention_heads = 4\n\
         num_key_value_heads = 2\nmax_position_embeddings = 1024\ntie_word_embeddings = true\n",
    )
    .unwrap();
    let base = d.join("base");
    let o = labor(&[
        "lm",
        "init",
        "--config",
        p(&shape),
        "--tokenizer",
        p(&tok),
        "--out",
        p(&base),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let base_vocab = labor_text::tokenize::from_json(&std::fs::read(&tok).unwrap())
        .unwrap()
        .get_vocab_size(true);
    let k = labor_data::Taxonomy::embedded_default().len();
    let cfg = d.join("lt.toml");
    let run_toml = |method: &str| {
        format!(
            "[model]\nbase = {:?}\nlabel_tokens = true\n[data]\npanels = [{:?}]\n\
             [method]\n{method}\n\
             [optim]\nlr = 1e-2\n[train]\ntotal_steps = 6\nbatch_size = 4\neval_every = 3\ncheckpoint_every = 3\neval_texts = 4\n",
            p(&base),
            p(&panel)
        )
    };
    std::fs::write(
        &cfg,
        run_toml("kind = \"lora\"\nrank = 4\nalpha = 8.0\ntargets = [\"q_proj\", \"v_proj\"]"),
    )
    .unwrap();
    let run = d.join("run");
    let o = labor(&[
        "train",
        "--config",
        p(&cfg),
        "--out",
        p(&run),
        "--stop-after",
        "3",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(
        text(&o).1.contains(&format!(
            "label tokens: {k} added tokens (ids {base_vocab}.."
        )),
        "{:?}",
        text(&o)
    );
    // Trainable: the adapters (q 32→32, v 32→16, r = 4, two layers) and two rows per label.
    let trainable = 2 * 4 * ((32 + 32) + (32 + 16)) + 2 * k * 32;
    assert!(
        text(&o).1.contains(&format!("({trainable} trainable)")),
        "{:?}",
        text(&o)
    );
    let o = labor(&["train", "--resume", p(&run)]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).1.contains("(step 3)"), "{:?}", text(&o));
    let best = run.join("best");
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "label_tokens.safetensors",
    ] {
        assert!(best.join(f).exists(), "{f}");
    }
    let t = labor_text::tokenize::from_json(&std::fs::read(best.join("tokenizer.json")).unwrap())
        .unwrap();
    assert_eq!(t.get_vocab_size(true), base_vocab + k);
    for (i, l) in labor_data::Taxonomy::embedded_default()
        .labels()
        .iter()
        .enumerate()
    {
        let id = t.token_to_id(&format!("<|label:{}|>", l.code));
        assert_eq!(id, Some((base_vocab + i) as u32), "{}", l.code);
    }

    let score = |model: &Path, out: &Path| {
        let o = labor(&[
            "score",
            "--model",
            p(model),
            "--panel",
            p(&panel),
            "--limit",
            "3",
            "--out",
            p(out),
        ]);
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        assert!(
            text(&o).1.contains("scoring with label tokens"),
            "{:?}",
            text(&o)
        );
        assert!(
            text(&o).1.contains("label trie: 0 nodes per record"),
            "{:?}",
            text(&o)
        );
        labor_data::predictions::read_logp(std::fs::File::open(out).unwrap()).unwrap()
    };
    let with_adapter = score(&best, &d.join("a.parquet"));
    assert!(!with_adapter.is_empty());
    let merged = d.join("merged");
    let o = labor(&["lm", "merge-lora", p(&base), p(&best), p(&merged)]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(merged.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(c["vocab_size"], (base_vocab + k) as u64);
    assert_eq!(c["tie_word_embeddings"], false);
    let with_merged = score(&merged, &d.join("m.parquet"));
    assert_eq!(with_adapter.len(), with_merged.len());
    for (x, y) in with_adapter.iter().zip(&with_merged) {
        assert!(
            (x.3 - y.3).abs() < 1e-5,
            "adapter {} vs merged {}",
            x.3,
            y.3
        );
    }
    // LoRA on the top layer only, in bf16: the layer below and the label tokens' input rows
    // stay frozen; the adapter says which layer it adapts, and it scores like its merge.
    std::fs::write(
        &cfg,
        run_toml(
            "kind = \"lora\"\nrank = 4\nalpha = 8.0\ntargets = [\"q_proj\", \"v_proj\"]\ntop_layers = 1",
        ) + "precision = \"bf16\"\n",
    )
    .unwrap();
    let top = d.join("top");
    let o = labor(&["train", "--config", p(&cfg), "--out", p(&top)]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(
        text(&o).1.contains("top 1 of 2 layers trained"),
        "{:?}",
        text(&o)
    );
    let trainable = 4 * ((32 + 32) + (32 + 16)) + k * 32;
    assert!(
        text(&o).1.contains(&format!("({trainable} trainable)")),
        "{:?}",
        text(&o)
    );
    let ac: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(top.join("best").join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(ac["layers_to_transform"], serde_json::json!([1]));
    let top_scores = score(&top.join("best"), &d.join("t.parquet"));
    let top_merged = d.join("top-merged");
    let o = labor(&[
        "lm",
        "merge-lora",
        p(&base),
        p(&top.join("best")),
        p(&top_merged),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let merged_scores = score(&top_merged, &d.join("tm.parquet"));
    for (x, y) in top_scores.iter().zip(&merged_scores) {
        assert!(
            (x.3 - y.3).abs() < 1e-5,
            "adapter {} vs merged {}",
            x.3,
            y.3
        );
    }
    let o = labor(&[
        "train",
        "--config",
        p(&cfg),
        "--out",
        p(&d.join("top3")),
        "method.top_layers=3",
    ]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(
        text(&o)
            .1
            .contains("method.top_layers = 3: expected 1 to 2"),
        "{:?}",
        text(&o)
    );

    // The base's tokenizer cannot score with label tokens.
    let o = labor(&[
        "score",
        "--model",
        p(&base),
        "--panel",
        p(&panel),
        "--limit",
        "1",
        "--label-tokens",
        "--out",
        p(&d.join("x.parquet")),
    ]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("no label tokens"), "{:?}", text(&o));

    // Full fine-tuning from the base with label tokens saves a plain, folded model directory.
    std::fs::write(&cfg, run_toml("kind = \"full\"")).unwrap();
    let full = d.join("full");
    let o = labor(&[
        "train",
        "--config",
        p(&cfg),
        "--out",
        p(&full),
        "train.total_steps=2",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let c: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(full.join("final").join("config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(c["vocab_size"], (base_vocab + k) as u64);
    assert!(score(&full.join("final"), &d.join("f.parquet")).len() == with_adapter.len());

    // A from-scratch base whose tokenizer already has one token per label: refused.
    let tok2 = d.join("tok2.json");
    let o = labor(&[
        "tokenizer",
        "train",
        "--panel",
        p(&panel),
        "--vocab-size",
        "600",
        "--out",
        p(&tok2),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let base2 = d.join("base2");
    let o = labor(&[
        "lm",
        "init",
        "--config",
        p(&shape),
        "--tokenizer",
        p(&tok2),
        "--out",
        p(&base2),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    std::fs::write(
        &cfg,
        run_toml("kind = \"full\"")
            .replace(&format!("{:?}", p(&base)), &format!("{:?}", p(&base2))),
    )
    .unwrap();
    let o = labor(&["train", "--config", p(&cfg), "--out", p(&d.join("refused"))]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        text(&o).1.contains("already has one token per label"),
        "{:?}",
        text(&o)
    );
}

/// The hand-off to the Hugging Face `Trainer`: a model fine-tuned by it on `labor text render`'s
/// texts (fixture made by `tools/reference/trainer_handoff.py` from the world below) loads in
/// `labor score`, and every test record's true-label log-probability equals what transformers
/// computed for it.
#[test]
fn a_model_trained_by_the_hf_trainer_scores_as_transformers_does() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let syn = d.join("syn");
    let o = labor(&[
        "synth",
        "--world",
        "nlsy79",
        "--workers",
        "40",
        "--seed",
        "11",
        "--out",
        p(&syn),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trainer-handoff");
    let out = d.join("preds.parquet");
    let o = labor(&[
        "score",
        "--model",
        p(&fixture),
        "--panel",
        p(&syn.join("panel.parquet")),
        "--split",
        "test",
        "--out",
        p(&out),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("reference.json")).unwrap())
            .unwrap();
    let want = reference["records"].as_object().unwrap();
    let mut got = labor_data::predictions::read_logp(std::fs::File::open(&out).unwrap()).unwrap();
    got.sort_by(|a, b| (&a.0, &a.1, a.2).cmp(&(&b.0, &b.1, b.2)));
    let n_want: usize = want.values().map(|v| v.as_array().unwrap().len()).sum();
    assert_eq!(got.len(), n_want, "the same test records");
    let mut worst = 0f64;
    for (key, recs) in want {
        let mine: Vec<f64> = got
            .iter()
            .filter(|r| format!("{}/{}", r.0, r.1) == *key)
            .map(|r| r.3)
            .collect();
        let theirs: Vec<f64> = recs
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["logp"].as_f64().unwrap())
            .collect();
        assert_eq!(mine.len(), theirs.len(), "{key}");
        for (t, (a, b)) in mine.iter().zip(&theirs).enumerate() {
            assert!(
                (a - b).abs() < 1e-4,
                "{key} record {t}: labor {a} vs transformers {b}"
            );
            worst = worst.max((a - b).abs());
        }
    }
    eprintln!("{n_want} records; largest |labor - transformers| = {worst:.2e}");
}

#[test]
fn fit_markov_and_mnl_then_score_them_like_any_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let syn = d.join("syn");
    let o = labor(&[
        "synth",
        "--world",
        "nlsy79",
        "--workers",
        "150",
        "--seed",
        "6",
        "--out",
        p(&syn),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let panel = syn.join("panel.parquet");
    for (kind, extra) in [
        ("markov1", vec![]),
        ("markov2", vec![]),
        ("mnl", vec!["--lambdas", "1e-3"]),
    ] {
        let out = d.join(kind);
        let mut args = vec![
            "fit",
            "--model",
            kind,
            "--panel",
            p(&panel),
            "--out",
            p(&out),
        ];
        args.extend(extra);
        let o = labor(&args);
        assert_eq!(o.status.code(), Some(0), "{kind}: {:?}", text(&o));
        if kind == "mnl" {
            assert!(text(&o).0.contains("log-likelihood"), "{:?}", text(&o));
            let csv = std::fs::read_to_string(out.join("coefficients.csv")).unwrap();
            assert!(
                csv.starts_with("block,feature,label_code,coefficient"),
                "{csv:.200}"
            );
        }
        let preds = d.join(format!("{kind}.parquet"));
        let o = labor(&[
            "score",
            "--model",
            p(&out),
            "--panel",
            p(&panel),
            "--out",
            p(&preds),
        ]);
        assert_eq!(o.status.code(), Some(0), "{kind}: {:?}", text(&o));
        let rows =
            labor_data::predictions::read_logp(std::fs::File::open(&preds).unwrap()).unwrap();
        assert!(!rows.is_empty());
        assert!(rows.iter().all(|r| r.3 < 0.0 && r.3.is_finite()), "{kind}");
    }
    let o = labor(&[
        "fit",
        "--model",
        "career9",
        "--panel",
        p(&panel),
        "--out",
        p(&d.join("x")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("expected one of"), "{:?}", text(&o));
}

/// A tiny world, markov1 scored with full distributions, and its evaluation report.
fn eval_fixture(d: &Path) -> PathBuf {
    let syn = d.join("syn");
    let o = labor(&[
        "synth",
        "--world",
        "nlsy79",
        "--workers",
        "200",
        "--seed",
        "8",
        "--full-oracle",
        "200",
        "--out",
        p(&syn),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let panel = syn.join("panel.parquet");
    let m1 = d.join("m1");
    let o = labor(&[
        "fit",
        "--model",
        "markov1",
        "--panel",
        p(&panel),
        "--out",
        p(&m1),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let (preds, full) = (d.join("m1.parquet"), d.join("m1_full.parquet"));
    let o = labor(&[
        "score",
        "--model",
        p(&m1),
        "--panel",
        p(&panel),
        "--out",
        p(&preds),
        "--full-dist",
        p(&full),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let rep = d.join("report");
    let o = labor(&[
        "eval",
        "--preds",
        p(&preds),
        "--full",
        p(&full),
        "--oracle",
        p(&syn.join("oracle.parquet")),
        "--oracle-full",
        p(&syn.join("oracle_full.parquet")),
        "--panel",
        p(&panel),
        "--bootstrap",
        "200",
        "--out",
        p(&rep),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let (out, _) = text(&o);
    assert!(
        out.contains("| markov1 |") && out.contains("| oracle |"),
        "{out}"
    );
    assert!(out.contains("report.html"), "{out}");
    rep
}

#[test]
fn eval_writes_tables_plots_and_a_self_contained_report() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rep = eval_fixture(d);
    // The perplexity table agrees with the predictions file itself.
    let rows = labor_data::predictions::read_predictions(
        std::fs::File::open(d.join("m1.parquet")).unwrap(),
    )
    .unwrap()
    .rows;
    let test: Vec<_> = rows
        .iter()
        .filter(|r| r.split == labor_data::Split::Test)
        .collect();
    let want = (-test.iter().map(|r| r.logp_norm).sum::<f64>() / test.len() as f64).exp();
    let csv = std::fs::read_to_string(rep.join("tables/perplexity.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let line = csv.lines().find(|l| l.contains(",markov1,")).unwrap();
    let cells: Vec<&str> = line.split(',').collect();
    let col = |n: &str| cells[header.iter().position(|h| *h == n).unwrap()];
    let got: f64 = col("ppl_all").parse().unwrap();
    assert!((got - want).abs() < 1e-3 * want, "{got} vs {want}");
    assert_eq!(col("records"), test.len().to_string());
    let (lo, hi): (f64, f64) = (
        col("ppl_all_lo").parse().unwrap(),
        col("ppl_all_hi").parse().unwrap(),
    );
    assert!(lo < got && got < hi, "{lo} {got} {hi}");
    let ratio: f64 = col("ratio_all").parse().unwrap();
    assert!(ratio > 1.0, "markov1 cannot beat the oracle here: {ratio}");
    // Calibration by occupation group needs the full distributions: groups appear as classes.
    let cal = std::fs::read_to_string(rep.join("tables/calibration.csv")).unwrap();
    assert!(
        cal.contains(",Unemployed,") && cal.contains(",stay,"),
        "{}",
        &cal[..300]
    );
    for f in [
        "subtasks.csv",
        "paired.csv",
        "calibration_summary.csv",
        "reliability.csv",
    ] {
        assert!(rep.join("tables").join(f).exists(), "{f}");
    }
    let html = std::fs::read_to_string(rep.join("report.html")).unwrap();
    assert!(html.contains("data-name=\"headline\"") && html.contains("<svg"));
    assert!(
        !html.contains("http://") || !html.contains("src=\"http"),
        "no external resources"
    );
    assert!(rep.join("plots/perplexity_NLSY79.svg").exists());
    assert!(rep.join("report.md").exists());
    // Bad input: a file that is not a predictions file.
    let o = labor(&[
        "eval",
        "--preds",
        p(&d.join("syn/panel.parquet")),
        "--out",
        p(&d.join("x")),
    ]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(
        text(&o).1.contains("panel.parquet") && text(&o).1.contains("no column"),
        "{:?}",
        text(&o)
    );
}

/// The headless Chromium the build script found (crates/labor-cli/build.rs sets `has_chromium`;
/// the tests that need it are ignored without it, never passed).
fn chromium() -> &'static str {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|c| Path::new(c).exists())
        .expect("Chromium was found when the tests were built, and is gone: rebuild them")
}

/// Renders report.html in headless Chromium when it is installed: the rendered page has the
/// headline table and at least one plot, and a screenshot is taken (kept under
/// target/report-screenshot.png for a person to look at).
/// Ignored, with the reason, where Chromium is not installed (`.ci/run` installs it).
#[test]
#[cfg_attr(
    not(has_chromium),
    ignore = "Chromium is not installed (Debian package `chromium`)"
)]
fn report_renders_in_headless_chromium() {
    let chromium = chromium();
    let dir = tempfile::tempdir().unwrap();
    let rep = eval_fixture(dir.path());
    let url = format!("file://{}", rep.join("report.html").display());
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
    ];
    let profile = dir.path().join("chromium-profile");
    let user_dir = format!("--user-data-dir={}", profile.display());
    let dom = Command::new(chromium)
        .args(flags)
        .arg(&user_dir)
        .args(["--dump-dom", &url])
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("data-name=\"headline\""),
        "rendered DOM lacks the headline table"
    );
    assert!(dom.contains("<svg"), "rendered DOM lacks plots");
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/report-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let o = Command::new(chromium)
        .args(flags)
        .arg(&user_dir)
        .arg(format!("--screenshot={}", shot.display()))
        .args(["--window-size=1280,2400", &url])
        .output()
        .expect("run chromium");
    let png = std::fs::read(&shot).unwrap_or_else(|_| panic!("no screenshot: {:?}", text(&o)));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
}

#[test]
fn fit_bag_of_jobs_and_pretrained_career_then_score_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let world = |name: &str, n: &str| {
        let out = d.join(name);
        let o = labor(&[
            "synth",
            "--world",
            name,
            "--workers",
            n,
            "--seed",
            "9",
            "--out",
            p(&out),
        ]);
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        out.join("panel.parquet")
    };
    let panel = world("nlsy79", "120");
    let resumes = world("resumes", "80");
    let tiny = [
        "--layers", "1", "--width", "16", "--heads", "2", "--ffn", "32", "--epochs", "2",
        "--device", "cpu",
    ];
    let fit = |kind: &str, out: &Path, extra: &[&str]| {
        let mut args = vec![
            "fit",
            "--model",
            kind,
            "--panel",
            p(&panel),
            "--out",
            p(out),
        ];
        args.extend(extra);
        labor(&args)
    };
    let bag = d.join("bag");
    let o = fit("bag-of-jobs", &bag, &["--width", "8", "--epochs", "2"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let career = d.join("career");
    let mut extra = tiny.to_vec();
    extra.extend(["--pretrain", p(&resumes), "--pretrain-epochs", "1"]);
    let o = fit("career", &career, &extra);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(
        text(&o).0.contains("career-pretrained pretrain: 1 epochs"),
        "{:?}",
        text(&o)
    );
    for (out, name, epochs) in [(&bag, "bag-of-jobs", 2), (&career, "career-pretrained", 3)] {
        let fj: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("fit.json")).unwrap()).unwrap();
        assert_eq!(fj["model"], name);
        assert_eq!(fj["epochs"], epochs);
        assert!(fj["best_valid_perplexity"].as_f64().unwrap() > 1.0);
        assert!(fj["seconds"].as_f64().unwrap() >= 0.0);
        assert!(out.join("model.safetensors").exists() && out.join("config.toml").exists());
        assert!(out.join("checkpoint/state.json").exists());
        let preds = d.join(format!("{name}.parquet"));
        let o = labor(&[
            "score",
            "--model",
            p(out),
            "--panel",
            p(&panel),
            "--split",
            "test",
            "--out",
            p(&preds),
        ]);
        assert_eq!(o.status.code(), Some(0), "{name}: {:?}", text(&o));
        let rows =
            labor_data::predictions::read_logp(std::fs::File::open(&preds).unwrap()).unwrap();
        assert!(!rows.is_empty());
        assert!(rows.iter().all(|r| r.3 < 0.0 && r.3.is_finite()), "{name}");
    }
    // Stopped after 2 epochs (in the fine-tuning stage) and resumed: the same weights as the
    // uninterrupted fit.
    let stopped = d.join("career-stopped");
    let mut extra = tiny.to_vec();
    extra.extend(["--pretrain", p(&resumes), "--pretrain-epochs", "1"]);
    extra.extend(["--stop-after-epochs", "2"]);
    let o = fit("career", &stopped, &extra);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(
        text(&o).0.contains("stopped in stage 2 after epoch 1"),
        "{:?}",
        text(&o)
    );
    assert!(!stopped.join("model.safetensors").exists());
    let o = fit(
        "career",
        &stopped,
        &["--resume", "--pretrain", p(&resumes), "--device", "cpu"],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(
        std::fs::read(career.join("model.safetensors")).unwrap(),
        std::fs::read(stopped.join("model.safetensors")).unwrap()
    );
    // Resuming a finished fit trains no further and keeps the weights.
    let before = std::fs::read(career.join("model.safetensors")).unwrap();
    let mut extra = vec!["--resume", "--pretrain", p(&resumes)];
    extra.extend(["--device", "cpu"]);
    let o = fit("career", &career, &extra);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(
        before,
        std::fs::read(career.join("model.safetensors")).unwrap()
    );
    // Clear errors.
    let o = fit("bag-of-jobs", &d.join("x"), &["--pretrain", p(&resumes)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("--pretrain is for --model career"),
        "{:?}",
        text(&o)
    );
    let o = fit("markov1", &d.join("w"), &["--epochs", "3"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o)
            .1
            .contains("--epochs is for --model bag-of-jobs or career"),
        "{:?}",
        text(&o)
    );
    let o = fit("career", &d.join("y"), &["--resume"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("no fit to resume"), "{:?}", text(&o));
    let o = fit("career", &d.join("z"), &["--width", "10", "--heads", "3"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).1.contains("not a multiple of heads"),
        "{:?}",
        text(&o)
    );
}

/// A reproduction preset shrunk to seconds: one tiny survey, a tiny resume corpus, markov1 and
/// a one-layer LM pre-trained on resumes and fine-tuned on the survey.
const TINY_PRESET: &str = r#"
description = "test"
score_persons = 2
[worlds.nlsy79]
workers = 60
seed = 1
[worlds.resumes]
workers = 80
seed = 4
role = "pretrain"
[comparison]
models = ["markov1"]
[lm]
untuned = true
icl = []
replay = true
[lm.pretrain.model]
vocab_size = 600
[lm.pretrain.model.scratch]
hidden_size = 32
intermediate_size = 64
num_hidden_layers = 1
num_attention_heads = 2
max_position_embeddings = 1024
[lm.pretrain.optim]
lr = 3e-3
[lm.pretrain.train]
total_steps = 40
batch_size = 2
eval_every = 400
eval_texts = 4
checkpoint_every = 2
[lm.finetune.optim]
lr = 3e-3
[lm.finetune.train]
total_steps = 4
batch_size = 2
eval_every = 2
eval_texts = 4
checkpoint_every = 2
[eval]
bootstrap = 50
[[ablation]]
name = "codes"
switches = { numeric_codes = true }
"#;

/// Malformed configuration and prediction files are invalid input (exit 2), whichever command
/// reads them, with the file named in the message.
#[test]
fn malformed_configs_and_prediction_files_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bad_toml = d.join("bad.toml");
    std::fs::write(&bad_toml, "x = [\n").unwrap();
    let bad_parquet = d.join("bad.parquet");
    std::fs::write(&bad_parquet, "not parquet").unwrap();
    let no_data = d.join("no-data.toml");
    std::fs::write(&no_data, "[model]\nbase = \"x\"\n").unwrap();
    let outs: Vec<PathBuf> = ["e", "r", "t", "t2", "s", "m"]
        .iter()
        .map(|n| d.join(n))
        .collect();
    let cases: Vec<(Vec<&str>, &Path)> = vec![
        (
            vec!["eval", "--preds", p(&bad_parquet), "--out", p(&outs[0])],
            &bad_parquet,
        ),
        (
            vec!["reproduce", "--preset", p(&bad_toml), "--out", p(&outs[1])],
            &bad_toml,
        ),
        (
            vec!["train", "--config", p(&bad_toml), "--out", p(&outs[2])],
            &bad_toml,
        ),
        (
            vec!["train", "--config", p(&no_data), "--out", p(&outs[3])],
            &no_data,
        ),
        (
            vec!["synth", "--world", p(&bad_toml), "--out", p(&outs[4])],
            &bad_toml,
        ),
        (
            vec![
                "lm",
                "init",
                "--config",
                p(&bad_toml),
                "--tokenizer",
                p(&bad_toml),
                "--out",
                p(&outs[5]),
            ],
            &bad_toml,
        ),
    ];
    for (args, file) in cases {
        let o = labor(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {:?}", text(&o));
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(text(&o).1.contains(name), "{args:?}: {:?}", text(&o));
    }
}

/// A stage that rejects its input (exit 2) makes `labor reproduce` exit 2 as well, naming the
/// stage and showing the stage's own error; stages before it stay cached.
#[test]
fn reproduce_passes_a_stages_invalid_input_exit_through() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bad = d.join("bad.csv");
    std::fs::write(&bad, "this is,not\na taxonomy\n").unwrap();
    let preset = d.join("bad.toml");
    std::fs::write(
        &preset,
        format!(
            "description = \"a stage with a broken input\"\n\
             [worlds.nlsy79]\nworkers = 30\nseed = 1\n\
             [comparison]\nmodels = [\"markov1\"]\n\
             [comparison.args]\nmarkov1 = [\"--taxonomy\", {:?}]\n",
            p(&bad)
        ),
    )
    .unwrap();
    let out = d.join("out");
    let o = labor(&["reproduce", "--preset", p(&preset), "--out", p(&out)]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    let err = text(&o).1;
    assert!(err.contains("fit markov1 on nlsy79"), "{err}");
    assert!(
        err.contains("expected the header `code,title,group`"),
        "{err}"
    );
    assert!(out.join("stages/world-nlsy79.done").exists());
}

#[test]
fn reproduce_caches_stages_and_resumes_after_a_kill_during_training() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let preset = d.join("tiny.toml");
    std::fs::write(&preset, TINY_PRESET).unwrap();
    let out = d.join("out");
    // Start, wait for the base LM's first checkpoint, then kill the whole process group.
    let mut child = Command::new(env!("CARGO_BIN_EXE_labor"))
        .args(["reproduce", "--preset", p(&preset), "--out", p(&out)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let ckpt = out.join("runs/lm-base/checkpoints");
    let t0 = std::time::Instant::now();
    while !std::fs::read_dir(&ckpt).is_ok_and(|mut e| e.next().is_some()) {
        assert!(t0.elapsed().as_secs() < 300, "no checkpoint appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pgid = child.id() as i32;
    // `--` matters: procps-ng reads a bare negative number as an option, not a process group.
    let killed = Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{pgid}")])
        .status()
        .unwrap();
    assert!(killed.success());
    child.wait().unwrap();
    assert!(!out.join("stages/train-lm-base.done").exists());
    let world_done = std::fs::metadata(out.join("worlds/nlsy79/panel.parquet"))
        .unwrap()
        .modified()
        .unwrap();
    // Re-run: finished stages are skipped, the training resumes, everything completes.
    let o = labor(&["reproduce", "--preset", p(&preset), "--out", p(&out)]);
    let (so, se) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{so}\n{se}");
    assert!(
        so.contains("synthetic world nlsy79 (60 workers): done before (cached)"),
        "{so}"
    );
    assert!(
        so.contains("fit markov1 on nlsy79: done before (cached)"),
        "{so}"
    );
    assert!(
        so.contains("resuming the interrupted run runs/lm-base"),
        "{so}"
    );
    assert_eq!(
        std::fs::metadata(out.join("worlds/nlsy79/panel.parquet"))
            .unwrap()
            .modified()
            .unwrap(),
        world_done,
        "a finished stage was redone"
    );
    for m in [
        "| oracle |",
        "| markov1 |",
        "| lm-ft |",
        "| lm-untuned |",
        "| lm-ft-codes |",
    ] {
        assert!(so.contains(m), "{m} missing from the headline:\n{so}");
    }
    let html = std::fs::read_to_string(out.join("report/report.html")).unwrap();
    assert!(html.contains("Ablation: codes") && html.contains("Preset"));
    // The base's tokenizer learned from the survey too and has one token per label; the
    // fine-tuning replays the resumes; every saved model says what it was given.
    let cfg = |run: &str| -> toml::Table {
        toml::from_str(&std::fs::read_to_string(out.join(run).join("config.toml")).unwrap())
            .unwrap()
    };
    assert_eq!(
        cfg("runs/lm-base")["model"]["tokenizer_panels"],
        toml::Value::Array(vec!["worlds/nlsy79/panel.parquet".into()])
    );
    assert_eq!(
        cfg("runs/lm-ft")["data"]["replay"],
        toml::Value::Array(vec!["worlds/resumes/panel.parquet".into()])
    );
    let tok = std::fs::read_to_string(out.join("runs/lm-base/tokenizer.json")).unwrap();
    assert!(tok.contains("\" Not in labor force\\n\""), "no label token");
    let tj: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("runs/lm-ft/best/training.json")).unwrap(),
    )
    .unwrap();
    assert!(tj["tokens"].as_u64().unwrap() > 0, "{tj}");
    assert_eq!(tj["base"]["steps"], 40, "{tj}");
    // A third run does nothing but evaluate.
    let o = labor(&["reproduce", "--preset", p(&preset), "--out", p(&out)]);
    let (so, _) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        !so.contains(": 0.") || so.matches("(cached)").count() >= 8,
        "{so}"
    );
    assert!(
        so.lines()
            .filter(|l| l.starts_with('['))
            .all(|l| l.contains("(cached)") || l.contains("evaluate")),
        "{so}"
    );
}

/// Reads a predictions file's rows as sortable text lines (every column).
fn pred_rows(path: &Path) -> Vec<String> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let r = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out: Vec<String> = r
        .get_row_iter(None)
        .unwrap()
        .map(|row| row.unwrap().to_string())
        .collect();
    out.sort();
    out
}

#[test]
fn score_shards_are_disjoint_and_equal_one_run_row_for_row() {
    let d = tempfile::tempdir().unwrap();
    let d = d.path();
    let syn = d.join("syn");
    let o = labor(&[
        "synth",
        "--world",
        "nlsy79",
        "--workers",
        "150",
        "--seed",
        "5",
        "--out",
        p(&syn),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let panel = syn.join("panel.parquet");
    let m1 = d.join("m1");
    let o = labor(&[
        "fit",
        "--model",
        "markov1",
        "--panel",
        p(&panel),
        "--out",
        p(&m1),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let score = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "score",
            "--model",
            p(&m1),
            "--panel",
            p(&panel),
            "--out",
            p(out),
        ];
        args.extend_from_slice(extra);
        labor(&args)
    };
    let whole = d.join("whole.parquet");
    assert_eq!(score(&whole, &[]).status.code(), Some(0));
    let mut shards = Vec::new();
    let mut union = Vec::new();
    for i in 0..3 {
        let f = d.join(format!("shard{i}.parquet"));
        let o = score(&f, &["--shard", &format!("{i}/3")]);
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        let rows = pred_rows(&f);
        assert!(!rows.is_empty(), "shard {i} is empty");
        union.extend(rows);
        shards.push(f);
    }
    union.sort();
    // Disjoint and complete: the shards' rows are exactly the whole run's rows, each once.
    assert_eq!(union, pred_rows(&whole));
    // `labor eval` takes the shards together and gives the whole run's table.
    let eval = |files: &[&Path], out: &Path| {
        let mut args = vec!["eval", "--preds"];
        args.extend(files.iter().map(|f| p(f)));
        args.extend(["--bootstrap", "50", "--out", p(out)]);
        labor(&args)
    };
    let (ra, rb) = (d.join("ra"), d.join("rb"));
    assert_eq!(eval(&[&whole], &ra).status.code(), Some(0));
    let refs: Vec<&Path> = shards.iter().map(|s| s.as_path()).collect();
    let o = eval(&refs, &rb);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let table = |r: &Path| std::fs::read_to_string(r.join("tables/perplexity.csv")).unwrap();
    assert_eq!(table(&ra), table(&rb));
    // A record given twice (overlapping shards) is an error naming both files.
    let o = eval(&[&whole, &shards[1]], &d.join("rc"));
    assert_ne!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(
        text(&o).1.contains("already has a prediction"),
        "{:?}",
        text(&o)
    );
    // Bad shard specifications are usage errors.
    for bad in ["3/3", "1/0", "x/2", "2"] {
        let o = score(&d.join("bad.parquet"), &["--shard", bad]);
        assert_ne!(o.status.code(), Some(0), "--shard {bad} was accepted");
    }
}

/// `presets/gpu.toml` shrunk to seconds and moved to the CPU, everything else as shipped: the
/// same stages (full fine-tuning in bf16 with one micro-batch per step, pooled surveys, un-tuned
/// and in-context scoring, CAREER pre-trained on resumes, ablations), scored in bf16 as CUDA
/// would (`--dtype auto` is bf16 there). Every device and precision setting the GPU preset uses
/// runs here, on a tiny random base model instead of SmolLM2.
#[test]
fn gpu_preset_shrunk_runs_end_to_end_on_cpu_in_bf16() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A tiny "pre-trained" base: random weights over a label-complete tokenizer.
    let (_panel, tok) = world_and_tokenizer(d, "9", "800");
    let shape = d.join("shape.toml");
    std::fs::write(
        &shape,
        "hidden_size = 32\nintermediate_size = 64\nnum_hidden_layers = 1\n\
         num_attention_heads = 2\nnum_key_value_heads = 1\nmax_position_embeddings = 2048\n",
    )
    .unwrap();
    let base = d.join("base");
    let o = labor(&[
        "lm",
        "init",
        "--config",
        p(&shape),
        "--tokenizer",
        p(&tok),
        "--out",
        p(&base),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));

    let shipped = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../presets/gpu.toml"),
    )
    .unwrap();
    let mut t: toml::Table = toml::from_str(&shipped).unwrap();
    // What the GPU preset asks of the hardware, kept: bf16 training, one micro-batch per step.
    let train = t["lm"]["finetune"]["train"].as_table().unwrap().clone();
    assert_eq!(train["device"].as_str(), Some("cuda"));
    assert_eq!(train["precision"].as_str(), Some("bf16"));
    assert_eq!(
        t["lm"]["score_args"].as_array().unwrap()[1].as_str(),
        Some("cuda")
    );
    // Shrunk and moved to the CPU.
    for (w, n) in [
        ("nlsy79", 50),
        ("nlsy97", 40),
        ("psid", 40),
        ("resumes", 60),
    ] {
        t["worlds"][w]["workers"] = n.into();
    }
    t.insert("score_persons".into(), 2.into());
    t["comparison"]["models"] = toml::Value::Array(
        ["markov1", "career-pretrained"]
            .iter()
            .map(|&m| m.into())
            .collect(),
    );
    let career: Vec<toml::Value> = [
        "--device",
        "cpu",
        "--layers",
        "1",
        "--width",
        "16",
        "--heads",
        "2",
        "--ffn",
        "32",
        "--epochs",
        "1",
        "--pretrain-epochs",
        "1",
    ]
    .iter()
    .map(|&a| a.into())
    .collect();
    t["comparison"]["args"] = toml::Value::Table(
        [("career-pretrained".to_string(), toml::Value::Array(career))]
            .into_iter()
            .collect(),
    );
    let lm = t["lm"].as_table_mut().unwrap();
    lm.insert("base".into(), p(&base).into());
    lm.insert("max_context".into(), 1024.into());
    lm.insert(
        "score_args".into(),
        toml::Value::Array(vec![
            "--device".into(),
            "cpu".into(),
            "--dtype".into(),
            "bf16".into(),
        ]),
    );
    let train = lm["finetune"]["train"].as_table_mut().unwrap();
    train.remove("epochs");
    for (k, v) in [
        ("total_steps", 3),
        ("batch_size", 2),
        ("eval_every", 3),
        ("eval_texts", 4),
        ("checkpoint_every", 3),
        ("max_seq_len", 512),
    ] {
        train.insert(k.into(), v.into());
    }
    train.insert("device".into(), "cpu".into());
    t["lm"]["finetune"]["optim"]["warmup_steps"] = 1.into();
    t["eval"]["bootstrap"] = 20.into();
    // Two of the four ablations (a template switch and the data fraction) keep it short.
    let ablations = t["ablation"].as_array_mut().unwrap();
    ablations.retain(|a| ["codes", "half-data"].contains(&a["name"].as_str().unwrap()));
    assert_eq!(ablations.len(), 2);
    let preset = d.join("gpu-on-cpu.toml");
    std::fs::write(&preset, toml::to_string(&t).unwrap()).unwrap();

    let out = d.join("out");
    let o = labor(&["reproduce", "--preset", p(&preset), "--out", p(&out)]);
    let (so, se) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{so}\n{se}");
    for m in [
        "| oracle |",
        "| markov1 |",
        "| career-pretrained |",
        "| lm-ft |",
        "| lm-untuned |",
        "| lm-icl3 |",
        "| lm-ft-codes |",
        "| lm-ft-half-data |",
    ] {
        assert!(so.contains(m), "{m} missing from the headline:\n{so}");
    }
    // The fine-tuning really ran in bf16 on the CPU, and its loss is finite.
    let cfg: toml::Table =
        toml::from_str(&std::fs::read_to_string(out.join("runs/lm-ft/config.toml")).unwrap())
            .unwrap();
    assert_eq!(cfg["train"]["precision"].as_str(), Some("bf16"));
    assert_eq!(cfg["train"]["device"].as_str(), Some("cpu"));
    let log = std::fs::read_to_string(out.join("logs/score-lm-ft.log"))
        .or_else(|_| {
            std::fs::read_dir(out.join("logs"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| {
                    p.to_string_lossy().contains("lm-ft") && p.to_string_lossy().contains("score")
                })
                .map(std::fs::read_to_string)
                .unwrap()
        })
        .unwrap();
    assert!(log.contains("BFloat16"), "scored in bf16:\n{log}");
}

/// Two `labor train` on one run directory cannot both run: the second fails at once naming the
/// process that holds the directory's lock, and runs normally once it is released.
#[test]
fn a_second_labor_train_on_a_run_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("config.toml"),
        "[model]\nbase = \"no-such-model\"\n[data]\npanels = [\"no-such-panel.parquet\"]\n\
         [optim]\nlr = 1e-3\n[train]\ntotal_steps = 2\n",
    )
    .unwrap();
    // This test process stands in for a running `labor train`.
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(run.join(".lock"))
        .unwrap();
    lock.try_lock().unwrap();
    std::fs::write(run.join(".lock"), "4242\n").unwrap();
    let o = labor(&["train", "--resume", p(&run)]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("another `labor train` is running in this directory (process 4242"),
        "{err}"
    );
    drop(lock);
    let o = labor(&["train", "--resume", p(&run)]);
    let (_, err) = text(&o);
    assert!(!err.contains("another `labor train`"), "{err}");
    assert!(err.contains("no-such"), "{err}");
}

/// A write that fails part-way (here the file-size limit, as a full disk would) is a clear
/// error, leaves the previous file untouched and no temporary file behind.
#[test]
fn a_write_that_fails_part_way_leaves_no_partial_file() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = labor(&[
        "synth",
        "--world",
        "nlsy79",
        "--workers",
        "300",
        "--threads",
        "1",
        "--out",
        p(&d.join("syn")),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let out = d.join("out").join("panel.csv");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, "the previous file\n").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_labor"));
    cmd.args([
        "data",
        "convert",
        p(&d.join("syn").join("panel.parquet")),
        p(&out),
    ]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 32 * 1024,
                rlim_max: 32 * 1024,
            };
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot write") && err.contains("panel.csv"),
        "{err}"
    );
    assert!(err.contains("File too large"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "the previous file\n"
    );
    let left: Vec<_> = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("panel.csv")]);
}

/// A panel with many problems: the terminal shows the first 50 and a summary by field and kind;
/// `--problems FILE` (a flag of every command) writes every one as CSV. Exit 2 as before.
#[test]
fn long_problem_lists_are_cut_to_50_with_a_summary_and_written_whole_with_problems() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.csv");
    let mut csv =
        String::from("dataset,person_id,year,label,education,gender,race,region,birth_year\n");
    // 70 unknown labels (lines 2..=71) and 10 education values outside the set.
    for i in 0..70 {
        csv += &format!("NLSY79,{i},1990,99-999,high_school_diploma,female,black,south,1962\n");
    }
    for i in 70..80 {
        csv += &format!("NLSY79,{i},1990,UNEMP,college,female,black,south,1962\n");
    }
    std::fs::write(&bad, csv).unwrap();
    let o = labor(&["data", "validate", p(&bad)]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.matches(": field `").count(), 50, "{err}");
    assert!(
        err.contains("... and 30 more (--problems FILE writes them all as CSV)"),
        "{err}"
    );
    assert!(
        err.contains("invalid: 80 problem(s) (education: 10, label: 70)"),
        "{err}"
    );
    assert!(err.contains("  70 × label: expected "), "{err}");
    assert!(err.contains("  10 × education: expected "), "{err}");

    let all = dir.path().join("problems.csv");
    let o = labor(&["data", "validate", p(&bad), "--problems", p(&all)]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("... and 30 more, all in {}", p(&all))),
        "{err}"
    );
    let written = std::fs::read_to_string(&all).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines[0], "file,unit,index,field,found,expected");
    assert_eq!(lines.len(), 81, "{written}");
    assert!(
        lines[1].starts_with(&format!("{},line,2,label,", p(&bad))),
        "{}",
        lines[1]
    );
    assert!(lines[80].contains(",line,81,education,"), "{}", lines[80]);
}

/// A user-like extract: `dataset,person_id,year,label,gender,race` (some `NA`, no region,
/// education or birth year), 120 persons over a taxonomy of two occupations (Welders,
/// Teachers) and the special states. Returns (panel.csv, taxonomy.csv).
fn few_covariates_panel(d: &Path) -> (PathBuf, PathBuf) {
    let tax = d.join("taxonomy.csv");
    std::fs::write(
        &tax,
        "code,title,group\nW1,Welders,Production\nT1,Teachers,Education\n",
    )
    .unwrap();
    // 120 persons, 6-9 years each, a sticky chain over the two occupations and two specials.
    let mut csv = String::from("dataset,person_id,year,label,gender,race\n");
    let mut x: u64 = 12345;
    let mut next = |n: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % n
    };
    let labels = ["W1", "T1", "UNEMP", "NILF"];
    for pid in 0..120 {
        let gender = ["male", "female", "NA"][next(3) as usize];
        let race = ["white", "black", "NA", "NA"][next(4) as usize];
        let mut l = next(2) as usize;
        for year in 2000..2006 + next(4) as i32 {
            if next(10) == 0 {
                continue; // a gap
            }
            csv += &format!("EXT,{pid},{year},{},{gender},{race}\n", labels[l]);
            if next(10) < 3 {
                l = next(4) as usize;
            }
        }
    }
    let panel = d.join("panel.csv");
    std::fs::write(&panel, csv).unwrap();
    (panel, tax)
}

/// A tiny from-scratch language model for the user-panel presets (the `[lm]` table's model and
/// optimizer; each preset sets its own steps).
const TINY_LM: &str = "[lm.finetune.model]
vocab_size = 400
[lm.finetune.model.scratch]
hidden_size = 32
intermediate_size = 64
num_hidden_layers = 1
num_attention_heads = 2
max_position_embeddings = 1024
[lm.finetune.optim]
lr = 3e-3
";

/// `labor reproduce` on a user panel (no world): a two-occupation taxonomy with few covariates
/// runs the whole study; the report has every model, no oracle, and says why; an edit of the
/// panel file is noticed (its stage runs again).
#[test]
fn reproduce_runs_the_study_on_a_user_panel_with_two_occupations() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    few_covariates_panel(d);
    let preset = d.join("study.toml");
    std::fs::write(
        &preset,
        format!(
            r#"
description = "two occupations, few covariates"
score_persons = 12
[panels.ext]
path = "panel.csv"
taxonomy = "taxonomy.csv"
[comparison]
models = ["markov1", "mnl", "bag-of-jobs"]
[comparison.args]
mnl = ["--lambdas", "1e-3"]
bag-of-jobs = ["--width", "8", "--epochs", "2"]
[lm]
untuned = false
[lm.finetune.train]
total_steps = 4
batch_size = 2
eval_every = 2
eval_texts = 4
[eval]
bootstrap = 20
{TINY_LM}"#
        ),
    )
    .unwrap();
    let out = d.join("out");
    let o = labor(&["reproduce", "--preset", p(&preset), "--out", p(&out)]);
    let (so, se) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{so}\n{se}");
    for m in ["| markov1 |", "| mnl |", "| bag-of-jobs |", "| lm-ft |"] {
        assert!(so.contains(m), "{m} missing from the headline:\n{so}");
    }
    assert!(!so.contains("| oracle |"), "{so}");
    let report = std::fs::read_to_string(out.join("report/report.md")).unwrap();
    assert!(report.contains("No oracle for ext"), "{report:.2000}");
    assert!(!report.contains("| oracle |"));
    // Cached when nothing changed; the panel stage runs again when the file changes.
    let o = labor(&["reproduce", "--preset", p(&preset), "--out", p(&out)]);
    assert!(text(&o).0.contains("read panel ext"), "{:?}", text(&o));
    assert!(
        text(&o).0.contains("done before (cached)"),
        "{:?}",
        text(&o)
    );
    // Another build of the program (here: the same binary with a byte appended, which still
    // runs) redoes every stage: a dry run lists none as cached.
    let other = d.join("labor-other-build");
    let mut bin = std::fs::read(env!("CARGO_BIN_EXE_labor")).unwrap();
    bin.push(0);
    std::fs::write(&other, bin).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let o = Command::new(&other)
        .args([
            "reproduce",
            "--preset",
            p(&preset),
            "--out",
            p(&out),
            "--dry-run",
        ])
        .output()
        .unwrap();
    let (so, se) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(
        se.contains("read panel ext") && !se.contains("cached"),
        "{se}"
    );
    assert!(
        so.lines().count() > 5 && so.lines().all(|l| l.starts_with("labor -C ")),
        "{so}"
    );
    let panel = d.join("panel.csv");
    let mut csv = std::fs::read_to_string(&panel).unwrap();
    csv += "EXT,999,2001,W1,male,NA\nEXT,999,2002,T1,male,NA\n";
    std::fs::write(&panel, csv).unwrap();
    let o = labor(&[
        "reproduce",
        "--preset",
        p(&preset),
        "--out",
        p(&out),
        "--dry-run",
    ]);
    let se = text(&o).1;
    let line = se.lines().find(|l| l.contains("read panel ext")).unwrap();
    assert!(line.ends_with("to run"), "{se}");
    // A preset naming a missing panel file is invalid input.
    std::fs::write(&preset, "[panels.x]\npath = \"nope.csv\"\n").unwrap();
    let o = labor(&["reproduce", "--preset", p(&preset), "--out", p(&out)]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("panels.x.path"), "{:?}", text(&o));
}

/// A user's extract with only id, year, occupation, gender and race (some `NA`), on a custom
/// taxonomy of two occupations: every command runs on it — validate, render, fit (Markov, MNL,
/// bag-of-jobs, CAREER), tokenizer, LM training, score, eval — without any covariate invented.
#[test]
fn a_panel_with_few_covariates_and_two_occupations_runs_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (panel, tax) = few_covariates_panel(d);
    let t = ["--taxonomy", p(&tax)];
    let run = |args: &[&str]| {
        let o = labor(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {:?}", text(&o));
        text(&o).0
    };
    let with_t = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(t);
        run(&a)
    };
    with_t(&["data", "validate", p(&panel)]);

    // The texts say nothing about region, education or birth year.
    let texts = d.join("texts.jsonl");
    with_t(&["text", "render", "--panel", p(&panel), "--out", p(&texts)]);
    let body = std::fs::read_to_string(&texts).unwrap();
    assert!(
        body.contains("including year and the job title"),
        "{body:.600}"
    );
    for phrase in ["region", "education level", "was born", "high school", "("] {
        assert!(!body.contains(phrase), "{phrase:?} in {body:.600}");
    }
    assert!(body.contains(": Welders\\n") && body.contains(": Teachers\\n"));

    // Comparison models.
    let mut models = vec![];
    for (kind, extra) in [
        ("markov1", vec![]),
        ("mnl", vec!["--lambdas", "1e-3"]),
        ("bag-of-jobs", vec!["--width", "8", "--epochs", "2"]),
        (
            "career",
            vec![
                "--layers", "1", "--width", "16", "--heads", "2", "--ffn", "32", "--epochs", "1",
                "--device", "cpu",
            ],
        ),
    ] {
        let out = d.join(kind);
        let mut args = vec![
            "fit",
            "--model",
            kind,
            "--panel",
            p(&panel),
            "--out",
            p(&out),
        ];
        args.extend(extra);
        with_t(&args);
        models.push((kind.to_string(), out));
    }
    // A tiny language model from scratch on the same panel.
    let cfg = d.join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\nvocab_size = 400\n[model.scratch]\nhidden_size = 32\nintermediate_size = 64\n\
             num_hidden_layers = 1\nnum_attention_heads = 2\nmax_position_embeddings = 1024\n\
             [data]\npanels = [{:?}]\ntaxonomy = {:?}\n[optim]\nlr = 3e-3\nwarmup_steps = 2\n\
             [train]\ntotal_steps = 6\nbatch_size = 4\neval_every = 3\neval_texts = 8\n",
            p(&panel),
            p(&tax)
        ),
    )
    .unwrap();
    let lm = d.join("lm");
    run(&["train", "--config", p(&cfg), "--out", p(&lm)]);
    models.push(("lm".into(), lm.join("final")));

    // Score every model with full distributions over the 5 labels, then evaluate.
    let mut eval = vec!["eval".to_string()];
    let (mut preds, mut full) = (vec![], vec![]);
    for (name, dir) in &models {
        let (pr, fu) = (
            d.join(format!("{name}.parquet")),
            d.join(format!("{name}.full.parquet")),
        );
        with_t(&[
            "score",
            "--model",
            p(dir),
            "--panel",
            p(&panel),
            "--split",
            "test",
            "--name",
            name,
            "--out",
            p(&pr),
            "--full-dist",
            p(&fu),
        ]);
        let rows = labor_data::predictions::read_logp(std::fs::File::open(&pr).unwrap()).unwrap();
        assert!(rows.len() > 20, "{name}: {} rows", rows.len());
        assert!(rows.iter().all(|r| r.3 < 0.0 && r.3.is_finite()), "{name}");
        preds.push(p(&pr).to_string());
        full.push(p(&fu).to_string());
    }
    eval.push("--preds".into());
    eval.extend(preds);
    eval.push("--full".into());
    eval.extend(full);
    let rep = d.join("report");
    eval.extend(
        [
            "--panel",
            p(&panel),
            "--taxonomy",
            p(&tax),
            "--bootstrap",
            "50",
            "--min-cell",
            "5",
            "--out",
            p(&rep),
        ]
        .map(String::from),
    );
    let args: Vec<&str> = eval.iter().map(String::as_str).collect();
    let out = run(&args);
    for (name, _) in &models {
        assert!(out.contains(&format!("| {name} |")), "{name}: {out}");
    }
    let report = std::fs::read_to_string(rep.join("report.md")).unwrap();
    assert!(
        report.contains("leaves out education, cohort, region"),
        "calibration notes the absent attributes: {report:.3000}"
    );
    assert!(!report.contains("| oracle |"), "no oracle without a world");
}

/// The committed example preset and its panel stay valid: the panel (no region, no birth year)
/// validates and the preset plans every model (the full run, about two minutes, is in
/// docs/reproduce.md).
#[test]
fn example_panel_preset_plans_every_model_on_the_committed_panel() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let panel = format!("{root}/examples/panel/panel.csv");
    let o = labor(&["data", "validate", &panel]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let header = std::fs::read_to_string(&panel).unwrap();
    assert!(header.starts_with("dataset,person_id,year,label,education,gender,race\n"));
    let dir = tempfile::tempdir().unwrap();
    let o = labor(&[
        "reproduce",
        "--preset",
        &format!("{root}/presets/example-panel.toml"),
        "--out",
        p(dir.path()),
        "--dry-run",
    ]);
    let se = text(&o).1;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    for m in [
        "read panel example",
        "score markov1 on example",
        "score mnl on example",
        "score bag-of-jobs on example",
        "score career on example",
        "score career-pretrained on example",
        "score lm-ft on example",
    ] {
        assert!(se.contains(m), "{m} missing:\n{se}");
    }
}

/// A tiny from-scratch LM pre-trained on a study's own panels (`[lm.pretrain]`) and fine-tuned.
const TINY_PRETRAIN_LM: &str = "[lm]\nuntuned = false\n[lm.pretrain.model]\nvocab_size = 400\n\
    label_tokens = true\n[lm.pretrain.model.scratch]\nhidden_size = 16\nintermediate_size = 32\n\
    num_hidden_layers = 1\nnum_attention_heads = 2\nmax_position_embeddings = 512\n\
    [lm.pretrain.optim]\nlr = 1e-3\n[lm.pretrain.train]\ntotal_steps = 2\nbatch_size = 4\n\
    eval_every = 2\neval_texts = 4\n[lm.finetune.optim]\nlr = 1e-3\n[lm.finetune.train]\n\
    total_steps = 2\nbatch_size = 4\neval_every = 2\neval_texts = 4\n";

/// A study on the committed six-label panel (its own taxonomy, no resume corpus): the committed
/// preset plans every model but career-pretrained, the LM's base pre-trained on the panel's
/// training persons; a shrunk copy runs end to end with the LM in the headline; career-pretrained
/// without a corpus is refused, saying "world or panel".
#[test]
fn a_custom_taxonomy_study_without_a_corpus_runs_every_model_the_lm_included() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("plan");
    let o = labor(&[
        "reproduce",
        "--preset",
        &format!("{root}/presets/example-activity.toml"),
        "--out",
        p(&out),
        "--dry-run",
    ]);
    let se = text(&o).1;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    for m in [
        "read panel activity",
        "pre-train the LM base on the surveys' training persons",
        "score markov1 on activity",
        "score markov2 on activity",
        "score mnl on activity",
        "score bag-of-jobs on activity",
        "score career on activity",
        "score lm-ft on activity",
    ] {
        assert!(se.contains(m), "{m} missing:\n{se}");
    }
    let base = std::fs::read_to_string(out.join("runs/lm-base.toml")).unwrap();
    assert!(
        base.contains("panels = [\"panels/activity/panel.parquet\"]")
            && base.contains("held_out = [\"panels/activity/panel.parquet\"]")
            && !base.contains("tokenizer_panels"),
        "{base}"
    );
    // The same study, shrunk, end to end.
    let panel = format!("{root}/examples/activity/panel.csv");
    let tax = format!("{root}/examples/activity/taxonomy.csv");
    let study = |models: &str| {
        format!(
            "score_persons = 10\n[panels.activity]\npath = {panel:?}\ntaxonomy = {tax:?}\n\
             [comparison]\nmodels = [{models}]\n[comparison.args]\nmnl = [\"--lambdas\", \"1e-2\"]\n\
             bag-of-jobs = [\"--width\", \"8\", \"--epochs\", \"1\"]\n\
             career = [\"--layers\", \"1\", \"--width\", \"8\", \"--heads\", \"2\", \"--ffn\", \
             \"16\", \"--epochs\", \"1\"]\n[eval]\nbootstrap = 20\n{TINY_PRETRAIN_LM}"
        )
    };
    let preset = d.join("study.toml");
    std::fs::write(
        &preset,
        study("\"markov1\", \"markov2\", \"mnl\", \"bag-of-jobs\", \"career\""),
    )
    .unwrap();
    let o = labor(&[
        "reproduce",
        "--preset",
        p(&preset),
        "--out",
        p(&d.join("run")),
    ]);
    let (so, se) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{so}\n{se}");
    for m in [
        "markov1",
        "markov2",
        "mnl",
        "bag-of-jobs",
        "career",
        "lm-ft",
    ] {
        assert!(so.contains(&format!("| {m} |")), "{m} missing:\n{so}");
    }
    std::fs::write(&preset, study("\"markov1\", \"career-pretrained\"")).unwrap();
    let o = labor(&[
        "reproduce",
        "--preset",
        p(&preset),
        "--out",
        p(&d.join("cp")),
    ]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    let err = text(&o).1;
    assert!(
        err.contains("career-pretrained")
            && err.contains("world or panel with role = \"pretrain\""),
        "{err}"
    );
}

/// No evaluated person in training data: a pre-training panel that is the survey's file is
/// refused when planning; a corpus holding survey persons under another dataset name (so other
/// splits) is refused by the stage that would train on it (career-pretrained's fit, the LM's
/// pre-training), exit 2 naming the corpus and persons; `--allow-overlap` runs it, warning, and
/// the report says so.
#[test]
fn a_pretrain_corpus_holding_test_persons_exits_2_unless_allowed() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let panel = format!("{root}/examples/activity/panel.csv");
    let tax = format!("{root}/examples/activity/taxonomy.csv");
    let csv = std::fs::read_to_string(&panel).unwrap();
    let copy = d.join("copy.csv");
    std::fs::write(&copy, &csv).unwrap();
    let corpus = d.join("corpus.csv");
    std::fs::write(&corpus, csv.replace("\nACTIVITY,", "\nRESUMES,")).unwrap();
    let preset = d.join("study.toml");
    let write = |corpus: &Path, models: &str, lm: &str| {
        std::fs::write(
            &preset,
            format!(
                "score_persons = 10\n[panels.s]\npath = {panel:?}\ntaxonomy = {tax:?}\n\
                 [panels.c]\npath = {:?}\ntaxonomy = {tax:?}\nrole = \"pretrain\"\n\
                 [comparison]\nmodels = [{models}]\n[comparison.args]\n\
                 career-pretrained = [\"--layers\", \"1\", \"--width\", \"8\", \"--heads\", \
                 \"2\", \"--ffn\", \"16\", \"--epochs\", \"1\", \"--pretrain-epochs\", \"1\"]\n\
                 [eval]\nbootstrap = 20\n{lm}",
                p(corpus)
            ),
        )
        .unwrap();
    };
    let repro = |out: &str, extra: &[&str]| {
        let mut args = vec!["reproduce", "--preset", p(&preset), "--out"];
        let o = d.join(out);
        args.push(p(&o));
        args.extend(extra);
        labor(&args)
    };
    // The survey's own file (and a byte copy of it) as the corpus: refused before any stage.
    for f in [Path::new(&panel), copy.as_path()] {
        write(f, "\"markov1\"", TINY_PRETRAIN_LM);
        let o = repro("same", &[]);
        assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
        let err = text(&o).1;
        assert!(err.contains("is the same file as survey panel s"), "{err}");
        assert!(!d.join("same/stages").exists(), "nothing ran");
    }
    // Survey persons under another dataset name: the fit and the pre-training refuse them.
    write(&corpus, "\"markov1\", \"career-pretrained\"", "");
    let o = repro("cp", &[]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    let err = text(&o).1;
    assert!(
        err.contains("--pretrain panels/c/panel.parquet: ")
            && err.contains("validation or test persons of an evaluated panel, e.g. RESUMES/"),
        "{err}"
    );
    assert!(err.contains("--allow-overlap"), "{err}");
    write(&corpus, "\"markov1\"", TINY_PRETRAIN_LM);
    let o = repro("lm", &[]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    let err = text(&o).1;
    assert!(
        err.contains("pre-train the LM base")
            && err.contains("panels/c/panel.parquet: ")
            && err.contains("(the same person id and records as ACTIVITY/"),
        "{err}"
    );
    // Allowed: every stage warns, the report records it.
    write(
        &corpus,
        "\"markov1\", \"career-pretrained\"",
        TINY_PRETRAIN_LM,
    );
    let o = repro("ok", &["--allow-overlap"]);
    let (so, se) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{so}\n{se}");
    assert!(
        so.contains("| lm-ft |") && so.contains("| career-pretrained |"),
        "{so}"
    );
    let report = std::fs::read_to_string(d.join("ok/report/report.md")).unwrap();
    assert!(report.contains("allow_overlap is on"), "{report:.3000}");
}

/// `labor tokenizer train --held-out`: a panel holding another panel's persons under another
/// dataset name is refused (exit 2, naming them) unless `--allow-overlap`.
#[test]
fn tokenizer_train_refuses_held_out_persons_unless_allowed() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let panel = format!("{root}/examples/activity/panel.csv");
    let tax = format!("{root}/examples/activity/taxonomy.csv");
    let corpus = d.join("corpus.csv");
    let csv = std::fs::read_to_string(&panel).unwrap();
    std::fs::write(&corpus, csv.replace("\nACTIVITY,", "\nOTHER,")).unwrap();
    let out = d.join("tokenizer.json");
    let train = |extra: &[&str]| {
        let mut args = vec![
            "tokenizer",
            "train",
            "--panel",
            p(&corpus),
            "--taxonomy",
            &tax,
            "--vocab-size",
            "300",
            "--out",
            p(&out),
        ];
        args.extend(extra);
        labor(&args)
    };
    let o = train(&[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "no held-out panel: {:?}",
        text(&o)
    );
    let o = train(&["--held-out", &panel]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    let err = text(&o).1;
    assert!(
        err.contains("corpus.csv: ") && err.contains("e.g. OTHER/"),
        "{err}"
    );
    let o = train(&["--held-out", &panel, "--allow-overlap"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).1.contains("warning: "), "{:?}", text(&o));
}

/// `labor synth --export-extract nls|psid DIR` writes the world as a raw extract (wide CSV with
/// reference-number columns, negative or PSID missing codes, non-interviews, census-style codes
/// with a crosswalk, a codebook, a mapping); importing it gives back the world's panel exactly.
#[test]
fn exported_nls_and_psid_extracts_import_back_identical_to_the_world() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (world, style) in [("nlsy79", "nls"), ("psid", "psid")] {
        let (w, x) = (d.join(world), d.join(format!("{style}-extract")));
        let o = labor(&[
            "synth",
            "--world",
            world,
            "--workers",
            "300",
            "--seed",
            "3",
            "--out",
            p(&w),
            "--export-extract",
            style,
            p(&x),
        ]);
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        for f in [
            "extract.csv",
            "crosswalk.csv",
            "mapping.toml",
            "codebook.md",
        ] {
            assert!(x.join(f).exists(), "{f}");
        }
        let extract = std::fs::read_to_string(x.join("extract.csv")).unwrap();
        let header = extract.lines().next().unwrap();
        if style == "nls" {
            assert!(header.starts_with("R0000100,"), "{header}");
            assert!(extract.contains(",-5,"), "non-interviews are -5");
            assert!(
                extract.contains(",-4,"),
                "no occupation when not working is -4"
            );
        } else {
            assert!(header.starts_with("ER30001,"), "{header}");
        }
        let imported = d.join(format!("{style}.parquet"));
        let o = labor(&[
            "data",
            "import",
            "--mapping",
            p(&x.join("mapping.toml")),
            p(&x.join("extract.csv")),
            "--out",
            p(&imported),
        ]);
        assert_eq!(o.status.code(), Some(0), "{style}: {:?}", text(&o));
        assert!(
            text(&o).0.contains("waves not interviewed"),
            "{:?}",
            text(&o)
        );
        let read = |path: &Path| {
            labor_data::formats::parquet::read_panel_parquet(
                std::fs::File::open(path).unwrap(),
                labor_data::Taxonomy::embedded_default(),
                labor_data::BuildOptions::default(),
            )
            .unwrap()
            .0
        };
        let (want, got) = (read(&w.join("panel.parquet")), read(&imported));
        assert_eq!(want.persons.len(), got.persons.len(), "{style}");
        for (a, b) in want.persons.iter().zip(&got.persons) {
            assert_eq!(a, b, "{style}: person {}", a.person_id);
        }
        assert_eq!(want, got, "{style}");
    }
}

/// The persons of a Parquet panel (embedded taxonomy).
fn read_panel(path: &Path) -> labor_data::Panel {
    labor_data::formats::parquet::read_panel_parquet(
        std::fs::File::open(path).unwrap(),
        labor_data::Taxonomy::embedded_default(),
        labor_data::BuildOptions::default(),
    )
    .unwrap()
    .0
}

/// A person's first `t` records as a `labor predict` history asking for record t's year and
/// education.
fn history_json(person: &labor_data::Person, tax: &labor_data::Taxonomy, t: usize) -> String {
    let rec = |r: &labor_data::Record| {
        serde_json::json!({
            "year": r.year,
            "label": tax.label(r.label).code,
            "education": r.education.map(|e| e.as_str()),
        })
    };
    serde_json::json!({
        "id": format!("{}#{t}", person.person_id),
        "dataset": person.dataset,
        "gender": person.gender,
        "race": person.race,
        "region": person.region,
        "birth_year": person.birth_year,
        "records": person.records[..t].iter().map(rec).collect::<Vec<_>>(),
        "next": {
            "year": person.records[t].year,
            "education": person.records[t].education.map(|e| e.as_str()),
        },
    })
    .to_string()
}

#[test]
fn predict_equals_the_full_distribution_of_score_for_every_model_kind() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (panel_path, tok) = world_and_tokenizer(d, "4", "1500");
    let world = d.join("syn");
    let panel = read_panel(&panel_path);
    let tax = &panel.taxonomy;
    let k = tax.len().to_string();
    let mut models: Vec<(String, PathBuf, f64)> = vec![("oracle".into(), world.clone(), 1e-12)];
    let tiny = [
        "--layers", "1", "--width", "16", "--heads", "2", "--ffn", "32", "--epochs", "1",
        "--device", "cpu",
    ];
    for (kind, extra, tol) in [
        ("markov1", vec![], 1e-12),
        ("markov2", vec![], 1e-12),
        ("mnl", vec!["--lambdas", "1e-3"], 1e-12),
        ("bag-of-jobs", vec!["--width", "8", "--epochs", "1"], 1e-6),
        ("career", tiny.to_vec(), 1e-6),
    ] {
        let out = d.join(kind);
        let mut args = vec![
            "fit",
            "--model",
            kind,
            "--panel",
            p(&panel_path),
            "--out",
            p(&out),
        ];
        args.extend(extra);
        let o = labor(&args);
        assert_eq!(o.status.code(), Some(0), "{kind}: {:?}", text(&o));
        models.push((kind.into(), out, tol));
    }
    let shape = d.join("tiny.toml");
    std::fs::write(
        &shape,
        "hidden_size = 32\nintermediate_size = 64\nnum_hidden_layers = 1\n\
         num_attention_heads = 4\nnum_key_value_heads = 2\nmax_position_embeddings = 2048\n",
    )
    .unwrap();
    let lm = d.join("lm");
    let o = labor(&[
        "lm",
        "init",
        "--config",
        p(&shape),
        "--tokenizer",
        p(&tok),
        "--out",
        p(&lm),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    models.push(("lm".into(), lm, 1e-6));
    let codes: Vec<String> = tax.labels().iter().map(|l| l.code.clone()).collect();
    for (kind, dir_, tol) in &models {
        let full = d.join(format!("{kind}-full.parquet"));
        let o = labor(&[
            "score",
            "--model",
            p(dir_),
            "--panel",
            p(&panel_path),
            "--limit",
            "3",
            "--out",
            p(&d.join(format!("{kind}.parquet"))),
            "--full-dist",
            p(&full),
        ]);
        assert_eq!(o.status.code(), Some(0), "{kind}: {:?}", text(&o));
        let rows = labor_data::predictions::read_full_by_class(
            std::fs::File::open(&full).unwrap(),
            &codes,
            codes.len(),
            |c| tax.by_code(c).map(|id| id.index()),
        )
        .unwrap();
        // Every record after the first of the scored persons, as a history of its own.
        let scored: Vec<&labor_data::Person> = panel
            .persons
            .iter()
            .filter(|q| rows.iter().any(|r| r.person_id == q.person_id))
            .collect();
        assert_eq!(scored.len(), 3, "{kind}");
        let mut lines = String::new();
        for q in &scored {
            for t in 1..q.records.len() {
                lines.push_str(&history_json(q, tax, t));
                lines.push('\n');
            }
        }
        let input = d.join(format!("{kind}-histories.jsonl"));
        std::fs::write(&input, &lines).unwrap();
        let o = labor(&[
            "predict",
            "--model",
            p(dir_),
            "--input",
            p(&input),
            "--format",
            "json",
            "--top",
            &k,
        ]);
        assert_eq!(o.status.code(), Some(0), "{kind}: {:?}", text(&o));
        let out = text(&o).0;
        let mut n = 0;
        let mut worst = 0.0f64;
        for line in out.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let id = v["id"].as_str().unwrap();
            let (pid, t) = id.split_once('#').unwrap();
            let t: i32 = t.parse().unwrap();
            let row = rows
                .iter()
                .find(|r| r.person_id == pid && r.t == t + 1)
                .unwrap_or_else(|| panic!("{kind}: no score row for {id}"));
            let top = v["top"].as_array().unwrap();
            assert_eq!(top.len(), codes.len(), "{kind}");
            for e in top {
                let i = tax.by_code(e["code"].as_str().unwrap()).unwrap().index();
                worst = worst.max((e["p"].as_f64().unwrap() - row.probs[i]).abs());
            }
            n += 1;
        }
        assert_eq!(n, lines.lines().count(), "{kind}");
        assert!(
            worst <= *tol,
            "{kind}: predict differs from score by {worst:e} (tolerance {tol:e})"
        );
        eprintln!("{kind}: {n} histories, largest difference {worst:e}");
    }
    // Unknown labels exit 2 and name the closest titles.
    let q = &panel.persons[0];
    let mut bad: serde_json::Value = serde_json::from_str(&history_json(q, tax, 1)).unwrap();
    let title = &tax.label(q.records[0].label).title;
    let typo = format!("{}x", title);
    bad["records"][0]["label"] = typo.clone().into();
    let input = d.join("bad.jsonl");
    std::fs::write(&input, format!("{bad}\n")).unwrap();
    let o = labor(&[
        "predict",
        "--model",
        p(&d.join("mnl")),
        "--input",
        p(&input),
    ]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    let err = text(&o).1;
    assert!(
        err.contains("line 1")
            && err.contains("unknown label")
            && err.contains(&format!("{title:?}")),
        "{err}"
    );
    // CSV input and the readable table.
    let csv = d.join("h.csv");
    std::fs::write(
        &csv,
        format!(
            "person_id,year,label,education\nana,2001,\"{title}\",bachelors\nana,2002,UNEMP,\n"
        ),
    )
    .unwrap();
    let o = labor(&[
        "predict",
        "--model",
        p(&d.join("markov1")),
        "--input",
        p(&csv),
        "--top",
        "3",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let out = text(&o).0;
    assert!(
        out.contains("ana (2 records, last: Unemployed in 2002) → 2003, bachelors"),
        "{out}"
    );
    assert_eq!(
        out.lines()
            .filter(|l| l.trim_start().starts_with(['1', '2', '3']))
            .count(),
        3,
        "{out}"
    );
}

fn csv_rows(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let h: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    r.records()
        .map(|x| {
            let x = x.unwrap();
            h.iter().cloned().zip(x.iter().map(String::from)).collect()
        })
        .collect()
}

#[test]
fn simulate_counterfactuals_and_forecast_evaluation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let world = d.join("syn");
    let o = labor(&[
        "synth",
        "--world",
        "nlsy79",
        "--workers",
        "150",
        "--seed",
        "8",
        "--out",
        p(&world),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let panel = world.join("panel.parquet");
    let markov = d.join("markov1");
    let o = labor(&[
        "fit",
        "--model",
        "markov1",
        "--panel",
        p(&panel),
        "--out",
        p(&markov),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let sim = |model: &Path, out: &Path, extra: &[&str]| {
        let mut args = vec![
            "simulate",
            "--model",
            p(model),
            "--panel",
            p(&panel),
            "--split",
            "all",
            "--limit",
            "40",
            "--years",
            "3",
            "--draws",
            "10",
            "--out",
            p(out),
        ];
        if !extra.contains(&"--seed") {
            args.extend(["--seed", "5"]);
        }
        args.extend(extra);
        let o = labor(&args);
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        text(&o).0
    };
    // The oracle under a counterfactual: every file, paired differences that move.
    let cf = d.join("cf");
    let said = sim(&world, &cf, &["--set", "education=doctorate"]);
    assert!(
        said.contains("oracle, 40 persons × 10 draws × 3 years = 1200 simulated records"),
        "{said}"
    );
    let records = csv_rows(&cf.join("records.csv"));
    assert_eq!(records.len(), 2400);
    assert!(
        records
            .iter()
            .filter(|r| r["scenario"] == "counterfactual")
            .all(|r| r["education"] == "doctorate")
    );
    let shares = csv_rows(&cf.join("shares.csv"));
    let mut by_year: std::collections::BTreeMap<(String, String), f64> = Default::default();
    for r in &shares {
        *by_year
            .entry((r["scenario"].clone(), r["year"].clone()))
            .or_default() += r["share"].parse::<f64>().unwrap();
    }
    assert!(
        by_year.values().all(|s| (s - 1.0).abs() < 1e-9),
        "{by_year:?}"
    );
    assert!(!csv_rows(&cf.join("mobility.csv")).is_empty());
    let diff = csv_rows(&cf.join("difference.csv"));
    assert!(
        diff.iter()
            .any(|r| r["difference"].parse::<f64>().unwrap() != 0.0)
    );
    // markov1 does not read education after the first record: with common random numbers the
    // same counterfactual changes nothing, exactly.
    let m = d.join("m-cf");
    sim(&markov, &m, &["--set", "education=doctorate"]);
    let diff = csv_rows(&m.join("difference.csv"));
    assert!(!diff.is_empty());
    assert!(
        diff.iter()
            .all(|r| r["difference"] == "0" && r["se"] == "0"),
        "{:?}",
        &diff[..3]
    );
    // Bad settings are invalid input.
    let o = labor(&[
        "simulate",
        "--model",
        p(&markov),
        "--panel",
        p(&panel),
        "--set",
        "height=2",
        "--out",
        p(&d.join("x")),
    ]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("cannot be set"), "{:?}", text(&o));
    // Forecast evaluation: cut at 1990, the world's own simulation as the truth.
    let cut = ["--cut", "1990"];
    let truth = d.join("truth");
    let mut t_args = cut.to_vec();
    t_args.extend(["--seed", "99"]);
    sim(&world, &truth, &t_args);
    let (fo, fm) = (d.join("f-oracle"), d.join("f-markov"));
    sim(&world, &fo, &cut);
    sim(&markov, &fm, &cut);
    let rep = d.join("forecast");
    let o = labor(&[
        "eval",
        "--forecast",
        p(&fo),
        p(&fm),
        "--forecast-truth",
        p(&truth),
        "--out",
        p(&rep),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let rows = csv_rows(&rep.join("tables/forecast.csv"));
    assert_eq!(rows.len(), 6, "{rows:?}");
    for r in &rows {
        let tv: f64 = r["TV shares"].parse().unwrap();
        assert!((0.0..=1.0).contains(&tv), "{r:?}");
    }
    assert!(
        rows.iter().any(|r| r["model"] == "oracle") && rows.iter().any(|r| r["model"] == "markov1")
    );
    // The realised path's log-score: the nlsy79 world is annual to 1994, so paths after a 1990
    // cut are scored at every horizon, and the oracle scores them better than markov1.
    assert!(fo.join("realised.csv").exists());
    let score = |m: &str, h: &str| -> f64 {
        rows.iter()
            .find(|r| r["model"] == m && r["horizon"] == h)
            .unwrap()["path log-score"]
            .parse()
            .unwrap()
    };
    for h in ["1", "2", "3"] {
        assert!(
            score("oracle", h) < 0.0 && score("oracle", h) > score("markov1", h),
            "horizon {h}"
        );
    }
    let svg = std::fs::read_to_string(rep.join("plots/forecast.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("markov1"));
    // A different cut is refused.
    let other = d.join("f-other");
    sim(&markov, &other, &["--cut", "1992"]);
    let o = labor(&[
        "eval",
        "--forecast",
        p(&other),
        "--forecast-truth",
        p(&truth),
        "--out",
        p(&d.join("r2")),
    ]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    // With prediction files the forecast table and plot join the full report.
    let preds = d.join("markov1.parquet");
    let o = labor(&[
        "score",
        "--model",
        p(&markov),
        "--panel",
        p(&panel),
        "--out",
        p(&preds),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let full = d.join("full-report");
    let o = labor(&[
        "eval",
        "--preds",
        p(&preds),
        "--panel",
        p(&panel),
        "--bootstrap",
        "20",
        "--forecast",
        p(&fo),
        p(&fm),
        "--forecast-truth",
        p(&truth),
        "--out",
        p(&full),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let md = std::fs::read_to_string(full.join("report.md")).unwrap();
    assert!(
        md.contains("Forecast: distance from the truth") && md.contains("Forecast truth:"),
        "{md:.3000}"
    );
    assert!(full.join("plots/forecast.svg").exists() && full.join("tables/forecast.csv").exists());
}

/// One HTTP/1.1 request on a new connection: (status, body).
fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // The server may answer (413) and close before reading a large body: a failed write is fine.
    let _ = s.write_all(head.as_bytes()).and_then(|_| s.write_all(body));
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (status, body)
}

/// `labor serve` on a free loopback port; killed on drop.
struct Server(std::process::Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(args: &[&str]) -> Server {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_labor"))
        .arg("serve")
        .args(args)
        .args(["--addr", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_string();
    Server(child, addr)
}

/// A synthetic world (120 workers) and an MNL fitted on it, served together on loopback; the
/// MNL's directory is returned too.
fn serve_mnl_and_oracle(d: &Path) -> (Server, PathBuf) {
    let world = d.join("syn");
    let o = labor(&[
        "synth",
        "--world",
        "nlsy79",
        "--workers",
        "120",
        "--seed",
        "3",
        "--out",
        p(&world),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let mnl = d.join("mnl");
    let o = labor(&[
        "fit",
        "--model",
        "mnl",
        "--lambdas",
        "1e-3",
        "--panel",
        p(&world.join("panel.parquet")),
        "--out",
        p(&mnl),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let mnl_arg = format!("mnl={}", mnl.display());
    let world_arg = format!("oracle={}", world.display());
    let s = serve(&[
        "--model",
        &mnl_arg,
        "--model",
        &world_arg,
        "--max-records",
        "50",
    ]);
    (s, mnl)
}

/// A three-record career, as the page would send it.
fn web_career() -> serde_json::Value {
    let tax = labor_data::Taxonomy::embedded_default();
    let occ: Vec<_> = tax.occupations().take(40).cloned().collect();
    serde_json::json!({"id": "web", "gender": "female", "birth_year": 1965, "records": [
        {"year": 1990, "label": occ[3].title, "education": "high_school_diploma"},
        {"year": 1991, "label": occ[3].title, "education": "high_school_diploma"},
        {"year": 1992, "label": occ[30].title, "education": "some_college"}]})
}

/// The API's answer to `career` (a 200 answer).
fn api_predict(a: &str, career: &serde_json::Value) -> serde_json::Value {
    let (st, body) = http(
        a,
        "POST",
        "/v1/predict",
        serde_json::json!({"history": career})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(st, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The top title of an API answer.
fn top_title(v: &serde_json::Value) -> String {
    v["predictions"][0]["top"][0]["title"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `/healthz` shows each model's queue (waiting, dropped); SIGTERM lets a request in flight
/// finish, and the server then exits 0.
#[cfg(unix)]
#[test]
fn serve_shows_its_queues_and_drains_on_sigterm() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (mut s, _) = serve_mnl_and_oracle(d);
    let health = |a: &str| -> serde_json::Value {
        let (st, body) = http(a, "GET", "/healthz", b"");
        assert_eq!(st, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let h = health(&s.1);
    assert_eq!(h["queues"].as_array().unwrap().len(), 2, "{h}");
    assert_eq!(h["queues"][0]["model"], "mnl", "{h}");
    assert_eq!(h["queues"][0]["state"], "loaded", "{h}");
    assert_eq!(h["queues"][0]["waiting"], 0, "{h}");
    assert_eq!(h["queues"][0]["dropped"], 0, "{h}");

    let body = serde_json::json!({"history": web_career()}).to_string();

    // A request whose head has arrived when SIGTERM comes: its body follows, it is answered.
    let mut c = std::net::TcpStream::connect(&s.1).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "POST /v1/predict HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        s.1,
        body.len()
    );
    c.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let kill = Command::new("kill")
        .args(["-TERM", &s.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    std::thread::sleep(std::time::Duration::from_millis(300));
    c.write_all(body.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("\"predictions\""), "{out}");
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(st) = s.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "still running 20 s after SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    assert!(std::net::TcpStream::connect(&s.1).is_err());
}

#[test]
fn serve_answers_the_api_and_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A model directory that is not one: invalid input before the server starts.
    let o = labor(&[
        "serve",
        "--model",
        p(&d.join("nope")),
        "--addr",
        "127.0.0.1:0",
    ]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(
        text(&o).1.contains("not a model directory"),
        "{:?}",
        text(&o)
    );
    let (s, mnl) = serve_mnl_and_oracle(d);
    let a = s.1.as_str();
    let (st, body) = http(a, "GET", "/healthz", b"");
    assert_eq!(st, 200, "{body}");
    assert!(
        body.contains("\"mnl\"") && body.contains("\"oracle\""),
        "{body}"
    );
    let (st, body) = http(a, "GET", "/v1/labels", b"");
    assert_eq!(st, 200);
    let labels: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        labels["labels"].as_array().unwrap().len(),
        labor_data::Taxonomy::embedded_default().len()
    );
    // A three-record career, as the page would send it, and the same through `labor predict`.
    let occ: Vec<_> = labor_data::Taxonomy::embedded_default()
        .occupations()
        .take(40)
        .cloned()
        .collect();
    let career = web_career();
    let v = api_predict(a, &career);
    let input = d.join("one.jsonl");
    std::fs::write(&input, format!("{career}\n")).unwrap();
    let o = labor(&[
        "predict",
        "--model",
        p(&mnl),
        "--input",
        p(&input),
        "--format",
        "json",
    ]);
    let cli: serde_json::Value = serde_json::from_str(text(&o).0.trim()).unwrap();
    assert_eq!(
        cli["top"], v["predictions"][0]["top"],
        "the API and the command agree"
    );
    let (st, body) = http(
        a,
        "POST",
        "/v1/simulate",
        serde_json::json!({"model": "oracle", "history": career, "years": 4, "draws": 7})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(st, 200, "{body}");
    let sim: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(sim["paths"].as_array().unwrap().len(), 7);
    assert!(
        sim["paths"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p.as_array().unwrap().len() == 4)
    );
    // Bad input: 4xx with a JSON error, and the server stays healthy.
    let unknown = serde_json::json!({"history": {"records": [{"year": 1990, "label": format!("{}x", occ[3].title)}]}});
    let long: Vec<serde_json::Value> = (0..10_000)
        .map(|i| serde_json::json!({"year": 1000 + i, "label": "UNEMP"}))
        .collect();
    let long = serde_json::json!({"history": {"records": long}}).to_string();
    let short_long: Vec<serde_json::Value> = (0..60)
        .map(|i| serde_json::json!({"year": 1900 + i, "label": "UNEMP"}))
        .collect();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "/v1/predict",
            b"{\"history\": {".to_vec(),
            400,
            "malformed JSON",
        ),
        (
            "/v1/predict",
            unknown.to_string().into_bytes(),
            422,
            "closest titles",
        ),
        ("/v1/predict", long.into_bytes(), 413, ""),
        (
            "/v1/predict",
            serde_json::json!({"history": {"records": short_long}})
                .to_string()
                .into_bytes(),
            422,
            "at most 50",
        ),
        ("/v1/predict", vec![b'x'; 200_000], 413, ""),
        (
            "/v1/predict",
            b"{\"histories\": [], \"colour\": 1}".to_vec(),
            422,
            "unknown field",
        ),
        (
            "/v1/predict",
            serde_json::json!({"model": "nope", "history": career})
                .to_string()
                .into_bytes(),
            404,
            "served: mnl, oracle",
        ),
        (
            "/v1/simulate",
            serde_json::json!({"history": career, "draws": 100000})
                .to_string()
                .into_bytes(),
            422,
            "draws",
        ),
        ("/v1/nothing", b"{}".to_vec(), 404, "no such route"),
    ];
    for (path, body, want, says) in cases {
        let (st, got) = http(a, "POST", path, &body);
        assert_eq!(st, want, "{path}: {got}");
        assert!(got.contains(says), "{path}: {got}");
        if !says.is_empty() {
            assert!(
                serde_json::from_str::<serde_json::Value>(&got).unwrap()["error"].is_string(),
                "{got}"
            );
        }
    }
    let (st, _) = http(a, "GET", "/healthz", b"");
    assert_eq!(st, 200, "healthy after bad input");
}

/// The server's page in headless Chromium: the career typed in through the address, the buttons
/// pressed, the chart's top label read from the DOM (the API's), and a screenshot taken (kept
/// under target/serve-screenshot.png). Ignored, with the reason, where Chromium is not installed
/// (`.ci/run` installs it).
#[test]
#[cfg_attr(
    not(has_chromium),
    ignore = "Chromium is not installed (Debian package `chromium`)"
)]
fn serve_page_works_in_headless_chromium() {
    let chromium = chromium();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (s, _) = serve_mnl_and_oracle(d);
    let a = s.1.as_str();
    let career = web_career();
    let api_top = top_title(&api_predict(a, &career));
    let enc = |s: &str| {
        s.replace('%', "%25")
            .replace(' ', "%20")
            .replace('&', "%26")
            .replace(',', "%2C")
            .replace('/', "%2F")
            .replace('#', "%23")
            .replace('|', "%7C")
            .replace(';', "%3B")
    };
    let rows: Vec<String> = career["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}|{}|{}",
                r["year"],
                enc(r["label"].as_str().unwrap()),
                r["education"].as_str().unwrap()
            )
        })
        .collect();
    let url = format!(
        "http://{a}/#career={}&gender=female&birth_year=1965&go=1",
        rows.join("%3B")
    );
    let profile = d.join("chromium-profile");
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-quic",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ];
    let o = Command::new(chromium)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--virtual-time-budget=15000", "--dump-dom", &url])
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&o.stdout);
    let want = format!("data-top-label=\"{}\"", api_top.replace('&', "&amp;"));
    assert!(
        dom.contains(&want),
        "{want} not in the DOM: {}",
        &dom[..dom.len().min(3000)]
    );
    assert!(
        dom.contains("data-paths=\"30\""),
        "no fan of paths in the DOM"
    );
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/serve-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let o = Command::new(chromium)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--virtual-time-budget=15000", "--window-size=1280,1000"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .unwrap();
    let png = std::fs::read(&shot).unwrap_or_else(|_| panic!("no screenshot: {:?}", text(&o)));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
}

/// `labor reproduce` redoes exactly the stages that depend on an input whose contents changed:
/// two user panels, a comparison model per panel and one language model fine-tuned on both. A
/// new modification time alone redoes nothing. `--dry-run` prints only `labor` command lines,
/// and each runs by hand.
#[test]
fn reproduce_redoes_exactly_the_stages_that_depend_on_a_changed_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (panel, _) = few_covariates_panel(d);
    let panel_b = d.join("panel_b.csv");
    let csv = std::fs::read_to_string(&panel).unwrap();
    // Other persons (ids b0, b1, ...): the same persons under another dataset name would be
    // refused, as training on the other panel's test persons.
    std::fs::write(&panel_b, csv.replace("\nEXT,", "\nEXB,b")).unwrap();
    let preset = d.join("two.toml");
    std::fs::write(
        &preset,
        format!(
            r#"
score_persons = 12
[panels.a]
path = "panel.csv"
taxonomy = "taxonomy.csv"
[panels.b]
path = "panel_b.csv"
taxonomy = "taxonomy.csv"
[comparison]
models = ["markov1"]
[lm]
untuned = false
[lm.finetune.train]
total_steps = 2
batch_size = 2
eval_every = 2
eval_texts = 4
[eval]
bootstrap = 10
{TINY_LM}"#
        ),
    )
    .unwrap();
    let out = d.join("out");
    let reproduce = |extra: &[&str]| {
        let mut args = vec!["reproduce", "--preset", p(&preset), "--out", p(&out)];
        args.extend(extra);
        let o = labor(&args);
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        text(&o)
    };
    // The stages a dry run would run (their descriptions), and its stdout.
    let to_run = || {
        let (so, se) = reproduce(&["--dry-run"]);
        let names: Vec<String> = se
            .lines()
            .filter_map(|l| l.strip_suffix(": to run"))
            .map(|l| l.split_once("] ").unwrap().1.to_string())
            .collect();
        (names, so)
    };
    let (first, so) = to_run();
    assert_eq!(first.len(), 10, "{first:?}");
    assert_eq!(so.lines().count(), 10, "{so}");
    reproduce(&[]);
    let (names, so) = to_run();
    assert!(names.is_empty() && so.is_empty(), "{names:?}\n{so}");
    // The same bytes written again: a new modification time, nothing to redo.
    std::fs::write(&panel_b, std::fs::read(&panel_b).unwrap()).unwrap();
    let (names, so) = to_run();
    assert!(names.is_empty() && so.is_empty(), "{names:?}\n{so}");
    // One person more in panel b: its stages, the pooled LM's and the report, nothing of a's.
    let mut csv = std::fs::read_to_string(&panel_b).unwrap();
    csv += "EXB,999,2001,W1,male,NA\nEXB,999,2002,T1,male,NA\n";
    std::fs::write(&panel_b, csv).unwrap();
    let (names, so) = to_run();
    let want = [
        format!("read panel b ({})", p(&panel_b)),
        "fit markov1 on b".into(),
        "score markov1 on b".into(),
        "fine-tune lm-ft on a+b".into(),
        "score lm-ft on a".into(),
        "score lm-ft on b".into(),
        "evaluate and write the report".into(),
    ];
    assert_eq!(names, want);
    // Each printed line is a `labor` command; run in order by hand, they redo the study.
    let lines: Vec<&str> = so.lines().collect();
    assert_eq!(lines.len(), want.len(), "{so}");
    for l in &lines {
        let rest = l.strip_prefix("labor -C ").expect("a labor command line");
        let o = Command::new("sh")
            .args([
                "-c",
                &format!("'{}' -C {rest}", env!("CARGO_BIN_EXE_labor")),
            ])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{l}: {:?}", text(&o));
    }
    let md = std::fs::read_to_string(out.join("report/report.md")).unwrap();
    assert!(md.contains("No oracle for a, b"), "{md:.1500}");
    // The reproduction itself redoes the same stages and no other.
    let (so, _) = reproduce(&[]);
    let redone: Vec<&str> = so
        .lines()
        .filter(|l| l.starts_with('[') && !l.contains("(cached)"))
        .collect();
    assert_eq!(redone.len(), want.len(), "{so}");
    for (l, w) in redone.iter().zip(&want) {
        assert!(l.contains(w.as_str()), "{l} is not {w}");
    }
}

/// `labor calibrate` on the validation split, `labor score --calibration`, and `labor eval`:
/// calibrated predictions are normalized, record their calibration, are never mixed with raw
/// ones, and `--calibrated` reports them in a headline of their own.
#[test]
fn calibration_is_fitted_on_valid_applied_when_scoring_and_never_mixed_with_raw() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let w = d.join("w");
    let o = labor(&[
        "synth",
        "--world",
        "nlsy79",
        "--workers",
        "300",
        "--seed",
        "5",
        "--out",
        p(&w),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let panel = w.join("panel.parquet");
    let m = d.join("m1");
    let o = labor(&[
        "fit",
        "--model",
        "markov1",
        "--panel",
        p(&panel),
        "--out",
        p(&m),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let o = labor(&["calibrate", "--model", p(&m), "--panel", p(&panel)]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(
        text(&o).0.contains("temperature-stay: temperature"),
        "{:?}",
        text(&o)
    );
    let cal: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(m.join("calibration.json")).unwrap())
            .unwrap();
    let (raw, after) = (
        cal["nll_raw"].as_f64().unwrap(),
        cal["nll_calibrated"].as_f64().unwrap(),
    );
    assert!(
        after <= raw && cal["records"].as_u64().unwrap() > 100,
        "{cal}"
    );
    assert!(
        cal["fitted_on"].as_str().unwrap().contains("valid split"),
        "{cal}"
    );
    let score = |out: &Path, extra: &[&str]| {
        let mut a = vec![
            "score",
            "--model",
            p(&m),
            "--panel",
            p(&panel),
            "--name",
            "markov1",
            "--out",
            p(out),
        ];
        a.extend(extra);
        let o = labor(&a);
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    };
    let (rawp, calp) = (d.join("raw.parquet"), d.join("cal.parquet"));
    score(&rawp, &[]);
    score(&calp, &["--calibration", p(&m.join("calibration.json"))]);
    let f = labor_data::predictions::read_predictions(std::fs::File::open(&calp).unwrap()).unwrap();
    assert!(f.metadata.iter().any(|(k, _)| k == "labor.calibration"));
    let r = labor_data::predictions::read_predictions(std::fs::File::open(&rawp).unwrap()).unwrap();
    assert!(!r.metadata.iter().any(|(k, _)| k == "labor.calibration"));
    // Applied: the same records, different probabilities, each a normalized distribution.
    assert_eq!(f.rows.len(), r.rows.len());
    assert!(
        f.rows
            .iter()
            .zip(&r.rows)
            .any(|(a, b)| (a.logp - b.logp).abs() > 1e-6)
    );
    assert!(
        f.rows
            .iter()
            .all(|x| x.leak.abs() < 1e-9 && (x.logp - x.logp_norm).abs() < 1e-9)
    );
    // Mixed in one evaluation: refused, naming both files.
    let o = labor(&[
        "eval",
        "--preds",
        p(&rawp),
        p(&calp),
        "--oracle",
        p(&w.join("oracle.parquet")),
        "--out",
        p(&d.join("mixed")),
    ]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("is calibrated and"), "{:?}", text(&o));
    // Apart: a second headline and the calibration in the notes.
    let rep = d.join("rep");
    let o = labor(&[
        "eval",
        "--preds",
        p(&rawp),
        "--calibrated",
        p(&calp),
        "--oracle",
        p(&w.join("oracle.parquet")),
        "--bootstrap",
        "50",
        "--out",
        p(&rep),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(rep.join("tables/headline_calibrated.csv").is_file());
    let md = std::fs::read_to_string(rep.join("report.md")).unwrap();
    assert!(md.contains("After post-hoc calibration"), "{md}");
    assert!(md.contains("markov1: calibrated post hoc"), "{md}");
    // A raw file passed as calibrated is refused.
    let o = labor(&[
        "eval",
        "--preds",
        p(&rawp),
        "--calibrated",
        p(&rawp),
        "--out",
        p(&d.join("bad")),
    ]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("not calibrated"), "{:?}", text(&o));
}

/// `train.objective = "label-softmax"` through `labor train`: the K-way validation loss is
/// reported and picks `best/`, and a model without label tokens is refused with exit 2.
#[test]
fn labor_train_label_softmax_objective_reports_and_refuses_multi_token_titles() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = tiny_run(d, "60");
    let a = d.join("a");
    let o = labor(&[
        "train",
        "--config",
        p(&cfg),
        "--out",
        p(&a),
        "train.objective=\"label-softmax\"",
        "train.text_loss_weight=0.1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(text(&o).1.contains("K-way"), "{:?}", text(&o));
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(a.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let vals: Vec<f64> = rows
        .iter()
        .filter_map(|r| r.get("val_label_softmax_loss").and_then(|v| v.as_f64()))
        .collect();
    assert_eq!(vals.len(), 3, "{rows:?}");
    let best = vals.iter().cloned().fold(f64::INFINITY, f64::min);
    assert!(
        text(&o)
            .0
            .contains(&format!("best validation loss {best:.4}")),
        "{:?}",
        text(&o)
    );
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("best/training.json")).unwrap())
            .unwrap();
    assert_eq!(t["objective"], "label-softmax");
    // Multi-token titles: refused before training, with the alternative named.
    let o = labor(&[
        "train",
        "--config",
        p(&cfg),
        "--out",
        p(&d.join("b")),
        "model.label_tokens=false",
        "train.objective=\"label-softmax\"",
    ]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(
        text(&o).1.contains("needs one token per label"),
        "{:?}",
        text(&o)
    );
    let o = labor(&[
        "train",
        "--config",
        p(&cfg),
        "--out",
        p(&d.join("c")),
        "train.text_loss_weight=0.5",
    ]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("text_loss_weight"), "{:?}", text(&o));
}

/// A `pool` world: the pooled LM fine-tunes on it and career-pretrained pre-trains on it, no
/// model is scored on it, and the report's note says what each model was given.
#[test]
fn a_pool_world_feeds_the_pooled_lm_and_career_pretrained_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let preset = d.join("pool.toml");
    let lm = "[lm]\nuntuned = false\n[lm.pretrain.model]\nvocab_size = 600\n\
              [lm.pretrain.model.scratch]\nhidden_size = 16\nintermediate_size = 32\n\
              num_hidden_layers = 1\nnum_attention_heads = 2\nmax_position_embeddings = 256\n\
              [lm.pretrain.optim]\nlr = 1e-3\n[lm.pretrain.train]\ntotal_steps = 1\n\
              [lm.finetune.optim]\nlr = 1e-3\n[lm.finetune.train]\ntotal_steps = 1\n";
    std::fs::write(
        &preset,
        format!(
            "[worlds.a]\nworld = \"nlsy79\"\nworkers = 60\nseed = 1\n\
             [worlds.b]\nworld = \"psid\"\nworkers = 60\nseed = 2\nrole = \"pool\"\n\
             [worlds.r]\nworld = \"resumes\"\nworkers = 60\nseed = 3\nrole = \"pretrain\"\n\
             [comparison]\nmodels = [\"markov1\", \"career-pretrained\"]\n\
             [calibration]\n{lm}"
        ),
    )
    .unwrap();
    let out = d.join("out");
    let o = labor(&[
        "reproduce",
        "--preset",
        p(&preset),
        "--out",
        p(&out),
        "--dry-run",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let so = text(&o).0;
    let fit = so
        .lines()
        .find(|l| l.contains("career-pretrained__a"))
        .unwrap();
    assert!(
        fit.contains("--pretrain worlds/r/panel.parquet worlds/b/panel.parquet"),
        "{fit}"
    );
    assert!(
        !so.contains("__b"),
        "nothing is fitted or scored on the pool world: {so}"
    );
    let ft = std::fs::read_to_string(out.join("runs/lm-ft.toml")).unwrap();
    assert!(
        ft.contains("panels = [\"worlds/a/panel.parquet\", \"worlds/b/panel.parquet\"]"),
        "{ft}"
    );
    // Every model calibrated and scored again, evaluated apart.
    assert!(so.contains("calibrate --model models/markov1__a"), "{so}");
    let eval = so.lines().last().unwrap();
    assert!(
        eval.contains("--calibrated preds/markov1__a.cal.parquet"),
        "{eval}"
    );
    assert!(eval.contains("What each model was given"), "{eval}");
    // A pool world nothing uses is refused.
    std::fs::write(
        &preset,
        "[worlds.a]\nworld = \"nlsy79\"\nworkers = 60\nseed = 1\n\
         [worlds.b]\nworld = \"psid\"\nworkers = 60\nseed = 2\nrole = \"pool\"\n\
         [comparison]\nmodels = [\"markov1\"]\n",
    )
    .unwrap();
    let o = labor(&[
        "reproduce",
        "--preset",
        p(&preset),
        "--out",
        p(&d.join("o2")),
    ]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("role = \"pool\""), "{:?}", text(&o));
}

/// A GGUF file whose one metadata value is an array of arrays nested 200,000 deep (2.4 MB):
/// both GGUF readers refuse it with exit 2 naming the key and the depth, instead of
/// overflowing the stack (exit 134).
#[test]
fn gguf_nested_200000_deep_exits_2_naming_the_depth() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    let key = b"tokenizer.ggml.tokens";
    b.extend((key.len() as u64).to_le_bytes());
    b.extend(key);
    b.extend(9u32.to_le_bytes());
    for _ in 1..200_000 {
        b.extend(9u32.to_le_bytes());
        b.extend(1u64.to_le_bytes());
    }
    b.extend(8u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    let file = dir.path().join("deep.gguf");
    std::fs::write(&file, &b).unwrap();
    let out = dir.path().join("out");
    let tok = dir.path().join("tokenizer.json");
    for args in [
        vec!["lm", "import-gguf", p(&file), "--out", p(&out)],
        vec!["tokenizer", "from-gguf", p(&file), "--out", p(&tok)],
    ] {
        let o = labor(&args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("deep.gguf"), "{err}");
        assert!(err.contains("tokenizer.ggml.tokens"), "{err}");
        assert!(err.contains("nested more than 64 deep"), "{err}");
        assert!(!out.exists() && !tok.exists());
    }
}
