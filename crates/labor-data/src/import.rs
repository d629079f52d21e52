//! Bring-your-own survey extract: turns a user's wide or long CSV extract into a panel, driven
//! by a mapping file (TOML). The format is documented, with a worked example, in
//! `docs/import.md`.
//!
//! Nothing is dropped silently: waves where a person was not interviewed (every wave field
//! missing) are counted, and person-years excluded by an explicit option (`unmapped = "skip"`)
//! are counted and listed in the [`ImportReport`].

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::education::Education;
use crate::panel::{BuildOptions, ColumnMap, Panel, PanelBuilder, RawRow};
use crate::problem::{Location, Problem, Problems};
use crate::taxonomy::Taxonomy;

/// The whole mapping file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// `wide`: one row per person, one set of columns per wave; `long`: one row per person-year.
    pub layout: Layout,
    /// Dataset name written into the panel.
    pub dataset: String,
    /// Raw values that mean "missing" besides an empty cell (e.g. NLS codes "-1" ... "-5").
    #[serde(default)]
    pub missing: Vec<String>,
    /// Treat every negative number as missing (NLS Investigator convention).
    #[serde(default)]
    pub negative_is_missing: bool,
    pub person: PersonColumns,
    /// Per-wave columns (wide layout).
    #[serde(default, rename = "wave")]
    pub waves: Vec<WaveColumns>,
    /// Per-row columns (long layout).
    #[serde(default)]
    pub long: Option<LongColumns>,
    pub crosswalk: Crosswalk,
    /// Value maps: raw value (or integer range `a-b`) → panel value, per field
    /// (`gender`, `race`, `region`, `education`). A field without a map is taken as is.
    #[serde(default)]
    pub values: BTreeMap<String, BTreeMap<String, String>>,
    /// Employment-status rules, tried in order.
    #[serde(default, rename = "status")]
    pub status_rules: Vec<StatusRule>,
    /// What to do when a person-year has no education value: `error` (default),
    /// `carry_forward` (use the person's last education; counted) or `missing` (leave it
    /// missing, `NA` in the panel; counted).
    #[serde(default)]
    pub education_missing: EducationMissing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Wide,
    Long,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EducationMissing {
    #[default]
    Error,
    CarryForward,
    Missing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unmapped {
    #[default]
    Error,
    Skip,
}

/// Where a static covariate comes from: a column of the extract (`gender = "R0214800"`) or one
/// value for everyone (`region = { value = "south" }`). Leave the key out when the extract does
/// not have the covariate: the panel then has none (nothing is invented).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Source {
    Column(String),
    Value { value: String },
}

impl Source {
    fn column(&self) -> Option<&str> {
        match self {
            Source::Column(c) => Some(c),
            Source::Value { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PersonColumns {
    pub id: String,
    #[serde(default)]
    pub gender: Option<Source>,
    #[serde(default)]
    pub race: Option<Source>,
    #[serde(default)]
    pub region: Option<Source>,
    #[serde(default)]
    pub birth_year: Option<String>,
    /// Added to raw birth years (e.g. 1900 for two-digit years).
    #[serde(default)]
    pub birth_year_offset: i32,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WaveColumns {
    pub year: i32,
    pub occupation: String,
    #[serde(default)]
    pub status: Option<String>,
    /// Leave out when the extract has no education: the panel then has none.
    #[serde(default)]
    pub education: Option<String>,
    #[serde(default)]
    pub weight: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LongColumns {
    pub year: String,
    pub occupation: String,
    #[serde(default)]
    pub status: Option<String>,
    /// Leave out when the extract has no education: the panel then has none.
    #[serde(default)]
    pub education: Option<String>,
    #[serde(default)]
    pub weight: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Crosswalk {
    /// CSV file with header `source,label` (path relative to the mapping file).
    #[serde(default)]
    pub file: Option<String>,
    /// Inline source code → label code pairs (added to those of `file`).
    #[serde(default)]
    pub codes: BTreeMap<String, String>,
    /// Occupation codes missing from the crosswalk: `error` (default) or `skip` the
    /// person-year (counted and listed).
    #[serde(default)]
    pub unmapped: Unmapped,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRule {
    /// Raw status values this rule matches.
    pub values: Vec<String>,
    /// A label code (e.g. `UNEMP`, `NILF`, `EDUC`), or `occupation` to take the label from the
    /// occupation column through the crosswalk.
    pub label: String,
}

/// The `label` of a status rule that means "use the occupation column".
pub const OCCUPATION_RULE: &str = "occupation";

impl Mapping {
    /// Parses and checks a mapping file.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let m: Mapping = toml::from_str(text).map_err(|e| e.to_string())?;
        match (m.layout, m.waves.is_empty(), &m.long) {
            (Layout::Wide, false, None) | (Layout::Long, true, Some(_)) => {}
            (Layout::Wide, _, _) => {
                return Err(
                    "layout = \"wide\" needs one or more [[wave]] tables and no [long] table"
                        .into(),
                );
            }
            (Layout::Long, _, _) => {
                return Err("layout = \"long\" needs a [long] table and no [[wave]] tables".into());
            }
        }
        for k in m.values.keys() {
            if !["gender", "race", "region", "education"].contains(&k.as_str()) {
                return Err(format!(
                    "[values.{k}]: expected a value map for gender, race, region or education"
                ));
            }
        }
        if let Some(edu) = m.values.get("education") {
            for (raw, v) in edu {
                if v.parse::<Education>().is_err() {
                    return Err(format!(
                        "[values.education] {raw:?} = {v:?}: expected {}",
                        Education::expected()
                    ));
                }
            }
        }
        let mut years = std::collections::BTreeSet::new();
        for w in &m.waves {
            if !years.insert(w.year) {
                return Err(format!("[[wave]] year {} appears twice", w.year));
            }
        }
        Ok(m)
    }

    fn is_missing(&self, raw: &str) -> bool {
        let raw = raw.trim();
        raw.is_empty()
            || self.missing.iter().any(|m| m == raw)
            || (self.negative_is_missing && raw.parse::<f64>().is_ok_and(|v| v < 0.0))
    }
}

/// A value map with exact keys and integer ranges `a-b`.
struct ValueMap {
    exact: HashMap<String, String>,
    ranges: Vec<(i64, i64, String)>,
}

impl ValueMap {
    fn new(m: &BTreeMap<String, String>) -> Self {
        let mut exact = HashMap::new();
        let mut ranges = Vec::new();
        for (k, v) in m {
            let range = k
                .split_once('-')
                .filter(|(a, _)| !a.is_empty())
                .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
            match range {
                Some((a, b)) => ranges.push((a, b, v.clone())),
                None => {
                    exact.insert(k.clone(), v.clone());
                }
            }
        }
        Self { exact, ranges }
    }
    fn get(&self, raw: &str) -> Option<&str> {
        if let Some(v) = self.exact.get(raw) {
            return Some(v);
        }
        let n: i64 = raw.parse().ok()?;
        self.ranges
            .iter()
            .find(|(a, b, _)| (*a..=*b).contains(&n))
            .map(|(_, _, v)| v.as_str())
    }
    fn describe(&self) -> String {
        let mut keys: Vec<String> = self.exact.keys().cloned().collect();
        keys.sort();
        keys.extend(self.ranges.iter().map(|(a, b, _)| format!("{a}-{b}")));
        format!("a value of the map: {}", keys.join(", "))
    }
}

/// What an import did besides producing the panel.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImportReport {
    /// Data rows read from the extract.
    pub extract_rows: u64,
    pub persons: usize,
    pub person_years: usize,
    /// Person-waves where every wave field was missing (not interviewed): not records.
    pub waves_not_interviewed: u64,
    /// Extract rows (wide layout) where no wave was interviewed: persons without any record.
    pub persons_never_interviewed: u64,
    /// Person-years whose education was carried forward (`education_missing = "carry_forward"`).
    pub education_carried_forward: u64,
    /// Person-years left without education (`education_missing = "missing"`).
    pub education_left_missing: u64,
    /// Person-years skipped because their occupation code is not in the crosswalk
    /// (`unmapped = "skip"`), with the codes and how often each was skipped.
    pub skipped_unmapped: u64,
    pub skipped_codes: BTreeMap<String, u64>,
}

/// Reads a `source,label` crosswalk CSV. Every problem is reported with its line.
pub fn read_crosswalk(
    text: &str,
    taxonomy: &Taxonomy,
) -> Result<BTreeMap<String, String>, Problems> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut out = BTreeMap::new();
    let mut lines: HashMap<String, u64> = HashMap::new();
    let mut problems = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                problems.push(Problem::global("csv", e.to_string(), "well-formed CSV"));
                break;
            }
        };
        let line = rec.position().map_or(0, |p| p.line());
        let loc = Location::line(line);
        if i == 0 {
            if rec.iter().collect::<Vec<_>>() != ["source", "label"] {
                problems.push(Problem::at(
                    loc,
                    "header",
                    rec.iter().collect::<Vec<_>>().join(","),
                    "the header `source,label`",
                ));
            }
            continue;
        }
        if rec.len() != 2 {
            problems.push(Problem::at(
                loc,
                "row",
                format!("{} field(s)", rec.len()),
                "2 fields: source,label",
            ));
            continue;
        }
        let (src, label) = (rec[0].trim(), rec[1].trim());
        if taxonomy.by_code(label).is_none() {
            problems.push(Problem::at(
                loc.clone(),
                "label",
                label,
                "a label code of the taxonomy",
            ));
        }
        if let Some(l) = lines.get(src) {
            problems.push(Problem::at(
                loc,
                "source",
                src,
                format!("a source code not mapped before (line {l} maps it)"),
            ));
            continue;
        }
        lines.insert(src.to_string(), line);
        out.insert(src.to_string(), label.to_string());
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Problems(problems))
    }
}

/// One person-year's raw extract values, before mapping.
struct RawWave<'a> {
    year: Result<i32, &'a str>,
    occupation: Option<&'a str>,
    status: Option<&'a str>,
    education: Option<&'a str>,
    weight: Option<&'a str>,
    columns: [&'a str; 4], // names of year/occupation/status/education columns, for messages
}

/// Imports an extract. `crosswalk` holds the codes of the mapping's crosswalk file (read with
/// [`read_crosswalk`]; empty when there is none); the mapping's inline codes are added to them.
pub fn import_extract<R: Read>(
    mapping: &Mapping,
    crosswalk: BTreeMap<String, String>,
    extract: R,
    taxonomy: Taxonomy,
) -> Result<(Panel, ImportReport), Problems> {
    let mut codes = crosswalk;
    let mut inline_problems = Vec::new();
    for (src, label) in &mapping.crosswalk.codes {
        if taxonomy.by_code(label).is_none() {
            inline_problems.push(Problem::global(
                format!("crosswalk.codes.{src}"),
                label.clone(),
                "a label code of the taxonomy",
            ));
        }
        codes.insert(src.clone(), label.clone());
    }
    for r in &mapping.status_rules {
        if r.label != OCCUPATION_RULE && taxonomy.by_code(&r.label).is_none() {
            inline_problems.push(Problem::global(
                "status.label",
                r.label.clone(),
                "`occupation` or a label code of the taxonomy (e.g. UNEMP, NILF, EDUC)",
            ));
        }
    }
    if !inline_problems.is_empty() {
        return Err(Problems(inline_problems));
    }
    let maps: HashMap<&str, ValueMap> = mapping
        .values
        .iter()
        .map(|(k, v)| (k.as_str(), ValueMap::new(v)))
        .collect();

    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(extract);
    let mut rec = csv::StringRecord::new();
    let header: Vec<String> = match rdr.read_record(&mut rec) {
        Ok(true) => rec.iter().map(|s| s.trim().to_string()).collect(),
        _ => {
            return Err(Problems(vec![Problem::global(
                "header",
                "",
                "a header line naming the extract's columns",
            )]));
        }
    };
    let col: HashMap<&str, usize> = header
        .iter()
        .enumerate()
        .map(|(i, h)| (h.as_str(), i))
        .collect();
    // Every column the mapping names must exist.
    let mut needed: Vec<(&str, &str)> = vec![("person.id", &mapping.person.id)];
    for (k, src) in [
        ("person.gender", &mapping.person.gender),
        ("person.race", &mapping.person.race),
        ("person.region", &mapping.person.region),
    ] {
        needed.extend(src.as_ref().and_then(Source::column).map(|c| (k, c)));
    }
    if let Some(b) = &mapping.person.birth_year {
        needed.push(("person.birth_year", b));
    }
    for w in &mapping.waves {
        needed.push(("wave.occupation", &w.occupation));
        needed.extend(w.education.as_deref().map(|e| ("wave.education", e)));
        needed.extend(w.status.as_deref().map(|s| ("wave.status", s)));
        needed.extend(w.weight.as_deref().map(|s| ("wave.weight", s)));
    }
    if let Some(l) = &mapping.long {
        needed.extend([
            ("long.year", l.year.as_str()),
            ("long.occupation", &l.occupation),
        ]);
        needed.extend(l.education.as_deref().map(|e| ("long.education", e)));
        needed.extend(l.status.as_deref().map(|s| ("long.status", s)));
        needed.extend(l.weight.as_deref().map(|s| ("long.weight", s)));
    }
    let missing_cols: Vec<Problem> = needed
        .iter()
        .filter(|(_, c)| !col.contains_key(c))
        .map(|(k, c)| {
            Problem::at(
                Location::line(1),
                "header",
                *c,
                format!("a column named {c:?} (mapping key {k})"),
            )
        })
        .collect();
    if !missing_cols.is_empty() {
        return Err(Problems(missing_cols));
    }
    let has_weight = mapping.waves.iter().any(|w| w.weight.is_some())
        || mapping.long.as_ref().is_some_and(|l| l.weight.is_some());
    let has_education = mapping.waves.iter().any(|w| w.education.is_some())
        || mapping.long.as_ref().is_some_and(|l| l.education.is_some());
    // The panel's columns: the required ones, then each covariate the mapping names.
    let mut names = vec!["dataset", "person_id", "year", "label"];
    if has_education {
        names.push("education");
    }
    let statics = [
        ("gender", &mapping.person.gender),
        ("race", &mapping.person.race),
        ("region", &mapping.person.region),
    ];
    for (name, src) in statics {
        if src.is_some() {
            names.push(name);
        }
    }
    if mapping.person.birth_year.is_some() {
        names.push("birth_year");
    }
    if has_weight {
        names.push("weight");
    }
    let colmap = ColumnMap::from_header(&names, Location::line(1)).expect("fixed columns");
    let mut builder = PanelBuilder::new(taxonomy, BuildOptions::default(), &colmap);
    let mut report = ImportReport::default();
    let mut last_education: HashMap<String, String> = HashMap::new();

    loop {
        match rdr.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                builder.problem(Problem::global("csv", e.to_string(), "well-formed CSV"));
                break;
            }
        }
        report.extract_rows += 1;
        let line = rec.position().map_or(0, |p| p.line());
        let loc = Location::line(line);
        if rec.len() != header.len() {
            builder.problem(Problem::at(
                loc,
                "row",
                format!("{} field(s)", rec.len()),
                format!("{} fields, as in the header", header.len()),
            ));
            continue;
        }
        let get = |c: &str| -> Option<&str> {
            let v = rec.get(col[c]).unwrap_or("").trim();
            (!mapping.is_missing(v)).then_some(v)
        };
        // Static fields, mapped.
        let mut row_problems = Vec::new();
        let mut mapped = |field: &str, source: &Option<Source>| -> Option<String> {
            let raw = match source.as_ref()? {
                Source::Value { value } => return Some(value.clone()),
                Source::Column(c) => get(c)?,
            };
            let column = source.as_ref().and_then(Source::column).unwrap_or_default();
            match maps.get(field) {
                None => Some(raw.to_string()),
                Some(m) => match m.get(raw) {
                    Some(v) => Some(v.to_string()),
                    None => {
                        row_problems.push(Problem::at(
                            loc.clone(),
                            format!("{column} ({field})"),
                            raw,
                            m.describe(),
                        ));
                        None
                    }
                },
            }
        };
        let gender = mapped("gender", &mapping.person.gender);
        let race = mapped("race", &mapping.person.race);
        let region = mapped("region", &mapping.person.region);
        let birth_year = match &mapping.person.birth_year {
            None => None,
            Some(c) => match get(c) {
                None => None,
                Some(raw) => match raw.parse::<i32>() {
                    Ok(v) => Some((v + mapping.person.birth_year_offset).to_string()),
                    Err(_) => {
                        row_problems.push(Problem::at(
                            loc.clone(),
                            format!("{c} (birth_year)"),
                            raw,
                            "an integer year",
                        ));
                        None
                    }
                },
            },
        };
        let person_id = get(&mapping.person.id).map(str::to_string);

        let waves: Vec<RawWave> = match &mapping.long {
            Some(l) => vec![RawWave {
                year: get(&l.year)
                    .ok_or("")
                    .and_then(|y| y.parse().map_err(|_| y)),
                occupation: get(&l.occupation),
                status: l.status.as_deref().and_then(get),
                education: l.education.as_deref().and_then(get),
                weight: l.weight.as_deref().and_then(get),
                columns: [
                    &l.year,
                    &l.occupation,
                    l.status.as_deref().unwrap_or(""),
                    l.education.as_deref().unwrap_or(""),
                ],
            }],
            None => mapping
                .waves
                .iter()
                .map(|w| RawWave {
                    year: Ok(w.year),
                    occupation: get(&w.occupation),
                    status: w.status.as_deref().and_then(get),
                    education: w.education.as_deref().and_then(get),
                    weight: w.weight.as_deref().and_then(get),
                    columns: [
                        "year",
                        &w.occupation,
                        w.status.as_deref().unwrap_or(""),
                        w.education.as_deref().unwrap_or(""),
                    ],
                })
                .collect(),
        };
        for p in row_problems {
            builder.problem(p);
        }
        let n_waves = waves.len() as u64;
        let mut skipped_waves = 0;
        for w in waves {
            if w.occupation.is_none()
                && w.status.is_none()
                && w.education.is_none()
                && mapping.layout == Layout::Wide
            {
                report.waves_not_interviewed += 1;
                skipped_waves += 1;
                if skipped_waves == n_waves {
                    report.persons_never_interviewed += 1;
                }
                continue;
            }
            let year = match w.year {
                Ok(y) => y.to_string(),
                Err(raw) => {
                    builder.problem(Problem::at(
                        loc.clone(),
                        w.columns[0],
                        raw,
                        "an integer year",
                    ));
                    continue;
                }
            };
            let wave_field = |c: &str| format!("{c} ({year})");
            // Label: the first status rule that matches, else the occupation.
            let rule = w.status.and_then(|s| {
                mapping
                    .status_rules
                    .iter()
                    .find(|r| r.values.iter().any(|v| v == s))
            });
            let label = match (rule, w.status) {
                (Some(r), _) if r.label != OCCUPATION_RULE => Some(r.label.clone()),
                (None, Some(s)) if !mapping.status_rules.is_empty() => {
                    let known: Vec<&str> = mapping
                        .status_rules
                        .iter()
                        .flat_map(|r| r.values.iter().map(String::as_str))
                        .collect();
                    builder.problem(Problem::at(
                        loc.clone(),
                        wave_field(w.columns[2]),
                        s,
                        format!("a status value of a [[status]] rule: {}", known.join(", ")),
                    ));
                    continue;
                }
                _ => match w.occupation {
                    None => {
                        builder.problem(Problem::at(loc.clone(), wave_field(w.columns[1]), "", "an occupation code (the status says the person works, or there is no status)"));
                        continue;
                    }
                    Some(code) => match codes.get(code) {
                        Some(l) => Some(l.clone()),
                        None if mapping.crosswalk.unmapped == Unmapped::Skip => {
                            report.skipped_unmapped += 1;
                            *report.skipped_codes.entry(code.to_string()).or_insert(0) += 1;
                            continue;
                        }
                        None => {
                            builder.problem(Problem::at(loc.clone(), wave_field(w.columns[1]), code, "an occupation code in the crosswalk (or crosswalk.unmapped = \"skip\")"));
                            continue;
                        }
                    },
                },
            };
            let key = person_id.clone().unwrap_or_default();
            let education = match w.education {
                Some(raw) => match maps.get("education") {
                    None => Some(raw.to_string()),
                    Some(m) => match m.get(raw) {
                        Some(v) => Some(v.to_string()),
                        None => {
                            builder.problem(Problem::at(
                                loc.clone(),
                                wave_field(w.columns[3]),
                                raw,
                                m.describe(),
                            ));
                            continue;
                        }
                    },
                },
                // No education column at all: the panel has no education.
                None if !has_education => None,
                None if mapping.education_missing == EducationMissing::Missing => {
                    report.education_left_missing += 1;
                    Some(crate::MISSING.to_string())
                }
                None if mapping.education_missing == EducationMissing::CarryForward => {
                    match last_education.get(&key) {
                        Some(e) => {
                            report.education_carried_forward += 1;
                            Some(e.clone())
                        }
                        None => {
                            builder.problem(Problem::at(
                                loc.clone(),
                                wave_field(w.columns[3]),
                                "",
                                "an education value (none earlier to carry forward)",
                            ));
                            continue;
                        }
                    }
                }
                None => {
                    builder.problem(Problem::at(
                        loc.clone(),
                        wave_field(w.columns[3]),
                        "",
                        "an education value (or education_missing = \"carry_forward\" or \"missing\")",
                    ));
                    continue;
                }
            };
            if let Some(e) = education.as_ref().filter(|e| *e != crate::MISSING) {
                last_education.insert(key, e.clone());
            }
            let na = Some(crate::MISSING);
            let mut fields: Vec<Option<&str>> = vec![
                Some(&mapping.dataset),
                person_id.as_deref(),
                Some(&year),
                label.as_deref(),
            ];
            if has_education {
                fields.push(education.as_deref());
            }
            for ((_, src), value) in statics.iter().zip([&gender, &race, &region]) {
                if src.is_some() {
                    fields.push(value.as_deref().or(na));
                }
            }
            if mapping.person.birth_year.is_some() {
                fields.push(birth_year.as_deref().or(na));
            }
            if has_weight {
                fields.push(w.weight);
            }
            builder.push(&RawRow::from_fields(loc.clone(), &colmap, &fields));
        }
    }
    let (panel, _) = builder.finish()?;
    report.persons = panel.persons.len();
    report.person_years = panel.n_records();
    Ok((panel, report))
}
