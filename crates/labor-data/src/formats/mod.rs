//! Panel file formats. Readers take a stream (or, for CAREER, the files' contents) and return a
//! validated panel or every problem found; writers take a stream. No function here opens files.

pub mod career;
pub mod csv;
pub mod parquet;
pub mod parquet_pages;

use crate::panel::{Column, Panel, Person, Record};

/// The columns a panel is written with: the required ones, and each optional one the panel
/// carries.
pub(crate) fn output_columns(panel: &Panel) -> Vec<Column> {
    Column::ALL
        .into_iter()
        .filter(|c| match c {
            Column::BirthYear => panel.has_birth_year(),
            Column::Weight => panel.has_weight(),
            Column::Split => panel.has_split(),
            _ => true,
        })
        .collect()
}

/// The text of one cell as written to a file (`None` for an empty cell).
pub(crate) fn cell(panel: &Panel, p: &Person, r: &Record, c: Column) -> Option<String> {
    Some(match c {
        Column::Dataset => p.dataset.clone(),
        Column::PersonId => p.person_id.clone(),
        Column::Year => r.year.to_string(),
        Column::Label => panel.taxonomy.label(r.label).code.clone(),
        Column::Education => r.education.as_str().to_string(),
        Column::Gender => p.gender.clone(),
        Column::Race => p.race.clone(),
        Column::Region => p.region.clone(),
        Column::BirthYear => return p.birth_year.map(|b| b.to_string()),
        Column::Weight => return r.weight.map(|w| w.to_string()),
        Column::Split => return p.split.map(|s| s.as_str().to_string()),
    })
}
