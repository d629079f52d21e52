//! The person-year panel: the source of truth every model and every metric reads.
//!
//! A panel is built from raw rows (strings from any file format) by [`PanelBuilder`], which
//! validates every field and reports every problem with its location, field, the value found and
//! what was expected. Nothing is dropped: a panel is produced only when there are no problems.

use std::collections::HashMap;

use crate::education::Education;
use crate::problem::{Location, Problem, Problems};
use crate::split::{Split, SplitSpec};
use crate::taxonomy::{LabelId, Taxonomy};

/// One observed person-year.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub year: i32,
    pub label: LabelId,
    /// `None`: not known for this year (the panel has no education column, or `NA`).
    pub education: Option<Education>,
    /// Survey weight of this person-year, when the panel carries weights.
    pub weight: Option<f64>,
}

/// A person with static attributes and records sorted by year (at most one per year).
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub dataset: String,
    pub person_id: String,
    /// Static covariates; `None` when the panel lacks the column or the person's value is
    /// missing (`NA`). Nothing is invented in their place.
    pub gender: Option<String>,
    pub race: Option<String>,
    pub region: Option<String>,
    pub birth_year: Option<i32>,
    /// An explicit split assignment carried by the data (e.g. from CAREER files); `None` means
    /// the split comes from the hash of (dataset, person id).
    pub split: Option<Split>,
    pub records: Vec<Record>,
}

impl Person {
    pub fn split_or(&self, spec: &SplitSpec) -> Split {
        self.split
            .unwrap_or_else(|| spec.assign(&self.dataset, &self.person_id))
    }
}

/// A validated panel with its label set (which `--add-unknown-labels` may have extended).
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub taxonomy: Taxonomy,
    pub persons: Vec<Person>,
}

impl Panel {
    pub fn n_records(&self) -> usize {
        self.persons.iter().map(|p| p.records.len()).sum()
    }
    pub fn has_birth_year(&self) -> bool {
        self.persons.iter().any(|p| p.birth_year.is_some())
    }
    /// Whether any person (or, for education, any record) has a value of the covariate.
    pub fn has_covariate(&self, c: Covariate) -> bool {
        self.persons.iter().any(|p| match c {
            Covariate::Gender => p.gender.is_some(),
            Covariate::Race => p.race.is_some(),
            Covariate::Region => p.region.is_some(),
            Covariate::BirthYear => p.birth_year.is_some(),
            Covariate::Education => p.records.iter().any(|r| r.education.is_some()),
        })
    }
    pub fn has_weight(&self) -> bool {
        self.persons
            .iter()
            .any(|p| p.records.iter().any(|r| r.weight.is_some()))
    }
    pub fn has_split(&self) -> bool {
        self.persons.iter().any(|p| p.split.is_some())
    }
}

/// The covariates a panel may lack (wholly, or for some persons or years).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Covariate {
    Gender,
    Race,
    Region,
    BirthYear,
    Education,
}

impl Covariate {
    pub const ALL: [Covariate; 5] = [
        Covariate::Gender,
        Covariate::Race,
        Covariate::Region,
        Covariate::BirthYear,
        Covariate::Education,
    ];
    pub fn name(self) -> &'static str {
        self.column().name()
    }
    pub fn column(self) -> Column {
        match self {
            Covariate::Gender => Column::Gender,
            Covariate::Race => Column::Race,
            Covariate::Region => Column::Region,
            Covariate::BirthYear => Column::BirthYear,
            Covariate::Education => Column::Education,
        }
    }
}

/// The cell text that marks a covariate as missing in a panel file (CSV, CAREER files). `.`
/// (Stata's missing value) is read as missing too; Parquet uses nulls.
pub const MISSING: &str = "NA";

/// Whether a covariate cell says "missing".
pub fn is_missing_token(v: &str) -> bool {
    v == MISSING || v == "."
}

/// The panel's columns, in the order files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    Dataset,
    PersonId,
    Year,
    Label,
    Education,
    Gender,
    Race,
    Region,
    BirthYear,
    Weight,
    Split,
}

impl Column {
    pub const ALL: [Column; 11] = [
        Column::Dataset,
        Column::PersonId,
        Column::Year,
        Column::Label,
        Column::Education,
        Column::Gender,
        Column::Race,
        Column::Region,
        Column::BirthYear,
        Column::Weight,
        Column::Split,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Column::Dataset => "dataset",
            Column::PersonId => "person_id",
            Column::Year => "year",
            Column::Label => "label",
            Column::Education => "education",
            Column::Gender => "gender",
            Column::Race => "race",
            Column::Region => "region",
            Column::BirthYear => "birth_year",
            Column::Weight => "weight",
            Column::Split => "split",
        }
    }
    /// Whether every panel file must have the column. Covariates may be absent.
    pub fn required(self) -> bool {
        matches!(
            self,
            Column::Dataset | Column::PersonId | Column::Year | Column::Label
        )
    }
    /// Whether the column is a covariate (may be `NA`).
    pub fn is_covariate(self) -> bool {
        matches!(
            self,
            Column::Education | Column::Gender | Column::Race | Column::Region | Column::BirthYear
        )
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// Which input column holds each panel column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMap {
    positions: [Option<usize>; 11],
}

impl ColumnMap {
    /// Maps a header (column names in file order). Unknown, duplicate and missing required
    /// columns are problems: nothing in the input is silently ignored.
    pub fn from_header<S: AsRef<str>>(names: &[S], location: Location) -> Result<Self, Problems> {
        let mut positions = [None; 11];
        let mut problems = Vec::new();
        let expected_names = Column::ALL.map(|c| c.name()).join(", ");
        for (i, name) in names.iter().enumerate() {
            let name = name.as_ref();
            match Column::ALL.into_iter().find(|c| c.name() == name) {
                Some(c) if positions[c.index()].is_some() => problems.push(Problem::at(
                    location.clone(),
                    "header",
                    name,
                    "each column once",
                )),
                Some(c) => positions[c.index()] = Some(i),
                None => problems.push(Problem::at(
                    location.clone(),
                    "header",
                    name,
                    format!("a panel column: {expected_names}"),
                )),
            }
        }
        for c in Column::ALL.into_iter().filter(|c| c.required()) {
            if positions[c.index()].is_none() {
                problems.push(Problem::at(
                    location.clone(),
                    "header",
                    "",
                    format!("a `{}` column (required)", c.name()),
                ));
            }
        }
        if problems.is_empty() {
            Ok(Self { positions })
        } else {
            Err(Problems(problems))
        }
    }

    pub fn has(&self, c: Column) -> bool {
        self.positions[c.index()].is_some()
    }
    pub fn position(&self, c: Column) -> Option<usize> {
        self.positions[c.index()]
    }
}

/// One input row as text. `None` is a null or an empty CSV cell.
#[derive(Debug, Clone)]
pub struct RawRow<'a> {
    pub location: Location,
    pub values: [Option<&'a str>; 11],
}

impl<'a> RawRow<'a> {
    /// Takes the row's fields (in file order) through a column map.
    pub fn from_fields(location: Location, map: &ColumnMap, fields: &[Option<&'a str>]) -> Self {
        let mut values = [None; 11];
        for c in Column::ALL {
            if let Some(i) = map.position(c) {
                values[c.index()] = fields.get(i).copied().flatten().filter(|s| !s.is_empty());
            }
        }
        Self { location, values }
    }
    pub fn get(&self, c: Column) -> Option<&'a str> {
        self.values[c.index()]
    }
}

/// Options that change what a valid panel is.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Give label codes the taxonomy does not know a label of their own instead of reporting
    /// them (they are listed in the [`BuildReport`]).
    pub add_unknown_labels: bool,
}

/// What building a panel did besides validating.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuildReport {
    pub rows: u64,
    /// Codes given a label by `add_unknown_labels`, in first-appearance order.
    pub added_labels: Vec<String>,
}

pub const YEAR_RANGE: std::ops::RangeInclusive<i32> = 1900..=2100;
pub const BIRTH_YEAR_RANGE: std::ops::RangeInclusive<i32> = 1850..=2100;
pub const MAX_AGE: i32 = 120;

struct Acc {
    person: Person,
    first_line: Location,
    records: Vec<Record>,
    /// Years of every row of the person with a valid year, for duplicate detection.
    years: Vec<(i32, Location)>,
}

/// Validates raw rows into a [`Panel`].
pub struct PanelBuilder {
    taxonomy: Taxonomy,
    options: BuildOptions,
    map_has: [bool; 11],
    persons: Vec<Acc>,
    index: HashMap<String, HashMap<String, usize>>,
    problems: Vec<Problem>,
    report: BuildReport,
}

/// Why a value cannot be an identifier-like token (dataset, person id, gender, race, region).
fn token_defect(value: &str) -> Option<&'static str> {
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("a value without spaces or control characters (join words with _)")
    } else {
        None
    }
}

impl PanelBuilder {
    pub fn new(taxonomy: Taxonomy, options: BuildOptions, columns: &ColumnMap) -> Self {
        Self {
            taxonomy,
            options,
            map_has: Column::ALL.map(|c| columns.has(c)),
            persons: Vec::new(),
            index: HashMap::new(),
            problems: Vec::new(),
            report: BuildReport::default(),
        }
    }

    /// Adds a problem found outside the row checks (e.g. by a format reader).
    pub fn problem(&mut self, p: Problem) {
        self.problems.push(p);
    }

    fn token(&mut self, row: &RawRow, c: Column) -> Option<String> {
        match row.get(c) {
            None => {
                self.problems.push(Problem::at(
                    row.location.clone(),
                    c.name(),
                    "",
                    "a value (this field is required)",
                ));
                None
            }
            Some(v) => self.checked_token(row, c, v),
        }
    }

    /// `v` as an identifier-like token, or a problem naming its defect.
    fn checked_token(&mut self, row: &RawRow, c: Column, v: &str) -> Option<String> {
        match token_defect(v) {
            Some(e) => {
                self.problems
                    .push(Problem::at(row.location.clone(), c.name(), v, e));
                None
            }
            None => Some(v.to_string()),
        }
    }

    /// A covariate token: `Ok(None)` when the column is absent or the cell is `NA`; an empty
    /// cell is a problem (write `NA` for a missing value).
    fn covariate<'r>(&mut self, row: &RawRow<'r>, c: Column) -> Result<Option<&'r str>, ()> {
        if !self.map_has[c.index()] {
            return Ok(None);
        }
        match row.get(c) {
            None => {
                self.problems.push(Problem::at(
                    row.location.clone(),
                    c.name(),
                    "",
                    format!("a value, or {MISSING} when it is missing"),
                ));
                Err(())
            }
            Some(v) if is_missing_token(v) => Ok(None),
            Some(v) => Ok(Some(v)),
        }
    }

    fn covariate_token(&mut self, row: &RawRow, c: Column) -> Result<Option<String>, ()> {
        match self.covariate(row, c)? {
            None => Ok(None),
            Some(v) => self.checked_token(row, c, v).map(Some).ok_or(()),
        }
    }

    fn int(
        &mut self,
        row: &RawRow,
        c: Column,
        range: std::ops::RangeInclusive<i32>,
    ) -> Option<i32> {
        let expected = || format!("an integer year from {} to {}", range.start(), range.end());
        match row.get(c) {
            None => {
                self.problems
                    .push(Problem::at(row.location.clone(), c.name(), "", expected()));
                None
            }
            Some(v) => match v.parse::<i32>() {
                Ok(y) if range.contains(&y) => Some(y),
                _ => {
                    self.problems
                        .push(Problem::at(row.location.clone(), c.name(), v, expected()));
                    None
                }
            },
        }
    }

    /// Validates one row and adds it to its person.
    pub fn push(&mut self, row: &RawRow) {
        self.report.rows += 1;
        let before = self.problems.len();
        let dataset = self.token(row, Column::Dataset);
        let person_id = self.token(row, Column::PersonId);
        let year = self.int(row, Column::Year, YEAR_RANGE);
        let label = match row.get(Column::Label) {
            None => {
                self.problems.push(Problem::at(
                    row.location.clone(),
                    "label",
                    "",
                    "a label code (this field is required)",
                ));
                None
            }
            Some(code) => match self.taxonomy.by_code(code) {
                Some(id) => Some(id),
                None if self.options.add_unknown_labels => match self.taxonomy.add_unknown(code) {
                    Ok(id) => {
                        self.report.added_labels.push(code.to_string());
                        Some(id)
                    }
                    Err(e) => {
                        self.problems
                            .push(Problem::at(row.location.clone(), "label", code, e));
                        None
                    }
                },
                None => {
                    self.problems.push(Problem::at(
                        row.location.clone(),
                        "label",
                        code,
                        format!(
                            "a label code of the taxonomy ({} labels), or --add-unknown-labels",
                            self.taxonomy.len()
                        ),
                    ));
                    None
                }
            },
        };
        let education = match self.covariate(row, Column::Education) {
            Ok(Some(v)) => match v.parse::<Education>() {
                Ok(e) => Some(e),
                Err(()) => {
                    self.problems.push(Problem::at(
                        row.location.clone(),
                        "education",
                        v,
                        format!("{}, or {MISSING}", Education::expected()),
                    ));
                    None
                }
            },
            _ => None,
        };
        let gender = self.covariate_token(row, Column::Gender).ok().flatten();
        let race = self.covariate_token(row, Column::Race).ok().flatten();
        let region = self.covariate_token(row, Column::Region).ok().flatten();
        let birth_year = match self.covariate(row, Column::BirthYear) {
            Ok(Some(_)) => self.int(row, Column::BirthYear, BIRTH_YEAR_RANGE),
            _ => None,
        };
        if let (Some(y), Some(b)) = (year, birth_year)
            && !(0..=MAX_AGE).contains(&(y - b))
        {
            self.problems.push(Problem::at(
                row.location.clone(),
                "birth_year",
                b.to_string(),
                format!("a birth year giving an age from 0 to {MAX_AGE} in {y}"),
            ));
        }
        let weight = if self.map_has[Column::Weight.index()] {
            let v = row.get(Column::Weight).unwrap_or("");
            match v.parse::<f64>() {
                Ok(w) if w.is_finite() && w >= 0.0 => Some(w),
                _ => {
                    self.problems.push(Problem::at(
                        row.location.clone(),
                        "weight",
                        v,
                        "a finite non-negative number",
                    ));
                    None
                }
            }
        } else {
            None
        };
        let split = if self.map_has[Column::Split.index()] {
            let v = row.get(Column::Split).unwrap_or("");
            match v.parse::<Split>() {
                Ok(s) => Some(s),
                Err(()) => {
                    self.problems.push(Problem::at(
                        row.location.clone(),
                        "split",
                        v,
                        "one of train, valid, test",
                    ));
                    None
                }
            }
        } else {
            None
        };

        let (Some(dataset), Some(person_id)) = (dataset, person_id) else {
            return;
        };
        let row_ok = self.problems.len() == before;
        let idx = match self
            .index
            .get(&dataset)
            .and_then(|m| m.get(&person_id))
            .copied()
        {
            Some(i) => {
                let acc = &self.persons[i];
                let first = &acc.first_line;
                let p = &acc.person;
                let mut mismatches = Vec::new();
                let mut check = |c: Column, old: Option<&str>, new: Option<&str>| {
                    // A missing value (or an invalid one, already reported) never conflicts.
                    if let (Some(o), Some(n)) = (old, new)
                        && o != n
                    {
                        mismatches.push(Problem::at(
                            row.location.clone(),
                            c.name(),
                            n,
                            format!(
                                "the same value for every record of a person ({first} has {o:?})"
                            ),
                        ));
                    }
                };
                check(Column::Gender, p.gender.as_deref(), gender.as_deref());
                check(Column::Race, p.race.as_deref(), race.as_deref());
                check(Column::Region, p.region.as_deref(), region.as_deref());
                let by = birth_year.map(|b| b.to_string());
                let pby = p.birth_year.map(|b| b.to_string());
                check(Column::BirthYear, pby.as_deref(), by.as_deref());
                let sp = split.map(|s| s.as_str());
                check(Column::Split, p.split.map(|s| s.as_str()), sp);
                self.problems.extend(mismatches);
                let p = &mut self.persons[i].person;
                // The first known value of a static covariate is the person's.
                for (slot, value) in [
                    (&mut p.gender, &gender),
                    (&mut p.race, &race),
                    (&mut p.region, &region),
                ] {
                    if slot.is_none() {
                        slot.clone_from(value);
                    }
                }
                if p.birth_year.is_none() {
                    p.birth_year = birth_year;
                }
                i
            }
            None => {
                // The first row of a person fixes its static fields; if they are invalid the
                // problems are already reported and placeholders stand in.
                let i = self.persons.len();
                self.persons.push(Acc {
                    person: Person {
                        dataset: dataset.clone(),
                        person_id: person_id.clone(),
                        gender: gender.clone(),
                        race: race.clone(),
                        region: region.clone(),
                        birth_year,
                        split,
                        records: Vec::new(),
                    },
                    first_line: row.location.clone(),
                    records: Vec::new(),
                    years: Vec::new(),
                });
                self.index.entry(dataset).or_default().insert(person_id, i);
                i
            }
        };
        let acc = &mut self.persons[idx];
        if let Some(y) = year {
            acc.years.push((y, row.location.clone()));
        }
        if let (true, Some(year), Some(label)) = (row_ok, year, label) {
            acc.records.push(Record {
                year,
                label,
                education,
                weight,
            });
        }
    }

    /// Finishes validation: sorts each person's records by year and reports duplicate
    /// person-years. Returns the panel only when no problem was found.
    pub fn finish(mut self) -> Result<(Panel, BuildReport), Problems> {
        if self.report.rows == 0 && self.problems.is_empty() {
            self.problems.push(Problem::global(
                "rows",
                "no rows",
                "at least one person-year",
            ));
        }
        let mut persons = Vec::with_capacity(self.persons.len());
        for mut acc in self.persons {
            acc.years.sort_by_key(|(y, _)| *y);
            for w in acc.years.windows(2) {
                if w[0].0 == w[1].0 {
                    self.problems.push(Problem::at(
                        w[1].1.clone(),
                        "year",
                        w[1].0.to_string(),
                        format!(
                            "one record per person and year ({} has the same dataset, person_id and year)",
                            w[0].1
                        ),
                    ));
                }
            }
            acc.records.sort_by_key(|r| r.year);
            acc.person.records = acc.records;
            persons.push(acc.person);
        }
        if self.problems.is_empty() {
            Ok((
                Panel {
                    taxonomy: self.taxonomy,
                    persons,
                },
                self.report,
            ))
        } else {
            // Report in input order.
            self.problems.sort_by(|a, b| {
                let key = |p: &Problem| {
                    p.location
                        .as_ref()
                        .map(|l| (l.file.clone(), l.index))
                        .unwrap_or((None, 0))
                };
                key(a).cmp(&key(b))
            });
            Err(Problems(self.problems))
        }
    }
}
