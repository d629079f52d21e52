//! The CAREER parallel-file format (github.com/keyonvafa/career-code).
//!
//! For each split `S` in train, valid, test: `S.job`, `S.year`, `S.education` hold one line per
//! person with one space-separated token per person-year; `S.ethnicity`, `S.gender`,
//! `S.location` and the optional `S.year_of_birth` hold one token per line. Line *i* of every
//! file of a split is the same person. Every line ends with `\n`.
//!
//! Mapping to the panel: job → label code, ethnicity → race, location → region,
//! year_of_birth → birth_year; person *i* of split `S` gets person id `S-i` and split `S`.
//! A covariate token `NA` is a missing value (our extension; CAREER's own files have none).
//! Writing gives back the same bytes for a panel read from this format.

use std::collections::BTreeMap;

use crate::panel::{BuildOptions, BuildReport, Column, ColumnMap, Panel, PanelBuilder, RawRow};
use crate::problem::{Location, Problem, Problems};
use crate::split::{Split, SplitSpec};
use crate::taxonomy::Taxonomy;

/// Time-varying fields (one token per person-year) and the panel column each fills.
const SEQ_FIELDS: [(&str, Column); 3] = [
    ("job", Column::Label),
    ("year", Column::Year),
    ("education", Column::Education),
];
/// Static fields (one token per line) and the panel column each fills.
const STATIC_FIELDS: [(&str, Column); 4] = [
    ("ethnicity", Column::Race),
    ("gender", Column::Gender),
    ("location", Column::Region),
    ("year_of_birth", Column::BirthYear),
];

/// Whether `name` is one of the format's file names (`train.job`, `test.year_of_birth`, ...).
pub fn is_career_file(name: &str) -> bool {
    name.split_once('.').is_some_and(|(s, f)| {
        s.parse::<Split>().is_ok()
            && SEQ_FIELDS
                .iter()
                .chain(&STATIC_FIELDS)
                .any(|(n, _)| *n == f)
    })
}

/// The format's files by name (e.g. `train.job`) with their contents.
pub type CareerFiles = BTreeMap<String, String>;

fn lines(content: &str) -> Vec<&str> {
    let body = content.strip_suffix('\n').unwrap_or(content);
    if body.is_empty() && content.len() <= 1 {
        Vec::new()
    } else {
        body.split('\n').collect()
    }
}

/// Reads CAREER files into a validated panel of dataset `dataset`.
pub fn read_career(
    files: &CareerFiles,
    dataset: &str,
    taxonomy: Taxonomy,
    options: BuildOptions,
) -> Result<(Panel, BuildReport), Problems> {
    let has_birth_year = files.keys().any(|k| k.ends_with(".year_of_birth"));
    let mut names: Vec<&str> = ["dataset", "person_id", "split"].into();
    names.extend(
        SEQ_FIELDS
            .iter()
            .chain(&STATIC_FIELDS)
            .filter_map(|(_, c)| (*c != Column::BirthYear || has_birth_year).then_some(c.name())),
    );
    let map = ColumnMap::from_header(&names, Location::line(0))?;
    let mut builder = PanelBuilder::new(taxonomy, options, &map);
    let mut structural = Vec::new();
    let mut any_split = false;
    for split in Split::ALL {
        let file = |f: &str| format!("{split}.{f}");
        let present: Vec<String> = files
            .keys()
            .filter(|k| k.starts_with(&format!("{split}.")))
            .cloned()
            .collect();
        if present.is_empty() {
            continue;
        }
        any_split = true;
        let mut contents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (f, _) in SEQ_FIELDS.iter().chain(&STATIC_FIELDS) {
            match files.get(&file(f)) {
                Some(c) => {
                    contents.insert(f, lines(c));
                }
                None if *f == "year_of_birth" && !has_birth_year => {}
                None => structural.push(Problem::global(
                    "files",
                    format!("no {}", file(f)),
                    format!("{} (the other files of split {split} are present)", file(f)),
                )),
            }
        }
        if contents.len() < SEQ_FIELDS.len() + STATIC_FIELDS.len() - usize::from(!has_birth_year) {
            continue;
        }
        let n = contents["job"].len();
        let mut ok = true;
        for (f, ls) in &contents {
            if ls.len() != n {
                structural.push(Problem::at(
                    Location::line(ls.len() as u64).in_file(file(f)),
                    "lines",
                    format!("{} lines", ls.len()),
                    format!("{n} lines, one per person, as in {}", file("job")),
                ));
                ok = false;
            }
        }
        if !ok {
            continue;
        }
        for i in 0..n {
            let line = (i + 1) as u64;
            let person_id = format!("{split}-{line}");
            let seqs: Vec<Vec<&str>> = SEQ_FIELDS
                .iter()
                .map(|(f, _)| {
                    contents[f][i]
                        .split(' ')
                        .filter(|t| !t.is_empty())
                        .collect()
                })
                .collect();
            let t = seqs[0].len();
            if t == 0 {
                structural.push(Problem::at(
                    Location::line(line).in_file(file("job")),
                    "job",
                    "",
                    "at least one job token per person",
                ));
                continue;
            }
            let mut lengths_ok = true;
            for ((f, _), s) in SEQ_FIELDS.iter().zip(&seqs).skip(1) {
                if s.len() != t {
                    structural.push(Problem::at(
                        Location::line(line).in_file(file(f)),
                        *f,
                        format!("{} tokens", s.len()),
                        format!("{t} tokens, as on line {line} of {}", file("job")),
                    ));
                    lengths_ok = false;
                }
            }
            if !lengths_ok {
                continue;
            }
            for k in 0..t {
                let mut fields: Vec<Option<&str>> =
                    vec![Some(dataset), Some(&person_id), Some(split.as_str())];
                fields.extend(seqs.iter().map(|s| Some(s[k])));
                fields.extend(
                    STATIC_FIELDS
                        .iter()
                        .filter_map(|(f, _)| contents.get(f).map(|ls| Some(ls[i]))),
                );
                builder.push(&RawRow::from_fields(
                    Location::line(line).in_file(file("job")),
                    &map,
                    &fields,
                ));
            }
        }
    }
    if !any_split {
        structural.push(Problem::global(
            "files",
            "no CAREER files",
            "files named {train,valid,test}.{job,year,education,ethnicity,gender,location}",
        ));
    }
    for p in structural {
        builder.problem(p);
    }
    builder.finish().map_err(|Problems(ps)| {
        // Row problems are located on the job file; point each at the file of its field.
        Problems(
            ps.into_iter()
                .map(|mut p| {
                    if let Some(loc) = &mut p.location {
                        let field_file = SEQ_FIELDS
                            .iter()
                            .chain(&STATIC_FIELDS)
                            .find(|(_, c)| c.name() == p.field)
                            .map(|(f, _)| *f);
                        if let (Some(f), Some(cur)) = (field_file, &loc.file)
                            && let Some((s, "job")) = cur.split_once('.')
                        {
                            loc.file = Some(format!("{s}.{f}"));
                        }
                    }
                    p
                })
                .collect(),
        )
    })
}

/// Writes a panel as CAREER files. Persons go to the split they carry, or else the one `spec`
/// assigns, in panel order; all three splits are written (an empty split gives empty files).
/// `year_of_birth` files are written when the panel has birth years.
pub fn write_career(panel: &Panel, spec: &SplitSpec) -> CareerFiles {
    let with_birth = panel.has_birth_year();
    let mut out = CareerFiles::new();
    for split in Split::ALL {
        let mut bufs: BTreeMap<&str, String> = BTreeMap::new();
        for (f, _) in SEQ_FIELDS.iter().chain(&STATIC_FIELDS) {
            if *f != "year_of_birth" || with_birth {
                bufs.insert(f, String::new());
            }
        }
        for p in panel.persons.iter().filter(|p| p.split_or(spec) == split) {
            let seq = |get: &dyn Fn(&crate::panel::Record) -> String| {
                p.records.iter().map(get).collect::<Vec<_>>().join(" ")
            };
            let push = |bufs: &mut BTreeMap<&str, String>, f: &str, s: String| {
                let b = bufs.get_mut(f).expect("buffer");
                b.push_str(&s);
                b.push('\n');
            };
            push(
                &mut bufs,
                "job",
                seq(&|r| panel.taxonomy.label(r.label).code.clone()),
            );
            push(&mut bufs, "year", seq(&|r| r.year.to_string()));
            // A missing covariate is written as the token `NA` (read back as missing).
            let na = |v: Option<String>| v.unwrap_or_else(|| crate::MISSING.to_string());
            push(
                &mut bufs,
                "education",
                seq(&|r| na(r.education.map(|e| e.as_str().to_string()))),
            );
            push(&mut bufs, "ethnicity", na(p.race.clone()));
            push(&mut bufs, "gender", na(p.gender.clone()));
            push(&mut bufs, "location", na(p.region.clone()));
            if with_birth {
                push(
                    &mut bufs,
                    "year_of_birth",
                    na(p.birth_year.map(|b| b.to_string())),
                );
            }
        }
        for (f, content) in bufs {
            out.insert(format!("{split}.{f}"), content);
        }
    }
    out
}
