//! A panel written back as the raw survey extract a user would download: a wide CSV with
//! reference-number columns and numeric codes, a census-style occupation crosswalk, a codebook,
//! and the mapping file that imports it (`labor data import`). Importing the files gives back
//! the panel exactly, which exercises the import path at scale (`labor synth --export-extract`).
//!
//! Two styles:
//! - `nls` (NLS Investigator): columns `R0000100` (case id), `R0214700` (race), `R0214800` (sex),
//!   `R0216400` (region), `R0000500` (birth year, two digits when every one is in 1900–1999),
//!   8-character reference numbers as NLS Investigator writes them;
//!   per wave `R1WWWWF0` with wave number `WWWW` and field `F`: 1 occupation (census-style
//!   4-digit code), 2 employment status, 3 highest grade completed, 4 sampling weight. Missing values are negative:
//!   -5 non-interview (every field of a wave the person has no record in), -4 valid skip (no
//!   occupation when not working), -3 invalid skip (a missing covariate).
//! - `psid` (PSID data center): `ER30001` (person number), `ER32000` (sex), `ER32001` (race),
//!   `ER32002` (region), `ER32003` (birth year, four digits); per wave `ER3WWW1`–`ER3WWW4`.
//!   Missing values are PSID's: 0 (inapplicable, non-response) and 9999 (birth year unknown).
//!
//! No function here does I/O: [`export_extract`] returns the files' contents.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::education::Education;
use crate::panel::Panel;
use crate::taxonomy::LabelKind;

/// The file conventions to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Nls,
    Psid,
}

impl std::str::FromStr for Style {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "nls" => Ok(Style::Nls),
            "psid" => Ok(Style::Psid),
            _ => Err(format!("{s:?}: expected nls or psid")),
        }
    }
}

/// The files of an extract, by name: `extract.csv`, `crosswalk.csv`, `mapping.toml`,
/// `codebook.md`.
pub type ExtractFiles = BTreeMap<&'static str, String>;

/// Highest grade completed, the NLS convention for each education level.
fn grade(e: Education) -> u32 {
    match e {
        Education::LessThanHighSchool => 10,
        Education::HighSchoolDiploma => 12,
        Education::SomeCollege => 13,
        Education::Associates => 14,
        Education::Bachelors => 16,
        Education::Masters => 18,
        Education::Professional => 19,
        Education::Doctorate => 20,
    }
}

/// Employment status codes: 1 working (the occupation column holds the job), 2 unemployed,
/// 3 out of the labor force, 4 in school.
fn status(kind: LabelKind) -> u32 {
    match kind {
        LabelKind::Occupation => 1,
        LabelKind::Unemployed => 2,
        LabelKind::NotInLaborForce => 3,
        LabelKind::InEducation => 4,
    }
}

/// Numeric codes 1, 2, ... for the distinct values of a static covariate, in sorted order.
fn codes_of<'a>(values: impl Iterator<Item = &'a Option<String>>) -> BTreeMap<String, u32> {
    let set: std::collections::BTreeSet<&String> = values.flatten().collect();
    set.into_iter()
        .enumerate()
        .map(|(i, v)| (v.clone(), i as u32 + 1))
        .collect()
}

/// Writes `panel` as an extract. The panel must hold one dataset.
pub fn export_extract(panel: &Panel, style: Style) -> Result<ExtractFiles, String> {
    let datasets: std::collections::BTreeSet<&str> =
        panel.persons.iter().map(|p| p.dataset.as_str()).collect();
    let dataset = match datasets.len() {
        1 => *datasets.iter().next().expect("one"),
        n => return Err(format!("an extract holds one dataset; the panel has {n}")),
    };
    let nls = style == Style::Nls;
    let missing = if nls { "-3" } else { "0" };
    let not_interviewed = if nls { "-5" } else { "0" };
    let skip = if nls { "-4" } else { "0" };
    let years: Vec<i32> = {
        let set: std::collections::BTreeSet<i32> = panel
            .persons
            .iter()
            .flat_map(|p| p.records.iter().map(|r| r.year))
            .collect();
        set.into_iter().collect()
    };
    let has_weight = panel.has_weight();
    let has_education = panel.has_covariate(crate::Covariate::Education);
    let two_digit = nls
        && panel
            .persons
            .iter()
            .filter_map(|p| p.birth_year)
            .all(|b| (1900..=1999).contains(&b));
    let has_birth = panel.has_birth_year();
    let gender = codes_of(panel.persons.iter().map(|p| &p.gender));
    let race = codes_of(panel.persons.iter().map(|p| &p.race));
    let region = codes_of(panel.persons.iter().map(|p| &p.region));
    // Census-style occupation codes: 10, 20, ... in taxonomy order (4 digits for NLS).
    let occ_code = |i: usize| {
        if nls {
            format!("{:04}", (i + 1) * 10)
        } else {
            format!("{}", (i + 1) * 10)
        }
    };
    let occupations: Vec<(usize, &crate::taxonomy::Label)> = panel
        .taxonomy
        .labels()
        .iter()
        .enumerate()
        .filter(|(_, l)| l.kind == LabelKind::Occupation)
        .collect();
    let occ_index: BTreeMap<usize, usize> = occupations
        .iter()
        .enumerate()
        .map(|(k, (i, _))| (*i, k))
        .collect();

    // Column names.
    let (id, sex, race_c, region_c, birth) = if nls {
        ("R0000100", "R0214800", "R0214700", "R0216400", "R0000500")
    } else {
        ("ER30001", "ER32000", "ER32001", "ER32002", "ER32003")
    };
    let wave_col = |w: usize, field: usize| {
        if nls {
            format!("R1{:04}{field}0", w + 1)
        } else {
            format!("ER3{:03}{field}", w + 1)
        }
    };
    let statics: Vec<(&str, &str, &BTreeMap<String, u32>)> = [
        ("gender", sex, &gender),
        ("race", race_c, &race),
        ("region", region_c, &region),
    ]
    .into_iter()
    .filter(|(_, _, m)| !m.is_empty())
    .collect();

    let mut header = vec![id.to_string()];
    header.extend(statics.iter().map(|(_, c, _)| c.to_string()));
    if has_birth {
        header.push(birth.into());
    }
    for w in 0..years.len() {
        header.push(wave_col(w, 1));
        header.push(wave_col(w, 2));
        if has_education {
            header.push(wave_col(w, 3));
        }
        if has_weight {
            header.push(wave_col(w, 4));
        }
    }
    let mut csv = header.join(",") + "\n";
    for p in &panel.persons {
        if p.person_id.contains([',', '"', '\n']) {
            return Err(format!(
                "person id {:?} cannot be written to a plain CSV extract",
                p.person_id
            ));
        }
        let mut row = vec![p.person_id.clone()];
        for (field, _, m) in &statics {
            let v = match *field {
                "gender" => &p.gender,
                "race" => &p.race,
                _ => &p.region,
            };
            row.push(v.as_ref().map_or(missing.to_string(), |v| m[v].to_string()));
        }
        if has_birth {
            row.push(match p.birth_year {
                Some(b) if two_digit => (b - 1900).to_string(),
                Some(b) => b.to_string(),
                None if nls => missing.into(),
                None => "9999".into(),
            });
        }
        let by_year: BTreeMap<i32, &crate::panel::Record> =
            p.records.iter().map(|r| (r.year, r)).collect();
        for y in &years {
            match by_year.get(y) {
                None => {
                    let n = 2 + has_education as usize + has_weight as usize;
                    row.extend(std::iter::repeat_n(not_interviewed.to_string(), n));
                }
                Some(r) => {
                    let kind = panel.taxonomy.label(r.label).kind;
                    row.push(match occ_index.get(&r.label.index()) {
                        Some(&k) => occ_code(k),
                        None => skip.into(),
                    });
                    row.push(status(kind).to_string());
                    if has_education {
                        row.push(
                            r.education
                                .map_or(missing.to_string(), |e| grade(e).to_string()),
                        );
                    }
                    if has_weight {
                        row.push(r.weight.map_or(missing.to_string(), |w| w.to_string()));
                    }
                }
            }
        }
        csv += &row.join(",");
        csv.push('\n');
    }

    let mut crosswalk = String::from("source,label\n");
    for (k, (_, l)) in occupations.iter().enumerate() {
        writeln!(crosswalk, "{},{}", occ_code(k), l.code).expect("string");
    }

    // The mapping that imports it.
    let q = |s: &str| toml::Value::String(s.into()).to_string();
    let mut m = String::new();
    writeln!(
        m,
        "# Imports extract.csv (written by labor synth --export-extract {}); see codebook.md.",
        if nls { "nls" } else { "psid" }
    )
    .expect("string");
    writeln!(m, "layout = \"wide\"\ndataset = {}", q(dataset)).expect("string");
    if nls {
        m += "negative_is_missing = true\n";
    } else {
        m += "missing = [\"0\", \"9999\"]\n";
    }
    if has_education {
        m += "education_missing = \"missing\"\n";
    }
    writeln!(m, "\n[person]\nid = {}", q(id)).expect("string");
    for (field, c, _) in &statics {
        writeln!(m, "{field} = {}", q(c)).expect("string");
    }
    if has_birth {
        writeln!(m, "birth_year = {}", q(birth)).expect("string");
        if two_digit {
            m += "birth_year_offset = 1900\n";
        }
    }
    for (w, y) in years.iter().enumerate() {
        writeln!(
            m,
            "\n[[wave]]\nyear = {y}\noccupation = {}\nstatus = {}",
            q(&wave_col(w, 1)),
            q(&wave_col(w, 2))
        )
        .expect("string");
        if has_education {
            writeln!(m, "education = {}", q(&wave_col(w, 3))).expect("string");
        }
        if has_weight {
            writeln!(m, "weight = {}", q(&wave_col(w, 4))).expect("string");
        }
    }
    m += "\n[crosswalk]\nfile = \"crosswalk.csv\"\n";
    for (field, _, codes) in &statics {
        writeln!(m, "\n[values.{field}]").expect("string");
        for (v, c) in codes.iter() {
            writeln!(m, "\"{c}\" = {}", q(v)).expect("string");
        }
    }
    if has_education {
        m += "\n[values.education]\n";
        for e in Education::ALL {
            writeln!(m, "\"{}\" = \"{}\"", grade(e), e.as_str()).expect("string");
        }
    }
    for (codes, label) in [
        ("1", "occupation"),
        ("2", "UNEMP"),
        ("3", "NILF"),
        ("4", "EDUC"),
    ] {
        writeln!(
            m,
            "\n[[status]]\nvalues = [\"{codes}\"]\nlabel = \"{label}\""
        )
        .expect("string");
    }

    // The codebook.
    let mut cb = format!(
        "# Codebook: {dataset} extract ({} style)\n\n{} persons, {} waves ({}).\n\n\
         | column | meaning | values |\n|---|---|---|\n",
        if nls { "NLS Investigator" } else { "PSID" },
        panel.persons.len(),
        years.len(),
        years
            .iter()
            .map(|y| y.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let list = |m: &BTreeMap<String, u32>| {
        m.iter()
            .map(|(v, c)| format!("{c} {v}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    writeln!(cb, "| {id} | case id | as in the panel |").expect("string");
    for (field, c, codes) in &statics {
        writeln!(cb, "| {c} | {field} | {}; {missing} missing |", list(codes)).expect("string");
    }
    if has_birth {
        writeln!(
            cb,
            "| {birth} | birth year | {}; {} missing |",
            if two_digit {
                "two digits (add 1900)"
            } else {
                "four digits"
            },
            if nls { missing } else { "9999" }
        )
        .expect("string");
    }
    for (w, y) in years.iter().enumerate() {
        writeln!(
            cb,
            "| {} | occupation in {y} | census-style code (crosswalk.csv); {skip} not working; {not_interviewed} not interviewed |",
            wave_col(w, 1)
        )
        .expect("string");
        writeln!(
            cb,
            "| {} | employment status in {y} | 1 working, 2 unemployed, 3 out of the labor force, 4 in school; {not_interviewed} not interviewed |",
            wave_col(w, 2)
        )
        .expect("string");
        if has_education {
            writeln!(
                cb,
                "| {} | highest grade completed in {y} | 10 less than high school, 12 high school diploma, 13 some college, 14 associate degree, 16 bachelor's, 18 master's, 19 professional, 20 doctorate; {missing} missing |",
                wave_col(w, 3)
            )
            .expect("string");
        }
        if has_weight {
            writeln!(cb, "| {} | sampling weight in {y} | |", wave_col(w, 4)).expect("string");
        }
    }
    Ok(BTreeMap::from([
        ("extract.csv", csv),
        ("crosswalk.csv", crosswalk),
        ("mapping.toml", m),
        ("codebook.md", cb),
    ]))
}
