//! Panel file formats. Readers take a stream (or, for CAREER, the files' contents) and return a
//! validated panel or every problem found; writers take a stream. No function here opens files.

pub mod career;
pub mod csv;
pub mod parquet;
pub mod parquet_check;

use crate::panel::{Column, Covariate, Panel, Person, Record};

/// The columns a panel is written with: the required ones, and each optional one the panel
/// carries (a covariate no person has is left out, not written as a column of `NA`).
pub(crate) fn output_columns(panel: &Panel) -> Vec<Column> {
    Column::ALL
        .into_iter()
        .filter(|c| match c {
            Column::Weight => panel.has_weight(),
            Column::Split => panel.has_split(),
            c => match Covariate::ALL.into_iter().find(|v| v.column() == *c) {
                Some(v) => panel.has_covariate(v),
                None => true,
            },
        })
        .collect()
}

/// The text of one cell as written to a file (`None` for a missing value: CSV writes
/// [`crate::MISSING`] for a covariate, Parquet a null).
pub(crate) fn cell(panel: &Panel, p: &Person, r: &Record, c: Column) -> Option<String> {
    Some(match c {
        Column::Dataset => p.dataset.clone(),
        Column::PersonId => p.person_id.clone(),
        Column::Year => r.year.to_string(),
        Column::Label => panel.taxonomy.label(r.label).code.clone(),
        Column::Education => return r.education.map(|e| e.as_str().to_string()),
        Column::Gender => return p.gender.clone(),
        Column::Race => return p.race.clone(),
        Column::Region => return p.region.clone(),
        Column::BirthYear => return p.birth_year.map(|b| b.to_string()),
        Column::Weight => return r.weight.map(|w| w.to_string()),
        Column::Split => return p.split.map(|s| s.as_str().to_string()),
    })
}
