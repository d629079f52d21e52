//! Text templates: the exact strings a career history is written with. `labor-v1` (SPEC §4) is
//! built in; a user template file (TOML) can replace any part of it.

use std::collections::BTreeMap;

use labor_data::Education;
use serde::{Deserialize, Serialize};

/// A named, versioned template. Placeholders: `{dataset}`, `{gender}`, `{race}`, `{region}`,
/// `{birth_year}`, `{year}`, `{education}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Template {
    pub name: String,
    pub version: u32,
    pub dataset_line: String,
    pub demographics_line: String,
    /// The demographics line for a person whose region is missing. A missing gender or race
    /// is left out of either line (its placeholder removed, doubled spaces closed up).
    pub demographics_line_no_region: String,
    pub birth_year_line: String,
    /// The line introducing the records, with and without education in the record lines.
    pub records_intro: String,
    pub records_intro_no_education: String,
    /// The context of a record line (the continuation `" " + title + "\n"` follows it).
    pub record_prefix: String,
    pub record_prefix_no_education: String,
    pub terminator: String,
    /// Education value → phrase.
    pub education: BTreeMap<String, String>,
    /// Wordings of gender, race and region values; a value without one is written with `_`
    /// replaced by a space.
    pub gender: BTreeMap<String, String>,
    pub race: BTreeMap<String, String>,
    pub region: BTreeMap<String, String>,
    /// Titles replacing the taxonomy's for some labels (by code), e.g. the special states.
    pub titles: BTreeMap<String, String>,
}

impl Default for Template {
    fn default() -> Self {
        Self::labor_v1()
    }
}

/// Which optional parts a rendering has (each an ablation of the paper).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Switches {
    pub dataset_line: bool,
    pub birth_year: bool,
    pub education: bool,
    pub demographics: bool,
    /// Unique numeric codes instead of titles.
    pub numeric_codes: bool,
    /// One added token per label before its title in every record line
    /// (`YEAR (EDU):<|label:CODE|> Title`): the model predicts the label in one step, then
    /// reads the title (see `Renderer::label_token` and `tokenize::add_label_markers`).
    #[serde(default)]
    pub label_tokens: bool,
}

impl Default for Switches {
    fn default() -> Self {
        Self {
            dataset_line: true,
            birth_year: true,
            education: true,
            demographics: true,
            numeric_codes: false,
            label_tokens: false,
        }
    }
}

impl Template {
    /// The built-in template of SPEC §4.
    pub fn labor_v1() -> Self {
        let education = [
            (Education::LessThanHighSchool, "less than high school"),
            (Education::HighSchoolDiploma, "high school diploma"),
            (Education::SomeCollege, "some college"),
            (Education::Associates, "associate degree"),
            (Education::Bachelors, "bachelor's degree"),
            (Education::Masters, "master's degree"),
            (Education::Professional, "professional degree"),
            (Education::Doctorate, "doctorate"),
        ]
        .into_iter()
        .map(|(e, s)| (e.as_str().to_string(), s.to_string()))
        .collect();
        Self {
            name: "labor-v1".into(),
            version: 1,
            dataset_line: "<A worker from the {dataset} dataset>".into(),
            demographics_line: "The following information is available about the work history of a {gender} {race} US worker residing in the {region} region.".into(),
            demographics_line_no_region: "The following information is available about the work history of a {gender} {race} US worker.".into(),
            birth_year_line: "The worker was born in {birth_year}.".into(),
            records_intro: "The worker has the following records of work experience, one entry per line, including year, education level, and the job title:".into(),
            records_intro_no_education: "The worker has the following records of work experience, one entry per line, including year and the job title:".into(),
            record_prefix: "{year} ({education}):".into(),
            record_prefix_no_education: "{year}:".into(),
            terminator: "<END OF DATA>".into(),
            education,
            gender: BTreeMap::new(),
            race: BTreeMap::new(),
            region: BTreeMap::new(),
            titles: BTreeMap::new(),
        }
    }

    /// A built-in template by name.
    pub fn builtin(name: &str) -> Option<Self> {
        (name == "labor-v1").then(Self::labor_v1)
    }

    /// Reads a user template: any key it sets replaces that part of `labor-v1`.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let t: Template = toml::from_str(text).map_err(|e| e.to_string())?;
        t.check()?;
        Ok(t)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("serializable")
    }

    fn check(&self) -> Result<(), String> {
        for e in Education::ALL {
            if !self.education.contains_key(e.as_str()) {
                return Err(format!(
                    "template {}: no education phrase for {}",
                    self.name,
                    e.as_str()
                ));
            }
        }
        let mut phrases: Vec<&String> = self.education.values().collect();
        phrases.sort();
        phrases.dedup();
        if phrases.len() != self.education.len() {
            return Err(format!(
                "template {}: education phrases must be distinct",
                self.name
            ));
        }
        for (what, s) in [
            ("record_prefix", &self.record_prefix),
            (
                "record_prefix_no_education",
                &self.record_prefix_no_education,
            ),
        ] {
            if !s.contains("{year}") || s.contains('\n') {
                return Err(format!(
                    "template {}: {what} must contain {{year}} and no newline",
                    self.name
                ));
            }
        }
        if !self.record_prefix.contains("{education}") {
            return Err(format!(
                "template {}: record_prefix must contain {{education}}",
                self.name
            ));
        }
        Ok(())
    }

    pub fn education_phrase(&self, e: Education) -> &str {
        &self.education[e.as_str()]
    }

    /// The wording of a demographic value.
    pub fn wording(map: &BTreeMap<String, String>, value: &str) -> String {
        map.get(value)
            .cloned()
            .unwrap_or_else(|| value.replace('_', " "))
    }
}
